//! The `[Experiment] Assignment` event (spec §7.5 canonical key, §7.6 content), built off the
//! request path by the worker.
//!
//! Differences from the reference, both documented bugs there: `groups` is sent as
//! `{groupType: groupName}` (the shape Amplitude's HTTP API expects), and an assignment with
//! neither `user_id` nor `device_id` is reported as [`EventError::NoIdentity`] instead of being
//! silently dropped by the analytics SDK.

use std::borrow::Cow;
use std::cmp::Ordering;

use xxhash_rust::xxh3::xxh3_128;

use super::Assignment;
use crate::amplitude::engine::{coerce_string, escape_json_into, EvaluatedVariant, Value};

/// The event type Amplitude experiment analysis counts.
pub const EVENT_TYPE: &str = "[Experiment] Assignment";
/// One day in milliseconds: the dedup window and the `insert_id` day bucket.
pub const DAY_MILLIS: i64 = 86_400_000;
/// `library` of every event, so Amplitude shows where the events come from.
pub const LIBRARY: &str = concat!("evaluation-proxy/", env!("CARGO_PKG_VERSION"));

/// Why an assignment cannot become an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// Amplitude needs a user_id or a device_id; the reference lost these silently.
    #[error("the user has neither a user_id nor a device_id")]
    NoIdentity,
}

/// Kotlin renders a null in a string template as `null`.
fn or_null(value: Option<&str>) -> &str {
    value.unwrap_or("null")
}

/// The user's `user_id` and `device_id` (rendered like Kotlin's `toString()`), looked up once
/// per assignment and shared by the identity check, the dedup digest and the event.
#[derive(Debug, Clone, Default)]
pub struct Identity<'a> {
    /// `context.user.user_id`, `None` when missing or null.
    pub user_id: Option<Cow<'a, str>>,
    /// `context.user.device_id`, `None` when missing or null.
    pub device_id: Option<Cow<'a, str>>,
}

impl<'a> Identity<'a> {
    /// Looks both ids up in `context.user` (one lookup of `user`).
    pub fn of(context: &'a Value) -> Self {
        let Some(user) = context.get("user") else {
            return Self::default();
        };
        Self {
            user_id: user.get("user_id").and_then(coerce_string),
            device_id: user.get("device_id").and_then(coerce_string),
        }
    }

    /// Whether Amplitude accepts the user: a non-blank `user_id` or `device_id`.
    pub fn is_present(&self) -> bool {
        let present =
            |id: &Option<Cow<'_, str>>| id.as_deref().is_some_and(|v| !v.trim().is_empty());
        present(&self.user_id) || present(&self.device_id)
    }

    fn user_id(&self) -> Option<&str> {
        self.user_id.as_deref()
    }

    fn device_id(&self) -> Option<&str> {
        self.device_id.as_deref()
    }
}

