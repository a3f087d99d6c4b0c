//! Hourly analytics: the summary files the aggregation passes write (exact counts, layout,
//! late data, the key cap, invalid lines, restarts, the pass at shutdown), the analytics API
//! (`GET /analytics?hour`, `?from&to&top`, `/analytics/hours`, `/analytics/ingest`), answers that
//! are never stale, the bot/human split, the bounds on queries, and the aggregation metrics.
//!
//! Nothing sleeps and hopes: every wait polls until the expected state appears (at most
//! [`DEADLINE`](crate::support::DEADLINE)), then the exact values are asserted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use log_pipeline::analytics::bots::BotClassifier;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{
    AppDirs, CSV, HOUR_14, HOUR_15, JSON, TestApp, assert_accepted, assert_error, body_json,
    content_type, header, json_array, line, poll, record, send, spawn_app, spawn_app_in,
};

const HOUR_12: &str = "2025-11-22/12.log.json";
const HOUR_13: &str = "2025-11-22/13.log.json";

/// Short enough that several passes run during a test.
const FAST: Duration = Duration::from_millis(50);

/// A record as (timestamp, path, userAgent); timestamps are canonical UTC, so the stored line
/// is [`line`] of the same values.
type Rec = (&'static str, &'static str, &'static str);

fn json_body(records: &[Rec]) -> Vec<u8> {
    json_array(
        &records
            .iter()
            .map(|(ts, path, ua)| record(ts, path, ua))
            .collect::<Vec<_>>(),
    )
}

/// A headerless CSV body, every field quoted.
fn csv_body(records: &[Rec]) -> Vec<u8> {
    records
        .iter()
        .map(|(ts, path, ua)| format!("\"{ts}\",\"{path}\",\"{ua}\"\n"))
        .collect::<String>()
        .into_bytes()
}

/// The records whose timestamp falls into the hour of `hour_file` (e.g. `2025-11-22/14.log.json`).
fn in_hour(records: &[Rec], hour_file: &str) -> Vec<Rec> {
    let prefix = &hour_start(hour_file)[..13];
    records
        .iter()
        .filter(|(ts, _, _)| ts.starts_with(prefix))
        .copied()
        .collect()
}

/// The bytes the store writes for `records`.
fn stored_bytes(records: &[Rec]) -> u64 {
    records
        .iter()
        .map(|(ts, path, ua)| line(ts, path, ua).len() as u64 + 1)
        .sum()
}

/// The CRC-32 of the last (up to) 64 bytes of the lines stored for `records`, in order: what a
/// summary covering them must say in `source.tailCrc32` (docs/design/analytics.md).
fn stored_tail_crc32(records: &[Rec]) -> u64 {
    let text: String = records
        .iter()
        .map(|(ts, path, ua)| format!("{}\n", line(ts, path, ua)))
        .collect();
    let tail = &text.as_bytes()[text.len().saturating_sub(64)..];
    u64::from(crc32fast::hash(tail))
}

/// `2025-11-22/14.log.json` → `2025-11-22T14:00:00Z`.
fn hour_start(hour_file: &str) -> String {
    let (day, file) = hour_file.split_once('/').expect("DAY/HH.log.json");
    let hour = file.strip_suffix(".log.json").expect("DAY/HH.log.json");
    format!("{day}T{hour}:00:00Z")
}

/// `2025-11-22/14.log.json` → `<analytics>/2025-11-22/summary_14.json`.
fn summary_path(analytics: &Path, hour_file: &str) -> PathBuf {
    let (day, file) = hour_file.split_once('/').expect("DAY/HH.log.json");
    let hour = file.strip_suffix(".log.json").expect("DAY/HH.log.json");
    analytics.join(day).join(format!("summary_{hour}.json"))
}

/// The `source` block of a summary.
struct Source {
    bytes: u64,
    lines: u64,
    skipped_lines: u64,
    tail_crc32: u64,
}

/// The exact text of the summary of `records` (path, userAgent) for the hour of `hour_file`:
/// pretty JSON with 2-space indentation and sorted keys, and a trailing newline.
fn summary_text(hour_file: &str, records: &[(&str, &str)], source: &Source) -> String {
    let mut paths = BTreeMap::<&str, u64>::new();
    let mut agents = BTreeMap::<&str, u64>::new();
    let mut bots = BTreeMap::<&str, u64>::new();
    for (path, agent) in records {
        *paths.entry(*path).or_default() += 1;
        *agents.entry(*agent).or_default() += 1;
        if is_bot(agent) {
            *bots.entry(*agent).or_default() += 1;
        }
    }
    let bot_requests: u64 = bots.values().sum();
    let source = BTreeMap::from([
        ("bytes", source.bytes),
        ("lines", source.lines),
        ("skippedLines", source.skipped_lines),
        ("tailCrc32", source.tail_crc32),
    ]);
    let summary = BTreeMap::<&str, Value>::from([
        ("botList", json!(bot_list())),
        ("botRequests", json!(bot_requests)),
        ("hour", json!(hour_start(hour_file))),
        ("humanRequests", json!(records.len() as u64 - bot_requests)),
        ("requestsPerBotUserAgent", json!(bots)),
        ("requestsPerPath", json!(paths)),
        ("requestsPerUserAgent", json!(agents)),
        ("source", json!(source)),
        ("totalRequests", json!(records.len())),
    ]);
    let mut text = serde_json::to_string_pretty(&summary).expect("a summary serializes");
    text.push('\n');
    text
}

/// Whether the service's bot list (isbot, vendored) calls `agent` a bot; its own unit test checks
/// it on a labelled sample of real user agents.
fn is_bot(agent: &str) -> bool {
    BotClassifier::embedded().is_bot(agent)
}

/// `botList` of every summary this build writes: `isbot@<version>#<crc32 of the list file>`.
fn bot_list() -> &'static str {
    BotClassifier::embedded().id()
}

/// Waits until the summary of `hour_file` covers every byte of that hour file (its
/// `source.bytes` equals the file's length), then returns it parsed and as raw text.
async fn covering_summary(logs: &Path, analytics: &Path, hour_file: &str) -> (Value, String) {
    let hour_path = logs.join(hour_file);
    let summary_path = summary_path(analytics, hour_file);
    poll(
        &format!("the summary of {hour_file} to cover the whole hour file"),
        async || {
            let length = std::fs::metadata(&hour_path)
                .map_err(|e| format!("hour file: {e}"))?
                .len();
            let text =
                std::fs::read_to_string(&summary_path).map_err(|e| format!("summary file: {e}"))?;
            let summary: Value = serde_json::from_str(&text)
                .map_err(|e| format!("summary is not JSON ({e}): {text}"))?;
            if summary["source"]["bytes"] == length {
                Ok((summary, text))
            } else {
                Err(format!("hour file has {length} bytes; summary: {text}"))
            }
        },
    )
    .await
}

/// [`covering_summary`] of a running app.
async fn app_summary(app: &TestApp, hour_file: &str) -> (Value, String) {
    covering_summary(app.logs_dir.path(), app.analytics_dir(), hour_file).await
}

