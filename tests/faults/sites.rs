//! `kill -9` under load from three customer sites at once, five times per mode: each site's
//! clients send with its ingest key, the service dies at any instant and is started again on the
//! same directories. At the end every acknowledged record is stored exactly once **below its own
//! site's root** (`logs/sites/<id>/`): a record in another site's root counts as lost for its
//! site and as never sent for the other; the unsited root holds nothing but the test's own end
//! marks (v2).

use std::collections::BTreeMap;
use std::path::Path;

use crate::crash::{Mode, drain_and_stop, start_ready, write_config};
use crate::load::{Batch, Disk, Load, tally};
use crate::summary::Row;
use crate::support::{Names, SITES, add_sites, ingest_key, kafka_broker};

/// Kills per mode.
const ROUNDS: usize = 5;
/// Concurrent clients per site.
const CLIENTS: usize = 2;
/// Batches each site gets acknowledged in a round before the kill lands.
const BATCHES_BEFORE_KILL: usize = 5;

async fn kill_9_rounds_three_sites(mode: Mode) {
    let dir = tempfile::tempdir().unwrap();
    let broker = (mode == Mode::V2).then(kafka_broker);
    let names = Names::new("faults-sites");
    let config = write_config(dir.path(), broker.as_deref(), &names);
    add_sites(&config);
    let logs = dir.path().join("logs");
    let mut sent: BTreeMap<&str, Vec<Batch>> = BTreeMap::new();
    let mut unsited: Vec<Batch> = Vec::new();
    for round in 0..=ROUNDS {
        let (mut child, addr) = start_ready(dir.path(), &config, mode).await;
        let loads: Vec<(&str, Load)> = (SITES.iter())
            .map(|site| {
                let prefix = format!("/sites/{round}/{site}");
                let key = ingest_key(site);
                (*site, Load::start_as(addr, CLIENTS, &prefix, Some(&key)))
            })
            .collect();
        for (_, load) in &loads {
            load.wait_accepted(BATCHES_BEFORE_KILL).await;
        }
        if round < ROUNDS {
            child.kill();
        }
        for (site, load) in loads {
            sent.entry(site).or_default().extend(load.stop().await);
        }
        if round == ROUNDS {
            drain_and_stop(child, broker.as_deref(), &names.topic, &logs, &mut unsited).await;
        }
    }
    let scenario = match mode {
        Mode::V1 => "3 sites at once, kill -9, each under its own root (v1)",
        Mode::V2 => "3 sites at once, kill -9, each under its own root (v2)",
    };
    let mut rows: Vec<Row> = (sent.iter())
        .map(|(site, batches)| {
            let root = logs.join("sites").join(site);
            tally(
                &format!("{scenario}: {site}"),
                ROUNDS,
                batches,
                &read(&root),
            )
        })
        .collect();
    rows.push(tally(
        &format!("{scenario}: unsited root"),
        ROUNDS,
        &unsited,
        &read(&logs),
    ));
    for row in &rows {
        eprintln!("{row:?}");
    }
    Row::sum(scenario, ROUNDS, rows).record_and_check();
}

/// Every hour file directly below `root` (a site's, or the unsited root: not those of the sites
/// below it).
fn read(root: &Path) -> Disk {
    Disk::read(&[root])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_sites_kill_9_under_load_v1() {
    kill_9_rounds_three_sites(Mode::V1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_sites_kill_9_under_load_v2() {
    kill_9_rounds_three_sites(Mode::V2).await;
}
