//! Turns the raw tree into the typed [`Config`]: applies defaults, derives zone URLs, resolves
//! paths and checks every field. Errors name the field path, or the env var that set it.

use std::collections::HashMap;
use std::fmt::Display;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use url::Url;

use super::error::ConfigError;
use super::raw::{
    RawAssignment, RawConfig, RawConfiguration, RawCors, RawDeployment, RawFlagsmith,
    RawFlagsmithEnvironment, RawMetrics, RawProject, RawRedis, Scalar, ScalarList,
};
use super::secret::{RedisUri, Secret};
use super::types::{
    AssignmentConfig, Config, Configuration, CorsConfig, DeploymentConfig, DeploymentSource,
    FlagsmithConfig, FlagsmithEnvironment, LogFormat, MetricsConfig, ProjectConfig, ReadFrom,
    RedisConfig, ServerUrl, ServerZone,
};

type Result<T> = std::result::Result<T, ConfigError>;

/// What the validator needs besides the raw tree.
pub(super) struct Ctx<'a> {
    /// Field path -> env var that set it, so errors name the variable the operator wrote.
    pub origins: &'a HashMap<String, &'static str>,
    /// Directory that relative `flagsFile` paths are resolved against.
    pub projects_dir: Option<&'a Path>,
    /// Non-fatal findings for the caller to log.
    pub warnings: &'a mut Vec<String>,
}

/// Builds and validates the whole configuration.
pub(super) fn build(raw: RawConfig, ctx: &mut Ctx<'_>) -> Result<Config> {
    let configuration = configuration(raw.configuration.unwrap_or_default(), ctx)?;
    let has_flagsmith = !configuration.flagsmith.environments.is_empty();
    let projects = projects(raw.projects.unwrap_or_default(), has_flagsmith, ctx)?;
    Ok(Config {
        projects,
        configuration,
    })
}

impl Ctx<'_> {
    /// The name to report for a field: its env var when env set it (or its parent list).
    pub(super) fn name(&self, path: &str) -> String {
        if let Some(env) = self.origins.get(path) {
            return (*env).to_string();
        }
        self.origins
            .iter()
            .find(|(key, _)| {
                path.strip_prefix(key.as_str())
                    .is_some_and(|rest| rest.starts_with('['))
            })
            .map_or_else(|| path.to_string(), |(_, env)| (*env).to_string())
    }

    fn err(&self, path: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::invalid(self.name(path), message)
    }

    fn number<T>(&self, value: Option<&Scalar>, path: &str, default: T) -> Result<T>
    where
        T: FromStr,
        T::Err: Display,
    {
        match value {
            None => Ok(default),
            Some(Scalar::Bool(_)) => Err(self.err(path, "expected a number, found a boolean")),
            Some(scalar) => scalar
                .text()
                .trim()
                .parse::<T>()
                .map_err(|e| self.err(path, e.to_string())),
        }
    }

    fn positive<T>(&self, value: Option<&Scalar>, path: &str, default: T) -> Result<T>
    where
        T: FromStr + Default + PartialEq,
        T::Err: Display,
    {
        let n = self.number(value, path, default)?;
        if n == T::default() {
            return Err(self.err(path, "must be greater than 0"));
        }
        Ok(n)
    }

    /// A TCP port; 0 asks the OS for any free port (what the black-box tests use).
    fn port(&self, value: Option<&Scalar>, path: &str, default: u16) -> Result<u16> {
        self.number::<u16>(value, path, default)
    }

    fn boolean(&self, value: Option<&Scalar>, path: &str, default: bool) -> Result<bool> {
        match value {
            None => Ok(default),
            Some(Scalar::Bool(b)) => Ok(*b),
            Some(scalar) => match scalar.text().trim().to_ascii_lowercase().as_str() {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(self.err(path, "expected true or false")),
            },
        }
    }

    /// A non-empty trimmed string, or `None` when absent or blank.
    fn string(&self, value: Option<&Scalar>) -> Option<String> {
        value
            .map(|v| v.text().trim().to_string())
            .filter(|s| !s.is_empty())
    }

    /// A credential: must be written as a string; blank counts as absent. Never echoed.
    fn secret(&self, value: Option<&Scalar>, path: &str) -> Result<Option<Secret>> {
        match value {
            None => Ok(None),
            Some(Scalar::Str(s)) if s.trim().is_empty() => Ok(None),
            Some(Scalar::Str(s)) => Ok(Some(Secret::new(s.trim()))),
            Some(_) => Err(self.err(path, "must be a string (quote it in YAML)")),
        }
    }

    /// A server URL parsed with `parse` (one of the `ServerUrl` constructors), or the default.
    fn server_url(
        &self,
        value: Option<&Scalar>,
        path: &str,
        default: &'static str,
        parse: fn(&str) -> std::result::Result<ServerUrl, String>,
    ) -> Result<ServerUrl> {
        match self.string(value) {
            None => Ok(ServerUrl::from_static(default)),
            Some(text) => parse(&text).map_err(|message| self.err(path, message)),
        }
    }
}

