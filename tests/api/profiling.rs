//! Profiling as an operator uses it, on the real binary: `PROFILE_CAPTURE=1` writes CPU, heap
//! and task-dump files at shutdown; `PROFILE_ENABLED=1` serves `/debug/pprof/` on its own
//! address; with neither, no profiler is installed. The files are read the way `go tool pprof`
//! reads them, and by `go tool pprof` itself (the tests that need Go run with `make test`).

use std::io::Read as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use flate2::read::GzDecoder;
use pprof::protos::{Message as _, Profile};
use reqwest::{Method, Response, StatusCode};
use serde_json::Value;
use tempfile::TempDir;

use crate::support::{
    ChildGuard, NDJSON, assert_accepted, assert_error, client, content_type, free_port, go_binary,
    header, ndjson, pipeline, record, send, wait_for_listener, wait_until,
};

/// Records per batch and batches per run: enough CPU for a few hundred samples at 99 Hz in a
/// debug build.
const RECORDS_PER_BATCH: usize = 1000;
const BATCHES: usize = 240;
const CONCURRENCY: usize = 4;

/// Bit of SIGPROF (27) in `/proc/<pid>/status`'s `SigCgt` mask: a handler is installed.
const SIGPROF_BIT: u64 = 1 << (27 - 1);

/// A `log-pipeline` command on port 0 in `cwd`, with the `PROFILE_*` variables `profile_env`.
fn service(cwd: &Path, profile_env: &[(&str, &str)]) -> Command {
    let mut command = pipeline(cwd);
    command.args(["--addr", "127.0.0.1:0"]);
    command.envs(profile_env.iter().copied());
    command
}

/// POSTs `batches` NDJSON batches of [`RECORDS_PER_BATCH`] records, [`CONCURRENCY`] at a time,
/// each expecting 202.
async fn post_batches(addr: SocketAddr, batches: usize) {
    let records: Vec<Value> = (0..RECORDS_PER_BATCH)
        .map(|i| {
            record(
                "2025-11-22T14:23:00Z",
                &format!("/page/{}", i % 50),
                "Mozilla/5.0 (X11; Linux x86_64)",
            )
        })
        .collect();
    let body = ndjson(&records);
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..CONCURRENCY {
        let body = body.clone();
        workers.spawn(async move {
            let client = client();
            for _ in (worker..batches).step_by(CONCURRENCY) {
                let response = send(
                    &client,
                    addr,
                    Method::POST,
                    "/logs",
                    &[("content-type", NDJSON)],
                    body.clone(),
                )
                .await;
                assert_accepted(response, RECORDS_PER_BATCH).await;
            }
        });
    }
    while let Some(worker) = workers.join_next().await {
        worker.expect("a load worker panicked");
    }
}

/// Decodes a pprof protobuf, gunzipping it first when it is gzipped (as Go writes them).
fn decode_pprof(bytes: &[u8]) -> Profile {
    let mut raw = Vec::new();
    let bytes = if bytes.starts_with(&[0x1f, 0x8b]) {
        GzDecoder::new(bytes)
            .read_to_end(&mut raw)
            .expect("valid gzip");
        &raw[..]
    } else {
        bytes
    };
    Profile::decode(bytes).expect("a pprof protobuf")
}

/// The function names of every frame of `sample`, innermost first.
fn sample_functions<'p>(profile: &'p Profile, sample: &pprof::protos::Sample) -> Vec<&'p str> {
    let string = |index: i64| profile.string_table[usize::try_from(index).unwrap()].as_str();
    sample
        .location_id
        .iter()
        .flat_map(|id| profile.location.iter().filter(move |loc| loc.id == *id))
        .flat_map(|location| location.line.iter())
        .flat_map(|line| {
            profile
                .function
                .iter()
                .filter(move |function| function.id == line.function_id)
        })
        .map(|function| string(function.name))
        .collect()
}

/// How many samples have a frame of this crate, and a few of their names for messages.
fn own_samples(profile: &Profile) -> (usize, Vec<String>) {
    let mut count = 0;
    let mut names = Vec::new();
    for sample in &profile.sample {
        let functions = sample_functions(profile, sample);
        if let Some(name) = functions.iter().find(|name| name.contains("log_pipeline")) {
            count += 1;
            if names.len() < 5 {
                names.push((*name).to_owned());
            }
        }
    }
    (count, names)
}

