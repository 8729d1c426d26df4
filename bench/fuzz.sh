#!/usr/bin/env bash
# A longer run of every byte-level fuzz target (the `fuzz_` tests, `omen_common::fuzz`)
# than CI's 300 inputs each: CASES inputs per target drawn with SEED, in the test profile
# (overflow checks and debug assertions on). Prints each target's inputs, how many it
# took, and the wall time; fails on the first panic, with the input shrunk.
# Usage: CASES=20000 SEED=1 bench/fuzz.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cases=${CASES:-20000}
seed=${SEED:-1}
cd "$root"
cargo test --workspace --locked --no-run -q 2>/dev/null
start=$(date +%s)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
OMEN_FUZZ_CASES=$cases OMEN_FUZZ_SEED=$seed \
  cargo test --workspace --locked -q --lib fuzz_ -- --nocapture >"$log" 2>&1 || status=$?
grep -E '^fuzz |panicked|shrunk|^bytes:|FAILED' "$log" || true
echo "fuzz: $cases inputs per target, seed $seed, $(( $(date +%s) - start )) s, exit $status"
exit "$status"
