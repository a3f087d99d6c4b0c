//! 202: every accepted format and encoding ends up as the exact stored lines, in order, in the
//! record's UTC hour file, and the ingestion metrics count it.

use serde_json::Value;

use crate::support::{
    CSV, HOUR_14, HOUR_15, JSON, NDJSON, assert_accepted, gzip, json_array, line, ndjson, record,
    spawn_app, zstd,
};

const LOGS_2XX: &str = r#"http_request_duration_seconds_count{route="/logs",status_class="2xx"}"#;

#[tokio::test]
async fn json_batch_is_stored_in_utc_hour_files_in_order_and_counted() {
    let app = spawn_app(|_| {}).await;
    let requests_before = app.metric_opt(LOGS_2XX).await.unwrap_or(0.0);

    let body = r#"[
        {"timestamp":"2025-11-22T16:23:00+02:00","path":" /home ","userAgent":" Mozilla/5.0 ","referrer":"https://example.com"},
        {"userAgent":"curl/8.5.0","path":"/login","timestamp":"2025-11-22T14:24:00.500Z"},
        {"timestamp":"2025-11-22T15:00:00.000Z","path":"/next-hour","userAgent":"Mozilla/5.0","extra":{"nested":[1,2]}},
        {"timestamp":"2025-11-22T14:59:59.123456789Z","path":"/last-of-14","userAgent":"Mozilla/5.0"},
        {"timestamp":"2025-11-22T10:01:00.010-05:00","path":"/offset","userAgent":"Mozilla/5.0"}
    ]"#;
    assert_accepted(app.post_logs(JSON, body).await, 5).await;

    assert_eq!(
        app.read_hour_file(HOUR_14),
        [
            r#"{"timestamp":"2025-11-22T14:23:00Z","path":"/home","userAgent":"Mozilla/5.0"}"#,
            r#"{"timestamp":"2025-11-22T14:24:00.5Z","path":"/login","userAgent":"curl/8.5.0"}"#,
            r#"{"timestamp":"2025-11-22T14:59:59.123456789Z","path":"/last-of-14","userAgent":"Mozilla/5.0"}"#,
        ]
    );
    assert_eq!(
        app.read_hour_file(HOUR_15),
        [
            r#"{"timestamp":"2025-11-22T15:00:00Z","path":"/next-hour","userAgent":"Mozilla/5.0"}"#,
            r#"{"timestamp":"2025-11-22T15:01:00.01Z","path":"/offset","userAgent":"Mozilla/5.0"}"#,
        ]
    );
    assert_eq!(app.metric("logs_ingested_total").await, 5.0);
    assert_eq!(app.metric("log_batches_received_total").await, 1.0);
    assert_eq!(app.metric(LOGS_2XX).await, requests_before + 1.0);

    // A second batch is appended after the first.
    let second = json_array(&[record("2025-11-22T14:30:00Z", "/later", "Mozilla/5.0")]);
    assert_accepted(app.post_logs(JSON, second).await, 1).await;
    let hour_14 = app.read_hour_file(HOUR_14);
    assert_eq!(hour_14.len(), 4);
    assert_eq!(
        hour_14[3],
        line("2025-11-22T14:30:00Z", "/later", "Mozilla/5.0")
    );
    assert_eq!(app.metric("logs_ingested_total").await, 6.0);
    assert_eq!(app.metric("log_batches_received_total").await, 2.0);
    assert_eq!(app.metric(LOGS_2XX).await, requests_before + 2.0);
    assert_eq!(app.metric("invalid_requests_total").await, 0.0);
    assert_eq!(app.metric("ingestion_work_queue_depth").await, 0.0);
    assert_eq!(app.metric("log_batch_records_sum").await, 6.0);
    assert_eq!(app.metric("log_batch_records_count").await, 2.0);
    app.stop().await;
}

