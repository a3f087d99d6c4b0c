//! The shared harness: the service in-process ([`spawn_app`]), the real binary as a child process
//! ([`ChildGuard`]), the one request helper ([`try_send`]), metric scraping, record builders, and
//! the broker of the Kafka tests ([`kafka_broker`]).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use log_pipeline::app::Application;
use log_pipeline::config::Config;
use reqwest::header::CONTENT_TYPE;
use reqwest::{Client, Method, Response, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Longest any single wait in the suite may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// How often waits re-check their condition.
const POLL: Duration = Duration::from_millis(10);

/// The hour every test writes to unless it is about hours.
pub const HOUR_14: &str = "2025-11-22/14.log.json";
/// The next hour.
pub const HOUR_15: &str = "2025-11-22/15.log.json";

pub const JSON: &str = "application/json";
pub const CSV: &str = "text/csv";
pub const NDJSON: &str = "application/x-ndjson";

/// A client that never uses a proxy and never reuses a connection, so a connection the server
/// closed after an early error answer cannot fail the next request.
pub fn client() -> Client {
    Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(DEADLINE)
        .build()
        .expect("reqwest client builds")
}

/// Sends one request to `addr`; the one place requests are built.
pub async fn try_send(
    client: &Client,
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Vec<u8>>,
) -> reqwest::Result<Response> {
    let mut request = client.request(method, format!("http://{addr}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let body = body.into();
    if !body.is_empty() {
        request = request.body(body);
    }
    request.send().await
}

/// [`try_send`], failing the test when no answer arrives.
pub async fn send(
    client: &Client,
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Vec<u8>>,
) -> Response {
    let what = format!("{method} {path}");
    try_send(client, addr, method, path, headers, body)
        .await
        .unwrap_or_else(|err| panic!("{what} got no answer: {err}"))
}

/// A service running in this process on a random port, with its own temporary directories.
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: Client,
    pub logs_dir: TempDir,
    _analytics_dir: TempDir,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

/// The temporary directories a [`TestApp`] runs on; [`TestApp::stop_keeping_dirs`] hands them
/// over so that [`spawn_app_in`] can start the next service on the same data.
pub struct AppDirs {
    pub logs: TempDir,
    pub analytics: TempDir,
}

/// Starts the service with test defaults (127.0.0.1:0, temporary directories), changed by
/// `customize`, which may also prepare files in `config.storage.logs_dir` before the store opens.
pub async fn spawn_app(customize: impl FnOnce(&mut Config)) -> TestApp {
    let dirs = AppDirs {
        logs: tempfile::tempdir().expect("temporary logs directory"),
        analytics: tempfile::tempdir().expect("temporary analytics directory"),
    };
    spawn_app_in(dirs, customize).await
}

/// [`spawn_app`] on existing directories (e.g. those of a stopped app).
pub async fn spawn_app_in(dirs: AppDirs, customize: impl FnOnce(&mut Config)) -> TestApp {
    let AppDirs {
        logs: logs_dir,
        analytics: analytics_dir,
    } = dirs;
    let mut config = Config::default();
    config.server.addr = "127.0.0.1:0".to_owned();
    config.storage.logs_dir = logs_dir.path().to_owned();
    config.storage.analytics_dir = analytics_dir.path().to_owned();
    customize(&mut config);
    let app = Application::build(config)
        .await
        .expect("the application builds");
    let addr = app.local_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    TestApp {
        addr,
        client: client(),
        logs_dir,
        _analytics_dir: analytics_dir,
        stop: Some(stop),
        handle: Some(handle),
    }
}

impl TestApp {
    /// `POST /logs` with a `Content-Type`.
    pub async fn post_logs(&self, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        self.send_logs(&[("content-type", content_type)], body)
            .await
    }

    /// `POST /logs` with exactly the given headers.
    pub async fn send_logs(&self, headers: &[(&str, &str)], body: impl Into<Vec<u8>>) -> Response {
        self.request(Method::POST, "/logs", headers, body).await
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path, &[], Vec::new()).await
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Vec<u8>>,
    ) -> Response {
        send(&self.client, self.addr, method, path, headers, body).await
    }

    /// The `GET /metrics` text.
    pub async fn metrics_text(&self) -> String {
        let response = self.get("/metrics").await;
        assert_eq!(response.status(), StatusCode::OK);
        response.text().await.expect("metrics body")
    }

    /// A sample's value, `name` being `metric` or `metric{label="v",...}` as exported; `None` when
    /// the series does not exist (yet).
    pub async fn metric_opt(&self, name: &str) -> Option<f64> {
        sample(&self.metrics_text().await, name)
    }

    /// A sample's value; fails the test when the series does not exist.
    pub async fn metric(&self, name: &str) -> f64 {
        let text = self.metrics_text().await;
        sample(&text, name).unwrap_or_else(|| panic!("no sample {name} in /metrics:\n{text}"))
    }

    /// The path of an hour file, e.g. `hour_path("2025-11-22/14.log.json")`.
    pub fn hour_path(&self, name: &str) -> PathBuf {
        self.logs_dir.path().join(name)
    }

    /// The lines of an hour file (none if it does not exist).
    pub fn read_hour_file(&self, name: &str) -> Vec<String> {
        read_lines(&self.hour_path(name))
    }

    /// The analytics directory (`storage.analyticsDir`).
    pub fn analytics_dir(&self) -> &Path {
        self._analytics_dir.path()
    }

    /// Stops the service and waits until it has drained (files synced and closed).
    pub async fn stop(mut self) {
        self.shut_down().await;
    }

    /// [`TestApp::stop`], keeping the directories for [`spawn_app_in`] or for inspection.
    pub async fn stop_keeping_dirs(mut self) -> AppDirs {
        self.shut_down().await;
        AppDirs {
            logs: self.logs_dir,
            analytics: self._analytics_dir,
        }
    }

    async fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(handle) = self.handle.take() {
            tokio::time::timeout(DEADLINE, handle)
                .await
                .expect("the service stops in time")
                .expect("the service task does not panic")
                .expect("the service stops cleanly");
        }
    }
}

/// Finds `name value` in Prometheus text exposition.
pub fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| {
            value
                .parse()
                .unwrap_or_else(|_| panic!("bad value for {name}: {value}"))
        })
}

