#!/usr/bin/env bash
# omen agent on several files: one reader thread on one core against two reader threads
# on two cores, side by side on the same files (and mtail's one-shot on them, for scale).
#
# Generates FILES logs of LINES/FILES lines each (bench/gen_inventory_log.py, different
# seeds), then runs `omen agent --oneshot --tail 'DIR/*.log'` with `--threads 1` pinned to
# one core and `--threads 2` on two cores, RUNS times each, alternating, under
# /usr/bin/time. Fails if the two give different metrics; prints medians and ratios.
#
# Usage: bench/agent_threads.sh
# Knobs (environment): LINES=1000000 FILES=4 RUNS=3 TIMEOUT=300 MTAIL=1 (0 skips mtail)
# Not a test: on a shared machine, read the ratios, and the CPU seconds beside them.
set -euo pipefail

LINES=${LINES:-1000000}
FILES=${FILES:-4}
RUNS=${RUNS:-3}
TIMEOUT=${TIMEOUT:-300}
MTAIL=${MTAIL:-1}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$repo/target}
omen=$target_dir/release/omen
rules=$repo/examples/agent/inventory.yaml
die() { echo "agent_threads: $*" >&2; exit 1; }

[ "$(nproc)" -ge 2 ] || die "needs at least 2 cores"
need=()
[ -x /usr/bin/time ] || need+=(time)
command -v bc >/dev/null || need+=(bc)
command -v taskset >/dev/null || need+=(util-linux)
{ [ "$MTAIL" = 0 ] || command -v mtail >/dev/null; } || need+=(mtail)
if [ ${#need[@]} -gt 0 ]; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get install -y "${need[@]}" >/dev/null ||
        { $sudo apt-get update >/dev/null && $sudo apt-get install -y "${need[@]}" >/dev/null; } ||
        die "cannot install ${need[*]}"
fi
(cd "$repo" && CARGO_TARGET_DIR=$target_dir cargo build --release --quiet --bin omen) || die "cargo build failed"

work=$(mktemp -d "${TMPDIR:-/tmp}/omen-threads.XXXXXX")
trap 'rm -rf "$work"' EXIT
export TMPDIR=$work
mkdir "$work/logs" "$work/progs"
cp "$repo/bench/inventory.mtail" "$work/progs/"
echo "generating $FILES files of $((LINES / FILES)) lines" >&2
for i in $(seq 1 "$FILES"); do
    python3 "$repo/bench/gen_inventory_log.py" --lines $((LINES / FILES)) --seed "$i" --out "$work/logs/part$i.log"
done
glob="$work/logs/*.log"
logs_csv=$(ls "$work"/logs/*.log | paste -sd, -)

run() {  # run NAME I CORES CMD...
    local name=$1 i=$2 cores=$3
    shift 3
    cat "$work"/logs/*.log > /dev/null
    /usr/bin/time -o "$work/$name.$i.time" -f "%e %U %S %M" timeout "$TIMEOUT" taskset -c "$cores" "$@" \
        > "$work/$name.$i.out" 2> "$work/$name.$i.err" || { tail -n 20 "$work/$name.$i.err" >&2; die "$name run $i failed"; }
}
for i in $(seq 1 "$RUNS"); do
    run one "$i" 0 "$omen" agent --oneshot --rules "$rules" --tail "$glob" --threads 1
    run two "$i" 0,1 "$omen" agent --oneshot --rules "$rules" --tail "$glob" --threads 2
    if [ "$MTAIL" != 0 ]; then
        run mtail "$i" 0,1 mtail --one_shot --one_shot_format prometheus --logtostderr --progs "$work/progs" --logs "$logs_csv"
    fi
done
cmp -s "$work/one.1.out" "$work/two.1.out" || die "one and two threads gave different metrics"

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
field() { for i in $(seq 1 "$RUNS"); do awk -v f="$2" '{ print $f }' "$work/$1.$i.time"; done | median; }
cpu() { for i in $(seq 1 "$RUNS"); do awk '{ print $2 + $3 }' "$work/$1.$i.time"; done | median; }
printf '%-34s %12s %12s %10s %10s\n' "$LINES lines in $FILES files" "wall s" "lines/s" "CPU s" "RSS MiB"
for name in one two mtail; do
    [ -f "$work/$name.1.time" ] || continue
    wall=$(field "$name" 1)
    label=$name
    case $name in
        one) label="omen, 1 thread, 1 core" ;;
        two) label="omen, 2 threads, 2 cores" ;;
        mtail) label="mtail one-shot, 2 cores" ;;
    esac
    printf '%-34s %12s %12.0f %10s %10.1f\n' "$label" "$wall" "$(echo "$LINES / $wall" | bc -l)" "$(cpu "$name")" \
        "$(echo "$(field "$name" 4) / 1024" | bc -l)"
done
printf 'speed-up of 2 threads on 2 cores over 1 thread on 1 core (wall): %.2fx\n' \
    "$(echo "$(field one 1) / $(field two 1)" | bc -l)"
