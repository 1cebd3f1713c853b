//! `voiceprint serve`: the gRPC server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use voiceprint::config::{Config, EnrolmentChannel, LogFormat};
use voiceprint::pipeline::{Engine, EngineConfig, ScoringSource};
use voiceprint::service::serve;

/// Run the gRPC service (configuration: defaults < `--config FILE` < `VOICEPRINT_*` env < flags).
#[derive(clap::Args)]
pub struct ServeArgs {
    /// TOML configuration file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address to listen on [env VOICEPRINT_LISTEN; default 127.0.0.1:50051].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Store directory [env VOICEPRINT_DATA_DIR; default ./voiceprint-data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Allow a non-loopback address without any token configured.
    #[arg(long)]
    insecure: bool,
    /// Serve Prometheus metrics on this address [env VOICEPRINT_METRICS_LISTEN; default off].
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// Log one JSON object per line [env VOICEPRINT_LOG_FORMAT=json].
    #[arg(long)]
    log_json: bool,
    /// Model checkpoint (default: the verified default model, fetched if missing).
    #[arg(long)]
    model: Option<PathBuf>,
}

/// Runs the server until SIGTERM or Ctrl-C, then drains in-flight requests.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = Config::load(args.config.as_deref())?;
    if let Some(l) = args.listen {
        config.listen = l;
    }
    if let Some(d) = args.data_dir {
        config.data_dir = d;
    }
    if args.insecure {
        config.insecure = true;
    }
    if let Some(m) = args.metrics_listen {
        config.metrics_listen = Some(m);
    }
    if args.log_json {
        config.log_format = LogFormat::Json;
    }
    init_logging(config.log_format);
    config.validate()?;

    let model_path = match args.model {
        Some(p) => p,
        None => voiceprint::model::ensure_model(&voiceprint::model::default_model_dir())
            .context("locating the embedding model")?,
    };
    tracing::info!(model = %model_path.display(), "loading engine");
    let mut engine_config = EngineConfig::new(model_path);
    engine_config.scoring = match (&config.scoring_dir, config.enrolment_channel) {
        (Some(dir), _) => {
            tracing::info!(dir = %dir.display(), "scoring with the calibration in this directory");
            ScoringSource::Dir(dir.clone())
        }
        (None, EnrolmentChannel::Telephone) => ScoringSource::BuiltinTelephone,
        (None, EnrolmentChannel::Wideband) => ScoringSource::Builtin,
    };
    let engine = Arc::new(Engine::load(engine_config).context("loading the engine")?);
    tracing::info!(calibration = engine.scorer().version(), "scorer loaded");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let server = serve(config, engine, shutdown_signal()).await?;
        server.wait().await?;
        anyhow::Ok(())
    })
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutdown requested: draining in-flight requests");
}
