//! The evaluation context: the engine's input, in the JSON format of the Flagsmith
//! `evaluation-context.json` schema (and of the engine-test-data vectors).

use std::cmp::Ordering;

use indexmap::IndexMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Number, Value};

/// Everything one evaluation needs: environment, optional identity, segments, features.
/// Map order matters (segment order drives result order and override tie-breaks).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EvaluationContext {
    /// The environment; its `key` feeds the implicit identity key.
    pub environment: EnvironmentContext,
    /// The identity being evaluated; `None` for environment flags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<IdentityContext>,
    /// Segments keyed by an opaque unique key, in evaluation order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segments: Option<IndexMap<String, SegmentContext>>,
    /// Features keyed by feature name, in output order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<IndexMap<String, FeatureContext>>,
}

/// Environment identification; `key` is the client-side API key used for hashing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EnvironmentContext {
    /// Client-side environment key.
    pub key: String,
    /// Environment name (readable via `$.environment.name`).
    pub name: String,
}

/// The identity: identifier, optional hashing key, traits.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IdentityContext {
    /// The identity's identifier.
    pub identifier: String,
    /// Hashing key; when absent or empty the engine uses `"<environment key>_<identifier>"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Trait values by trait key (JSON scalars; later duplicates win when built from a list).
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub traits: IndexMap<String, Value>,
}

/// A segment: rules that decide membership, and feature overrides applied to members.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SegmentContext {
    /// Segment key, hashed by `PERCENTAGE_SPLIT`.
    pub key: String,
    /// Segment name, reported in results and reasons.
    pub name: String,
    /// Top-level rules; all must match (and there must be at least one).
    pub rules: Vec<SegmentRule>,
    /// Feature overrides for members of this segment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<FeatureContext>,
    /// Opaque metadata, echoed in results when non-empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

/// A rule: conditions and sub-rules, both quantified by the rule type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentRule {
    /// `ALL`, `ANY` or `NONE`.
    #[serde(rename = "type")]
    pub rule_type: RuleType,
    /// Conditions of this rule.
    #[serde(default, deserialize_with = "null_as_default")]
    pub conditions: Vec<SegmentCondition>,
    /// Nested rules.
    #[serde(default, deserialize_with = "null_as_default")]
    pub rules: Vec<SegmentRule>,
}

/// How a rule quantifies over its conditions and sub-rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RuleType {
    /// Every element must match.
    All,
    /// At least one element must match.
    Any,
    /// No element may match.
    None,
    /// An unknown type (the reference crashes; here the rule never matches if it has
    /// conditions or sub-rules).
    #[serde(other)]
    Unknown,
}

/// One condition: a context property, an operator name and the operand.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SegmentCondition {
    /// Trait key, or a JSONPath into the context when it starts with `$.`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub property: String,
    /// Operator name, e.g. `EQUAL`; unknown operators never match.
    pub operator: String,
    /// Operand: a string, or for `IN` also an array.
    #[serde(default)]
    pub value: Value,
}

/// A feature's state: environment default or segment override.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FeatureContext {
    /// Key hashed for multivariate bucketing.
    pub key: String,
    /// Feature name.
    pub name: String,
    /// Whether the flag is on.
    pub enabled: bool,
    /// The control value.
    #[serde(default)]
    pub value: Value,
    /// Multivariate options.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variants: Vec<FeatureVariant>,
    /// Override priority; lower wins, missing or null = weakest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    /// Opaque metadata, echoed in results when non-empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

/// One multivariate option.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureVariant {
    /// Reported as the flag's `variant` when chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Value returned when chosen.
    #[serde(default)]
    pub value: Value,
    /// Percentage of identities bucketed here; int vs float shows in the reason string.
    pub weight: Number,
    /// Ordering of variants (ascending); missing = last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
}

/// An exactly comparable number: integers of up to 128 bits (UUID-derived priorities)
/// or floats (including −∞ for identity overrides).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Priority {
    /// An integer as sign and magnitude.
    Int {
        /// True for negative values.
        negative: bool,
        /// Absolute value.
        magnitude: u128,
    },
    /// A float.
    Float(f64),
}

impl Priority {
    /// The strongest possible priority (identity overrides).
    pub const NEG_INFINITY: Priority = Priority::Float(f64::NEG_INFINITY);

    /// A priority from a signed integer.
    pub fn from_i64(v: i64) -> Self {
        Priority::Int {
            negative: v < 0,
            magnitude: u128::from(v.unsigned_abs()),
        }
    }

    /// A priority from an unsigned 128-bit integer (e.g. a UUID's value).
    pub fn from_u128(v: u128) -> Self {
        Priority::Int {
            negative: false,
            magnitude: v,
        }
    }

