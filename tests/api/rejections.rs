//! 400, 413, 415, 405 and 404: the JSON error body a client sees, nothing stored, and
//! `invalid_requests_total` counting exactly the refused `/logs` bodies.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{
    CSV, HOUR_14, JSON, NDJSON, RawPost, assert_accepted, assert_error, gzip, header, json_array,
    line, ndjson, record, spawn_app, zstd,
};

#[tokio::test]
async fn invalid_records_are_all_listed_and_nothing_is_stored() {
    let app = spawn_app(|config| config.ingestion.max_field_bytes = 16).await;
    let before = json_array(&[record("2025-11-22T14:00:00Z", "/before", "curl/8.5.0")]);
    assert_accepted(app.post_logs(JSON, before).await, 1).await;
    let stored = std::fs::read(app.hour_path(HOUR_14)).expect("hour 14 file");

    let body = r#"[
        {"timestamp":"2025-11-22T14:01:00Z","path":"/valid","userAgent":"curl/8.5.0"},
        {"path":"/x","userAgent":"curl/8.5.0"},
        {"timestamp":"yesterday","path":"   ","userAgent":7},
        {"timestamp":"2025-11-22T14:02:00Z","path":"/this/path/is/too/long","userAgent":null},
        "not an object"
    ]"#;
    let error = assert_error(
        app.post_logs(JSON, body).await,
        StatusCode::BAD_REQUEST,
        "invalid_records",
    )
    .await;
    assert_eq!(error["totalErrors"], 7, "{error}");
    let errors = error["errors"].as_array().expect("errors list");
    let summary: Vec<(u64, &str)> = errors
        .iter()
        .map(|e| (e["index"].as_u64().unwrap(), e["field"].as_str().unwrap()))
        .collect();
    assert_eq!(
        summary,
        [
            (1, "timestamp"),
            (2, "timestamp"),
            (2, "path"),
            (2, "userAgent"),
            (3, "path"),
            (3, "userAgent"),
            (4, "record")
        ]
    );
    assert_eq!(errors[0]["reason"], "is missing");
    let reason = errors[1]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("\"yesterday\" is not an RFC 3339 timestamp"),
        "{reason}"
    );
    assert_eq!(errors[2]["reason"], "is empty or only whitespace");
    assert_eq!(errors[3]["reason"], "must be a string, got a number");
    assert_eq!(
        errors[4]["reason"],
        "is 22 bytes, more than the limit of 16 (ingestion.maxFieldBytes)"
    );
    assert_eq!(errors[5]["reason"], "is missing");
    assert_eq!(errors[6]["reason"], "must be a JSON object, got a string");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("nothing from this batch was stored"),
        "{error}"
    );

    assert_eq!(
        std::fs::read(app.hour_path(HOUR_14)).expect("hour 14 file"),
        stored,
        "file unchanged"
    );
    assert_eq!(app.metric("logs_ingested_total").await, 1.0);
    assert_eq!(app.metric("log_batches_received_total").await, 1.0);
    assert_eq!(app.metric("invalid_requests_total").await, 1.0);
    app.stop().await;
}

#[tokio::test]
async fn non_object_elements_are_record_errors() {
    let app = spawn_app(|_| {}).await;
    let body =
        r#"["not an object", {"timestamp":"2025-11-22T14:00:00Z","path":"/ok","userAgent":"u"}]"#;
    let error = assert_error(
        app.post_logs(JSON, body).await,
        StatusCode::BAD_REQUEST,
        "invalid_records",
    )
    .await;
    assert_eq!(error["totalErrors"], 1);
    assert_eq!(
        error["errors"],
        json!([{"index": 0, "field": "record", "reason": "must be a JSON object, got a string"}])
    );
    assert!(!app.hour_path(HOUR_14).exists(), "nothing stored");
    app.stop().await;
}