/// Kotlin's `String.compareTo`: by UTF-16 code units (differs from byte order only above
/// U+FFFF).
fn java_order(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

/// The results sorted by flag key, as the canonical key lists them. Byte order equals UTF-16
/// order unless a key has a character from U+E000 up (UTF-8 lead byte 0xEE or more), so the
/// ten-times-cheaper byte comparison is used whenever no key has one.
fn sorted_results(assignment: &Assignment) -> Vec<(&str, &EvaluatedVariant)> {
    let mut sorted: Vec<(&str, &EvaluatedVariant)> = assignment.results.iter().collect();
    let exotic = sorted
        .iter()
        .any(|(key, _)| !key.is_ascii() && key.bytes().any(|b| b >= 0xEE));
    if exotic {
        sorted.sort_by(|a, b| java_order(a.0, b.0));
    } else {
        sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
    }
    sorted
}

/// The canonical dedup key of spec §7.5:
/// `"{userId?.trim()} {deviceId?.trim()} "` then `"{flagKey.trim()} {variant.trim()} "` per flag
/// in key order, nulls rendered as `null`. The worker never builds it: it only needs its
/// [`java_hash`], which [`canonical_hash`] computes without the string.
pub fn canonical_key(assignment: &Assignment) -> String {
    let identity = Identity::of(&assignment.context);
    let mut key = String::with_capacity(64 + 32 * assignment.results.len());
    key.push_str(or_null(identity.user_id().map(str::trim)));
    key.push(' ');
    key.push_str(or_null(identity.device_id().map(str::trim)));
    key.push(' ');
    for (flag, variant) in sorted_results(assignment) {
        key.push_str(flag.trim());
        key.push(' ');
        key.push_str(variant.key().trim());
        key.push(' ');
    }
    key
}

/// Java's `String.hashCode()` continued over `text` from the running hash `h`.
fn java_hash_from(h: i32, text: &str) -> i32 {
    if text.is_ascii() {
        // ASCII bytes are their own UTF-16 code units.
        text.bytes()
            .fold(h, |h, b| h.wrapping_mul(31).wrapping_add(i32::from(b)))
    } else {
        text.encode_utf16().fold(h, |h, unit| {
            h.wrapping_mul(31).wrapping_add(i32::from(unit))
        })
    }
}

/// `java_hash(canonical_key(assignment))`, computed piece by piece without building the key.
pub fn canonical_hash(assignment: &Assignment, identity: &Identity<'_>) -> i32 {
    let space = |h: i32| h.wrapping_mul(31).wrapping_add(i32::from(b' '));
    let mut h = java_hash_from(0, or_null(identity.user_id().map(str::trim)));
    h = space(h);
    h = java_hash_from(h, or_null(identity.device_id().map(str::trim)));
    h = space(h);
    for (flag, variant) in sorted_results(assignment) {
        h = space(java_hash_from(h, flag.trim()));
        h = space(java_hash_from(h, variant.key().trim()));
    }
    h
}

/// The 128-bit dedup identity of an assignment under project `api_key`: the canonical key's
/// content (trimmed ids, nulls as `null`, each `(flag, variant)` pair) without building it.
/// Pairs are hashed one by one with XXH3-128 (a fixed algorithm, so every replica and release
/// agrees) and summed, so their order does not matter and nothing is sorted. The pair hashes
/// are computed once per config version by the engine ([`crate::amplitude::engine::flag_variant_digest`]): this runs for
/// every assignment, repeats included, so per request it is one hash and a sum.
pub fn dedup_digest(api_key: &str, assignment: &Assignment) -> u128 {
    let identity = Identity::of(&assignment.context);
    digest_with(api_key, assignment, &identity, &mut Vec::with_capacity(128))
}

/// [`dedup_digest`] with the ids already looked up and a scratch buffer the caller reuses.
pub fn digest_with(
    api_key: &str,
    assignment: &Assignment,
    identity: &Identity<'_>,
    buffer: &mut Vec<u8>,
) -> u128 {
    buffer.clear();
    for part in [
        api_key,
        or_null(identity.user_id().map(str::trim)),
        or_null(identity.device_id().map(str::trim)),
    ] {
        buffer.extend_from_slice(part.as_bytes());
        buffer.push(0);
    }
    let digest = xxh3_128(buffer);
    assignment
        .results
        .flag_variant_digests()
        .fold(digest, u128::wrapping_add)
}

/// Java's `String.hashCode()`: `h = 31 * h + c` over UTF-16 code units, wrapping at 32 bits.
pub fn java_hash(text: &str) -> i32 {
    java_hash_from(0, text)
}

/// `"{userId} {deviceId} {javaHash(canonicalKey)} {floor(timestamp / day)}"`: identical
/// assignments on the same UTC day share it, so Amplitude dedups them too.
pub fn insert_id(assignment: &Assignment, canonical_key: &str) -> String {
    let identity = Identity::of(&assignment.context);
    format!(
        "{} {} {} {}",
        or_null(identity.user_id()),
        or_null(identity.device_id()),
        java_hash(canonical_key),
        assignment.timestamp_millis.div_euclid(DAY_MILLIS)
    )
}

/// Whether the user has an id Amplitude accepts (a non-blank `user_id` or `device_id`).
pub fn has_identity(assignment: &Assignment) -> bool {
    Identity::of(&assignment.context).is_present()
}

/// Appends `"text"`.
fn string_into(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    escape_json_into(text, out);
    out.push(b'"');
}

/// Appends the decimal digits of `n`.
fn int_into(out: &mut Vec<u8>, n: i64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n.unsigned_abs();
    loop {
        at -= 1;
        // `rest % 10` is below 10.
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if n < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&digits[at..]);
}

/// Appends the escaped `coerceString` of `value`, or `null` (spec §7.6 renders a missing
/// metadata value as `null`); integers and strings without an intermediate allocation.
fn coerced_into(out: &mut Vec<u8>, value: Option<&Value>) {
    match value {
        None | Some(Value::Null) => out.extend_from_slice(b"null"),
        Some(Value::String(text)) => escape_json_into(text, out),
        Some(Value::Int(n)) => int_into(out, *n),
        Some(other) => escape_json_into(or_null(coerce_string(other).as_deref()), out),
    }
}

/// The metadata fields an event uses, found in one pass over the variant's metadata.
#[derive(Default)]
struct EventMetadata<'a> {
    flag_version: Option<&'a Value>,
    segment_name: Option<&'a Value>,
    mutual_exclusion: bool,
    default: bool,
}

impl<'a> EventMetadata<'a> {
    fn of(variant: &'a EvaluatedVariant) -> Self {
        let mut found = Self::default();
        for (key, value) in variant.metadata().into_iter().flatten() {
            match key.as_str() {
                "flagVersion" => found.flag_version = Some(value),
                "segmentName" => found.segment_name = Some(value),
                "flagType" => {
                    found.mutual_exclusion =
                        coerce_string(value).as_deref() == Some("mutual-exclusion-group");
                }
                "default" => found.default = *value == Value::Bool(true),
                _ => {}
            }
        }
        found
    }
}

