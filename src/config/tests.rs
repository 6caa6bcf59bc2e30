//! Unit tests for loading, layering, validation and redaction.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use super::*;

const PROJECT_YAML: &str =
    "projects:\n  - apiKey: api-1\n    secretKey: secret-1\n    managementKey: mgmt-1\n";

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn write(dir: &TempDir, name: &str, content: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, content).unwrap();
    path
}

/// Loads `content` written to a temp file named `name`.
fn load_text(
    name: &str,
    content: &str,
    vars: &[(&str, &str)],
) -> Result<LoadedConfig, ConfigError> {
    let dir = TempDir::new().unwrap();
    let path = write(&dir, name, content);
    Config::load_from(Some(&path), &env(vars))
}

fn load_yaml(content: &str) -> LoadedConfig {
    load_text("c.yaml", content, &[]).unwrap()
}

/// The error message for a config whose `configuration:` section is `section`.
fn config_error(section: &str) -> String {
    let text = format!("{PROJECT_YAML}configuration:\n{section}");
    match load_text("c.yaml", &text, &[]) {
        Ok(_) => panic!("expected an error for {section:?}"),
        Err(e) => e.to_string(),
    }
}

fn env_error(vars: &[(&str, &str)]) -> String {
    match load_text("c.yaml", PROJECT_YAML, vars) {
        Ok(_) => panic!("expected an error for {vars:?}"),
        Err(e) => e.to_string(),
    }
}

