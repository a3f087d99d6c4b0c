//! Profiling of the running service: CPU, heap and task ("goroutine") profiles, off unless the
//! environment asks for them, with the original's variables.
//!
//! - `PROFILE_CAPTURE=1` ([`capture`]): one CPU profile of the whole run, and a heap profile and a
//!   task dump, written at graceful shutdown to `PROFILE_DIR` (default `profiles`) as
//!   `cpu_<name>.prof`, `heap_<name>.prof`, `goroutine_<name>.prof`, `<name>` being `PROFILE_NAME`
//!   (default `v<pipeline version>`).
//! - `PROFILE_ENABLED=1` ([`endpoint`]): a separate listener on `PROFILE_ADDR` (default `:6060`)
//!   serving `/debug/pprof/{profile,heap,goroutine,flamegraph}` on demand.
//!
//! The profiles themselves: [`cpu`] (pprof-rs, SIGPROF sampling at 99 Hz), [`heap`] (jemalloc's
//! sampling heap profiler, read through `jemalloc_pprof`) and [`tasks`] (tokio task dumps).
//!
//! # Cost when off
//!
//! Neither variable set: no profiler, no SIGPROF handler or timer, no listener, no thread.
//! jemalloc is built with profiling support and started with `prof:true,prof_active:false` (the
//! `malloc_conf` symbol in `main.rs`): sampling is inactive, so no allocation ever records a
//! backtrace; what remains is jemalloc's per-thread allocation counter reaching its next sample
//! point about once per 512 KiB allocated and finding sampling off. Heap sampling is switched on
//! ([`heap::activate`]) only when a variable asks for profiles. tokio's task-dump support, compiled
//! in, costs nothing until a dump is requested.

pub mod capture;
pub mod cpu;
pub mod endpoint;
pub mod heap;
pub mod tasks;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;

use crate::config::Config;
use capture::Capture;

/// `PROFILE_DIR` when unset.
pub const DEFAULT_DIR: &str = "profiles";
/// `PROFILE_ADDR` when unset: port 6060 of all interfaces, as the Go original.
pub const DEFAULT_ADDR: &str = ":6060";

/// What the environment asks for, read and validated once at start-up.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProfilingSettings {
    /// `PROFILE_CAPTURE=1`: profile the whole run, write the files at graceful shutdown.
    pub capture: Option<CaptureSettings>,
    /// `PROFILE_ENABLED=1`: the `/debug/pprof/` listener's address (`PROFILE_ADDR`).
    pub endpoint: Option<SocketAddr>,
}

/// Where a whole-run capture writes its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureSettings {
    /// `PROFILE_DIR`, created at start-up if missing.
    pub dir: PathBuf,
    /// `PROFILE_NAME`: the `<name>` of `cpu_<name>.prof`; default `v<pipeline version>`.
    pub name: String,
}

impl CaptureSettings {
    /// `<dir>/<kind>_<name>.prof`, e.g. `profiles/cpu_v1.prof`.
    pub fn path(&self, kind: &str) -> PathBuf {
        self.dir.join(format!("{kind}_{}.prof", self.name))
    }
}

/// Profiling variables that cannot be used; `Display` names each variable and its problem,
/// joined by `"; "` like [`crate::config::ConfigError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .problems.join("; "))]
pub struct SettingsError {
    problems: Vec<String>,
}

impl ProfilingSettings {
    /// Reads the `PROFILE_*` variables of this process.
    pub fn from_env(config: &Config) -> Result<ProfilingSettings, SettingsError> {
        Self::from_lookup(config, |name| {
            std::env::var_os(name).map(|value| value.to_string_lossy().into_owned())
        })
    }