/// What every event containing one (flag, variant) result shares, built once per config
/// version ([`TableParts`]) instead of once per event.
#[derive(Debug)]
struct VariantPart {
    /// `"<flag>.variant":"<variant>","<flag>.details":"v<flagVersion> rule:<segmentName>"`.
    properties: Box<[u8]>,
    /// `"[Experiment] <flag>":"<variant>"` (`:"-"` when `unset`); empty for a mutual-exclusion
    /// group, which sets no user property.
    user_property: Box<[u8]>,
    /// Whether `user_property` goes to `$unset` (a default variant) rather than `$set`.
    unset: bool,
    /// [`java_hash`] of the canonical key's piece `"<flag.trim()> <variant.trim()> "`.
    key_hash: i32,
    /// 31 to the power of that piece's UTF-16 length (wrapping): appending the piece to a key
    /// hashed `h` gives `h * key_power + key_hash`.
    key_power: i32,
}

/// The assignment-event bytes and canonical-key hashes of one compiled config's results, built
/// once per config version (by [`EvaluationResults::event_parts`](crate::amplitude::engine::EvaluationResults::event_parts)),
/// so writing an event is copying these plus the user's own fields. Indexed like the engine's
/// result table: `ranks` by flag slot, `variants` by variant index.
#[derive(Debug, Default)]
pub struct TableParts {
    /// Per slot: the rank of its flag key in Java string order (the canonical key's order).
    ranks: Vec<u32>,
    /// Per result variant.
    variants: Vec<VariantPart>,
}

impl TableParts {
    /// Builds the parts of a result table: `keys` per slot, `variants` with the slot each
    /// belongs to in `variant_slots`.
    pub fn build(
        keys: &[Box<str>],
        variants: &[EvaluatedVariant],
        variant_slots: &[usize],
    ) -> Self {
        let mut order: Vec<usize> = (0..keys.len()).collect();
        order.sort_by(|&a, &b| java_order(&keys[a], &keys[b]));
        let mut ranks = vec![0u32; keys.len()];
        for (rank, &slot) in order.iter().enumerate() {
            ranks[slot] = u32::try_from(rank).unwrap_or(u32::MAX);
        }
        let variants = variants
            .iter()
            .zip(variant_slots)
            .map(|(variant, &slot)| {
                let flag = keys.get(slot).map_or("", |key| &**key);
                VariantPart::build(flag, variant)
            })
            .collect();
        Self { ranks, variants }
    }
}

impl VariantPart {
    fn build(flag: &str, variant: &EvaluatedVariant) -> Self {
        let metadata = EventMetadata::of(variant);
        let mut properties = Vec::with_capacity(2 * flag.len() + 64);
        properties.push(b'"');
        escape_json_into(flag, &mut properties);
        properties.extend_from_slice(b".variant\":");
        string_into(&mut properties, variant.key());
        properties.extend_from_slice(b",\"");
        escape_json_into(flag, &mut properties);
        properties.extend_from_slice(b".details\":\"v");
        coerced_into(&mut properties, metadata.flag_version);
        properties.extend_from_slice(b" rule:");
        coerced_into(&mut properties, metadata.segment_name);
        properties.push(b'"');
        let mut user_property = Vec::new();
        if !metadata.mutual_exclusion {
            let value = if metadata.default { "-" } else { variant.key() };
            user_property.extend_from_slice(b"\"[Experiment] ");
            escape_json_into(flag, &mut user_property);
            user_property.extend_from_slice(b"\":");
            string_into(&mut user_property, value);
        }
        let mut piece = String::with_capacity(flag.len() + variant.key().len() + 2);
        piece.push_str(flag.trim());
        piece.push(' ');
        piece.push_str(variant.key().trim());
        piece.push(' ');
        let key_power = piece
            .encode_utf16()
            .fold(1i32, |power, _| power.wrapping_mul(31));
        Self {
            properties: properties.into_boxed_slice(),
            user_property: user_property.into_boxed_slice(),
            unset: metadata.default,
            key_hash: java_hash(&piece),
            key_power,
        }
    }
}

/// `{"event_type":"[Experiment] Assignment","user_id":` ([`EVENT_TYPE`] needs no escaping).
const EVENT_HEAD: &[u8] = b"{\"event_type\":\"[Experiment] Assignment\",\"user_id\":";
/// `},"library":"evaluation-proxy/<version>"}` (the [`LIBRARY`] needs no escaping).
const EVENT_TAIL: &[u8] = concat!(
    "},\"library\":\"evaluation-proxy/",
    env!("CARGO_PKG_VERSION"),
    "\"}"
)
.as_bytes();

/// Serialises events straight to JSON bytes from the config's precomputed [`TableParts`]
/// (no `serde_json::Value` tree, no per-event escaping of flag data), reusing its scratch
/// buffer from one event to the next.
#[derive(Debug, Default)]
pub struct EventWriter {
    /// (flag rank, variant index) of each result, sorted for the canonical key's hash.
    order: Vec<(u32, usize)>,
    /// The size of the last event, to reserve room for the next one once.
    last_len: usize,
}

