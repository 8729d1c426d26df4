//! The spans of the demo's shop: `storefront` calls `checkout`, which calls `payments`, with
//! traffic on the same day/night curve as the inventory service. Each request is a
//! storefront server span and its client span, checkout's server and client spans, and
//! payments' server span. While `SlowPayments` is injected, payments answers 8x slower:
//! nothing in the logs or the inventory's metrics shows it; only spans do.

use std::sync::Arc;

use omen_detector::traces::{Span, SpanId, SpanKind, StatusCode, TraceId};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal, Poisson};
use rand_xoshiro::Xoshiro256PlusPlus;

use super::sim::{daily_shape, Scenario, Trouble, MINUTE_MS};

const REQUESTS_NIGHT: f64 = 10.0;
const REQUESTS_DAY: f64 = 40.0;
const SLOWDOWN: f64 = 8.0;
const MS: u64 = 1_000_000;

pub struct SpanGenerator {
    scenario: Scenario,
    rng: Xoshiro256PlusPlus,
    next_id: u64,
    work_ms: LogNormal<f64>,
    names: [Arc<str>; 8],
}

impl SpanGenerator {
    pub fn new(scenario: Scenario, seed: u64) -> Self {
        let name = Arc::<str>::from;
        Self {
            scenario,
            rng: Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x7370_616e),
            next_id: 1,
            work_ms: LogNormal::new(0.0, 0.2).expect("finite parameters"),
            names: [
                name("storefront"),
                name("checkout"),
                name("payments"),
                name("GET /cart/checkout"),
                name("POST checkout"),
                name("POST /orders"),
                name("POST payments"),
                name("POST /charge"),
            ],
        }
    }

    /// The spans of the requests starting in the minute from `minute_ms`.
    pub fn minute(&mut self, minute_ms: i64) -> Vec<Span> {
        let rate = REQUESTS_NIGHT + (REQUESTS_DAY - REQUESTS_NIGHT) * daily_shape(minute_ms);
        let count = Poisson::new(rate).map_or(0, |p| p.sample(&mut self.rng) as u64);
        let slow = self.scenario.active(Trouble::SlowPayments, minute_ms);
        let mut spans = Vec::with_capacity(count as usize * 5);
        for _ in 0..count {
            let at = (minute_ms + self.rng.gen_range(0..MINUTE_MS)) as u64 * MS;
            self.request(at, slow, &mut spans);
        }
        spans
    }

    fn work(&mut self, median_ms: f64) -> u64 {
        (self.work_ms.sample(&mut self.rng) * median_ms * MS as f64) as u64
    }

    fn request(&mut self, at: u64, slow: bool, out: &mut Vec<Span>) {
        let trace = self.next_id;
        self.next_id += 1;
        let mut trace_id = [0u8; 16];
        trace_id[8..].copy_from_slice(&trace.to_be_bytes());
        let id = |k: u64| SpanId((trace * 8 + k).to_be_bytes());
        let wire = self.work(0.3);
        let front = self.work(3.0);
        let check = self.work(6.0);
        let pay = (self.work(20.0) as f64 * if slow { SLOWDOWN } else { 1.0 }) as u64;
        let pay_start = at + front + wire + check + wire;
        let check_client_end = pay_start + pay + wire;
        let check_end = check_client_end + MS;
        let front_client_end = check_end + wire;
        let n = &self.names;
        let span = |k: u64,
                    parent: Option<u64>,
                    service: &Arc<str>,
                    name: &Arc<str>,
                    kind,
                    start: u64,
                    end: u64| Span {
            trace_id: TraceId(trace_id),
            span_id: id(k),
            parent_id: parent.map(id),
            service: service.clone(),
            name: name.clone(),
            kind,
            start_unix_nano: start,
            duration_nano: end - start,
            status: StatusCode::Unset,
        };
        out.extend([
            span(
                1,
                None,
                &n[0],
                &n[3],
                SpanKind::Server,
                at,
                front_client_end + MS,
            ),
            span(
                2,
                Some(1),
                &n[0],
                &n[4],
                SpanKind::Client,
                at + front,
                front_client_end,
            ),
            span(
                3,
                Some(2),
                &n[1],
                &n[5],
                SpanKind::Server,
                at + front + wire,
                check_end,
            ),
            span(
                4,
                Some(3),
                &n[1],
                &n[6],
                SpanKind::Client,
                at + front + wire + check,
                check_client_end,
            ),
            span(
                5,
                Some(4),
                &n[2],
                &n[7],
                SpanKind::Server,
                pay_start,
                pay_start + pay,
            ),
        ]);
    }
}
