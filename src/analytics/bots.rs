//! Bot or human: which user agents count as bots, from the pattern list of the `isbot` npm
//! package, vendored at a pinned version in `assets/bots/isbot.json` (license beside it) and
//! embedded in the binary. `scripts/update-bot-list.sh VERSION` replaces that one file.
//!
//! A user agent is a bot when any pattern of the list matches anywhere in it, case-insensitively
//! (isbot's own rule: its patterns joined with `|` into one JavaScript `RegExp` with the `i` flag);
//! every other user agent is human. The patterns are JavaScript regular expressions; two engines
//! run them here:
//!
//! - every pattern without look-around goes into one alternation for the `regex` crate
//!   (linear-time, ASCII semantics for `\w`, `\d`, `\b` as in JavaScript without the `u` flag);
//! - the few with look-around (`(?<!cam)scan`, `java(?!;)`, ...) run on `fancy-regex`, each only
//!   after a look-around-free superset of it (the same pattern with its look-arounds removed)
//!   matched, so the slow engine sees almost no user agent.
//!
//! One JavaScript quirk is translated: in a character class, a `-` next to a class escape
//! (`[\w\d-.]`) is a literal `-` in JavaScript and an error in Rust; it is escaped.

use std::sync::LazyLock;

use serde::Deserialize;

/// The vendored list, as `scripts/update-bot-list.sh` writes it.
const EMBEDDED_LIST: &str = include_str!("../../assets/bots/isbot.json");

/// The list every summary of this binary is classified with.
static EMBEDDED: LazyLock<BotClassifier> = LazyLock::new(|| {
    BotClassifier::from_json(EMBEDDED_LIST).expect("the embedded bot list compiles (tested)")
});

/// A compiled bot pattern list.
pub struct BotClassifier {
    id: String,
    name: String,
    version: String,
    patterns: usize,
    plain: regex::bytes::Regex,
    look_around: Vec<LookAround>,
}

/// A pattern with look-around, and the look-around-free superset that must match first.
struct LookAround {
    prefilter: regex::bytes::Regex,
    exact: fancy_regex::Regex,
}

#[derive(Deserialize)]
struct ListFile {
    name: String,
    version: String,
    patterns: Vec<String>,
}

/// Why a pattern list cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error("the bot list is not a JSON object with name, version and patterns: {0}")]
    Format(#[from] serde_json::Error),
    #[error("the bot list has no patterns")]
    Empty,
    #[error("bot pattern {pattern:?} does not compile: {reason}")]
    Pattern { pattern: String, reason: String },
}

impl BotClassifier {
    /// The list embedded in this binary (`assets/bots/isbot.json`), compiled once.
    pub fn embedded() -> &'static BotClassifier {
        &EMBEDDED
    }

    /// Compiles a list file: `{"name", "version", "patterns": [...]}`.
    pub fn from_json(text: &str) -> Result<BotClassifier, ListError> {
        let file: ListFile = serde_json::from_str(text)?;
        if file.patterns.is_empty() {
            return Err(ListError::Empty);
        }
        let mut plain = Vec::new();
        let mut look_around = Vec::new();
        for pattern in &file.patterns {
            let translated = escape_class_dashes(pattern);
            if bytes_regex(&translated).is_ok() {
                plain.push(translated);
                continue;
            }
            let invalid = |reason: String| ListError::Pattern {
                pattern: pattern.clone(),
                reason,
            };
            let prefilter =
                bytes_regex(&strip_look_around(&translated)).map_err(|e| invalid(e.to_string()))?;
            let exact = fancy_regex::RegexBuilder::new(&translated)
                .case_insensitive(true)
                .build()
                .map_err(|e| invalid(e.to_string()))?;
            look_around.push(LookAround { prefilter, exact });
        }
        let alternation = plain
            .iter()
            .map(|p| format!("(?:{p})"))
            .collect::<Vec<_>>()
            .join("|");
        let plain = bytes_regex(&alternation).map_err(|e| ListError::Pattern {
            pattern: "(the alternation of every pattern without look-around)".into(),
            reason: e.to_string(),
        })?;
        let crc = crc32fast::hash(text.as_bytes());
        Ok(BotClassifier {
            id: format!("{}@{}#{crc:08x}", file.name, file.version),
            name: file.name,
            version: file.version,
            patterns: file.patterns.len(),
            plain,
            look_around,
        })
    }

    /// Whether `user_agent` is a bot.
    pub fn is_bot(&self, user_agent: &str) -> bool {
        let bytes = user_agent.as_bytes();
        !user_agent.is_empty()
            && (self.plain.is_match(bytes)
                || self.look_around.iter().any(|p| {
                    // A pattern too complex to finish is not a match (it cannot happen with
                    // fancy-regex's default backtrack limit on such short patterns).
                    p.prefilter.is_match(bytes) && p.exact.is_match(user_agent).unwrap_or(false)
                }))
    }

    /// `name@version#crc32` of the list file: summaries record it, and one classified with
    /// another list is classified again.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The list's package name (`isbot`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The list's package version.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// How many patterns the list has.
    pub fn patterns(&self) -> usize {
        self.patterns
    }
}

