//! Budgets held by clients that do not use them. Each test tries to hold one budget (bytes of
//! request bodies in flight, connections, open hour files, the idempotency key index) as cheaply
//! as a client can, and shows that a normal client is still served: its batches get 202 within
//! [`SERVED_WITHIN`]. Where real use can exhaust a budget, the test shows the refusal is precise
//! (503 with `Retry-After`) and ends by itself.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{
    HOUR_14, JSON, NDJSON, RawAnswer, RawPost, SlowBody, TestApp, assert_accepted, assert_error,
    body_json, client, header, hour_files, json_array, ndjson, poll, record, spawn_app,
    try_post_logs,
};

/// How long a normal client's one-record batch may take while others squat (it takes a few
/// milliseconds alone).
const SERVED_WITHIN: Duration = Duration::from_secs(1);

/// A one-record batch in hour 14, at `path`.
fn one_record(path: &str) -> Vec<u8> {
    ndjson(&[record("2025-11-22T14:00:00Z", path, "curl/8.5.0")])
}

/// Sends the normal client's batch `i` (one record in hour 14) and checks that it is stored
/// within [`SERVED_WITHIN`] `beside` the squatters.
async fn assert_served(app: &TestApp, i: usize, beside: &str) {
    let started = Instant::now();
    let answer = app
        .post_logs(NDJSON, one_record(&format!("/normal/{i}")))
        .await;
    assert_accepted(answer, 1).await;
    let took = started.elapsed();
    assert!(
        took < SERVED_WITHIN,
        "batch {i} took {took:?} beside {beside}"
    );
}

/// Issue 28, defect 3: four clients declare 16 MiB bodies (together the whole default
/// `server.maxInflightBytes`) and send one byte a second. A normal client's batches are stored at
/// once beside them (before the fix: 503 `overloaded` until the squatters gave up); the squatters
/// get 408 `body_too_slow` and nothing of theirs is stored.
#[tokio::test]
async fn slow_bodies_do_not_hold_the_inflight_budget() {
    let app = spawn_app(|_| {}).await;
    let mut squatters = Vec::new();
    for _ in 0..4 {
        let squatter = SlowBody::start(
            app.addr,
            &[("content-type", NDJSON)],
            16 << 20,
            0,
            Duration::from_secs(1),
        )
        .await
        .expect("the service reads the squatter's body");
        squatters.push(squatter);
    }
    for i in 0..20 {
        assert_served(&app, i, "4 slow bodies").await;
    }
    // A byte a second is below the minimum rate: each squatter is told so within two windows.
    for squatter in squatters {
        let answer = squatter.answer_within(Duration::from_secs(12)).await;
        assert_eq!(answer.status, 408, "{answer:?}");
        assert_eq!(answer.body["error"], "body_too_slow", "{answer:?}");
        let message = answer.body["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("500 bytes/s") && message.contains("server.minBodyRate"),
            "{message}"
        );
    }
    assert_eq!(app.read_hour_file(HOUR_14).len(), 20);
    assert_eq!(hour_files(app.logs_dir.path()).len(), 1, "only hour 14");
    assert_eq!(app.metric("ingest_inflight_rejections_total").await, 0.0);
    app.stop().await;
}

/// Real use can fill the budget: bytes that did arrive are held. Two clients each declare the
/// largest body the 1 MiB budget can decode (half of it: a body and its batch are held at once),
/// send all of it but the last byte at once and stop. Meanwhile a normal client's batches get 503
/// `overloaded` with `Retry-After: 1`, nothing stored; once the stalled bodies fall below the
/// minimum rate (the window after their burst) they get 408 and the normal client is served
/// again.
#[tokio::test]
async fn a_stalled_body_holds_the_budget_for_at_most_two_rate_windows() {
    let budget = 1 << 20;
    // An NDJSON body of n bytes decodes into at most n + 64: (budget - 64) / 2 is the largest.
    let largest = (budget - 64) / 2;
    let app = spawn_app(|config| config.server.max_inflight_bytes = budget).await;
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let body = SlowBody::start(
            app.addr,
            &[("content-type", NDJSON)],
            largest,
            largest - 1,
            Duration::MAX,
        )
        .await
        .expect("the service reads the stalled body");
        stalled.push(body);
    }
    let stalled_at = Instant::now();
    let mut refused = 0;
    let mut stored = 0;
    let served_again = poll(
        "a normal batch stored after the budget was full",
        async || {
            let answer = app
                .post_logs(NDJSON, one_record(&format!("/normal/{stored}")))
                .await;
            if answer.status() == StatusCode::ACCEPTED {
                stored += 1;
                // Served before the burst was read (a race), or after the stall was cut off.
                return if refused > 0 {
                    Ok(stalled_at.elapsed())
                } else {
                    Err("not refused yet".to_owned())
                };
            }
            assert_eq!(header(&answer, "retry-after"), "1");
            assert_error(answer, StatusCode::SERVICE_UNAVAILABLE, "overloaded").await;
            refused += 1;
            Err(format!("{refused} refused"))
        },
    )
    .await;
    assert!(
        served_again <= 2 * Duration::from_secs(5) + Duration::from_secs(1),
        "the stalled body held the budget for {served_again:?}"
    );
    for body in stalled {
        let answer = body.answer_within(Duration::from_secs(1)).await;
        assert_eq!(answer.body["error"], "body_too_slow", "{answer:?}");
    }
    assert_eq!(app.read_hour_file(HOUR_14).len(), stored);
    assert_eq!(
        app.metric("ingest_inflight_rejections_total").await,
        refused as f64
    );
    app.stop().await;
}

