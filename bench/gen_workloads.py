#!/usr/bin/env python3
"""Deterministic flag-config workloads for the HTTP benchmark.

Writes, into the output directory (default bench/results/workloads):
  flags-5.json    5 flags,   about 2 KB
  flags-50.json   50 flags,  a realistic project mix
  flags-350.json  350 flags, about 100 KB
  user.json       the realistic user every request evaluates
and one proxy config per workload (local mode, flagsFile).

Shapes follow examples/flags.json (Amplitude evaluation format): experiments with bucket
allocations and distributions, release flags with targeting segments of 3-5 conditions and a
percentage rollout, flags depending on other flags, and the usual metadata. Same seed, same
bytes: the benchmark is reproducible.
"""
import json
import random
import sys
from pathlib import Path

SEED = 20261121
DEPLOYMENT = "client-local-example-deployment"
MAX_HASH = 42949673  # Amplitude's distribution range upper bound

# (experiments, targeted release flags, dependent flags, simple release flags, share of the
# simple flags that are percentage rollouts rather than fully rolled out). Big projects are
# mostly fully rolled-out release flags nobody has cleaned up, hence the 350-flag mix.
MIXES = {
    5: (1, 1, 1, 2, 0.0),
    50: (10, 20, 5, 15, 0.5),
    350: (8, 12, 8, 322, 0.1),
}

COUNTRIES = ["United States", "Canada", "Germany", "France", "Japan", "Brazil", "India"]
PLATFORMS = ["iOS", "Android", "Web"]
PLANS = ["free", "starter", "growth", "enterprise"]


def condition(rng):
    """One targeting condition, drawn from the selectors SDK users commonly target."""
    kind = rng.randrange(8)
    if kind == 0:
        return {"selector": ["context", "user", "country"], "op": "is",
                "values": rng.sample(COUNTRIES, 2)}
    if kind == 1:
        return {"selector": ["context", "user", "platform"], "op": "is not",
                "values": [rng.choice(PLATFORMS)]}
    if kind == 2:
        return {"selector": ["context", "user", "version"], "op": "version greater or equal",
                "values": [f"{rng.randint(1, 4)}.{rng.randint(0, 9)}.0"]}
    if kind == 3:
        return {"selector": ["context", "user", "user_properties", "plan"], "op": "is",
                "values": rng.sample(PLANS, 2)}
    if kind == 4:
        return {"selector": ["context", "user", "user_properties", "email"], "op": "regex match",
                "values": [r"^.*@(acme|globex)\.com$"]}
    if kind == 5:
        return {"selector": ["context", "user", "user_properties", "sessions"], "op": "greater",
                "values": [str(rng.randint(1, 50))]}
    if kind == 6:
        return {"selector": ["context", "user", "cohort_ids"], "op": "set contains any",
                "values": [f"coh{rng.randint(100, 999)}"]}
    return {"selector": ["context", "groups", "org", "group_properties", "tier"], "op": "is",
            "values": ["gold"]}


def meta(rng, flag_type, deployed=True, **extra):
    out = {"deployed": deployed, "evaluationMode": "local", "flagType": flag_type,
           "flagVersion": rng.randint(1, 40)}
    out.update(extra)
    return out


def on_off_variants(payload=None):
    on = {"key": "on", "value": "on"}
    if payload is not None:
        on["payload"] = payload
    return {"off": {"key": "off", "metadata": {"default": True}}, "on": on}


def rollout_bucket(rng, percent):
    return {"selector": ["context", "user", "device_id"], "salt": salt(rng),
            "allocations": [{"range": [0, percent], "distributions": [
                {"variant": "on", "range": [0, MAX_HASH]}]}]}


def salt(rng):
    return "".join(rng.choice("abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789")
                   for _ in range(8))


def experiment(rng, key):
    arms = ["control", "treatment"] + (["treatment-b"] if rng.random() < 0.3 else [])
    width = MAX_HASH // len(arms)
    dists = [{"variant": a, "range": [i * width, (i + 1) * width if i < len(arms) - 1 else MAX_HASH]}
             for i, a in enumerate(arms)]
    variants = {"off": {"key": "off", "metadata": {"default": True}}}
    for a in arms:
        variants[a] = {"key": a, "value": a}
    variants["treatment"]["payload"] = {"color": rng.choice(["green", "blue"])}
    segments = []
    if rng.random() < 0.5:
        segments.append({"conditions": [[condition(rng)]],
                         "metadata": {"segmentName": "Exclusions"}, "variant": "off"})
    segments.append({"bucket": {"selector": ["context", "user", "device_id"], "salt": salt(rng),
                                "allocations": [{"range": [0, rng.choice([50, 100])],
                                                 "distributions": dists}]},
                     "metadata": {"segmentName": "All Other Users"}, "variant": "off"})
    return {"key": key, "metadata": meta(rng, "experiment", experimentKey=f"exp-{key}"),
            "segments": segments, "variants": variants}


