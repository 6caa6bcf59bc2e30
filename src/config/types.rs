//! The typed, validated configuration handed to the rest of the proxy.
//!
//! Values here are final: defaults applied, zone URLs derived, paths resolved and every field
//! checked. Build it with [`Config::load`](super::Config::load); `Default` exists for tests.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use super::secret::{redact_url, RedisUri, Secret};

/// The whole configuration: the projects to serve and the service settings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    /// Amplitude projects served by this proxy (at least one after loading).
    pub projects: Vec<ProjectConfig>,
    /// Service-wide settings (`configuration:` in the file).
    pub configuration: Configuration,
}

/// One Amplitude project and where its deployments come from.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectConfig {
    /// Project analytics API key: authenticates cohort downloads and assignment uploads.
    /// `None` only for a local-mode project (every deployment has a `flags_file`).
    pub api_key: Option<Secret>,
    /// Project secret key, paired with `api_key` for cohort downloads. `None` only in local mode.
    pub secret_key: Option<Secret>,
    /// Where the project's deployments come from.
    pub deployments: DeploymentSource,
}

impl ProjectConfig {
    /// True when every deployment is served from a flags file (no Amplitude API is called).
    pub fn is_local(&self) -> bool {
        match &self.deployments {
            DeploymentSource::Management { .. } => false,
            DeploymentSource::Listed(list) => list.iter().all(|d| d.flags_file.is_some()),
        }
    }
}

/// How a project learns its deployments.
#[derive(Debug, Clone, PartialEq)]
pub enum DeploymentSource {
    /// Listed periodically from the management API with this key (`managementKey`).
    Management {
        /// Experiment management API key.
        management_key: Secret,
    },
    /// A fixed list from the file (`deployments:`); never empty.
    Listed(Vec<DeploymentConfig>),
}

/// One deployment named in the file (`projects[].deployments[]`).
#[derive(Debug, Clone, PartialEq)]
pub struct DeploymentConfig {
    /// The deployment key SDKs send (`client-...` / `server-...`).
    pub key: Secret,
    /// A `/sdk/v2/flags` JSON array served instead of fetching from `serverUrl`; reloaded when it
    /// changes. Relative paths are already resolved against the config file's directory.
    pub flags_file: Option<PathBuf>,
}

/// Amplitude data-centre zone; selects the default upstream URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServerZone {
    /// United States (default).
    #[default]
    Us,
    /// European Union: all four default URLs switch to the EU hosts.
    Eu,
}

impl ServerZone {
    /// Default flags API URL for the zone.
    pub fn server_url(self) -> &'static str {
        match self {
            ServerZone::Us => "https://flag.lab.amplitude.com",
            ServerZone::Eu => "https://flag.lab.eu.amplitude.com",
        }
    }

    /// Default cohort download API URL for the zone.
    pub fn cohort_server_url(self) -> &'static str {
        match self {
            ServerZone::Us => "https://cohort-v2.lab.amplitude.com",
            ServerZone::Eu => "https://cohort-v2.lab.eu.amplitude.com",
        }
    }

    /// Default management API URL for the zone.
    pub fn management_server_url(self) -> &'static str {
        match self {
            ServerZone::Us => "https://experiment.amplitude.com",
            ServerZone::Eu => "https://experiment.eu.amplitude.com",
        }
    }

    /// Default analytics upload URL (full URL, path included) for the zone.
    pub fn analytics_server_url(self) -> &'static str {
        match self {
            ServerZone::Us => "https://api2.amplitude.com/2/httpapi",
            ServerZone::Eu => "https://api.eu.amplitude.com/2/httpapi",
        }
    }
}

/// An upstream http(s) URL. Any path prefix is kept (unlike the reference, which drops it).
///
/// `Debug`/`Display` redact user-info.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerUrl(Url);

impl ServerUrl {
    /// Parses a base URL (flags, cohort or management API): http(s) with a host, no query or
    /// fragment; a path prefix is kept and its trailing slash dropped. The error message never
    /// contains the URL (it may hold credentials).
    pub fn parse_base(text: &str) -> Result<Self, String> {
        let mut url = Self::parse_http(text)?;
        if url.query().is_some() || url.fragment().is_some() {
            return Err("must not contain a query or fragment".to_string());
        }
        let trimmed = url.path().trim_end_matches('/').to_string();
        url.set_path(&trimmed);
        Ok(ServerUrl(url))
    }

