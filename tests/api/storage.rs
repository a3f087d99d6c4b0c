//! Storage behaviour seen through the API: a failing write is refused with 503 and rolled back,
//! and a torn last line left by a crash is repaired at start-up. A rollback that itself fails
//! needs a full disk and an append-only file, which only root can make: it is in the fault suite
//! (tests/faults/rollback.rs).

use reqwest::StatusCode;

use crate::support::{
    HOUR_14, JSON, assert_accepted, assert_error, header, json_array, line, record, spawn_app,
};

#[tokio::test]
async fn storage_failure_is_503_and_rolls_back_every_file() {
    let app = spawn_app(|_| {}).await;
    let before = json_array(&[record("2025-11-22T14:00:00Z", "/before", "curl/8.5.0")]);
    assert_accepted(app.post_logs(JSON, before).await, 1).await;
    let stored = std::fs::read(app.hour_path(HOUR_14)).expect("hour 14 file");

    // Hour 15 cannot be written: a directory stands where its file would be.
    std::fs::create_dir_all(app.hour_path("2025-11-22/15.log.json")).unwrap();
    let batch = json_array(&[
        record("2025-11-22T14:05:00Z", "/x", "curl/8.5.0"),
        record("2025-11-22T15:05:00Z", "/y", "curl/8.5.0"),
    ]);
    let response = app.post_logs(JSON, batch).await;
    assert_eq!(header(&response, "retry-after"), "1");
    let error = assert_error(
        response,
        StatusCode::SERVICE_UNAVAILABLE,
        "storage_unavailable",
    )
    .await;
    assert_eq!(
        error["message"],
        "storage is temporarily unavailable; nothing from this batch was stored, retry later"
    );
    assert_eq!(
        std::fs::read(app.hour_path(HOUR_14)).unwrap(),
        stored,
        "hour 14 rolled back"
    );
    assert_eq!(app.metric("ingest_errors_total").await, 1.0);
    assert_eq!(app.metric("logs_ingested_total").await, 1.0);
    assert_eq!(app.metric("log_batches_received_total").await, 1.0);
    assert_eq!(app.metric("invalid_requests_total").await, 0.0);
    assert_eq!(
        app.metric(r#"http_request_duration_seconds_count{route="/logs",status_class="5xx"}"#)
            .await,
        1.0
    );

    // The service keeps working, appending right after the rolled-back point.
    assert_eq!(app.get("/ready").await.status(), StatusCode::OK);
    let after = json_array(&[record("2025-11-22T14:06:00Z", "/after", "curl/8.5.0")]);
    assert_accepted(app.post_logs(JSON, after).await, 1).await;
    assert_eq!(
        app.read_hour_file(HOUR_14),
        [
            line("2025-11-22T14:00:00Z", "/before", "curl/8.5.0"),
            line("2025-11-22T14:06:00Z", "/after", "curl/8.5.0")
        ]
    );
    app.stop().await;
}

#[tokio::test]
async fn torn_last_line_is_removed_at_start_and_appends_follow_cleanly() {
    let complete = line("2025-11-22T14:00:00Z", "/complete", "curl/8.5.0");
    let app = spawn_app(|config| {
        let day = config.storage.logs_dir.join("2025-11-22");
        std::fs::create_dir_all(&day).unwrap();
        std::fs::write(
            day.join("14.log.json"),
            format!("{complete}\n{{\"timestamp\":\"2025-11-22T14:0"),
        )
        .unwrap();
    })
    .await;
    assert_eq!(
        std::fs::read_to_string(app.hour_path(HOUR_14)).unwrap(),
        format!("{complete}\n")
    );

    let next = json_array(&[record("2025-11-22T14:01:00Z", "/next", "curl/8.5.0")]);
    assert_accepted(app.post_logs(JSON, next).await, 1).await;
    let next = line("2025-11-22T14:01:00Z", "/next", "curl/8.5.0");
    assert_eq!(
        std::fs::read_to_string(app.hour_path(HOUR_14)).unwrap(),
        format!("{complete}\n{next}\n")
    );
    app.stop().await;
}

/// An hour file that is a named pipe: the store's writer blocks opening it (for writing) until
/// [`Fifo::drain`] opens it for reading. Real kernel behaviour, no test hook in the service.
struct Fifo {
    path: std::path::PathBuf,
}

impl Fifo {
    fn create(path: std::path::PathBuf) -> Fifo {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let status = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .expect("mkfifo runs");
        assert!(status.success(), "mkfifo {}", path.display());
        Fifo { path }
    }

    /// Opens the pipe for reading and reads it to its end on a thread (the writer is unblocked).
    fn drain(&self) -> std::thread::JoinHandle<Vec<u8>> {
        let path = self.path.clone();
        std::thread::spawn(move || std::fs::read(path).expect("read the pipe"))
    }
}

#[tokio::test]
async fn pending_work_at_its_bound_is_503_overloaded_before_anything_is_stored() {
    // One byte of pending work: a batch waiting for the writer holds all of it.
    let app = spawn_app(|config| config.storage.max_pending_bytes = 1).await;
    let stuck = Fifo::create(app.hour_path("2025-11-22/13.log.json"));
    let first = {
        let (client, addr) = (app.client.clone(), app.addr);
        let body = json_array(&[record("2025-11-22T13:00:00Z", "/stuck", "curl/8.5.0")]);
        tokio::spawn(async move {
            crate::support::send(
                &client,
                addr,
                reqwest::Method::POST,
                "/logs",
                &[("content-type", JSON)],
                body,
            )
            .await
        })
    };
    crate::support::poll("the first batch to wait for the writer", async || {
        let depth = app.metric("ingestion_work_queue_depth").await;
        if depth == 0.0 { Err(depth) } else { Ok(()) }
    })
    .await;

    let second = json_array(&[record("2025-11-22T14:00:00Z", "/refused", "curl/8.5.0")]);
    let response = app.post_logs(JSON, second).await;
    assert_eq!(header(&response, "retry-after"), "1");
    let error = assert_error(response, StatusCode::SERVICE_UNAVAILABLE, "overloaded").await;
    assert_eq!(
        error["message"],
        "too much pending work; nothing from this batch was stored, retry later"
    );
    assert_eq!(app.metric("ingest_overload_rejections_total").await, 1.0);
    assert!(!app.hour_path(HOUR_14).exists(), "nothing of it stored");

    // Unblock the writer: it writes into the pipe, whose fsync and truncation the kernel refuses.
    let drained = stuck.drain();
    let first = first.await.unwrap();
    let piped = String::from_utf8(drained.join().unwrap()).unwrap();
    assert_eq!(
        piped,
        line("2025-11-22T13:00:00Z", "/stuck", "curl/8.5.0") + "\n"
    );
    assert_error(first, StatusCode::INTERNAL_SERVER_ERROR, "outcome_unknown").await;
    app.stop().await;
}

#[tokio::test]
async fn fsync_policies_sync_when_the_readme_says() {
    use log_pipeline::config::FsyncPolicy;
    let batch = |i: usize| {
        json_array(&[record(
            "2025-11-22T14:00:00Z",
            &format!("/b{i}"),
            "curl/8.5.0",
        )])
    };
    let one_hour = std::time::Duration::from_secs(3600);
    // always: each acknowledged batch was fsynced first (sequential batches: one fsync each).
    // never, and interval with a long period: acknowledged without any fsync.
    for (policy, interval, fsyncs) in [
        (FsyncPolicy::Always, one_hour, 5.0),
        (FsyncPolicy::Never, one_hour, 0.0),
        (FsyncPolicy::Interval, one_hour, 0.0),
    ] {
        let app = spawn_app(|config| {
            config.storage.fsync = policy;
            config.storage.fsync_interval = interval;
            config.storage.idle_file_timeout = one_hour;
        })
        .await;
        for i in 0..5 {
            assert_accepted(app.post_logs(JSON, batch(i)).await, 1).await;
        }
        assert_eq!(app.metric("store_fsyncs_total").await, fsyncs, "{policy:?}");
        assert_eq!(app.read_hour_file(HOUR_14).len(), 5, "{policy:?}");
        app.stop().await;
    }
    // interval: the written file is fsynced within the period, with no request to trigger it.
    let app = spawn_app(|config| {
        config.storage.fsync = FsyncPolicy::Interval;
        config.storage.fsync_interval = std::time::Duration::from_millis(100);
        config.storage.idle_file_timeout = one_hour;
    })
    .await;
    assert_accepted(app.post_logs(JSON, batch(0)).await, 1).await;
    crate::support::poll("the interval fsync", async || {
        match app.metric("store_fsyncs_total").await {
            1.0 => Ok(()),
            other => Err(other),
        }
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn open_hour_files_are_capped_at_64_and_idle_ones_are_closed() {
    let post_hour = async |app: &crate::support::TestApp, hour: usize| {
        let day = 1 + hour / 24;
        let timestamp = format!("2025-11-{day:02}T{:02}:00:00Z", hour % 24);
        let body = json_array(&[record(&timestamp, "/h", "curl/8.5.0")]);
        assert_accepted(app.post_logs(JSON, body).await, 1).await;
    };
    let one_hour = std::time::Duration::from_secs(3600);
    let app = spawn_app(|config| config.storage.idle_file_timeout = one_hour).await;
    // 70 hours, one batch each: from the 65th on, the least recently written file is closed.
    for hour in 0..70 {
        post_hour(&app, hour).await;
        let open = app.metric("store_open_files").await;
        assert_eq!(open, (hour + 1).min(64) as f64, "after {} hours", hour + 1);
    }
    assert_eq!(crate::support::hour_files(app.logs_dir.path()).len(), 70);
    app.stop().await;

    let app = spawn_app(|config| {
        config.storage.idle_file_timeout = std::time::Duration::from_millis(200);
    })
    .await;
    for hour in 0..3 {
        post_hour(&app, hour).await;
    }
    crate::support::poll("idle files to be closed", async || {
        match app.metric("store_open_files").await {
            0.0 => Ok(()),
            open => Err(open),
        }
    })
    .await;
    assert_eq!(crate::support::hour_files(app.logs_dir.path()).len(), 3);
    app.stop().await;
}