/// The lines of a file, without their newlines; none if the file does not exist.
pub fn read_lines(path: &Path) -> Vec<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => text.lines().map(str::to_owned).collect(),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(err) => panic!("cannot read {}: {err}", path.display()),
    }
}

/// A record as a client sends it.
pub fn record(timestamp: &str, path: &str, user_agent: &str) -> Value {
    json!({"timestamp": timestamp, "path": path, "userAgent": user_agent})
}

/// The line the service stores for a record whose timestamp is already canonical UTC.
pub fn line(timestamp: &str, path: &str, user_agent: &str) -> String {
    let text = |value: &str| serde_json::to_string(value).expect("a string serializes");
    format!(
        "{{\"timestamp\":{},\"path\":{},\"userAgent\":{}}}",
        text(timestamp),
        text(path),
        text(user_agent)
    )
}

/// A JSON array body.
pub fn json_array(records: &[Value]) -> Vec<u8> {
    serde_json::to_vec(records).expect("records serialize")
}

/// An NDJSON body, one record per line.
pub fn ndjson(records: &[Value]) -> Vec<u8> {
    records
        .iter()
        .map(|r| format!("{r}\n"))
        .collect::<String>()
        .into_bytes()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).expect("gzip into memory");
    encoder.finish().expect("gzip into memory")
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).expect("zstd into memory")
}

/// The JSON body of a response.
pub async fn body_json(response: Response) -> Value {
    let status = response.status();
    let text = response.text().await.expect("response body");
    serde_json::from_str(&text)
        .unwrap_or_else(|err| panic!("{status}: body is not JSON ({err}): {text}"))
}

/// Checks a JSON error answer — status, JSON content type, `error` code and a non-empty
/// `message` — and returns its body for further checks.
pub async fn assert_error(response: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(response.status(), status, "status of {}", response.url());
    let content_type = content_type(&response);
    assert!(
        content_type.starts_with("application/json"),
        "{status}: content type {content_type:?}"
    );
    let body = body_json(response).await;
    assert_eq!(body["error"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    body
}

/// Checks a 202 answer and its accepted count.
pub async fn assert_accepted(response: Response, records: usize) {
    let status = response.status();
    let body = body_json(response).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body, json!({ "accepted": records }));
}

pub fn content_type(response: &Response) -> String {
    header(response, CONTENT_TYPE.as_str())
}

/// A response header as text, empty when absent.
pub fn header(response: &Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().expect("ASCII header").to_owned())
        .unwrap_or_default()
}

/// Polls `condition` until it holds; fails the test with `what` after [`DEADLINE`].
pub async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(POLL).await;
    }
}

/// Polls `probe` until it returns `Ok`, and returns that value; fails the test with `what` and the
/// last `Err` after [`DEADLINE`].
pub async fn poll<T, E: std::fmt::Debug>(
    what: &str,
    probe: impl AsyncFnMut() -> Result<T, E>,
) -> T {
    poll_within(DEADLINE, POLL, what, probe).await
}

