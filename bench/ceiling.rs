//! The ceiling of this machine for `POST /logs`: an axum server that reads each body and answers
//! 202 `{"accepted":0}` without decoding, validating or storing anything. `bench/ingest.sh` loads it
//! at the same concurrency as log-pipeline and the original, so that the figures of both read
//! against what HTTP alone costs here (hey shares the same cores).
//!
//!     cargo build --release --example ceiling && target/release/examples/ceiling 127.0.0.1:18199

use axum::Router;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::{get, post};
use tokio::signal::unix::{SignalKind, signal};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18199".to_owned());
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route(
            "/logs",
            post(|body: Bytes| async move {
                std::hint::black_box(body);
                (StatusCode::ACCEPTED, r#"{"accepted":0}"#)
            }),
        );
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let mut terminate = signal(SignalKind::terminate())?;
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            terminate.recv().await;
        })
        .await
}
