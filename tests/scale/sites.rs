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
use crate::support::{
    KAFKA_DEADLINE, KAFKA_POLL, Names, SITES, add_sites, ingest_key, kafka_broker, mark_ends,
    poll_within, test_bucket,
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

    // Every site's records object is named in an intent.
    let named: BTreeSet<String> = bucket.intent_objects(&names.topic).await;
    let sited: Vec<String> = (bucket.keys("sites").await.into_iter())
        .map(|key| {
            key.trim_start_matches(&format!("{}/", names.topic))
                .to_owned()
        })
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
