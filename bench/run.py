#!/usr/bin/env python3
"""HTTP benchmark driver: proxy vs. a minimal axum ceiling, with wrk. Run via bench/run.sh.

For each workload (5, 50, 350 flags) it starts the release proxy in local mode, records
start-up-to-ready time and idle RSS, measures each endpoint's response size, starts one ceiling
server per distinct response size, then drives proxy and ceiling alternately (same requests,
same concurrency, same duration) and prints Markdown tables plus a target check.

Environment knobs (all optional):
  BENCH_DURATION     whole seconds per cell (default 4)
  BENCH_WARMUP       whole seconds of warm-up per server and endpoint, 0 for none (default 1)
  BENCH_CONNECTIONS  space-separated connection counts (default "1 16 64 256")
  BENCH_WORKLOADS    space-separated flag counts (default "5 50 350")
  BENCH_ENDPOINTS    comma-separated endpoint names as printed, e.g.
                     "GET /sdk/v2/flags,POST /sdk/v2/vardata" (default: all five)
  BENCH_STARTUPS     start-up repetitions for examples/local.yaml (default 10)
  BENCH_PROXY_BIN    proxy binary to measure (default target/release/evaluation-proxy), for A/B runs
  BENCH_PORT_BASE    proxy port (default 18546); metrics and ceiling ports follow it
"""
import base64
import datetime
import http.client
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
WORKLOADS_DIR = RESULTS / "workloads"
PROXY = Path(os.environ.get("BENCH_PROXY_BIN", ROOT / "target" / "release" / "evaluation-proxy"))
CEILING = ROOT / "target" / "release" / "bench-ceiling"
LUA = ROOT / "bench" / "request.lua"
KEY = "client-local-example-deployment"
# BENCH_PORT_BASE moves all three (proxy, metrics = +44, ceilings = +54..), so that two
# benchmarks on one machine cannot answer each other's requests.
PORT_BASE = int(os.environ.get("BENCH_PORT_BASE", "18546"))
PROXY_PORT = PORT_BASE
METRICS_PORT = PORT_BASE + 44
CEILING_BASE_PORT = PORT_BASE + 54
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def endpoints(user_b64):
    """name -> (method, path, extra headers, send user as body)."""
    auth = f"Authorization: Api-Key {KEY}"
    return {
        "POST /sdk/v2/vardata": ("POST", "/sdk/v2/vardata",
                                 [auth, "Content-Type: application/json"], True),
        "GET /sdk/v2/vardata": ("GET", "/sdk/v2/vardata",
                                [auth, f"X-Amp-Exp-User: {user_b64}"], False),
        "GET /sdk/v2/flags": ("GET", "/sdk/v2/flags", [auth], False),
        "GET /sdk/v2/flags gzip": ("GET", "/sdk/v2/flags", [auth, "Accept-Encoding: gzip"], False),
        "GET /v1/vardata": ("GET", "/v1/vardata?user_id=user-8f14e45f&device_id=device-3b5d5c37",
                            [auth], False),
    }


# --- processes -------------------------------------------------------------------------------

