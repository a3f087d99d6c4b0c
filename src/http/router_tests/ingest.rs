//! `POST /logs` through the router: what each outcome and refusal is answered, what reaches the
//! pipeline, and the counter each refusal moves.

use axum::http::{StatusCode, header};
use serde_json::json;

use super::*;
use crate::idempotency::Key;
use crate::pipeline::{KeyedOutcome, Refusal, UnknownCounts};

#[tokio::test]
async fn a_stored_batch_is_202_with_its_record_count() {
    let api = api(|_| {});
    let answer = api.post_json(TWO_RECORDS).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    assert_eq!(answer.json(), json!({"accepted": 2}));
    assert_eq!(
        answer.header(header::HeaderName::from_static("idempotent-replayed")),
        None
    );
    assert_eq!(
        api.pipeline.handed(),
        [Handed {
            site: None,
            lines: TWO_LINES.into(),
            keyed: None
        }]
    );
    assert_eq!(api.metric("log_batches_received_total"), 1.0);
    assert_eq!(api.metric("log_batch_records_sum"), 2.0);
    assert_refusals(&api, &[]);
}

#[tokio::test]
async fn keyed_batches_are_answered_by_what_became_of_their_key() {
    let api = api(|_| {});
    let key = Key::parse(b"order-42").unwrap();
    let keyed = [
        ("content-type", "application/json"),
        ("idempotency-key", "order-42"),
    ];
    let replayed = header::HeaderName::from_static("idempotent-replayed");

    api.tell(Answer::Keyed(KeyedOutcome::Stored));
    let stored = api.post(&keyed, TWO_RECORDS).await;
    assert_eq!(
        (stored.status, stored.json()),
        (StatusCode::ACCEPTED, json!({"accepted": 2}))
    );
    assert_eq!(stored.header(replayed.clone()), None);
    let handed = api.pipeline.handed();
    let (handed_key, fingerprint) = handed[0].keyed.expect("handed over with its key");
    assert_eq!(handed_key, key);

    // The records of the earlier batch, not of this request, are what the answer counts.
    api.tell(Answer::Keyed(KeyedOutcome::Replayed { records: 7 }));
    let replay = api.post(&keyed, TWO_RECORDS).await;
    assert_eq!(
        (replay.status, replay.json()),
        (StatusCode::ACCEPTED, json!({"accepted": 7}))
    );
    assert_eq!(replay.header(replayed.clone()), Some("true"));
    assert_eq!(
        api.pipeline.handed()[0].keyed,
        Some((key, fingerprint)),
        "the same body has the same fingerprint"
    );

    api.tell(Answer::Keyed(KeyedOutcome::InFlight));
    let in_flight = api.post(&keyed, TWO_RECORDS).await;
    assert_eq!(in_flight.status, StatusCode::CONFLICT);
    assert_eq!(in_flight.code(), "idempotency_key_in_flight");
    assert_eq!(in_flight.header(header::RETRY_AFTER), Some("1"));

    api.tell(Answer::Keyed(KeyedOutcome::Reused));
    let reused = api.post(&keyed, TWO_RECORDS).await;
    assert_eq!(reused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reused.code(), "idempotency_key_reused");

    assert_eq!(api.metric("log_batches_received_total"), 1.0);
    assert_eq!(api.metric("idempotency_replays_total"), 1.0);
    assert_refusals(
        &api,
        &[
            ("idempotency_conflicts_total{reason=\"in_flight\"}", 1.0),
            ("idempotency_conflicts_total{reason=\"reused\"}", 1.0),
        ],
    );
}

