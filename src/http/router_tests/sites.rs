//! `POST /logs` with sites: the site a batch is handed for comes from the key that sent it, and
//! only a site's ingest key sends.

use axum::http::StatusCode;

use super::*;

/// A router whose sites file has sites `a` and `b`, and an operator key.
fn sited_api() -> Api {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sites.yaml");
    std::fs::write(
        &file,
        "sites:\n\
         - id: a\n  ingestKeys: [a-in]\n  readKeys: [a-read]\n\
         - id: b\n  ingestKeys: [b-in]\n  readKeys: [b-read]\n",
    )
    .unwrap();
    // The file is read when the router is built.
    api(|config| {
        config.auth.tokens = vec!["operator".to_owned()];
        config.sites.file = file.clone();
    })
}

fn with_key(key: &str) -> [(&'static str, String); 2] {
    [
        ("content-type", "application/json".to_owned()),
        ("authorization", format!("Bearer {key}")),
    ]
}

async fn post_as(api: &Api, headers: &[(&str, String)]) -> Answered {
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    api.post(&headers, TWO_RECORDS.to_owned()).await
}

#[tokio::test]
async fn a_batch_is_handed_for_the_site_of_its_ingest_key_whatever_else_the_request_says() {
    let api = sited_api();
    let mut headers = with_key("a-in").to_vec();
    headers.push(("x-site", "b".to_owned()));
    let answer = post_as(&api, &headers).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    let handed = api.pipeline.handed();
    assert_eq!(handed.len(), 1);
    assert_eq!(handed[0].site, Some(SiteId::parse("a").unwrap()));
    assert_eq!(handed[0].lines, TWO_LINES);

    assert_eq!(
        post_as(&api, &with_key("b-in")).await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        api.pipeline.handed()[0].site,
        Some(SiteId::parse("b").unwrap())
    );
}

#[tokio::test]
async fn only_an_ingest_key_sends_and_nothing_is_handed_otherwise() {
    let api = sited_api();
    for (key, status, code) in [
        ("a-read", StatusCode::FORBIDDEN, "forbidden"),
        ("operator", StatusCode::FORBIDDEN, "forbidden"),
        ("nobody", StatusCode::UNAUTHORIZED, "unauthorized"),
        ("a-in ", StatusCode::ACCEPTED, ""),
    ] {
        let answer = post_as(&api, &with_key(key)).await;
        assert_eq!(answer.status, status, "{key:?}");
        let handed = api.pipeline.handed();
        if code.is_empty() {
            assert_eq!(handed.len(), 1, "a key is trimmed as the header is read");
        } else {
            assert_eq!(answer.code(), code, "{key:?}");
            assert!(handed.is_empty(), "{key:?}");
        }
    }
    let unkeyed = api.post_json(TWO_RECORDS).await;
    assert_eq!(unkeyed.status, StatusCode::UNAUTHORIZED);
    assert!(api.pipeline.handed().is_empty());
}

#[tokio::test]
async fn the_same_idempotency_key_from_two_sites_is_two_keys() {
    let api = sited_api();
    for key in ["a-in", "b-in", "a-in"] {
        let mut headers = with_key(key).to_vec();
        headers.push(("idempotency-key", "order-42".to_owned()));
        assert_eq!(post_as(&api, &headers).await.status, StatusCode::ACCEPTED);
    }
    let keys: Vec<Key> = (api.pipeline.handed().into_iter())
        .map(|handed| handed.keyed.unwrap().0)
        .collect();
    assert_ne!(keys[0], keys[1], "a's and b's order-42 are different keys");
    assert_eq!(keys[0], keys[2], "a's order-42 is one key");
    assert_ne!(
        keys[0],
        Key::parse(b"order-42").unwrap(),
        "nor the unsited key"
    );
}
