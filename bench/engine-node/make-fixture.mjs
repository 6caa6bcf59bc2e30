#!/usr/bin/env node
// Generates the engine benchmark fixture once (kept in the repo for reproducibility):
//   benches/fixtures/realistic-50-flags.json     50 flags shaped like /sdk/v2/flags output
//   benches/fixtures/realistic-user-context.json one evaluation context for a typical user
//
//   node bench/engine-node/make-fixture.mjs
//
// Shape (like real Amplitude deployments, see shared/spec/amplitude-sample-flags.json):
// flag metadata deployed/evaluationMode/flagType/flagVersion(/experimentKey); a holdout group
// and a mutual-exclusion group that experiments depend on (two dependency chains, each with a
// "flag-dependencies" first segment); individual-inclusion segments; targeting segments of 3
// to 5 conditions; cohort conditions `set contains any` on ["context","user","cohort_ids"];
// experiments bucketed on device_id with allocation [0,100] and 2-3 distributions; an
// "All Other Users" last segment whose `off` variant has metadata {"default": true}.

import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Rng } from '../../tools/engine-diff/lib/rng.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const r = new Rng(50);
const DIST_MAX = 42949673;
const OFF = { key: 'off', metadata: { default: true } };
const cond = (selector, op, values) => ({ selector, op, values });
const user = (...path) => ['context', 'user', ...path];
const prop = (name) => user('user_properties', name);

const COHORTS = ['9xk3q1z', 'ab12cd3', 'pq98rs7', 'mn45op6', 'zz00yy1', 'cc77dd8', 'ee11ff2', 'gg33hh4'];

/** A targeting segment of 3 to 5 AND-ed conditions (sometimes two OR groups). */
function targeting(variant, name) {
  const pool = [
    () => cond(user('platform'), 'is', r.sample(['iOS', 'Android', 'Web'], r.int(1, 2))),
    () => cond(user('country'), 'is', r.sample(['United States', 'Canada', 'Germany', 'France', 'Japan'], r.int(1, 3))),
    () => cond(user('version'), r.pick(['version greater or equal', 'version less']), [r.pick(['4.0.0', '4.10.0', '5.2.1', '3.9'])]),
    () => cond(user('language'), 'is not', [r.pick(['ja', 'ko', 'zh'])]),
    () => cond(prop('plan'), 'is', r.sample(['free', 'pro', 'enterprise', 'team'], r.int(1, 2))),
    () => cond(prop('signup_days'), r.pick(['greater', 'less or equal']), [String(r.int(7, 365))]),
    () => cond(prop('ltv'), 'greater or equal', [String(r.int(10, 500))]),
    () => cond(prop('email'), r.pick(['contains', 'does not contain']), [r.pick(['@amplitude.com', '@gmail.com', 'test'])]),
    () => cond(prop('interests'), 'set contains any', r.sample(['music', 'sports', 'news', 'gaming', 'travel'], 2)),
    () => cond(prop('beta_opt_in'), 'is', ['true']),
    () => cond(user('device_model'), 'regex match', ['^iPhone1[4-6],\\d$']),
    () => cond(user('cohort_ids'), 'set contains any', r.sample(COHORTS, 1)),
    () => cond(['context', 'groups', 'org', 'group_properties', 'tier'], 'is', [r.pick(['enterprise', 'growth'])]),
  ];
  const and = () => r.sample(pool, r.int(3, 5)).map((make) => make());
  const conditions = r.chance(0.25) ? [and(), and()] : [and()];
  return { conditions, metadata: { segmentName: name }, variant };
}

function inclusions(variant) {
  const ids = Array.from({ length: r.int(2, 12) }, () => `user-${r.int(1000000, 9999999)}`);
  return {
    conditions: [[cond(user('user_id'), 'is', ids)], [cond(user('device_id'), 'is', [`device-${r.int(1e6, 9e6)}`])]],
    metadata: { segmentName: 'individual-inclusions' },
    variant,
  };
}

function cohortSegment(variant) {
  return {
    conditions: [[cond(user('cohort_ids'), 'set contains any', r.sample(COHORTS, r.int(1, 2)))]],
    metadata: { segmentName: 'Cohort users' },
    variant,
  };
}

function dependencySegment(parents) {
  return {
    conditions: [parents.map(([key, variant]) => cond(['result', key, 'key'], 'is not', [variant]))],
    metadata: { segmentName: 'flag-dependencies' },
    variant: 'off',
  };
}

function split(keys) {
  const step = Math.floor(DIST_MAX / keys.length);
  return keys.map((k, i) => ({ variant: k, range: [i * step, i === keys.length - 1 ? DIST_MAX : (i + 1) * step] }));
}

function bucketed(keys, salt) {
  return {
    bucket: { selector: user('device_id'), salt, allocations: [{ range: [0, 100], distributions: split(keys) }] },
    metadata: { segmentName: 'All Other Users' },
    variant: 'off',
  };
}

const ALL_OFF = { metadata: { segmentName: 'All Other Users' }, variant: 'off' };
const salt = () => Array.from({ length: 8 }, () => r.pick('abcdefghijklmnopqrstuvwxyz0123456789'.split(''))).join('');
const meta = (flagType, key) => ({
  deployed: true,
  evaluationMode: 'local',
  flagType,
  flagVersion: r.int(1, 40),
  ...(flagType === 'experiment' ? { experimentKey: `exp-${key}` } : {}),
});

