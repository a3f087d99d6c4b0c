//! The real binary as a child process ([`ChildGuard`]), started with a clean environment
//! ([`pipeline`]).

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::Value;
use tokio::net::TcpStream;

use super::wait::{DEADLINE, POLL, poll, wait_until};

/// A command for the `log-pipeline` binary, `cwd` as working directory, without any variable the
/// binary reads from the test runner's own environment (every one of `--help`'s, and
/// `MALLOC_CONF`, which jemalloc reads), so that it cannot change the outcome.
///
/// The binary is the one cargo built with the tests, or `LOG_PIPELINE_TEST_BIN` when set: that is
/// how a scenario is shown to fail on an older build.
pub fn pipeline(cwd: &Path) -> Command {
    let binary = std::env::var_os("LOG_PIPELINE_TEST_BIN")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_log-pipeline").into());
    let mut command = Command::new(binary);
    for var in log_pipeline::cli::env_vars() {
        command.env_remove(var);
    }
    command.env_remove("MALLOC_CONF");
    command.env("RUST_LOG", "info").current_dir(cwd);
    command
}

#[derive(Default)]
struct Captured {
    stdout: String,
    stderr: String,
    open_streams: usize,
}

/// A running child process; killed (and reaped) when dropped.
pub struct ChildGuard {
    child: Child,
    captured: Arc<Mutex<Captured>>,
}

impl ChildGuard {
    /// Starts `command` with stdout and stderr captured.
    pub fn spawn(command: &mut Command) -> ChildGuard {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the log-pipeline binary starts");
        let captured = Arc::new(Mutex::new(Captured {
            open_streams: 2,
            ..Captured::default()
        }));
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        capture(stdout, captured.clone(), |c| &mut c.stdout);
        capture(stderr, captured.clone(), |c| &mut c.stderr);
        ChildGuard { child, captured }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stdout(&self) -> String {
        self.captured.lock().expect("capture lock").stdout.clone()
    }

    pub fn stderr(&self) -> String {
        self.captured.lock().expect("capture lock").stderr.clone()
    }

    /// Waits until stderr contains `needle`; fails if the process exits first.
    pub async fn wait_for_stderr(&mut self, needle: &str) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if self.stderr().contains(needle) {
                return;
            }
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // Read what is left before giving up on the needle.
                self.wait_for_eof().await;
                if self.stderr().contains(needle) {
                    return;
                }
                panic!(
                    "exited ({status}) before logging {needle:?}; stderr:\n{}",
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {needle:?}; stderr:\n{}",
                self.stderr()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until the process either listens (its address) or exits (its status), whichever
    /// comes first: for a start that may be refused.
    pub async fn listening_or_exit(&mut self) -> Result<SocketAddr, ExitStatus> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if self.stderr().contains("log-pipeline listening") {
                return Ok(self.listening_addr().await);
            }
            if self.child.try_wait().expect("try_wait").is_some() {
                return Err(self.wait_exit().await);
            }
            assert!(
                Instant::now() < deadline,
                "neither listening nor exited; stderr:\n{}",
                self.stderr()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits for the "log-pipeline listening" log line and returns the address it names.
    pub async fn listening_addr(&mut self) -> SocketAddr {
        self.wait_for_stderr("log-pipeline listening").await;
        let stderr = self.stderr();
        stderr
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find_map(|entry| {
                let fields = if entry.get("fields").is_some() {
                    &entry["fields"]
                } else {
                    &entry
                };
                if fields["message"] != "log-pipeline listening" {
                    return None;
                }
                Some(fields["addr"].as_str()?.parse().expect("addr is IP:PORT"))
            })
            .unwrap_or_else(|| panic!("no JSON listening line with an addr in:\n{stderr}"))
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        self.signal("TERM");
    }

    /// Sends a signal by name (`TERM`, `STOP`, `CONT`, ...).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} {} failed", self.pid());
    }

    /// `kill -9`: the process dies at once, without any shutdown; waits until it is reaped.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL is delivered");
        self.child.wait().expect("the killed process is reaped");
    }

    /// Waits until the process has exited and its output is fully read.
    pub async fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + DEADLINE;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "process {} did not exit; stderr:\n{}",
                self.pid(),
                self.stderr()
            );
            tokio::time::sleep(POLL).await;
        };
        self.wait_for_eof().await;
        status
    }

    async fn wait_for_eof(&self) {
        let captured = self.captured.clone();
        wait_until("the child's output to close", || {
            captured.lock().expect("capture lock").open_streams == 0
        })
        .await;
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Copies a child's stream into `captured` on a thread, line by line.
fn capture(
    stream: impl Read + Send + 'static,
    captured: Arc<Mutex<Captured>>,
    target: fn(&mut Captured) -> &mut String,
) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
            let mut captured = captured.lock().expect("capture lock");
            target(&mut captured).push_str(&String::from_utf8_lossy(&line));
            line.clear();
        }
        captured.lock().expect("capture lock").open_streams -= 1;
    });
}