/// [`poll`] with its own deadline and interval (e.g. [`KAFKA_DEADLINE`] and [`KAFKA_POLL`] for
/// waits on Kafka, whose probes ask the broker or scrape the service).
pub async fn poll_within<T, E: std::fmt::Debug>(
    timeout: Duration,
    interval: Duration,
    what: &str,
    mut probe: impl AsyncFnMut() -> Result<T, E>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(last) => assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; last seen: {last:?}"
            ),
        }
        tokio::time::sleep(interval).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The real binary.

/// Environment variables the binary reads; removed from every child so the test runner's own
/// environment cannot change the outcome.
const SERVICE_ENV: &[&str] = &[
    "LOG_PIPELINE_CONFIG",
    "PIPELINE_VERSION",
    "HTTP_ADDR",
    "LOGS_DIR",
    "ANALYTICS_DIR",
    "AGGREGATION_INTERVAL",
    "KAFKA_BROKERS",
    "LOG_PIPELINE_TOKENS",
    "RUST_LOG",
    "PROFILE_CAPTURE",
    "PROFILE_ENABLED",
    "PROFILE_NAME",
    "PROFILE_DIR",
    "PROFILE_ADDR",
];

/// A command for the `log-pipeline` binary: clean environment, `cwd` as working directory.
pub fn pipeline(cwd: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_log-pipeline"));
    for var in SERVICE_ENV {
        command.env_remove(var);
    }
    command.env("RUST_LOG", "info").current_dir(cwd);
    command
}

#[derive(Default)]
struct Captured {
    stdout: String,
    stderr: String,
    open_streams: usize,
}

/// A running child process; killed (and reaped) when dropped.
pub struct ChildGuard {
    child: Child,
    captured: Arc<Mutex<Captured>>,
}

impl ChildGuard {
    /// Starts `command` with stdout and stderr captured.
    pub fn spawn(command: &mut Command) -> ChildGuard {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the log-pipeline binary starts");
        let captured = Arc::new(Mutex::new(Captured {
            open_streams: 2,
            ..Captured::default()
        }));
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        capture(stdout, captured.clone(), |c| &mut c.stdout);
        capture(stderr, captured.clone(), |c| &mut c.stderr);
        ChildGuard { child, captured }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stdout(&self) -> String {
        self.captured.lock().expect("capture lock").stdout.clone()
    }

    pub fn stderr(&self) -> String {
        self.captured.lock().expect("capture lock").stderr.clone()
    }

    /// Waits until stderr contains `needle`; fails if the process exits first.
    pub async fn wait_for_stderr(&mut self, needle: &str) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if self.stderr().contains(needle) {
                return;
            }
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // Read what is left before giving up on the needle.
                self.wait_for_eof().await;
                if self.stderr().contains(needle) {
                    return;
                }
                panic!(
                    "exited ({status}) before logging {needle:?}; stderr:\n{}",
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {needle:?}; stderr:\n{}",
                self.stderr()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits for the "log-pipeline listening" log line and returns the address it names.
    pub async fn listening_addr(&mut self) -> SocketAddr {
        self.wait_for_stderr("log-pipeline listening").await;
        let stderr = self.stderr();
        stderr
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find_map(|entry| {
                let fields = if entry.get("fields").is_some() {
                    &entry["fields"]
                } else {
                    &entry
                };
                if fields["message"] != "log-pipeline listening" {
                    return None;
                }
                Some(fields["addr"].as_str()?.parse().expect("addr is IP:PORT"))
            })
            .unwrap_or_else(|| panic!("no JSON listening line with an addr in:\n{stderr}"))
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        self.signal("TERM");
    }

    /// Sends a signal by name (`TERM`, `STOP`, `CONT`, ...).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} {} failed", self.pid());
    }

    /// `kill -9`: the process dies at once, without any shutdown; waits until it is reaped.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL is delivered");
        self.child.wait().expect("the killed process is reaped");
    }

    /// Waits until the process has exited and its output is fully read.
    pub async fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + DEADLINE;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "process {} did not exit; stderr:\n{}",
                self.pid(),
                self.stderr()
            );
            tokio::time::sleep(POLL).await;
        };
        self.wait_for_eof().await;
        status
    }

    async fn wait_for_eof(&self) {
        let captured = self.captured.clone();
        wait_until("the child's output to close", || {
            captured.lock().expect("capture lock").open_streams == 0
        })
        .await;
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Copies a child's stream into `captured` on a thread, line by line.
fn capture(
    stream: impl Read + Send + 'static,
    captured: Arc<Mutex<Captured>>,
    target: fn(&mut Captured) -> &mut String,
) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
            let mut captured = captured.lock().expect("capture lock");
            target(&mut captured).push_str(&String::from_utf8_lossy(&line));
            line.clear();
        }
        captured.lock().expect("capture lock").open_streams -= 1;
    });
}

