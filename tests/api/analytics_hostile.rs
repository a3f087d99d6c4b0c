//! The analytics' promises tried as a hostile client or an unlucky moment would (issue 28):
//! readers racing writers across hour boundaries (never stale, never going back), an hour of
//! huge distinct keys (the byte budget, said in the answer), and query slots held by clients that
//! do not use them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::support::{
    Race, TestApp, body_json, line, race_hour, race_hour_file, run_race, send, spawn_app,
};

/// Every answer counts at least what was acknowledged before it was asked, and no summary file
/// ever covers less than it did, while 8 writers cross 4 hour boundaries and 4 readers ask every
/// analytics route (and passes run every 20 ms); at the end the totals equal the hour files'
/// lines exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn answers_never_go_back_while_writers_cross_hours() {
    let app = spawn_app(|config| config.aggregation.interval = Duration::from_millis(20)).await;
    let race = Race {
        writers: 8,
        readers: 4,
        hours: 4,
        hour_every: Duration::from_millis(750),
    };
    let report = run_race(app.addr, app.analytics_dir(), race).await;
    eprintln!(
        "{} batches, {} answers checked ({} busy), {} summary reads; stale: {}, went back: {}",
        report.batches.len(),
        report.answers,
        report.busy,
        report.summary_reads,
        report.stale.len(),
        report.went_back.len()
    );
    assert!(report.failed.is_empty(), "{:#?}", report.failed);
    assert!(
        report.batches.iter().all(|batch| batch.status == 202),
        "every batch is stored in v1"
    );
    assert!(report.answers >= 30, "{} answers", report.answers);
    assert!(report.summary_reads >= 30, "{} reads", report.summary_reads);
    assert!(
        report.stale.is_empty(),
        "stale answers: {:#?}",
        &report.stale[..report.stale.len().min(10)]
    );
    assert!(
        report.went_back.is_empty(),
        "summaries going back: {:#?}",
        &report.went_back[..report.went_back.len().min(10)]
    );
    assert_totals_equal_hour_files(&app, race.hours).await;
    app.stop().await;
}

/// `GET /analytics/hours` answers, for each of the first `hours` race hours, exactly the lines of
/// its hour file.
async fn assert_totals_equal_hour_files(app: &TestApp, hours: usize) {
    let answer = app.get("/analytics/hours").await;
    assert_eq!(answer.status(), StatusCode::OK);
    let body: Value = body_json(answer).await;
    for k in 0..hours {
        let lines = app.read_hour_file(&race_hour_file(k)).len() as u64;
        let total = body["hours"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|h| h["hour"] == race_hour(k))
            .and_then(|h| h["totalRequests"].as_u64());
        assert_eq!(total, Some(lines), "hour {k}: {body}");
    }
}

/// A month of hours, each with an hour file of a few hundred records, so that a 744-hour range
/// reads 744 summaries: the most a range may ask for.
fn write_a_month(app: &TestApp) {
    for day in 1..=31 {
        for hour in 0..24 {
            let ts = format!("2025-10-{day:02}T{hour:02}:00:00Z");
            let lines: String = (0..300)
                .map(|i| {
                    format!(
                        "{}\n",
                        line(&ts, &format!("/month/{}", i % 150), "curl/8.5.0")
                    )
                })
                .collect();
            let path = app.hour_path(&format!("2025-10-{day:02}/{hour:02}.log.json"));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, lines).unwrap();
        }
    }
}

const MONTH: &str = "/analytics?from=2025-10-01T00:00:00Z&to=2025-11-01T00:00:00Z&top=1000";

/// Sends a month-long range query over a raw connection and never reads the answer; `vanish`
/// closes the connection at once instead.
async fn squat(app: &TestApp, vanish: bool) -> Option<TcpStream> {
    let mut stream = TcpStream::connect(app.addr).await.expect("connect");
    let head = format!("GET {MONTH} HTTP/1.1\r\nHost: squatter\r\n\r\n");
    stream.write_all(head.as_bytes()).await.expect("send");
    (!vanish).then_some(stream)
}

/// Clients that hold the analytics query slots without using what they get (month-long ranges
/// asked back to back, answers never read, clients that leave at once) do not keep a normal
/// query (one hour) from being answered, quickly. Before the fix the normal query got 503
/// `busy` while the long ones held every slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn query_slots_held_by_long_or_vanishing_clients_leave_a_normal_query_served() {
    let app = spawn_app(|config| config.aggregation.interval = Duration::from_secs(3600)).await;
    write_a_month(&app);
    // The first month-long query builds the summaries; the later ones only read them.
    let built = app.get(MONTH).await;
    assert_eq!(built.status(), StatusCode::OK);
    assert_eq!(body_json(built).await["totalRequests"], 744 * 300);
    let hour = "/analytics?hour=2025-10-15T12:00:00Z";
    let normal = async || {
        let started = Instant::now();
        let answer = app.get(hour).await;
        let status = answer.status();
        let body = body_json(answer).await;
        (status, body, started.elapsed())
    };
    let mut unloaded: Vec<Duration> = Vec::new();
    for _ in 0..20 {
        let (status, body, took) = normal().await;
        assert_eq!(
            (status, &body["totalRequests"]),
            (StatusCode::OK, &Value::from(300))
        );
        unloaded.push(took);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let month_loops: Vec<_> = (0..4)
        .map(|_| {
            let (client, addr, stop) = (app.client.clone(), app.addr, stop.clone());
            tokio::spawn(async move {
                let mut answered = 0;
                while !stop.load(Ordering::Relaxed) {
                    let answer = send(&client, addr, Method::GET, MONTH, &[], Vec::new()).await;
                    answered += usize::from(answer.status() == StatusCode::OK);
                }
                answered
            })
        })
        .collect();
    let mut never_reading = Vec::new();
    for _ in 0..8 {
        never_reading.extend(squat(&app, false).await);
        squat(&app, true).await;
    }
    let mut loaded = Vec::new();
    for _ in 0..40 {
        let (status, body, took) = normal().await;
        assert_eq!(
            status,
            StatusCode::OK,
            "a normal query beside the squatters: {body}"
        );
        assert_eq!(body["totalRequests"], 300);
        loaded.push(took);
        squat(&app, true).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut month_answers = 0;
    for task in month_loops {
        month_answers += task.await.unwrap();
    }
    drop(never_reading);
    unloaded.sort();
    loaded.sort();
    let (p99_unloaded, p99_loaded) = (unloaded[19], loaded[39]);
    eprintln!(
        "normal hour query p99: {p99_unloaded:?} alone, {p99_loaded:?} beside 4 month-long loops ({month_answers} answered), 8 clients never reading and 48 vanishing"
    );
    assert!(month_answers > 0);
    // The long queries held every slot they may: some of them were turned away as busy.
    assert!(app.metric("analytics_queries_busy_total").await > 0.0);
    assert!(
        p99_loaded <= p99_unloaded * 10 + Duration::from_millis(500),
        "p99 {p99_loaded:?} beside squatters, {p99_unloaded:?} alone"
    );
    app.stop().await;
}
