//! The HTTP API: routes, handlers, middleware, and [`ApiError`], the one type that turns failures
//! into status codes and JSON bodies.
//!
//! | route          | answer |
//! |----------------|--------|
//! | `POST /logs`   | 202 `{"accepted": N}` once stored; 400/401/413/415/503 as JSON errors |
//! | `GET /health`  | 200 `ok` (liveness) |
//! | `GET /ready`   | 200 when the sink can take data, else 503 |
//! | `GET /metrics` | Prometheus text format |
//! | `GET /analytics?hour=H` | that hour's summary, as stored; 404 if none |
//! | `GET /analytics?from=A&to=B&top=N` | one summary merged over `[A, B)` |
//! | `GET /analytics/hours` | the hours that have summaries, with totals |
//!
//! Responses that layers produce without a body (405 from routing, 415 from the decompression
//! layer, the request timeout) get the same JSON error shape in [`json_error_bodies`].

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::{Bytes, BytesMut};
use chrono::DateTime;
use http_body::Body as _;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::{Deserialize, Serialize};
use serde_json::json;
use subtle::ConstantTimeEq;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::decompression::RequestDecompressionLayer;
use tower_http::timeout::TimeoutLayer;

use crate::analytics::query;
use crate::ingest::{self, DecodeError, Format, Limits, RecordError, SUPPORTED_MEDIA_TYPES};
use crate::metrics::{Metrics, UNMATCHED_ROUTE, status_class};
use crate::record::Hour;
use crate::sink::{Sink, SinkError};

/// The routes, used as the bounded `route` label of request metrics.
pub const ROUTES: &[&str] = &[
    "/logs",
    "/health",
    "/ready",
    "/metrics",
    "/analytics",
    "/analytics/hours",
];

/// Request encodings `POST /logs` accepts (`Content-Encoding`).
pub const SUPPORTED_ENCODINGS: &[&str] = &["gzip", "zstd", "identity"];

/// Bodies larger than this are decoded on the blocking pool instead of an async worker.
const INLINE_DECODE_BYTES: usize = 512 * 1024;

/// Seconds a client should wait before retrying after a 503.
const RETRY_AFTER_SECS: u64 = 1;

/// Everything the handlers need; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub sink: Sink,
    pub metrics: Metrics,
    pub limits: Limits,
    pub max_body_bytes: usize,
    pub read_body_timeout: Duration,
    /// Accepted bearer tokens; empty means authentication is off.
    pub tokens: Arc<Vec<String>>,
    /// Set when shutdown begins, so `/ready` turns 503 while requests drain.
    pub shutting_down: Arc<AtomicBool>,
    /// Where the hourly summaries are (`storage.analyticsDir`).
    pub analytics_dir: Arc<PathBuf>,
}

/// Builds the router. `request_timeout` bounds every request end to end.
pub fn router(state: AppState, request_timeout: Duration) -> Router {
    let logs = post(post_logs)
        .layer::<_, Infallible>(DefaultBodyLimit::disable())
        // Decompression sits outside the handler's size limit, so the limit counts decompressed bytes.
        .layer::<_, Infallible>(RequestDecompressionLayer::new().gzip(true).zstd(true))
        .layer::<_, Infallible>(middleware::map_request(normalize_content_encoding))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/logs", logs)
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/analytics", get(get_analytics))
        .route("/analytics/hours", get(get_analytics_hours))
        .fallback(not_found)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            request_timeout,
        ))
        .layer(middleware::map_response(json_error_bodies))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            record_metrics,
        ))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::Internal.into_response()
        }))
        .with_state(state)
}

/// `POST /logs`: decode, validate, store, then answer 202.
async fn post_logs(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let format = Format::from_content_type(content_type)?;
    let bytes = tokio::time::timeout(
        state.read_body_timeout,
        read_body(body, state.max_body_bytes),
    )
    .await
    .map_err(|_| ApiError::BodyTimeout(state.read_body_timeout))??;
    let limits = state.limits;
    let batch = if bytes.len() <= INLINE_DECODE_BYTES {
        ingest::decode(format, &bytes, &limits)?
    } else {
        tokio::task::spawn_blocking(move || ingest::decode(format, &bytes, &limits))
            .await
            .map_err(|_| ApiError::Internal)??
    };
    let records = batch.records();
    // Storing runs in its own task: if the client goes away or the request times out, the batch
    // is still stored or refused as a whole, never cut off half-way.
    let sink = state.sink.clone();
    let stored = tokio::spawn(async move { sink.submit(batch).await })
        .await
        .map_err(|_| ApiError::Internal)?;
    if let Err(SinkError::Overloaded) = &stored {
        state.metrics.overload_rejections.inc();
    }
    stored?;
    state.metrics.batches_received.inc();
    state.metrics.batch_records.observe(records as f64);
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({ "accepted": records })),
    )
        .into_response())
}

