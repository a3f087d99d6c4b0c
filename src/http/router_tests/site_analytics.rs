//! The analytics routes with sites, over hour files written below each site's root: a read key
//! reads its own site's paths, counts and bots and nothing of another's; an operator reads every
//! site (with each one's totals) or picks one; `?site=` is parsed, never trusted.

use std::path::Path;

use axum::http::StatusCode;
use serde_json::json;

use super::*;

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
const GOOGLEBOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
const BINGBOT: &str = "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)";

/// Site `a`'s records: hour 14 (3 humans and 2 bots on /shop), hour 15 (1 human on /cart).
const A_RECORDS: &[(&str, &str, &str, usize)] = &[
    ("2025-11-22/14.log.json", "/shop", FIREFOX, 3),
    ("2025-11-22/14.log.json", "/shop", GOOGLEBOT, 2),
    ("2025-11-22/15.log.json", "/cart", FIREFOX, 1),
];
/// Site `b`'s records: hour 14 only, mostly another bot, on a path `a` must never see.
const B_RECORDS: &[(&str, &str, &str, usize)] = &[
    ("2025-11-22/14.log.json", "/b-secret", BINGBOT, 4),
    ("2025-11-22/14.log.json", "/b-secret", FIREFOX, 1),
];

const RANGE: &str = "/analytics?from=2025-11-22T14:00:00Z&to=2025-11-22T16:00:00Z";
const HOUR: &str = "/analytics?hour=2025-11-22T14:00:00Z";

/// Writes `records` as the hour files of `site` below `root/logs`, as the store lays them out.
fn write_site(root: &Path, site: &str, records: &[(&str, &str, &str, usize)]) {
    let dir = layout::site_dir(&root.join("logs"), Some(&SiteId::parse(site).unwrap()));
    for (file, path, agent, count) in records {
        let file = dir.join(file);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        let hour = file
            .file_stem()
            .unwrap()
            .to_str()
            .unwrap()
            .trim_end_matches(".log");
        let line = json!({"timestamp": format!("2025-11-22T{hour}:10:00Z"), "path": path, "userAgent": agent});
        let mut text = std::fs::read_to_string(&file).unwrap_or_default();
        text.push_str(&format!("{line}\n").repeat(*count));
        std::fs::write(&file, text).unwrap();
    }
}

const SITES: &str = "sites:\n\
     - id: a\n  name: Acme Shop\n  ingestKeys: [a-in]\n  readKeys: [a-read]\n\
     - id: b\n  name: Bravo\n  ingestKeys: [b-in]\n  readKeys: [b-read]\n";

/// The configuration of sites `a` and `b` (the sites file in `root`) and an operator key.
fn sited_config(root: &Path, sites: &str) -> Config {
    let file = root.join("sites.yaml");
    std::fs::write(&file, sites).unwrap();
    let mut config = Config::default();
    config.auth.tokens = vec!["operator".to_owned()];
    config.sites.file = file;
    config
}

/// A router over sites `a` and `b`, each with its records below its own root.
fn sited(root: &Path) -> Api {
    write_site(root, "a", A_RECORDS);
    write_site(root, "b", B_RECORDS);
    let config = sited_config(root, SITES);
    api_over(aggregators_in(root.to_owned()), |c| *c = config)
}

impl Api {
    /// `GET path` with `key` as the bearer token.
    async fn get_as(&self, key: &str, path: &str) -> Answered {
        let request = Request::get(path).header("authorization", format!("Bearer {key}"));
        self.send(request.body(Body::empty()).unwrap()).await
    }

    /// The JSON of a 200 answer to `GET path` with `key`.
    async fn read_as(&self, key: &str, path: &str) -> Value {
        let answer = self.get_as(key, path).await;
        let text = String::from_utf8_lossy(&answer.body);
        assert_eq!(answer.status, StatusCode::OK, "{key} {path}: {text}");
        answer.json()
    }
}

fn ranked(entries: &[(&str, u64)]) -> Value {
    let entries: Vec<Value> = (entries.iter())
        .map(|(key, requests)| json!({"key": key, "requests": requests}))
        .collect();
    json!(entries)
}

/// A body as text, for readable failures.
fn text(body: &[u8]) -> String {
    String::from_utf8_lossy(body).into_owned()
}

/// The totals of an answer: (total, bots, humans).
fn totals(answer: &Value) -> (u64, u64, u64) {
    let n = |field: &str| answer[field].as_u64().unwrap();
    (n("totalRequests"), n("botRequests"), n("humanRequests"))
}

