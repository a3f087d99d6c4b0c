//! A Garage node of a scenario's own (`scripts/garage-local.sh` in a directory of its own), for
//! the scenarios that kill the store: the one the other scenarios share stays up. It has the
//! credentials of the suite's store (imported, not created), so the instances, which take
//! `AWS_*` from the environment, and the test's own client reach it as they reach that one.

use std::path::Path;
use std::process::Command;

use crate::support::TestBucket;

/// A running (or killed) node and where its state lives.
pub struct OwnStore {
    state: tempfile::TempDir,
    /// The suite's store, whose bucket name and credentials this one takes.
    suite: TestBucket,
    pub endpoint: String,
    pub pid: u32,
}

impl OwnStore {
    /// Starts a node on a free port, with a bucket of the suite's store's name and its key.
    pub async fn start(suite: TestBucket) -> OwnStore {
        let state = tempfile::tempdir().unwrap();
        let (endpoint, pid) = script(state.path(), &suite, &["start"]).await;
        OwnStore {
            state,
            suite,
            endpoint,
            pid,
        }
    }

    /// The suite's store as the scale helpers take it, pointed at this node.
    pub fn as_test_bucket(&self) -> TestBucket {
        TestBucket {
            endpoint: self.endpoint.clone(),
            bucket: self.suite.bucket.clone(),
            garage_pid: Some(self.pid),
        }
    }

    /// `kill -9`, as a crash: its metadata and data stay on disk.
    pub async fn kill(&self) {
        script(self.state.path(), &self.suite, &["kill"]).await;
    }

    /// Starts the killed node again on its state: same ports, metadata, data, bucket and key.
    pub async fn restart(&mut self) {
        let (endpoint, pid) = script(self.state.path(), &self.suite, &["restart"]).await;
        assert_eq!(endpoint, self.endpoint, "restarted on another port");
        self.pid = pid;
    }

    /// Starts a new node in place of the killed one, its state wiped (a machine replaced, a disk
    /// lost): on the same port, with the bucket and key created again under the same names and
    /// credentials, since the service's configuration names them. Nothing of the bucket is left.
    pub async fn start_afresh(&mut self) {
        let port = self.endpoint.rsplit(':').next().expect("a port").to_owned();
        let (endpoint, pid) = script(self.state.path(), &self.suite, &["start", &port]).await;
        assert_eq!(endpoint, self.endpoint, "started afresh on another port");
        self.pid = pid;
    }
}

impl Drop for OwnStore {
    fn drop(&mut self) {
        let _ = script_command(self.state.path(), &self.suite, &["stop"]).output();
    }
}

fn script_command(state: &Path, suite: &TestBucket, args: &[&str]) -> Command {
    let key = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is set"));
    let mut command = Command::new("bash");
    command
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/garage-local.sh"))
        .args(args)
        .env("GARAGE_LOCAL_STATE", state)
        .env("GARAGE_BUCKET", &suite.bucket)
        .env("GARAGE_KEY_ID", key("AWS_ACCESS_KEY_ID"))
        .env("GARAGE_SECRET_KEY", key("AWS_SECRET_ACCESS_KEY"));
    command
}

/// Runs `scripts/garage-local.sh args` on `state`; returns the endpoint and pid it printed (empty
/// and 0 for commands that print none).
async fn script(state: &Path, suite: &TestBucket, args: &[&str]) -> (String, u32) {
    let mut command = script_command(state, suite, args);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("the script's task")
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "scripts/garage-local.sh {args:?} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let exported = |name: &str| {
        stdout
            .lines()
            .find_map(|line| line.strip_prefix(&format!("export {name}=")))
            .map(str::to_owned)
    };
    (
        exported("LOG_PIPELINE_TEST_S3_ENDPOINT").unwrap_or_default(),
        exported("LOG_PIPELINE_TEST_GARAGE_PID").map_or(0, |pid| pid.parse().expect("a pid")),
    )
}
