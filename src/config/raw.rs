//! The file-shaped configuration tree, before defaults and validation.
//!
//! Every field is optional and every scalar is kept as a [`Scalar`], so that type and range
//! errors are produced by the validator with the field's path (or env var) in the message.
//! No `Debug` here: these structs hold unredacted secrets.

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

/// A YAML/JSON scalar as written; numbers keep their text.
pub(super) enum Scalar {
    /// A string (also every env value).
    Str(String),
    /// A number, as decimal text.
    Num(String),
    /// A boolean.
    Bool(bool),
}

impl Scalar {
    /// The scalar as text, whatever its kind.
    pub(super) fn text(&self) -> String {
        match self {
            Scalar::Str(s) | Scalar::Num(s) => s.clone(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl Visitor<'_> for ScalarVisitor {
    type Value = Scalar;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, number or boolean")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
        Ok(Scalar::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
        Ok(Scalar::Num(v.to_string()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
        Ok(Scalar::Num(v.to_string()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
        Ok(Scalar::Num(v.to_string()))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
        Ok(Scalar::Str(v.to_string()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar, E> {
        Ok(Scalar::Str(v))
    }
}

/// A list of scalars, also accepted as one comma-separated string (the env form).
pub(super) struct ScalarList(pub(super) Vec<Scalar>);

impl<'de> Deserialize<'de> for ScalarList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarListVisitor)
    }
}

struct ScalarListVisitor;

impl<'de> Visitor<'de> for ScalarListVisitor {
    type Value = ScalarList;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list or a comma-separated string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<ScalarList, E> {
        let items = v
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| Scalar::Str(s.to_string()))
            .collect();
        Ok(ScalarList(items))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ScalarList, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Scalar>()? {
            items.push(item);
        }
        Ok(ScalarList(items))
    }
}

/// Wraps a section so that it is accepted only as a map (derived structs also take sequences).
struct MapOnly<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for MapOnly<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_map(MapOnlyVisitor(std::marker::PhantomData))
            .map(MapOnly)
    }
}

struct MapOnlyVisitor<T>(std::marker::PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for MapOnlyVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map")
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::deserialize(de::value::MapAccessDeserializer::new(map))
    }
}

/// An optional section that must be a map.
fn section<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<MapOnly<T>>::deserialize(deserializer).map(|o| o.map(|m| m.0))
}

/// An optional list of sections that must be maps.
fn sections<'de, D, T>(deserializer: D) -> Result<Option<Vec<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<Vec<MapOnly<T>>>::deserialize(deserializer)
        .map(|o| o.map(|list| list.into_iter().map(|m| m.0).collect()))
}

/// The whole file.
#[derive(Default, Deserialize)]
#[serde(
    rename_all = "camelCase",
    expecting = "a map with `projects` and `configuration`"
)]
pub(super) struct RawConfig {
    #[serde(default, deserialize_with = "sections")]
    pub projects: Option<Vec<RawProject>>,
    #[serde(default, deserialize_with = "section")]
    pub configuration: Option<RawConfiguration>,
}

/// `projects[]`.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", expecting = "a map")]
pub(super) struct RawProject {
    #[serde(default)]
    pub api_key: Option<Scalar>,
    #[serde(default)]
    pub secret_key: Option<Scalar>,
    #[serde(default)]
    pub management_key: Option<Scalar>,
    #[serde(default, deserialize_with = "sections")]
    pub deployments: Option<Vec<RawDeployment>>,
}

/// `projects[].deployments[]`.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", expecting = "a map")]
pub(super) struct RawDeployment {
    #[serde(default)]
    pub key: Option<Scalar>,
    #[serde(default)]
    pub flags_file: Option<Scalar>,
}

