//! The `log-pipeline` binary as operators run it: configuration precedence, refusing invalid
//! configuration, graceful SIGTERM, the logs-directory lock, `--help` and `--version`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{
    ChildGuard, HOUR_14, NDJSON, RawPost, assert_accepted, client, expect_config_error, line,
    ndjson, pipeline, read_lines, record, send, try_send, wait_until, write_config,
};

/// POSTs one record with path `path` to a child and expects 202.
async fn post_one(addr: SocketAddr, path: &str) {
    let body = ndjson(&[record("2025-11-22T14:00:00Z", path, "curl/8.5.0")]);
    let response = send(
        &client(),
        addr,
        Method::POST,
        "/logs",
        &[("content-type", NDJSON)],
        body,
    )
    .await;
    assert_accepted(response, 1).await;
}

fn stored(path: &str) -> String {
    line("2025-11-22T14:00:00Z", path, "curl/8.5.0")
}

/// Starts a child, waits until it listens, POSTs one record with path `path`, then stops it with
/// SIGTERM and expects a clean exit. Returns the address it listened on.
async fn serve_one_record(mut child: ChildGuard, path: &str) -> SocketAddr {
    let addr = child.listening_addr().await;
    post_one(addr, path).await;
    child.terminate();
    let status = child.wait_exit().await;
    assert!(status.success(), "{status}; stderr:\n{}", child.stderr());
    addr
}

fn hour_14(logs_dir: &Path) -> Vec<String> {
    read_lines(&logs_dir.join(HOUR_14))
}

#[tokio::test]
async fn logs_dir_is_taken_from_flag_then_env_then_file_then_default() {
    let root = tempfile::tempdir().unwrap();
    let cwd = root.path();
    let (from_file, from_env, from_flag) = (
        cwd.join("file-logs"),
        cwd.join("env-logs"),
        cwd.join("flag-logs"),
    );
    let config = write_config(
        cwd,
        &format!("storage:\n  logsDir: {}\n", from_file.display()),
    );

    let start = |config: Option<&str>, env: Option<&Path>, flag: Option<&Path>| {
        let mut command = pipeline(cwd);
        command.args(["--addr", "127.0.0.1:0"]);
        if let Some(config) = config {
            command.args(["--config", config]);
        }
        if let Some(env) = env {
            command.env("LOGS_DIR", env);
        }
        if let Some(flag) = flag {
            command.arg("--logs-dir").arg(flag);
        }
        ChildGuard::spawn(&mut command)
    };
    serve_one_record(
        start(Some(&config), Some(&from_env), Some(&from_flag)),
        "/flag",
    )
    .await;
    serve_one_record(start(Some(&config), Some(&from_env), None), "/env").await;
    serve_one_record(start(Some(&config), None, None), "/file").await;
    serve_one_record(start(None, None, None), "/default").await;

    assert_eq!(hour_14(&from_flag), [stored("/flag")]);
    assert_eq!(hour_14(&from_env), [stored("/env")]);
    assert_eq!(hour_14(&from_file), [stored("/file")]);
    assert_eq!(
        hour_14(&cwd.join("logs")),
        [stored("/default")],
        "default ./logs, relative to the working directory"
    );
}

#[tokio::test]
async fn addr_is_taken_from_flag_then_env_then_file() {
    let root = tempfile::tempdir().unwrap();
    let cwd = root.path();
    let logs = cwd.join("logs");
    // Values that lose must not matter: an invalid one would stop the process if it won.
    let bad_file = write_config(cwd, "server:\n  addr: from-file-not-an-address\n");
    let start = |config: &str, env: Option<&str>, flag: Option<&str>| {
        let mut command = pipeline(cwd);
        command
            .args(["--config", config])
            .arg("--logs-dir")
            .arg(&logs);
        if let Some(env) = env {
            command.env("HTTP_ADDR", env);
        }
        if let Some(flag) = flag {
            command.args(["--addr", flag]);
        }
        ChildGuard::spawn(&mut command)
    };

    let addr = serve_one_record(
        start(
            &bad_file,
            Some("from-env-not-an-address"),
            Some("127.0.0.1:0"),
        ),
        "/flag",
    )
    .await;
    assert_eq!(addr.ip().to_string(), "127.0.0.1");
    let addr = serve_one_record(start(&bad_file, Some("127.0.0.1:0"), None), "/env").await;
    assert_eq!(addr.ip().to_string(), "127.0.0.1");

    // The file beats the default (":8082" would be valid), and the environment beats the file.
    let stderr = expect_config_error(start(&bad_file, None, None)).await;
    assert!(
        stderr.contains("server.addr: invalid listen address \"from-file-not-an-address\""),
        "{stderr}"
    );
    let good_file = write_config(cwd, "server:\n  addr: 127.0.0.1:0\n");
    let addr = serve_one_record(start(&good_file, None, None), "/file").await;
    assert_eq!(addr.ip().to_string(), "127.0.0.1");
    let stderr =
        expect_config_error(start(&good_file, Some("from-env-not-an-address"), None)).await;
    assert!(
        stderr.contains("server.addr: invalid listen address \"from-env-not-an-address\""),
        "{stderr}"
    );
    assert!(stderr.contains("(from --addr/HTTP_ADDR)"), "{stderr}");

    assert_eq!(
        hour_14(&logs),
        [stored("/flag"), stored("/env"), stored("/file")]
    );
}

