//! v1 on its own machine, its hour files shipped to the bucket with `log-pipeline ship`: every
//! acknowledged record is in the bucket exactly once, however often the command runs and however
//! late records arrive for an hour already shipped; and a v2 instance on the bucket answers the
//! analytics for the shipped records too.

use std::path::Path;
use std::process::Output;

use crate::bucket::{Bucket, analytics_hours, start_instances, stop_all, write_yaml};
use crate::load::{Batch, Disk, Load, tally};
use crate::support::{Names, kafka_broker, pipeline, start_binary_ready, test_bucket};

/// Batches acknowledged before each shipping.
const BATCHES: usize = 60;

/// A v1 instance's configuration in `dir`, with the bucket `log-pipeline ship` ships to.
fn v1_config(dir: &Path, bucket: &Bucket) -> std::path::PathBuf {
    write_yaml(
        dir,
        "version: 1\nstorage:\n",
        bucket,
        "maxObjectBytes: 4096",
        "",
    )
}

/// Runs `log-pipeline ship` and returns what it printed; it must exit 0.
fn ship(dir: &Path, config: &Path, quiet_for: &str) -> String {
    let Output {
        status,
        stdout,
        stderr,
    } = pipeline(dir)
        .arg("ship")
        .arg("--config")
        .arg(config)
        .args(["--source", "web-1", "--quiet-for", quiet_for])
        .output()
        .expect("log-pipeline ship runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    );
    eprintln!("log-pipeline ship --quiet-for {quiet_for}:\n{stdout}");
    assert!(status.success(), "{status}\n{stdout}\n{stderr}");
    stdout
}

async fn load(addr: std::net::SocketAddr, prefix: &str) -> Vec<Batch> {
    let load = Load::start(addr, 2, prefix);
    load.wait_accepted(BATCHES).await;
    load.stop().await
}

/// The lines of `batches` that were acknowledged: each must be in the bucket once.
fn check_once(batches: &[Batch], in_bucket: &Disk, logs: &Path) {
    let on_disk = Disk::read(&[logs]);
    for batch in batches.iter().filter(|b| b.status == 202) {
        for line in &batch.lines {
            assert_eq!(on_disk.count(line), 1, "{line} in the hour files");
            assert_eq!(in_bucket.count(line), 1, "{line} in the bucket");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn v1_hour_files_shipped_to_the_bucket_once() {
    let names = Names::new("scale-ship");
    let bucket = Bucket::new(&test_bucket(), &names.topic);
    let dir = tempfile::tempdir().unwrap();
    let config = v1_config(dir.path(), &bucket);
    let logs = dir.path().join("logs");
    let (v1, addr) = start_binary_ready(dir.path(), &config).await;
    let mut batches = load(addr, "/ship/first").await;

    // Files just written to are left alone.
    let out = ship(dir.path(), &config, "1h");
    assert!(out.contains("left for a later run"), "{out}");
    assert!(bucket.keys("logs").await.is_empty(), "nothing shipped yet");

    let out = ship(dir.path(), &config, "0s");
    assert!(out.contains("0 failed"), "{out}");
    let first = bucket.keys("logs").await;
    assert!(
        first.len() > 2,
        "maxObjectBytes 4096 cuts the hours into several objects: {first:?}"
    );
    check_once(&batches, &bucket.read().await.0, &logs);

    // Again: nothing new, nothing written.
    let out = ship(dir.path(), &config, "0s");
    assert!(out.contains("shipped 0 lines in 0 objects"), "{out}");
    assert_eq!(bucket.keys("logs").await, first);

    // Late records for the same hours: appended to the files, shipped after what was.
    batches.extend(load(addr, "/ship/late").await);
    ship(dir.path(), &config, "0s");
    let (in_bucket, objects) = bucket.read().await;
    assert!(objects > first.len(), "the late records are new objects");
    check_once(&batches, &in_bucket, &logs);
    stop_all(vec![v1]).await;
    tally(
        "v1 hour files shipped (log-pipeline ship), 3 runs",
        1,
        &batches,
        &in_bucket,
    )
    .record_and_check();

    // A v2 instance on the bucket counts the shipped records in its analytics.
    let broker = kafka_broker();
    let v2 = start_instances(1, &broker, &names, &bucket).await;
    let (hours, _) = analytics_hours(v2.addrs[0]).await;
    assert_eq!(hours, bucket.lines_per_hour().await);
    assert_eq!(
        hours.values().sum::<u64>() as usize,
        batches
            .iter()
            .filter(|b| b.status == 202)
            .map(|b| b.lines.len())
            .sum::<usize>()
    );
    stop_all(v2.children).await;
}