fn project_error(projects: &str) -> String {
    match load_text("c.yaml", projects, &[]) {
        Ok(_) => panic!("expected an error for {projects:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn defaults_match_spec() {
    let loaded = load_yaml(PROJECT_YAML);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let c = &loaded.config.configuration;
    assert_eq!(c, &Configuration::default());
    assert_eq!(c.port, 3546);
    assert_eq!(c.host.to_string(), "0.0.0.0");
    assert_eq!(c.server_zone, ServerZone::Us);
    assert_eq!(
        c.server_url.url().as_str(),
        "https://flag.lab.amplitude.com/"
    );
    assert_eq!(
        c.cohort_server_url.url().as_str(),
        "https://cohort-v2.lab.amplitude.com/"
    );
    assert_eq!(
        c.management_server_url.url().as_str(),
        "https://experiment.amplitude.com/"
    );
    assert_eq!(
        c.analytics_server_url.url().as_str(),
        "https://api2.amplitude.com/2/httpapi"
    );
    assert_eq!(c.deployment_sync_interval_millis, 120_000);
    assert_eq!(c.flag_sync_interval_millis, 60_000);
    assert_eq!(c.flag_sync_interval(), std::time::Duration::from_secs(60));
    assert_eq!(c.cohort_sync_interval_millis, 120_000);
    assert_eq!(c.max_cohort_size, 2_147_483_647);
    assert_eq!(c.flag_sync_jitter_percent, 10);
    assert_eq!(c.shutdown_grace_period_millis, 10_000);
    assert_eq!(c.max_request_body_bytes, 1_048_576);
    assert_eq!(c.log_level, "info");
    assert_eq!(c.log_format, LogFormat::Text);
    assert!(c.cors.allows_any());
    assert_eq!(c.assignment.filter_capacity, 1_048_576);
    assert_eq!(c.assignment.event_upload_threshold, 100);
    assert_eq!(c.assignment.event_upload_period_millis, 10_000);
    assert!(c.assignment.use_batch_mode);
    assert_eq!(c.assignment.queue_capacity, 65_536);
    assert!(c.redis.is_none());
    assert_eq!(c.metrics.port, 9090);
    assert_eq!(c.metrics.route(), "/metrics");
    assert!(!c.metrics.log_failures);
    assert_eq!(c.bind_addr().to_string(), "0.0.0.0:3546");
    let project = &loaded.config.projects[0];
    assert_eq!(project.api_key.as_ref().unwrap().expose(), "api-1");
    assert_eq!(project.secret_key.as_ref().unwrap().expose(), "secret-1");
    match &project.deployments {
        DeploymentSource::Management { management_key } => {
            assert_eq!(management_key.expose(), "mgmt-1")
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(!project.is_local());
}

const FULL_YAML: &str = r#"
projects:
  - apiKey: api-1
    secretKey: secret-1
    managementKey: mgmt-1
  - apiKey: api-2
    secretKey: secret-2
    managementKey: mgmt-2
configuration:
  host: 127.0.0.1
  port: 4000
  serverZone: US
  serverUrl: https://flags.example.com
  cohortServerUrl: https://cohorts.example.com
  managementServerUrl: https://mgmt.example.com
  analyticsServerUrl: https://events.example.com/2/httpapi
  deploymentSyncIntervalMillis: 1000
  flagSyncIntervalMillis: 2000
  cohortSyncIntervalMillis: 3000
  maxCohortSize: 500
  flagSyncJitterPercent: 0
  shutdownGracePeriodMillis: 0
  maxRequestBodyBytes: 2048
  logLevel: DEBUG
  logFormat: JSON
  cors:
    allowedOrigins: ["https://app.example.com/", "http://localhost:3000"]
  assignment:
    filterCapacity: 10
    eventUploadThreshold: 20
    eventUploadPeriodMillis: 30
    useBatchMode: false
    queueCapacity: 40
  redis:
    uri: redis://:hunter2@redis:6379
    readOnlyUri: redis://:hunter2@replica:6379
    useCluster: true
    readFrom: replica_preferred
    prefix: proxy
    scanLimit: 5
    connectionTimeoutMillis: 6
    commandTimeoutMillis: 7
    pipelineBatchSize: 8
    leaseTtlMillis: 9
  metrics:
    port: 9100
    path: /prom/
    logFailures: true
"#;

#[test]
fn full_yaml_file_sets_every_field() {
    let loaded = load_yaml(FULL_YAML);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(loaded.config.projects.len(), 2);
    let c = &loaded.config.configuration;
    assert_eq!(c.bind_addr().to_string(), "127.0.0.1:4000");
    assert_eq!(c.server_url.url().as_str(), "https://flags.example.com/");
    assert_eq!(
        c.cohort_server_url.url().as_str(),
        "https://cohorts.example.com/"
    );
    assert_eq!(
        c.management_server_url.url().as_str(),
        "https://mgmt.example.com/"
    );
    assert_eq!(
        c.analytics_server_url.url().as_str(),
        "https://events.example.com/2/httpapi"
    );
    assert_eq!(c.deployment_sync_interval_millis, 1000);
    assert_eq!(c.flag_sync_interval_millis, 2000);
    assert_eq!(c.cohort_sync_interval_millis, 3000);
    assert_eq!(c.max_cohort_size, 500);
    assert_eq!(c.flag_sync_jitter_percent, 0);
    assert_eq!(c.shutdown_grace_period_millis, 0);
    assert_eq!(c.max_request_body_bytes, 2048);
    assert_eq!(c.log_level, "debug");
    assert_eq!(c.log_format, LogFormat::Json);
    assert_eq!(
        c.cors.allowed_origins,
        vec!["https://app.example.com", "http://localhost:3000"]
    );
    assert!(!c.cors.allows_any());
    let a = &c.assignment;
    assert_eq!(
        (
            a.filter_capacity,
            a.event_upload_threshold,
            a.event_upload_period_millis
        ),
        (10, 20, 30)
    );
    assert!(!a.use_batch_mode);
    assert_eq!(a.queue_capacity, 40);
    let r = c.redis.as_ref().unwrap();
    assert_eq!(r.uri.expose(), "redis://:hunter2@redis:6379");
    assert_eq!(r.read_only_uri.expose(), "redis://:hunter2@replica:6379");
    assert!(r.use_cluster);
    assert_eq!(r.read_from, ReadFrom::ReplicaPreferred);
    assert_eq!(r.prefix, "proxy");
    assert_eq!(
        (
            r.scan_limit,
            r.connection_timeout_millis,
            r.command_timeout_millis,
            r.pipeline_batch_size
        ),
        (5, 6, 7, 8)
    );
    assert_eq!(r.lease_ttl_millis, 9);
    assert_eq!(c.metrics.port, 9100);
    assert_eq!(c.metrics.route(), "/prom");
    assert!(c.metrics.log_failures);
}

#[test]
fn json_file_is_read() {
    let json = r#"{"projects":[{"apiKey":"a","secretKey":"s","managementKey":"m"}],
        "configuration":{"port":"4001","redis":{"uri":"redis://localhost"},"metrics":{"port":9191}}}"#;
    let loaded = load_text("c.json", json, &[]).unwrap();
    let c = &loaded.config.configuration;
    assert_eq!(c.port, 4001);
    assert_eq!(c.metrics.port, 9191);
    let redis = c.redis.as_ref().unwrap();
    assert_eq!(redis.read_only_uri.expose(), "redis://localhost");
    assert_eq!(redis.prefix, "amplitude");
    assert_eq!(redis.scan_limit, 10_000);
}

#[test]
fn yml_extension_and_empty_configuration() {
    let loaded = load_text("c.yml", &format!("{PROJECT_YAML}configuration:\n"), &[]).unwrap();
    assert_eq!(loaded.config.configuration, Configuration::default());
}

#[test]
fn env_overrides_file_per_field() {
    let yaml = format!("{PROJECT_YAML}configuration:\n  port: 4000\n  flagSyncIntervalMillis: 5\n  metrics:\n    port: 9200\n    path: m\n");
    let loaded = load_text(
        "c.yaml",
        &yaml,
        &[
            ("AMPLITUDE_PORT", "5000"),
            ("AMPLITUDE_METRICS_PORT", "9300"),
            ("AMPLITUDE_METRICS_LOG_FAILURES", "TRUE"),
            ("AMPLITUDE_REDIS_URI", "redis://r:6379"),
            ("AMPLITUDE_REDIS_PREFIX", "p"),
            ("AMPLITUDE_ASSIGNMENT_USE_BATCH_MODE", "false"),
            ("AMPLITUDE_LOG_LEVEL", "WARN"),
            (
                "AMPLITUDE_CORS_ALLOWED_ORIGINS",
                "https://a.example.com, https://b.example.com",
            ),
            ("AMPLITUDE_MAX_COHORT_SIZE", ""),
        ],
    )
    .unwrap();
    let c = &loaded.config.configuration;
    assert_eq!(c.port, 5000);
    assert_eq!(c.flag_sync_interval_millis, 5);
    assert_eq!(c.metrics.port, 9300);
    assert_eq!(c.metrics.path, "m");
    assert!(c.metrics.log_failures);
    let redis = c.redis.as_ref().unwrap();
    assert_eq!(redis.uri.expose(), "redis://r:6379");
    assert_eq!(redis.prefix, "p");
    assert!(!c.assignment.use_batch_mode);
    assert_eq!(c.log_level, "warn");
    assert_eq!(
        c.cors.allowed_origins,
        vec!["https://a.example.com", "https://b.example.com"]
    );
    assert_eq!(
        c.max_cohort_size, 2_147_483_647,
        "blank env value counts as unset"
    );
}

#[test]
fn every_documented_env_var_is_applied() {
    // Each table entry must reach its field: an invalid value must be reported by env name.
    for (name, _) in ENV_VARS {
        let value = match *name {
            "AMPLITUDE_ASSIGNMENT_USE_BATCH_MODE"
            | "AMPLITUDE_REDIS_USE_CLUSTER"
            | "AMPLITUDE_METRICS_LOG_FAILURES" => "maybe",
            "AMPLITUDE_REDIS_PREFIX" | "AMPLITUDE_METRICS_PATH" => "has space",
            "AMPLITUDE_SHUTDOWN_GRACE_PERIOD_MILLIS" | "AMPLITUDE_MAX_COHORT_SIZE" => "-1",
            _ => "::bad value::",
        };
        let mut vars = vec![(*name, value)];
        if name.starts_with("AMPLITUDE_REDIS_") && *name != "AMPLITUDE_REDIS_URI" {
            vars.push(("AMPLITUDE_REDIS_URI", "redis://localhost"));
        }
        if *name == "AMPLITUDE_REDIS_PREFIX" {
            // Any prefix text is accepted; check the value arrives instead.
            let loaded = load_text("c.yaml", PROJECT_YAML, &vars).unwrap();
            assert_eq!(
                loaded.config.configuration.redis.unwrap().prefix,
                "has space"
            );
            continue;
        }
        let message = env_error(&vars);
        assert!(
            message.starts_with(&format!("{name}: ")),
            "{name}: {message}"
        );
    }
}

#[test]
fn env_error_names_the_variable() {
    assert_eq!(
        env_error(&[("AMPLITUDE_PORT", "abc")]),
        "AMPLITUDE_PORT: invalid digit found in string"
    );
    assert_eq!(
        env_error(&[("AMPLITUDE_FLAG_SYNC_INTERVAL_MILLIS", "0")]),
        "AMPLITUDE_FLAG_SYNC_INTERVAL_MILLIS: must be greater than 0"
    );
    assert_eq!(
        env_error(&[("AMPLITUDE_METRICS_PORT", "3546")]),
        "AMPLITUDE_METRICS_PORT: must differ from configuration.port (both are 3546)"
    );
}

#[test]
fn eu_zone_in_file_switches_all_four_urls() {
    let loaded = load_yaml(&format!("{PROJECT_YAML}configuration:\n  serverZone: EU\n"));
    assert_eu(&loaded.config.configuration);
}

#[test]
fn eu_zone_from_env_switches_all_four_urls() {
    let loaded = load_text("c.yaml", PROJECT_YAML, &[("AMPLITUDE_SERVER_ZONE", "eu")]).unwrap();
    assert_eu(&loaded.config.configuration);
}

#[test]
fn eu_zone_keeps_explicit_urls() {
    let yaml = format!(
        "{PROJECT_YAML}configuration:\n  serverZone: eu\n  serverUrl: https://mine.example.com\n"
    );
    let c = load_yaml(&yaml).config.configuration;
    assert_eq!(c.server_url.url().as_str(), "https://mine.example.com/");
    assert_eq!(
        c.cohort_server_url.url().as_str(),
        "https://cohort-v2.lab.eu.amplitude.com/"
    );
}

fn assert_eu(c: &Configuration) {
    assert_eq!(c.server_zone, ServerZone::Eu);
    assert_eq!(
        c.server_url.url().as_str(),
        "https://flag.lab.eu.amplitude.com/"
    );
    assert_eq!(
        c.cohort_server_url.url().as_str(),
        "https://cohort-v2.lab.eu.amplitude.com/"
    );
    assert_eq!(
        c.management_server_url.url().as_str(),
        "https://experiment.eu.amplitude.com/"
    );
    assert_eq!(
        c.analytics_server_url.url().as_str(),
        "https://api.eu.amplitude.com/2/httpapi"
    );
}

#[test]
fn path_prefix_is_kept() {
    let yaml = format!(
        "{PROJECT_YAML}configuration:\n  serverUrl: https://gw.example.com/amplitude/flags/\n  managementServerUrl: http://localhost:8080/mgmt\n"
    );
    let c = load_yaml(&yaml).config.configuration;
    assert_eq!(
        c.server_url.endpoint("/sdk/v2/flags").as_str(),
        "https://gw.example.com/amplitude/flags/sdk/v2/flags"
    );
    assert_eq!(
        c.management_server_url
            .endpoint("api/1/deployments")
            .as_str(),
        "http://localhost:8080/mgmt/api/1/deployments"
    );
    assert_eq!(
        c.cohort_server_url.endpoint("/sdk/v1/cohort/abc").as_str(),
        "https://cohort-v2.lab.amplitude.com/sdk/v1/cohort/abc"
    );
}

#[test]
fn configuration_errors_name_their_field() {
    let cases: &[(&str, &str)] = &[
        (
            "  port: 70000\n",
            "configuration.port: number too large to fit in target type",
        ),
        (
            "  port: abc\n",
            "configuration.port: invalid digit found in string",
        ),
        (
            "  port: true\n",
            "configuration.port: expected a number, found a boolean",
        ),
        (
            "  host: localhost\n",
            "configuration.host: must be an IP address",
        ),
        (
            "  serverZone: APAC\n",
            "configuration.serverZone: must be US or EU",
        ),
        (
            "  serverUrl: ftp://x\n",
            "configuration.serverUrl: must be an http or https URL",
        ),
        (
            "  serverUrl: not a url\n",
            "configuration.serverUrl: invalid URL",
        ),
        (
            "  serverUrl: https://x/?a=b\n",
            "configuration.serverUrl: must not contain a query",
        ),
        (
            "  cohortServerUrl: x\n",
            "configuration.cohortServerUrl: invalid URL",
        ),
        (
            "  managementServerUrl: x\n",
            "configuration.managementServerUrl: invalid URL",
        ),
        (
            "  analyticsServerUrl: x\n",
            "configuration.analyticsServerUrl: invalid URL",
        ),
        (
            "  deploymentSyncIntervalMillis: 0\n",
            "configuration.deploymentSyncIntervalMillis: must be greater than 0",
        ),
        (
            "  flagSyncIntervalMillis: 0\n",
            "configuration.flagSyncIntervalMillis: must be greater than 0",
        ),
        (
            "  cohortSyncIntervalMillis: -5\n",
            "configuration.cohortSyncIntervalMillis: invalid digit",
        ),
        (
            "  maxCohortSize: 1.5\n",
            "configuration.maxCohortSize: invalid digit",
        ),
        (
            "  flagSyncJitterPercent: 101\n",
            "configuration.flagSyncJitterPercent: must be between 0 and 100",
        ),
        (
            "  shutdownGracePeriodMillis: x\n",
            "configuration.shutdownGracePeriodMillis: invalid digit",
        ),
        (
            "  maxRequestBodyBytes: 0\n",
            "configuration.maxRequestBodyBytes: must be greater than 0",
        ),
        (
            "  logLevel: loud\n",
            "configuration.logLevel: must be trace",
        ),
        (
            "  logFormat: xml\n",
            "configuration.logFormat: must be text or json",
        ),
        (
            "  cors:\n    allowedOrigins: [\"https://a.example.com/path\"]\n",
            "configuration.cors.allowedOrigins[0]: must be *",
        ),
        (
            "  assignment:\n    filterCapacity: 0\n",
            "configuration.assignment.filterCapacity: must be greater than 0",
        ),
        (
            "  assignment:\n    eventUploadThreshold: 0\n",
            "configuration.assignment.eventUploadThreshold: must be greater than 0",
        ),
        (
            "  assignment:\n    eventUploadPeriodMillis: 0\n",
            "configuration.assignment.eventUploadPeriodMillis: must be greater than 0",
        ),
        (
            "  assignment:\n    useBatchMode: yes please\n",
            "configuration.assignment.useBatchMode: expected true or false",
        ),
        (
            "  assignment:\n    queueCapacity: 0\n",
            "configuration.assignment.queueCapacity: must be greater than 0",
        ),
        (
            "  redis:\n    uri: http://x\n",
            "configuration.redis.uri: unsupported scheme",
        ),
        (
            "  redis:\n    uri: redis://x\n    readOnlyUri: nope\n",
            "configuration.redis.readOnlyUri: invalid URI",
        ),
        (
            "  redis:\n    uri: redis://x\n    useCluster: 1\n",
            "configuration.redis.useCluster: expected true or false",
        ),
        (
            "  redis:\n    uri: redis://x\n    readFrom: MASTER\n",
            "configuration.redis.readFrom: must be ANY or REPLICA_PREFERRED",
        ),
        (
            "  redis:\n    uri: redis://x\n    scanLimit: 0\n",
            "configuration.redis.scanLimit: must be greater than 0",
        ),
        (
            "  redis:\n    uri: redis://x\n    connectionTimeoutMillis: 0\n",
            "configuration.redis.connectionTimeoutMillis: must be greater than 0",
        ),
        (
            "  redis:\n    uri: redis://x\n    commandTimeoutMillis: 0\n",
            "configuration.redis.commandTimeoutMillis: must be greater than 0",
        ),
        (
            "  redis:\n    uri: redis://x\n    pipelineBatchSize: 0\n",
            "configuration.redis.pipelineBatchSize: must be greater than 0",
        ),
        (
            "  metrics:\n    path: /\n",
            "configuration.metrics.path: must be a non-empty path",
        ),
        (
            "  metrics:\n    logFailures: nope\n",
            "configuration.metrics.logFailures: expected true or false",
        ),
        ("  metrics: 5\n", "configuration.metrics: invalid type"),
        (
            "  assignment: [1]\n",
            "configuration.assignment: invalid type",
        ),
    ];
    for (section, expected) in cases {
        let message = config_error(section);
        assert!(message.starts_with(expected), "{section:?}: {message}");
    }
}

#[test]
fn project_errors_name_their_field() {
    let cases: &[(&str, &str)] = &[
        ("projects: []\n", "projects: at least one project is required (or a Flagsmith"),
        ("configuration:\n  port: 1234\n", "projects: at least one project is required"),
        ("projects: 5\n", "projects: invalid type"),
        ("projects:\n  - apiKey: a\n    secretKey: s\n", "projects[0].managementKey: must be set"),
        ("projects:\n  - secretKey: s\n    managementKey: m\n", "projects[0].apiKey: must be set"),
        ("projects:\n  - apiKey: a\n    managementKey: m\n", "projects[0].secretKey: must be set"),
        ("projects:\n  - apiKey: 12345\n    secretKey: s\n    managementKey: m\n", "projects[0].apiKey: must be a string"),
        (
            "projects:\n  - apiKey: a\n    secretKey: s\n    managementKey: m\n    deployments: [{key: k}]\n",
            "projects[0].managementKey: cannot be combined with deployments",
        ),
        ("projects:\n  - deployments: [{key: k}]\n", "projects[0].apiKey: must be set"),
        ("projects:\n  - deployments: [{flagsFile: f.json}]\n", "projects[0].deployments[0].key: must be set"),
        ("projects:\n  - deployments: [{key: \"\", flagsFile: f.json}]\n", "projects[0].deployments[0].key: must be set"),
        (
            "projects:\n  - deployments: [{key: k, flagsFile: a.json}, {key: k, flagsFile: b.json}]\n",
            "projects[0].deployments[1].key: duplicate deployment key (also projects[0].deployments[0].key)",
        ),
        (
            "projects:\n  - deployments: [{key: k, flagsFile: a.json}]\n  - deployments: [{key: k, flagsFile: b.json}]\n",
            "projects[1].deployments[0].key: duplicate deployment key",
        ),
        (
            "projects:\n  - {apiKey: a, secretKey: s, managementKey: m}\n  - {apiKey: a, secretKey: t, managementKey: n}\n",
            "projects[1].apiKey: the same key as projects[0].apiKey",
        ),
    ];
    for (projects, expected) in cases {
        let message = project_error(projects);
        assert!(message.starts_with(expected), "{projects:?}: {message}");
    }
}

#[test]
fn unknown_fields_are_warnings() {
    let yaml = "projects:\n  - apiKey: a\n    secretKey: s\n    managementKey: m\n    nickname: x\nconfiguration:\n  fooBar: 1\n  redis:\n    uri: redis://x\n    colour: red\nflagsmith: {}\n";
    let loaded = load_yaml(yaml);
    let mut warnings = loaded.warnings.clone();
    warnings.sort();
    assert_eq!(
        warnings,
        vec![
            "unknown field configuration.fooBar",
            "unknown field configuration.redis.colour",
            "unknown field flagsmith",
            "unknown field projects[0].nickname",
        ]
    );
}

#[test]
fn redis_settings_without_uri_warn() {
    let loaded = load_yaml(&format!(
        "{PROJECT_YAML}configuration:\n  redis:\n    prefix: x\n"
    ));
    assert!(loaded.config.configuration.redis.is_none());
    assert_eq!(loaded.warnings.len(), 1);
    assert!(loaded.warnings[0].starts_with("configuration.redis: uri is not set"));
    let loaded = load_yaml(&format!("{PROJECT_YAML}configuration:\n  redis: null\n"));
    assert!(loaded.warnings.is_empty());
}

#[test]
fn debug_output_redacts_secrets() {
    let yaml = "projects:\n  - apiKey: api-SECRET1\n    secretKey: sec-SECRET2\n    managementKey: mgmt-SECRET3\n  - deployments:\n      - key: client-SECRET4\n        flagsFile: f.json\nconfiguration:\n  redis:\n    uri: redis://user:SECRET5@redis:6379/0\n    readOnlyUri: redis://SECRET6@replica:6379\n  serverUrl: https://u:SECRET7@flags.example.com/p\n";
    let loaded = load_yaml(yaml);
    let debug = format!("{:?} {:#?} {:?}", loaded, loaded.config, loaded.warnings);
    assert!(!debug.contains("SECRET"), "{debug}");
    assert!(debug.contains(REDACTED));
    assert!(debug.contains("redis:6379/0"), "{debug}");
    let redis = loaded.config.configuration.redis.unwrap();
    assert_eq!(redis.uri.expose(), "redis://user:SECRET5@redis:6379/0");
    assert_eq!(redis.uri.to_string(), "redis://:redacted@redis:6379/0");
    assert_eq!(
        redis.read_only_uri.to_string(),
        "redis://:redacted@replica:6379"
    );
    assert_eq!(Secret::new("x").to_string(), REDACTED);
}

#[test]
fn errors_do_not_echo_secrets() {
    let message =
        project_error("projects:\n  - apiKey: 987654321\n    secretKey: s\n    managementKey: m\n");
    assert!(!message.contains("987654321"), "{message}");
    let message = config_error("  redis:\n    uri: http://u:SECRET@x\n");
    assert!(!message.contains("SECRET"), "{message}");
}

#[test]
fn deployments_with_flags_files_resolve_relative_paths() {
    let dir = TempDir::new().unwrap();
    write(&dir, "flags.json", "[]");
    let yaml = "projects:\n  - deployments:\n      - key: server-local\n        flagsFile: flags.json\n      - key: server-abs\n        flagsFile: /abs/flags.json\n";
    let path = write(&dir, "proxy.yaml", yaml);
    let loaded = Config::load_from(Some(&path), &HashMap::new()).unwrap();
    let project = &loaded.config.projects[0];
    assert!(project.is_local());
    assert!(project.api_key.is_none() && project.secret_key.is_none());
    let DeploymentSource::Listed(list) = &project.deployments else {
        panic!("expected listed deployments");
    };
    assert_eq!(list[0].key.expose(), "server-local");
    assert_eq!(
        list[0].flags_file.as_deref(),
        Some(dir.path().join("flags.json").as_path())
    );
    assert_eq!(
        list[1].flags_file.as_deref(),
        Some(Path::new("/abs/flags.json"))
    );
    assert_eq!(
        loaded.warnings,
        vec!["projects[0].deployments[1].flagsFile: /abs/flags.json does not exist (yet)"]
    );
    assert_eq!(loaded.source.as_deref(), Some(path.as_path()));
}

#[test]
fn listed_deployments_without_flags_file_need_keys() {
    let yaml = "projects:\n  - apiKey: a\n    secretKey: s\n    deployments:\n      - key: server-remote\n      - key: server-local\n        flagsFile: /abs/f.json\n";
    let loaded = load_yaml(yaml);
    let project = &loaded.config.projects[0];
    assert!(!project.is_local());
    let DeploymentSource::Listed(list) = &project.deployments else {
        panic!("expected listed deployments");
    };
    assert_eq!(list.len(), 2);
    assert!(list[0].flags_file.is_none());
}

#[test]
fn missing_explicit_file_is_an_error() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("nope.yaml");
    let err = Config::load_from(Some(&path), &HashMap::new()).unwrap_err();
    assert!(matches!(err, ConfigError::FileNotFound { .. }));
    assert!(err.to_string().contains("nope.yaml: not found"));
    let vars = env(&[
        (CONFIG_PATH_ENV, path.to_str().unwrap()),
        ("AMPLITUDE_API_KEY", "a"),
    ]);
    let err = Config::load_from(None, &vars).unwrap_err();
    assert!(matches!(err, ConfigError::FileNotFound { .. }), "{err}");
}

#[test]
fn unsupported_extension_is_an_error() {
    let err = load_text("c.toml", PROJECT_YAML, &[]).unwrap_err();
    assert!(matches!(err, ConfigError::UnsupportedFormat { .. }));
    assert!(err.to_string().contains("c.toml"), "{err}");
}

#[test]
fn parse_error_names_the_file() {
    let err = load_text("c.yaml", "projects: [\n", &[]).unwrap_err();
    assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
    assert!(err.to_string().starts_with("config file "), "{err}");
    assert!(err.to_string().contains("c.yaml"), "{err}");
    let err = load_text("c.json", "{\"projects\": ", &[]).unwrap_err();
    assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
}

#[test]
fn env_only_when_default_file_is_missing() {
    assert!(
        !Path::new(DEFAULT_CONFIG_PATH).exists(),
        "test machine has the default file"
    );
    let vars = env(&[
        ("AMPLITUDE_API_KEY", "a"),
        ("AMPLITUDE_SECRET_KEY", "s"),
        ("AMPLITUDE_EXPERIMENT_MANAGEMENT_API_KEY", "m"),
        ("AMPLITUDE_SERVER_ZONE", "EU"),
        ("AMPLITUDE_METRICS_PATH", "prom"),
    ]);
    let loaded = Config::load_from(None, &vars).unwrap();
    assert!(loaded.source.is_none());
    assert_eq!(loaded.config.projects.len(), 1);
    assert_eu(&loaded.config.configuration);
    assert_eq!(loaded.config.configuration.metrics.route(), "/prom");

    let partial = env(&[("AMPLITUDE_API_KEY", "a"), ("AMPLITUDE_SECRET_KEY", "s")]);
    let err = Config::load_from(None, &partial).unwrap_err();
    assert_eq!(
        err.to_string(),
        "AMPLITUDE_EXPERIMENT_MANAGEMENT_API_KEY: must be set (or list the project's deployments)"
    );

    let err = Config::load_from(None, &HashMap::new()).unwrap_err();
    assert!(matches!(err, ConfigError::NoConfig { .. }), "{err}");
}

#[test]
fn env_project_overrides_single_file_project() {
    let loaded = load_text("c.yaml", PROJECT_YAML, &[("AMPLITUDE_API_KEY", "env-api")]).unwrap();
    let project = &loaded.config.projects[0];
    assert_eq!(project.api_key.as_ref().unwrap().expose(), "env-api");
    assert_eq!(project.secret_key.as_ref().unwrap().expose(), "secret-1");
}

#[test]
fn env_project_ignored_with_several_file_projects() {
    let loaded = load_text("c.yaml", FULL_YAML, &[("AMPLITUDE_API_KEY", "env-api")]).unwrap();
    assert_eq!(
        loaded.config.projects[0].api_key.as_ref().unwrap().expose(),
        "api-1"
    );
    assert_eq!(
        loaded.warnings,
        vec!["AMPLITUDE_API_KEY ignored: the config file lists 2 projects"]
    );
}

#[test]
fn env_project_fills_file_without_projects() {
    let yaml = "configuration:\n  port: 4000\n";
    let vars = [
        ("AMPLITUDE_API_KEY", "a"),
        ("AMPLITUDE_SECRET_KEY", "s"),
        ("AMPLITUDE_EXPERIMENT_MANAGEMENT_API_KEY", "m"),
    ];
    let loaded = load_text("c.yaml", yaml, &vars).unwrap();
    assert_eq!(loaded.config.projects.len(), 1);
    assert_eq!(loaded.config.configuration.port, 4000);
}

#[test]
fn separate_projects_file() {
    let dir = TempDir::new().unwrap();
    let sub = dir.path().join("projects");
    std::fs::create_dir(&sub).unwrap();
    let projects = sub.join("projects.json");
    std::fs::write(
        &projects,
        r#"{"projects":[{"deployments":[{"key":"server-x","flagsFile":"x.json"}]}]}"#,
    )
    .unwrap();
    let config = write(
        &dir,
        "config.yaml",
        &format!("{PROJECT_YAML}configuration:\n  port: 4000\n"),
    );
    let vars = env(&[(PROJECTS_PATH_ENV, projects.to_str().unwrap())]);
    let loaded = Config::load_from(Some(&config), &vars).unwrap();
    assert_eq!(loaded.config.configuration.port, 4000);
    let DeploymentSource::Listed(list) = &loaded.config.projects[0].deployments else {
        panic!("expected listed deployments");
    };
    assert_eq!(
        list[0].flags_file.as_deref(),
        Some(sub.join("x.json").as_path())
    );
    assert!(loaded.warnings[0].starts_with("projects in the config file are ignored"));
}

#[test]
fn log_level_accepts_levels_and_directives() {
    let level = |v: &str| {
        load_text("c.yaml", PROJECT_YAML, &[("AMPLITUDE_LOG_LEVEL", v)])
            .map(|l| l.config.configuration.log_level)
    };
    assert_eq!(level("INFO").unwrap(), "info");
    assert_eq!(level("Warning").unwrap(), "warn");
    assert_eq!(level("ALL").unwrap(), "trace");
    assert_eq!(
        level("info,evaluation_proxy=debug").unwrap(),
        "info,evaluation_proxy=debug"
    );
    assert!(level("verbose").is_err());
}

#[test]
fn example_config_loads_without_warnings() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/evaluation-proxy.yaml");
    let loaded = Config::load_from(Some(&path), &HashMap::new()).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(loaded.config.configuration, Configuration::default());
}

#[test]
fn endpoint_joins_paths() {
    let url = ServerUrl::from_static("https://h.example.com");
    assert_eq!(url.endpoint("/a/b").as_str(), "https://h.example.com/a/b");
    assert_eq!(url.endpoint("a").as_str(), "https://h.example.com/a");
}

#[test]
fn example_config_with_optional_blocks_uncommented() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/evaluation-proxy.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let uncommented: String = text
        .lines()
        .map(|line| match line.strip_prefix("  # ") {
            Some(rest) if rest.starts_with("- ") || rest.starts_with("  ") || rest == "redis:" => {
                format!("  {rest}\n")
            }
            _ => format!("{line}\n"),
        })
        .collect();
    let loaded = load_text("example.yaml", &uncommented, &[]).unwrap();
    assert_eq!(loaded.config.projects.len(), 2);
    assert!(loaded.config.configuration.redis.is_some());
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    assert!(loaded.warnings[0].contains("flags/client.json does not exist"));
}