fn configuration(raw: RawConfiguration, ctx: &mut Ctx<'_>) -> Result<Configuration> {
    let d = Configuration::default();
    let zone = server_zone(raw.server_zone.as_ref(), ctx)?;
    let port = ctx.port(raw.port.as_ref(), "configuration.port", d.port)?;
    let metrics = metrics(raw.metrics.unwrap_or_default(), ctx, port)?;
    Ok(Configuration {
        host: host(raw.host.as_ref(), ctx)?,
        port,
        server_zone: zone,
        server_url: ctx.server_url(
            raw.server_url.as_ref(),
            "configuration.serverUrl",
            zone.server_url(),
            ServerUrl::parse_base,
        )?,
        cohort_server_url: ctx.server_url(
            raw.cohort_server_url.as_ref(),
            "configuration.cohortServerUrl",
            zone.cohort_server_url(),
            ServerUrl::parse_base,
        )?,
        management_server_url: ctx.server_url(
            raw.management_server_url.as_ref(),
            "configuration.managementServerUrl",
            zone.management_server_url(),
            ServerUrl::parse_base,
        )?,
        analytics_server_url: ctx.server_url(
            raw.analytics_server_url.as_ref(),
            "configuration.analyticsServerUrl",
            zone.analytics_server_url(),
            ServerUrl::parse_full,
        )?,
        deployment_sync_interval_millis: ctx.positive(
            raw.deployment_sync_interval_millis.as_ref(),
            "configuration.deploymentSyncIntervalMillis",
            d.deployment_sync_interval_millis,
        )?,
        flag_sync_interval_millis: ctx.positive(
            raw.flag_sync_interval_millis.as_ref(),
            "configuration.flagSyncIntervalMillis",
            d.flag_sync_interval_millis,
        )?,
        cohort_sync_interval_millis: ctx.positive(
            raw.cohort_sync_interval_millis.as_ref(),
            "configuration.cohortSyncIntervalMillis",
            d.cohort_sync_interval_millis,
        )?,
        max_cohort_size: ctx.number(
            raw.max_cohort_size.as_ref(),
            "configuration.maxCohortSize",
            d.max_cohort_size,
        )?,
        flag_sync_jitter_percent: jitter(raw.flag_sync_jitter_percent.as_ref(), ctx)?,
        shutdown_grace_period_millis: ctx.number(
            raw.shutdown_grace_period_millis.as_ref(),
            "configuration.shutdownGracePeriodMillis",
            d.shutdown_grace_period_millis,
        )?,
        max_request_body_bytes: ctx.positive(
            raw.max_request_body_bytes.as_ref(),
            "configuration.maxRequestBodyBytes",
            d.max_request_body_bytes,
        )?,
        log_level: log_level(raw.log_level.as_ref(), ctx)?,
        log_format: log_format(raw.log_format.as_ref(), ctx)?,
        cors: cors(raw.cors.unwrap_or_default(), ctx)?,
        assignment: assignment(raw.assignment.unwrap_or_default(), ctx)?,
        redis: redis(raw.redis.unwrap_or_default(), ctx)?,
        metrics,
        flagsmith: flagsmith(raw.flagsmith.unwrap_or_default(), ctx)?,
    })
}

