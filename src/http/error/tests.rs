//! Every [`ApiError`] as the client sees it: status, exact body bytes and headers. The bodies are
//! the API's contract (clients branch on `error` and read the extra fields), so they are written
//! out here in full rather than rebuilt from the code under test.

use std::time::Duration;

use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

use super::ApiError;
use crate::idempotency::KeyError;
use crate::ingest::{DecodeError, RecordError};
use crate::metrics::Refused;
use crate::pipeline::{Refusal, SubmitError, UnknownCounts};

/// What a client receives for `error`: status, body, `Retry-After`, `WWW-Authenticate`.
async fn answer(error: ApiError) -> (StatusCode, String, Option<String>, Option<String>) {
    let response = error.into_response();
    let header = |name| {
        response
            .headers()
            .get(name)
            .map(|value: &axum::http::HeaderValue| value.to_str().unwrap().to_owned())
    };
    assert_eq!(
        header(header::CONTENT_TYPE).as_deref(),
        Some("application/json")
    );
    let retry_after = header(header::RETRY_AFTER);
    let authenticate = header(header::WWW_AUTHENTICATE);
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let body = String::from_utf8(body.to_vec()).unwrap();
    (status, body, retry_after, authenticate)
}

/// Checks that `error` is answered `status` with exactly `body`, `Retry-After: 1` exactly on 503
/// and 409, and `WWW-Authenticate: Bearer` exactly on 401.
async fn check(error: ApiError, status: u16, body: &str) {
    let retries = status == 503 || status == 409;
    check_retry(error, status, body, retries.then_some("1")).await;
}

/// [`check`] with the `Retry-After` expected.
async fn check_retry(error: ApiError, status: u16, body: &str, retry: Option<&str>) {
    let name = format!("{error:?}");
    let (got_status, got_body, retry_after, authenticate) = answer(error).await;
    assert_eq!(got_status.as_u16(), status, "{name}");
    assert_eq!(got_body, body, "{name}");
    assert_eq!(retry_after.as_deref(), retry, "{name}");
    assert_eq!(
        authenticate.as_deref(),
        (status == 401).then_some("Bearer"),
        "{name}"
    );
}