#[tokio::test]
async fn invalid_configuration_exits_2_naming_the_key() {
    let root = tempfile::tempdir().unwrap();
    let cwd = root.path();
    let with_file = |yaml: &str| {
        let config = write_config(cwd, yaml);
        let mut command = pipeline(cwd);
        command.args(["--addr", "127.0.0.1:0", "--config", &config]);
        ChildGuard::spawn(&mut command)
    };

    let stderr = expect_config_error(with_file("server:\n  bogus: 1\n")).await;
    assert!(
        stderr.contains("bogus") && stderr.contains("server"),
        "{stderr}"
    );
    let stderr = expect_config_error(with_file("aggregation:\n  interval: \"abc\"\n")).await;
    assert!(stderr.contains("aggregation.interval"), "{stderr}");
    let stderr = expect_config_error(with_file("version: 2\n")).await;
    assert!(
        stderr.contains("kafka.brokers: required when version is 2"),
        "{stderr}"
    );

    let mut command = pipeline(cwd);
    command
        .args(["--addr", "127.0.0.1:0"])
        .env("PIPELINE_VERSION", "7");
    let stderr = expect_config_error(ChildGuard::spawn(&mut command)).await;
    assert!(
        stderr.contains("PIPELINE_VERSION: must be 1 or 2, got 7"),
        "{stderr}"
    );

    let mut command = pipeline(cwd);
    command.args(["--addr", "127.0.0.1:0", "--aggregation-interval", "abc"]);
    let stderr = expect_config_error(ChildGuard::spawn(&mut command)).await;
    assert!(
        stderr.contains("--aggregation-interval/AGGREGATION_INTERVAL: invalid duration \"abc\""),
        "{stderr}"
    );

    assert!(
        !cwd.join("logs").exists(),
        "nothing is opened before the configuration is valid"
    );
}

#[tokio::test]
async fn sigterm_when_idle_exits_0_with_the_records_on_disk() {
    let root = tempfile::tempdir().unwrap();
    let logs = root.path().join("logs");
    let mut child = start_v1(root.path(), &logs);
    let addr = child.listening_addr().await;
    post_one(addr, "/before-sigterm").await;

    child.terminate();
    let status = child.wait_exit().await;
    assert_eq!(
        status.code(),
        Some(0),
        "{status}; stderr:\n{}",
        child.stderr()
    );
    assert!(
        child.stderr().contains("shutdown complete"),
        "{}",
        child.stderr()
    );
    assert_eq!(hour_14(&logs), [stored("/before-sigterm")]);
}

