//! `config/examples/`: each file loads, and says what it means. A key it sets either differs
//! from its default or has a comment saying why it is there (on its line or the line above), and
//! a key kept from the original service that has no effect here says `ignored`. A key shown in a
//! comment (`# maxBodyBytes: 16777216`) shows its default.

use std::path::{Path, PathBuf};

use super::key::{Key, Value, key, keys, yaml_document};
use super::load::parse_yaml;
use super::{Config, PipelineVersion};

/// One `key: value` line of an example, set or shown in a comment.
struct Line {
    number: usize,
    key: &'static Key,
    value: String,
    /// Set (not in a comment).
    set: bool,
    /// The comment on the line, or on the comment lines right above it.
    comment: String,
}

/// The key `leaf` names under the sections `path`, or else the only key whose last part is
/// `leaf` (for a commented-out section such as `# auth:` / `#   tokens: []`).
fn resolve(path: &[String], leaf: &str) -> Option<&'static Key> {
    let mut dotted = path.to_vec();
    dotted.push(leaf.to_owned());
    key(&dotted.join(".")).or_else(|| {
        let mut found = keys().filter(|key| key.name.rsplit('.').next() == Some(leaf));
        let only = found.next();
        only.filter(|_| found.next().is_none())
    })
}

fn section_path(sections: &[(usize, String)]) -> Vec<String> {
    sections.iter().map(|(_, name)| name.clone()).collect()
}

/// Every `key: value` line of `text` (block mappings, as the examples are written).
fn lines(text: &str) -> Vec<Line> {
    let mut found = Vec::new();
    // The set sections enclosing the current line, with their indentation.
    let mut sections: Vec<(usize, String)> = Vec::new();
    let mut comment_above = String::new();
    for (index, raw) in text.lines().enumerate() {
        let indent = raw.len() - raw.trim_start().len();
        let trimmed = raw.trim_start();
        let (body, set) = match trimmed.strip_prefix('#') {
            Some(commented) => (commented.trim_start(), false),
            None => (trimmed, true),
        };
        let (code, comment) = match body.split_once(" #") {
            Some((code, comment)) => (code.trim_end(), comment.trim()),
            None => (body.trim_end(), ""),
        };
        let pair = code.split_once(':').filter(|(name, _)| {
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric())
        });
        // A commented line is a key shown with its value only when it names a key.
        let pair = pair.filter(|(name, value)| {
            set || resolve(&section_path(&sections), name).is_some() && !value.trim().is_empty()
        });
        let Some((name, value)) = pair else {
            comment_above = if set || trimmed.is_empty() {
                String::new()
            } else {
                format!("{comment_above} {body}")
            };
            continue;
        };
        if set {
            sections.retain(|(depth, _)| *depth < indent);
        }
        let path = section_path(&sections);
        let value = value.trim();
        if value.is_empty() {
            if set {
                sections.push((indent, name.to_owned()));
            }
        } else if let Some(key) = resolve(&path, name) {
            found.push(Line {
                number: index + 1,
                key,
                value: value.to_owned(),
                set,
                comment: format!("{comment_above} {comment}"),
            });
        }
        comment_above.clear();
    }
    found
}

/// What is wrong with `line` of `file`, if anything.
fn problem(file: &str, line: &Line) -> Option<String> {
    let at = format!("{file}:{}: {}", line.number, line.key.name);
    let parsed = parse_yaml(&yaml_document(&[(line.key.name, &line.value)]));
    let value: Value = match parsed {
        Ok(config) => line.key.value(&config),
        Err(err) => return Some(format!("{at}: {err}")),
    };
    let is_default = value == line.key.default_value();
    let commented = !line.comment.trim().is_empty();
    if !line.set {
        return (!is_default).then(|| {
            format!(
                "{at}: shown as {}, but its default is {}",
                line.value,
                line.key.default_value()
            )
        });
    }
    if line.key.ignored && !line.comment.contains("ignored") {
        return Some(format!(
            "{at}: has no effect here, and no comment says it is ignored"
        ));
    }
    (is_default && !commented).then(|| format!("{at}: set to its default, and no comment says why"))
}

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("config/examples exists")
        .map(|entry| entry.expect("directory entry").path())
        .collect();
    paths.sort();
    paths
}

#[test]
fn example_files_load() {
    let names: Vec<String> = examples()
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path).expect("readable example");
            let config = Config::from_yaml_str(&text)
                .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
            let name = path
                .file_name()
                .and_then(|name| name.to_str())
                .unwrap_or_default();
            let expected = if name.contains(".v2.") {
                PipelineVersion::V2
            } else {
                PipelineVersion::V1
            };
            assert_eq!(config.version, expected, "{name}");
            name.to_owned()
        })
        .collect();
    assert_eq!(
        names,
        [
            "config.v1.docker.yaml",
            "config.v1.local.yaml",
            "config.v2.docker.yaml",
            "config.v2.local.yaml",
            "config.v2.s3.docker.yaml",
        ]
    );
}

#[test]
fn every_key_an_example_sets_matters_or_says_why() {
    let mut problems = Vec::new();
    let mut seen = 0;
    for path in examples() {
        let text = std::fs::read_to_string(&path).expect("readable example");
        let name = path
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or_default();
        let lines = lines(&text);
        // Every key the file sets is found, or the check would pass by missing them.
        let set = parse_yaml(&text).expect("loads");
        for key in keys() {
            let found = lines
                .iter()
                .any(|line| line.set && line.key.name == key.name);
            if key.value(&set) != key.default_value() {
                assert!(found, "{name}: sets {} on no line the check read", key.name);
            }
        }
        seen += lines.len();
        problems.extend(lines.iter().filter_map(|line| problem(name, line)));
    }
    assert!(seen > 50, "only {seen} key lines read");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
