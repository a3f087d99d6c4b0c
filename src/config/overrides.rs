//! Values for keys from outside the file: the flags and environment variables of the keys whose
//! rows have a [`Flag`](super::key::Flag). The command line collects them into an [`Overrides`]
//! (this module knows nothing of how); [`Config::load`](super::Config::load) applies them over
//! the file. A blank value is no value, so that `HTTP_ADDR=` left in an env file keeps the file's
//! address rather than replacing it with an empty one.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::PathBuf;

use super::key::{Field, Key};
use super::load::parse_duration;
use super::validate::Problem;
use super::{Config, PipelineVersion};

/// The values given for keys by flags or environment variables, in the order given.
#[derive(Clone, Default)]
pub struct Overrides {
    values: Vec<(&'static Key, OsString)>,
}

impl Overrides {
    /// `value` for `key`, which must have a flag; it replaces an earlier value for `key`.
    pub fn set(&mut self, key: &'static Key, value: impl Into<OsString>) {
        assert!(key.flag.is_some(), "{} has no flag", key.name);
        self.values.retain(|(set, _)| set.name != key.name);
        self.values.push((key, value.into()));
    }

    /// These overrides and `value` for `key`.
    pub fn with(mut self, key: &'static Key, value: impl Into<OsString>) -> Self {
        self.set(key, value);
        self
    }

    /// Sets each overridden key in `config`. Returns the values that cannot be read, each
    /// naming its flag, environment variable and key.
    pub(super) fn apply(&self, config: &mut Config) -> Vec<String> {
        let mut problems = Vec::new();
        for (key, value) in &self.values {
            if let Err(message) = set(key, config, value) {
                let source = self.source(key.name).unwrap_or_default();
                problems.push(format!("{source}: {message} (overrides {})", key.name));
            }
        }
        problems
    }

    /// The flag and environment variable that set `key` (`--addr/HTTP_ADDR`), when a value
    /// given for it was not blank.
    pub(super) fn source(&self, key: &str) -> Option<String> {
        self.values
            .iter()
            .find(|(set, value)| set.name == key && !is_blank(&set.field, value))
            .and_then(|(set, _)| set.flag.map(|flag| flag.source()))
    }

    /// Each problem as `key: message`, saying which flag or environment variable set the key
    /// when one did: a value from the environment is invisible in the file.
    pub(super) fn attribute(&self, problems: Vec<Problem>) -> Vec<String> {
        problems
            .into_iter()
            .map(|Problem { key, message }| match self.source(key) {
                Some(source) => format!("{key}: {message} (from {source})"),
                None => format!("{key}: {message}"),
            })
            .collect()
    }
}

// Keys and sources only: the values can be secrets (`LOG_PIPELINE_TOKENS`).
impl fmt::Debug for Overrides {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.values.iter().map(|(key, _)| key.name))
            .finish()
    }
}

/// Whether `value` counts as unset for `field`: blank text, an empty path, a list with no
/// entries.
fn is_blank(field: &Field, value: &OsStr) -> bool {
    match field {
        Field::Path(_) => value.is_empty(),
        Field::List(_) => split_comma_list(&value.to_string_lossy()).is_empty(),
        _ => value.to_string_lossy().trim().is_empty(),
    }
}

