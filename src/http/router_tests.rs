//! The router in process (axum's `oneshot`, no socket), over a stand-in pipeline ([`StandIn`])
//! and aggregators that are never asked to read (no disk; the sites' analytics, in `sites`, read
//! files they write): every answer of `POST /logs`, `/ready`
//! in each state, the routes' JSON errors, and the counters each refusal moves. The real-process
//! tests (`tests/api/`) check the same API over HTTP against the real pipelines.

mod access;
mod ingest;
mod routes;
mod site_analytics;
mod sites;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use futures_util::future::BoxFuture;
use serde_json::Value;
use tower::ServiceExt;

use super::{Analytics, AppState, router};
use crate::access::{Access, AccessCell};
use crate::analytics::ingest_figures::IngestFigures;
use crate::analytics::{Aggregator, Aggregators, Bounds};
use crate::config::Config;
use crate::idempotency::{Fingerprint, Key};
use crate::layout;
use crate::metrics::Metrics;
use crate::pipeline::{Intake, KeyedOutcome, Refusal, SubmitError};
use crate::record::EncodedBatch;
use crate::site::SiteId;

/// What the stand-in does with the next batches.
#[derive(Debug, Clone, Copy)]
enum Answer {
    /// Stores them (a keyed one: [`KeyedOutcome::Stored`]).
    Store,
    /// Answers a keyed batch with this outcome (an unkeyed one is stored).
    Keyed(KeyedOutcome),
    /// Refuses them.
    Refuse(Refusal),
    /// Panics while handling them.
    Panic,
}

/// A batch the stand-in was handed.
#[derive(Debug, PartialEq)]
struct Handed {
    /// The site it was handed for.
    site: Option<SiteId>,
    /// Its stored lines, in order.
    lines: String,
    keyed: Option<(Key, Fingerprint)>,
}

/// A pipeline that answers as told and remembers what it was handed.
struct StandIn {
    answer: Mutex<Answer>,
    readiness: Mutex<Result<(), &'static str>>,
    /// Whether [`Intake::settle`] never completes (a v2 whose consumers are far behind).
    settle_hangs: AtomicBool,
    handed: Mutex<Vec<Handed>>,
}

impl StandIn {
    fn take(
        &self,
        site: Option<SiteId>,
        batch: EncodedBatch,
        keyed: Option<(Key, Fingerprint)>,
    ) -> Answer {
        let lines = batch
            .chunks
            .iter()
            .map(|chunk| String::from_utf8(chunk.lines.clone()).unwrap())
            .collect();
        (self.handed.lock().unwrap()).push(Handed { site, lines, keyed });
        let answer = *self.answer.lock().unwrap();
        if let Answer::Panic = answer {
            panic!("the stand-in pipeline was told to panic");
        }
        answer
    }

    fn handed(&self) -> Vec<Handed> {
        std::mem::take(&mut *self.handed.lock().unwrap())
    }
}

fn refused(refusal: Refusal) -> SubmitError {
    SubmitError::new(refusal, "the stand-in pipeline was told to refuse")
}

impl Intake for StandIn {
    fn submit(
        &self,
        site: Option<SiteId>,
        batch: EncodedBatch,
        _: Instant,
    ) -> BoxFuture<'_, Result<(), SubmitError>> {
        let answer = self.take(site, batch, None);
        Box::pin(async move {
            match answer {
                Answer::Refuse(refusal) => Err(refused(refusal)),
                _ => Ok(()),
            }
        })
    }

    fn submit_keyed(
        &self,
        site: Option<SiteId>,
        batch: EncodedBatch,
        key: Key,
        fingerprint: Fingerprint,
        _: Instant,
    ) -> BoxFuture<'_, Result<KeyedOutcome, SubmitError>> {
        let answer = self.take(site, batch, Some((key, fingerprint)));
        Box::pin(async move {
            match answer {
                Answer::Refuse(refusal) => Err(refused(refusal)),
                Answer::Keyed(outcome) => Ok(outcome),
                _ => Ok(KeyedOutcome::Stored),
            }
        })
    }

    fn settle(&self, _: Duration) -> BoxFuture<'_, bool> {
        let hangs = self.settle_hangs.load(Ordering::Relaxed);
        Box::pin(async move {
            if hangs {
                std::future::pending::<()>().await;
            }
            true
        })
    }

    fn readiness(&self) -> Result<(), &'static str> {
        let readiness = *self.readiness.lock().unwrap();
        if readiness == Err("panic") {
            panic!("the stand-in pipeline was told to panic");
        }
        readiness
    }
}

/// The router of a configuration, over a [`StandIn`].
struct Api {
    /// The keys in force, which a test may replace as a reload does.
    access: Arc<AccessCell>,
    router: Router,
    pipeline: Arc<StandIn>,
    metrics: Metrics,
    shutting_down: Arc<AtomicBool>,
}

