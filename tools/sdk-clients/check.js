// Compares what the SDKs received from the proxy with what @amplitude/experiment-core computes.
// Usage: node check.js OBSERVED.json [OBSERVED.json ...]
// Prints one line per mode, details of every mismatch, and `N passed, N failed`; exit 1 on any
// failure.
'use strict';

const fs = require('fs');
const oracle = require('./lib/oracle');

const dropDefaults = (r) =>
  Object.fromEntries(Object.entries(r).filter(([, v]) => !(v.metadata && v.metadata.default)));
// Python's fetch(): drops a variant only if it is a default AND its flag is not deployed.
const dropDefaultUndeployed = (r) =>
  Object.fromEntries(
    Object.entries(r).filter(([, v]) => !(v.metadata && v.metadata.default && v.metadata.deployed === false)),
  );
function variantPerFlag(c, results) {
  const out = {};
  for (const key of Object.keys(oracle.flagsByKey(c.deployment))) out[key] = results[key] || {};
  return out;
}

/// mode -> which cases it runs (all, or only those without a flag-key subset) and its expectation.
const MODES = {
  'node-server fetchV2': { all: true, expect: (c, r) => r },
  'node-server fetch (legacy)': { all: false, expect: (c, r) => dropDefaults(r) },
  'node-server fetchV2, serverUrl ending in /': { all: false, expect: (c, r) => r },
  'js-client fetch+all': { all: true, expect: (c, r) => r, expKey: true },
  'js-client fetch+variant': { all: false, expect: variantPerFlag, expKey: true },
  'js-client start+all': { all: false, expect: (c, r) => r, expKey: true },
  'python fetch_v2': { all: true, expect: (c, r) => r },
  'python fetch (legacy)': { all: false, expect: (c, r) => dropDefaultUndeployed(r) },
  'http GET /sdk/v2/vardata std-base64': { all: true, expect: (c, r) => r },
  'http GET /sdk/vardata': { all: false, expect: (c, r) => oracle.v1Filter(r) },
  'http POST /sdk/vardata': { all: false, expect: (c, r) => oracle.v1Filter(r) },
  'http POST /v1/vardata': { all: false, expect: (c, r) => oracle.v1Filter(r) },
  'http GET /v1/vardata': { all: false, expect: (c, r) => oracle.v1Filter(r) },
};

