//! Criterion benchmarks of the Amplitude evaluation engine on a realistic deployment:
//! `benches/fixtures/realistic-50-flags.json` (50 flags, made by `bench/engine-node/make-fixture.mjs`)
//! and one user context (`benches/fixtures/realistic-user-context.json`).
//!
//! ```text
//! cargo bench --bench engine
//! bench/engine-node/run.sh   # also times @amplitude/experiment-core and prints the ratio
//! ```
//!
//! * `engine/evaluate_50_flags`: full evaluation of all 50 flags for one user, flags compiled once
//!   (topological order precomputed at compile time, as the proxy does per config version);
//! * `engine/evaluate_50_flags_with_keys`: the same with an explicit flag-key list (sorts per call);
//! * `engine/parse_context`: `Value::from_json_slice` of the context text;
//! * `engine/serialize_results`: `EvaluationResults::write_json` of the 50 results;
//! * `engine/compile_50_flags`: `parse_flags` + `CompiledFlags::compile` (once per config version).

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion};
use evaluation_proxy::amplitude::engine::{parse_flags, CompiledFlags, Value};

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("benches/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn bench_engine(c: &mut Criterion) {
    let flags_json = fixture("realistic-50-flags.json");
    let context_json = fixture("realistic-user-context.json");
    let flags = parse_flags(&flags_json).expect("fixture flags parse");
    let keys: Vec<String> = flags.iter().map(|f| f.key().to_string()).collect();
    let compiled = CompiledFlags::compile(flags);
    let context = Value::from_json_slice(&context_json).expect("fixture context parses");
    let results = compiled.evaluate(&context, &[]).expect("fixture evaluates");
    assert_eq!(results.len(), 50, "every fixture flag has a result");

    let mut g = c.benchmark_group("engine");
    g.bench_function("evaluate_50_flags", |b| {
        b.iter(|| compiled.evaluate(black_box(&context), &[]))
    });
    g.bench_function("evaluate_50_flags_with_keys", |b| {
        b.iter(|| compiled.evaluate(black_box(&context), black_box(&keys)))
    });
    g.bench_function("parse_context", |b| {
        b.iter(|| Value::from_json_slice(black_box(&context_json)))
    });
    g.bench_function("serialize_results", |b| {
        let mut out = Vec::with_capacity(8192);
        b.iter(|| {
            out.clear();
            results.write_json(&mut out, false);
            black_box(out.len())
        })
    });
    g.bench_function("parse_evaluate_serialize", |b| {
        let mut out = Vec::with_capacity(8192);
        b.iter(|| {
            out.clear();
            let ctx = Value::from_json_slice(black_box(&context_json)).expect("parses");
            if let Ok(r) = compiled.evaluate(&ctx, &[]) {
                r.write_json(&mut out, false);
            }
            black_box(out.len())
        })
    });
    g.bench_function("compile_50_flags", |b| {
        b.iter(|| CompiledFlags::compile(parse_flags(black_box(&flags_json)).expect("parses")))
    });
    g.finish();
}

criterion_group!(benches, bench_engine);
criterion_main!(benches);
