#!/usr/bin/env bash
# Differential test of our Amplitude engine against @amplitude/experiment-core (pinned in
# package-lock.json). One command: installs npm deps if missing, generates cases and JS
# results, builds the Rust runner (--release), compares, prints "N passed, N failed".
#
#   tools/engine-diff/run.sh [--seed N] [--count N] [--show N]
#
# Environment: ENGINE_DIFF_SEED / ENGINE_DIFF_COUNT override the defaults (20261121 / 10000).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
seed="${ENGINE_DIFF_SEED:-20261121}"
count="${ENGINE_DIFF_COUNT:-10000}"
show=10
while [[ $# -gt 0 ]]; do
  case "$1" in
    --seed) seed="$2"; shift 2 ;;
    --count) count="$2"; shift 2 ;;
    --show) show="$2"; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

cd "$here"
if [[ ! -d node_modules/@amplitude/experiment-core ]]; then
  npm ci --no-audit --no-fund
fi
mkdir -p out
node generate.mjs --seed "$seed" --count "$count" --out out/cases.jsonl

cd "$root"
cargo build --release --quiet --example engine_diff
"$root/target/release/examples/engine_diff" "$here/out/cases.jsonl" --show "$show"
