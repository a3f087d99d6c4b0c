//! The dashboard: one page (`GET /dashboard`; `GET /` redirects there) and its script and style
//! sheet, embedded in the binary from `assets/dashboard/`, so it works with no internet access.
//! The page reads only the analytics API (`/analytics`, `/analytics/hours`, `/analytics/ingest`)
//! with the visitor's token when auth protects it; the assets themselves hold no data and need no
//! token.
//!
//! Caching: every asset carries a strong `ETag` (a CRC-32 of its bytes) with `Cache-Control:
//! no-cache`, so a browser revalidates (304, no body) and a new binary's assets are used at once.

use std::sync::LazyLock;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use super::AppState;

/// One embedded file.
struct Asset {
    body: &'static [u8],
    content_type: &'static str,
    etag: LazyLock<HeaderValue>,
}

macro_rules! asset {
    ($file:literal, $content_type:literal) => {
        Asset {
            body: include_bytes!(concat!("../../assets/dashboard/", $file)),
            content_type: $content_type,
            etag: LazyLock::new(|| {
                let crc =
                    crc32fast::hash(include_bytes!(concat!("../../assets/dashboard/", $file)));
                HeaderValue::from_str(&format!("\"{crc:08x}\"")).expect("an ETag is ASCII")
            }),
        }
    };
}

static PAGE: Asset = asset!("index.html", "text/html; charset=utf-8");
static SCRIPT: Asset = asset!("dashboard.js", "text/javascript; charset=utf-8");
static STYLE: Asset = asset!("dashboard.css", "text/css; charset=utf-8");

/// Only this origin's script, style and API; no inline code, no framing.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// The dashboard's routes (public).
pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::temporary("/dashboard") }))
        .route(
            "/dashboard",
            get(|headers: HeaderMap| async move { serve(&PAGE, &headers) }),
        )
        .route(
            "/dashboard/dashboard.js",
            get(|headers: HeaderMap| async move { serve(&SCRIPT, &headers) }),
        )
        .route(
            "/dashboard/dashboard.css",
            get(|headers: HeaderMap| async move { serve(&STYLE, &headers) }),
        )
}

fn serve(asset: &Asset, request: &HeaderMap) -> Response {
    let etag = &*asset.etag;
    let unchanged = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| {
            tags.split(',')
                .any(|tag| tag.trim() == "*" || tag.trim().as_bytes() == etag.as_bytes())
        });
    let mut response = if unchanged {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, asset.content_type)], asset.body).into_response()
    };
    let headers = response.headers_mut();
    headers.insert(header::ETAG, etag.clone());
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    response
}