/// `{"hours": [...]}` as `GET /analytics/hours` should answer for (hour file, total) pairs.
fn hours_body(hours: &[(&str, u64)]) -> Value {
    let hours: Vec<Value> = hours
        .iter()
        .map(|(file, total)| json!({"hour": hour_start(file), "totalRequests": total}))
        .collect();
    json!({ "hours": hours })
}

/// Checks `GET /analytics/hours`: complete, and every hour split into bots and humans that add up
/// to its total; returns the hours with their totals only, as [`hours_body`] writes them.
async fn hours_answer(app: &TestApp) -> Value {
    let response = app.get("/analytics/hours").await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = body_json(response).await;
    assert_eq!(body["complete"], true, "{body}");
    let hours: Vec<Value> = body["hours"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .map(|hour| {
            let total = hour["totalRequests"].as_u64().expect("totalRequests");
            let split = hour["botRequests"].as_u64().expect("botRequests")
                + hour["humanRequests"].as_u64().expect("humanRequests");
            assert_eq!(split, total, "{hour}");
            json!({"hour": hour["hour"], "totalRequests": total})
        })
        .collect();
    json!({ "hours": hours })
}

/// `GET /analytics/hours` must answer exactly `expected` (see [`hours_answer`]). Answers are
/// never stale, so there is nothing to wait for.
async fn wait_for_hours(app: &TestApp, expected: &Value) {
    assert_eq!(hours_answer(app).await, *expected);
}

/// Waits until the counter `name` reaches `expected`, and returns what it then shows (which a
/// counter that overshot makes larger than `expected`).
async fn wait_for_counter(app: &TestApp, name: &str, expected: f64) -> f64 {
    poll(&format!("{name} to reach {expected}"), async || {
        match app.metric_opt(name).await {
            Some(value) if value >= expected => Ok(value),
            other => Err(other),
        }
    })
    .await
}

/// Waits until `n` more aggregation passes have completed, so that at least `n - 1` whole
/// passes ran after this call.
async fn wait_for_passes(app: &TestApp, n: u32) {
    let runs = app.metric("aggregation_runs_total").await;
    wait_for_counter(app, "aggregation_runs_total", runs + f64::from(n)).await;
}

/// `GET /analytics?<query>` of a range, expecting 200 with a JSON body, complete, whose bot and
/// human requests add up to the total, per hour too, and not truncated. Returns the answer as it
/// was before the split existed (without `botRequests`, `humanRequests`, `unclassifiedRequests`,
/// `topBots`, `botList`, `complete`, `truncated`, and the split in `hours` and `topUserAgents`);
/// [`range_answer`] returns all of it.
async fn analytics_json(app: &TestApp, query: &str) -> Value {
    let mut body = range_answer(app, query).await;
    assert_eq!(body["truncated"], false, "{query}: {body}");
    let object = body.as_object_mut().expect("an object");
    for key in [
        "botRequests",
        "humanRequests",
        "unclassifiedRequests",
        "topBots",
        "botList",
        "complete",
        "truncated",
    ] {
        object.remove(key);
    }
    for hour in object["hours"].as_array_mut().expect("hours") {
        let hour = hour.as_object_mut().expect("an hour");
        hour.remove("botRequests");
        hour.remove("humanRequests");
    }
    for agent in object["topUserAgents"]
        .as_array_mut()
        .expect("topUserAgents")
    {
        agent.as_object_mut().expect("a ranked key").remove("bot");
    }
    body
}

/// The whole answer to a range query (see [`analytics_json`]).
async fn range_answer(app: &TestApp, query: &str) -> Value {
    let response = app.get(&format!("/analytics?{query}")).await;
    let status = response.status();
    let content_type = content_type(&response);
    let body = body_json(response).await;
    assert_eq!(status, StatusCode::OK, "{query}: {body}");
    assert!(
        content_type.starts_with("application/json"),
        "{query}: {content_type}"
    );
    assert_eq!(body["complete"], true, "{query}: {body}");
    assert_eq!(body["botList"], bot_list(), "{query}: {body}");
    let count = |value: &Value, key: &str| {
        value[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{key} in {value}"))
    };
    assert_eq!(
        count(&body, "botRequests") + count(&body, "humanRequests"),
        count(&body, "totalRequests"),
        "{query}: {body}"
    );
    assert_eq!(count(&body, "unclassifiedRequests"), 0, "{query}: {body}");
    for hour in body["hours"].as_array().expect("hours") {
        assert_eq!(
            count(hour, "botRequests") + count(hour, "humanRequests"),
            count(hour, "totalRequests"),
            "{hour}"
        );
    }
    for agent in body["topUserAgents"].as_array().expect("topUserAgents") {
        let key = agent["key"].as_str().expect("key");
        assert_eq!(agent["bot"], is_bot(key), "{agent}");
    }
    body
}

/// `GET /analytics?hour=<hour of hour_file>` must answer 200 with exactly `expected`.
async fn assert_served_as_stored(app: &TestApp, hour_file: &str, expected: &str) {
    let response = app
        .get(&format!("/analytics?hour={}", hour_start(hour_file)))
        .await;
    assert_eq!(response.status(), StatusCode::OK, "{hour_file}");
    assert_eq!(content_type(&response), "application/json", "{hour_file}");
    let body = response.bytes().await.expect("summary body");
    assert!(
        body == expected.as_bytes(),
        "GET /analytics?hour for {hour_file} is not the stored file:\n{}\n---- stored:\n{expected}",
        String::from_utf8_lossy(&body)
    );
}

fn ranked(entries: &[(&str, u64)]) -> Value {
    entries
        .iter()
        .map(|(key, requests)| json!({"key": key, "requests": requests}))
        .collect()
}

#[tokio::test]
async fn summaries_on_disk_have_exact_counts_and_layout_and_are_served_as_stored() {
    let app = spawn_app(|config| config.aggregation.interval = FAST).await;
    let json_records: [Rec; 6] = [
        ("2025-11-22T13:05:00Z", "/home", "Mozilla/5.0"),
        ("2025-11-22T13:10:00Z", "/home", "Mozilla/5.0"),
        ("2025-11-22T13:59:59Z", "/login", "curl/7.68.0"),
        ("2025-11-22T14:00:00Z", "/home", "Mozilla/5.0"),
        ("2025-11-22T14:30:00Z", "/login", "curl/7.68.0"),
        ("2025-11-22T15:45:00Z", "/home", "Mozilla/5.0"),
    ];
    let csv_records: [Rec; 3] = [
        (
            "2025-11-22T14:01:00Z",
            "/api/items",
            "Mozilla/5.0 (X11, Linux)",
        ),
        ("2025-11-22T14:02:00Z", "/login", "curl/7.68.0"),
        ("2025-11-22T15:00:00Z", "/search", "curl/7.68.0"),
    ];
    assert_accepted(app.post_logs(JSON, json_body(&json_records)).await, 6).await;
    assert_accepted(app.post_logs(CSV, csv_body(&csv_records)).await, 3).await;
    let all = [json_records.as_slice(), csv_records.as_slice()].concat();

    wait_for_hours(
        &app,
        &hours_body(&[(HOUR_13, 3), (HOUR_14, 4), (HOUR_15, 2)]),
    )
    .await;

    for hour_file in [HOUR_13, HOUR_14, HOUR_15] {
        let records = in_hour(&all, hour_file);
        let file_length = std::fs::metadata(app.hour_path(hour_file)).unwrap().len();
        assert_eq!(file_length, stored_bytes(&records), "{hour_file}");
        let text = std::fs::read_to_string(summary_path(app.analytics_dir(), hour_file))
            .expect("summary file");
        let source = Source {
            bytes: file_length,
            lines: records.len() as u64,
            skipped_lines: 0,
            tail_crc32: stored_tail_crc32(&records),
        };
        let pairs: Vec<(&str, &str)> = records.iter().map(|(_, p, u)| (*p, *u)).collect();
        assert_eq!(
            text,
            summary_text(hour_file, &pairs, &source),
            "{hour_file}"
        );
        assert_served_as_stored(&app, hour_file, &text).await;
    }

    // Hour 14 spelled out: the original's layout (2-space indent, sorted keys) plus state, total
    // and the bot split ("Mozilla/5.0" alone and curl are bots by isbot's list).
    let text = std::fs::read_to_string(summary_path(app.analytics_dir(), HOUR_14)).unwrap();
    let crc = stored_tail_crc32(&in_hour(&all, HOUR_14));
    let bytes = stored_bytes(&in_hour(&all, HOUR_14));
    assert_eq!(
        text,
        format!(
            r#"{{
  "botList": "{list}",
  "botRequests": 3,
  "hour": "2025-11-22T14:00:00Z",
  "humanRequests": 1,
  "requestsPerBotUserAgent": {{
    "Mozilla/5.0": 1,
    "curl/7.68.0": 2
  }},
  "requestsPerPath": {{
    "/api/items": 1,
    "/home": 1,
    "/login": 2
  }},
  "requestsPerUserAgent": {{
    "Mozilla/5.0": 1,
    "Mozilla/5.0 (X11, Linux)": 1,
    "curl/7.68.0": 2
  }},
  "source": {{
    "bytes": {bytes},
    "lines": 4,
    "skippedLines": 0,
    "tailCrc32": {crc}
  }},
  "totalRequests": 4
}}
"#,
            list = bot_list()
        )
    );
    app.stop().await;
}

