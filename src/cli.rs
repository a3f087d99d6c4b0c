//! The command line: the flags and environment variables that override the YAML file.
//!
//! This module owns only parsing. Every override is an `Option` with no clap default, because a
//! clap default would be indistinguishable from an operator's choice and would silently beat the
//! file; precedence (flag > env > file > default) is applied by [`crate::config::Config::load`],
//! which also reports bad values. The defaults shown by `--help` are written into the help text
//! and must agree with [`crate::config::Config::default`] (a test checks this).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Command-line flags, each with an environment variable of the same meaning.
#[derive(Parser, Debug, Default, Clone)]
#[command(
    name = "log-pipeline",
    version,
    about = "Ingests batches of web-access records over HTTP into durable hourly files (v1) or via Kafka (v2).",
    long_about = None
)]
pub struct Cli {
    /// What to do instead of serving.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// YAML config file (the original service's keys load unchanged).
    #[arg(long, global = true, env = "LOG_PIPELINE_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Pipeline version, overriding `version`: 1 writes hourly files directly, 2 goes through Kafka.
    #[arg(
        long,
        env = "PIPELINE_VERSION",
        value_name = "1|2",
        help = "Pipeline version: 1 writes hourly files directly, 2 goes through Kafka [default: 1]"
    )]
    pub pipeline_version: Option<u8>,

    /// HTTP listen address, overriding `server.addr`.
    #[arg(
        long,
        env = "HTTP_ADDR",
        value_name = "ADDR",
        help = "HTTP listen address, host:port or Go-style :port for all interfaces [default: :8082]"
    )]
    pub addr: Option<String>,

    /// Directory of the hourly log files, overriding `storage.logsDir`.
    #[arg(
        long,
        env = "LOGS_DIR",
        value_name = "PATH",
        help = "Directory of the hourly NDJSON log files [default: ./logs]"
    )]
    pub logs_dir: Option<PathBuf>,

    /// Directory of the hourly analytics files, overriding `storage.analyticsDir`.
    #[arg(
        long,
        env = "ANALYTICS_DIR",
        value_name = "PATH",
        help = "Directory of the hourly analytics files [default: ./analytics]"
    )]
    pub analytics_dir: Option<PathBuf>,

    /// How often analytics are recomputed, overriding `aggregation.interval` (Go-style duration).
    #[arg(
        long,
        env = "AGGREGATION_INTERVAL",
        value_name = "DURATION",
        help = "How often hourly analytics are recomputed, e.g. 30s, 1m30s [default: 30s]"
    )]
    pub aggregation_interval: Option<String>,

    /// Kafka bootstrap brokers, comma-separated, overriding `kafka.brokers`.
    #[arg(
        long,
        env = "KAFKA_BROKERS",
        value_name = "HOST:PORT,...",
        help = "Kafka bootstrap brokers, comma-separated host:port; required for version 2 [default: none]"
    )]
    pub kafka_brokers: Option<String>,

    /// Bearer tokens accepted on `POST /logs`, comma-separated, overriding `auth.tokens`.
    // The env value is hidden from --help, which would otherwise print the secrets.
    #[arg(
        long,
        env = "LOG_PIPELINE_TOKENS",
        hide_env_values = true,
        value_name = "TOKEN,...",
        help = "Bearer tokens accepted on POST /logs, comma-separated; prefer the env var, \
                flags are visible in ps [default: none (auth off)]"
    )]
    pub tokens: Option<String>,

    /// Profile the whole run, overriding `profiling.capture`.
    #[arg(
        long,
        env = "PROFILE_CAPTURE",
        value_name = "1|0",
        help = "Profile the whole run; CPU, heap and task profiles are written at graceful shutdown [default: 0]"
    )]
    pub profile_capture: Option<String>,

    /// Name part of the captured profiles' files, overriding `profiling.name`.
    #[arg(
        long,
        env = "PROFILE_NAME",
        value_name = "NAME",
        help = "The <name> of cpu_<name>.prof, heap_<name>.prof, goroutine_<name>.prof [default: v<pipeline version>]"
    )]
    pub profile_name: Option<String>,

    /// Directory of the captured profiles, overriding `profiling.dir`.
    #[arg(
        long,
        env = "PROFILE_DIR",
        value_name = "PATH",
        help = "Directory the captured profiles are written to [default: profiles]"
    )]
    pub profile_dir: Option<PathBuf>,

    /// Serve profiles on demand, overriding `profiling.enabled`.
    #[arg(
        long,
        env = "PROFILE_ENABLED",
        value_name = "1|0",
        help = "Serve /debug/pprof/ (CPU, heap, task profiles) on a listener of its own [default: 0]"
    )]
    pub profile_enabled: Option<String>,

    /// Address of the profiling listener, overriding `profiling.addr`.
    #[arg(
        long,
        env = "PROFILE_ADDR",
        value_name = "ADDR",
        help = "Address of the /debug/pprof/ listener, host:port or :port for all interfaces [default: 127.0.0.1:6060]"
    )]
    pub profile_addr: Option<String>,
}

