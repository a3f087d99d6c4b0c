//! The dashboard's ingest figures with three instances writing to one bucket. Its totals are the
//! whole bucket's; its ingest rate and "records stored" must be too: load goes through all three
//! instances at a steady pace, and one instance's dashboard (in headless Chromium, and its API,
//! `GET /analytics/ingest`) must show the rate at which all of them store records, measured
//! beside it from every instance's `logs_ingested_total`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::Method;

use crate::bucket::{Bucket, start_instances, stop_all, wait_joined_or_show};
use crate::support::{
    KAFKA_DEADLINE, KAFKA_POLL, Names, kafka_broker, line, look_at, mark_ends, metric_now,
    poll_within, target_dir, test_bucket, try_send,
};

const INSTANCES: usize = 3;
/// Each instance takes a batch of `BATCH` records every `PACE`: 1,500 records/s in all, steady
/// (far below what the instances can take, so the pace sets the rate).
const BATCH: usize = 50;
const PACE: Duration = Duration::from_millis(100);
/// Load before anything is measured: longer than the window the service's rate covers (10 s).
const WARM_UP: Duration = Duration::from_secs(12);
/// The measured window: long enough that flushes (ranges of up to 300 records every 200 ms per
/// partition) change the measured rate by a few percent at most.
const WINDOW: Duration = Duration::from_secs(10);
/// How far the rate shown may be from the rate measured.
const TOLERANCE: f64 = 0.25;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_dashboard_shows_the_ingest_of_every_instance() {
    let broker = kafka_broker();
    let names = Names::new("scale-rate");
    let bucket = Bucket::new(&test_bucket(), &names.topic);
    let instances = start_instances(INSTANCES, &broker, &names, &bucket).await;
    let addrs = instances.addrs.clone();
    wait_joined_or_show(&addrs, &instances.children.iter().collect::<Vec<_>>()).await;

    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (addrs.iter().enumerate())
        .map(|(i, addr)| tokio::spawn(paced_sender(*addr, i, stop.clone())))
        .collect();
    tokio::time::sleep(WARM_UP).await;

    let (from, stored_before) = (Instant::now(), stored_by_all(&addrs).await);
    let shown = addrs[2];
    let screenshot = target_dir().join("dashboard-s3-rate.png");
    let url = format!("http://{shown}/dashboard");
    let seen = tokio::task::spawn_blocking(move || look_at(&url, "1280x900", &screenshot, None))
        .await
        .expect("the browser's task");
    tokio::time::sleep(WINDOW.saturating_sub(from.elapsed())).await;
    let api = ingest(shown).await;
    let (to, stored_after) = (Instant::now(), stored_by_all(&addrs).await);
    let measured = (stored_after - stored_before) / (to - from).as_secs_f64();
    let page_rate = parse_rate(seen["ingestRate"].as_str().unwrap_or_default());
    eprintln!(
        "all instances stored {measured:.0} records/s; the page of {shown} shows {:?} ({}), its API {api}",
        seen["ingestRate"], seen["ingestTotal"]
    );
    assert_within(page_rate, measured, "the page's ingest rate");
    let api_rate = api["recordsPerSecond"].as_f64();
    assert_within(api_rate, measured, "recordsPerSecond of /analytics/ingest");
    assert_eq!(api["instances"], INSTANCES, "{api}");

    stop.store(true, Ordering::Relaxed);
    let mut sent = 0;
    for sender in senders {
        sent += sender.await.expect("a sender does not panic");
    }
    let (marks, ends) = mark_ends(&broker, &names.topic).await;
    bucket.wait_stored_to(&names.topic, &ends).await;
    // Once every record is stored and every instance published its counters again, "records
    // stored" is the sum of all instances'.
    let all = stored_by_all(&addrs).await;
    assert_eq!(
        all,
        (sent * BATCH + marks.lines.len()) as f64,
        "every record stored once"
    );
    poll_within(
        KAFKA_DEADLINE,
        KAFKA_POLL * 10,
        "the dashboard's records stored to count every instance's",
        async || match ingest(shown).await["recordsStored"].as_f64() {
            Some(shown) if shown == all => Ok(()),
            other => Err(format!("{other:?} of {all}")),
        },
    )
    .await;
    stop_all(instances.children).await;
}

/// Sends a batch of [`BATCH`] records (of the last full hour, inside the dashboard's range) to
/// `addr` every [`PACE`] until `stop`; returns how many were acknowledged (all must be).
async fn paced_sender(addr: SocketAddr, instance: usize, stop: Arc<AtomicBool>) -> usize {
    let client = crate::load::load_client();
    let hour = (chrono::Utc::now() - chrono::Duration::hours(1)).format("%Y-%m-%dT%H");
    let mut pace = tokio::time::interval(PACE);
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sent = 0;
    while !stop.load(Ordering::Relaxed) {
        pace.tick().await;
        let lines: Vec<String> = (0..BATCH)
            .map(|i| {
                line(
                    &format!("{hour}:{:02}:00Z", i % 60),
                    &format!("/rate/{instance}/{sent}/{i}"),
                    "pacer",
                )
            })
            .collect();
        let body = format!("[{}]", lines.join(","));
        let answer = try_send(
            &client,
            addr,
            Method::POST,
            "/logs",
            &[("content-type", "application/json")],
            body.into_bytes(),
        )
        .await
        .expect("an answer");
        assert_eq!(answer.status(), 202, "batch {sent} to {addr}");
        sent += 1;
    }
    sent
}

/// `logs_ingested_total` summed over the instances.
async fn stored_by_all(addrs: &[SocketAddr]) -> f64 {
    let mut sum = 0.0;
    for addr in addrs {
        sum += metric_now(*addr, "logs_ingested_total").await;
    }
    sum
}

/// `GET /analytics/ingest` of `addr`.
async fn ingest(addr: SocketAddr) -> serde_json::Value {
    reqwest::get(format!("http://{addr}/analytics/ingest"))
        .await
        .expect("GET /analytics/ingest")
        .error_for_status()
        .expect("/analytics/ingest answers 200")
        .json()
        .await
        .expect("a JSON body")
}

/// The rate the page prints (`1,234 records/s`).
fn parse_rate(text: &str) -> Option<f64> {
    text.strip_suffix(" records/s")?
        .replace(',', "")
        .parse()
        .ok()
}

fn assert_within(shown: Option<f64>, measured: f64, what: &str) {
    let shown = shown.unwrap_or_else(|| panic!("{what}: no rate shown"));
    assert!(
        (shown - measured).abs() <= TOLERANCE * measured,
        "{what}: {shown:.0} records/s, while all instances stored {measured:.0} records/s"
    );
}
