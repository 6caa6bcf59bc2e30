//! The Flagsmith Edge Proxy API: `/api/v1/flags/`, `/api/v1/identities/`,
//! `/api/v1/environment-document/` and the `/proxy/health*` endpoints, each with and without
//! the trailing slash (no 307 round-trips).
//!
//! Behaviour follows `shared/spec/flagsmith-edge-proxy.md` §4-§6 with its listed bugs fixed:
//! a missing `X-Environment-Key` is a 401 (not a 500), the environment document is only
//! served to server-side keys (403 for a client-side key), and every 4xx body is JSON.

use std::borrow::Cow;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::request::accepts_gzip;
use super::AppState;
use crate::flagsmith::engine::{IdentityContext, Trait};
use crate::flagsmith::registry::{EnvironmentSnapshot, Health, KeyLookup};
use crate::flagsmith::time::iso_naive;

/// Header carrying the environment key.
pub const ENVIRONMENT_KEY_HEADER: &str = "x-environment-key";

/// Longest accepted string trait value, like the reference.
const MAX_TRAIT_VALUE_CHARS: usize = 2000;

/// An error answer of the Flagsmith API, with the reference's JSON bodies.
#[derive(Debug, Clone, PartialEq)]
pub enum FlagsmithError {
    /// 401 `{"status":"unauthorized","message":"unknown key '<key>'"}`.
    UnknownKey(Option<String>),
    /// 403: a client-side key asked for the environment document.
    ServerKeyRequired,
    /// 404 `{"status":"not_found","message":"feature '<name>' not found"}`.
    FeatureNotFound(String),
    /// 422 with a FastAPI-style `detail` list.
    Validation {
        /// Error type such as `missing` or `string_type`.
        kind: &'static str,
        /// Location such as `["body","identifier"]`.
        loc: Vec<Value>,
        /// Message.
        msg: String,
    },
    /// Any other 4xx from request extraction (e.g. 413 body too large).
    Other(StatusCode, String),
}

impl FlagsmithError {
    fn validation(kind: &'static str, loc: Vec<Value>, msg: impl Into<String>) -> Self {
        Self::Validation {
            kind,
            loc,
            msg: msg.into(),
        }
    }
}

/// Python's `repr()` of a string (or `None`), as the reference puts it in its messages.
pub fn python_repr(text: Option<&str>) -> String {
    let Some(text) = text else {
        return "None".to_owned();
    };
    let quote = if text.contains('\'') && !text.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(text.len() + 2);
    out.push(quote);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

impl IntoResponse for FlagsmithError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            Self::UnknownKey(key) => (
                StatusCode::UNAUTHORIZED,
                json!({"status": "unauthorized", "message": format!("unknown key {}", python_repr(key.as_deref()))}),
            ),
            Self::ServerKeyRequired => (
                StatusCode::FORBIDDEN,
                json!({"status": "forbidden", "message": "the environment document requires a server-side key"}),
            ),
            Self::FeatureNotFound(name) => (
                StatusCode::NOT_FOUND,
                json!({"status": "not_found", "message": format!("feature {} not found", python_repr(Some(&name)))}),
            ),
            Self::Validation { kind, loc, msg } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"detail": [{"type": kind, "loc": loc, "msg": msg}]}),
            ),
            Self::Other(status, message) => {
                (status, json!({"status": "error", "message": message}))
            }
        };
        json_response(status, Bytes::from(body.to_string()))
    }
}

