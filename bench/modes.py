#!/usr/bin/env python3
"""A/B benchmark of the proxy's serving modes. Run via bench/modes.sh.

Same binary, same 50-flag workload, same requests; only the configuration differs:
  A  memory store, tracking off (the project has no apiKey)
  B  memory store, tracking on  (apiKey set; analyticsServerUrl is a local sink answering 200)
  C  Redis store,  tracking off (a redis-server this script starts on a free port)
  D  Redis store,  tracking on  (dedup claims shared through Redis)
Every request carries a different user_id (bench/request_users.lua), and each measured cell uses
ids no other cell used, so tracking builds, dedups (a miss) and uploads one event per request:
the expensive path, not the dedup-hit path. Modes are measured alternately, A B C D A B C D ...,
so drift in the machine's load hits every mode alike; the report gives medians over the rounds
and the ratios to A. The modes share the proxy's ports, so each cell starts a fresh proxy,
warms it up, measures, and stops it with SIGTERM (which flushes its queued events to the sink,
so the sink's count covers the cell). One redis-server serves all Redis cells.

Environment knobs (all optional):
  BENCH_DURATION     whole seconds per cell (default 4)
  BENCH_WARMUP       whole seconds of warm-up per mode and endpoint, 0 for none (default 1)
  BENCH_ROUNDS       rounds of A B C D (default 3)
  BENCH_CONNECTIONS  connections (default 64)
  BENCH_MODES        modes to run, e.g. "A B" (default "A B C D")
  BENCH_ENDPOINTS    comma-separated, default "POST /sdk/v2/vardata,GET /sdk/v2/vardata"
  BENCH_PROXY_BIN    proxy binary (default target/release/evaluation-proxy)
  BENCH_NO_COHORTS   1: drop the workload's cohort-targeting segments (no membership lookups)
  BENCH_POOL         0 (default): a new user_id per request (every assignment a dedup miss);
                     N > 0: user_ids drawn from a pool of N users (bench/request_users.lua).
                     The warm-up and the measurement of a cell share the pool, and the warm-up
                     first sends N requests, so the measured assignments are dedup hits except
                     where a pool user's flags change (the workload has none): the common
                     production path.
"""
import base64
import datetime
import http.server
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (bench/run.py: start_proxy, stop, wrk helpers, cpu and RSS readers)

ROOT = run.ROOT
RESULTS = run.RESULTS
OUT = RESULTS / "modes"
LUA = ROOT / "bench" / "request_users.lua"
MODES = {
    "A": ("memory", False),
    "B": ("memory", True),
    "C": ("redis", False),
    "D": ("redis", True),
}


# --- the analytics sink ----------------------------------------------------------------------

class Sink:
    """A threaded HTTP server answering 200 to every POST, counting uploads and events.

    Events are counted with bytes.count on `"event_type"` (C speed) rather than by parsing, so
    the sink takes as little CPU as possible from the proxy it measures."""

    def __init__(self):
        sink = self
        self.lock = threading.Lock()
        self.posts = 0
        self.events = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with sink.lock:
                    sink.posts += 1
                    sink.events += body.count(b'"event_type"')
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def counts(self):
        with self.lock:
            return self.posts, self.events

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# --- redis -----------------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis(workdir):
    """redis-server on a free port (never 6379), no persistence; returns (process, port)."""
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", str(workdir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(500):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return proc, port
        except OSError:
            time.sleep(0.01)
    run.stop(proc)
    raise RuntimeError("redis-server did not start")


def redis_dbsize(port):
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(b"DBSIZE\r\n")
        return int(s.recv(64).strip()[1:])


# --- configs and requests --------------------------------------------------------------------

