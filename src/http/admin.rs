//! `POST /admin/reload`: the sites file read again and put in force, for an operator key (the
//! same as `SIGHUP`, with the outcome in the answer).

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use crate::access::ReloadError;

/// 200 `{"sites": N}` once the new set is in force; 422 `invalid_sites_file` with every problem
/// (the running set kept); 409 `no_sites_file` without `sites.file`.
pub(super) async fn reload(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let reloader = state.reloader.clone();
    // Reads a file: off the async workers.
    let reloaded = tokio::task::spawn_blocking(move || reloader.reload("POST /admin/reload"))
        .await
        .map_err(|_| ApiError::Internal)?;
    match reloaded {
        Ok(sites) => Ok(Json(json!({ "sites": sites }))),
        Err(ReloadError::NoSitesFile) => Err(ApiError::NoSitesFile),
        Err(ReloadError::Invalid(err)) => Err(ApiError::InvalidSitesFile(err.problems().to_vec())),
    }
}
