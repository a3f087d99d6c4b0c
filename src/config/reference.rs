//! `docs/configuration.md`, the configuration reference, made from the key table: a test fails
//! when the page and the code differ, and `UPDATE_DOCS=1 cargo test --lib config::reference`
//! rewrites it. Another test reads the page as an operator would and checks every leaf key of
//! the serialized defaults against it, so the page cannot leave a key out or show a wrong
//! default even if the table did.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value as Json;

use super::Config;
use super::key::{CONFIG_FILE, Key, keys};
use super::sections::SECTIONS;

/// What every key has in common; `{file}` is the file's flag and variable.
const INTRO: &str = "\
The service reads an optional YAML file ({file}) with the original Go service's camelCase keys, so its files load unchanged; every key is optional, and \
keys it did not have are additions with defaults. Durations are Go-style strings (`500ms`, \
`30s`, `1m30s`, `2h`). Precedence: **flag > environment variable > file > default**.

An unknown key, a bad value, a number or duration out of its [range](#ranges) or an impossible \
combination stops the start with exit status 2 and a message naming each problem's key (and the \
flag or environment variable that set it), e.g. `config file x.yaml: kafka.brokers: required \
when version is 2`. So does a directory the service would write that it cannot: \
`storage.logsDir` (with `storage.backend: local`; with `s3` it is not used), \
`storage.analyticsDir` and, with `profiling.capture`, `profiling.dir` must each be a directory \
the process can write, or be missing under one (they are then created), e.g. \
`storage.analyticsDir: /srv/x is not a directory (from --analytics-dir/ANALYTICS_DIR)`; nothing is \
created when the start is refused. (Checked by `tests/api/startup.rs` \
`a_directory_that_cannot_be_written_is_refused_naming_its_key`, and for read-only directories, \
which need root to set up, by `tests/faults/read_only.rs` \
`a_read_only_directory_is_refused_naming_its_key`.)

Examples: `config/examples/` (each is loaded by a test, and each key it sets either differs \
from the default or says why it is there).";

const RANGES_INTRO: &str = "\
Every number and duration has a range: what the value can mean here, not what its type can \
hold. Byte sizes are at most 2 GiB, counts of records and keys at most 100,000,000, timeouts and \
periods from 1 ms to 7 days, and each Kafka setting within what librdkafka accepts for the \
property it sets (`kafka.produceTimeout` must also be longer than `kafka.batchTimeout`). Within \
them every value works as documented: nothing the service computes from it can overflow. \
Checked by `tests/properties/config.rs` (every key at its type's extremes, and any value: \
refused naming the key, or accepted and usable, librdkafka included) and `tests/api/startup.rs` \
`every_key_at_its_largest_value_is_served` and `v2_every_key_at_its_largest_value_is_served` \
(the binary, v1 and v2, with every key at its largest at once answers `POST /logs`, plain, gzip \
and keyed, 202 and `/ready` 200, and stores the records; in v2 but for `kafka.batchTimeout`, at \
whose largest each request waits 15 minutes, and `kafka.partitions`, the partitions of a topic \
it creates).";

/// The page's path in the repository.
fn page_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md")
}

/// A table cell: Markdown that cannot end the cell early.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

fn meaning(key: &Key) -> String {
    if key.ignored {
        format!(
            "Ignored: accepted so that the original service's files load. {}",
            key.doc
        )
    } else {
        key.doc.to_owned()
    }
}

/// The whole page, as the code has it.
pub fn render() -> String {
    let mut page = String::from(
        "# Configuration reference\n\n\
         <!-- Made from the key table (src/config/sections/*.rs) by \
         `UPDATE_DOCS=1 cargo test --lib config::reference`; a test fails when they differ. \
         Change the rows, not this page. -->\n\n",
    );
    let file = format!("`--{}` or `{}`", CONFIG_FILE.long, CONFIG_FILE.env);
    page.push_str(&INTRO.replace("{file}", &file));
    page.push_str("\n\n## Flags and environment variables\n\n");
    page.push_str("| flag | environment variable | key | default |\n|---|---|---|---|\n");
    page.push_str(&format!(
        "| `--{} {}` | `{}` | – | none |\n",
        CONFIG_FILE.long, CONFIG_FILE.value_name, CONFIG_FILE.env
    ));
    for key in keys() {
        if let Some(flag) = key.flag {
            page.push_str(&format!(
                "| `--{} {}` | `{}` | `{}` | `{}` |\n",
                flag.long,
                cell(flag.value_name),
                flag.env,
                key.name,
                cell(&key.default_value().to_string())
            ));
        }
    }
    page.push_str("\n## Keys\n");
    for section in SECTIONS {
        match section.name {
            "" => page.push_str("\n### Top level\n\n"),
            name => page.push_str(&format!("\n### `{name}`\n\n")),
        }
        page.push_str(section.doc);
        page.push_str("\n\n| key | type | default | range | meaning |\n|---|---|---|---|---|\n");
        for key in section.keys {
            let range = key
                .range
                .map_or("–".to_owned(), |bounds| bounds.range.to_string());
            page.push_str(&format!(
                "| `{}` | {} | `{}` | {} | {} |\n",
                key.name,
                cell(&key.type_name()),
                cell(&key.default_value().to_string()),
                range,
                cell(&meaning(key))
            ));
        }
    }
    page.push_str("\n## Ranges\n\n");
    page.push_str(RANGES_INTRO);
    page.push_str("\n\n| key | range | why |\n|---|---|---|\n");
    for key in keys() {
        if let Some(bounds) = key.range {
            page.push_str(&format!(
                "| `{}` | {} | {} |\n",
                key.name,
                bounds.range,
                cell(bounds.why)
            ));
        }
    }
    page
}