fn server_zone(value: Option<&Scalar>, ctx: &Ctx<'_>) -> Result<ServerZone> {
    let Some(text) = ctx.string(value) else {
        return Ok(ServerZone::Us);
    };
    match text.to_ascii_uppercase().as_str() {
        "US" => Ok(ServerZone::Us),
        "EU" => Ok(ServerZone::Eu),
        _ => Err(ctx.err("configuration.serverZone", "must be US or EU")),
    }
}

fn host(value: Option<&Scalar>, ctx: &Ctx<'_>) -> Result<IpAddr> {
    let Some(text) = ctx.string(value) else {
        return Ok(Configuration::default().host);
    };
    text.parse::<IpAddr>().map_err(|_| {
        ctx.err(
            "configuration.host",
            "must be an IP address such as 0.0.0.0, 127.0.0.1 or ::",
        )
    })
}

fn jitter(value: Option<&Scalar>, ctx: &Ctx<'_>) -> Result<u8> {
    let path = "configuration.flagSyncJitterPercent";
    let percent = ctx.number::<u8>(
        value,
        path,
        Configuration::default().flag_sync_jitter_percent,
    )?;
    if percent > 100 {
        return Err(ctx.err(path, "must be between 0 and 100"));
    }
    Ok(percent)
}

const LOG_LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "off"];

fn log_level(value: Option<&Scalar>, ctx: &Ctx<'_>) -> Result<String> {
    let Some(text) = ctx.string(value) else {
        return Ok(Configuration::default().log_level);
    };
    let lower = text.to_ascii_lowercase();
    let level = match lower.as_str() {
        "all" => "trace",
        "warning" => "warn",
        other => other,
    };
    if LOG_LEVELS.contains(&level) {
        return Ok(level.to_string());
    }
    let is_directive = text.contains('=') || text.contains(',');
    if is_directive && tracing_subscriber::EnvFilter::try_new(&text).is_ok() {
        return Ok(text);
    }
    Err(ctx.err(
        "configuration.logLevel",
        "must be trace, debug, info, warn, error, off or a filter such as info,evaluation_proxy=debug",
    ))
}

fn log_format(value: Option<&Scalar>, ctx: &Ctx<'_>) -> Result<LogFormat> {
    let Some(text) = ctx.string(value) else {
        return Ok(LogFormat::Text);
    };
    match text.to_ascii_lowercase().as_str() {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err(ctx.err("configuration.logFormat", "must be text or json")),
    }
}

fn cors(raw: RawCors, ctx: &Ctx<'_>) -> Result<CorsConfig> {
    let Some(ScalarList(items)) = raw.allowed_origins else {
        return Ok(CorsConfig::default());
    };
    let allowed_origins = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            origin(
                item,
                &format!("configuration.cors.allowedOrigins[{i}]"),
                ctx,
            )
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(CorsConfig { allowed_origins })
}

fn origin(item: &Scalar, path: &str, ctx: &Ctx<'_>) -> Result<String> {
    let text = item.text().trim().to_string();
    if text == "*" {
        return Ok(text);
    }
    let bad = || {
        ctx.err(
            path,
            "must be * or an origin such as https://app.example.com",
        )
    };
    let url = Url::parse(&text).map_err(|_| bad())?;
    let origin_only = matches!(url.path(), "" | "/") && url.query().is_none();
    if !matches!(url.scheme(), "http" | "https") || !origin_only || url.fragment().is_some() {
        return Err(bad());
    }
    Ok(url.origin().ascii_serialization())
}

fn assignment(raw: RawAssignment, ctx: &Ctx<'_>) -> Result<AssignmentConfig> {
    let d = AssignmentConfig::default();
    Ok(AssignmentConfig {
        filter_capacity: ctx.positive(
            raw.filter_capacity.as_ref(),
            "configuration.assignment.filterCapacity",
            d.filter_capacity,
        )?,
        event_upload_threshold: ctx.positive(
            raw.event_upload_threshold.as_ref(),
            "configuration.assignment.eventUploadThreshold",
            d.event_upload_threshold,
        )?,
        event_upload_period_millis: ctx.positive(
            raw.event_upload_period_millis.as_ref(),
            "configuration.assignment.eventUploadPeriodMillis",
            d.event_upload_period_millis,
        )?,
        use_batch_mode: ctx.boolean(
            raw.use_batch_mode.as_ref(),
            "configuration.assignment.useBatchMode",
            d.use_batch_mode,
        )?,
        queue_capacity: ctx.positive(
            raw.queue_capacity.as_ref(),
            "configuration.assignment.queueCapacity",
            d.queue_capacity,
        )?,
    })
}

