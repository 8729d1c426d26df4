#!/usr/bin/env bash
# omen agent vs mtail on the same inventory log, side by side, one core each.
#
# Generates a LINES-line log (bench/gen_inventory_log.py), runs `mtail --one_shot` with
# bench/inventory.mtail and `omen agent test` with examples/agent/inventory.yaml on it,
# RUNS times each, alternating, pinned to CPU core CORE under /usr/bin/time. Fails if the
# counts both can express disagree, then prints medians and the omen/mtail ratios.
#
# Usage: bench/agent_vs_mtail.sh
# Knobs (environment): LINES=1000000 RUNS=3 SEED=42 CORE=0 TIMEOUT=300 (per run, seconds)
#   MTAIL_STRPTIME=0 drops mtail's per-line timestamp parse (omen always parses it).
#   CARGO_TARGET_DIR as for cargo; the release binary is built there if out of date.
# Not a test: nothing is timed against a threshold; read the ratios.
set -euo pipefail

LINES=${LINES:-1000000}
RUNS=${RUNS:-3}
SEED=${SEED:-42}
CORE=${CORE:-0}
TIMEOUT=${TIMEOUT:-300}
MTAIL_STRPTIME=${MTAIL_STRPTIME:-1}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$repo/target}
omen=$target_dir/release/omen
rules=$repo/examples/agent/inventory.yaml

die() { echo "agent_vs_mtail: $*" >&2; exit 1; }

