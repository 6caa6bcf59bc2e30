//! A context compiled once (segments, rules, conditions, features, reason strings) and
//! evaluated many times against different identities.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::cmp::Ordering;
use std::collections::HashMap;

use indexmap::IndexMap;
use serde_json::{Map, Value};

use super::accessor::Source;
use super::condition::Condition;
use super::context::{
    EnvironmentContext, EvaluationContext, FeatureContext, IdentityContext, Priority, RuleType,
    SegmentContext, SegmentRule,
};
use super::hashing::hashed_percentage;
use super::python;
use super::result::{EvaluationResult, FlagResult, SegmentResult};

/// An evaluation context without identity, compiled for repeated evaluation.
///
/// Build it once per environment (e.g. per polled environment document) and call
/// [`CompiledContext::evaluate`] per request.
#[derive(Debug, Clone)]
pub struct CompiledContext {
    environment: EnvironmentContext,
    segments: Vec<Segment>,
    features: Vec<Feature>,
    /// JSON form of the context (without identity), kept only if a condition uses a
    /// JSONPath that cannot be resolved directly.
    json: Option<Map<String, Value>>,
    /// Whether every override carries a [`Feature::rank`] (false when a NaN priority makes
    /// priorities not totally ordered; evaluation then compares priorities themselves).
    ranked: bool,
}

#[derive(Debug, Clone)]
struct Segment {
    key: String,
    name: String,
    reason: String,
    rules: Vec<Rule>,
    /// Overrides with the index of the feature (in `features`) they apply to.
    overrides: Vec<(usize, Feature)>,
    metadata: Option<Value>,
}

#[derive(Debug, Clone)]
struct Rule {
    rule_type: RuleType,
    conditions: Vec<Condition>,
    rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
struct Feature {
    key: String,
    name: String,
    enabled: bool,
    value: Value,
    /// Variants sorted by priority (stable).
    variants: Vec<Variant>,
    priority: Option<Priority>,
    /// Position of `priority` among all override priorities of the context (equal priorities
    /// share a rank): comparing two ranks gives the same answer as [`priority_lt`], for a
    /// fraction of its cost. The reference project compares 750 override priorities per
    /// identity.
    rank: u32,
    metadata: Option<Value>,
}

#[derive(Debug, Clone)]
struct Variant {
    key: Option<String>,
    value: Value,
    weight: f64,
    reason: String,
}

impl CompiledContext {
    /// Compiles a context; its `identity`, if any, is ignored (pass it to `evaluate`).
    pub fn new(ctx: &EvaluationContext) -> CompiledContext {
        let features = compile_features(ctx.features.as_ref());
        let index: HashMap<&str, usize> = features
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name.as_str(), i))
            .collect();
        let mut segments: Vec<Segment> = ctx
            .segments
            .iter()
            .flat_map(IndexMap::values)
            .map(|s| compile_segment(s, &index))
            .collect();
        let ranked = rank_overrides(&mut segments);
        let needs_json = segments
            .iter()
            .any(|s| s.rules.iter().any(Rule::needs_json));
        let json = needs_json.then(|| base_json(ctx));
        CompiledContext {
            environment: ctx.environment.clone(),
            segments,
            features,
            json,
            ranked,
        }
    }

    /// Evaluates flags and segments for an identity (or none, for environment flags).
    pub fn evaluate(&self, identity: Option<&IdentityContext>) -> EvaluationResult<'_> {
        let mut segments = Vec::new();
        let flags = self
            .evaluate_with(identity, |segment| {
                segments.push(SegmentResult {
                    name: Cow::Borrowed(&segment.name),
                    metadata: segment.metadata.as_ref().map(Cow::Borrowed),
                });
            })
            .into_iter()
            .map(|flag| (flag.name.clone(), flag))
            .collect();
        EvaluationResult { flags, segments }
    }

    /// The flags of [`CompiledContext::evaluate`] only, in the order of
    /// [`CompiledContext::feature_names`]: no result map, no segment list (the proxy's
    /// per-request path).
    pub fn evaluate_flags(&self, identity: Option<&IdentityContext>) -> Vec<FlagResult<'_>> {
        self.evaluate_with(identity, |_| {})
    }

    /// The names of the evaluated features, in result order (one per distinct name).
    pub fn feature_names(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.features.iter().map(|f| f.name.as_str())
    }

    fn evaluate_with<'s>(
        &'s self,
        identity: Option<&IdentityContext>,
        mut on_segment: impl FnMut(&'s Segment),
    ) -> Vec<FlagResult<'s>> {
        let enriched_key = identity.map(|i| match i.key.as_deref() {
            Some(k) if !k.is_empty() => Cow::Borrowed(k),
            _ => Cow::Owned(format!("{}_{}", self.environment.key, i.identifier)),
        });
        let src = EvalSource {
            ctx: self,
            identity,
            key: enriched_key.as_deref(),
            json: OnceCell::new(),
        };
        let mut overrides: Vec<Option<(&Feature, &str)>> = vec![None; self.features.len()];
        for segment in &self.segments {
            if !segment.matches(&src) {
                continue;
            }
            on_segment(segment);
            for (target, feature) in &segment.overrides {
                let Some(slot) = overrides.get_mut(*target) else {
                    continue;
                };
                let stronger = match slot {
                    None => true,
                    Some((current, _)) if self.ranked => feature.rank < current.rank,
                    Some((current, _)) => priority_lt(feature.priority, current.priority),
                };
                if stronger {
                    *slot = Some((feature, segment.reason.as_str()));
                }
            }
        }
        let key = enriched_key.as_deref();
        self.features
            .iter()
            .zip(overrides)
            .map(|(feature, over)| {
                let mut flag = match over {
                    Some((f, reason)) => f.evaluate(key, reason),
                    None => feature.evaluate(key, "DEFAULT"),
                };
                flag.name = Cow::Borrowed(feature.name.as_str());
                flag
            })
            .collect()
    }
}

