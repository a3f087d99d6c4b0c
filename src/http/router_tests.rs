//! The router in process (axum's `oneshot`, no socket), over a stand-in pipeline ([`StandIn`])
//! and an aggregator that is never asked to read (no disk): every answer of `POST /logs`, `/ready`
//! in each state, the routes' JSON errors, and the counters each refusal moves. The real-process
//! tests (`tests/api/`) check the same API over HTTP against the real pipelines.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use futures_util::future::BoxFuture;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{Analytics, AppState, router};
use crate::analytics::{Aggregator, Bounds};
use crate::config::Config;
use crate::idempotency::{Fingerprint, Key};
use crate::metrics::Metrics;
use crate::pipeline::{Intake, KeyedOutcome, Refusal, SubmitError, UnknownCounts};
use crate::record::EncodedBatch;

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
    fn take(&self, batch: EncodedBatch, keyed: Option<(Key, Fingerprint)>) -> Answer {
        let lines = batch
            .chunks
            .iter()
            .map(|chunk| String::from_utf8(chunk.lines.clone()).unwrap())
            .collect();
        self.handed.lock().unwrap().push(Handed { lines, keyed });
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
    fn submit(&self, batch: EncodedBatch, _: Instant) -> BoxFuture<'_, Result<(), SubmitError>> {
        let answer = self.take(batch, None);
        Box::pin(async move {
            match answer {
                Answer::Refuse(refusal) => Err(refused(refusal)),
                _ => Ok(()),
            }
        })
    }

    fn submit_keyed(
        &self,
        batch: EncodedBatch,
        key: Key,
        fingerprint: Fingerprint,
        _: Instant,
    ) -> BoxFuture<'_, Result<KeyedOutcome, SubmitError>> {
        let answer = self.take(batch, Some((key, fingerprint)));
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
    router: Router,
    pipeline: Arc<StandIn>,
    metrics: Metrics,
    shutting_down: Arc<AtomicBool>,
}

/// The aggregator behind the analytics routes: built once (its bot list takes a while to
/// compile), over directories that do not exist, since no test here lets it read.
fn aggregator() -> Arc<Aggregator> {
    static AGGREGATOR: OnceLock<Arc<Aggregator>> = OnceLock::new();
    let unread = PathBuf::from("/nonexistent/log-pipeline-router-tests");
    AGGREGATOR
        .get_or_init(|| {
            let bounds = Bounds {
                max_keys: 1000,
                max_bytes: 1 << 20,
            };
            Arc::new(Aggregator::new(
                unread.clone(),
                unread,
                bounds,
                Metrics::new(),
            ))
        })
        .clone()
}