fn sample_type_names(profile: &Profile) -> Vec<&str> {
    profile
        .sample_type
        .iter()
        .map(|ty| profile.string_table[usize::try_from(ty.ty).unwrap()].as_str())
        .collect()
}

fn sigprof_handled(pid: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let mask = status
        .lines()
        .find_map(|line| line.strip_prefix("SigCgt:"))
        .expect("SigCgt line");
    u64::from_str_radix(mask.trim(), 16).expect("hex mask") & SIGPROF_BIT != 0
}

/// A whole run with `PROFILE_CAPTURE=1 PROFILE_NAME=t`: start, load, SIGTERM, clean exit.
/// Returns the working directory (kept alive) and the profile directory.
async fn capture_run() -> (TempDir, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("tmp");
    let mut child = ChildGuard::spawn(&mut service(
        root.path(),
        &[
            ("PROFILE_CAPTURE", "1"),
            ("PROFILE_DIR", dir.to_str().unwrap()),
            ("PROFILE_NAME", "t"),
        ],
    ));
    let addr = child.listening_addr().await;
    assert!(dir.is_dir(), "PROFILE_DIR is created at start-up");
    assert!(
        sigprof_handled(child.pid()),
        "the whole-run CPU profiler has a SIGPROF handler"
    );
    post_batches(addr, BATCHES).await;
    child.terminate();
    let status = child.wait_exit().await;
    let stderr = child.stderr();
    assert!(status.success(), "{status}; stderr:\n{stderr}");
    assert!(stderr.contains("profile written"), "{stderr}");
    (root, dir)
}

#[tokio::test]
async fn capture_writes_cpu_heap_and_task_profiles_at_shutdown() {
    let (_root, dir) = capture_run().await;
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(files, ["cpu_t.prof", "goroutine_t.prof", "heap_t.prof"]);

    let cpu = std::fs::read(dir.join("cpu_t.prof")).unwrap();
    assert!(cpu.starts_with(&[0x1f, 0x8b]), "gzipped like Go's profiles");
    let cpu = decode_pprof(&cpu);
    assert_eq!(sample_type_names(&cpu), ["samples", "cpu"]);
    let (own, names) = own_samples(&cpu);
    assert!(
        own > 0,
        "no CPU sample has a log_pipeline frame among {} samples",
        cpu.sample.len()
    );
    assert!(
        names.iter().all(|name| !name.starts_with("_ZN")),
        "names are demangled: {names:?}"
    );

    let heap = decode_pprof(&std::fs::read(dir.join("heap_t.prof")).unwrap());
    assert_eq!(sample_type_names(&heap), ["inuse_space"]);
    assert!(!heap.sample.is_empty(), "the heap profile has samples");
    assert!(!heap.function.is_empty(), "the heap profile is symbolized");
    let (own, _) = own_samples(&heap);
    assert!(
        own > 0,
        "no live allocation is attributed to log_pipeline code"
    );

    let tasks = std::fs::read_to_string(dir.join("goroutine_t.prof")).unwrap();
    assert!(tasks.starts_with("tokio task dump: "), "{tasks}");
    assert!(tasks.contains("\ntask 1 of "), "{tasks}");
    assert!(
        tasks.contains("log_pipeline::"),
        "the service's own tasks are in the dump:\n{tasks}"
    );
}

/// `GET http://addr/path` with the suite's client.
async fn get(addr: SocketAddr, path: &str) -> Response {
    send(&client(), addr, Method::GET, path, &[], Vec::new()).await
}

/// The service in `cwd` with `PROFILE_ENABLED=1`, once both its API address and its
/// `/debug/pprof/` address (the second returned) listen.
async fn serve_profiles(cwd: &Path) -> (ChildGuard, SocketAddr, SocketAddr) {
    let debug: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let mut child = ChildGuard::spawn(&mut service(
        cwd,
        &[
            ("PROFILE_ENABLED", "1"),
            ("PROFILE_ADDR", &debug.to_string()),
        ],
    ));
    let addr = child.listening_addr().await;
    wait_for_listener(debug).await;
    (child, addr, debug)
}

