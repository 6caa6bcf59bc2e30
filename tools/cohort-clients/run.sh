#!/usr/bin/env bash
# Runs the official Amplitude SDKs in local evaluation with the proxy as their cohort server
# (Node: cohortSyncConfig.cohortServerUrl, Python: cohort_server_url) and checks that they give
# the same variants as the proxy's remote evaluation, for members and non-members of a user
# cohort and a group cohort. The proxy itself syncs flags and cohorts from fake-upstream.js.
#
#   tools/cohort-clients/run.sh                                    build (debug) and run
#   PROXY_BIN=/path/to/evaluation-proxy tools/cohort-clients/run.sh use that binary
#
# The pinned SDKs are installed in tools/sdk-clients (node_modules, .venv), shared with that
# script. Exit 0 only if every check passed; the last line printed is `N passed, N failed`.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
DEPS="$REPO/tools/sdk-clients"

need() { command -v "$1" >/dev/null 2>&1 || { echo "error: $1 is required ($2)" >&2; exit 2; }; }
need node "Node.js 20 or later"
need npm "npm"
need python3 "Python 3.9 or later with venv"
[ -n "${PROXY_BIN:-}" ] || need cargo "the Rust toolchain"

# ---- dependencies (the pins of tools/sdk-clients) -------------------------------------------------
cd "$DEPS"
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "== npm ci (tools/sdk-clients)"
  npm ci --no-audit --no-fund --loglevel=error
fi
if [ ! -x .venv/bin/python ] || [ ! -f .venv/.installed ] || [ requirements.txt -nt .venv/.installed ]; then
  echo "== python venv (tools/sdk-clients/.venv)"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
  touch .venv/.installed
fi
export NODE_PATH="$DEPS/node_modules"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/cohort-clients.XXXXXX")"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
UPSTREAM_PORT="$(free_port)"
PORT="$(free_port)"
METRICS_PORT="$(free_port)"
PROXY_URL="http://127.0.0.1:$PORT"
UPSTREAM_URL="http://127.0.0.1:$UPSTREAM_PORT"

# ---- fake upstream and proxy ----------------------------------------------------------------------
node "$HERE/fake-upstream.js" "$UPSTREAM_PORT" >"$WORK/upstream.log" 2>&1 &
PIDS+=("$!")

if [ -n "${PROXY_BIN:-}" ]; then
  BIN="$PROXY_BIN"
else
  echo "== cargo build"
  (cd "$REPO" && cargo build --bin evaluation-proxy)
  BIN="${CARGO_TARGET_DIR:-$REPO/target}/debug/evaluation-proxy"
fi
read -r DEPLOYMENT_KEY API_KEY SECRET_KEY < <(node -e '
  const s = require(process.argv[1]); console.log(s.DEPLOYMENT_KEY, s.API_KEY, s.SECRET_KEY)' "$HERE/scenario.js")
cat >"$WORK/config.yaml" <<EOF
projects:
  - apiKey: $API_KEY
    secretKey: $SECRET_KEY
    deployments:
      - key: $DEPLOYMENT_KEY
configuration:
  host: 127.0.0.1
  port: $PORT
  serverUrl: $UPSTREAM_URL
  cohortServerUrl: $UPSTREAM_URL
  metrics:
    port: $METRICS_PORT
EOF
echo "== starting the proxy on $PROXY_URL (upstream $UPSTREAM_URL)"
"$BIN" --config "$WORK/config.yaml" >"$WORK/proxy.log" 2>&1 &
PROXY_PID=$!
PIDS+=("$PROXY_PID")

ready=""
for _ in $(seq 1 300); do
  if ! kill -0 "$PROXY_PID" 2>/dev/null; then break; fi
  if node -e "fetch('$PROXY_URL/readyz').then(r => process.exit(r.status === 200 ? 0 : 1), () => process.exit(1))"; then
    ready=1
    break
  fi
  sleep 0.2
done
if [ -z "$ready" ]; then
  echo "error: the proxy did not become ready; its log:" >&2
  tail -n 40 "$WORK/proxy.log" >&2 || true
  echo "0 passed, 1 failed"
  exit 1
fi

# ---- clients and check ----------------------------------------------------------------------------
export PROXY_URL
node -e '
  const s = require(process.argv[1]);
  console.log(JSON.stringify({deploymentKey: s.DEPLOYMENT_KEY, apiKey: s.API_KEY, secretKey: s.SECRET_KEY, users: s.USERS}))' \
  "$HERE/scenario.js" >"$WORK/scenario.json"
echo "== Node server SDK (local evaluation with cohorts from the proxy, remote evaluation)"
node "$HERE/node-clients.js" "$WORK/node.json" || echo "(node clients exited with $?)"
echo "== Python SDK (local evaluation with cohorts from the proxy, remote evaluation)"
"$DEPS/.venv/bin/python" "$HERE/py-clients.py" "$WORK/scenario.json" "$WORK/python.json" \
  || echo "(python clients exited with $?)"
echo "== proxy log lines mentioning cohorts: $(grep -c cohort "$WORK/proxy.log" || true)"
status=0
node "$HERE/check.js" "$WORK/node.json" "$WORK/python.json" || status=$?
if [ "$status" -ne 0 ]; then
  echo "(proxy log tail:)"
  tail -n 15 "$WORK/proxy.log" | sed 's/^/    /' || true
fi
exit "$status"
