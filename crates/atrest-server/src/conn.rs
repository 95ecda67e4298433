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

/// The local port a request arrived on (a request extension): with vault ports, it says
/// which vault the origin serves even behind a port forward that rewrites `Host`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LocalPort(pub u16);

/// The accept loop: TLS, HTTP/1.1 and HTTP/2 through `app`, under the limits; on `stop`
/// it accepts no more connections and lets the open ones finish their requests (up to
/// 10 s).
pub(crate) fn serve(
    listener: tokio::net::TcpListener,
    live_tls: crate::tls::LiveConfig,
    app: axum::Router,
    limits: Limits,
    stop: &tokio::sync::watch::Sender<bool>,
) -> tokio::task::JoinHandle<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto;
    use hyper_util::service::TowerToHyperService;
    let mut stopped = stop.subscribe();
    let conn_stop = stop.subscribe();
    let local_port = LocalPort(listener.local_addr().map(|a| a.port()).unwrap_or(0));
    tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        // A connection is accepted only with a permit: past the cap, clients wait in the
        // listen backlog instead of exhausting file descriptors and memory.
        let permits = Arc::new(tokio::sync::Semaphore::new(limits.max));
        loop {
            let permit = tokio::select! {
                p = permits.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => continue,
                _ = stopped.changed() => break,
            };
            let (tcp, _peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of file descriptors, typically: back off rather than spin.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => continue,
                _ = stopped.changed() => break,
            };
            let current = live_tls.read().map(|c| c.clone()).unwrap_or_else(|p| p.into_inner().clone());
            let acceptor = tokio_rustls::TlsAcceptor::from(current);
            let app = app.clone();
            let mut stop = conn_stop.clone();
            conns.spawn(async move {
                let _permit = permit;
                let tls = match tokio::time::timeout(limits.handshake, acceptor.accept(tcp)).await {
                    Ok(Ok(t)) => t,
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!("TLS handshake not completed within the handshake timeout; closed");
                        return;
                    }
                };
                let (io, activity) = Tracked::new(tls);
                let mut builder = auto::Builder::new(TokioExecutor::new());
                builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header);
                builder.http2().timer(TokioTimer::new());
                // A request being worked on (no byte moving while the server thinks) is not idle.
                let busy = Busy::default();
                let service = {
                    let busy = busy.clone();
                    tower::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let slot = Arc::new(std::sync::Mutex::new(None));
                        let mut req = req.map(|b| axum::body::Body::new(EndOfBody::new(b, &busy, &slot)));
                        req.extensions_mut().insert(local_port);
                        let app = app.clone();
                        async move {
                            let resp = tower::ServiceExt::oneshot(app, req).await;
                            drop(slot.lock().map(|mut s| s.take()));
                            resp
                        }
                    })
                };
                let conn = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
                tokio::pin!(conn);
                let mut draining = false;
                let tick = (limits.idle / 4).min(std::time::Duration::from_secs(1));
                loop {
                    tokio::select! {
                        r = conn.as_mut() => {
                            if let Err(e) = r {
                                tracing::debug!(error = %e, "connection ended with an error");
                            }
                            return;
                        }
                        _ = stop.changed(), if !draining => {
                            // Finish the requests in flight, accept no new ones on this connection.
                            conn.as_mut().graceful_shutdown();
                            draining = true;
                        }
                        () = tokio::time::sleep(tick) => {
                            if !busy.any() && activity.idle() >= limits.idle {
                                tracing::debug!("no byte moved within the idle timeout; connection closed");
                                return;
                            }
                        }
                    }
                }
            });
        }
        // Graceful shutdown: wait (bounded) for the connections to finish their requests.
        let drain = async { while conns.join_next().await.is_some() {} };
        if tokio::time::timeout(std::time::Duration::from_secs(10), drain).await.is_err() {
            tracing::warn!("connections still open 10 s after shutdown began; closing them");
            conns.abort_all();
        }
    })
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
