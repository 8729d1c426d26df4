#!/usr/bin/env bash
# Template mining against drain3, side by side on the same messages: the <Content> of the
# 11 Loghub development systems (../shared/logpatterns), repeated to LINES lines. Both
# mine the whole stream once, online, pinned to one core. Prints lines/s per core, the
# ratio, templates found, peak RSS and omen's memory per template.
# Usage: bench/patterns_vs_drain3.sh      knobs: LINES (1000000) RUNS (3) CORE (0)
#        DRAIN3_LINES (LINES; drain3 on fewer lines of the same stream, for a quick run)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
shared=${SHARED:-$root/../shared/logpatterns}
lines=${LINES:-1000000}
runs=${RUNS:-3}
core=${CORE:-0}
drain3_lines=${DRAIN3_LINES:-$lines}
target=${CARGO_TARGET_DIR:-$root/target}

python3 -c 'import drain3' 2>/dev/null || python3 -m pip install --quiet drain3
command -v /usr/bin/time >/dev/null || { apt-get install -y -qq time >/dev/null; }
cargo build --release -q -p omen --manifest-path "$root/Cargo.toml"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

python3 - "$shared/systems" "$lines" "$work/messages.txt" <<'PY'
import os, re, sys
systems, lines, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def header(fmt):
    rx = ''
    for part in re.split(r'(<[^<>]+>)', fmt):
        rx += '(?P<%s>.*?)' % part[1:-1] if re.fullmatch(r'<[^<>]+>', part) else re.sub(' +', r'\\s+', part)
    return re.compile('^' + rx + '$')
messages = []
for name in sorted(os.listdir(systems)):
    if not os.path.isfile(os.path.join(systems, name, 'format.txt')):
        continue
    rx = header(open(os.path.join(systems, name, 'format.txt')).read().strip())
    for line in open(os.path.join(systems, name, name + '.log')):
        m = rx.match(line.strip())
        messages.append(m.group('Content') if m else line.strip())
with open(out, 'w') as f:
    for i in range(lines):
        f.write(messages[i % len(messages)] + '\n')
PY
head -n "$drain3_lines" "$work/messages.txt" > "$work/drain3.txt"
cat "$work/messages.txt" "$work/drain3.txt" > /dev/null  # into the page cache

cat > "$work/drain3_run.py" <<'PY'
import sys, time
from drain3 import TemplateMiner
from drain3.template_miner_config import TemplateMinerConfig
from drain3.masking import MaskingInstruction
config = TemplateMinerConfig()
# drain3's defaults with the generic masks of the benchmark's reference column:
# numbers, IP addresses and hex, no per-system setting.
config.masking_instructions = [
    MaskingInstruction(r'((?<=[^A-Za-z0-9])|^)(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})((?=[^A-Za-z0-9])|$)', 'IP'),
    MaskingInstruction(r'((?<=[^A-Za-z0-9])|^)(0x[a-fA-F0-9]+)((?=[^A-Za-z0-9])|$)', 'HEX'),
    MaskingInstruction(r'((?<=[^A-Za-z0-9])|^)([\-\+]?\d+)((?=[^A-Za-z0-9])|$)', 'NUM'),
]
config.profiling_enabled = False
miner = TemplateMiner(config=config)
lines = 0
start = time.process_time()
with open(sys.argv[1]) as f:
    for line in f:
        miner.add_log_message(line.rstrip('\n'))
        lines += 1
cpu = time.process_time() - start
print(f"{lines} {cpu:.3f} {len(miner.drain.clusters)}")
PY

omen_rates=()
for run in $(seq "$runs"); do
  start=$(date +%s.%N)
  /usr/bin/time -f "%M" -o "$work/omen.rss" taskset -c "$core" \
    "$target/release/omen" agent patterns --input "$work/messages.txt" > /dev/null 2> "$work/omen.err"
  end=$(date +%s.%N)
  omen_rates+=("$(python3 -c "print($lines / ($end - $start))")")
done
omen_rate=$(printf '%s\n' "${omen_rates[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
omen_summary=$(grep -E '^[0-9]+ lines' "$work/omen.err")

/usr/bin/time -f "%M" -o "$work/drain3.rss" taskset -c "$core" \
  python3 "$work/drain3_run.py" "$work/drain3.txt" > "$work/drain3.out"
read -r d_lines d_cpu d_templates < "$work/drain3.out"
drain3_rate=$(python3 -c "print($d_lines / $d_cpu)")

python3 - "$lines" "$omen_rate" "$omen_summary" "$(cat "$work/omen.rss")" \
  "$d_lines" "$drain3_rate" "$d_templates" "$(cat "$work/drain3.rss")" "$runs" <<'PY'
import re, sys
lines, omen_rate, summary, omen_rss, d_lines, d_rate, d_templates, d_rss, runs = sys.argv[1:]
templates = re.search(r'(\d+) templates', summary).group(1)
per = re.search(r'(\d+) B per template', summary)
print(f"template mining: omen agent patterns ({lines} lines, median of {runs}) vs drain3 ({d_lines} lines, one run)")
print(f"{'':24}{'omen':>14}{'drain3':>14}{'omen/drain3':>13}")
print(f"{'lines/s per core':24}{float(omen_rate):>14,.0f}{float(d_rate):>14,.0f}{float(omen_rate)/float(d_rate):>12.1f}x")
print(f"{'templates':24}{templates:>14}{d_templates:>14}")
print(f"{'peak RSS (MiB)':24}{int(omen_rss)/1024:>14.1f}{int(d_rss)/1024:>14.1f}")
if per:
    print(f"omen holds {per.group(1)} B per template (templates, their text and the lookups)")
print("omen's rate is wall time of the whole command (read, mine, print); drain3's is CPU time of its loop alone")
PY
