//! `POST /logs`: admit, read, decode, hand over, answer.
//!
//! - **Memory.** Bodies in flight share one budget, `server.maxInflightBytes`. A body takes its
//!   share as its bytes arrive, never for bytes it has only announced: a client that declares a
//!   large `Content-Length` and sends slowly holds what it sent, not what it declared (declared
//!   lengths let four idle clients hold the whole default budget). A body whose next bytes do not
//!   fit gets 503 `overloaded`; one whose `Content-Length` is more than is free when it comes is
//!   refused so before a byte of it is read. Decoding takes the encoded batch's expected size
//!   too. The share is given back once the batch is handed over (the store's
//!   `storage.maxPendingBytes` bounds it from then on).
//! - **Sites.** With sites, a request is its ingest key's site's, and within its site's share
//!   ([`fair_share`](super::fair_share)): refused 429 `rate_limited` before its body is read when
//!   the site's bucket is empty, its records charged once decoded (429 if they do not fit now,
//!   413 `over_burst` if they never can), and its body held within the site's share of the
//!   budget (429 `inflight_share_exceeded`).
//! - **Pace.** A body must keep arriving at `server.minBodyRate` ([`pace`](super::pace)): a slower one gets
//!   408 `body_too_slow` and gives its share back, so what a client holds it holds only while
//!   it sends.
//! - **Deadlines.** `server.requestTimeout` bounds reading and decoding; a batch not handed over
//!   by then is refused (503 `timeout`, nothing stored). Once handed over, the answer is the
//!   batch's real outcome: the store withdraws a batch still waiting for its writer when the
//!   deadline passes (503 `timeout`, nothing stored) and says "unknown" only for one it is
//!   already writing (`storage.writeTimeout`, 500 `outcome_unknown`).
//! - **Early answers are heard.** When an answer comes before the body was read in full (401,
//!   403, 413, 415, 429, 503), [`linger`] reads and discards the rest of what the client is sending
//!   (bounded in bytes and time) before answering and closing, so that a client that sends its
//!   whole body before reading (as many do) reads the answer instead of a connection reset. A
//!   client that asked `Expect: 100-continue` is answered at once: it has not sent the body. A
//!   408 is answered at once too: its client sends too slowly for lingering to help it.
//! - **Refusals are counted by kind.** [`post_logs`] counts each refusal once, in the counter
//!   its kind names ([`ApiError::refused_as`], `Metrics::count_refused`): the body, its type,
//!   encoding or key (`invalid_requests_total`), the body budget or the pipeline's pending work
//!   (`ingest_inflight_rejections_total`, `ingest_overload_rejections_total`), key conflicts
//!   (`idempotency_conflicts_total`).

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Extension, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

use super::AppState;
use super::encoding::{self, Coding, Source};
use super::error::ApiError;
use super::fair_share::{BudgetShare, SiteShare};
use super::pace::Pace;
use crate::access::{Access, Role};
use crate::idempotency::{self, Fingerprint, Key, KeyError};
use crate::ingest::{self, Format, Limits};
use crate::pipeline::KeyedOutcome;
use crate::record::EncodedBatch;
use crate::site::SiteId;

/// Bodies larger than this are decoded on the blocking pool instead of an async worker.
const INLINE_DECODE_BYTES: usize = 512 * 1024;
/// A coded body is decoded this much at a time.
const DECODE_STEP: usize = 64 * 1024;
/// After an early answer, at most this much of the rest of the body is read and discarded...
const LINGER_BYTES: u64 = 64 * 1024 * 1024;
/// ... for at most this long.
const LINGER_TIME: Duration = Duration::from_secs(10);

/// `POST /logs`: decode, validate, store, then answer 202. A refusal is counted here, by its kind
/// ([`ApiError::refused_as`]), before [`linger`] makes the answer wait for the rest of the body.
pub(super) async fn post_logs(
    State(state): State<AppState>,
    Extension(role): Extension<Role>,
    Extension(access): Extension<Arc<Access>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    // With sites, the key check lets only a site's ingest key through
    // ([`Access::admit`]): its batch is its site's, whatever the body or the URL say. Without
    // sites, every key sends for no site, as before sites.
    let site = match role {
        Role::Ingest(site) => Some(site),
        Role::Operator | Role::Read(_) => None,
    };
    let share = (site.as_ref())
        .and_then(|site| access.site(site))
        .map(|site| state.fair_share.of(&site.id, site.limits));
    let answer = take_batch(&state, site.as_ref(), share, &headers, body).await;
    if let Err(err) = &answer
        && let Some(why) = err.refused_as()
    {
        (state.metrics).count_refused(site.as_ref().map(SiteId::as_str), why);
    }
    answer
}