/// The aggregators behind the analytics routes, over directories that do not exist, since no
/// test here lets them read (see `sites` for those that do).
fn aggregators() -> Arc<Aggregators> {
    aggregators_in(PathBuf::from("/nonexistent/log-pipeline-router-tests"))
}

/// The aggregators of the hour files below `root/logs`, with summaries below `root/analytics`
/// (each site's below its own root there).
fn aggregators_in(root: PathBuf) -> Arc<Aggregators> {
    let bounds = Bounds {
        max_keys: 1000,
        max_bytes: 1 << 20,
    };
    Arc::new(Aggregators::new(
        bounds,
        Box::new(move |site: Option<&SiteId>| {
            let (logs, analytics) = (root.join("logs"), root.join("analytics"));
            Aggregator::new(
                layout::site_dir(&logs, site),
                layout::site_dir(&analytics, site),
                bounds,
                Metrics::new(),
            )
        }),
    ))
}

fn api(configure: impl FnOnce(&mut Config)) -> Api {
    api_over(aggregators(), configure)
}

/// [`api`] whose analytics read `aggregators`.
fn api_over(aggregators: Arc<Aggregators>, configure: impl FnOnce(&mut Config)) -> Api {
    let mut config = Config::default();
    configure(&mut config);
    let pipeline = Arc::new(StandIn {
        answer: Mutex::new(Answer::Store),
        readiness: Mutex::new(Ok(())),
        settle_hangs: AtomicBool::new(false),
        handed: Mutex::new(Vec::new()),
    });
    let metrics = Metrics::new();
    let shutting_down = Arc::new(AtomicBool::new(false));
    let access = Arc::new(AccessCell::new(
        Access::load(&config).expect("the sites file"),
    ));
    let state = AppState::new(
        &config,
        pipeline.clone(),
        metrics.clone(),
        shutting_down.clone(),
        Analytics::new(aggregators, Arc::new(IngestFigures::new(metrics.clone()))),
        access.clone(),
    );
    Api {
        access,
        router: router(state, config.server.request_timeout),
        pipeline,
        metrics,
        shutting_down,
    }
}

/// An answer as the client reads it.
struct Answered {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answered {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|err| panic!("{err}: {}", String::from_utf8_lossy(&self.body)))
    }

    fn header(&self, name: header::HeaderName) -> Option<&str> {
        self.headers.get(name).map(|value| value.to_str().unwrap())
    }

    /// The `error` code of a JSON error body.
    fn code(&self) -> String {
        self.json()["error"].as_str().unwrap_or_default().to_owned()
    }
}

impl Api {
    fn tell(&self, answer: Answer) {
        *self.pipeline.answer.lock().unwrap() = answer;
    }

    async fn send(&self, request: Request<Body>) -> Answered {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        Answered {
            status: parts.status,
            headers: parts.headers,
            body: body.to_vec(),
        }
    }

    async fn get(&self, path: &str) -> Answered {
        self.send(Request::get(path).body(Body::empty()).unwrap())
            .await
    }

    /// `POST /logs` with these headers and body.
    async fn post(&self, headers: &[(&str, &str)], body: impl Into<Body>) -> Answered {
        let mut request = Request::post("/logs");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request.body(body.into()).unwrap()).await
    }

    /// `POST /logs` of a JSON body.
    async fn post_json(&self, body: &str) -> Answered {
        self.post(&[("content-type", "application/json")], body.to_owned())
            .await
    }

    /// The value of a series (name and labels as rendered) in `/metrics`.
    fn metric(&self, series: &str) -> f64 {
        let text = self.metrics.render();
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {series} in /metrics"))
            .parse()
            .unwrap()
    }
}

/// Two records of 2025-11-22 14:00, as a JSON body and as the lines they are stored as.
const TWO_RECORDS: &str = r#"[{"timestamp":"2025-11-22T14:00:00Z","path":"/a","userAgent":"curl/8.5.0"},
 {"timestamp":"2025-11-22T14:30:00+00:00","path":" /b ","userAgent":"Googlebot/2.1"}]"#;
const TWO_LINES: &str = "{\"timestamp\":\"2025-11-22T14:00:00Z\",\"path\":\"/a\",\"userAgent\":\"curl/8.5.0\"}\n\
{\"timestamp\":\"2025-11-22T14:30:00Z\",\"path\":\"/b\",\"userAgent\":\"Googlebot/2.1\"}\n";

const REFUSAL_COUNTERS: [&str; 5] = [
    "invalid_requests_total",
    "ingest_inflight_rejections_total",
    "ingest_overload_rejections_total",
    "idempotency_conflicts_total{reason=\"in_flight\"}",
    "idempotency_conflicts_total{reason=\"reused\"}",
];

/// Checks every refusal counter: `counted` are at the given values, the others at 0.
fn assert_refusals(api: &Api, counted: &[(&str, f64)]) {
    for series in REFUSAL_COUNTERS {
        let expected = counted
            .iter()
            .find(|(name, _)| *name == series)
            .map_or(0.0, |(_, value)| *value);
        assert_eq!(api.metric(series), expected, "{series}");
    }
}
