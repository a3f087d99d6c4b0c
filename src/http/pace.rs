//! How fast a request body must arrive: at least `server.minBodyRate` bytes a second, over each
//! [`WINDOW`] from the moment the handler starts reading it (or the body ends within the window).
//! A body that falls below is refused with 408 `body_too_slow`, naming the rate, and gives back
//! what it held at once: a client that sends a byte now and then cannot keep a request, its
//! share of `server.maxInflightBytes` or its connection for long. Bytes are counted as they
//! arrive, before any decompression (a compressed body's decoder may sit on a block for a while).
//!
//! Windows, rather than an average since the start as Apache's `mod_reqtimeout` computes it: a
//! client that sends most of a body at once and then stalls would otherwise keep what it sent
//! for the whole `server.readBodyTimeout`.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http_body::{Frame, SizeHint};

use super::error::ApiError;

/// The span over which the minimum rate is measured. Long enough that a retransmission or a
/// short stall on a slow link does not count as too slow.
pub(super) const WINDOW: Duration = Duration::from_secs(5);

/// The bytes of one body that have arrived, and the rate they must keep up.
pub(super) struct Pace {
    arrived: Arc<AtomicU64>,
    min_rate: usize,
}

impl Pace {
    /// A pace of at least `min_rate` bytes a second.
    pub(super) fn new(min_rate: usize) -> Pace {
        Pace {
            arrived: Arc::new(AtomicU64::new(0)),
            min_rate,
        }
    }

    /// `body`, its bytes counted as they are read.
    pub(super) fn count(&self, body: Body) -> Body {
        Body::new(Counted {
            inner: body,
            arrived: self.arrived.clone(),
        })
    }

    /// Completes, with the answer to give, at the end of the first window that brought less
    /// than the minimum rate; never while the body keeps up.
    pub(super) async fn too_slow(&self) -> ApiError {
        let per_window = (self.min_rate as u64).saturating_mul(WINDOW.as_secs());
        let mut seen = 0;
        loop {
            tokio::time::sleep(WINDOW).await;
            let arrived = self.arrived.load(Ordering::Relaxed);
            if arrived - seen < per_window {
                return ApiError::BodyTooSlow {
                    min_rate: self.min_rate,
                    window: WINDOW,
                };
            }
            seen = arrived;
        }
    }
}

/// A request body that adds the length of each data frame read to a counter.
struct Counted {
    inner: Body,
    arrived: Arc<AtomicU64>,
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let frame = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &frame
            && let Some(data) = frame.data_ref()
        {
            self.arrived.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
