//! `/health`, `/ready` and `/metrics`, and what they say while the service drains.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use serde_json::json;

use crate::support::{
    HOUR_14, JSON, RawPost, assert_error, body_json, content_type, header, json_array, line, poll,
    read_lines, record, sample, spawn_app,
};

#[tokio::test]
async fn health_and_ready_answer() {
    let app = spawn_app(|_| {}).await;
    let health = app.get("/health").await;
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(health.text().await.unwrap(), "ok");

    let ready = app.get("/ready").await;
    assert_eq!(ready.status(), StatusCode::OK);
    assert!(
        content_type(&ready).starts_with("application/json"),
        "{}",
        content_type(&ready)
    );
    assert_eq!(body_json(ready).await, json!({"status": "ready"}));
    app.stop().await;
}

#[tokio::test]
async fn metrics_are_prometheus_text_and_start_at_zero() {
    let app = spawn_app(|_| {}).await;
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = content_type(&response);
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = response.text().await.unwrap();
    for name in [
        "log_batches_received_total",
        "invalid_requests_total",
        "logs_ingested_total",
        "ingest_errors_total",
        "aggregation_runs_total",
        "ingestion_work_queue_depth",
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "no {name} in:\n{text}"
        );
        assert!(
            sample(&text, name).is_some(),
            "no {name} sample in:\n{text}"
        );
    }
    // Nothing was posted yet (aggregation runs on its own timer, so its count is not fixed).
    for name in [
        "log_batches_received_total",
        "invalid_requests_total",
        "logs_ingested_total",
        "ingest_errors_total",
        "ingestion_work_queue_depth",
    ] {
        assert_eq!(sample(&text, name), Some(0.0), "{name} starts at 0");
    }
    let resident =
        sample(&text, "process_resident_memory_bytes").expect("process metrics are exported");
    assert!(resident > 0.0);
    app.stop().await;
}

/// The `## Metrics` table of the operator guide (`docs/operations.md`): family name → type
/// (`counter`, `gauge`, `histogram`).
fn documented_metrics() -> BTreeMap<String, String> {
    let guide = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md"))
        .expect("docs/operations.md");
    let section = guide
        .split("\n## Metrics\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("a ## Metrics section");
    section
        .lines()
        .filter_map(|row| {
            let mut cells = row.strip_prefix("| `")?.split(" | ");
            let name = cells.next()?.strip_suffix('`')?;
            let kind = cells.next()?.split(',').next()?.trim();
            (!name.ends_with('*')).then(|| (name.to_owned(), kind.to_owned()))
        })
        .collect()
}

#[tokio::test]
async fn every_exported_metric_family_is_documented_with_its_type() {
    let app = spawn_app(|_| {}).await;
    // One request, so that the labelled request histogram has a series.
    let metrics = app.get("/metrics").await;
    assert_eq!(metrics.status(), StatusCode::OK);
    let text = app.metrics_text().await;
    let exported: BTreeMap<String, String> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_once(' '))
        .filter(|(name, _)| !name.starts_with("process_"))
        .map(|(name, kind)| (name.to_owned(), kind.to_owned()))
        .collect();
    let documented = documented_metrics();
    for (name, kind) in &exported {
        assert_eq!(
            documented.get(name),
            Some(kind),
            "{name} ({kind}) is exported but not documented so in docs/operations.md's Metrics table"
        );
    }
    // Families with a label appear once they have a series; v2's have none in v1 (the Kafka
    // tests scrape them), the per-site ones none without sites (tests/api/site_access.rs
    // scrapes them).
    let missing: Vec<&String> = documented
        .keys()
        .filter(|name| !exported.contains_key(*name))
        .collect();
    assert_eq!(
        missing,
        [
            "kafka_consumer_lag",
            "kafka_consumer_partitions",
            "kafka_stalled_partitions",
            "site_batches_refused_total",
            "site_bytes_received_total",
            "site_records_accepted_total",
        ],
        "documented but not exported"
    );
    assert!(documented.len() >= 25, "{documented:?}");
    app.stop().await;
}

#[tokio::test]
async fn while_draining_new_requests_get_503_shutting_down_and_in_flight_ones_are_stored() {
    let mut app = spawn_app(|_| {}).await;
    let held = json_array(&[record("2025-11-22T14:00:00Z", "/in-flight", "curl/8.5.0")]);
    let held = RawPost::start(app.addr, JSON, held).await;
    app.begin_stop();

    // The in-flight request holds the drain open; new connections are still answered.
    let ready = poll("/ready to say shutting_down", async || {
        let response = app.get("/ready").await;
        match response.status() {
            StatusCode::SERVICE_UNAVAILABLE => Ok(response),
            other => Err(other),
        }
    })
    .await;
    assert_eq!(header(&ready, "connection"), "close");
    assert_eq!(body_json(ready).await, json!({"status": "shutting_down"}));
    let refused = json_array(&[record("2025-11-22T14:00:00Z", "/refused", "curl/8.5.0")]);
    let response = app.post_logs(JSON, refused).await;
    assert_eq!(header(&response, "retry-after"), "1");
    let error = assert_error(response, StatusCode::SERVICE_UNAVAILABLE, "shutting_down").await;
    assert_eq!(
        error["message"],
        "the service is shutting down; nothing from this batch was stored"
    );
    assert_eq!(
        app.get("/health").await.status(),
        StatusCode::OK,
        "still alive"
    );
    assert!(!app.has_stopped(), "the in-flight request holds the drain");

    let answer = held.finish().await;
    assert_eq!(answer.status, 202, "{answer:?}");
    assert_eq!(answer.body, json!({"accepted": 1}));
    let logs = app.logs_dir.path().to_owned();
    let dirs = app.stop_keeping_dirs().await;
    assert_eq!(
        read_lines(&logs.join(HOUR_14)),
        [line("2025-11-22T14:00:00Z", "/in-flight", "curl/8.5.0")]
    );
    drop(dirs);
}
