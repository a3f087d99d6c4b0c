//! The one table of configuration keys. Every leaf key of the YAML tree has one [`Key`] row: its
//! dotted name, what it means, how it is read from (and set in) a [`Config`], its range, and the
//! flag and environment variable that override it. Validation, the overrides, `--help` and
//! `docs/configuration.md` are all made from these rows; each section's rows sit beside its struct
//! in [`super::sections`], and [`keys`] walks them all.
//!
//! Tests keep the table whole: a leaf of the serialized tree without a row, a row that reads
//! another field than its name says, or a number or duration without a range fails them.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::Config;
use super::ranges::{Bounds, Range};
use super::{PipelineVersion, sections};

/// One leaf key of the configuration.
pub struct Key {
    /// The dotted YAML key, e.g. `server.maxBodyBytes`: how errors, overrides and the reference
    /// page name it.
    pub name: &'static str,
    /// What the key does, for operators (Markdown): the reference page shows it, `--help` too.
    pub doc: &'static str,
    /// The field it sets, and so its type.
    pub field: Field,
    /// For numbers and durations: the values it may hold, and why.
    pub range: Option<Bounds>,
    /// The flag and environment variable that override it, if any.
    pub flag: Option<Flag>,
    /// Accepted so the original service's files load, with no effect here.
    pub ignored: bool,
}

/// A command-line flag and the environment variable of the same meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flag {
    /// The long flag without its dashes, e.g. `addr` for `--addr`.
    pub long: &'static str,
    /// The environment variable, e.g. `HTTP_ADDR`.
    pub env: &'static str,
    /// The placeholder `--help` shows for the value, e.g. `ADDR`.
    pub value_name: &'static str,
    /// Its value is a secret: `--help` must not print the variable's value.
    pub secret: bool,
}

/// The flag and environment variable naming the YAML file, which is no key of its own.
pub const CONFIG_FILE: Flag = Flag::new("config", "LOG_PIPELINE_CONFIG", "PATH");

impl Flag {
    /// `--long` and `env`, with `value_name` in `--help`.
    pub const fn new(long: &'static str, env: &'static str, value_name: &'static str) -> Flag {
        Flag {
            long,
            env,
            value_name,
            secret: false,
        }
    }

    /// The same, its value kept out of `--help`.
    pub const fn secret(self) -> Flag {
        Flag {
            secret: true,
            ..self
        }
    }

    /// How errors name it, whichever way it was set: `--addr/HTTP_ADDR`.
    pub fn source(&self) -> String {
        format!("--{}/{}", self.long, self.env)
    }
}

/// Reads and writes one field of a [`Config`]; made by `lens!`.
pub struct Lens<T: 'static> {
    pub get: fn(&Config) -> &T,
    pub get_mut: fn(&mut Config) -> &mut T,
}

/// A [`Lens`] onto `config.<path>`, e.g. `lens!(server.addr)`.
macro_rules! lens {
    ($($field:ident).+) => {
        $crate::config::key::Lens {
            get: |config| &config.$($field).+,
            get_mut: |config| &mut config.$($field).+,
        }
    };
}
pub(crate) use lens;

/// The field a key sets, by its type.
pub enum Field {
    /// `version`: the number `1` or `2`.
    Version(Lens<PipelineVersion>),
    /// A count or a size in bytes.
    Size(Lens<usize>),
    /// A count held in 32 bits.
    Number32(Lens<u32>),
    /// A fraction, e.g. `0.9`.
    Fraction(Lens<f64>),
    /// A Go-style duration: `500ms`, `30s`, `1m30s`.
    Duration(Lens<Duration>),
    Bool(Lens<bool>),
    Text(Lens<String>),
    Path(Lens<PathBuf>),
    /// A list of strings; one comma-separated value when set by a flag.
    List(Lens<Vec<String>>),
    /// One of `values` (an enum's YAML spellings).
    Choice {
        get: fn(&Config) -> &'static str,
        values: &'static [&'static str],
    },
    /// A list of `values`.
    Choices {
        get: fn(&Config) -> Vec<&'static str>,
        values: &'static [&'static str],
    },
}

/// A key's value as the YAML writes it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Number(u64),
    Duration(Duration),
    Fraction(f64),
    Bool(bool),
    Text(String),
    List(Vec<String>),
}