#[tokio::test]
async fn late_data_for_a_past_hour_updates_its_summary() {
    let app = spawn_app(|config| config.aggregation.interval = FAST).await;
    let first: [Rec; 4] = [
        ("2025-11-22T14:10:00Z", "/home", "Mozilla/5.0"),
        ("2025-11-22T14:11:00Z", "/home", "Mozilla/5.0"),
        ("2025-11-22T14:12:00Z", "/login", "curl/7.68.0"),
        ("2025-11-22T15:01:00Z", "/next", "curl/7.68.0"),
    ];
    assert_accepted(app.post_logs(JSON, json_body(&first)).await, 4).await;
    let (summary, _) = app_summary(&app, HOUR_14).await;
    assert_eq!(summary["totalRequests"], 3, "{summary}");
    let (summary_15, text_15) = app_summary(&app, HOUR_15).await;
    assert_eq!(summary_15["totalRequests"], 1, "{summary_15}");

    // Records for hour 14 arrive after its summary was written (and after a later hour's).
    let late: [Rec; 3] = [
        ("2025-11-22T14:20:00Z", "/home", "curl/7.68.0"),
        ("2025-11-22T14:59:59Z", "/late", "Mozilla/5.0"),
        ("2025-11-22T14:00:00Z", "/login", "curl/7.68.0"),
    ];
    assert_accepted(app.post_logs(CSV, csv_body(&late)).await, 3).await;
    let (summary, text) = app_summary(&app, HOUR_14).await;
    let file_length = std::fs::metadata(app.hour_path(HOUR_14)).unwrap().len();
    assert_eq!(summary["source"]["bytes"], file_length, "{summary}");
    let all = in_hour(&[first.as_slice(), late.as_slice()].concat(), HOUR_14);
    assert_eq!(file_length, stored_bytes(&all));
    assert_eq!(
        summary["requestsPerPath"],
        json!({"/home": 3, "/login": 2, "/late": 1}),
        "{summary}"
    );
    assert_eq!(
        summary["requestsPerUserAgent"],
        json!({"Mozilla/5.0": 3, "curl/7.68.0": 3}),
        "{summary}"
    );
    assert_eq!(summary["totalRequests"], 6, "{summary}");
    assert_eq!(summary["source"]["lines"], 6, "{summary}");
    assert_eq!(summary["source"]["skippedLines"], 0, "{summary}");
    assert_served_as_stored(&app, HOUR_14, &text).await;

    // The other hour is untouched.
    assert_eq!(
        std::fs::read_to_string(summary_path(app.analytics_dir(), HOUR_15)).unwrap(),
        text_15
    );
    wait_for_hours(&app, &hours_body(&[(HOUR_14, 6), (HOUR_15, 1)])).await;
    app.stop().await;
}