#[test]
fn server_url_constructors_for_callers() {
    let base = ServerUrl::parse_base("http://127.0.0.1:8080/prefix/").unwrap();
    assert_eq!(
        base.endpoint("/sdk/v2/flags").as_str(),
        "http://127.0.0.1:8080/prefix/sdk/v2/flags"
    );
    assert!(ServerUrl::parse_base("http://x/?q=1").is_err());
    let full = ServerUrl::parse_full("http://127.0.0.1:8080/2/httpapi?x=1").unwrap();
    assert_eq!(full.url().as_str(), "http://127.0.0.1:8080/2/httpapi?x=1");
    assert!(ServerUrl::parse_full("redis://x").is_err());
}

#[test]
fn port_zero_means_any_free_port() {
    let yaml = format!("{PROJECT_YAML}configuration:\n  port: 0\n  metrics:\n    port: 0\n");
    let c = load_yaml(&yaml).config.configuration;
    assert_eq!((c.port, c.metrics.port), (0, 0));
}

#[test]
fn local_example_config_loads_without_warnings() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/local.yaml");
    let loaded = Config::load_from(Some(&path), &HashMap::new()).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert!(loaded.config.projects[0].is_local());
}

const FLAGSMITH_YAML: &str = "configuration:\n  flagsmith:\n    environments:\n      - serverSideKey: ser.abc\n        clientSideKey: client-abc\n";

