#!/usr/bin/env node
// Generates differential-test cases and evaluates them with @amplitude/experiment-core.
//
//   node generate.mjs [--seed N] [--count N] [--out FILE]
//
// Writes one JSON object per line:
//   {"id", "kind": "random"|"known", "case_seed"?, "name"?, "note"?,
//    "flags_json": "<text>", "context_json": "<text>", "flag_keys": [..] | null,
//    "js": {"order": [...], "results": {...}} | {"error": "..."},
//    "expected"?: {"results"?, "order"?, "result_order"?, "error"?}}
// flag_keys null means "all flags" (JS gets undefined: an explicit [] means none in JS).

import { createWriteStream } from 'node:fs';
import { EvaluationEngine, topologicalSort } from '@amplitude/experiment-core';
import { Rng } from './lib/rng.mjs';
import { genContext } from './lib/values.mjs';
import { genFlags, genFlagKeys } from './lib/flags.mjs';
import { KNOWN } from './lib/known.mjs';

function parseArgs(argv) {
  const args = { seed: 20261121, count: 10000, out: 'out/cases.jsonl' };
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

async function main() {
  const args = parseArgs(process.argv);
  const out = createWriteStream(args.out);
  const write = (obj) => new Promise((resolve) => (out.write(`${JSON.stringify(obj)}\n`) ? resolve() : out.once('drain', resolve)));
  let errors = 0;
  for (let i = 0; i < args.count; i++) {
    const c = randomCase(args.seed, i);
    if (c.js.error) errors++;
    await write(c);
  }
  for (const [i, k] of KNOWN.entries()) await write(knownCase(k, i));
  await new Promise((resolve) => out.end(resolve));
  console.log(`generated ${args.count} random cases (${errors} where JS throws) + ${KNOWN.length} known-difference cases -> ${args.out} (seed ${args.seed})`);
}

main();