fn api(configure: impl FnOnce(&mut Config)) -> Api {
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
    let state = AppState::new(
        &config,
        pipeline.clone(),
        metrics.clone(),
        shutting_down.clone(),
        Analytics::new(aggregator()),
    );
    Api {
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

#[tokio::test]
async fn a_stored_batch_is_202_with_its_record_count() {
    let api = api(|_| {});
    let answer = api.post_json(TWO_RECORDS).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    assert_eq!(answer.json(), json!({"accepted": 2}));
    assert_eq!(
        answer.header(header::HeaderName::from_static("idempotent-replayed")),
        None
    );
    assert_eq!(
        api.pipeline.handed(),
        [Handed {
            lines: TWO_LINES.into(),
            keyed: None
        }]
    );
    assert_eq!(api.metric("log_batches_received_total"), 1.0);
    assert_eq!(api.metric("log_batch_records_sum"), 2.0);
    assert_refusals(&api, &[]);
}

#[tokio::test]
async fn keyed_batches_are_answered_by_what_became_of_their_key() {
    let api = api(|_| {});
    let key = Key::parse(b"order-42").unwrap();
    let keyed = [
        ("content-type", "application/json"),
        ("idempotency-key", "order-42"),
    ];
    let replayed = header::HeaderName::from_static("idempotent-replayed");

    api.tell(Answer::Keyed(KeyedOutcome::Stored));
    let stored = api.post(&keyed, TWO_RECORDS).await;
    assert_eq!(
        (stored.status, stored.json()),
        (StatusCode::ACCEPTED, json!({"accepted": 2}))
    );
    assert_eq!(stored.header(replayed.clone()), None);
    let handed = api.pipeline.handed();
    let (handed_key, fingerprint) = handed[0].keyed.expect("handed over with its key");
    assert_eq!(handed_key, key);

    // The records of the earlier batch, not of this request, are what the answer counts.
    api.tell(Answer::Keyed(KeyedOutcome::Replayed { records: 7 }));
    let replay = api.post(&keyed, TWO_RECORDS).await;
    assert_eq!(
        (replay.status, replay.json()),
        (StatusCode::ACCEPTED, json!({"accepted": 7}))
    );
    assert_eq!(replay.header(replayed.clone()), Some("true"));
    assert_eq!(
        api.pipeline.handed()[0].keyed,
        Some((key, fingerprint)),
        "the same body has the same fingerprint"
    );

    api.tell(Answer::Keyed(KeyedOutcome::InFlight));
    let in_flight = api.post(&keyed, TWO_RECORDS).await;
    assert_eq!(in_flight.status, StatusCode::CONFLICT);
    assert_eq!(in_flight.code(), "idempotency_key_in_flight");
    assert_eq!(in_flight.header(header::RETRY_AFTER), Some("1"));

    api.tell(Answer::Keyed(KeyedOutcome::Reused));
    let reused = api.post(&keyed, TWO_RECORDS).await;
    assert_eq!(reused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reused.code(), "idempotency_key_reused");

    assert_eq!(api.metric("log_batches_received_total"), 1.0);
    assert_eq!(api.metric("idempotency_replays_total"), 1.0);
    assert_refusals(
        &api,
        &[
            ("idempotency_conflicts_total{reason=\"in_flight\"}", 1.0),
            ("idempotency_conflicts_total{reason=\"reused\"}", 1.0),
        ],
    );
}

#[tokio::test]
async fn every_refusal_of_the_pipeline_reaches_the_client_as_its_kind() {
    let api = api(|_| {});
    let unknown = UnknownCounts {
        delivered: 1,
        unknown: 1,
        total: 2,
    };
    // (refusal, status, error code, extra fields)
    let cases = [
        (Refusal::TimedOut, 503, "timeout", json!({})),
        (Refusal::Overloaded, 503, "overloaded", json!({})),
        (Refusal::ShuttingDown, 503, "shutting_down", json!({})),
        (Refusal::Unavailable, 503, "storage_unavailable", json!({})),
        (
            Refusal::Partial {
                delivered: 1,
                total: 2,
            },
            503,
            "partially_delivered",
            json!({"deliveredRecords": 1, "records": 2}),
        ),
        (
            Refusal::OutcomeUnknown {
                counts: Some(unknown),
            },
            500,
            "outcome_unknown",
            json!({"deliveredRecords": 1, "unknownRecords": 1, "records": 2}),
        ),
        (
            Refusal::OutcomeUnknown { counts: None },
            500,
            "outcome_unknown",
            json!({}),
        ),
        (Refusal::Broken, 500, "internal", json!({})),
    ];
    for (refusal, status, code, extra) in cases {
        api.tell(Answer::Refuse(refusal));
        let answer = api.post_json(TWO_RECORDS).await;
        assert_eq!(answer.status.as_u16(), status, "{refusal:?}");
        let mut body = answer.json();
        assert_eq!(body["error"], code, "{refusal:?}");
        let message = body.as_object_mut().unwrap().remove("message").unwrap();
        assert!(
            !message.as_str().unwrap().contains("stand-in"),
            "the backend's words stay in the log: {message}"
        );
        body.as_object_mut().unwrap().remove("error");
        assert_eq!(body, extra, "{refusal:?}");
        assert_eq!(api.pipeline.handed().len(), 1, "{refusal:?}");
    }
    assert_eq!(api.metric("log_batches_received_total"), 0.0);
    assert_refusals(&api, &[("ingest_overload_rejections_total", 1.0)]);
    let ingest = api.get("/analytics/ingest").await.json();
    assert_eq!(
        ingest["rejectedRequests"],
        json!({"total": 1, "invalid": 0, "overloaded": 1, "failed": 0}),
        "the dashboard's counters; `failed` is counted by the real pipelines"
    );
}

#[tokio::test]
async fn refused_bodies_never_reach_the_pipeline_and_count_as_invalid() {
    let api = api(|config| {
        config.ingestion.max_records = 2;
        config.server.max_body_bytes = 1024;
    });
    let json = ("content-type", "application/json");
    let three = format!(
        "[{}]",
        [r#"{"timestamp":"2025-11-22T14:00:00Z","path":"/","userAgent":"u"}"#; 3].join(",")
    );
    let large = " ".repeat(1025);
    // (headers, body, status, error code)
    let cases: [(&[(&str, &str)], &str, u16, &str); 9] = [
        (
            &[("content-type", "text/plain")],
            TWO_RECORDS,
            415,
            "unsupported_media_type",
        ),
        (
            &[json, ("content-encoding", "br")],
            TWO_RECORDS,
            415,
            "unsupported_content_encoding",
        ),
        (
            &[json, ("content-encoding", "gzip")],
            "not gzip",
            400,
            "unreadable_body",
        ),
        (&[json], "[", 400, "malformed_body"),
        (&[json], "[]", 400, "no_records"),
        (&[json], r#"[{"path":"/"}]"#, 400, "invalid_records"),
        (&[json], &three, 413, "too_many_records"),
        (&[json], &large, 413, "body_too_large"),
        (
            &[json, ("idempotency-key", "with space")],
            TWO_RECORDS,
            400,
            "invalid_idempotency_key",
        ),
    ];
    for (headers, body, status, code) in cases {
        let answer = api.post(headers, body.to_owned()).await;
        assert_eq!(
            (answer.status.as_u16(), answer.code()),
            (status, code.to_owned()),
            "{headers:?}"
        );
    }
    // Declared too large: refused by its Content-Length, before a byte of it is read.
    let declared = api
        .post(&[json, ("content-length", "1025")], large.clone())
        .await;
    assert_eq!(declared.code(), "body_too_large");

    assert!(api.pipeline.handed().is_empty());
    assert_refusals(&api, &[("invalid_requests_total", 10.0)]);
}

#[tokio::test]
async fn bodies_beyond_the_inflight_budget_are_503_overloaded() {
    let api = api(|config| config.server.max_inflight_bytes = 64);
    let json = ("content-type", "application/json");
    let length = TWO_RECORDS.len().to_string();
    // Declared beyond what is free: refused before the body is read.
    let declared = api
        .post(&[json, ("content-length", &length)], TWO_RECORDS)
        .await;
    // Not declared: refused as its bytes outgrow the budget.
    let streamed = api.post(&[json], TWO_RECORDS).await;
    for answer in [declared, streamed] {
        assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(answer.code(), "overloaded");
        assert!(
            answer.json()["message"]
                .as_str()
                .unwrap()
                .contains("server.maxInflightBytes")
        );
        assert_eq!(answer.header(header::RETRY_AFTER), Some("1"));
    }
    assert!(api.pipeline.handed().is_empty());
    assert_refusals(&api, &[("ingest_inflight_rejections_total", 2.0)]);
}

#[tokio::test]
async fn ready_says_whether_batches_can_be_taken_and_why_not() {
    let api = api(|_| {});
    let ready = api.get("/ready").await;
    assert_eq!(
        (ready.status, ready.json()),
        (StatusCode::OK, json!({"status": "ready"}))
    );

    let reason = "the Kafka broker does not answer with the topic and its partition leaders";
    *api.pipeline.readiness.lock().unwrap() = Err(reason);
    let not_ready = api.get("/ready").await;
    assert_eq!(
        (not_ready.status, not_ready.json()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "not_ready", "reason": reason})
        )
    );

    // Draining wins over whatever the pipeline says, and batches are refused, unread.
    *api.pipeline.readiness.lock().unwrap() = Ok(());
    api.shutting_down.store(true, Ordering::Relaxed);
    let draining = api.get("/ready").await;
    assert_eq!(
        (draining.status, draining.json()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "shutting_down"})
        )
    );
    let refused = api.post_json(TWO_RECORDS).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.code(), "shutting_down");
    assert!(api.pipeline.handed().is_empty());
    assert_refusals(&api, &[]);

    let health = api.get("/health").await;
    assert_eq!(
        (health.status, &health.body[..]),
        (StatusCode::OK, &b"ok"[..])
    );
}

