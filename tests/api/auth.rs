//! 401 on `POST /logs` when tokens are configured; probes and metrics stay open.

use reqwest::StatusCode;

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
