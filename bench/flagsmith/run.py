#!/usr/bin/env python3
"""Flagsmith Edge Proxy API load benchmark (issue 8 item 6). Run via bench/flagsmith/run.sh.

Generates two environment documents and serves them from files (offline mode, no vendor):
- "reference": the spec's reference throughput case: 50 features, 15 segments with 15 trait
  conditions each, every segment overriding every feature (750 segment overrides);
- "small": 5 features, 1 segment with 2 conditions.
Then drives `POST /api/v1/identities/` (identifier + 5 traits) with wrk at 64 connections
(BENCH_CONNECTIONS, BENCH_DURATION seconds) and prints req/s, p50, p99 and errors.
Targets: reference >= 10,000 req/s with p99 <= 5 ms; small >= 25,000 req/s.
"""
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import run  # noqa: E402  (bench/run.py: start_proxy, wrk, stop)

SERVER_KEY = "ser.bench-server-key"
CLIENT_KEY = "bench-client-key"


def feature(i):
    return {"id": i, "name": f"feature_{i}", "type": "STANDARD"}


def feature_state(i, value, django_id, segment_priority=None):
    state = {"feature": feature(i), "enabled": i % 2 == 0, "feature_state_value": value,
             "django_id": django_id, "multivariate_feature_state_values": []}
    if segment_priority is not None:
        state["feature_segment"] = {"priority": segment_priority}
    return state


def segment(s, conditions, features):
    # Conditions on traits the identity does not match fully, so every rule is evaluated.
    conds = [{"operator": "EQUAL" if c % 3 else "GREATER_THAN", "property_": f"trait_{c % 5}",
              "value": f"value_{s}_{c}" if c % 3 else str(1000 + c)} for c in range(conditions)]
    return {"id": 100 + s, "name": f"segment_{s}",
            "rules": [{"type": "ALL", "conditions": [], "rules": [
                {"type": "ANY", "rules": [], "conditions": conds}]}],
            "feature_states": [feature_state(i, f"seg{s}_{i}", 10_000 + s * 100 + i, s)
                               for i in range(1, features + 1)]}


def document(features, segments, conditions):
    return {"api_key": CLIENT_KEY, "name": "Bench", "updated_at": "2026-11-22T00:00:00Z",
            "project": {"name": "bench", "hide_disabled_flags": False,
                        "server_key_only_feature_ids": [],
                        "segments": [segment(s, conditions, features) for s in range(segments)]},
            "feature_states": [feature_state(i, f"default_{i}", i) for i in range(1, features + 1)],
            "identity_overrides": []}


def main():
    seconds = int(os.environ.get("BENCH_DURATION", "5"))
    connections = int(os.environ.get("BENCH_CONNECTIONS", "64"))
    body = {"identifier": "bench-user-1",
            "traits": [{"trait_key": f"trait_{t}", "trait_value": f"v{t}" if t % 2 else 42 + t}
                       for t in range(5)]}
    cases = {"reference": document(50, 15, 15), "small": document(5, 1, 2)}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        body_file = Path(tmp) / "body.json"
        body_file.write_text(json.dumps(body))
        for name, doc in cases.items():
            doc_file = Path(tmp) / f"{name}.json"
            doc_file.write_text(json.dumps(doc))
            config = Path(tmp) / f"{name}.yaml"
            config.write_text(
                "configuration:\n  flagsmith:\n    environments:\n"
                f"      - serverSideKey: {SERVER_KEY}\n        clientSideKey: {CLIENT_KEY}\n"
                f"        documentFile: {doc_file}\n")
            with open(Path(tmp) / f"{name}.log", "w") as log:
                proc, _ = run.start_proxy(config, log)
                try:
                    headers = [f"X-Environment-Key: {CLIENT_KEY}", "Content-Type: application/json"]
                    status, response, _ = run.http_get(run.PROXY_PORT, "/api/v1/identities/", headers,
                                                       method="POST", body=body_file.read_bytes())
                    assert status == 200, (status, response[:200])
                    run.wrk(run.PROXY_PORT, "POST", "/api/v1/identities/", headers, body_file,
                            connections, 1)
                    r = run.wrk(run.PROXY_PORT, "POST", "/api/v1/identities/", headers, body_file,
                                connections, seconds)
                    rows.append((name, len(json.dumps(doc)), len(response), r))
                finally:
                    run.stop(proc)
    print(f"\nPOST /api/v1/identities/ (5 traits), {connections} connections, {seconds} s, "
          f"load average {os.getloadavg()}\n")
    print("| project | document bytes | response bytes | req/s | p50 ms | p99 ms | p99.9 ms | errors |")
    print("|---|---|---|---|---|---|---|---|")
    for name, doc_bytes, resp_bytes, r in rows:
        print(f"| {name} | {doc_bytes} | {resp_bytes} | {r['rps']:.0f} | {run.ms(r['p50_us'])} | "
              f"{run.ms(r['p99_us'])} | {run.ms(r['p999_us'])} | {r['errors']} |")


if __name__ == "__main__":
    main()
