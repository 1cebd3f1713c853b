//! The gRPC service of `proto/voiceprint/v1/voiceprint.proto` over a [`Store`].
//!
//! [`serve`] is the one entry point: it opens the store in the configured data directory, loads
//! the decrypted search indexes, binds the listener (port 0 picks a free one) and serves
//! `voiceprint.v1.Voiceprint`, `grpc.health.v1.Health` and server reflection until the shutdown
//! future completes, then drains in-flight requests.
//!
//! Behaviour worth knowing:
//! - Every RPC runs as the tenant its bearer token maps to ([`crate::config::Config::tenants`]);
//!   with no tokens there is one `default` tenant and only loopback binding is allowed.
//! - Audio analysis runs on the blocking pool behind a bounded admission queue: when it is full,
//!   requests fail at once with `UNAVAILABLE` instead of piling up.
//! - A client deadline (`grpc-timeout`) is honoured: the request is dropped with
//!   `DEADLINE_EXCEEDED`, and a job that has not started yet never starts.
//! - Business outcomes (not enrolled, opted out, ...) are responses; errors map to status codes
//!   in one place ([`ServiceError`]).

mod auth;
mod error;
mod handlers;
mod index;
mod limits;
mod recurring;
mod stream;
mod work;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

pub use auth::Auth;
pub use error::ServiceError;
pub use handlers::VoiceprintService;
pub use index::{Hit, Index};
pub use work::WorkPool;

use crate::config::Config;
use crate::pipeline::Engine;
use crate::proto::v1::voiceprint_server::VoiceprintServer;
use crate::store::{KeySource, MasterKey, RedbStore, Store, StoreError};

/// How often stale voiceprints are looked for.
const EXPIRY_SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// Failures starting the server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration is not usable.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The store could not be opened or loaded.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// Loading the indexes failed.
    #[error("loading indexes: {0}")]
    Load(#[from] ServiceError),
    /// A TLS file could not be read.
    #[error("TLS file {0}: {1}")]
    TlsFile(std::path::PathBuf, #[source] std::io::Error),
    /// Binding the listen address failed.
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, #[source] std::io::Error),
    /// The gRPC transport failed.
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// Server reflection could not be set up.
    #[error("reflection: {0}")]
    Reflection(String),
    /// The server task ended abnormally.
    #[error("server task failed: {0}")]
    Join(String),
}

/// A server started by [`serve`].
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    task: JoinHandle<Result<(), ServeError>>,
}

impl RunningServer {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits until the server has shut down and drained.
    pub async fn wait(self) -> Result<(), ServeError> {
        self.task
            .await
            .map_err(|e| ServeError::Join(e.to_string()))?
    }
}

