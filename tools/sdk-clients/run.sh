#!/usr/bin/env bash
# Runs the official Amplitude SDKs (Node server SDK, JS client under Node, Python SDK) against
# the proxy and checks that they receive the variants @amplitude/experiment-core computes.
#
#   tools/sdk-clients/run.sh               build the proxy (release), start it, run the checks
#   tools/sdk-clients/run.sh --self-test   same checks against stub-proxy.js (tests this harness)
#   PROXY_BIN=/path/to/evaluation-proxy tools/sdk-clients/run.sh   use that binary, do not build
#
# Exit 0 only if every check passed. The last line printed is `N passed, N failed`.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
MODE="proxy"
case "${1:-}" in
  "") ;;
  --self-test) MODE="stub" ;;
  -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
  *) echo "usage: $0 [--self-test]" >&2; exit 2 ;;
esac

need() { command -v "$1" >/dev/null 2>&1 || { echo "error: $1 is required ($2)" >&2; exit 2; }; }
need node "Node.js 20 or later"
need npm "npm"
need python3 "Python 3.9 or later with venv"
[ "$MODE" = stub ] || [ -n "${PROXY_BIN:-}" ] || need cargo "the Rust toolchain"

# ---- dependencies (installed once; reinstalled when the pins change) ----------------------------
cd "$HERE"
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "== npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi
if [ ! -x .venv/bin/python ] || [ ! -f .venv/.installed ] || [ requirements.txt -nt .venv/.installed ]; then
  echo "== python venv (.venv) + pip install -r requirements.txt"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
  touch .venv/.installed
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/sdk-clients.XXXXXX")"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
PORT="$(free_port)"
METRICS_PORT="$(free_port)"
while [ "$METRICS_PORT" = "$PORT" ]; do METRICS_PORT="$(free_port)"; done
PROXY_URL="http://127.0.0.1:$PORT"

# ---- the server ----------------------------------------------------------------------------------
if [ "$MODE" = proxy ]; then
  if [ -n "${PROXY_BIN:-}" ]; then
    BIN="$PROXY_BIN"
  else
    echo "== cargo build --release"
    (cd "$REPO" && cargo build --release --bin evaluation-proxy)
    BIN="${CARGO_TARGET_DIR:-$REPO/target}/release/evaluation-proxy"
  fi
  # examples/local.yaml, plus a second deployment serving extra-flags.json (groups, numbers,
  # booleans, versions, sets, non-string values). Absolute paths: the copy lives in a temp dir.
  cat >"$WORK/config.yaml" <<EOF
projects:
  - deployments:
      - key: client-local-example-deployment
        flagsFile: $REPO/examples/flags.json
      - key: client-sdk-clients-extra
        flagsFile: $HERE/extra-flags.json
configuration:
  port: $PORT
  metrics:
    port: $METRICS_PORT
EOF
  echo "== starting the proxy on $PROXY_URL (log: $WORK/proxy.log)"
  AMPLITUDE_PORT="$PORT" AMPLITUDE_METRICS_PORT="$METRICS_PORT" \
    "$BIN" --config "$WORK/config.yaml" >"$WORK/proxy.log" 2>&1 &
  SERVER_PID=$!
else
  echo "== starting stub-proxy.js on $PROXY_URL (self-test of this harness, not of the proxy)"
  node "$HERE/stub-proxy.js" "$PORT" >"$WORK/proxy.log" 2>&1 &
  SERVER_PID=$!
fi

ready=""
for _ in $(seq 1 300); do
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
  if node -e "fetch('$PROXY_URL/readyz').then(r => process.exit(r.status === 200 ? 0 : 1), () => process.exit(1))"; then
    ready=1
    break
  fi
  sleep 0.2
done
if [ -z "$ready" ]; then
  echo "error: the server did not become ready on $PROXY_URL/readyz; its log:" >&2
  tail -n 40 "$WORK/proxy.log" >&2 || true
  echo "0 passed, 1 failed"
  exit 1
fi

# ---- the clients and the check -------------------------------------------------------------------
export PROXY_URL
node "$HERE/lib/oracle.js" >"$WORK/plan.json"
echo "== Node server SDK, JS client, plain HTTP"
node "$HERE/node-clients.js" "$WORK/node.json" || echo "(node clients exited with $?)"
echo "== Python SDK"
"$HERE/.venv/bin/python" "$HERE/py-clients.py" "$WORK/plan.json" "$WORK/python.json" \
  || echo "(python clients exited with $?)"
echo "== check against @amplitude/experiment-core"
status=0
node "$HERE/check.js" "$WORK/node.json" "$WORK/python.json" || status=$?
if [ "$status" -ne 0 ] && [ "$MODE" = proxy ]; then
  echo "(proxy log tail:)"
  tail -n 15 "$WORK/proxy.log" | sed 's/^/    /' || true
fi
exit "$status"
