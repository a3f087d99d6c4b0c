//! Where a site's records are stored (docs/sites.md, "Where a site's data lives"): below
//! `<logsDir>/sites/<id>/`, in the root's layout, because of the key that sent them; never below
//! another site's root nor the root itself, whatever the request says. In v1 and in v2 (through
//! Kafka's `site` header); the bucket's objects are checked by the scale suite
//! (`tests/scale/sites.rs`).

use std::collections::BTreeMap;
use std::path::Path;

use std::time::Duration;

use rdkafka::Message;
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use reqwest::{Method, StatusCode};

use crate::support::{
    AT_14, JSON, Names, SITES, TestApp, hour_files, ingest_key, json_body, kafka_broker,
    kafka_client, line, mark_ends, read_topic, records, records_at, spawn_app, stored_lines, v2,
    wait_joined, wait_stored_to, write_sites_file,
};

/// The answer to `POST {path}` with `site`'s ingest key, `extra` headers and `body`.
async fn post_as(
    app: &TestApp,
    site: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: Vec<u8>,
) -> (StatusCode, bool) {
    let bearer = format!("Bearer {}", ingest_key(site));
    let mut headers = vec![("content-type", JSON), ("authorization", bearer.as_str())];
    headers.extend_from_slice(extra);
    let response = app.request(Method::POST, path, &headers, body).await;
    let replayed = response
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|value| value == "true");
    (response.status(), replayed)
}

/// Every line of every hour file below `dir` (one root's), sorted.
fn lines_below(dir: &Path) -> Vec<String> {
    let mut lines: Vec<String> = hour_files(dir).into_values().flatten().collect();
    lines.sort();
    lines
}

/// Each site posts batches (plain, keyed with the same key as another site, a keyed retry, and
/// requests that name another site in a header or the URL); returns the lines each site must
/// have stored, sorted.
async fn three_sites_post(app: &TestApp) -> BTreeMap<&'static str, Vec<String>> {
    let mut expected: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for site in SITES {
        for batch in [
            records(&format!("/{site}/plain"), 3),
            records_at(
                &format!("/{site}/later"),
                2,
                "2025-11-22T15:10:00Z",
                "2025-11-22T15:10:00Z",
            ),
        ] {
            let answer = post_as(app, site, "/logs", &[], json_body(&batch)).await;
            assert_eq!(answer, (StatusCode::ACCEPTED, false), "{site}");
            expected
                .entry(site)
                .or_default()
                .extend(stored_lines(&batch));
        }
    }
    // The same Idempotency-Key from two sites: two batches, each stored under its site.
    let keyed = |site: &str| records(&format!("/{site}/keyed"), 2);
    for site in ["acme", "bolt"] {
        let key = [("idempotency-key", "order-1")];
        let answer = post_as(app, site, "/logs", &key, json_body(&keyed(site))).await;
        assert_eq!(answer, (StatusCode::ACCEPTED, false), "{site}'s order-1");
        expected
            .entry(site)
            .or_default()
            .extend(stored_lines(&keyed(site)));
    }
    // A keyed retry from one site is answered as before and stored once.
    let key = [("idempotency-key", "order-1")];
    let again = post_as(app, "acme", "/logs", &key, json_body(&keyed("acme"))).await;
    assert_eq!(again, (StatusCode::ACCEPTED, true), "acme's retry");

    // An attacker with coda's key naming bolt: the records are coda's or refused, never bolt's.
    let forged = records("/coda/forged", 1);
    for (path, extra) in [
        ("/logs", [("x-site", "bolt")]),
        ("/logs?site=bolt", [("x-site-id", "bolt")]),
        ("/logs/../sites/bolt", [("x-forwarded-host", "bolt")]),
    ] {
        let (status, _) = post_as(app, "coda", path, &extra, json_body(&forged)).await;
        if status == StatusCode::ACCEPTED {
            expected
                .entry("coda")
                .or_default()
                .extend(stored_lines(&forged));
        }
    }
    for lines in expected.values_mut() {
        lines.sort();
    }
    expected
}