/// Sets [`Feature::rank`] on every override so that `a.rank < b.rank` exactly when
/// `priority_lt(a.priority, b.priority)`. Returns false (ranks unused) when some priority is
/// NaN: NaN compares as neither less nor greater than anything, so no ranking agrees with it.
fn rank_overrides(segments: &mut [Segment]) -> bool {
    let mut overrides: Vec<&mut Feature> = segments
        .iter_mut()
        .flat_map(|s| s.overrides.iter_mut().map(|(_, f)| f))
        .collect();
    if overrides
        .iter()
        .any(|f| f.priority.as_ref().is_some_and(is_nan))
    {
        return false;
    }
    // Without NaN, `priority_lt` is a strict weak order (missing = +∞), so sorting by it and
    // numbering the classes of equal priorities gives ranks that agree with it.
    overrides.sort_by(|a, b| priority_order(a.priority, b.priority));
    let mut rank = 0u32;
    let mut previous: Option<Option<Priority>> = None;
    for feature in overrides {
        if let Some(prev) = previous {
            if priority_lt(prev, feature.priority) {
                rank += 1;
            }
        }
        previous = Some(feature.priority);
        feature.rank = rank;
    }
    true
}

/// [`priority_lt`] as an ordering for sorting (equal when neither is less).
fn priority_order(a: Option<Priority>, b: Option<Priority>) -> Ordering {
    if priority_lt(a, b) {
        Ordering::Less
    } else if priority_lt(b, a) {
        Ordering::Greater
    } else {
        Ordering::Equal
    }
}

/// `a < b` with missing/null priorities as +∞ (NaN never wins).
fn priority_lt(a: Option<Priority>, b: Option<Priority>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.compare(&b) == Some(Ordering::Less),
        (Some(a), None) => a != Priority::Float(f64::INFINITY) && !is_nan(&a),
        (None, _) => false,
    }
}

fn is_nan(p: &Priority) -> bool {
    matches!(p, Priority::Float(f) if f.is_nan())
}

fn compile_features(features: Option<&IndexMap<String, FeatureContext>>) -> Vec<Feature> {
    let Some(features) = features else {
        return Vec::new();
    };
    // The reference keys results by feature name and, for each name, evaluates the
    // feature stored under that name (first position, last value for duplicates).
    let mut by_name: IndexMap<&str, &FeatureContext> = IndexMap::new();
    for fc in features.values() {
        let effective = features.get(&fc.name).unwrap_or(fc);
        by_name.insert(fc.name.as_str(), effective);
    }
    by_name.values().map(|fc| compile_feature(fc)).collect()
}