/// A `POST /logs` sent by hand over one connection, held open half-way: the headers are sent
/// with `Expect: 100-continue`, and [`RawPost::start`] returns once the server answered
/// `100 Continue`, i.e. once the handler is reading the body. The request is then in flight
/// until [`RawPost::finish`] sends the body.
pub struct RawPost {
    stream: TcpStream,
    body: Vec<u8>,
}

impl RawPost {
    pub async fn start(addr: SocketAddr, content_type: &str, body: Vec<u8>) -> RawPost {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let head = format!(
            "POST /logs HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
             Expect: 100-continue\r\nConnection: close\r\n\r\n",
            body.len()
        );
        stream
            .write_all(head.as_bytes())
            .await
            .expect("send request head");
        let mut interim = Vec::new();
        let mut byte = [0u8; 1];
        while !interim.ends_with(b"\r\n\r\n") {
            let read = tokio::time::timeout(DEADLINE, stream.read(&mut byte))
                .await
                .expect("100 Continue in time")
                .expect("read interim answer");
            assert_eq!(
                read,
                1,
                "connection closed before 100 Continue: {}",
                String::from_utf8_lossy(&interim)
            );
            interim.push(byte[0]);
        }
        let interim = String::from_utf8_lossy(&interim);
        assert!(
            interim.starts_with("HTTP/1.1 100 Continue\r\n"),
            "{interim}"
        );
        RawPost { stream, body }
    }

    /// Sends the body and returns the final answer.
    pub async fn finish(mut self) -> RawAnswer {
        let body = std::mem::take(&mut self.body);
        self.stream
            .write_all(&body)
            .await
            .expect("send request body");
        self.answer().await
    }

    /// Sends no body; returns what the server answers on its own.
    pub async fn answer(mut self) -> RawAnswer {
        let mut answer = Vec::new();
        tokio::time::timeout(DEADLINE, self.stream.read_to_end(&mut answer))
            .await
            .expect("answer in time")
            .expect("read answer");
        let answer = String::from_utf8(answer).expect("UTF-8 answer");
        let (head, body) = answer
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("no header end: {answer}"));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("no status line: {answer}"));
        let body = serde_json::from_str(body)
            .unwrap_or_else(|err| panic!("body is not JSON ({err}): {answer}"));
        RawAnswer {
            status,
            head: head.to_ascii_lowercase(),
            body,
        }
    }
}

/// A final answer read off a raw connection.
#[derive(Debug)]
pub struct RawAnswer {
    pub status: u16,
    /// Status line and headers, lowercased.
    pub head: String,
    pub body: Value,
}

// ---------------------------------------------------------------------------------------------
// External services of the Kafka (v2) tests, metric series, hour files.

/// Longest a wait on Kafka may take: a consumer group join takes seconds, and the partitions of
/// a member that was killed move only once its session has timed out.
pub const KAFKA_DEADLINE: Duration = Duration::from_secs(60);

/// How often waits on Kafka re-check (each check asks the broker or scrapes the service).
pub const KAFKA_POLL: Duration = Duration::from_millis(50);

/// The broker of the Kafka tests: `LOG_PIPELINE_TEST_KAFKA` (`127.0.0.1:PORT`, exported by
/// `eval "$(scripts/kafka-local.sh start)"`; `make test` does it). When it is unset or refuses
/// connections the test fails under CI (`CI` set) and is skipped elsewhere: `None`, with a
/// "skipping" note on stderr. Call it first thing in the test (the note names the test thread).
pub fn kafka_broker() -> Option<String> {
    let Some(addr) = non_empty_env("LOG_PIPELINE_TEST_KAFKA") else {
        return unavailable("LOG_PIPELINE_TEST_KAFKA is not set");
    };
    if !accepts_connections(&addr) {
        return unavailable(&format!(
            "LOG_PIPELINE_TEST_KAFKA={addr} does not accept connections"
        ));
    }
    Some(addr)
}

