//! The Flagsmith environment document (`GET /api/v1/environment-document/`) and its
//! mapping to an evaluation context, as the Python SDK mapper used by the Edge Proxy does:
//! features by name, project segments keyed by id, identity overrides grouped into
//! synthetic `identity_overrides` segments with priority −∞.

use std::collections::HashMap;

use indexmap::IndexMap;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Map, Number, Value};

use super::compiled::CompiledContext;
use super::context::{
    EnvironmentContext, EvaluationContext, FeatureContext, FeatureVariant, IdentityContext,
    Priority, RuleType, SegmentCondition, SegmentContext, SegmentRule,
};
use super::python;

/// The fields of an environment document that evaluation and the proxy use; all other
/// fields are ignored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EnvironmentDocument {
    /// Client-side environment key; the engine's hashing key.
    pub api_key: String,
    /// Environment name.
    pub name: String,
    /// Last change, ISO-8601 (the proxy derives `If-Modified-Since` from it).
    #[serde(default)]
    pub updated_at: Option<String>,
    /// Project: segments and client-key filters.
    pub project: DocProject,
    /// Environment default feature states, in display order.
    pub feature_states: Vec<DocFeatureState>,
    /// Per-identity overrides (present when enabled upstream).
    #[serde(default, deserialize_with = "null_as_default")]
    pub identity_overrides: Vec<IdentityOverride>,
}

/// The project part of the document.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DocProject {
    /// Segments, in evaluation order.
    pub segments: Vec<DocSegment>,
    /// Client keys do not see disabled flags when true.
    #[serde(default, deserialize_with = "null_as_default")]
    pub hide_disabled_flags: bool,
    /// Feature ids hidden from client keys.
    #[serde(default, deserialize_with = "null_as_default")]
    pub server_key_only_feature_ids: Vec<Value>,
}

/// A feature state (environment default, segment override or identity override).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DocFeatureState {
    /// The feature.
    pub feature: DocFeature,
    /// Whether the flag is on.
    pub enabled: bool,
    /// The control value.
    #[serde(default)]
    pub feature_state_value: Value,
    /// Database id; used as hashing key when truthy.
    #[serde(default)]
    pub django_id: Option<Value>,
    /// Fallback hashing key.
    #[serde(default)]
    pub featurestate_uuid: Option<Value>,
    /// `{"priority": n}` on segment overrides.
    #[serde(default)]
    pub feature_segment: Option<Map<String, Value>>,
    /// Multivariate allocations.
    #[serde(default, deserialize_with = "null_as_default")]
    pub multivariate_feature_state_values: Vec<DocMultivariateValue>,
}

/// A feature's identity.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DocFeature {
    /// Feature id (reported as flag metadata `id`).
    pub id: Value,
    /// Feature name.
    pub name: String,
    /// `STANDARD` or `MULTIVARIATE` (not used by the engine).
    #[serde(rename = "type", default)]
    pub feature_type: Option<String>,
}

/// One multivariate allocation.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DocMultivariateValue {
    /// Database id; the variant priority when truthy.
    #[serde(default)]
    pub id: Option<Value>,
    /// UUID; its 128-bit value is the priority when `id` is not truthy.
    #[serde(default)]
    pub mv_fs_value_uuid: Option<String>,
    /// Weight in percent.
    pub percentage_allocation: Number,
    /// The option chosen.
    pub multivariate_feature_option: DocMultivariateOption,
}

/// A multivariate option.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DocMultivariateOption {
    /// Its value.
    #[serde(default)]
    pub value: Value,
    /// Optional variant key (newer documents).
    #[serde(default)]
    pub key: Option<String>,
}

/// A project segment.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DocSegment {
    /// Segment id (becomes the segment key).
    pub id: Value,
    /// Segment name.
    pub name: String,
    /// Rules.
    pub rules: Vec<DocRule>,
    /// Segment overrides.
    #[serde(default, deserialize_with = "null_as_default")]
    pub feature_states: Vec<DocFeatureState>,
}

/// A segment rule in document form.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DocRule {
    /// `ALL`, `ANY` or `NONE`.
    #[serde(rename = "type")]
    pub rule_type: RuleType,
    /// Conditions.
    #[serde(default, deserialize_with = "null_as_default")]
    pub conditions: Vec<DocCondition>,
    /// Nested rules.
    #[serde(default, deserialize_with = "null_as_default")]
    pub rules: Vec<DocRule>,
}

