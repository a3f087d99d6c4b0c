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
//! | `GET /analytics/sites` | the sites the key reads, for the dashboard |
//! | `POST /admin/reload` | reloads the sites file: 200 `{"sites": N}`, 422 if invalid, 409 without one |
//! | `GET /`, `GET /dashboard` | the dashboard page and its assets (public: they hold no data) |
//!
//! With sites, the analytics answer for the key's site, or an operator's choice (`?site=`).
//!
//! Which key may use which group of routes is decided once, by [`crate::access::Access::admit`],
//! in the [`require_key`] middleware.
//!
//! `POST /logs` is in [`ingest`] (its `Content-Encoding` in [`encoding`], the pace its body must
//! keep in [`pace`], what it may hold and its site's limits in [`fair_share`]), the analytics handlers in [`analytics`], the dashboard's assets in
//! [`dashboard`], [`ApiError`] in [`error`]. Responses that layers produce without a body (405
//! from routing, the request timeout) get the same JSON error shape in [`json_error_bodies`].
//! The router reaches the pipeline only through [`Intake`], so `router_tests` drive it in
//! process (no socket, no disk) with a stand-in pipeline.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;

mod admin;
mod analytics;
mod dashboard;
mod encoding;
mod error;
mod fair_share;
mod ingest;
mod pace;

pub use analytics::{Analytics, MAX_CONCURRENT_QUERIES, SETTLE_TIMEOUT};
pub use error::ApiError;

use crate::access::{AccessCell, Denied, Reloader, RouteGroup};
use crate::config::Config;
use crate::ingest::Limits;
use crate::metrics::{Metrics, UNMATCHED_ROUTE, status_class};
use crate::pipeline::Intake;

/// Request encodings `POST /logs` accepts (`Content-Encoding`).
pub const SUPPORTED_ENCODINGS: &[&str] = &["gzip", "zstd", "identity"];

/// Everything the handlers need. Handlers and middleware take a clone per request: one `Arc`.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The contents of [`AppState`].
pub struct Shared {
    /// Where accepted batches go (the running [`crate::pipeline::Pipeline`], or a stand-in in
    /// the router's tests).
    pub pipeline: Arc<dyn Intake>,
    pub metrics: Metrics,
    pub limits: Limits,
    pub max_body_bytes: usize,
    pub read_body_timeout: Duration,
    /// `server.minBodyRate`: bytes a second a request body must keep arriving at.
    pub min_body_rate: usize,
    /// `server.requestTimeout`: for `POST /logs`, the time until its batch is handed over.
    pub request_timeout: Duration,
    /// `server.maxInflightBytes`: request bodies being read and decoded, across requests.
    pub inflight: Arc<tokio::sync::Semaphore>,
    /// The whole of [`Shared::inflight`], in bytes.
    pub inflight_bytes: usize,
    /// The keys in force (operator keys, and each site's), replaced whole at a reload.
    pub access: Arc<AccessCell>,
    /// Reloads [`Shared::access`] from the sites file (`SIGHUP`, `POST /admin/reload`).
    pub reloader: Arc<Reloader>,
    /// With sites: each site's records per second and share of [`Shared::inflight`].
    pub fair_share: fair_share::FairShare,
    /// Set when shutdown begins, so `/ready` turns 503 while requests drain.
    pub shutting_down: Arc<AtomicBool>,
    /// The analytics the queries read (brought up to date as they are asked).
    pub analytics: Analytics,
}

impl AppState {
    /// The state `config` asks for, around a started pipeline.
    pub fn new(
        config: &Config,
        pipeline: Arc<dyn Intake>,
        metrics: Metrics,
        shutting_down: Arc<AtomicBool>,
        analytics: Analytics,
        access: Arc<AccessCell>,
    ) -> AppState {
        let inflight_bytes =
            (config.server.max_inflight_bytes).min(tokio::sync::Semaphore::MAX_PERMITS);
        AppState(Arc::new(Shared {
            pipeline,
            metrics: metrics.clone(),
            limits: Limits::from_config(&config.ingestion),
            max_body_bytes: config.server.max_body_bytes,
            read_body_timeout: config.server.read_body_timeout,
            min_body_rate: config.server.min_body_rate,
            request_timeout: config.server.request_timeout,
            inflight: Arc::new(tokio::sync::Semaphore::new(inflight_bytes)),
            inflight_bytes,
            reloader: Arc::new(Reloader::new(access.clone(), config, metrics.clone())),
            fair_share: fair_share::FairShare::new(inflight_bytes),
            access,
            shutting_down,
            analytics,
        }))
    }
}

