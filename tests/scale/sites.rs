//! Three customer sites over three instances, one bucket: each site's clients send through every
//! instance with its ingest key; then one instance is killed (`kill -9`) with all three under
//! load, and all three start again in empty directories (a replacement machine each). Every
//! acknowledged record is in exactly one object line **below its own site's prefix**
//! (`sites/<id>/logs/...`); the unsited root holds nothing but the test's own end marks; and
//! every records object below a site's prefix is named in its range's intent, which is how an
//! instance that takes a partition over knows a range's objects.

use std::collections::{BTreeMap, BTreeSet};

use crate::bucket::{Bucket, Instances, start_instances_with, stop_all, wait_joined_or_show};
use crate::load::{Batch, Load, tally};
use crate::summary::Row;
use reqwest::{Method, StatusCode};

use crate::support::{
    JSON, KAFKA_DEADLINE, KAFKA_POLL, Names, SITES, add_sites, body_json, client, ingest_key,
    json_array, kafka_broker, mark_ends, poll_within, record, send, test_bucket,
};

const INSTANCES: usize = 3;
/// Batches each site gets acknowledged (through all instances together) in a round before the
/// kill lands.
const BATCHES_BEFORE_KILL: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_sites_over_three_instances_each_below_its_own_prefix() {
    let broker = kafka_broker();
    let names = Names::new("scale-sites");
    let bucket = Bucket::new(&test_bucket(), &names.topic);
    let mut sent: BTreeMap<&str, Vec<Batch>> = BTreeMap::new();
    let mut unsited: Vec<Batch> = Vec::new();
    for round in 0..2 {
        let Instances {
            dirs: _dirs,
            mut children,
            addrs,
        } = start_instances_with(INSTANCES, &broker, &names, &bucket, add_sites).await;
        wait_joined_or_show(&addrs, &children.iter().collect::<Vec<_>>()).await;
        // Every site through every instance.
        let loads: Vec<(&str, Load)> = (SITES.iter())
            .flat_map(|site| {
                addrs
                    .iter()
                    .enumerate()
                    .map(move |(i, addr)| (site, i, addr))
            })
            .map(|(site, i, addr)| {
                let prefix = format!("/sites/{round}/{site}/{i}");
                let key = ingest_key(site);
                (*site, Load::start_as(*addr, 1, &prefix, Some(&key)))
            })
            .collect();
        for site in SITES {
            let of_site: Vec<&Load> = (loads.iter())
                .filter(|(s, _)| *s == site)
                .map(|(_, load)| load)
                .collect();
            poll_within(
                KAFKA_DEADLINE,
                KAFKA_POLL,
                &format!("{site}'s batches acknowledged"),
                async || match of_site.iter().map(|load| load.accepted()).sum::<usize>() {
                    n if n >= BATCHES_BEFORE_KILL => Ok(()),
                    n => Err(n),
                },
            )
            .await;
        }
        if round == 0 {
            // All three die under load from all three sites, one after the other.
            for child in &mut children {
                child.kill();
            }
        }
        for (site, load) in loads {
            sent.entry(site).or_default().extend(load.stop().await);
        }
        if round == 1 {
            let (marks, ends) = mark_ends(&broker, &names.topic).await;
            unsited.push(Batch::accepted_now(marks.lines));
            bucket.wait_stored_to(&names.topic, &ends).await;
            stop_all(children).await;
        }
    }

    let scenario = "3 sites over 3 instances, kill -9, each below its own prefix (s3)";
    let mut rows = Vec::new();
    for (site, batches) in &sent {
        let (disk, objects) = bucket.read_below(&format!("sites/{site}/")).await;
        eprintln!("{site}: {objects} records objects");
        rows.push(tally(&format!("{scenario}: {site}"), 1, batches, &disk));
    }
    let (root, _) = bucket.read_below("").await;
    rows.push(tally(&format!("{scenario}: root"), 1, &unsited, &root));
    for row in &rows {
        eprintln!("{row:?}");
    }

    // Every site's records object is named in an intent (its summaries, below
    // `sites/<id>/analytics/`, are the aggregators', written after, and no range's).
    let named: BTreeSet<String> = bucket.intent_objects(&names.topic).await;
    let sited: Vec<String> = (bucket.keys("sites").await.into_iter())
        .map(|key| {
            key.trim_start_matches(&format!("{}/", names.topic))
                .to_owned()
        })
        .filter(|key| key.split('/').nth(2) == Some("logs"))
        .collect();
    let unnamed: Vec<&String> = sited.iter().filter(|key| !named.contains(*key)).collect();
    assert!(!sited.is_empty(), "no object below any site's prefix");
    assert!(
        unnamed.is_empty(),
        "records objects no intent names: {unnamed:?}"
    );
    let overlaps = bucket.overlaps(&names.topic).await;
    assert!(overlaps.is_empty(), "overlapping ranges: {overlaps:#?}");
    Row::sum(scenario, 1, rows).record_and_check();
}