/// A condition in document form (note the legacy `property_` key).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DocCondition {
    /// Operator name.
    pub operator: String,
    /// Property; null/missing for legacy percentage splits.
    #[serde(default)]
    pub property_: Option<String>,
    /// Operand.
    #[serde(default)]
    pub value: Value,
}

/// Overrides for one identity.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct IdentityOverride {
    /// The identity's identifier.
    pub identifier: String,
    /// Its overridden feature states.
    #[serde(default, deserialize_with = "null_as_default")]
    pub identity_features: Vec<DocFeatureState>,
}

/// A trait as sent to `POST /api/v1/identities/`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trait {
    /// Trait key.
    pub trait_key: String,
    /// Trait value (JSON scalar).
    #[serde(default)]
    pub trait_value: Value,
}

impl IdentityContext {
    /// An identity from an identifier and a trait list (later duplicates win); the
    /// hashing key is left to the engine (`"<environment key>_<identifier>"`).
    pub fn from_traits(identifier: &str, traits: &[Trait]) -> IdentityContext {
        let mut map = IndexMap::with_capacity(traits.len());
        for t in traits {
            map.insert(t.trait_key.clone(), t.trait_value.clone());
        }
        IdentityContext {
            identifier: identifier.to_owned(),
            key: None,
            traits: map,
        }
    }

    /// [`IdentityContext::from_traits`] taking ownership (no copies of keys and values).
    pub fn from_owned_traits(identifier: String, traits: Vec<Trait>) -> IdentityContext {
        let mut map = IndexMap::with_capacity(traits.len());
        for t in traits {
            map.insert(t.trait_key, t.trait_value);
        }
        IdentityContext {
            identifier,
            key: None,
            traits: map,
        }
    }
}

impl EnvironmentDocument {
    /// Maps the document without identity and compiles it: do this once per polled
    /// document, then call [`CompiledContext::evaluate`] per request.
    pub fn compile(&self) -> CompiledContext {
        CompiledContext::new(&self.to_context(None))
    }

    /// Maps the document (plus an optional identifier and traits) to an evaluation
    /// context, exactly like the SDK mapper the Edge Proxy uses.
    pub fn to_context(&self, identity: Option<(&str, &[Trait])>) -> EvaluationContext {
        let mut features = IndexMap::with_capacity(self.feature_states.len());
        for fs in &self.feature_states {
            features.insert(fs.feature.name.clone(), map_feature_state(fs));
        }
        let mut segments = IndexMap::with_capacity(self.project.segments.len());
        for s in &self.project.segments {
            let key = python::scalar_str(&s.id).unwrap_or_else(|| s.id.to_string());
            let segment = SegmentContext {
                key: key.clone(),
                name: s.name.clone(),
                rules: s.rules.iter().map(map_rule).collect(),
                overrides: s.feature_states.iter().map(map_feature_state).collect(),
                metadata: Some(json!({"id": s.id, "source": "api"})),
            };
            segments.insert(key, segment);
        }
        for (i, segment) in identity_override_segments(&self.identity_overrides)
            .into_iter()
            .enumerate()
        {
            segments.insert(format!("identity_overrides:{i}"), segment);
        }
        EvaluationContext {
            environment: EnvironmentContext {
                key: self.api_key.clone(),
                name: self.name.clone(),
            },
            identity: identity.map(|(id, traits)| IdentityContext::from_traits(id, traits)),
            segments: Some(segments),
            features: Some(features),
        }
    }
}

fn map_feature_state(fs: &DocFeatureState) -> FeatureContext {
    let key = match &fs.django_id {
        Some(id) if python::truthy(id) => python::scalar_str(id),
        _ => None,
    }
    .or_else(|| python::scalar_str(fs.featurestate_uuid.as_ref().unwrap_or(&Value::Null)))
    .unwrap_or_else(|| "None".to_owned());
    FeatureContext {
        key,
        name: fs.feature.name.clone(),
        enabled: fs.enabled,
        value: fs.feature_state_value.clone(),
        variants: fs
            .multivariate_feature_state_values
            .iter()
            .map(map_variant)
            .collect(),
        priority: fs
            .feature_segment
            .as_ref()
            .filter(|m| !m.is_empty())
            .and_then(|m| m.get("priority"))
            .and_then(Value::as_number)
            .map(Priority::from_number),
        metadata: Some(json!({"id": fs.feature.id})),
    }
}

