#!/usr/bin/env node
// Times @amplitude/experiment-core (pinned in package-lock.json) on the engine benchmark
// fixture, to compare with `cargo bench --bench engine`.
//
//   node bench/engine-node/time.mjs [--seconds S] [--json]
//
// Reports mean (and best-batch) microseconds per call for:
//   evaluate        engine.evaluate(context, flagsSortedOnce)  (same work as our CompiledFlags::evaluate)
//   sort+evaluate   topologicalSort + evaluate per call, as the Node SDK's local evaluation does
//   parse+eval+json JSON.parse(context text) + evaluate + JSON.stringify(results)
// Each is warmed up (JIT) for a second, then run in batches until the time budget is spent.

import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EvaluationEngine, topologicalSort } from '@amplitude/experiment-core';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const args = process.argv.slice(2);
const seconds = Number(args[args.indexOf('--seconds') + 1]) || 3;
const asJson = args.includes('--json');

const flags = JSON.parse(readFileSync(join(root, 'benches/fixtures/realistic-50-flags.json'), 'utf8'));
const contextText = readFileSync(join(root, 'benches/fixtures/realistic-user-context.json'), 'utf8');
const context = JSON.parse(contextText);
const byKey = Object.fromEntries(flags.map((f) => [f.key, f]));
const sorted = topologicalSort(byKey);
const engine = new EvaluationEngine();

let sink = 0;
/**
 * Times fn: 1 s warm-up (JIT), then batches of 200 calls for `seconds`. Returns the mean µs
 * per call and the best batch's µs per call (less sensitive to other load on the machine).
 */
function time(fn) {
  for (const end = performance.now() + 1000; performance.now() < end; ) sink += fn();
  let calls = 0;
  let best = Infinity;
  const start = performance.now();
  const end = start + seconds * 1000;
  while (performance.now() < end) {
    const t0 = performance.now();
    for (let i = 0; i < 200; i++) sink += fn();
    best = Math.min(best, (performance.now() - t0) * 5);
    calls += 200;
  }
  return { mean: ((performance.now() - start) * 1000) / calls, best };
}

const results = engine.evaluate(context, sorted);
const out = {
  node: process.version,
  package: '@amplitude/experiment-core@' + JSON.parse(readFileSync(join(root, 'bench/engine-node/node_modules/@amplitude/experiment-core/package.json'), 'utf8')).version,
  flags: flags.length,
  results: Object.keys(results).length,
  evaluate_us: time(() => Object.keys(engine.evaluate(context, sorted)).length),
  sort_evaluate_us: time(() => Object.keys(engine.evaluate(context, topologicalSort(byKey))).length),
  parse_eval_json_us: time(() => JSON.stringify(engine.evaluate(JSON.parse(contextText), sorted)).length),
};
if (asJson) {
  console.log(JSON.stringify(out));
} else {
  console.log(`${out.package} on node ${out.node}: ${out.flags} flags, ${out.results} results`);
  const fmt = (t) => `mean ${t.mean.toFixed(2)} µs/eval, best batch ${t.best.toFixed(2)} µs/eval`;
  console.log(`  evaluate          ${fmt(out.evaluate_us)}`);
  console.log(`  sort+evaluate     ${fmt(out.sort_evaluate_us)}`);
  console.log(`  parse+eval+json   ${fmt(out.parse_eval_json_us)}`);
}
if (sink === 0.5) console.log('unreachable');