fn compile_feature(fc: &FeatureContext) -> Feature {
    let mut variants: Vec<(Option<Priority>, Variant)> = fc
        .variants
        .iter()
        .map(|v| {
            let variant = Variant {
                key: v.key.clone(),
                value: v.value.clone(),
                weight: v.weight.as_f64().unwrap_or(f64::NAN),
                reason: format!("SPLIT; weight={}", python::number_str(&v.weight)),
            };
            (v.priority, variant)
        })
        .collect();
    variants.sort_by(|(a, _), (b, _)| priority_order(*a, *b));
    Feature {
        key: fc.key.clone(),
        name: fc.name.clone(),
        enabled: fc.enabled,
        value: fc.value.clone(),
        variants: variants.into_iter().map(|(_, v)| v).collect(),
        priority: fc.priority,
        rank: 0,
        metadata: fc.metadata.clone().filter(python::truthy),
    }
}

fn compile_segment(s: &SegmentContext, index: &HashMap<&str, usize>) -> Segment {
    Segment {
        key: s.key.clone(),
        name: s.name.clone(),
        reason: format!("TARGETING_MATCH; segment={}", s.name),
        rules: s.rules.iter().map(compile_rule).collect(),
        overrides: s
            .overrides
            .iter()
            .filter_map(|o| index.get(o.name.as_str()).map(|i| (*i, compile_feature(o))))
            .collect(),
        metadata: s.metadata.clone().filter(python::truthy),
    }
}

fn compile_rule(r: &SegmentRule) -> Rule {
    Rule {
        rule_type: r.rule_type,
        conditions: r.conditions.iter().map(Condition::compile).collect(),
        rules: r.rules.iter().map(compile_rule).collect(),
    }
}

/// The context as JSON without identity, for general JSONPath queries.
fn base_json(ctx: &EvaluationContext) -> Map<String, Value> {
    let without_identity = EvaluationContext {
        identity: None,
        ..ctx.clone()
    };
    match serde_json::to_value(without_identity) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

impl Segment {
    fn matches<S: Source>(&self, src: &S) -> bool {
        !self.rules.is_empty() && self.rules.iter().all(|r| r.matches(src, &self.key))
    }
}

impl Rule {
    fn needs_json(&self) -> bool {
        self.conditions.iter().any(Condition::needs_json) || self.rules.iter().any(Rule::needs_json)
    }

    fn matches<S: Source>(&self, src: &S, segment_key: &str) -> bool {
        let conditions_ok = self.conditions.is_empty()
            || self.quantify(self.conditions.iter().map(|c| c.matches(src, segment_key)));
        conditions_ok
            && (self.rules.is_empty()
                || self.quantify(self.rules.iter().map(|r| r.matches(src, segment_key))))
    }

    fn quantify(&self, mut results: impl Iterator<Item = bool>) -> bool {
        match self.rule_type {
            RuleType::All => results.all(|b| b),
            RuleType::Any => results.any(|b| b),
            RuleType::None => !results.any(|b| b),
            RuleType::Unknown => false,
        }
    }
}

impl Feature {
    fn evaluate<'a>(&'a self, identity_key: Option<&str>, reason: &'a str) -> FlagResult<'a> {
        let mut flag = FlagResult {
            name: Cow::Borrowed(&self.name),
            enabled: self.enabled,
            value: Cow::Borrowed(&self.value),
            reason: Cow::Borrowed(reason),
            variant: None,
            metadata: self.metadata.as_ref().map(Cow::Borrowed),
        };
        let Some(key) = identity_key else {
            return flag;
        };
        if self.variants.is_empty() {
            return flag;
        }
        flag.variant = Some(Cow::Borrowed("control"));
        let p = hashed_percentage(&[&self.key, key]);
        let mut start = 0.0;
        for v in &self.variants {
            let limit = v.weight + start;
            if start <= p && p < limit {
                flag.value = Cow::Borrowed(&v.value);
                flag.reason = Cow::Borrowed(&v.reason);
                flag.variant = v.key.as_deref().map(Cow::Borrowed);
                break;
            }
            start = limit;
        }
        flag
    }
}

/// What conditions read during one evaluation.
struct EvalSource<'a> {
    ctx: &'a CompiledContext,
    identity: Option<&'a IdentityContext>,
    key: Option<&'a str>,
    json: OnceCell<Value>,
}