    /// A priority from a JSON number.
    pub fn from_number(n: &Number) -> Self {
        if let Some(i) = n.as_i64() {
            Self::from_i64(i)
        } else if let Some(u) = n.as_u64() {
            Self::from_u128(u128::from(u))
        } else {
            Priority::Float(n.as_f64().unwrap_or(f64::NAN))
        }
    }

    /// Exact numeric comparison (Python semantics: ints and floats compare by value);
    /// `None` when a NaN is involved.
    pub fn compare(&self, other: &Priority) -> Option<Ordering> {
        match (self, other) {
            (Priority::Float(a), Priority::Float(b)) => a.partial_cmp(b),
            (Priority::Int { .. }, Priority::Float(f)) => cmp_int_float(self, *f),
            (Priority::Float(f), Priority::Int { .. }) => {
                cmp_int_float(other, *f).map(Ordering::reverse)
            }
            (
                Priority::Int {
                    negative: na,
                    magnitude: ma,
                },
                Priority::Int {
                    negative: nb,
                    magnitude: mb,
                },
            ) => Some(signed_cmp(*na, *ma, *nb, *mb)),
        }
    }
}

fn signed_cmp(na: bool, ma: u128, nb: bool, mb: u128) -> Ordering {
    let (na, nb) = (na && ma != 0, nb && mb != 0);
    match (na, nb) {
        (false, false) => ma.cmp(&mb),
        (true, true) => mb.cmp(&ma),
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
    }
}

fn cmp_int_float(int: &Priority, f: f64) -> Option<Ordering> {
    let Priority::Int {
        negative,
        magnitude,
    } = *int
    else {
        return None;
    };
    if f.is_nan() {
        return None;
    }
    // 2^128 as f64; any float at or beyond it exceeds every u128 magnitude.
    const TWO_128: f64 = 340_282_366_920_938_463_463_374_607_431_768_211_456.0;
    if f.abs() >= TWO_128 {
        return Some(if f > 0.0 {
            Ordering::Less
        } else {
            Ordering::Greater
        });
    }
    let trunc = f.abs().trunc() as u128;
    let by_int = signed_cmp(negative, magnitude, f < 0.0, trunc);
    if by_int != Ordering::Equal {
        return Some(by_int);
    }
    let frac = f - f.trunc();
    Some(if frac > 0.0 {
        Ordering::Less
    } else if frac < 0.0 {
        Ordering::Greater
    } else {
        Ordering::Equal
    })
}

impl Serialize for Priority {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match *self {
            Priority::Int {
                negative,
                magnitude,
            } => {
                if let Ok(m) = i64::try_from(magnitude) {
                    serializer.serialize_i64(if negative { -m } else { m })
                } else if let (false, Ok(m)) = (negative, u64::try_from(magnitude)) {
                    serializer.serialize_u64(m)
                } else {
                    let f = magnitude as f64;
                    serializer.serialize_f64(if negative { -f } else { f })
                }
            }
            Priority::Float(f) => serializer.serialize_f64(f),
        }
    }
}

impl<'de> Deserialize<'de> for Priority {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Number::deserialize(deserializer).map(|n| Priority::from_number(&n))
    }
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

    #[test]
    fn priorities_compare_exactly() {
        let big = Priority::from_u128(u128::MAX);
        let big_minus = Priority::from_u128(u128::MAX - 1);
        assert_eq!(big_minus.compare(&big), Some(Ordering::Less));
        assert_eq!(
            Priority::NEG_INFINITY.compare(&Priority::from_i64(i64::MIN)),
            Some(Ordering::Less)
        );
        assert_eq!(
            Priority::from_i64(1).compare(&Priority::Float(1.5)),
            Some(Ordering::Less)
        );
        assert_eq!(
            Priority::from_i64(-1).compare(&Priority::Float(-1.5)),
            Some(Ordering::Greater)
        );
        assert_eq!(
            Priority::from_i64(2).compare(&Priority::Float(2.0)),
            Some(Ordering::Equal)
        );
        assert_eq!(
            Priority::from_i64(0).compare(&Priority::Float(-0.0)),
            Some(Ordering::Equal)
        );
        assert_eq!(
            Priority::Float(f64::INFINITY).compare(&big),
            Some(Ordering::Greater)
        );
        assert_eq!(Priority::Float(f64::NAN).compare(&big), None);
    }

    #[test]
    fn unknown_rule_type_parses() {
        let rule: SegmentRule =
            serde_json::from_str(r#"{"type":"SOME","conditions":null}"#).unwrap();
        assert_eq!(rule.rule_type, RuleType::Unknown);
        assert!(rule.conditions.is_empty());
    }
}
