//! `/health`, `/ready` and `/metrics`.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::{body_json, content_type, sample, spawn_app};

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
async fn metrics_are_prometheus_text_with_every_metric() {
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
