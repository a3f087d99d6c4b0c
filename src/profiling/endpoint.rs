//! `PROFILE_ENABLED=1`: the `/debug/pprof/` listener, apart from the service's own so that
//! profiles are never exposed on the API's address and the API's `/metrics` and middleware are
//! untouched.
//!
//! | route | answer |
//! |---|---|
//! | `/debug/pprof/` | this list, as text |
//! | `/debug/pprof/profile?seconds=N` | CPU profile over N seconds (1 to 60, default 30), gzipped pprof |
//! | `/debug/pprof/flamegraph?seconds=N` | the same samples as an SVG flamegraph |
//! | `/debug/pprof/heap` | live sampled heap, gzipped pprof |
//! | `/debug/pprof/goroutine` | tokio task dump, text |
//!
//! One CPU profile (or flamegraph) at a time: another while one runs is 409. Errors are JSON
//! `{"error": code, "message": text}` like the API's.

use std::time::Duration;

use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use tokio::net::TcpListener;

use super::cpu::{CpuError, CpuProfile};
use super::heap::{self, HeapError};
use super::tasks::{self, TaskDumpError};

/// `seconds` when the request gives none (as Go's net/http/pprof).
pub const DEFAULT_SECONDS: u64 = 30;
/// Longest CPU profile one request may ask for.
pub const MAX_SECONDS: u64 = 60;

const INDEX: &str = "\
log-pipeline profiles (PROFILE_ENABLED=1)

/debug/pprof/profile?seconds=N     CPU profile over N seconds (1-60, default 30), gzipped pprof
/debug/pprof/flamegraph?seconds=N  the same as an SVG flamegraph
/debug/pprof/heap                  live heap (jemalloc sampling), gzipped pprof
/debug/pprof/goroutine             tokio task dump: every task's async stack, text

go tool pprof -http=:8085 http://HOST:PORT/debug/pprof/profile?seconds=30
";

/// The profiling routes, without a socket (for tests).
pub fn router() -> Router {
    Router::new()
        .route("/debug/pprof", get(index))
        .route("/debug/pprof/", get(index))
        .route("/debug/pprof/profile", get(cpu_profile))
        .route("/debug/pprof/flamegraph", get(flamegraph))
        .route("/debug/pprof/heap", get(heap_profile))
        .route("/debug/pprof/goroutine", get(task_dump))
        .fallback(not_found)
}

/// Serves [`router`] on `listener` on a task of its own, for the rest of the process's life.
pub fn spawn(listener: TcpListener) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "profiling endpoint listening (PROFILE_ENABLED): /debug/pprof/");
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, router()).await {
            tracing::error!(error = %err, "profiling endpoint stopped");
        }
    });
    Ok(())
}

/// What a profiling request can fail with.
#[derive(Debug, thiserror::Error)]
enum DebugError {
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Cpu(#[from] CpuError),
    #[error(transparent)]
    Heap(#[from] HeapError),
    #[error(transparent)]
    Tasks(#[from] TaskDumpError),
    #[error("the profiler task failed")]
    Join(#[from] tokio::task::JoinError),
}

impl IntoResponse for DebugError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            DebugError::BadRequest(_) => (StatusCode::BAD_REQUEST, "invalid_seconds"),
            DebugError::Cpu(CpuError::Busy) => (StatusCode::CONFLICT, "profile_in_progress"),
            DebugError::Tasks(TaskDumpError::TimedOut(_)) => {
                (StatusCode::SERVICE_UNAVAILABLE, "task_dump_timeout")
            }
            DebugError::Heap(HeapError::Unavailable) | DebugError::Tasks(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "profile_unavailable")
            }
            DebugError::Cpu(_) | DebugError::Heap(_) | DebugError::Join(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "profile_failed")
            }
        };
        if status.is_server_error() {
            tracing::warn!(error = %self, "profiling request failed");
        }
        let body = serde_json::json!({ "error": code, "message": self.to_string() });
        (status, Json(body)).into_response()
    }
}

#[derive(Debug, Deserialize)]
struct SecondsQuery {
    seconds: Option<String>,
}

/// `?seconds=N`, a whole number from 1 to [`MAX_SECONDS`]; [`DEFAULT_SECONDS`] when absent.
fn seconds(query: Result<Query<SecondsQuery>, QueryRejection>) -> Result<Duration, DebugError> {
    let query = query.map_err(|err| DebugError::BadRequest(err.body_text()))?;
    let Some(value) = query.0.seconds else {
        return Ok(Duration::from_secs(DEFAULT_SECONDS));
    };
    match value.trim().parse::<u64>() {
        Ok(seconds) if (1..=MAX_SECONDS).contains(&seconds) => Ok(Duration::from_secs(seconds)),
        _ => Err(DebugError::BadRequest(format!(
            "seconds must be a whole number from 1 to {MAX_SECONDS}, got {value:?}"
        ))),
    }
}

/// Profiles the CPU for `duration`, then renders the samples with `render` off the async workers.
/// Dropping the future (the client went away) stops the profiler.
async fn sample_cpu(
    duration: Duration,
    render: fn(&CpuProfile) -> Result<Vec<u8>, CpuError>,
) -> Result<Vec<u8>, DebugError> {
    let profile = CpuProfile::start()?;
    tokio::time::sleep(duration).await;
    let rendered = tokio::task::spawn_blocking(move || render(&profile)).await??;
    Ok(rendered)
}

/// A gzipped pprof protobuf, served as Go's net/http/pprof serves it.
fn pprof_file(disposition: &'static str, body: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CONTENT_DISPOSITION, disposition),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

async fn index() -> &'static str {
    INDEX
}

async fn cpu_profile(
    query: Result<Query<SecondsQuery>, QueryRejection>,
) -> Result<Response, DebugError> {
    let body = sample_cpu(seconds(query)?, CpuProfile::pprof).await?;
    Ok(pprof_file("attachment; filename=\"profile\"", body))
}

async fn flamegraph(
    query: Result<Query<SecondsQuery>, QueryRejection>,
) -> Result<Response, DebugError> {
    let svg = sample_cpu(seconds(query)?, CpuProfile::flamegraph).await?;
    Ok(([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response())
}

async fn heap_profile() -> Result<Response, DebugError> {
    let body = tokio::task::spawn_blocking(heap::dump_pprof).await??;
    Ok(pprof_file("attachment; filename=\"heap\"", body))
}

async fn task_dump() -> Result<Response, DebugError> {
    let text = tasks::dump(tasks::DUMP_TIMEOUT).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

async fn not_found() -> Response {
    let body = serde_json::json!({
        "error": "not_found",
        "message": "no such profile; GET /debug/pprof/ lists them",
    });
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}
