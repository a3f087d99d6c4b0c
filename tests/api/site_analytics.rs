//! The analytics and the dashboard with sites, through the service: each site's hour files below
//! its own root are summarised there by the aggregation task; a site's read key reads its site's
//! paths, counts and bots and never another's; an operator reads every site or picks one, in the
//! API and on the dashboard (headless Chromium, screenshots in the target directory).

use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::dashboard::{api_answer, release_binary_in};
use crate::support::*;

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
const GOOGLEBOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
const BINGBOT: &str = "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)";

/// Site `a`'s records: (hours before the base hour, path, user agent, count).
const A_SEED: &[(i64, &str, &str, usize)] = &[
    (0, "/shop", FIREFOX, 6),
    (0, "/shop", GOOGLEBOT, 2),
    (2, "/cart", FIREFOX, 3),
];
/// Site `b`'s: other paths, another bot, mostly bots.
const B_SEED: &[(i64, &str, &str, usize)] =
    &[(1, "/b-secret", BINGBOT, 5), (1, "/b-docs", FIREFOX, 1)];

const SITES: &str = "sites:\n\
     - id: a\n  name: Acme Shop\n  ingestKeys: [a-in]\n  readKeys: [a-read]\n\
     - id: b\n  name: Bravo Books\n  ingestKeys: [b-in]\n  readKeys: [b-read]\n";

/// Writes `seed` as `site`'s hour files below `logs_dir`, hours counted back from `base`, as the
/// store lays them out (`<logsDir>/sites/<id>/YYYY-MM-DD/HH.log.json`).
fn seed_site(logs_dir: &Path, site: &str, base: DateTime<Utc>, seed: &[(i64, &str, &str, usize)]) {
    for (hours_ago, path, agent, count) in seed {
        let at = base - Duration::hours(*hours_ago);
        let file = logs_dir
            .join("sites")
            .join(site)
            .join(at.format("%Y-%m-%d/%H.log.json").to_string());
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        let timestamp = at.format("%Y-%m-%dT%H:00:00Z").to_string();
        let mut text = std::fs::read_to_string(&file).unwrap_or_default();
        text.push_str(&format!("{}\n", line(&timestamp, path, agent)).repeat(*count));
        std::fs::write(&file, text).unwrap();
    }
}

/// Seeds sites `a` and `b` below `logs_dir` and writes the sites file into `dir`.
fn seed_sites(dir: &Path, logs_dir: &Path, base: DateTime<Utc>) -> std::path::PathBuf {
    seed_site(logs_dir, "a", base, A_SEED);
    seed_site(logs_dir, "b", base, B_SEED);
    let file = dir.join("sites.yaml");
    std::fs::write(&file, SITES).unwrap();
    file
}

async fn get_as(app: &TestApp, key: &str, path: &str) -> reqwest::Response {
    let bearer = format!("Bearer {key}");
    app.request(Method::GET, path, &[("authorization", &bearer)], Vec::new())
        .await
}

async fn json_as(app: &TestApp, key: &str, path: &str) -> Value {
    let response = get_as(app, key, path).await;
    assert_eq!(response.status(), StatusCode::OK, "{key} {path}");
    body_json(response).await
}

/// (total, bots, humans) of an answer.
fn totals(answer: &Value) -> (u64, u64, u64) {
    let n = |field: &str| answer[field].as_u64().unwrap();
    (n("totalRequests"), n("botRequests"), n("humanRequests"))
}