/// Opens a connection that holds a place without using it: silent, or (`half_open`) with a
/// request head sent half-way.
async fn idle_connection(addr: std::net::SocketAddr, half_open: bool) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    if half_open {
        stream
            .write_all(b"POST /logs HTTP/1.1\r\nHost: squatter\r\n")
            .await
            .expect("send half a head");
    }
    stream
}

/// Whether the service closed `stream` (reading it ends or fails) within a moment.
async fn closed(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(Duration::from_millis(500), stream.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}

/// Connections that hold a place under `server.maxConnections` without using it, silent or with
/// a request head sent half-way, and more of them opened before every normal request: the normal
/// client is served at once, each of its connections taking the place of the one idle longest.
/// Before the fix it was refused at once (the canned 503 `too_many_connections`, which reqwest
/// reports as no answer) until `server.readHeaderTimeout` closed the squatters.
#[tokio::test]
async fn idle_and_half_open_connections_do_not_hold_the_connection_cap() {
    let app = spawn_app(|config| config.server.max_connections = 20).await;
    let mut first = Vec::new();
    for i in 0..20 {
        first.push(idle_connection(app.addr, i % 2 == 1).await);
    }
    let mut later = Vec::new();
    for i in 0..10 {
        for half_open in [false, true] {
            later.push(idle_connection(app.addr, half_open).await);
        }
        assert_served(&app, i, "20 idle connections").await;
    }
    // The oldest went first: every one of the first twenty is closed.
    for (i, stream) in first.iter_mut().enumerate() {
        assert!(closed(stream).await, "squatting connection {i} still open");
    }
    let text = app.metrics_text().await;
    let open = crate::support::sample(&text, "http_open_connections").unwrap();
    assert!(open <= 20.0, "{open} open connections");
    let evicted = crate::support::sample(&text, "http_connections_evicted_total").unwrap();
    assert!(
        evicted >= 20.0,
        "{evicted} evicted: the first twenty at least"
    );
    assert_eq!(app.read_hour_file(HOUR_14).len(), 10);
    drop(later);
    app.stop().await;
}

/// Real use can fill the cap: when every connection has a request in flight, a new one gets 503
/// `too_many_connections` with `Retry-After: 1` at once, and is served as soon as a request ends.
#[tokio::test]
async fn a_cap_full_of_requests_in_flight_refuses_precisely_and_briefly() {
    let app = spawn_app(|config| config.server.max_connections = 4).await;
    let mut in_flight = Vec::new();
    for i in 0..4 {
        let body = ndjson(&[record(
            "2025-11-22T14:00:00Z",
            &format!("/held/{i}"),
            "curl/8.5.0",
        )]);
        in_flight.push(RawPost::start(app.addr, NDJSON, body).await);
    }
    let mut refused = TcpStream::connect(app.addr).await.expect("connect");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), refused.read_to_end(&mut answer))
        .await
        .expect("the refusal at once")
        .expect("read the refusal");
    let answer = RawAnswer::parse(&answer);
    assert_eq!(answer.status, 503, "{answer:?}");
    assert_eq!(answer.body["error"], "too_many_connections", "{answer:?}");
    assert!(answer.head.contains("retry-after: 1"), "{answer:?}");
    let done = in_flight.pop().expect("four").finish().await;
    assert_eq!(done.status, 202, "{done:?}");
    // Its place is free once its connection is closed: a normal client is served then.
    let http = client();
    poll("a place for a normal client", async || match try_post_logs(
        &http,
        app.addr,
        NDJSON,
        one_record("/normal"),
    )
    .await
    {
        Ok(answer) if answer.status() == StatusCode::ACCEPTED => Ok(()),
        Ok(answer) => Err(format!("{:?}", body_json(answer).await)),
        Err(err) => Err(err.to_string()),
    })
    .await;
    for held in in_flight {
        assert_eq!(held.finish().await.status, 202);
    }
    assert_eq!(app.read_hour_file(HOUR_14).len(), 5);
    app.stop().await;
}