#[tokio::test]
async fn csv_and_ndjson_record_errors_carry_line_and_column() {
    let app = spawn_app(|_| {}).await;
    let csv = "timestamp,path,userAgent\n\
               2025-11-22T14:23:00Z,/ok,curl/8.5.0\n\
               2025-11-22T14:23:00Z,/short\n\
               nope,/a,curl/8.5.0\n";
    let error = assert_error(
        app.post_logs(CSV, csv).await,
        StatusCode::BAD_REQUEST,
        "invalid_records",
    )
    .await;
    assert_eq!(error["totalErrors"], 2);
    assert_eq!(error["errors"][0]["index"], 1);
    assert_eq!(error["errors"][0]["line"], 3);
    assert_eq!(error["errors"][0]["field"], "record");
    assert_eq!(
        error["errors"][0]["reason"],
        "row has 2 fields, expected 3 like the first row"
    );
    assert_eq!(error["errors"][1]["index"], 2);
    assert_eq!(error["errors"][1]["line"], 4);
    assert_eq!(error["errors"][1]["field"], "timestamp");

    let good = r#"{"timestamp":"2025-11-22T14:00:00Z","path":"/a","userAgent":"u"}"#;
    let body = format!("{good}\n{{\"path\": \n{good}\n");
    let error = assert_error(
        app.post_logs(NDJSON, body).await,
        StatusCode::BAD_REQUEST,
        "invalid_records",
    )
    .await;
    assert_eq!(error["totalErrors"], 1);
    let only = &error["errors"][0];
    assert_eq!(
        (
            only["index"].as_u64(),
            only["line"].as_u64(),
            only["field"].as_str()
        ),
        (Some(1), Some(2), Some("record"))
    );
    assert!(only["column"].as_u64().is_some(), "{only}");
    assert!(
        only["reason"]
            .as_str()
            .unwrap()
            .starts_with("invalid JSON: "),
        "{only}"
    );

    assert!(!app.hour_path(HOUR_14).exists(), "nothing stored");
    assert_eq!(app.metric("invalid_requests_total").await, 2.0);
    app.stop().await;
}