fn json_response(status: StatusCode, body: Bytes) -> Response {
    let mut response = (status, Body::from(body)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The request's environment key, as text (`None` when absent).
fn environment_key(headers: &HeaderMap) -> Option<Cow<'_, str>> {
    headers
        .get(ENVIRONMENT_KEY_HEADER)
        .map(|v| String::from_utf8_lossy(v.as_bytes()))
}

/// Resolves the key to a loaded environment, or the reference's 401.
fn resolve(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<(std::sync::Arc<EnvironmentSnapshot>, bool), FlagsmithError> {
    let Some(key) = environment_key(headers) else {
        return Err(FlagsmithError::UnknownKey(None));
    };
    match state.flagsmith.lookup(&key) {
        KeyLookup::Ready { snapshot, server } => Ok((snapshot, server)),
        KeyLookup::NotLoaded(client_key) => Err(FlagsmithError::UnknownKey(Some(client_key))),
        KeyLookup::Unknown => Err(FlagsmithError::UnknownKey(Some(key.into_owned()))),
    }
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// `GET /api/v1/flags/`: environment flags, or one flag with `?feature=<name>`.
pub async fn get_flags(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, FlagsmithError> {
    let (snapshot, server) = resolve(&state, &headers)?;
    let feature = query_param(query.as_deref(), "feature").filter(|f| !f.is_empty());
    let Some(feature) = feature else {
        let body = if server {
            snapshot.flags_server.clone()
        } else {
            snapshot.flags_client.clone()
        };
        return Ok(json_response(StatusCode::OK, body));
    };
    match snapshot.single_flags.get(&feature) {
        Some((body, visible)) if server || *visible => {
            Ok(json_response(StatusCode::OK, body.clone()))
        }
        _ => Err(FlagsmithError::FeatureNotFound(feature)),
    }
}

/// `GET /api/v1/identities/?identifier=<id>`: identity flags without traits.
pub async fn get_identities(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, FlagsmithError> {
    let identifier = query_param(query.as_deref(), "identifier").ok_or_else(|| {
        FlagsmithError::validation(
            "missing",
            vec![json!("query"), json!("identifier")],
            "Field required",
        )
    })?;
    identity_response(&state, &headers, identifier, Vec::new())
}

/// `POST /api/v1/identities/`: identity flags for `{"identifier", "traits"}`; nothing stored.
pub async fn post_identities(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, FlagsmithError> {
    let body = body.map_err(|r| FlagsmithError::Other(r.status(), r.body_text()))?;
    let (identifier, traits) = parse_identity_body(&headers, &body)?;
    identity_response(&state, &headers, identifier, traits)
}

fn identity_response(
    state: &AppState,
    headers: &HeaderMap,
    identifier: String,
    traits: Vec<Trait>,
) -> Result<Response, FlagsmithError> {
    let (snapshot, server) = resolve(state, headers)?;
    let bytes = identity_body(&snapshot, server, identifier, traits);
    Ok(json_response(StatusCode::OK, bytes))
}

/// The `/api/v1/identities/` response body for an identity of `snapshot`'s environment,
/// flags filtered for client keys unless `server` (the handlers' work after key lookup):
/// `{"identifier":…,"traits":[…],"flags":[…]}`, written directly (no JSON tree).
pub fn identity_body(
    snapshot: &EnvironmentSnapshot,
    server: bool,
    identifier: String,
    traits: Vec<Trait>,
) -> Bytes {
    let mut out = Vec::with_capacity(snapshot.identity_body_capacity());
    out.extend_from_slice(br#"{"identifier":"#);
    // Serialising strings and traits into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, &identifier);
    out.extend_from_slice(br#","traits":"#);
    let _ = serde_json::to_writer(&mut out, &traits);
    out.extend_from_slice(br#","flags":"#);
    let identity = IdentityContext::from_owned_traits(identifier, traits);
    snapshot.write_identity_flags(&identity, server, &mut out);
    out.push(b'}');
    Bytes::from(out)
}

fn is_json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return true;
    };
    let Ok(text) = value.to_str() else {
        return false;
    };
    let mime = text
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// Validates the `POST /api/v1/identities/` body like the reference's pydantic model into
/// `(identifier, traits)`; extra fields (`transient`, …) are ignored.
pub fn parse_identity_body(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(String, Vec<Trait>), FlagsmithError> {
    let not_object = || {
        FlagsmithError::validation(
            "model_attributes_type",
            vec![json!("body")],
            "Input should be a valid dictionary or object to extract fields from",
        )
    };
    if !is_json_content_type(headers) {
        return Err(not_object());
    }
    if let Ok(FastBody { identifier, traits }) = serde_json::from_slice::<FastBody>(body) {
        return Ok((identifier, traits));
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        FlagsmithError::validation(
            "json_invalid",
            vec![json!("body")],
            format!("JSON decode error: {e}"),
        )
    })?;
    let Value::Object(mut object) = value else {
        return Err(not_object());
    };
    let identifier = match object.remove("identifier") {
        Some(Value::String(s)) => s,
        None => {
            return Err(FlagsmithError::validation(
                "missing",
                vec![json!("body"), json!("identifier")],
                "Field required",
            ))
        }
        Some(_) => {
            return Err(FlagsmithError::validation(
                "string_type",
                vec![json!("body"), json!("identifier")],
                "Input should be a valid string",
            ))
        }
    };
    let traits = match object.remove("traits") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| parse_trait(i, item))
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(FlagsmithError::validation(
                "list_type",
                vec![json!("body"), json!("traits")],
                "Input should be a valid list",
            ))
        }
    };
    Ok((identifier, traits))
}

/// The common identities body, parsed without a JSON tree: exactly `identifier` (a
/// string) and optionally `traits` (a list of `{"trait_key": string, "trait_value":
/// scalar}`), each key at most once. Anything else (extra or repeated fields, wrong types,
/// too long values, bad JSON) fails, and [`parse_identity_body`] falls back to the general
/// path, which gives the same result for what this accepts and the reference's errors
/// for the rest.
struct FastBody {
    identifier: String,
    traits: Vec<Trait>,
}

#[derive(serde::Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum BodyField {
    Identifier,
    Traits,
    #[serde(other)]
    Other,
}

#[derive(serde::Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum TraitField {
    TraitKey,
    TraitValue,
    #[serde(other)]
    Other,
}

/// One trait of a [`FastBody`].
struct FastTrait(Trait);

fn not_fast<E: serde::de::Error>() -> E {
    E::custom("not the common identities body")
}

impl<'de> serde::Deserialize<'de> for FastBody {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = FastBody;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an identities body")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<FastBody, A::Error> {
                let (mut identifier, mut traits) = (None, None);
                while let Some(field) = map.next_key::<BodyField>()? {
                    match field {
                        BodyField::Identifier if identifier.is_none() => {
                            identifier = Some(map.next_value::<String>()?);
                        }
                        BodyField::Traits if traits.is_none() => {
                            let list: Vec<FastTrait> = map.next_value()?;
                            traits = Some(list.into_iter().map(|t| t.0).collect());
                        }
                        _ => return Err(not_fast()),
                    }
                }
                Ok(FastBody {
                    identifier: identifier.ok_or_else(not_fast)?,
                    traits: traits.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_map(Visit)
    }
}

impl<'de> serde::Deserialize<'de> for FastTrait {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = FastTrait;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a trait")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<FastTrait, A::Error> {
                let (mut key, mut value) = (None, None);
                while let Some(field) = map.next_key::<TraitField>()? {
                    match field {
                        TraitField::TraitKey if key.is_none() => {
                            key = Some(map.next_value::<String>()?);
                        }
                        TraitField::TraitValue if value.is_none() => {
                            let v: Value = map.next_value()?;
                            let ok = match &v {
                                Value::String(s) => s.chars().count() <= MAX_TRAIT_VALUE_CHARS,
                                Value::Array(_) | Value::Object(_) => false,
                                _ => true,
                            };
                            if !ok {
                                return Err(not_fast());
                            }
                            value = Some(v);
                        }
                        _ => return Err(not_fast()),
                    }
                }
                Ok(FastTrait(Trait {
                    trait_key: key.ok_or_else(not_fast)?,
                    trait_value: value.unwrap_or(Value::Null),
                }))
            }
        }
        deserializer.deserialize_map(Visit)
    }
}

fn parse_trait(index: usize, item: Value) -> Result<Trait, FlagsmithError> {
    let loc = |field: Option<&str>| {
        let mut loc = vec![json!("body"), json!("traits"), json!(index)];
        if let Some(field) = field {
            loc.push(json!(field));
        }
        loc
    };
    let Value::Object(mut object) = item else {
        return Err(FlagsmithError::validation(
            "model_attributes_type",
            loc(None),
            "Input should be a valid dictionary or object to extract fields from",
        ));
    };
    let trait_key = match object.remove("trait_key") {
        Some(Value::String(s)) => s,
        None => {
            return Err(FlagsmithError::validation(
                "missing",
                loc(Some("trait_key")),
                "Field required",
            ))
        }
        Some(_) => {
            return Err(FlagsmithError::validation(
                "string_type",
                loc(Some("trait_key")),
                "Input should be a valid string",
            ))
        }
    };
    let trait_value = object.remove("trait_value").unwrap_or(Value::Null);
    match &trait_value {
        Value::String(s) if s.chars().count() > MAX_TRAIT_VALUE_CHARS => {
            return Err(FlagsmithError::validation(
                "string_too_long",
                loc(Some("trait_value")),
                format!("String should have at most {MAX_TRAIT_VALUE_CHARS} characters"),
            ))
        }
        Value::Array(_) | Value::Object(_) => {
            return Err(FlagsmithError::validation(
                "union_type",
                loc(Some("trait_value")),
                "Input should be a string, integer, number, boolean or null",
            ))
        }
        _ => {}
    }
    Ok(Trait {
        trait_key,
        trait_value,
    })
}

/// `GET /api/v1/environment-document/` (both slash variants): the document as received, for
/// server-side keys only.
pub async fn get_environment_document(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, FlagsmithError> {
    let Some(key) = environment_key(&headers) else {
        return Err(FlagsmithError::UnknownKey(None));
    };
    match state.flagsmith.lookup(&key) {
        KeyLookup::Ready {
            snapshot,
            server: true,
        } => Ok(document_response(&snapshot, &headers)),
        KeyLookup::Ready { server: false, .. } | KeyLookup::NotLoaded(_)
            if !key.starts_with("ser.") =>
        {
            Err(FlagsmithError::ServerKeyRequired)
        }
        _ => Err(FlagsmithError::UnknownKey(Some(key.into_owned()))),
    }
}

/// The document body, pre-compressed for clients that accept gzip.
fn document_response(snapshot: &EnvironmentSnapshot, headers: &HeaderMap) -> Response {
    let mut response = match &snapshot.document_json_gzip {
        Some(gzip) if accepts_gzip(headers) => {
            let mut response = json_response(StatusCode::OK, gzip.clone());
            response
                .headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            response
        }
        _ => json_response(StatusCode::OK, snapshot.document_json.clone()),
    };
    response
        .headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    response
}

/// `GET /proxy/health`, `/proxy/health/readiness` and `/health`: the reference's readiness.
pub async fn health(State(state): State<AppState>) -> Response {
    let (status, reason, last) = match state.flagsmith.health() {
        Health::NotUpdated => (
            StatusCode::SERVICE_UNAVAILABLE,
            Some("environment document(s) not updated."),
            None,
        ),
        Health::Stale(at) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Some("environment document(s) stale."),
            Some(at),
        ),
        Health::Ok(at) => (StatusCode::OK, None, Some(at)),
    };
    let body = json!({
        "status": if status == StatusCode::OK { "ok" } else { "error" },
        "reason": reason,
        "last_successful_update": last.map(iso_naive),
    });
    json_response(status, Bytes::from(body.to_string()))
}

/// `GET /proxy/health/liveness`: always 200 with an empty body.
pub async fn liveness() -> StatusCode {
    StatusCode::OK
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    #[test]
    fn python_repr_quotes_like_python() {
        assert_eq!(python_repr(None), "None");
        assert_eq!(python_repr(Some("")), "''");
        assert_eq!(python_repr(Some("ser.x")), "'ser.x'");
        assert_eq!(python_repr(Some("it's")), "\"it's\"");
        assert_eq!(python_repr(Some("a'\"b")), "'a\\'\"b'");
    }

    #[test]
    fn identity_body_bytes_match_the_json_tree() {
        let doc =
            br#"{"api_key":"ck","name":"Env","project":{"segments":[],"hide_disabled_flags":false},
          "feature_states":[{"feature":{"id":1,"name":"a","type":"STANDARD"},"enabled":true,
            "feature_state_value":"x","django_id":11}]}"#;
        let snapshot = EnvironmentSnapshot::build(doc).unwrap();
        let (identifier, traits) = parse_identity_body(
            &HeaderMap::new(),
            r#"{"identifier":"\u00fc\"1","traits":[{"trait_key":"k","trait_value":1.25},{"trait_key":"n"},{"trait_key":"s","trait_value":" "}]}"#.as_bytes(),
        )
        .unwrap();
        let identity = IdentityContext::from_traits(&identifier, &traits);
        let mut tree = Map::new();
        tree.insert("identifier".into(), Value::String(identifier.clone()));
        tree.insert("traits".into(), serde_json::to_value(&traits).unwrap());
        tree.insert(
            "flags".into(),
            Value::Array(snapshot.identity_flags(&identity, false)),
        );
        let body = identity_body(&snapshot, false, identifier, traits);
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            serde_json::to_string(&tree).unwrap()
        );
        assert!(body.ends_with(br#""feature_state_value":"x"}]}"#));
    }

    /// The general path alone, for comparison with the fast one.
    fn parse_slow(body: &[u8]) -> Option<(String, Vec<Trait>)> {
        let Value::Object(mut object) = serde_json::from_slice(body).ok()? else {
            return None;
        };
        let Some(Value::String(identifier)) = object.remove("identifier") else {
            return None;
        };
        let traits = match object.remove("traits") {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| parse_trait(i, item))
                .collect::<Result<_, _>>()
                .ok()?,
            Some(_) => return None,
        };
        Some((identifier, traits))
    }

    #[test]
    fn fast_body_parse_agrees_with_the_general_path() {
        let long = format!(
            r#"{{"identifier":"u","traits":[{{"trait_key":"a","trait_value":"{}"}}]}}"#,
            "é".repeat(2001)
        );
        let limit = format!(
            r#"{{"identifier":"u","traits":[{{"trait_key":"a","trait_value":"{}"}}]}}"#,
            "é".repeat(2000)
        );
        let bodies: Vec<&[u8]> = vec![
            br#"{"identifier":"u","traits":[{"trait_key":"a","trait_value":1},{"trait_key":"b"}]}"#,
            br#" {"traits":[{"trait_value":-1.5e3,"trait_key":"a"},{"trait_key":"a","trait_value":null}],"identifier":"\u00fc"} "#,
            br#"{"identifier":"u","traits":[]}"#,
            br#"{"identifier":"u"}"#,
            br#"{"identifier":"u","identifier":"v"}"#,
            br#"{"identifier":"u","transient":true}"#,
            br#"{"identifier":"u","traits":null}"#,
            br#"{"identifier":"u","traits":[{"trait_key":"a","trait_value":true,"x":1}]}"#,
            br#"{"identifier":"u","traits":[{"trait_key":"a","trait_key":"b"}]}"#,
            br#"{"identifier":"u","traits":[{"trait_key":"a","trait_value":[1]}]}"#,
            br#"{"identifier":"u","traits":[{"trait_value":1}]}"#,
            br#"{"identifier":1}"#,
            br#"{"identifier":"u"} x"#,
            br#"[]"#,
            long.as_bytes(),
            limit.as_bytes(),
        ];
        let mut fast = 0;
        for body in bodies {
            let slow = parse_slow(body);
            if let Ok(FastBody { identifier, traits }) = serde_json::from_slice::<FastBody>(body) {
                fast += 1;
                assert_eq!(
                    Some((identifier, traits)),
                    slow,
                    "{}",
                    String::from_utf8_lossy(body)
                );
            }
            let full = parse_identity_body(&HeaderMap::new(), body).ok();
            assert_eq!(full, slow, "{}", String::from_utf8_lossy(body));
        }
        assert_eq!(fast, 5);
    }

    #[test]
    fn identity_body_validation() {
        let h = HeaderMap::new();
        let ok = parse_identity_body(
            &h,
            br#"{"identifier":"u","traits":[{"trait_key":"a","trait_value":1},{"trait_key":"b"}],"transient":true}"#,
        )
        .unwrap();
        assert_eq!(ok.0, "u");
        assert_eq!(ok.1[1].trait_value, Value::Null);
        for bad in [
            &br#"{"traits":[]}"#[..],
            br#"{"identifier":1}"#,
            br#"{"identifier":"u","traits":null}"#,
            br#"{"identifier":"u","traits":[{"trait_value":1}]}"#,
            br#"{"identifier":"u","traits":[{"trait_key":"a","trait_value":[1]}]}"#,
            br#"[]"#,
            b"not json",
        ] {
            assert!(matches!(
                parse_identity_body(&h, bad),
                Err(FlagsmithError::Validation { .. })
            ));
        }
        let long = format!(
            r#"{{"identifier":"u","traits":[{{"trait_key":"a","trait_value":"{}"}}]}}"#,
            "x".repeat(2001)
        );
        assert!(parse_identity_body(&h, long.as_bytes()).is_err());
        let mut form = HeaderMap::new();
        form.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        assert!(parse_identity_body(&form, br#"{"identifier":"u"}"#).is_err());
    }
}