def targeted(rng, key):
    n = rng.randint(3, 5)
    conds = [condition(rng) for _ in range(n)]
    # Split into an OR of two ANDs half the time, as the UI produces for "any of" rules.
    groups = [conds] if rng.random() < 0.5 else [conds[:2], conds[2:]]
    return {"key": key, "metadata": meta(rng, "release"),
            "segments": [
                {"conditions": groups, "metadata": {"segmentName": "Beta cohort"}, "variant": "on"},
                {"bucket": rollout_bucket(rng, rng.choice([5, 10, 25, 50])),
                 "metadata": {"segmentName": "All Other Users"}, "variant": "off"}],
            "variants": on_off_variants({"limit": rng.randint(1, 100)})}


def dependent(rng, key, parent):
    return {"key": key, "dependencies": [parent], "metadata": meta(rng, "release"),
            "segments": [
                {"conditions": [[{"selector": ["result", parent, "key"], "op": "is not",
                                  "values": ["treatment"]}]],
                 "metadata": {"segmentName": "flag-dependencies"}, "variant": "off"},
                {"metadata": {"segmentName": "All Other Users"}, "variant": "on"}],
            "variants": on_off_variants()}


def simple(rng, key, rollout_share):
    deployed = rng.random() < 0.9
    if rng.random() >= rollout_share:
        return {"key": key, "metadata": meta(rng, "release", deployed=deployed),
                "segments": [{"metadata": {"segmentName": "All Other Users"}, "variant": "on"}],
                "variants": {"on": {"key": "on", "value": "on"}}}
    segment = {"bucket": rollout_bucket(rng, rng.choice([10, 50, 100])),
               "metadata": {"segmentName": "All Other Users"}, "variant": "off"}
    return {"key": key, "metadata": meta(rng, "release", deployed=deployed),
            "segments": [segment], "variants": on_off_variants()}


def flags(count):
    rng = random.Random(SEED + count)
    n_exp, n_tgt, n_dep, n_simple, rollout_share = MIXES[count]
    out, experiments = [], []
    for i in range(n_exp):
        out.append(experiment(rng, f"exp-{i:03d}"))
        experiments.append(out[-1]["key"])
    for i in range(n_tgt):
        out.append(targeted(rng, f"feature-{i:03d}"))
    for i in range(n_dep):
        out.append(dependent(rng, f"follow-up-{i:03d}", experiments[i % len(experiments)]))
    for i in range(n_simple):
        out.append(simple(rng, f"release-{i:03d}", rollout_share))
    assert len(out) == count
    return out


USER = {
    "user_id": "user-8f14e45f-ceea-467f-a2a8-0c5a1b2c3d4e",
    "device_id": "device-3b5d5c37-1b2e-4c8f-9a1d-7e6f5a4b3c2d",
    "country": "United States", "region": "California", "city": "San Francisco",
    "language": "English", "platform": "iOS", "os": "ios 17.4", "version": "3.2.1",
    "device_model": "iPhone15,2", "carrier": "Verizon", "library": "experiment-ios-client/1.12.0",
    "user_properties": {"plan": "growth", "email": "jane@acme.com", "sessions": 42,
                        "signup_date": "2025-03-14", "beta": True},
    "cohort_ids": ["coh123", "coh456"],
    "groups": {"org": ["acme"]},
    "group_properties": {"org": {"acme": {"tier": "gold", "seats": 120}}},
}


def main():
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "bench/results/workloads").resolve()
    out.mkdir(parents=True, exist_ok=True)
    for count in MIXES:
        data = json.dumps(flags(count), separators=(",", ":"))
        (out / f"flags-{count}.json").write_text(data)
        (out / f"flags-{count}.yaml").write_text(
            "projects:\n  - deployments:\n"
            f"      - key: {DEPLOYMENT}\n        flagsFile: flags-{count}.json\n"
            "configuration:\n  port: 3546\n  logLevel: warn\n  metrics:\n    port: 9090\n")
        print(f"flags-{count}.json {len(data)} bytes")
    (out / "user.json").write_text(json.dumps(USER, separators=(",", ":")))


if __name__ == "__main__":
    main()