/// What a racing client learned about one batch it sent.
struct Sent {
    prefix: String,
    records: usize,
    accepted: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_posts_in_flight_keeps_every_acknowledged_record() {
    let root = tempfile::tempdir().unwrap();
    let logs = root.path().join("logs");
    let mut child = start_v1(root.path(), &logs);
    let addr = child.listening_addr().await;

    // Clients posting in a loop until the service goes away.
    let accepted = Arc::new(AtomicUsize::new(0));
    let racers: Vec<_> = (0..3)
        .map(|racer| {
            let accepted = accepted.clone();
            tokio::spawn(async move {
                let client = client();
                let mut sent = Vec::new();
                for batch in 0..2000 {
                    let prefix = format!("/race/{racer}/{batch}");
                    let records: Vec<Value> =
                        (0..5).map(|i| record("2025-11-22T14:00:00Z", &format!("{prefix}/{i}"), "curl/8.5.0")).collect();
                    let outcome =
                        try_send(&client, addr, Method::POST, "/logs", &[("content-type", NDJSON)], ndjson(&records)).await;
                    let ok = matches!(&outcome, Ok(response) if response.status() == StatusCode::ACCEPTED);
                    sent.push(Sent { prefix, records: records.len(), accepted: ok });
                    if !ok {
                        break;
                    }
                    accepted.fetch_add(1, Ordering::Relaxed);
                }
                sent
            })
        })
        .collect();

    // Requests certainly in flight: the handler is already reading their bodies.
    let mut in_flight = Vec::new();
    for request in 0..3 {
        let records: Vec<Value> = (0..50)
            .map(|i| {
                record(
                    "2025-11-22T14:00:00Z",
                    &format!("/in-flight/{request}/{i}"),
                    "curl/8.5.0",
                )
            })
            .collect();
        in_flight.push(RawPost::start(addr, NDJSON, ndjson(&records)).await);
    }
    wait_until("the racing clients to get batches accepted", || {
        accepted.load(Ordering::Relaxed) >= 3
    })
    .await;

    child.terminate();
    child
        .wait_for_stderr("shutdown: draining in-flight requests")
        .await;
    for request in in_flight {
        let answer = request.finish().await;
        assert_eq!(
            answer.status, 202,
            "an in-flight request is completed: {answer:?}"
        );
        assert_eq!(answer.body, json!({"accepted": 50}));
    }
    let status = child.wait_exit().await;
    assert_eq!(
        status.code(),
        Some(0),
        "{status}; stderr:\n{}",
        child.stderr()
    );

    let mut stored: HashMap<String, usize> = HashMap::new();
    for line in hour_14(&logs) {
        let entry: Value = serde_json::from_str(&line).expect("every stored line is JSON");
        let path = entry["path"].as_str().unwrap();
        *stored
            .entry(path[..path.rfind('/').unwrap()].to_owned())
            .or_default() += 1;
    }
    for request in 0..3 {
        assert_eq!(
            stored.remove(&format!("/in-flight/{request}")),
            Some(50),
            "in-flight request {request}"
        );
    }
    for racer in racers {
        for sent in racer.await.expect("racer task") {
            let count = stored.remove(&sent.prefix).unwrap_or(0);
            if sent.accepted {
                assert_eq!(
                    count, sent.records,
                    "accepted batch {} stored in full",
                    sent.prefix
                );
            } else {
                assert!(
                    count == 0 || count == sent.records,
                    "batch {} stored partly: {count}",
                    sent.prefix
                );
            }
        }
    }
    assert!(stored.is_empty(), "lines of batches never sent: {stored:?}");
}

#[tokio::test]
async fn second_instance_on_the_same_logs_dir_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let logs = root.path().join("logs");
    let start = || start_v1(root.path(), &logs);
    let mut first = start();
    let addr = first.listening_addr().await;

    let mut second = start();
    let status = second.wait_exit().await;
    let stderr = second.stderr();
    assert_eq!(status.code(), Some(1), "{status}; stderr:\n{stderr}");
    assert!(
        stderr.contains("in use by another log-pipeline process"),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("pid {}", first.pid())), "{stderr}");
    assert!(!stderr.contains("log-pipeline listening"), "{stderr}");

    let health = send(&client(), addr, Method::GET, "/health", &[], Vec::new()).await;
    assert_eq!(health.status(), StatusCode::OK);
    post_one(addr, "/first-still-serves").await;
    first.terminate();
    assert!(first.wait_exit().await.success(), "{}", first.stderr());
    assert_eq!(hour_14(&logs), [stored("/first-still-serves")]);
}

#[tokio::test]
async fn a_busy_port_exits_1_naming_the_address_and_releases_the_logs_dir() {
    let root = tempfile::tempdir().unwrap();
    let logs = root.path().join("logs");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let mut command = pipeline(root.path());
    command
        .args(["--addr", &addr.to_string()])
        .arg("--logs-dir")
        .arg(&logs);
    let mut child = ChildGuard::spawn(&mut command);
    let status = child.wait_exit().await;
    let stderr = child.stderr();
    assert_eq!(status.code(), Some(1), "{status}; stderr:\n{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on {addr} (server.addr)")),
        "{stderr}"
    );
    drop(taken);
    // The failed start let go of the logs directory: the next start on it succeeds.
    serve_one_record(start_v1(root.path(), &logs), "/after").await;
    assert_eq!(hour_14(&logs), [stored("/after")]);
}

