//! `Idempotency-Key`: a batch sent with a key is stored once however often, and however
//! concurrently, it is sent; the same key with another body is refused; in both modes, across a
//! restart and a paused broker. (kill -9 at random moments: the fault suite, `tests/faults/keyed.rs`.)

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::header::HeaderValue;
use reqwest::{Client, Method, StatusCode};
use serde_json::Value;

use crate::support::{
    AT_14, CSV, JSON, KAFKA_DEADLINE, NDJSON, Names, OwnBroker, body_json, client, csv_body, gzip,
    json_body, kafka_broker, kafka_client, line_counts, mark_ends, ndjson_body, poll_within,
    records, sample, spawn_app, spawn_app_in, stored_lines, tansu_binary, try_send, v2,
    wait_joined, wait_stored_to,
};

/// One answer to a keyed POST.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    replayed: bool,
    retry_after: Option<String>,
    body: Value,
}

/// POSTs `body` with `key` (and `content_type`, and gzip when asked); `None` without an answer.
async fn send_keyed(
    client: &Client,
    addr: SocketAddr,
    key: &str,
    content_type: &str,
    body: Vec<u8>,
) -> Option<Answer> {
    let headers = [("content-type", content_type), ("idempotency-key", key)];
    let response = try_send(client, addr, Method::POST, "/logs", &headers, body)
        .await
        .ok()?;
    let status = response.status();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|value| value.to_str().unwrap().to_owned())
    };
    let replayed = header("idempotent-replayed").is_some_and(|value| value == "true");
    let retry_after = header("retry-after");
    Some(Answer {
        status,
        replayed,
        retry_after,
        body: response.json().await.unwrap_or(Value::Null),
    })
}

/// A client following the contract of docs/api.md ("Idempotent retries"): the same key and body
/// again after any answer but 202 (or none), until 202.
async fn send_until_accepted(
    client: &Client,
    addr: SocketAddr,
    key: &str,
    content_type: &str,
    body: &[u8],
) -> Answer {
    let mut attempts = Vec::new();
    poll_within(
        KAFKA_DEADLINE,
        Duration::from_millis(100),
        &format!("a 202 for key {key}"),
        async || match send_keyed(client, addr, key, content_type, body.to_vec()).await {
            Some(answer) if answer.status == StatusCode::ACCEPTED => Ok(answer),
            other => {
                let seen = other.map(|a| format!("{} {}", a.status, a.body));
                attempts.push(seen.clone());
                Err(seen)
            }
        },
    )
    .await
}

fn assert_accepted(answer: &Answer, records: usize) {
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{answer:?}");
    assert_eq!(answer.body["accepted"], records, "{answer:?}");
}

/// Sends one keyed batch 5 times in a row, and another 5 times at once, to `addr`: every sender
/// ends with 202 and the batch's count, exactly one of each five stored it, the others were
/// replays. Returns the lines of both batches.
async fn five_times_in_a_row_and_at_once(addr: SocketAddr, prefix: &str) -> Vec<String> {
    let http = client();
    let in_a_row = records(&format!("{prefix}/in-a-row"), 3);
    let key = format!("{prefix}-in-a-row");
    let mut replays = 0;
    for attempt in 0..5 {
        let answer = send_until_accepted(&http, addr, &key, JSON, &json_body(&in_a_row)).await;
        assert_accepted(&answer, 3);
        assert_eq!(
            answer.replayed,
            attempt > 0,
            "attempt {attempt}: {answer:?}"
        );
        replays += usize::from(answer.replayed);
    }
    assert_eq!(replays, 4);

    let at_once = records(&format!("{prefix}/at-once"), 4);
    let key = format!("{prefix}-at-once");
    let body = ndjson_body(&at_once);
    // Five requests in flight together (one task, polled concurrently).
    let answers = futures_util::future::join_all(
        (0..5).map(|_| send_until_accepted(&http, addr, &key, NDJSON, &body)),
    )
    .await;
    let mut stored = 0;
    for answer in answers {
        assert_accepted(&answer, 4);
        stored += usize::from(!answer.replayed);
    }
    assert_eq!(stored, 1, "exactly one of the five stored the batch");
    let mut lines = stored_lines(&in_a_row);
    lines.extend(stored_lines(&at_once));
    lines
}

/// Every one of `lines` is in the hour files under `logs` exactly once.
fn assert_each_once(logs: &std::path::Path, lines: &[String]) {
    let counts = line_counts(&[logs]);
    for line in lines {
        assert_eq!(counts.get(line), Some(&1), "{line}");
    }
}