#[tokio::test]
async fn endpoint_serves_profiles_on_its_own_address() {
    let root = tempfile::tempdir().unwrap();
    let (mut child, addr, debug) = serve_profiles(root.path()).await;
    assert!(
        !sigprof_handled(child.pid()),
        "no CPU profiler runs until a profile is asked for"
    );

    // One CPU profile at a time: a second while the first samples is refused.
    let first = tokio::spawn(async move { get(debug, "/debug/pprof/profile?seconds=3").await });
    let pid = child.pid();
    wait_until("the first CPU profile to start", || sigprof_handled(pid)).await;
    let second = get(debug, "/debug/pprof/profile?seconds=1").await;
    let body = assert_error(second, StatusCode::CONFLICT, "profile_in_progress").await;
    assert!(
        body["message"].as_str().unwrap().contains("one at a time"),
        "{body}"
    );
    post_batches(addr, 40).await;
    let first = first.await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(content_type(&first), "application/octet-stream");
    assert_eq!(
        header(&first, "content-disposition"),
        "attachment; filename=\"profile\""
    );
    let cpu_bytes = first.bytes().await.unwrap();
    let cpu = decode_pprof(&cpu_bytes);
    assert_eq!(sample_type_names(&cpu), ["samples", "cpu"]);
    assert!(
        own_samples(&cpu).0 > 0,
        "the load during the profile is in it ({} samples)",
        cpu.sample.len()
    );
    assert!(
        !sigprof_handled(child.pid()),
        "the profiler is removed once the profile is done"
    );

    for bad in ["0", "abc", "61", "-1", ""] {
        let response = get(debug, &format!("/debug/pprof/profile?seconds={bad}")).await;
        let body = assert_error(response, StatusCode::BAD_REQUEST, "invalid_seconds").await;
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("seconds must be a whole number from 1 to 60"),
            "{body}"
        );
    }
    let response = get(debug, "/debug/pprof/flamegraph?seconds=abc").await;
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_seconds").await;

    let heap = get(debug, "/debug/pprof/heap").await;
    assert_eq!(heap.status(), StatusCode::OK);
    assert_eq!(content_type(&heap), "application/octet-stream");
    let heap_bytes = heap.bytes().await.unwrap();
    let heap = decode_pprof(&heap_bytes);
    assert_eq!(sample_type_names(&heap), ["inuse_space"]);
    assert!(!heap.sample.is_empty(), "live allocations are sampled");
    // `go tool pprof` reads them too: `go_tool_pprof_reads_the_live_profiles`.

    let tasks = get(debug, "/debug/pprof/goroutine").await;
    assert_eq!(tasks.status(), StatusCode::OK);
    assert_eq!(content_type(&tasks), "text/plain; charset=utf-8");
    let tasks = tasks.text().await.unwrap();
    assert!(tasks.starts_with("tokio task dump: "), "{tasks}");
    assert!(tasks.contains("log_pipeline::"), "{tasks}");

    // Idle: an image that says so. Under load: the service's own frames.
    for (load, expected) in [(0, "No CPU samples"), (20, "log_pipeline::")] {
        let flamegraph =
            tokio::spawn(async move { get(debug, "/debug/pprof/flamegraph?seconds=2").await });
        post_batches(addr, load).await;
        let flamegraph = flamegraph.await.unwrap();
        assert_eq!(flamegraph.status(), StatusCode::OK);
        assert_eq!(content_type(&flamegraph), "image/svg+xml");
        let svg = flamegraph.text().await.unwrap();
        assert!(
            svg.starts_with("<?xml") || svg.starts_with("<svg"),
            "{svg:.200}"
        );
        assert!(svg.trim_end().ends_with("</svg>"), "a whole SVG document");
        assert!(svg.contains(expected), "{load} batches: {svg:.2000}");
    }

    let index = get(debug, "/debug/pprof/").await;
    assert_eq!(index.status(), StatusCode::OK);
    assert!(index.text().await.unwrap().contains("/debug/pprof/heap"));
    let missing = get(debug, "/debug/pprof/nope").await;
    assert_error(missing, StatusCode::NOT_FOUND, "not_found").await;

    // The API's address has no profiles, and its metrics are its own.
    let response = get(addr, "/debug/pprof/heap").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let metrics = get(addr, "/metrics").await;
    assert_eq!(metrics.status(), StatusCode::OK);
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics.contains("log_batches_received_total 60"),
        "{metrics}"
    );
    assert!(!metrics.contains("pprof"), "{metrics}");

    child.terminate();
    let status = child.wait_exit().await;
    assert!(status.success(), "{status}; stderr:\n{}", child.stderr());
    assert!(
        !root.path().join("profiles").exists(),
        "no capture files without PROFILE_CAPTURE"
    );
}