/// JSON with sorted object keys: key order never matters.
function canonical(x) {
  if (Array.isArray(x)) return `[${x.map(canonical).join(',')}]`;
  if (x && typeof x === 'object') {
    return `{${Object.keys(x)
      .sort()
      .filter((k) => x[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonical(x[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(x);
}

/// SDKs turn a non-string `value` into a JSON string (the JS client keeps it as is): compare both
/// as canonical JSON.
function normValue(v) {
  if (v === null || v === undefined) return undefined;
  if (typeof v !== 'string') return canonical(v);
  if (/^\s*[[{]/.test(v)) {
    try {
      return canonical(JSON.parse(v));
    } catch (e) {
      return v;
    }
  }
  return v;
}

/// The fields compared per flag. Empty metadata counts as absent (the JS engine emits `{}`).
function normVariant(v) {
  if (!v || typeof v !== 'object') return v;
  const md = v.metadata && Object.keys(v.metadata).length > 0 ? v.metadata : undefined;
  return canonical({ key: v.key, value: normValue(v.value), payload: v.payload === null ? undefined : v.payload, metadata: md });
}

function compareVariants(expected, actual, expKey) {
  const problems = [];
  const keys = new Set([...Object.keys(expected), ...Object.keys(actual)]);
  for (const k of [...keys].sort()) {
    if (!(k in actual)) problems.push(`${k}: missing (expected ${normVariant(expected[k])})`);
    else if (!(k in expected)) problems.push(`${k}: unexpected ${normVariant(actual[k])}`);
    else {
      const e = normVariant(expected[k]);
      const a = normVariant(actual[k]);
      if (e !== a) problems.push(`${k}: expected ${e} got ${a}`);
      const wantExpKey = expected[k].metadata && expected[k].metadata.experimentKey;
      if (expKey && actual[k] && (actual[k].expKey || undefined) !== (wantExpKey || undefined)) {
        problems.push(`${k}: expKey expected ${wantExpKey} got ${actual[k].expKey}`);
      }
    }
  }
  return problems;
}

function main() {
  const observed = {};
  for (const file of process.argv.slice(2)) {
    try {
      Object.assign(observed, JSON.parse(fs.readFileSync(file, 'utf8')));
    } catch (e) {
      console.log(`(no results from ${file}: ${e.message.split('\n')[0]})`);
    }
  }
  let passed = 0;
  let failed = 0;
  const report = (mode, ok, total, failures) => {
    console.log(`${failures.length === 0 ? 'PASS' : 'FAIL'} ${mode}: ${ok}/${total}`);
    for (const f of failures.slice(0, 8)) console.log(`    ${f}`);
    if (failures.length > 8) console.log(`    ... and ${failures.length - 8} more`);
  };

  const cases = oracle.plan();

  // The test itself: the users must reach both experiment arms and the targeted segment.
  {
    const failures = [];
    const arms = new Set();
    for (const c of cases.filter((c) => c.deployment === 'main' && !c.flagKeys)) {
      arms.add(oracle.expectedV2(c)['checkout-experiment'].key);
    }
    if (!(arms.has('control') && arms.has('treatment'))) failures.push(`arms reached: ${[...arms]}`);
    const banner = oracle.expectedV2(cases.find((c) => c.id === 'main/canada-paid'))['welcome-banner'];
    if (banner.key !== 'on') failures.push(`canada-paid banner: ${banner.key}`);
    passed += 2 - failures.length;
    failed += failures.length;
    report('plan sanity (both arms, targeted banner)', 2 - failures.length, 2, failures);
  }

  for (const [mode, spec] of Object.entries(MODES)) {
    const got = observed[mode] || {};
    const failures = [];
    let ok = 0;
    const applicable = cases.filter((c) => spec.all || !c.flagKeys);
    for (const c of applicable) {
      const r = got[c.id];
      let problems;
      if (!r) problems = ['no result (client did not run)'];
      else if (r.error) problems = [`error: ${r.error}`];
      else problems = compareVariants(spec.expect(c, oracle.expectedV2(c)), r.variants || {}, spec.expKey);
      if (problems.length === 0) ok += 1;
      else failures.push(`${c.id}: ${problems.join('; ')}`);
    }
    passed += ok;
    failed += failures.length;
    report(mode, ok, applicable.length, failures);
  }

  // GET /sdk/v2/flags must hand out the deployment's flags unchanged (the JS client evaluates them).
  {
    const got = observed['http GET /sdk/v2/flags'] || {};
    const failures = [];
    const names = Object.keys(oracle.DEPLOYMENTS);
    for (const name of names) {
      const r = got[name];
      const want = oracle.readJson(oracle.DEPLOYMENTS[name].flagsFile);
      const byKey = (flags) => canonical(Object.fromEntries(flags.map((f) => [f.key, f])));
      if (!r) failures.push(`${name}: no result`);
      else if (r.error) failures.push(`${name}: error: ${r.error}`);
      else if (!Array.isArray(r.variants)) failures.push(`${name}: not a JSON array`);
      else if (byKey(r.variants) !== byKey(want)) {
        failures.push(`${name}: flags differ from ${oracle.DEPLOYMENTS[name].flagsFile}: ${JSON.stringify(r.variants).slice(0, 300)}`);
      }
    }
    passed += names.length - failures.length;
    failed += failures.length;
    report('http GET /sdk/v2/flags', names.length - failures.length, names.length, failures);
  }

  {
    const got = observed['http status'] || {};
    const want = { 'unknown deployment key -> 401': 401, 'missing Authorization -> 401': 401 };
    const failures = [];
    for (const [name, status] of Object.entries(want)) {
      const r = got[name];
      if (!r || r.error) failures.push(`${name}: ${r ? r.error : 'no result'}`);
      else if (r.variants.status !== status) failures.push(`${name}: got ${r.variants.status}`);
    }
    const n = Object.keys(want).length;
    passed += n - failures.length;
    failed += failures.length;
    report('http status codes', n - failures.length, n, failures);
    const ct = got['v2 vardata Content-Type is JSON'];
    if (ct && ct.variants && !ct.variants.json) {
      console.log('note: /sdk/v2/vardata answers without Content-Type application/json (not counted)');
    }
  }

  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed === 0 ? 0 : 1);
}

main();
