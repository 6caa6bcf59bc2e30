//! The flag config data model (spec §2) and its lenient-enough decoder.
//!
//! Decoding rules (spec §2.1): unknown keys ignored; required fields missing or null are errors;
//! string fields also accept unquoted number/boolean tokens and keep their raw text (kotlinx lenient);
//! `range` elements accept numbers or quoted numbers read by the kotlinx integer reader (int32 only);
//! `values` and `dependencies` are deduped keeping first-seen order; duplicate object keys: last wins.
//! Free-form fields (variant value/payload, metadata) are read with the raw-number reader, so `1e3`
//! in metadata is `Int(1000)` exactly as upstream.

use indexmap::IndexMap;
use serde_json::value::RawValue;

use super::java;
use super::json::{self, Node};
use super::value::{Map, Value};

/// Why a flags document could not be decoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FlagParseError {
    /// The document is not valid JSON.
    #[error("invalid flags JSON: {0}")]
    Json(String),
    /// The document is not a JSON array.
    #[error("flags document must be a JSON array")]
    NotArray,
    /// A flag does not match the model.
    #[error("flag #{index}: {path}: {message}")]
    Field {
        /// Index of the flag in the array.
        index: usize,
        /// Where in the flag.
        path: String,
        /// What is wrong.
        message: &'static str,
    },
}

/// One flag config (spec §2.2), with the original JSON kept for re-serving.
#[derive(Debug, Clone)]
pub struct Flag {
    /// Flag key.
    pub key: String,
    /// Variants by map key (the variant's own `key` may differ).
    pub variants: IndexMap<String, Variant>,
    /// Segments, evaluated in order.
    pub segments: Vec<Segment>,
    /// Dependency keys (deduped, ordered); empty when absent.
    pub dependencies: Vec<String>,
    /// Flag metadata.
    pub metadata: Option<Map>,
    raw: Box<RawValue>,
}

impl Flag {
    /// The flag key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The original JSON text of this flag, byte for byte as received.
    pub fn raw_json(&self) -> &str {
        self.raw.get()
    }
}

/// A variant (spec §2.3).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Variant {
    /// Variant key as returned in results.
    pub key: String,
    /// Value (JSON null is `None`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// Payload (JSON null is `None`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    /// Metadata.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map>,
}

/// A segment (spec §2.4).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Segment {
    /// Optional bucketing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket: Option<Bucket>,
    /// OR of ANDs; `None` always matches, `[]` never.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<Vec<Condition>>>,
    /// Default variant key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Segment metadata.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map>,
}

/// A condition (spec §2.5).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Condition {
    /// Path into the target.
    pub selector: Vec<String>,
    /// Operator string (exact, case-sensitive).
    pub op: String,
    /// Filter values (deduped, ordered).
    pub values: Vec<String>,
}

/// Bucketing config (spec §2.6).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Bucket {
    /// Path to the bucketing value.
    pub selector: Vec<String>,
    /// Hash salt.
    pub salt: String,
    /// Allocations in order.
    pub allocations: Vec<Allocation>,
}

/// An allocation (spec §2.7).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Allocation {
    /// `[start, end)` over `hash % 100`; fewer than 2 elements is a runtime error when reached.
    pub range: Vec<i32>,
    /// Distributions in order.
    pub distributions: Vec<Distribution>,
}

/// A distribution (spec §2.8).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Distribution {
    /// Variant map key.
    pub variant: String,
    /// `[start, end)` over `hash / 100`.
    pub range: Vec<i32>,
}

/// Parses a `/sdk/v2/flags` JSON array.
pub fn parse_flags(bytes: &[u8]) -> Result<Vec<Flag>, FlagParseError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|b| *b != b'[') {
        return Err(FlagParseError::NotArray);
    }
    let raws: Vec<Box<RawValue>> =
        serde_json::from_slice(bytes).map_err(|e| FlagParseError::Json(e.to_string()))?;
    raws.into_iter()
        .enumerate()
        .map(|(i, raw)| parse_one(i, raw))
        .collect()
}

/// Parses one flag from its JSON text.
pub fn parse_flag(text: &str) -> Result<Flag, FlagParseError> {
    let raw =
        RawValue::from_string(text.to_string()).map_err(|e| FlagParseError::Json(e.to_string()))?;
    parse_one(0, raw)
}

fn parse_one(index: usize, raw: Box<RawValue>) -> Result<Flag, FlagParseError> {
    let node =
        json::parse(raw.get().as_bytes()).map_err(|e| FlagParseError::Json(e.to_string()))?;
    let d = Decoder { index };
    d.object(&node, "")?;
    let variants_node = d.required(&node, "variants", "")?;
    let mut variants = IndexMap::new();
    let Node::Object(entries) = variants_node else {
        return Err(d.err("variants", "expected an object"));
    };
    for (k, v) in entries {
        variants.insert(k.to_string(), d.variant(v, &format!("variants.{k}"))?);
    }
    let segments = d
        .array(d.required(&node, "segments", "")?, "segments")?
        .iter()
        .enumerate()
        .map(|(i, s)| d.segment(s, &format!("segments[{i}]")))
        .collect::<Result<_, _>>()?;
    Ok(Flag {
        key: d.string(d.required(&node, "key", "")?, "key")?,
        variants,
        segments,
        dependencies: match d.optional(&node, "dependencies") {
            Some(n) => d.string_set(n, "dependencies")?,
            None => Vec::new(),
        },
        metadata: d.metadata(&node, "metadata")?,
        raw,
    })
}

struct Decoder {
    index: usize,
}

impl Decoder {
    fn err(&self, path: &str, message: &'static str) -> FlagParseError {
        FlagParseError::Field {
            index: self.index,
            path: path.to_string(),
            message,
        }
    }

