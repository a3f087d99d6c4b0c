//! The sites file (`sites.file`): each customer site's id, name, keys and limits, read and
//! validated whole, at start-up and at each reload. A file with any problem is refused whole,
//! every problem named by its key (`sites[1].readKeys[0]: ...`), so that a running set is never
//! replaced by half of a new one.
//!
//! ```yaml
//! sites:
//!   - id: acme-shop            # the slug under which its records are stored
//!     name: Acme Shop          # shown on the dashboard; the id if absent
//!     ingestKeys: [ "..." ]    # may POST /logs, for this site only
//!     readKeys: [ "..." ]      # may read this site's analytics and dashboard
//!     limits:                  # each optional; the `sites.*` defaults otherwise
//!       recordsPerSecond: 5000
//!       burst: 50000
//!       inflightShare: 0.25
//! ```

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use super::key::Value;
use super::load::parse_yaml_as;
use super::sections::sites::{BURST, INFLIGHT_SHARE, RECORDS_PER_SECOND};
use super::{Config, ConfigError, check_token};
use crate::site::SiteId;

/// The longest display name, in characters.
pub const MAX_NAME_CHARS: usize = 100;

/// The sites of a valid sites file, in the file's order.
#[derive(Debug, Clone, PartialEq)]
pub struct Sites {
    pub list: Vec<Site>,
}

/// One customer site.
#[derive(Clone, PartialEq)]
pub struct Site {
    pub id: SiteId,
    /// What the dashboard shows.
    pub name: String,
    pub ingest_keys: Vec<String>,
    pub read_keys: Vec<String>,
    pub limits: SiteLimits,
}

// Hand-written so that logging a site cannot leak its keys.
impl std::fmt::Debug for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Site")
            .field("id", &self.id)
            .field("name", &self.name)
            .field(
                "ingest_keys",
                &format_args!("<{} redacted>", self.ingest_keys.len()),
            )
            .field(
                "read_keys",
                &format_args!("<{} redacted>", self.read_keys.len()),
            )
            .field("limits", &self.limits)
            .finish()
    }
}

/// A site's fair share.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SiteLimits {
    pub records_per_second: u32,
    pub burst: u32,
    /// Of `server.maxInflightBytes`.
    pub inflight_share: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct FileTree {
    sites: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Entry {
    id: SiteId,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    ingest_keys: Vec<String>,
    #[serde(default)]
    read_keys: Vec<String>,
    #[serde(default)]
    limits: EntryLimits,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct EntryLimits {
    records_per_second: Option<u32>,
    burst: Option<u32>,
    inflight_share: Option<f64>,
}

impl Sites {
    /// The sites `config` names: `None` without `sites.file`; the file read and validated
    /// otherwise (its keys checked against `auth.tokens` as well).
    pub fn load(config: &Config) -> Result<Option<Sites>, ConfigError> {
        if !config.sites.enabled() {
            return Ok(None);
        }
        let path = &config.sites.file;
        Sites::read(path, config)
            .map(Some)
            .map_err(|e| e.prefixed(&format!("sites file {}", path.display())))
    }

    fn read(path: &Path, config: &Config) -> Result<Sites, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|err| ConfigError::one(format!("cannot read: {err}")))?;
        Sites::parse(&text, config)
    }

    /// The sites of a sites file's text; `config` gives the default limits and the operator keys.
    pub fn parse(text: &str, config: &Config) -> Result<Sites, ConfigError> {
        let tree: FileTree = parse_yaml_as(text)?;
        let mut problems = Vec::new();
        let mut ids: HashMap<&SiteId, usize> = HashMap::new();
        // Every key names one role of one site (or the operator): where each was first seen.
        let mut keys: HashMap<&str, String> = (config.auth.tokens.iter().enumerate())
            .map(|(index, token)| (token.as_str(), format!("auth.tokens entry {index}")))
            .collect();
        for (index, entry) in tree.sites.iter().enumerate() {
            let at = format!("sites[{index}]");
            if let Some(first) = ids.insert(&entry.id, index) {
                problems.push(format!(
                    "{at}.id: {:?} is already the id of sites[{first}]",
                    entry.id.as_str()
                ));
                ids.insert(&entry.id, first);
            }
            if let Some(name) = &entry.name {
                check_name(name).unwrap_or_else(|m| problems.push(format!("{at}.name: {m}")));
            }
            for (field, list) in [
                ("ingestKeys", &entry.ingest_keys),
                ("readKeys", &entry.read_keys),
            ] {
                for (position, key) in list.iter().enumerate() {
                    let here = format!("{at}.{field}[{position}]");
                    // Named by position: a key is a secret, never echoed.
                    if let Err(message) = check_token(key) {
                        problems.push(format!("{here}: {message}"));
                    } else if let Some(first) = keys.get(key.as_str()) {
                        problems.push(format!(
                            "{here}: the same key as {first}; a key names one site and one role"
                        ));
                    } else {
                        keys.insert(key, here);
                    }
                }
            }
            entry.limits.check(&at, &mut problems);
        }
        ConfigError::check(problems)?;
        let list = (tree.sites.into_iter())
            .map(|entry| Site {
                name: entry.name.unwrap_or_else(|| entry.id.to_string()),
                limits: entry.limits.or(config),
                id: entry.id,
                ingest_keys: entry.ingest_keys,
                read_keys: entry.read_keys,
            })
            .collect();
        Ok(Sites { list })
    }

    /// The site with id `id`.
    pub fn get(&self, id: &SiteId) -> Option<&Site> {
        self.list.iter().find(|site| &site.id == id)
    }
}