fn bytes_regex(pattern: &str) -> Result<regex::bytes::Regex, regex::Error> {
    regex::bytes::RegexBuilder::new(pattern)
        // JavaScript without the `u` flag: `\w`, `\d`, `\s`, `\b` are ASCII.
        .unicode(false)
        .case_insensitive(true)
        .size_limit(32 << 20)
        .dfa_size_limit(32 << 20)
        .build()
}

/// One piece of a JavaScript pattern, as the two rewrites below read it.
struct Token<'a> {
    /// The token's text: one character, or an escape (`\` and the next character).
    text: &'a str,
    /// Inside a character class (`[...]`), brackets excluded.
    in_class: bool,
}

impl Token<'_> {
    fn is_class_escape(&self) -> bool {
        matches!(self.text, r"\d" | r"\D" | r"\w" | r"\W" | r"\s" | r"\S")
    }

    /// An unescaped character outside any class.
    fn is(&self, c: &str) -> bool {
        !self.in_class && self.text == c
    }
}

/// Splits a pattern into characters and escapes, marking what lies inside character classes.
fn tokens(pattern: &str) -> Vec<Token<'_>> {
    let mut tokens = Vec::with_capacity(pattern.len());
    let mut in_class = false;
    let mut chars = pattern.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        let end = match (c, chars.peek()) {
            ('\\', Some(&(next_at, next))) => {
                chars.next();
                next_at + next.len_utf8()
            }
            _ => at + c.len_utf8(),
        };
        let text = &pattern[at..end];
        match text {
            "[" if !in_class => {
                tokens.push(Token { text, in_class });
                in_class = true;
            }
            "]" if in_class => {
                in_class = false;
                tokens.push(Token { text, in_class });
            }
            _ => tokens.push(Token { text, in_class }),
        }
    }
    tokens
}

/// Escapes a `-` inside a character class when it stands next to a class escape (`\w`, `\d`,
/// `\s` and their negations): JavaScript reads it as a literal, Rust as a broken range.
fn escape_class_dashes(pattern: &str) -> String {
    let tokens = tokens(pattern);
    let mut out = String::with_capacity(pattern.len() + 4);
    for (i, token) in tokens.iter().enumerate() {
        let next_to_escape = (i > 0 && tokens[i - 1].is_class_escape())
            || tokens.get(i + 1).is_some_and(Token::is_class_escape);
        if token.in_class && token.text == "-" && next_to_escape {
            out.push_str(r"\-");
        } else {
            out.push_str(token.text);
        }
    }
    out
}