/// Reads and decodes the batch, hands it over for `site` (within its `share`), and answers with
/// its outcome.
async fn take_batch(
    state: &AppState,
    site: Option<&SiteId>,
    share: Option<Arc<SiteShare>>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let deadline = Instant::now() + state.request_timeout;
    if state.shutting_down.load(Ordering::Relaxed) {
        return Err(ApiError::ShuttingDown);
    }
    if let Some(share) = &share {
        share.admit()?;
    }
    let Decoded { batch, keyed } =
        read_and_decode(state, site, share.clone(), headers, body, deadline).await?;
    let records = batch.records();
    if let Some(share) = &share {
        share.charge(records)?;
    }
    let outcome = hand_over(state, site.cloned(), batch, keyed, deadline).await?;
    answer(state, site, records, outcome)
}

/// A decoded batch, with its key and fingerprint if it was sent with an `Idempotency-Key`.
struct Decoded {
    batch: EncodedBatch,
    keyed: Option<(Key, Fingerprint)>,
}

/// Admits the request by its headers, reads its body and decodes it, holding a share of
/// `server.maxInflightBytes` until the batch is decoded (see the module docs).
async fn read_and_decode(
    state: &AppState,
    site: Option<&SiteId>,
    share: Option<Arc<SiteShare>>,
    headers: &HeaderMap,
    body: Body,
    deadline: Instant,
) -> Result<Decoded, ApiError> {
    let content_type = headers.get(header::CONTENT_TYPE).map(HeaderValue::as_bytes);
    let format = Format::from_content_type(content_type)?;
    let coding = Coding::of(headers)?;
    let key = idempotency_key(site, headers)?;
    let declared = content_length(headers);
    let limit = body_limit(state, share.as_deref(), format);
    if let Some(length) = declared
        && length > limit.bytes
        && coding == Coding::Identity
    {
        return Err(limit.refusal());
    }
    // Advisory, reserving nothing: a body that plainly does not fit is told before it is sent.
    if let (Some(length), Some(share)) = (declared, &share) {
        share.may_hold(length)?;
    }
    if declared.is_some_and(|length| length > state.inflight.available_permits()) {
        return Err(ApiError::Overloaded);
    }
    let mut share = BudgetShare::new(&state.inflight, share);
    let bytes = read_by_deadline(state, body, coding, limit, &mut share, deadline).await?;
    if let Some(site) = site {
        state.metrics.sites.received(site.as_str(), bytes.len());
    }
    // Decoding holds the body and the encoded batch at once: both count against the budget.
    share.grow_to(bytes.len() + ingest::expected_output(format, bytes.len()))?;
    let decoded = decode(state.limits, format, bytes, key, deadline).await;
    drop(share);
    decoded
}

/// How large a body may be, after decompression: `server.maxBodyBytes`, or less if the in-flight
/// budget could never hold a larger one of `format` while it is decoded (its client must be told
/// 413, not 503 "retry": a retry would never fit either).
#[derive(Debug, Clone, Copy)]
struct BodyLimit {
    bytes: usize,
    by: &'static str,
}

impl BodyLimit {
    fn refusal(self) -> ApiError {
        ApiError::BodyTooLarge {
            limit: self.bytes,
            by: self.by,
        }
    }
}

fn body_limit(state: &AppState, share: Option<&SiteShare>, format: Format) -> BodyLimit {
    let decodable = ingest::largest_body(format, state.inflight_bytes);
    let of_site = share.map(|share| ingest::largest_body(format, share.inflight_bytes()));
    if let Some(of_site) = of_site
        && of_site < decodable.min(state.max_body_bytes)
    {
        BodyLimit {
            bytes: of_site,
            by: "the site's inflightShare of server.maxInflightBytes: decoding holds the body \
                 and its batch at once",
        }
    } else if decodable < state.max_body_bytes {
        BodyLimit {
            bytes: decodable,
            by: "server.maxInflightBytes: decoding holds the body and its batch at once",
        }
    } else {
        BodyLimit {
            bytes: state.max_body_bytes,
            by: "server.maxBodyBytes",
        }
    }
}

