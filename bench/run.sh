#!/usr/bin/env bash
# One command for the HTTP benchmark: installs wrk if missing, builds the proxy and the ceiling
# server in release mode, generates the workloads, and runs bench/run.py (see its header for the
# BENCH_* knobs). Results: stdout and bench/results/http-<timestamp>.{md,json}.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v wrk >/dev/null; then
  echo "installing wrk (Debian package)" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq wrk
fi

cargo build --release --bin evaluation-proxy
# The ceiling is its own tiny workspace; sharing the target dir reuses compiled dependencies.
CARGO_TARGET_DIR="$PWD/target" cargo build --release --manifest-path bench/ceiling/Cargo.toml

python3 bench/gen_workloads.py bench/results/workloads
exec python3 bench/run.py "$@"
