//! Connections: accepting them, capping how many are open, closing the silent and the idle, and
//! draining them at shutdown. The router ([`crate::http`]) only sees requests.
//!
//! - **Cap.** At most `server.maxConnections` are open (lowered to what the process's file
//!   descriptor limit allows, which is raised to its hard limit at start-up). At the cap a new
//!   connection takes the place of the one idle longest, as nginx does when it runs out of
//!   connections: idle is no request in flight (silent since accepted, a request head still
//!   arriving, or keep-alive between requests), so connections that hold a place without using it
//!   cannot keep others out. One that never had a request is closed at once; one that had is
//!   shut down gracefully, as at the idle limit. Only when every open connection has a request in
//!   flight does a new one get a canned 503 `too_many_connections`, and it is closed at once.
//! - **Silent connections.** A connection must send its first bytes within
//!   `server.readHeaderTimeout`; hyper's HTTP/1-or-2 detection would otherwise wait for them
//!   forever. HTTP/1 then bounds each request head by the same timeout.
//! - **Idle connections.** A connection with no request in flight for `server.readHeaderTimeout`
//!   (HTTP/1 keep-alive or HTTP/2 alike; HTTP/2 pings do not count as activity) is shut down
//!   gracefully, and dropped if it does not finish within the same time (a client that does not
//!   read its answer cannot hold it). HTTP/2 keep-alive pings detect dead peers while requests
//!   are in flight.
//! - **Shutdown.** [`Server::run`] stops serving new requests when `shutdown` completes: every
//!   open connection is told to finish its requests and close (idle ones close at once), and the
//!   drain waits for them at most `server.shutdownTimeout`. Meanwhile new connections are still
//!   accepted, without keep-alive, so that their requests hear 503 `shutting_down` from the router
//!   rather than finding the port closed.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ServerConfig;
use crate::metrics::Metrics;

/// Largest read buffer per HTTP/1 connection: hyper grows it up to ~400 KiB for large bodies,
/// which with many concurrent uploads dominates memory; bodies stream through in frames anyway.
/// 16 KiB rather than 64: peak RSS under 50 concurrent 1000-record batches fell from 35 to 30 MB
/// at the same throughput (`bench/ingest.sh`).
const MAX_CONNECTION_BUFFER_BYTES: usize = 16 * 1024;
/// File descriptors kept for everything but connections (hour files, Kafka sockets, ...).
const RESERVED_FILE_DESCRIPTORS: usize = 256;
/// HTTP/2 keep-alive ping period and how long a ping may go unanswered.
const H2_PING_INTERVAL: Duration = Duration::from_secs(20);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(10);
/// What a connection beyond the cap is told before it is closed.
const TOO_MANY_CONNECTIONS: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 98\r\n\r\n\
{\"error\":\"too_many_connections\",\"message\":\"the server has too many open connections; retry later\"}";

/// How connections are served (from `server.*`).
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// `server.readHeaderTimeout`: first bytes, request heads, and the idle limit.
    pub read_header_timeout: Duration,
    /// `server.maxConnections`, as the file descriptor limit allows.
    pub max_connections: usize,
    /// `server.shutdownTimeout`.
    pub shutdown_timeout: Duration,
}

impl ServerSettings {
    /// The settings of `server`, with `server.maxConnections` lowered to what the process's file
    /// descriptor limit allows after raising that to its hard limit.
    pub fn from_config(server: &ServerConfig) -> ServerSettings {
        let descriptors = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024) as usize;
        let allowed = descriptors.saturating_sub(RESERVED_FILE_DESCRIPTORS).max(1);
        if server.max_connections > allowed {
            tracing::warn!(
                max_connections = server.max_connections,
                allowed,
                descriptors,
                "server.maxConnections is above what the open-file limit allows; using the lower number"
            );
        }
        ServerSettings {
            read_header_timeout: server.read_header_timeout,
            max_connections: server.max_connections.min(allowed),
            shutdown_timeout: server.shutdown_timeout,
        }
    }
}

/// The listener and how its connections are served.
pub struct Server {
    listener: TcpListener,
    router: Router,
    settings: ServerSettings,
    metrics: Metrics,
}