#[tokio::test]
async fn range_query_merges_hours_ranks_keys_and_excludes_to() {
    let app = spawn_app(|config| config.aggregation.interval = FAST).await;
    let records: [Rec; 14] = [
        // Hour 12: before every range below but the widest.
        ("2025-11-22T12:00:00Z", "/a", "ua1"),
        ("2025-11-22T12:01:00Z", "/a", "ua1"),
        ("2025-11-22T12:02:00Z", "/a", "ua1"),
        // Hour 13.
        ("2025-11-22T13:00:00Z", "/b", "ua1"),
        ("2025-11-22T13:01:00Z", "/c", "ua2"),
        ("2025-11-22T13:02:00Z", "/d", "ua2"),
        // Hour 14.
        ("2025-11-22T14:00:00Z", "/c", "ua1"),
        ("2025-11-22T14:01:00Z", "/b", "ua3"),
        ("2025-11-22T14:02:00Z", "/e", "ua3"),
        ("2025-11-22T14:03:00Z", "/a", "ua2"),
        // Hour 15: the `to` of the first ranges, so excluded from them.
        ("2025-11-22T15:00:00Z", "/z", "ua9"),
        ("2025-11-22T15:01:00Z", "/z", "ua9"),
        ("2025-11-22T15:02:00Z", "/z", "ua9"),
        ("2025-11-22T15:03:00Z", "/z", "ua9"),
    ];
    assert_accepted(app.post_logs(JSON, json_body(&records[..7])).await, 7).await;
    assert_accepted(app.post_logs(CSV, csv_body(&records[7..])).await, 7).await;
    wait_for_hours(
        &app,
        &hours_body(&[(HOUR_12, 3), (HOUR_13, 3), (HOUR_14, 4), (HOUR_15, 4)]),
    )
    .await;

    // [13:00, 15:00) with top=2: /b and /c tie at 2 (by key), ua1 and ua3 tie at 2 (by key).
    let merged = analytics_json(
        &app,
        "from=2025-11-22T13:00:00Z&to=2025-11-22T15:00:00Z&top=2",
    )
    .await;
    assert_eq!(
        merged,
        json!({
            "from": "2025-11-22T13:00:00Z",
            "to": "2025-11-22T15:00:00Z",
            "totalRequests": 7,
            "distinctPaths": 5,
            "distinctUserAgents": 3,
            "topPaths": ranked(&[("/b", 2), ("/c", 2)]),
            "topUserAgents": ranked(&[("ua2", 3), ("ua1", 2)]),
            "hours": [
                {"hour": "2025-11-22T13:00:00Z", "totalRequests": 3},
                {"hour": "2025-11-22T14:00:00Z", "totalRequests": 4}
            ]
        })
    );

    // The default top (10) lists every key; top=1000 (the largest allowed) the same.
    let full = json!({
        "from": "2025-11-22T13:00:00Z",
        "to": "2025-11-22T15:00:00Z",
        "totalRequests": 7,
        "distinctPaths": 5,
        "distinctUserAgents": 3,
        "topPaths": ranked(&[("/b", 2), ("/c", 2), ("/a", 1), ("/d", 1), ("/e", 1)]),
        "topUserAgents": ranked(&[("ua2", 3), ("ua1", 2), ("ua3", 2)]),
        "hours": [
            {"hour": "2025-11-22T13:00:00Z", "totalRequests": 3},
            {"hour": "2025-11-22T14:00:00Z", "totalRequests": 4}
        ]
    });
    let query = "from=2025-11-22T13:00:00Z&to=2025-11-22T15:00:00Z";
    assert_eq!(analytics_json(&app, query).await, full);
    assert_eq!(
        analytics_json(&app, &format!("{query}&top=1000")).await,
        full
    );

    // Every hour: /a (3 + 1) and /z (4) tie at 4, /a first; ua1 leads with 5.
    assert_eq!(
        analytics_json(
            &app,
            "from=2025-11-22T12:00:00Z&to=2025-11-22T16:00:00Z&top=1"
        )
        .await,
        json!({
            "from": "2025-11-22T12:00:00Z",
            "to": "2025-11-22T16:00:00Z",
            "totalRequests": 14,
            "distinctPaths": 6,
            "distinctUserAgents": 4,
            "topPaths": ranked(&[("/a", 4)]),
            "topUserAgents": ranked(&[("ua1", 5)]),
            "hours": [
                {"hour": "2025-11-22T12:00:00Z", "totalRequests": 3},
                {"hour": "2025-11-22T13:00:00Z", "totalRequests": 3},
                {"hour": "2025-11-22T14:00:00Z", "totalRequests": 4},
                {"hour": "2025-11-22T15:00:00Z", "totalRequests": 4}
            ]
        })
    );

    // One hour: `to` is exclusive (hour 15 is left out) ...
    let only_14 = analytics_json(&app, "from=2025-11-22T14:00:00Z&to=2025-11-22T15:00:00Z").await;
    assert_eq!(only_14["totalRequests"], 4, "{only_14}");
    assert_eq!(
        only_14["hours"],
        json!([{"hour": "2025-11-22T14:00:00Z", "totalRequests": 4}])
    );
    // ... and `from` inclusive (hour 15 is in).
    let only_15 = analytics_json(&app, "from=2025-11-22T15:00:00Z&to=2025-11-22T16:00:00Z").await;
    assert_eq!(
        only_15,
        json!({
            "from": "2025-11-22T15:00:00Z",
            "to": "2025-11-22T16:00:00Z",
            "totalRequests": 4,
            "distinctPaths": 1,
            "distinctUserAgents": 1,
            "topPaths": ranked(&[("/z", 4)]),
            "topUserAgents": ranked(&[("ua9", 4)]),
            "hours": [{"hour": "2025-11-22T15:00:00Z", "totalRequests": 4}]
        })
    );

    // A range without data.
    assert_eq!(
        analytics_json(&app, "from=2025-11-23T00:00:00Z&to=2025-11-23T05:00:00Z").await,
        json!({
            "from": "2025-11-23T00:00:00Z",
            "to": "2025-11-23T05:00:00Z",
            "totalRequests": 0,
            "distinctPaths": 0,
            "distinctUserAgents": 0,
            "topPaths": [],
            "topUserAgents": [],
            "hours": []
        })
    );
    app.stop().await;
}

#[tokio::test]
async fn default_top_is_10_and_hours_may_carry_any_utc_offset() {
    let app = spawn_app(|config| config.aggregation.interval = FAST).await;
    // /p00 .. /p11, requested 12 .. 1 times: a strict order, 12 distinct paths.
    let paths: Vec<String> = (0..12).map(|i| format!("/p{i:02}")).collect();
    let records: Vec<Value> = paths
        .iter()
        .enumerate()
        .flat_map(|(i, path)| {
            std::iter::repeat_n(record("2025-11-22T14:30:00Z", path, "ua"), 12 - i)
        })
        .collect();
    assert_accepted(app.post_logs(JSON, json_array(&records)).await, 78).await;
    wait_for_hours(&app, &hours_body(&[(HOUR_14, 78)])).await;

    let utc = "from=2025-11-22T14:00:00Z&to=2025-11-22T15:00:00Z";
    let merged = analytics_json(&app, utc).await;
    assert_eq!(merged["distinctPaths"], 12);
    let expected: Vec<(&str, u64)> = paths
        .iter()
        .enumerate()
        .take(10)
        .map(|(i, path)| (path.as_str(), 12 - i as u64))
        .collect();
    assert_eq!(
        merged["topPaths"],
        ranked(&expected),
        "the default top is 10"
    );

    // The same hours, written with other offsets (`+` percent-encoded in a query).
    for other in [
        "from=2025-11-22T16:00:00%2B02:00&to=2025-11-22T17:00:00%2B02:00",
        "from=2025-11-22T08:30:00-05:30&to=2025-11-22T09:30:00-05:30",
    ] {
        let mut answer = analytics_json(&app, other).await;
        assert_eq!(answer["from"], "2025-11-22T14:00:00Z", "{other}");
        assert_eq!(answer["to"], "2025-11-22T15:00:00Z", "{other}");
        answer["from"] = merged["from"].clone();
        assert_eq!(answer, merged, "{other}");
    }
    let (_, stored) = app_summary(&app, HOUR_14).await;
    for hour in ["2025-11-22T16:00:00%2B02:00", "2025-11-22T08:30:00-05:30"] {
        let response = app.get(&format!("/analytics?hour={hour}")).await;
        assert_eq!(response.status(), StatusCode::OK, "{hour}");
        assert_eq!(response.text().await.unwrap(), stored, "{hour}");
    }
    app.stop().await;
}