#[test]
fn flagsmith_only_config_is_valid_with_defaults() {
    let loaded = load_yaml(FLAGSMITH_YAML);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert!(loaded.config.projects.is_empty());
    let f = &loaded.config.configuration.flagsmith;
    assert_eq!(
        f.api_url.url().as_str(),
        "https://edge.api.flagsmith.com/api/v1"
    );
    assert_eq!(f.api_poll_frequency_seconds, 10);
    assert_eq!(f.api_poll_timeout_seconds, 5);
    assert_eq!(f.environment_update_grace_period_seconds, 30);
    assert_eq!(f.environments.len(), 1);
    assert_eq!(f.environments[0].server_side_key.expose(), "ser.abc");
    assert_eq!(f.environments[0].client_side_key.expose(), "client-abc");
    assert!(f.environments[0].document_file.is_none());
    assert!(!format!("{:?}", loaded.config).contains("ser.abc"));
}

#[test]
fn flagsmith_fields_are_read_and_trailing_slash_dropped() {
    let dir = TempDir::new().unwrap();
    write(&dir, "env.json", "{}");
    let yaml = "configuration:\n  flagsmith:\n    apiUrl: http://127.0.0.1:9/api/v1/\n    apiPollFrequencySeconds: 3\n    apiPollTimeoutSeconds: 2\n    environmentUpdateGracePeriodSeconds: 0\n    environments:\n      - {server_side_key: ser.a, client_side_key: a, documentFile: env.json}\n";
    let path = write(&dir, "c.yaml", yaml);
    let loaded = Config::load_from(Some(&path), &HashMap::new()).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let f = &loaded.config.configuration.flagsmith;
    assert_eq!(f.api_url.url().as_str(), "http://127.0.0.1:9/api/v1");
    assert_eq!(
        f.api_url.endpoint("/environment-document/").as_str(),
        "http://127.0.0.1:9/api/v1/environment-document/"
    );
    assert_eq!(
        (f.api_poll_frequency_seconds, f.api_poll_timeout_seconds),
        (3, 2)
    );
    assert_eq!(f.environment_update_grace_period_seconds, 0);
    assert_eq!(
        f.environments[0].document_file.as_deref(),
        Some(dir.path().join("env.json").as_path())
    );
}

