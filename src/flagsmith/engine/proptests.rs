//! Property tests: arbitrary contexts never panic; helper invariants hold.

use indexmap::IndexMap;
use proptest::prelude::*;
use serde_json::{json, Number, Value};

use super::context::{
    EnvironmentContext, EvaluationContext, FeatureContext, FeatureVariant, IdentityContext,
    Priority, RuleType, SegmentCondition, SegmentContext, SegmentRule,
};
use super::{get_evaluation_result, hashed_percentage, python};

const OPERATORS: &[&str] = &[
    "EQUAL",
    "NOT_EQUAL",
    "GREATER_THAN",
    "GREATER_THAN_INCLUSIVE",
    "LESS_THAN",
    "LESS_THAN_INCLUSIVE",
    "CONTAINS",
    "NOT_CONTAINS",
    "REGEX",
    "MODULO",
    "IS_SET",
    "IS_NOT_SET",
    "IN",
    "PERCENTAGE_SPLIT",
    "NOPE",
];

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-c0-9.,|:\\-\\[\\]\"$()*+?{}\\\\ ]{0,12}",
        Just("1.2.3:semver".to_owned()),
        Just("0|0".to_owned()),
        Just("2|1".to_owned()),
        Just("99999999999999999999999999999999999999999999".to_owned()),
        Just("(a+)+$".to_owned()),
        ".{0,8}",
    ]
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| json!(i)),
        any::<u64>().prop_map(|u| json!(u)),
        any::<f64>()
            .prop_filter_map("finite", Number::from_f64)
            .prop_map(Value::Number),
        text().prop_map(Value::String),
    ]
}

fn condition() -> impl Strategy<Value = SegmentCondition> {
    let property = prop_oneof![
        Just(String::new()),
        Just("t".to_owned()),
        Just("$.identity.identifier".to_owned()),
        Just("$.identity.key".to_owned()),
        Just("$.identity.traits.t".to_owned()),
        Just("$.environment.name".to_owned()),
        Just("$..t".to_owned()),
        Just("$.features.f.value".to_owned()),
        "\\$\\.[a-z.\\[\\]'*?@()0-9 ]{0,10}",
        text(),
    ];
    let value = prop_oneof![
        4 => text().prop_map(Value::String),
        1 => prop::collection::vec(scalar(), 0..4).prop_map(Value::Array),
        1 => scalar(),
    ];
    (property, prop::sample::select(OPERATORS), value).prop_map(|(property, op, value)| {
        SegmentCondition {
            property,
            operator: op.to_owned(),
            value,
        }
    })
}

fn rule() -> impl Strategy<Value = SegmentRule> {
    let rule_type = prop::sample::select(vec![
        RuleType::All,
        RuleType::Any,
        RuleType::None,
        RuleType::Unknown,
    ]);
    let leaf = (rule_type.clone(), prop::collection::vec(condition(), 0..3)).prop_map(
        |(rule_type, conditions)| SegmentRule {
            rule_type,
            conditions,
            rules: Vec::new(),
        },
    );
    leaf.prop_recursive(3, 12, 3, move |inner| {
        (
            rule_type.clone(),
            prop::collection::vec(condition(), 0..3),
            prop::collection::vec(inner, 0..3),
        )
            .prop_map(|(rule_type, conditions, rules)| SegmentRule {
                rule_type,
                conditions,
                rules,
            })
    })
}

fn priority() -> impl Strategy<Value = Option<Priority>> {
    prop_oneof![
        Just(None),
        any::<i64>().prop_map(|i| Some(Priority::from_i64(i))),
        any::<u128>().prop_map(|u| Some(Priority::from_u128(u))),
        any::<f64>().prop_map(|f| Some(Priority::Float(f))),
    ]
}

fn feature(name: &'static str) -> impl Strategy<Value = FeatureContext> {
    let weight = prop_oneof![
        (0u64..120).prop_map(Number::from),
        any::<f64>().prop_filter_map("finite", Number::from_f64),
    ];
    let variant = (
        proptest::option::of("[a-z]{0,3}"),
        scalar(),
        weight,
        priority(),
    )
        .prop_map(|(key, value, weight, priority)| FeatureVariant {
            key,
            value,
            weight,
            priority,
        });
    (
        text(),
        any::<bool>(),
        scalar(),
        prop::collection::vec(variant, 0..3),
        priority(),
        proptest::option::of(scalar()),
    )
        .prop_map(
            move |(key, enabled, value, variants, priority, metadata)| FeatureContext {
                key,
                name: name.to_owned(),
                enabled,
                value,
                variants,
                priority,
                metadata,
            },
        )
}

fn segment() -> impl Strategy<Value = SegmentContext> {
    (
        text(),
        "[a-z]{0,3}",
        prop::collection::vec(rule(), 0..3),
        prop::collection::vec(prop_oneof![feature("f"), feature("g"), feature("zz")], 0..3),
        proptest::option::of(scalar()),
    )
        .prop_map(|(key, name, rules, overrides, metadata)| SegmentContext {
            key,
            name,
            rules,
            overrides,
            metadata,
        })
}

fn context() -> impl Strategy<Value = EvaluationContext> {
    let identity = (
        text(),
        proptest::option::of(text()),
        prop::collection::vec(("t|\\$\\.[a-z.]{0,4}|[a-z]{0,2}", scalar()), 0..4),
    )
        .prop_map(|(identifier, key, traits)| IdentityContext {
            identifier,
            key,
            traits: traits.into_iter().collect(),
        });
    (
        text(),
        text(),
        proptest::option::of(identity),
        prop::collection::vec(segment(), 0..4),
        prop::collection::vec(prop_oneof![feature("f"), feature("g")], 0..3),
    )
        .prop_map(|(key, name, identity, segments, features)| {
            let segments: IndexMap<String, SegmentContext> = segments
                .into_iter()
                .enumerate()
                .map(|(i, s)| (i.to_string(), s))
                .collect();
            let features: IndexMap<String, FeatureContext> =
                features.into_iter().map(|f| (f.name.clone(), f)).collect();
            EvaluationContext {
                environment: EnvironmentContext { key, name },
                identity,
                segments: Some(segments),
                features: Some(features),
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn arbitrary_contexts_never_panic(ctx in context()) {
        let result = get_evaluation_result(&ctx);
        let features = ctx.features.as_ref().map_or(0, IndexMap::len);
        prop_assert_eq!(result.flags.len(), features);
        prop_assert!(serde_json::to_string(&result).is_ok());
    }

    #[test]
    fn hashed_percentage_in_range(a in ".{0,20}", b in ".{0,20}") {
        let p = hashed_percentage(&[&a, &b]);
        prop_assert!((0.0..100.0).contains(&p));
    }

    #[test]
    fn float_repr_round_trips(f in any::<f64>().prop_filter("finite", |f| f.is_finite())) {
        let repr = python::float_repr(f);
        prop_assert_eq!(repr.parse::<f64>().ok(), Some(f));
        prop_assert_eq!(python::parse_float(&repr), Some(f));
    }

    #[test]
    fn number_parsers_never_panic(s in ".{0,16}") {
        let _ = python::parse_int(&s);
        let _ = python::parse_float(&s);
    }
}
