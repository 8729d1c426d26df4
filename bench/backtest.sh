#!/usr/bin/env bash
# Throughput of the whole backtest path (ingest, detection with both models, results,
# scoring) on the NAB development split, pinned to one core. Prints the detection
# throughput from the report (points/s per core) and the wall time of the whole run.
# Usage: bench/backtest.sh [NAB_DIR]   (default: ../shared/nab beside the repository)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
nab=${1:-$root/../shared/nab}
target=${CARGO_TARGET_DIR:-$root/target}
cargo build --release -q -p omen --manifest-path "$root/Cargo.toml"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
pin=()
command -v taskset >/dev/null && pin=(taskset -c 0)
for run in 1 2 3; do
  start=$(date +%s.%N)
  "${pin[@]}" "$target/release/omen" backtest "$nab/data" --labels "$nab/labels/combined_windows.json" \
    --out "$out" --name bench --no-plots > "$out/summary.txt"
  end=$(date +%s.%N)
  python3 - "$out/bench/report.json" "$start" "$end" "$run" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
wall = float(sys.argv[3]) - float(sys.argv[2])
print(f"run {sys.argv[4]}: {r['points']} points, detection {r['points_per_second']:,.0f} points/s/core, "
      f"whole run {r['points'] / wall:,.0f} points/s ({wall:.2f} s), state <= {r['max_state_bytes']} B")
PY
done
grep -E '^(standard|reward)' "$out/summary.txt"