/// Reads the body, decoded, within `server.readBodyTimeout` (and the request's `deadline`), as
/// long as it keeps arriving at `server.minBodyRate`.
async fn read_by_deadline(
    state: &AppState,
    body: Body,
    coding: Coding,
    limit: BodyLimit,
    share: &mut BudgetShare,
    deadline: Instant,
) -> Result<Bytes, ApiError> {
    let read_by = deadline.min(Instant::now() + state.read_body_timeout);
    let pace = Pace::new(state.min_body_rate);
    let body = pace.count(body);
    let read = async {
        tokio::select! {
            bytes = read_body(body, coding, limit, share) => bytes,
            too_slow = pace.too_slow() => Err(too_slow),
        }
    };
    match tokio::time::timeout_at(read_by, read).await {
        Ok(bytes) => bytes,
        Err(_) if read_by < deadline => Err(ApiError::BodyTimeout(state.read_body_timeout)),
        Err(_) => Err(ApiError::Timeout),
    }
}

/// Decodes `bytes` as `format`, fingerprinting the batch if it has a `key`: inline for a small
/// body, on the blocking pool (bounded by `deadline`) for a large one.
async fn decode(
    limits: Limits,
    format: Format,
    bytes: Bytes,
    key: Option<Key>,
    deadline: Instant,
) -> Result<Decoded, ApiError> {
    let size = bytes.len();
    let decode = move || {
        let batch = ingest::decode(format, &bytes, &limits)?;
        let keyed = key.map(|key| (key, Fingerprint::of(&batch)));
        Ok::<_, ApiError>(Decoded { batch, keyed })
    };
    if size <= INLINE_DECODE_BYTES {
        // Called by value, so the body goes as soon as it is decoded, not when the answer does.
        return call_once(decode);
    }
    match tokio::time::timeout_at(deadline, tokio::task::spawn_blocking(decode)).await {
        Ok(decoded) => decoded.map_err(|_| ApiError::Internal)?,
        Err(_) => Err(ApiError::Timeout),
    }
}

/// Hands the batch to the pipeline, in a task of its own: if the client goes away, the batch is
/// still stored or refused as a whole, never cut off half-way; its outcome is bounded by the
/// pipeline.
async fn hand_over(
    state: &AppState,
    site: Option<SiteId>,
    batch: EncodedBatch,
    keyed: Option<(Key, Fingerprint)>,
    deadline: Instant,
) -> Result<KeyedOutcome, ApiError> {
    let pipeline = state.pipeline.clone();
    let deadline = deadline.into_std();
    let stored = tokio::spawn(async move {
        match keyed {
            Some((key, fingerprint)) => {
                pipeline
                    .submit_keyed(site, batch, key, fingerprint, deadline)
                    .await
            }
            None => pipeline
                .submit(site, batch, deadline)
                .await
                .map(|()| KeyedOutcome::Stored),
        }
    })
    .await
    .map_err(|_| ApiError::Internal)?;
    Ok(stored?)
}

/// The answer to a batch of `records` records of `site` handed over with `outcome`.
fn answer(
    state: &AppState,
    site: Option<&SiteId>,
    records: usize,
    outcome: KeyedOutcome,
) -> Result<Response, ApiError> {
    let accepted = |records: usize| {
        (
            StatusCode::ACCEPTED,
            axum::Json(json!({ "accepted": records })),
        )
            .into_response()
    };
    match outcome {
        KeyedOutcome::Stored => {
            state.metrics.batches_received.inc();
            state.metrics.batch_records.observe(records as f64);
            if let Some(site) = site {
                state.metrics.sites.accepted(site.as_str(), records);
            }
            Ok(accepted(records))
        }
        KeyedOutcome::Replayed { records } => {
            state.metrics.idempotency_replays.inc();
            let mut response = accepted(records as usize);
            response.headers_mut().insert(
                idempotency::REPLAYED_HEADER,
                HeaderValue::from_static("true"),
            );
            Ok(response)
        }
        KeyedOutcome::InFlight => Err(ApiError::IdempotencyKeyInFlight),
        KeyedOutcome::Reused => Err(ApiError::IdempotencyKeyReused),
    }
}

/// Runs `f`, consuming it: what it captured is dropped on return.
fn call_once<T>(f: impl FnOnce() -> T) -> T {
    f()
}

/// The request's `Idempotency-Key`, if it has one (400 if it is not a valid key).
fn idempotency_key(site: Option<&SiteId>, headers: &HeaderMap) -> Result<Option<Key>, ApiError> {
    let mut values = headers.get_all(idempotency::HEADER).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(KeyError::Repeated.into());
    }
    Ok(Some(Key::parse_for(site, value.as_bytes())?))
}