#[tokio::test]
async fn csv_with_and_without_header_is_stored() {
    let app = spawn_app(|_| {}).await;
    let positional = "2025-11-22T16:23:00+02:00,/home,\"Mozilla/5.0 (X11, Linux)\"\r\n\
                      2025-11-22T14:24:00Z, /login ,curl/8.5.0\r\n";
    assert_accepted(app.post_logs(CSV, positional).await, 2).await;
    let header = "timestamp,path,userAgent\n2025-11-22T14:25:00Z,/header,curl/8.5.0\n";
    assert_accepted(app.post_logs(CSV, header).await, 1).await;
    let reordered = "userAgent,timestamp,path\n\
                     \"Mozilla/5.0 (X11, Linux)\",2025-11-22T15:26:00.250Z,/reordered/15\n\
                     curl/8.5.0,2025-11-22T14:26:00Z,/reordered/14\n";
    assert_accepted(app.post_logs(CSV, reordered).await, 2).await;

    assert_eq!(
        app.read_hour_file(HOUR_14),
        [
            r#"{"timestamp":"2025-11-22T14:23:00Z","path":"/home","userAgent":"Mozilla/5.0 (X11, Linux)"}"#,
            r#"{"timestamp":"2025-11-22T14:24:00Z","path":"/login","userAgent":"curl/8.5.0"}"#,
            r#"{"timestamp":"2025-11-22T14:25:00Z","path":"/header","userAgent":"curl/8.5.0"}"#,
            r#"{"timestamp":"2025-11-22T14:26:00Z","path":"/reordered/14","userAgent":"curl/8.5.0"}"#,
        ]
    );
    assert_eq!(
        app.read_hour_file(HOUR_15),
        [
            r#"{"timestamp":"2025-11-22T15:26:00.25Z","path":"/reordered/15","userAgent":"Mozilla/5.0 (X11, Linux)"}"#
        ]
    );
    assert_eq!(app.metric("logs_ingested_total").await, 5.0);
    assert_eq!(app.metric("log_batches_received_total").await, 3.0);
    app.stop().await;
}

#[tokio::test]
async fn ndjson_and_jsonl_are_stored() {
    let app = spawn_app(|_| {}).await;
    let body = "{\"timestamp\":\"2025-11-22T14:00:01Z\",\"path\":\"/a\",\"userAgent\":\"curl/8.5.0\"}\r\n\
                \n\
                {\"path\":\"/b\",\"userAgent\":\"curl/8.5.0\",\"timestamp\":\"2025-11-22T15:00:02Z\",\"x\":1}\n";
    assert_accepted(app.post_logs(NDJSON, body).await, 2).await;
    let jsonl = ndjson(&[record("2025-11-22T14:00:03Z", "/c", "curl/8.5.0")]);
    assert_accepted(app.post_logs("application/jsonl", jsonl).await, 1).await;

    assert_eq!(
        app.read_hour_file(HOUR_14),
        [
            line("2025-11-22T14:00:01Z", "/a", "curl/8.5.0"),
            line("2025-11-22T14:00:03Z", "/c", "curl/8.5.0")
        ]
    );
    assert_eq!(
        app.read_hour_file(HOUR_15),
        [line("2025-11-22T15:00:02Z", "/b", "curl/8.5.0")]
    );
    assert_eq!(app.metric("logs_ingested_total").await, 3.0);
    assert_eq!(app.metric("log_batches_received_total").await, 2.0);
    app.stop().await;
}

#[tokio::test]
async fn gzip_and_zstd_bodies_are_decompressed() {
    let app = spawn_app(|_| {}).await;
    let records: Vec<Value> = (0..50)
        .map(|i| {
            record(
                &format!("2025-11-22T14:{:02}:00Z", i % 60),
                &format!("/page/{i}"),
                "Mozilla/5.0",
            )
        })
        .collect();
    let expected: Vec<String> = (0..50)
        .map(|i| {
            line(
                &format!("2025-11-22T14:{:02}:00Z", i % 60),
                &format!("/page/{i}"),
                "Mozilla/5.0",
            )
        })
        .collect();

    let gzipped = gzip(&json_array(&records));
    assert_accepted(
        app.send_logs(
            &[("content-type", JSON), ("content-encoding", "gzip")],
            gzipped,
        )
        .await,
        50,
    )
    .await;
    let zstded = zstd(&ndjson(&records));
    assert_accepted(
        app.send_logs(
            &[("content-type", NDJSON), ("content-encoding", "zstd")],
            zstded,
        )
        .await,
        50,
    )
    .await;
    let csv = "2025-11-22T14:00:00Z,/csv,curl/8.5.0\n";
    assert_accepted(
        app.send_logs(
            &[("content-type", CSV), ("content-encoding", "gzip")],
            gzip(csv.as_bytes()),
        )
        .await,
        1,
    )
    .await;
    // `cat a.gz b.gz`: one body of two gzip members; both are read (RFC 1952 §2.2).
    let members = [
        gzip(line("2025-11-22T14:00:00Z", "/member/1", "curl/8.5.0").as_bytes()),
        gzip(
            format!(
                "\n{}\n",
                line("2025-11-22T14:00:00Z", "/member/2", "curl/8.5.0")
            )
            .as_bytes(),
        ),
    ]
    .concat();
    assert_accepted(
        app.send_logs(
            &[("content-type", NDJSON), ("content-encoding", "gzip")],
            members,
        )
        .await,
        2,
    )
    .await;
    let identity = json_array(&[record("2025-11-22T14:00:00Z", "/identity", "curl/8.5.0")]);
    assert_accepted(
        app.send_logs(
            &[("content-type", JSON), ("content-encoding", "identity")],
            identity,
        )
        .await,
        1,
    )
    .await;

    let mut all = expected.clone();
    all.extend(expected);
    all.push(line("2025-11-22T14:00:00Z", "/csv", "curl/8.5.0"));
    all.push(line("2025-11-22T14:00:00Z", "/member/1", "curl/8.5.0"));
    all.push(line("2025-11-22T14:00:00Z", "/member/2", "curl/8.5.0"));
    all.push(line("2025-11-22T14:00:00Z", "/identity", "curl/8.5.0"));
    assert_eq!(app.read_hour_file(HOUR_14), all);
    assert_eq!(app.metric("logs_ingested_total").await, 104.0);
    assert_eq!(app.metric("log_batches_received_total").await, 5.0);
    app.stop().await;
}

