#!/usr/bin/env bash
# One command for the serving-modes A/B benchmark (memory vs. Redis store, tracking off vs. on):
# installs wrk if missing, builds the proxy in release mode, generates the workloads, and runs
# bench/modes.py (see its header for the BENCH_* knobs). Needs redis-server on PATH.
# Results: stdout and bench/results/modes-<timestamp>.{md,json}.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v wrk >/dev/null; then
  echo "installing wrk (Debian package)" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq wrk
fi
command -v redis-server >/dev/null || { echo "redis-server is needed (apt-get install redis-server)" >&2; exit 1; }

cargo build --release --bin evaluation-proxy
python3 bench/gen_workloads.py bench/results/workloads
exec python3 bench/modes.py "$@"