def write_config(mode, flags_file, sink_port, redis_port):
    store, tracking = MODES[mode]
    lines = ["projects:"]
    lines.append("  - apiKey: bench-analytics-api-key" if tracking else "  -")
    lines += ["    deployments:", f"      - key: {run.KEY}", f"        flagsFile: {flags_file}",
              "configuration:", "  port: 3546", "  logLevel: warn",
              f"  analyticsServerUrl: http://127.0.0.1:{sink_port}/2/httpapi",
              "  shutdownGracePeriodMillis: 5000", "  metrics:", "    port: 9090"]
    if store == "redis":
        lines += ["  redis:", f"    uri: redis://127.0.0.1:{redis_port}", "    prefix: bench"]
    if not tracking:
        lines[1] = "  - deployments:"
        del lines[2]
    path = OUT / f"mode-{mode}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def user_parts():
    """The benchmark user split around a 12-byte id, both parts padded to 3-byte multiples."""
    user = json.loads((run.WORKLOADS_DIR / "user.json").read_text())
    user["user_id"] = "@ID@"
    text = json.dumps(user, separators=(",", ":"))
    prefix, suffix = text.split("@ID@")
    prefix = prefix.replace('"user_id":"', '"user_id":"u-')
    # JSON allows whitespace between tokens: pad after the opening brace / before the last one.
    while len(prefix) % 3:
        prefix = "{ " + prefix[1:] if prefix.startswith("{") else " " + prefix
    while len(suffix) % 3:
        suffix = suffix[:-1] + " }"
    return prefix, suffix


def endpoints():
    auth = f"Authorization: Api-Key {run.KEY}"
    return {
        "POST /sdk/v2/vardata": ("POST", "/sdk/v2/vardata", [auth, "Content-Type: application/json"]),
        "GET /sdk/v2/vardata": ("GET", "/sdk/v2/vardata", [auth]),
    }


def wrk(method, path, headers, parts, nonce, connections, seconds, pool=0):
    prefix, suffix = parts
    extra = dict(BENCH_PATH=path, BENCH_USER_PREFIX=prefix, BENCH_USER_SUFFIX=suffix,
                 BENCH_USER_PREFIX_B64=base64.b64encode(prefix.encode()).decode(),
                 BENCH_USER_SUFFIX_B64=base64.b64encode(suffix.encode()).decode(),
                 BENCH_NONCE=nonce, BENCH_POOL=str(pool))
    return run.wrk(run.PROXY_PORT, method, path, headers, None, connections, seconds,
                   lua=LUA, extra_env=extra)


def sweep_pool(method, path, headers, parts, nonce, pool):
    """Sends one request for every user of the pool (one connection, keep-alive), so the
    measurement that follows finds each of them in the dedup filter."""
    import http.client
    prefix, suffix = parts
    hdrs = dict(h.split(": ", 1) for h in headers)
    conn = http.client.HTTPConnection("127.0.0.1", run.PROXY_PORT, timeout=10)
    try:
        for index in range(pool):
            user = (prefix + f"{nonce}{index:010d}" + suffix).encode()
            if method == "POST":
                conn.request(method, path, body=user, headers=hdrs)
            else:
                conn.request(method, path, headers=dict(
                    hdrs, **{"X-Amp-Exp-User": base64.b64encode(user).decode()}))
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"pool sweep: status {response.status}")
    finally:
        conn.close()