impl Server {
    pub fn new(
        listener: TcpListener,
        router: Router,
        settings: ServerSettings,
        metrics: Metrics,
    ) -> Server {
        Server {
            listener,
            router,
            settings,
            metrics,
        }
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` completes; then calls `draining` (the router starts answering
    /// 503 `shutting_down`), drains the open connections (at most `server.shutdownTimeout`) and
    /// returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>, draining: impl FnOnce()) {
        let open = Arc::new(OpenConnections::new(
            self.settings.max_connections,
            self.metrics.clone(),
        ));
        let stop = CancellationToken::new();
        let tracker = TaskTracker::new();
        let serving = Connections {
            builder: builder(&self.settings, true),
            router: self.router.clone(),
            settings: self.settings.clone(),
            stop: stop.clone(),
        };
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                stream = accept(&self.listener) => {
                    if let Some(slot) = open.enter(&stream) {
                        tracker.spawn(serving.clone().serve(stream, slot));
                    }
                }
                () = &mut shutdown => break,
            }
        }
        tracing::info!("shutdown: draining in-flight requests; new requests get 503 shutting_down");
        draining();
        stop.cancel();
        tracker.close();
        // Connections accepted from now on answer one request (503) and close; they are not
        // waited for.
        let late = Connections {
            builder: builder(&self.settings, false),
            router: self.router.clone(),
            settings: self.settings.clone(),
            stop: CancellationToken::new(),
        };
        let drained = tokio::time::timeout(self.settings.shutdown_timeout, tracker.wait());
        tokio::pin!(drained);
        loop {
            tokio::select! {
                stream = accept(&self.listener) => {
                    if let Some(slot) = open.enter(&stream) {
                        tokio::spawn(late.clone().serve(stream, slot));
                    }
                }
                outcome = &mut drained => {
                    if outcome.is_err() {
                        tracing::warn!(timeout = ?self.settings.shutdown_timeout, "shutdown: in-flight requests did not finish in time");
                    }
                    break;
                }
            }
        }
    }
}

/// How connections are served: HTTP/1 or HTTP/2 (detected), with the header-read timeout and
/// HTTP/2 pings; without keep-alive once shutdown has begun.
fn builder(settings: &ServerSettings, keep_alive: bool) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.read_header_timeout)
        .keep_alive(keep_alive)
        .max_buf_size(MAX_CONNECTION_BUFFER_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(H2_PING_INTERVAL))
        .keep_alive_timeout(H2_PING_TIMEOUT);
    builder
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

/// The open connections, each with its [`Activity`], against the cap.
struct OpenConnections {
    max: usize,
    metrics: Metrics,
    open: Mutex<OpenSet>,
}

/// The connections that hold a place under the cap, by a number of their own.
#[derive(Default)]
struct OpenSet {
    next: u64,
    places: HashMap<u64, Arc<Activity>>,
}

impl OpenConnections {
    fn new(max: usize, metrics: Metrics) -> OpenConnections {
        OpenConnections {
            max,
            metrics,
            open: Mutex::new(OpenSet::default()),
        }
    }

    /// A place for `stream`. At the cap, the connection idle longest is told to close and
    /// gives up its place; when none is idle, `None` (after telling `stream` 503).
    fn enter(self: &Arc<Self>, stream: &TcpStream) -> Option<Slot> {
        let mut open = self.open.lock().expect("open connections lock");
        if open.places.len() >= self.max {
            // A scan, only at the cap: it costs microseconds against the thousands of places.
            let idlest = open
                .places
                .iter()
                .filter_map(|(place, activity)| Some((*place, activity.idle_since()?)))
                .min_by_key(|(_, since)| *since)
                .map(|(place, _)| place);
            let Some(place) = idlest else {
                drop(open);
                self.metrics.http_connections_refused.inc();
                // Best effort: the socket's send buffer is empty, so this does not block.
                let _ = stream.try_write(TOO_MANY_CONNECTIONS);
                return None;
            };
            let evicted = open.places.remove(&place).expect("found above");
            evicted.evict.cancel();
            self.metrics.http_open_connections.dec();
            self.metrics.http_connections_evicted.inc();
        }
        let place = open.next;
        open.next += 1;
        let activity = Arc::new(Activity::new());
        open.places.insert(place, activity.clone());
        self.metrics.http_open_connections.inc();
        Some(Slot {
            connections: self.clone(),
            place,
            activity,
        })
    }
}

/// One open connection's place under the cap, held until dropped (or given to a newer one).
struct Slot {
    connections: Arc<OpenConnections>,
    place: u64,
    activity: Arc<Activity>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let connections = &self.connections;
        let mut open = connections.open.lock().expect("open connections lock");
        if open.places.remove(&self.place).is_some() {
            connections.metrics.http_open_connections.dec();
        }
    }
}

/// What every connection of one phase (serving, or draining) is served with.
#[derive(Clone)]
struct Connections {
    builder: auto::Builder<TokioExecutor>,
    router: Router,
    settings: ServerSettings,
    /// Cancelled when shutdown begins.
    stop: CancellationToken,
}

impl Connections {
    /// Serves one connection to its end, as the module documentation says.
    async fn serve(self, stream: TcpStream, slot: Slot) {
        let timeout = self.settings.read_header_timeout;
        let activity = slot.activity.clone();
        let mut first = [0u8; 1];
        tokio::select! {
            peeked = tokio::time::timeout(timeout, stream.peek(&mut first)) => {
                if !matches!(peeked, Ok(Ok(1..))) {
                    return; // Silent past the timeout, or closed.
                }
            }
            () = self.stop.cancelled() => return,
            () = activity.evict.cancelled() => return,
        }
        let service = TowerToHyperService::new(Tracked {
            router: self.router,
            activity: activity.clone(),
        });
        let connection = self
            .builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        tokio::pin!(connection);
        let finished = tokio::select! {
            _ = connection.as_mut() => true,
            () = activity.idle_for(timeout) => false,
            () = activity.evict.cancelled() => {
                if !activity.has_begun() {
                    // No request reached the router: nothing to finish, nothing to answer.
                    return;
                }
                false
            }
            () = self.stop.cancelled() => false,
        };
        if !finished {
            // Let a request in flight finish, bounded: a client that does not read its answer
            // must not hold the connection.
            connection.as_mut().graceful_shutdown();
            let _ =
                tokio::time::timeout(timeout.max(self.settings.shutdown_timeout), connection).await;
        }
    }
}

/// Requests in flight on one connection, since when it has had none, and whether it must give
/// up its place.
struct Activity {
    in_flight: AtomicUsize,
    /// Requests begun on the connection, ever.
    begun: AtomicUsize,
    idle_since: Mutex<Instant>,
    /// Cancelled when a newer connection takes this one's place under the cap.
    evict: CancellationToken,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            in_flight: AtomicUsize::new(0),
            begun: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
            evict: CancellationToken::new(),
        }
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.begun.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// Whether a request ever reached the router on this connection.
    fn has_begun(&self) -> bool {
        self.begun.load(Ordering::Acquire) > 0
    }

    /// Since when the connection has had no request in flight; `None` while it has one.
    fn idle_since(&self) -> Option<Instant> {
        let since = *self.idle_since.lock().expect("activity lock");
        (self.in_flight.load(Ordering::Acquire) == 0).then_some(since)
    }

    /// Completes once the connection has had no request in flight for `limit`.
    async fn idle_for(&self, limit: Duration) {
        loop {
            let idle = *self.idle_since.lock().expect("activity lock");
            let waited = idle.elapsed();
            if self.in_flight.load(Ordering::Acquire) == 0 && waited >= limit {
                return;
            }
            tokio::time::sleep(limit.saturating_sub(waited).max(limit / 4)).await;
        }
    }
}

/// One request in flight; its end restarts the idle clock.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        *self.0.idle_since.lock().expect("activity lock") = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The router, counting the requests in flight on its connection.
#[derive(Clone)]
struct Tracked {
    router: Router,
    activity: Arc<Activity>,
}

impl tower::Service<hyper::Request<Incoming>> for Tracked {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: hyper::Request<Incoming>) -> Self::Future {
        let in_flight = self.activity.begin();
        let response = tower::Service::call(&mut self.router.clone(), request);
        Box::pin(async move {
            let response = response.await;
            drop(in_flight);
            response
        })
    }
}

#[cfg(test)]
mod tests;
