//! A real Prometheus server scrapes the service, and promtool lints what `/metrics` exposes.
//!
//! Both programs come with the `prometheus` package (`PROMETHEUS_BIN` and `PROMTOOL_BIN`
//! override `PATH`); without it the tests fail under CI and are skipped elsewhere.

use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tempfile::TempDir;

use crate::support::{
    DEADLINE, JSON, assert_accepted, client, external_binary, free_port, json_array, poll_within,
    record, spawn_app, try_send,
};

/// Batches posted while Prometheus scrapes.
const BATCHES: usize = 3;

/// How often waits on a child process re-check (each check may be an HTTP request to it).
const CHILD_POLL: Duration = Duration::from_millis(50);

#[tokio::test]
#[ignore = "needs Prometheus: make test"]
async fn prometheus_scrapes_the_service_and_sees_accepted_batches() {
    let binary = external_binary("PROMETHEUS_BIN", "prometheus", "prometheus");
    let app = spawn_app(|_| {}).await;
    let mut prometheus = Prometheus::start(&binary, app.addr).await;

    for i in 0..BATCHES {
        let batch = json_array(&[record(
            "2025-11-22T14:00:00Z",
            &format!("/page/{i}"),
            "Mozilla/5.0",
        )]);
        assert_accepted(app.post_logs(JSON, batch).await, 1).await;
    }

    let target = app.addr.to_string();
    let labels = prometheus
        .wait_for_value("log_batches_received_total", BATCHES as f64)
        .await;
    assert_eq!(labels["job"], "log-pipeline", "{labels}");
    assert_eq!(labels["instance"], target.as_str(), "{labels}");
    prometheus
        .wait_for_value(r#"up{job="log-pipeline"}"#, 1.0)
        .await;

    drop(prometheus);
    app.stop().await;
}

#[tokio::test]
#[ignore = "needs promtool (Prometheus): make test"]
async fn promtool_finds_no_problems_in_a_scrape() {
    let promtool = external_binary("PROMTOOL_BIN", "promtool", "prometheus");
    let app = spawn_app(|_| {}).await;
    // Requests that create labelled series and fill histograms: an accepted batch, a refused
    // body, an unmatched route and the probes.
    let batch = json_array(&[
        record("2025-11-22T14:00:00Z", "/a", "Mozilla/5.0"),
        record("2025-11-22T14:00:01Z", "/b", "curl/8.5.0"),
    ]);
    assert_accepted(app.post_logs(JSON, batch).await, 2).await;
    assert_eq!(
        app.post_logs(JSON, "not json").await.status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        app.get("/no-such-route").await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.get("/health").await.status(), StatusCode::OK);
    assert_eq!(app.get("/ready").await.status(), StatusCode::OK);
    let text = app.metrics_text().await;
    assert!(
        text.contains("http_request_duration_seconds_bucket{"),
        "no labelled histogram in:\n{text}"
    );

    let dir = tempfile::tempdir().expect("temporary directory");
    let mut promtool = LoggedChild::spawn(
        "promtool",
        Command::new(&promtool)
            .args(["check", "metrics"])
            .current_dir(dir.path()),
        dir.path().join("promtool.log"),
        Stdio::piped(),
    );
    promtool.write_stdin(text.as_bytes());
    let status = promtool.wait_exit().await;
    let output = promtool.output();
    drop(promtool);
    let problems: Vec<&str> = output
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with("SUCCESS"))
        .collect();
    assert!(
        status.success() && problems.is_empty(),
        "promtool check metrics: {status}, {} problem(s):\n{}\n\nin this scrape:\n{text}",
        problems.len(),
        problems.join("\n")
    );
    app.stop().await;
}

/// A child process whose stdout and stderr go to one file; killed and reaped when dropped, and
/// that file printed when the test is failing.
struct LoggedChild {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl LoggedChild {
    fn spawn(name: &'static str, command: &mut Command, log: PathBuf, stdin: Stdio) -> LoggedChild {
        let file = File::create(&log)
            .unwrap_or_else(|err| panic!("cannot create {}: {err}", log.display()));
        let child = command
            .stdin(stdin)
            .stdout(file.try_clone().expect("duplicate the log file handle"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|err| panic!("{name} does not start: {err}"));
        LoggedChild { name, child, log }
    }

    /// Everything the process wrote so far.
    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_else(|err| format!("(no output: {err})"))
    }