/// Runs a child that must refuse to start as configured (exit status 2, before listening); returns
/// its stderr.
pub async fn expect_config_error(mut child: ChildGuard) -> String {
    let status = child.wait_exit().await;
    let stderr = child.stderr();
    assert_eq!(status.code(), Some(2), "{status}; stderr:\n{stderr}");
    assert!(
        stderr.contains("log-pipeline: invalid configuration: "),
        "{stderr}"
    );
    assert!(!stderr.contains("log-pipeline listening"), "{stderr}");
    stderr
}

/// The binary on 127.0.0.1:0 with its directories under `cwd`, plus `args` and `env`.
pub fn start_child(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> ChildGuard {
    let mut command = pipeline(cwd);
    command
        .args(["--addr", "127.0.0.1:0"])
        .args(args)
        .envs(env.iter().copied());
    ChildGuard::spawn(&mut command)
}

/// The refusal's one line in a refused start's `stderr`, after checking it names `key`.
pub fn refusal_naming(stderr: &str, key: &str) -> String {
    let line = stderr
        .lines()
        .find(|line| line.starts_with("log-pipeline: invalid configuration: "))
        .unwrap_or_else(|| panic!("no refusal line in:\n{stderr}"));
    assert!(line.contains(key), "{key} not named in: {line}");
    line.to_owned()
}

/// Starts the binary in `cwd` once per case (the flag, or the variable, that sets a directory;
/// its value; the key; a detail) and checks that each start is refused with one line naming the
/// key, the detail and the setting.
pub async fn assert_directories_refused(cwd: &Path, cases: &[(&str, &str, &str, &str)]) {
    for &(setting, dir, key, detail) in cases {
        let child = if setting.starts_with("--") {
            start_child(cwd, &[setting, dir], &[])
        } else {
            start_child(cwd, &["--profile-capture", "1"], &[(setting, dir)])
        };
        let line = refusal_naming(&expect_config_error(child).await, key);
        assert!(line.contains(detail), "{detail:?} missing from: {line}");
        let source = line.rsplit("(from ").next().unwrap_or_default();
        assert!(source.contains(setting), "{setting} not named in: {line}");
    }
}

/// Writes `yaml` to `dir/config.yaml`; returns its path, for `--config`.
pub fn write_config(dir: &Path, yaml: &str) -> String {
    let path = dir.join("config.yaml");
    std::fs::write(&path, yaml).expect("write the config file");
    path.to_str().expect("a UTF-8 path").to_owned()
}

/// A TCP port on 127.0.0.1 that is free now (for a server that cannot be told to bind port 0).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Waits until `addr` accepts TCP connections.
pub async fn wait_for_listener(addr: SocketAddr) {
    poll(&format!("{addr} to accept connections"), async || {
        TcpStream::connect(addr).await.map(drop)
    })
    .await;
}
