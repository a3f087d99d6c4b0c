//! How a record's site travels through Kafka: the header `site` on each message, holding the
//! site id of the key that sent it. The message key of an unkeyed batch's records is the site id
//! too, so that one site's batches stay in order on one partition (a keyed batch's key is its
//! `Idempotency-Key`'s hash, see [`super::keyed`], which keeps the batch on one partition).
//!
//! A message without the header is unsited (the root's layout), as every message produced
//! before sites is. One whose header is not a valid site id was not produced by this service:
//! the consumer dead-letters it with the reason, never stores it under a site it guessed.

use rdkafka::Message;
use rdkafka::message::{Header, Headers, OwnedHeaders};

use crate::site::SiteId;

/// The header's name.
pub const SITE: &str = "site";

/// The site a consumed message's header names: `None` without the header; why not, if the
/// header is there but not a site id.
pub fn site_of(message: &impl Message) -> Result<Option<SiteId>, String> {
    let Some(headers) = message.headers() else {
        return Ok(None);
    };
    let Some(header) = headers.iter().find(|header| header.key == SITE) else {
        return Ok(None);
    };
    let value = header.value.unwrap_or_default();
    let text = std::str::from_utf8(value)
        .map_err(|_| format!("its {SITE} header is not UTF-8, so not a site id"))?;
    SiteId::parse(text)
        .map(Some)
        .map_err(|err| format!("its {SITE} header {text:?} is not a site id: it {err}"))
}

/// `headers` with the `site` header of `site` added.
pub fn with_site(headers: OwnedHeaders, site: &SiteId) -> OwnedHeaders {
    headers.insert(Header {
        key: SITE,
        value: Some(site.as_str()),
    })
}

#[cfg(test)]
mod tests {
    use rdkafka::Timestamp;
    use rdkafka::message::OwnedMessage;

    use super::*;

    fn message(headers: Option<OwnedHeaders>) -> OwnedMessage {
        OwnedMessage::new(
            Some(b"{}".to_vec()),
            None,
            "logs".to_owned(),
            Timestamp::NotAvailable,
            0,
            7,
            headers,
        )
    }

    fn raw(value: &[u8]) -> OwnedHeaders {
        OwnedHeaders::new().insert(Header {
            key: SITE,
            value: Some(value),
        })
    }

    #[test]
    fn a_site_header_names_a_valid_site_or_the_message_is_refused_with_why() {
        let acme = SiteId::parse("acme").unwrap();
        let sited = message(Some(with_site(OwnedHeaders::new(), &acme)));
        assert_eq!(site_of(&sited), Ok(Some(acme)));
        assert_eq!(
            site_of(&message(None)),
            Ok(None),
            "unsited, as before sites"
        );
        let other = OwnedHeaders::new().insert(Header {
            key: "idempotency-index",
            value: Some("0"),
        });
        assert_eq!(site_of(&message(Some(other))), Ok(None));
        for (forged, why) in [
            (&b"../bolt"[..], "is not a site id: it holds '.'"),
            (b"Acme", "holds 'A'"),
            (b"", "is empty"),
            (b"-acme", "begins or ends with '-'"),
            (b"\xff", "is not UTF-8"),
        ] {
            let refused = site_of(&message(Some(raw(forged)))).unwrap_err();
            assert!(refused.contains(why), "{forged:?}: {refused}");
        }
    }
}
