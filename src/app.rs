//! Wiring: builds the store, registry and sync loops from the [`Config`], serves the main and
//! metrics ports, and shuts everything down in order.
//!
//! Start-up never waits for the vendor: the ports open at once and `/readyz` says when every
//! deployment has flags. Shutdown (SIGTERM/SIGINT in the binary, [`RunningApp::shutdown`] in
//! tests): readiness turns 503, the listeners stop accepting, in-flight requests finish,
//! background loops stop, all within the configured grace period.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::ServiceExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::util::MapRequestLayer;
use tower::Layer;

use crate::amplitude::assignment::{
    ApiKeys, Dedup, SystemClock, Tracker, TrackerSettings, UploadError, UploadSettings,
};
use crate::amplitude::cohort::sync::CohortSync;
use crate::amplitude::cohort::upstream::CohortClient;
use crate::amplitude::cohort::{Cohorts, Credentials};
use crate::amplitude::registry::Registry;
use crate::amplitude::sync::{FlagSource, ProjectSource, SyncSettings, Syncer};
use crate::amplitude::upstream::{AmplitudeClient, RetryPolicy};
use crate::config::RedisConfig;
use crate::config::{Config, DeploymentSource, FlagsmithConfig, ProjectConfig};
use crate::flagsmith::registry::FlagsmithRegistry;
use crate::flagsmith::sync::{DocumentSource, FlagsmithSyncSettings, FlagsmithSyncer};
use crate::http::{self, AppState, HttpSettings};
use crate::store::{MemoryStore, RedisSettings, ResilientStore, Store};

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A port could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// The HTTP client for the vendor APIs could not be built (TLS set-up).
    #[error("cannot create the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    /// Redis can never be used with these settings (bad settings, or a keyspace written by a
    /// newer proxy); an unreachable Redis is not this error (the proxy starts without it).
    #[error("cannot use redis: {0}")]
    Store(String),
    /// The assignment upload client could not be built.
    #[error(transparent)]
    Tracking(#[from] UploadError),
}

/// A started proxy: where it listens and how to stop it.
#[derive(Debug)]
pub struct RunningApp {
    /// Address of the main port (useful when the configured port is 0).
    pub addr: SocketAddr,
    /// Address of the metrics port.
    pub metrics_addr: SocketAddr,
    shutdown: CancellationToken,
    finished: JoinHandle<()>,
}

impl RunningApp {
    /// Begins graceful shutdown.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Waits until the proxy has stopped.
    pub async fn stopped(self) {
        let _ = self.finished.await;
    }
}

