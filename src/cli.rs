//! The command line: `--config`, the subcommands, and a flag with an environment variable for
//! each key whose row in the configuration's key table ([`crate::config::key`]) has one. The
//! flags are made from the table, so their names, variables and help are written only there.
//!
//! This module owns only parsing. No override has a clap default, because a clap default would
//! be indistinguishable from an operator's choice and would silently beat the file: the values
//! given are collected into an [`Overrides`], which [`crate::config::Config::load`] applies over
//! the file and whose bad values it reports.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::builder::TypedValueParser;
use clap::{Arg, ArgMatches, Args, FromArgMatches, Parser, Subcommand};

use crate::config::Overrides;
use crate::config::key::{CONFIG_FILE, Field, Key, keys};

/// Command-line flags, each with an environment variable of the same meaning.
#[derive(Parser, Debug, Default, Clone)]
#[command(
    name = "log-pipeline",
    version = crate::metrics::VERSION_AND_COMMIT,
    about = "Ingests batches of web-access records over HTTP into durable hourly files (v1) or via Kafka (v2).",
    long_about = None
)]
pub struct Cli {
    /// What to do instead of serving.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// YAML config file (the original service's keys load unchanged).
    #[arg(
        long = CONFIG_FILE.long,
        global = true,
        env = CONFIG_FILE.env,
        value_name = CONFIG_FILE.value_name
    )]
    pub config: Option<PathBuf>,

    /// The keys set by flags and environment variables.
    #[command(flatten)]
    pub overrides: Overrides,
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

// Hand-written rather than derived: one argument per key with a flag, made from its row.
impl Args for Overrides {
    fn augment_args(command: clap::Command) -> clap::Command {
        keys().fold(command, |command, key| match override_arg(key) {
            Some(arg) => command.arg(arg),
            None => command,
        })
    }

    fn augment_args_for_update(command: clap::Command) -> clap::Command {
        Self::augment_args(command)
    }
}

impl FromArgMatches for Overrides {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut overrides = Overrides::default();
        overrides.update_from_arg_matches(matches)?;
        Ok(overrides)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        for key in keys() {
            let Some(flag) = key.flag else { continue };
            if let Some(value) = matches.get_one::<OsString>(flag.long) {
                self.set(key, value.clone());
            }
        }
        Ok(())
    }
}

/// The flag (and environment variable) of `key`, if its row has one. Its help is the key's
/// documentation, its name and its default; the value is kept as given (a number for
/// `--pipeline-version`, UTF-8 text but for paths) and read by [`crate::config::Config::load`].
fn override_arg(key: &'static Key) -> Option<Arg> {
    let flag = key.flag?;
    let default = match key.default_value().to_string().as_str() {
        "[]" => "none".to_owned(),
        other => other.to_owned(),
    };
    let help = format!(
        "{} Overrides {}. [default: {default}]",
        key.doc.replace('`', ""),
        key.name
    );
    // Named by the flag: a key's name can clash with clap's own (`version`).
    let arg = Arg::new(flag.long)
        .long(flag.long)
        .env(flag.env)
        .hide_env_values(flag.secret)
        .value_name(flag.value_name)
        .help(help);
    let arg = match key.field {
        Field::Version(_) => {
            arg.value_parser(clap::value_parser!(u8).map(|n| OsString::from(n.to_string())))
        }
        Field::Path(_) => arg.value_parser(clap::value_parser!(OsString)),
        _ => arg.value_parser(clap::builder::StringValueParser::new().map(OsString::from)),
    };
    Some(arg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::config::key::key;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("log-pipeline").chain(args.iter().copied()))
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_parse_into_overrides() {
        let cli = parse(&[
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
        let config = Config::load(None, &cli.overrides).expect("valid overrides");
        assert_eq!(config.version, crate::config::PipelineVersion::V2);
        assert_eq!(config.server.addr, "127.0.0.1:9000");
        assert_eq!(config.storage.logs_dir, PathBuf::from("/data/logs"));
        assert_eq!(
            config.storage.analytics_dir,
            PathBuf::from("/data/analytics")
        );
        assert_eq!(
            config.aggregation.interval,
            std::time::Duration::from_secs(60)
        );
        assert_eq!(config.kafka.brokers, ["k1:9092", "k2:9092"]);
        assert_eq!(config.auth.tokens, ["a", "b"]);

        let none = parse(&[]).expect("no flags");
        assert_eq!(format!("{:?}", none.overrides), "[]");
        assert_eq!(
            Config::load(None, &none.overrides).expect("defaults"),
            Config::default()
        );
    }

    #[test]
    fn non_numeric_version_is_a_parse_error() {
        let err = parse(&["--pipeline-version", "two"]).expect_err("not a number");
        assert!(err.to_string().contains("--pipeline-version"), "{err}");
    }

    #[test]
    fn unknown_flag_is_a_parse_error() {
        assert!(parse(&["--no-such-flag"]).is_err());
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
                "LOG_PIPELINE_SITES_FILE",
                "PROFILE_CAPTURE",
                "PROFILE_NAME",
                "PROFILE_DIR",
                "PROFILE_ENABLED",
                "PROFILE_ADDR",
            ]
        );
    }

    /// What `--help` shows for each flag: its variable, the key it overrides and that key's
    /// default as the configuration has it; never a secret's value.
    #[test]
    fn help_names_each_key_and_its_default() {
        let defaults = Config::default();
        let help = Cli::command().render_help().to_string();
        for key in keys() {
            let Some(flag) = key.flag else { continue };
            let shown = match key.value(&defaults).to_string().as_str() {
                "[]" => "none".to_owned(),
                other => other.to_owned(),
            };
            for expected in [
                format!("--{} <{}>", flag.long, flag.value_name),
                format!("Overrides {}. [default: {shown}]", key.name),
                format!("[env: {}", flag.env),
            ] {
                assert!(help.contains(&expected), "{expected} missing:\n{help}");
            }
        }
        assert!(help.contains("[default: :8082]"), "{help}");
        assert!(help.contains("[default: none]"), "{help}");
        let tokens = key("auth.tokens").and_then(|key| key.flag).expect("a flag");
        assert!(tokens.secret);
    }

    #[test]
    fn flags_are_the_table_s() {
        let mut declared: Vec<String> = Cli::command()
            .get_arguments()
            .filter(|arg| arg.get_id() != CONFIG_FILE.long)
            .filter_map(|arg| {
                let long = arg.get_long()?;
                let env = arg.get_env()?.to_str()?;
                Some(format!("--{long}/{env}"))
            })
            .collect();
        declared.sort();
        let mut table: Vec<String> = keys().filter_map(|key| Some(key.flag?.source())).collect();
        table.sort();
        assert_eq!(declared, table);
    }
}
