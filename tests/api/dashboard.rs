//! The dashboard's assets over HTTP (types, caching, security headers, public even with auth on),
//! and the page itself in a real browser (headless Chromium, driven by `tests/browser/`), against
//! the release binary seeded with known data: what a person sees must match the API.

use std::path::Path;
use std::process::Command;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::*;

#[tokio::test]
async fn the_page_and_its_assets_are_served_from_the_binary_with_caching_headers() {
    let app = spawn_app(|config| config.auth.tokens = vec!["secret".to_owned()]).await;
    // `/` redirects to the page (the client follows the redirect).
    let root = app.get("/").await;
    assert_eq!(root.status(), StatusCode::OK);
    assert_eq!(root.url().path(), "/dashboard");
    for (path, content_type, needle) in [
        ("/dashboard", "text/html; charset=utf-8", "<title>Traffic"),
        (
            "/dashboard/dashboard.js",
            "text/javascript; charset=utf-8",
            "/analytics/ingest",
        ),
        (
            "/dashboard/dashboard.css",
            "text/css; charset=utf-8",
            "--bot",
        ),
    ] {
        // Public although analytics need a token: the assets hold no data.
        let response = app.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(
            crate::support::content_type(&response),
            content_type,
            "{path}"
        );
        assert_eq!(header(&response, "cache-control"), "no-cache", "{path}");
        assert_eq!(header(&response, "x-content-type-options"), "nosniff");
        assert!(
            header(&response, "content-security-policy").contains("script-src 'self'"),
            "{path}"
        );
        let etag = header(&response, "etag");
        assert!(etag.starts_with('"') && etag.len() == 10, "{path}: {etag}");
        let text = response.text().await.unwrap();
        assert!(text.contains(needle), "{path}");
        // A browser that has it revalidates and gets no body.
        let again = app
            .request(Method::GET, path, &[("if-none-match", &etag)], Vec::new())
            .await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
        assert_eq!(header(&again, "etag"), etag);
        assert!(again.bytes().await.unwrap().is_empty());
    }
    // The data behind it is not public.
    let ingest = app.get("/analytics/ingest").await;
    assert_error(ingest, StatusCode::UNAUTHORIZED, "unauthorized").await;
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// In a real browser.

/// Records of the last hours before now, so that the page's default range (the last 24 hours)
/// shows them: per hour offset, (path, user agent, count).
const SEED: &[(i64, &str, &str, usize)] = &[
    (
        0,
        "/home",
        "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        7,
    ),
    (
        0,
        "/robots.txt",
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        3,
    ),
    (
        1,
        "/home",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
        4,
    ),
    (1, "/api/items", "curl/8.5.0", 6),
    (
        3,
        "/login",
        "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        2,
    ),
    (5, "/home", "python-requests/2.31.0", 5),
];

fn seed_body() -> Vec<u8> {
    let now = chrono::Utc::now();
    let records: Vec<Value> = SEED
        .iter()
        .flat_map(|(hours_ago, path, agent, count)| {
            let at = (now - chrono::Duration::hours(*hours_ago))
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            std::iter::repeat_n(record(&at, path, agent), *count)
        })
        .collect();
    json_array(&records)
}

/// The release binary on a free port with a fresh directory and `extra` config lines.
pub(crate) async fn release_binary_in(
    dir: &Path,
    extra: &str,
) -> (ChildGuard, std::net::SocketAddr) {
    let yaml = format!(
        "server:\n  addr: 127.0.0.1:0\nstorage:\n  logsDir: {}\n  analyticsDir: {}\n{extra}",
        dir.join("logs").display(),
        dir.join("analytics").display()
    );
    std::fs::write(dir.join("config.yaml"), yaml).unwrap();
    let mut command = Command::new(release_binary());
    for var in log_pipeline::cli::env_vars() {
        command.env_remove(var);
    }
    command
        .arg("--config")
        .arg(dir.join("config.yaml"))
        .current_dir(dir);
    let mut child = ChildGuard::spawn(&mut command);
    let addr = child.listening_addr().await;
    (child, addr)
}

/// [`release_binary_in`] with the seed posted (with `token` when auth is on).
async fn seeded_release_binary(
    dir: &Path,
    extra: &str,
    token: Option<&str>,
) -> (ChildGuard, std::net::SocketAddr) {
    let (child, addr) = release_binary_in(dir, extra).await;
    let mut headers = vec![("content-type", JSON)];
    let bearer = token.map(|t| format!("Bearer {t}"));
    if let Some(bearer) = &bearer {
        headers.push(("authorization", bearer));
    }
    let response = send(
        &client(),
        addr,
        Method::POST,
        "/logs",
        &headers,
        seed_body(),
    )
    .await;
    let total: usize = SEED.iter().map(|s| s.3).sum();
    assert_accepted(response, total).await;
    (child, addr)
}

/// What the API says for the page's default range: the last 24 whole hours up to the current one.
pub(crate) async fn api_answer(addr: std::net::SocketAddr, token: Option<&str>) -> Value {
    let end = chrono::Utc::now().timestamp() / 3600 * 3600 + 3600;
    let hour = |ts: i64| {
        chrono::DateTime::from_timestamp(ts, 0)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let path = format!(
        "/analytics?from={}&to={}&top=10",
        hour(end - 24 * 3600),
        hour(end)
    );
    let bearer = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = bearer
        .iter()
        .map(|b| ("authorization", b.as_str()))
        .collect();
    let response = send(&client(), addr, Method::GET, &path, &headers, Vec::new()).await;
    assert_eq!(response.status(), StatusCode::OK);
    body_json(response).await
}

/// What a person sees must be what the API says: totals, the bot share, the top paths and user
/// agents with their counts and shares; no console errors.
fn assert_page_shows(seen: &Value, api: &Value, viewport: &str) {
    assert_eq!(seen["consoleErrors"], json!([]), "{viewport}: {seen}");
    assert_eq!(seen["error"], "", "{viewport}: an error is shown: {seen}");
    let total = api["totalRequests"].as_u64().unwrap();
    let bots = api["botRequests"].as_u64().unwrap();
    assert!(total > 0 && bots > 0);
    assert_eq!(seen["total"], with_commas(total), "{viewport}: {seen}");
    let share = format!("{:.1}%", 100.0 * bots as f64 / total as f64);
    assert_eq!(seen["botShare"], share, "{viewport}: {seen}");
    let rows = |list: &Value, with_class: bool| -> Vec<Vec<String>> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|entry| {
                let requests = entry["requests"].as_u64().unwrap();
                let mut row = vec![entry["key"].as_str().unwrap().to_owned()];
                if with_class {
                    row.push(if entry["bot"] == true { "bot" } else { "human" }.to_owned());
                }
                row.push(with_commas(requests));
                row.push(format!("{:.1}%", 100.0 * requests as f64 / total as f64));
                row
            })
            .collect()
    };
    assert_eq!(
        seen["topPaths"],
        json!(rows(&api["topPaths"], false)),
        "{viewport}"
    );
    assert_eq!(
        seen["topUserAgents"],
        json!(rows(&api["topUserAgents"], true)),
        "{viewport}"
    );
    assert_eq!(
        seen["topBots"],
        json!(rows(&api["topBots"], false)),
        "{viewport}"
    );
    // One bar per hour of the last 24, and the ingest figures from the service's own counters.
    assert_eq!(seen["bars"], 24, "{viewport}: {seen}");
    assert!(
        seen["ingestTotal"]
            .as_str()
            .is_some_and(|t| t.starts_with(&format!("{} records stored", with_commas(total)))),
        "{viewport}: {seen}"
    );
    assert_eq!(seen["rejected"], "0", "{viewport}: {seen}");
    assert_eq!(
        seen["horizontalOverflow"], false,
        "{viewport}: the page is wider than the screen"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium, Node and the release binary: make test"]
async fn the_dashboard_shows_what_the_api_says_on_a_laptop_and_a_phone() {
    let dir = tempfile::tempdir().unwrap();
    let (child, addr) = seeded_release_binary(dir.path(), "", None).await;
    let api = api_answer(addr, None).await;
    let url = format!("http://{addr}/dashboard");
    for (viewport, file) in [
        ("1280x900", "dashboard-laptop.png"),
        ("390x844", "dashboard-phone.png"),
    ] {
        let screenshot = target_dir().join(file);
        let seen = tokio::task::spawn_blocking({
            let (url, screenshot) = (url.clone(), screenshot.clone());
            move || look_at(&url, viewport, &screenshot, None)
        })
        .await
        .unwrap();
        assert_page_shows(&seen, &api, viewport);
        assert!(screenshot.is_file(), "{}", screenshot.display());
        eprintln!("screenshot: {}", screenshot.display());
    }
    drop(child);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium, Node and the release binary: make test"]
async fn with_auth_on_the_page_asks_for_the_token_and_never_puts_it_in_a_url() {
    let dir = tempfile::tempdir().unwrap();
    let token = "dashboard-s3cret";
    let extra = format!("auth:\n  tokens: [{token}]\n");
    let (child, addr) = seeded_release_binary(dir.path(), &extra, Some(token)).await;
    let api = api_answer(addr, Some(token)).await;
    let url = format!("http://{addr}/dashboard");
    let screenshot = target_dir().join("dashboard-token.png");
    let seen = tokio::task::spawn_blocking({
        let screenshot = screenshot.clone();
        move || look_at(&url, "1280x900", &screenshot, Some(token))
    })
    .await
    .unwrap();
    assert_eq!(seen["askedForToken"], true, "{seen}");
    let urls = seen["requestUrls"].as_array().unwrap();
    assert!(
        urls.iter()
            .any(|u| u.as_str().unwrap().contains("/analytics?")),
        "{seen}"
    );
    for url in urls {
        assert!(
            !url.as_str().unwrap().contains(token),
            "the token is in a URL: {url}"
        );
    }
    // The 401 answers before the token was given: Chromium logs each failed load itself.
    let mut seen = seen;
    let errors: Vec<Value> = seen["consoleErrors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| !e.as_str().unwrap().contains("status of 401"))
        .cloned()
        .collect();
    seen["consoleErrors"] = json!(errors);
    assert_page_shows(&seen, &api, "with a token");
    drop(child);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Chromium, Node and the release binary: make test"]
async fn an_empty_service_says_there_is_no_data_yet() {
    let dir = tempfile::tempdir().unwrap();
    let (child, addr) = release_binary_in(dir.path(), "").await;
    let url = format!("http://{addr}/dashboard");
    let screenshot = target_dir().join("dashboard-empty.png");
    let seen = tokio::task::spawn_blocking(move || look_at(&url, "1280x900", &screenshot, None))
        .await
        .unwrap();
    assert_eq!(seen["consoleErrors"], json!([]), "{seen}");
    assert_eq!(seen["error"], "", "{seen}");
    let empty = seen["empty"].as_str().unwrap();
    assert!(empty.starts_with("No data yet"), "{seen}");
    assert!(empty.contains("POST /logs"), "{seen}");
    drop(child);
}