fn redis_uri(value: Option<&Scalar>, path: &str, ctx: &Ctx<'_>) -> Result<Option<RedisUri>> {
    match ctx.string(value) {
        None => Ok(None),
        Some(text) => RedisUri::parse(&text)
            .map(Some)
            .map_err(|message| ctx.err(path, message)),
    }
}

fn redis(raw: RawRedis, ctx: &mut Ctx<'_>) -> Result<Option<RedisConfig>> {
    let Some(uri) = redis_uri(raw.uri.as_ref(), "configuration.redis.uri", ctx)? else {
        if raw.has_settings() {
            ctx.warnings.push(
                "configuration.redis: uri is not set, so the other redis settings are ignored \
                 and storage is in-memory"
                    .to_string(),
            );
        }
        return Ok(None);
    };
    let d = RedisConfig::with_uri(uri.clone());
    let read_only_uri = redis_uri(
        raw.read_only_uri.as_ref(),
        "configuration.redis.readOnlyUri",
        ctx,
    )?
    .unwrap_or(uri);
    let prefix = ctx.string(raw.prefix.as_ref()).unwrap_or(d.prefix.clone());
    Ok(Some(RedisConfig {
        read_only_uri,
        use_cluster: ctx.boolean(
            raw.use_cluster.as_ref(),
            "configuration.redis.useCluster",
            d.use_cluster,
        )?,
        read_from: read_from(raw.read_from.as_ref(), ctx)?,
        prefix,
        scan_limit: ctx.positive(
            raw.scan_limit.as_ref(),
            "configuration.redis.scanLimit",
            d.scan_limit,
        )?,
        connection_timeout_millis: ctx.positive(
            raw.connection_timeout_millis.as_ref(),
            "configuration.redis.connectionTimeoutMillis",
            d.connection_timeout_millis,
        )?,
        command_timeout_millis: ctx.positive(
            raw.command_timeout_millis.as_ref(),
            "configuration.redis.commandTimeoutMillis",
            d.command_timeout_millis,
        )?,
        pipeline_batch_size: ctx.positive(
            raw.pipeline_batch_size.as_ref(),
            "configuration.redis.pipelineBatchSize",
            d.pipeline_batch_size,
        )?,
        lease_ttl_millis: ctx.positive(
            raw.lease_ttl_millis.as_ref(),
            "configuration.redis.leaseTtlMillis",
            d.lease_ttl_millis,
        )?,
        uri: d.uri,
    }))
}

fn read_from(value: Option<&Scalar>, ctx: &Ctx<'_>) -> Result<ReadFrom> {
    let Some(text) = ctx.string(value) else {
        return Ok(ReadFrom::Any);
    };
    match text.to_ascii_uppercase().as_str() {
        "ANY" => Ok(ReadFrom::Any),
        "REPLICA_PREFERRED" => Ok(ReadFrom::ReplicaPreferred),
        _ => Err(ctx.err(
            "configuration.redis.readFrom",
            "must be ANY or REPLICA_PREFERRED",
        )),
    }
}

fn metrics(raw: RawMetrics, ctx: &Ctx<'_>, main_port: u16) -> Result<MetricsConfig> {
    let d = MetricsConfig::default();
    let port = ctx.port(raw.port.as_ref(), "configuration.metrics.port", d.port)?;
    if port == main_port && port != 0 {
        return Err(ctx.err(
            "configuration.metrics.port",
            format!("must differ from configuration.port (both are {port})"),
        ));
    }
    let path = match raw.path.as_ref() {
        None => d.path,
        Some(value) => {
            let trimmed = value.text().trim().trim_matches('/').to_string();
            if trimmed.is_empty() || trimmed.contains(char::is_whitespace) {
                return Err(ctx.err(
                    "configuration.metrics.path",
                    "must be a non-empty path without spaces, such as metrics",
                ));
            }
            trimmed
        }
    };
    Ok(MetricsConfig {
        port,
        path,
        log_failures: ctx.boolean(
            raw.log_failures.as_ref(),
            "configuration.metrics.logFailures",
            d.log_failures,
        )?,
    })
}