#[tokio::test]
async fn analytics_errors_are_json_with_the_right_code() {
    let app = spawn_app(|config| config.aggregation.interval = FAST).await;
    let response = app.get("/analytics/hours").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        body_json(response).await,
        json!({"hours": [], "complete": true})
    );
    assert_error(
        app.get("/analytics?hour=2025-11-22T14:00:00Z").await,
        StatusCode::NOT_FOUND,
        "no_summary",
    )
    .await;

    let records: [Rec; 1] = [("2025-11-22T14:00:00Z", "/a", "x")];
    assert_accepted(app.post_logs(JSON, json_body(&records)).await, 1).await;
    app_summary(&app, HOUR_14).await;
    // Another hour still has no summary.
    assert_error(
        app.get("/analytics?hour=2025-11-22T15:00:00Z").await,
        StatusCode::NOT_FOUND,
        "no_summary",
    )
    .await;

    let bad_queries = [
        // Not at the start of an hour, or not a time.
        "hour=2025-11-22T14:30:00Z",
        "hour=2025-11-22T14:00:01Z",
        "hour=2025-11-22T14:00:00.5Z",
        "hour=yesterday",
        "hour=2025-11-22",
        "hour=",
        // Neither `hour` nor `from` + `to`.
        "",
        "top=5",
        "from=2025-11-22T14:00:00Z",
        "to=2025-11-22T15:00:00Z",
        // `to` not after `from`.
        "from=2025-11-22T14:00:00Z&to=2025-11-22T14:00:00Z",
        "from=2025-11-22T15:00:00Z&to=2025-11-22T14:00:00Z",
        // More than 744 hours (2025-11-01T00 + 745 h).
        "from=2025-11-01T00:00:00Z&to=2025-12-02T01:00:00Z",
        // Bad range bounds.
        "from=2025-11-22T14:30:00Z&to=2025-11-22T16:00:00Z",
        "from=2025-11-22T14:00:00Z&to=tomorrow",
        // `top` out of 1..=1000 or not a number.
        "from=2025-11-22T14:00:00Z&to=2025-11-22T15:00:00Z&top=0",
        "from=2025-11-22T14:00:00Z&to=2025-11-22T15:00:00Z&top=1001",
        "from=2025-11-22T14:00:00Z&to=2025-11-22T15:00:00Z&top=abc",
        "from=2025-11-22T14:00:00Z&to=2025-11-22T15:00:00Z&top=-1",
    ];
    for query in bad_queries {
        let response = app.get(&format!("/analytics?{query}")).await;
        let body = assert_error(response, StatusCode::BAD_REQUEST, "invalid_query").await;
        assert!(body.get("errors").is_none(), "{query}: {body}");
    }

    // The limits themselves are fine: exactly 744 hours, top=1 and top=1000.
    let widest = analytics_json(&app, "from=2025-11-01T00:00:00Z&to=2025-12-02T00:00:00Z").await;
    assert_eq!(widest["totalRequests"], 1, "{widest}");
    for top in [1, 1000] {
        let merged = analytics_json(
            &app,
            &format!("from=2025-11-22T14:00:00Z&to=2025-11-22T15:00:00Z&top={top}"),
        )
        .await;
        assert_eq!(merged["topPaths"], ranked(&[("/a", 1)]), "{merged}");
    }
    app.stop().await;
}

#[tokio::test]
async fn keys_beyond_the_cap_go_to_other_and_totals_stay_right() {
    let app = spawn_app(|config| {
        config.aggregation.interval = FAST;
        config.aggregation.max_keys_per_hour = 3;
    })
    .await;
    let paths: Vec<String> = (0..10).map(|i| format!("/p{i}")).collect();
    let body: Vec<Value> = paths
        .iter()
        .enumerate()
        .map(|(i, path)| {
            record(
                &format!("2025-11-22T14:{i:02}:00Z"),
                path,
                if i % 2 == 0 { "ua-even" } else { "ua-odd" },
            )
        })
        .collect();
    assert_accepted(app.post_logs(JSON, json_array(&body)).await, 10).await;

    let (summary, text) = app_summary(&app, HOUR_14).await;
    let per_path = summary["requestsPerPath"]
        .as_object()
        .unwrap_or_else(|| panic!("{summary}"));
    assert_eq!(per_path.len(), 4, "3 keys and (other): {summary}");
    assert_eq!(per_path["(other)"], 7, "{summary}");
    for (key, count) in per_path.iter().filter(|(key, _)| *key != "(other)") {
        assert!(paths.contains(key), "{key} was never posted: {summary}");
        assert_eq!(*count, 1, "{key}: {summary}");
    }
    assert_eq!(
        summary["requestsPerUserAgent"],
        json!({"ua-even": 5, "ua-odd": 5}),
        "{summary}"
    );
    assert_eq!(summary["totalRequests"], 10, "{summary}");
    assert_eq!(
        summary["truncated"], true,
        "the summary says keys were folded: {summary}"
    );
    assert_eq!(summary["source"]["lines"], 10, "{summary}");
    assert_eq!(summary["source"]["skippedLines"], 0, "{summary}");
    assert_served_as_stored(&app, HOUR_14, &text).await;
    wait_for_hours(&app, &hours_body(&[(HOUR_14, 10)])).await;
    app.stop().await;
}

#[tokio::test]
async fn invalid_lines_are_skipped_and_counted_and_huge_lines_are_counted() {
    let valid_a = line("2025-11-22T14:00:00Z", "/a", "x");
    let valid_b = line("2025-11-22T14:30:00Z", "/b", "y");
    // One valid record of more than 5 MiB.
    let huge_path = format!("/{}", "h".repeat(5 << 20));
    let huge = line("2025-11-22T14:59:00Z", &huge_path, "x");
    assert!(huge.len() > 5 << 20);
    let content = format!("{valid_a}\nthis is not a record\n{valid_b}\n{huge}\n{valid_a}\n");
    let app = spawn_app(|config| {
        config.aggregation.interval = FAST;
        let day = config.storage.logs_dir.join("2025-11-22");
        std::fs::create_dir_all(&day).unwrap();
        std::fs::write(day.join("14.log.json"), &content).unwrap();
    })
    .await;

    let (summary, text) = app_summary(&app, HOUR_14).await;
    assert_eq!(summary["source"]["bytes"], content.len(), "file untouched");
    assert_eq!(summary["totalRequests"], 4, "the 4 valid lines");
    assert_eq!(summary["source"]["lines"], 5);
    assert_eq!(summary["source"]["skippedLines"], 1);
    let per_path = summary["requestsPerPath"].as_object().unwrap();
    assert_eq!(per_path.len(), 3);
    assert_eq!(
        (&per_path["/a"], &per_path["/b"], &per_path[&huge_path]),
        (&json!(2), &json!(1), &json!(1))
    );
    assert_eq!(summary["requestsPerUserAgent"], json!({"x": 3, "y": 1}));
    assert_served_as_stored(&app, HOUR_14, &text).await;

    wait_for_counter(&app, "aggregation_lines_total", 5.0).await;
    // Later passes find the file unchanged and count nothing again.
    wait_for_passes(&app, 2).await;
    assert_eq!(app.metric("aggregation_skipped_lines_total").await, 1.0);
    assert_eq!(app.metric("aggregation_lines_total").await, 5.0);
    assert_eq!(app.metric("aggregation_errors_total").await, 0.0);
    wait_for_hours(&app, &hours_body(&[(HOUR_14, 4)])).await;
    app.stop().await;
}

