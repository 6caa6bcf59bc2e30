//! Per-environment immutable snapshots of the Flagsmith environment documents, swapped
//! atomically by the sync loops and only read by requests.
//!
//! A snapshot holds the parsed and compiled document plus everything that does not depend
//! on the request, computed once per document version: the `/api/v1/flags/` bodies for
//! client and server keys, one body per feature for `?feature=`, the feature metadata used
//! to render identity flags, and the environment document body.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use indexmap::IndexMap;
use serde_json::{json, Value};

use super::engine::{CompiledContext, EnvironmentDocument, IdentityContext};
use crate::metrics::mask_key;

/// What the proxy reports about a feature, from the environment-level feature state.
#[derive(Debug, Clone)]
pub struct FeatureMeta {
    /// `{"id":…,"name":…,"type":…}` as served.
    pub feature: Value,
    /// Hidden from client keys (`project.server_key_only_feature_ids`).
    pub server_only: bool,
}

/// One environment's document, compiled, with its precomputed responses.
pub struct EnvironmentSnapshot {
    /// The parsed document.
    pub document: EnvironmentDocument,
    /// The compiled evaluation context.
    pub compiled: CompiledContext,
    /// The document as received, re-serialised compactly (key order kept).
    pub document_json: Bytes,
    /// `document_json` gzip-compressed once, when it is large enough to be worth it.
    pub document_json_gzip: Option<Bytes>,
    /// Feature metadata by feature name, in document order.
    pub features: IndexMap<String, FeatureMeta>,
    /// `GET /api/v1/flags/` body for client keys.
    pub flags_client: Bytes,
    /// `GET /api/v1/flags/` body for server keys.
    pub flags_server: Bytes,
    /// `GET /api/v1/flags/?feature=<name>` bodies: (body, visible to client keys).
    pub single_flags: HashMap<String, (Bytes, bool)>,
    /// How to render each evaluated flag, in the compiled context's result order (`None`
    /// for a result without feature metadata, which is never rendered).
    flag_renders: Vec<Option<FlagRender>>,
    /// A response buffer size that fits most identity bodies without regrowing.
    identity_body_capacity: usize,
}

/// The JSON of one identity flag up to its value, precomputed per document version.
#[derive(Debug, Clone)]
struct FlagRender {
    /// `{"feature":{…},"enabled":true,"feature_state_value":`
    enabled_prefix: Box<[u8]>,
    /// `{"feature":{…},"enabled":false,"feature_state_value":`
    disabled_prefix: Box<[u8]>,
    /// Hidden from client keys (`project.server_key_only_feature_ids`).
    server_only: bool,
}

impl FlagRender {
    fn new(meta: &FeatureMeta) -> Self {
        let prefix = |enabled: bool| {
            let mut out = br#"{"feature":"#.to_vec();
            // Serialising a `Value` into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut out, &meta.feature);
            out.extend_from_slice(if enabled {
                &br#","enabled":true,"feature_state_value":"#[..]
            } else {
                &br#","enabled":false,"feature_state_value":"#[..]
            });
            out.into_boxed_slice()
        };
        Self {
            enabled_prefix: prefix(true),
            disabled_prefix: prefix(false),
            server_only: meta.server_only,
        }
    }
}

impl std::fmt::Debug for EnvironmentSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvironmentSnapshot")
            .field("name", &self.document.name)
            .field("features", &self.features.len())
            .finish_non_exhaustive()
    }
}

/// Why a fetched document was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    /// Not JSON.
    #[error("not JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// JSON, but not an environment document.
    #[error("not an environment document: {0}")]
    Shape(#[source] serde_json::Error),
}

/// Bodies from this size on are served gzip-compressed to clients that accept it (the
/// reference's threshold).
const GZIP_MIN_BYTES: usize = 1000;

fn gzip(data: &[u8]) -> Bytes {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 4 + 64),
        flate2::Compression::default(),
    );
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(data);
    Bytes::from(encoder.finish().unwrap_or_default())
}

/// A flag as the SDK API renders it.
pub fn flag_json(feature: &Value, enabled: bool, value: &Value) -> Value {
    json!({"feature": feature, "enabled": enabled, "feature_state_value": value})
}