    /// Writes all of `data` to the piped stdin, then closes it.
    fn write_stdin(&mut self, data: &[u8]) {
        let mut stdin = self.child.stdin.take().expect("piped stdin");
        if let Err(err) = stdin.write_all(data) {
            panic!(
                "{} stopped reading stdin ({err}); output:\n{}",
                self.name,
                self.output()
            );
        }
    }

    /// The exit status, once the process has exited.
    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Waits until the process has exited; fails the test after [`DEADLINE`].
    async fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit in time; output:\n{}",
                self.name,
                self.output()
            );
            tokio::time::sleep(CHILD_POLL / 5).await;
        }
    }
}

impl Drop for LoggedChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- {} output ({}):\n{}--- end of {} output",
                self.name,
                self.log.display(),
                self.output(),
                self.name
            );
        }
    }
}

/// A Prometheus server on 127.0.0.1 scraping one target every second, with its configuration,
/// storage and output in a temporary directory.
struct Prometheus {
    // Dropped first: the process stops before its directory goes.
    process: LoggedChild,
    addr: SocketAddr,
    _dir: TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `target` and waits until it is ready.
    async fn start(binary: &Path, target: SocketAddr) -> Prometheus {
        // The port is free when chosen, but another process may bind it before Prometheus does;
        // then it starts over on another one.
        let mut attempts = 3;
        loop {
            match Prometheus::try_start(binary, target).await {
                Ok(prometheus) => return prometheus,
                Err(output) if output.contains("address already in use") && attempts > 1 => {
                    attempts -= 1;
                }
                Err(output) => panic!("prometheus exited before it was ready; output:\n{output}"),
            }
        }
    }

    /// Starts Prometheus and waits until `/-/ready` answers 200; `Err` with its output when it
    /// exits first.
    async fn try_start(binary: &Path, target: SocketAddr) -> Result<Prometheus, String> {
        let dir = tempfile::tempdir().expect("temporary Prometheus directory");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: log-pipeline\n    static_configs:\n      \
                 - targets: [\"{target}\"]\n"
            ),
        )
        .expect("write prometheus.yml");
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut process = LoggedChild::spawn(
            "prometheus",
            Command::new(binary)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                .current_dir(dir.path()),
            dir.path().join("prometheus.log"),
            Stdio::null(),
        );

        let client = client();
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = process.exited() {
                return Err(format!("({status})\n{}", process.output()));
            }
            let ready = try_send(&client, addr, Method::GET, "/-/ready", &[], Vec::new()).await;
            if ready.is_ok_and(|response| response.status() == StatusCode::OK) {
                return Ok(Prometheus {
                    process,
                    addr,
                    _dir: dir,
                });
            }
            assert!(
                Instant::now() < deadline,
                "prometheus at {addr} not ready in time"
            );
            tokio::time::sleep(CHILD_POLL).await;
        }
    }

    /// Runs an instant query; the `result` of a vector answer.
    async fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let path = format!("/api/v1/query?query={}", percent_encode(expr));
        let response = try_send(&client(), self.addr, Method::GET, &path, &[], Vec::new())
            .await
            .map_err(|err| format!("GET {path}: {err}"))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|err| format!("GET {path}: {err}"))?;
        let body: Value =
            serde_json::from_str(&text).map_err(|err| format!("{status}: {err}: {text}"))?;
        if status != StatusCode::OK || body["status"] != "success" {
            return Err(format!("{status}: {text}"));
        }
        assert_eq!(body["data"]["resultType"], "vector", "{text}");
        Ok(body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// Polls the instant query `expr` until it returns one series with value `expected`, and
    /// returns that series' labels.
    async fn wait_for_value(&mut self, expr: &str, expected: f64) -> Value {
        poll_within(
            DEADLINE,
            CHILD_POLL,
            &format!("Prometheus to answer {expr} = {expected}"),
            async || {
                if let Some(status) = self.process.exited() {
                    panic!("prometheus exited ({status})");
                }
                let result = self.query(expr).await?;
                let [series] = result.as_slice() else {
                    return Err(format!("not one series: {result:?}"));
                };
                let value = series["value"][1]
                    .as_str()
                    .and_then(|value| value.parse::<f64>().ok())
                    .ok_or_else(|| format!("no sample value in {series}"))?;
                if value == expected {
                    Ok(series["metric"].clone())
                } else {
                    Err(format!("{series}"))
                }
            },
        )
        .await
    }
}

/// `text` as a URL query value: every byte but the unreserved ones percent-encoded.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(byte).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}