    /// Parses a full URL used verbatim (the analytics upload URL): http(s) with a host.
    pub fn parse_full(text: &str) -> Result<Self, String> {
        Self::parse_http(text).map(ServerUrl)
    }

    fn parse_http(text: &str) -> Result<Url, String> {
        let url = Url::parse(text.trim()).map_err(|e| format!("invalid URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
            return Err("must be an http or https URL".to_string());
        }
        Ok(url)
    }

    /// Builds one of the zone default URLs (compile-time constants).
    pub(super) fn from_static(url: &'static str) -> Self {
        // The argument is one of the constants in `ServerZone`, all valid URLs.
        #[allow(clippy::expect_used)]
        let url = Url::parse(url).expect("zone default URLs are valid");
        ServerUrl(url)
    }

    /// The URL as configured.
    pub fn url(&self) -> &Url {
        &self.0
    }

    /// Joins the configured path prefix and a fixed API path, e.g.
    /// `https://host/prefix` + `/sdk/v2/flags` = `https://host/prefix/sdk/v2/flags`.
    ///
    /// `path` is a path only (add a query with `query_pairs_mut`); segments that come from
    /// user input must already be percent-encoded.
    pub fn endpoint(&self, path: &str) -> Url {
        let mut url = self.0.clone();
        let joined = format!(
            "{}/{}",
            url.path().trim_end_matches('/'),
            path.trim_start_matches('/')
        );
        url.set_path(&joined);
        url
    }
}

impl fmt::Debug for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", redact_url(&self.0))
    }
}

impl fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

/// Log output format (`logFormat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines (default).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Service-wide settings: the `configuration:` section.
#[derive(Debug, Clone, PartialEq)]
pub struct Configuration {
    /// Bind address for both servers (extension; default `0.0.0.0`).
    pub host: IpAddr,
    /// Main HTTP port (default 3546).
    pub port: u16,
    /// Zone that chose the default URLs.
    pub server_zone: ServerZone,
    /// Flags API base URL.
    pub server_url: ServerUrl,
    /// Cohort download API base URL.
    pub cohort_server_url: ServerUrl,
    /// Management API base URL.
    pub management_server_url: ServerUrl,
    /// Assignment event upload URL, used verbatim (full URL).
    pub analytics_server_url: ServerUrl,
    /// How often each project lists its deployments (default 120000).
    pub deployment_sync_interval_millis: u64,
    /// How often each deployment fetches flags (default 60000).
    pub flag_sync_interval_millis: u64,
    /// How often cohorts are refreshed; also the TTL of superseded cohort keys (default 120000).
    pub cohort_sync_interval_millis: u64,
    /// Cohorts larger than this are not downloaded (default 2147483647).
    pub max_cohort_size: u64,
    /// Random jitter added to sync intervals, in percent of the interval (extension; default 10).
    pub flag_sync_jitter_percent: u8,
    /// How long shutdown waits for in-flight work and the final event flush (extension; 10000).
    pub shutdown_grace_period_millis: u64,
    /// Largest accepted request body in bytes (extension; default 1048576).
    pub max_request_body_bytes: usize,
    /// Log filter: a level (`info`) or a tracing directive list (extension of `AMPLITUDE_LOG_LEVEL`).
    pub log_level: String,
    /// Log line format (extension; default text).
    pub log_format: LogFormat,
    /// CORS for the SDK API (extension).
    pub cors: CorsConfig,
    /// Assignment tracking.
    pub assignment: AssignmentConfig,
    /// Shared storage; `None` means in-memory storage.
    pub redis: Option<RedisConfig>,
    /// Prometheus endpoint.
    pub metrics: MetricsConfig,
    /// Flagsmith Edge Proxy compatibility (`configuration.flagsmith`); no environments = off.
    pub flagsmith: FlagsmithConfig,
}

