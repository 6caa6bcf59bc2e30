#!/usr/bin/env node
// Generates differential-test cases and evaluates them with @amplitude/experiment-core.
//
//   node generate.mjs [--seed N] [--count N] [--fixture N] [--out FILE]
//
// Writes one JSON object per line:
//   {"id", "kind": "random"|"fixture"|"known", "case_seed"?, "name"?, "note"?,
//    "flags_json": "<text>", "context_json": "<text>", "flag_keys": [..] | null,
//    "js": {"order": [...], "results": {...}} | {"error": "..."},
//    "expected"?: {"results"?, "order"?, "result_order"?, "error"?}}
// flag_keys null means "all flags" (JS gets undefined: an explicit [] means none in JS).

import { createWriteStream, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EvaluationEngine, topologicalSort } from '@amplitude/experiment-core';
import { Rng } from './lib/rng.mjs';
import { genContext } from './lib/values.mjs';
import { genFlags, genFlagKeys } from './lib/flags.mjs';
import { KNOWN } from './lib/known.mjs';

function parseArgs(argv) {
  const args = { seed: 20261121, count: 10000, fixture: 500, out: 'out/cases.jsonl' };
  for (let i = 2; i < argv.length; i += 2) {
    const name = argv[i].replace(/^--/, '');
    if (!(name in args)) throw new Error(`unknown option ${argv[i]}`);
    args[name] = name === 'out' ? argv[i + 1] : Number(argv[i + 1]);
  }
  return args;
}

/** Per-case seed, so one case can be regenerated alone. */
function caseSeed(seed, index) {
  return (Math.imul(seed >>> 0, 2654435761) + Math.imul(index + 1, 40503)) >>> 0;
}

const engine = new EvaluationEngine();

/** Evaluates exactly like an SDK: topologicalSort, then evaluate. */
function evaluateJs(flagsJson, contextJson, flagKeys) {
  const flags = JSON.parse(flagsJson);
  const context = JSON.parse(contextJson);
  const byKey = Object.fromEntries(flags.map((f) => [f.key, f]));
  try {
    const sorted = topologicalSort(byKey, flagKeys ?? undefined);
    const results = engine.evaluate(context, sorted);
    return { order: sorted.map((f) => f.key), results };
  } catch (e) {
    return { error: String(e) };
  }
}

function randomCase(seed, index) {
  const case_seed = caseSeed(seed, index);
  const r = new Rng(case_seed);
  const context = genContext(r);
  const flags = genFlags(r, context);
  const flagKeys = genFlagKeys(r, flags);
  const flags_json = JSON.stringify(flags);
  const context_json = JSON.stringify(context);
  const flag_keys = flagKeys ?? null;
  return {
    id: `r${index}`,
    kind: 'random',
    case_seed,
    flags_json,
    context_json,
    flag_keys,
    js: evaluateJs(flags_json, context_json, flag_keys),
  };
}

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'benches', 'fixtures');

/**
 * The benchmark's realistic 50-flag deployment, evaluated for a varied user: realistic
 * bucketing, dependency chains and targeting on the same config the benchmark times.
 */
