#!/usr/bin/env python3
"""Latency at a fixed request rate: proxy vs. the ceiling, open loop, with oha.

bench/run.py drives each server as fast as it can (closed loop: a connection sends its next
request when the last one returns). That measures throughput; its p99 is mostly queueing, since
at saturation 64 connections wait on each other (Little's law: mean latency = connections /
throughput). This script answers the other question, what latency a client sees at a given load:
oha sends a fixed number of requests per second over 64 connections and corrects for coordinated
omission (`--latency-correction`: a request's latency counts from when it was due, not from when
a free connection sent it), so a stalled server shows in the tail instead of hiding in a lower
rate. Proxy and ceiling get the same rates, one after the other, on the same machine.

  python3 bench/latency.py          (after bench/run.sh has built both servers and the workloads)

Environment knobs (all optional):
  BENCH_RATES        space-separated request rates per second (default "5000 10000 20000")
  BENCH_DURATION     whole seconds per cell (default 5)
  BENCH_CONNECTIONS  connections (default 64)
  BENCH_WORKLOAD     flag count of the workload (default 50)
  BENCH_ENDPOINTS    comma-separated endpoint names as bench/run.py prints them
                     (default "POST /sdk/v2/vardata,GET /sdk/v2/vardata,GET /v1/vardata")
  BENCH_PROXY_BIN    proxy binary (default target/release/evaluation-proxy)
oha is installed with `cargo install oha --locked` when missing.
"""
import base64
import datetime
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (bench/run.py: endpoints, servers, paths)


def ensure_oha():
    if shutil.which("oha"):
        return "oha"
    cargo_bin = Path.home() / ".cargo" / "bin" / "oha"
    if not cargo_bin.exists():
        print("installing oha (cargo install oha --locked)", file=sys.stderr, flush=True)
        subprocess.run(["cargo", "install", "oha", "--locked"], check=True)
    return str(cargo_bin)


def oha(binary, port, method, path, headers, body_file, connections, rate, seconds):
    """One open-loop cell; returns rps, success rate and latency percentiles in ms."""
    cmd = [binary, "--no-tui", "--output-format", "json", "-z", f"{seconds}s",
           "-c", str(connections), "-q", str(rate), "--latency-correction", "-m", method]
    for header in headers:
        cmd += ["-H", header]
    if body_file:
        cmd += ["-D", str(body_file)]
    cmd.append(f"http://127.0.0.1:{port}{path}")
    out = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    pct = out["latencyPercentiles"]
    statuses = out.get("statusCodeDistribution", {})
    return {"rps": out["summary"]["requestsPerSec"],
            "success": out["summary"]["successRate"],
            "non_200": sum(n for code, n in statuses.items() if code != "200"),
            "p50_ms": pct["p50"] * 1000, "p99_ms": pct["p99"] * 1000,
            "p999_ms": pct["p99.9"] * 1000}


def main():
    rates = [int(r) for r in os.environ.get("BENCH_RATES", "5000 10000 20000").split()]
    seconds = int(os.environ.get("BENCH_DURATION", "5"))
    conns = int(os.environ.get("BENCH_CONNECTIONS", "64"))
    count = int(os.environ.get("BENCH_WORKLOAD", "50"))
    default_eps = "POST /sdk/v2/vardata,GET /sdk/v2/vardata,GET /v1/vardata"
    wanted = [e.strip() for e in os.environ.get("BENCH_ENDPOINTS", default_eps).split(",")]
    binary = ensure_oha()
    user_file = run.WORKLOADS_DIR / "user.json"
    user_b64 = base64.b64encode(user_file.read_bytes()).decode()
    eps = {k: v for k, v in run.endpoints(user_b64).items() if k in wanted}
    load_before = open("/proc/loadavg").read().split()[:3]
    run.RESULTS.mkdir(parents=True, exist_ok=True)
    rows, ceilings, port = [], {}, run.CEILING_BASE_PORT
    log = open(run.RESULTS / f"proxy-latency-{count}.log", "w")
    proc, _ = run.start_proxy(run.WORKLOADS_DIR / f"flags-{count}.yaml", log)
    try:
        for name, (method, path, headers, with_body) in eps.items():
            body = user_file.read_bytes() if with_body else None
            status, payload, resp_headers = run.http_get(run.PROXY_PORT, path, headers, method, body)
            if status != 200:
                raise RuntimeError(f"{name}: status {status}: {payload[:200]!r}")
            encoding = resp_headers.get("Content-Encoding") or resp_headers.get("content-encoding")
            key = (len(payload), encoding)
            if key not in ceilings:
                ceilings[key] = (port, run.start_ceiling(port, len(payload), encoding))
                port += 1
            body_file = user_file if with_body else None
            for target_port in (run.PROXY_PORT, ceilings[key][0]):  # warm-up
                oha(binary, target_port, method, path, headers, body_file, conns, 2000, 1)
            for rate in rates:
                p = oha(binary, run.PROXY_PORT, method, path, headers, body_file, conns, rate,
                        seconds)
                c = oha(binary, ceilings[key][0], method, path, headers, body_file, conns, rate,
                        seconds)
                rows.append({"endpoint": name, "rate": rate, "proxy": p, "ceiling": c,
                             "response_bytes": len(payload)})
                print(f"  {name:24} {rate:>6}/s proxy p50 {p['p50_ms']:.2f} p99 {p['p99_ms']:.2f}"
                      f" ms | ceiling p50 {c['p50_ms']:.2f} p99 {c['p99_ms']:.2f} ms", flush=True)
    finally:
        run.stop(proc)
        for _, cproc in ceilings.values():
            run.stop(cproc)
        log.close()
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "nproc": os.cpu_count(), "load_before": load_before,
            "load_after": open("/proc/loadavg").read().split()[:3],
            "connections": conns, "seconds": seconds, "workload": count}
    report = markdown(meta, rows)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    (run.RESULTS / f"latency-{stamp}.json").write_text(json.dumps({"meta": meta, "rows": rows},
                                                                 indent=1))
    (run.RESULTS / f"latency-{stamp}.md").write_text(report)
    print()
    print(report)
    return 0


def markdown(meta, rows):
    lines = [f"Run {meta['date']} ({meta['nproc']} cores), load average before {meta['load_before']}, "
             f"after {meta['load_after']}; {meta['workload']} flags, {meta['connections']} "
             f"connections, {meta['seconds']} s per cell, oha at a fixed rate with latency "
             "correction; oha and the server share the cores.", "",
             "| Endpoint | rate/s | proxy req/s | proxy p50 ms | proxy p99 ms | proxy p99.9 ms | "
             "non-200 | ceiling p50 ms | ceiling p99 ms | ceiling p99.9 ms |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        p, c = r["proxy"], r["ceiling"]
        lines.append(f"| {r['endpoint']} | {r['rate']} | {p['rps']:.0f} | {p['p50_ms']:.2f} | "
                     f"{p['p99_ms']:.2f} | {p['p999_ms']:.2f} | {p['non_200']} | "
                     f"{c['p50_ms']:.2f} | {c['p99_ms']:.2f} | {c['p999_ms']:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