#[test]
fn flagsmith_errors_name_their_field() {
    let env_list =
        |items: &str| format!("configuration:\n  flagsmith:\n    environments: [{items}]\n");
    let cases: Vec<(String, &str)> = vec![
        (env_list("{clientSideKey: c}"), "configuration.flagsmith.environments[0].serverSideKey: must be set"),
        (env_list("{serverSideKey: abc, clientSideKey: c}"), "configuration.flagsmith.environments[0].serverSideKey: must start with ser."),
        (env_list("{serverSideKey: ser.a}"), "configuration.flagsmith.environments[0].clientSideKey: must be set"),
        (env_list("{serverSideKey: ser.a, clientSideKey: ser.b}"), "configuration.flagsmith.environments[0].clientSideKey: must not start with ser."),
        (
            env_list("{serverSideKey: ser.a, clientSideKey: c}, {serverSideKey: ser.b, clientSideKey: c}"),
            "configuration.flagsmith.environments[1].clientSideKey: duplicate key (also configuration.flagsmith.environments[0].clientSideKey)",
        ),
        (format!("{FLAGSMITH_YAML}    apiUrl: ftp://x\n"), "configuration.flagsmith.apiUrl: must be an http or https URL"),
        (format!("{FLAGSMITH_YAML}    apiPollFrequencySeconds: 0\n"), "configuration.flagsmith.apiPollFrequencySeconds: must be greater than 0"),
        (format!("{FLAGSMITH_YAML}    apiPollTimeoutSeconds: x\n"), "configuration.flagsmith.apiPollTimeoutSeconds: invalid digit"),
        ("configuration:\n  flagsmith: []\n".to_string(), "configuration.flagsmith: invalid type"),
    ];
    for (yaml, expected) in cases {
        let message = match load_text("c.yaml", &yaml, &[]) {
            Ok(_) => panic!("expected an error for {yaml:?}"),
            Err(e) => e.to_string(),
        };
        assert!(message.starts_with(expected), "{yaml:?}: {message}");
    }
}