    /// Reads the `PROFILE_*` variables through `lookup`. `PROFILE_NAME`, `PROFILE_DIR` and
    /// `PROFILE_ADDR` are checked only when the mode that uses them is on.
    pub fn from_lookup(
        config: &Config,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<ProfilingSettings, SettingsError> {
        let mut problems = Vec::new();
        let mut settings = ProfilingSettings::default();
        if flag(&lookup, "PROFILE_CAPTURE", &mut problems) {
            let name = lookup("PROFILE_NAME")
                .filter(|name| !name.is_empty())
                .unwrap_or_else(|| format!("v{}", config.version));
            if let Err(message) = check_name(&name) {
                problems.push(format!("PROFILE_NAME: {message}"));
            }
            let dir = lookup("PROFILE_DIR")
                .filter(|dir| !dir.is_empty())
                .unwrap_or_else(|| DEFAULT_DIR.to_owned());
            settings.capture = Some(CaptureSettings {
                dir: PathBuf::from(dir),
                name,
            });
        }
        if flag(&lookup, "PROFILE_ENABLED", &mut problems) {
            let addr = lookup("PROFILE_ADDR")
                .filter(|addr| !addr.is_empty())
                .unwrap_or_else(|| DEFAULT_ADDR.to_owned());
            match listen_addr(config, &addr) {
                Ok(addr) => settings.endpoint = Some(addr),
                Err(message) => problems.push(format!("PROFILE_ADDR: {message}")),
            }
        }
        if problems.is_empty() {
            Ok(settings)
        } else {
            Err(SettingsError { problems })
        }
    }
}

/// `1`/`true`/`yes`/`on` or `0`/`false`/`no`/`off` (any case); unset or empty is off.
fn flag(lookup: &impl Fn(&str) -> Option<String>, name: &str, problems: &mut Vec<String>) -> bool {
    let Some(value) = lookup(name) else {
        return false;
    };
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => true,
        "" | "0" | "false" | "no" | "off" => false,
        _ => {
            problems.push(format!(
                "{name}: expected 1 or 0 (or true/false), got {value:?}"
            ));
            false
        }
    }
}

/// The name becomes part of three file names: no path separators, no hidden files.
fn check_name(name: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.starts_with('.') || !name.chars().all(allowed) {
        Err(format!(
            "{name:?} cannot be part of a file name: use ASCII letters, digits, '.', '_' and '-', \
             not starting with '.'"
        ))
    } else {
        Ok(())
    }
}

/// `server.addr`'s own parsing (Go-style `:6060` is all interfaces), applied to `addr`.
fn listen_addr(config: &Config, addr: &str) -> Result<SocketAddr, String> {
    let mut probe = config.clone();
    probe.server.addr = addr.to_owned();
    probe.listen_addr().map_err(|err| {
        let message = err.to_string();
        match message.strip_prefix("server.addr: ") {
            Some(message) => message.to_owned(),
            None => message,
        }
    })
}

/// Profiling of one run of the service, as [`ProfilingSettings`] asked for: nothing at all when
/// both modes are off.
pub struct Profiling {
    capture: Option<Arc<Capture>>,
    endpoint: Option<SocketAddr>,
}

impl Profiling {
    /// Switches on what `settings` asks for that must run from the start: jemalloc's heap
    /// sampling and, for a capture, the CPU profiler. Call before the runtime starts, so its
    /// worker threads are profiled from their first instruction.
    pub fn start(settings: ProfilingSettings) -> anyhow::Result<Profiling> {
        if settings.capture.is_some() || settings.endpoint.is_some() {
            // Heap profiles show live memory sampled since activation: activate before the
            // service allocates anything worth seeing.
            if let Err(err) = heap::activate() {
                tracing::warn!(error = %err, "heap profiles will be unavailable");
            }
        }
        let capture = match settings.capture {
            Some(settings) => Some(Arc::new(Capture::start(settings)?)),
            None => None,
        };
        Ok(Profiling {
            capture,
            endpoint: settings.endpoint,
        })
    }

    /// Binds the `/debug/pprof/` listener (with `PROFILE_ENABLED=1`) and serves it on a task for
    /// the rest of the process's life.
    pub async fn serve_endpoint(&self) -> anyhow::Result<()> {
        if let Some(addr) = self.endpoint {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (PROFILE_ADDR)"))?;
            endpoint::spawn(listener)?;
        }
        Ok(())
    }

    /// `shutdown`, and then (with a capture) the task dump: taken when the signal arrives, while
    /// the service's tasks still run, not after they have drained.
    pub fn watch_shutdown<F: Future<Output = ()>>(
        &self,
        shutdown: F,
    ) -> impl Future<Output = ()> + use<F> {
        let capture = self.capture.clone();
        async move {
            shutdown.await;
            if let Some(capture) = capture {
                capture.take_task_dump().await;
            }
        }
    }

