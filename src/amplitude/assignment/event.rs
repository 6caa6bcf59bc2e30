//! The `[Experiment] Assignment` event (spec §7.5 canonical key, §7.6 content), built off the
//! request path by the worker.
//!
//! Differences from the reference, both documented bugs there: `groups` is sent as
//! `{groupType: groupName}` (the shape Amplitude's HTTP API expects), and an assignment with
//! neither `user_id` nor `device_id` is reported as [`EventError::NoIdentity`] instead of being
//! silently dropped by the analytics SDK.

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::{Map, Value as Json};
use xxhash_rust::xxh3::xxh3_128;

use super::Assignment;
use crate::amplitude::engine::{coerce_string, EvaluatedVariant, Value};

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

/// `context.user.{field}` rendered like Kotlin's `toString()`; `None` when missing or null.
fn user_field<'a>(context: &'a Value, field: &str) -> Option<Cow<'a, str>> {
    context.get("user")?.get(field).and_then(coerce_string)
}

/// Kotlin renders a null in a string template as `null`.
fn or_null(value: Option<&str>) -> &str {
    value.unwrap_or("null")
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
/// in key order, nulls rendered as `null`.
pub fn canonical_key(assignment: &Assignment) -> String {
    let user_id = user_field(&assignment.context, "user_id");
    let device_id = user_field(&assignment.context, "device_id");
    let mut key = String::with_capacity(64 + 32 * assignment.results.len());
    key.push_str(or_null(user_id.as_deref().map(str::trim)));
    key.push(' ');
    key.push_str(or_null(device_id.as_deref().map(str::trim)));
    key.push(' ');
    for (flag, variant) in sorted_results(assignment) {
        key.push_str(flag.trim());
        key.push(' ');
        key.push_str(variant.key().trim());
        key.push(' ');
    }
    key
}

/// The 128-bit dedup identity of an assignment under project `api_key`: the canonical key's
/// content (trimmed ids, nulls as `null`, each `(flag, variant)` pair) without building it.
/// Pairs are hashed one by one with XXH3-128 (a fixed algorithm, so every replica and release
/// agrees) and summed, so their order does not matter and nothing is sorted: this runs for
/// every assignment, repeats included, and stays a few microseconds with hundreds of flags.
pub fn dedup_digest(api_key: &str, assignment: &Assignment) -> u128 {
    let user_id = user_field(&assignment.context, "user_id");
    let device_id = user_field(&assignment.context, "device_id");
    let mut buffer: Vec<u8> = Vec::with_capacity(128);
    for part in [
        api_key,
        or_null(user_id.as_deref().map(str::trim)),
        or_null(device_id.as_deref().map(str::trim)),
    ] {
        buffer.extend_from_slice(part.as_bytes());
        buffer.push(0);
    }
    let mut digest = xxh3_128(&buffer);
    for (flag, variant) in assignment.results.iter() {
        buffer.clear();
        buffer.extend_from_slice(flag.trim().as_bytes());
        buffer.push(0);
        buffer.extend_from_slice(variant.key().trim().as_bytes());
        digest = digest.wrapping_add(xxh3_128(&buffer));
    }
    digest
}

/// Java's `String.hashCode()`: `h = 31 * h + c` over UTF-16 code units, wrapping at 32 bits.
pub fn java_hash(text: &str) -> i32 {
    text.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

/// `"{userId} {deviceId} {javaHash(canonicalKey)} {floor(timestamp / day)}"`: identical
/// assignments on the same UTC day share it, so Amplitude dedups them too.
pub fn insert_id(assignment: &Assignment, canonical_key: &str) -> String {
    let user_id = user_field(&assignment.context, "user_id");
    let device_id = user_field(&assignment.context, "device_id");
    format!(
        "{} {} {} {}",
        or_null(user_id.as_deref()),
        or_null(device_id.as_deref()),
        java_hash(canonical_key),
        assignment.timestamp_millis.div_euclid(DAY_MILLIS)
    )
}

/// Whether the user has an id Amplitude accepts (a non-blank `user_id` or `device_id`).
pub fn has_identity(assignment: &Assignment) -> bool {
    let present =
        |field| user_field(&assignment.context, field).is_some_and(|id| !id.trim().is_empty());
    present("user_id") || present("device_id")
}

fn metadata<'a>(variant: &'a EvaluatedVariant, key: &str) -> Option<&'a Value> {
    variant.metadata().and_then(|m| m.get(key))
}

/// `"v{flagVersion} rule:{segmentName}"`, a missing value rendered as `null`.
fn details(variant: &EvaluatedVariant) -> String {
    let part = |key| metadata(variant, key).and_then(coerce_string);
    format!(
        "v{} rule:{}",
        or_null(part("flagVersion").as_deref()),
        or_null(part("segmentName").as_deref())
    )
}

fn id_json(value: Option<Cow<'_, str>>) -> Json {
    value.map_or(Json::Null, |v| Json::String(v.into_owned()))
}

/// `{groupType: groupName}` from the context's groups (the fixed shape, see module docs).
fn groups(context: &Value) -> Map<String, Json> {
    let mut groups = Map::new();
    if let Some(Value::Object(by_type)) = context.get("groups") {
        for (group_type, node) in by_type {
            if let Some(name) = node.get("group_name").and_then(coerce_string) {
                groups.insert(group_type.clone(), Json::String(name.into_owned()));
            }
        }
    }
    groups
}

/// `event_properties` and `user_properties` (`$set` / `$unset`) from the results.
fn properties(assignment: &Assignment) -> (Map<String, Json>, Map<String, Json>) {
    let mut event = Map::new();
    let mut set = Map::new();
    let mut unset = Map::new();
    for (flag, variant) in assignment.results.iter() {
        event.insert(
            format!("{flag}.variant"),
            Json::String(variant.key().to_owned()),
        );
        event.insert(format!("{flag}.details"), Json::String(details(variant)));
        let flag_type = metadata(variant, "flagType").and_then(coerce_string);
        if flag_type.as_deref() == Some("mutual-exclusion-group") {
            continue;
        }
        let property = format!("[Experiment] {flag}");
        if metadata(variant, "default") == Some(&Value::Bool(true)) {
            unset.insert(property, Json::String("-".to_owned()));
        } else {
            set.insert(property, Json::String(variant.key().to_owned()));
        }
    }
    let mut user = Map::new();
    user.insert("$set".to_owned(), Json::Object(set));
    user.insert("$unset".to_owned(), Json::Object(unset));
    (event, user)
}

/// The event JSON for an assignment whose canonical key is `canonical_key`.
pub fn build_event(assignment: &Assignment, canonical_key: &str) -> Result<Json, EventError> {
    if !has_identity(assignment) {
        return Err(EventError::NoIdentity);
    }
    let (event_properties, user_properties) = properties(assignment);
    let mut event = Map::new();
    event.insert("event_type".to_owned(), Json::String(EVENT_TYPE.to_owned()));
    event.insert(
        "user_id".to_owned(),
        id_json(user_field(&assignment.context, "user_id")),
    );
    event.insert(
        "device_id".to_owned(),
        id_json(user_field(&assignment.context, "device_id")),
    );
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
    event.insert(
        "groups".to_owned(),
        Json::Object(groups(&assignment.context)),
    );
    event.insert("library".to_owned(), Json::String(LIBRARY.to_owned()));
    Ok(Json::Object(event))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::amplitude::engine::{parse_flags, CompiledFlags};

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
}
