//! Connection limits: a cap on connections served at once, a TLS handshake deadline, a
//! request-header deadline (hyper's), and an inactivity timeout that measures time since
//! a byte last moved either way — so an idle keep-alive connection or a stalled transfer
//! is closed, while a GiB upload that keeps moving is never cut.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The limits of `serve`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub handshake: Duration,
    pub header: Duration,
    pub idle: Duration,
    pub max: usize,
}

impl Limits {
    pub(crate) fn from(cfg: &crate::ServeConfig) -> Self {
        Self {
            handshake: Duration::from_secs(cfg.handshake_timeout_secs.max(1)),
            header: Duration::from_secs(cfg.header_timeout_secs.max(1)),
            idle: Duration::from_secs(cfg.idle_timeout_secs.max(1)),
            max: cfg.max_connections.max(1),
        }
    }
}

/// When a byte last moved on a connection (milliseconds since `epoch`).
#[derive(Clone)]
pub(crate) struct Activity {
    epoch: Instant,
    last: Arc<AtomicU64>,
}

impl Activity {
    fn new() -> Self {
        Self { epoch: Instant::now(), last: Arc::new(AtomicU64::new(0)) }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }

    /// How long nothing has moved.
    pub(crate) fn idle(&self) -> Duration {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(now.saturating_sub(self.last.load(Ordering::Relaxed)))
    }
}

/// Requests of one connection the server is working on: from the end of the request's
/// body (before it, the server waits for the client, and a stalled upload is idle) to
/// its response's headers (after them, the response body moves bytes).
#[derive(Clone, Default)]
pub(crate) struct Busy(Arc<AtomicU64>);

/// One request being worked on; dropped when its response is ready (or it is cancelled).
pub(crate) struct Working(Arc<AtomicU64>);

impl Busy {
    pub(crate) fn enter(&self) -> Working {
        self.0.fetch_add(1, Ordering::Relaxed);
        Working(self.0.clone())
    }

    pub(crate) fn any(&self) -> bool {
        self.0.load(Ordering::Relaxed) > 0
    }
}

impl Drop for Working {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A request body that marks its request as worked on once it has been read to its end
/// (at once for an empty body); the mark lasts until `slot` is emptied, when the
/// response is ready.
pub(crate) struct EndOfBody<B> {
    inner: B,
    busy: Busy,
    slot: Arc<std::sync::Mutex<Option<Working>>>,
}

impl<B: hyper::body::Body> EndOfBody<B> {
    pub(crate) fn new(inner: B, busy: &Busy, slot: &Arc<std::sync::Mutex<Option<Working>>>) -> Self {
        let body = Self { inner, busy: busy.clone(), slot: slot.clone() };
        if body.inner.is_end_stream() {
            body.mark();
        }
        body
    }

    fn mark(&self) {
        if let Ok(mut s) = self.slot.lock()
            && s.is_none()
        {
            *s = Some(self.busy.enter());
        }
    }
}

impl<B: hyper::body::Body + Unpin> hyper::body::Body for EndOfBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(r, Poll::Ready(None)) {
            self.mark();
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// An I/O stream that records its activity.
pub(crate) struct Tracked<T> {
    inner: T,
    activity: Activity,
}

impl<T> Tracked<T> {
    pub(crate) fn new(inner: T) -> (Self, Activity) {
        let activity = Activity::new();
        (Self { inner, activity: activity.clone() }, activity)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    #[test]
    fn busy_while_a_request_is_worked_on() {
        let busy = Busy::default();
        assert!(!busy.any());
        let a = busy.enter();
        let b = busy.enter();
        drop(a);
        assert!(busy.any());
        drop(b);
        assert!(!busy.any());
    }

    #[tokio::test]
    async fn activity_is_bytes_moving_either_way() {
        let (a, mut b) = tokio::io::duplex(64);
        let (mut t, act) = Tracked::new(a);
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(act.idle() >= Duration::from_millis(30));
        b.write_all(b"hi").await.unwrap();
        let mut buf = [0u8; 2];
        t.read_exact(&mut buf).await.unwrap();
        assert!(act.idle() < Duration::from_millis(25), "a read is activity");
        tokio::time::sleep(Duration::from_millis(100)).await;
        t.write_all(b"yo").await.unwrap();
        assert!(act.idle() < Duration::from_millis(75), "a write is activity");
    }
}
