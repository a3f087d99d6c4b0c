//! A customer site's id: the one spelling every layer shares (the sites file, keys, the layout of
//! files and objects, Kafka headers, metric labels, analytics queries). A leaf.
//!
//! An id is a short slug, so that it is safe as a path segment, an object-key segment, a header
//! value and a label value as it is: 1 to [`MAX_LEN`] lowercase ASCII letters, digits and `-`,
//! beginning and ending with a letter or a digit. Nothing is escaped or normalised anywhere: an
//! id that is not spelled this way is refused where it enters (the sites file, a query string, a
//! Kafka header), never mapped onto another.

use std::fmt;
use std::sync::Arc;

/// The longest id: a DNS label's length, which keeps paths and labels short.
pub const MAX_LEN: usize = 63;

/// A valid site id.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SiteId(Arc<str>);

/// Why a string is not a site id; the message says what a valid one is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SiteIdError {
    #[error("is empty; a site id is 1 to {MAX_LEN} lowercase letters, digits and '-'")]
    Empty,
    #[error("is {0} characters; a site id is at most {MAX_LEN}")]
    TooLong(usize),
    #[error("holds {0:?}; a site id is lowercase letters (a-z), digits and '-' only")]
    Character(char),
    #[error("begins or ends with '-'; a site id begins and ends with a letter or a digit")]
    Hyphen,
}

impl SiteId {
    /// `text` as a site id, if it is spelled as one.
    pub fn parse(text: &str) -> Result<SiteId, SiteIdError> {
        if text.is_empty() {
            return Err(SiteIdError::Empty);
        }
        if let Some(bad) = text
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(SiteIdError::Character(bad));
        }
        if text.len() > MAX_LEN {
            return Err(SiteIdError::TooLong(text.len()));
        }
        if text.starts_with('-') || text.ends_with('-') {
            return Err(SiteIdError::Hyphen);
        }
        Ok(SiteId(Arc::from(text)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SiteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SiteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SiteId({})", self.0)
    }
}

impl serde::Serialize for SiteId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for SiteId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        SiteId::parse(&text).map_err(|e| serde::de::Error::custom(format!("{text:?} {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_ids() {
        for good in ["a", "acme", "acme-shop-2", "0", &"a".repeat(MAX_LEN)] {
            assert_eq!(SiteId::parse(good).unwrap().as_str(), good);
        }
    }

    #[test]
    fn anything_else_is_refused_with_what_is_wrong() {
        assert_eq!(SiteId::parse(""), Err(SiteIdError::Empty));
        assert_eq!(SiteId::parse("Acme"), Err(SiteIdError::Character('A')));
        assert_eq!(SiteId::parse("../b"), Err(SiteIdError::Character('.')));
        assert_eq!(SiteId::parse("a/b"), Err(SiteIdError::Character('/')));
        assert_eq!(SiteId::parse("a b"), Err(SiteIdError::Character(' ')));
        assert_eq!(SiteId::parse("a_b"), Err(SiteIdError::Character('_')));
        assert_eq!(SiteId::parse("é"), Err(SiteIdError::Character('é')));
        assert_eq!(SiteId::parse("-a"), Err(SiteIdError::Hyphen));
        assert_eq!(SiteId::parse("a-"), Err(SiteIdError::Hyphen));
        assert_eq!(
            SiteId::parse(&"a".repeat(MAX_LEN + 1)),
            Err(SiteIdError::TooLong(MAX_LEN + 1))
        );
        assert_eq!(
            SiteId::parse("Acme").unwrap_err().to_string(),
            "holds 'A'; a site id is lowercase letters (a-z), digits and '-' only"
        );
    }
}
