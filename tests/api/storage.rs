//! Storage behaviour seen through the API: a failing write is refused with 503 and rolled back,
//! and a torn last line left by a crash is repaired at start-up.

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