#[tokio::test]
async fn v1_a_keyed_batch_sent_five_times_in_a_row_and_at_once_is_stored_once() {
    let app = spawn_app(|_| {}).await;
    let lines = five_times_in_a_row_and_at_once(app.addr, "v1").await;
    assert_each_once(app.logs_dir.path(), &lines);
    assert_eq!(app.metric("logs_ingested_total").await, 7.0);
    assert_eq!(app.metric("log_batches_received_total").await, 2.0);
    assert_eq!(app.metric("idempotency_keys").await, 2.0);
    // 4 in a row, and every sender at once but the one that stored (each after its 409s).
    assert_eq!(app.metric("idempotency_replays_total").await, 8.0);
    app.stop().await;
}

/// The fingerprint is of the records, not of the bytes: the same records sent as CSV, or
/// gzipped, are the same batch; other records under the same key are refused with 422.
#[tokio::test]
async fn the_same_records_in_any_form_are_the_same_batch_and_other_records_are_422() {
    let app = spawn_app(|_| {}).await;
    let http = client();
    let batch = records("/forms", 3);
    let first = send_keyed(&http, app.addr, "forms", JSON, json_body(&batch))
        .await
        .unwrap();
    assert_accepted(&first, 3);
    assert!(!first.replayed);
    let as_csv = send_keyed(&http, app.addr, "forms", CSV, csv_body(&batch))
        .await
        .unwrap();
    assert_accepted(&as_csv, 3);
    assert!(as_csv.replayed);
    let headers = [
        ("content-type", NDJSON),
        ("content-encoding", "gzip"),
        ("idempotency-key", "forms"),
    ];
    let gzipped = try_send(
        &http,
        app.addr,
        Method::POST,
        "/logs",
        &headers,
        gzip(&ndjson_body(&batch)),
    )
    .await
    .unwrap();
    assert_eq!(gzipped.status(), StatusCode::ACCEPTED);
    assert_eq!(gzipped.headers()["idempotent-replayed"], "true");

    let other = records("/forms-other", 3);
    let reused = send_keyed(&http, app.addr, "forms", JSON, json_body(&other))
        .await
        .unwrap();
    assert_eq!(
        reused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{reused:?}"
    );
    assert_eq!(reused.body["error"], "idempotency_key_reused");
    assert!(!reused.replayed);
    assert_each_once(app.logs_dir.path(), &stored_lines(&batch));
    assert!(!line_counts(&[app.logs_dir.path()]).contains_key(&stored_lines(&other)[0]));
    let conflicts = app.metrics_text().await;
    assert!(
        conflicts.contains(r#"idempotency_conflicts_total{reason="reused"} 1"#),
        "{conflicts}"
    );
    app.stop().await;
}

#[tokio::test]
async fn keys_that_are_not_printable_ascii_or_too_long_or_repeated_are_400() {
    let app = spawn_app(|_| {}).await;
    let http = client();
    let body = json_body(&records("/bad-key", 1));
    let too_long = "k".repeat(256);
    let cases: [(&[&[u8]], &str); 4] = [
        (&[too_long.as_bytes()], "longer than 255 bytes"),
        (&[b"with space"], "byte 4 is 0x20"),
        (&[b"caf\xc3\xa9"], "byte 3 is 0xc3"),
        (&[b"one", b"two"], "more than once"),
    ];
    for (values, says) in cases {
        let mut request = http
            .post(format!("http://{}/logs", app.addr))
            .header("content-type", JSON)
            .body(body.clone());
        for value in values {
            request = request.header("idempotency-key", HeaderValue::from_bytes(value).unwrap());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{says}");
        let answer = body_json(response).await;
        assert_eq!(answer["error"], "invalid_idempotency_key", "{answer}");
        assert!(
            answer["message"].as_str().unwrap().contains(says),
            "{answer} should say {says:?}"
        );
    }
    assert!(line_counts(&[app.logs_dir.path()]).is_empty());
    app.stop().await;
}

/// v1 records the key in the same durable write as the lines and reads it back at start-up: a
/// retry after a restart is a replay.
#[tokio::test]
async fn a_key_outlives_a_restart() {
    let app = spawn_app(|_| {}).await;
    let http = client();
    let batch = records("/restart", 2);
    let first = send_keyed(&http, app.addr, "restart", NDJSON, ndjson_body(&batch))
        .await
        .unwrap();
    assert_accepted(&first, 2);
    let dirs = app.stop_keeping_dirs().await;
    let app = spawn_app_in(dirs, |_| {}).await;
    assert_eq!(app.metric("idempotency_keys").await, 1.0);
    let again = send_keyed(&http, app.addr, "restart", NDJSON, ndjson_body(&batch))
        .await
        .unwrap();
    assert_accepted(&again, 2);
    assert!(again.replayed, "{again:?}");
    assert_each_once(app.logs_dir.path(), &stored_lines(&batch));
    app.stop().await;
}

/// A key is remembered `idempotency.retention` after its batch was stored, and at most
/// `idempotency.maxKeys` keys: past either, the same request stores the batch again (documented).
#[tokio::test]
async fn an_expired_or_evicted_key_is_a_new_key() {
    let app = spawn_app(|config| {
        config.idempotency.retention = Duration::from_secs(1);
        config.idempotency.max_keys = 2;
    })
    .await;
    let http = client();
    let batch = records("/expiry", 1);
    let send = async |key: &str| {
        send_keyed(&http, app.addr, key, NDJSON, ndjson_body(&batch))
            .await
            .unwrap()
    };
    assert!(!send("expiring").await.replayed);
    assert!(send("expiring").await.replayed);
    // Once the second has passed, the same request is new again and stores the batch again.
    poll_within(
        Duration::from_secs(10),
        Duration::from_millis(100),
        "the key to expire",
        async || match send("expiring").await {
            answer if answer.status == StatusCode::ACCEPTED && !answer.replayed => Ok(()),
            answer => Err(answer),
        },
    )
    .await;
    let line = &stored_lines(&batch)[0];
    assert_eq!(line_counts(&[app.logs_dir.path()])[line], 2);
    // Three keys, room for two: the oldest goes (within the second, before it expires).
    let (a, b, c) = (
        records("/cap/a", 1),
        records("/cap/b", 1),
        records("/cap/c", 1),
    );
    for (key, batch) in [("a", &a), ("b", &b), ("c", &c)] {
        let answer = send_keyed(&http, app.addr, key, NDJSON, ndjson_body(batch))
            .await
            .unwrap();
        assert!(!answer.replayed, "{key}");
    }
    let a_again = send_keyed(&http, app.addr, "a", NDJSON, ndjson_body(&a))
        .await
        .unwrap();
    assert_accepted(&a_again, 1);
    assert!(!a_again.replayed, "key a was evicted by the cap");
    assert!(app.metric("idempotency_keys").await <= 2.0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kafka broker (tansu): make test"]
async fn v2_a_keyed_batch_sent_five_times_in_a_row_and_at_once_is_stored_once() {
    let broker = kafka_broker();
    let names = Names::new("keyed");
    let app = spawn_app(|config| v2(config, &broker, &names)).await;
    wait_joined(&[app.addr]).await;
    let lines = five_times_in_a_row_and_at_once(app.addr, "v2").await;
    let (_, ends) = mark_ends(&broker, &names.topic).await;
    wait_stored_to(&[app.logs_dir.path()], &names.topic, &ends).await;
    assert_each_once(app.logs_dir.path(), &lines);
    assert_eq!(app.metric("kafka_produced_messages_total").await, 7.0);
    app.stop().await;
}

/// What the consumers do with a batch that reaches Kafka twice (a retry after a produce timeout
/// whose first attempt was delivered after all): its records carry the key, and the second copy
/// of each is dropped, also after a restart (the ledger is read back from the journal).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kafka broker (tansu): make test"]
async fn v2_a_keyed_batch_produced_twice_is_stored_once_even_across_a_restart() {
    use log_pipeline::idempotency::{Fingerprint, Key, Update};
    use log_pipeline::kafka::keyed;
    use log_pipeline::record::EncodedBatch;
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let broker = kafka_broker();
    let names = Names::new("produced-twice");
    let app = spawn_app(|config| v2(config, &broker, &names)).await;
    wait_joined(&[app.addr]).await;

    let batch = records("/produced-twice", 4);
    let lines = stored_lines(&batch);
    let mut encoded = EncodedBatch::default();
    for line in &lines {
        let ts = chrono::DateTime::parse_from_rfc3339(AT_14)
            .unwrap()
            .to_utc();
        encoded.push_line(log_pipeline::record::Hour::of(&ts), line.as_bytes());
    }
    let key = Key::parse(b"produced-twice").unwrap();
    let update = Update::whole(key, Fingerprint::of(&encoded), 4, 0);
    let producer: FutureProducer = kafka_client(&broker).create().unwrap();
    let produce_all = async || {
        for (index, line) in lines.iter().enumerate() {
            let message_key = keyed::message_key(&update);
            let record = FutureRecord::to(&names.topic)
                .key(&message_key)
                .payload(line.as_str())
                .headers(keyed::headers(&update, index as u32));
            producer
                .send(record, Duration::from_secs(10))
                .await
                .unwrap_or_else(|(err, _)| panic!("producing: {err}"));
        }
    };
    produce_all().await;
    produce_all().await;
    let (_, ends) = mark_ends(&broker, &names.topic).await;
    wait_stored_to(&[app.logs_dir.path()], &names.topic, &ends).await;
    assert_each_once(app.logs_dir.path(), &lines);
    assert_eq!(
        app.metric("idempotency_duplicates_dropped_total").await,
        4.0
    );
    assert_eq!(app.metric("idempotency_keys").await, 1.0);

    // After a restart the consumers still know the batch.
    let dirs = app.stop_keeping_dirs().await;
    let app = spawn_app_in(dirs, |config| v2(config, &broker, &names)).await;
    wait_joined(&[app.addr]).await;
    produce_all().await;
    let (_, ends) = mark_ends(&broker, &names.topic).await;
    wait_stored_to(&[app.logs_dir.path()], &names.topic, &ends).await;
    assert_each_once(app.logs_dir.path(), &lines);
    assert_eq!(
        app.metric("idempotency_duplicates_dropped_total").await,
        4.0
    );
    app.stop().await;
}

/// The broker paused past `kafka.produceTimeout`: the first attempt cannot say whether it was
/// stored, a second attempt while the first is in flight gets 409 with Retry-After, and a client
/// retrying with its key after the broker resumed gets 202; the batch is stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kafka broker (tansu): make test"]
async fn v2_retries_with_the_key_through_a_paused_broker_store_the_batch_once() {
    let tansu = tansu_binary();
    let broker = OwnBroker::start(&tansu).await;
    let names = Names::new("keyed-paused");
    let app = spawn_app(|config| {
        v2(config, &broker.addr, &names);
        config.kafka.produce_timeout = Duration::from_secs(3);
        // Rides out the pause (see the paused-broker test in kafka.rs).
        config.kafka.session_timeout = Duration::from_secs(45);
    })
    .await;
    wait_joined(&[app.addr]).await;
    let http = client();
    let batch = records("/keyed-paused", 5);
    let body = ndjson_body(&batch);

    broker.child.signal("STOP");
    let first = {
        let (http, body, addr) = (http.clone(), body.clone(), app.addr);
        tokio::spawn(async move { send_keyed(&http, addr, "paused", NDJSON, body).await })
    };
    // While the first attempt waits for the broker (it is counted in the work queue), the same
    // key is in flight.
    poll_within(
        Duration::from_secs(3),
        Duration::from_millis(20),
        "the first attempt to wait for the broker",
        async || match app.metric("ingestion_work_queue_depth").await {
            1.0 => Ok(()),
            other => Err(other),
        },
    )
    .await;
    let in_flight = poll_within(
        Duration::from_secs(3),
        Duration::from_millis(50),
        "a 409 while the first attempt is in flight",
        async || match send_keyed(&http, app.addr, "paused", NDJSON, body.clone()).await {
            Some(answer) if answer.status == StatusCode::CONFLICT => Ok(answer),
            other => Err(other),
        },
    )
    .await;
    assert_eq!(in_flight.body["error"], "idempotency_key_in_flight");
    assert_eq!(in_flight.retry_after.as_deref(), Some("1"));
    let first = first
        .await
        .unwrap()
        .expect("an answer within kafka.produceTimeout");
    assert_ne!(first.status, StatusCode::ACCEPTED, "{first:?}");
    broker.child.signal("CONT");

    let answer = send_until_accepted(&http, app.addr, "paused", NDJSON, &body).await;
    assert_accepted(&answer, 5);
    let (_, ends) = mark_ends(&broker.addr, &names.topic).await;
    wait_stored_to(&[app.logs_dir.path()], &names.topic, &ends).await;
    assert_each_once(app.logs_dir.path(), &stored_lines(&batch));
    let conflicts = sample(
        &app.metrics_text().await,
        r#"idempotency_conflicts_total{reason="in_flight"}"#,
    );
    assert!(conflicts.is_some_and(|n| n >= 1.0), "{conflicts:?}");
    app.stop().await;
}
