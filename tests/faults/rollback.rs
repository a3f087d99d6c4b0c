//! A rollback that fails: a batch runs out of space half-way (a small tmpfs of the test's own)
//! and the file it already wrote to cannot be truncated back (`chattr +a`). The answer is 500
//! `outcome_unknown`, and the store repairs itself. Mounting and `chattr` need root, so this runs
//! in the fault suite rather than with `make test` (the rollbacks that succeed are checked by
//! tests/api/storage.rs). It adds no summary row: one batch, checked line by line.

use reqwest::StatusCode;

use crate::support::{
    HOUR_14, JSON, assert_accepted, assert_error, header, json_array, line, poll, read_lines,
    record, spawn_app,
};
use crate::tmpfs::Tmpfs;

/// `chattr +a`: the file takes appends but refuses truncation (EPERM), so a rollback fails.
/// Undone when dropped, so that the temporary directory can be removed.
struct AppendOnly {
    path: std::path::PathBuf,
}

impl AppendOnly {
    fn set(path: std::path::PathBuf) -> AppendOnly {
        let output = std::process::Command::new("chattr")
            .arg("+a")
            .arg(&path)
            .output()
            .expect("chattr runs (e2fsprogs)");
        assert!(
            output.status.success(),
            "chattr +a {} (the test needs root, and a filesystem with the append-only attribute): {}",
            path.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        AppendOnly { path }
    }
}

impl Drop for AppendOnly {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg("-a")
            .arg(&self.path)
            .status();
    }
}

#[tokio::test]
async fn a_failed_rollback_is_500_outcome_unknown_and_the_store_repairs_itself() {
    let disk = Tmpfs::mount("1m");
    let logs = disk.path().to_owned();
    let app = spawn_app(|config| config.storage.logs_dir = logs.clone()).await;
    let before = json_array(&[record("2025-11-22T14:00:00Z", "/before", "curl/8.5.0")]);
    assert_accepted(app.post_logs(JSON, before).await, 1).await;
    let _append_only = AppendOnly::set(logs.join(HOUR_14));
    disk.fill_leaving(16 * 1024);

    // Hour 14 takes its line (its page has room), hour 15 runs out of space half-way, and hour
    // 14 cannot be truncated back.
    let mut records = vec![record("2025-11-22T14:05:00Z", "/x", "curl/8.5.0")];
    records
        .extend((0..400).map(|i| record("2025-11-22T15:05:00Z", &format!("/y/{i}"), "curl/8.5.0")));
    let response = app.post_logs(JSON, json_array(&records)).await;
    assert_eq!(header(&response, "retry-after"), "", "no retry invited");
    let error = assert_error(
        response,
        StatusCode::INTERNAL_SERVER_ERROR,
        "outcome_unknown",
    )
    .await;
    assert_eq!(
        error["message"],
        "part of this batch may have been stored and it cannot be known which; a retry without \
         an Idempotency-Key may store those records twice, with one it stores each once",
        "no internals leak"
    );
    assert_eq!(
        read_lines(&logs.join(HOUR_14)),
        [
            line("2025-11-22T14:00:00Z", "/before", "curl/8.5.0"),
            line("2025-11-22T14:05:00Z", "/x", "curl/8.5.0")
        ],
        "the unacknowledged line stays: that is why the answer is 500, not 503"
    );
    // The lines left are complete, so the repair (on the writer's next round) has nothing to
    // cut: the store takes writes again, and the next batch starts on a line of its own.
    poll("the store to repair the file", async || {
        match app.metric("store_repairs_total").await {
            1.0 => Ok(()),
            other => Err(other),
        }
    })
    .await;
    assert_eq!(app.get("/ready").await.status(), StatusCode::OK);
    assert!(
        read_lines(&logs.join("2025-11-22/15.log.json")).is_empty(),
        "hour 15 rolled back"
    );
    disk.free();
    let next = json_array(&[record("2025-11-22T14:10:00Z", "/next", "curl/8.5.0")]);
    assert_accepted(app.post_logs(JSON, next).await, 1).await;
    assert_eq!(
        read_lines(&logs.join(HOUR_14)),
        [
            line("2025-11-22T14:00:00Z", "/before", "curl/8.5.0"),
            line("2025-11-22T14:05:00Z", "/x", "curl/8.5.0"),
            line("2025-11-22T14:10:00Z", "/next", "curl/8.5.0")
        ]
    );
    assert_eq!(app.metric("ingest_errors_total").await, 1.0);
    app.stop().await;
}