#[tokio::test]
async fn a_read_key_reads_its_sites_paths_counts_and_bots_and_nothing_of_another() {
    let root = tempfile::tempdir().unwrap();
    let api = sited(root.path());

    let a = api.read_as("a-read", RANGE).await;
    assert_eq!(totals(&a), (6, 2, 4), "{a}");
    assert_eq!(a["topPaths"], ranked(&[("/shop", 5), ("/cart", 1)]));
    assert_eq!(a["topBots"], ranked(&[(GOOGLEBOT, 2)]));
    assert_eq!(a.get("sites"), None, "one site's answer is today's shape");
    let b = api.read_as("b-read", RANGE).await;
    assert_eq!(totals(&b), (5, 4, 1), "{b}");
    assert_eq!(b["topPaths"], ranked(&[("/b-secret", 5)]));
    assert_eq!(b["topBots"], ranked(&[(BINGBOT, 4)]));

    let hours = api.read_as("a-read", "/analytics/hours").await;
    assert_eq!(
        hours["hours"],
        json!([
            {"hour": "2025-11-22T14:00:00Z", "totalRequests": 5, "botRequests": 2, "humanRequests": 3},
            {"hour": "2025-11-22T15:00:00Z", "totalRequests": 1, "botRequests": 0, "humanRequests": 1},
        ])
    );
    let hour = api.read_as("a-read", HOUR).await;
    assert_eq!(hour["totalRequests"], 5);
    assert_eq!(hour["requestsPerPath"], json!({"/shop": 5}));

    // Nothing of b in any of a's answers, nor of a in b's.
    for path in [RANGE, HOUR, "/analytics/hours", "/analytics/sites"] {
        let a = String::from_utf8(api.get_as("a-read", path).await.body).unwrap();
        assert!(!a.contains("b-secret") && !a.contains("bingbot") && !a.contains("Bravo"));
        let b = String::from_utf8(api.get_as("b-read", path).await.body).unwrap();
        assert!(!b.contains("/shop") && !b.contains("Googlebot") && !b.contains("Acme"));
    }
    // The summaries are each site's, below its own root.
    let summary = |site: &str| {
        root.path()
            .join(format!("analytics/sites/{site}/2025-11-22/summary_14.json"))
    };
    assert!(summary("a").is_file() && summary("b").is_file());
    assert!(!root.path().join("analytics/2025-11-22").exists());
}

#[tokio::test]
async fn an_operator_reads_every_site_with_each_ones_totals_or_picks_one() {
    let root = tempfile::tempdir().unwrap();
    let api = sited(root.path());

    let all = api.read_as("operator", RANGE).await;
    assert_eq!(
        totals(&all),
        (11, 6, 5),
        "the totals over every site: {all}"
    );
    assert_eq!(
        all["topPaths"],
        ranked(&[("/b-secret", 5), ("/shop", 5), ("/cart", 1)])
    );
    assert_eq!(all["distinctPaths"], 3);
    let per_site = json!([
        {"id": "a", "name": "Acme Shop", "totalRequests": 6, "botRequests": 2, "humanRequests": 4, "unclassifiedRequests": 0},
        {"id": "b", "name": "Bravo", "totalRequests": 5, "botRequests": 4, "humanRequests": 1, "unclassifiedRequests": 0},
    ]);
    assert_eq!(all["sites"], per_site);
    let hours = api.read_as("operator", "/analytics/hours").await;
    assert_eq!(hours["hours"][0]["totalRequests"], 10);
    assert_eq!(hours["hours"][0]["botRequests"], 6);
    assert_eq!(hours["sites"], per_site);

    // A chosen site's answers are its read key's, byte for byte.
    for path in [RANGE, HOUR, "/analytics/hours"] {
        let join = if path.contains('?') { '&' } else { '?' };
        let chosen = api.get_as("operator", &format!("{path}{join}site=b")).await;
        assert_eq!(chosen.status, StatusCode::OK);
        let read_key = api.get_as("b-read", path).await.body;
        assert_eq!(text(&chosen.body), text(&read_key), "{path}");
    }
    // An hour's summary is one site's file: every site's is asked for as a range.
    let hour = api.get_as("operator", HOUR).await;
    assert_eq!(
        (hour.status, hour.code()),
        (StatusCode::BAD_REQUEST, "invalid_query".into())
    );
    assert!(
        hour.json()["message"]
            .as_str()
            .unwrap()
            .contains("site=<id>")
    );
}

