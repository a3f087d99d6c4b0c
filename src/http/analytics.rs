//! The analytics routes: `GET /analytics?hour`, `?from&to&top`, `/analytics/hours`,
//! `/analytics/ingest` (the ingest figures, [`crate::analytics::ingest_figures`]) and
//! `/analytics/sites`.
//!
//! Whose data each answers for is the key's ([`scope`]): a site's read key its site's, an operator
//! the site `?site=` names or every site (then the answer's fields are the totals over every site,
//! and `"sites"` lists each site's own), without sites the whole data. Each root has its own
//! aggregator ([`Aggregators`]).
//!
//! Every answer is never stale: it waits (at most [`SETTLE_TIMEOUT`]) until every batch this
//! process acknowledged is in the hour files (v2: the consumers stored it; v1 stores before it
//! acknowledges), then brings the hours it reads up to date through the shared [`Aggregator`],
//! then reads the summaries. An answer given before everything was stored says `"complete":
//! false`.
//!
//! Bounded: at most [`MAX_CONCURRENT_QUERIES`] run at once (beyond that 503 `busy` with
//! `Retry-After`), of which at most [`MAX_CONCURRENT_LONG_QUERIES`] read more than
//! [`SHORT_QUERY_HOURS`] hours (a range over more, or `/analytics/hours`), so that clients
//! holding slots with long queries never leave a short one (an hour, a day) without a slot; summaries larger than `aggregation.maxSummaryBytes` lets an aggregator write
//! are refused (422 `summary_too_large`), a range merges within the same bytes (`"truncated":
//! true` beyond), and a query's blocking work stops between hours once its request is gone (timed
//! out, or the client left): the request's future holds a guard that cancels it when dropped. A
//! slot is held only while the query's blocking work runs: not while the answer is written (a
//! client that never reads its answer holds no slot; an hour's summary is streamed from its file,
//! so such a client holds no copy of it either), nor while a v2 request waits for its batches to
//! be stored.
//!
//! The summaries are read after their update, outside the aggregator's lock: a summary is never
//! replaced by one covering less, so what is read covers at least what the update saw.

use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::DateTime;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::io::ReaderStream;

use super::{ApiError, AppState};
use crate::access::{Access, Role};
use crate::analytics::bots::BotClassifier;
use crate::analytics::ingest_figures::IngestFigures;
use crate::analytics::query::{self, QueryError};
use crate::analytics::{Aggregator, Aggregators, CancelFlag};
use crate::record::Hour;
use crate::site::SiteId;
use scope::{Scope, SiteParam};

mod scope;

pub(super) use scope::get_sites;

/// Longest an analytics request waits for acknowledged batches to reach the hour files (v2).
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(2);

/// Analytics requests that read summaries at once, per process; more get 503 `busy`.
pub const MAX_CONCURRENT_QUERIES: usize = 4;

/// Of [`MAX_CONCURRENT_QUERIES`], how many may be long (more than [`SHORT_QUERY_HOURS`] hours);
/// the others are kept for short queries.
pub const MAX_CONCURRENT_LONG_QUERIES: usize = 3;

/// The most hours a short query reads: one day's range.
pub const SHORT_QUERY_HOURS: i64 = 24;

/// What the analytics routes share: the aggregators (one per site), the query slots and the
/// ingest figures.
#[derive(Clone)]
pub struct Analytics {
    pub aggregators: Arc<Aggregators>,
    slots: Arc<Semaphore>,
    /// Taken by long queries besides a slot.
    long_slots: Arc<Semaphore>,
    ingest: Arc<IngestFigures>,
}

impl Analytics {
    pub fn new(aggregators: Arc<Aggregators>, ingest: Arc<IngestFigures>) -> Analytics {
        Analytics {
            aggregators,
            slots: Arc::new(Semaphore::new(MAX_CONCURRENT_QUERIES)),
            long_slots: Arc::new(Semaphore::new(MAX_CONCURRENT_LONG_QUERIES)),
            ingest,
        }
    }
}

/// How many hours a query reads, for its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Length {
    /// At most [`SHORT_QUERY_HOURS`].
    Short,
    Long,
}

impl Length {
    fn of_hours(hours: i64) -> Length {
        if hours <= SHORT_QUERY_HOURS {
            Length::Short
        } else {
            Length::Long
        }
    }
}

/// A query slot (and, for a long query, a long one), held until its blocking work ends.
struct Slot {
    _any: OwnedSemaphorePermit,
    _long: Option<OwnedSemaphorePermit>,
}

/// Query parameters of `GET /analytics`.
#[derive(Debug, Deserialize)]
pub(super) struct AnalyticsParams {
    hour: Option<String>,
    from: Option<String>,
    to: Option<String>,
    top: Option<String>,
    site: Option<String>,
}