    /// After a graceful shutdown: writes the capture's files (with `PROFILE_CAPTURE=1`).
    pub async fn finish(self) -> anyhow::Result<()> {
        match self.capture {
            Some(capture) => Arc::into_inner(capture)
                .context("the capture is still shared after shutdown")?
                .finish()
                .await
                .context("cannot write the profiles (PROFILE_CAPTURE)"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::net::Ipv4Addr;

    use super::*;
    use crate::config::PipelineVersion;

    fn settings(
        version: PipelineVersion,
        vars: &[(&str, &str)],
    ) -> Result<ProfilingSettings, String> {
        let config = Config {
            version,
            ..Config::default()
        };
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        ProfilingSettings::from_lookup(&config, |name| vars.get(name).cloned())
            .map_err(|err| err.to_string())
    }

    #[test]
    fn off_unless_asked_for() {
        let off = ProfilingSettings::default();
        assert_eq!(settings(PipelineVersion::V1, &[]), Ok(off.clone()));
        let ignored = [
            ("PROFILE_CAPTURE", "0"),
            ("PROFILE_ENABLED", "false"),
            ("PROFILE_NAME", "../bad"),
            ("PROFILE_ADDR", "not an address"),
        ];
        assert_eq!(settings(PipelineVersion::V1, &ignored), Ok(off.clone()));
        assert_eq!(
            settings(PipelineVersion::V1, &[("PROFILE_CAPTURE", "")]),
            Ok(off)
        );
    }

    #[test]
    fn capture_defaults_name_the_pipeline_version() {
        for (version, name) in [(PipelineVersion::V1, "v1"), (PipelineVersion::V2, "v2")] {
            let capture = settings(version, &[("PROFILE_CAPTURE", "1")])
                .unwrap()
                .capture
                .unwrap();
            assert_eq!(capture.dir, PathBuf::from("profiles"));
            assert_eq!(capture.name, name);
            assert_eq!(
                capture.path("cpu"),
                PathBuf::from(format!("profiles/cpu_{name}.prof"))
            );
        }
        let capture = settings(
            PipelineVersion::V1,
            &[
                ("PROFILE_CAPTURE", "TRUE"),
                ("PROFILE_NAME", "run-2.a"),
                ("PROFILE_DIR", "/tmp/p"),
            ],
        )
        .unwrap()
        .capture
        .unwrap();
        assert_eq!(
            capture.path("heap"),
            PathBuf::from("/tmp/p/heap_run-2.a.prof")
        );
    }

    #[test]
    fn endpoint_address_is_parsed_like_server_addr() {
        let endpoint = |addr: Option<&str>| {
            let mut vars = vec![("PROFILE_ENABLED", "1")];
            vars.extend(addr.map(|addr| ("PROFILE_ADDR", addr)));
            settings(PipelineVersion::V1, &vars).map(|settings| settings.endpoint.unwrap())
        };
        assert_eq!(
            endpoint(None),
            Ok(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 6060)))
        );
        assert_eq!(
            endpoint(Some(":6061")),
            Ok(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 6061)))
        );
        assert_eq!(
            endpoint(Some("127.0.0.1:0")),
            Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        );
        let err = endpoint(Some(":99999")).unwrap_err();
        assert!(
            err.starts_with("PROFILE_ADDR: invalid listen address \":99999\""),
            "{err}"
        );
    }

    #[test]
    fn every_bad_variable_is_named() {
        let err = settings(
            PipelineVersion::V1,
            &[
                ("PROFILE_CAPTURE", "1"),
                ("PROFILE_NAME", "a/b"),
                ("PROFILE_ENABLED", "maybe"),
            ],
        )
        .unwrap_err();
        assert!(
            err.contains("PROFILE_NAME: \"a/b\" cannot be part of a file name"),
            "{err}"
        );
        assert!(
            err.contains("PROFILE_ENABLED: expected 1 or 0 (or true/false), got \"maybe\""),
            "{err}"
        );
        let err = settings(
            PipelineVersion::V1,
            &[("PROFILE_CAPTURE", "1"), ("PROFILE_NAME", ".hidden")],
        )
        .unwrap_err();
        assert!(err.starts_with("PROFILE_NAME: "), "{err}");
    }
}
