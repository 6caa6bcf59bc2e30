//! The one typed configuration of the proxy.
//!
//! # Sources and precedence
//!
//! `defaults < file < AMPLITUDE_* environment`, per field. The file is the one named by
//! `--config`, else by `PROXY_CONFIG_FILE_PATH`, else `/etc/evaluation-proxy-config.yaml`. Its
//! extension picks the format (`.yaml`/`.yml`: YAML, `.json`: JSON; anything else is an error
//! naming the file). A missing file at the default path is fine when the environment defines a
//! project; a missing file named explicitly is an error. `PROXY_PROJECTS_FILE_PATH`, when set to
//! another file, supplies `projects` (as in the reference); relative `flagsFile` paths resolve
//! against the directory of the file that lists them.
//!
//! The schema is Amplitude's (`projects[]` and `configuration`, see
//! `examples/evaluation-proxy.yaml` for every field). Every configuration field has an env var,
//! listed in [`ENV_VARS`]; each one overrides the file's value for that field.
//!
//! # Projects from the environment
//!
//! `AMPLITUDE_API_KEY`, `AMPLITUDE_SECRET_KEY` and `AMPLITUDE_EXPERIMENT_MANAGEMENT_API_KEY`
//! ([`PROJECT_ENV_VARS`]):
//! - the file lists no project (or there is no file): they define the single project, and a
//!   missing one is reported by its variable name;
//! - the file lists exactly one project: each one that is set overrides that project's field;
//! - the file lists several projects: they are ignored, with a warning.
//!
//! Blank env values count as unset.
//!
//! # Departures from the reference (spec §3, §9 items 2, 17, 20)
//!
//! - `serverZone: EU` switches all four default URLs, also when the zone comes from env.
//! - `AMPLITUDE_METRICS_*` are read; env overrides the file per field.
//! - A path prefix in `serverUrl`, `cohortServerUrl` or `managementServerUrl` is kept
//!   ([`ServerUrl::endpoint`]).
//! - Invalid values stop start-up with a [`ConfigError`] naming the field or env var, instead of
//!   silently falling back to defaults: unparsable numbers, zero intervals and capacities, bad
//!   URLs, a zone other than `US`/`EU` (case-insensitive; the reference treats anything
//!   but exactly `EU` as US), booleans other than `true`/`false` (case-insensitive; the
//!   reference reads anything else as false), `metrics.port` equal to `port` (unless both
//!   are 0, "any free port", which tests use). Unknown fields produce warnings, as do redis
//!   settings without `redis.uri` and missing `flagsFile`s.
//! - Numbers may also be written as strings (`port: "3546"`); keys must be strings.
//! - Secrets never appear in `Debug` output: keys are [`Secret`]s and Redis URIs print with
//!   their password redacted.
//! - A project may list `deployments` (with optional `flagsFile`) instead of a `managementKey`
//!   (one or the other, not both; deployment keys unique across projects). When every
//!   deployment has a `flagsFile` the project is local ([`ProjectConfig::is_local`]) and
//!   `apiKey`/`secretKey` may be omitted; otherwise both are required. Deployments can only be
//!   listed in a file, not through env.
//! - Extensions, each with an env var: `host`, `shutdownGracePeriodMillis`,
//!   `maxRequestBodyBytes`, `cors.allowedOrigins`, `logLevel`, `logFormat`,
//!   `flagSyncJitterPercent`, `assignment.queueCapacity`.
//! - `configuration.flagsmith` (Flagsmith Edge Proxy compatibility): `apiUrl`,
//!   `apiPollFrequencySeconds`, `apiPollTimeoutSeconds`, `environmentUpdateGracePeriodSeconds`
//!   (`FLAGSMITH_*` env vars) and `environments` (`FLAGSMITH_ENVIRONMENT_KEY_PAIRS`, JSON in the
//!   reference's format). With at least one Flagsmith environment, `projects` may be empty.

mod env;
mod error;
mod load;
mod raw;
mod secret;
mod types;
mod validate;

#[cfg(test)]
mod tests;

pub use env::{
    CONFIG_PATH_ENV, DEFAULT_CONFIG_PATH, ENV_VARS, FLAGSMITH_ENVIRONMENTS_ENV, PROJECTS_PATH_ENV,
    PROJECT_ENV_VARS,
};
pub use error::ConfigError;
pub use load::LoadedConfig;
pub use secret::{redact_url, RedisUri, Secret, REDACTED};
pub use types::{
    AssignmentConfig, Config, Configuration, CorsConfig, DeploymentConfig, DeploymentSource,
    FlagsmithConfig, FlagsmithEnvironment, LogFormat, MetricsConfig, ProjectConfig, ReadFrom,
    RedisConfig, ServerUrl, ServerZone,
};
