#!/usr/bin/env python3
"""A three-service app (frontend -> checkout -> payment) traced with the real OpenTelemetry
Python SDK and exported by OTLP to omen detect: frontend and payment over gRPC, checkout
over HTTP (protobuf). Each request is a frontend server span, its client span, checkout's
server span, checkout's client span and payment's server span.

    app.py --grpc 127.0.0.1:4317 --http http://127.0.0.1:4318/v1/traces \
           --healthy 40 --fault 25 --rate 20 --out sent.json

Runs `healthy` seconds of normal traffic, then `fault` seconds with payment 30x slower
(a latency fault on the downstream service), `rate` requests a second, timestamps from the
wall clock (spans carry their own start and end; nothing sleeps per request). Writes what
it sent: spans per service, requests per edge, every trace id, and when the fault began.
"""
import argparse
import json
import random
import time

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind


def provider(service, exporter):
    p = TracerProvider(resource=Resource.create({"service.name": service}))
    p.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=200, max_export_batch_size=512))
    return p


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--grpc", required=True)
    ap.add_argument("--http", required=True)
    ap.add_argument("--healthy", type=float, default=40)
    ap.add_argument("--fault", type=float, default=25)
    ap.add_argument("--rate", type=int, default=20)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    rnd = random.Random(args.seed)
    providers = {
        "frontend": provider("frontend", GrpcExporter(endpoint=args.grpc, insecure=True)),
        "checkout": provider("checkout", HttpExporter(endpoint=args.http)),
        "payment": provider("payment", GrpcExporter(endpoint=args.grpc, insecure=True)),
    }
    tracers = {name: p.get_tracer("omen-test-app") for name, p in providers.items()}
    spans = {name: 0 for name in providers}
    edges = {"frontend->checkout": 0, "checkout->payment": 0}
    trace_ids = []
    start = time.time()
    fault_at = start + args.healthy
    end = fault_at + args.fault
    ms = 1_000_000
    while time.time() < end:
        tick = time.time()
        faulty = tick >= fault_at
        for _ in range(args.rate):
            t0 = time.time_ns()
            pay = int(rnd.uniform(4, 6) * ms) * (30 if faulty else 1)
            chk_work = int(rnd.uniform(2, 3) * ms)
            wire = int(rnd.uniform(0.2, 0.4) * ms)
            fe_work = int(rnd.uniform(1, 2) * ms)
            # Timeline: frontend works, calls checkout; checkout works, calls payment.
            fe_start = t0
            fe_client_start = fe_start + fe_work
            chk_start = fe_client_start + wire
            chk_client_start = chk_start + chk_work
            pay_start = chk_client_start + wire
            pay_end = pay_start + pay
            chk_client_end = pay_end + wire
            chk_end = chk_client_end + ms
            fe_client_end = chk_end + wire
            fe_end = fe_client_end + ms

            fe = tracers["frontend"].start_span("GET /checkout", kind=SpanKind.SERVER, start_time=fe_start)
            fe_ctx = trace.set_span_in_context(fe)
            fe_client = tracers["frontend"].start_span("POST checkout", context=fe_ctx, kind=SpanKind.CLIENT, start_time=fe_client_start)
            chk = tracers["checkout"].start_span("POST /orders", context=trace.set_span_in_context(fe_client), kind=SpanKind.SERVER, start_time=chk_start)
            chk_client = tracers["checkout"].start_span("POST payment", context=trace.set_span_in_context(chk), kind=SpanKind.CLIENT, start_time=chk_client_start)
            pay_span = tracers["payment"].start_span("POST /charge", context=trace.set_span_in_context(chk_client), kind=SpanKind.SERVER, start_time=pay_start)
            pay_span.end(end_time=pay_end)
            chk_client.end(end_time=chk_client_end)
            chk.end(end_time=chk_end)
            fe_client.end(end_time=fe_client_end)
            fe.end(end_time=fe_end)
            trace_ids.append(format(fe.get_span_context().trace_id, "032x"))
            spans["frontend"] += 2
            spans["checkout"] += 2
            spans["payment"] += 1
            edges["frontend->checkout"] += 1
            edges["checkout->payment"] += 1
        time.sleep(max(0.0, 1.0 - (time.time() - tick)))
    for p in providers.values():
        p.force_flush()
        p.shutdown()
    with open(args.out, "w") as fh:
        json.dump({"spans": spans, "edges": edges, "trace_ids": trace_ids,
                   "fault_at_ms": int(fault_at * 1000)}, fh)


if __name__ == "__main__":
    main()