/// How often a flags file is checked for changes.
const FILE_POLL_INTERVAL: Duration = Duration::from_millis(500);
/// TTL of the per-project sync lease without Redis (the single replica always holds it).
const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);
/// Timeout of one upstream request.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);
/// Timeout of one assignment upload (the Java analytics SDK's 10 s).
const ANALYTICS_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds the ports, starts the sync loops and serves until [`RunningApp::shutdown`].
pub async fn start(config: Config) -> Result<RunningApp, StartError> {
    let settings = Settings::from_config(&config);
    let listener = bind(settings.bind).await?;
    let metrics_listener = bind(settings.metrics_bind).await?;
    let addr = local_addr(&listener)?;
    let metrics_addr = local_addr(&metrics_listener)?;

    // The store outlives the background loops: the lease holder releases its lease on the way out.
    let store_cancel = CancellationToken::new();
    let (store, connecting) = open_store(config.configuration.redis.as_ref(), &store_cancel);
    if let (Some(redis), Some(connecting)) = (&config.configuration.redis, &connecting) {
        // Wait (briefly) for the first attempt, so a keyspace from a newer proxy stops start-up
        // with a clear message; an unreachable Redis only delays it by the connection timeout.
        let _ = tokio::time::timeout(redis.connection_timeout(), connecting.settled()).await;
        if let Some(error) = connecting.fatal_error() {
            store_cancel.cancel();
            return Err(StartError::Store(error));
        }
    }
    let registry = Arc::new(Registry::new(Arc::clone(&store)));
    let flagsmith = Arc::new(settings.flagsmith.registry());
    let cohorts = Arc::new(Cohorts::new(
        Arc::clone(&store),
        cohort_credentials(&config),
    ));
    let metrics_handle = crate::metrics::install();
    let shutdown = CancellationToken::new();
    let background = CancellationToken::new();
    let tasks = TaskTracker::new();
    let tracking = Tracking::default();
    let api_keys = Arc::new(api_keys(&config));
    let tracker = start_tracker(&config, &api_keys, Arc::clone(&store), &tasks, &tracking)?;
    let state = AppState {
        registry: Arc::clone(&registry),
        cohorts: Arc::clone(&cohorts),
        flagsmith: Arc::clone(&flagsmith),
        shutting_down: Arc::new(AtomicBool::new(false)),
        metrics: metrics_handle,
        tracker,
    };

    // The watcher subscribes before any loop can write, so no change is missed.
    tasks.spawn(Arc::clone(&registry).watch(background.clone()));
    if let Some(handle) = state.metrics.clone() {
        tasks.spawn(crate::metrics::upkeep(handle, background.clone()));
    }
    let cohort_client = CohortClient::new(
        config.configuration.cohort_server_url.url().as_str(),
        config.configuration.max_cohort_size,
        RetryPolicy::default(),
    )?;
    tasks.spawn(
        CohortSync::new(
            cohorts,
            Arc::clone(&registry),
            cohort_client,
            config.configuration.cohort_sync_interval(),
        )
        .run(background.clone()),
    );
    let client = AmplitudeClient::new(UPSTREAM_TIMEOUT, RetryPolicy::default())?;
    let syncer = Syncer::new(
        settings.sync.clone(),
        client,
        Arc::clone(&store),
        registry,
        tasks.clone(),
    )
    .with_api_keys(api_keys);
    start_projects(
        syncer,
        settings.projects.clone(),
        connecting,
        &tasks,
        &background,
    );
    FlagsmithSyncer::new(settings.flagsmith.sync.clone(), flagsmith, store)?.start(
        settings.flagsmith.sources.clone(),
        &tasks,
        &background,
    );

    let main = http::router(state.clone(), &settings.http);
    let metrics = http::metrics_router(state.clone(), &settings.metrics_path);
    tracing::info!(%addr, %metrics_addr, "evaluation proxy listening");
    let finished = tokio::spawn(serve(
        (listener, main),
        (metrics_listener, metrics),
        Stopping {
            shutdown: shutdown.clone(),
            background,
            store_cancel,
            tasks,
            state,
            grace: settings.grace,
            tracking,
        },
    ));
    Ok(RunningApp {
        addr,
        metrics_addr,
        shutdown,
        finished,
    })
}

/// What the serving task needs to stop in order.
struct Stopping {
    shutdown: CancellationToken,
    background: CancellationToken,
    store_cancel: CancellationToken,
    tasks: TaskTracker,
    state: AppState,
    grace: Duration,
    tracking: Tracking,
}

/// The assignment worker's shutdown tokens: `stop` once the HTTP servers have drained (flush
/// everything), `abort` when the grace period is over (stop retrying, count what is left).
#[derive(Debug, Clone, Default)]
struct Tracking {
    stop: CancellationToken,
    abort: CancellationToken,
}

async fn serve(
    (listener, main): (TcpListener, axum::Router),
    (metrics_listener, metrics): (TcpListener, axum::Router),
    stopping: Stopping,
) {
    let Stopping {
        shutdown,
        background,
        store_cancel,
        tasks,
        state,
        grace,
        tracking,
    } = stopping;
    let drain = shutdown.clone();
    let main_server = tokio::spawn(
        axum::serve(
            listener,
            ServiceExt::<axum::extract::Request>::into_make_service(
                MapRequestLayer::new(http::collapse_slashes).layer(main),
            ),
        )
        .with_graceful_shutdown(async move { drain.cancelled().await })
        .into_future(),
    );
    let drain = shutdown.clone();
    let metrics_server = tokio::spawn(
        axum::serve(metrics_listener, metrics)
            .with_graceful_shutdown(async move { drain.cancelled().await })
            .into_future(),
    );

    shutdown.cancelled().await;
    tracing::info!(grace_ms = grace.as_millis() as u64, "shutting down");
    state.shutting_down.store(true, Ordering::Relaxed);
    background.cancel();
    tasks.close();
    let drained = tokio::time::timeout(grace, async {
        let _ = main_server.await;
        let _ = metrics_server.await;
        // No request can queue an assignment any more: flush what is queued and retrying.
        tracking.stop.cancel();
        tasks.wait().await;
    })
    .await;
    if drained.is_err() {
        tracing::warn!("grace period over; stopping with requests or tasks still running");
        tracking.stop.cancel();
        tracking.abort.cancel();
        // Give the worker a moment to count and log the events it could not send.
        let _ = tokio::time::timeout(Duration::from_secs(1), tasks.wait()).await;
    }
    store_cancel.cancel();
    tracing::info!("evaluation proxy stopped");
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind {
            addr: addr.to_string(),
            source,
        })
}

