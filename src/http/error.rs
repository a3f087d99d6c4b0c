//! [`ApiError`]: every way a request can fail, and the one place failures become a status code
//! and a JSON body `{"error": "<code>", "message": "<text>", ...details}`. A refused batch
//! arrives as the pipeline's [`Refusal`] (what it means for the client, whichever backend refused
//! it): this module maps those kinds, never a backend's errors.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::SUPPORTED_ENCODINGS;
use crate::access::ReloadError;
use crate::idempotency::KeyError;
use crate::ingest::{DecodeError, SUPPORTED_MEDIA_TYPES};
use crate::metrics::Refused;
use crate::pipeline::{Refusal, SubmitError, UnknownCounts};
use crate::site::SiteId;

/// Seconds a client should wait before retrying after a 503 or a 409 (key in flight).
const RETRY_AFTER_SECS: u64 = 1;

/// Every way a request can fail, mapped onto a status code and a JSON body
/// `{"error": "<code>", "message": "<text>", ...details}`. 5xx bodies never carry internals; the
/// reason goes to the log.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("request body exceeds {limit} bytes after decompression ({by})")]
    BodyTooLarge {
        limit: usize,
        /// What sets the limit: `server.maxBodyBytes`, or the in-flight budget.
        by: &'static str,
    },
    #[error("request body could not be read or decompressed: {0}")]
    UnreadableBody(String),
    #[error("request body was not received within {0:?} (server.readBodyTimeout)")]
    BodyTimeout(Duration),
    #[error(
        "request body arrived at less than {min_rate} bytes/s over {window:?} \
         (server.minBodyRate); nothing from this batch was stored"
    )]
    BodyTooSlow { min_rate: usize, window: Duration },
    #[error("unsupported Content-Encoding; supported: {}", SUPPORTED_ENCODINGS.join(", "))]
    UnsupportedEncoding,
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// A valid key asking for what its role does not allow; says which key would.
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error(transparent)]
    Submit(#[from] SubmitError),
    #[error("request did not complete within server.requestTimeout")]
    Timeout,
    #[error("the service is shutting down; nothing from this batch was stored")]
    ShuttingDown,
    #[error(
        "too many request bodies in flight (server.maxInflightBytes); nothing from this batch was \
         stored, retry later"
    )]
    Overloaded,
    #[error("invalid query: {0}")]
    BadQuery(String),
    #[error("{0}")]
    NoSummary(String),
    #[error("too many analytics queries at once; retry shortly")]
    Busy,
    #[error(
        "the summary of hour {hour} is {bytes} bytes, more than the {limit} bytes a query reads; query other hours (the hour's raw records are in its hour file)"
    )]
    SummaryTooLarge {
        hour: String,
        bytes: u64,
        limit: u64,
    },
    #[error("{0}")]
    InvalidIdempotencyKey(#[from] KeyError),
    #[error(
        "a request with this Idempotency-Key is still being handled; nothing was stored by this \
         one, retry later with the same key to learn its outcome"
    )]
    IdempotencyKeyInFlight,
    #[error(
        "this Idempotency-Key was used for a different batch; nothing was stored, use a new key \
         for a new batch"
    )]
    IdempotencyKeyReused,
    #[error(
        "site {site} is over its limit of {records_per_second} records/s (burst {burst}); \
         nothing from this batch was stored, retry after {retry_after} s"
    )]
    RateLimited {
        site: SiteId,
        records_per_second: u32,
        burst: u32,
        /// Whole seconds until the batch fits.
        retry_after: u64,
    },
    #[error(
        "batch has {records} records, more than site {site}'s burst of {burst} (limits.burst, \
         else sites.burst): it can never pass; nothing was stored, split it"
    )]
    OverBurst {
        site: SiteId,
        records: usize,
        burst: u32,
    },
    #[error(
        "site {site}'s request bodies in flight would exceed its share of {bytes} bytes \
         (limits.inflightShare, else sites.inflightShare, of server.maxInflightBytes); nothing \
         from this batch was stored, retry later"
    )]
    InflightShareExceeded { site: SiteId, bytes: usize },
    #[error("{}", ReloadError::NoSitesFile)]
    NoSitesFile,
    #[error("the sites file was refused, the running set is kept")]
    InvalidSitesFile(Vec<String>),
    #[error("internal error")]
    Internal,
    #[error("{}", .0.canonical_reason().unwrap_or("error"))]
    Status(StatusCode),
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Decode(DecodeError::UnsupportedMediaType(_))
            | ApiError::UnsupportedEncoding => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Decode(
                DecodeError::TooManyRecords { .. } | DecodeError::TooManyHours { .. },
            )
            | ApiError::BodyTooLarge { .. }
            | ApiError::OverBurst { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RateLimited { .. } | ApiError::InflightShareExceeded { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::NoSitesFile => StatusCode::CONFLICT,
            ApiError::InvalidSitesFile(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Decode(_)
            | ApiError::UnreadableBody(_)
            | ApiError::BadQuery(_)
            | ApiError::InvalidIdempotencyKey(_) => StatusCode::BAD_REQUEST,
            ApiError::IdempotencyKeyInFlight => StatusCode::CONFLICT,
            ApiError::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BodyTimeout(_) | ApiError::BodyTooSlow { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) | ApiError::NoSummary(_) => StatusCode::NOT_FOUND,
            ApiError::SummaryTooLarge { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Submit(err)
                if matches!(
                    err.refusal(),
                    Refusal::OutcomeUnknown { .. } | Refusal::Broken
                ) =>
            {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            ApiError::Submit(_)
            | ApiError::Timeout
            | ApiError::ShuttingDown
            | ApiError::Overloaded
            | ApiError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Status(status) => *status,
        }
    }

    /// Which refusal counter a `POST /logs` answered with this error counts in, if any: the
    /// client's body, type, encoding or key (400, 413, 415), a full budget or queue (503
    /// `overloaded`), or a key conflict. Timeouts, 401 and failures to store are not refusals of
    /// the request (`ingest_errors_total` counts the latter where they happen).
    pub fn refused_as(&self) -> Option<Refused> {
        match self {
            ApiError::Decode(_)
            | ApiError::BodyTooLarge { .. }
            | ApiError::UnreadableBody(_)
            | ApiError::UnsupportedEncoding
            | ApiError::InvalidIdempotencyKey(_) => Some(Refused::Invalid),
            ApiError::Overloaded => Some(Refused::BodiesInFlight),
            ApiError::Submit(err) if err.refusal() == Refusal::Overloaded => {
                Some(Refused::PendingWork)
            }
            ApiError::IdempotencyKeyInFlight => Some(Refused::KeyInFlight),
            ApiError::IdempotencyKeyReused => Some(Refused::KeyReused),
            ApiError::RateLimited { .. } => Some(Refused::RateLimited),
            ApiError::OverBurst { .. } => Some(Refused::OverBurst),
            ApiError::InflightShareExceeded { .. } => Some(Refused::InflightShare),
            ApiError::Submit(_)
            | ApiError::BodyTimeout(_)
            | ApiError::BodyTooSlow { .. }
            | ApiError::Unauthorized
            | ApiError::Forbidden(_)
            | ApiError::NotFound(_)
            | ApiError::MethodNotAllowed
            | ApiError::Timeout
            | ApiError::ShuttingDown
            | ApiError::BadQuery(_)
            | ApiError::NoSummary(_)
            | ApiError::Busy
            | ApiError::SummaryTooLarge { .. }
            | ApiError::NoSitesFile
            | ApiError::InvalidSitesFile(_)
            | ApiError::Internal
            | ApiError::Status(_) => None,
        }
    }

    /// The `error` code of the body: stable, for clients to branch on.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Decode(DecodeError::UnsupportedMediaType(_)) => "unsupported_media_type",
            ApiError::Decode(DecodeError::Empty) => "no_records",
            ApiError::Decode(DecodeError::TooManyRecords { .. }) => "too_many_records",
            ApiError::Decode(DecodeError::TooManyHours { .. }) => "too_many_hours",
            ApiError::Decode(DecodeError::Malformed { .. }) => "malformed_body",
            ApiError::Decode(DecodeError::Invalid { .. }) => "invalid_records",
            ApiError::BodyTooLarge { .. } => "body_too_large",
            ApiError::UnreadableBody(_) => "unreadable_body",
            ApiError::BodyTimeout(_) => "body_timeout",
            ApiError::BodyTooSlow { .. } => "body_too_slow",
            ApiError::UnsupportedEncoding => "unsupported_content_encoding",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Submit(err) => match err.refusal() {
                Refusal::TimedOut => "timeout",
                Refusal::Overloaded => "overloaded",
                Refusal::ShuttingDown => "shutting_down",
                Refusal::Unavailable => "storage_unavailable",
                Refusal::Partial { .. } => "partially_delivered",
                Refusal::OutcomeUnknown { .. } => "outcome_unknown",
                Refusal::Broken => "internal",
            },
            ApiError::Timeout => "timeout",
            ApiError::ShuttingDown => "shutting_down",
            ApiError::Overloaded => "overloaded",
            ApiError::BadQuery(_) => "invalid_query",
            ApiError::NoSummary(_) => "no_summary",
            ApiError::Busy => "busy",
            ApiError::SummaryTooLarge { .. } => "summary_too_large",
            ApiError::InvalidIdempotencyKey(_) => "invalid_idempotency_key",
            ApiError::IdempotencyKeyInFlight => "idempotency_key_in_flight",
            ApiError::IdempotencyKeyReused => "idempotency_key_reused",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::OverBurst { .. } => "over_burst",
            ApiError::InflightShareExceeded { .. } => "inflight_share_exceeded",
            ApiError::NoSitesFile => "no_sites_file",
            ApiError::InvalidSitesFile(_) => "invalid_sites_file",
            ApiError::Internal => "internal",
            ApiError::Status(_) => "error",
        }
    }

    /// The `message` of the body: what happened and what the client can do.
    fn message(&self) -> String {
        match self {
            ApiError::Decode(DecodeError::UnsupportedMediaType(value)) => format!(
                "unsupported Content-Type: {value}; supported: {}",
                SUPPORTED_MEDIA_TYPES.join(", ")
            ),
            ApiError::Decode(DecodeError::TooManyRecords { max }) => {
                format!("batch has more than {max} records (ingestion.maxRecords)")
            }
            ApiError::Decode(DecodeError::TooManyHours { max }) => format!(
                "batch has records in more than {max} distinct hours (ingestion.maxHoursPerBatch); \
                 nothing from this batch was stored, split it"
            ),
            ApiError::Decode(DecodeError::Invalid { total, errors }) => format!(
                "{total} invalid record field(s); nothing from this batch was stored{}",
                if *total > errors.len() {
                    format!(" (first {} listed)", errors.len())
                } else {
                    String::new()
                }
            ),
            ApiError::Submit(err) => match err.refusal() {
                Refusal::TimedOut => "the batch waited for the store past server.requestTimeout \
                                      and was withdrawn; nothing from it was stored, retry later"
                    .into(),
                Refusal::Overloaded => {
                    "too much pending work; nothing from this batch was stored, retry later".into()
                }
                Refusal::ShuttingDown => {
                    "the service is shutting down; nothing from this batch was stored".into()
                }
                Refusal::Unavailable => "storage is temporarily unavailable; nothing from this \
                                         batch was stored, retry later"
                    .into(),
                Refusal::Partial { delivered, total } => format!(
                    "{delivered} of the batch's {total} records reached Kafka before a failure; \
                     retrying the whole batch without an Idempotency-Key stores those \
                     {delivered} again, with one it stores each record once"
                ),
                Refusal::OutcomeUnknown { .. } => "part of this batch may have been stored and it \
                                                   cannot be known which; a retry without an \
                                                   Idempotency-Key may store those records \
                                                   twice, with one it stores each once"
                    .into(),
                Refusal::Broken => "internal error".into(),
            },
            other => other.to_string(),
        }
    }

    /// The `Retry-After` of the answer, in seconds: when a retry may succeed (a full budget or
    /// queue, a key in flight, a site over its limits).
    fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::RateLimited { retry_after, .. } => Some(*retry_after),
            ApiError::InflightShareExceeded { .. } | ApiError::IdempotencyKeyInFlight => {
                Some(RETRY_AFTER_SECS)
            }
            _ if self.status() == StatusCode::SERVICE_UNAVAILABLE => Some(RETRY_AFTER_SECS),
            _ => None,
        }
    }

    /// The extra fields of the body.
    fn details(&self) -> Value {
        match self {
            ApiError::Decode(DecodeError::Invalid { total, errors }) => {
                json!({"totalErrors": total, "errors": errors})
            }
            ApiError::Decode(DecodeError::Malformed { line, column, .. }) => {
                json!({"line": line, "column": column})
            }
            ApiError::Decode(DecodeError::UnsupportedMediaType(_)) => {
                json!({"supported": SUPPORTED_MEDIA_TYPES})
            }
            ApiError::UnsupportedEncoding => json!({"supported": SUPPORTED_ENCODINGS}),
            ApiError::BodyTooSlow { min_rate, window } => {
                json!({"minBodyRate": min_rate, "windowSeconds": window.as_secs()})
            }
            ApiError::BodyTooLarge { limit, .. } => json!({"limit": limit}),
            ApiError::RateLimited {
                site,
                records_per_second,
                burst,
                retry_after,
            } => json!({
                "site": site,
                "recordsPerSecond": records_per_second,
                "burst": burst,
                "retryAfterSeconds": retry_after
            }),
            ApiError::OverBurst { site, burst, .. } => json!({"site": site, "limit": burst}),
            ApiError::InflightShareExceeded { site, bytes } => {
                json!({"site": site, "limit": bytes})
            }
            ApiError::InvalidSitesFile(problems) => json!({"problems": problems}),
            ApiError::SummaryTooLarge { hour, bytes, limit } => {
                json!({"hour": hour, "bytes": bytes, "limit": limit})
            }
            ApiError::Submit(err) => match err.refusal() {
                Refusal::Partial { delivered, total } => {
                    json!({"deliveredRecords": delivered, "records": total})
                }
                Refusal::OutcomeUnknown {
                    counts:
                        Some(UnknownCounts {
                            delivered,
                            unknown,
                            total,
                        }),
                } => json!({
                    "deliveredRecords": delivered,
                    "unknownRecords": unknown,
                    "records": total
                }),
                _ => json!({}),
            },
            _ => json!({}),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        // Refusals (503) are expected under load and counted in metrics; a flood of them must not
        // flood the log too. Other 5xx are worth a line each.
        if status == StatusCode::SERVICE_UNAVAILABLE {
            tracing::debug!(code = self.code(), error = %self, "request refused");
        } else if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), code = self.code(), error = %self, "request failed");
        }
        let mut body = json!({"error": self.code(), "message": self.message()});
        if let (Value::Object(body), Value::Object(details)) = (&mut body, self.details()) {
            body.extend(details);
        }
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        if let Some(seconds) = self.retry_after() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[cfg(test)]
mod tests;
