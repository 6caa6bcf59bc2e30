//! Differential test runner: evaluates the cases written by `tools/engine-diff/generate.mjs`
//! with our Amplitude engine and compares them with the results of `@amplitude/experiment-core`.
//!
//! ```text
//! cargo run --release --example engine_diff -- tools/engine-diff/out/cases.jsonl [--show N]
//! ```
//!
//! Random cases must agree with JS after the normalisations documented in
//! `tools/engine-diff/README.md` (empty metadata `{}` == absent, a null variant field == absent,
//! numbers compared by value, both-sides errors of the same class agree). Known-difference cases
//! must give the JVM answer in our engine AND a different answer in JS. Prints
//! `N passed, N failed` and exits non-zero on any failure; failures are also written to
//! `<input>.failures.jsonl`.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};

use anyhow::{bail, Context, Result};
use evaluation_proxy::amplitude::engine::{
    parse_flags, topological_sort, CompiledFlags, EvaluationError, Value,
};
use serde::Deserialize;
use serde_json::{json, Map, Value as Json};

/// One line of the case file.
#[derive(Deserialize)]
struct Case {
    id: String,
    kind: String,
    #[serde(default)]
    case_seed: Option<u64>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    note: Option<String>,
    flags_json: String,
    context_json: String,
    flag_keys: Option<Vec<String>>,
    js: Json,
    #[serde(default)]
    expected: Option<Json>,
}

/// What an engine produced for a case.
#[derive(Debug)]
enum Outcome {
    /// Evaluation order (topological sort), results object, and result key order.
    Ok {
        order: Vec<String>,
        results: Map<String, Json>,
    },
    /// The evaluation (or sort, or parse) failed; the class is `cycle`, `regex`, `range` or `parse`.
    Err { class: String, message: String },
}

impl Outcome {
    fn to_json(&self) -> Json {
        match self {
            Outcome::Ok { order, results } => json!({ "order": order, "results": results }),
            Outcome::Err { class, message } => json!({ "error": message, "class": class }),
        }
    }
}

fn err(class: &str, message: impl ToString) -> Outcome {
    Outcome::Err {
        class: class.to_string(),
        message: message.to_string(),
    }
}

/// Runs our engine like an SDK does: parse, topological sort, evaluate.
fn run_ours(case: &Case) -> Outcome {
    let keys = case.flag_keys.clone().unwrap_or_default();
    let flags = match parse_flags(case.flags_json.as_bytes()) {
        Ok(f) => f,
        Err(e) => return err("parse", format!("parse flags: {e}")),
    };
    let context = match Value::from_json_slice(case.context_json.as_bytes()) {
        Ok(c) => c,
        Err(e) => return err("parse", format!("parse context: {e}")),
    };
    let order = match topological_sort(&flags, &keys) {
        Ok(sorted) => sorted.iter().map(|f| f.key().to_string()).collect(),
        Err(e) => return err("cycle", e),
    };
    let compiled = CompiledFlags::compile(flags);
    match compiled.evaluate(&context, &keys) {
        Ok(results) => {
            let mut out = Vec::new();
            results.write_json(&mut out, false);
            match serde_json::from_slice::<Json>(&out) {
                Ok(Json::Object(results)) => Outcome::Ok { order, results },
                Ok(other) => err("output", format!("results are not an object: {other}")),
                Err(e) => err(
                    "output",
                    format!(
                        "invalid JSON from write_json: {e}: {}",
                        String::from_utf8_lossy(&out)
                    ),
                ),
            }
        }
        Err(e @ EvaluationError::Cycle(_)) => err("cycle", e),
        Err(e @ EvaluationError::InvalidRegex { .. }) => err("regex", e),
        Err(e @ EvaluationError::InvalidRange { .. }) => err("range", e),
    }
}

