//! The directories a serving run writes, checked at start-up: each must be a directory this
//! process can write, or be missing under one (it is then created). One that is not stops the
//! start naming its key, rather than failing every request that needs it later.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::key::Key;
use super::overrides::Overrides;
use super::sections::{profiling, storage};
use super::validate::Problem;
use super::{Config, ConfigError, StorageBackend};

impl Config {
    /// The directories a serving run writes, with their keys: `storage.logsDir` with the local
    /// backend (the store keeps its lock, checkpoints and keys there; with `s3` nothing is kept
    /// on the machine but the analytics' copies), `storage.analyticsDir`, and `profiling.dir`
    /// when `profiling.capture` is on.
    pub fn written_directories(&self) -> Vec<(&'static Key, &Path)> {
        let mut directories = vec![(
            &storage::ANALYTICS_DIR,
            self.storage.analytics_dir.as_path(),
        )];
        if self.storage.backend == StorageBackend::Local {
            directories.insert(0, (&storage::LOGS_DIR, self.storage.logs_dir.as_path()));
        }
        if self.profiling.capture {
            directories.push((&profiling::DIR, self.profiling.dir.as_path()));
        }
        directories
    }

    /// Makes sure a serving run can write each of its [`Config::written_directories`]: each must
    /// be a directory this process can write, or be missing under one; the missing ones are
    /// created once every one has passed, so that a refusal changes nothing. Each problem names
    /// its key, and the flag or environment variable of `overrides` that set it, as
    /// [`Config::load`] does.
    pub fn prepare_directories(&self, overrides: &Overrides) -> Result<(), ConfigError> {
        ConfigError::check(overrides.attribute(prepare(&self.written_directories())))
    }
}

/// Checks every directory of `directories` (key, path) first, and only when all pass creates the
/// missing ones, so that a refused start changes nothing.
fn prepare(directories: &[(&'static Key, &Path)]) -> Vec<Problem> {
    let mut missing = Vec::new();
    let mut problems = Vec::new();
    for &(key, path) in directories {
        match check(path) {
            Ok(Presence::Present) => {}
            Ok(Presence::Missing) => missing.push((key, path)),
            Err(message) => problems.push(Problem {
                key: key.name,
                message,
            }),
        }
    }
    if problems.is_empty() {
        for (key, path) in missing {
            if let Err(err) = std::fs::create_dir_all(path) {
                let message = format!("cannot create {}: {err}", path.display());
                problems.push(Problem {
                    key: key.name,
                    message,
                });
            }
        }
    }
    problems
}

enum Presence {
    Present,
    Missing,
}

fn check(path: &Path) -> Result<Presence, String> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => writable(path).map(|()| Presence::Present),
        Ok(_) => Err(format!("{} is not a directory", path.display())),
        // Missing, or below a file (which the ancestor's check then names).
        Err(err)
            if matches!(
                err.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            // It will be created: in its nearest existing ancestor, which must be writable.
            let ancestor = path
                .ancestors()
                .skip(1)
                .map(|ancestor| {
                    if ancestor.as_os_str().is_empty() {
                        Path::new(".")
                    } else {
                        ancestor
                    }
                })
                .find(|ancestor| std::fs::metadata(ancestor).is_ok())
                .unwrap_or(Path::new("/"));
            if !ancestor.is_dir() {
                return Err(format!(
                    "cannot create {}: {} is not a directory",
                    path.display(),
                    ancestor.display()
                ));
            }
            writable(ancestor)
                .map(|()| Presence::Missing)
                .map_err(|message| format!("cannot create {}: {message}", path.display()))
        }
        Err(err) => Err(format!("cannot use {}: {err}", path.display())),
    }
}

/// Whether this process may create files in `dir`, as the kernel decides for its effective
/// user: permissions, read-only mounts and root's override included.
fn writable(dir: &Path) -> Result<(), String> {
    let not_writable = |reason: String| format!("{} is not writable ({reason})", dir.display());
    let path = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| not_writable("the path holds a NUL byte".to_owned()))?;
    // SAFETY: `path` is a NUL-terminated string that outlives the call; faccessat reads it only.
    let answer = unsafe {
        libc::faccessat(
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::W_OK | libc::X_OK,
            libc::AT_EACCESS,
        )
    };
    if answer == 0 {
        Ok(())
    } else {
        Err(not_writable(io::Error::last_os_error().to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_directories_are_checked_before_any_is_created() {
        let root = tempfile::tempdir().expect("temporary directory");
        let file = root.path().join("a-file");
        std::fs::write(&file, "").expect("write a file");
        let (logs, analytics) = (root.path().join("new/logs"), root.path().join("analytics"));
        let overrides =
            Overrides::default().with(&storage::ANALYTICS_DIR, file.join("below-a-file"));
        let mut config = Config::load(None, &overrides).expect("valid");
        config.storage.logs_dir = logs.clone();
        let err = config
            .prepare_directories(&overrides)
            .expect_err("refused")
            .to_string();
        assert_eq!(
            err,
            format!(
                "storage.analyticsDir: cannot create {0}/below-a-file: {0} is not a directory \
                 (from --analytics-dir/ANALYTICS_DIR)",
                file.display()
            )
        );
        assert!(!logs.exists(), "nothing is created when one is refused");

        config.storage.analytics_dir = file.clone();
        let err = config
            .prepare_directories(&Overrides::default())
            .expect_err("refused");
        assert_eq!(
            err.to_string(),
            format!(
                "storage.analyticsDir: {} is not a directory",
                file.display()
            )
        );

        config.storage.analytics_dir = analytics.clone();
        config.profiling.capture = true;
        config.profiling.dir = file.clone();
        let err = config
            .prepare_directories(&Overrides::default())
            .expect_err("refused");
        assert!(err.to_string().starts_with("profiling.dir: "), "{err}");

        config.profiling.dir = root.path().join("profiles");
        config
            .prepare_directories(&Overrides::default())
            .expect("all can be created");
        for dir in [&logs, &analytics, &config.profiling.dir] {
            assert!(dir.is_dir(), "{} created", dir.display());
        }
        config
            .prepare_directories(&Overrides::default())
            .expect("and used again");
    }

    #[test]
    fn with_the_bucket_the_logs_directory_is_not_needed() {
        let root = tempfile::tempdir().expect("temporary directory");
        let file = root.path().join("a-file");
        std::fs::write(&file, "").expect("write a file");
        let mut config = Config::default();
        config.storage.backend = StorageBackend::S3;
        config.storage.logs_dir = file.clone();
        config.storage.analytics_dir = root.path().join("analytics");
        config
            .prepare_directories(&Overrides::default())
            .expect("a logs directory that is a file does not matter with s3");
        assert!(config.storage.analytics_dir.is_dir());
        config.storage.backend = StorageBackend::Local;
        let err = config
            .prepare_directories(&Overrides::default())
            .expect_err("it does with the local backend");
        assert!(err.to_string().starts_with("storage.logsDir: "), "{err}");
    }
}
