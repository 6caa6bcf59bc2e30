#!/usr/bin/env python3
"""Instructions per request of assignment tracking under callgrind (load-independent).

Runs the proxy under `valgrind --tool=callgrind` in mode A (tracking off) and mode B (tracking
on, uploading to a local sink; see bench/modes.py) and sends the same POST /sdk/v2/vardata
requests (50-flag workload) to both over one keep-alive connection:

  miss  every measured request has a user_id never seen before: each is built, deduped (a
        miss), serialised and uploaded (the worst case)
  hit   the measured requests repeat users sent before the counters were zeroed: each is a
        dedup hit in the local filter (the common production case)

Counters are zeroed after a warm-up and dumped after the measured requests plus a pause in
which the worker catches up and the uploader flushes (eventUploadPeriodMillis is set short).
The figure is total instructions of the proxy (all threads) / requests; B - A is what
tracking costs per request. The sink (Python) is not under callgrind: its CPU is not counted.

  bench/tracking_instructions.py [N]       (default N = 2000; BENCH_PROXY_BIN picks the binary)
"""
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import modes  # noqa: E402  (the sink, the configs, the user JSON split around its id)
import instructions  # noqa: E402  (callgrind around a server)
import run  # noqa: E402


def config(mode, flags, sink_port):
    path = modes.write_config(mode, flags, sink_port, 0)
    text = path.read_text().replace(
        "  metrics:", "  assignment:\n    eventUploadPeriodMillis: 200\n  metrics:")
    path.write_text(text)
    return path


def measure(mode, path_kind, flags, sink, n):
    prefix, suffix = modes.user_parts()
    headers = {"Authorization": f"Api-Key {run.KEY}", "Content-Type": "application/json"}
    env = dict(os.environ, AMPLITUDE_PORT=str(run.PROXY_PORT),
               AMPLITUDE_METRICS_PORT=str(run.METRICS_PORT), AMPLITUDE_LOG_LEVEL="warn")
    run.ensure_free(run.PROXY_PORT)
    cmd = [str(run.PROXY), "--config", str(config(mode, flags, sink.port))]
    counts = {}

    def send(conn, ids):
        for user_id in ids:
            status = instructions.request(conn, "POST", "/sdk/v2/vardata",
                                          (prefix + user_id + suffix).encode(), headers)
            if status != 200:
                raise RuntimeError(f"status {status}")

    def exercise(conn, control):
        # 12-character ids (the split user JSON is 3-byte aligned around them).
        warm = [f"w{i:011d}" for i in range(n)]
        send(conn, warm)
        time.sleep(2)
        control("-z")
        before = sink.counts()
        send(conn, warm if path_kind == "hit" else [f"m{i:011d}" for i in range(n)])
        time.sleep(3)
        control("-d")
        counts["posts"], counts["events"] = (c - c0 for c, c0 in zip(sink.counts(), before))

    total, dump = instructions.under_callgrind(
        cmd, None, env,
        lambda conn: instructions.request(conn, "GET", "/readyz", None, {}) == 200, exercise)
    return {"mode": mode, "path": path_kind, "instructions_per_request": total // n,
            "sink_posts": counts["posts"], "sink_events": counts["events"], "dump": dump}


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    modes.OUT.mkdir(parents=True, exist_ok=True)
    flags = run.WORKLOADS_DIR / "flags-50.json"
    sink = modes.Sink()
    rows = []
    try:
        for path_kind in ("miss", "hit"):
            for mode in ("A", "B"):
                row = measure(mode, path_kind, flags, sink, n)
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        sink.close()
    print()
    print(f"binary {run.PROXY}, {n} measured requests per cell")
    print("| path | A: tracking off, instr/req | B: tracking on, instr/req | B - A | B / A | "
          "uploads (events) during B |")
    print("|---|---|---|---|---|---|")
    for path_kind in ("miss", "hit"):
        a = next(r for r in rows if r["path"] == path_kind and r["mode"] == "A")
        b = next(r for r in rows if r["path"] == path_kind and r["mode"] == "B")
        ia, ib = a["instructions_per_request"], b["instructions_per_request"]
        print(f"| {path_kind} | {ia} | {ib} | {ib - ia} | {ib / ia:.3f} | "
              f"{b['sink_posts']} ({b['sink_events']}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