fn check_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        Err("is empty; leave it out to show the id".to_owned())
    } else if name.chars().count() > MAX_NAME_CHARS {
        Err(format!("is longer than {MAX_NAME_CHARS} characters"))
    } else if name.chars().any(char::is_control) {
        Err("holds a control character".to_owned())
    } else {
        Ok(())
    }
}

impl EntryLimits {
    /// The same ranges (and messages) as the `sites.*` defaults', named by the entry's keys.
    fn check(&self, at: &str, problems: &mut Vec<String>) {
        let number = |n: Option<u32>| n.map(|n| Value::Number(n.into()));
        let values = [
            (
                "recordsPerSecond",
                &RECORDS_PER_SECOND,
                number(self.records_per_second),
            ),
            ("burst", &BURST, number(self.burst)),
            (
                "inflightShare",
                &INFLIGHT_SHARE,
                self.inflight_share.map(Value::Fraction),
            ),
        ];
        for (field, key, value) in values {
            if let Some(Err(message)) = value.map(|value| key.check_value(&value)) {
                problems.push(format!("{at}.limits.{field}: {message}"));
            }
        }
    }

    fn or(&self, config: &Config) -> SiteLimits {
        SiteLimits {
            records_per_second: (self.records_per_second)
                .unwrap_or(config.sites.records_per_second),
            burst: self.burst.unwrap_or(config.sites.burst),
            inflight_share: self.inflight_share.unwrap_or(config.sites.inflight_share),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let mut config = Config::default();
        config.auth.tokens = vec!["operator-key".to_owned()];
        config
    }

    fn problems(text: &str) -> Vec<String> {
        Sites::parse(text, &config())
            .unwrap_err()
            .problems()
            .to_vec()
    }

    #[test]
    fn a_valid_file_gives_its_sites_with_the_default_limits_filled_in() {
        let sites = Sites::parse(
            "sites:\n\
             - id: acme\n  name: Acme Shop\n  ingestKeys: [a-in]\n  readKeys: [a-read]\n\
             - id: bolt-2\n  ingestKeys: [b-in]\n  limits: {burst: 10}\n",
            &config(),
        )
        .unwrap();
        assert_eq!(sites.list.len(), 2);
        assert_eq!(sites.list[0].id.as_str(), "acme");
        assert_eq!(sites.list[0].name, "Acme Shop");
        assert_eq!(sites.list[0].read_keys, ["a-read"]);
        assert_eq!(sites.list[1].name, "bolt-2", "the id when no name is given");
        let defaults = config().sites;
        assert_eq!(
            sites.list[1].limits,
            SiteLimits {
                records_per_second: defaults.records_per_second,
                burst: 10,
                inflight_share: defaults.inflight_share,
            }
        );
    }

    #[test]
    fn a_bad_id_is_named_by_its_key() {
        let found = problems("sites:\n- id: Acme\n  ingestKeys: [k]\n");
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with("sites[0].id: "), "{found:?}");
        assert!(found[0].contains("\"Acme\" holds 'A'"), "{found:?}");
        let found = problems("sites:\n- id: ok\n- id: ../etc\n");
        assert!(found[0].starts_with("sites[1].id: "), "{found:?}");
    }

    #[test]
    fn every_problem_of_a_file_is_named_at_once() {
        let found = problems(
            "sites:\n\
             - id: acme\n  ingestKeys: [shared, ' padded']\n  limits: {inflightShare: 2}\n\
             - id: acme\n  readKeys: [shared, operator-key]\n  name: ''\n",
        );
        assert_eq!(
            found,
            [
                "sites[0].ingestKeys[1]: has leading or trailing whitespace",
                "sites[0].limits.inflightShare: must be in (0, 1] (a fraction: 0.9 means 90%), \
                 got 2",
                "sites[1].id: \"acme\" is already the id of sites[0]",
                "sites[1].name: is empty; leave it out to show the id",
                "sites[1].readKeys[0]: the same key as sites[0].ingestKeys[0]; a key names one \
                 site and one role",
                "sites[1].readKeys[1]: the same key as auth.tokens entry 0; a key names one site \
                 and one role",
            ]
        );
        assert!(
            found
                .iter()
                .all(|p| !p.contains("shared") && !p.contains("operator-key")),
            "keys are never echoed"
        );
    }

    #[test]
    fn unknown_keys_and_out_of_range_limits_are_refused() {
        let found = problems("sites:\n- id: a\n  readkeys: [x]\n");
        assert!(found[0].contains("readkeys"), "{found:?}");
        let found = problems("sites:\n- id: a\n  limits: {recordsPerSecond: 0}\n");
        assert_eq!(
            found,
            [
                "sites[0].limits.recordsPerSecond: must be from 1 to 100000000 (a rate of records \
              held in a token bucket), got 0"
            ]
        );
    }

    #[test]
    fn without_a_file_there_are_no_sites_and_a_missing_file_is_named() {
        assert_eq!(Sites::load(&Config::default()).unwrap(), None);
        let mut config = Config::default();
        config.sites.file = "/nonexistent/sites.yaml".into();
        let found = Sites::load(&config).unwrap_err().problems().to_vec();
        assert!(
            found[0].starts_with("sites file /nonexistent/sites.yaml: cannot read: "),
            "{found:?}"
        );
    }
}
