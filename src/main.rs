//! The `log-pipeline` binary: parse the command line, load the configuration, start logging, run.

use std::process::ExitCode;

use clap::Parser;
use log_pipeline::app::{Application, shutdown_signal};
use log_pipeline::cli::Cli;
use log_pipeline::config::Config;
use log_pipeline::telemetry;

/// jemalloc returns freed memory to the OS steadily and fragments less than glibc's per-thread
/// arenas under this workload (many short-lived buffers of similar sizes), which keeps RSS low.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(&cli) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("log-pipeline: invalid configuration: {err}");
            return ExitCode::from(2);
        }
    };
    telemetry::init();
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
        let shutdown = shutdown_signal()?;
        let app = Application::build(config).await?;
        app.run_until_stopped(shutdown).await
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
