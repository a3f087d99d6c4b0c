//! Directories that exist but cannot be written are refused at start-up, naming their key: a
//! read-only mount, which only root can make (and which even root cannot write), so this runs in
//! the fault suite rather than with `make test` (the other unusable directories are checked by
//! tests/api/startup.rs `a_directory_that_cannot_be_written_is_refused_naming_its_key`). It adds
//! no summary row.

use crate::support::assert_directories_refused;
use crate::tmpfs::Tmpfs;

#[tokio::test]
async fn a_read_only_directory_is_refused_naming_its_key() {
    let root = tempfile::tempdir().unwrap();
    let cwd = root.path();
    let read_only = Tmpfs::read_only();
    let ro = read_only.path().to_str().unwrap();
    let ro_missing = read_only.path().join("analytics");
    let ro_missing = ro_missing.to_str().unwrap();

    // The flag that sets a directory, its value, the key named, a detail shown.
    let cases = [
        (
            "--analytics-dir",
            ro,
            "storage.analyticsDir",
            "not writable",
        ),
        (
            "--analytics-dir",
            ro_missing,
            "storage.analyticsDir",
            "not writable",
        ),
        ("--logs-dir", ro, "storage.logsDir", "not writable"),
    ];
    assert_directories_refused(cwd, &cases).await;
    // Refused before anything was created.
    assert!(!cwd.join("logs").exists() && !cwd.join("analytics").exists());
}
