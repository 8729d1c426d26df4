#!/usr/bin/env bash
# Spans per second per core through decode → span metrics → trace assembly → service
# graph → span series → root-cause evidence (omen detect's trace pipeline), on OTLP
# protobuf batches of 512 spans, pinned to one core; median of RUNS; then the heap held
# per span-metrics series and per service-graph edge.
# Usage: bench/traces.sh      knobs: SPANS (2000000) RUNS (5) CORE (0)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
spans=${SPANS:-2000000}
runs=${RUNS:-5}
core=${CORE:-0}
cargo build --release -q -p omen-detector-live --example trace_bench --manifest-path "$root/Cargo.toml"
target=${CARGO_TARGET_DIR:-$root/target}
taskset -c "$core" "$target/release/examples/trace_bench" "$spans" "$runs"