/// Reads the (already decompressed) body, refusing more than `limit` bytes. The buffer is sized
/// from `Content-Length` when there is one, so the body is copied once.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let expected = body.size_hint().lower() as usize;
    let mut body = Limited::new(body, limit);
    let mut buffer = BytesMut::with_capacity(expected.min(limit));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|err| {
            if err.downcast_ref::<LengthLimitError>().is_some() {
                ApiError::BodyTooLarge { limit }
            } else {
                ApiError::UnreadableBody(err.to_string())
            }
        })?;
        if let Ok(data) = frame.into_data() {
            buffer.extend_from_slice(&data);
        }
    }
    Ok(buffer.freeze())
}

/// Query parameters of `GET /analytics`.
#[derive(Debug, Deserialize)]
struct AnalyticsParams {
    hour: Option<String>,
    from: Option<String>,
    to: Option<String>,
    top: Option<String>,
}

/// `GET /analytics?hour=H` (one summary, as stored) or `?from=A&to=B[&top=N]` (merged range).
async fn get_analytics(
    State(state): State<AppState>,
    params: Result<Query<AnalyticsParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::BadQuery(e.body_text()))?;
    let dir = state.analytics_dir.clone();
    match (params.hour, params.from, params.to) {
        (Some(hour), None, None) => {
            let hour = parse_hour("hour", &hour)?;
            let file = blocking(move || query::summary_file(&dir, hour)).await?;
            match file {
                Some(bytes) => {
                    Ok(([(header::CONTENT_TYPE, "application/json")], bytes).into_response())
                }
                None => Err(ApiError::NoSummary(format!("no summary for hour {hour}"))),
            }
        }
        (None, Some(from), Some(to)) => {
            let (from, to) = (parse_hour("from", &from)?, parse_hour("to", &to)?);
            let span = to.index() - from.index();
            if span <= 0 || span > query::MAX_RANGE_HOURS {
                return Err(ApiError::BadQuery(format!(
                    "to must be after from and the range at most {} hours",
                    query::MAX_RANGE_HOURS
                )));
            }
            let top = match params.top {
                None => query::DEFAULT_TOP,
                Some(top) => top
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=query::MAX_TOP).contains(n))
                    .ok_or_else(|| {
                        ApiError::BadQuery(format!(
                            "top must be an integer from 1 to {}",
                            query::MAX_TOP
                        ))
                    })?,
            };
            let merged = blocking(move || query::range(&dir, from, to, top)).await?;
            Ok(axum::Json(merged).into_response())
        }
        _ => Err(ApiError::BadQuery(
            "give either hour=<RFC 3339 hour> or from=<hour>&to=<hour> (optional top=N)".into(),
        )),
    }
}

/// `GET /analytics/hours`: every hour that has a summary, with its total.
async fn get_analytics_hours(State(state): State<AppState>) -> Result<Response, ApiError> {
    let dir = state.analytics_dir.clone();
    let hours = blocking(move || query::hours(&dir)).await?;
    Ok(axum::Json(json!({ "hours": hours })).into_response())
}

/// An hour parameter: an RFC 3339 instant at the start of an hour, e.g. `2025-11-22T14:00:00Z`.
fn parse_hour(name: &str, value: &str) -> Result<Hour, ApiError> {
    let instant = DateTime::parse_from_rfc3339(value)
        .map_err(|e| ApiError::BadQuery(format!("{name}: {value:?} is not an RFC 3339 time: {e}")))?
        .to_utc();
    if instant.timestamp() % 3600 != 0 || instant.timestamp_subsec_nanos() != 0 {
        return Err(ApiError::BadQuery(format!(
            "{name}: {value:?} is not the start of an hour (e.g. 2025-11-22T14:00:00Z)"
        )));
    }
    Ok(Hour::of(&instant))
}

/// Runs file reads off the async workers; I/O errors become 500s (logged, not leaked).
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "analytics read failed");
            Err(ApiError::Internal)
        }
        Err(_) => Err(ApiError::Internal),
    }
}

async fn health() -> &'static str {
    "ok"
}

async fn ready(State(state): State<AppState>) -> Response {
    if state.shutting_down.load(Ordering::Relaxed) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "shutting_down"})),
        )
            .into_response();
    }
    if state.sink.is_ready() {
        (StatusCode::OK, axum::Json(json!({"status": "ready"}))).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "not_ready", "reason": "storage cannot take writes"})),
        )
            .into_response()
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        state.metrics.render(),
    )
        .into_response()
}