impl EventWriter {
    /// A writer with an empty scratch buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// The event JSON of an assignment (the bytes `serde_json::to_string(&build_event(..))`
    /// gives), with `identity` = [`Identity::of`] its context.
    pub fn write(
        &mut self,
        assignment: &Assignment,
        identity: &Identity<'_>,
    ) -> Result<Vec<u8>, EventError> {
        let mut out = Vec::new();
        self.write_into(&mut out, assignment, identity)?;
        Ok(out)
    }

    /// [`EventWriter::write`], appending to `out` (an upload body being built); nothing is
    /// appended on error.
    pub fn write_into(
        &mut self,
        out: &mut Vec<u8>,
        assignment: &Assignment,
        identity: &Identity<'_>,
    ) -> Result<(), EventError> {
        if !identity.is_present() {
            return Err(EventError::NoIdentity);
        }
        let (parts, entries) = assignment.results.event_parts();
        let start = out.len();
        out.reserve(self.last_len.max(256) + 64);
        out.extend_from_slice(EVENT_HEAD);
        Self::id_into(out, identity.user_id());
        out.extend_from_slice(b",\"device_id\":");
        Self::id_into(out, identity.device_id());
        out.extend_from_slice(b",\"time\":");
        int_into(out, assignment.timestamp_millis);
        out.extend_from_slice(b",\"insert_id\":\"");
        escape_json_into(or_null(identity.user_id()), out);
        out.push(b' ');
        escape_json_into(or_null(identity.device_id()), out);
        out.push(b' ');
        int_into(
            out,
            i64::from(self.canonical_hash(parts, entries, identity)),
        );
        out.push(b' ');
        int_into(out, assignment.timestamp_millis.div_euclid(DAY_MILLIS));
        out.extend_from_slice(b"\",\"event_properties\":{");
        let variants = || {
            entries
                .iter()
                .filter_map(|&(_, variant)| parts.variants.get(variant))
        };
        for (index, part) in variants().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            out.extend_from_slice(&part.properties);
        }
        for (head, unset) in [
            (&b"},\"user_properties\":{\"$set\":{"[..], false),
            (b"},\"$unset\":{", true),
        ] {
            out.extend_from_slice(head);
            let mut first = true;
            for part in variants().filter(|p| p.unset == unset && !p.user_property.is_empty()) {
                if !first {
                    out.push(b',');
                }
                first = false;
                out.extend_from_slice(&part.user_property);
            }
        }
        out.extend_from_slice(b"}},\"groups\":{");
        Self::groups_into(out, &assignment.context);
        out.extend_from_slice(EVENT_TAIL);
        self.last_len = out.len() - start;
        Ok(())
    }

    /// [`canonical_hash`] from the precomputed pieces: the results sorted by flag rank, each
    /// appending its piece's hash.
    fn canonical_hash(
        &mut self,
        parts: &TableParts,
        entries: &[(usize, usize)],
        identity: &Identity<'_>,
    ) -> i32 {
        let space = |h: i32| h.wrapping_mul(31).wrapping_add(i32::from(b' '));
        let mut h = java_hash_from(0, or_null(identity.user_id().map(str::trim)));
        h = space(h);
        h = java_hash_from(h, or_null(identity.device_id().map(str::trim)));
        h = space(h);
        self.order.clear();
        self.order.extend(
            entries
                .iter()
                .filter_map(|&(slot, variant)| Some((*parts.ranks.get(slot)?, variant))),
        );
        self.order.sort_unstable_by_key(|&(rank, _)| rank);
        for &(_, variant) in &self.order {
            if let Some(part) = parts.variants.get(variant) {
                h = h.wrapping_mul(part.key_power).wrapping_add(part.key_hash);
            }
        }
        h
    }

    fn id_into(out: &mut Vec<u8>, id: Option<&str>) {
        match id {
            Some(id) => string_into(out, id),
            None => out.extend_from_slice(b"null"),
        }
    }

    /// `{groupType: groupName}` from the context's groups (the fixed shape, see module docs).
    fn groups_into(out: &mut Vec<u8>, context: &Value) {
        let Some(Value::Object(by_type)) = context.get("groups") else {
            return;
        };
        let mut first = true;
        for (group_type, node) in by_type {
            if let Some(name) = node.get("group_name").and_then(coerce_string) {
                if !first {
                    out.push(b',');
                }
                first = false;
                string_into(out, group_type);
                out.push(b':');
                string_into(out, &name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use serde_json::{Map, Value as Json};

    use super::*;
    use crate::amplitude::engine::{parse_flags, CompiledFlags};

    /// The event as a JSON tree, checking that its `insert_id` hashes `canonical_key` and that
    /// its bytes equal those of the former tree-based builder ([`reference_event`]).
    fn build_event(assignment: &Assignment, canonical_key: &str) -> Result<Json, EventError> {
        let identity = Identity::of(&assignment.context);
        let bytes = EventWriter::new().write(assignment, &identity)?;
        let reference = reference_event(assignment, canonical_key);
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            serde_json::to_string(&reference).unwrap()
        );
        assert_eq!(
            canonical_hash(assignment, &identity),
            java_hash(canonical_key)
        );
        Ok(serde_json::from_slice(&bytes).unwrap())
    }

    /// `context.user.{field}` rendered like Kotlin's `toString()`; `None` when missing or null.
    fn user_field<'a>(context: &'a Value, field: &str) -> Option<Cow<'a, str>> {
        context.get("user")?.get(field).and_then(coerce_string)
    }

    fn metadata<'a>(variant: &'a EvaluatedVariant, key: &str) -> Option<&'a Value> {
        variant.metadata().and_then(|m| m.get(key))
    }

    /// The event built as a `serde_json::Value` tree, field by field: the implementation the
    /// writer replaced, kept as its oracle.
    fn reference_event(assignment: &Assignment, canonical_key: &str) -> Json {
        let id = |field| {
            user_field(&assignment.context, field)
                .map_or(Json::Null, |v| Json::String(v.into_owned()))
        };
        let details = |variant: &EvaluatedVariant| {
            let part = |key| metadata(variant, key).and_then(coerce_string);
            format!(
                "v{} rule:{}",
                or_null(part("flagVersion").as_deref()),
                or_null(part("segmentName").as_deref())
            )
        };
        let mut event_properties = Map::new();
        let mut set = Map::new();
        let mut unset = Map::new();
        for (flag, variant) in assignment.results.iter() {
            event_properties.insert(format!("{flag}.variant"), Json::from(variant.key()));
            event_properties.insert(format!("{flag}.details"), Json::String(details(variant)));
            let flag_type = metadata(variant, "flagType").and_then(coerce_string);
            if flag_type.as_deref() == Some("mutual-exclusion-group") {
                continue;
            }
            let property = format!("[Experiment] {flag}");
            if metadata(variant, "default") == Some(&Value::Bool(true)) {
                unset.insert(property, Json::from("-"));
            } else {
                set.insert(property, Json::from(variant.key()));
            }
        }
        let mut groups = Map::new();
        if let Some(Value::Object(by_type)) = assignment.context.get("groups") {
            for (group_type, node) in by_type {
                if let Some(name) = node.get("group_name").and_then(coerce_string) {
                    groups.insert(group_type.clone(), Json::String(name.into_owned()));
                }
            }
        }
        let mut user_properties = Map::new();
        user_properties.insert("$set".to_owned(), Json::Object(set));
        user_properties.insert("$unset".to_owned(), Json::Object(unset));
        let mut event = Map::new();
        event.insert("event_type".to_owned(), Json::from(EVENT_TYPE));
        event.insert("user_id".to_owned(), id("user_id"));
        event.insert("device_id".to_owned(), id("device_id"));
        event.insert("time".to_owned(), Json::from(assignment.timestamp_millis));
        event.insert(
            "insert_id".to_owned(),
            Json::String(insert_id(assignment, canonical_key)),
        );
        event.insert(
            "event_properties".to_owned(),
            Json::Object(event_properties),
        );
        event.insert("user_properties".to_owned(), Json::Object(user_properties));
        event.insert("groups".to_owned(), Json::Object(groups));
        event.insert("library".to_owned(), Json::from(LIBRARY));
        Json::Object(event)
    }

    /// Evaluates `flags` (a `/sdk/v2/flags` array) for `context`, so results carry the real
    /// metadata the engine merges.
    fn assignment(context: &str, flags: &str, timestamp_millis: i64) -> Assignment {
        let compiled = CompiledFlags::compile(parse_flags(flags.as_bytes()).unwrap());
        let context = Value::from_json_slice(context.as_bytes()).unwrap();
        let results = compiled.evaluate(&context, &[]).unwrap();
        Assignment {
            api_key: Arc::from("api-key"),
            context,
            results,
            timestamp_millis,
        }
    }

    /// A flag whose only segment assigns `variant`, with the given metadata.
    fn flag(key: &str, variant: &str, metadata: &str) -> String {
        format!(
            r#"{{"key":"{key}","metadata":{metadata},"segments":[{{"metadata":{{"segmentName":"All Other Users"}},"variant":"{variant}"}}],"variants":{{"{variant}":{{"key":"{variant}"}}}}}}"#
        )
    }

    /// Spec §10 vector: `flag-key-1 on`, `flag-key-2 off` (default) for user/device.
    fn spec_vector(ts: i64) -> Assignment {
        let flags = format!(
            "[{},{}]",
            flag("flag-key-2", "off", r#"{"flagVersion":1,"default":true}"#),
            flag("flag-key-1", "on", r#"{"flagVersion":1}"#),
        );
        assignment(
            r#"{"user":{"user_id":"user","device_id":"device"}}"#,
            &flags,
            ts,
        )
    }

    #[test]
    fn java_hash_matches_java() {
        // Values computed with java.lang.String#hashCode.
        assert_eq!(java_hash(""), 0);
        assert_eq!(java_hash("a"), 97);
        assert_eq!(java_hash("hello"), 99_162_322);
        assert_eq!(java_hash("polygenelubricants"), i32::MIN);
        // A supplementary character hashes as its two UTF-16 surrogates.
        assert_eq!(java_hash("😀"), 0xD83D * 31 + 0xDE00);
    }

    #[test]
    fn canonical_key_is_sorted_trimmed_and_renders_nulls() {
        let a = spec_vector(0);
        assert_eq!(
            canonical_key(&a),
            "user device flag-key-1 on flag-key-2 off "
        );
        let flags = format!("[{}]", flag(" f ", "v", "{}"));
        let a = assignment(r#"{"user":{"user_id":" u "}}"#, &flags, 0);
        assert_eq!(canonical_key(&a), "u null f v ");
        let a = assignment(r#"{"user":{"user_id":"u"}}"#, "[]", 0);
        assert_eq!(
            canonical_key(&a),
            "u null ",
            "empty results are tracked too"
        );
    }

    #[test]
    fn spec_example_event() {
        let ts = 1_700_000_000_123;
        let a = spec_vector(ts);
        let key = canonical_key(&a);
        let event = build_event(&a, &key).unwrap();
        let hash = java_hash("user device flag-key-1 on flag-key-2 off ");
        assert_eq!(
            event,
            json!({
                "event_type": "[Experiment] Assignment",
                "user_id": "user",
                "device_id": "device",
                "time": ts,
                "insert_id": format!("user device {hash} {}", ts / 86_400_000),
                "event_properties": {
                    "flag-key-2.variant": "off",
                    "flag-key-2.details": "v1 rule:All Other Users",
                    "flag-key-1.variant": "on",
                    "flag-key-1.details": "v1 rule:All Other Users",
                },
                "user_properties": {
                    "$set": {"[Experiment] flag-key-1": "on"},
                    "$unset": {"[Experiment] flag-key-2": "-"},
                },
                "groups": {},
                "library": LIBRARY,
            })
        );
        // Field order is the documented one.
        let text = serde_json::to_string(&event).unwrap();
        assert!(text.starts_with(r#"{"event_type":"[Experiment] Assignment","user_id":"user","device_id":"device","time":"#), "{text}");
    }

    #[test]
    fn apis_and_clients_example_event() {
        // amplitude-apis-and-clients.md §1.6: u1/d1, exp-1 treatment, flag-cohort off (default),
        // org group with properties.
        let flags = format!(
            "[{},{}]",
            flag("exp-1", "treatment", r#"{"flagVersion":5}"#),
            flag("flag-cohort", "off", r#"{"flagVersion":3,"default":true}"#),
        );
        let a = assignment(
            r#"{"user":{"user_id":"u1","device_id":"d1"},"groups":{"org":{"group_name":"acme","group_properties":{"plan":"ent"}}}}"#,
            &flags,
            1_700_000_000_123,
        );
        let key = canonical_key(&a);
        assert_eq!(key, "u1 d1 exp-1 treatment flag-cohort off ");
        let event = build_event(&a, &key).unwrap();
        assert_eq!(
            event["insert_id"],
            format!("u1 d1 {} 19675", java_hash(&key))
        );
        assert_eq!(
            event["event_properties"],
            json!({"exp-1.variant": "treatment", "exp-1.details": "v5 rule:All Other Users",
                   "flag-cohort.variant": "off", "flag-cohort.details": "v3 rule:All Other Users"})
        );
        assert_eq!(
            event["user_properties"],
            json!({"$set": {"[Experiment] exp-1": "treatment"},
                   "$unset": {"[Experiment] flag-cohort": "-"}})
        );
        assert_eq!(
            event["groups"],
            json!({"org": "acme"}),
            "the fixed groups shape"
        );
    }

    #[test]
    fn missing_metadata_renders_null_and_mutex_groups_are_not_user_properties() {
        let flags = format!(
            "[{},{}]",
            flag("bare", "on", "{}"),
            flag(
                "mx",
                "slot-1",
                r#"{"flagVersion":2,"flagType":"mutual-exclusion-group"}"#
            ),
        );
        let mut a = assignment(r#"{"user":{"device_id":"d"}}"#, &flags, 5);
        let event = build_event(&a, &canonical_key(&a)).unwrap();
        assert_eq!(
            event["event_properties"]["mx.details"],
            "v2 rule:All Other Users"
        );
        assert_eq!(
            event["user_properties"],
            json!({"$set": {"[Experiment] bare": "on"}, "$unset": {}})
        );
        assert_eq!(event["user_id"], Json::Null);
        assert_eq!(
            event["insert_id"],
            format!("null d {} 0", java_hash("null d bare on mx slot-1 "))
        );
        a.results = Default::default();
        let event = build_event(&a, &canonical_key(&a)).unwrap();
        assert_eq!(event["event_properties"], json!({}));
        assert_eq!(event["user_properties"], json!({"$set": {}, "$unset": {}}));
    }

    #[test]
    fn details_without_version_or_segment_name() {
        let flags = r#"[{"key":"f","segments":[{"variant":"on"}],"variants":{"on":{"key":"on"}}}]"#;
        let a = assignment(r#"{"user":{"user_id":"u"}}"#, flags, 0);
        let event = build_event(&a, &canonical_key(&a)).unwrap();
        assert_eq!(event["event_properties"]["f.details"], "vnull rule:null");
    }

    #[test]
    fn no_user_id_and_no_device_id_is_an_error() {
        let a = assignment(r#"{"user":{"country":"CA"}}"#, "[]", 0);
        assert_eq!(
            build_event(&a, &canonical_key(&a)),
            Err(EventError::NoIdentity)
        );
        let a = assignment(r#"{"user":{"user_id":"  ","device_id":null}}"#, "[]", 0);
        assert_eq!(
            build_event(&a, &canonical_key(&a)),
            Err(EventError::NoIdentity)
        );
    }

    #[test]
    fn dedup_digest_ignores_order_and_separates_what_differs() {
        let ab = format!("[{},{}]", flag("a", "on", "{}"), flag("b", "off", "{}"));
        let ba = format!("[{},{}]", flag("b", "off", "{}"), flag("a", "on", "{}"));
        let user = r#"{"user":{"user_id":"u","device_id":"d"}}"#;
        let digest = |context: &str, flags: &str| dedup_digest("k", &assignment(context, flags, 0));
        assert_eq!(
            digest(user, &ab),
            digest(user, &ba),
            "a different order is the same"
        );
        assert_eq!(
            digest(user, &ab),
            digest(r#"{"user":{"user_id":" u ","device_id":"d"}}"#, &ab),
            "ids are trimmed"
        );
        assert_ne!(
            digest(user, &ab),
            digest(r#"{"user":{"user_id":"v","device_id":"d"}}"#, &ab)
        );
        let other_variant = format!("[{},{}]", flag("a", "off", "{}"), flag("b", "off", "{}"));
        assert_ne!(digest(user, &ab), digest(user, &other_variant));
        assert_ne!(
            digest(user, &ab),
            digest(user, &format!("[{}]", flag("a", "on", "{}")))
        );
        assert_ne!(
            digest(user, "[]"),
            dedup_digest("k2", &assignment(user, "[]", 0)),
            "per project"
        );
    }

    #[test]
    fn keys_sort_in_java_order() {
        // U+FF21 (BMP, after the surrogates) sorts after U+1F600 in UTF-16, before it in UTF-8.
        let flags = format!(
            "[{},{}]",
            flag("\u{ff21}", "a", "{}"),
            flag("\u{1f600}", "b", "{}")
        );
        let a = assignment(r#"{"user":{"user_id":"u"}}"#, &flags, 0);
        assert_eq!(canonical_key(&a), "u null \u{1f600} b \u{ff21} a ");
        let flags = format!("[{},{}]", flag("b", "x", "{}"), flag("a", "y", "{}"));
        let a = assignment(r#"{"user":{"user_id":"u"}}"#, &flags, 0);
        assert_eq!(canonical_key(&a), "u null a y b x ");
    }

    #[test]
    fn same_day_same_insert_id_next_day_differs() {
        let a = spec_vector(DAY_MILLIS * 20_000 + 1);
        let b = spec_vector(DAY_MILLIS * 20_001 - 1);
        let c = spec_vector(DAY_MILLIS * 20_001);
        let key = canonical_key(&a);
        assert_eq!(insert_id(&a, &key), insert_id(&b, &key));
        assert_ne!(insert_id(&a, &key), insert_id(&c, &key));
    }

    #[test]
    fn writer_escapes_like_serde_json_and_renders_other_metadata_kinds() {
        let tricky = "q\"b\\s\n\r\t\u{8}\u{c}\u{1}\u{1f}\u{7f}é😀 end";
        let quoted = serde_json::to_string(tricky).unwrap();
        let flags = format!(
            r#"[{},{},{}]"#,
            flag(&quoted[1..quoted.len() - 1], "on", r#"{"flagVersion":-12}"#),
            flag(
                "dbl",
                r#"x\"y"#,
                r#"{"flagVersion":1.5,"flagType":true,"default":"true"}"#
            ),
            flag(
                "arr",
                "v",
                r#"{"flagVersion":[1,"a"],"segmentName":{"k":null}}"#
            ),
        );
        let context = serde_json::json!({
            "user": {"user_id": tricky, "device_id": 42},
            "groups": {"org": {"group_name": tricky}, "none": {}, "n": {"group_name": 7}},
        })
        .to_string();
        let a = assignment(&context, &flags, -5);
        let event = build_event(&a, &canonical_key(&a)).unwrap();
        assert_eq!(event["user_id"], tricky);
        assert_eq!(event["device_id"], "42");
        assert_eq!(
            event["groups"],
            serde_json::json!({"org": tricky, "n": "7"})
        );
        assert_eq!(
            event["event_properties"]["dbl.details"],
            "v1.5 rule:All Other Users"
        );
        assert_eq!(
            event["event_properties"]["arr.details"],
            r#"v[1,"a"] rule:All Other Users"#
        );
        for byte in 0u8..0x80 {
            let text = char::from(byte).to_string();
            let mut out = Vec::new();
            string_into(&mut out, &text);
            assert_eq!(out, serde_json::to_vec(&text).unwrap(), "byte {byte:#x}");
        }
        for n in [0, 7, -1, i64::MIN, i64::MAX, 1_700_000_000_123] {
            let mut out = Vec::new();
            int_into(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes());
        }
    }

    #[test]
    fn dedup_digest_is_the_sum_of_the_identity_and_pair_hashes() {
        let flags = format!("[{},{}]", flag(" b ", " x ", "{}"), flag("a", "y", "{}"));
        let a = assignment(r#"{"user":{"user_id":" u ","device_id":"d"}}"#, &flags, 0);
        let expected = xxh3_128(b"key\0u\0d\0")
            .wrapping_add(xxh3_128(b"b\0x"))
            .wrapping_add(xxh3_128(b"a\0y"));
        assert_eq!(dedup_digest("key", &a), expected);
    }

    #[test]
    fn precomputed_parts_match_the_oracle_for_odd_keys_and_subsets() {
        // Java order differs from byte order (U+FF21 vs U+1F600), keys and variants padded
        // with spaces (trimmed in the canonical key only), a non-BMP variant (two UTF-16 units
        // in the piece's length), a repeated flag key (the later flag's variant), a default and
        // a mutual-exclusion group.
        let flags = format!(
            "[{},{},{},{},{},{}]",
            flag("\u{ff21}", "a", r#"{"flagVersion":2}"#),
            flag(" padded ", " v ", r#"{"flagVersion":3,"default":true}"#),
            flag("\u{1f600}", "\u{1f601}x", r#"{"segmentName":"s"}"#),
            flag("mx", "slot", r#"{"flagType":"mutual-exclusion-group"}"#),
            flag("dup", "first", "{}"),
            flag("dup", "second", r#"{"flagVersion":9}"#),
        );
        let user = r#"{"user":{"user_id":" u ","device_id":"é"}}"#;
        let a = assignment(user, &flags, 1_700_000_000_123);
        assert_eq!(
            canonical_key(&a),
            "u é padded v dup second mx slot \u{1f600} \u{1f601}x \u{ff21} a ",
            "sorted by the untrimmed key: the padded one first"
        );
        let event = build_event(&a, &canonical_key(&a)).unwrap();
        assert_eq!(event["event_properties"]["dup.variant"], "second");
        assert_eq!(
            event["user_properties"]["$unset"],
            json!({"[Experiment]  padded ": "-"})
        );
        // A subset of the flags, evaluated by the same compiled config: the same parts, fewer
        // entries.
        let compiled = CompiledFlags::compile(parse_flags(flags.as_bytes()).unwrap());
        let context = Value::from_json_slice(user.as_bytes()).unwrap();
        let keys = ["\u{1f600}".to_owned(), "mx".to_owned()];
        let subset = Assignment {
            api_key: Arc::from("k"),
            results: compiled.evaluate(&context, &keys).unwrap(),
            context,
            timestamp_millis: 7,
        };
        let key = canonical_key(&subset);
        assert_eq!(key, "u é mx slot \u{1f600} \u{1f601}x ");
        build_event(&subset, &key).unwrap();
    }

    #[test]
    fn one_writer_serves_several_configs() {
        let mut writer = EventWriter::new();
        for (flags, variant) in [
            (format!("[{}]", flag("f", "on", "{}")), "on"),
            (
                format!("[{},{}]", flag("g", "x", "{}"), flag("f", "off", "{}")),
                "off",
            ),
        ] {
            let a = assignment(r#"{"user":{"user_id":"u"}}"#, &flags, 0);
            let bytes = writer.write(&a, &Identity::of(&a.context)).unwrap();
            let reference = reference_event(&a, &canonical_key(&a));
            assert_eq!(bytes, serde_json::to_vec(&reference).unwrap());
            assert_eq!(reference["event_properties"]["f.variant"], variant);
        }
    }

    #[test]
    fn canonical_hash_equals_the_hash_of_the_key() {
        for (context, flags) in [
            (
                r#"{"user":{"user_id":" u ","device_id":"d"}}"#,
                format!("[{},{}]", flag(" b ", " x ", "{}"), flag("a", "y", "{}")),
            ),
            (
                r#"{"user":{"device_id":"é"}}"#,
                format!(
                    "[{},{}]",
                    flag("\u{ff21}", "a", "{}"),
                    flag("\u{1f600}", "b", "{}")
                ),
            ),
            (r#"{"user":{"user_id":"u"}}"#, "[]".to_owned()),
        ] {
            let a = assignment(context, &flags, 0);
            let identity = Identity::of(&a.context);
            assert_eq!(canonical_hash(&a, &identity), java_hash(&canonical_key(&a)));
        }
    }
}
