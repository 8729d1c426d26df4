#!/usr/bin/env bash
# A production-like fleet through Prometheus and `omen detect --replay`, judged against
# its truth: `omen fleet` remote-writes about 200 series (two weeks of history, then a
# live week with seven injected incidents, a deploy and a campaign in the calendar) into a
# real Prometheus on 127.0.0.1 and writes the detector's configuration for it; the
# detector replays the live week from Prometheus by PromQL, alerting to stdout (every
# update delivered), and bench/fleet_judge.py prints
# per incident when it paged and with which root cause, the false pages, the early
# warnings and what warned before a slowly growing incident paged.
# Usage: bench/fleet.sh [SEED]      (needs Debian's prometheus; FLEET_KEEP=DIR keeps the
# truth, the detector's config, its alerts and its log in DIR)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
seed=${1:-1}
target=${CARGO_TARGET_DIR:-$root/target}
cargo build --release -q -p omen --manifest-path "$root/Cargo.toml"
omen=$target/release/omen
work=$(mktemp -d)
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
prom_port=$(port)
prometheus --config.file=<(echo 'global: { scrape_interval: 1m }') \
  --storage.tsdb.path="$work/data" --web.listen-address="127.0.0.1:$prom_port" \
  --web.enable-remote-write-receiver --storage.tsdb.retention.time=90d >"$work/prometheus.log" 2>&1 &
prom=$!
trap 'kill $prom 2>/dev/null; wait $prom 2>/dev/null; [ -n "${FLEET_KEEP:-}" ] && cp "$work"/*.json* "$work"/*.log "$work"/*.yaml "$FLEET_KEEP"/; rm -rf "$work"' EXIT
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$prom_port/-/ready" >/dev/null && break
  sleep 0.2
done

start=$(date +%s.%N)
"$omen" fleet --seed "$seed" --remote-write "http://127.0.0.1:$prom_port/api/v1/write" \
  --truth "$work/truth.json" --detect-config "$work/detect.yaml"
written=$(date +%s.%N)
range=$(python3 "$root/bench/fleet_judge.py" range "$work/truth.json")
"$omen" detect --config "$work/detect.yaml" --listen "127.0.0.1:$(port)" --replay "$range" --replay-pace 1ms \
  >"$work/alerts.jsonl" 2>"$work/detect.log"
done_at=$(date +%s.%N)
grep -o 'replay done.*' "$work/detect.log" | sed 's/\x1b\[[0-9;]*m//g'
python3 - "$start" "$written" "$done_at" <<'EOF'
import sys
start, written, done = map(float, sys.argv[1:])
print(f"written to Prometheus in {written - start:.1f} s; warm-up and replay in {done - written:.1f} s")
EOF
python3 "$root/bench/fleet_judge.py" judge "$work/truth.json" "$work/alerts.jsonl"
