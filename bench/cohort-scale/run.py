#!/usr/bin/env python3
"""Cohort-scale benchmark driver (issue 5 item 6); bench/cohort-scale/run.sh builds and calls it.

For each scenario it starts the fake flags/cohort API (fake-cohort-server.js), a redis-server
on a free port when the scenario uses Redis, and the release proxy, then:
1. waits until the proxy is ready with an empty version of cohort `big`, and records its RSS;
2. serves a version with N members and times from the moment the fake API receives the
   download request to the moment the proxy's `/sdk/v1/cohort/big?lastModified=<new>` answers
   204 (the new version is stored); records RSS after and the peak RSS (VmHWM);
3. serves a version with 1% churn (N/100 members removed, N/100 added) and records what the
   store wrote (the proxy's `added=`/`removed=` log fields and, with Redis, INFO commandstats
   reset just before);
4. with Redis, runs the `cohort_lookup_latency` example against the stored cohort.
Results: stdout (markdown) and bench/results/cohort-scale-<timestamp>.json.

Knobs: COHORT_SCENARIOS (default "memory:1000000,redis:1000000,redis:10000000"),
LOOKUP_SAMPLES (20000), PROXY_BIN, LOOKUP_BIN, COHORT_LOG_DIR (keep each proxy log there).
"""
import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PROXY_BIN = os.environ.get("PROXY_BIN", os.path.join(REPO, "target/release/evaluation-proxy"))
LOOKUP_BIN = os.environ.get("LOOKUP_BIN", os.path.join(REPO, "target/release/examples/cohort_lookup_latency"))
API_KEY, SECRET_KEY, DEPLOYMENT = "bench-api-key", "bench-secret-key", "server-bench-deployment"
BASIC = "Basic " + base64.b64encode(f"{API_KEY}:{SECRET_KEY}".encode()).decode()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def http(method, url, headers=None, timeout=5):
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, ConnectionError, socket.timeout):
        return None, b""


def wait_for(predicate, timeout, what, interval=0.02):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return time.time()
        time.sleep(interval)
    raise RuntimeError(f"timed out after {timeout}s waiting for {what}")


