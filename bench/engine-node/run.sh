#!/usr/bin/env bash
# Runs the engine benchmark on both engines and prints the ratio:
#   1. cargo bench --bench engine (Criterion; our engine),
#   2. node time.mjs (@amplitude/experiment-core, pinned in package-lock.json),
# on the same fixture (benches/fixtures/realistic-50-flags.json) and user context.
#
#   bench/engine-node/run.sh [--seconds S]   (S = node timing budget per measurement, default 5)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
seconds=5
if [[ "${1:-}" == "--seconds" ]]; then seconds="$2"; fi

if [[ ! -d "$here/node_modules/@amplitude/experiment-core" ]]; then
  (cd "$here" && npm ci --no-audit --no-fund)
fi

cd "$root"
cargo bench --bench engine -- --noplot
node_json="$(node "$here/time.mjs" --seconds "$seconds" --json)"

CRITERION_DIR="${CARGO_TARGET_DIR:-$root/target}/criterion" NODE_JSON="$node_json" node --input-type=module -e '
import { readFileSync } from "node:fs";
const dir = process.env.CRITERION_DIR;
// Criterion reports the slope estimate when it has one (linear sampling), else the mean.
const mean = (name) => { const e = JSON.parse(readFileSync(`${dir}/engine/${name}/new/estimates.json`, "utf8")); return (e.slope ?? e.mean).point_estimate / 1000; };
const js = JSON.parse(process.env.NODE_JSON);
const ours = {
  evaluate: mean("evaluate_50_flags"),
  evaluateKeys: mean("evaluate_50_flags_with_keys"),
  parse: mean("parse_context"),
  serialize: mean("serialize_results"),
  e2e: mean("parse_evaluate_serialize"),
};
const row = (label, a, b) => console.log(`${label.padEnd(34)}${a.toFixed(2).padStart(10)} µs${b === undefined ? "" : `${b.toFixed(2).padStart(12)} µs${(b / a).toFixed(1).padStart(9)}x`}`);
console.log(`\n${js.flags} flags, ${js.results} results; JS = ${js.package} on node ${js.node}`);
console.log(`${"".padEnd(34)}${"ours".padStart(13)}${"JS".padStart(15)}${"ratio".padStart(10)}`);
row("full evaluation (compiled/sorted)", ours.evaluate, js.evaluate_us);
row("evaluation with key list / sort", ours.evaluateKeys, js.sort_evaluate_us);
row("parse context + eval + serialise", ours.e2e, js.parse_eval_json_us);
row("context parse only", ours.parse);
row("result serialisation only", ours.serialize);
console.log(`\nratio (JS / ours, full evaluation): ${(js.evaluate_us / ours.evaluate).toFixed(1)}x; target >= 10x; ours target <= 10 µs: ${ours.evaluate <= 10 ? "met" : "NOT met"}`);
'