impl EnvironmentSnapshot {
    /// Parses, compiles and precomputes a snapshot from a document body.
    pub fn build(body: &[u8]) -> Result<Self, DocumentError> {
        let raw: Value = serde_json::from_slice(body).map_err(DocumentError::Json)?;
        let document: EnvironmentDocument =
            serde_json::from_value(raw.clone()).map_err(DocumentError::Shape)?;
        let document_json = Bytes::from(serde_json::to_vec(&raw).unwrap_or_default());
        let document_json_gzip =
            (document_json.len() >= GZIP_MIN_BYTES).then(|| gzip(&document_json));
        let compiled = document.compile();
        let server_only: HashSet<String> = document
            .project
            .server_key_only_feature_ids
            .iter()
            .map(Value::to_string)
            .collect();
        let mut features = IndexMap::with_capacity(document.feature_states.len());
        for fs in &document.feature_states {
            let feature_type = fs.feature.feature_type.as_deref().unwrap_or("STANDARD");
            features
                .entry(fs.feature.name.clone())
                .or_insert_with(|| FeatureMeta {
                    feature: json!({"id": fs.feature.id, "name": fs.feature.name, "type": feature_type}),
                    server_only: server_only.contains(&fs.feature.id.to_string()),
                });
        }
        let mut snapshot = Self {
            document,
            compiled,
            document_json,
            document_json_gzip,
            features,
            flags_client: Bytes::new(),
            flags_server: Bytes::new(),
            single_flags: HashMap::new(),
            flag_renders: Vec::new(),
            identity_body_capacity: 0,
        };
        snapshot.flag_renders = snapshot
            .compiled
            .feature_names()
            .map(|name| snapshot.features.get(name).map(FlagRender::new))
            .collect();
        snapshot.identity_body_capacity = snapshot
            .flag_renders
            .iter()
            .flatten()
            .map(|r| r.enabled_prefix.len() + 24)
            .sum::<usize>()
            + 512;
        snapshot.precompute_flags();
        Ok(snapshot)
    }

    fn precompute_flags(&mut self) {
        let result = self.compiled.evaluate(None);
        let mut client = Vec::new();
        let mut server = Vec::new();
        let mut single = HashMap::new();
        for (name, flag) in &result.flags {
            let Some(meta) = self.features.get(name.as_ref()) else {
                continue;
            };
            let object = flag_json(&meta.feature, flag.enabled, &flag.value);
            let visible = self.visible_to_client(meta, flag.enabled);
            let body = Bytes::from(serde_json::to_vec(&object).unwrap_or_default());
            single.insert(name.to_string(), (body, visible));
            if visible {
                client.push(object.clone());
            }
            server.push(object);
        }
        self.flags_client = Bytes::from(serde_json::to_vec(&client).unwrap_or_default());
        self.flags_server = Bytes::from(serde_json::to_vec(&server).unwrap_or_default());
        self.single_flags = single;
    }

    /// Whether a client key sees this flag: not server-only, and not hidden as disabled.
    pub fn visible_to_client(&self, meta: &FeatureMeta, enabled: bool) -> bool {
        !meta.server_only && (enabled || !self.document.project.hide_disabled_flags)
    }

    /// A starting capacity for an identities response buffer.
    pub fn identity_body_capacity(&self) -> usize {
        self.identity_body_capacity
    }

