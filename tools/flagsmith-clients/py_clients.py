"""Runs the official Flagsmith Python SDK (PyPI `flagsmith`) against the proxy.

usage: py_clients.py <api_url> <server_key> <client_key>

Remote evaluation (flags, identity flags) with the client-side and the server-side key, and
local evaluation (environment document; the SDK's own flag engine) with the server-side key.
Checks: the expected values in cases.json, and that every identity's remote flags (the proxy's
engine) equal the SDK's local evaluation (the reference engine). Prints PASS/FAIL lines.
"""

import json
import os
import sys

from flagsmith import Flagsmith

HERE = os.path.dirname(os.path.abspath(__file__))
results = {"passed": 0, "failed": 0}


def check(name, ok, detail=""):
    if ok:
        results["passed"] += 1
        print(f"PASS python {name}")
    else:
        results["failed"] += 1
        print(f"FAIL python {name}: {detail}")


def as_dict(flags):
    return {f.feature_name: [f.enabled, f.value] for f in flags.all_flags()}


def identities(cases):
    items = list(cases["identities"])
    for i in range(cases["generated_identities"]):
        traits = {}
        if i % 3 == 1:
            traits = {"plan": "gold", "age": i}
        elif i % 3 == 2:
            traits = {"plan": "basic"}
        items.append({"identifier": f"user-{i}", "traits": traits})
    return items


def main():
    api_url, server_key, client_key = sys.argv[1:4]
    with open(os.path.join(HERE, "cases.json")) as f:
        cases = json.load(f)
    remote = {
        "client": Flagsmith(environment_key=client_key, api_url=api_url),
        "server": Flagsmith(environment_key=server_key, api_url=api_url),
    }
    local = Flagsmith(
        environment_key=server_key, api_url=api_url, enable_local_evaluation=True
    )

    for kind, sdk in remote.items():
        expected = cases["expected_environment_flags"][kind]
        try:
            got = as_dict(sdk.get_environment_flags())
            check(f"remote {kind} environment flags", got == expected, f"{got} != {expected}")
        except Exception as e:  # noqa: BLE001 - report any SDK error as a failure
            check(f"remote {kind} environment flags", False, repr(e))

    for case in cases["expected_identity_flags"]:
        name = f"expected {case['identifier']} {case['traits']} {case['flag']}"
        for label, sdk in (("remote", remote["client"]), ("local", local)):
            try:
                flags = as_dict(sdk.get_identity_flags(case["identifier"], traits=case["traits"]))
                got = flags.get(case["flag"])
                check(f"{label} {name}", got == case["expect"], f"{got} != {case['expect']}")
            except Exception as e:  # noqa: BLE001
                check(f"{label} {name}", False, repr(e))

    for item in identities(cases):
        identifier, traits = item["identifier"], item["traits"]
        name = f"identity {identifier!r} {traits}"
        try:
            reference = as_dict(local.get_identity_flags(identifier, traits=traits))
            server = as_dict(remote["server"].get_identity_flags(identifier, traits=traits))
            client = as_dict(remote["client"].get_identity_flags(identifier, traits=traits))
            without_server_only = {k: v for k, v in reference.items() if k != "server_only"}
            check(f"{name} server key = local", server == reference, f"{server} != {reference}")
            check(f"{name} client key = local without server-only", client == without_server_only,
                  f"{client} != {without_server_only}")
        except Exception as e:  # noqa: BLE001
            check(name, False, repr(e))

    print(f"python: {results['passed']} passed, {results['failed']} failed")
    sys.stdout.flush()
    # The local-evaluation SDK runs a polling thread; leave without waiting for it.
    os._exit(1 if results["failed"] else 0)


if __name__ == "__main__":
    main()
