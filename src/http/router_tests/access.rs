//! Sites and keys as an attacker would try them: every route × every kind of key (the isolation
//! matrix), reloads (new keys, revoked keys, a bad file, a request in flight across one), and
//! each site's limits (429 with `Retry-After`, 413 over the burst, its share of the in-flight
//! budget), with nothing handed over for a refused batch and other sites unaffected.

use axum::http::{Method, StatusCode};
use bytes::Bytes;
use serde_json::json;
use tempfile::TempDir;

use super::*;
use crate::config::Protected;

/// Sites `a` and `b` (and `c`, revoked by a reload in the matrix), each with an ingest and a
/// read key.
const THREE_SITES: &str = "sites:\n\
    - id: a\n  ingestKeys: [a-in]\n  readKeys: [a-read]\n\
    - id: b\n  ingestKeys: [b-in]\n  readKeys: [b-read]\n\
    - id: c\n  ingestKeys: [c-in]\n  readKeys: [c-read]\n";
const TWO_SITES: &str = "sites:\n\
    - id: a\n  ingestKeys: [a-in]\n  readKeys: [a-read]\n\
    - id: b\n  ingestKeys: [b-in]\n  readKeys: [b-read]\n";

/// A router over a sites file that the test can rewrite, with the operator key `operator`.
struct Sited {
    api: Api,
    file: PathBuf,
    _dir: TempDir,
}

fn sited(sites: &str, configure: impl FnOnce(&mut Config)) -> Sited {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sites.yaml");
    std::fs::write(&file, sites).unwrap();
    let api = api(|config| {
        config.auth.tokens = vec!["operator".to_owned()];
        config.sites.file = file.clone();
        configure(config);
    });
    Sited {
        api,
        file,
        _dir: dir,
    }
}