/// The `Content-Length` of a request, if it has a valid one.
fn content_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Reads the body, decoded, refusing more than `limit` decoded bytes, growing `share` as bytes
/// arrive.
async fn read_body(
    body: Body,
    coding: Coding,
    limit: BodyLimit,
    share: &mut BudgetShare,
) -> Result<Bytes, ApiError> {
    match coding.open(body).await {
        Source::Plain(body) => read_frames(body, limit, share).await,
        Source::Decoded(mut reader) => {
            let mut buffer = BytesMut::new();
            loop {
                buffer.reserve(DECODE_STEP);
                // One byte past the limit tells a body that is too large.
                let room = (limit.bytes + 1 - buffer.len()).min(DECODE_STEP);
                let read = reader
                    .read_buf(&mut (&mut buffer).limit(room))
                    .await
                    .map_err(|err| encoding::unreadable(coding, &err))?;
                if read == 0 {
                    return Ok(buffer.freeze());
                }
                if buffer.len() > limit.bytes {
                    return Err(limit.refusal());
                }
                share.grow_to(buffer.len())?;
            }
        }
    }
}

/// Reads a body that is not encoded. A body that arrives as one frame (the usual case for a
/// body that fits hyper's read buffer) is kept as it is; the frames of a longer one are gathered
/// into one buffer sized from the declared length, so the body is copied at most once.
async fn read_frames(
    body: Body,
    limit: BodyLimit,
    share: &mut BudgetShare,
) -> Result<Bytes, ApiError> {
    let mut body = body;
    let expected = http_body::Body::size_hint(&body).lower() as usize;
    let mut first: Option<Bytes> = None;
    let mut buffer = BytesMut::new();
    let mut length = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|err| ApiError::UnreadableBody(err.to_string()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if length + data.len() > limit.bytes {
            return Err(limit.refusal());
        }
        share.grow_to(length + data.len())?;
        length += data.len();
        if first.is_none() && buffer.is_empty() {
            first = Some(data);
            continue;
        }
        if let Some(first) = first.take() {
            buffer.reserve(expected.min(limit.bytes).max(length));
            buffer.extend_from_slice(&first);
        }
        buffer.extend_from_slice(&data);
    }
    Ok(first.unwrap_or_else(|| buffer.freeze()))
}

/// Middleware of `POST /logs` (outermost): makes an early answer readable, see the module docs.
pub(super) async fn linger(request: Request, next: Next) -> Response {
    let expects_continue = request
        .headers()
        .get(header::EXPECT)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let unread = Arc::new(Mutex::new(None));
    let polled = Arc::new(AtomicBool::new(false));
    let request = request.map(|body| {
        Body::new(Reclaimable {
            inner: Some(body),
            unread: unread.clone(),
            polled: polled.clone(),
        })
    });
    let mut response = next.run(request).await;
    let rest = unread.lock().expect("unread lock").take();
    if let Some(rest) = rest {
        // The connection cannot serve another request: what the client sent is not all read.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        // A client that asked to continue and was never told to has not sent the body; one
        // answered 408 sends too slowly to finish within the linger.
        let sending = !expects_continue || polled.load(Ordering::Relaxed);
        if sending && response.status() != StatusCode::REQUEST_TIMEOUT {
            discard(rest).await;
        }
    }
    response
}

/// Reads and drops what is left of a body, at most [`LINGER_BYTES`] during [`LINGER_TIME`].
async fn discard(mut body: Body) {
    let mut read = 0u64;
    let _ = tokio::time::timeout(LINGER_TIME, async {
        while read < LINGER_BYTES {
            match body.frame().await {
                Some(Ok(frame)) => {
                    read += frame.data_ref().map_or(0, |data| data.len() as u64);
                }
                _ => break,
            }
        }
    })
    .await;
}

/// A request body that, when dropped before its end, hands what is left to [`linger`].
struct Reclaimable {
    inner: Option<Body>,
    unread: Arc<Mutex<Option<Body>>>,
    /// Whether anyone asked for the body (hyper then sent `100 Continue`).
    polled: Arc<AtomicBool>,
}

impl http_body::Body for Reclaimable {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        self.polled.store(true, Ordering::Relaxed);
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = Pin::new(inner).poll_frame(cx);
        if let Poll::Ready(None) = frame {
            // Read to its end: nothing to hand back.
            self.inner = None;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner
            .as_ref()
            .is_none_or(http_body::Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), http_body::Body::size_hint)
    }
}

impl Drop for Reclaimable {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take()
            && !http_body::Body::is_end_stream(&inner)
        {
            *self.unread.lock().expect("unread lock") = Some(inner);
        }
    }
}