/// Builds the router. `request_timeout` bounds every request end to end, except `POST /logs`,
/// whose batch, once handed over, is answered with its real outcome (see [`ingest`]).
pub fn router(state: AppState, request_timeout: Duration) -> Router {
    let logs = post(ingest::post_logs).layer::<_, Infallible>(DefaultBodyLimit::disable());
    let logs = Router::new().route("/logs", logs);
    let analytics = Router::new()
        .route("/analytics", get(analytics::get_analytics))
        .route("/analytics/hours", get(analytics::get_analytics_hours))
        .route("/analytics/ingest", get(analytics::get_ingest))
        .route("/analytics/sites", get(analytics::get_sites));
    let metrics = Router::new().route("/metrics", get(metrics));
    let admin = Router::new().route("/admin/reload", post(admin::reload));
    // Each group behind the key check, which asks the keys in force whether the group needs one
    // (see [`crate::access::Access::protects`]); the probes never.
    let protect = |routes: Router<AppState>, group: RouteGroup| {
        routes.route_layer(middleware::from_fn_with_state(
            (state.clone(), group),
            require_key,
        ))
    };
    let timed = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .merge(dashboard::routes())
        .merge(protect(analytics, RouteGroup::Analytics))
        .merge(protect(metrics, RouteGroup::Metrics))
        .merge(protect(admin, RouteGroup::Admin))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            request_timeout,
        ));
    // Outermost on `/logs`: answers given before the body was read are heard by the client.
    let logs = protect(logs, RouteGroup::Ingest).layer(middleware::from_fn(ingest::linger));
    Router::new()
        .merge(timed)
        .merge(logs)
        .fallback(not_found)
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

/// Resolves the request's key to its [`crate::access::Role`] on `group`, which the handlers read
/// from the request's extensions, against the keys in force when it arrived
/// ([`AccessCell::current`]): a request in flight keeps its role through a reload. Whether the
/// role may use the group is [`crate::access::Access::admit`]'s decision: 401 without a key in
/// force, 403 for a role the group is not for. Routes of a `group` that needs no key (no tokens,
/// no sites, or not in `auth.protect`) are served as the operator, as they were before keys.
async fn require_key(
    State((state, group)): State<(AppState, RouteGroup)>,
    mut request: Request,
    next: Next,
) -> Response {
    let access = state.access.current();
    let role = match access.admit(group, bearer_token(request.headers())) {
        Ok(role) => role,
        Err(Denied::Unauthorized) => return ApiError::Unauthorized.into_response(),
        Err(Denied::Forbidden(why)) => return ApiError::Forbidden(why).into_response(),
    };
    request.extensions_mut().insert(role);
    request.extensions_mut().insert(access);
    next.run(request).await
}

/// The token of `Authorization: Bearer <token>` (scheme in any case), trimmed. The header must be
/// visible ASCII text: [`crate::config::check_token`] accepts at start-up exactly the tokens that
/// can be presented this way (checked by `accepted_tokens_are_the_ones_a_client_can_present`).
fn bearer_token(headers: &axum::http::HeaderMap) -> Option<&[u8]> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().as_bytes())
}

/// Records `http_request_duration_seconds`. The `route` label is the matched route template
/// (bounded), or `unmatched`. (Refusals of `/logs` are counted by their kind where they are
/// decided, in [`ingest`].)
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
    state
        .metrics
        .http_duration
        .with_label_values(&[route, status_class(status.as_u16())])
        .observe(started.elapsed().as_secs_f64());
    response
}

/// Gives bodiless error responses from layers (405, timeouts) the JSON error shape.
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
        StatusCode::SERVICE_UNAVAILABLE => ApiError::Timeout,
        _ => ApiError::Status(status),
    }
    .into_response();
    let (new_parts, body) = replacement.into_parts();
    parts.status = new_parts.status;
    parts.headers.extend(new_parts.headers);
    Response::from_parts(parts, body)
}

#[cfg(test)]
mod router_tests;

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue, header};
    use proptest::prelude::*;

    use super::bearer_token;
    use crate::config::check_token;

    /// Whether `token` can be presented: a client can send the header (hyper takes what
    /// `HeaderValue::from_bytes` takes: no control byte but tab, no DEL), and the middleware then
    /// reads exactly `token` from it.
    fn presentable(token: &str) -> bool {
        let Ok(value) = HeaderValue::from_bytes(format!("Bearer {token}").as_bytes()) else {
            return false;
        };
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, value);
        bearer_token(&headers) == Some(token.as_bytes())
    }

    proptest! {
        #[test]
        fn accepted_tokens_are_the_ones_a_client_can_present(
            token in prop_oneof![
                any::<String>(),
                "[ -~\t]{0,12}",
                "[ -~\t\u{7f}\u{80}-\u{ff}é\u{a0}\u{2003}\r\n]{0,12}",
            ]
        ) {
            // A blank entry could be "presented" as an empty token, but is refused as a mistake.
            let expected = presentable(&token) && !token.trim().is_empty();
            prop_assert_eq!(check_token(&token).is_ok(), expected, "{:?}", token);
        }
    }

    #[test]
    fn the_reported_tokens_are_refused_and_ordinary_ones_accepted() {
        for refused in ["tökén-1", "del\u{7f}in-it", " padded", "padded\t"] {
            assert!(check_token(refused).is_err(), "{refused:?}");
            assert!(!presentable(refused), "{refused:?}");
        }
        assert!(check_token("").is_err() && check_token("  ").is_err());
        for accepted in ["t0k3n", "two words", "tab\there~!", "a:b/c+d=="] {
            assert!(check_token(accepted).is_ok(), "{accepted:?}");
            assert!(presentable(accepted), "{accepted:?}");
        }
    }
}
