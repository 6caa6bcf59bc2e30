//! The per-request work of `POST /api/v1/identities/` (body validation -> identity
//! evaluation -> response JSON) in a loop, on the documents of `bench/flagsmith/run.py`, for
//! profiling without HTTP: `valgrind --tool=callgrind` instruction counts per request, or
//! wall time per request.
//!
//! ```text
//! cargo build --release --example flagsmith_identity_profile
//! target/release/examples/flagsmith_identity_profile reference 20000          # ns/request
//! valgrind --tool=callgrind target/release/examples/flagsmith_identity_profile reference 1000
//! target/release/examples/flagsmith_identity_profile reference 1 out.json     # the body
//! ```
//!
//! `reference` is the spec's throughput case (50 features, 15 segments x 15 conditions, 750
//! segment overrides); `small` is 5 features and 1 segment with 2 conditions. The request
//! carries 5 traits, as in run.py.

use std::time::Instant;

use axum::http::HeaderMap;
use evaluation_proxy::flagsmith::registry::EnvironmentSnapshot;
use evaluation_proxy::http::flagsmith::{identity_body, parse_identity_body};
use serde_json::{json, Value};

fn feature_state(i: usize, value: String, django_id: usize, priority: Option<usize>) -> Value {
    let mut state = json!({"feature": {"id": i, "name": format!("feature_{i}"), "type": "STANDARD"},
        "enabled": i % 2 == 0, "feature_state_value": value, "django_id": django_id,
        "multivariate_feature_state_values": []});
    if let (Some(p), Value::Object(map)) = (priority, &mut state) {
        map.insert("feature_segment".into(), json!({"priority": p}));
    }
    state
}

fn segment(s: usize, conditions: usize, features: usize) -> Value {
    let conds: Vec<Value> = (0..conditions)
        .map(|c| {
            json!({"operator": if c % 3 != 0 { "EQUAL" } else { "GREATER_THAN" },
                "property_": format!("trait_{}", c % 5),
                "value": if c % 3 != 0 { format!("value_{s}_{c}") } else { (1000 + c).to_string() }})
        })
        .collect();
    json!({"id": 100 + s, "name": format!("segment_{s}"),
        "rules": [{"type": "ALL", "conditions": [], "rules": [
            {"type": "ANY", "rules": [], "conditions": conds}]}],
        "feature_states": (1..=features)
            .map(|i| feature_state(i, format!("seg{s}_{i}"), 10_000 + s * 100 + i, Some(s)))
            .collect::<Vec<_>>()})
}

fn document(features: usize, segments: usize, conditions: usize) -> Value {
    json!({"api_key": "bench-client-key", "name": "Bench", "updated_at": "2026-11-22T00:00:00Z",
        "project": {"name": "bench", "hide_disabled_flags": false,
            "server_key_only_feature_ids": [],
            "segments": (0..segments).map(|s| segment(s, conditions, features)).collect::<Vec<_>>()},
        "feature_states": (1..=features)
            .map(|i| feature_state(i, format!("default_{i}"), i, None))
            .collect::<Vec<_>>(),
        "identity_overrides": []})
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let case = args.get(1).map_or("reference", String::as_str);
    let iterations: u64 = args.get(2).map_or(Ok(10_000), |n| n.parse())?;
    let doc = match case {
        "reference" => document(50, 15, 15),
        "small" => document(5, 1, 2),
        other => return Err(format!("unknown case {other} (reference|small)").into()),
    };
    let snapshot = EnvironmentSnapshot::build(&serde_json::to_vec(&doc)?)?;
    let traits: Vec<Value> = (0..5)
        .map(|t| {
            let value = if t % 2 == 1 {
                json!(format!("v{t}"))
            } else {
                json!(42 + t)
            };
            json!({"trait_key": format!("trait_{t}"), "trait_value": value})
        })
        .collect();
    let request = serde_json::to_vec(&json!({"identifier": "bench-user-1", "traits": traits}))?;
    let headers = HeaderMap::new();
    let mut bytes = 0usize;
    let mut last = Vec::new();
    let start = Instant::now();
    for _ in 0..iterations {
        let (identifier, traits) = parse_identity_body(&headers, std::hint::black_box(&request))
            .map_err(|e| format!("{e:?}"))?;
        let body = identity_body(&snapshot, false, identifier, traits);
        bytes += body.len();
        last = body.to_vec();
    }
    let elapsed = start.elapsed();
    println!(
        "{case}: {iterations} requests, {:.0} ns/request, {} response bytes",
        elapsed.as_nanos() as f64 / iterations.max(1) as f64,
        bytes / iterations.max(1) as usize
    );
    if let Some(path) = args.get(3) {
        std::fs::write(path, &last)?;
    }
    Ok(())
}