impl Key {
    /// A key without a range, flag or compatibility note.
    pub const fn new(name: &'static str, field: Field, doc: &'static str) -> Key {
        Key {
            name,
            doc,
            field,
            range: None,
            flag: None,
            ignored: false,
        }
    }

    /// The same key, holding values within `bounds`.
    pub const fn range(self, bounds: Bounds) -> Key {
        Key {
            range: Some(bounds),
            ..self
        }
    }

    /// The same key, overridden by `flag`.
    pub const fn flag(self, flag: Flag) -> Key {
        Key {
            flag: Some(flag),
            ..self
        }
    }

    /// The same key, accepted for compatibility and ignored.
    pub const fn ignored(self) -> Key {
        Key {
            ignored: true,
            ..self
        }
    }

    /// The key's value in `config`.
    pub fn value(&self, config: &Config) -> Value {
        match &self.field {
            Field::Version(lens) => Value::Number((lens.get)(config).as_u8().into()),
            // Lossless on the 64-bit targets this service is built for.
            Field::Size(lens) => Value::Number(*(lens.get)(config) as u64),
            Field::Number32(lens) => Value::Number((*(lens.get)(config)).into()),
            Field::Fraction(lens) => Value::Fraction(*(lens.get)(config)),
            Field::Duration(lens) => Value::Duration(*(lens.get)(config)),
            Field::Bool(lens) => Value::Bool(*(lens.get)(config)),
            Field::Text(lens) => Value::Text((lens.get)(config).clone()),
            Field::Path(lens) => Value::Text((lens.get)(config).display().to_string()),
            Field::List(lens) => Value::List((lens.get)(config).clone()),
            Field::Choice { get, .. } => Value::Text(get(config).to_owned()),
            Field::Choices { get, .. } => {
                Value::List(get(config).into_iter().map(str::to_owned).collect())
            }
        }
    }

    /// The key's default value.
    pub fn default_value(&self) -> Value {
        self.value(&Config::default())
    }

    /// `Ok` when the key has no range or its value in `config` is in it; else the problem.
    pub fn check_range(&self, config: &Config) -> Result<(), String> {
        self.check_value(&self.value(config))
    }

    /// Whether `value` is within the key's range (the same check and message as
    /// [`Key::check_range`], for a value read from elsewhere, e.g. a site's limits).
    pub fn check_value(&self, value: &Value) -> Result<(), String> {
        let Some(bounds) = &self.range else {
            return Ok(());
        };
        let within = match (bounds.range, value) {
            (Range::Number { min, max }, Value::Number(number)) => (min..=max).contains(number),
            (Range::Duration { min, max }, Value::Duration(duration)) => {
                (min..=max).contains(duration)
            }
            // Written so that NaN is out of range too.
            (Range::Fraction, Value::Fraction(fraction)) => *fraction > 0.0 && *fraction <= 1.0,
            (range, value) => unreachable!("{}: a {value:?} for a {range:?}", self.name),
        };
        if within {
            Ok(())
        } else {
            Err(format!(
                "must be {} ({}), got {value}",
                bounds.range, bounds.why
            ))
        }
    }

    /// The largest value the key accepts, as written in YAML; `None` without a range.
    pub fn largest(&self) -> Option<String> {
        self.range.map(|bounds| bounds.range.largest())
    }

    /// The type, as the reference page names it.
    pub fn type_name(&self) -> String {
        let spelled = |values: &[&str]| {
            let quoted: Vec<String> = values.iter().map(|v| format!("`{v}`")).collect();
            quoted.join(", ")
        };
        match &self.field {
            Field::Version(_) => "`1` or `2`".to_owned(),
            Field::Size(_) | Field::Number32(_) => "integer".to_owned(),
            Field::Fraction(_) => "number".to_owned(),
            Field::Duration(_) => "duration".to_owned(),
            Field::Bool(_) => "boolean".to_owned(),
            Field::Text(_) => "string".to_owned(),
            Field::Path(_) => "path".to_owned(),
            Field::List(_) => "list of strings".to_owned(),
            Field::Choice { values, .. } => format!("one of {}", spelled(values)),
            Field::Choices { values, .. } => format!("list of {}", spelled(values)),
        }
    }
}