/// Reads the JS outcome recorded by the generator.
fn js_outcome(js: &Json) -> Outcome {
    if let Some(e) = js.get("error").and_then(Json::as_str) {
        let class = if e.contains("cycle") {
            "cycle"
        } else if e.contains("regular expression") {
            "regex"
        } else {
            "other"
        };
        return err(class, e);
    }
    let order = js
        .get("order")
        .and_then(Json::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|k| k.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let results = js
        .get("results")
        .and_then(Json::as_object)
        .cloned()
        .unwrap_or_default();
    Outcome::Ok { order, results }
}

/// Deep equality with numbers compared by value (JS has one number kind). Object key order
/// must match too: the generator avoids integer-like keys, the one case where JS reorders.
fn json_eq(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => x.as_f64() == y.as_f64(),
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q))
        }
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((k, v), (l, w))| k == l && json_eq(v, w))
        }
        _ => a == b,
    }
}

/// Variant equality: the same fields (in any order; JS keeps the config's field order) with
/// equal values (ordered comparison inside value, payload and metadata).
fn variant_eq(a: &Json, b: &Json) -> bool {
    match (a.as_object(), b.as_object()) {
        (Some(x), Some(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => json_eq(a, b),
    }
}

/// A variant with null fields and empty metadata removed (JS always adds `metadata: {}`).
fn normalise_variant(v: &Json) -> Json {
    let Some(obj) = v.as_object() else {
        return v.clone();
    };
    let mut out = Map::new();
    for (k, x) in obj {
        let empty_meta = k == "metadata" && x.as_object().is_some_and(Map::is_empty);
        if !x.is_null() && !empty_meta {
            out.insert(k.clone(), x.clone());
        }
    }
    Json::Object(out)
}

/// Differences between two results maps (keys, order, and each variant), as readable lines.
fn diff_results(ours: &Map<String, Json>, theirs: &Map<String, Json>, label: &str) -> Vec<String> {
    let mut lines = Vec::new();
    for (k, v) in theirs {
        match ours.get(k) {
            None => lines.push(format!("  flag {k:?}: ours has no result, {label} has {v}")),
            Some(o) => {
                let (o, t) = (normalise_variant(o), normalise_variant(v));
                if !variant_eq(&o, &t) {
                    lines.push(format!("  flag {k:?}: ours {o} != {label} {t}"));
                }
            }
        }
    }
    for (k, v) in ours {
        if !theirs.contains_key(k) {
            lines.push(format!("  flag {k:?}: ours has {v}, {label} has no result"));
        }
    }
    if lines.is_empty() {
        let (ko, kt): (Vec<_>, Vec<_>) = (ours.keys().collect(), theirs.keys().collect());
        if ko != kt {
            lines.push(format!("  result key order: ours {ko:?} != {label} {kt:?}"));
        }
    }
    lines
}

/// Compares two outcomes; returns the differences (empty = agree).
fn compare(ours: &Outcome, theirs: &Outcome, label: &str) -> Vec<String> {
    match (ours, theirs) {
        (Outcome::Err { class: a, .. }, Outcome::Err { class: b, .. }) if a == b => vec![],
        (
            Outcome::Ok {
                order: oa,
                results: ra,
            },
            Outcome::Ok {
                order: ob,
                results: rb,
            },
        ) => {
            let mut lines = diff_results(ra, rb, label);
            if oa != ob {
                lines.push(format!(
                    "  topological order: ours {oa:?} != {label} {ob:?}"
                ));
            }
            lines
        }
        _ => vec![format!(
            "  ours {} vs {label} {}",
            ours.to_json(),
            theirs.to_json()
        )],
    }
}

/// The JVM outcome stated by a known-difference case.
fn expected_outcome(expected: &Json, ours_order: Option<&[String]>) -> Outcome {
    if expected.get("error").is_some() {
        return err("any", "expected error");
    }
    // Order: the stated one, else whatever our sort produced (not what the case is about).
    let order = expected
        .get("order")
        .and_then(Json::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|k| k.as_str().map(String::from))
                .collect()
        })
        .or_else(|| ours_order.map(<[String]>::to_vec))
        .unwrap_or_default();
    let mut results = expected
        .get("results")
        .and_then(Json::as_object)
        .cloned()
        .unwrap_or_default();
    // JS objects reorder integer-like keys, so the stated order is listed separately.
    if let Some(keys) = expected.get("result_order").and_then(Json::as_array) {
        let mut ordered = Map::new();
        for k in keys.iter().filter_map(Json::as_str) {
            if let Some(v) = results.get(k) {
                ordered.insert(k.to_string(), v.clone());
            }
        }
        results = ordered;
    }
    Outcome::Ok { order, results }
}