def http_get(port, path, headers=(), method="GET", body=None, timeout=2.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        hdrs = dict(h.split(": ", 1) for h in headers)
        conn.request(method, path, body=body, headers=hdrs)
        response = conn.getresponse()
        return response.status, response.read(), dict(response.getheaders())
    finally:
        conn.close()


def start_proxy(config, log):
    """Starts the proxy; returns (process, seconds from spawn to the first 200 on /readyz)."""
    ensure_free(PROXY_PORT)
    env = dict(os.environ, AMPLITUDE_PORT=str(PROXY_PORT),
               AMPLITUDE_METRICS_PORT=str(METRICS_PORT), AMPLITUDE_LOG_LEVEL="warn")
    started = time.perf_counter()
    proc = subprocess.Popen([str(PROXY), "--config", str(config)], env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = started + 10
    while time.perf_counter() < deadline:
        try:
            status, _, _ = http_get(PROXY_PORT, "/readyz", timeout=0.5)
            if status == 200 and proc.poll() is None:
                return proc, time.perf_counter() - started
        except OSError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"proxy exited with {proc.returncode}; see {log.name}")
        time.sleep(0.001)
    stop(proc)
    raise RuntimeError("proxy not ready within 10 s")


def ensure_free(port):
    """Refuses to start when something already listens on `port` (it would answer for us)."""
    try:
        http_get(port, "/", timeout=0.5)
    except OSError:
        return
    raise RuntimeError(f"port {port} is already in use; stop whatever listens there")


def start_ceiling(port, size, encoding=None):
    ensure_free(port)
    args = [str(CEILING), str(port), str(size)] + ([encoding] if encoding else [])
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(2000):
        try:
            http_get(port, "/", timeout=0.5)
            return proc
        except OSError:
            time.sleep(0.005)
    stop(proc)
    raise RuntimeError("ceiling server did not start")


def stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def status_kb(pid, field):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def reset_peak_rss(pid):
    """Resets VmHWM to the current RSS (Linux clear_refs 5), so peaks are per cell."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# --- wrk -------------------------------------------------------------------------------------

def wrk(port, method, path, headers, body_file, connections, seconds, lua=LUA, extra_env=None):
    """Runs wrk with a request script and returns its BENCH_JSON summary (rps and errors added)."""
    env = dict(os.environ, BENCH_METHOD=method, BENCH_HEADERS="\n".join(headers),
               BENCH_BODY_FILE=str(body_file) if body_file else "", **(extra_env or {}))
    threads = min(2, connections)
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s",
           "--timeout", "5s", "-s", str(lua), f"http://127.0.0.1:{port}{path}"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if line.startswith("BENCH_JSON "):
            r = json.loads(line[len("BENCH_JSON "):])
            r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
            r["errors"] = sum(r[k] for k in ("connect", "read", "write", "status", "timeout"))
            return r
    raise RuntimeError(f"no summary from wrk:\n{out}")


# --- the run ---------------------------------------------------------------------------------

def startup_figures(config, runs):
    """Start-up-to-ready times and idle RSS of `runs` fresh starts of `config`."""
    times, rss = [], []
    with open(RESULTS / "proxy-startup.log", "w") as log:
        for _ in range(runs):
            proc, ready = start_proxy(config, log)
            time.sleep(1.0)
            times.append(ready * 1000)
            rss.append(status_kb(proc.pid, "VmRSS") / 1024)
            stop(proc)
    return {"ready_ms_median": statistics.median(times), "ready_ms_max": max(times),
            "idle_rss_mb_median": statistics.median(rss), "idle_rss_mb_max": max(rss)}


def run_workload(count, user_b64, knobs, out_rows):
    config = WORKLOADS_DIR / f"flags-{count}.yaml"
    user_file = WORKLOADS_DIR / "user.json"
    log = open(RESULTS / f"proxy-{count}.log", "w")
    proc, ready = start_proxy(config, log)
    time.sleep(1.0)
    info = {"workload": count, "ready_ms": ready * 1000,
            "idle_rss_mb": status_kb(proc.pid, "VmRSS") / 1024,
            "flags_bytes": (WORKLOADS_DIR / f"flags-{count}.json").stat().st_size}
    eps = {k: v for k, v in endpoints(user_b64).items() if k in knobs["endpoints"]}
    ceilings, port = {}, CEILING_BASE_PORT
    try:
        for name, (method, path, headers, with_body) in eps.items():
            body = user_file.read_bytes() if with_body else None
            status, payload, resp_headers = http_get(PROXY_PORT, path, headers, method, body)
            if status != 200:
                raise RuntimeError(f"{name}: status {status}: {payload[:200]!r}")
            encoding = resp_headers.get("Content-Encoding") or resp_headers.get("content-encoding")
            size_key = (len(payload), encoding)
            if size_key not in ceilings:
                ceilings[size_key] = (port, start_ceiling(port, len(payload), encoding))
                port += 1
            ceiling_port = ceilings[size_key][0]
            body_file = user_file if with_body else None
            if knobs["warmup"] > 0:
                for tport in (PROXY_PORT, ceiling_port):
                    wrk(tport, method, path, headers, body_file, 16, knobs["warmup"])
            for c in knobs["connections"]:
                reset_peak_rss(proc.pid)
                cpu0 = cpu_seconds(proc.pid)
                p = wrk(PROXY_PORT, method, path, headers, body_file, c, knobs["duration"])
                cpu = cpu_seconds(proc.pid) - cpu0
                peak = status_kb(proc.pid, "VmHWM") / 1024
                cpid = ceilings[size_key][1].pid
                ccpu0 = cpu_seconds(cpid)
                ceil = wrk(ceiling_port, method, path, headers, body_file, c, knobs["duration"])
                ccpu = cpu_seconds(cpid) - ccpu0
                row = {"workload": count, "endpoint": name, "connections": c,
                       "response_bytes": len(payload), "proxy": p, "ceiling": ceil,
                       "ratio": p["rps"] / ceil["rps"] if ceil["rps"] else 0.0,
                       "cpu_s": cpu, "cpu_us_per_req": cpu * 1e6 / max(p["requests"], 1),
                       "ceiling_cpu_us_per_req": ccpu * 1e6 / max(ceil["requests"], 1),
                       "peak_rss_mb": peak}
                out_rows.append(row)
                print(f"  {name:24} c={c:<3} proxy {p['rps']:9.0f} rps p99 {p['p99_us']/1000:6.2f} ms"
                      f" | ceiling {ceil['rps']:9.0f} rps | ratio {row['ratio']:.2f}", flush=True)
        info["peak_rss_mb"] = status_kb(proc.pid, "VmHWM") / 1024
        info["cpu_s_total"] = cpu_seconds(proc.pid)
    finally:
        stop(proc)
        for _, cproc in ceilings.values():
            stop(cproc)
        log.close()
    return info


def ms(us):
    return f"{us / 1000:.2f}"


def markdown(meta, startup, infos, rows):
    lines = [f"Run {meta['date']} on {meta['cpu']} ({meta['nproc']} cores), "
             f"load average before the run {meta['load_before']}, after {meta['load_after']}; "
             f"{meta['duration']} s per cell, wrk and the server share the cores.", ""]
    lines += ["Start-up (examples/local.yaml, "
              f"{startup['runs']} starts): ready in {startup['ready_ms_median']:.1f} ms median, "
              f"{startup['ready_ms_max']:.1f} ms max; idle RSS {startup['idle_rss_mb_median']:.1f} MB "
              f"median, {startup['idle_rss_mb_max']:.1f} MB max.", ""]
    lines += ["| Workload | flags JSON | ready | idle RSS | peak RSS | CPU s (whole run) |",
              "|---|---|---|---|---|---|"]
    for i in infos:
        lines.append(f"| {i['workload']} flags | {i['flags_bytes']} B | {i['ready_ms']:.1f} ms | "
                     f"{i['idle_rss_mb']:.1f} MB | {i['peak_rss_mb']:.1f} MB | {i['cpu_s_total']:.1f} |")
    for info in infos:
        count = info["workload"]
        lines += ["", f"#### {count} flags", "",
                  "| Endpoint | conns | resp B | req/s | p50 ms | p99 ms | p99.9 ms | errors | "
                  "ceiling req/s | ceiling p99 ms | ratio | CPU s | CPU µs/req | ceiling CPU µs/req | "
                  "peak RSS MB |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in (r for r in rows if r["workload"] == count):
            p, c = r["proxy"], r["ceiling"]
            lines.append(
                f"| {r['endpoint']} | {r['connections']} | {r['response_bytes']} | {p['rps']:.0f} | "
                f"{ms(p['p50_us'])} | {ms(p['p99_us'])} | {ms(p['p999_us'])} | {p['errors']} | "
                f"{c['rps']:.0f} | {ms(c['p99_us'])} | {r['ratio']:.2f} | {r['cpu_s']:.2f} | "
                f"{r['cpu_us_per_req']:.1f} | {r['ceiling_cpu_us_per_req']:.1f} | "
                f"{r['peak_rss_mb']:.1f} |")
    lines += ["", "#### Targets", ""] + [f"- {t}" for t in targets(startup, rows)]
    return "\n".join(lines) + "\n"


def targets(startup, rows):
    out = []

    def find(workload, endpoint, conns):
        return next((r for r in rows if r["workload"] == workload and r["endpoint"] == endpoint
                     and r["connections"] == conns), None)

    for ep in ("POST /sdk/v2/vardata", "GET /sdk/v2/vardata", "GET /v1/vardata"):
        r = find(50, ep, 64)
        if r:
            ok = r["ratio"] >= 0.6 and r["proxy"]["p99_us"] <= 2000
            out.append(f"{'MET' if ok else 'MISSED'}: {ep}, 50 flags, 64 conns: ratio "
                       f"{r['ratio']:.2f} (>= 0.60), p99 {ms(r['proxy']['p99_us'])} ms (<= 2 ms)")
    for ep in ("GET /sdk/v2/flags", "GET /sdk/v2/flags gzip"):
        for r in (r for r in rows if r["endpoint"] == ep and r["connections"] == 64):
            ok = r["ratio"] >= 0.8
            out.append(f"{'MET' if ok else 'MISSED'}: {ep}, {r['workload']} flags, 64 conns: "
                       f"ratio {r['ratio']:.2f} (>= 0.80)")
    out.append(f"{'MET' if startup['idle_rss_mb_max'] <= 15 else 'MISSED'}: idle RSS "
               f"{startup['idle_rss_mb_max']:.1f} MB (<= 15 MB)")
    out.append(f"{'MET' if startup['ready_ms_max'] <= 100 else 'MISSED'}: start-up to ready "
               f"{startup['ready_ms_max']:.1f} ms max (<= 100 ms)")
    return out


def main():
    knobs = {
        "duration": int(os.environ.get("BENCH_DURATION", "4")),
        "warmup": int(os.environ.get("BENCH_WARMUP", "1")),
        "connections": [int(c) for c in os.environ.get("BENCH_CONNECTIONS", "1 16 64 256").split()],
        "workloads": [int(w) for w in os.environ.get("BENCH_WORKLOADS", "5 50 350").split()],
    }
    wanted = [w.strip() for w in os.environ.get("BENCH_ENDPOINTS", "").split(",") if w.strip()]
    knobs["endpoints"] = [e for e in endpoints("") if not wanted or e in wanted]
    RESULTS.mkdir(parents=True, exist_ok=True)
    user_b64 = base64.b64encode((WORKLOADS_DIR / "user.json").read_bytes()).decode()
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                     if l.startswith("model name")), platform.processor()),
        "load_before": open("/proc/loadavg").read().split()[:3],
        "duration": knobs["duration"],
    }
    runs = int(os.environ.get("BENCH_STARTUPS", "10"))
    startup = startup_figures(ROOT / "examples" / "local.yaml", runs)
    startup["runs"] = runs
    print(f"start-up: {startup}", flush=True)
    rows, infos = [], []
    for count in knobs["workloads"]:
        print(f"workload: {count} flags", flush=True)
        infos.append(run_workload(count, user_b64, knobs, rows))
    meta["load_after"] = open("/proc/loadavg").read().split()[:3]
    report = markdown(meta, startup, infos, rows)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"http-{stamp}.json").write_text(json.dumps(
        {"meta": meta, "knobs": knobs, "startup": startup, "workloads": infos, "rows": rows},
        indent=1))
    (RESULTS / f"http-{stamp}.md").write_text(report)
    print()
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