/// The defaults an operator reads on the page: each key's row of the sections' tables, and its
/// default column without the backticks.
fn documented_defaults(page: &str) -> BTreeMap<String, String> {
    let keys_part = page
        .split("\n## Keys\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("the page has a \"## Keys\" part");
    keys_part
        .lines()
        .filter(|line| line.starts_with("| `"))
        .map(|line| {
            // Cells split on pipes that are not escaped.
            let cells: Vec<&str> = line
                .trim_matches('|')
                .split(" | ")
                .map(|cell| cell.trim().trim_matches('`'))
                .collect();
            (cells[0].to_owned(), cells[2].replace("\\|", "|"))
        })
        .collect()
}

/// Every leaf of the serialized tree, with its value written as YAML would write it: a duration
/// (serialized as `{secs, nanos}`) as `30s`, an empty string as `""`, a list as `[a, b]`.
fn serialized_leaves(tree: &Json, prefix: &str, found: &mut BTreeMap<String, String>) {
    let Json::Object(fields) = tree else { return };
    for (name, value) in fields {
        let key = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        let written = match value {
            Json::Object(inner) if inner.contains_key("secs") && inner.contains_key("nanos") => {
                let secs = inner["secs"].as_u64().expect("whole seconds");
                let nanos = inner["nanos"].as_u64().expect("nanoseconds") as u32;
                let duration = std::time::Duration::new(secs, nanos);
                humantime::format_duration(duration).to_string()
            }
            Json::Object(_) => {
                serialized_leaves(value, &key, found);
                continue;
            }
            Json::String(text) if text.is_empty() => "\"\"".to_owned(),
            Json::String(text) => text.clone(),
            Json::Array(items) => {
                let items: Vec<String> = items
                    .iter()
                    .map(|item| item.as_str().map_or(item.to_string(), str::to_owned))
                    .collect();
                format!("[{}]", items.join(", "))
            }
            other => other.to_string(),
        };
        found.insert(key, written);
    }
}

#[test]
fn the_page_is_the_code_s() {
    let expected = render();
    let path = page_path();
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, &expected).expect("write docs/configuration.md");
        return;
    }
    let found = std::fs::read_to_string(&path).unwrap_or_default();
    if found != expected {
        let differs = found
            .lines()
            .zip(expected.lines())
            .position(|(found, expected)| found != expected)
            .unwrap_or(found.lines().count().min(expected.lines().count()));
        panic!(
            "docs/configuration.md differs from the key table from its line {}: run \
             `UPDATE_DOCS=1 cargo test --lib config::reference` and commit the page.\n\
             page: {:?}\ncode: {:?}",
            differs + 1,
            found.lines().nth(differs),
            expected.lines().nth(differs)
        );
    }
}

#[test]
fn defaults_are_the_documented_ones() {
    let page = std::fs::read_to_string(page_path()).expect("docs/configuration.md exists");
    let documented = documented_defaults(&page);
    let tree = serde_json::to_value(Config::default()).expect("the config serializes");
    let mut defaults = BTreeMap::new();
    serialized_leaves(&tree, "", &mut defaults);
    assert!(defaults.len() > 60, "{defaults:?}");
    assert_eq!(
        documented.keys().collect::<Vec<_>>(),
        defaults.keys().collect::<Vec<_>>(),
        "the page documents exactly the leaf keys of the configuration"
    );
    for (key, default) in &defaults {
        assert_eq!(
            &documented[key], default,
            "{key}: page and Config::default()"
        );
    }
    Config::default().validate().expect("defaults are valid");
}
