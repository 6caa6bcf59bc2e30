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
// Criterion reports the slope estimate when it has one (linear sampling), else the mean; "best"
// is the fastest sample (per-iteration time), which is less sensitive to other load.
const read = (name) => {
  const e = JSON.parse(readFileSync(`${dir}/engine/${name}/new/estimates.json`, "utf8"));
  const s = JSON.parse(readFileSync(`${dir}/engine/${name}/new/sample.json`, "utf8"));
  const best = Math.min(...s.times.map((t, i) => t / s.iters[i]));
  return { mean: (e.slope ?? e.mean).point_estimate / 1000, best: best / 1000 };
};
const js = JSON.parse(process.env.NODE_JSON);
const f = (x) => x.toFixed(2).padStart(9);
const row = (label, a, b) => console.log(`${label.padEnd(34)}${f(a.mean)}${f(a.best)}` + (b ? `${f(b.mean)}${f(b.best)}${(b.mean / a.mean).toFixed(1).padStart(8)}x${(b.best / a.best).toFixed(1).padStart(8)}x` : ""));
console.log(`\n${js.flags} flags, ${js.results} results; JS = ${js.package} on node ${js.node}; times in µs per call`);
console.log(`${"".padEnd(34)}${"ours".padStart(9)}${"best".padStart(9)}${"JS".padStart(9)}${"best".padStart(9)}${"ratio".padStart(9)}${"best".padStart(9)}`);
const ours = read("evaluate_50_flags");
row("full evaluation (compiled/sorted)", ours, js.evaluate_us);
row("evaluation with key list / sort", read("evaluate_50_flags_with_keys"), js.sort_evaluate_us);
row("parse context + eval + serialise", read("parse_evaluate_serialize"), js.parse_eval_json_us);
row("context parse only", read("parse_context"));
row("result serialisation only", read("serialize_results"));
row("parse_flags + compile (50 flags)", read("compile_50_flags"));
const ratio = js.evaluate_us.mean / ours.mean;
console.log(`\nfull evaluation: ours ${ours.mean.toFixed(2)} µs (target <= 10 µs: ${ours.mean <= 10 ? "met" : "NOT met"}), JS/ours = ${ratio.toFixed(1)}x (target >= 10x: ${ratio >= 10 ? "met" : "NOT met"})`);
'