impl Default for Configuration {
    fn default() -> Self {
        let zone = ServerZone::default();
        Configuration {
            host: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 3546,
            server_zone: zone,
            server_url: ServerUrl::from_static(zone.server_url()),
            cohort_server_url: ServerUrl::from_static(zone.cohort_server_url()),
            management_server_url: ServerUrl::from_static(zone.management_server_url()),
            analytics_server_url: ServerUrl::from_static(zone.analytics_server_url()),
            deployment_sync_interval_millis: 120_000,
            flag_sync_interval_millis: 60_000,
            cohort_sync_interval_millis: 120_000,
            max_cohort_size: 2_147_483_647,
            flag_sync_jitter_percent: 10,
            shutdown_grace_period_millis: 10_000,
            max_request_body_bytes: 1_048_576,
            log_level: "info".to_string(),
            log_format: LogFormat::Text,
            cors: CorsConfig::default(),
            assignment: AssignmentConfig::default(),
            redis: None,
            metrics: MetricsConfig::default(),
            flagsmith: FlagsmithConfig::default(),
        }
    }
}

impl Configuration {
    /// Main server socket address (`host:port`).
    pub fn bind_addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
    }

    /// Metrics server socket address (`host:metrics.port`).
    pub fn metrics_bind_addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.metrics.port)
    }

    /// `deploymentSyncIntervalMillis` as a duration.
    pub fn deployment_sync_interval(&self) -> Duration {
        Duration::from_millis(self.deployment_sync_interval_millis)
    }

    /// `flagSyncIntervalMillis` as a duration.
    pub fn flag_sync_interval(&self) -> Duration {
        Duration::from_millis(self.flag_sync_interval_millis)
    }

    /// `cohortSyncIntervalMillis` as a duration.
    pub fn cohort_sync_interval(&self) -> Duration {
        Duration::from_millis(self.cohort_sync_interval_millis)
    }

    /// `shutdownGracePeriodMillis` as a duration.
    pub fn shutdown_grace_period(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_period_millis)
    }
}

/// Assignment tracking settings (`configuration.assignment`).
#[derive(Debug, Clone, PartialEq)]
pub struct AssignmentConfig {
    /// Entries in the per-replica dedup filter (default 1048576).
    pub filter_capacity: usize,
    /// Events per upload batch (default 100).
    pub event_upload_threshold: usize,
    /// Longest wait before a partial batch is uploaded (default 10000).
    pub event_upload_period_millis: u64,
    /// Accepted for compatibility; has no effect (also a no-op in the reference).
    pub use_batch_mode: bool,
    /// Bounded queue of events waiting for upload; overflow is dropped and counted (extension;
    /// default 65536).
    pub queue_capacity: usize,
}

impl Default for AssignmentConfig {
    fn default() -> Self {
        AssignmentConfig {
            filter_capacity: 1 << 20,
            event_upload_threshold: 100,
            event_upload_period_millis: 10_000,
            use_batch_mode: true,
            queue_capacity: 65_536,
        }
    }
}

impl AssignmentConfig {
    /// `eventUploadPeriodMillis` as a duration.
    pub fn event_upload_period(&self) -> Duration {
        Duration::from_millis(self.event_upload_period_millis)
    }
}

/// Redis replica selection for cluster reads (`configuration.redis.readFrom`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadFrom {
    /// Any node (default).
    #[default]
    Any,
    /// Replicas when available, else the primary.
    ReplicaPreferred,
}

/// Redis settings; present only when `redis.uri` is set (`configuration.redis`).
#[derive(Debug, Clone, PartialEq)]
pub struct RedisConfig {
    /// Primary connection URI.
    pub uri: RedisUri,
    /// Read replica URI (defaults to `uri`).
    pub read_only_uri: RedisUri,
    /// Use Redis Cluster.
    pub use_cluster: bool,
    /// Cluster read preference.
    pub read_from: ReadFrom,
    /// Key prefix (default `amplitude`).
    pub prefix: String,
    /// SSCAN COUNT hint (default 10000).
    pub scan_limit: u64,
    /// Connect timeout (default 10000).
    pub connection_timeout_millis: u64,
    /// Per-command timeout (default 10000).
    pub command_timeout_millis: u64,
    /// Commands per pipeline flush (default 100).
    pub pipeline_batch_size: usize,
    /// TTL of each project's sync lease (default 10000); the holder renews it every third.
    pub lease_ttl_millis: u64,
}

impl RedisConfig {
    /// Default key prefix.
    pub const DEFAULT_PREFIX: &'static str = "amplitude";