impl Source for EvalSource<'_> {
    fn environment_key(&self) -> &str {
        &self.ctx.environment.key
    }

    fn environment_name(&self) -> &str {
        &self.ctx.environment.name
    }

    fn identity(&self) -> Option<(&str, &str)> {
        Some((self.identity?.identifier.as_str(), self.key?))
    }

    fn trait_value(&self, key: &str) -> Option<&Value> {
        let traits = &self.identity?.traits;
        // Keys are unique: a scan finds the same entry, without hashing, for the few
        // traits a request usually carries.
        if traits.len() <= 8 {
            traits
                .iter()
                .find(|(k, _)| k.as_str() == key)
                .map(|(_, v)| v)
        } else {
            traits.get(key)
        }
    }

    fn json(&self) -> &Value {
        self.json.get_or_init(|| {
            let mut map = Map::new();
            let base = self.ctx.json.as_ref();
            if let Some(env) = base.and_then(|b| b.get("environment")) {
                map.insert("environment".to_owned(), env.clone());
            }
            if let Some(identity) = self.identity {
                let enriched = IdentityContext {
                    key: self.key.map(str::to_owned),
                    ..identity.clone()
                };
                map.insert(
                    "identity".to_owned(),
                    serde_json::to_value(enriched).unwrap_or(Value::Null),
                );
            }
            for (k, v) in base.into_iter().flatten() {
                if k != "environment" {
                    map.insert(k.clone(), v.clone());
                }
            }
            Value::Object(map)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eval(ctx: Value) -> Value {
        let ctx: EvaluationContext = serde_json::from_value(ctx).unwrap();
        let compiled = CompiledContext::new(&ctx);
        serde_json::to_value(compiled.evaluate(ctx.identity.as_ref())).unwrap()
    }

    fn segment(name: &str, rule_type: &str, conditions: Value, overrides: Value) -> Value {
        json!({"key": name, "name": name,
               "rules": [{"type": rule_type, "conditions": conditions}],
               "overrides": overrides})
    }

    #[test]
    fn compiled_context_is_shareable() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<CompiledContext>();
    }

    #[test]
    fn override_priorities_lower_wins_ties_keep_first_null_is_weakest() {
        let always = json!([{"property": "x", "operator": "IS_NOT_SET", "value": null}]);
        let over = |v: &str, p: Value| json!({"key": "k", "name": "f", "enabled": true, "value": v, "priority": p});
        let result = eval(json!({
            "environment": {"key": "e", "name": "n"},
            "segments": {
                "a": segment("a", "ALL", always.clone(), json!([over("a", Value::Null)])),
                "b": segment("b", "ALL", always.clone(), json!([over("b", json!(2))])),
                "c": segment("c", "ALL", always.clone(), json!([over("c", json!(2.0))])),
                "d": segment("d", "ALL", always.clone(), json!([over("d", json!(5))])),
                "e": segment("e", "ALL", always, json!([{"key": "k", "name": "absent",
                    "enabled": true, "value": 1, "priority": 0}]))
            },
            "features": {"f": {"key": "k", "name": "f", "enabled": false, "value": "default"}}
        }));
        assert_eq!(result["flags"]["f"]["value"], json!("b"));
        assert_eq!(
            result["flags"]["f"]["reason"],
            json!("TARGETING_MATCH; segment=b")
        );
        assert_eq!(result["segments"].as_array().unwrap().len(), 5);
        assert!(result["flags"].get("absent").is_none());
    }

    #[test]
    fn override_ranks_agree_with_priority_comparison() {
        let always = json!([{"property": "x", "operator": "IS_NOT_SET", "value": null}]);
        let priorities = [
            Value::Null,
            json!(2),
            json!(2.0),
            json!(-3),
            json!(0.5),
            json!(1e300),
            json!(u64::MAX),
            json!(-1e-9),
            json!(7),
            Value::Null,
            json!(0),
        ];
        let overrides: Vec<Value> = priorities
            .iter()
            .map(|p| json!({"key": "k", "name": "f", "enabled": true, "value": 1, "priority": p}))
            .collect();
        let ctx: EvaluationContext = serde_json::from_value(json!({
            "environment": {"key": "e", "name": "n"},
            "segments": {
                "a": segment("a", "ALL", always.clone(), json!(overrides[..5])),
                "b": segment("b", "ALL", always, json!(overrides[5..])),
            },
            "features": {"f": {"key": "k", "name": "f", "enabled": false, "value": 0}}
        }))
        .unwrap();
        let compiled = CompiledContext::new(&ctx);
        assert!(compiled.ranked);
        let all: Vec<&Feature> = compiled
            .segments
            .iter()
            .flat_map(|s| s.overrides.iter().map(|(_, f)| f))
            .collect();
        assert_eq!(all.len(), priorities.len());
        for a in &all {
            for b in &all {
                assert_eq!(
                    a.rank < b.rank,
                    priority_lt(a.priority, b.priority),
                    "{:?} vs {:?}",
                    a.priority,
                    b.priority
                );
            }
        }
    }

    #[test]
    fn rule_quantifiers_and_unknown_types() {
        let t = json!({"property": "x", "operator": "IS_NOT_SET", "value": null});
        let f = json!({"property": "x", "operator": "IS_SET", "value": null});
        let result = eval(json!({
            "environment": {"key": "e", "name": "n"},
            "segments": {
                "any": segment("any", "ANY", json!([f, t]), json!([])),
                "none": segment("none", "NONE", json!([f, f]), json!([])),
                "all_fails": segment("all_fails", "ALL", json!([t, f]), json!([])),
                "empty_any": segment("empty_any", "ANY", json!([]), json!([])),
                "unknown_empty": segment("unknown_empty", "WHAT", json!([]), json!([])),
                "unknown": segment("unknown", "WHAT", json!([t]), json!([])),
                "no_rules": {"key": "x", "name": "no_rules", "rules": []}
            }
        }));
        assert_eq!(
            result["segments"],
            json!([{"name": "any"}, {"name": "none"}, {"name": "empty_any"},
                   {"name": "unknown_empty"}])
        );
        assert_eq!(result["flags"], json!({}));
    }

    #[test]
    fn variants_need_identity_and_report_control() {
        let feature = json!({"key": "12345", "name": "mv", "enabled": true, "value": "ctl",
            "variants": [{"value": "never", "weight": 0, "priority": 1}]});
        let ctx = |identity: Value| {
            json!({"environment": {"key": "test_env", "name": "n"}, "identity": identity,
                   "features": {"mv": feature.clone()}})
        };
        let none = eval(ctx(Value::Null));
        assert_eq!(none["flags"]["mv"]["variant"], Value::Null);
        let some = eval(ctx(json!({"identifier": "foobar"})));
        assert_eq!(some["flags"]["mv"]["variant"], json!("control"));
        assert_eq!(some["flags"]["mv"]["value"], json!("ctl"));
        assert_eq!(some["flags"]["mv"]["reason"], json!("DEFAULT"));
    }

    #[test]
    fn implicit_identity_key_feeds_percentage_split() {
        // hash("12345,test_env_foobar") = 51.99…
        let split = |v: &str| json!([{"property": "$.identity.key", "operator": "PERCENTAGE_SPLIT", "value": v}]);
        let result = eval(json!({
            "environment": {"key": "test_env", "name": "n"},
            "identity": {"identifier": "foobar", "key": ""},
            "segments": {
                "in": {"key": "12345", "name": "in", "rules": [{"type": "ALL", "conditions": split("52")}]},
                "out": {"key": "12345", "name": "out", "rules": [{"type": "ALL", "conditions": split("51.9")}]}
            }
        }));
        assert_eq!(result["segments"], json!([{"name": "in"}]));
    }
}
