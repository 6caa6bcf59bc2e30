#!/usr/bin/env bash
# Runs the official Flagsmith SDKs (PyPI `flagsmith`, npm `flagsmith-nodejs`) against the
# proxy, in remote evaluation mode (flags, identity flags; client- and server-side keys) and
# local evaluation mode (environment document), and checks their flags: expected values from
# cases.json, and remote identity flags (this proxy's engine) equal to each SDK's own local
# evaluation (the reference engines).
#
#   tools/flagsmith-clients/run.sh                                  build (debug) and run
#   PROXY_BIN=/path/to/evaluation-proxy tools/flagsmith-clients/run.sh   use that binary
#
# The proxy serves environment.json from a file (offline mode), so no Flagsmith account is
# needed. Exit 0 only if every check passed; the last line printed is `N passed, N failed`.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
SERVER_KEY="ser.flagsmith_clients_server_key"
CLIENT_KEY="client_key_1"

need() { command -v "$1" >/dev/null 2>&1 || { echo "error: $1 is required ($2)" >&2; exit 2; }; }
need node "Node.js 20 or later"
need npm "npm"
need python3 "Python 3.9 or later with venv"
need curl "curl"
[ -n "${PROXY_BIN:-}" ] || need cargo "the Rust toolchain"

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

if [ -n "${PROXY_BIN:-}" ]; then
  BIN="$PROXY_BIN"
else
  echo "== cargo build"
  (cd "$REPO" && cargo build --bin evaluation-proxy)
  BIN="${CARGO_TARGET_DIR:-$REPO/target}/debug/evaluation-proxy"
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/flagsmith-clients.XXXXXX")"
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

cat >"$WORK/config.yaml" <<YAML
configuration:
  host: 127.0.0.1
  port: $PORT
  metrics:
    port: $METRICS_PORT
  flagsmith:
    environments:
      - serverSideKey: "$SERVER_KEY"
        clientSideKey: "$CLIENT_KEY"
        documentFile: "$HERE/environment.json"
YAML
"$BIN" --config "$WORK/config.yaml" >"$WORK/proxy.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do
  if curl -fsS "http://127.0.0.1:$PORT/proxy/health" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then cat "$WORK/proxy.log" >&2; exit 1; fi
  sleep 0.1
done

API_URL="http://127.0.0.1:$PORT/api/v1/"
set +e
echo "== python (flagsmith $(.venv/bin/pip show flagsmith 2>/dev/null | sed -n 's/^Version: //p'))"
.venv/bin/python py_clients.py "$API_URL" "$SERVER_KEY" "$CLIENT_KEY" | tee "$WORK/python.out"
echo "== node (flagsmith-nodejs $(node -p 'require("./node_modules/flagsmith-nodejs/package.json").version'))"
node node-clients.mjs "$API_URL" "$SERVER_KEY" "$CLIENT_KEY" | tee "$WORK/node.out"
set -e

PASSED=$(cat "$WORK/python.out" "$WORK/node.out" | grep -c '^PASS ' || true)
FAILED=$(cat "$WORK/python.out" "$WORK/node.out" | grep -c '^FAIL ' || true)
# A client that crashed before reporting counts as a failure.
for out in python node; do
  grep -q "^$out: " "$WORK/$out.out" || FAILED=$((FAILED + 1))
done
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
