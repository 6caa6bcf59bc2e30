// Pools and generators for context values. Every value here has the same string form in
// JS and on the JVM: integers are written without a fraction, decimals are non-integral
// with 0.001 <= |d| < 1e7 and few digits (JS String() and Java Double.toString agree),
// object keys are never integer-like (JS would reorder them), arrays hold no empty strings
// and no duplicate string forms (JS drops "" and does not dedupe).

import { coerceString } from './safe.mjs';

export const WORDS = [
  'ios', 'android', 'web', 'premium', 'free', 'gold', 'silver', 'alpha', 'beta', 'enterprise',
  'hello world', 'Hello World', 'HELLO', 'us-east-1', 'de', 'fr', 'en-US', 'pt_BR',
  'Straße', 'İstanbul', 'ΣΊΣΥΦΟΣ', 'Οδυσσεύς', '日本語', 'café', 'naïve', 'Ünïcödé',
  'TRUE', 'false', 'True', 'FaLsE', 'true', '(none)', 'null', 'undefined', 'a,b', 'a/b',
  'x\ny', 'x\ry', 'tab\there', 'quote"d', 'back\\slash', 'dollar$', 'caret^', 'dot.dot', 'star*',
  'paren(s)', '[bracket', 'brace{}', 'plus+minus-', 'pipe|pipe', 'q?', 'emoji 😀', '🚀',
  '', ' ', '  padded  ', 'user@example.com', 'admin@corp.io', 'https://a.b/c?d=e',
];
export const NUMERIC_STRINGS = [
  '0', '1', '7', '42', '-7', '100', '3.5', '-2.25', '1e3', '1E2', '2.5e-1', '+5', '.5', '5.',
  '007', '1000000', '12.5', '99.99', '0.001', '123456789',
];
export const NUMERIC_JUNK = ['abc', 'n/a', '1,000', 'one', 'x1'];
export const VERSIONS = [
  '1.0', '1.2', '1.2.3', '1.10.0', '1.9.9', '2.0.0', '2.0.0-beta', '2.0.0-beta.1', '2.0.0-beta.2',
  '2.0.0-alpha', '2.0.0-rc.1', '10.2.33', '10.2.33-alpha', '0.9.12', '01.2.3', '3.0.0', '3.0',
  '1.2.3-alpha-1', '4.5.6-x.7.z', 'v1.2.3', '1.10.', 'latest', '1',
];
export const LIST_JUNK = ['[', '[1,', '[1,]', '[]x', '[not json'];
export const COHORTS = ['cohortA', 'cohortB', 'cohort-c', 'ckq1ab2', 'ALL_USERS', 'vip', 'beta-testers'];
export const PROP_NAMES = [
  'plan', 'tier', 'age', 'score', 'ratio', 'is_admin', 'beta', 'tags', 'interests', 'app_version',
  'signup_count', 'ltv', 'nested', 'company', 'email', 'cohorts_json', 'mixed', 'empty', 'nothing',
  'plan type', 'ünïcode', 'a.b', 'TRUE_FLAG', 'list_json', 'objs', 'zero', 'neg',
];

export function genInt(r) {
  return r.weighted([
    [4, r.int(0, 100)],
    [2, r.int(-1000, 1000)],
    [2, r.int(0, 2147483647)],
    [1, r.int(2147483648, 9007199254740991)],
    [1, r.pick([0, 1, -1, 2147483647, -2147483648, 9007199254740991, -9007199254740991])],
  ]);
}

/** A non-integral decimal whose JS and Java string forms agree. */
export function genDecimal(r) {
  for (;;) {
    const places = r.int(1, 4);
    const mag = r.pick([1, 10, 100, 10000, 1000000]);
    let d = Math.round(r.next() * mag * 10 ** places) / 10 ** places;
    if (r.chance(0.3)) d = -d;
    if (!Number.isInteger(d) && Math.abs(d) >= 0.001 && Math.abs(d) < 1e7) return d;
  }
}

export function genScalar(r) {
  return r.weighted([
    [5, () => r.pick(WORDS)],
    [2, () => r.pick(NUMERIC_STRINGS)],
    [2, () => r.pick(VERSIONS)],
    [3, () => genInt(r)],
    [2, () => genDecimal(r)],
    [2, () => r.chance(0.5)],
  ])();
}

