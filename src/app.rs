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

use crate::amplitude::registry::Registry;
use crate::amplitude::sync::{FlagSource, ProjectSource, SyncSettings, Syncer};
use crate::amplitude::upstream::{AmplitudeClient, RetryPolicy};
use crate::config::{Config, DeploymentSource, FlagsmithConfig, ProjectConfig};
use crate::flagsmith::registry::FlagsmithRegistry;
use crate::flagsmith::sync::{DocumentSource, FlagsmithSyncSettings, FlagsmithSyncer};
use crate::http::{self, AppState, HttpSettings};
use crate::store::{MemoryStore, Store};

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
/// Timeout of one upstream request.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);

/// Binds the ports, starts the sync loops and serves until [`RunningApp::shutdown`].
pub async fn start(config: Config) -> Result<RunningApp, StartError> {
    let settings = Settings::from_config(&config);
    let listener = bind(settings.bind).await?;
    let metrics_listener = bind(settings.metrics_bind).await?;
    let addr = local_addr(&listener)?;
    let metrics_addr = local_addr(&metrics_listener)?;

    if config.configuration.redis.is_some() {
        // The Redis store exists (src/store/redis.rs) but the replica coordination that makes
        // it safe to share (one lease holder syncs, followers load) is not wired yet.
        tracing::warn!(
            "redis is configured, but this version keeps flag state in memory; shared mode is not available yet"
        );
    }
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let registry = Arc::new(Registry::new(Arc::clone(&store)));
    let flagsmith = Arc::new(settings.flagsmith.registry());
    let state = AppState {
        registry: Arc::clone(&registry),
        flagsmith: Arc::clone(&flagsmith),
        shutting_down: Arc::new(AtomicBool::new(false)),
        metrics: crate::metrics::install(),
    };

    let shutdown = CancellationToken::new();
    let background = CancellationToken::new();
    let tasks = TaskTracker::new();
    // The watcher subscribes before any loop can write, so no change is missed.
    tasks.spawn(Arc::clone(&registry).watch(background.clone()));
    if let Some(handle) = state.metrics.clone() {
        tasks.spawn(crate::metrics::upkeep(handle, background.clone()));
    }
    let client = AmplitudeClient::new(UPSTREAM_TIMEOUT, RetryPolicy::default())?;
    let syncer = Syncer::new(
        settings.sync.clone(),
        client,
        store,
        registry,
        tasks.clone(),
    );
    for project in settings.projects.clone() {
        syncer.start_project(project, background.clone());
    }
    FlagsmithSyncer::new(settings.flagsmith.sync.clone(), flagsmith)?.start(
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
            tasks,
            state,
            grace: settings.grace,
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
    tasks: TaskTracker,
    state: AppState,
    grace: Duration,
}

async fn serve(
    (listener, main): (TcpListener, axum::Router),
    (metrics_listener, metrics): (TcpListener, axum::Router),
    stopping: Stopping,
) {
    let Stopping {
        shutdown,
        background,
        tasks,
        state,
        grace,
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
        tasks.wait().await;
    })
    .await;
    if drained.is_err() {
        tracing::warn!("grace period over; stopping with requests or tasks still running");
    }
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
