//! Metering a connection's raw reads, below TLS and WebSocket framing, so
//! that a peer trickling a TLS record or a WebSocket frame is caught by the
//! message deadline as well as one trickling SIP text.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// When the current partial message of a connection started arriving, in
/// raw bytes (below TLS and WebSocket framing).
#[derive(Debug)]
pub(crate) struct ReadClock {
    base: Instant,
    /// Milliseconds since `base` plus one; zero when nothing is pending.
    pending_since: AtomicU64,
}

impl ReadClock {
    pub(crate) fn new() -> Arc<ReadClock> {
        Arc::new(ReadClock {
            base: Instant::now(),
            pending_since: AtomicU64::new(0),
        })
    }

    fn mark(&self) {
        let now = self.base.elapsed().as_millis() as u64 + 1;
        let _ = self
            .pending_since
            .compare_exchange(0, now, Ordering::AcqRel, Ordering::Acquire);
    }

    /// A whole message (or keep-alive) was taken: nothing is pending.
    pub(crate) fn clear(&self) {
        self.pending_since.store(0, Ordering::Release);
    }

    pub(crate) fn pending_since(&self) -> Option<Instant> {
        match self.pending_since.load(Ordering::Acquire) {
            0 => None,
            ms => Some(self.base + Duration::from_millis(ms - 1)),
        }
    }
}

/// A socket whose reads start the [`ReadClock`].
pub(crate) struct Metered<S> {
    inner: S,
    clock: Arc<ReadClock>,
}

impl<S> Metered<S> {
    pub(crate) fn new(inner: S, clock: Arc<ReadClock>) -> Self {
        Metered { inner, clock }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.mark();
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