    fn object<'n, 'a>(
        &self,
        n: &'n Node<'a>,
        path: &str,
    ) -> Result<&'n [(std::borrow::Cow<'a, str>, Node<'a>)], FlagParseError> {
        match n {
            Node::Object(e) => Ok(e),
            _ => Err(self.err(path, "expected an object")),
        }
    }

    fn array<'n, 'a>(&self, n: &'n Node<'a>, path: &str) -> Result<&'n [Node<'a>], FlagParseError> {
        match n {
            Node::Array(a) => Ok(a),
            _ => Err(self.err(path, "expected an array")),
        }
    }

    fn optional<'n, 'a>(&self, n: &'n Node<'a>, key: &str) -> Option<&'n Node<'a>> {
        n.get(key).filter(|v| !matches!(v, Node::Null))
    }

    fn required<'n, 'a>(
        &self,
        n: &'n Node<'a>,
        key: &str,
        path: &str,
    ) -> Result<&'n Node<'a>, FlagParseError> {
        self.object(n, path)?;
        self.optional(n, key)
            .ok_or_else(|| self.err(&format!("{path}.{key}"), "required field missing or null"))
    }

    /// A string field; lenient: unquoted numbers and booleans keep their raw text.
    fn string(&self, n: &Node<'_>, path: &str) -> Result<String, FlagParseError> {
        match n {
            Node::Str(s) => Ok(s.to_string()),
            Node::Number(t) => Ok(t.to_string()),
            Node::Bool(b) => Ok(b.to_string()),
            _ => Err(self.err(path, "expected a string")),
        }
    }

    fn string_list(&self, n: &Node<'_>, path: &str) -> Result<Vec<String>, FlagParseError> {
        self.array(n, path)?
            .iter()
            .map(|e| self.string(e, path))
            .collect()
    }

    fn string_set(&self, n: &Node<'_>, path: &str) -> Result<Vec<String>, FlagParseError> {
        let mut out: Vec<String> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for s in self.string_list(n, path)? {
            if seen.insert(s.clone()) {
                out.push(s);
            }
        }
        Ok(out)
    }

    fn int_list(&self, n: &Node<'_>, path: &str) -> Result<Vec<i32>, FlagParseError> {
        self.array(n, path)?
            .iter()
            .map(|e| {
                let text: &str = match e {
                    Node::Number(t) => t,
                    Node::Str(s) => s,
                    _ => return Err(self.err(path, "expected an integer")),
                };
                java::kx_parse_long(text)
                    .and_then(|v| i32::try_from(v).ok())
                    .ok_or_else(|| self.err(path, "expected an int32"))
            })
            .collect()
    }

    fn free(&self, n: Option<&Node<'_>>, path: &str) -> Result<Option<Value>, FlagParseError> {
        match n {
            None => Ok(None),
            Some(n) => Value::from_node(n)
                .map(Some)
                .map_err(|_| self.err(path, "invalid number")),
        }
    }

    fn metadata(&self, n: &Node<'_>, key: &str) -> Result<Option<Map>, FlagParseError> {
        match self.free(self.optional(n, key), key)? {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(_) => Err(self.err(key, "expected an object")),
        }
    }

    fn variant(&self, n: &Node<'_>, path: &str) -> Result<Variant, FlagParseError> {
        Ok(Variant {
            key: self.string(self.required(n, "key", path)?, path)?,
            value: self.free(self.optional(n, "value"), path)?,
            payload: self.free(self.optional(n, "payload"), path)?,
            metadata: self.metadata(n, "metadata")?,
        })
    }

    fn segment(&self, n: &Node<'_>, path: &str) -> Result<Segment, FlagParseError> {
        self.object(n, path)?;
        let conditions = match self.optional(n, "conditions") {
            None => None,
            Some(c) => Some(
                self.array(c, path)?
                    .iter()
                    .map(|group| {
                        self.array(group, path)?
                            .iter()
                            .map(|c| self.condition(c, path))
                            .collect()
                    })
                    .collect::<Result<_, _>>()?,
            ),
        };
        Ok(Segment {
            bucket: match self.optional(n, "bucket") {
                None => None,
                Some(b) => Some(self.bucket(b, path)?),
            },
            conditions,
            variant: match self.optional(n, "variant") {
                None => None,
                Some(v) => Some(self.string(v, path)?),
            },
            metadata: self.metadata(n, "metadata")?,
        })
    }

    fn condition(&self, n: &Node<'_>, path: &str) -> Result<Condition, FlagParseError> {
        Ok(Condition {
            selector: self.string_list(self.required(n, "selector", path)?, path)?,
            op: self.string(self.required(n, "op", path)?, path)?,
            values: self.string_set(self.required(n, "values", path)?, path)?,
        })
    }

    fn bucket(&self, n: &Node<'_>, path: &str) -> Result<Bucket, FlagParseError> {
        let allocations = self
            .array(self.required(n, "allocations", path)?, path)?
            .iter()
            .map(|a| {
                let distributions = self
                    .array(self.required(a, "distributions", path)?, path)?
                    .iter()
                    .map(|d| {
                        Ok(Distribution {
                            variant: self.string(self.required(d, "variant", path)?, path)?,
                            range: self.int_list(self.required(d, "range", path)?, path)?,
                        })
                    })
                    .collect::<Result<_, FlagParseError>>()?;
                Ok(Allocation {
                    range: self.int_list(self.required(a, "range", path)?, path)?,
                    distributions,
                })
            })
            .collect::<Result<_, FlagParseError>>()?;
        Ok(Bucket {
            selector: self.string_list(self.required(n, "selector", path)?, path)?,
            salt: self.string(self.required(n, "salt", path)?, path)?,
            allocations,
        })
    }
}