fn projects(
    raw: Vec<RawProject>,
    has_flagsmith: bool,
    ctx: &mut Ctx<'_>,
) -> Result<Vec<ProjectConfig>> {
    if raw.is_empty() && !has_flagsmith {
        return Err(ctx.err(
            "projects",
            "at least one project is required (or a Flagsmith environment in \
             configuration.flagsmith.environments)",
        ));
    }
    let mut deployment_keys: HashMap<Secret, String> = HashMap::new();
    let mut api_keys: HashMap<Secret, String> = HashMap::new();
    let mut projects = Vec::with_capacity(raw.len());
    for (i, raw_project) in raw.into_iter().enumerate() {
        let project = project(i, raw_project, ctx)?;
        if let Some(key) = &project.api_key {
            let path = format!("projects[{i}].apiKey");
            if let Some(other) = api_keys.insert(key.clone(), path.clone()) {
                return Err(ctx.err(&path, format!("the same key as {other}")));
            }
        }
        if let DeploymentSource::Listed(list) = &project.deployments {
            for (j, deployment) in list.iter().enumerate() {
                let path = format!("projects[{i}].deployments[{j}].key");
                if let Some(other) = deployment_keys.insert(deployment.key.clone(), path.clone()) {
                    return Err(ctx.err(&path, format!("duplicate deployment key (also {other})")));
                }
            }
        }
        projects.push(project);
    }
    Ok(projects)
}

fn project(i: usize, raw: RawProject, ctx: &mut Ctx<'_>) -> Result<ProjectConfig> {
    let base = format!("projects[{i}]");
    let api_key = ctx.secret(raw.api_key.as_ref(), &format!("{base}.apiKey"))?;
    let secret_key = ctx.secret(raw.secret_key.as_ref(), &format!("{base}.secretKey"))?;
    let management_key = ctx.secret(
        raw.management_key.as_ref(),
        &format!("{base}.managementKey"),
    )?;
    let listed = raw.deployments.unwrap_or_default();
    let deployments = match (management_key, listed.is_empty()) {
        (Some(management_key), true) => DeploymentSource::Management { management_key },
        (None, false) => DeploymentSource::Listed(deployments(&base, listed, ctx)?),
        (Some(_), false) => {
            return Err(ctx.err(
                &format!("{base}.managementKey"),
                "cannot be combined with deployments; set one of them",
            ))
        }
        (None, true) => {
            return Err(ctx.err(
                &format!("{base}.managementKey"),
                "must be set (or list the project's deployments)",
            ))
        }
    };
    let project = ProjectConfig {
        api_key,
        secret_key,
        deployments,
    };
    if !project.is_local() {
        let reason =
            "must be set (only a project whose deployments all have a flagsFile may omit it)";
        if project.api_key.is_none() {
            return Err(ctx.err(&format!("{base}.apiKey"), reason));
        }
        if project.secret_key.is_none() {
            return Err(ctx.err(&format!("{base}.secretKey"), reason));
        }
    }
    Ok(project)
}

fn deployments(
    base: &str,
    raw: Vec<RawDeployment>,
    ctx: &mut Ctx<'_>,
) -> Result<Vec<DeploymentConfig>> {
    raw.into_iter()
        .enumerate()
        .map(|(j, deployment)| {
            let path = format!("{base}.deployments[{j}]");
            let key = ctx
                .secret(deployment.key.as_ref(), &format!("{path}.key"))?
                .ok_or_else(|| ctx.err(&format!("{path}.key"), "must be set"))?;
            let flags_file = flags_file(deployment.flags_file.as_ref(), &path, ctx);
            Ok(DeploymentConfig { key, flags_file })
        })
        .collect()
}

