//! The engine's dynamic value (spec §3): what contexts, variant values/payloads and metadata become.

use std::borrow::Cow;

use indexmap::IndexMap;

use super::java;
use super::json::{self, Node};

pub use super::json::JsonError;

/// The map inside [`Value::Object`]: insertion-ordered, keys hashed with [`MapHasher`].
///
/// Why not `IndexMap`'s default SipHash: every request parses the user into these maps (one
/// hash per key) and looks keys up while building the context, and SipHash was ~9% of a
/// vardata request's instructions. Order, equality and output are the same with any hasher.
pub type Map = IndexMap<String, Value, MapHasher>;

/// The hasher of [`Map`]: foldhash, randomly seeded (a process-wide random seed plus a
/// per-map seed), so keys chosen by clients cannot be aimed at one bucket ahead of time.
pub type MapHasher = foldhash::fast::RandomState;

/// An empty [`Map`] with room for `capacity` entries (`IndexMap::with_capacity` exists only for
/// the default hasher).
pub fn map_with_capacity(capacity: usize) -> Map {
    Map::with_capacity_and_hasher(capacity, MapHasher::default())
}

/// A free-form JSON value with Kotlin's number kinds (`Int` covers int32 and int64, same string form).
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    /// JSON null (kept inside objects and arrays).
    #[default]
    Null,
    /// A boolean.
    Bool(bool),
    /// An integral number classified by the kotlinx integer reader (`1e3` is `Int(1000)`).
    Int(i64),
    /// Any other number; printed with Java `Double.toString`.
    Double(f64),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<Value>),
    /// An insertion-ordered object (duplicate keys: last value wins, first position kept).
    Object(Map),
}

/// Classifies a raw number token the way kotlinx does (spec §3); `None` means "not a number".
pub fn classify_number(text: &str) -> Option<Value> {
    if let Some(i) = java::kx_parse_long(text) {
        return Some(Value::Int(i));
    }
    java::parse_double(text).map(Value::Double)
}

impl Value {
    /// Parses JSON text, classifying number tokens from their raw text exactly as spec §3
    /// (`1e3` → `Int(1000)`, `10e-1` → `Int(1)`, `13.0` → `Double`, `9223372036854775808` → `Double`,
    /// and the kotlinx 20-digit wrap quirk). Nesting deeper than 128 levels is rejected.
    ///
    /// Uses the crate's own small reader rather than serde_json: serde_json only exposes raw number
    /// text through its global `arbitrary_precision` feature, which would break untagged/figment
    /// deserialisation elsewhere in the crate.
    pub fn from_json_slice(bytes: &[u8]) -> Result<Value, JsonError> {
        json::parse_value(bytes)
    }

    /// Converts a raw-number tree into a value (numbers classified per spec §3).
    pub(crate) fn from_node(node: &Node<'_>) -> Result<Value, JsonError> {
        Ok(match node {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(*b),
            Node::Number(t) => classify_number(t).ok_or(JsonError {
                offset: 0,
                message: "invalid number",
            })?,
            Node::Str(s) => Value::String(s.to_string()),
            Node::Array(items) => Value::Array(
                items
                    .iter()
                    .map(Value::from_node)
                    .collect::<Result<_, _>>()?,
            ),
            Node::Object(entries) => {
                let mut map = map_with_capacity(entries.len());
                for (k, v) in entries {
                    map.insert(k.to_string(), Value::from_node(v)?);
                }
                Value::Object(map)
            }
        })
    }