/// Opens the store in `config.data_dir` (creating the master key file on first run), loads the
/// indexes, binds `config.listen` and serves until `shutdown` resolves.
pub async fn serve(
    config: Config,
    engine: Arc<Engine>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<RunningServer, ServeError> {
    config.validate()?;
    let auth = Auth::new(&config.tenants);
    if !auth.enabled() {
        tracing::warn!(
            listen = %config.listen,
            "NO AUTHENTICATION: no tokens configured, every caller is tenant \"default\". \
             Configure [[tenants]] or VOICEPRINT_TOKENS before exposing this server."
        );
    }
    let key_path = config.master_key_path();
    let store: Arc<dyn Store> = {
        let data_dir = config.data_dir.clone();
        let opened = tokio::task::spawn_blocking(move || -> Result<_, StoreError> {
            let (key, source) = MasterKey::resolve(&key_path)?;
            match &source {
                KeySource::Created(p) => tracing::warn!(
                    path = %p.display(),
                    "created a new master key: back it up; without it the stored voiceprints are unreadable"
                ),
                KeySource::File(p) => tracing::info!(path = %p.display(), "master key loaded from file"),
                KeySource::Env => tracing::info!("master key loaded from VOICEPRINT_MASTER_KEY"),
            }
            RedbStore::open(&data_dir, key)
        })
        .await
        .map_err(|e| ServeError::Join(e.to_string()))??;
        Arc::new(opened)
    };
    let shared = Arc::new(handlers::Shared {
        engine,
        store,
        auth,
        pool: WorkPool::new(config.effective_workers(), config.queue_depth)
            .with_embed_threads(config.embed_threads),
        config: config.clone(),
        speakers: RwLock::new(Default::default()),
        watchlists: RwLock::new(Default::default()),
        write_lock: Mutex::new(()),
        replay: Mutex::new(Default::default()),
        streams: Arc::new(tokio::sync::Semaphore::new(config.stream.max_streams)),
        complaints: Mutex::new(Default::default()),
    });
    {
        let sh = Arc::clone(&shared);
        let ((n, m), k, r) = tokio::task::spawn_blocking(move || -> Result<_, ServiceError> {
            let expired = sh.sweep_expired()?;
            if expired > 0 {
                tracing::info!(expired, "expired voiceprints erased");
            }
            let loaded = sh.load_indexes()?;
            sh.prune_replays()?;
            let replays = sh.load_replays()?;
            Ok((loaded, sh.load_complaints()?, replays))
        })
        .await
        .map_err(|e| ServeError::Join(e.to_string()))??;
        tracing::info!(
            speakers = n,
            watchlist_entries = m,
            complaints = k,
            replay_fingerprints = r,
            "indexes loaded"
        );
    }

    if let Some(addr) = config.metrics_listen {
        match metrics_exporter_prometheus::PrometheusBuilder::new()
            .with_http_listener(addr)
            .install()
        {
            Ok(()) => tracing::info!(%addr, "Prometheus metrics on http://{addr}/metrics"),
            Err(e) => tracing::warn!(%addr, error = %e, "metrics exporter not started"),
        }
    }

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| ServeError::Bind(config.listen, e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| ServeError::Bind(config.listen, e))?;

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<VoiceprintServer<VoiceprintService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ServeError::Reflection(e.to_string()))?;
    let service = VoiceprintServer::new(VoiceprintService {
        shared: Arc::clone(&shared),
    })
    .max_decoding_message_size(config.max_message_bytes)
    .max_encoding_message_size(config.max_message_bytes);

    let mut builder = Server::builder();
    if let Some(tls) = &config.tls {
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| ServeError::TlsFile(p.to_path_buf(), e))
        };
        let mut tls_config =
            ServerTlsConfig::new().identity(Identity::from_pem(read(&tls.cert)?, read(&tls.key)?));
        if let Some(ca) = &tls.client_ca {
            tls_config = tls_config.client_ca_root(Certificate::from_pem(read(ca)?));
        }
        builder = builder.tls_config(tls_config)?;
    }
    let router = builder
        .layer(limits::MessageLimitLayer)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(service);

    let sweeper = {
        let sh = Arc::clone(&shared);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(EXPIRY_SWEEP_EVERY);
            tick.tick().await;
            loop {
                tick.tick().await;
                let sh = Arc::clone(&sh);
                match tokio::task::spawn_blocking(move || {
                    sh.prune_replays()?;
                    sh.sweep_expired()
                })
                .await
                {
                    Ok(Ok(n)) if n > 0 => tracing::info!(expired = n, "expired voiceprints erased"),
                    Ok(Err(e)) => tracing::error!(error = %e, "expiry sweep failed"),
                    _ => {}
                }
            }
        })
    };
    tracing::info!(%addr, tls = config.tls.is_some(), tenants = config.tenants.len(), "voiceprint serving");
    let drain = Arc::clone(&shared);
    let task = tokio::spawn(async move {
        let result = router
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
            .await;
        sweeper.abort();
        // Wait for the aborted sweeper, and for analyses whose clients went away, to drop their
        // handles on the store, so that the file lock is released when `wait` returns.
        let _ = sweeper.await;
        drain.pool.drain().await;
        health
            .set_not_serving::<VoiceprintServer<VoiceprintService>>()
            .await;
        tracing::info!("voiceprint stopped");
        result.map_err(ServeError::from)
    });
    Ok(RunningServer { addr, task })
}