#[tokio::test]
async fn content_type_is_case_insensitive_and_parameters_are_ignored() {
    let app = spawn_app(|_| {}).await;
    let one = |path: &str| json_array(&[record("2025-11-22T14:00:00Z", path, "curl/8.5.0")]);
    assert_accepted(
        app.post_logs("Application/JSON; charset=utf-8", one("/json"))
            .await,
        1,
    )
    .await;
    assert_accepted(
        app.post_logs(
            "TEXT/CSV; header=present",
            "2025-11-22T14:00:00Z,/csv,curl/8.5.0\n",
        )
        .await,
        1,
    )
    .await;
    assert_accepted(
        app.post_logs(
            "application/X-NDJSON;charset=UTF-8",
            ndjson(&[record("2025-11-22T14:00:00Z", "/nd", "curl/8.5.0")]),
        )
        .await,
        1,
    )
    .await;
    // Parameters are ignored whatever their bytes.
    let latin1 = reqwest::header::HeaderValue::from_bytes(b"application/json; charset=\xe9")
        .expect("a header value of opaque bytes");
    let response = app
        .client
        .post(format!("http://{}/logs", app.addr))
        .header("content-type", latin1)
        .body(one("/latin1"))
        .send()
        .await
        .expect("POST /logs");
    assert_accepted(response, 1).await;
    assert_eq!(
        app.read_hour_file(HOUR_14),
        [
            line("2025-11-22T14:00:00Z", "/json", "curl/8.5.0"),
            line("2025-11-22T14:00:00Z", "/csv", "curl/8.5.0"),
            line("2025-11-22T14:00:00Z", "/nd", "curl/8.5.0"),
            line("2025-11-22T14:00:00Z", "/latin1", "curl/8.5.0"),
        ]
    );
    app.stop().await;
}

#[tokio::test]
async fn sample_files_are_accepted() {
    let app = spawn_app(|_| {}).await;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata");
    let json = std::fs::read(format!("{dir}/sample_logs.json")).expect("testdata/sample_logs.json");
    let csv = std::fs::read(format!("{dir}/sample_logs.csv")).expect("testdata/sample_logs.csv");

    // The sample timestamps are canonical UTC, so each record's stored line is known up front.
    let records: Vec<Value> = serde_json::from_slice(&json).expect("sample JSON is an array");
    let expected = |hour: &str| -> Vec<String> {
        records
            .iter()
            .filter(|r| r["timestamp"].as_str().unwrap().starts_with(hour))
            .map(|r| {
                line(
                    r["timestamp"].as_str().unwrap(),
                    r["path"].as_str().unwrap(),
                    r["userAgent"].as_str().unwrap(),
                )
            })
            .collect()
    };
    let (expected_14, expected_15) = (expected("2025-11-22T14:"), expected("2025-11-22T15:"));
    assert_eq!(
        expected_14.len() + expected_15.len(),
        records.len(),
        "every sample record is in hour 14 or 15"
    );
    assert!(!expected_14.is_empty() && !expected_15.is_empty());

    assert_accepted(app.post_logs(JSON, json).await, records.len()).await;
    assert_eq!(app.read_hour_file(HOUR_14), expected_14);
    assert_eq!(app.read_hour_file(HOUR_15), expected_15);

    // The CSV holds the same records: each hour file now holds its lines twice.
    assert_accepted(app.post_logs(CSV, csv).await, records.len()).await;
    assert_eq!(
        app.read_hour_file(HOUR_14),
        [expected_14.clone(), expected_14].concat()
    );
    assert_eq!(
        app.read_hour_file(HOUR_15),
        [expected_15.clone(), expected_15].concat()
    );
    assert_eq!(
        app.metric("logs_ingested_total").await,
        2.0 * records.len() as f64
    );
    app.stop().await;
}