impl Sited {
    /// `method path` with `Authorization: <authorization>` (none if empty), `body` and `headers`.
    async fn call(
        &self,
        method: &Method,
        path: &str,
        authorization: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> Answered {
        let mut request = Request::builder().method(method).uri(path);
        if !authorization.is_empty() {
            request = request.header("authorization", authorization);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.api.send(request.body(body.into()).unwrap()).await
    }

    /// `POST /logs` of `body` (JSON) with `key`.
    async fn post(&self, key: &str, body: impl Into<Body>) -> Answered {
        let bearer = format!("Bearer {key}");
        let json = [("content-type", "application/json")];
        self.call(&Method::POST, "/logs", &bearer, &json, body)
            .await
    }

    /// Rewrites the sites file and reloads it with the operator key.
    async fn reload(&self, sites: &str) -> Answered {
        std::fs::write(&self.file, sites).unwrap();
        let bearer = "Bearer operator";
        self.call(&Method::POST, "/admin/reload", bearer, &[], Body::empty())
            .await
    }
}

/// The `Authorization` each column of [`MATRIX`] presents.
const KEYS: [(&str, &str); 8] = [
    ("no key", ""),
    ("a's ingest key", "Bearer a-in"),
    ("a's read key", "Bearer a-read"),
    ("b's ingest key", "Bearer b-in"),
    ("b's read key", "Bearer b-read"),
    ("the operator key", "Bearer operator"),
    ("c's ingest key, revoked by a reload", "Bearer c-in"),
    ("a malformed header (no scheme)", "a-in"),
];

/// Every route, and what each of [`KEYS`] gets from it. The analytics answers of an allowed key
/// are those of an empty store (no summary for the hour; an operator's hour is of one site, so
/// without `site=` it is 400, and the ingest figures are the whole service's, so an operator's
/// only). `/metrics` as `auth.protect` leaves
/// it (open); the protected case is [`METRICS_PROTECTED`]. A POST of `/logs` says site `b` in
/// the URL and in a header: neither counts.
const MATRIX: [(Method, &str, [u16; 8]); 13] = [
    (
        Method::POST,
        "/logs?site=b",
        [401, 202, 403, 202, 403, 403, 401, 401],
    ),
    (
        Method::GET,
        "/analytics?hour=2025-11-22T14:00:00Z",
        [401, 403, 404, 403, 404, 400, 401, 401],
    ),
    (
        Method::GET,
        "/analytics?hour=2025-11-22T14:00:00Z&site=a",
        [401, 403, 404, 403, 403, 404, 401, 401],
    ),
    (
        Method::GET,
        "/analytics/sites",
        [401, 403, 200, 403, 200, 200, 401, 401],
    ),
    (
        Method::GET,
        "/analytics/hours",
        [401, 403, 200, 403, 200, 200, 401, 401],
    ),
    (
        Method::GET,
        "/analytics/ingest",
        [401, 403, 403, 403, 403, 200, 401, 401],
    ),
    (
        Method::GET,
        "/dashboard",
        [200, 200, 200, 200, 200, 200, 200, 200],
    ),
    (
        Method::GET,
        "/metrics",
        [200, 200, 200, 200, 200, 200, 200, 200],
    ),
    (
        Method::POST,
        "/admin/reload",
        [401, 403, 403, 403, 403, 200, 401, 401],
    ),
    (
        Method::GET,
        "/health",
        [200, 200, 200, 200, 200, 200, 200, 200],
    ),
    (
        Method::GET,
        "/ready",
        [200, 200, 200, 200, 200, 200, 200, 200],
    ),
    (
        Method::GET,
        "/no-such-route",
        [404, 404, 404, 404, 404, 404, 404, 404],
    ),
    // The profiles are on a listener of their own, never on the API's.
    (
        Method::GET,
        "/debug/pprof/heap",
        [404, 404, 404, 404, 404, 404, 404, 404],
    ),
];

/// `/metrics` when `auth.protect` names it: the operator's only (it has every site's labels).
const METRICS_PROTECTED: [u16; 8] = [401, 403, 403, 403, 403, 200, 401, 401];

#[tokio::test]
async fn every_route_answers_every_key_as_the_matrix_says() {
    for protect_metrics in [false, true] {
        let sited = sited(THREE_SITES, |config| {
            if protect_metrics {
                config.auth.protect.push(Protected::Metrics);
            }
        });
        assert_eq!(sited.reload(TWO_SITES).await.json(), json!({"sites": 2}));
        let mut rows = MATRIX.to_vec();
        if protect_metrics {
            rows.retain(|(_, path, _)| *path != "/metrics");
            rows.push((Method::GET, "/metrics", METRICS_PROTECTED));
        }
        for (method, path, expected) in rows {
            for ((who, authorization), status) in KEYS.iter().zip(expected) {
                let headers = [("content-type", "application/json"), ("x-site", "b")];
                let body = if method == Method::POST && path.starts_with("/logs") {
                    TWO_RECORDS
                } else {
                    ""
                };
                let answer = (sited.call(&method, path, authorization, &headers, body)).await;
                assert_eq!(answer.status.as_u16(), status, "{method} {path} with {who}");
                let handed = sited.api.pipeline.handed();
                if status == 202 {
                    // The key's site, whatever the URL and the headers say.
                    let site = &authorization["Bearer ".len()..][..1];
                    assert_eq!(handed.len(), 1, "{who}");
                    assert_eq!(handed[0].site, Some(SiteId::parse(site).unwrap()), "{who}");
                    assert_eq!(handed[0].lines, TWO_LINES);
                } else {
                    assert!(handed.is_empty(), "{method} {path} with {who}");
                }
                if status == 401 || status == 403 {
                    let code = if status == 401 {
                        "unauthorized"
                    } else {
                        "forbidden"
                    };
                    assert_eq!(answer.code(), code, "{method} {path} with {who}");
                }
            }
        }
    }
}

#[tokio::test]
async fn each_refusal_of_a_role_says_which_key_would_do() {
    let sited = sited(TWO_SITES, |config| {
        config.auth.protect.push(Protected::Metrics)
    });
    for (method, path, key, says) in [
        (
            Method::POST,
            "/logs",
            "a-read",
            "a read key cannot send records",
        ),
        (
            Method::POST,
            "/logs",
            "operator",
            "an operator key reads every site but sends for none",
        ),
        (
            Method::GET,
            "/analytics/hours",
            "a-in",
            "an ingest key cannot read analytics",
        ),
        (
            Method::GET,
            "/metrics",
            "a-read",
            "read it with an operator key",
        ),
        (
            Method::POST,
            "/admin/reload",
            "b-in",
            "only an operator key",
        ),
    ] {
        let bearer = format!("Bearer {key}");
        let answer = sited.call(&method, path, &bearer, &[], TWO_RECORDS).await;
        assert_eq!(answer.code(), "forbidden", "{method} {path} {key}");
        let message = answer.json()["message"].as_str().unwrap().to_owned();
        assert!(message.contains(says), "{method} {path} {key}: {message}");
    }
}

#[tokio::test]
async fn a_reload_adds_and_revokes_keys_and_a_bad_file_changes_nothing() {
    let sited = sited(TWO_SITES, |_| {});
    assert_eq!(
        sited.post("c-in", TWO_RECORDS).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(sited.reload(THREE_SITES).await.json(), json!({"sites": 3}));
    assert_eq!(
        sited.post("c-in", TWO_RECORDS).await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(sited.api.metric("sites_configured"), 3.0);

    let bad = "sites:\n- id: a\n  ingestKeys: [a-in]\n\
               - id: d\n  readKeys: [a-in]\n  limits: {inflightShare: 2}\n";
    let refused = sited.reload(bad).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(refused.code(), "invalid_sites_file");
    let problems = refused.json()["problems"].clone();
    let problems: Vec<&str> = problems
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].contains("sites[1].readKeys[0]: the same key as sites[0].ingestKeys[0]"),
        "{problems:?}"
    );
    assert!(
        problems[1].contains(
            "sites[1].limits.inflightShare: must be in (0, 1] (a fraction: 0.9 means 90%), got 2"
        ),
        "{problems:?}"
    );
    // The running set: all three sites' keys still work, and only them.
    for key in ["a-in", "b-in", "c-in"] {
        assert_eq!(
            sited.post(key, TWO_RECORDS).await.status,
            StatusCode::ACCEPTED,
            "{key}"
        );
    }
    assert_eq!(sited.api.metric("sites_configured"), 3.0);

    assert_eq!(sited.reload(TWO_SITES).await.json(), json!({"sites": 2}));
    assert_eq!(
        sited.post("c-in", TWO_RECORDS).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        sited.post("a-in", TWO_RECORDS).await.status,
        StatusCode::ACCEPTED
    );
    let metric = |series: &str| sited.api.metric(series);
    assert_eq!(metric("sites_reloads_total{outcome=\"applied\"}"), 2.0);
    assert_eq!(metric("sites_reloads_total{outcome=\"refused\"}"), 1.0);
    assert_eq!(metric("sites_configured"), 2.0);
    assert_eq!(metric("site_records_accepted_total{site=\"a\"}"), 4.0);
    assert!(
        !sited.api.metrics.render().contains("site=\"c\""),
        "a revoked site's series go"
    );
}

#[tokio::test]
async fn without_sites_there_is_nothing_to_reload_and_no_limit() {
    let api = api(|config| {
        config.sites.records_per_second = 1;
        config.sites.burst = 1;
    });
    let reload = api
        .send(Request::post("/admin/reload").body(Body::empty()).unwrap())
        .await;
    assert_eq!(reload.status, StatusCode::CONFLICT);
    assert_eq!(reload.code(), "no_sites_file");
    assert!(reload.header(header::RETRY_AFTER).is_none());
    for _ in 0..3 {
        assert_eq!(
            api.post_json(TWO_RECORDS).await.status,
            StatusCode::ACCEPTED
        );
    }
    assert!(
        !api.metrics
            .render()
            .contains("site_records_accepted_total{")
    );
}

/// A request body the test sends piece by piece: it arrives when the test says.
fn streamed() -> (Body, tokio::sync::mpsc::Sender<Bytes>) {
    let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(1);
    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        let piece = receiver.recv().await?;
        Some((Ok::<_, std::io::Error>(piece), receiver))
    });
    (Body::from_stream(stream), sender)
}

