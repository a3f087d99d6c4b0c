//! `kill -9` under load, ten times per mode: the service dies at any instant (mid-write,
//! mid-fsync, mid-flush, mid-commit) while clients send every format; it is started again on
//! the same directories and must recover by itself. At the end every acknowledged record is on
//! disk exactly once and no line is torn or glued.

use std::path::Path;

use crate::load::{Batch, Disk, Load, tally};
use crate::support::{
    ChildGuard, Names, kafka_broker, mark_ends, start_binary_ready, wait_joined, wait_stored_to,
    write_v2_config,
};

/// Kills per mode.
const ROUNDS: usize = 10;
/// Concurrent clients.
const CLIENTS: usize = 4;
/// Batches acknowledged in a round before the kill lands.
const BATCHES_BEFORE_KILL: usize = 15;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    V1,
    V2,
}

/// A v1 configuration file in `dir` (port 0, `dir/logs`, `dir/analytics`, fsync always).
pub fn write_v1_config(dir: &Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("config.yaml");
    let yaml = format!(
        "server:\n  addr: 127.0.0.1:0\n{extra}storage:\n  logsDir: {logs:?}\n  analyticsDir: {analytics:?}\n",
        logs = dir.join("logs"),
        analytics = dir.join("analytics"),
    );
    std::fs::write(&path, yaml).expect("write config.yaml");
    path
}

/// The configuration of a crash scenario in `dir`: v1, or v2 on `broker` (small, frequent
/// consumer flushes, so that a kill lands between them).
pub fn write_config(dir: &Path, broker: Option<&str>, names: &Names) -> std::path::PathBuf {
    match broker {
        None => write_v1_config(dir, ""),
        Some(broker) => write_v2_config(
            dir,
            broker,
            names,
            "  flushSize: 64\n  flushInterval: 20ms\n",
        ),
    }
}

/// Ends a scenario's last round once its clients stopped: in v2, waits until everything produced
/// is stored (marker records after the last batch, added to `batches` as accepted), then stops the
/// service with SIGTERM, which must exit 0.
pub async fn drain_and_stop(
    mut child: ChildGuard,
    broker: Option<&str>,
    topic: &str,
    logs: &Path,
    batches: &mut Vec<Batch>,
) {
    if let Some(broker) = broker {
        // Nothing is produced after these: once they are stored, everything is.
        let (marks, ends) = mark_ends(broker, topic).await;
        batches.push(Batch::accepted_now(marks.lines));
        wait_stored_to(&[logs], topic, &ends).await;
    }
    child.terminate();
    let status = child.wait_exit().await;
    assert!(status.success(), "{status}; stderr:\n{}", child.stderr());
}

/// Starts the binary and waits until it is ready (and, in v2, consuming every partition).
pub async fn start_ready(
    dir: &Path,
    config: &Path,
    mode: Mode,
) -> (ChildGuard, std::net::SocketAddr) {
    let (child, addr) = start_binary_ready(dir, config).await;
    if mode == Mode::V2 {
        wait_joined(&[addr]).await;
    }
    (child, addr)
}

async fn kill_9_rounds(mode: Mode) {
    let dir = tempfile::tempdir().unwrap();
    let broker = (mode == Mode::V2).then(kafka_broker);
    let names = Names::new("faults-crash");
    let config = write_config(dir.path(), broker.as_deref(), &names);
    let logs = dir.path().join("logs");
    let mut batches: Vec<Batch> = Vec::new();
    for round in 0..=ROUNDS {
        let (mut child, addr) = start_ready(dir.path(), &config, mode).await;
        let load = Load::start(addr, CLIENTS, &format!("/crash/{round}"));
        load.wait_accepted(BATCHES_BEFORE_KILL).await;
        if round < ROUNDS {
            child.kill();
            batches.extend(load.stop().await);
            continue;
        }
        batches.extend(load.stop().await);
        drain_and_stop(child, broker.as_deref(), &names.topic, &logs, &mut batches).await;
    }
    let scenario = match mode {
        Mode::V1 => "kill -9 under load (v1)",
        Mode::V2 => "kill -9 under load (v2)",
    };
    tally(scenario, ROUNDS, &batches, &Disk::read(&[&logs])).record_and_check();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_under_load_v1() {
    kill_9_rounds(Mode::V1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_under_load_v2() {
    kill_9_rounds(Mode::V2).await;
}