fn local_addr(listener: &TcpListener) -> Result<SocketAddr, StartError> {
    listener.local_addr().map_err(|source| StartError::Bind {
        addr: "listener".into(),
        source,
    })
}

/// The parts of the configuration each component needs, mapped in one place.
struct Settings {
    bind: SocketAddr,
    metrics_bind: SocketAddr,
    metrics_path: String,
    grace: Duration,
    http: HttpSettings,
    sync: SyncSettings,
    projects: Vec<ProjectSource>,
    flagsmith: FlagsmithSettings,
}

/// What the Flagsmith registry and sync loops need.
struct FlagsmithSettings {
    /// (server-side key, client-side key) per environment, in configured order.
    pairs: Vec<(String, String)>,
    sources: Vec<DocumentSource>,
    sync: FlagsmithSyncSettings,
    grace: Duration,
}

impl FlagsmithSettings {
    fn from_config(config: &FlagsmithConfig) -> Self {
        let pairs = config
            .environments
            .iter()
            .map(|e| {
                (
                    e.server_side_key.expose().to_owned(),
                    e.client_side_key.expose().to_owned(),
                )
            })
            .collect();
        let sources = config
            .environments
            .iter()
            .map(|e| match &e.document_file {
                Some(path) => DocumentSource::File(path.clone()),
                None => DocumentSource::Api {
                    server_key: e.server_side_key.expose().to_owned(),
                },
            })
            .collect();
        Self {
            pairs,
            sources,
            sync: FlagsmithSyncSettings {
                document_url: config
                    .api_url
                    .endpoint("/environment-document/")
                    .to_string(),
                poll_interval: Duration::from_secs(config.api_poll_frequency_seconds),
                timeout: Duration::from_secs(config.api_poll_timeout_seconds),
                file_poll_interval: FILE_POLL_INTERVAL,
                lease_ttl: FlagsmithSyncSettings::lease_ttl_for(Duration::from_secs(
                    config.api_poll_timeout_seconds,
                )),
            },
            grace: Duration::from_secs(config.environment_update_grace_period_seconds),
        }
    }

    fn registry(&self) -> FlagsmithRegistry {
        FlagsmithRegistry::new(&self.pairs, self.sync.poll_interval, self.grace)
    }
}

impl Settings {
    fn from_config(config: &Config) -> Self {
        let c = &config.configuration;
        let projects = config
            .projects
            .iter()
            .enumerate()
            .map(|(index, project)| project_source(index, project))
            .collect();
        Self {
            bind: c.bind_addr(),
            metrics_bind: c.metrics_bind_addr(),
            metrics_path: c.metrics.path.clone(),
            grace: Duration::from_millis(c.shutdown_grace_period_millis),
            http: HttpSettings {
                max_body_bytes: c.max_request_body_bytes,
                cors_allowed_origins: c.cors.allowed_origins.clone(),
            },
            sync: SyncSettings {
                server_url: c.server_url.url().as_str().to_owned(),
                management_server_url: c.management_server_url.url().as_str().to_owned(),
                deployment_sync_interval: Duration::from_millis(c.deployment_sync_interval_millis),
                flag_sync_interval: Duration::from_millis(c.flag_sync_interval_millis),
                file_poll_interval: FILE_POLL_INTERVAL,
                jitter: f64::from(c.flag_sync_jitter_percent) / 100.0,
                lease_ttl: c
                    .redis
                    .as_ref()
                    .map_or(DEFAULT_LEASE_TTL, RedisConfig::lease_ttl),
            },
            projects,
            flagsmith: FlagsmithSettings::from_config(&c.flagsmith),
        }
    }
}

fn project_source(index: usize, project: &ProjectConfig) -> ProjectSource {
    match &project.deployments {
        DeploymentSource::Management { management_key } => ProjectSource {
            index,
            management_key: Some(management_key.expose().to_owned()),
            deployments: Vec::new(),
        },
        DeploymentSource::Listed(deployments) => ProjectSource {
            index,
            management_key: None,
            deployments: deployments
                .iter()
                .map(|d| {
                    let source = match &d.flags_file {
                        Some(path) => FlagSource::File(path.clone()),
                        None => FlagSource::Vendor,
                    };
                    (d.key.expose().to_owned(), source)
                })
                .collect(),
        },
    }
}