/// The YAML spelling: `30s`, `16777216`, `0.9`, `""`, `[ingest, analytics]`.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Number(number) => write!(f, "{number}"),
            Value::Duration(duration) => write!(f, "{}", humantime::format_duration(*duration)),
            Value::Fraction(fraction) => write!(f, "{fraction}"),
            Value::Bool(flag) => write!(f, "{flag}"),
            Value::Text(text) if text.is_empty() => write!(f, "\"\""),
            Value::Text(text) => write!(f, "{text}"),
            Value::List(items) => write!(f, "[{}]", items.join(", ")),
        }
    }
}

/// Every key, in the order of the configuration's sections.
pub fn keys() -> impl Iterator<Item = &'static Key> + Clone {
    sections::SECTIONS
        .iter()
        .flat_map(|section| section.keys.iter())
}

/// The key named `name`, if there is one.
pub fn key(name: &str) -> Option<&'static Key> {
    keys().find(|key| key.name == name)
}

/// A YAML document that sets each dotted key to its value, the value written as in YAML
/// (`7days`, `2147483648`, `.nan`, `[a, b]`): `[("server.maxBodyBytes", "1024")]` is
/// `{ server: { maxBodyBytes: 1024 } }`; a later setting of a key replaces an earlier one. How
/// the tests set keys by the names of [`keys`].
pub fn yaml_document(settings: &[(&str, impl AsRef<str>)]) -> String {
    #[derive(Default)]
    struct Section<'a>(BTreeMap<&'a str, Node<'a>>);
    enum Node<'a> {
        Value(&'a str),
        Section(Section<'a>),
    }
    fn write(section: &Section<'_>, out: &mut String) {
        out.push('{');
        for (index, (name, node)) in section.0.iter().enumerate() {
            out.push_str(if index == 0 { " " } else { ", " });
            out.push_str(name);
            out.push_str(": ");
            match node {
                Node::Value(value) => out.push_str(value),
                Node::Section(inner) => write(inner, out),
            }
        }
        out.push_str(" }");
    }
    let mut root = Section::default();
    for (key, value) in settings {
        let (path, last) = key
            .rsplit_once('.')
            .map_or((None, *key), |(p, l)| (Some(p), l));
        let mut section = &mut root;
        for name in path.into_iter().flat_map(|path| path.split('.')) {
            let node = section
                .0
                .entry(name)
                .or_insert_with(|| Node::Section(Section::default()));
            section = match node {
                Node::Section(inner) => inner,
                Node::Value(_) => panic!("{key}: {name} is set to a value"),
            };
        }
        section.0.insert(last, Node::Value(value.as_ref()));
    }
    let mut out = String::new();
    write(&root, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value as Json;

    use super::*;
    use crate::config::load::parse_yaml;
    use crate::config::sections::SECTIONS;

    #[test]
    fn yaml_documents_nest_dotted_keys() {
        let settings = [
            ("version", "2"),
            ("kafka.brokers", "[k:1]"),
            ("kafka.topic", "t"),
        ];
        assert_eq!(
            yaml_document(&settings),
            "{ kafka: { brokers: [k:1], topic: t }, version: 2 }"
        );
        assert_eq!(yaml_document(&[] as &[(&str, &str)]), "{ }");
    }

    /// The dotted key of every leaf of `tree` (a duration serializes as `{"secs", "nanos"}`).
    fn leaves(tree: &Json, prefix: &str, found: &mut Vec<String>) {
        let Json::Object(fields) = tree else { return };
        for (name, value) in fields {
            let key = match prefix {
                "" => name.clone(),
                prefix => format!("{prefix}.{name}"),
            };
            match value {
                Json::Object(inner) if !inner.contains_key("secs") => leaves(value, &key, found),
                _ => found.push(key),
            }
        }
    }

    #[test]
    fn every_leaf_key_has_one_row() {
        let tree = serde_json::to_value(Config::default()).expect("the config serializes");
        let mut fields = Vec::new();
        leaves(&tree, "", &mut fields);
        let fields: BTreeSet<String> = fields.into_iter().collect();
        let rows: Vec<&str> = keys().map(|key| key.name).collect();
        let unique: BTreeSet<String> = rows.iter().map(|name| (*name).to_owned()).collect();
        assert_eq!(unique.len(), rows.len(), "a key has two rows: {rows:?}");
        assert_eq!(
            fields, unique,
            "every leaf of the configuration needs one row"
        );
        for section in SECTIONS {
            for key in section.keys {
                let (parent, _) = key.name.rsplit_once('.').unwrap_or(("", key.name));
                assert!(
                    parent == section.name || parent.starts_with(&format!("{}.", section.name)),
                    "{} listed under {:?}",
                    key.name,
                    section.name
                );
            }
        }
    }

    #[test]
    fn numbers_and_durations_have_ranges_and_nothing_else_does() {
        for key in keys() {
            let numeric = matches!(
                key.field,
                Field::Version(_)
                    | Field::Size(_)
                    | Field::Number32(_)
                    | Field::Fraction(_)
                    | Field::Duration(_)
            );
            assert_eq!(key.range.is_some(), numeric, "{}", key.name);
            if let Some(bounds) = key.range {
                assert!(
                    !bounds.why.contains("; "),
                    "{}: \"; \" separates problems",
                    key.name
                );
            }
        }
    }

    /// Values of `key`'s type, as YAML writes them and as [`Key::value`] reads them.
    fn samples(key: &Key) -> Vec<(String, Value)> {
        let texts = |texts: &[&str]| -> Vec<(String, Value)> {
            let texts = texts
                .iter()
                .map(|text| ((*text).to_owned(), Value::Text((*text).to_owned())));
            texts.collect()
        };
        match (&key.field, key.range.map(|bounds| bounds.range)) {
            (_, Some(Range::Number { min, max })) => [min, max]
                .map(|n| (n.to_string(), Value::Number(n)))
                .to_vec(),
            (_, Some(Range::Duration { min, max })) => [min, max]
                .map(|d| {
                    (
                        humantime::format_duration(d).to_string(),
                        Value::Duration(d),
                    )
                })
                .to_vec(),
            (_, Some(Range::Fraction)) => vec![("0.25".to_owned(), Value::Fraction(0.25))],
            (Field::Bool(_), _) => [true, false]
                .map(|flag| (flag.to_string(), Value::Bool(flag)))
                .to_vec(),
            (Field::Text(_) | Field::Path(_), _) => texts(&["127.0.0.1:1", "/some/where"]),
            (Field::Choice { values, .. }, _) => texts(values),
            (Field::List(_), _) => vec![(
                "[a, b]".to_owned(),
                Value::List(vec!["a".into(), "b".into()]),
            )],
            (Field::Choices { values, .. }, _) => values
                .iter()
                .map(|value| (format!("[{value}]"), Value::List(vec![(*value).to_owned()])))
                .collect(),
            (_, None) => panic!("{}: a number without a range", key.name),
        }
    }

    #[test]
    fn each_row_reads_the_field_its_key_names() {
        for key in keys() {
            let default = key.default_value();
            let mut read = 0;
            for (written, expected) in samples(key).into_iter().filter(|(_, v)| *v != default) {
                let yaml = yaml_document(&[(key.name, &written)]);
                let config = parse_yaml(&yaml).unwrap_or_else(|err| panic!("{yaml}: {err}"));
                assert_eq!(key.value(&config), expected, "{}: {yaml}", key.name);
                read += 1;
            }
            assert!(read > 0, "{}: no value other than the default", key.name);
        }
    }

    /// A dotted name in a row's documentation (`kafka.batchTimeout`) is a key or a section, so
    /// that renaming a key leaves no stale mention behind.
    #[test]
    fn documentation_names_only_keys_that_exist() {
        let sections: BTreeSet<&str> = SECTIONS.iter().map(|section| section.name).collect();
        let known = |name: &str| key(name).is_some() || name == "storage.s3";
        for key in keys() {
            let why = key.range.map_or("", |bounds| bounds.why);
            let words = key
                .doc
                .split('`')
                .skip(1)
                .step_by(2)
                .chain(why.split([' ', ',']));
            for word in words {
                let word = word.trim_end_matches(['.', ')', ':']);
                let section = word.split('.').next().unwrap_or_default();
                if word.contains('.') && sections.contains(section) && !section.is_empty() {
                    assert!(known(word), "{}: names {word}, which is no key", key.name);
                }
            }
        }
    }
}