#[tokio::test]
async fn routes_that_do_not_exist_or_take_another_method_answer_json() {
    let api = api(|_| {});
    let missing = api.get("/logs/nope").await;
    assert_eq!(
        (missing.status, missing.json()),
        (
            StatusCode::NOT_FOUND,
            json!({"error": "not_found", "message": "no route for GET /logs/nope"})
        )
    );
    let wrong_method = api.get("/logs").await;
    assert_eq!(
        (wrong_method.status, wrong_method.json()),
        (
            StatusCode::METHOD_NOT_ALLOWED,
            json!({"error": "method_not_allowed", "message": "method not allowed"})
        )
    );
    assert_eq!(wrong_method.header(header::ALLOW), Some("POST"));
    assert_eq!(
        wrong_method.header(header::CONTENT_TYPE),
        Some("application/json")
    );
    assert_refusals(&api, &[]);
    let metrics = api.get("/metrics").await;
    assert_eq!(
        metrics.header(header::CONTENT_TYPE),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = String::from_utf8(metrics.body).unwrap();
    for series in [
        "http_request_duration_seconds_count{route=\"unmatched\",status_class=\"4xx\"} 1",
        "http_request_duration_seconds_count{route=\"/logs\",status_class=\"4xx\"} 1",
    ] {
        assert!(text.contains(series), "{series} in\n{text}");
    }
}

#[tokio::test]
async fn a_token_is_asked_of_the_protected_routes_only() {
    let api = api(|config| config.auth.tokens = vec!["t0k3n".into()]);
    let unauthorized = api.post_json(TWO_RECORDS).await;
    assert_eq!(unauthorized.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unauthorized.code(), "unauthorized");
    assert_eq!(
        unauthorized.header(header::WWW_AUTHENTICATE),
        Some("Bearer")
    );
    let wrong = api
        .post(
            &[
                ("content-type", "application/json"),
                ("authorization", "Bearer t0k3m"),
            ],
            TWO_RECORDS,
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(api.pipeline.handed().is_empty());
    let accepted = api
        .post(
            &[
                ("content-type", "application/json"),
                ("authorization", "bearer  t0k3n "),
            ],
            TWO_RECORDS,
        )
        .await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED);
    for probe in ["/health", "/ready"] {
        assert_eq!(api.get(probe).await.status, StatusCode::OK, "{probe}");
    }
    assert_refusals(&api, &[]);
}

#[tokio::test]
async fn a_request_past_the_request_timeout_is_503_timeout() {
    let api = api(|config| config.server.request_timeout = Duration::from_millis(50));
    api.pipeline.settle_hangs.store(true, Ordering::Relaxed);
    let started = Instant::now();
    let answer = api.get("/analytics/hours").await;
    assert!(started.elapsed() >= Duration::from_millis(50));
    assert_eq!(
        (answer.status, answer.json()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "timeout", "message": "request did not complete within server.requestTimeout"})
        )
    );
    assert_eq!(answer.header(header::RETRY_AFTER), Some("1"));
}

#[tokio::test]
async fn a_panic_is_500_internal_with_nothing_of_it_in_the_answer() {
    let api = api(|_| {});
    // In the task that hands the batch over.
    api.tell(Answer::Panic);
    let handing_over = api.post_json(TWO_RECORDS).await;
    // In a handler.
    *api.pipeline.readiness.lock().unwrap() = Err("panic");
    let handling = api.get("/ready").await;
    for answer in [handing_over, handling] {
        assert_eq!(
            (answer.status, answer.json()),
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"error": "internal", "message": "internal error"})
            )
        );
    }
    assert_eq!(api.metric("log_batches_received_total"), 0.0);
    assert_refusals(&api, &[]);
}

#[tokio::test]
async fn a_method_the_probes_do_not_take_is_405_with_what_they_take() {
    let api = api(|_| {});
    let answer = api
        .send(
            Request::builder()
                .method(Method::DELETE)
                .uri("/ready")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(answer.code(), "method_not_allowed");
    assert_eq!(answer.header(header::ALLOW), Some("GET,HEAD"));
}