/// The projects' `apiKey:secretKey` pairs: they download cohorts and authenticate SDKs at
/// `/sdk/v1/cohort` (projects without both keys are left out).
fn cohort_credentials(config: &Config) -> Vec<Credentials> {
    let mut credentials: Vec<Credentials> = Vec::new();
    for project in &config.projects {
        if let (Some(api), Some(secret)) = (&project.api_key, &project.secret_key) {
            let pair = Credentials {
                api_key: api.expose().to_owned(),
                secret_key: secret.expose().to_owned(),
            };
            if !credentials.contains(&pair) {
                credentials.push(pair);
            }
        }
    }
    credentials
}

/// The project API key of each configured project, and the deployments listed in the file.
fn api_keys(config: &Config) -> ApiKeys {
    let keys = ApiKeys::new(
        config
            .projects
            .iter()
            .map(|p| p.api_key.as_ref().map(|k| k.expose().to_owned()))
            .collect(),
    );
    for (index, project) in config.projects.iter().enumerate() {
        if let DeploymentSource::Listed(deployments) = &project.deployments {
            for deployment in deployments {
                keys.register(deployment.key.expose(), index);
            }
        }
    }
    keys
}

/// Starts assignment tracking, unless no project has an API key to upload with. Dedup is shared
/// through the store when Redis is configured, per process otherwise.
fn start_tracker(
    config: &Config,
    keys: &Arc<ApiKeys>,
    store: Arc<dyn Store>,
    tasks: &TaskTracker,
    tracking: &Tracking,
) -> Result<Option<Tracker>, StartError> {
    if keys.is_empty() {
        return Ok(None);
    }
    let c = &config.configuration;
    let settings = TrackerSettings {
        upload: UploadSettings {
            url: c.analytics_server_url.url().as_str().to_owned(),
            threshold: c.assignment.event_upload_threshold,
            period: Duration::from_millis(c.assignment.event_upload_period_millis),
            timeout: ANALYTICS_TIMEOUT,
        },
        filter_capacity: c.assignment.filter_capacity,
        queue_capacity: c.assignment.queue_capacity,
    };
    let dedup = if c.redis.is_some() {
        Dedup::Shared(store)
    } else {
        Dedup::Local
    };
    let tracker = Tracker::start(
        settings,
        Arc::clone(keys),
        dedup,
        Arc::new(SystemClock),
        tasks,
        tracking.stop.clone(),
        tracking.abort.clone(),
    )?;
    Ok(Some(tracker))
}

/// The store replicas share: Redis when `configuration.redis` is set, otherwise process memory.
///
/// Redis is connected in the background ([`ResilientStore`]): the proxy starts even when Redis
/// is down, syncing from the vendor itself, and switches to shared mode when Redis comes. The
/// second value is the Redis store to wait for (its first connection attempt) before the sync
/// loops start, so replicas know from the start whether they can share the vendor's work.
fn open_store(
    redis: Option<&RedisConfig>,
    cancel: &CancellationToken,
) -> (Arc<dyn Store>, Option<Arc<ResilientStore>>) {
    let Some(redis) = redis else {
        return (Arc::new(MemoryStore::new()), None);
    };
    tracing::info!(uri = %redis.uri, prefix = %redis.prefix, "using the shared Redis store");
    let store = ResilientStore::start(redis_settings(redis), cancel.clone());
    (Arc::clone(&store) as Arc<dyn Store>, Some(store))
}

/// Starts every project's sync loops, once the first Redis connection attempt has finished.
fn start_projects(
    syncer: Syncer,
    projects: Vec<ProjectSource>,
    connecting: Option<Arc<ResilientStore>>,
    tasks: &TaskTracker,
    cancel: &CancellationToken,
) {
    for project in &projects {
        syncer.declare(project);
    }
    let cancel = cancel.clone();
    tasks.spawn(async move {
        if let Some(store) = connecting {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = store.settled() => {}
            }
        }
        for project in projects {
            syncer.start_project(project, cancel.clone());
        }
    });
}

/// Maps `configuration.redis` to the store's settings.
fn redis_settings(redis: &RedisConfig) -> RedisSettings {
    let mut settings = RedisSettings::new(redis.uri.expose());
    settings.prefix = redis.prefix.clone();
    settings.connection_timeout = redis.connection_timeout();
    settings.command_timeout = redis.command_timeout();
    settings.pipeline_batch_size = redis.pipeline_batch_size.max(1);
    settings.scan_count = usize::try_from(redis.scan_limit)
        .unwrap_or(usize::MAX)
        .max(1);
    settings
}
