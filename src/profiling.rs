//! Profiling of the running service: CPU, heap and task ("goroutine") profiles, off unless the
//! configuration (`profiling.*`, or the original's `PROFILE_*` variables) asks for them.
//!
//! - `profiling.capture` / `PROFILE_CAPTURE=1` ([`capture`]): one CPU profile of the whole run,
//!   and a heap profile and a task dump, written at graceful shutdown to `profiling.dir` /
//!   `PROFILE_DIR` (default `profiles`) as `cpu_<name>.prof`, `heap_<name>.prof`,
//!   `goroutine_<name>.prof`, `<name>` being `profiling.name` / `PROFILE_NAME` (default
//!   `v<pipeline version>`).
//! - `profiling.enabled` / `PROFILE_ENABLED=1` ([`endpoint`]): a separate listener on
//!   `profiling.addr` / `PROFILE_ADDR` (default `127.0.0.1:6060`) serving
//!   `/debug/pprof/{profile,heap,goroutine,flamegraph}` on demand.
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

use crate::config::{Config, ConfigError};
use capture::Capture;

/// What the configuration asks for (`profiling.*`, validated with the rest of it).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProfilingSettings {
    /// `profiling.capture`: profile the whole run, write the files at graceful shutdown.
    pub capture: Option<CaptureSettings>,
    /// `profiling.enabled`: the `/debug/pprof/` listener's address (`profiling.addr`).
    pub endpoint: Option<SocketAddr>,
}

/// Where a whole-run capture writes its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureSettings {
    /// `profiling.dir`, created at start-up if missing.
    pub dir: PathBuf,
    /// The `<name>` of `cpu_<name>.prof` (`profiling.name`, or `v<pipeline version>`).
    pub name: String,
}

impl CaptureSettings {
    /// `<dir>/<kind>_<name>.prof`, e.g. `profiles/cpu_v1.prof`.
    pub fn path(&self, kind: &str) -> PathBuf {
        self.dir.join(format!("{kind}_{}.prof", self.name))
    }
}

impl ProfilingSettings {
    /// The settings of a validated configuration.
    pub fn from_config(config: &Config) -> Result<ProfilingSettings, ConfigError> {
        let profiling = &config.profiling;
        Ok(ProfilingSettings {
            capture: profiling.capture.then(|| CaptureSettings {
                dir: profiling.dir.clone(),
                name: profiling.file_name_part(config.version),
            }),
            endpoint: if profiling.enabled {
                Some(config.profiling_addr()?)
            } else {
                None
            },
        })
    }
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
                .with_context(|| format!("cannot listen on {addr} (profiling.addr)"))?;
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
                .context("cannot write the profiles (profiling.capture)"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::cli::Cli;
    use clap::Parser;

    /// The settings of the default configuration with `flags` (each also an env var).
    fn settings(flags: &[&str]) -> Result<ProfilingSettings, String> {
        let cli = Cli::try_parse_from(std::iter::once("log-pipeline").chain(flags.iter().copied()))
            .map_err(|err| err.to_string())?;
        let config = Config::load(None, &cli.overrides).map_err(|err| err.to_string())?;
        ProfilingSettings::from_config(&config).map_err(|err| err.to_string())
    }

    #[test]
    fn off_unless_asked_for() {
        assert_eq!(settings(&[]), Ok(ProfilingSettings::default()));
        // The other keys are not even checked while their mode is off.
        let off = &[
            "--profile-capture",
            "0",
            "--profile-enabled",
            "false",
            "--profile-name",
            "../bad",
            "--profile-addr",
            "not an address",
        ];
        assert_eq!(settings(off), Ok(ProfilingSettings::default()));
        let blank = &["--profile-capture", ""];
        assert_eq!(settings(blank), Ok(ProfilingSettings::default()));
    }

    #[test]
    fn capture_defaults_name_the_pipeline_version() {
        for (version, name) in [(1, "v1"), (2, "v2")] {
            let cli = &[
                "--profile-capture",
                "1",
                "--pipeline-version",
                &version.to_string(),
                "--kafka-brokers",
                "k:9092",
            ];
            let capture = settings(cli).unwrap().capture.unwrap();
            assert_eq!(capture.dir, PathBuf::from("profiles"));
            assert_eq!(capture.name, name);
            assert_eq!(
                capture.path("cpu"),
                PathBuf::from(format!("profiles/cpu_{name}.prof"))
            );
        }
        let cli = &[
            "--profile-capture",
            "TRUE",
            "--profile-name",
            "run-2.a",
            "--profile-dir",
            "/tmp/p",
        ];
        assert_eq!(
            settings(cli).unwrap().capture.unwrap().path("heap"),
            PathBuf::from("/tmp/p/heap_run-2.a.prof")
        );
    }

    #[test]
    fn endpoint_address_is_parsed_like_server_addr() {
        let endpoint = |addr: Option<&str>| {
            let mut flags = vec!["--profile-enabled", "1"];
            flags.extend(
                addr.map(|addr| ["--profile-addr", addr])
                    .into_iter()
                    .flatten(),
            );
            settings(&flags).map(|settings| settings.endpoint.unwrap())
        };
        assert_eq!(
            endpoint(None),
            Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, 6060))),
            "loopback unless asked otherwise"
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
            err.starts_with("profiling.addr: invalid listen address \":99999\""),
            "{err}"
        );
        assert!(err.ends_with("(from --profile-addr/PROFILE_ADDR)"), "{err}");
    }

    #[test]
    fn every_bad_value_is_named_with_its_key_and_source() {
        let err = settings(&[
            "--profile-capture",
            "1",
            "--profile-name",
            "a/b",
            "--profile-enabled",
            "maybe",
        ])
        .unwrap_err();
        assert!(
            err.contains("profiling.name: \"a/b\" cannot be part of a file name"),
            "{err}"
        );
        assert!(
            err.contains(
                "--profile-enabled/PROFILE_ENABLED: expected 1 or 0 (or true/false), got \"maybe\""
            ),
            "{err}"
        );
        let err = settings(&["--profile-capture", "1", "--profile-name", ".hidden"]).unwrap_err();
        assert!(err.starts_with("profiling.name: "), "{err}");
    }

    #[test]
    fn the_yaml_file_sets_profiling_too() {
        let config = Config::from_yaml_str(
            "profiling:\n  capture: true\n  name: nightly\n  dir: /p\n  enabled: true\n  addr: 127.0.0.1:6070\n",
        )
        .unwrap();
        let settings = ProfilingSettings::from_config(&config).unwrap();
        assert_eq!(
            settings.capture.unwrap().path("cpu"),
            PathBuf::from("/p/cpu_nightly.prof")
        );
        assert_eq!(
            settings.endpoint,
            Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 6070)))
        );
    }
}
