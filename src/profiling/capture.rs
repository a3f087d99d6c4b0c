//! `PROFILE_CAPTURE=1`: one CPU profile of the whole run, started before the runtime and read at
//! graceful shutdown, plus a heap profile and a task dump, written as
//! `<dir>/{cpu,heap,goroutine}_<name>.prof`.

use std::sync::Mutex;

use anyhow::Context as _;

use super::cpu::CpuProfile;
use super::{CaptureSettings, heap, tasks};

/// A capture in progress.
pub struct Capture {
    settings: CaptureSettings,
    cpu: CpuProfile,
    /// The task dump (or why there is none), once taken.
    task_dump: Mutex<Option<String>>,
}

impl Capture {
    /// Creates the directory (so a bad `PROFILE_DIR` stops the start, not the end of a long run)
    /// and starts the CPU profiler.
    pub fn start(settings: CaptureSettings) -> anyhow::Result<Capture> {
        std::fs::create_dir_all(&settings.dir)
            .with_context(|| format!("cannot create {} (profiling.dir)", settings.dir.display()))?;
        let cpu = CpuProfile::start().context("cannot start the CPU profiler")?;
        tracing::info!(
            dir = %settings.dir.display(),
            name = %settings.name,
            "profiling the whole run (PROFILE_CAPTURE): profiles are written at shutdown"
        );
        Ok(Capture {
            settings,
            cpu,
            task_dump: Mutex::new(None),
        })
    }

    /// Takes the task dump now, unless one was taken already. A dump that fails is recorded as
    /// its reason, so the file says why it has no tasks.
    pub async fn take_task_dump(&self) {
        if self.task_dump.lock().expect("task dump lock").is_some() {
            return;
        }
        let text = tasks::dump(tasks::DUMP_TIMEOUT)
            .await
            .unwrap_or_else(|err| format!("no task dump: {err}\n"));
        self.task_dump
            .lock()
            .expect("task dump lock")
            .get_or_insert(text);
    }

    /// Stops the CPU profiler and writes the three files. Every file is attempted; the error
    /// names each that could not be written.
    pub async fn finish(self) -> anyhow::Result<()> {
        self.take_task_dump().await;
        let Capture {
            settings,
            cpu,
            task_dump,
        } = self;
        let task_dump = task_dump
            .into_inner()
            .expect("task dump lock")
            .unwrap_or_default();
        // Symbolization is CPU-heavy: off the async workers. The CPU profile is read first, so
        // the heap dump's own work is not in it.
        let profiles = tokio::task::spawn_blocking(move || {
            let cpu_profile = cpu.pprof().map_err(anyhow::Error::from);
            drop(cpu);
            let heap_profile = heap::dump_pprof().map_err(anyhow::Error::from);
            [
                ("cpu", cpu_profile),
                ("heap", heap_profile),
                ("goroutine", Ok(task_dump.into_bytes())),
            ]
        })
        .await
        .context("the profile writer panicked")?;
        let mut failures = Vec::new();
        for (kind, profile) in profiles {
            let path = settings.path(kind);
            let written = profile.and_then(|bytes| {
                std::fs::write(&path, &bytes)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                Ok(bytes.len())
            });
            match written {
                Ok(bytes) => tracing::info!(path = %path.display(), bytes, "profile written"),
                Err(err) => failures.push(format!("{kind}: {err:#}")),
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            anyhow::bail!("{}", failures.join("; "))
        }
    }
}
