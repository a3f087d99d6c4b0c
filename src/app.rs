//! Builds the service from a [`Config`] and runs it until a shutdown signal.
//!
//! [`Application::build`] starts the [`Pipeline`] of the configured mode, binds the listener (port
//! 0 in tests) and assembles the router, so a test can learn the address before serving.
//! [`Application::run_until_stopped`] serves connections ([`crate::server`]) and, once the
//! shutdown future completes, drains them within `server.shutdownTimeout`, then shuts the pipeline
//! down (in its documented order; the store fsyncs and closes every file) and runs a last
//! aggregation pass. While it serves, `SIGHUP` reloads the sites file ([`Reloader`]).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::access::{Access, AccessCell, Reloader};
use crate::analytics::ingest_figures::IngestFigures;
use crate::analytics::{AggregationTask, Aggregators, RootsInForce};
use crate::config::Config;
use crate::http::{self, Analytics, AppState};
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::server::{Server, ServerSettings};
use crate::storage::Storage;

/// A built, bound, not yet running service.
pub struct Application {
    server: Server,
    pipeline: Arc<Pipeline>,
    shutting_down: Arc<AtomicBool>,
    aggregators: Arc<Aggregators>,
    /// The keys and sites in force: the aggregation task keeps each site's summaries.
    access: Arc<AccessCell>,
    aggregation_interval: Duration,
    ingest_figures: Arc<IngestFigures>,
    /// `SIGHUP`, listened to from start-up (its default action would end the process).
    hangup: tokio::signal::unix::Signal,
    reloader: Arc<Reloader>,
}

impl Application {
    /// Opens the configured storage ([`Storage`]: the store, or the bucket client), starts the
    /// pipeline (in v2 connects to Kafka) and binds the listener.
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        // The sites file first: a bad one stops the start before anything is opened.
        let access = Access::load(&config)?;
        let metrics = Metrics::new();
        let storage = Storage::open(&config, &metrics)?;
        let pipeline = Arc::new(Pipeline::start(&config, &storage, &metrics).await?);
        let Storage {
            aggregators,
            figures: ingest_figures,
            ..
        } = storage;
        let addr = config.listen_addr()?;
        let listener = match TcpListener::bind(addr).await {
            Ok(listener) => listener,
            Err(err) => {
                pipeline.shutdown().await;
                return Err(err).with_context(|| format!("cannot listen on {addr} (server.addr)"));
            }
        };
        let shutting_down = Arc::new(AtomicBool::new(false));
        let access = Arc::new(AccessCell::new(access));
        let state = AppState::new(
            &config,
            pipeline.clone(),
            metrics.clone(),
            shutting_down.clone(),
            Analytics::new(aggregators.clone(), ingest_figures.clone()),
            access.clone(),
        );
        let reloader = state.reloader.clone();
        let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("cannot listen for SIGHUP")?;
        let settings = ServerSettings::from_config(&config.server);
        tracing::info!(
            addr = %listener.local_addr()?,
            version = %config.version,
            backend = ?config.storage.backend,
            logs_dir = %config.storage.logs_dir.display(),
            fsync = config.storage.fsync.as_str(),
            auth = !config.auth.tokens.is_empty(),
            sites = config.sites.enabled(),
            max_connections = settings.max_connections,
            "log-pipeline listening"
        );
        let router = http::router(state, config.server.request_timeout);
        Ok(Application {
            server: Server::new(listener, router, settings, metrics),
            pipeline,
            shutting_down,
            aggregators,
            access,
            aggregation_interval: config.aggregation.interval,
            ingest_figures,
            hangup,
            reloader,
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Serves until `shutdown` completes, then drains (see [`Server::run`]): in-flight requests
    /// get `server.shutdownTimeout` to finish while new requests are answered 503
    /// `shutting_down`; then the pipeline drains and closes in its documented order, and a last
    /// aggregation pass runs.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let access = self.access;
        let roots: RootsInForce = Box::new(move || access.current().roots());
        let aggregation =
            AggregationTask::spawn(self.aggregators, roots, self.aggregation_interval);
        let figures = self.ingest_figures.spawn();
        let reloads = tokio::spawn(reload_on_hangup(self.hangup, self.reloader));
        let shutting_down = self.shutting_down;
        self.server
            .run(shutdown, move || {
                shutting_down.store(true, Ordering::Relaxed)
            })
            .await;
        // A request cut off by the timeout may still hold the pipeline: its storing task runs to
        // completion, so its batch is stored or refused as a whole; the store answers it `Closed`
        // if it arrives after this.
        reloads.abort();
        self.pipeline.shutdown().await;
        figures.finish().await;
        // The last pass sees everything the store flushed.
        aggregation.finish().await;
        tracing::info!("shutdown complete: files synced and closed, summaries up to date");
        Ok(())
    }
}

/// Reloads the sites file at each `SIGHUP` (logged and counted by [`Reloader::reload`]; without
/// `sites.file`, logged only), until aborted at shutdown.
async fn reload_on_hangup(mut hangup: tokio::signal::unix::Signal, reloader: Arc<Reloader>) {
    while hangup.recv().await.is_some() {
        let reloader = reloader.clone();
        // Reads a file: off the async workers. The outcome is in the log and the metrics.
        let _ = tokio::task::spawn_blocking(move || reloader.reload("SIGHUP")).await;
    }
}

/// A future that completes on SIGINT or SIGTERM. The handlers are installed when this is called,
/// not when the future is first polled, so a signal that arrives while the service is still
/// starting is not lost to the default action (immediate exit).
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => tracing::info!(signal = "SIGINT", "shutdown requested"),
            _ = terminate.recv() => tracing::info!(signal = "SIGTERM", "shutdown requested"),
        }
    })
}
