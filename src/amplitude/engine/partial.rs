//! Segment-level partial evaluation (spec §13, `PartialEvaluationEngine` 2.3.0): specialise a
//! segment against the attributes known remotely so a client can finish evaluation locally.

use super::condition::{CompiledCondition, Selected};
use super::eval::EvaluationError;
use super::model::{Bucket, Condition, Flag, Segment};
use super::murmur::murmur3_x86_32;
use super::value::{coerce_string, Value};

fn synthetic(op: &str) -> Condition {
    Condition {
        selector: Vec::new(),
        op: op.to_string(),
        values: vec!["(none)".to_string()],
    }
}

/// `{"selector": [], "op": "is", "values": ["(none)"]}`: always true (an empty selector selects null).
pub fn always_true() -> Condition {
    synthetic("is")
}

/// `{"selector": [], "op": "is not", "values": ["(none)"]}`: always false.
pub fn always_false() -> Condition {
    synthetic("is not")
}

/// Bucketing of a model segment (spec §9) returning the variant key, against `{context: remote}`.
fn bucket_variant(
    flag_key: &str,
    seg: &Segment,
    bk: &Bucket,
    remote: &Value,
) -> Result<Option<String>, EvaluationError> {
    let value = super::select(remote, &bk.selector).and_then(coerce_string);
    let value = match value {
        Some(v) if !v.is_empty() => v,
        _ => return Ok(seg.variant.clone()),
    };
    let hash = i64::from(murmur3_x86_32(
        format!("{}/{}", bk.salt, value).as_bytes(),
        0,
    ));
    let (av, dv) = (hash % 100, hash / 100);
    let bad = || EvaluationError::InvalidRange {
        flag: flag_key.to_string(),
    };
    for a in &bk.allocations {
        let [s, e, ..] = a.range[..] else {
            return Err(bad());
        };
        if i64::from(s) <= av && av < i64::from(e) {
            for d in &a.distributions {
                let [ds, de, ..] = d.range[..] else {
                    return Err(bad());
                };
                if i64::from(ds) <= dv && dv < i64::from(de) {
                    return Ok(Some(d.variant.clone()));
                }
            }
        }
    }
    Ok(seg.variant.clone())
}

/// Partially evaluates one segment of flag `flag_key` against a remote context (spec §13).
pub fn partial_evaluate_segment(
    flag_key: &str,
    seg: &Segment,
    remote: &Value,
) -> Result<Segment, EvaluationError> {
    let mut out = seg.clone();
    if let Some(bk) = &seg.bucket {
        if !bk.selector.is_empty() && super::select(remote, &bk.selector).is_some() {
            out.variant = bucket_variant(flag_key, seg, bk, remote)?;
            out.bucket = None;
        }
    }
    let Some(groups) = &seg.conditions else {
        return Ok(out);
    };
    let mut new_groups = Vec::with_capacity(groups.len());
    for group in groups {
        let mut kept = Vec::new();
        for c in group {
            let Some(p) = super::select(remote, &c.selector) else {
                kept.push(c.clone());
                continue;
            };
            let matched = CompiledCondition::from_model(c)
                .matches(Selected::Value(p))
                .map_err(|e| EvaluationError::InvalidRegex {
                    flag: flag_key.to_string(),
                    pattern: e.pattern,
                    message: e.message,
                })?;
            if !matched {
                kept = vec![always_false()];
                break;
            }
        }
        if kept.is_empty() {
            kept.push(always_true());
        }
        new_groups.push(kept);
    }
    out.conditions = Some(new_groups);
    Ok(out)
}

/// Partially evaluates every segment of every flag; keys, variants, dependencies and metadata are
/// unchanged. The returned flags keep the original `raw_json` (it describes the input, not the output).
pub fn partial_evaluate(flags: &[Flag], remote: &Value) -> Result<Vec<Flag>, EvaluationError> {
    flags
        .iter()
        .map(|f| {
            let mut out = f.clone();
            out.segments = f
                .segments
                .iter()
                .map(|s| partial_evaluate_segment(&f.key, s, remote))
                .collect::<Result<_, _>>()?;
            Ok(out)
        })
        .collect()
}