/// The pattern without its look-around groups (`(?=..)`, `(?!..)`, `(?<=..)`, `(?<!..)`): it
/// matches everything the pattern matches, and more.
fn strip_look_around(pattern: &str) -> String {
    let tokens = tokens(pattern);
    let starts_look_around = |i: usize| {
        let ahead: String = tokens[i..tokens.len().min(i + 4)]
            .iter()
            .map(|t| t.text)
            .collect();
        tokens[i].is("(")
            && ["(?=", "(?!", "(?<=", "(?<!"]
                .iter()
                .any(|prefix| ahead.starts_with(prefix))
    };
    let mut out = String::with_capacity(pattern.len());
    let mut i = 0;
    while i < tokens.len() {
        if starts_look_around(i) {
            // Skip to the matching `)`.
            let mut depth = 0;
            while i < tokens.len() {
                if tokens[i].is("(") {
                    depth += 1;
                } else if tokens[i].is(")") {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                i += 1;
            }
        } else {
            out.push_str(tokens[i].text);
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The labelled sample (`testdata/user-agents.tsv`): real user agents, each with the class
    /// isbot 5.2.3 gives it in Node (`require("isbot").isbot(ua)`), and its kind.
    const SAMPLE: &str = include_str!("../../testdata/user-agents.tsv");

    #[test]
    fn the_labelled_sample_is_classified_as_isbot_classifies_it() {
        let classifier = BotClassifier::embedded();
        let mut kinds = std::collections::BTreeMap::<&str, (usize, usize)>::new();
        let mut wrong = Vec::new();
        for row in SAMPLE
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let mut cells = row.splitn(3, '\t');
            let (label, kind, agent) = (
                cells.next().unwrap(),
                cells.next().unwrap(),
                cells.next().unwrap(),
            );
            assert!(matches!(label, "bot" | "human"), "bad label in {row:?}");
            let bot = classifier.is_bot(agent);
            let counts = kinds.entry(kind).or_default();
            if bot {
                counts.0 += 1;
            } else {
                counts.1 += 1;
            }
            if bot != (label == "bot") {
                wrong.push(format!(
                    "{label} expected, got {}: {agent}",
                    if bot { "bot" } else { "human" }
                ));
            }
        }
        assert!(wrong.is_empty(), "misclassified:\n{}", wrong.join("\n"));
        // Every kind docs/design/analytics.md ("Bots and humans") names is in the sample.
        for kind in ["browser", "crawler", "monitoring", "script", "preview"] {
            assert!(
                kinds.contains_key(kind),
                "no {kind} in the sample: {kinds:?}"
            );
        }
    }

    #[test]
    fn the_embedded_list_is_isbot_with_look_around_patterns_on_the_second_engine() {
        let classifier = BotClassifier::embedded();
        assert_eq!(classifier.name(), "isbot");
        assert!(classifier.patterns() > 150, "{}", classifier.patterns());
        assert!(
            classifier
                .id()
                .starts_with(&format!("isbot@{}#", classifier.version()))
        );
        assert!(!classifier.look_around.is_empty());
        assert!(
            !classifier.is_bot(""),
            "isbot: an empty user agent is not a bot"
        );
    }

    #[test]
    fn look_around_is_honoured() {
        let classifier = BotClassifier::from_json(
            r#"{"name":"t","version":"1","patterns":["(?<!cam)scan","java(?!;)","^exact$"]}"#,
        )
        .unwrap();
        assert!(classifier.is_bot("virus SCAN tool"));
        assert!(!classifier.is_bot("camscanner app"));
        assert!(classifier.is_bot("Java/17.0.2"));
        assert!(!classifier.is_bot("Mozilla/5.0 (java; x)"));
        assert!(classifier.is_bot("EXACT"));
        assert!(!classifier.is_bot("not exact"));
    }

    #[test]
    fn javascript_class_dashes_are_literal() {
        assert_eq!(escape_class_dashes(r"[\w\d-.]+"), r"[\w\d\-.]+");
        assert_eq!(escape_class_dashes(r"[a-z]-\d"), r"[a-z]-\d");
        assert_eq!(escape_class_dashes(r"[-\w]"), r"[\-\w]");
        let classifier = BotClassifier::from_json(
            r#"{"name":"t","version":"1","patterns":["^x [\\w\\d-.]+$"]}"#,
        )
        .unwrap();
        assert!(classifier.is_bot("x a-b.c"));
    }

    #[test]
    fn look_around_groups_are_stripped_for_the_prefilter() {
        assert_eq!(
            strip_look_around("(?<! cu)bots?(?:\\b|_)"),
            "bots?(?:\\b|_)"
        );
        assert_eq!(
            strip_look_around("(?<! channel/|google/)google(?!(?:wv|app))"),
            "google"
        );
        assert_eq!(strip_look_around("a(?=[)])b"), "ab");
    }

    #[test]
    fn a_broken_list_is_refused_with_the_pattern() {
        let err =
            BotClassifier::from_json(r#"{"name":"t","version":"1","patterns":["(unclosed"]}"#)
                .err()
                .unwrap();
        assert!(err.to_string().contains("(unclosed"), "{err}");
        assert!(matches!(
            BotClassifier::from_json(r#"{"name":"t","version":"1","patterns":[]}"#),
            Err(ListError::Empty)
        ));
    }
}