fn flags_file(value: Option<&Scalar>, path: &str, ctx: &mut Ctx<'_>) -> Option<PathBuf> {
    local_file(value, &format!("{path}.flagsFile"), ctx)
}

/// A file path resolved against the config file's directory; a warning when it is missing.
fn local_file(value: Option<&Scalar>, path: &str, ctx: &mut Ctx<'_>) -> Option<PathBuf> {
    let text = ctx.string(value)?;
    let file = PathBuf::from(text);
    let file = match ctx.projects_dir {
        Some(dir) if file.is_relative() => dir.join(file),
        _ => file,
    };
    if !file.exists() {
        ctx.warnings
            .push(format!("{path}: {} does not exist (yet)", file.display()));
    }
    Some(file)
}

fn flagsmith(raw: RawFlagsmith, ctx: &mut Ctx<'_>) -> Result<FlagsmithConfig> {
    let d = FlagsmithConfig::default();
    let base = "configuration.flagsmith";
    Ok(FlagsmithConfig {
        api_url: ctx.server_url(
            raw.api_url.as_ref(),
            &format!("{base}.apiUrl"),
            FlagsmithConfig::DEFAULT_API_URL,
            ServerUrl::parse_base,
        )?,
        api_poll_frequency_seconds: ctx.positive(
            raw.api_poll_frequency_seconds.as_ref(),
            &format!("{base}.apiPollFrequencySeconds"),
            d.api_poll_frequency_seconds,
        )?,
        api_poll_timeout_seconds: ctx.positive(
            raw.api_poll_timeout_seconds.as_ref(),
            &format!("{base}.apiPollTimeoutSeconds"),
            d.api_poll_timeout_seconds,
        )?,
        environment_update_grace_period_seconds: ctx.number(
            raw.environment_update_grace_period_seconds.as_ref(),
            &format!("{base}.environmentUpdateGracePeriodSeconds"),
            d.environment_update_grace_period_seconds,
        )?,
        environments: flagsmith_environments(raw.environments.unwrap_or_default(), ctx)?,
    })
}

fn flagsmith_environments(
    raw: Vec<RawFlagsmithEnvironment>,
    ctx: &mut Ctx<'_>,
) -> Result<Vec<FlagsmithEnvironment>> {
    let mut seen: HashMap<Secret, String> = HashMap::new();
    let mut environments = Vec::with_capacity(raw.len());
    for (i, raw_env) in raw.into_iter().enumerate() {
        let base = format!("configuration.flagsmith.environments[{i}]");
        let environment = flagsmith_environment(&base, raw_env, ctx)?;
        for (key, field) in [
            (&environment.server_side_key, "serverSideKey"),
            (&environment.client_side_key, "clientSideKey"),
        ] {
            let path = format!("{base}.{field}");
            if let Some(other) = seen.insert(key.clone(), path.clone()) {
                return Err(ctx.err(&path, format!("duplicate key (also {other})")));
            }
        }
        environments.push(environment);
    }
    Ok(environments)
}

fn flagsmith_environment(
    base: &str,
    raw: RawFlagsmithEnvironment,
    ctx: &mut Ctx<'_>,
) -> Result<FlagsmithEnvironment> {
    let server_path = format!("{base}.serverSideKey");
    let server_side_key = ctx
        .secret(raw.server_side_key.as_ref(), &server_path)?
        .ok_or_else(|| ctx.err(&server_path, "must be set"))?;
    if !server_side_key.expose().starts_with("ser.") {
        return Err(ctx.err(&server_path, "must start with ser."));
    }
    let client_path = format!("{base}.clientSideKey");
    let client_side_key = ctx
        .secret(raw.client_side_key.as_ref(), &client_path)?
        .ok_or_else(|| ctx.err(&client_path, "must be set"))?;
    if client_side_key.expose().starts_with("ser.") {
        return Err(ctx.err(
            &client_path,
            "must not start with ser. (that marks a server-side key)",
        ));
    }
    let document_file = local_file(
        raw.document_file.as_ref(),
        &format!("{base}.documentFile"),
        ctx,
    );
    Ok(FlagsmithEnvironment {
        server_side_key,
        client_side_key,
        document_file,
    })
}
