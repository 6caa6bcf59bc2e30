// Runs the official Node SDKs (and plain HTTP calls for the endpoints no SDK uses) against the
// proxy at $PROXY_URL for every case of the plan, and writes what each one received to the
// JSON file named by the first argument: { mode: { caseId: {variants} | {error} } }.
'use strict';

const fs = require('fs');
const oracle = require('./lib/oracle');

const PROXY = (process.env.PROXY_URL || 'http://127.0.0.1:3546').replace(/\/+$/, '');
const OUT = process.argv[2] || '/dev/stdout';

// The JS client is a browser SDK. Under Node 20 it only lacks web storage: give it in-memory
// localStorage/sessionStorage. Everything else it probes (navigator, location, document) is
// optional, and global fetch is built in.
function installBrowserShims() {
  const memoryStorage = () => {
    const items = new Map();
    return {
      getItem: (k) => (items.has(k) ? items.get(k) : null),
      setItem: (k, v) => items.set(k, String(v)),
      removeItem: (k) => items.delete(k),
      clear: () => items.clear(),
      key: (i) => Array.from(items.keys())[i] ?? null,
      get length() {
        return items.size;
      },
    };
  };
  if (typeof globalThis.localStorage === 'undefined') globalThis.localStorage = memoryStorage();
  if (typeof globalThis.sessionStorage === 'undefined') globalThis.sessionStorage = memoryStorage();
}

installBrowserShims();
const { RemoteEvaluationClient } = require('@amplitude/experiment-node-server');
const JsExperiment = require('@amplitude/experiment-js-client').Experiment;

const observed = {};
function record(mode, id, fn) {
  observed[mode] = observed[mode] || {};
  return Promise.resolve()
    .then(fn)
    .then(
      (variants) => {
        observed[mode][id] = { variants };
      },
      (e) => {
        observed[mode][id] = { error: String((e && (e.stack || e.message)) || e).split('\n')[0] };
      },
    );
}

// JSON round-trip: drops undefined fields the SDKs leave on their variant objects.
const plain = (v) => JSON.parse(JSON.stringify(v));

const nodeRemotes = {};
/// `serverUrl` with a trailing slash makes the SDK request `//sdk/v2/vardata` (it concatenates).
/// The client is constructed directly: `Experiment.initializeRemote` caches one per key.
function nodeRemote(deploymentKey, trailingSlash = false) {
  const id = `${deploymentKey}${trailingSlash ? '/' : ''}`;
  if (!nodeRemotes[id]) {
    nodeRemotes[id] = new RemoteEvaluationClient(deploymentKey, {
      serverUrl: trailingSlash ? `${PROXY}/` : PROXY,
      fetchRetries: 0,
      fetchTimeoutMillis: 5000,
    });
  }
  return nodeRemotes[id];
}

let jsInstance = 0;
function jsClient(deploymentKey) {
  jsInstance += 1;
  // A fresh instance (and storage namespace) per case: variants never leak between cases.
  return JsExperiment.initialize(deploymentKey, {
    instanceName: `sdk-clients-${jsInstance}`,
    serverUrl: PROXY,
    flagsServerUrl: PROXY,
    pollOnStart: false,
    retryFetchOnFailure: false,
    throwOnError: true,
    fetchTimeoutMillis: 5000,
  });
}

async function nodeServerCases(c) {
  // Subset cases also send the tracking headers (X-Amp-Exp-Track / X-Amp-Exp-Exposure-Track).
  const options = c.flagKeys ? { flagKeys: c.flagKeys, tracksAssignment: false, tracksExposure: false } : undefined;
  await record('node-server fetchV2', c.id, async () => plain(await nodeRemote(c.deploymentKey).fetchV2(c.user, options)));
  if (!c.flagKeys) {
    // Deprecated fetch(): same GET /sdk/v2/vardata, defaults dropped by the SDK; errors give {}.
    await record('node-server fetch (legacy)', c.id, async () => plain(await nodeRemote(c.deploymentKey).fetch(c.user)));
    await record('node-server fetchV2, serverUrl ending in /', c.id, async () =>
      plain(await nodeRemote(c.deploymentKey, true).fetchV2(c.user)),
    );
  }
}