def metric(name):
    """Sum of a Prometheus counter/gauge family on the proxy's metrics port (0 if absent)."""
    _, body, _ = run.http_get(run.METRICS_PORT, "/metrics")
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith(name) and line[len(name):len(name) + 1] in (" ", "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def check_once(method, path, headers, parts):
    """One request with a known user, so a broken config fails loudly before measuring."""
    prefix, suffix = parts
    user = (prefix + "check0000000" + suffix).encode()
    if method == "POST":
        status, body, _ = run.http_get(run.PROXY_PORT, path, headers, method, user)
    else:
        hdr = headers + [f"X-Amp-Exp-User: {base64.b64encode(user).decode()}"]
        status, body, _ = run.http_get(run.PROXY_PORT, path, hdr, method)
    if status != 200 or len(body) < 100:
        raise RuntimeError(f"{method} {path}: status {status}: {body[:200]!r}")


# --- the run ---------------------------------------------------------------------------------

NONCES = iter(a + b for a in "abcdefghijklmnopqrstuvwxyz0123456789"
              for b in "abcdefghijklmnopqrstuvwxyz0123456789")


def nonce():
    """Two characters no other wrk run of this process used: user ids never repeat, even in
    the dedup claims Redis keeps across cells."""
    return next(NONCES)


def measure_endpoint(name, knobs, configs, parts, sink, rows):
    method, path, headers = endpoints()[name]
    procs, logs = {}, {}

    try:
        for round_no in range(knobs["rounds"]):
            for mode in knobs["modes"]:
                log = logs.setdefault(mode, open(OUT / f"proxy-{mode}.log", "a"))
                sink_before = sink.counts()
                proc, _ = run.start_proxy(configs[mode], log)
                procs[mode] = proc
                time.sleep(0.5)
                check_once(method, path, headers, parts)
                pool = knobs["pool"]
                cell = nonce()
                if pool > 0:
                    sweep_pool(method, path, headers, parts, cell, pool)
                if knobs["warmup"] > 0:
                    wrk(method, path, headers, parts, cell if pool else nonce(), 16,
                        knobs["warmup"], pool)
                time.sleep(0.2)
                sent0 = metric("amplitude_proxy_assignment_send_total")
                cpu0 = run.cpu_seconds(proc.pid)
                r = wrk(method, path, headers, parts, cell if pool else nonce(),
                        knobs["connections"], knobs["duration"], pool)
                cpu = run.cpu_seconds(proc.pid) - cpu0
                # Whole-lifetime counts of this fresh proxy (check, warm-up and measurement),
                # compared with what the sink received: nothing may be lost.
                sent = metric("amplitude_proxy_assignment_send_total")
                # Events of the measurement itself (0 on the dedup-hit path once warm).
                measured_events = sent - sent0
                dropped = metric("amplitude_proxy_assignment_dropped_total")
                rss = run.status_kb(proc.pid, "VmRSS") / 1024
                run.stop(proc)  # SIGTERM flushes the queued events to the sink
                del procs[mode]
                posts, events = (c - c0 for c, c0 in zip(sink.counts(), sink_before))
                row = {"endpoint": name, "mode": mode, "round": round_no, "wrk": r,
                       "cpu_us_per_req": cpu * 1e6 / max(r["requests"], 1), "rss_mb": rss,
                       "events_queued": sent, "events_dropped": dropped,
                       "events_in_measurement": measured_events,
                       "sink_posts": posts, "sink_events": events}
                rows.append(row)
                print(f"  round {round_no} {mode} {name:22} {r['rps']:8.0f} rps "
                      f"p50 {r['p50_us']/1000:5.2f} ms p99 {r['p99_us']/1000:6.2f} ms "
                      f"err {r['errors']} cpu {row['cpu_us_per_req']:5.1f} us/req "
                      f"events queued {sent:.0f} (measured {measured_events:.0f}) dropped "
                      f"{dropped:.0f} received {events}",
                      flush=True)
    finally:
        for proc in procs.values():
            run.stop(proc)
        for log in logs.values():
            log.close()


def summarize(rows, knobs):
    out = {}
    for name in knobs["endpoints"]:
        for mode in knobs["modes"]:
            cells = [r for r in rows if r["endpoint"] == name and r["mode"] == mode]
            if not cells:
                continue
            out[(name, mode)] = {
                "rps": statistics.median(c["wrk"]["rps"] for c in cells),
                "p50_us": statistics.median(c["wrk"]["p50_us"] for c in cells),
                "p99_us": statistics.median(c["wrk"]["p99_us"] for c in cells),
                "errors": sum(c["wrk"]["errors"] for c in cells),
                "cpu_us_per_req": statistics.median(c["cpu_us_per_req"] for c in cells),
                "requests": sum(c["wrk"]["requests"] for c in cells),
                "events_queued": sum(c["events_queued"] for c in cells),
                "events_in_measurement": sum(c["events_in_measurement"] for c in cells),
                "events_dropped": sum(c["events_dropped"] for c in cells),
                "sink_events": sum(c["sink_events"] for c in cells),
                "all_rps": [round(c["wrk"]["rps"]) for c in cells],
            }
    return out


def markdown(meta, knobs, summary):
    labels = {"A": "memory, tracking off", "B": "memory, tracking on",
              "C": "Redis, tracking off", "D": "Redis, tracking on"}
    lines = [f"Run {meta['date']} on {meta['cpu']} ({meta['nproc']} cores), load average before "
             f"{meta['load_before']}, after {meta['load_after']}; {knobs['rounds']} rounds of "
             f"{' '.join(knobs['modes'])}, {knobs['duration']} s per cell, "
             f"{knobs['connections']} connections, 50-flag workload, "
             + (f"user_ids from a pool of {knobs['pool']} (dedup hits after the warm-up sweep); "
                if knobs["pool"] else "a new user_id per request; ")
             + "wrk, the proxy, the sink and redis-server share the cores.", "",
             "| Endpoint | mode | median req/s | ratio to A | p50 ms | p99 ms | errors | "
             "CPU µs/req | requests | events queued | of which measured | dropped | "
             "received by sink | req/s per round |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in knobs["endpoints"]:
        base = summary.get((name, "A"))
        for mode in knobs["modes"]:
            s = summary.get((name, mode))
            if not s:
                continue
            ratio = f"{s['rps'] / base['rps']:.2f}" if base and base["rps"] else "-"
            lines.append(
                f"| {name} | {mode}: {labels[mode]} | {s['rps']:.0f} | {ratio} | "
                f"{run.ms(s['p50_us'])} | {run.ms(s['p99_us'])} | {s['errors']} | "
                f"{s['cpu_us_per_req']:.1f} | {s['requests']} | {s['events_queued']:.0f} | "
                f"{s['events_in_measurement']:.0f} | "
                f"{s['events_dropped']:.0f} | {s['sink_events']} | "
                f"{' '.join(map(str, s['all_rps']))} |")
    lines += ["", "Targets (ratio of median req/s to A, >= 0.90):", ""]
    for name in knobs["endpoints"]:
        base = summary.get((name, "A"))
        for mode, what in (("B", "tracking on (issue 6 item 8)"), ("C", "Redis (issue 4 item 8)"),
                           ("D", "Redis + tracking")):
            s = summary.get((name, mode))
            if base and s and base["rps"]:
                ratio = s["rps"] / base["rps"]
                lines.append(f"- {'MET' if ratio >= 0.9 else 'MISSED'}: {name}, {mode} {what}: "
                             f"{ratio:.2f}")
    return "\n".join(lines) + "\n"


def without_cohort_segments(source, target):
    """A copy of the workload without the segments that target cohorts, so no request needs a
    membership lookup (isolates the store's cost on everything else)."""
    def targets_cohorts(segment):
        return any("cohort_ids" in condition.get("selector", [])
                   for group in segment.get("conditions") or [] for condition in group)
    flags = json.loads(source.read_text())
    for flag in flags:
        flag["segments"] = [s for s in flag.get("segments", []) if not targets_cohorts(s)]
    target.write_text(json.dumps(flags))
    return target


def main():
    knobs = {
        "duration": int(os.environ.get("BENCH_DURATION", "4")),
        "warmup": int(os.environ.get("BENCH_WARMUP", "1")),
        "rounds": int(os.environ.get("BENCH_ROUNDS", "3")),
        "connections": int(os.environ.get("BENCH_CONNECTIONS", "64")),
        "modes": os.environ.get("BENCH_MODES", "A B C D").split(),
        "pool": int(os.environ.get("BENCH_POOL", "0")),
    }
    wanted = [w.strip() for w in os.environ.get("BENCH_ENDPOINTS", "").split(",") if w.strip()]
    knobs["endpoints"] = [e for e in endpoints() if not wanted or e in wanted]
    OUT.mkdir(parents=True, exist_ok=True)
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                     if l.startswith("model name")), "unknown CPU"),
        "load_before": open("/proc/loadavg").read().split()[:3],
    }
    sink = Sink()
    redis_proc = None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            redis_port = 0
            if any(MODES[m][0] == "redis" for m in knobs["modes"]):
                redis_proc, redis_port = start_redis(tmp)
            flags = run.WORKLOADS_DIR / "flags-50.json"
            if os.environ.get("BENCH_NO_COHORTS") == "1":
                flags = without_cohort_segments(flags, Path(tmp) / "flags-50-no-cohorts.json")
            configs = {m: write_config(m, flags, sink.port, redis_port) for m in knobs["modes"]}
            parts = user_parts()
            rows = []
            for name in knobs["endpoints"]:
                print(f"endpoint: {name}", flush=True)
                measure_endpoint(name, knobs, configs, parts, sink, rows)
            if redis_proc:
                meta["redis_keys_after"] = redis_dbsize(redis_port)
        finally:
            if redis_proc:
                run.stop(redis_proc)
            sink.close()
    meta["load_after"] = open("/proc/loadavg").read().split()[:3]
    summary = summarize(rows, knobs)
    report = markdown(meta, knobs, summary)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"modes-{stamp}.json").write_text(json.dumps(
        {"meta": meta, "knobs": knobs, "rows": rows}, indent=1))
    (RESULTS / f"modes-{stamp}.md").write_text(report)
    print()
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
