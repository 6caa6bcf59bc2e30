#!/usr/bin/env python3
"""Instructions per request under callgrind: a load-independent cost figure for A/B changes.

Wall-clock and CPU-time figures on a shared 2-core machine vary by 2x between runs; the number
of user-space instructions one request costs does not. This runs a server under
`valgrind --tool=callgrind`, sends 200 warm-up requests, zeroes the counters, sends N requests
over one keep-alive connection, dumps, and prints total instructions / N (all threads).

  bench/instructions.py proxy  <binary> <workload> <endpoint> [N]
  bench/instructions.py ceiling <body-bytes> <endpoint> [N]

<endpoint> is one of the names bench/run.py prints ("POST /sdk/v2/vardata", "GET /v1/vardata",
...). Needs bench/run.sh to have generated bench/results/workloads and built the binaries.
"""
import base64
import glob
import http.client
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (bench/run.py: endpoints, paths)


def under_callgrind(cmd, cwd, env, ready, exercise):
    """Runs a server under callgrind and returns (total instructions of the dump, dump path).

    Waits until `ready(conn)` (one request on a keep-alive connection to the proxy port) returns
    True, then calls `exercise(conn, control)`, where `control("-z")` zeroes the counters and
    `control("-d")` dumps them; the dump is read after the server has stopped."""
    out = Path(tempfile.mkdtemp()) / "cg.out"
    proc = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"] + cmd,
                            cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)

    def control(flag):
        subprocess.run(["callgrind_control", flag, str(proc.pid)], capture_output=True,
                       check=True)

    try:
        conn = None
        for _ in range(1200):
            try:
                conn = http.client.HTTPConnection("127.0.0.1", run.PROXY_PORT, timeout=60)
                if ready(conn):
                    break
            except OSError:
                time.sleep(0.1)
        exercise(conn, control)
        time.sleep(0.5)
    finally:
        proc.terminate()
        proc.wait()
    dump = sorted(glob.glob(f"{out}.*"))[0]
    return int(re.search(r"^summary: (\d+)", Path(dump).read_text(), re.M).group(1)), dump


def request(conn, method, path, body, headers):
    """One request on `conn`; returns the status (the body is read and dropped)."""
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    response.read()
    return response.status


def measure(cmd, cwd, env, endpoint, n):
    user = (run.WORKLOADS_DIR / "user.json").read_bytes()
    method, path, headers, with_body = run.endpoints(base64.b64encode(user).decode())[endpoint]
    hdrs = dict(h.split(": ", 1) for h in headers)
    body = user if with_body else None

    def send(conn, k):
        for _ in range(k):
            status = request(conn, method, path, body, hdrs)
            if status != 200:
                raise RuntimeError(f"status {status}")

    def exercise(conn, control):
        send(conn, 200)
        control("-z")
        send(conn, n)
        control("-d")

    total, dump = under_callgrind(
        cmd, cwd, env, lambda conn: request(conn, method, path, body, hdrs) == 200, exercise)
    return total // n, dump


def main():
    args = sys.argv[1:]
    if len(args) < 3:
        print(__doc__)
        return 2
    env = dict(os.environ, AMPLITUDE_PORT=str(run.PROXY_PORT),
               AMPLITUDE_METRICS_PORT=str(run.METRICS_PORT), AMPLITUDE_LOG_LEVEL="warn")
    if args[0] == "proxy":
        # The server runs in the workloads directory: a relative binary path would not resolve.
        binary, workload, endpoint = str(Path(args[1]).resolve()), args[2], args[3]
        n = int(args[4]) if len(args) > 4 else 1000
        cmd = [binary, "--config", f"flags-{workload}.yaml"]
        label = f"{Path(binary).name} {workload} flags"
    else:
        size, endpoint = args[1], args[2]
        n = int(args[3]) if len(args) > 3 else 1000
        cmd = [str(run.CEILING), str(run.PROXY_PORT), size]
        label = f"ceiling {size} B"
    per_request, dump = measure(cmd, run.WORKLOADS_DIR, env, endpoint, n)
    print(f"{label} | {endpoint} | {per_request} instructions/request | {dump}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
