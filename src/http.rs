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
//! | `GET /analytics/ingest` | the ingest counters, for the dashboard's rates |
//! | `GET /`, `GET /dashboard` | the dashboard page and its assets (public: they hold no data) |
//!
//! The analytics handlers are in [`analytics`], the dashboard's assets in [`dashboard`].
//! Responses that layers produce without a body (405 from routing, 415 from the decompression
//! layer, the request timeout) get the same JSON error shape in [`json_error_bodies`].

mod analytics;
mod dashboard;

pub use analytics::{Analytics, MAX_CONCURRENT_QUERIES, SETTLE_TIMEOUT};

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::{Bytes, BytesMut};
use http_body::Body as _;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::decompression::RequestDecompressionLayer;
use tower_http::timeout::TimeoutLayer;

use crate::config::{AuthConfig, Config, Protected};
use crate::ingest::{self, DecodeError, Format, Limits, SUPPORTED_MEDIA_TYPES};
use crate::kafka::ProduceError;
use crate::metrics::{Metrics, UNMATCHED_ROUTE, status_class};
use crate::pipeline::{Pipeline, SubmitError};
use crate::store::StoreError;

/// Request encodings `POST /logs` accepts (`Content-Encoding`).
pub const SUPPORTED_ENCODINGS: &[&str] = &["gzip", "zstd", "identity"];

/// Bodies larger than this are decoded on the blocking pool instead of an async worker.
const INLINE_DECODE_BYTES: usize = 512 * 1024;

/// Seconds a client should wait before retrying after a 503.
const RETRY_AFTER_SECS: u64 = 1;

/// Everything the handlers need; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub pipeline: Arc<Pipeline>,
    pub metrics: Metrics,
    pub limits: Limits,
    pub max_body_bytes: usize,
    pub read_body_timeout: Duration,
    /// Accepted bearer tokens and the routes that need one.
    pub auth: Arc<AuthConfig>,
    /// Set when shutdown begins, so `/ready` turns 503 while requests drain.
    pub shutting_down: Arc<AtomicBool>,
    /// The summaries and the analytics queries' limits.
    pub analytics: Analytics,
}

impl AppState {
    /// The state `config` asks for, around a started pipeline and the aggregator of its files.
    pub fn new(
        config: &Config,
        pipeline: Arc<Pipeline>,
        metrics: Metrics,
        shutting_down: Arc<AtomicBool>,
        analytics: Analytics,
    ) -> AppState {
        AppState {
            pipeline,
            metrics,
            limits: Limits {
                max_records: config.ingestion.max_records,
                max_field_bytes: config.ingestion.max_field_bytes,
            },
            max_body_bytes: config.server.max_body_bytes,
            read_body_timeout: config.server.read_body_timeout,
            auth: Arc::new(config.auth.clone()),
            shutting_down,
            analytics,
        }
    }
}

/// Builds the router. `request_timeout` bounds every request end to end.
pub fn router(state: AppState, request_timeout: Duration) -> Router {
    let logs = post(post_logs)
        .layer::<_, Infallible>(DefaultBodyLimit::disable())
        // Decompression sits outside the handler's size limit, so the limit counts decompressed bytes.
        .layer::<_, Infallible>(RequestDecompressionLayer::new().gzip(true).zstd(true))
        .layer::<_, Infallible>(middleware::map_request(normalize_content_encoding));
    let ingest = Router::new().route("/logs", logs);
    let analytics = Router::new()
        .route("/analytics", get(analytics::get_analytics))
        .route("/analytics/hours", get(analytics::get_analytics_hours))
        .route("/analytics/ingest", get(analytics::get_ingest));
    let metrics = Router::new().route("/metrics", get(metrics));
    // Each group behind the token check when `auth.protect` says so (`/logs` whenever tokens are
    // set); the probes never.
    let protect = |routes: Router<AppState>, group: Protected| {
        if state.auth.protects(group) {
            routes.route_layer(middleware::from_fn_with_state(state.clone(), require_token))
        } else {
            routes
        }
    };
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .merge(dashboard::routes())
        .merge(protect(ingest, Protected::Ingest))
        .merge(protect(analytics, Protected::Analytics))
        .merge(protect(metrics, Protected::Metrics))
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
    if state.shutting_down.load(Ordering::Relaxed) {
        return Err(ApiError::ShuttingDown);
    }
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
    let pipeline = state.pipeline.clone();
    let stored = tokio::spawn(async move { pipeline.submit(batch).await })
        .await
        .map_err(|_| ApiError::Internal)?;
    if let Err(err) = &stored
        && Refusal::of(err) == Refusal::Overloaded
    {
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
    match state.pipeline.readiness() {
        Ok(()) => (StatusCode::OK, axum::Json(json!({"status": "ready"}))).into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "not_ready", "reason": reason})),
        )
            .into_response(),
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

/// Requires `Authorization: Bearer <token>` with one of the configured tokens. Every configured
/// token is compared in constant time, so the answer time does not reveal how much of a guess
/// matched.
async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
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
        .auth
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

