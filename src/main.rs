//! The `evaluation-proxy` binary: run the proxy, check a configuration, or probe a running
//! proxy's health (for container health checks, which have no curl in our image).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use evaluation_proxy::config::{Config, LogFormat};

/// mimalloc instead of glibc malloc. A request allocates ~80 small blocks (the user's keys and
/// strings); with tracking on they are freed by the tracking worker on another thread, which
/// glibc serves through a lock on the allocating thread's arena. See BENCHMARKS.md ("Allocator").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Local feature-flag evaluation proxy (Amplitude Evaluation Proxy compatible)"
)]
struct Cli {
    /// Configuration file (YAML or JSON). Default: $PROXY_CONFIG_FILE_PATH, else
    /// /etc/evaluation-proxy-config.yaml.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the proxy (the default).
    Run,
    /// Load and validate the configuration, print it with secrets redacted, and exit.
    CheckConfig,
    /// GET a URL of a running proxy and exit 0 on a 2xx answer.
    Healthcheck {
        /// The URL to probe.
        #[arg(long, default_value = "http://127.0.0.1:3546/healthz")]
        url: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command.unwrap_or(Command::Run) {
        Command::Healthcheck { url } => runtime.block_on(healthcheck(&url)),
        Command::CheckConfig => {
            let loaded = Config::load(cli.config.as_deref())?;
            for warning in &loaded.warnings {
                eprintln!("warning: {warning}");
            }
            println!("{:#?}", loaded.config);
            Ok(ExitCode::SUCCESS)
        }
        Command::Run => {
            let loaded = Config::load(cli.config.as_deref())?;
            init_logging(&loaded.config);
            for warning in &loaded.warnings {
                tracing::warn!("{warning}");
            }
            match &loaded.source {
                Some(path) => tracing::info!(path = %path.display(), "configuration loaded"),
                None => tracing::info!("configuration loaded from the environment"),
            }
            runtime.block_on(serve(loaded.config))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let app = evaluation_proxy::app::start(config).await?;
    wait_for_signal().await?;
    app.shutdown();
    app.stopped().await;
    Ok(())
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
async fn wait_for_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
        tokio::select! {
            _ = term.recv() => {}
            result = tokio::signal::ctrl_c() => result.context("cannot listen for SIGINT")?,
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("cannot listen for Ctrl-C")?;
    Ok(())
}

fn init_logging(config: &Config) {
    let c = &config.configuration;
    let filter = tracing_subscriber::EnvFilter::try_new(&c.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: log collectors would store the escape codes.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    if c.log_format == LogFormat::Json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn healthcheck(url: &str) -> anyhow::Result<ExitCode> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()?;
    let response = client
        .get(url)
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    if response.status().is_success() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("{url} answered {}", response.status());
        Ok(ExitCode::FAILURE)
    }
}