#[tokio::test]
async fn malformed_json_reports_line_and_column() {
    let app = spawn_app(|_| {}).await;
    let body = "[\n  {\"timestamp\": \"2025-11-22T14:00:00Z\",\n   \"path\": }\n]";
    let error = assert_error(
        app.post_logs(JSON, body).await,
        StatusCode::BAD_REQUEST,
        "malformed_body",
    )
    .await;
    assert_eq!(
        (error["line"].as_u64(), error["column"].as_u64()),
        (Some(3), Some(12)),
        "{error}"
    );
    assert_eq!(
        error["message"],
        "malformed JSON at line 3, column 12: expected value"
    );

    let error = assert_error(
        app.post_logs(JSON, r#"{"timestamp":"x"}"#).await,
        StatusCode::BAD_REQUEST,
        "malformed_body",
    )
    .await;
    assert_eq!(error["line"], 1);
    assert!(!app.hour_path(HOUR_14).exists());
    assert_eq!(app.metric("invalid_requests_total").await, 2.0);
    app.stop().await;
}

#[tokio::test]
async fn bodies_without_records_are_no_records() {
    let app = spawn_app(|_| {}).await;
    for (content_type, body) in [
        (JSON, "[]"),
        (JSON, "null"),
        (CSV, "timestamp,path,userAgent\n"),
        (NDJSON, "\n\n"),
    ] {
        let error = assert_error(
            app.post_logs(content_type, body).await,
            StatusCode::BAD_REQUEST,
            "no_records",
        )
        .await;
        assert_eq!(
            error["message"], "no log records provided",
            "{content_type} {body:?}"
        );
    }
    assert_eq!(app.metric("invalid_requests_total").await, 4.0);
    assert_eq!(app.metric("log_batches_received_total").await, 0.0);
    app.stop().await;
}

#[tokio::test]
async fn corrupt_compressed_bodies_are_unreadable() {
    let app = spawn_app(|_| {}).await;
    let records: Vec<Value> = (0..200)
        .map(|i| record("2025-11-22T14:00:00Z", &format!("/page/{i}"), "Mozilla/5.0"))
        .collect();
    let body = ndjson(&records);
    let compressed = gzip(&body);
    let cases: [(&str, &str, Vec<u8>); 4] = [
        ("not gzip at all", "gzip", body.clone()),
        (
            "gzip cut in the middle",
            "gzip",
            compressed[..compressed.len() / 2].to_vec(),
        ),
        (
            "gzip without its trailer",
            "gzip",
            compressed[..compressed.len() - 8].to_vec(),
        ),
        ("not zstd at all", "zstd", body.clone()),
    ];
    for (what, encoding, data) in cases {
        let response = app
            .send_logs(
                &[("content-type", NDJSON), ("content-encoding", encoding)],
                data,
            )
            .await;
        let status = response.status();
        let error = assert_error(response, StatusCode::BAD_REQUEST, "unreadable_body").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {error}");
    }
    assert!(!app.hour_path(HOUR_14).exists(), "nothing stored");
    assert_eq!(app.metric("invalid_requests_total").await, 4.0);
    app.stop().await;
}

#[tokio::test]
async fn error_list_is_capped_at_100_but_total_is_exact() {
    let app = spawn_app(|_| {}).await;
    // 250 records, each missing its timestamp and user agent: 500 errors.
    let body = format!("[{}]", vec![r#"{"path":"/"}"#; 250].join(","));
    let error = assert_error(
        app.post_logs(JSON, body).await,
        StatusCode::BAD_REQUEST,
        "invalid_records",
    )
    .await;
    assert_eq!(error["totalErrors"], 500);
    let errors = error["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 100);
    assert_eq!(errors[99]["index"], 49);
    assert_eq!(errors[99]["field"], "userAgent");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("(first 100 listed)"),
        "{error}"
    );
    app.stop().await;
}

#[tokio::test]
async fn body_over_max_body_bytes_is_413() {
    let app = spawn_app(|config| config.server.max_body_bytes = 4096).await;
    let record = record(
        "2025-11-22T14:00:00Z",
        "/page",
        "Mozilla/5.0 (X11; Linux x86_64)",
    );
    let fits: Vec<Value> = vec![record.clone(); 4096 / 100];
    assert!(json_array(&fits).len() <= 4096);
    assert_accepted(app.post_logs(JSON, json_array(&fits)).await, fits.len()).await;

    let too_big = json_array(&vec![record; 60]);
    assert!(too_big.len() > 4096 && too_big.len() < 8192);
    let error = assert_error(
        app.post_logs(JSON, too_big).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
    )
    .await;
    assert_eq!(
        error["message"],
        "request body exceeds 4096 bytes after decompression (server.maxBodyBytes)"
    );
    assert_eq!(
        app.read_hour_file(HOUR_14).len(),
        fits.len(),
        "only the first batch stored"
    );
    assert_eq!(app.metric("invalid_requests_total").await, 1.0);
    app.stop().await;
}

#[tokio::test]
async fn compressed_bodies_inflating_past_the_limit_are_413() {
    let app = spawn_app(|config| config.server.max_body_bytes = 4096).await;
    // One valid record after a megabyte of JSON whitespace.
    let mut inflated = vec![b' '; 1 << 20];
    inflated.extend(json_array(&[record(
        "2025-11-22T14:00:00Z",
        "/bomb",
        "curl/8.5.0",
    )]));
    for (encoding, body) in [("gzip", gzip(&inflated)), ("zstd", zstd(&inflated))] {
        assert!(
            body.len() < 4096,
            "{encoding} body is {} bytes, under the limit",
            body.len()
        );
        let response = app
            .send_logs(
                &[("content-type", JSON), ("content-encoding", encoding)],
                body,
            )
            .await;
        assert_error(response, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large").await;
    }
    assert!(!app.hour_path(HOUR_14).exists(), "nothing stored");
    assert_eq!(app.metric("invalid_requests_total").await, 2.0);
    app.stop().await;
}

#[tokio::test]
async fn more_records_than_max_records_is_413() {
    let app = spawn_app(|config| config.ingestion.max_records = 3).await;
    let records: Vec<Value> = (0..4)
        .map(|i| record("2025-11-22T14:00:00Z", &format!("/{i}"), "curl/8.5.0"))
        .collect();
    assert_accepted(app.post_logs(JSON, json_array(&records[..3])).await, 3).await;
    for (content_type, body) in [
        (JSON, json_array(&records)),
        (NDJSON, ndjson(&records)),
        (
            CSV,
            "2025-11-22T14:00:00Z,/,curl/8.5.0\n".repeat(4).into_bytes(),
        ),
    ] {
        let response = app.post_logs(content_type, body).await;
        let error = assert_error(response, StatusCode::PAYLOAD_TOO_LARGE, "too_many_records").await;
        assert_eq!(
            error["message"],
            "batch has more than 3 records (ingestion.maxRecords)"
        );
    }
    assert_eq!(
        app.read_hour_file(HOUR_14).len(),
        3,
        "only the first batch stored"
    );
    assert_eq!(app.metric("invalid_requests_total").await, 3.0);
    app.stop().await;
}

#[tokio::test]
async fn records_in_more_hours_than_max_hours_per_batch_is_413() {
    let app = spawn_app(|config| config.ingestion.max_hours_per_batch = 3).await;
    let hourly = |hours: i64| -> Vec<Value> {
        (0..hours)
            .map(|h| {
                let ts = format!("2025-11-22T{:02}:30:00Z", 10 + h);
                record(&ts, &format!("/h{h}"), "curl/8.5.0")
            })
            .collect()
    };
    // Three hours, twice over: within the limit.
    let mut three = hourly(3);
    three.extend(hourly(3));
    assert_accepted(app.post_logs(JSON, json_array(&three)).await, 6).await;
    for (content_type, body) in [(JSON, json_array(&hourly(4))), (NDJSON, ndjson(&hourly(4)))] {
        let response = app.post_logs(content_type, body).await;
        let error = assert_error(response, StatusCode::PAYLOAD_TOO_LARGE, "too_many_hours").await;
        assert_eq!(
            error["message"],
            "batch has records in more than 3 distinct hours (ingestion.maxHoursPerBatch); \
             nothing from this batch was stored, split it"
        );
    }
    assert!(
        !app.hour_path("2025-11-22/13.log.json").exists(),
        "nothing of the refused batches"
    );
    assert_eq!(app.read_hour_file("2025-11-22/10.log.json").len(), 2);
    assert_eq!(app.metric("invalid_requests_total").await, 2.0);
    app.stop().await;
}

#[tokio::test]
async fn unsupported_or_missing_content_type_is_415() {
    let app = spawn_app(|_| {}).await;
    let body = json_array(&[record("2025-11-22T14:00:00Z", "/", "curl/8.5.0")]);
    let supported = json!([
        "application/json",
        "text/csv",
        "application/x-ndjson",
        "application/jsonl"
    ]);
    for content_type in ["text/plain", "application/xml", "json"] {
        let response = app.post_logs(content_type, body.clone()).await;
        let error = assert_error(
            response,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        )
        .await;
        assert_eq!(error["supported"], supported, "{content_type}");
        assert!(
            error["message"].as_str().unwrap().contains(content_type),
            "{error}"
        );
    }
    let error = assert_error(
        app.send_logs(&[], body).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    assert_eq!(error["supported"], supported);
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .starts_with("unsupported Content-Type: none;"),
        "{error}"
    );
    assert!(!app.hour_path(HOUR_14).exists());
    assert_eq!(app.metric("invalid_requests_total").await, 4.0);
    app.stop().await;
}

#[tokio::test]
async fn unsupported_content_encoding_is_415() {
    let app = spawn_app(|_| {}).await;
    let body = json_array(&[record("2025-11-22T14:00:00Z", "/", "curl/8.5.0")]);
    for encoding in ["br", "deflate", "compress"] {
        let response = app
            .send_logs(
                &[("content-type", JSON), ("content-encoding", encoding)],
                body.clone(),
            )
            .await;
        let error = assert_error(
            response,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_content_encoding",
        )
        .await;
        assert_eq!(
            error["supported"],
            json!(["gzip", "zstd", "identity"]),
            "{encoding}"
        );
    }
    assert!(!app.hour_path(HOUR_14).exists());
    assert_eq!(app.metric("invalid_requests_total").await, 3.0);
    app.stop().await;
}

#[tokio::test]
async fn wrong_method_is_405_with_allow_and_unknown_route_is_404() {
    let app = spawn_app(|_| {}).await;
    for method in [Method::GET, Method::PUT, Method::DELETE] {
        let response = app
            .request(method.clone(), "/logs", &[("content-type", JSON)], "[]")
            .await;
        assert_eq!(header(&response, "allow"), "POST", "{method}");
        assert_error(
            response,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        )
        .await;
    }
    let error = assert_error(app.get("/nope").await, StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(error["message"], "no route for GET /nope");
    assert_eq!(
        app.metric(r#"http_request_duration_seconds_count{route="unmatched",status_class="4xx"}"#)
            .await,
        1.0
    );
    let response = app.post_logs(JSON, "[]").await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        app.metric("invalid_requests_total").await,
        1.0,
        "405 and 404 are not invalid bodies"
    );
    app.stop().await;
}

#[tokio::test]
async fn invalid_requests_total_counts_each_refused_body_once() {
    let app = spawn_app(|config| {
        config.server.max_body_bytes = 4096;
        config.ingestion.max_records = 2;
    })
    .await;
    let valid = |path: &str| json_array(&[record("2025-11-22T14:00:00Z", path, "curl/8.5.0")]);
    let gzip_json = [("content-type", JSON), ("content-encoding", "gzip")];
    let brotli_json = [("content-type", JSON), ("content-encoding", "br")];
    // (method, path, headers, body, expected status)
    type Case<'a> = (
        Method,
        &'a str,
        &'a [(&'a str, &'a str)],
        Vec<u8>,
        StatusCode,
    );
    let requests: Vec<Case> = vec![
        (
            Method::POST,
            "/logs",
            &[("content-type", JSON)],
            valid("/ok"),
            StatusCode::ACCEPTED,
        ),
        (
            Method::POST,
            "/logs",
            &[("content-type", JSON)],
            b"[".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/logs",
            &[("content-type", JSON)],
            br#"[{"path":"/"}]"#.to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/logs",
            &[("content-type", JSON)],
            b"[]".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/logs",
            &gzip_json,
            b"not gzip".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/logs",
            &[("content-type", JSON)],
            vec![b' '; 5000],
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            Method::POST,
            "/logs",
            &[("content-type", CSV)],
            b"2025-11-22T14:00:00Z,/,u\n".repeat(3),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            Method::POST,
            "/logs",
            &[("content-type", "text/plain")],
            valid("/"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            Method::POST,
            "/logs",
            &brotli_json,
            valid("/"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        // Not about the body: not counted.
        (
            Method::GET,
            "/logs",
            &[],
            Vec::new(),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            Method::GET,
            "/logs/nope",
            &[],
            Vec::new(),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::POST,
            "/logs",
            &[("content-type", JSON)],
            valid("/ok-again"),
            StatusCode::ACCEPTED,
        ),
    ];
    let mut refused = 0.0;
    for (method, path, headers, body, expected) in requests {
        let response = app.request(method.clone(), path, headers, body).await;
        let status = response.status();
        assert_eq!(
            status,
            expected,
            "{method} {path}: {}",
            response.text().await.unwrap_or_default()
        );
        if [400, 413, 415].contains(&status.as_u16()) {
            refused += 1.0;
        }
    }
    assert_eq!(refused, 8.0);
    assert_eq!(app.metric("invalid_requests_total").await, refused);
    assert_eq!(app.metric("log_batches_received_total").await, 2.0);
    assert_eq!(
        app.read_hour_file(HOUR_14),
        [
            line("2025-11-22T14:00:00Z", "/ok", "curl/8.5.0"),
            line("2025-11-22T14:00:00Z", "/ok-again", "curl/8.5.0")
        ]
    );
    app.stop().await;
}

#[tokio::test]
async fn content_encoding_names_are_case_insensitive() {
    // RFC 9110 section 8.4.1: "All content codings are case-insensitive".
    let app = spawn_app(|_| {}).await;
    let body = json_array(&[record("2025-11-22T14:00:00Z", "/", "curl/8.5.0")]);
    for (encoding, compressed) in [
        ("GZIP", gzip(&body)),
        ("Gzip", gzip(&body)),
        ("ZSTD", zstd(&body)),
    ] {
        let response = app
            .send_logs(
                &[("content-type", JSON), ("content-encoding", encoding)],
                compressed,
            )
            .await;
        let status = response.status();
        let text = response.text().await.unwrap();
        assert_eq!(
            status,
            StatusCode::ACCEPTED,
            "Content-Encoding: {encoding}: {text}"
        );
    }
    assert_eq!(app.read_hour_file(HOUR_14).len(), 3);
    app.stop().await;
}

#[tokio::test]
async fn body_not_sent_within_read_body_timeout_is_408() {
    let app =
        spawn_app(|config| config.server.read_body_timeout = Duration::from_millis(200)).await;
    let body = json_array(&[record("2025-11-22T14:00:00Z", "/late", "curl/8.5.0")]);
    let answer = RawPost::start(app.addr, JSON, body).await.answer().await;
    assert_eq!(answer.status, 408, "{answer:?}");
    assert_eq!(answer.body["error"], "body_timeout", "{answer:?}");
    assert!(
        answer.head.contains("content-type: application/json"),
        "{answer:?}"
    );
    assert!(!app.hour_path(HOUR_14).exists());
    app.stop().await;
}

#[tokio::test]
async fn request_over_request_timeout_is_503_with_retry_after() {
    let app = spawn_app(|config| config.server.request_timeout = Duration::from_millis(200)).await;
    let body = json_array(&[record("2025-11-22T14:00:00Z", "/late", "curl/8.5.0")]);
    let answer = RawPost::start(app.addr, JSON, body).await.answer().await;
    assert_eq!(answer.status, 503, "{answer:?}");
    assert_eq!(answer.body["error"], "timeout", "{answer:?}");
    assert!(answer.head.contains("retry-after: 1"), "{answer:?}");
    assert!(
        answer.head.contains("content-type: application/json"),
        "{answer:?}"
    );
    assert!(!app.hour_path(HOUR_14).exists());
    app.stop().await;
}