#[tokio::test]
async fn refused_bodies_are_4xx_with_what_was_wrong() {
    check(
        DecodeError::UnsupportedMediaType("text/plain".into()).into(),
        415,
        r#"{"error":"unsupported_media_type","message":"unsupported Content-Type: text/plain; supported: application/json, text/csv, application/x-ndjson, application/jsonl","supported":["application/json","text/csv","application/x-ndjson","application/jsonl"]}"#,
    )
    .await;
    check(
        DecodeError::Empty.into(),
        400,
        r#"{"error":"no_records","message":"no log records provided"}"#,
    )
    .await;
    check(
        DecodeError::TooManyRecords { max: 2 }.into(),
        413,
        r#"{"error":"too_many_records","message":"batch has more than 2 records (ingestion.maxRecords)"}"#,
    )
    .await;
    check(
        DecodeError::TooManyHours { max: 3 }.into(),
        413,
        r#"{"error":"too_many_hours","message":"batch has records in more than 3 distinct hours (ingestion.maxHoursPerBatch); nothing from this batch was stored, split it"}"#,
    )
    .await;
    check(
        DecodeError::Malformed {
            format: "JSON",
            line: 1,
            column: 2,
            message: "EOF while parsing".into(),
        }
        .into(),
        400,
        r#"{"column":2,"error":"malformed_body","line":1,"message":"malformed JSON at line 1, column 2: EOF while parsing"}"#,
    )
    .await;
    let empty_path = RecordError {
        index: 0,
        line: Some(2),
        column: None,
        field: "path",
        reason: "is empty".into(),
    };
    check(
        DecodeError::Invalid {
            total: 3,
            errors: vec![empty_path.clone()],
        }
        .into(),
        400,
        r#"{"error":"invalid_records","errors":[{"field":"path","index":0,"line":2,"reason":"is empty"}],"message":"3 invalid record field(s); nothing from this batch was stored (first 1 listed)","totalErrors":3}"#,
    )
    .await;
    check(
        DecodeError::Invalid {
            total: 1,
            errors: vec![empty_path],
        }
        .into(),
        400,
        r#"{"error":"invalid_records","errors":[{"field":"path","index":0,"line":2,"reason":"is empty"}],"message":"1 invalid record field(s); nothing from this batch was stored","totalErrors":1}"#,
    )
    .await;
    check(
        ApiError::BodyTooLarge {
            limit: 4096,
            by: "server.maxBodyBytes",
        },
        413,
        r#"{"error":"body_too_large","limit":4096,"message":"request body exceeds 4096 bytes after decompression (server.maxBodyBytes)"}"#,
    )
    .await;
    check(
        ApiError::UnreadableBody("gzip: invalid header".into()),
        400,
        r#"{"error":"unreadable_body","message":"request body could not be read or decompressed: gzip: invalid header"}"#,
    )
    .await;
    check(
        ApiError::BodyTimeout(Duration::from_secs(10)),
        408,
        r#"{"error":"body_timeout","message":"request body was not received within 10s (server.readBodyTimeout)"}"#,
    )
    .await;
    check(
        ApiError::BodyTooSlow {
            min_rate: 1024,
            window: Duration::from_secs(5),
        },
        408,
        r#"{"error":"body_too_slow","message":"request body arrived at less than 1024 bytes/s over 5s (server.minBodyRate); nothing from this batch was stored","minBodyRate":1024,"windowSeconds":5}"#,
    )
    .await;
    check(
        ApiError::UnsupportedEncoding,
        415,
        r#"{"error":"unsupported_content_encoding","message":"unsupported Content-Encoding; supported: gzip, zstd, identity","supported":["gzip","zstd","identity"]}"#,
    )
    .await;
    check(
        KeyError::Repeated.into(),
        400,
        r#"{"error":"invalid_idempotency_key","message":"Idempotency-Key is given more than once"}"#,
    )
    .await;
    check(
        KeyError::NotPrintable {
            position: 4,
            byte: 0x20,
        }
        .into(),
        400,
        r#"{"error":"invalid_idempotency_key","message":"Idempotency-Key must be printable ASCII without spaces (bytes 0x21 to 0x7e); byte 4 is 0x20"}"#,
    )
    .await;
}

#[tokio::test]
async fn requests_refused_for_other_reasons_say_why() {
    check(
        ApiError::Unauthorized,
        401,
        r#"{"error":"unauthorized","message":"missing or invalid bearer token"}"#,
    )
    .await;
    check(
        ApiError::NotFound("no route for GET /nope".into()),
        404,
        r#"{"error":"not_found","message":"no route for GET /nope"}"#,
    )
    .await;
    check(
        ApiError::MethodNotAllowed,
        405,
        r#"{"error":"method_not_allowed","message":"method not allowed"}"#,
    )
    .await;
    check(
        ApiError::IdempotencyKeyInFlight,
        409,
        r#"{"error":"idempotency_key_in_flight","message":"a request with this Idempotency-Key is still being handled; nothing was stored by this one, retry later with the same key to learn its outcome"}"#,
    )
    .await;
    check(
        ApiError::IdempotencyKeyReused,
        422,
        r#"{"error":"idempotency_key_reused","message":"this Idempotency-Key was used for a different batch; nothing was stored, use a new key for a new batch"}"#,
    )
    .await;
    check(
        ApiError::Timeout,
        503,
        r#"{"error":"timeout","message":"request did not complete within server.requestTimeout"}"#,
    )
    .await;
    check(
        ApiError::ShuttingDown,
        503,
        r#"{"error":"shutting_down","message":"the service is shutting down; nothing from this batch was stored"}"#,
    )
    .await;
    check(
        ApiError::Overloaded,
        503,
        r#"{"error":"overloaded","message":"too many request bodies in flight (server.maxInflightBytes); nothing from this batch was stored, retry later"}"#,
    )
    .await;
    check(
        ApiError::Internal,
        500,
        r#"{"error":"internal","message":"internal error"}"#,
    )
    .await;
    check(
        ApiError::Status(StatusCode::IM_A_TEAPOT),
        418,
        r#"{"error":"error","message":"I'm a teapot"}"#,
    )
    .await;
}

