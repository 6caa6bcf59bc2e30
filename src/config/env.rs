//! The environment variables that set configuration fields, as an explicit table.
//!
//! `FLAGSMITH_*` variables are named after the Flagsmith Edge Proxy's settings (`API_URL`,
//! `API_POLL_FREQUENCY_SECONDS`, …), prefixed so that they cannot clash with other software.
//!
//! The names are not mechanical (`AMPLITUDE_EXPERIMENT_MANAGEMENT_API_KEY`), so each one is
//! mapped to its field path by hand. The table doubles as documentation.

/// Environment variable naming the config file.
pub const CONFIG_PATH_ENV: &str = "PROXY_CONFIG_FILE_PATH";
/// Environment variable naming a separate projects file (reference compatibility).
pub const PROJECTS_PATH_ENV: &str = "PROXY_PROJECTS_FILE_PATH";
/// Config file read when neither `--config` nor `PROXY_CONFIG_FILE_PATH` names one.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/evaluation-proxy-config.yaml";

/// `AMPLITUDE_*` variable -> field path under the file root. Each one overrides the file's value.
pub const ENV_VARS: &[(&str, &str)] = &[
    ("AMPLITUDE_HOST", "configuration.host"),
    ("AMPLITUDE_PORT", "configuration.port"),
    ("AMPLITUDE_SERVER_ZONE", "configuration.serverZone"),
    ("AMPLITUDE_SERVER_URL", "configuration.serverUrl"),
    (
        "AMPLITUDE_COHORT_SERVER_URL",
        "configuration.cohortServerUrl",
    ),
    (
        "AMPLITUDE_MANAGEMENT_SERVER_URL",
        "configuration.managementServerUrl",
    ),
    (
        "AMPLITUDE_ANALYTICS_SERVER_URL",
        "configuration.analyticsServerUrl",
    ),
    (
        "AMPLITUDE_DEPLOYMENT_SYNC_INTERVAL_MILLIS",
        "configuration.deploymentSyncIntervalMillis",
    ),
    (
        "AMPLITUDE_FLAG_SYNC_INTERVAL_MILLIS",
        "configuration.flagSyncIntervalMillis",
    ),
    (
        "AMPLITUDE_COHORT_SYNC_INTERVAL_MILLIS",
        "configuration.cohortSyncIntervalMillis",
    ),
    ("AMPLITUDE_MAX_COHORT_SIZE", "configuration.maxCohortSize"),
    (
        "AMPLITUDE_FLAG_SYNC_JITTER_PERCENT",
        "configuration.flagSyncJitterPercent",
    ),
    (
        "AMPLITUDE_SHUTDOWN_GRACE_PERIOD_MILLIS",
        "configuration.shutdownGracePeriodMillis",
    ),
    (
        "AMPLITUDE_MAX_REQUEST_BODY_BYTES",
        "configuration.maxRequestBodyBytes",
    ),
    ("AMPLITUDE_LOG_LEVEL", "configuration.logLevel"),
    ("AMPLITUDE_LOG_FORMAT", "configuration.logFormat"),
    (
        "AMPLITUDE_CORS_ALLOWED_ORIGINS",
        "configuration.cors.allowedOrigins",
    ),
    (
        "AMPLITUDE_ASSIGNMENT_FILTER_CAPACITY",
        "configuration.assignment.filterCapacity",
    ),
    (
        "AMPLITUDE_ASSIGNMENT_EVENT_UPLOAD_THRESHOLD",
        "configuration.assignment.eventUploadThreshold",
    ),
    (
        "AMPLITUDE_ASSIGNMENT_EVENT_UPLOAD_PERIOD_MILLIS",
        "configuration.assignment.eventUploadPeriodMillis",
    ),
    (
        "AMPLITUDE_ASSIGNMENT_USE_BATCH_MODE",
        "configuration.assignment.useBatchMode",
    ),
    (
        "AMPLITUDE_ASSIGNMENT_QUEUE_CAPACITY",
        "configuration.assignment.queueCapacity",
    ),
    ("AMPLITUDE_REDIS_URI", "configuration.redis.uri"),
    (
        "AMPLITUDE_REDIS_READ_ONLY_URI",
        "configuration.redis.readOnlyUri",
    ),
    (
        "AMPLITUDE_REDIS_USE_CLUSTER",
        "configuration.redis.useCluster",
    ),
    ("AMPLITUDE_REDIS_READ_FROM", "configuration.redis.readFrom"),
    ("AMPLITUDE_REDIS_PREFIX", "configuration.redis.prefix"),
    (
        "AMPLITUDE_REDIS_SCAN_LIMIT",
        "configuration.redis.scanLimit",
    ),
    (
        "AMPLITUDE_REDIS_CONNECTION_TIMEOUT_MILLIS",
        "configuration.redis.connectionTimeoutMillis",
    ),
    (
        "AMPLITUDE_REDIS_COMMAND_TIMEOUT_MILLIS",
        "configuration.redis.commandTimeoutMillis",
    ),
    (
        "AMPLITUDE_REDIS_PIPELINE_BATCH_SIZE",
        "configuration.redis.pipelineBatchSize",
    ),
    (
        "AMPLITUDE_REDIS_LEASE_TTL_MILLIS",
        "configuration.redis.leaseTtlMillis",
    ),
    ("AMPLITUDE_METRICS_PORT", "configuration.metrics.port"),
    ("AMPLITUDE_METRICS_PATH", "configuration.metrics.path"),
    (
        "AMPLITUDE_METRICS_LOG_FAILURES",
        "configuration.metrics.logFailures",
    ),
    ("FLAGSMITH_API_URL", "configuration.flagsmith.apiUrl"),
    (
        "FLAGSMITH_API_POLL_FREQUENCY_SECONDS",
        "configuration.flagsmith.apiPollFrequencySeconds",
    ),
    (
        "FLAGSMITH_API_POLL_TIMEOUT_SECONDS",
        "configuration.flagsmith.apiPollTimeoutSeconds",
    ),
    (
        "FLAGSMITH_ENVIRONMENT_UPDATE_GRACE_PERIOD_SECONDS",
        "configuration.flagsmith.environmentUpdateGracePeriodSeconds",
    ),
];

/// Variable holding the Flagsmith environments as JSON text, in the reference's
/// `ENVIRONMENT_KEY_PAIRS` format (`[{"server_side_key":"ser.…","client_side_key":"…"}]`; the
/// camelCase keys of the file work too). It replaces `configuration.flagsmith.environments`.
pub const FLAGSMITH_ENVIRONMENTS_ENV: (&str, &str) = (
    "FLAGSMITH_ENVIRONMENT_KEY_PAIRS",
    "configuration.flagsmith.environments",
);

/// `AMPLITUDE_*` variable -> key of the single env-defined project (see the module docs of
/// [`crate::config`] for when they apply).
pub const PROJECT_ENV_VARS: &[(&str, &str)] = &[
    ("AMPLITUDE_API_KEY", "apiKey"),
    ("AMPLITUDE_SECRET_KEY", "secretKey"),
    ("AMPLITUDE_EXPERIMENT_MANAGEMENT_API_KEY", "managementKey"),
];
