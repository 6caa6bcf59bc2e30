#!/usr/bin/env node
// Coverage statistics of a generated case file: operator counts (and how often each
// condition was true in JS, via evaluateWithTraces), selector shapes, bucketing, errors.
//
//   node stats.mjs out/cases.jsonl

import { readFileSync } from 'node:fs';
import { EvaluationEngine, topologicalSort } from '@amplitude/experiment-core';

const file = process.argv[2] ?? 'out/cases.jsonl';
const engine = new EvaluationEngine();
const ops = new Map();
const shapes = new Map();
const bump = (m, k, field) => {
  const e = m.get(k) ?? { n: 0, evaluated: 0, true: 0 };
  e[field]++;
  m.set(k, e);
};
const shapeOf = (sel) => {
  if (sel[0] === 'result') return `result.*.${sel.slice(2).join('.').replace(/metadata\..*/, 'metadata.*')}`;
  if (sel[0] !== 'context') return 'other-root';
  if (sel[1] === 'groups') return `groups.*.${sel.slice(3).join('.').replace(/group_properties\..*/, 'group_properties.*')}`;
  if (sel[2] === 'user_properties') return sel.length > 4 ? 'user_properties.*.nested' : 'user_properties.*';
  return sel.slice(1).join('.');
};
let cases = 0;
let errors = 0;
let results = 0;
let buckets = 0;
let subsets = 0;
let deps = 0;
for (const line of readFileSync(file, 'utf8').split('\n')) {
  if (!line) continue;
  const c = JSON.parse(line);
  if (c.kind !== 'random') continue;
  cases++;
  if (c.js.error) errors++;
  else results += Object.keys(c.js.results).length;
  if (c.flag_keys) subsets++;
  const flags = JSON.parse(c.flags_json);
  for (const f of flags) {
    if (f.dependencies?.length) deps++;
    for (const s of f.segments) {
      if (s.bucket) buckets++;
      for (const and of s.conditions ?? []) {
        for (const cond of and) {
          bump(ops, cond.op, 'n');
          bump(shapes, shapeOf(cond.selector), 'n');
        }
      }
    }
  }
  if (c.js.error) continue;
  // Re-run with traces to count evaluated/true conditions per operator.
  const byKey = Object.fromEntries(flags.map((f) => [f.key, f]));
  // Traces evaluate every segment (not only up to the winner), so they can still throw.
  let traces;
  try {
    ({ traces } = engine.evaluateWithTraces(JSON.parse(c.context_json), topologicalSort(byKey, c.flag_keys ?? undefined)));
  } catch {
    continue;
  }
  for (const t of Object.values(traces)) {
    for (const step of t.steps) {
      for (const and of step.conditionResult ?? []) {
        for (const cr of and) {
          bump(ops, cr.condition.op, 'evaluated');
          if (cr.matched) bump(ops, cr.condition.op, 'true');
        }
      }
    }
  }
}
console.log(`${cases} random cases, ${errors} JS errors, ${results} flag results, ${buckets} bucketed segments, ${deps} flags with dependencies, ${subsets} cases with flag_keys subsets`);
console.log('\noperator                    conditions  evaluated  true');
for (const [op, e] of [...ops].sort((a, b) => b[1].n - a[1].n)) {
  console.log(`${JSON.stringify(op).padEnd(28)}${String(e.n).padStart(10)}${String(e.evaluated).padStart(11)}${String(e.true).padStart(6)}`);
}
console.log('\nselector shape              conditions');
for (const [s, e] of [...shapes].sort((a, b) => b[1].n - a[1].n)) console.log(`${s.padEnd(28)}${String(e.n).padStart(10)}`);