async fn not_found(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {method} {}", uri.path()))
}

/// Content codings are case-insensitive (RFC 9110 §8.4.1) and `x-gzip` means gzip, but the
/// decompression layer matches exact lowercase names: rewrite the header into that form first.
/// `identity` entries are dropped (no coding).
async fn normalize_content_encoding(mut request: Request) -> Request {
    let Some(value) = request.headers().get(header::CONTENT_ENCODING) else {
        return request;
    };
    let normalized: Vec<String> = String::from_utf8_lossy(value.as_bytes())
        .split(',')
        .map(|coding| coding.trim().to_ascii_lowercase())
        .filter(|coding| !coding.is_empty() && coding != "identity")
        .map(|coding| {
            if coding == "x-gzip" {
                "gzip".to_owned()
            } else {
                coding
            }
        })
        .collect();
    if normalized.is_empty() {
        request.headers_mut().remove(header::CONTENT_ENCODING);
    } else if let Ok(value) = HeaderValue::from_str(&normalized.join(", ")) {
        request
            .headers_mut()
            .insert(header::CONTENT_ENCODING, value);
    }
    request
}

/// Requires `Authorization: Bearer <token>` when tokens are configured. Every configured token is
/// compared in constant time, so the answer time does not reveal how much of a guess matched.
async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if state.tokens.is_empty() {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().as_bytes());
    let Some(presented) = presented else {
        return ApiError::Unauthorized.into_response();
    };
    let matched = state
        .tokens
        .iter()
        .fold(subtle::Choice::from(0), |any, token| {
            any | token.as_bytes().ct_eq(presented)
        });
    if bool::from(matched) {
        next.run(request).await
    } else {
        ApiError::Unauthorized.into_response()
    }
}

/// Records `http_request_duration_seconds` and counts body-caused rejections of `/logs`.
async fn record_metrics(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = ROUTES
        .iter()
        .find(|r| **r == request.uri().path())
        .copied()
        .unwrap_or(UNMATCHED_ROUTE);
    let response = next.run(request).await;
    let status = response.status();
    if route == "/logs"
        && matches!(
            status,
            StatusCode::BAD_REQUEST
                | StatusCode::PAYLOAD_TOO_LARGE
                | StatusCode::UNSUPPORTED_MEDIA_TYPE
        )
    {
        state.metrics.invalid_requests.inc();
    }
    state
        .metrics
        .http_duration
        .with_label_values(&[route, status_class(status.as_u16())])
        .observe(started.elapsed().as_secs_f64());
    response
}