#[tokio::test]
async fn a_restarted_service_resumes_without_counting_twice() {
    let app = spawn_app(|config| config.aggregation.interval = FAST).await;
    let before: [Rec; 4] = [
        ("2025-11-22T14:00:00Z", "/a", "x"),
        ("2025-11-22T14:01:00Z", "/a", "x"),
        ("2025-11-22T14:02:00Z", "/b", "y"),
        ("2025-11-22T15:00:00Z", "/c", "x"),
    ];
    assert_accepted(app.post_logs(JSON, json_body(&before)).await, 4).await;
    let (summary, _) = app_summary(&app, HOUR_14).await;
    assert_eq!(summary["totalRequests"], 3, "{summary}");
    let (_, text_15) = app_summary(&app, HOUR_15).await;
    let dirs = app.stop_keeping_dirs().await;

    let app = spawn_app_in(dirs, |config| config.aggregation.interval = FAST).await;
    let after: [Rec; 2] = [
        ("2025-11-22T14:03:00Z", "/a", "y"),
        ("2025-11-22T14:04:00Z", "/d", "x"),
    ];
    assert_accepted(app.post_logs(CSV, csv_body(&after)).await, 2).await;
    let (summary, text) = app_summary(&app, HOUR_14).await;
    assert_eq!(
        summary["requestsPerPath"],
        json!({"/a": 3, "/b": 1, "/d": 1}),
        "{summary}"
    );
    assert_eq!(
        summary["requestsPerUserAgent"],
        json!({"x": 3, "y": 2}),
        "{summary}"
    );
    assert_eq!(summary["totalRequests"], 5, "{summary}");
    assert_eq!(summary["source"]["lines"], 5, "{summary}");
    assert_eq!(
        summary["source"]["bytes"],
        stored_bytes(&in_hour(
            &[before.as_slice(), after.as_slice()].concat(),
            HOUR_14
        ))
    );
    assert_served_as_stored(&app, HOUR_14, &text).await;
    assert_eq!(
        std::fs::read_to_string(summary_path(app.analytics_dir(), HOUR_15)).unwrap(),
        text_15,
        "hour 15 unchanged"
    );

    // The new process read only the 2 appended lines, not the hours again.
    wait_for_counter(&app, "aggregation_lines_total", 2.0).await;
    wait_for_passes(&app, 2).await;
    assert_eq!(app.metric("aggregation_lines_total").await, 2.0);
    wait_for_hours(&app, &hours_body(&[(HOUR_14, 5), (HOUR_15, 1)])).await;
    app.stop().await;
}

#[tokio::test]
async fn graceful_shutdown_runs_a_final_pass() {
    let app = spawn_app(|config| config.aggregation.interval = Duration::from_secs(3600)).await;
    // The start-up pass is over (and found nothing); the next would be an hour away.
    wait_for_counter(&app, "aggregation_runs_total", 1.0).await;
    let records: [Rec; 3] = [
        ("2025-11-22T14:00:00Z", "/a", "x"),
        ("2025-11-22T14:10:00Z", "/b", "x"),
        ("2025-11-22T14:20:00Z", "/a", "y"),
    ];
    assert_accepted(app.post_logs(JSON, json_body(&records)).await, 3).await;
    // No pass ran since, and nothing asked for the hour (a query would bring it up to date).
    assert!(!summary_path(app.analytics_dir(), HOUR_14).exists());
    assert_eq!(app.metric("aggregation_runs_total").await, 1.0);

    let dirs: AppDirs = app.stop_keeping_dirs().await;
    let file_length = std::fs::metadata(dirs.logs.path().join(HOUR_14))
        .unwrap()
        .len();
    assert_eq!(file_length, stored_bytes(&records));
    let text = std::fs::read_to_string(summary_path(dirs.analytics.path(), HOUR_14))
        .expect("the final pass wrote the hour's summary");
    let source = Source {
        bytes: file_length,
        lines: 3,
        skipped_lines: 0,
        tail_crc32: stored_tail_crc32(&records),
    };
    assert_eq!(
        text,
        summary_text(HOUR_14, &[("/a", "x"), ("/b", "x"), ("/a", "y")], &source)
    );
}

