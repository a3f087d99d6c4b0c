//! The disk fills up under load (a small tmpfs of the test's own), then space is freed: while it
//! is full, batches are refused with 503 `storage_unavailable` and nothing of them stays on disk
//! (no partial line); once space is back the service takes batches again without a restart;
//! every acknowledged record is on disk exactly once.

use std::time::Instant;

use crate::crash::write_v1_config;
use crate::load::{Answer, Disk, Load, assert_503s_say_when_to_retry, tally};
use crate::support::{DEADLINE, POLL, poll_within, start_binary};
use crate::tmpfs::Tmpfs;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn disk_full_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let disk = Tmpfs::mount("16m");
    let config = write_v1_config(dir.path(), "");
    let yaml = std::fs::read_to_string(&config).unwrap().replace(
        &format!("logsDir: {:?}", dir.path().join("logs")),
        &format!("logsDir: {:?}", disk.path()),
    );
    std::fs::write(&config, yaml).unwrap();
    let mut child = start_binary(dir.path(), &config);
    let addr = child.listening_addr().await;

    let load = Load::start(addr, 4, "/disk");
    let accepted = async |count: usize| {
        poll_within(
            DEADLINE,
            POLL,
            &format!("{count} batches acknowledged"),
            async || match load.accepted() {
                n if n >= count => Ok(()),
                n => Err(n),
            },
        )
        .await;
    };
    accepted(20).await;
    let filled_at = Instant::now();
    disk.fill_leaving(0);
    // Keep loading the full disk for a while: until 20 batches have been refused.
    poll_within(
        DEADLINE,
        POLL,
        "refusals while the disk is full",
        async || {
            let refused = child.stderr().matches("write group failed").count();
            if refused >= 20 { Ok(()) } else { Err(refused) }
        },
    )
    .await;
    let before_free = load.accepted();
    disk.free();
    // Recovery without a restart.
    accepted(before_free + 20).await;
    let batches = load.stop().await;

    let refused_full: Vec<_> = batches
        .iter()
        .filter(|b| b.sent_at >= filled_at)
        .filter(|b| matches!(&b.answer, Answer::NothingStored { status: 503, code } if code == "storage_unavailable"))
        .collect();
    assert!(
        !refused_full.is_empty(),
        "503 storage_unavailable while the disk was full"
    );
    assert!(
        batches.iter().all(|b| b.status != 500),
        "no outcome is unknown when only space runs out"
    );
    assert_503s_say_when_to_retry(&batches);
    child.terminate();
    let status = child.wait_exit().await;
    assert!(status.success(), "{status}; stderr:\n{}", child.stderr());
    tally(
        "disk full under load (v1, tmpfs)",
        1,
        &batches,
        &Disk::read(&[disk.path()]),
    )
    .record_and_check();
}