function experiment(key, { parents = [], extraKeys = 0 } = {}) {
  const keys = ['control', 'treatment', ...(extraKeys > 0 ? ['treatment-2'] : [])];
  const variants = { off: OFF };
  for (const k of keys) variants[k] = { key: k, value: k, ...(k !== 'control' && r.chance(0.3) ? { payload: { color: r.pick(['blue', 'green']), limit: r.int(1, 50) } } : {}) };
  const segments = [];
  if (parents.length > 0) segments.push(dependencySegment(parents));
  if (r.chance(0.5)) segments.push(inclusions('treatment'));
  if (r.chance(0.5)) segments.push({ ...targeting(null, 'Segment 1'), bucket: bucketed(keys, salt()).bucket, variant: undefined });
  segments.push(bucketed(keys, salt()));
  return {
    key,
    metadata: meta('experiment', key),
    segments: segments.map((s) => JSON.parse(JSON.stringify(s))),
    variants,
    ...(parents.length > 0 ? { dependencies: parents.map(([k]) => k) } : {}),
  };
}

function release(key, { parents = [] } = {}) {
  const segments = [];
  if (parents.length > 0) segments.push(dependencySegment(parents));
  if (r.chance(0.3)) segments.push(inclusions('on'));
  if (r.chance(0.4)) segments.push(cohortSegment('on'));
  for (let i = r.int(0, 2); i > 0; i--) segments.push(targeting('on', `Segment ${i}`));
  if (r.chance(0.4)) {
    segments.push({
      bucket: { selector: user('device_id'), salt: salt(), allocations: [{ range: [0, r.int(5, 60)], distributions: [{ variant: 'on', range: [0, DIST_MAX] }] }] },
      metadata: { segmentName: 'All Other Users' },
      variant: 'off',
    });
  } else {
    segments.push(ALL_OFF);
  }
  return {
    key,
    metadata: meta('release', key),
    segments,
    variants: { off: OFF, on: { key: 'on', value: 'on' } },
    ...(parents.length > 0 ? { dependencies: parents.map(([k]) => k) } : {}),
  };
}

function group(key, flagType, slots) {
  const keys = Array.from({ length: slots }, (_, i) => `slot-${i + 1}`);
  const variants = { off: OFF };
  for (const k of keys) variants[k] = { key: k, value: k };
  return { key, metadata: meta(flagType, key), segments: [bucketed(keys, salt())], variants };
}

const flags = [];
// Chain 1: holdout group -> experiments -> a follow-up experiment (3 levels).
flags.push(group('holdout-q4', 'holdout-group', 1));
flags.push(experiment('checkout-redesign', { parents: [['holdout-q4', 'slot-1']] }));
flags.push(experiment('checkout-upsell', { parents: [['holdout-q4', 'slot-1']], extraKeys: 1 }));
flags.push(experiment('checkout-upsell-copy', { parents: [['checkout-upsell', 'treatment']] }));
// Chain 2: mutual-exclusion group -> two experiments -> a release gated on one of them.
flags.push(group('onboarding-mutex', 'mutual-exclusion-group', 2));
flags.push(experiment('onboarding-video', { parents: [['onboarding-mutex', 'slot-1']] }));
flags.push(experiment('onboarding-checklist', { parents: [['onboarding-mutex', 'slot-2']], extraKeys: 1 }));
flags.push(release('onboarding-checklist-v2', { parents: [['onboarding-checklist', 'treatment']] }));
const names = ['search', 'pricing', 'banner', 'dark-mode', 'new-nav', 'feed', 'chat', 'export', 'billing', 'profile', 'reco', 'notify'];
for (let i = 0; flags.length < 50; i++) {
  const key = `${names[i % names.length]}-${i}`;
  flags.push(i % 3 === 0 ? experiment(key, { extraKeys: r.int(0, 1) }) : release(key));
}
// Emit in a shuffled order, as the API does not sort by dependency.
const shuffled = r.shuffle(flags);
const flagsText = `[\n${shuffled.map((f) => JSON.stringify(f)).join(',\n')}\n]\n`;
writeFileSync(join(root, 'benches/fixtures/realistic-50-flags.json'), flagsText);

const context = {
  user: {
    user_id: 'user-4821937',
    device_id: '7f3c9a52-1e4b-4d8a-9c0f-2b6e8d1a4f37',
    amplitude_id: 123456789012,
    platform: 'iOS',
    version: '5.3.0',
    os: 'ios 17.1',
    country: 'United States',
    city: 'San Francisco',
    region: 'California',
    language: 'en',
    device_brand: 'Apple',
    device_manufacturer: 'Apple',
    device_model: 'iPhone15,2',
    carrier: 'Verizon',
    library: 'experiment-ios/1.13.0',
    user_properties: {
      plan: 'pro',
      signup_days: 142,
      ltv: 249.5,
      email: 'jane.doe@gmail.com',
      interests: ['music', 'travel', 'news'],
      beta_opt_in: true,
      '[Amplitude] Country': 'United States',
      referral_source: 'newsletter',
      sessions_30d: 37,
    },
    cohort_ids: ['ab12cd3', 'mn45op6', 'qq55ww9'],
  },
  groups: { org: { group_name: 'acme-corp', group_properties: { tier: 'enterprise', seats: 250 } } },
};
writeFileSync(join(root, 'benches/fixtures/realistic-user-context.json'), `${JSON.stringify(context, null, 2)}\n`);
console.log(`wrote ${shuffled.length} flags and a user context to benches/fixtures/`);