/** An array of scalars (and sometimes nested values) with distinct, non-empty string forms. */
export function genArray(r, depth = 0) {
  const n = r.weighted([[1, 0], [3, 1], [4, r.int(2, 4)], [1, r.int(5, 8)]]);
  const out = [];
  const seen = new Set();
  for (let i = 0; i < n * 2 && out.length < n; i++) {
    const v = r.weighted([
      [10, () => genScalar(r)],
      [1, () => null],
      [depth === 0 ? 1 : 0, () => genArray(r, depth + 1)],
      [depth === 0 ? 1 : 0, () => genObject(r, depth + 1)],
    ])();
    if (v === null) {
      out.push(null);
      continue;
    }
    const s = coerceString(v);
    if (s === '' || seen.has(s)) continue;
    seen.add(s);
    out.push(v);
  }
  return out;
}

export function genObject(r, depth = 0) {
  const obj = {};
  const n = r.int(0, 4);
  for (const name of r.sample(PROP_NAMES, n)) {
    obj[name] = depth < 2 && r.chance(0.15) ? genObject(r, depth + 1) : genScalar(r);
  }
  return obj;
}

/** A JSON-array string, sometimes with JSON whitespace, or one that is not a valid array. */
export function genListString(r) {
  if (r.chance(0.1)) return r.pick(LIST_JUNK);
  const arr = genArray(r, 1);
  return r.chance(0.3) ? JSON.stringify(arr, null, 1) : JSON.stringify(arr);
}

/** Any property value, by kind. */
export function genProperty(r) {
  return r.weighted([
    [10, () => genScalar(r)],
    [1, () => null],
    [3, () => genArray(r)],
    [2, () => genListString(r)],
    [1, () => genObject(r)],
  ])();
}

export function genId(r, prefix) {
  return r.weighted([
    [6, () => `${prefix}${r.int(1, 100000)}`],
    [2, () => Array.from({ length: 36 }, () => r.pick('0123456789abcdef-'.split(''))).join('')],
    [1, () => r.pick(['ÄÖÜ-ß', '😀device', 'x y', 'a/b', '1.5', '12345', 'TRUE'])],
  ])();
}

/** An evaluation context shaped like the SDKs and the proxy build it. */
export function genContext(r) {
  const user = {};
  if (r.chance(0.9)) user.user_id = genId(r, 'user-');
  if (r.chance(0.9)) user.device_id = genId(r, 'device-');
  if (r.chance(0.4)) user.amplitude_id = r.int(1, 2 ** 40);
  for (const [name, gen] of [
    ['platform', () => r.pick(['iOS', 'Android', 'Web', 'ios', ''])],
    ['version', () => r.pick(VERSIONS)],
    ['os', () => r.pick(['ios 17.1', 'android 14', 'Mac OS X', 'Windows'])],
    ['country', () => r.pick(['United States', 'Germany', 'France', 'Japan', 'Brazil'])],
    ['language', () => r.pick(['en', 'de', 'fr', 'ja', 'pt-BR'])],
    ['device_model', () => r.pick(['iPhone15,2', 'Pixel 8', 'SM-S918B', 'Macintosh'])],
    ['city', () => r.pick(['San Francisco', 'München', 'Paris', '東京'])],
  ]) {
    if (r.chance(0.5)) user[name] = gen();
  }
  if (r.chance(0.85)) {
    const props = {};
    for (const name of r.sample(PROP_NAMES, r.int(1, 10))) props[name] = genProperty(r);
    user.user_properties = props;
  }
  if (r.chance(0.6)) user.cohort_ids = r.sample(COHORTS, r.int(0, 4));
  const context = { user };
  if (r.chance(0.5)) {
    const groups = {};
    for (const type of r.sample(['org', 'company', 'team'], r.int(1, 2))) {
      const g = { group_name: r.pick(['acme', 'Globex', 'initech', 'Umbrella Corp', 'ünï']) };
      if (r.chance(0.7)) {
        const gp = {};
        for (const name of r.sample(PROP_NAMES, r.int(1, 4))) gp[name] = genProperty(r);
        g.group_properties = gp;
      }
      if (r.chance(0.5)) g.cohort_ids = r.sample(COHORTS, r.int(0, 3));
      groups[type] = g;
    }
    context.groups = groups;
  }
  return context;
}