#[tokio::test]
async fn every_environment_variable_of_v1_is_read() {
    let root = tempfile::tempdir().unwrap();
    let cwd = root.path();
    let (logs, analytics) = (cwd.join("env-logs"), cwd.join("env-analytics"));
    // The file (named by LOG_PIPELINE_CONFIG) limits batches to 2 records and would aggregate
    // hourly; the environment brings that down to 100ms.
    let config = write_config(
        cwd,
        "ingestion:\n  maxRecords: 2\naggregation:\n  interval: 1h\n",
    );
    let mut command = pipeline(cwd);
    command.envs([
        ("LOG_PIPELINE_CONFIG", config.as_str()),
        ("PIPELINE_VERSION", "1"),
        ("HTTP_ADDR", "127.0.0.1:0"),
        ("LOGS_DIR", logs.to_str().unwrap()),
        ("ANALYTICS_DIR", analytics.to_str().unwrap()),
        ("AGGREGATION_INTERVAL", "100ms"),
        ("LOG_PIPELINE_TOKENS", "env-token"),
    ]);
    let mut child = ChildGuard::spawn(&mut command);
    let addr = child.listening_addr().await;
    assert_eq!(addr.ip().to_string(), "127.0.0.1", "HTTP_ADDR");
    let post = async |token: Option<&str>, records: usize| {
        let body = ndjson(
            &(0..records)
                .map(|i| record("2025-11-22T14:00:00Z", &format!("/env/{i}"), "curl/8.5.0"))
                .collect::<Vec<_>>(),
        );
        let bearer = token.map(|token| format!("Bearer {token}"));
        let mut headers = vec![("content-type", NDJSON)];
        if let Some(bearer) = &bearer {
            headers.push(("authorization", bearer.as_str()));
        }
        send(&client(), addr, Method::POST, "/logs", &headers, body).await
    };
    assert_eq!(
        post(None, 1).await.status(),
        StatusCode::UNAUTHORIZED,
        "LOG_PIPELINE_TOKENS"
    );
    assert_eq!(
        post(Some("env-token"), 3).await.status(),
        StatusCode::PAYLOAD_TOO_LARGE,
        "maxRecords from the file of LOG_PIPELINE_CONFIG"
    );
    assert_accepted(post(Some("env-token"), 2).await, 2).await;
    assert_eq!(hour_14(&logs).len(), 2, "LOGS_DIR");
    let summary = analytics.join("2025-11-22/summary_14.json");
    wait_until(
        "a summary in ANALYTICS_DIR within AGGREGATION_INTERVAL",
        || {
            std::fs::read_to_string(&summary)
                .is_ok_and(|text| text.contains("\"totalRequests\": 2"))
        },
    )
    .await;
    child.terminate();
    let status = child.wait_exit().await;
    assert!(status.success(), "{status}; stderr:\n{}", child.stderr());
}

#[tokio::test]
async fn help_names_every_variable_and_never_prints_token_values() {
    let root = tempfile::tempdir().unwrap();
    let mut command = pipeline(root.path());
    command
        .arg("--help")
        .env("LOG_PIPELINE_TOKENS", "s3cret-token");
    let mut child = ChildGuard::spawn(&mut command);
    let status = child.wait_exit().await;
    let help = child.stdout();
    assert!(status.success(), "{status}; stderr:\n{}", child.stderr());
    let variables = log_pipeline::cli::env_vars();
    assert!(variables.len() >= 13, "{variables:?}");
    for var in variables {
        assert!(
            help.contains(&format!("[env: {var}")),
            "{var} missing:\n{help}"
        );
    }
    assert!(
        !help.contains("s3cret-token"),
        "--help must not print token values:\n{help}"
    );
}

/// The commit checked out where the tests were built, as build.rs names it for the binary.
fn checked_out_commit() -> String {
    let output = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("git runs (the tests run in a clone)");
    assert!(output.status.success(), "git rev-parse: {output:?}");
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[tokio::test]
async fn version_and_build_info_name_the_commit_built() {
    let root = tempfile::tempdir().unwrap();
    let (version, commit) = (env!("CARGO_PKG_VERSION"), checked_out_commit());
    let mut child = ChildGuard::spawn(pipeline(root.path()).arg("--version"));
    let status = child.wait_exit().await;
    assert!(status.success(), "{status}; stderr:\n{}", child.stderr());
    assert_eq!(
        child.stdout(),
        format!("log-pipeline {version} ({commit})\n")
    );

    let mut child = start_v1(root.path(), &root.path().join("logs"));
    let addr = child.listening_addr().await;
    let metrics = send(&client(), addr, Method::GET, "/metrics", &[], Vec::new()).await;
    assert_eq!(metrics.status(), StatusCode::OK);
    let metrics = metrics.text().await.unwrap();
    let series =
        format!("\nlog_pipeline_build_info{{commit=\"{commit}\",version=\"{version}\"}} 1\n");
    assert!(metrics.contains(&series), "{series:?} not in:\n{metrics}");
    child.terminate();
    let status = child.wait_exit().await;
    assert!(status.success(), "{status}; stderr:\n{}", child.stderr());
}

/// The binary in v1 on a free port of 127.0.0.1, writing to `logs`, run from `cwd`.
fn start_v1(cwd: &Path, logs: &Path) -> ChildGuard {
    let mut command = pipeline(cwd);
    command
        .args(["--addr", "127.0.0.1:0"])
        .arg("--logs-dir")
        .arg(logs);
    ChildGuard::spawn(&mut command)
}
