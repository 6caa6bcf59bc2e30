"""Runs the official Python SDK (PyPI amplitude-experiment) against the proxy at $PROXY_URL.

Usage: py-clients.py PLAN.json OUT.json
For every case of the plan it calls RemoteEvaluationClient.fetch_v2 (POST /sdk/v2/vardata, user
as JSON body, flag keys as a URL-safe base64 header) and writes
{mode: {caseId: {"variants": {...}} | {"error": "..."}}}.
"""

import json
import os
import sys
import warnings

from amplitude_experiment import RemoteEvaluationClient, RemoteEvaluationConfig, User
from amplitude_experiment.remote.fetch_options import FetchOptions

PROXY = os.environ.get("PROXY_URL", "http://127.0.0.1:3546").rstrip("/")


def variant_json(variant):
    """The SDK's Variant object as the plain fields the checker compares."""
    out = {"key": variant.key, "value": variant.value, "payload": variant.payload, "metadata": variant.metadata}
    return {k: v for k, v in out.items() if v is not None}


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        cases = json.load(f)
    clients = {}
    observed = {"python fetch_v2": {}, "python fetch (legacy)": {}}
    try:
        for case in cases:
            key = case["deploymentKey"]
            if key not in clients:
                config = RemoteEvaluationConfig(server_url=PROXY, fetch_timeout_millis=5000, fetch_retries=0)
                clients[key] = RemoteEvaluationClient(key, config)
            client = clients[key]
            options = None
            if case["flagKeys"] is not None:  # subset cases also send the tracking headers
                options = FetchOptions(flagKeys=case["flagKeys"], tracksAssignment=False, tracksExposure=False)
            try:
                variants = client.fetch_v2(User(**case["user"]), options)
                result = {"variants": {k: variant_json(v) for k, v in variants.items()}}
            except Exception as e:  # every failure is a reported mismatch, not a crash
                result = {"error": f"{type(e).__name__}: {e}"}
            observed["python fetch_v2"][case["id"]] = result
            if case["flagKeys"] is None:
                # Deprecated fetch(): same POST, errors swallowed (gives {}).
                with warnings.catch_warnings(record=True):  # the SDK forces its warning on
                    variants = client.fetch(User(**case["user"]))
                observed["python fetch (legacy)"][case["id"]] = {
                    "variants": {k: variant_json(v) for k, v in variants.items()}
                }
    finally:
        for client in clients.values():
            client.close()
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        json.dump(observed, f, indent=1, ensure_ascii=False)


if __name__ == "__main__":
    main()