/// The commands; without one, the service runs.
#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Copy what the hour files under storage.logsDir hold beyond what was shipped before to the
    /// bucket of storage.s3, as objects named by the byte ranges they hold (run it again any
    /// time: nothing is shipped twice); then exit.
    Ship(ShipArgs),
}

/// `log-pipeline ship`.
#[derive(Args, Debug, Clone)]
pub struct ShipArgs {
    /// This machine's name in the object names, the same at every run and different from every
    /// other machine shipping to the bucket: letters, digits, `.`, `_` and `-`.
    #[arg(long, value_name = "NAME")]
    pub source: String,

    /// Ship an hour file only once nothing was written to it for this long (Go-style duration),
    /// so that no write is in progress.
    #[arg(long, value_name = "DURATION", default_value = "1m", value_parser = humantime::parse_duration)]
    pub quiet_for: std::time::Duration,
}

/// Every environment variable the binary reads, as declared on [`Cli`] (so the list cannot
/// drift from the flags).
pub fn env_vars() -> Vec<String> {
    use clap::CommandFactory;
    Cli::command()
        .get_arguments()
        .filter_map(|arg| arg.get_env())
        .map(|env| env.to_string_lossy().into_owned())
        .collect()
}

/// How each override is named in error messages: its flag and its environment variable, so the
/// operator finds it whichever way it was set.
pub mod source {
    /// `--pipeline-version` / `PIPELINE_VERSION`.
    pub const PIPELINE_VERSION: &str = "--pipeline-version/PIPELINE_VERSION";
    /// `--addr` / `HTTP_ADDR`.
    pub const ADDR: &str = "--addr/HTTP_ADDR";
    /// `--logs-dir` / `LOGS_DIR`.
    pub const LOGS_DIR: &str = "--logs-dir/LOGS_DIR";
    /// `--analytics-dir` / `ANALYTICS_DIR`.
    pub const ANALYTICS_DIR: &str = "--analytics-dir/ANALYTICS_DIR";
    /// `--aggregation-interval` / `AGGREGATION_INTERVAL`.
    pub const AGGREGATION_INTERVAL: &str = "--aggregation-interval/AGGREGATION_INTERVAL";
    /// `--kafka-brokers` / `KAFKA_BROKERS`.
    pub const KAFKA_BROKERS: &str = "--kafka-brokers/KAFKA_BROKERS";
    /// `--tokens` / `LOG_PIPELINE_TOKENS`.
    pub const TOKENS: &str = "--tokens/LOG_PIPELINE_TOKENS";
    /// `--profile-capture` / `PROFILE_CAPTURE`.
    pub const PROFILE_CAPTURE: &str = "--profile-capture/PROFILE_CAPTURE";
    /// `--profile-name` / `PROFILE_NAME`.
    pub const PROFILE_NAME: &str = "--profile-name/PROFILE_NAME";
    /// `--profile-dir` / `PROFILE_DIR`.
    pub const PROFILE_DIR: &str = "--profile-dir/PROFILE_DIR";
    /// `--profile-enabled` / `PROFILE_ENABLED`.
    pub const PROFILE_ENABLED: &str = "--profile-enabled/PROFILE_ENABLED";
    /// `--profile-addr` / `PROFILE_ADDR`.
    pub const PROFILE_ADDR: &str = "--profile-addr/PROFILE_ADDR";
}

impl Cli {
    /// `--kafka-brokers` as a list (see [`split_comma_list`]); `None` when unset or when nothing is
    /// left after dropping empty entries, so that an empty `KAFKA_BROKERS=` keeps the file's list.
    pub fn kafka_broker_list(&self) -> Option<Vec<String>> {
        self.kafka_brokers.as_deref().and_then(non_empty_list)
    }

    /// `--tokens` as a list (see [`split_comma_list`]); `None` when unset or empty, so that an
    /// empty `LOG_PIPELINE_TOKENS=` keeps the file's tokens rather than silently turning auth off.
    pub fn token_list(&self) -> Option<Vec<String>> {
        self.tokens.as_deref().and_then(non_empty_list)
    }
}

/// Splits a comma-separated value, trimming each entry and dropping empty ones, so that
/// `"a, b,,c,"` is `["a", "b", "c"]` (trailing commas and spaces are easy to leave in env files).
pub fn split_comma_list(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(str::to_owned)
        .collect()
}