async function jsClientCases(c, flagKeysOfDeployment) {
  await record('js-client fetch+all', c.id, async () => {
    const client = jsClient(c.deploymentKey);
    await client.fetch(c.user, c.flagKeys ? { flagKeys: c.flagKeys } : undefined);
    return plain(client.all());
  });
  if (c.flagKeys) return;
  await record('js-client fetch+variant', c.id, async () => {
    const client = jsClient(c.deploymentKey);
    await client.fetch(c.user);
    const out = {};
    for (const key of flagKeysOfDeployment) out[key] = plain(client.variant(key));
    return out;
  });
  // start(): GET /sdk/v2/flags and GET /sdk/v2/vardata; flags in local evaluation mode are then
  // evaluated by the client itself from the flags the proxy served.
  await record('js-client start+all', c.id, async () => {
    const client = jsClient(c.deploymentKey);
    await client.start(c.user);
    client.stop();
    return plain(client.all());
  });
}

// ---- Plain HTTP, for the endpoints the SDKs above do not call -------------------------------

const b64std = (value) => Buffer.from(JSON.stringify(value), 'utf8').toString('base64');

async function http(method, path, { key, headers = {}, body } = {}) {
  const res = await fetch(`${PROXY}${path}`, {
    method,
    headers: { ...(key ? { Authorization: `Api-Key ${key}` } : {}), ...headers },
    body,
  });
  const text = await res.text();
  return { status: res.status, contentType: res.headers.get('content-type'), text };
}

async function httpJson(method, path, options) {
  const r = await http(method, path, options);
  if (r.status !== 200) throw new Error(`HTTP ${r.status}: ${r.text.slice(0, 200)}`);
  try {
    return JSON.parse(r.text);
  } catch (e) {
    throw new Error(`HTTP 200 with a body that is not JSON: ${r.text.slice(0, 200)}`);
  }
}

async function rawCases(c) {
  const key = c.deploymentKey;
  const keysHeader = c.flagKeys ? { 'X-Amp-Exp-Flag-Keys': b64std(c.flagKeys) } : {};
  // The JVM and Go SDKs send standard, padded base64.
  await record('http GET /sdk/v2/vardata std-base64', c.id, () =>
    httpJson('GET', '/sdk/v2/vardata?v=0', { key, headers: { 'X-Amp-Exp-User': b64std(c.user), ...keysHeader } }),
  );
  if (c.flagKeys) return;
  const json = { 'Content-Type': 'application/json' };
  await record('http GET /sdk/vardata', c.id, () =>
    httpJson('GET', '/sdk/vardata', { key, headers: { 'X-Amp-Exp-User': b64std(c.user) } }),
  );
  await record('http POST /sdk/vardata', c.id, () =>
    httpJson('POST', '/sdk/vardata', { key, headers: json, body: JSON.stringify(c.user) }),
  );
  await record('http POST /v1/vardata', c.id, () =>
    httpJson('POST', '/v1/vardata', { key, headers: json, body: JSON.stringify(c.user) }),
  );
  const query = new URLSearchParams();
  if (typeof c.user.user_id === 'string') query.set('user_id', c.user.user_id);
  if (typeof c.user.device_id === 'string') query.set('device_id', c.user.device_id);
  query.set('context', JSON.stringify(c.user));
  await record('http GET /v1/vardata', c.id, () => httpJson('GET', `/v1/vardata?${query}`, { key }));
}

async function protocolChecks() {
  for (const [name, d] of Object.entries(oracle.DEPLOYMENTS)) {
    await record('http GET /sdk/v2/flags', name, () => httpJson('GET', '/sdk/v2/flags', { key: d.key }));
  }
  const user = b64std({ user_id: 'u' });
  await record('http status', 'unknown deployment key -> 401', async () => {
    const r = await http('GET', '/sdk/v2/vardata?v=0', { key: 'client-no-such-deployment', headers: { 'X-Amp-Exp-User': user } });
    return { status: r.status };
  });
  await record('http status', 'missing Authorization -> 401', async () => {
    const r = await http('GET', '/sdk/v2/vardata?v=0', { headers: { 'X-Amp-Exp-User': user } });
    return { status: r.status };
  });
  await record('http status', 'v2 vardata Content-Type is JSON', async () => {
    const r = await http('GET', '/sdk/v2/vardata?v=0', {
      key: oracle.DEPLOYMENTS.main.key,
      headers: { 'X-Amp-Exp-User': user },
    });
    return { status: r.status, json: /^application\/json/i.test(r.contentType || '') };
  });
}

async function main() {
  const cases = oracle.plan();
  for (const c of cases) {
    const keys = Object.keys(oracle.flagsByKey(c.deployment));
    await nodeServerCases(c);
    await jsClientCases(c, keys);
    await rawCases(c);
  }
  await protocolChecks();
  fs.writeFileSync(OUT, JSON.stringify(observed, null, 1));
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(2);
  },
);
