//! Task dumps, the Rust analogue of Go's goroutine profile: the async stack of every task on the
//! tokio runtime, as text.
//!
//! tokio pauses its workers and re-polls each task in a tracing mode to record where it is
//! waiting. That never finishes while a worker is blocked (a synchronous deadlock, a long
//! blocking call on a worker), so every dump has a deadline. Needs `--cfg tokio_unstable`
//! (`.cargo/config.toml`) and tokio's `taskdump` feature; without the cfg a dump is
//! [`TaskDumpError::Unsupported`].

#[cfg(tokio_unstable)]
use std::fmt::Write as _;
use std::time::Duration;

/// How long a dump may take before it is given up.
pub const DUMP_TIMEOUT: Duration = Duration::from_secs(5);

/// A task dump cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum TaskDumpError {
    #[error("the task dump did not finish within {0:?}: a runtime worker is blocked")]
    TimedOut(Duration),
    #[error(
        "task dumps are not compiled in: build with `--cfg tokio_unstable` (.cargo/config.toml \
         sets it; a RUSTFLAGS environment variable replaces that setting)"
    )]
    Unsupported,
}

/// Dumps every task of the current runtime as text: a header line with the count and the time,
/// then each task's id and its trace, innermost await last. Must be called within the runtime.
#[cfg(tokio_unstable)]
pub async fn dump(timeout: Duration) -> Result<String, TaskDumpError> {
    let handle = tokio::runtime::Handle::current();
    let dump = tokio::time::timeout(timeout, handle.dump())
        .await
        .map_err(|_| TaskDumpError::TimedOut(timeout))?;
    let tasks: Vec<_> = dump.tasks().iter().collect();
    let mut text = header(tasks.len());
    for (index, task) in tasks.iter().enumerate() {
        let _ = write!(
            text,
            "\ntask {} of {} (id {}):\n{}\n",
            index + 1,
            tasks.len(),
            task.id(),
            separate_roots(&task.trace().to_string())
        );
    }
    Ok(text)
}

/// Without `--cfg tokio_unstable` tokio has no `Handle::dump`.
#[cfg(not(tokio_unstable))]
pub async fn dump(_timeout: Duration) -> Result<String, TaskDumpError> {
    Err(TaskDumpError::Unsupported)
}

#[cfg(tokio_unstable)]
fn header(tasks: usize) -> String {
    let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    format!("tokio task dump: {tasks} tasks at {at}\n")
}

/// tokio prints the trees of a task with several awaits in progress (a `select!`, a `join!`) one
/// right after the other: starts each tree after the first on a line of its own. A tree's root is
/// the one `╼` not drawn from a branch (`└╼`, `├╼`).
#[cfg_attr(not(tokio_unstable), allow(dead_code))]
fn separate_roots(trace: &str) -> String {
    let mut text = String::with_capacity(trace.len() + 16);
    let mut previous = None;
    for c in trace.chars() {
        if c == '╼' && previous.is_some_and(|p| !matches!(p, '└' | '├' | '\n')) {
            text.push('\n');
        }
        text.push(c);
        previous = Some(c);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_tree_of_a_trace_starts_a_line() {
        let trace = "╼ a at a.rs:1:1\n  └╼ b at b.rs:2:2╼ c at c.rs:3:3\n  ├╼ d at d.rs:4:4";
        assert_eq!(
            separate_roots(trace),
            "╼ a at a.rs:1:1\n  └╼ b at b.rs:2:2\n╼ c at c.rs:3:3\n  ├╼ d at d.rs:4:4"
        );
        assert_eq!(separate_roots(""), "");
    }
}