function fixtureCase(seed, index, flagsJson, baseContext) {
  const case_seed = caseSeed(seed ^ 0x5f1e, index);
  const r = new Rng(case_seed);
  const user = structuredClone(baseContext.user);
  user.device_id = `${r.int(0, 0xffffffff).toString(16)}-${r.int(0, 0xffff).toString(16)}-${r.int(0, 0xffffffff).toString(16)}`;
  user.user_id = `user-${r.int(1000000, 9999999)}`;
  if (r.chance(0.3)) delete user.user_id;
  user.platform = r.pick(['iOS', 'Android', 'Web']);
  user.country = r.pick(['United States', 'Canada', 'Germany', 'France', 'Japan', 'Brazil']);
  user.version = r.pick(['3.9', '4.0.0', '4.10.2', '5.2.1', '5.3.0', '6.0.0-beta.1']);
  user.language = r.pick(['en', 'ja', 'de', 'fr']);
  user.device_model = r.pick(['iPhone15,2', 'iPhone14,5', 'iPhone16,1', 'Pixel 8', 'Macintosh']);
  user.cohort_ids = r.sample(['9xk3q1z', 'ab12cd3', 'pq98rs7', 'mn45op6', 'zz00yy1', 'cc77dd8', 'ee11ff2', 'gg33hh4'], r.int(0, 4));
  const up = user.user_properties;
  up.plan = r.pick(['free', 'pro', 'enterprise', 'team']);
  up.signup_days = r.int(0, 1000);
  up.ltv = r.chance(0.5) ? r.int(0, 600) : Math.round(r.next() * 60000) / 100 + 0.01;
  up.email = r.pick(['jane.doe@gmail.com', 'ops@amplitude.com', 'test+1@example.com']);
  up.interests = r.sample(['music', 'sports', 'news', 'gaming', 'travel'], r.int(0, 3));
  up.beta_opt_in = r.chance(0.3);
  const context = { ...baseContext, user };
  if (r.chance(0.3)) delete context.groups;
  else context.groups = { org: { group_name: 'acme-corp', group_properties: { tier: r.pick(['enterprise', 'growth']) } } };
  const context_json = JSON.stringify(context);
  const flag_keys = r.chance(0.2) ? r.sample(JSON.parse(flagsJson).map((f) => f.key), r.int(1, 3)) : null;
  return {
    id: `f${index}`,
    kind: 'fixture',
    case_seed,
    flags_json: flagsJson,
    context_json,
    flag_keys,
    js: evaluateJs(flagsJson, context_json, flag_keys),
  };
}

function knownCase(k, index) {
  const flags_json = JSON.stringify(k.flags);
  return {
    id: `k${index}`,
    kind: 'known',
    name: k.name,
    note: k.note,
    flags_json,
    context_json: k.context_json,
    flag_keys: k.flag_keys ?? null,
    js: evaluateJs(flags_json, k.context_json, k.flag_keys ?? null),
    expected: k.expected,
  };
}

/** Refuses to run with an experiment-core other than the pinned one (stale node_modules). */
function checkPinnedVersion() {
  const here = dirname(fileURLToPath(import.meta.url));
  const pinned = JSON.parse(readFileSync(join(here, 'package.json'), 'utf8')).dependencies['@amplitude/experiment-core'];
  const installed = JSON.parse(readFileSync(join(here, 'node_modules/@amplitude/experiment-core/package.json'), 'utf8')).version;
  if (installed !== pinned) {
    throw new Error(`@amplitude/experiment-core ${installed} is installed but ${pinned} is pinned: run npm ci in ${here}`);
  }
}

async function main() {
  checkPinnedVersion();
  const args = parseArgs(process.argv);
  const out = createWriteStream(args.out);
  const write = (obj) => new Promise((resolve) => (out.write(`${JSON.stringify(obj)}\n`) ? resolve() : out.once('drain', resolve)));
  let errors = 0;
  for (let i = 0; i < args.count; i++) {
    const c = randomCase(args.seed, i);
    if (c.js.error) errors++;
    await write(c);
  }
  const fixtureFlags = readFileSync(join(FIXTURES, 'realistic-50-flags.json'), 'utf8');
  const fixtureContext = JSON.parse(readFileSync(join(FIXTURES, 'realistic-user-context.json'), 'utf8'));
  for (let i = 0; i < args.fixture; i++) await write(fixtureCase(args.seed, i, fixtureFlags, fixtureContext));
  for (const [i, k] of KNOWN.entries()) await write(knownCase(k, i));
  await new Promise((resolve) => out.end(resolve));
  console.log(
    `generated ${args.count} random cases (${errors} where JS throws) + ${args.fixture} cases on the 50-flag benchmark fixture + ${KNOWN.length} known-difference cases -> ${args.out} (seed ${args.seed})`,
  );
}

main();