/// Records `http_request_duration_seconds` and counts body-caused rejections of `/logs`. The
/// `route` label is the matched route template (bounded), or `unmatched`.
async fn record_metrics(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED_ROUTE, MatchedPath::as_str)
        .to_owned();
    let route = route.as_str();
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
/// `{"error": "<code>", "message": "<text>", ...details}`. 5xx bodies never carry internals; the
/// reason goes to the log.
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
    #[error("unsupported Content-Encoding; supported: {}", SUPPORTED_ENCODINGS.join(", "))]
    UnsupportedEncoding,
    #[error("missing or invalid bearer token")]
    Unauthorized,
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
            ApiError::Decode(DecodeError::TooManyRecords { .. })
            | ApiError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Decode(_) | ApiError::UnreadableBody(_) | ApiError::BadQuery(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) | ApiError::NoSummary(_) => StatusCode::NOT_FOUND,
            ApiError::SummaryTooLarge { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Submit(err)
                if matches!(
                    Refusal::of(err),
                    Refusal::OutcomeUnknown { .. } | Refusal::Broken
                ) =>
            {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            ApiError::Submit(_) | ApiError::Timeout | ApiError::ShuttingDown | ApiError::Busy => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Status(status) => *status,
        }
    }

    /// The `error` code of the body: stable, for clients to branch on.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Decode(DecodeError::UnsupportedMediaType(_)) => "unsupported_media_type",
            ApiError::Decode(DecodeError::Empty) => "no_records",
            ApiError::Decode(DecodeError::TooManyRecords { .. }) => "too_many_records",
            ApiError::Decode(DecodeError::Malformed { .. }) => "malformed_body",
            ApiError::Decode(DecodeError::Invalid { .. }) => "invalid_records",
            ApiError::BodyTooLarge { .. } => "body_too_large",
            ApiError::UnreadableBody(_) => "unreadable_body",
            ApiError::BodyTimeout(_) => "body_timeout",
            ApiError::UnsupportedEncoding => "unsupported_content_encoding",
            ApiError::Unauthorized => "unauthorized",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Submit(err) => match Refusal::of(err) {
                Refusal::Overloaded => "overloaded",
                Refusal::ShuttingDown => "shutting_down",
                Refusal::Unavailable => "storage_unavailable",
                Refusal::Partial { .. } => "partially_delivered",
                Refusal::OutcomeUnknown { .. } => "outcome_unknown",
                Refusal::Broken => "internal",
            },
            ApiError::Timeout => "timeout",
            ApiError::ShuttingDown => "shutting_down",
            ApiError::BadQuery(_) => "invalid_query",
            ApiError::NoSummary(_) => "no_summary",
            ApiError::Busy => "busy",
            ApiError::SummaryTooLarge { .. } => "summary_too_large",
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
            ApiError::Decode(DecodeError::Invalid { total, errors }) => format!(
                "{total} invalid record field(s); nothing from this batch was stored{}",
                if *total > errors.len() {
                    format!(" (first {} listed)", errors.len())
                } else {
                    String::new()
                }
            ),
            ApiError::Submit(err) => match Refusal::of(err) {
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
                     retrying the whole batch stores those {delivered} again"
                ),
                Refusal::OutcomeUnknown { .. } => "part of this batch may have been stored and it \
                                                   cannot be known which; a plain retry may \
                                                   store those records twice"
                    .into(),
                Refusal::Broken => "internal error".into(),
            },
            other => other.to_string(),
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
            ApiError::SummaryTooLarge { hour, bytes, limit } => {
                json!({"hour": hour, "bytes": bytes, "limit": limit})
            }
            ApiError::Submit(err) => match Refusal::of(err) {
                Refusal::Partial { delivered, total } => {
                    json!({"deliveredRecords": delivered, "records": total})
                }
                Refusal::OutcomeUnknown {
                    delivered: Some(delivered),
                    unknown: Some(unknown),
                    total: Some(total),
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

/// What a refused batch means for the client, whichever backend refused it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// Nothing stored; pending work is at its bound.
    Overloaded,
    /// Nothing stored; the service is draining.
    ShuttingDown,
    /// Nothing stored; a write or the broker failed.
    Unavailable,
    /// Part of the batch reached Kafka.
    Partial { delivered: usize, total: usize },
    /// Part of the batch may be stored, and nobody can tell which: a rollback failed (v1), or
    /// records were sent to Kafka without an answer (v2). `delivered` and `unknown` are known
    /// for v2 only.
    OutcomeUnknown {
        delivered: Option<usize>,
        unknown: Option<usize>,
        total: Option<usize>,
    },
    /// The store cannot work at all (cannot happen after start-up).
    Broken,
}

impl Refusal {
    fn of(err: &SubmitError) -> Refusal {
        match err {
            SubmitError::Store(StoreError::Overloaded)
            | SubmitError::Kafka(ProduceError::Overloaded) => Refusal::Overloaded,
            SubmitError::Store(StoreError::Closed) => Refusal::ShuttingDown,
            SubmitError::Store(StoreError::WriteFailed(_))
            | SubmitError::Kafka(ProduceError::Unavailable { .. }) => Refusal::Unavailable,
            SubmitError::Kafka(ProduceError::Partial {
                delivered, total, ..
            }) => Refusal::Partial {
                delivered: *delivered,
                total: *total,
            },
            SubmitError::Kafka(ProduceError::OutcomeUnknown {
                delivered,
                unknown,
                total,
                ..
            }) => Refusal::OutcomeUnknown {
                delivered: Some(*delivered),
                unknown: Some(*unknown),
                total: Some(*total),
            },
            SubmitError::Store(StoreError::Inconsistent(_)) => Refusal::OutcomeUnknown {
                delivered: None,
                unknown: None,
                total: None,
            },
            SubmitError::Store(StoreError::Locked { .. } | StoreError::Open { .. }) => {
                Refusal::Broken
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), code = self.code(), error = %self, "request failed");
        }
        let mut body = json!({"error": self.code(), "message": self.message()});
        if let (Value::Object(body), Value::Object(details)) = (&mut body, self.details()) {
            body.extend(details);
        }
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
