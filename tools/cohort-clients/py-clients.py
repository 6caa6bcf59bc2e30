"""Python SDK: local evaluation with cohorts downloaded from the proxy (cohort_server_url =
proxy), and remote evaluation at the proxy. Reads the users from argv[1] (JSON), writes
{"local": [...], "remote": [...]} (per user: flag key -> variant key) to argv[2]."""
import json
import os
import sys

from amplitude_experiment import (CohortSyncConfig, Experiment, LocalEvaluationConfig,
                                  RemoteEvaluationConfig, User)

PROXY = os.environ["PROXY_URL"]
scenario = json.load(open(sys.argv[1]))


def to_user(u):
    return User(user_id=u.get("user_id"), device_id=u.get("device_id"), groups=u.get("groups"))


local = Experiment.initialize_local(scenario["deploymentKey"], LocalEvaluationConfig(
    server_url=PROXY,
    cohort_sync_config=CohortSyncConfig(scenario["apiKey"], scenario["secretKey"],
                                        cohort_server_url=PROXY)))
local.start()
remote = Experiment.initialize_remote(scenario["deploymentKey"],
                                      RemoteEvaluationConfig(server_url=PROXY))
out = {"local": [], "remote": []}
for u in scenario["users"]:
    user = to_user(u)
    out["local"].append(dict(sorted((k, v.key) for k, v in local.evaluate_v2(user).items())))
    out["remote"].append(dict(sorted((k, v.key) for k, v in remote.fetch_v2(user).items())))
local.stop()
remote.close()
json.dump(out, open(sys.argv[2], "w"))
