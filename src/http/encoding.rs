//! `Content-Encoding` of `POST /logs`: which coding a body uses, and reading it decoded.
//!
//! - Codings are case-insensitive, `x-gzip` is gzip, and `identity` entries mean nothing
//!   (RFC 9110 §8.4.1). One coding at most: a stack (`gzip, zstd`) or any other coding is 415.
//! - gzip reads every member (`cat a.gz b.gz` is one body, RFC 1952 §2.2) and refuses bytes after
//!   the last one; zstd reads every frame (skippable ones too) and refuses trailing bytes. Either
//!   refusal is 400 `unreadable_body`: a body is decoded whole or not at all.
//! - zstd windows are capped at 8 MiB (RFC 8878 §3.1.1.1.2: what every decoder must support), so a
//!   small frame cannot make the decoder allocate a large window.
//! - An empty body is an empty batch whatever its coding (400 `no_records`).

use std::io;
use std::pin::Pin;

use async_compression::tokio::bufread::{GzipDecoder, ZstdDecoder};
use axum::body::Body;
use axum::http::{HeaderMap, header};
use futures_util::{StreamExt, TryStreamExt, stream};
use tokio::io::AsyncRead;
use tokio_util::io::StreamReader;

use super::error::ApiError;

/// The largest zstd window accepted, as a power of two (8 MiB).
const ZSTD_WINDOW_LOG_MAX: u32 = 23;

/// How a request body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Coding {
    Identity,
    Gzip,
    Zstd,
}

impl Coding {
    /// The coding named by the request's `Content-Encoding` headers, or 415.
    pub(super) fn of(headers: &HeaderMap) -> Result<Coding, ApiError> {
        let mut codings = headers
            .get_all(header::CONTENT_ENCODING)
            .iter()
            .flat_map(|value| value.as_bytes().split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
            .filter(|coding| !coding.is_empty() && !coding.eq_ignore_ascii_case(b"identity"));
        let coding = match codings.next() {
            None => return Ok(Coding::Identity),
            Some(coding) => coding.to_ascii_lowercase(),
        };
        if codings.next().is_some() {
            return Err(ApiError::UnsupportedEncoding);
        }
        match coding.as_slice() {
            b"gzip" | b"x-gzip" => Ok(Coding::Gzip),
            b"zstd" => Ok(Coding::Zstd),
            _ => Err(ApiError::UnsupportedEncoding),
        }
    }

    /// The body to read: as it is for identity, else its bytes decoded. Errors of the body
    /// itself (the client went away) read as I/O errors of the decoder.
    pub(super) async fn open(self, body: Body) -> Source {
        let window = async_compression::zstd::DParameter::window_log_max(ZSTD_WINDOW_LOG_MAX);
        if self == Coding::Identity {
            return Source::Plain(body);
        }
        let mut chunks = TryStreamExt::map_err(body.into_data_stream(), io::Error::other);
        // The first bytes, if any: an empty body decodes to an empty one.
        let first = loop {
            match chunks.next().await {
                None => return Source::Decoded(Box::pin(tokio::io::empty())),
                Some(Ok(chunk)) if chunk.is_empty() => continue,
                Some(chunk) => break chunk,
            }
        };
        let raw = StreamReader::new(stream::iter([first]).chain(chunks));
        Source::Decoded(match self {
            Coding::Identity | Coding::Gzip => {
                let mut decoder = GzipDecoder::new(raw);
                decoder.multiple_members(true);
                Box::pin(decoder)
            }
            Coding::Zstd => {
                let mut decoder = ZstdDecoder::with_params(raw, &[window]);
                decoder.multiple_members(true);
                Box::pin(decoder)
            }
        })
    }
}

/// A request body ready to read.
pub(super) enum Source {
    /// Not encoded: read its frames.
    Plain(Body),
    /// Encoded: read the decoded bytes.
    Decoded(Pin<Box<dyn AsyncRead + Send>>),
}

/// Why a coded body could not be read, for the 400 `unreadable_body` message.
pub(super) fn unreadable(coding: Coding, err: &io::Error) -> ApiError {
    let name = match coding {
        Coding::Identity => "body",
        Coding::Gzip => "gzip body",
        Coding::Zstd => "zstd body",
    };
    ApiError::UnreadableBody(format!("{name} cannot be decoded: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use bytes::Bytes;

    fn coding(values: &[&str]) -> Result<Coding, ApiError> {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(
                header::CONTENT_ENCODING,
                HeaderValue::from_str(value).unwrap(),
            );
        }
        Coding::of(&headers)
    }

    #[test]
    fn codings_are_case_insensitive_and_identity_is_nothing() {
        assert_eq!(coding(&[]).unwrap(), Coding::Identity);
        assert_eq!(coding(&["identity"]).unwrap(), Coding::Identity);
        assert_eq!(coding(&["GZip"]).unwrap(), Coding::Gzip);
        assert_eq!(coding(&["x-gzip"]).unwrap(), Coding::Gzip);
        assert_eq!(coding(&[" identity , ZSTD "]).unwrap(), Coding::Zstd);
        assert_eq!(coding(&["identity", "zstd"]).unwrap(), Coding::Zstd);
        for refused in [
            &["br"][..],
            &["gzip, zstd"],
            &["gzip", "gzip"],
            &["*"],
            &["lz4"],
        ] {
            assert!(
                matches!(coding(refused), Err(ApiError::UnsupportedEncoding)),
                "{refused:?}"
            );
        }
    }

    async fn decode(coding: Coding, body: Vec<u8>) -> io::Result<Vec<u8>> {
        use tokio::io::AsyncReadExt;
        let Source::Decoded(mut reader) = coding.open(Body::from(Bytes::from(body))).await else {
            panic!("identity")
        };
        let mut out = Vec::new();
        reader.read_to_end(&mut out).await?;
        Ok(out)
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[tokio::test]
    async fn every_gzip_member_is_read_and_trailing_bytes_refused() {
        let two = [gzip(b"one\n"), gzip(b"two\n")].concat();
        assert_eq!(
            decode(Coding::Gzip, two.clone()).await.unwrap(),
            b"one\ntwo\n"
        );
        let garbage = [two, b"garbage".to_vec()].concat();
        assert!(decode(Coding::Gzip, garbage).await.is_err());
        assert_eq!(decode(Coding::Gzip, Vec::new()).await.unwrap(), b"");
    }
}