/// Sets `key` in `config` to `value`, read as the key's type; a blank value changes nothing.
fn set(key: &Key, config: &mut Config, value: &OsStr) -> Result<(), String> {
    if is_blank(&key.field, value) {
        return Ok(());
    }
    // The command line has taken only UTF-8 but for paths.
    let text = || {
        value
            .to_str()
            .map(str::trim)
            .ok_or_else(|| format!("{value:?} is not UTF-8"))
    };
    let number = |text: &str| {
        text.parse::<u64>()
            .map_err(|_| format!("expected a whole number, got {text:?}"))
    };
    match &key.field {
        Field::Path(lens) => *(lens.get_mut)(config) = PathBuf::from(value),
        Field::Version(lens) => {
            let text = text()?;
            let number = text
                .parse::<i64>()
                .map_err(|_| format!("must be 1 or 2, got {text:?}"))?;
            *(lens.get_mut)(config) = PipelineVersion::from_number(number)?;
        }
        Field::Text(lens) => *(lens.get_mut)(config) = text()?.to_owned(),
        Field::Duration(lens) => *(lens.get_mut)(config) = parse_duration(text()?)?,
        Field::Bool(lens) => *(lens.get_mut)(config) = parse_flag(text()?)?,
        Field::List(lens) => *(lens.get_mut)(config) = split_comma_list(text()?),
        Field::Size(lens) => {
            let number = number(text()?)?;
            *(lens.get_mut)(config) = usize::try_from(number).map_err(|err| err.to_string())?;
        }
        Field::Number32(lens) => {
            let number = number(text()?)?;
            *(lens.get_mut)(config) = u32::try_from(number).map_err(|err| err.to_string())?;
        }
        Field::Fraction(lens) => {
            let text = text()?;
            *(lens.get_mut)(config) = text
                .parse()
                .map_err(|_| format!("expected a number, got {text:?}"))?;
        }
        Field::Choice { .. } | Field::Choices { .. } => {
            return Err("cannot be set by a flag".to_owned());
        }
    }
    Ok(())
}