/// `configuration`.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", expecting = "a map")]
pub(super) struct RawConfiguration {
    #[serde(default)]
    pub host: Option<Scalar>,
    #[serde(default)]
    pub port: Option<Scalar>,
    #[serde(default)]
    pub server_zone: Option<Scalar>,
    #[serde(default)]
    pub server_url: Option<Scalar>,
    #[serde(default)]
    pub cohort_server_url: Option<Scalar>,
    #[serde(default)]
    pub management_server_url: Option<Scalar>,
    #[serde(default)]
    pub analytics_server_url: Option<Scalar>,
    #[serde(default)]
    pub deployment_sync_interval_millis: Option<Scalar>,
    #[serde(default)]
    pub flag_sync_interval_millis: Option<Scalar>,
    #[serde(default)]
    pub cohort_sync_interval_millis: Option<Scalar>,
    #[serde(default)]
    pub max_cohort_size: Option<Scalar>,
    #[serde(default)]
    pub flag_sync_jitter_percent: Option<Scalar>,
    #[serde(default)]
    pub shutdown_grace_period_millis: Option<Scalar>,
    #[serde(default)]
    pub max_request_body_bytes: Option<Scalar>,
    #[serde(default)]
    pub log_level: Option<Scalar>,
    #[serde(default)]
    pub log_format: Option<Scalar>,
    #[serde(default, deserialize_with = "section")]
    pub cors: Option<RawCors>,
    #[serde(default, deserialize_with = "section")]
    pub assignment: Option<RawAssignment>,
    #[serde(default, deserialize_with = "section")]
    pub redis: Option<RawRedis>,
    #[serde(default, deserialize_with = "section")]
    pub metrics: Option<RawMetrics>,
    #[serde(default, deserialize_with = "section")]
    pub flagsmith: Option<RawFlagsmith>,
}

/// `configuration.flagsmith`.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", expecting = "a map")]
pub(super) struct RawFlagsmith {
    #[serde(default)]
    pub api_url: Option<Scalar>,
    #[serde(default)]
    pub api_poll_frequency_seconds: Option<Scalar>,
    #[serde(default)]
    pub api_poll_timeout_seconds: Option<Scalar>,
    #[serde(default)]
    pub environment_update_grace_period_seconds: Option<Scalar>,
    #[serde(default, deserialize_with = "sections")]
    pub environments: Option<Vec<RawFlagsmithEnvironment>>,
}

/// `configuration.flagsmith.environments[]`; the reference's snake_case keys
/// (`server_side_key`, `client_side_key`) are accepted too, so its `ENVIRONMENT_KEY_PAIRS`
/// JSON can be pasted as is.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", expecting = "a map")]
pub(super) struct RawFlagsmithEnvironment {
    #[serde(default, alias = "server_side_key")]
    pub server_side_key: Option<Scalar>,
    #[serde(default, alias = "client_side_key")]
    pub client_side_key: Option<Scalar>,
    #[serde(default, alias = "document_file")]
    pub document_file: Option<Scalar>,
}

/// `configuration.cors`.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", expecting = "a map")]
pub(super) struct RawCors {
    #[serde(default)]
    pub allowed_origins: Option<ScalarList>,
}

/// `configuration.assignment`.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", expecting = "a map")]
pub(super) struct RawAssignment {
    #[serde(default)]
    pub filter_capacity: Option<Scalar>,
    #[serde(default)]
    pub event_upload_threshold: Option<Scalar>,
    #[serde(default)]
    pub event_upload_period_millis: Option<Scalar>,
    #[serde(default)]
    pub use_batch_mode: Option<Scalar>,
    #[serde(default)]
    pub queue_capacity: Option<Scalar>,
}

/// `configuration.redis`.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", expecting = "a map")]
pub(super) struct RawRedis {
    #[serde(default)]
    pub uri: Option<Scalar>,
    #[serde(default)]
    pub read_only_uri: Option<Scalar>,
    #[serde(default)]
    pub use_cluster: Option<Scalar>,
    #[serde(default)]
    pub read_from: Option<Scalar>,
    #[serde(default)]
    pub prefix: Option<Scalar>,
    #[serde(default)]
    pub scan_limit: Option<Scalar>,
    #[serde(default)]
    pub connection_timeout_millis: Option<Scalar>,
    #[serde(default)]
    pub command_timeout_millis: Option<Scalar>,
    #[serde(default)]
    pub pipeline_batch_size: Option<Scalar>,
    #[serde(default)]
    pub lease_ttl_millis: Option<Scalar>,
}

impl RawRedis {
    /// True when any setting other than `uri` is present.
    pub(super) fn has_settings(&self) -> bool {
        [
            &self.read_only_uri,
            &self.use_cluster,
            &self.read_from,
            &self.prefix,
            &self.scan_limit,
            &self.connection_timeout_millis,
            &self.command_timeout_millis,
            &self.pipeline_batch_size,
            &self.lease_ttl_millis,
        ]
        .iter()
        .any(|v| v.is_some())
    }
}

/// `configuration.metrics`.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", expecting = "a map")]
pub(super) struct RawMetrics {
    #[serde(default)]
    pub port: Option<Scalar>,
    #[serde(default)]
    pub path: Option<Scalar>,
    #[serde(default)]
    pub log_failures: Option<Scalar>,
}