    /// Writes compact JSON (spec §4.3). Non-finite doubles (unreachable from JSON input) are written
    /// as `null` instead of failing, because this method cannot return an error.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            Value::Null => out.extend_from_slice(b"null"),
            Value::Bool(true) => out.extend_from_slice(b"true"),
            Value::Bool(false) => out.extend_from_slice(b"false"),
            Value::Int(i) => out.extend_from_slice(i.to_string().as_bytes()),
            Value::Double(d) if d.is_finite() => {
                out.extend_from_slice(java::double_to_string(*d).as_bytes())
            }
            Value::Double(_) => out.extend_from_slice(b"null"),
            Value::String(s) => write_json_string(s, out),
            Value::Array(items) => {
                out.push(b'[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    v.write_json(out);
                }
                out.push(b']');
            }
            Value::Object(map) => write_json_object(map, out),
        }
    }

    /// Compact JSON text (spec §4.3).
    pub fn to_json_string(&self) -> String {
        let mut out = Vec::new();
        self.write_json(&mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// Object lookup helper: `None` for missing keys and non-objects.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(map) => map.get(key),
            _ => None,
        }
    }

    /// True for `Value::Null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}

/// Writes an object as compact JSON (spec §4.3).
pub fn write_json_object(map: &Map, out: &mut Vec<u8>) {
    out.push(b'{');
    for (i, (k, v)) in map.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json_string(k, out);
        out.push(b':');
        v.write_json(out);
    }
    out.push(b'}');
}

/// Writes a JSON string with kotlinx escaping: only `"`, `\` and U+0000..U+001F (lowercase hex).
pub fn write_json_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    escape_json_into(s, out);
    out.push(b'"');
}

/// Appends the JSON escape of `text` without quotes: `"`, `\` and U+0000..U+001F, the rules of
/// kotlinx and serde_json alike (so the bytes equal `serde_json::to_string`'s).
pub fn escape_json_into(text: &str, out: &mut Vec<u8>) {
    let bytes = text.as_bytes();
    // Almost every string needs no escape: one branch-free (vectorisable) scan, one copy.
    let needs_escape = bytes.iter().fold(false, |any, &b| {
        any | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if !needs_escape {
        out.extend_from_slice(bytes);
        return;
    }
    let mut start = 0;
    for (i, &c) in bytes.iter().enumerate() {
        let esc: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if esc.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(c >> 4)]);
            out.push(HEX[usize::from(c & 0xf)]);
        } else {
            out.extend_from_slice(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// `coerceString` (spec §4.1): `None` for null; objects/arrays become compact JSON.
pub fn coerce_string(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(Cow::Borrowed(s.as_str())),
        Value::Bool(true) => Some(Cow::Borrowed("true")),
        Value::Bool(false) => Some(Cow::Borrowed("false")),
        Value::Int(i) => Some(Cow::Owned(i.to_string())),
        Value::Double(d) => Some(Cow::Owned(java::double_to_string(*d))),
        Value::Array(_) | Value::Object(_) => Some(Cow::Owned(v.to_json_string())),
    }
}

/// `coerceStringList` (spec §4.2) for a non-null value: `None` means "not a list".
/// The result is deduped in first-seen order; nulls are dropped.
pub fn coerce_string_list(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::Array(items) => Some(strings_of(items)),
        Value::String(s) => parse_string_list(s),
        _ => None,
    }
}

/// The string branch of `coerceStringList`: `None` unless `s` starts with `[` and is one JSON array
/// (kotlinx lenient syntax: unquoted tokens are classified per spec §3, unknown words become null).
pub fn parse_string_list(s: &str) -> Option<Vec<String>> {
    if !s.starts_with('[') {
        return None;
    }
    let Node::Array(items) = json::parse_lenient(s.as_bytes()).ok()? else {
        return None;
    };
    let values: Vec<Value> = items.iter().map(lenient_value).collect();
    Some(strings_of(&values))
}

/// Converts a lenient tree: unquoted tokens are classified as kotlinx does (spec §3 steps 1–6).
fn lenient_value(node: &Node<'_>) -> Value {
    match node {
        Node::Number(t) => {
            if t.eq_ignore_ascii_case("true") {
                Value::Bool(true)
            } else if t.eq_ignore_ascii_case("false") {
                Value::Bool(false)
            } else {
                classify_number(t).unwrap_or(Value::Null)
            }
        }
        Node::Array(items) => Value::Array(items.iter().map(lenient_value).collect()),
        Node::Object(entries) => {
            let mut map = map_with_capacity(entries.len());
            for (k, v) in entries {
                map.insert(k.to_string(), lenient_value(v));
            }
            Value::Object(map)
        }
        other => Value::from_node(other).unwrap_or(Value::Null),
    }
}

/// Coerces elements to strings, dropping nulls and duplicates (first-seen order kept).
fn strings_of(items: &[Value]) -> Vec<String> {
    coerced_strings(items)
        .into_iter()
        .map(Cow::into_owned)
        .collect()
}

/// [`coerce_string_list`] of an array, borrowing the elements that are strings.
pub(crate) fn coerced_strings(items: &[Value]) -> Vec<Cow<'_, str>> {
    let mut out: Vec<Cow<'_, str>> = Vec::with_capacity(items.len());
    let mut seen: Option<std::collections::HashSet<Cow<'_, str>>> = None;
    for v in items {
        let Some(s) = coerce_string(v) else {
            continue;
        };
        let dup = match &seen {
            Some(set) => set.contains(s.as_ref()),
            None => out.contains(&s),
        };
        if dup {
            continue;
        }
        if let Some(set) = &mut seen {
            set.insert(s.clone());
        } else if out.len() >= 16 {
            let mut set: std::collections::HashSet<Cow<'_, str>> = out.iter().cloned().collect();
            set.insert(s.clone());
            seen = Some(set);
        }
        out.push(s);
    }
    out
}