/// Each site's root holds exactly its lines, nothing else holds a site's root, and the root
/// itself holds `root` (sorted) only.
fn assert_each_under_its_own_root(
    logs_dir: &Path,
    expected: &BTreeMap<&str, Vec<String>>,
    root: &[String],
) {
    for (site, lines) in expected {
        let stored = lines_below(&logs_dir.join("sites").join(site));
        assert_eq!(&stored, lines, "{site}'s root holds exactly its records");
    }
    let roots: Vec<String> = std::fs::read_dir(logs_dir.join("sites"))
        .expect("the sites directory")
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(roots, SITES, "a root per site that sent, nothing else");
    assert_eq!(lines_below(logs_dir), root, "the unsited root");
}

#[tokio::test]
async fn v1_stores_each_sites_records_under_its_own_root_only() {
    let config_dir = tempfile::tempdir().unwrap();
    let sites_file = write_sites_file(config_dir.path());
    let app = spawn_app(|config| config.sites.file = sites_file).await;
    let expected = three_sites_post(&app).await;
    assert_each_under_its_own_root(app.logs_dir.path(), &expected, &[]);
    // The layout below a site's root is the root's: the hour file of 14:00 of acme.
    let acme_14 = app.read_hour_file("sites/acme/2025-11-22/14.log.json");
    assert_eq!(
        acme_14.len(),
        3 + 2,
        "acme's plain and keyed records of 14:00"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kafka broker (tansu): make test"]
async fn v2_stores_each_sites_records_under_its_own_root_only() {
    let broker = kafka_broker();
    let names = Names::new("site-layout");
    let config_dir = tempfile::tempdir().unwrap();
    let sites_file = write_sites_file(config_dir.path());
    let app = spawn_app(|config| {
        v2(config, &broker, &names);
        config.sites.file = sites_file;
    })
    .await;
    wait_joined(&[app.addr]).await;
    let expected = three_sites_post(&app).await;
    // Straight to the topic, bypassing the API: `site` headers that name no site.
    let forged = ["../bolt", "Bolt", ""];
    let producer: FutureProducer = kafka_client(&broker).create().expect("a producer builds");
    for site in forged {
        let line = line(AT_14, &format!("/forged/{site}"), "curl/8.5.0");
        let headers = OwnedHeaders::new().insert(Header {
            key: "site",
            value: Some(site),
        });
        let record = FutureRecord::<str, str>::to(&names.topic)
            .key("bolt")
            .payload(&line)
            .headers(headers);
        (producer.send(record, Duration::from_secs(10)).await)
            .unwrap_or_else(|(err, _)| panic!("producing: {err}"));
    }
    // Messages without a `site` header (the test's own end marks) are the root's.
    let (marks, ends) = mark_ends(&broker, &names.topic).await;
    wait_stored_to(&[app.logs_dir.path()], &names.topic, &ends).await;
    let mut root = marks.lines;
    root.sort();
    assert_each_under_its_own_root(app.logs_dir.path(), &expected, &root);

    // Each forged message is in the dead-letter topic, with why.
    let dead = {
        let (broker, topic) = (broker.clone(), names.dead_letter_topic.clone());
        let group = format!("{}-reader", names.group_id);
        let read = move || read_topic(&broker, &topic, &group, forged.len());
        tokio::task::spawn_blocking(read)
            .await
            .expect("reader task")
    };
    let mut reasons: Vec<String> = dead
        .iter()
        .map(|message| {
            let headers = message.headers().expect("dead letters carry headers");
            let error = headers.iter().find(|h| h.key == "error").expect("a reason");
            String::from_utf8_lossy(error.value.unwrap_or_default()).into_owned()
        })
        .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            "its site header \"\" is not a site id: it is empty; a site id is 1 to 63 lowercase letters, digits and '-'",
            "its site header \"../bolt\" is not a site id: it holds '.'; a site id is lowercase letters (a-z), digits and '-' only",
            "its site header \"Bolt\" is not a site id: it holds 'B'; a site id is lowercase letters (a-z), digits and '-' only",
        ]
    );
    app.stop().await;
}
