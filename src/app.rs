//! Builds the service from a [`Config`] and runs it until a shutdown signal.
//!
//! [`Application::build`] starts the [`Pipeline`] of the configured mode, binds the listener (port
//! 0 in tests) and assembles the router, so a test can learn the address before serving.
//! [`Application::run_until_stopped`] serves connections with hyper (for its header-read timeout)
//! and, once the shutdown future completes, stops accepting, lets in-flight requests finish within
//! `server.shutdownTimeout`, then shuts the pipeline down (in its documented order; the store
//! fsyncs and closes every file) and runs a last aggregation pass.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};

use crate::analytics::{AggregationTask, Aggregator};
use crate::config::Config;
use crate::http::{self, Analytics, AppState};
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;

/// Largest read buffer per HTTP/1 connection.
const MAX_CONNECTION_BUFFER_BYTES: usize = 64 * 1024;

/// A built, bound, not yet running service.
pub struct Application {
    listener: TcpListener,
    router: Router,
    pipeline: Arc<Pipeline>,
    shutting_down: Arc<AtomicBool>,
    aggregator: Arc<Aggregator>,
    aggregation_interval: Duration,
    read_header_timeout: Duration,
    shutdown_timeout: Duration,
}

impl Application {
    /// Starts the pipeline (opens the store; in v2 connects to Kafka) and binds the listener.
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        let metrics = Metrics::new();
        let pipeline = Arc::new(Pipeline::start(&config, &metrics).await?);
        let addr = config.listen_addr()?;
        let listener = match TcpListener::bind(addr).await {
            Ok(listener) => listener,
            Err(err) => {
                pipeline.shutdown().await;
                return Err(err).with_context(|| format!("cannot listen on {addr} (server.addr)"));
            }
        };
        let shutting_down = Arc::new(AtomicBool::new(false));
        // One aggregator per logs directory, shared by the periodic task and the queries.
        let aggregator = Arc::new(Aggregator::new(
            config.storage.logs_dir.clone(),
            config.storage.analytics_dir.clone(),
            config.aggregation.max_keys_per_hour,
            metrics.clone(),
        ));
        let state = AppState::new(
            &config,
            pipeline.clone(),
            metrics,
            shutting_down.clone(),
            Analytics::new(aggregator.clone()),
        );
        tracing::info!(
            addr = %listener.local_addr()?,
            version = %config.version,
            logs_dir = %config.storage.logs_dir.display(),
            fsync = config.storage.fsync.as_str(),
            auth = !config.auth.tokens.is_empty(),
            "log-pipeline listening"
        );
        Ok(Application {
            listener,
            router: http::router(state, config.server.request_timeout),
            pipeline,
            shutting_down,
            aggregator,
            aggregation_interval: config.aggregation.interval,
            read_header_timeout: config.server.read_header_timeout,
            shutdown_timeout: config.server.shutdown_timeout,
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` completes, then drains: in-flight requests get
    /// `server.shutdownTimeout` to finish, then the pipeline drains and closes. While requests
    /// drain, new connections are still accepted but every request on them is answered 503
    /// `shutting_down` (and `/ready` 503), one request per connection, so clients and load
    /// balancers hear that this instance is going away instead of finding the port closed.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let serving = self.connection_builder(true);
        let draining = self.connection_builder(false);
        let aggregation = AggregationTask::spawn(self.aggregator, self.aggregation_interval);
        let graceful = GracefulShutdown::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = accept(&self.listener) => {
                    let connection = graceful.watch(serve(&serving, accepted, &self.router));
                    tokio::spawn(async move {
                        if let Err(err) = connection.await {
                            tracing::debug!(error = %err, "connection ended with an error");
                        }
                    });
                }
                () = &mut shutdown => break,
            }
        }
        tracing::info!("shutdown: draining in-flight requests; new requests get 503 shutting_down");
        self.shutting_down.store(true, Ordering::Relaxed);
        let drained = tokio::time::timeout(self.shutdown_timeout, graceful.shutdown());
        tokio::pin!(drained);
        loop {
            tokio::select! {
                accepted = accept(&self.listener) => {
                    tokio::spawn(serve(&draining, accepted, &self.router));
                }
                outcome = &mut drained => {
                    if outcome.is_err() {
                        tracing::warn!(timeout = ?self.shutdown_timeout, "shutdown: in-flight requests did not finish in time");
                    }
                    break;
                }
            }
        }
        drop(self.listener);
        // A request cut off by the timeout may still hold the pipeline: its storing task runs to
        // completion, so its batch is stored or refused as a whole; the store answers it `Closed`
        // if it arrives after this.
        self.pipeline.shutdown().await;
        // The last pass sees everything the store flushed.
        aggregation.finish().await;
        tracing::info!("shutdown complete: files synced and closed, summaries up to date");
        Ok(())
    }

    /// How connections are served: HTTP/1 or HTTP/2 (detected), with the header-read timeout;
    /// without keep-alive while draining.
    fn connection_builder(&self, keep_alive: bool) -> auto::Builder<TokioExecutor> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.read_header_timeout)
            .keep_alive(keep_alive)
            // hyper grows a connection's read buffer up to ~400 KiB for large bodies; with many
            // concurrent uploads that dominates memory. Bodies stream through in frames anyway.
            .max_buf_size(MAX_CONNECTION_BUFFER_BYTES);
        builder.http2().timer(TokioTimer::new());
        builder
    }
}

/// One connection, served by `router` as `builder` says.
fn serve(
    builder: &auto::Builder<TokioExecutor>,
    stream: TcpStream,
    router: &Router,
) -> auto::Connection<'static, TokioIo<TcpStream>, TowerToHyperService<Router>, TokioExecutor> {
    builder
        .serve_connection(
            TokioIo::new(stream),
            TowerToHyperService::new(router.clone()),
        )
        .into_owned()
}

/// The next accepted connection. Accept errors (out of file descriptors and the like) are logged
/// and retried after a pause instead of spinning.
async fn accept(listener: &TcpListener) -> TcpStream {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                return stream;
            }
            Err(err) => {
                tracing::warn!(error = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
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