/// `GET /analytics?hour=H` (one summary, as stored; with `"complete": false` added when not
/// everything acknowledged was stored in time) or `?from=A&to=B[&top=N]` (merged range), of the
/// key's site, or the one `site=` names, or every site.
pub(super) async fn get_analytics(
    State(state): State<AppState>,
    Extension(role): Extension<Role>,
    Extension(access): Extension<Arc<Access>>,
    params: Result<Query<AnalyticsParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::BadQuery(e.body_text()))?;
    let scope = Scope::of(&role, &access, params.site.as_deref())?;
    match (params.hour, params.from, params.to) {
        (Some(hour), None, None) => {
            let Scope::One(root) = scope else {
                return Err(ApiError::BadQuery(
                    "hour: an hour's summary is one site's: give site=<id>, or ask for every \
                     site's range with from=<hour>&to=<hour>"
                        .into(),
                ));
            };
            hour_answer(&state, root, parse_hour("hour", &hour)?).await
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
            let top = parse_top(params.top)?;
            let roots = scope.roots();
            // Every site's range reads each site's hours.
            let length = Length::of_hours(span.saturating_mul(roots.len().max(1) as i64));
            let bounds = state.analytics.aggregators.bounds();
            let (complete, ranged) = read(&state, length, &roots, move |aggregators, cancel| {
                for aggregator in aggregators {
                    aggregator
                        .update_hours((from.index()..to.index()).map(Hour::from_index), cancel)?;
                }
                let dirs: Vec<_> = aggregators.iter().map(|a| a.analytics_dir()).collect();
                let classifier = BotClassifier::embedded();
                query::range(&dirs, (from, to), top, bounds, classifier, cancel)
            })
            .await?;
            let mut body = serde_json::to_value(ranged.summary).map_err(|_| ApiError::Internal)?;
            body["complete"] = Value::Bool(complete);
            if let Some(sites) = scope.per_site(ranged.roots) {
                body["sites"] = serde_json::to_value(sites).map_err(|_| ApiError::Internal)?;
            }
            Ok(axum::Json(body).into_response())
        }
        _ => Err(ApiError::BadQuery(
            "give either hour=<RFC 3339 hour> or from=<hour>&to=<hour> (optional top=N)".into(),
        )),
    }
}

/// The `top` parameter: [`query::DEFAULT_TOP`] when absent.
fn parse_top(top: Option<String>) -> Result<usize, ApiError> {
    let Some(top) = top else {
        return Ok(query::DEFAULT_TOP);
    };
    top.parse::<usize>()
        .ok()
        .filter(|n| (1..=query::MAX_TOP).contains(n))
        .ok_or_else(|| {
            ApiError::BadQuery(format!(
                "top must be an integer from 1 to {}",
                query::MAX_TOP
            ))
        })
}

/// The summary of `hour` in `root`, as stored (streamed from its file), or with `"complete":
/// false` added when not everything acknowledged was stored in time.
async fn hour_answer(
    state: &AppState,
    root: Option<SiteId>,
    hour: Hour,
) -> Result<Response, ApiError> {
    let (complete, file) = read(state, Length::Short, &[root], move |aggregators, cancel| {
        let aggregator = &aggregators[0];
        aggregator.update_hours([hour], cancel)?;
        let limit = aggregator.bounds().max_file_bytes();
        query::open_summary(aggregator.analytics_dir(), hour, limit)
    })
    .await?;
    let Some((file, length)) = file else {
        return Err(ApiError::NoSummary(format!("no summary for hour {hour}")));
    };
    let mut file = tokio::fs::File::from_std(file);
    if complete {
        // Streamed: a client that reads slowly (or never) holds a buffer, not the summary.
        let body = Body::from_stream(ReaderStream::new(file));
        let headers = [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (header::CONTENT_LENGTH, length.to_string()),
        ];
        return Ok((headers, body).into_response());
    }
    let mut bytes = Vec::with_capacity(length as usize);
    (&mut file)
        .take(length)
        .read_to_end(&mut bytes)
        .await
        .map_err(|_| ApiError::Internal)?;
    let mut summary: Value = serde_json::from_slice(&bytes).map_err(|_| ApiError::Internal)?;
    summary["complete"] = Value::Bool(false);
    let bytes = serde_json::to_vec_pretty(&summary).map_err(|_| ApiError::Internal)?;
    Ok(([(header::CONTENT_TYPE, "application/json")], bytes).into_response())
}

