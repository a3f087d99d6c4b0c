//! The other routes through the router: `/ready` in each state, `/health`, `/metrics`, JSON
//! answers for unknown routes and methods, timeouts and panics, and which routes ask a token.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::json;

use super::*;

#[tokio::test]
async fn ready_says_whether_batches_can_be_taken_and_why_not() {
    let api = api(|_| {});
    let ready = api.get("/ready").await;
    assert_eq!(
        (ready.status, ready.json()),
        (StatusCode::OK, json!({"status": "ready"}))
    );

    let reason = "the Kafka broker does not answer with the topic and its partition leaders";
    *api.pipeline.readiness.lock().unwrap() = Err(reason);
    let not_ready = api.get("/ready").await;
    assert_eq!(
        (not_ready.status, not_ready.json()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "not_ready", "reason": reason})
        )
    );

    // Draining wins over whatever the pipeline says, and batches are refused, unread.
    *api.pipeline.readiness.lock().unwrap() = Ok(());
    api.shutting_down.store(true, Ordering::Relaxed);
    let draining = api.get("/ready").await;
    assert_eq!(
        (draining.status, draining.json()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "shutting_down"})
        )
    );
    let refused = api.post_json(TWO_RECORDS).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.code(), "shutting_down");
    assert!(api.pipeline.handed().is_empty());
    assert_refusals(&api, &[]);

    let health = api.get("/health").await;
    assert_eq!(
        (health.status, &health.body[..]),
        (StatusCode::OK, &b"ok"[..])
    );
}

#[tokio::test]
async fn routes_that_do_not_exist_or_take_another_method_answer_json() {
    let api = api(|_| {});
    let missing = api.get("/logs/nope").await;
    assert_eq!(
        (missing.status, missing.json()),
        (
            StatusCode::NOT_FOUND,
            json!({"error": "not_found", "message": "no route for GET /logs/nope"})
        )
    );
    let wrong_method = api.get("/logs").await;
    assert_eq!(
        (wrong_method.status, wrong_method.json()),
        (
            StatusCode::METHOD_NOT_ALLOWED,
            json!({"error": "method_not_allowed", "message": "method not allowed"})
        )
    );
    assert_eq!(wrong_method.header(header::ALLOW), Some("POST"));
    assert_eq!(
        wrong_method.header(header::CONTENT_TYPE),
        Some("application/json")
    );
    assert_refusals(&api, &[]);
    let metrics = api.get("/metrics").await;
    assert_eq!(
        metrics.header(header::CONTENT_TYPE),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = String::from_utf8(metrics.body).unwrap();
    for series in [
        "http_request_duration_seconds_count{route=\"unmatched\",status_class=\"4xx\"} 1",
        "http_request_duration_seconds_count{route=\"/logs\",status_class=\"4xx\"} 1",
    ] {
        assert!(text.contains(series), "{series} in\n{text}");
    }
}

#[tokio::test]
async fn a_token_is_asked_of_the_protected_routes_only() {
    let api = api(|config| config.auth.tokens = vec!["t0k3n".into()]);
    let unauthorized = api.post_json(TWO_RECORDS).await;
    assert_eq!(unauthorized.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unauthorized.code(), "unauthorized");
    assert_eq!(
        unauthorized.header(header::WWW_AUTHENTICATE),
        Some("Bearer")
    );
    let wrong = api
        .post(
            &[
                ("content-type", "application/json"),
                ("authorization", "Bearer t0k3m"),
            ],
            TWO_RECORDS,
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(api.pipeline.handed().is_empty());
    let accepted = api
        .post(
            &[
                ("content-type", "application/json"),
                ("authorization", "bearer  t0k3n "),
            ],
            TWO_RECORDS,
        )
        .await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED);
    for probe in ["/health", "/ready"] {
        assert_eq!(api.get(probe).await.status, StatusCode::OK, "{probe}");
    }
    assert_refusals(&api, &[]);
}

#[tokio::test]
async fn a_request_past_the_request_timeout_is_503_timeout() {
    let api = api(|config| config.server.request_timeout = Duration::from_millis(50));
    api.pipeline.settle_hangs.store(true, Ordering::Relaxed);
    let started = Instant::now();
    let answer = api.get("/analytics/hours").await;
    assert!(started.elapsed() >= Duration::from_millis(50));
    assert_eq!(
        (answer.status, answer.json()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "timeout", "message": "request did not complete within server.requestTimeout"})
        )
    );
    assert_eq!(answer.header(header::RETRY_AFTER), Some("1"));
}

#[tokio::test]
async fn a_panic_is_500_internal_with_nothing_of_it_in_the_answer() {
    let api = api(|_| {});
    // In the task that hands the batch over.
    api.tell(Answer::Panic);
    let handing_over = api.post_json(TWO_RECORDS).await;
    // In a handler.
    *api.pipeline.readiness.lock().unwrap() = Err("panic");
    let handling = api.get("/ready").await;
    for answer in [handing_over, handling] {
        assert_eq!(
            (answer.status, answer.json()),
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error": "internal", "message": "internal error"})
            )
        );
    }
    assert_eq!(api.metric("log_batches_received_total"), 0.0);
    assert_refusals(&api, &[]);
}

#[tokio::test]
async fn a_method_the_probes_do_not_take_is_405_with_what_they_take() {
    let api = api(|_| {});
    let answer = api
        .send(
            Request::builder()
                .method(Method::DELETE)
                .uri("/ready")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(answer.code(), "method_not_allowed");
    assert_eq!(answer.header(header::ALLOW), Some("GET,HEAD"));
}