/// `1`/`true`/`yes`/`on` or `0`/`false`/`no`/`off`, any case: how the original's `PROFILE_*`
/// switches are written.
fn parse_flag(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!("expected 1 or 0 (or true/false), got {text:?}")),
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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::config::expect::{self, contains};
    use crate::config::key::{key, keys};
    use crate::config::{ProfilingConfig, StorageConfig};

    /// Each (key, value) as a flag or environment variable would give it.
    fn overrides(values: &[(&str, &str)]) -> Overrides {
        values
            .iter()
            .fold(Overrides::default(), |overrides, (name, value)| {
                overrides.with(key(name).expect(name), *value)
            })
    }

    #[test]
    fn overrides_beat_file_which_beats_defaults() {
        let file = expect::file(
            "server: { addr: \":9001\" }\nstorage: { logsDir: /file/logs, analyticsDir: /file/analytics }\naggregation: { interval: 10s }\nauth: { tokens: [file-token] }\n",
        );

        // File over defaults; keys the file lacks keep their defaults.
        let from_file = Config::load(Some(file.path()), &Overrides::default()).expect("file loads");
        assert_eq!(from_file.server.addr, ":9001");
        assert_eq!(from_file.storage.logs_dir, PathBuf::from("/file/logs"));
        assert_eq!(from_file.aggregation.interval, Duration::from_secs(10));
        assert_eq!(from_file.auth.tokens, vec!["file-token".to_owned()]);
        assert_eq!(from_file.version, PipelineVersion::V1);
        assert_eq!(from_file.kafka.topic, "logs");

        // Flags/env over the file; keys not overridden keep the file's value.
        let every_flag = overrides(&[
            ("version", "2"),
            ("server.addr", "127.0.0.1:0"),
            ("storage.logsDir", "/env/logs"),
            ("aggregation.interval", "2m"),
            ("kafka.brokers", "k1:9092, ,k2:9092,"),
            ("auth.tokens", " a , b "),
            ("profiling.capture", "yes"),
            ("profiling.name", "env-name"),
            ("profiling.dir", "/env/profiles"),
            ("profiling.enabled", "ON"),
            ("profiling.addr", "127.0.0.1:6099"),
        ]);
        let overridden = Config::load(Some(file.path()), &every_flag).expect("overrides apply");
        assert_eq!(
            overridden.profiling,
            ProfilingConfig {
                capture: true,
                name: "env-name".to_owned(),
                dir: PathBuf::from("/env/profiles"),
                enabled: true,
                addr: "127.0.0.1:6099".to_owned(),
            }
        );
        assert_eq!(overridden.version, PipelineVersion::V2);
        assert_eq!(overridden.server.addr, "127.0.0.1:0");
        assert_eq!(overridden.storage.logs_dir, PathBuf::from("/env/logs"));
        assert_eq!(
            overridden.storage.analytics_dir,
            PathBuf::from("/file/analytics")
        );
        assert_eq!(overridden.aggregation.interval, Duration::from_secs(120));
        assert_eq!(
            overridden.kafka.brokers,
            vec!["k1:9092".to_owned(), "k2:9092".to_owned()]
        );
        assert_eq!(overridden.auth.tokens, vec!["a".to_owned(), "b".to_owned()]);

        // Overrides without a file apply over the defaults.
        let no_file = Config::load(None, &overrides(&[("server.addr", ":7000")]))
            .expect("defaults plus override");
        assert_eq!(no_file.server.addr, ":7000");
        assert_eq!(no_file.storage, StorageConfig::default());
        assert_eq!(
            Config::load(None, &Overrides::default()).expect("defaults"),
            Config::default()
        );
    }

    #[test]
    fn blank_overrides_are_ignored() {
        let file = expect::file("server: { addr: \":9001\" }\nauth: { tokens: [t] }\n");
        let blank = overrides(&[
            ("server.addr", "  "),
            ("storage.logsDir", ""),
            ("aggregation.interval", ""),
            ("kafka.brokers", ","),
            ("auth.tokens", ""),
            ("profiling.capture", " "),
        ]);
        let c = Config::load(Some(file.path()), &blank).expect("blank overrides are no overrides");
        assert_eq!(c.server.addr, ":9001");
        assert_eq!(c.storage.logs_dir, PathBuf::from("./logs"));
        assert_eq!(c.aggregation.interval, Duration::from_secs(30));
        assert_eq!(c.auth.tokens, vec!["t".to_owned()]);
        assert!(!c.profiling.capture);
    }

    /// Every key with a flag takes a value of its type from it.
    #[test]
    fn every_flag_sets_its_key() {
        let mut checked = 0;
        for key in keys().filter(|key| key.flag.is_some()) {
            let value = match key.field {
                Field::Version(_) => "2",
                Field::Duration(_) => "1m",
                Field::Bool(_) => "on",
                Field::List(_) => "a, b",
                _ => "127.0.0.1:1",
            };
            let mut config = Config::default();
            let problems = Overrides::default().with(key, value).apply(&mut config);
            assert_eq!(problems, Vec::<String>::new(), "{}", key.name);
            assert_ne!(key.value(&config), key.default_value(), "{}", key.name);
            checked += 1;
        }
        assert_eq!(checked, 13);
    }

    #[test]
    fn debug_shows_keys_never_values() {
        let secret = overrides(&[("auth.tokens", "s3cret"), ("server.addr", ":1")]);
        assert_eq!(format!("{secret:?}"), r#"["auth.tokens", "server.addr"]"#);
    }

    #[test]
    fn bad_overrides_name_flag_env_and_key() {
        let bad = overrides(&[
            ("version", "7"),
            ("aggregation.interval", "abc"),
            ("server.addr", "nonsense"),
        ]);
        let err = Config::load(None, &bad)
            .expect_err("bad overrides")
            .to_string();
        contains(
            &err,
            "--pipeline-version/PIPELINE_VERSION: must be 1 or 2, got 7 (overrides version)",
        );
        contains(
            &err,
            "--aggregation-interval/AGGREGATION_INTERVAL: invalid duration \"abc\": ",
        );
        contains(&err, "(overrides aggregation.interval)");
        contains(&err, "server.addr: invalid listen address \"nonsense\"");
        contains(&err, "(from --addr/HTTP_ADDR)");

        // A problem on a key no override touched is reported as from the file alone.
        let err = Config::load(None, &overrides(&[("version", "2")]))
            .expect_err("no brokers")
            .to_string();
        assert_eq!(err, "kafka.brokers: required when version is 2");
    }
}
