#!/usr/bin/env bash
# One command for the Flagsmith API benchmark: installs wrk if missing, builds the proxy in
# release mode and runs bench/flagsmith/run.py (BENCH_DURATION, BENCH_CONNECTIONS knobs).
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v wrk >/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq wrk
fi
cargo build --release --bin evaluation-proxy
exec python3 bench/flagsmith/run.py "$@"