#[test]
fn flagsmith_environments_from_env_json() {
    let vars = env(&[
        ("PROXY_CONFIG_FILE_PATH", ""),
        (
            "FLAGSMITH_ENVIRONMENT_KEY_PAIRS",
            r#"[{"server_side_key":"ser.x","client_side_key":"x"}]"#,
        ),
        ("FLAGSMITH_API_URL", "http://127.0.0.1:1/api/v1"),
    ]);
    // No file at all: the env defines the Flagsmith environment.
    let loaded = Config::load_from(None, &vars);
    // The default path may exist on a developer machine; only check when it does not.
    if !Path::new(DEFAULT_CONFIG_PATH).exists() {
        let f = loaded.unwrap().config.configuration.flagsmith;
        assert_eq!(f.environments[0].client_side_key.expose(), "x");
        assert_eq!(f.api_url.url().as_str(), "http://127.0.0.1:1/api/v1");
    }
    let message = match load_text(
        "c.yaml",
        FLAGSMITH_YAML,
        &[(
            "FLAGSMITH_ENVIRONMENT_KEY_PAIRS",
            r#"[{"server_side_key":"nope","client_side_key":"x"}]"#,
        )],
    ) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    };
    assert_eq!(
        message,
        "FLAGSMITH_ENVIRONMENT_KEY_PAIRS: must start with ser."
    );
    let message = load_text(
        "c.yaml",
        FLAGSMITH_YAML,
        &[("FLAGSMITH_ENVIRONMENT_KEY_PAIRS", "not json")],
    )
    .unwrap_err()
    .to_string();
    assert!(
        message.starts_with("FLAGSMITH_ENVIRONMENT_KEY_PAIRS: must be a JSON list"),
        "{message}"
    );
}
