//! Panic-freedom: arbitrary JSON-ish flag documents and contexts go through the whole engine.
//! Errors are fine; panics are not.

use evaluation_proxy::amplitude::engine::{parse_flags, CompiledFlags, Value};
use proptest::prelude::*;

/// Arbitrary JSON text from a small grammar biased toward engine-relevant shapes.
fn json_text() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_string()),
        Just("true".to_string()),
        Just("1e3".to_string()),
        Just("-0.0".to_string()),
        Just("18446744073709551620".to_string()),
        Just("1e400".to_string()),
        Just("9223372036854775808".to_string()),
        any::<i64>().prop_map(|i| i.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        "[a-z(\\[\\]{}*+?.\\\\]{0,6}".prop_map(|s| serde_json::to_string(&s).unwrap()),
        Just("\"[1, \\\"a\\\", null]\"".to_string()),
        Just("\"1.2.3-alpha\"".to_string()),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec(("[a-z]{1,3}", inner), 0..5).prop_map(|v| {
                let body: Vec<String> =
                    v.into_iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                format!("{{{}}}", body.join(","))
            }),
        ]
    })
}

const OPS: &[&str] = &[
    "is",
    "is not",
    "contains",
    "does not contain",
    "less",
    "less or equal",
    "greater",
    "greater or equal",
    "version less",
    "version less or equal",
    "version greater",
    "version greater or equal",
    "set is",
    "set is not",
    "set contains",
    "set does not contain",
    "set contains any",
    "set does not contain any",
    "regex match",
    "regex does not match",
    "IS",
];

fn range() -> impl Strategy<Value = String> {
    prop::collection::vec(-5i64..200, 0..4).prop_map(|v| format!("{v:?}"))
}

/// A structurally plausible flag with weird parts (short ranges, bad regexes, cycles).
fn flag(index: usize) -> impl Strategy<Value = String> {
    (
        prop::sample::select(OPS),
        prop::collection::vec("[a-z(\\[*+?.1-9]{0,5}", 0..4),
        prop::collection::vec("[a-c]", 0..3),
        range(),
        range(),
        prop::sample::select(vec!["context", "result", "other"]),
        prop::sample::select(vec!["a", "b", "c", "p"]),
        json_text(),
    )
        .prop_map(move |(op, values, deps, arange, drange, root, leaf, meta)| {
            let key = ["a", "b", "c", "d"][index % 4];
            format!(
                r#"{{"key":"{key}","dependencies":{deps},"metadata":{{"m":{meta}}},
                "variants":{{"on":{{"key":"on","value":{meta}}},"off":{{"key":"off","metadata":{{"default":true}}}}}},
                "segments":[{{"conditions":[[{{"selector":["{root}","user","{leaf}"],"op":"{op}","values":{values}}},
                {{"selector":["result","{leaf}","key"],"op":"is","values":["on"]}}]],"variant":"on"}},
                {{"bucket":{{"selector":["context","user","id"],"salt":"s","allocations":[{{"range":{arange},
                "distributions":[{{"variant":"on","range":{drange}}}]}}]}},"variant":"off"}}]}}"#,
                deps = serde_json::to_string(&deps).unwrap(),
                values = serde_json::to_string(&values).unwrap(),
            )
        })
}

fn exercise(flags_json: &str, context_json: &str) {
    let _ = Value::from_json_slice(context_json.as_bytes());
    let Ok(flags) = parse_flags(flags_json.as_bytes()) else {
        return;
    };
    let compiled = CompiledFlags::compile(flags);
    let _ = compiled.cohort_ids_by_group_type();
    let ctx = Value::from_json_slice(context_json.as_bytes()).unwrap_or(Value::Null);
    for keys in [vec![], vec!["a".to_string(), "zz".to_string()]] {
        if let Ok(r) = compiled.evaluate(&ctx, &keys) {
            let mut out = Vec::new();
            r.write_json(&mut out, true);
            assert!(serde_json::from_slice::<serde_json::Value>(&out).is_ok());
        }
    }
    let _ = compiled.evaluate_unsorted(&ctx);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_json_never_panics(doc in json_text(), ctx in json_text()) {
        let _ = Value::from_json_slice(doc.as_bytes()).map(|v| v.to_json_string());
        exercise(&doc, &ctx);
        exercise(&format!("[{doc}]"), &ctx);
    }

    #[test]
    fn weird_flags_never_panic(
        flags in prop::collection::vec((0usize..4).prop_flat_map(flag), 0..5),
        id in "[a-z0-9]{0,6}",
        prop in json_text(),
    ) {
        let doc = format!("[{}]", flags.join(","));
        let ctx = format!(r#"{{"user":{{"id":"{id}","a":{prop},"b":{prop},"c":{prop},"p":{prop}}}}}"#);
        exercise(&doc, &ctx);
        exercise(&doc, &prop);
    }

    #[test]
    fn raw_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = Value::from_json_slice(&bytes);
        let _ = parse_flags(&bytes);
    }
}

#[test]
fn deep_nesting_is_rejected_not_overflowed() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(Value::from_json_slice(deep.as_bytes()).is_err());
    assert!(parse_flags(deep.as_bytes()).is_err());
    let ctx = format!(
        r#"{{"user":{}1{}}}"#,
        r#"{"a":"#.repeat(10_000),
        "}".repeat(10_000)
    );
    assert!(Value::from_json_slice(ctx.as_bytes()).is_err());
}

#[test]
fn long_dependency_chain_does_not_overflow() {
    let n = 20_000;
    let flags: Vec<String> = (0..n)
        .map(|i| {
            let deps = if i + 1 < n {
                format!(r#"["f{}"]"#, i + 1)
            } else {
                "[]".to_string()
            };
            format!(r#"{{"key":"f{i}","dependencies":{deps},"variants":{{}},"segments":[]}}"#)
        })
        .collect();
    let parsed = parse_flags(format!("[{}]", flags.join(",")).as_bytes()).unwrap();
    let compiled = CompiledFlags::compile(parsed);
    let r = compiled.evaluate(&Value::Null, &[]).unwrap();
    assert!(r.is_empty());
}