/// Hour files held open by a client that wrote one record into each of 200 hours (the store keeps
/// at most 64 open, the least recently written closed first): a normal client writing into hours
/// of its own is served at once, and the store never holds more than 64.
#[tokio::test]
async fn batches_spread_over_many_hours_do_not_hold_the_open_files() {
    let app = spawn_app(|config| {
        config.storage.idle_file_timeout = Duration::from_secs(3600);
    })
    .await;
    let hour = |h: usize| {
        chrono::DateTime::from_timestamp(1_735_689_600 + h as i64 * 3600, 0)
            .expect("a valid hour")
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    for batch in 0..2 {
        let records: Vec<_> = (0..100)
            .map(|h| record(&hour(batch * 100 + h), "/squatter", "curl/8.5.0"))
            .collect();
        assert_accepted(app.post_logs(JSON, json_array(&records)).await, 100).await;
    }
    assert_eq!(app.metric("store_open_files").await, 64.0);
    for i in 0..20 {
        let started = Instant::now();
        let records = [
            record(&hour(1000 + i), "/normal", "curl/8.5.0"),
            record(
                "2025-11-22T14:00:00Z",
                &format!("/normal/{i}"),
                "curl/8.5.0",
            ),
        ];
        assert_accepted(app.post_logs(JSON, json_array(&records)).await, 2).await;
        assert!(
            started.elapsed() < SERVED_WITHIN,
            "batch {i} took {:?}",
            started.elapsed()
        );
        assert!(app.metric("store_open_files").await <= 64.0);
    }
    assert_eq!(app.read_hour_file(HOUR_14).len(), 20);
    assert_eq!(hour_files(app.logs_dir.path()).len(), 200 + 20 + 1);
    app.stop().await;
}

/// The idempotency key index filled by one client (200 keyed batches against
/// `idempotency.maxKeys: 50`): another client's keyed batches are still stored and replayed, the
/// index never holds more than 50 keys, and a body still arriving holds no key, so that a retry
/// on another connection is served at once rather than answered 409.
#[tokio::test]
async fn one_client_filling_the_key_index_does_not_stop_another() {
    let app = spawn_app(|config| config.idempotency.max_keys = 50).await;
    let fillers: Vec<_> = (0..4)
        .map(|filler| {
            let addr = app.addr;
            tokio::spawn(async move {
                let http = client();
                for i in 0..50 {
                    let key = format!("filler-{filler}-{i}");
                    let body = one_record(&format!("/filler/{filler}/{i}"));
                    let headers = [("content-type", NDJSON), ("idempotency-key", key.as_str())];
                    let answer = crate::support::try_send(
                        &http,
                        addr,
                        reqwest::Method::POST,
                        "/logs",
                        &headers,
                        body,
                    )
                    .await
                    .expect("an answer");
                    assert_eq!(answer.status(), StatusCode::ACCEPTED);
                }
            })
        })
        .collect();
    let slow = SlowBody::start(
        app.addr,
        &[("content-type", NDJSON), ("idempotency-key", "normal-0")],
        1000,
        10,
        Duration::from_secs(1),
    )
    .await
    .expect("the service reads the slow body");
    for i in 0..10 {
        let key = format!("normal-{i}");
        let headers = [("content-type", NDJSON), ("idempotency-key", key.as_str())];
        let body = one_record(&format!("/normal/{i}"));
        let started = Instant::now();
        assert_accepted(app.send_logs(&headers, body.clone()).await, 1).await;
        assert!(started.elapsed() < SERVED_WITHIN, "{:?}", started.elapsed());
        let replay = app.send_logs(&headers, body).await;
        assert_eq!(header(&replay, "idempotent-replayed"), "true", "batch {i}");
        assert_accepted(replay, 1).await;
    }
    for filler in fillers {
        filler.await.expect("the filler does not panic");
    }
    drop(slow);
    assert_eq!(app.metric("idempotency_keys").await, 50.0);
    let stored = app.read_hour_file(HOUR_14);
    assert_eq!(stored.len(), 200 + 10, "every batch once");
    app.stop().await;
}
