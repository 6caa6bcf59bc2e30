#!/usr/bin/env bash
# One command for the cohort-scale benchmark (issue 5 item 6): builds the proxy and the lookup
# latency example in release mode, then runs bench/cohort-scale/run.py (see its header for what
# is measured and the COHORT_SCENARIOS / LOOKUP_SAMPLES knobs). Needs node and redis-server.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v node >/dev/null || { echo "error: node is required" >&2; exit 2; }
command -v redis-server >/dev/null || { echo "error: redis-server is required" >&2; exit 2; }
cargo build --release --bin evaluation-proxy --example cohort_lookup_latency
exec python3 bench/cohort-scale/run.py "$@"