/// Gives bodiless error responses from layers (405, 415, timeouts) the JSON error shape.
async fn json_error_bodies(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || response.headers().contains_key(header::CONTENT_TYPE)
    {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    let replacement = match status {
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedEncoding,
        StatusCode::SERVICE_UNAVAILABLE => ApiError::Timeout,
        _ => ApiError::Status(status),
    }
    .into_response();
    let (new_parts, body) = replacement.into_parts();
    parts.status = new_parts.status;
    parts.headers.extend(new_parts.headers);
    Response::from_parts(parts, body)
}

/// Every way a request can fail, mapped onto a status code and a JSON body
/// `{"error": "<code>", "message": "<text>", ...}`. 5xx bodies never carry internals.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("request body exceeds {limit} bytes after decompression (server.maxBodyBytes)")]
    BodyTooLarge { limit: usize },
    #[error("request body could not be read or decompressed: {0}")]
    UnreadableBody(String),
    #[error("request body was not received within {0:?} (server.readBodyTimeout)")]
    BodyTimeout(Duration),
    #[error("unsupported Content-Encoding")]
    UnsupportedEncoding,
    #[error("missing or invalid bearer token")]
    Unauthorized,
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("request did not complete within server.requestTimeout")]
    Timeout,
    #[error("invalid query: {0}")]
    BadQuery(String),
    #[error("{0}")]
    NoSummary(String),
    #[error("internal error")]
    Internal,
    #[error("{0}")]
    Status(StatusCode),
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ErrorBody<'a> {
    error: &'static str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    total_errors: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<&'a [RecordError]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    column: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    supported: Option<&'static [&'static str]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delivered_records: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    records: Option<usize>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = ErrorBody {
            error: "",
            message: self.to_string(),
            total_errors: None,
            errors: None,
            line: None,
            column: None,
            supported: None,
            delivered_records: None,
            records: None,
        };
        let mut headers = HeaderMap::new();
        let retry_after = HeaderValue::from(RETRY_AFTER_SECS);
        let status = match &self {
            ApiError::Decode(DecodeError::UnsupportedMediaType(value)) => {
                body.error = "unsupported_media_type";
                body.message = format!(
                    "unsupported Content-Type: {value}; supported: {}",
                    SUPPORTED_MEDIA_TYPES.join(", ")
                );
                body.supported = Some(SUPPORTED_MEDIA_TYPES);
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            ApiError::Decode(DecodeError::Empty) => {
                body.error = "no_records";
                StatusCode::BAD_REQUEST
            }
            ApiError::Decode(DecodeError::TooManyRecords { max }) => {
                body.error = "too_many_records";
                body.message = format!("batch has more than {max} records (ingestion.maxRecords)");
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::Decode(DecodeError::Malformed { line, column, .. }) => {
                body.error = "malformed_body";
                body.line = Some(*line);
                body.column = Some(*column);
                StatusCode::BAD_REQUEST
            }
            ApiError::Decode(DecodeError::Invalid { total, errors }) => {
                body.error = "invalid_records";
                body.message = format!(
                    "{total} invalid record field(s); nothing from this batch was stored{}",
                    if *total > errors.len() {
                        format!(" (first {} listed)", errors.len())
                    } else {
                        String::new()
                    }
                );
                body.total_errors = Some(*total);
                body.errors = Some(errors);
                StatusCode::BAD_REQUEST
            }
            ApiError::BodyTooLarge { .. } => {
                body.error = "body_too_large";
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::UnreadableBody(_) => {
                body.error = "unreadable_body";
                StatusCode::BAD_REQUEST
            }
            ApiError::BodyTimeout(_) => {
                body.error = "body_timeout";
                StatusCode::REQUEST_TIMEOUT
            }
            ApiError::UnsupportedEncoding => {
                body.error = "unsupported_content_encoding";
                body.message = format!(
                    "unsupported Content-Encoding; supported: {}",
                    SUPPORTED_ENCODINGS.join(", ")
                );
                body.supported = Some(SUPPORTED_ENCODINGS);
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            ApiError::Unauthorized => {
                body.error = "unauthorized";
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                StatusCode::UNAUTHORIZED
            }
            ApiError::NotFound(_) => {
                body.error = "not_found";
                StatusCode::NOT_FOUND
            }
            ApiError::MethodNotAllowed => {
                body.error = "method_not_allowed";
                StatusCode::METHOD_NOT_ALLOWED
            }
            ApiError::Sink(SinkError::Overloaded) => {
                body.error = "overloaded";
                body.message =
                    "too much pending work; nothing from this batch was stored, retry later".into();
                headers.insert(header::RETRY_AFTER, retry_after);
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Sink(SinkError::Closed) => {
                body.error = "shutting_down";
                body.message =
                    "the service is shutting down; nothing from this batch was stored".into();
                headers.insert(header::RETRY_AFTER, retry_after);
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Sink(SinkError::Unavailable(reason)) => {
                tracing::warn!(%reason, "batch refused: storage unavailable");
                body.error = "storage_unavailable";
                body.message = "storage is temporarily unavailable; nothing from this batch was stored, retry later".into();
                headers.insert(header::RETRY_AFTER, retry_after);
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Sink(SinkError::Partial { delivered, total }) => {
                body.error = "partially_delivered";
                body.message = format!(
                    "{delivered} of the batch's {total} records reached Kafka before a failure; \
                     retrying the whole batch stores those {delivered} again"
                );
                body.delivered_records = Some(*delivered);
                body.records = Some(*total);
                headers.insert(header::RETRY_AFTER, retry_after);
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Timeout => {
                body.error = "timeout";
                headers.insert(header::RETRY_AFTER, retry_after);
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Sink(SinkError::Failed(reason)) => {
                tracing::error!(%reason, "batch failed");
                body.error = "internal";
                body.message = "internal error".into();
                StatusCode::INTERNAL_SERVER_ERROR
            }
            ApiError::BadQuery(_) => {
                body.error = "invalid_query";
                StatusCode::BAD_REQUEST
            }
            ApiError::NoSummary(_) => {
                body.error = "no_summary";
                StatusCode::NOT_FOUND
            }
            ApiError::Internal => {
                body.error = "internal";
                StatusCode::INTERNAL_SERVER_ERROR
            }
            ApiError::Status(status) => {
                body.error = "error";
                body.message = status.canonical_reason().unwrap_or("error").to_owned();
                if *status == StatusCode::SERVICE_UNAVAILABLE {
                    headers.insert(header::RETRY_AFTER, retry_after);
                }
                *status
            }
        };
        (status, headers, axum::Json(body)).into_response()
    }
}