#[tokio::test]
async fn every_refusal_of_the_pipeline_reaches_the_client_as_its_kind() {
    let api = api(|_| {});
    let unknown = UnknownCounts {
        delivered: 1,
        unknown: 1,
        total: 2,
    };
    // (refusal, status, error code, extra fields)
    let cases = [
        (Refusal::TimedOut, 503, "timeout", json!({})),
        (Refusal::Overloaded, 503, "overloaded", json!({})),
        (Refusal::ShuttingDown, 503, "shutting_down", json!({})),
        (Refusal::Unavailable, 503, "storage_unavailable", json!({})),
        (
            Refusal::Partial {
                delivered: 1,
                total: 2,
            },
            503,
            "partially_delivered",
            json!({"deliveredRecords": 1, "records": 2}),
        ),
        (
            Refusal::OutcomeUnknown {
                counts: Some(unknown),
            },
            500,
            "outcome_unknown",
            json!({"deliveredRecords": 1, "unknownRecords": 1, "records": 2}),
        ),
        (
            Refusal::OutcomeUnknown { counts: None },
            500,
            "outcome_unknown",
            json!({}),
        ),
        (Refusal::Broken, 500, "internal", json!({})),
    ];
    for (refusal, status, code, extra) in cases {
        api.tell(Answer::Refuse(refusal));
        let answer = api.post_json(TWO_RECORDS).await;
        assert_eq!(answer.status.as_u16(), status, "{refusal:?}");
        let mut body = answer.json();
        assert_eq!(body["error"], code, "{refusal:?}");
        let message = body.as_object_mut().unwrap().remove("message").unwrap();
        assert!(
            !message.as_str().unwrap().contains("stand-in"),
            "the backend's words stay in the log: {message}"
        );
        body.as_object_mut().unwrap().remove("error");
        assert_eq!(body, extra, "{refusal:?}");
        assert_eq!(api.pipeline.handed().len(), 1, "{refusal:?}");
    }
    assert_eq!(api.metric("log_batches_received_total"), 0.0);
    assert_refusals(&api, &[("ingest_overload_rejections_total", 1.0)]);
    let ingest = api.get("/analytics/ingest").await.json();
    assert_eq!(
        ingest["rejectedRequests"],
        json!({"total": 1, "invalid": 0, "overloaded": 1, "failed": 0}),
        "the dashboard's counters; `failed` is counted by the real pipelines"
    );
}

#[tokio::test]
async fn refused_bodies_never_reach_the_pipeline_and_count_as_invalid() {
    let api = api(|config| {
        config.ingestion.max_records = 2;
        config.server.max_body_bytes = 1024;
    });
    let json = ("content-type", "application/json");
    let three = format!(
        "[{}]",
        [r#"{"timestamp":"2025-11-22T14:00:00Z","path":"/","userAgent":"u"}"#; 3].join(",")
    );
    let large = " ".repeat(1025);
    /// Headers, body, status, error code.
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, u16, &'a str);
    let cases: [Case; 9] = [
        (
            &[("content-type", "text/plain")],
            TWO_RECORDS,
            415,
            "unsupported_media_type",
        ),
        (
            &[json, ("content-encoding", "br")],
            TWO_RECORDS,
            415,
            "unsupported_content_encoding",
        ),
        (
            &[json, ("content-encoding", "gzip")],
            "not gzip",
            400,
            "unreadable_body",
        ),
        (&[json], "[", 400, "malformed_body"),
        (&[json], "[]", 400, "no_records"),
        (&[json], r#"[{"path":"/"}]"#, 400, "invalid_records"),
        (&[json], &three, 413, "too_many_records"),
        (&[json], &large, 413, "body_too_large"),
        (
            &[json, ("idempotency-key", "with space")],
            TWO_RECORDS,
            400,
            "invalid_idempotency_key",
        ),
    ];
    for (headers, body, status, code) in cases {
        let answer = api.post(headers, body.to_owned()).await;
        assert_eq!(
            (answer.status.as_u16(), answer.code()),
            (status, code.to_owned()),
            "{headers:?}"
        );
    }
    // Declared too large: refused by its Content-Length, before a byte of it is read.
    let declared = api
        .post(&[json, ("content-length", "1025")], large.clone())
        .await;
    assert_eq!(declared.code(), "body_too_large");

    assert!(api.pipeline.handed().is_empty());
    assert_refusals(&api, &[("invalid_requests_total", 10.0)]);
}

/// A JSON body of `n` bytes padded with spaces after its two records.
fn padded(n: usize) -> String {
    format!("{TWO_RECORDS:<n$}")
}

#[tokio::test]
async fn a_body_the_inflight_budget_can_never_take_is_413_not_a_503_to_retry() {
    // Decoding holds a JSON body of n bytes and its batch (at most n + 64 bytes) at once, so a
    // budget of 1,024 bytes takes bodies of up to 480 bytes, and never a larger one: telling its
    // client to retry (503) would have it retry for ever.
    let api = api(|config| config.server.max_inflight_bytes = 1024);
    let json = ("content-type", "application/json");
    let fits = api.post(&[json], padded(480)).await;
    assert_eq!(fits.status, StatusCode::ACCEPTED, "{:?}", fits.json());
    let declared = api
        .post(&[json, ("content-length", "481")], padded(481))
        .await;
    let streamed = api.post(&[json], padded(481)).await;
    for answer in [declared, streamed] {
        assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(answer.code(), "body_too_large");
        assert_eq!(answer.json()["limit"], 480);
        let message = answer.json()["message"].as_str().unwrap().to_owned();
        assert!(message.contains("server.maxInflightBytes"), "{message}");
        assert_eq!(answer.header(header::RETRY_AFTER), None);
    }
    assert_eq!(api.pipeline.handed().len(), 1);
    assert_refusals(&api, &[("invalid_requests_total", 2.0)]);
}