#[tokio::test]
async fn a_site_over_its_limits_or_a_key_of_another_role_is_told_what_to_do() {
    let site = || crate::site::SiteId::parse("acme").unwrap();
    check_retry(
        ApiError::RateLimited {
            site: site(),
            records_per_second: 100,
            burst: 1000,
            retry_after: 3,
        },
        429,
        r#"{"burst":1000,"error":"rate_limited","message":"site acme is over its limit of 100 records/s (burst 1000); nothing from this batch was stored, retry after 3 s","recordsPerSecond":100,"retryAfterSeconds":3,"site":"acme"}"#,
        Some("3"),
    )
    .await;
    check_retry(
        ApiError::InflightShareExceeded {
            site: site(),
            bytes: 4096,
        },
        429,
        r#"{"error":"inflight_share_exceeded","limit":4096,"message":"site acme's request bodies in flight would exceed its share of 4096 bytes (limits.inflightShare, else sites.inflightShare, of server.maxInflightBytes); nothing from this batch was stored, retry later","site":"acme"}"#,
        Some("1"),
    )
    .await;
    check(
        ApiError::OverBurst {
            site: site(),
            records: 1001,
            burst: 1000,
        },
        413,
        r#"{"error":"over_burst","limit":1000,"message":"batch has 1001 records, more than site acme's burst of 1000 (limits.burst, else sites.burst): it can never pass; nothing was stored, split it","site":"acme"}"#,
    )
    .await;
    check(
        ApiError::Forbidden("a read key cannot send records: send them with the site's ingest key"),
        403,
        r#"{"error":"forbidden","message":"a read key cannot send records: send them with the site's ingest key"}"#,
    )
    .await;
    check_retry(
        ApiError::NoSitesFile,
        409,
        r#"{"error":"no_sites_file","message":"sites.file is not set: there is no sites file to reload (operator keys, auth.tokens, change only at a restart)"}"#,
        None,
    )
    .await;
    check(
        ApiError::InvalidSitesFile(vec!["sites[0].id: is empty".into()]),
        422,
        r#"{"error":"invalid_sites_file","message":"the sites file was refused, the running set is kept","problems":["sites[0].id: is empty"]}"#,
    )
    .await;
}

#[tokio::test]
async fn analytics_refusals_say_what_to_ask_instead() {
    check(
        ApiError::BadQuery("top must be an integer from 1 to 100".into()),
        400,
        r#"{"error":"invalid_query","message":"invalid query: top must be an integer from 1 to 100"}"#,
    )
    .await;
    check(
        ApiError::NoSummary("no summary for hour 2025-11-22T14:00:00Z".into()),
        404,
        r#"{"error":"no_summary","message":"no summary for hour 2025-11-22T14:00:00Z"}"#,
    )
    .await;
    check(
        ApiError::Busy,
        503,
        r#"{"error":"busy","message":"too many analytics queries at once; retry shortly"}"#,
    )
    .await;
    check(
        ApiError::SummaryTooLarge {
            hour: "2025-11-22T14:00:00Z".into(),
            bytes: 10,
            limit: 5,
        },
        422,
        r#"{"bytes":10,"error":"summary_too_large","hour":"2025-11-22T14:00:00Z","limit":5,"message":"the summary of hour 2025-11-22T14:00:00Z is 10 bytes, more than the 5 bytes a query reads; query other hours (the hour's raw records are in its hour file)"}"#,
    )
    .await;
}

/// A batch the pipeline refused with `refusal`, as the handler receives it. The backend's words
/// are for the log only: no body below carries them.
fn refused(refusal: Refusal) -> ApiError {
    ApiError::Submit(SubmitError::new(
        refusal,
        "write to /var/lib/logs/2025-11-22/14.log.json failed: No space left on device",
    ))
}

