//! The `log-pipeline` binary: parse the command line, load the configuration, start logging, run.

use std::process::ExitCode;

use clap::Parser;
use log_pipeline::app::{Application, shutdown_signal};
use log_pipeline::cli::{Cli, Command};
use log_pipeline::config::Config;
use log_pipeline::profiling::{Profiling, ProfilingSettings};
use log_pipeline::telemetry;

/// jemalloc returns freed memory to the OS steadily and fragments less than glibc's per-thread
/// arenas under this workload (many short-lived buffers of similar sizes), which keeps RSS low.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's start-up options: heap profiling compiled in but inactive (no allocation is sampled)
/// until `PROFILE_CAPTURE`/`PROFILE_ENABLED` activate it; then one sample per 512 KiB allocated on
/// average. One arena (not 4 per core), and freed pages given back after half a second (not 10 s):
/// peak RSS under `hey -c 50` fell from 36 to 23 MB (100-record batches) and 56 to 41 MB (1000)
/// at the same throughput (`bench/ingest.sh`). Read once by jemalloc at its first allocation; a
/// `MALLOC_CONF` environment variable is applied after it (e.g. `narenas:8` on a many-core host).
/// Here, not in the library: only the binary's own object is sure to be linked.
///
/// jemalloc declares it `const char *malloc_conf`: a thin reference to the first byte has exactly
/// that layout.
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "malloc_conf")]
static malloc_conf: &u8 = &b"prof:true,prof_active:false,lg_prof_sample:19,narenas:1,dirty_decay_ms:500,muzzy_decay_ms:0\0"[0];

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (config, profiling) = match load(&cli) {
        Ok(loaded) => loaded,
        Err(err) => {
            eprintln!("log-pipeline: invalid configuration: {err}");
            return ExitCode::from(2);
        }
    };
    telemetry::init();
    if let Some(Command::Ship(args)) = &cli.command {
        return ship(&config, args);
    }
    let profiling = match Profiling::start(profiling) {
        Ok(profiling) => profiling,
        Err(err) => {
            eprintln!("log-pipeline: cannot start profiling: {err:#}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("log-pipeline: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        let shutdown = profiling.watch_shutdown(shutdown_signal()?);
        profiling.serve_endpoint().await?;
        let app = Application::build(config).await?;
        app.run_until_stopped(shutdown).await?;
        profiling.finish().await
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "log-pipeline stopped");
            eprintln!("log-pipeline: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// `log-pipeline ship`: 0 when every hour file was shipped (or was up to date, or written to too
/// recently), 1 otherwise.
fn ship(config: &Config, args: &log_pipeline::cli::ShipArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("log-pipeline ship: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(log_pipeline::ship::run(config, args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("log-pipeline ship: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The validated configuration and the profiling it asks for, with the directories a serving run
/// writes ready; an error means exit status 2.
fn load(cli: &Cli) -> Result<(Config, ProfilingSettings), String> {
    let config =
        Config::load(cli.config.as_deref(), &cli.overrides).map_err(|err| err.to_string())?;
    let profiling = ProfilingSettings::from_config(&config).map_err(|err| err.to_string())?;
    // `ship` only reads the hour files.
    if cli.command.is_none() {
        config
            .prepare_directories(&cli.overrides)
            .map_err(|err| err.to_string())?;
    }
    Ok((config, profiling))
}