    /// Evaluates an identity and appends its flags to `out` as a JSON array, filtered for
    /// client keys unless `server` is set: the bytes of [`EnvironmentSnapshot::identity_flags`]
    /// serialised, written from fragments precomputed per document version.
    pub fn write_identity_flags(
        &self,
        identity: &IdentityContext,
        server: bool,
        out: &mut Vec<u8>,
    ) {
        let flags = self.compiled.evaluate_flags(Some(identity));
        let hide_disabled = self.document.project.hide_disabled_flags;
        out.push(b'[');
        let mut first = true;
        for (flag, render) in flags.iter().zip(&self.flag_renders) {
            let Some(render) = render else { continue };
            if !server && (render.server_only || (!flag.enabled && hide_disabled)) {
                continue;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend_from_slice(if flag.enabled {
                &render.enabled_prefix[..]
            } else {
                &render.disabled_prefix[..]
            });
            // Serialising a `Value` into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, &*flag.value);
            out.push(b'}');
        }
        out.push(b']');
    }

    /// Evaluates an identity and renders its flags, filtered for client keys unless
    /// `server` is set.
    pub fn identity_flags(&self, identity: &IdentityContext, server: bool) -> Vec<Value> {
        let result = self.compiled.evaluate(Some(identity));
        result
            .flags
            .iter()
            .filter_map(|(name, flag)| {
                let meta = self.features.get(name.as_ref())?;
                (server || self.visible_to_client(meta, flag.enabled))
                    .then(|| flag_json(&meta.feature, flag.enabled, &flag.value))
            })
            .collect()
    }
}

/// One configured environment: its keys and current snapshot.
struct Slot {
    client_key: String,
    snapshot: ArcSwapOption<EnvironmentSnapshot>,
    /// Unix milliseconds of the last successful poll or file check; 0 = never.
    last_success_millis: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// The result of resolving an `X-Environment-Key`.
#[derive(Debug, Clone)]
pub enum KeyLookup {
    /// Neither a configured server key nor a configured client key.
    Unknown,
    /// A configured environment whose document has not loaded yet; carries the client key
    /// (the reference names it in its 401 message).
    NotLoaded(String),
    /// The environment's snapshot and whether the key was its server-side key.
    Ready {
        /// Current snapshot.
        snapshot: Arc<EnvironmentSnapshot>,
        /// The request used the server-side key.
        server: bool,
    },
}

/// The health of the Flagsmith environments, as the reference's `/proxy/health` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Some environment never loaded.
    NotUpdated,
    /// The oldest successful update (Unix ms) is older than the allowed age.
    Stale(u64),
    /// Every environment is fresh; the oldest successful update (Unix ms).
    Ok(u64),
}

/// The Flagsmith environments' snapshots. The key set is fixed by the configuration.
pub struct FlagsmithRegistry {
    slots: Vec<Slot>,
    by_client: HashMap<String, usize>,
    by_server: HashMap<String, usize>,
    max_age: Duration,
}

impl std::fmt::Debug for FlagsmithRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlagsmithRegistry")
            .field("environments", &self.slots.len())
            .finish_non_exhaustive()
    }
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl FlagsmithRegistry {
    /// A registry for `(server key, client key)` pairs in configured order. Health calls the
    /// data stale after `poll_frequency + grace × environments`, like the reference.
    pub fn new(pairs: &[(String, String)], poll_frequency: Duration, grace: Duration) -> Self {
        let mut by_client = HashMap::new();
        let mut by_server = HashMap::new();
        let slots = pairs
            .iter()
            .enumerate()
            .map(|(i, (server, client))| {
                by_server.insert(server.clone(), i);
                by_client.insert(client.clone(), i);
                Slot {
                    client_key: client.clone(),
                    snapshot: ArcSwapOption::empty(),
                    last_success_millis: AtomicU64::new(0),
                    last_error: Mutex::new(None),
                }
            })
            .collect::<Vec<_>>();
        let count = u32::try_from(slots.len()).unwrap_or(u32::MAX);
        Self {
            max_age: poll_frequency + grace.saturating_mul(count),
            slots,
            by_client,
            by_server,
        }
    }

    /// Number of configured environments.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when no environment is configured (the Flagsmith API is off).
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Resolves a request key: `ser.` keys against server-side keys, anything else against
    /// client-side keys.
    pub fn lookup(&self, key: &str) -> KeyLookup {
        let (index, server) = if key.starts_with("ser.") {
            (self.by_server.get(key), true)
        } else {
            (self.by_client.get(key), false)
        };
        let Some(slot) = index.and_then(|i| self.slots.get(*i)) else {
            return KeyLookup::Unknown;
        };
        match slot.snapshot.load_full() {
            Some(snapshot) => KeyLookup::Ready { snapshot, server },
            None => KeyLookup::NotLoaded(slot.client_key.clone()),
        }
    }

    /// The current snapshot of environment `index`.
    pub fn snapshot(&self, index: usize) -> Option<Arc<EnvironmentSnapshot>> {
        self.slots.get(index).and_then(|s| s.snapshot.load_full())
    }

    /// Installs a new snapshot for environment `index` and records a successful update.
    pub fn install(&self, index: usize, snapshot: EnvironmentSnapshot) {
        self.install_at(index, snapshot, now_millis());
    }

    /// Installs a snapshot that was confirmed up to date at `confirmed_at_millis` (Unix ms):
    /// a document loaded from the shared store is as fresh as the holder's last confirmation,
    /// not as fresh as the moment it was loaded.
    pub fn install_at(
        &self,
        index: usize,
        snapshot: EnvironmentSnapshot,
        confirmed_at_millis: u64,
    ) {
        if let Some(slot) = self.slots.get(index) {
            tracing::info!(
                environment = %mask_key(&slot.client_key),
                name = %snapshot.document.name,
                features = snapshot.features.len(),
                "serving new Flagsmith environment document"
            );
            slot.snapshot.store(Some(Arc::new(snapshot)));
        }
        self.record_success_at(index, confirmed_at_millis);
    }

    /// Records that environment `index` was confirmed up to date.
    pub fn record_success(&self, index: usize) {
        self.record_success_at(index, now_millis());
    }

    /// Records that environment `index` was confirmed up to date at `millis` (Unix ms) — by
    /// the replica holding the lease, when this one follows the shared store. Never moves the
    /// time backwards.
    pub fn record_success_at(&self, index: usize, millis: u64) {
        if let Some(slot) = self.slots.get(index) {
            slot.last_success_millis
                .fetch_max(millis, Ordering::Relaxed);
            *lock(&slot.last_error) = None;
        }
    }

    /// The environment's label for logs and metrics: its client-side key, masked.
    pub fn label(&self, index: usize) -> String {
        self.slots
            .get(index)
            .map_or_else(String::new, |slot| mask_key(&slot.client_key))
    }

    /// Per environment (label, seconds since the document was last confirmed up to date);
    /// `None` until it was.
    pub fn document_ages(&self) -> Vec<(String, Option<f64>)> {
        let now = now_millis();
        self.slots
            .iter()
            .map(|slot| {
                let last = slot.last_success_millis.load(Ordering::Relaxed);
                let age = (last != 0).then(|| now.saturating_sub(last) as f64 / 1000.0);
                (mask_key(&slot.client_key), age)
            })
            .collect()
    }

    /// Records a failed update of environment `index`; its snapshot stays.
    pub fn record_failure(&self, index: usize, error: String) {
        if let Some(slot) = self.slots.get(index) {
            *lock(&slot.last_error) = Some(error);
        }
    }

    /// Why `/readyz` should not be ready yet: environments never loaded.
    pub fn not_ready_reasons(&self) -> Vec<String> {
        self.slots
            .iter()
            .filter(|slot| slot.snapshot.load().is_none())
            .map(|slot| {
                let error = lock(&slot.last_error)
                    .as_ref()
                    .map(|e| format!(" (last error: {e})"))
                    .unwrap_or_default();
                format!(
                    "flagsmith environment {}: document not loaded yet{error}",
                    mask_key(&slot.client_key)
                )
            })
            .collect()
    }

    /// The reference's health semantics over every environment: not updated until each
    /// one has loaded; stale when the oldest successful update is too old.
    pub fn health(&self) -> Health {
        let mut oldest = u64::MAX;
        for slot in &self.slots {
            let last = slot.last_success_millis.load(Ordering::Relaxed);
            if last == 0 || slot.snapshot.load().is_none() {
                return Health::NotUpdated;
            }
            oldest = oldest.min(last);
        }
        if oldest == u64::MAX {
            return Health::NotUpdated;
        }
        let age = now_millis().saturating_sub(oldest);
        if u128::from(age) > self.max_age.as_millis() {
            Health::Stale(oldest)
        } else {
            Health::Ok(oldest)
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flagsmith::engine::Trait;

    const DOC: &str = r#"{"api_key":"client_key","name":"Development","updated_at":"2024-05-01T10:20:30Z",
      "project":{"segments":[],"hide_disabled_flags":true,"server_key_only_feature_ids":[3]},
      "feature_states":[
        {"feature":{"id":1,"name":"a","type":"STANDARD"},"enabled":true,"feature_state_value":"x","django_id":11},
        {"feature":{"id":2,"name":"b"},"enabled":false,"feature_state_value":null,"django_id":12},
        {"feature":{"id":3,"name":"c","type":"STANDARD"},"enabled":true,"feature_state_value":7,"django_id":13}]}"#;

    #[test]
    fn snapshot_precomputes_filtered_bodies() {
        let s = EnvironmentSnapshot::build(DOC.as_bytes()).unwrap();
        assert_eq!(
            std::str::from_utf8(&s.flags_client).unwrap(),
            r#"[{"feature":{"id":1,"name":"a","type":"STANDARD"},"enabled":true,"feature_state_value":"x"}]"#
        );
        let server: Vec<Value> = serde_json::from_slice(&s.flags_server).unwrap();
        assert_eq!(server.len(), 3);
        assert_eq!(server[1]["feature"]["type"], "STANDARD");
        assert!(!s.single_flags["c"].1);
        assert!(s.single_flags["a"].1);
        assert!(s
            .document_json
            .starts_with(br#"{"api_key":"client_key","name""#));
    }

    /// Segments, a multivariate feature, an identity override, a duplicate feature name,
    /// server-only and hidden disabled flags, non-ASCII and float values.
    const RICH_DOC: &str = r#"{"api_key":"ck","name":"Env",
      "project":{"hide_disabled_flags":true,"server_key_only_feature_ids":[3],"segments":[
        {"id":10,"name":"gold","rules":[{"type":"ALL","conditions":[],"rules":[{"type":"ANY","rules":[],
          "conditions":[{"operator":"EQUAL","property_":"plan","value":"gold"}]}]}],
         "feature_states":[
          {"feature":{"id":1,"name":"a","type":"STANDARD"},"enabled":false,"feature_state_value":"seg\u00e9\"q","django_id":21,"feature_segment":{"priority":1}},
          {"feature":{"id":2,"name":"b"},"enabled":true,"feature_state_value":1.5,"django_id":22,"feature_segment":{"priority":1}}]}]},
      "feature_states":[
        {"feature":{"id":1,"name":"a","type":"STANDARD"},"enabled":true,"feature_state_value":"x","django_id":11},
        {"feature":{"id":2,"name":"b"},"enabled":false,"feature_state_value":null,"django_id":12},
        {"feature":{"id":3,"name":"c","type":"STANDARD"},"enabled":true,"feature_state_value":7,"django_id":13},
        {"feature":{"id":5,"name":"a","type":"STANDARD"},"enabled":true,"feature_state_value":"dup","django_id":15},
        {"feature":{"id":4,"name":"mv","type":"MULTIVARIATE"},"enabled":true,"feature_state_value":"control","django_id":14,
         "multivariate_feature_state_values":[
          {"id":1,"percentage_allocation":50.0,"multivariate_feature_option":{"id":1,"value":"red"}},
          {"id":2,"percentage_allocation":50.0,"multivariate_feature_option":{"id":2,"value":{"k":[1,2]}}}]}],
      "identity_overrides":[{"identifier":"vip","identity_features":[
        {"feature":{"id":2,"name":"b"},"enabled":true,"feature_state_value":"vip","featurestate_uuid":"u"}]}]}"#;

    #[test]
    fn written_identity_flags_match_the_json_tree() {
        let s = EnvironmentSnapshot::build(RICH_DOC.as_bytes()).unwrap();
        let gold = [Trait {
            trait_key: "plan".to_owned(),
            trait_value: json!("gold"),
        }];
        let mut checked = 0;
        for identifier in ["u1", "u2", "u3", "vip", "ü"] {
            for traits in [&[][..], &gold[..]] {
                let identity = IdentityContext::from_traits(identifier, traits);
                for server in [false, true] {
                    let mut written = Vec::new();
                    s.write_identity_flags(&identity, server, &mut written);
                    let tree = serde_json::to_vec(&s.identity_flags(&identity, server)).unwrap();
                    assert_eq!(
                        String::from_utf8(written).unwrap(),
                        String::from_utf8(tree).unwrap(),
                        "{identifier} {server}"
                    );
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 20);
        // The cases above are not trivial: client keys lose flags, segments apply.
        let identity = IdentityContext::from_traits("u1", &gold);
        let (client, server) = (
            s.identity_flags(&identity, false),
            s.identity_flags(&identity, true),
        );
        assert!(client.len() < server.len());
        assert_eq!(server[1]["feature_state_value"], json!(1.5));
    }

    #[test]
    fn bad_documents_are_rejected() {
        assert!(matches!(
            EnvironmentSnapshot::build(b"nope"),
            Err(DocumentError::Json(_))
        ));
        assert!(matches!(
            EnvironmentSnapshot::build(b"[]"),
            Err(DocumentError::Shape(_))
        ));
    }

    #[test]
    fn lookup_by_client_or_server_key_and_health() {
        let pairs = vec![("ser.s".to_string(), "c".to_string())];
        let r = FlagsmithRegistry::new(&pairs, Duration::from_secs(10), Duration::from_secs(30));
        assert!(matches!(r.lookup("c"), KeyLookup::NotLoaded(k) if k == "c"));
        assert!(matches!(r.lookup("ser.x"), KeyLookup::Unknown));
        assert!(matches!(r.lookup("s"), KeyLookup::Unknown));
        assert_eq!(r.health(), Health::NotUpdated);
        assert_eq!(r.not_ready_reasons().len(), 1);
        r.install(0, EnvironmentSnapshot::build(DOC.as_bytes()).unwrap());
        assert!(matches!(
            r.lookup("ser.s"),
            KeyLookup::Ready { server: true, .. }
        ));
        assert!(matches!(
            r.lookup("c"),
            KeyLookup::Ready { server: false, .. }
        ));
        assert!(matches!(r.health(), Health::Ok(_)));
        assert!(r.not_ready_reasons().is_empty());
    }
}