#[tokio::test]
async fn two_sites_analytics_never_cross_through_the_service() {
    let base = DateTime::parse_from_rfc3339("2025-11-22T14:00:00Z")
        .unwrap()
        .to_utc();
    let sites_dir = tempfile::tempdir().unwrap();
    let app = spawn_app(|config| {
        config.sites.file = seed_sites(sites_dir.path(), &config.storage.logs_dir, base);
        config.auth.tokens = vec!["operator".to_owned()];
        config.aggregation.interval = std::time::Duration::from_millis(50);
    })
    .await;
    // The aggregation task summarises each site below its own root, with no query asking.
    let summary = |site: &str, hour: &str| {
        app.analytics_dir()
            .join(format!("sites/{site}/2025-11-22/summary_{hour}.json"))
    };
    wait_until("each site's summaries", || {
        summary("a", "14").is_file() && summary("a", "12").is_file() && summary("b", "13").is_file()
    })
    .await;
    assert!(
        !app.analytics_dir().join("2025-11-22").exists(),
        "with sites, nothing is summarised at the root"
    );

    let range = "/analytics?from=2025-11-22T00:00:00Z&to=2025-11-23T00:00:00Z";
    let a = json_as(&app, "a-read", range).await;
    assert_eq!(totals(&a), (11, 2, 9), "{a}");
    let b = json_as(&app, "b-read", range).await;
    assert_eq!(totals(&b), (6, 5, 1), "{b}");
    assert_eq!(b["topBots"], json!([{"key": BINGBOT, "requests": 5}]));
    for path in [
        range,
        "/analytics/hours",
        "/analytics?hour=2025-11-22T13:00:00Z",
        "/analytics/sites",
    ] {
        let a = get_as(&app, "a-read", path).await.text().await.unwrap();
        let b = get_as(&app, "b-read", path).await.text().await.unwrap();
        for never in ["b-secret", "b-docs", "bingbot", "Bravo"] {
            assert!(!a.contains(never), "a's {path} shows {never}: {a}");
        }
        for never in ["/shop", "/cart", "Googlebot", "Acme"] {
            assert!(!b.contains(never), "b's {path} shows {never}: {b}");
        }
    }
    // a has no hour 13 (b has); a's read key cannot reach b's, by name or by a path.
    let hour = "/analytics?hour=2025-11-22T13:00:00Z";
    let own = get_as(&app, "a-read", hour).await;
    assert_error(own, StatusCode::NOT_FOUND, "no_summary").await;
    let other = get_as(&app, "a-read", &format!("{hour}&site=b")).await;
    assert_error(other, StatusCode::FORBIDDEN, "forbidden").await;
    let traversal = get_as(&app, "a-read", &format!("{hour}&site=..%2Fb")).await;
    assert_error(traversal, StatusCode::BAD_REQUEST, "invalid_query").await;

    // The operator: every site's totals, each as its read key reads it.
    let all = json_as(&app, "operator", range).await;
    assert_eq!(totals(&all), (17, 7, 10));
    let sites = all["sites"].as_array().unwrap();
    assert_eq!(
        (sites[0]["id"].clone(), sites[1]["name"].clone()),
        (json!("a"), json!("Bravo Books"))
    );
    assert_eq!(totals(&sites[0]), totals(&a));
    assert_eq!(totals(&sites[1]), totals(&b));
    let chosen = json_as(&app, "operator", &format!("{range}&site=b")).await;
    assert_eq!(chosen, b);
    app.stop().await;
}