def proc_status(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024.0  # MiB
    return fields


def cpu_seconds(pid):
    """User + system CPU seconds a process has used (load-independent, unlike wall time)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def redis_cli(port, *args):
    out = subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True, check=True)
    return out.stdout


def commandstats(port):
    stats = {}
    for line in redis_cli(port, "INFO", "commandstats").splitlines():
        m = re.match(r"cmdstat_([a-z|_-]+):calls=(\d+)", line)
        if m:
            stats[m.group(1)] = int(m.group(2))
    return stats


class Scenario:
    def __init__(self, store, size, work):
        self.store, self.size, self.work = store, size, work
        self.procs = []
        self.result = {"store": store, "members": size}

    def spawn(self, name, args):
        log = open(os.path.join(self.work, f"{name}.log"), "w")
        p = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(p)
        return p

    def stop(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()

    def control(self, **params):
        query = "&".join(f"{k}={v}" for k, v in params.items())
        status, _ = http("POST", f"{self.fake}/control?{query}")
        assert status == 200, status

    def stored(self, last_modified):
        status, _ = http("GET", f"{self.proxy}/sdk/v1/cohort/big?lastModified={last_modified}",
                         {"Authorization": BASIC, "Accept-Encoding": "gzip"}, timeout=30)
        return status == 204

    def save_log_fields(self):
        with open(os.path.join(self.work, "proxy.log")) as f:
            lines = [l for l in f if "cohort download/save completed" in l]
        m = re.search(r"added=(\d+)\s+removed=(\d+)", lines[-1]) if lines else None
        return (int(m.group(1)), int(m.group(2))) if m else (None, None)

    def mirrored(self, last_modified):
        """Heap bytes of the mirrored `big` version `last_modified` once the proxy logged it."""
        with open(os.path.join(self.work, "proxy.log")) as f:
            for line in f:
                if "mirrored a cohort version" in line and re.search(rf"last_modified={last_modified}\b", line):
                    m = re.search(r"bytes=(\d+)", line)
                    return int(m.group(1)) if m else 0
        return None

    def ingest(self, last_modified, **params):
        pids = {"proxy": self.proxy_pid, "fake_api": self.fake_pid, **({"redis": self.redis_pid} if self.store == "redis" else {})}
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        self.control(lastModified=last_modified, **params)
        done = wait_for(lambda: self.stored(last_modified), 600, f"version {last_modified}", 0.05)
        stats = json.loads(http("GET", f"{self.fake}/stats")[1])
        self.cpu = {f"{name}_cpu_seconds": round(cpu_seconds(pid) - cpu_before[name], 2) for name, pid in pids.items()}
        return done - stats["started"] / 1000.0, stats

    def run(self):
        fake_port, port, metrics_port = free_port(), free_port(), free_port()
        self.fake = f"http://127.0.0.1:{fake_port}"
        self.proxy = f"http://127.0.0.1:{port}"
        self.fake_pid = self.spawn("fake", ["node", os.path.join(HERE, "fake-cohort-server.js"), str(fake_port)]).pid
        wait_for(lambda: http("GET", f"{self.fake}/stats")[0] == 200, 10, "the fake API")
        redis_block = ""
        if self.store == "redis":
            self.redis_port = free_port()
            self.redis_pid = self.spawn("redis", ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
                                 "--save", "", "--appendonly", "no", "--dir", self.work]).pid
            wait_for(lambda: subprocess.run(["redis-cli", "-p", str(self.redis_port), "PING"],
                                            capture_output=True).returncode == 0, 10, "redis-server")
            redis_block = f"  redis:\n    uri: redis://127.0.0.1:{self.redis_port}\n"
        config = os.path.join(self.work, "config.yaml")
        with open(config, "w") as f:
            f.write(f"""projects:
  - apiKey: {API_KEY}
    secretKey: {SECRET_KEY}
    deployments:
      - key: {DEPLOYMENT}
configuration:
  host: 127.0.0.1
  port: {port}
  serverUrl: {self.fake}
  cohortServerUrl: {self.fake}
  cohortSyncIntervalMillis: 1000
  logLevel: info
  metrics:
    port: {metrics_port}
{redis_block}""")
        proxy = self.spawn("proxy", [PROXY_BIN, "--config", config])
        self.proxy_pid = proxy.pid
        wait_for(lambda: http("GET", f"{self.proxy}/readyz")[0] == 200, 60, "readiness", 0.1)
        time.sleep(1.0)
        before = proc_status(proxy.pid)
        r = self.result
        r["rss_before_mib"] = round(before["VmRSS"], 1)

        seconds, stats = self.ingest(2, size=self.size)
        if self.store == "redis":
            # The proxy's own cohort mirror (src/store/cohort_mirror.rs) loads the new version
            # after the write: count it in the RSS.
            stored_at = time.time()
            mirrored = wait_for(lambda: self.mirrored(2) is not None, 300, "the cohort mirror", 0.05)
            r["mirror_after_store_seconds"] = round(mirrored - stored_at, 2)
            r["mirror_heap_mib"] = round(self.mirrored(2) / 2**20, 1)
        time.sleep(1.0)
        after = proc_status(proxy.pid)
        r["ingest_seconds"] = round(seconds, 2)
        r["ingest_cpu"] = self.cpu
        r["body_mib"] = round(stats["bytes"] / 2**20, 1)
        r["rss_after_mib"] = round(after["VmRSS"], 1)
        r["rss_peak_mib"] = round(after["VmHWM"], 1)
        r["rss_growth_mib_per_million"] = round((after["VmRSS"] - before["VmRSS"]) / (self.size / 1e6), 1)
        r["first_write"] = dict(zip(("added", "removed"), self.save_log_fields()))
        if self.store == "redis":
            r["redis_used_memory"] = re.search(r"used_memory_human:(\S+)", redis_cli(self.redis_port, "INFO", "memory")).group(1)

        if self.size <= 2_000_000:
            churn = self.size // 100
            if self.store == "redis":
                redis_cli(self.redis_port, "CONFIG", "RESETSTAT")
            seconds, _ = self.ingest(3, size=self.size, churn=churn)
            r["churn"] = {"members_replaced": churn, "seconds": round(seconds, 2), "cpu": self.cpu}
            r["churn"]["added"], r["churn"]["removed"] = self.save_log_fields()
            if self.store == "redis":
                stats = commandstats(self.redis_port)
                r["churn"]["redis_commands"] = stats
                r["churn"]["redis_member_writes"] = stats.get("sadd", 0) + stats.get("srem", 0)

        if self.store == "redis" and os.path.exists(LOOKUP_BIN):
            samples = os.environ.get("LOOKUP_SAMPLES", "20000")
            out = subprocess.run([LOOKUP_BIN, f"redis://127.0.0.1:{self.redis_port}", str(self.size), samples],
                                 capture_output=True, text=True, check=True)
            r["lookup"] = json.loads(out.stdout.strip().splitlines()[-1])
        return r


def main():
    scenarios = os.environ.get("COHORT_SCENARIOS", "memory:1000000,redis:1000000,redis:10000000")
    results = {"machine": machine(), "scenarios": []}
    for spec in scenarios.split(","):
        store, size = spec.split(":")
        with tempfile.TemporaryDirectory(prefix="cohort-scale.") as work:
            scenario = Scenario(store, int(size), work)
            print(f"== {store} {int(size):,} members", file=sys.stderr, flush=True)
            try:
                result = scenario.run()
            except Exception as e:  # keep going; report what failed with the proxy's log tail
                with open(os.path.join(work, "proxy.log")) as f:
                    tail = f.readlines()[-10:]
                result = {"store": store, "members": int(size), "error": str(e), "log_tail": tail}
            finally:
                scenario.stop()
                # COHORT_LOG_DIR: keep each scenario's proxy log (phase timings, errors).
                if os.environ.get("COHORT_LOG_DIR"):
                    os.makedirs(os.environ["COHORT_LOG_DIR"], exist_ok=True)
                    shutil.copy(os.path.join(work, "proxy.log"),
                                os.path.join(os.environ["COHORT_LOG_DIR"], f"proxy-{store}-{size}.log"))
            print(json.dumps(result), flush=True)
            results["scenarios"].append(result)
    os.makedirs(os.path.join(REPO, "bench/results"), exist_ok=True)
    out = os.path.join(REPO, "bench/results", time.strftime("cohort-scale-%Y%m%d-%H%M%S.json"))
    with open(out, "w") as f:
        json.dump(results, f, indent=2)
    print(f"results: {out}", file=sys.stderr)


def machine():
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
                         capture_output=True, text=True).stdout.strip()
    return {"cpus": os.cpu_count(), "cpu": cpu, "load_at_start": load,
            "redis": subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.strip()}


if __name__ == "__main__":
    main()