    /// Settings with every default for the given URI (read-only URI = `uri`).
    pub fn with_uri(uri: RedisUri) -> Self {
        RedisConfig {
            read_only_uri: uri.clone(),
            uri,
            use_cluster: false,
            read_from: ReadFrom::Any,
            prefix: Self::DEFAULT_PREFIX.to_string(),
            scan_limit: 10_000,
            connection_timeout_millis: 10_000,
            command_timeout_millis: 10_000,
            pipeline_batch_size: 100,
            lease_ttl_millis: 10_000,
        }
    }

    /// `leaseTtlMillis` as a duration.
    pub fn lease_ttl(&self) -> Duration {
        Duration::from_millis(self.lease_ttl_millis)
    }

    /// `connectionTimeoutMillis` as a duration.
    pub fn connection_timeout(&self) -> Duration {
        Duration::from_millis(self.connection_timeout_millis)
    }

    /// `commandTimeoutMillis` as a duration.
    pub fn command_timeout(&self) -> Duration {
        Duration::from_millis(self.command_timeout_millis)
    }
}

/// Prometheus endpoint settings (`configuration.metrics`).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsConfig {
    /// Metrics server port (default 9090).
    pub port: u16,
    /// Route path without slashes (default `metrics`); see [`MetricsConfig::route`].
    pub path: String,
    /// Also log each failure that the failure counters record (default false).
    pub log_failures: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            port: 9090,
            path: "metrics".to_string(),
            log_failures: false,
        }
    }
}

impl MetricsConfig {
    /// The HTTP route: `/` + path.
    pub fn route(&self) -> String {
        format!("/{}", self.path)
    }
}

/// Browser CORS settings (`configuration.cors`, extension).
#[derive(Debug, Clone, PartialEq)]
pub struct CorsConfig {
    /// `*` (any origin, the default) or normalised origins such as `https://app.example.com`.
    /// Empty disables CORS headers.
    pub allowed_origins: Vec<String>,
}

impl Default for CorsConfig {
    fn default() -> Self {
        CorsConfig {
            allowed_origins: vec!["*".to_string()],
        }
    }
}

impl CorsConfig {
    /// True when any origin is allowed.
    pub fn allows_any(&self) -> bool {
        self.allowed_origins.iter().any(|o| o == "*")
    }
}

/// Flagsmith Edge Proxy settings (`configuration.flagsmith`), named after the reference's
/// `api_url`, `api_poll_frequency_seconds`, `api_poll_timeout_seconds`,
/// `health_check.environment_update_grace_period_seconds` and `environment_key_pairs`.
#[derive(Debug, Clone, PartialEq)]
pub struct FlagsmithConfig {
    /// Flagsmith API base URL, trailing slash removed
    /// (default `https://edge.api.flagsmith.com/api/v1`).
    pub api_url: ServerUrl,
    /// Pause between two polls of an environment document (default 10).
    pub api_poll_frequency_seconds: u64,
    /// Timeout of one poll request (default 5).
    pub api_poll_timeout_seconds: u64,
    /// Health turns 503 when documents are older than
    /// `api_poll_frequency_seconds + this × environments` (default 30).
    pub environment_update_grace_period_seconds: u64,
    /// The environments served; empty means the Flagsmith API is off.
    pub environments: Vec<FlagsmithEnvironment>,
}

impl FlagsmithConfig {
    /// The reference's default API URL.
    pub const DEFAULT_API_URL: &'static str = "https://edge.api.flagsmith.com/api/v1";
}

impl Default for FlagsmithConfig {
    fn default() -> Self {
        FlagsmithConfig {
            api_url: ServerUrl::from_static(Self::DEFAULT_API_URL),
            api_poll_frequency_seconds: 10,
            api_poll_timeout_seconds: 5,
            environment_update_grace_period_seconds: 30,
            environments: Vec::new(),
        }
    }
}

/// One Flagsmith environment (`configuration.flagsmith.environments[]`).
#[derive(Debug, Clone, PartialEq)]
pub struct FlagsmithEnvironment {
    /// Server-side key (`ser.…`): authenticates the document poll; unlocks server-only flags
    /// and the environment document for SDKs.
    pub server_side_key: Secret,
    /// Client-side key SDKs send.
    pub client_side_key: Secret,
    /// An environment document served instead of polling `api_url`; reloaded when it changes.
    /// Relative paths are already resolved against the config file's directory.
    pub document_file: Option<PathBuf>,
}
