//! External programs and services the tests need: the Kafka broker (tansu), Prometheus, promtool,
//! Go, Node and Chromium, the release binary, the object store of the scale suite. A missing one
//! fails the test with what to install or start: never a silent skip. `make test`
//! (scripts/test.sh) starts the broker and exports its address; `.ci/run` installs the rest.
//!
//! Plain `cargo test` runs with none of them: every API test that needs one is marked
//! `#[ignore = "needs ...: make test"]`, and `make test` runs the ignored ones too. The gate
//! ([`EXTERNAL_ENV`]) keeps the marks honest: without it set, reaching for any of them fails the
//! test with a message saying it must be marked, so a test that needs the broker but is not
//! marked fails in plain `cargo test` instead of being forgotten.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Set to `1` by `make test`, `make test-faults` and `make test-scale`: tests may use the
/// external programs and services of this module. Unset (plain `cargo test`), they may not.
pub const EXTERNAL_ENV: &str = "LOG_PIPELINE_TEST_EXTERNAL";

/// Fails the running test unless [`EXTERNAL_ENV`] allows `what`: in plain `cargo test` a test that
/// needs something external must be marked `#[ignore]` (see the module docs).
fn allow_external(what: &str) {
    if std::env::var(EXTERNAL_ENV).as_deref() == Ok("1") {
        return;
    }
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    panic!(
        "{test} needs {what}, which plain `cargo test` runs without: mark it \
         `#[ignore = \"needs {what}: make test\"]`, and run it with `make test` (which sets \
         {EXTERNAL_ENV}=1 and runs the ignored tests too; `make test-faults` and `make \
         test-scale` set it for their suites)"
    )
}

/// The broker of the Kafka tests: `LOG_PIPELINE_TEST_KAFKA` (`127.0.0.1:PORT`, exported by
/// `eval "$(scripts/kafka-local.sh start)"`, which `make test` runs). Fails the test when it is
/// unset or refuses connections.
pub fn kafka_broker() -> String {
    allow_external("a Kafka broker");
    let Some(addr) = non_empty_env("LOG_PIPELINE_TEST_KAFKA") else {
        missing(
            "a Kafka broker",
            "LOG_PIPELINE_TEST_KAFKA is not set",
            BROKER_HINT,
        )
    };
    if !accepts_connections(&addr) {
        missing(
            "a Kafka broker",
            &format!("LOG_PIPELINE_TEST_KAFKA={addr} does not accept connections"),
            BROKER_HINT,
        );
    }
    addr
}

/// The tansu binary, for a test that runs a broker of its own: `LOG_PIPELINE_TEST_TANSU`
/// (exported by `scripts/kafka-local.sh start`). Fails the test when it is missing.
pub fn tansu_binary() -> PathBuf {
    allow_external("the tansu broker binary");
    let Some(path) = non_empty_env("LOG_PIPELINE_TEST_TANSU") else {
        missing(
            "the tansu broker binary",
            "LOG_PIPELINE_TEST_TANSU is not set",
            BROKER_HINT,
        )
    };
    let path = PathBuf::from(path);
    if !path.is_file() {
        missing(
            "the tansu broker binary",
            &format!("LOG_PIPELINE_TEST_TANSU={} is not a file", path.display()),
            BROKER_HINT,
        );
    }
    path
}

/// The S3-compatible object store of the scale tests (`scripts/garage-local.sh start` exports
/// these): its endpoint, bucket and the Garage process (for pausing it). The credentials travel in
/// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`, which the service and the tests both read.
/// Fails the test when it is missing or does not answer. (Used by the scale suite only.)
#[allow(dead_code)]
pub struct TestBucket {
    pub endpoint: String,
    pub bucket: String,
    pub garage_pid: Option<u32>,
}

#[allow(dead_code)]
pub fn test_bucket() -> TestBucket {
    allow_external("an S3-compatible object store");
    const HINT: &str = "run the suite with `make test-scale`, or start Garage with \
                        `eval \"$(scripts/garage-local.sh start)\"` first";
    let get = |name: &str| {
        non_empty_env(name).unwrap_or_else(|| {
            missing(
                "an S3-compatible object store",
                &format!("{name} is not set"),
                HINT,
            )
        })
    };
    let endpoint = get("LOG_PIPELINE_TEST_S3_ENDPOINT");
    let bucket = get("LOG_PIPELINE_TEST_S3_BUCKET");
    get("AWS_ACCESS_KEY_ID");
    get("AWS_SECRET_ACCESS_KEY");
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    if !accepts_connections(host) {
        missing(
            "an S3-compatible object store",
            &format!("LOG_PIPELINE_TEST_S3_ENDPOINT={endpoint} does not accept connections"),
            HINT,
        );
    }
    TestBucket {
        endpoint,
        bucket,
        garage_pid: non_empty_env("LOG_PIPELINE_TEST_GARAGE_PID").and_then(|pid| pid.parse().ok()),
    }
}

const BROKER_HINT: &str = "run the suite with `make test`, or start a broker with \
                           `eval \"$(scripts/kafka-local.sh start)\"` first";

/// An external program a test runs: the path in `env_var` when that is set, else `name` in
/// `PATH`. Fails the test when it is missing, naming the Debian `package` to install.
pub fn external_binary(env_var: &str, name: &str, package: &str) -> PathBuf {
    allow_external(name);
    let found = match non_empty_env(env_var) {
        Some(path) => Some(PathBuf::from(path)).filter(|path| is_executable(path)),
        None => std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|path| is_executable(path))
        }),
    };
    if let Some(found) = found {
        return found;
    }
    let reason = match non_empty_env(env_var) {
        Some(path) => format!("{env_var}={path} is not an executable file"),
        None => format!("no {name} in PATH and {env_var} is not set"),
    };
    missing(
        name,
        &reason,
        &format!("install it (`apt-get install -y {package}`) or set {env_var}"),
    )
}

/// The release binary (`LOG_PIPELINE_TEST_RELEASE_BIN`, exported by `make test` from
/// `scripts/release-binary.sh`). Fails the test when it is missing.
pub fn release_binary() -> PathBuf {
    allow_external("the release binary");
    let path = std::env::var("LOG_PIPELINE_TEST_RELEASE_BIN").unwrap_or_default();
    if path.trim().is_empty() || !Path::new(&path).is_file() {
        missing(
            "the release binary",
            &format!("LOG_PIPELINE_TEST_RELEASE_BIN={path:?} is not a file"),
            "run the suite with `make test`, or \
             `export LOG_PIPELINE_TEST_RELEASE_BIN=$(scripts/release-binary.sh)` first",
        );
    }
    PathBuf::from(path)
}

/// `go`, for `go tool pprof`. Fails the test when it does not run.
pub fn go_binary() -> PathBuf {
    let go = external_binary("LOG_PIPELINE_TEST_GO", "go", "golang-go");
    let runs = Command::new(&go)
        .arg("version")
        .output()
        .is_ok_and(|output| output.status.success());
    if !runs {
        missing(
            "go",
            &format!("`{} version` fails", go.display()),
            "install Debian's golang-go",
        );
    }
    go
}

/// Fails the running test: a dependency is missing.
fn missing(what: &str, reason: &str, hint: &str) -> ! {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    panic!("{test} needs {what}: {reason}; {hint}")
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .filter(|value| !value.trim().is_empty())
}

fn accepts_connections(addr: &str) -> bool {
    use std::net::ToSocketAddrs;
    addr.to_socket_addrs().is_ok_and(|mut addrs| {
        addrs
            .any(|addr| std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok())
    })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}