#[tokio::test]
async fn the_site_parameter_is_parsed_and_a_read_key_names_only_its_own_site() {
    let root = tempfile::tempdir().unwrap();
    let api = sited(root.path());
    let refused = [
        ("site=..%2Fb", "\"../b\" holds '.'"),
        ("site=B", "\"B\" holds 'B'"),
        ("site=a%2Fb", "\"a/b\" holds '/'"),
        ("site=", "\"\" is empty"),
        ("site=a&site=a", "duplicate field `site`"),
    ];
    for path in [RANGE, HOUR, "/analytics/hours"] {
        let join = if path.contains('?') { '&' } else { '?' };
        for key in ["operator", "a-read"] {
            for (query, message) in refused {
                let answer = api.get_as(key, &format!("{path}{join}{query}")).await;
                assert_eq!(
                    answer.status,
                    StatusCode::BAD_REQUEST,
                    "{key} {path} {query}"
                );
                assert_eq!(answer.code(), "invalid_query");
                let said = answer.json()["message"].as_str().unwrap().to_owned();
                assert!(said.contains("site") && said.contains(message), "{said}");
            }
        }
        // Another site, existing or not: the same 403, so a read key cannot probe for sites.
        let other = api.get_as("a-read", &format!("{path}{join}site=b")).await;
        let unknown = api.get_as("a-read", &format!("{path}{join}site=zzz")).await;
        assert_eq!(
            (other.status, other.code()),
            (StatusCode::FORBIDDEN, "forbidden".into())
        );
        assert_eq!(unknown.status, other.status);
        assert_eq!(text(&unknown.body), text(&other.body));
        let own = api.get_as("a-read", &format!("{path}{join}site=a")).await;
        assert_eq!(own.status, StatusCode::OK);
        assert_eq!(
            text(&own.body),
            text(&api.get_as("a-read", path).await.body)
        );
        // An operator is told that a site is not configured.
        let unknown = api
            .get_as("operator", &format!("{path}{join}site=zzz"))
            .await;
        assert_eq!(
            (unknown.status, unknown.code()),
            (StatusCode::NOT_FOUND, "not_found".into())
        );
        // An ingest key reads nothing.
        let ingest = api.get_as("a-in", path).await;
        assert_eq!(ingest.status, StatusCode::FORBIDDEN, "{path}");
    }
}

#[tokio::test]
async fn the_ingest_figures_are_the_whole_services_so_an_operators_only() {
    let root = tempfile::tempdir().unwrap();
    let api = sited(root.path());
    let read = api.get_as("a-read", "/analytics/ingest").await;
    assert_eq!(
        (read.status, read.code()),
        (StatusCode::FORBIDDEN, "forbidden".into())
    );
    assert!(
        read.json()["message"]
            .as_str()
            .unwrap()
            .contains("not per site")
    );
    let operator = api.read_as("operator", "/analytics/ingest").await;
    assert!(operator["recordsStored"].is_u64(), "{operator}");
    let chosen = api.get_as("operator", "/analytics/ingest?site=a").await;
    assert_eq!(
        (chosen.status, chosen.code()),
        (StatusCode::BAD_REQUEST, "invalid_query".into())
    );
}

#[tokio::test]
async fn each_key_is_told_the_sites_it_reads() {
    let root = tempfile::tempdir().unwrap();
    let api = sited(root.path());
    assert_eq!(
        api.read_as("operator", "/analytics/sites").await,
        json!({"sites": [{"id": "a", "name": "Acme Shop"}, {"id": "b", "name": "Bravo"}], "allSites": true})
    );
    assert_eq!(
        api.read_as("b-read", "/analytics/sites").await,
        json!({"sites": [{"id": "b", "name": "Bravo"}], "allSites": false})
    );
    assert_eq!(
        api.get_as("b-in", "/analytics/sites").await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        api.get("/analytics/sites").await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_site_added_by_a_reload_is_read_without_a_restart() {
    let root = tempfile::tempdir().unwrap();
    let api = sited(root.path());
    assert_eq!(
        api.read_as("operator", RANGE).await["sites"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    write_site(
        root.path(),
        "c",
        &[("2025-11-22/15.log.json", "/c", FIREFOX, 2)],
    );
    let sites = format!("{SITES}- id: c\n  name: Charlie\n  readKeys: [c-read]\n");
    let config = sited_config(root.path(), &sites);
    api.access.replace(Access::load(&config).unwrap());

    let c = api.read_as("c-read", RANGE).await;
    assert_eq!(totals(&c), (2, 0, 2));
    assert_eq!(c["topPaths"], ranked(&[("/c", 2)]));
    let all = api.read_as("operator", RANGE).await;
    assert_eq!(totals(&all), (13, 6, 7));
    assert_eq!(all["sites"][2]["id"], "c");
}

#[tokio::test]
async fn without_sites_the_site_parameter_is_refused_and_the_rest_is_as_before() {
    let root = tempfile::tempdir().unwrap();
    let api = api_over(aggregators_in(root.path().to_owned()), |_| {});
    let answer = api.get("/analytics/hours?site=a").await;
    assert_eq!(
        (answer.status, answer.code()),
        (StatusCode::BAD_REQUEST, "invalid_query".into())
    );
    assert_eq!(
        api.get("/analytics/hours").await.json(),
        json!({"hours": [], "complete": true})
    );
    assert_eq!(
        api.get("/analytics/sites").await.json(),
        json!({"sites": [], "allSites": true})
    );
}