#[tokio::test]
async fn aggregation_metrics_count_passes_and_lines() {
    let started = std::time::Instant::now();
    let app = spawn_app(|config| config.aggregation.interval = FAST).await;
    let records: [Rec; 7] = [
        ("2025-11-22T14:00:00Z", "/a", "x"),
        ("2025-11-22T14:01:00Z", "/b", "x"),
        ("2025-11-22T15:02:00Z", "/a", "y"),
        ("2025-11-22T15:03:00Z", "/c", "y"),
        ("2025-11-22T14:04:00Z", "/a", "x"),
        ("2025-11-22T16:05:00Z", "/d", "z"),
        ("2025-11-22T16:06:00Z", "/a", "z"),
    ];
    assert_accepted(app.post_logs(JSON, json_body(&records[..4])).await, 4).await;
    assert_accepted(app.post_logs(CSV, csv_body(&records[4..])).await, 3).await;

    let lines = wait_for_counter(&app, "aggregation_lines_total", 7.0).await;
    assert_eq!(lines, 7.0, "every line written is read once");
    wait_for_passes(&app, 2).await;
    let text = app.metrics_text().await;
    let value = |name: &str| {
        crate::support::sample(&text, name).unwrap_or_else(|| panic!("no {name} in:\n{text}"))
    };
    assert!(value("aggregation_runs_total") >= 2.0, "{text}");
    assert!(value("aggregation_duration_seconds_count") >= 2.0, "{text}");
    // Each pass takes some time, and together no longer than the app has run.
    let spent = value("aggregation_duration_seconds_sum");
    assert!(
        spent > 0.0 && spent < started.elapsed().as_secs_f64(),
        "{spent}: {text}"
    );
    assert_eq!(value("aggregation_lines_total"), 7.0, "{text}");
    assert_eq!(value("aggregation_skipped_lines_total"), 0.0, "{text}");
    assert_eq!(value("aggregation_errors_total"), 0.0, "{text}");
    wait_for_hours(
        &app,
        &hours_body(&[(HOUR_14, 3), (HOUR_15, 2), ("2025-11-22/16.log.json", 2)]),
    )
    .await;
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Never stale, bots versus humans, bounded queries.

/// Real user agents whose class the bot classifier's labelled sample fixes.
const GOOGLEBOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
const CURL: &str = "curl/8.5.0";
const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1";

const RANGE_14_16: &str = "from=2025-11-22T14:00:00Z&to=2025-11-22T16:00:00Z";

/// No pass runs during the test once the start-up pass is over (the next is an hour away): what
/// the answers count, the queries themselves brought up to date.
async fn spawn_without_passes() -> TestApp {
    let app = spawn_app(|config| config.aggregation.interval = Duration::from_secs(3600)).await;
    wait_for_counter(&app, "aggregation_runs_total", 1.0).await;
    app
}

#[tokio::test]
async fn a_batch_is_in_every_answer_at_once_split_into_bots_and_humans() {
    let app = spawn_without_passes().await;
    let first: [Rec; 5] = [
        ("2025-11-22T14:00:00Z", "/home", FIREFOX),
        ("2025-11-22T14:01:00Z", "/home", IPHONE),
        ("2025-11-22T14:02:00Z", "/robots.txt", GOOGLEBOT),
        ("2025-11-22T14:03:00Z", "/home", GOOGLEBOT),
        ("2025-11-22T15:00:00Z", "/api", CURL),
    ];
    assert_accepted(app.post_logs(JSON, json_body(&first)).await, 5).await;

    // At once: the hour as stored, with the split.
    let response = app.get("/analytics?hour=2025-11-22T14:00:00Z").await;
    assert_eq!(response.status(), StatusCode::OK);
    let hour: Value = body_json(response).await;
    assert_eq!(hour["totalRequests"], 4, "{hour}");
    assert_eq!(
        (&hour["botRequests"], &hour["humanRequests"]),
        (&json!(2), &json!(2))
    );
    assert_eq!(hour["requestsPerBotUserAgent"], json!({ GOOGLEBOT: 2 }));
    assert_eq!(hour["botList"], bot_list());

    let range = range_answer(&app, RANGE_14_16).await;
    assert_eq!(
        (
            &range["totalRequests"],
            &range["botRequests"],
            &range["humanRequests"]
        ),
        (&json!(5), &json!(3), &json!(2)),
        "{range}"
    );
    assert_eq!(
        range["topBots"],
        json!([{"key": GOOGLEBOT, "requests": 2}, {"key": CURL, "requests": 1}])
    );
    assert_eq!(
        range["topUserAgents"],
        // Ties by key: "Mozilla/5.0 (X11" < "Mozilla/5.0 (iPhone" < "curl".
        json!([
            {"key": GOOGLEBOT, "requests": 2, "bot": true},
            {"key": FIREFOX, "requests": 1, "bot": false},
            {"key": IPHONE, "requests": 1, "bot": false},
            {"key": CURL, "requests": 1, "bot": true}
        ])
    );
    assert_eq!(
        range["hours"],
        json!([
            {"hour": "2025-11-22T14:00:00Z", "totalRequests": 4, "botRequests": 2, "humanRequests": 2},
            {"hour": "2025-11-22T15:00:00Z", "totalRequests": 1, "botRequests": 1, "humanRequests": 0}
        ])
    );

    // The next batch too, in every kind of answer.
    let second: [Rec; 2] = [
        ("2025-11-22T14:30:00Z", "/late", FIREFOX),
        ("2025-11-22T16:00:00Z", "/next", CURL),
    ];
    assert_accepted(app.post_logs(CSV, csv_body(&second)).await, 2).await;
    let range = range_answer(&app, RANGE_14_16).await;
    assert_eq!(
        (&range["totalRequests"], &range["humanRequests"]),
        (&json!(6), &json!(3))
    );
    wait_for_hours(
        &app,
        &hours_body(&[(HOUR_14, 5), (HOUR_15, 1), ("2025-11-22/16.log.json", 1)]),
    )
    .await;

    // No pass ran: the queries did the work, and the metrics counted what they read.
    assert_eq!(app.metric("aggregation_runs_total").await, 1.0);
    assert_eq!(app.metric("aggregation_lines_total").await, 7.0);
    assert_eq!(
        app.metric("aggregation_requests_total{class=\"bot\"}")
            .await,
        4.0
    );
    assert_eq!(
        app.metric("aggregation_requests_total{class=\"human\"}")
            .await,
        3.0
    );
    assert!(app.metric("analytics_query_catch_up_seconds_count").await >= 3.0);
    app.stop().await;
}

/// A summary written before the split (here: by this service's previous version) gets it the
/// first time its hour is read, without counting anything twice; an hour whose file is gone keeps
/// its summary as it is, counted as unclassified.
#[tokio::test]
async fn summaries_without_the_split_get_it_when_read_and_old_ones_count_as_unclassified() {
    let records: [Rec; 3] = [
        ("2025-11-22T14:00:00Z", "/a", FIREFOX),
        ("2025-11-22T14:01:00Z", "/a", GOOGLEBOT),
        ("2025-11-22T14:02:00Z", "/b", CURL),
    ];
    let lines: String = records
        .iter()
        .map(|(ts, path, ua)| format!("{}\n", line(ts, path, ua)))
        .collect();
    let source = Source {
        bytes: lines.len() as u64,
        lines: 3,
        skipped_lines: 0,
        tail_crc32: stored_tail_crc32(&records),
    };
    let pairs: Vec<(&str, &str)> = records.iter().map(|(_, p, u)| (*p, *u)).collect();
    let current = summary_text(HOUR_14, &pairs, &source);
    // The same summary as the previous version wrote it: without the four split keys.
    let mut old: BTreeMap<String, Value> = serde_json::from_str(&current).unwrap();
    for key in [
        "botList",
        "botRequests",
        "humanRequests",
        "requestsPerBotUserAgent",
    ] {
        old.remove(key);
    }
    let old = serde_json::to_string_pretty(&old).unwrap() + "\n";
    let app = spawn_app(|config| {
        config.aggregation.interval = Duration::from_secs(3600);
        let logs = &config.storage.logs_dir;
        std::fs::create_dir_all(logs.join("2025-11-22")).unwrap();
        std::fs::write(logs.join(HOUR_14), &lines).unwrap();
        let analytics = &config.storage.analytics_dir;
        std::fs::create_dir_all(analytics.join("2025-11-22")).unwrap();
        std::fs::write(summary_path(analytics, HOUR_14), &old).unwrap();
        // Hour 13 has a summary of the original service and no hour file any more.
        std::fs::write(
            summary_path(analytics, HOUR_13),
            r#"{"hour":"2025-11-22T13:00:00Z","requestsPerPath":{"/x":4},"requestsPerUserAgent":{"y":4}}"#,
        )
        .unwrap();
    })
    .await;
    assert_served_as_stored(&app, HOUR_14, &current).await;
    assert_eq!(
        std::fs::read_to_string(summary_path(app.analytics_dir(), HOUR_14)).unwrap(),
        current
    );
    // Split from the summary's own counts: the hour file was not read again.
    assert_eq!(app.metric("aggregation_lines_total").await, 0.0);

    let response = app
        .get("/analytics?from=2025-11-22T13:00:00Z&to=2025-11-22T15:00:00Z")
        .await;
    let range = body_json(response).await;
    assert_eq!(
        (
            &range["totalRequests"],
            &range["botRequests"],
            &range["humanRequests"],
            &range["unclassifiedRequests"]
        ),
        (&json!(7), &json!(2), &json!(1), &json!(4)),
        "{range}"
    );
    assert_eq!(
        range["hours"][0],
        json!({"hour": "2025-11-22T13:00:00Z", "totalRequests": 4})
    );
    app.stop().await;
}

/// Writes `lines` records of `agent` into hour 14's file of a running service, from outside the
/// service (as a late file copied in would), so that the next query of hour 14 has to read them.
fn write_big_hour_14(app: &TestApp, lines: usize, agent: &str) {
    let line = format!("{}\n", line("2025-11-22T14:00:00Z", "/bulk", agent));
    let path = app.hour_path(HOUR_14);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, line.repeat(lines)).unwrap();
}