fn non_empty_list(raw: &str) -> Option<Vec<String>> {
    let list = split_comma_list(raw);
    (!list.is_empty()).then_some(list)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_parse() {
        let cli = Cli::try_parse_from([
            "log-pipeline",
            "--config",
            "/etc/lp.yaml",
            "--pipeline-version",
            "2",
            "--addr",
            "127.0.0.1:9000",
            "--logs-dir",
            "/data/logs",
            "--analytics-dir",
            "/data/analytics",
            "--aggregation-interval",
            "1m",
            "--kafka-brokers",
            "k1:9092, k2:9092",
            "--tokens",
            "a,b",
        ])
        .expect("valid flags parse");
        assert_eq!(cli.config, Some(PathBuf::from("/etc/lp.yaml")));
        assert_eq!(cli.pipeline_version, Some(2));
        assert_eq!(cli.addr.as_deref(), Some("127.0.0.1:9000"));
        assert_eq!(cli.logs_dir, Some(PathBuf::from("/data/logs")));
        assert_eq!(cli.analytics_dir, Some(PathBuf::from("/data/analytics")));
        assert_eq!(cli.aggregation_interval.as_deref(), Some("1m"));
        assert_eq!(
            cli.kafka_broker_list(),
            Some(vec!["k1:9092".to_owned(), "k2:9092".to_owned()])
        );
        assert_eq!(cli.token_list(), Some(vec!["a".to_owned(), "b".to_owned()]));
    }

    #[test]
    fn non_numeric_version_is_a_parse_error() {
        let err = Cli::try_parse_from(["log-pipeline", "--pipeline-version", "two"])
            .expect_err("not a number");
        assert!(err.to_string().contains("--pipeline-version"), "{err}");
    }

    #[test]
    fn unknown_flag_is_a_parse_error() {
        assert!(Cli::try_parse_from(["log-pipeline", "--no-such-flag"]).is_err());
    }

    #[test]
    fn comma_lists_are_trimmed_and_empty_entries_dropped() {
        assert_eq!(
            split_comma_list(" a, ,b ,, c ,"),
            vec!["a".to_owned(), "b".to_owned(), "c".to_owned()]
        );
        assert!(split_comma_list("").is_empty());
        assert!(split_comma_list(" , ,").is_empty());

        let blank = Cli {
            kafka_brokers: Some(" , ".into()),
            tokens: Some(String::new()),
            ..Default::default()
        };
        assert_eq!(blank.kafka_broker_list(), None);
        assert_eq!(blank.token_list(), None);
        assert_eq!(Cli::default().kafka_broker_list(), None);
        assert_eq!(Cli::default().token_list(), None);
    }

    #[test]
    fn every_flag_has_its_env_var() {
        assert_eq!(
            env_vars(),
            [
                "LOG_PIPELINE_CONFIG",
                "PIPELINE_VERSION",
                "HTTP_ADDR",
                "LOGS_DIR",
                "ANALYTICS_DIR",
                "AGGREGATION_INTERVAL",
                "KAFKA_BROKERS",
                "LOG_PIPELINE_TOKENS",
                "PROFILE_CAPTURE",
                "PROFILE_NAME",
                "PROFILE_DIR",
                "PROFILE_ENABLED",
                "PROFILE_ADDR",
            ]
        );
    }

    #[test]
    fn help_defaults_agree_with_config_defaults() {
        use crate::config::{Config, PipelineVersion};
        let defaults = Config::default();
        assert_eq!(defaults.version, PipelineVersion::V1);
        assert_eq!(defaults.server.addr, ":8082");
        assert_eq!(defaults.storage.logs_dir, PathBuf::from("./logs"));
        assert_eq!(defaults.storage.analytics_dir, PathBuf::from("./analytics"));
        assert_eq!(
            defaults.aggregation.interval,
            std::time::Duration::from_secs(30)
        );
        assert!(defaults.kafka.brokers.is_empty());
        assert!(defaults.auth.tokens.is_empty());
        assert!(!defaults.profiling.capture && !defaults.profiling.enabled);
        assert_eq!(defaults.profiling.dir, PathBuf::from("profiles"));
        assert_eq!(defaults.profiling.addr, "127.0.0.1:6060");
        // Each default the help text shows, as `Config::default` has it.
        let help = Cli::command().render_help().to_string();
        for default in [
            "[default: 1]",
            "[default: :8082]",
            "[default: ./logs]",
            "[default: ./analytics]",
            "[default: 30s]",
            "[default: none]",
            "[default: none (auth off)]",
            "[default: 0]",
            "[default: profiles]",
            "[default: 127.0.0.1:6060]",
            "[default: v<pipeline version>]",
        ] {
            assert!(help.contains(default), "{default} missing:\n{help}");
        }
        for env in env_vars() {
            assert!(
                help.contains(&format!("[env: {env}")),
                "{env} missing:\n{help}"
            );
        }
    }

    #[test]
    fn source_names_match_the_clap_definition() {
        let mut declared: Vec<String> = Cli::command()
            .get_arguments()
            .filter(|arg| arg.get_id() != "config")
            .filter_map(|arg| {
                let long = arg.get_long()?;
                let env = arg.get_env()?.to_str()?;
                Some(format!("--{long}/{env}"))
            })
            .collect();
        declared.sort();
        let mut named = vec![
            source::PIPELINE_VERSION,
            source::ADDR,
            source::LOGS_DIR,
            source::ANALYTICS_DIR,
            source::AGGREGATION_INTERVAL,
            source::KAFKA_BROKERS,
            source::TOKENS,
            source::PROFILE_CAPTURE,
            source::PROFILE_NAME,
            source::PROFILE_DIR,
            source::PROFILE_ENABLED,
            source::PROFILE_ADDR,
        ];
        named.sort_unstable();
        assert_eq!(declared, named);
    }
}
