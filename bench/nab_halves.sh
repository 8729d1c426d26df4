#!/usr/bin/env bash
# Judges detector settings on two halves of the NAB development split, so that a gain
# found on some files can be checked on files it was not found on. The halves are fixed:
# files alternate between A and B within each category, in sorted order. Each setting
# (the defaults, then every CONFIG.yaml given, its `detector:` section overriding the defaults
# as `omen backtest --config` reads it) runs over forest seeds 1-10 and 42 on half A, half B and
# all files, and the mean normalised scores (standard / reward-low-FP / reward-low-FN)
# are printed with their change from the defaults.
# Usage: bench/nab_halves.sh [CONFIG.yaml ...]   (NAB=DIR, default ../shared/nab)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
nab=${NAB:-$root/../shared/nab}
target=${CARGO_TARGET_DIR:-$root/target}
cargo build --release -q -p omen --manifest-path "$root/Cargo.toml"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

index=0
while IFS= read -r file; do
  half=$([ $((index % 2)) -eq 0 ] && echo A || echo B)
  category=$(basename "$(dirname "$file")")
  mkdir -p "$work/$half/$category"
  ln -s "$file" "$work/$half/$category/"
  index=$((index + 1))
done < <(find "$nab/data" -name '*.csv' | sort)

# One backtest: prints its three normalised scores on one line.
score() { # DATA CONFIG SEED
  local dir
  dir=$(mktemp -d -p "$work")
  python3 - "$2" "$3" > "$dir/config.json" <<'PY'
import json, sys, yaml
config = (yaml.safe_load(open(sys.argv[1])) or {}) if sys.argv[1] else {}
config.setdefault("detector", {}).setdefault("forest", {})["seed"] = int(sys.argv[2])
print(json.dumps(config))
PY
  "$target/release/omen" backtest "$1" --labels "$nab/labels/combined_windows.json" \
    --out "$dir" --name halves --no-plots --config "$dir/config.json" |
    awk '/^(standard|reward)/ { printf "%s ", $4 } END { print "" }'
  rm -rf "$dir"
}

cat > "$work/summary.py" <<'PY'
import collections, sys
runs = collections.defaultdict(list)
for line in sys.stdin:
    name, part, *scores = line.split()
    runs[(name, part)].append([float(s) for s in scores])
mean = {key: [sum(c) / len(c) for c in zip(*rows)] for key, rows in runs.items()}
print("%-32s %22s %22s %22s" % ("setting", "half A", "half B", "all files"))
for name in dict.fromkeys(name for name, _ in mean):
    cells = []
    for part in ("A", "B", "all"):
        m, d = mean[(name, part)], mean[("defaults", part)]
        delta = "" if name == "defaults" else " %+.1f" % (sum(m) / 3 - sum(d) / 3)
        cells.append("/".join("%.1f" % v for v in m) + delta)
    print("%-32s %22s %22s %22s" % (name, *cells))
PY

for config in "" "$@"; do
  for part in A B all; do
    data=$([ "$part" = all ] && echo "$nab/data" || echo "$work/$part")
    for seed in 1 2 3 4 5 6 7 8 9 10 42; do
      echo "${config:-defaults} $part $(score "$data" "$config" "$seed")"
    done
  done
done | python3 "$work/summary.py"
