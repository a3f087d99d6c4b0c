//! Bearer tokens: `POST /logs` always needs one when tokens are set; analytics and metrics as `auth.protect` says; probes never.

use reqwest::{Method, StatusCode};

use crate::support::{
    HOUR_14, JSON, assert_accepted, assert_error, header, json_array, line, record, spawn_app,
};

#[tokio::test]
async fn posts_need_a_configured_bearer_token() {
    let app = spawn_app(|config| config.auth.tokens = vec!["t1".to_owned(), "t2".to_owned()]).await;
    let body = |path: &str| json_array(&[record("2025-11-22T14:00:00Z", path, "curl/8.5.0")]);

    for authorization in [
        None,
        Some("Bearer wrong"),
        Some("Bearer t1x"),
        Some("Basic dDE6"),
        Some("t1"),
        Some("Bearer"),
    ] {
        let mut headers = vec![("content-type", JSON)];
        headers.extend(authorization.map(|value| ("authorization", value)));
        let response = app.send_logs(&headers, body("/refused")).await;
        assert_eq!(
            header(&response, "www-authenticate"),
            "Bearer",
            "{authorization:?}"
        );
        assert_error(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
    }
    assert!(
        !app.hour_path(HOUR_14).exists(),
        "nothing stored without a valid token"
    );

    for (authorization, path) in [
        ("Bearer t1", "/t1"),
        ("bearer t2", "/t2"),
        ("BEARER t1", "/upper"),
    ] {
        let response = app
            .send_logs(
                &[("content-type", JSON), ("authorization", authorization)],
                body(path),
            )
            .await;
        assert_accepted(response, 1).await;
    }
    assert_eq!(
        app.read_hour_file(HOUR_14),
        ["/t1", "/t2", "/upper"].map(|path| line("2025-11-22T14:00:00Z", path, "curl/8.5.0"))
    );

    // Without a token: probes and metrics answer, and 401s are not counted as invalid bodies.
    assert_eq!(app.get("/health").await.status(), StatusCode::OK);
    assert_eq!(app.get("/ready").await.status(), StatusCode::OK);
    assert_eq!(app.metric("invalid_requests_total").await, 0.0);
    assert_eq!(app.metric("log_batches_received_total").await, 3.0);
    app.stop().await;
}

#[tokio::test]
async fn analytics_need_a_token_by_default_and_metrics_when_auth_protect_says_so() {
    use log_pipeline::config::Protected;
    let bearer = [("authorization", "Bearer t1")];
    let tokens = || vec!["t1".to_owned()];

    // Default `auth.protect: [ingest, analytics]`: URLs in the analytics may carry secrets.
    let app = spawn_app(|config| config.auth.tokens = tokens()).await;
    for route in ["/analytics/hours", "/analytics?hour=2025-11-22T14:00:00Z"] {
        let response = app.get(route).await;
        assert_eq!(header(&response, "www-authenticate"), "Bearer", "{route}");
        assert_error(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
    }
    let hours = app
        .request(Method::GET, "/analytics/hours", &bearer, Vec::new())
        .await;
    assert_eq!(hours.status(), StatusCode::OK);
    assert_eq!(app.get("/metrics").await.status(), StatusCode::OK);
    assert_eq!(app.get("/ready").await.status(), StatusCode::OK);
    app.stop().await;

    // `auth.protect: [metrics]`: metrics need it, analytics are open, ingest still needs it.
    let app = spawn_app(|config| {
        config.auth.tokens = tokens();
        config.auth.protect = vec![Protected::Metrics];
    })
    .await;
    let metrics = app.get("/metrics").await;
    assert_error(metrics, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let metrics = app
        .request(Method::GET, "/metrics", &bearer, Vec::new())
        .await;
    assert_eq!(metrics.status(), StatusCode::OK);
    assert_eq!(app.get("/analytics/hours").await.status(), StatusCode::OK);
    let body = json_array(&[record("2025-11-22T14:00:00Z", "/p", "curl/8.5.0")]);
    let post = app.post_logs(JSON, body).await;
    assert_error(post, StatusCode::UNAUTHORIZED, "unauthorized").await;
    app.stop().await;

    // Without tokens nothing needs one, whatever `auth.protect` says.
    let app = spawn_app(|config| config.auth.protect = vec![Protected::Metrics]).await;
    assert_eq!(app.get("/metrics").await.status(), StatusCode::OK);
    assert_eq!(app.get("/analytics/hours").await.status(), StatusCode::OK);
    app.stop().await;
}