#[tokio::test]
async fn beyond_four_queries_at_once_the_answer_is_503_busy_with_retry_after() {
    let app = spawn_without_passes().await;
    // Long enough to read that the first query still holds the summaries when the last arrive.
    write_big_hour_14(&app, 200_000, CURL);
    let (busy, answered) = poll("a query answered 503 busy", async || {
        let answers = get_at_once(&app, "/analytics?hour=2025-11-22T14:00:00Z", 12).await;
        let mut busy = Vec::new();
        let mut answered = 0;
        for response in answers {
            match response.status() {
                StatusCode::OK => {
                    let body = body_json(response).await;
                    assert_eq!(body["totalRequests"], 200_000, "{body}");
                    answered += 1;
                }
                StatusCode::SERVICE_UNAVAILABLE => {
                    assert_eq!(header(&response, "retry-after"), "1");
                    busy.push(
                        assert_error(response, StatusCode::SERVICE_UNAVAILABLE, "busy").await,
                    );
                }
                other => panic!("unexpected {other}: {}", response.text().await.unwrap()),
            }
        }
        if busy.is_empty() {
            // The hour was already up to date, so every query was quick: make it slow again.
            write_big_hour_14(&app, 200_000 + answered, CURL);
            Err(answered)
        } else {
            Ok((busy, answered))
        }
    })
    .await;
    // Every request was answered: the ones that got a slot with the right count, the rest busy.
    assert!(answered >= 1, "{answered}");
    assert_eq!(answered + busy.len(), 12);
    assert_eq!(
        busy[0]["message"],
        "too many analytics queries at once; retry shortly"
    );
    assert_eq!(
        app.metric("analytics_queries_busy_total").await,
        busy.len() as f64
    );
    app.stop().await;
}

/// `GET path`, `n` times at once; every answer, in any order.
async fn get_at_once(app: &TestApp, path: &str, n: usize) -> Vec<reqwest::Response> {
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (client, addr, path) = (app.client.clone(), app.addr, path.to_owned());
        requests
            .spawn(async move { send(&client, addr, Method::GET, &path, &[], Vec::new()).await });
    }
    requests.join_all().await
}

#[tokio::test]
async fn a_query_whose_request_timed_out_stops_and_frees_its_slot() {
    let app = spawn_app(|config| {
        config.aggregation.interval = Duration::from_secs(3600);
        config.server.request_timeout = Duration::from_millis(100);
    })
    .await;
    wait_for_counter(&app, "aggregation_runs_total", 1.0).await;
    poll("a range query to time out and be cancelled", async || {
        // A fresh big hour each round, so the query is slower than its request's 100 ms.
        write_big_hour_14(&app, 300_000, FIREFOX);
        let response = app.get(&format!("/analytics?{RANGE_14_16}")).await;
        match response.status() {
            StatusCode::SERVICE_UNAVAILABLE => {
                let body = assert_error(response, StatusCode::SERVICE_UNAVAILABLE, "timeout").await;
                Ok(body)
            }
            other => Err(other),
        }
    })
    .await;
    // The blocking work saw its request go and stopped before the next hour.
    wait_for_counter(&app, "analytics_queries_cancelled_total", 1.0).await;
    // Every slot is free again: four queries at once are all answered.
    let answers = get_at_once(
        &app,
        "/analytics?from=2025-11-23T00:00:00Z&to=2025-11-23T01:00:00Z",
        4,
    )
    .await;
    for response in answers {
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "no slot is held by the cancelled query"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn a_summary_over_the_size_limit_is_a_clear_422_not_a_failure() {
    let app = spawn_without_passes().await;
    // The largest summary the default `aggregation.maxSummaryBytes` lets the service write.
    let defaults = log_pipeline::config::AggregationConfig::default();
    let limit = log_pipeline::analytics::Bounds {
        max_keys: defaults.max_keys_per_hour,
        max_bytes: defaults.max_summary_bytes,
    }
    .max_file_bytes();
    let path = summary_path(app.analytics_dir(), HOUR_14);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    // Sparse: no disk is spent.
    std::fs::File::create(&path)
        .unwrap()
        .set_len(limit + 1)
        .unwrap();
    for query in [
        "hour=2025-11-22T14:00:00Z".to_owned(),
        RANGE_14_16.to_owned(),
    ] {
        let response = app.get(&format!("/analytics?{query}")).await;
        let body = assert_error(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "summary_too_large",
        )
        .await;
        assert_eq!(body["hour"], "2025-11-22T14:00:00Z", "{body}");
        assert_eq!(body["bytes"], limit + 1, "{body}");
        assert_eq!(body["limit"], limit, "{body}");
    }
    // The other hours answer as usual.
    let other = range_answer(&app, "from=2025-11-22T15:00:00Z&to=2025-11-22T16:00:00Z").await;
    assert_eq!(other["totalRequests"], 0);
    app.stop().await;
}

#[tokio::test]
async fn ingest_counters_are_served_for_the_dashboard() {
    let app = spawn_app(|_| {}).await;
    let records: [Rec; 2] = [
        ("2025-11-22T14:00:00Z", "/a", FIREFOX),
        ("2025-11-22T14:01:00Z", "/b", CURL),
    ];
    assert_accepted(app.post_logs(JSON, json_body(&records)).await, 2).await;
    let refused = app.post_logs(JSON, b"[{\"path\": 1}]".to_vec()).await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let response = app.get("/analytics/ingest").await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = body_json(response).await;
    let uptime = body["uptimeSeconds"].as_f64().expect("uptimeSeconds");
    assert!(uptime > 0.0, "{body}");
    assert!(
        body["at"].as_str().is_some_and(|at| at.ends_with('Z')),
        "{body}"
    );
    // The two records were stored within the rate's window (the last 10 s).
    let rate = body["recordsPerSecond"].as_f64().expect("recordsPerSecond");
    assert!(rate > 0.0, "{body}");
    for measured in ["uptimeSeconds", "at", "recordsPerSecond"] {
        body.as_object_mut().unwrap().remove(measured);
    }
    assert_eq!(
        body,
        json!({
            "recordsStored": 2,
            "batchesAccepted": 1,
            "rejectedRequests": {"total": 1, "invalid": 1, "overloaded": 0, "failed": 0},
            "instances": 1,
            "scope": "instance"
        })
    );
    app.stop().await;
}