/// Differences between an outcome and the JVM-expected one (any error matches an expected error).
fn diff_expected(got: &Outcome, want: &Outcome) -> Vec<String> {
    match (want, got) {
        (Outcome::Err { .. }, Outcome::Err { .. }) => vec![],
        _ => compare(got, want, "JVM-expected"),
    }
}

/// Ours must give the JVM answer; JS must not (else the documented difference is stale).
fn compare_known(ours: &Outcome, js: &Outcome, expected: &Json) -> Vec<String> {
    let order_of = |o: &Outcome| match o {
        Outcome::Ok { order, .. } => Some(order.clone()),
        Outcome::Err { .. } => None,
    };
    let mut lines = diff_expected(ours, &expected_outcome(expected, order_of(ours).as_deref()));
    if diff_expected(js, &expected_outcome(expected, order_of(js).as_deref())).is_empty() {
        lines.push(format!(
            "  JS now gives the JVM answer ({}): the documented difference no longer reproduces",
            js.to_json()
        ));
    }
    lines
}

fn report(case: &Case, ours: &Outcome, js: &Outcome, lines: &[String]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "--- FAIL {} ({})", case.id, case.kind);
    if let Some(seed) = case.case_seed {
        let _ = writeln!(s, "case_seed: {seed}");
    }
    if let (Some(n), Some(note)) = (&case.name, &case.note) {
        let _ = writeln!(s, "known difference {n}: {note}");
    }
    let _ = writeln!(s, "flag_keys: {:?}", case.flag_keys);
    let _ = writeln!(s, "context: {}", case.context_json);
    let _ = writeln!(s, "flags: {}", case.flags_json);
    let _ = writeln!(s, "JS:   {}", js.to_json());
    let _ = writeln!(s, "ours: {}", ours.to_json());
    for l in lines {
        let _ = writeln!(s, "{l}");
    }
    s
}

#[derive(Default)]
struct Tally {
    passed: usize,
    failed: usize,
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else {
        bail!("usage: engine_diff <cases.jsonl> [--show N]");
    };
    let show: usize = match args.iter().position(|a| a == "--show") {
        Some(i) => args.get(i + 1).context("--show needs a number")?.parse()?,
        None => 10,
    };
    let reader = BufReader::new(File::open(path).with_context(|| format!("open {path}"))?);
    let failures_path = format!("{path}.failures.jsonl");
    let mut failures = BufWriter::new(File::create(&failures_path)?);
    let (mut random, mut known) = (Tally::default(), Tally::default());
    let mut shown = 0;
    for (n, line) in reader.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let case: Case = serde_json::from_str(&line).with_context(|| format!("line {}", n + 1))?;
        let ours = run_ours(&case);
        let js = js_outcome(&case.js);
        let (lines, tally) = match &case.expected {
            Some(expected) => (compare_known(&ours, &js, expected), &mut known),
            None => (compare(&ours, &js, "JS"), &mut random),
        };
        if lines.is_empty() {
            tally.passed += 1;
            continue;
        }
        tally.failed += 1;
        if shown < show {
            shown += 1;
            println!("{}", report(&case, &ours, &js, &lines));
        }
        let record = json!({
            "id": case.id, "kind": case.kind, "name": case.name, "case_seed": case.case_seed,
            "flag_keys": case.flag_keys, "context_json": case.context_json,
            "flags_json": case.flags_json, "js": js.to_json(), "ours": ours.to_json(),
            "diff": lines,
        });
        writeln!(failures, "{record}")?;
    }
    failures.flush()?;
    let failed = random.failed + known.failed;
    if failed > shown {
        println!(
            "({} more failures not shown; all are in {failures_path})",
            failed - shown
        );
    }
    println!(
        "generated cases (random + fixture): {} passed, {} failed; known-difference cases: {} passed, {} failed",
        random.passed, random.failed, known.passed, known.failed
    );
    println!("{} passed, {} failed", random.passed + known.passed, failed);
    if failed > 0 {
        std::process::exit(1);
    }
    Ok(())
}
