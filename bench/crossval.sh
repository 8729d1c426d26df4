#!/usr/bin/env bash
# The development protocol: every setting on both development corpora (NAB and the
# service/telemetry KPIs), scored on the whole set and cross-validated leave-one-category-
# out (each category at the threshold best on the other categories, the folds' raw scores
# summed and normalised once), for the combined detector and each `--models` ablation.
# A change is kept only if it holds on both corpora and on the cross-validated figures.
# Usage: bench/crossval.sh [CONFIG.yaml ...]   (each CONFIG's `detector:` section overrides
#        the defaults as `omen backtest --config` reads it; SHARED=DIR, default
#        ../shared; MODELS="combined baseline forest shape" by default)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
shared=${SHARED:-$root/../shared}
target=${CARGO_TARGET_DIR:-$root/target}
models=${MODELS:-combined baseline forest shape}
cargo build --release -q -p omen --manifest-path "$root/Cargo.toml"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

printf '%-24s %-9s %-5s %21s %21s %11s %11s\n' setting models set \
  "whole std/lowFP/lowFN" "crossval std/FP/FN" "mean fold" "worst fold"
for config in defaults "$@"; do
  for model in $models; do
    for corpus in nab kpi; do
      out="$work/$corpus"
      args=()
      [ "$config" != defaults ] && args=(--config "$config")
      "$target/release/omen" backtest "$shared/$corpus/data" \
        --labels "$shared/$corpus/labels/combined_windows.json" --out "$out" \
        --name cv --no-plots --models "$model" "${args[@]}" > /dev/null
      python3 - "$out/cv/report.json" "$(basename "$config")" "$model" "$corpus" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
whole = "/".join(f"{p['normalised']:.1f}" for p in report["profiles"])
cv = report["cross_validated"]
crossval = "/".join(f"{c['normalised']:.1f}" for c in cv)
fold = lambda f: "-" if f is None else f"{f:.1f}"
print(f"{sys.argv[2]:<24} {sys.argv[3]:<9} {sys.argv[4]:<5} {whole:>21} {crossval:>21} "
      f"{fold(cv[0]['mean_fold']):>11} {fold(cv[0]['worst_fold']):>11}")
PY
      rm -rf "$out"
    done
  done
done