/// `GET /analytics/hours`: every hour that has data, with its totals (every hour file is brought
/// up to date first); over every site, the hours' totals summed and each site's totals.
pub(super) async fn get_analytics_hours(
    State(state): State<AppState>,
    Extension(role): Extension<Role>,
    Extension(access): Extension<Arc<Access>>,
    params: Result<Query<SiteParam>, QueryRejection>,
) -> Result<Response, ApiError> {
    let scope = Scope::of(&role, &access, scope::site_param(params)?.as_deref())?;
    let (complete, (hours, per_root)) = read(
        &state,
        Length::Long,
        &scope.roots(),
        |aggregators, cancel| {
            for aggregator in aggregators {
                aggregator.update_all_hours(cancel)?;
            }
            let dirs: Vec<_> = aggregators.iter().map(|a| a.analytics_dir()).collect();
            query::hours(&dirs, cancel)
        },
    )
    .await?;
    let mut body = json!({ "hours": hours, "complete": complete });
    if let Some(sites) = scope.per_site(per_root) {
        body["sites"] = serde_json::to_value(sites).map_err(|_| ApiError::Internal)?;
    }
    Ok(axum::Json(body).into_response())
}

/// `GET /analytics/ingest`: the ingest figures for the dashboard: records stored per second and
/// since start, batches accepted, requests refused; with `storage.backend: s3`, of every instance
/// writing to the bucket (see [`crate::analytics::ingest_figures`]). They are counted for the
/// whole service, not per site: so an operator's only (a read key gets 403, `site=` is 400).
pub(super) async fn get_ingest(
    State(state): State<AppState>,
    Extension(role): Extension<Role>,
    params: Result<Query<SiteParam>, QueryRejection>,
) -> Result<Response, ApiError> {
    if role != Role::Operator {
        return Err(ApiError::Forbidden(
            "the ingest figures are counted for the whole service, not per site: a site's \
             read key reads its site's analytics (GET /analytics, /analytics/hours)",
        ));
    }
    if scope::site_param(params)?.is_some() {
        return Err(ApiError::BadQuery(
            "site: the ingest figures are counted for the whole service, not per site; ask \
             without site"
                .into(),
        ));
    }
    Ok(axum::Json(state.analytics.ingest.answer().await).into_response())
}

/// Runs `work` on the blocking pool for an analytics answer over the aggregators of `roots`: waits for acknowledged batches to
/// be stored (whether they all were is the returned `bool`), then takes a query slot or refuses
/// with `busy` (so waiting holds no slot), and cancels `work` between hours if this future is
/// dropped.
async fn read<T: Send + 'static>(
    state: &AppState,
    length: Length,
    roots: &[Option<SiteId>],
    work: impl FnOnce(&[Arc<Aggregator>], &CancelFlag) -> Result<T, QueryError> + Send + 'static,
) -> Result<(bool, T), ApiError> {
    let complete = state.pipeline.settle(SETTLE_TIMEOUT).await;
    let slot = take_slot(state, length)?;
    if !complete {
        state.metrics.analytics_incomplete_answers.inc();
    }
    let cancel = CancelFlag::new();
    let _cancel_on_drop = cancel.cancel_on_drop();
    // Made here, in the runtime's context (a bucket source keeps the runtime it is made in).
    let aggregators: Vec<_> = (roots.iter())
        .map(|root| state.analytics.aggregators.get(root.as_ref()))
        .collect();
    let cancelled = state.metrics.analytics_queries_cancelled.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        // The slot is held until the blocking work ends, not just until the request does: a
        // cancelled query still counts until it has stopped.
        let _slot: Slot = slot;
        let outcome = work(&aggregators, &cancel);
        if matches!(outcome, Err(QueryError::Cancelled(_))) {
            cancelled.inc();
        }
        outcome
    })
    .await
    .map_err(|_| ApiError::Internal)?;
    match outcome {
        Ok(value) => Ok((complete, value)),
        Err(QueryError::SummaryTooLarge { hour, bytes, limit }) => {
            Err(ApiError::SummaryTooLarge { hour, bytes, limit })
        }
        // Nobody hears this answer: the request is gone.
        Err(QueryError::Cancelled(_)) => Err(ApiError::Timeout),
        Err(QueryError::Io(e)) => {
            tracing::error!(error = %e, "analytics read failed");
            Err(ApiError::Internal)
        }
    }
}

/// A slot for a query of `length`, or `busy`: a long query needs a long slot too.
fn take_slot(state: &AppState, length: Length) -> Result<Slot, ApiError> {
    let analytics = &state.analytics;
    let busy = |_| {
        state.metrics.analytics_queries_busy.inc();
        ApiError::Busy
    };
    let long = match length {
        Length::Short => None,
        Length::Long => Some(
            analytics
                .long_slots
                .clone()
                .try_acquire_owned()
                .map_err(busy)?,
        ),
    };
    let any = analytics.slots.clone().try_acquire_owned().map_err(busy)?;
    Ok(Slot {
        _any: any,
        _long: long,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropping_the_guard_cancels_the_work() {
        let cancel = CancelFlag::new();
        let guard = cancel.cancel_on_drop();
        assert!(cancel.check().is_ok());
        drop(guard);
        assert!(cancel.check().is_err());
    }
}
