//! `auth`: bearer tokens, which routes need one, and which tokens a client can present.

use std::fmt;

use serde::Deserialize;

use crate::config::key::{Field, Flag, Key, lens};

/// `auth`: each field's YAML key is its name; its meaning, flag and environment variable are
/// its row in [`KEYS`], its default the `Default` impl below.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct AuthConfig {
    pub tokens: Vec<String>,
    pub protect: Vec<Protected>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            tokens: Vec::new(),
            protect: vec![Protected::Ingest, Protected::Analytics],
        }
    }
}

impl AuthConfig {
    /// Whether requests to `routes` need a token.
    pub fn protects(&self, routes: Protected) -> bool {
        !self.tokens.is_empty() && (routes == Protected::Ingest || self.protect.contains(&routes))
    }
}

// Hand-written so that logging the config (`{:?}`) cannot leak the secrets.
impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("tokens", &format_args!("<{} redacted>", self.tokens.len()))
            .field("protect", &self.protect)
            .finish()
    }
}

/// A group of routes `auth.protect` can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(rename_all = "lowercase")]
pub enum Protected {
    /// `POST /logs`.
    Ingest,
    /// `/analytics`, `/analytics/hours` and what the dashboard reads.
    Analytics,
    /// `/metrics`.
    Metrics,
}

impl Protected {
    /// Every spelling, as serde reads them.
    pub const NAMES: &[&str] = &["ingest", "analytics", "metrics"];

    /// The YAML spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Protected::Ingest => "ingest",
            Protected::Analytics => "analytics",
            Protected::Metrics => "metrics",
        }
    }
}

/// Whether a client can present `token` in `Authorization: Bearer <token>` and have it match, as
/// `crate::http`'s auth middleware reads the header (its test checks the two agree): the header
/// must be visible ASCII text, so only printable ASCII, spaces and tabs travel; and the
/// middleware trims the presented token, so it cannot begin or end with whitespace. The error
/// never quotes the token: it is a secret.
pub fn check_token(token: &str) -> Result<(), &'static str> {
    if token.trim().is_empty() {
        Err("is empty, remove it (an empty list turns auth off)")
    } else if !token
        .chars()
        .all(|c| c == '\t' || c == ' ' || c.is_ascii_graphic())
    {
        Err(
            "holds a character no client can send in an Authorization header \
             (only printable ASCII, spaces and tabs)",
        )
    } else if token.trim() != token {
        Err("has leading or trailing whitespace")
    } else {
        Ok(())
    }
}

/// `auth.tokens`.
pub const TOKENS: Key = Key::new(
    "auth.tokens",
    Field::List(lens!(auth.tokens)),
    "Bearer tokens accepted (`Authorization: Bearer <token>`); empty turns auth off everywhere. \
     Each must be one a client can send: printable ASCII, spaces and tabs, none at either end. \
     The flag and variable take them comma-separated; prefer the variable, flags are visible \
     in `ps`.",
)
.flag(Flag::new("tokens", "LOG_PIPELINE_TOKENS", "TOKEN,...").secret());

pub const KEYS: &[Key] = &[
    TOKENS,
    Key::new(
        "auth.protect",
        Field::Choices {
            get: |config| config.auth.protect.iter().map(Protected::as_str).collect(),
            values: Protected::NAMES,
        },
        "Which routes need a token when tokens are set: `ingest` (`POST /logs`, always \
         protected: listing it changes nothing), `analytics` (`/analytics*`: top paths can \
         carry tokens and personal data from URLs) and `metrics` (`/metrics`). Probes \
         (`/health`, `/ready`) never need one.",
    ),
];