/// The keys in s3 mode, through one instance on the bucket: each site's ingest key stores under
/// its site and reads nothing, its read key reads its site only (its records, from its prefix),
/// the operator reads every site; `SIGHUP` revokes a site and adds one, and a bad file is
/// refused with the running set kept. (The full route × key matrix is the API suite's, in v1
/// and v2: `tests/api/site_access.rs`; the HTTP layer is the same in every mode.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_reloads_in_s3_mode() {
    let broker = kafka_broker();
    let names = Names::new("scale-site-keys");
    let bucket = Bucket::new(&test_bucket(), &names.topic);
    let with_operator = |config: &std::path::Path| {
        add_sites(config);
        let mut yaml = std::fs::read_to_string(config).unwrap();
        yaml.push_str("auth:\n  tokens: [operator]\n");
        std::fs::write(config, yaml).unwrap();
    };
    let Instances {
        dirs,
        children,
        addrs,
    } = start_instances_with(1, &broker, &names, &bucket, with_operator).await;
    let (addr, sites_file) = (addrs[0], dirs[0].path().join("sites.yaml"));
    wait_joined_or_show(&addrs, &children.iter().collect::<Vec<_>>()).await;
    let call = async |method: Method, path: &str, key: &str, body: Vec<u8>| {
        let bearer = format!("Bearer {key}");
        let mut headers = vec![("content-type", JSON)];
        if !key.is_empty() {
            headers.push(("authorization", bearer.as_str()));
        }
        send(&client(), addr, method, path, &headers, body).await
    };
    let post = async |key: &str, path: &str| {
        let body = json_array(&[record("2025-11-22T14:00:00Z", path, "curl/8.5.0")]);
        call(Method::POST, "/logs", key, body).await.status()
    };
    let get = async |key: &str, path: &str| call(Method::GET, path, key, Vec::new()).await;

    for (key, status) in [
        ("acme-ingest", StatusCode::ACCEPTED),
        ("bolt-ingest", StatusCode::ACCEPTED),
        ("acme-read", StatusCode::FORBIDDEN),
        ("operator", StatusCode::FORBIDDEN),
        ("nobody", StatusCode::UNAUTHORIZED),
        ("", StatusCode::UNAUTHORIZED),
    ] {
        let path = format!("/s3/{}", key.split('-').next().unwrap());
        assert_eq!(post(key, &path).await, status, "POST /logs with {key:?}");
    }
    // Each read key reads its own site's records, from its prefix, once they are stored.
    let hour = "/analytics?hour=2025-11-22T14:00:00Z";
    for (key, path) in [("acme-read", "/s3/acme"), ("bolt-read", "/s3/bolt")] {
        let answer = get(key, hour).await;
        assert_eq!(answer.status(), StatusCode::OK, "{key}");
        let paths = body_json(answer).await["requestsPerPath"].clone();
        assert_eq!(paths, serde_json::json!({ path: 1 }), "{key}");
    }
    for (key, path, status) in [
        ("acme-ingest", hour.to_owned(), StatusCode::FORBIDDEN),
        (
            "acme-read",
            format!("{hour}&site=bolt"),
            StatusCode::FORBIDDEN,
        ),
        ("operator", format!("{hour}&site=bolt"), StatusCode::OK),
        ("nobody", hour.to_owned(), StatusCode::UNAUTHORIZED),
    ] {
        assert_eq!(
            get(key, &path).await.status(),
            status,
            "GET {path} with {key}"
        );
    }
    assert!(
        bucket
            .keys("sites/acme")
            .await
            .iter()
            .any(|key| key.contains("/logs/")),
        "acme's records object below its prefix"
    );

    // SIGHUP: coda revoked, delta added; then a bad file, refused.
    std::fs::write(
        &sites_file,
        "sites:\n- id: acme\n  ingestKeys: [acme-ingest]\n  readKeys: [acme-read]\n\
         - id: delta\n  ingestKeys: [delta-ingest]\n",
    )
    .unwrap();
    children[0].signal("HUP");
    poll_within(
        KAFKA_DEADLINE,
        KAFKA_POLL,
        "delta's key in force",
        async || match post("delta-ingest", "/s3/delta").await {
            StatusCode::ACCEPTED => Ok(()),
            other => Err(other),
        },
    )
    .await;
    assert_eq!(
        post("coda-ingest", "/s3/coda").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post("bolt-ingest", "/s3/bolt").await,
        StatusCode::UNAUTHORIZED
    );
    std::fs::write(&sites_file, "sites:\n- id: Not-A-Slug\n").unwrap();
    children[0].signal("HUP");
    poll_within(
        KAFKA_DEADLINE,
        KAFKA_POLL,
        "the bad file refused",
        async || {
            let stderr = children[0].stderr();
            if stderr.contains("sites[0].id") {
                Ok(())
            } else {
                Err(())
            }
        },
    )
    .await;
    assert_eq!(
        post("delta-ingest", "/s3/delta").await,
        StatusCode::ACCEPTED,
        "the running set"
    );
    stop_all(children).await;
}
