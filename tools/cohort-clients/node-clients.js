// Node server SDK: local evaluation with cohorts downloaded from the proxy
// (cohortSyncConfig.cohortServerUrl = proxy), and remote evaluation at the proxy.
// Writes {local: [...], remote: [...]} (per user: flagKey -> variant key) to argv[2].
'use strict';

const fs = require('fs');
const { Experiment } = require('@amplitude/experiment-node-server');
const { DEPLOYMENT_KEY, API_KEY, SECRET_KEY, USERS } = require('./scenario');

const PROXY = process.env.PROXY_URL;
const keys = (variants) =>
  Object.fromEntries(Object.entries(variants).map(([flag, v]) => [flag, v.key]).sort());

(async () => {
  const local = Experiment.initializeLocal(DEPLOYMENT_KEY, {
    serverUrl: PROXY,
    cohortSyncConfig: { apiKey: API_KEY, secretKey: SECRET_KEY, cohortServerUrl: PROXY },
  });
  await local.start();
  const remote = Experiment.initializeRemote(DEPLOYMENT_KEY, { serverUrl: PROXY, fetchRetries: 0 });
  const out = { local: [], remote: [] };
  for (const user of USERS) {
    out.local.push(keys(local.evaluateV2(user)));
    out.remote.push(keys(await remote.fetchV2(user)));
  }
  local.stop();
  fs.writeFileSync(process.argv[2], JSON.stringify(out));
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