#[tokio::test]
async fn every_refusal_of_a_batch_says_what_was_stored() {
    let unknown = r#""message":"part of this batch may have been stored and it cannot be known which; a retry without an Idempotency-Key may store those records twice, with one it stores each once""#;
    let counted = UnknownCounts {
        delivered: 1,
        unknown: 3,
        total: 5,
    };
    let partial = Refusal::Partial {
        delivered: 2,
        total: 5,
    };
    let answers = [
        (
            Refusal::TimedOut,
            503,
            r#"{"error":"timeout","message":"the batch waited for the store past server.requestTimeout and was withdrawn; nothing from it was stored, retry later"}"#.to_owned(),
        ),
        (
            Refusal::Overloaded,
            503,
            r#"{"error":"overloaded","message":"too much pending work; nothing from this batch was stored, retry later"}"#.to_owned(),
        ),
        (
            Refusal::ShuttingDown,
            503,
            r#"{"error":"shutting_down","message":"the service is shutting down; nothing from this batch was stored"}"#.to_owned(),
        ),
        (
            Refusal::Unavailable,
            503,
            r#"{"error":"storage_unavailable","message":"storage is temporarily unavailable; nothing from this batch was stored, retry later"}"#.to_owned(),
        ),
        (
            partial,
            503,
            r#"{"deliveredRecords":2,"error":"partially_delivered","message":"2 of the batch's 5 records reached Kafka before a failure; retrying the whole batch without an Idempotency-Key stores those 2 again, with one it stores each record once","records":5}"#.to_owned(),
        ),
        (
            Refusal::OutcomeUnknown {
                counts: Some(counted),
            },
            500,
            format!(
                r#"{{"deliveredRecords":1,"error":"outcome_unknown",{unknown},"records":5,"unknownRecords":3}}"#
            ),
        ),
        (
            Refusal::OutcomeUnknown { counts: None },
            500,
            format!(r#"{{"error":"outcome_unknown",{unknown}}}"#),
        ),
        (
            Refusal::Broken,
            500,
            r#"{"error":"internal","message":"internal error"}"#.to_owned(),
        ),
    ];
    for (refusal, status, body) in answers {
        check(refused(refusal), status, &body).await;
    }
}

#[test]
fn refusals_of_a_request_count_by_their_kind() {
    let invalid = [
        ApiError::from(DecodeError::Empty),
        DecodeError::UnsupportedMediaType(String::new()).into(),
        DecodeError::TooManyRecords { max: 1 }.into(),
        ApiError::BodyTooLarge {
            limit: 1,
            by: "server.maxBodyBytes",
        },
        ApiError::UnreadableBody(String::new()),
        ApiError::UnsupportedEncoding,
        KeyError::Empty.into(),
    ];
    for error in invalid {
        assert_eq!(error.refused_as(), Some(Refused::Invalid), "{error:?}");
    }
    let counted = [
        (ApiError::Overloaded, Refused::BodiesInFlight),
        (refused(Refusal::Overloaded), Refused::PendingWork),
        (ApiError::IdempotencyKeyInFlight, Refused::KeyInFlight),
        (ApiError::IdempotencyKeyReused, Refused::KeyReused),
        (
            ApiError::InflightShareExceeded {
                site: crate::site::SiteId::parse("a").unwrap(),
                bytes: 1,
            },
            Refused::InflightShare,
        ),
    ];
    for (error, why) in counted {
        assert_eq!(error.refused_as(), Some(why), "{error:?}");
    }
    // Not refusals of what the client sent: counted elsewhere (`ingest_errors_total`), or not
    // at all.
    let uncounted = [
        refused(Refusal::TimedOut),
        refused(Refusal::Unavailable),
        refused(Refusal::OutcomeUnknown { counts: None }),
        ApiError::BodyTimeout(Duration::from_secs(1)),
        ApiError::Unauthorized,
        ApiError::MethodNotAllowed,
        ApiError::Timeout,
        ApiError::ShuttingDown,
        ApiError::Internal,
    ];
    for error in uncounted {
        assert_eq!(error.refused_as(), None, "{error:?}");
    }
}
