//! The directories a serving run writes, checked at start-up: each must be a directory this
//! process can write, or be missing under one (it is then created). One that is not stops the
//! start naming its key, rather than failing every request that needs it later.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::{Config, ConfigError, Problem, attributed};
use crate::cli::Cli;

impl Config {
    /// The directories a serving run writes, with their keys: `storage.logsDir` (in every mode:
    /// the store keeps its lock, checkpoints and keys there), `storage.analyticsDir`, and
    /// `profiling.dir` when `profiling.capture` is on.
    pub fn written_directories(&self) -> Vec<(&'static str, &Path)> {
        let mut directories = vec![
            ("storage.logsDir", self.storage.logs_dir.as_path()),
            ("storage.analyticsDir", self.storage.analytics_dir.as_path()),
        ];
        if self.profiling.capture {
            directories.push(("profiling.dir", self.profiling.dir.as_path()));
        }
        directories
    }

    /// Makes sure a serving run can write each of its [`Config::written_directories`]: each must
    /// be a directory this process can write, or be missing under one; the missing ones are
    /// created once every one has passed, so that a refusal changes nothing. Each problem names
    /// its key, and the flag or environment variable that set it, as [`Config::load`] does.
    pub fn prepare_directories(&self, cli: &Cli) -> Result<(), ConfigError> {
        let found = prepare(&self.written_directories());
        // Which keys `cli` overrides, from applying it to a scratch copy: the same code as `load`.
        let overridden = Config::default().apply_overrides(cli, &mut Vec::new());
        let problems = attributed(found, &overridden);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }
}

/// Checks every directory of `directories` (key, path) first, and only when all pass creates the
/// missing ones, so that a refused start changes nothing.
fn prepare(directories: &[(&'static str, &Path)]) -> Vec<Problem> {
    let mut missing = Vec::new();
    let mut problems = Vec::new();
    for &(key, path) in directories {
        match check(path) {
            Ok(Presence::Present) => {}
            Ok(Presence::Missing) => missing.push((key, path)),
            Err(message) => problems.push(Problem { key, message }),
        }
    }
    if problems.is_empty() {
        for (key, path) in missing {
            if let Err(err) = std::fs::create_dir_all(path) {
                let message = format!("cannot create {}: {err}", path.display());
                problems.push(Problem { key, message });
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
