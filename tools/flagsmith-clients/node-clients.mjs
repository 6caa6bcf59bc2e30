// Runs the official Flagsmith Node SDK (npm `flagsmith-nodejs`) against the proxy.
//
// usage: node node-clients.mjs <api_url> <server_key> <client_key>
//
// Same checks as py_clients.py: remote evaluation with both keys, local evaluation with the
// server-side key (the SDK's own engine), expected values from cases.json, and remote identity
// flags (the proxy's engine) equal to the SDK's local evaluation. Prints PASS/FAIL lines.
import { readFileSync } from 'node:fs';
import { Flagsmith } from 'flagsmith-nodejs';

const [apiUrl, serverKey, clientKey] = process.argv.slice(2);
const cases = JSON.parse(readFileSync(new URL('./cases.json', import.meta.url), 'utf8'));
const results = { passed: 0, failed: 0 };

function check(name, ok, detail = '') {
  if (ok) {
    results.passed += 1;
    console.log(`PASS node ${name}`);
  } else {
    results.failed += 1;
    console.log(`FAIL node ${name}: ${detail}`);
  }
}

// Key-order-independent deep equality of plain JSON values.
function same(a, b) {
  return JSON.stringify(sortKeys(a)) === JSON.stringify(sortKeys(b));
}
function sortKeys(v) {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v && typeof v === 'object') {
    return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sortKeys(v[k])]));
  }
  return v;
}

const asDict = (flags) =>
  Object.fromEntries(flags.allFlags().map((f) => [f.featureName, [f.enabled, f.value ?? null]]));

function identities() {
  const items = [...cases.identities];
  for (let i = 0; i < cases.generated_identities; i++) {
    let traits = {};
    if (i % 3 === 1) traits = { plan: 'gold', age: i };
    else if (i % 3 === 2) traits = { plan: 'basic' };
    items.push({ identifier: `user-${i}`, traits });
  }
  return items;
}

async function attempt(name, fn) {
  try {
    await fn();
  } catch (e) {
    check(name, false, String(e && e.stack ? e.message : e));
  }
}

const remote = {
  client: new Flagsmith({ environmentKey: clientKey, apiUrl }),
  server: new Flagsmith({ environmentKey: serverKey, apiUrl }),
};
const local = new Flagsmith({ environmentKey: serverKey, apiUrl, enableLocalEvaluation: true });

for (const [kind, sdk] of Object.entries(remote)) {
  const expected = cases.expected_environment_flags[kind];
  await attempt(`remote ${kind} environment flags`, async () => {
    const got = asDict(await sdk.getEnvironmentFlags());
    check(`remote ${kind} environment flags`, same(got, expected), `${JSON.stringify(got)} != ${JSON.stringify(expected)}`);
  });
}

for (const c of cases.expected_identity_flags) {
  const name = `expected ${c.identifier} ${JSON.stringify(c.traits)} ${c.flag}`;
  for (const [label, sdk] of [['remote', remote.client], ['local', local]]) {
    await attempt(`${label} ${name}`, async () => {
      const got = asDict(await sdk.getIdentityFlags(c.identifier, c.traits))[c.flag];
      check(`${label} ${name}`, same(got, c.expect), `${JSON.stringify(got)} != ${JSON.stringify(c.expect)}`);
    });
  }
}

for (const { identifier, traits } of identities()) {
  const name = `identity ${JSON.stringify(identifier)} ${JSON.stringify(traits)}`;
  await attempt(name, async () => {
    const reference = asDict(await local.getIdentityFlags(identifier, traits));
    const server = asDict(await remote.server.getIdentityFlags(identifier, traits));
    const client = asDict(await remote.client.getIdentityFlags(identifier, traits));
    const withoutServerOnly = Object.fromEntries(Object.entries(reference).filter(([k]) => k !== 'server_only'));
    check(`${name} server key = local`, same(server, reference), `${JSON.stringify(server)} != ${JSON.stringify(reference)}`);
    check(`${name} client key = local without server-only`, same(client, withoutServerOnly),
      `${JSON.stringify(client)} != ${JSON.stringify(withoutServerOnly)}`);
  });
}

console.log(`node: ${results.passed} passed, ${results.failed} failed`);
await Promise.allSettled([remote.client.close?.(), remote.server.close?.(), local.close?.()]);
process.exit(results.failed ? 1 : 0);