fn map_variant(mv: &DocMultivariateValue) -> FeatureVariant {
    let by_id = mv
        .id
        .as_ref()
        .filter(|id| python::truthy(id))
        .and_then(Value::as_number)
        .map(Priority::from_number);
    let priority = by_id.or_else(|| {
        mv.mv_fs_value_uuid
            .as_deref()
            .and_then(uuid_value)
            .map(Priority::from_u128)
    });
    FeatureVariant {
        key: mv.multivariate_feature_option.key.clone(),
        value: mv.multivariate_feature_option.value.clone(),
        weight: mv.percentage_allocation.clone(),
        priority,
    }
}

/// Python `uuid.UUID(s).int`.
fn uuid_value(s: &str) -> Option<u128> {
    let hex = s.replace("urn:", "").replace("uuid:", "");
    let hex = hex.trim_matches(|c| c == '{' || c == '}').replace('-', "");
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u128::from_str_radix(&hex, 16).ok()
}

fn map_rule(r: &DocRule) -> SegmentRule {
    SegmentRule {
        rule_type: r.rule_type,
        conditions: r
            .conditions
            .iter()
            .map(|c| SegmentCondition {
                property: c.property_.clone().unwrap_or_default(),
                operator: c.operator.clone(),
                value: c.value.clone(),
            })
            .collect(),
        rules: r.rules.iter().map(map_rule).collect(),
    }
}

/// A Python-equality key for a value (`1 == 1.0 == True`), used to group identical
/// override sets the way the reference's dict of tuples does.
fn py_eq_key(v: &Value) -> String {
    match v {
        Value::Bool(b) => format!("n:{}", u8::from(*b)),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => format!("n:{i}"),
            (_, Some(u), _) => format!("n:{u}"),
            (_, _, Some(f)) if f.fract() == 0.0 && f.abs() < 9.2e18 => format!("n:{}", f as i64),
            _ => format!("f:{n}"),
        },
        other => format!("j:{other}"),
    }
}