#[tokio::test]
async fn nothing_is_profiled_when_off() {
    let root = tempfile::tempdir().unwrap();
    let mut child = ChildGuard::spawn(&mut service(root.path(), &[]));
    let addr = child.listening_addr().await;
    post_batches(addr, 4).await;
    assert!(!sigprof_handled(child.pid()), "no SIGPROF handler");
    child.terminate();
    let status = child.wait_exit().await;
    let stderr = child.stderr();
    assert!(status.success(), "{status}; stderr:\n{stderr}");
    assert!(!stderr.contains("profil"), "{stderr}");
    assert!(!stderr.contains("jemalloc heap sampling"), "{stderr}");
    assert!(!root.path().join("profiles").exists());
}

#[tokio::test]
async fn bad_profiling_variables_stop_the_start() {
    let root = tempfile::tempdir().unwrap();
    for (env, expected) in [
        (
            [("PROFILE_ENABLED", "1"), ("PROFILE_ADDR", "nowhere")],
            "profiling.addr: invalid listen address \"nowhere\"",
        ),
        (
            [("PROFILE_CAPTURE", "1"), ("PROFILE_NAME", "../up")],
            "profiling.name: \"../up\" cannot be part of a file name",
        ),
        (
            [("PROFILE_CAPTURE", "maybe"), ("PROFILE_NAME", "t")],
            "--profile-capture/PROFILE_CAPTURE: expected 1 or 0",
        ),
    ] {
        let mut child = ChildGuard::spawn(&mut service(root.path(), &env));
        let status = child.wait_exit().await;
        let stderr = child.stderr();
        assert_eq!(
            status.code(),
            Some(2),
            "{env:?}: {status}; stderr:\n{stderr}"
        );
        assert!(
            stderr.contains("log-pipeline: invalid configuration: ") && stderr.contains(expected),
            "{env:?}: {stderr}"
        );
    }
}

/// `go tool pprof -top` of `file`, every node, by cumulative weight (`go` from [`go_binary`]).
fn go_pprof_top(go: &Path, file: &Path) -> String {
    let output = Command::new(go)
        .args([
            "tool",
            "pprof",
            "-top",
            "-cum",
            "-nodefraction=0",
            "-nodecount=100000",
            "-symbolize=none",
        ])
        .arg(file)
        .output()
        .expect("go tool pprof runs");
    assert!(
        output.status.success(),
        "go tool pprof -top {} failed: {}\n{}",
        file.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
#[ignore = "needs Go (go tool pprof): make test"]
async fn go_tool_pprof_reads_the_captured_profiles() {
    let go = go_binary();
    let (_root, dir) = capture_run().await;
    for kind in ["cpu", "heap"] {
        let top = go_pprof_top(&go, &dir.join(format!("{kind}_t.prof")));
        assert!(top.contains("log_pipeline"), "{kind}:\n{top}");
    }
}

/// What an operator does with the profiles of `/debug/pprof/`: `go tool pprof`, not the library
/// that wrote them (the endpoint's answers: `endpoint_serves_profiles_on_its_own_address`).
#[tokio::test]
#[ignore = "needs Go (go tool pprof): make test"]
async fn go_tool_pprof_reads_the_live_profiles() {
    let go = go_binary();
    let root = tempfile::tempdir().unwrap();
    let (mut child, addr, debug) = serve_profiles(root.path()).await;
    let cpu = tokio::spawn(async move { get(debug, "/debug/pprof/profile?seconds=3").await });
    let pid = child.pid();
    wait_until("the CPU profile to start", || sigprof_handled(pid)).await;
    post_batches(addr, 40).await;
    let cpu = cpu.await.unwrap();
    let heap = get(debug, "/debug/pprof/heap").await;
    for (kind, response) in [("cpu", cpu), ("heap", heap)] {
        assert_eq!(response.status(), StatusCode::OK, "{kind}");
        let file = root.path().join(format!("live_{kind}.prof"));
        std::fs::write(&file, response.bytes().await.unwrap()).unwrap();
        let top = go_pprof_top(&go, &file);
        assert!(top.contains("log_pipeline"), "{kind}:\n{top}");
    }
    child.terminate();
    let status = child.wait_exit().await;
    assert!(status.success(), "{status}; stderr:\n{}", child.stderr());
}