impl serde::Serialize for Value {
    /// Serialises with the natural serde data model. Doubles go through `serialize_f64`, so a
    /// serde_json caller sees Rust float text (`1e20`) rather than Java text; use
    /// [`Value::write_json`] for the exact engine form.
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self {
            Value::Null => ser.serialize_unit(),
            Value::Bool(b) => ser.serialize_bool(*b),
            Value::Int(i) => ser.serialize_i64(*i),
            Value::Double(d) => ser.serialize_f64(*d),
            Value::String(s) => ser.serialize_str(s),
            Value::Array(items) => {
                let mut seq = ser.serialize_seq(Some(items.len()))?;
                for v in items {
                    seq.serialize_element(v)?;
                }
                seq.end()
            }
            Value::Object(map) => {
                let mut m = ser.serialize_map(Some(map.len()))?;
                for (k, v) in map {
                    m.serialize_entry(k, v)?;
                }
                m.end()
            }
        }
    }
}

impl From<serde_json::Value> for Value {
    /// Lossy for number spelling: serde_json has already lost the raw text, so `1e3` arrives as the
    /// float 1000.0 and becomes `Double(1000.0)` (the engine would have made it `Int(1000)`), and
    /// `13.0` arrives as a float and stays a `Double`. Integers that fit i64 become `Int`; u64 above
    /// i64::MAX becomes `Double`. Prefer [`Value::from_json_slice`] when you have the text.
    fn from(v: serde_json::Value) -> Self {
        match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(b),
            serde_json::Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Value::Int(i)
                } else {
                    Value::Double(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            serde_json::Value::String(s) => Value::String(s),
            serde_json::Value::Array(a) => Value::Array(a.into_iter().map(Value::from).collect()),
            serde_json::Value::Object(o) => {
                Value::Object(o.into_iter().map(|(k, v)| (k, Value::from(v))).collect())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_classified_from_raw_text() {
        let v = Value::from_json_slice(br#"[1e3, 10e-1, 13.0, 9223372036854775808, -0, 1.5e1]"#)
            .unwrap();
        assert_eq!(
            v.to_json_string(),
            "[1000,1,13.0,9.223372036854776E18,0,15.0]"
        );
    }

    #[test]
    fn escapes_like_kotlinx() {
        let v = Value::String("a\"\\\n\u{1}/\u{7f}é".into());
        assert_eq!(v.to_json_string(), "\"a\\\"\\\\\\n\\u0001/\u{7f}é\"");
    }

    #[test]
    fn depth_limited() {
        let deep = "[".repeat(1000);
        assert!(Value::from_json_slice(deep.as_bytes()).is_err());
        let ok = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(Value::from_json_slice(ok.as_bytes()).is_ok());
    }

    /// The parser's entry stack is kept per thread: a document that fails half-way must not
    /// leave entries behind for the next one.
    #[test]
    fn a_failed_parse_leaves_nothing_for_the_next() {
        for bad in [r#"{"a":{"b":1,"c":[{"d":2,"#, r#"{"x":1,"y":{"z":tru}}"#] {
            assert!(Value::from_json_slice(bad.as_bytes()).is_err());
            let v = Value::from_json_slice(br#"{"e":{"f":3},"g":4}"#).unwrap();
            assert_eq!(v.to_json_string(), r#"{"e":{"f":3},"g":4}"#);
        }
        // A document with more entries than the kept capacity parses the same.
        let big: Vec<String> = (0..600).map(|i| format!(r#""k{i}":{i}"#)).collect();
        let doc = format!("{{{}}}", big.join(","));
        let v = Value::from_json_slice(doc.as_bytes()).unwrap();
        assert_eq!(v.to_json_string(), doc);
        assert_eq!(
            Value::from_json_slice(br#"{"h":[]}"#)
                .unwrap()
                .to_json_string(),
            r#"{"h":[]}"#
        );
    }

    #[test]
    fn duplicate_keys_last_wins_first_position() {
        let v = Value::from_json_slice(br#"{"a":1,"b":2,"a":3}"#).unwrap();
        assert_eq!(v.to_json_string(), r#"{"a":3,"b":2}"#);
    }

    /// The one-pass reader must agree with the tree reader (what `from_json_slice` used to do)
    /// on values and on which inputs are rejected.
    #[test]
    fn direct_parse_agrees_with_tree_parse() {
        let docs = [
            r#"{"a":1,"b":[1e3,-0,13.0,"x\u0041\n"],"c":{"d":null,"e":true,"f":false},"a":[]}"#,
            r#"[[],{},[{}],{"":""},"\ud83d\ude00",9223372036854775808,1.5E-3]"#,
            r#"  {"user":{"user_id":"u","groups":{"org":["acme"]}}}  "#,
            r#""plain""#,
            "12345678901234567890",
            r#"{"a":1,}"#,
            r#"{"a" 1}"#,
            r#"[1,]"#,
            r#"{a:1}"#,
            r#"[1.2.3]"#,
            r#"[--1]"#,
            "[1] x",
            r#"{"k":"\x"}"#,
            "",
            "nul",
            "\"\u{1}\"",
        ];
        for doc in docs {
            let tree = json::parse(doc.as_bytes()).and_then(|n| Value::from_node(&n));
            let direct = Value::from_json_slice(doc.as_bytes());
            assert_eq!(tree.is_ok(), direct.is_ok(), "{doc}");
            if let (Ok(a), Ok(b)) = (tree, direct) {
                assert_eq!(a.to_json_string(), b.to_json_string(), "{doc}");
                assert_eq!(a, b, "{doc}");
            }
        }
    }

    #[test]
    fn string_list() {
        let l = |s: &str| coerce_string_list(&Value::String(s.into()));
        assert_eq!(l("[1.50]"), Some(vec!["1.5".to_string()]));
        assert_eq!(l("[null,\"a\"]"), Some(vec!["a".to_string()]));
        assert_eq!(l("[\"a\",]"), None);
        assert_eq!(l(" [1]"), None);
        assert_eq!(
            l("[a, \"b\", TRUE, NaN]"),
            Some(vec!["b".to_string(), "true".to_string(), "NaN".to_string()])
        );
        let many: Vec<String> = (0..40).map(|i| (i % 20).to_string()).collect();
        let arr = Value::Array(many.iter().map(|s| Value::String(s.clone())).collect());
        assert_eq!(coerce_string_list(&arr).map(|v| v.len()), Some(20));
    }
}