fn identity_override_segments(overrides: &[IdentityOverride]) -> Vec<SegmentContext> {
    // Group identifiers by identical (sorted by name) override sets, first-seen order.
    let mut groups: Vec<(Vec<&DocFeatureState>, Vec<Value>)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for o in overrides {
        if o.identity_features.is_empty() {
            continue;
        }
        let mut states: Vec<&DocFeatureState> = o.identity_features.iter().collect();
        states.sort_by(|a, b| a.feature.name.cmp(&b.feature.name));
        let key: Vec<String> = states
            .iter()
            .map(|fs| {
                let parts = [
                    py_eq_key(&fs.feature.id),
                    fs.feature.name.clone(),
                    py_eq_key(&Value::Bool(fs.enabled)),
                    py_eq_key(&fs.feature_state_value),
                ];
                serde_json::to_string(&parts).unwrap_or_default()
            })
            .collect();
        let key = key.join("\u{0}");
        let slot = *index.entry(key).or_insert_with(|| {
            groups.push((states, Vec::new()));
            groups.len() - 1
        });
        if let Some(group) = groups.get_mut(slot) {
            group.1.push(Value::String(o.identifier.clone()));
        }
    }
    groups
        .into_iter()
        .map(|(states, identifiers)| SegmentContext {
            key: String::new(),
            name: "identity_overrides".to_owned(),
            rules: vec![SegmentRule {
                rule_type: RuleType::All,
                conditions: vec![SegmentCondition {
                    property: "$.identity.identifier".to_owned(),
                    operator: "IN".to_owned(),
                    value: Value::Array(identifiers),
                }],
                rules: Vec::new(),
            }],
            overrides: states
                .into_iter()
                .map(|fs| FeatureContext {
                    key: String::new(),
                    name: fs.feature.name.clone(),
                    enabled: fs.enabled,
                    value: fs.feature_state_value.clone(),
                    variants: Vec::new(),
                    priority: Some(Priority::NEG_INFINITY),
                    metadata: Some(json!({"id": fs.feature.id})),
                })
                .collect(),
            metadata: Some(json!({"source": "identity_overrides"})),
        })
        .collect()
}

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The document of the edge-proxy spec's Appendix A transcript.
    fn appendix_a() -> EnvironmentDocument {
        serde_json::from_value(json!({
            "id": 1, "api_key": "client_key_1", "name": "Development",
            "updated_at": "2024-05-01T10:20:30.123456+00:00",
            "allow_client_traits": true,
            "project": {
                "id": 1, "name": "p", "hide_disabled_flags": false,
                "server_key_only_feature_ids": [3],
                "segments": [
                    {"id": 10, "name": "no_plan", "rules": [{"type": "ALL", "rules": [],
                        "conditions": [{"operator": "IS_NOT_SET", "property_": "plan", "value": null}]}],
                     "feature_states": [{"feature": {"id": 1, "name": "feature_a", "type": "STANDARD"},
                        "enabled": true, "feature_state_value": "from_segment_10", "django_id": 201,
                        "feature_segment": {"priority": 1}}]},
                    {"id": 11, "name": "dev_env", "rules": [{"type": "ALL", "conditions": [
                        {"operator": "EQUAL", "property_": "$.environment.name", "value": "Development"}]}],
                     "feature_states": [{"feature": {"id": 2, "name": "feature_b", "type": "STANDARD"},
                        "enabled": false, "feature_state_value": 42, "django_id": 202,
                        "feature_segment": {"priority": 2}}]}
                ]
            },
            "feature_states": [
                {"feature": {"id": 1, "name": "feature_a", "type": "STANDARD"}, "enabled": false,
                 "feature_state_value": "default_a", "django_id": 101, "feature_segment": null},
                {"feature": {"id": 2, "name": "feature_b", "type": "STANDARD"}, "enabled": true,
                 "feature_state_value": null, "django_id": 102},
                {"feature": {"id": 3, "name": "server_only", "type": "STANDARD"}, "enabled": true,
                 "feature_state_value": true, "django_id": 103},
                {"feature": {"id": 4, "name": "mv", "type": "MULTIVARIATE"}, "enabled": true,
                 "feature_state_value": "control", "django_id": 104,
                 "multivariate_feature_state_values": [
                    {"id": 9001, "mv_fs_value_uuid": "aaaaaaaa-0000-0000-0000-000000000001",
                     "percentage_allocation": 30.0, "multivariate_feature_option": {"id": 1, "value": "red"}},
                    {"id": 9002, "mv_fs_value_uuid": "aaaaaaaa-0000-0000-0000-000000000002",
                     "percentage_allocation": 30.0, "multivariate_feature_option": {"id": 2, "value": 7}}]}
            ],
            "identity_overrides": [
                {"identifier": "vip", "identity_features": [
                    {"feature": {"id": 1, "name": "feature_a", "type": "STANDARD"}, "enabled": true,
                     "feature_state_value": "vip_value", "featurestate_uuid": "x"}]},
                {"identifier": "nobody", "identity_features": []}
            ]
        }))
        .unwrap()
    }

    fn flags(doc: &EnvironmentDocument, identity: Option<(&str, &[Trait])>) -> Vec<Value> {
        let compiled = doc.compile();
        let identity = identity.map(|(id, traits)| IdentityContext::from_traits(id, traits));
        let result = compiled.evaluate(identity.as_ref());
        result
            .flags
            .values()
            .map(|f| json!([f.name, f.enabled, f.value]))
            .collect()
    }

    #[test]
    fn environment_flags_apply_identityless_segments() {
        assert_eq!(
            flags(&appendix_a(), None),
            vec![
                json!(["feature_a", true, "from_segment_10"]),
                json!(["feature_b", false, 42]),
                json!(["server_only", true, true]),
                json!(["mv", true, "control"]),
            ]
        );
    }

    #[test]
    fn identity_flags_overrides_traits_and_splits() {
        let doc = appendix_a();
        let vip = flags(&doc, Some(("vip", &[])));
        assert_eq!(vip[0], json!(["feature_a", true, "vip_value"]));
        let user1 = flags(&doc, Some(("user1", &[])));
        assert_eq!(user1[3], json!(["mv", true, "red"]));
        let gold = [Trait {
            trait_key: "plan".to_owned(),
            trait_value: json!("gold"),
        }];
        let user1_gold = flags(&doc, Some(("user1", &gold)));
        assert_eq!(user1_gold[0], json!(["feature_a", false, "default_a"]));
    }

    #[test]
    fn numeric_looking_identifiers_follow_the_reference_quirk() {
        let mut doc = appendix_a();
        let template = doc.identity_overrides[0].clone();
        doc.identity_overrides = ["007", "-0", "1.5", "123"]
            .iter()
            .map(|id| IdentityOverride {
                identifier: (*id).to_owned(),
                ..template.clone()
            })
            .collect();
        for (id, overridden) in [("007", false), ("-0", false), ("1.5", false), ("123", true)] {
            let value = &flags(&doc, Some((id, &[])))[0][2];
            assert_eq!(value == "vip_value", overridden, "{id}");
        }
    }

    #[test]
    fn mapping_details() {
        let ctx = appendix_a().to_context(Some(("u", &[])));
        let features = ctx.features.unwrap();
        assert_eq!(features["mv"].key, "104");
        assert_eq!(features["mv"].metadata, Some(json!({"id": 4})));
        assert_eq!(
            features["mv"].variants[1].priority,
            Some(Priority::from_i64(9002))
        );
        let segments = ctx.segments.unwrap();
        assert_eq!(segments.len(), 3, "empty identity overrides are skipped");
        assert_eq!(
            segments["10"].metadata,
            Some(json!({"id": 10, "source": "api"}))
        );
        assert_eq!(
            segments["10"].overrides[0].priority,
            Some(Priority::from_i64(1))
        );
        assert_eq!(segments["10"].rules[0].conditions[0].property, "plan");
        let io = segments.values().last().unwrap();
        assert_eq!(io.name, "identity_overrides");
        assert_eq!(io.rules[0].conditions[0].value, json!(["vip"]));
        assert_eq!(io.overrides[0].priority, Some(Priority::NEG_INFINITY));
        assert_eq!(ctx.identity.unwrap().key, None);
    }

    #[test]
    fn uuid_priorities_and_key_fallbacks() {
        assert_eq!(
            uuid_value("{AAAAAAAA-0000-0000-0000-000000000002}"),
            Some(0xAAAAAAAA_0000_0000_0000_000000000002)
        );
        assert_eq!(
            uuid_value("urn:uuid:ffffffffffffffffffffffffffffffff"),
            Some(u128::MAX)
        );
        assert_eq!(uuid_value("nope"), None);
        let fs: DocFeatureState = serde_json::from_value(json!({
            "feature": {"id": 1, "name": "f"}, "enabled": true, "django_id": 0,
            "featurestate_uuid": "abc", "feature_segment": {"priority": null},
            "multivariate_feature_state_values": [{"id": null,
                "mv_fs_value_uuid": "00000000-0000-0000-0000-00000000000a",
                "percentage_allocation": 50, "multivariate_feature_option": {"value": "v", "key": "k"}}]
        }))
        .unwrap();
        let fc = map_feature_state(&fs);
        assert_eq!(fc.key, "abc");
        assert_eq!(fc.priority, None);
        assert_eq!(fc.variants[0].priority, Some(Priority::from_u128(10)));
        assert_eq!(fc.variants[0].key.as_deref(), Some("k"));
    }

    #[test]
    fn identical_override_sets_group_with_python_equality() {
        let io = |id: &str, value: Value| IdentityOverride {
            identifier: id.to_owned(),
            identity_features: vec![serde_json::from_value(json!({
                "feature": {"id": 1, "name": "f"}, "enabled": true, "feature_state_value": value
            }))
            .unwrap()],
        };
        let segments = identity_override_segments(&[
            io("a", json!(1)),
            io("b", json!("1")),
            io("c", json!(true)),
            io("d", json!(1.0)),
        ]);
        assert_eq!(segments.len(), 2);
        assert_eq!(
            segments[0].rules[0].conditions[0].value,
            json!(["a", "c", "d"])
        );
        assert_eq!(segments[0].overrides[0].value, json!(1));
        assert_eq!(segments[1].rules[0].conditions[0].value, json!(["b"]));
    }
}