/// The tansu binary, for a test that runs a broker of its own: `LOG_PIPELINE_TEST_TANSU`
/// (exported by `scripts/kafka-local.sh start`). Missing: like [`kafka_broker`].
pub fn tansu_binary() -> Option<PathBuf> {
    let Some(path) = non_empty_env("LOG_PIPELINE_TEST_TANSU") else {
        return unavailable("LOG_PIPELINE_TEST_TANSU is not set");
    };
    let path = PathBuf::from(path);
    if !path.is_file() {
        return unavailable(&format!(
            "LOG_PIPELINE_TEST_TANSU={} is not a file",
            path.display()
        ));
    }
    Some(path)
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .filter(|value| !value.trim().is_empty())
}

fn accepts_connections(addr: &str) -> bool {
    use std::net::ToSocketAddrs;
    addr.to_socket_addrs().is_ok_and(|mut addrs| {
        addrs
            .any(|addr| std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok())
    })
}

/// A test dependency is missing: fails the test under CI, else notes the skip on stderr.
fn unavailable<T>(reason: &str) -> Option<T> {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a Kafka test");
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: no broker: {reason}. CI must run the Kafka tests: start one with \
         `eval \"$(scripts/kafka-local.sh start)\"` (`make test` does)"
    );
    // Straight to the process's stderr: the test harness captures `eprintln!` of passing tests.
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "{test}: skipping: no broker ({reason}); `make test` or \
         `eval \"$(scripts/kafka-local.sh start)\"` runs it"
    );
    None
}

/// A TCP port on 127.0.0.1 that is free now (for a server that cannot be told to bind port 0).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Waits until `addr` accepts TCP connections.
pub async fn wait_for_listener(addr: SocketAddr) {
    poll(&format!("{addr} to accept connections"), async || {
        TcpStream::connect(addr).await.map(drop)
    })
    .await;
}

/// The `GET /metrics` text of the service at `addr` (in-process or a child).
pub async fn scrape(addr: SocketAddr) -> String {
    let response = send(&client(), addr, Method::GET, "/metrics", &[], Vec::new()).await;
    assert_eq!(response.status(), StatusCode::OK, "GET /metrics of {addr}");
    response.text().await.expect("metrics body")
}

/// Every series of metric `name` in Prometheus text exposition, by label set:
/// `name{partition="0"} 5` is `partition="0"` → 5 (an unlabelled sample has the key "").
pub fn series(text: &str, name: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .filter_map(|(key, value)| {
            let rest = key.strip_prefix(name)?;
            let labels = if rest.is_empty() {
                ""
            } else {
                rest.strip_prefix('{')?.strip_suffix('}')?
            };
            let value = value
                .parse()
                .unwrap_or_else(|_| panic!("bad value for {key}: {value}"));
            Some((labels.to_owned(), value))
        })
        .collect()
}

/// Every hour file under a logs directory (`YYYY-MM-DD/HH.log.json`, the name relative to the
/// directory) with its lines.
pub fn hour_files(logs_dir: &Path) -> BTreeMap<String, Vec<String>> {
    let mut files = BTreeMap::new();
    let days = match std::fs::read_dir(logs_dir) {
        Ok(days) => days,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return files,
        Err(err) => panic!("cannot list {}: {err}", logs_dir.display()),
    };
    for day in days {
        let day = day.expect("directory entry");
        if !day.file_type().expect("file type").is_dir() {
            continue;
        }
        for file in std::fs::read_dir(day.path()).expect("list a day directory") {
            let file = file.expect("directory entry");
            let name = file.file_name().to_string_lossy().into_owned();
            if name.ends_with(".log.json") {
                let relative = format!("{}/{name}", day.file_name().to_string_lossy());
                files.insert(relative, read_lines(&file.path()));
            }
        }
    }
    files
}

// ---------------------------------------------------------------------------------------------
// External programs (Prometheus, promtool).

/// An external program a test runs: the path in `env_var` when that is set, else `name` in
/// `PATH`. When it is missing the test fails under CI (`CI` set) and is skipped elsewhere: `None`,
/// with "skipping: {package} not installed" on stderr. Call it first thing in the test.
pub fn external_binary(env_var: &str, name: &str, package: &str) -> Option<PathBuf> {
    let found = match non_empty_env(env_var) {
        Some(path) => Some(PathBuf::from(path)).filter(|path| is_executable(path)),
        None => std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|path| is_executable(path))
        }),
    };
    if found.is_some() {
        return found;
    }
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    let reason = match non_empty_env(env_var) {
        Some(path) => format!("{env_var}={path} is not an executable file"),
        None => format!("no {name} in PATH and {env_var} is not set"),
    };
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: {package} is not installed ({reason}). CI must run this test: install it \
         (`apt-get install -y {package}`) or set {env_var}"
    );
    // Straight to the process's stderr: the test harness captures `eprintln!` of passing tests.
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "{test}: skipping: {package} not installed ({reason})"
    );
    None
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}