/// Waits until the body of `sender` has taken what was sent (the server read it).
async fn read_by_server(sender: &tokio::sync::mpsc::Sender<Bytes>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while sender.capacity() < sender.max_capacity() {
        assert!(Instant::now() < deadline, "the server never read the piece");
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_request_in_flight_finishes_under_the_keys_it_started_with() {
    let sited = Arc::new(sited(TWO_SITES, |_| {}));
    let (body, sender) = streamed();
    let slow = tokio::spawn({
        let sited = sited.clone();
        async move { sited.post("a-in", body).await }
    });
    let (first, rest) = TWO_RECORDS.split_at(40);
    sender
        .send(Bytes::from_static(first.as_bytes()))
        .await
        .unwrap();
    read_by_server(&sender).await;
    let revoking_a = "sites:\n- id: b\n  ingestKeys: [b-in]\n";
    assert_eq!(sited.reload(revoking_a).await.json(), json!({"sites": 1}));
    assert_eq!(
        sited.post("a-in", TWO_RECORDS).await.status,
        StatusCode::UNAUTHORIZED
    );
    sender
        .send(Bytes::from_static(rest.as_bytes()))
        .await
        .unwrap();
    drop(sender);
    let answer = slow.await.unwrap();
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{:?}", answer.json());
    let handed = sited.api.pipeline.handed();
    assert_eq!(handed.len(), 1);
    assert_eq!(handed[0].site, Some(SiteId::parse("a").unwrap()));
}

/// Site `a` limited to 1 record a second with a burst of `burst`, `b` with the defaults.
fn limited(burst: u32) -> String {
    format!(
        "sites:\n\
         - id: a\n  ingestKeys: [a-in]\n  limits: {{recordsPerSecond: 1, burst: {burst}}}\n\
         - id: b\n  ingestKeys: [b-in]\n"
    )
}

#[tokio::test]
async fn a_site_over_its_rate_gets_429_with_retry_after_and_the_others_do_not() {
    let sited = sited(&limited(2), |_| {});
    assert_eq!(
        sited.post("a-in", TWO_RECORDS).await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(sited.api.pipeline.handed().len(), 1);
    let refused = sited.post("a-in", TWO_RECORDS).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.code(), "rate_limited");
    // Refused before its body was read: the bucket holds a record again within a second.
    assert_eq!(refused.header(header::RETRY_AFTER), Some("1"));
    let body = refused.json();
    assert_eq!(
        (
            body["site"].clone(),
            body["recordsPerSecond"].clone(),
            body["burst"].clone()
        ),
        (json!("a"), json!(1), json!(2))
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("site a is over its limit of 1 records/s")
    );
    assert!(
        sited.api.pipeline.handed().is_empty(),
        "nothing handed over"
    );

    // Refused before a byte of the body is read: a client that waits for `100 Continue` is
    // answered at once (the early answer lingers for a body only once it was asked for), and
    // this body never ends.
    let (body, _sender) = streamed();
    let headers = [
        ("content-type", "application/json"),
        ("expect", "100-continue"),
    ];
    let early = sited.call(&Method::POST, "/logs", "Bearer a-in", &headers, body);
    let early = tokio::time::timeout(Duration::from_secs(5), early).await;
    assert_eq!(
        early.expect("answered without the body").code(),
        "rate_limited"
    );

    for _ in 0..3 {
        assert_eq!(
            sited.post("b-in", TWO_RECORDS).await.status,
            StatusCode::ACCEPTED
        );
    }
    let metric = |series: &str| sited.api.metric(series);
    assert_eq!(
        metric("site_batches_refused_total{reason=\"rate_limited\",site=\"a\"}"),
        2.0
    );
    assert_eq!(
        metric("site_batches_refused_total{reason=\"rate_limited\",site=\"b\"}"),
        0.0
    );
    assert_eq!(metric("site_records_accepted_total{site=\"a\"}"), 2.0);
    assert_eq!(metric("site_records_accepted_total{site=\"b\"}"), 6.0);
    assert_eq!(
        metric("site_bytes_received_total{site=\"b\"}"),
        3.0 * TWO_RECORDS.len() as f64
    );

    // New limits apply from the reload on: a new, full bucket of 4.
    assert_eq!(sited.reload(&limited(4)).await.json(), json!({"sites": 2}));
    assert_eq!(
        sited.post("a-in", TWO_RECORDS).await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        sited.post("a-in", TWO_RECORDS).await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(sited.post("a-in", TWO_RECORDS).await.code(), "rate_limited");
    // The same limits again: the same, empty bucket.
    assert_eq!(sited.reload(&limited(4)).await.json(), json!({"sites": 2}));
    assert_eq!(sited.post("a-in", TWO_RECORDS).await.code(), "rate_limited");
}

#[tokio::test]
async fn a_batch_larger_than_its_sites_burst_is_413_over_burst() {
    let sited = sited(&limited(1), |_| {});
    let refused = sited.post("a-in", TWO_RECORDS).await;
    assert_eq!(refused.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(refused.code(), "over_burst");
    assert_eq!(refused.json()["limit"], json!(1));
    assert!(
        refused.header(header::RETRY_AFTER).is_none(),
        "a retry never passes"
    );
    assert!(sited.api.pipeline.handed().is_empty());
    assert_eq!(
        sited
            .api
            .metric("site_batches_refused_total{reason=\"over_burst\",site=\"a\"}"),
        1.0
    );
    assert_eq!(sited.api.metric("invalid_requests_total"), 1.0);
}

#[tokio::test]
async fn a_site_holds_at_most_its_share_of_the_bodies_in_flight() {
    let sites = "sites:\n\
        - id: a\n  ingestKeys: [a-in]\n  limits: {inflightShare: 0.25}\n\
        - id: b\n  ingestKeys: [b-in]\n  limits: {inflightShare: 0.25}\n";
    let sited = Arc::new(sited(sites, |config| {
        config.server.max_inflight_bytes = 16_000
    }));
    // a's share: 4,000 bytes (a body of at most 1,968 bytes: decoding holds it twice). Two
    // bodies hold 1,000 each while they are read.
    let mut held = Vec::new();
    for _ in 0..2 {
        let (body, sender) = streamed();
        let holding = tokio::spawn({
            let sited = sited.clone();
            async move { sited.post("a-in", body).await }
        });
        sender.send(Bytes::from(vec![b' '; 1000])).await.unwrap();
        read_by_server(&sender).await;
        held.push((holding, sender));
    }

    let padded = format!("{TWO_RECORDS}{}", " ".repeat(1500));
    let refused = sited.post("a-in", padded.clone()).await;
    assert_eq!(
        refused.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{:?}",
        refused.json()
    );
    assert_eq!(refused.code(), "inflight_share_exceeded");
    assert_eq!(refused.header(header::RETRY_AFTER), Some("1"));
    assert_eq!(refused.json()["limit"], json!(4000));
    assert_eq!(
        sited.post("b-in", padded.clone()).await.status,
        StatusCode::ACCEPTED
    );
    let handed = sited.api.pipeline.handed();
    assert_eq!(handed.len(), 1);
    assert_eq!(handed[0].site, Some(SiteId::parse("b").unwrap()));

    // The held bodies end; their shares are given back and a's next body fits.
    for (holding, sender) in held {
        sender
            .send(Bytes::from_static(TWO_RECORDS.as_bytes()))
            .await
            .unwrap();
        drop(sender);
        assert_eq!(holding.await.unwrap().status, StatusCode::ACCEPTED);
    }
    assert_eq!(sited.api.pipeline.handed().len(), 2);
    assert_eq!(
        sited.post("a-in", padded).await.status,
        StatusCode::ACCEPTED
    );
    // A body the share could never hold while it is decoded is 413, not "retry".
    let never = format!("{TWO_RECORDS}{}", " ".repeat(4000));
    let too_large = sited.post("a-in", never).await;
    assert_eq!(too_large.code(), "body_too_large");
    assert!(
        too_large.json()["message"]
            .as_str()
            .unwrap()
            .contains("inflightShare")
    );
    assert_eq!(
        sited
            .api
            .metric("site_batches_refused_total{reason=\"inflight_share\",site=\"a\"}"),
        1.0
    );
}