/// Records sent with each site's ingest key are read back with that site's read key only: the
/// whole chain (key, store, the site's aggregator, the route) through the service.
#[tokio::test]
async fn what_each_sites_ingest_key_sends_its_read_key_reads_back_and_no_other() {
    let sites_dir = tempfile::tempdir().unwrap();
    let file = sites_dir.path().join("sites.yaml");
    std::fs::write(&file, SITES).unwrap();
    let app = spawn_app(|config| {
        config.sites.file = file.clone();
        config.auth.tokens = vec!["operator".to_owned()];
    })
    .await;
    let body = |path: &str, agent: &str, n: usize| {
        let records: Vec<String> = (0..n)
            .map(|_| line("2025-11-22T14:10:00Z", path, agent))
            .collect();
        format!("[{}]", records.join(",")).into_bytes()
    };
    for (key, path, agent, n) in [
        ("a-in", "/a-sent", FIREFOX, 4),
        ("a-in", "/a-sent", GOOGLEBOT, 1),
        ("b-in", "/b-sent", BINGBOT, 3),
    ] {
        let bearer = format!("Bearer {key}");
        let headers = [
            ("authorization", bearer.as_str()),
            ("content-type", "application/json"),
        ];
        let answer = (app.request(Method::POST, "/logs", &headers, body(path, agent, n))).await;
        assert_eq!(answer.status(), StatusCode::ACCEPTED, "{key}");
    }
    let hour = "/analytics?hour=2025-11-22T14:00:00Z";
    let a = json_as(&app, "a-read", hour).await;
    assert_eq!(totals(&a), (5, 1, 4), "{a}");
    assert_eq!(a["requestsPerPath"], json!({"/a-sent": 5}), "{a}");
    let b = json_as(&app, "b-read", hour).await;
    assert_eq!(totals(&b), (3, 3, 0), "{b}");
    assert_eq!(b["requestsPerPath"], json!({"/b-sent": 3}), "{b}");
    for (key, other) in [("a-read", "b"), ("b-read", "a")] {
        let answer = get_as(&app, key, &format!("{hour}&site={other}")).await;
        assert_error(answer, StatusCode::FORBIDDEN, "forbidden").await;
    }
    let range = "/analytics?from=2025-11-22T00:00:00Z&to=2025-11-23T00:00:00Z";
    let all = json_as(&app, "operator", range).await;
    assert_eq!(totals(&all), (8, 4, 4), "{all}");
    let per_site: Vec<(Value, (u64, u64, u64))> = (all["sites"].as_array().unwrap().iter())
        .map(|site| (site["id"].clone(), totals(site)))
        .collect();
    assert_eq!(per_site, [(json!("a"), (5, 1, 4)), (json!("b"), (3, 3, 0))]);
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// On the dashboard, in a real browser.

/// The release binary with sites `a` and `b`, seeded around the current hour (the page's default
/// range is the last 24 hours).
async fn sited_release_binary(dir: &Path) -> (ChildGuard, std::net::SocketAddr) {
    let sites = seed_sites(dir, &dir.join("logs"), Utc::now());
    let extra = format!(
        "auth:\n  tokens: [operator-s3cret]\nsites:\n  file: {}\n",
        sites.display()
    );
    release_binary_in(dir, &extra).await
}

/// The page shows `api`'s totals, bot share and top paths, with no error (and no console error
/// but the 401s before the token was given, when `seen` is the whole report).
fn assert_shows(seen: &Value, api: &Value, who: &str) {
    let errors: Vec<&Value> = (seen["consoleErrors"].as_array().into_iter().flatten())
        .filter(|e| !e.as_str().unwrap().contains("status of 401"))
        .collect();
    assert!(errors.is_empty(), "{who}: {seen}");
    assert_eq!(seen["error"], "", "{who}: {seen}");
    let (total, bots, _) = totals(api);
    assert_eq!(seen["total"], with_commas(total), "{who}: {seen}");
    let share = format!("{:.1}%", 100.0 * bots as f64 / total as f64);
    assert_eq!(seen["botShare"], share, "{who}: {seen}");
    let paths: Vec<String> = (api["topPaths"].as_array().unwrap().iter())
        .map(|p| p["key"].as_str().unwrap().to_owned())
        .collect();
    let shown: Vec<String> = (seen["topPaths"].as_array().unwrap().iter())
        .map(|row| row[0].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(shown, paths, "{who}: {seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium, Node and the release binary: make test"]
async fn a_read_keys_dashboard_shows_its_sites_name_and_data_and_no_picker() {
    let dir = tempfile::tempdir().unwrap();
    let (child, addr) = sited_release_binary(dir.path()).await;
    let api = api_answer(addr, Some("a-read")).await;
    let url = format!("http://{addr}/dashboard");
    let screenshot = target_dir().join("dashboard-site-read-key.png");
    let seen = tokio::task::spawn_blocking({
        let screenshot = screenshot.clone();
        move || look_at(&url, "1280x900", &screenshot, Some("a-read"))
    })
    .await
    .unwrap();
    assert_eq!(seen["askedForToken"], true, "{seen}");
    assert_eq!(seen["siteName"], "Acme Shop", "{seen}");
    assert!(
        seen["title"].as_str().unwrap().starts_with("Acme Shop"),
        "{seen}"
    );
    assert_eq!(seen["picker"], false, "{seen}");
    assert_eq!(
        seen["ingestShown"], false,
        "the whole service's figures: {seen}"
    );
    assert_eq!(seen["perSite"], json!([]), "{seen}");
    assert_shows(&seen, &api, "a's read key");
    let text = seen.to_string();
    assert!(
        !text.contains("b-secret") && !text.contains("Bravo"),
        "{seen}"
    );
    assert!(screenshot.is_file());
    eprintln!("screenshot: {}", screenshot.display());
    drop(child);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium, Node and the release binary: make test"]
async fn an_operators_dashboard_shows_every_site_and_switches_to_one() {
    let dir = tempfile::tempdir().unwrap();
    let (child, addr) = sited_release_binary(dir.path()).await;
    let all = api_answer(addr, Some("operator-s3cret")).await;
    let b = api_answer(addr, Some("b-read")).await;
    let url = format!("http://{addr}/dashboard");
    let (screenshot, picked) = (
        target_dir().join("dashboard-site-operator.png"),
        target_dir().join("dashboard-site-operator-picked.png"),
    );
    let seen = tokio::task::spawn_blocking({
        let (screenshot, picked) = (screenshot.clone(), picked.clone());
        move || {
            let pick = Some(("b", picked.as_path()));
            look_and_pick(&url, "1280x900", &screenshot, Some("operator-s3cret"), pick)
        }
    })
    .await
    .unwrap();
    assert_eq!(seen["picker"], true, "{seen}");
    assert_eq!(
        seen["pickerOptions"],
        json!(["All sites", "Acme Shop", "Bravo Books"])
    );
    assert_eq!(seen["siteName"], "All sites", "{seen}");
    assert_eq!(seen["ingestShown"], true, "{seen}");
    assert_shows(&seen, &all, "the operator, every site");
    let per_site: Vec<(String, String)> = (seen["perSite"].as_array().unwrap().iter())
        .map(|row| {
            (
                row[0].as_str().unwrap().into(),
                row[1].as_str().unwrap().into(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = (all["sites"].as_array().unwrap().iter())
        .map(|site| {
            let name = site["name"].as_str().unwrap().to_owned();
            (name, with_commas(site["totalRequests"].as_u64().unwrap()))
        })
        .collect();
    assert_eq!(per_site, expected, "{seen}");

    let picked_seen = &seen["picked"];
    assert_eq!(picked_seen["siteName"], "Bravo Books", "{seen}");
    assert_eq!(picked_seen["perSite"], json!([]), "{seen}");
    assert_shows(picked_seen, &b, "the operator, site b");
    assert!(screenshot.is_file() && picked.is_file());
    eprintln!("screenshots: {} {}", screenshot.display(), picked.display());
    drop(child);
}