# --- tools (idempotent) -------------------------------------------------------------
need_packages=()
command -v mtail >/dev/null || need_packages+=(mtail)
[ -x /usr/bin/time ] || need_packages+=(time)
command -v taskset >/dev/null || need_packages+=(util-linux)
command -v python3 >/dev/null || need_packages+=(python3)
if [ ${#need_packages[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    echo "installing ${need_packages[*]}" >&2
    $sudo apt-get install -y "${need_packages[@]}" >/dev/null ||
        { $sudo apt-get update >/dev/null && $sudo apt-get install -y "${need_packages[@]}" >/dev/null; } ||
        die "cannot install ${need_packages[*]}"
fi

echo "building omen (release) in $target_dir" >&2
(cd "$repo" && CARGO_TARGET_DIR=$target_dir cargo build --release --quiet --bin omen) ||
    die "cargo build failed"

# --- scratch space, always removed --------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/omen-vs-mtail.XXXXXX")
trap 'rm -rf "$work"' EXIT
export TMPDIR=$work   # mtail's glog and anything else that writes temp files stay inside

log=$work/inventory.log
mkdir "$work/progs"
if [ "$MTAIL_STRPTIME" = 0 ]; then
    sed 's/^\( *\)strptime(/\1# strptime(/' "$repo/bench/inventory.mtail" > "$work/progs/inventory.mtail"
else
    cp "$repo/bench/inventory.mtail" "$work/progs/inventory.mtail"
fi

echo "generating $LINES lines (seed $SEED)" >&2
python3 "$repo/bench/gen_inventory_log.py" --lines "$LINES" --seed "$SEED" --out "$log"
bytes=$(stat -c %s "$log")

# --- runs ---------------------------------------------------------------------------
# run NAME I CMD...: stdout to $work/NAME.I.out, "wall user sys maxrss_kib" to NAME.I.time.
run() {
    local name=$1 i=$2
    shift 2
    # Warm the page cache so neither pays for the first read of the file.
    cat "$log" > /dev/null
    if ! /usr/bin/time -o "$work/$name.$i.time" -f "%e %U %S %M" \
        timeout "$TIMEOUT" taskset -c "$CORE" "$@" \
        > "$work/$name.$i.out" 2> "$work/$name.$i.err"; then
        tail -n 20 "$work/$name.$i.err" >&2
        die "$name run $i failed (see above)"
    fi
}
run_omen() { run omen "$1" "$omen" agent test --rules "$rules" --input "$log"; }
run_mtail() {
    run mtail "$1" mtail --one_shot --one_shot_format prometheus --emit_prog_label=false \
        --logtostderr --progs "$work/progs" --logs "$log"
}

for i in $(seq 1 "$RUNS"); do
    echo "run $i/$RUNS" >&2
    if [ $((i % 2)) -eq 1 ]; then run_omen "$i"; run_mtail "$i"
    else run_mtail "$i"; run_omen "$i"; fi
done

# --- check and report ---------------------------------------------------------------
python3 - "$work" "$RUNS" "$LINES" "$bytes" "$CORE" "$MTAIL_STRPTIME" <<'PY'
import math, re, statistics, sys

work, runs, lines, size, core, strptime = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')

def samples(path):
    out = {}
    with open(path) as f:
        for line in f:
            m = SAMPLE.match(line.rstrip("\n"))
            if m:
                labels = tuple(sorted(re.findall(r'(\w+)="([^"]*)"', m.group(2) or "")))
                out[(m.group(1), labels)] = float(m.group(3))
    return out

def family(s, name):
    return {k: v for k, v in s.items() if k[0] == name}

failures = []
for tool in ("omen", "mtail"):
    first = samples(f"{work}/{tool}.1.out")
    for i in range(2, runs + 1):
        if samples(f"{work}/{tool}.{i}.out") != first:
            failures.append(f"{tool}: run {i} output differs from run 1")

omen, mtail = samples(f"{work}/omen.1.out"), samples(f"{work}/mtail.1.out")
checked = 0
for name in ("hard_deletes_total", "http_requests_total",
             "http_request_duration_seconds_bucket", "http_request_duration_seconds_count",
             "http_request_duration_seconds_sum"):
    o, m = family(omen, name), family(mtail, name)
    if not o:
        failures.append(f"{name}: omen has no samples")
    for key in sorted(set(o) | set(m)):
        a, b = o.get(key), m.get(key)
        same = a is not None and b is not None and (
            a == b if not name.endswith("_sum") else math.isclose(a, b, rel_tol=1e-9))
        if not same:
            failures.append(f"{name}{dict(key[1])}: omen {a} mtail {b}")
        checked += 1

def one(s, name):
    return s.get((name, ()), float("nan"))

# mtail cannot pair by key with a timeout; it counts starts and ends, which omen's pair
# metrics must add up to.
starts = one(omen, "stock_event_matched_total") + one(omen, "stock_event_unmatched_total") + one(omen, "stock_event_pending")
ends = one(omen, "stock_event_matched_total") + one(omen, "stock_event_orphan_total")
for what, o, m in (("stock_event starts (matched+unmatched+pending)", starts, one(mtail, "stock_event_starts_total")),
                   ("stock_event ends (matched+orphan)", ends, one(mtail, "stock_event_ends_total"))):
    if o != m:
        failures.append(f"{what}: omen {o} mtail {m}")
    checked += 1

if failures:
    print("COUNTS DISAGREE:", file=sys.stderr)
    for f in failures[:50]:
        print("  " + f, file=sys.stderr)
    sys.exit(1)

def stats(tool):
    rows = []
    for i in range(1, runs + 1):
        wall, user, sys_, rss = open(f"{work}/{tool}.{i}.time").read().split()[-4:]
        cpu = float(user) + float(sys_)
        rows.append({"lps_wall": lines / max(float(wall), 1e-3), "lps_cpu": lines / max(cpu, 1e-3),
                     "cpu": cpu, "wall": float(wall), "rss": int(rss) / 1024})
    return {k: statistics.median(r[k] for r in rows) for k in rows[0]}

o, m = stats("omen"), stats("mtail")
print(f"omen agent test vs mtail --one_shot: {lines} lines ({size / 2**20:.1f} MiB), "
      f"core {core}, median of {runs}{'' if strptime != '0' else ', mtail without strptime'}")
print(f"counts agree: {checked} series/checks (hard deletes, requests, latency histogram, pair starts/ends)")
print()
print(f"{'':24}{'omen':>14}{'mtail':>14}{'omen/mtail':>12}")
rows = (("lines/s (wall)", "lps_wall", "{:,.0f}"), ("lines per CPU-second", "lps_cpu", "{:,.0f}"),
        ("CPU seconds (user+sys)", "cpu", "{:.2f}"), ("wall seconds", "wall", "{:.2f}"),
        ("peak RSS (MiB)", "rss", "{:.1f}"))
for label, key, fmt in rows:
    print(f"{label:24}{fmt.format(o[key]):>14}{fmt.format(m[key]):>14}{o[key] / m[key]:>11.2f}x")
print()
print("target: lines per CPU-second >= 5x mtail's; peak RSS <= 2x mtail's")
print("2 cores, several files: bench/agent_threads.sh")
PY
