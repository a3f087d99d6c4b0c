//! The commit the binary is built from, for `--version` and `log_pipeline_build_info{commit}`:
//! `GIT_COMMIT` when set (the container build has no `.git`: scripts/stack.sh passes it as a
//! build argument), else `git rev-parse --short=12 HEAD`, else `unknown` (a source tarball).
//! Exported to the crate as the `LOG_PIPELINE_COMMIT` environment variable.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=GIT_COMMIT");
    let commit = match std::env::var("GIT_COMMIT") {
        Ok(commit) if !commit.trim().is_empty() => commit.trim().to_owned(),
        _ => {
            watch_head();
            git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".to_owned())
        }
    };
    println!("cargo:rustc-env=LOG_PIPELINE_COMMIT={commit}");
}

/// Asks cargo to run this again when HEAD moves: a commit, a checkout, a branch reset. (With no
/// `rerun-if-changed` at all, cargo would run it again only when a file of the package changes.)
/// In a worktree, HEAD is in the worktree's git directory and the branch refs in the common one.
fn watch_head() {
    let (Some(git_dir), Some(common_dir)) = (
        git(&["rev-parse", "--git-dir"]),
        git(&["rev-parse", "--git-common-dir"]),
    ) else {
        return;
    };
    let (git_dir, common_dir) = (PathBuf::from(git_dir), PathBuf::from(common_dir));
    let head = git_dir.join("HEAD");
    let mut watched = vec![head.clone(), common_dir.join("packed-refs")];
    if let Some(branch) = std::fs::read_to_string(&head)
        .ok()
        .and_then(|head| Some(head.strip_prefix("ref: ")?.trim().to_owned()))
    {
        watched.push(common_dir.join(branch));
    }
    // A path that does not exist would make cargo run this on every build.
    for path in watched.iter().filter(|path| Path::new(path).exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

/// The trimmed output of a successful `git` command, run in the package's directory.
fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    let out = String::from_utf8(output.stdout).ok()?;
    (output.status.success() && !out.trim().is_empty()).then(|| out.trim().to_owned())
}
