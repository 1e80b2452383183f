//! The HTTP/1.1 listener: the accept loop, the connection-level limits, and the serving of each
//! connection by hyper's HTTP/1 server with keep-alive, generic over the service it serves.
//!
//! - At most `max_connections` are open at once, with the accept side of the gRPC listener
//!   ([`listener::Admission`]): a permit per connection, counted in a gauge while held; beyond
//!   the cap a new connection is closed at once; `accept` failing for lack of resources backs
//!   off instead of spinning.
//! - A request head (request line and headers) larger than `max_header_bytes` is answered
//!   **431** by hyper (`max_header_size`), and the connection is closed.
//! - A request head must be whole `header_timeout` after its first byte (after the connection
//!   opened, for the first request), or the connection is closed without an answer.
//! - A kept-alive connection that sends nothing for `idle_timeout` after its last answer is
//!   closed.
//!
//! The two timeouts are this module's, not hyper's `header_read_timeout`: since hyper 1.6 that
//! timer also starts as soon as a kept-alive connection falls idle after an answer (it is
//! re-armed on the next read of a head, which the connection asks for at once), so it would
//! bound the wait between requests by the head deadline. A proxy keeps its connections open
//! between requests for far longer than a head may take to arrive, so the two are told apart
//! here: the bytes read from the socket and the requests in flight say which phase a connection
//! is in, and only that phase's deadline runs.
//!
//! On shutdown the listening socket is closed and every connection is shut down gracefully by
//! hyper: an idle one is closed at once, one with a request in flight answers it (with
//! `connection: close`) and then closes. Dropping the future returned by [`serve`] closes every
//! connection at once: that is the drain deadline.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::listener::{Admission, Slot};

/// The limits this module enforces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once.
    pub max_connections: usize,
    /// Largest request head (request line and headers), in bytes; larger is answered 431.
    pub max_header_bytes: usize,
    /// Time a request head has to arrive whole, from its first byte (from the connection's
    /// opening, for the first request).
    pub header_timeout: Duration,
    /// Time a kept-alive connection may wait for its next request after an answer.
    pub idle_timeout: Duration,
}

/// Serves `service` on the connections `listener` accepts, each under `limits`, until
/// `shutdown` resolves; `open`, when given, follows the number of connections holding a place
/// under the cap. Then it stops accepting (the listening socket is closed), shuts every
/// connection down gracefully and returns once all have closed.
pub async fn serve<S, B>(
    listener: TcpListener,
    limits: Limits,
    open: Option<Gauge>,
    service: S,
    shutdown: impl Future<Output = ()>,
) where
    S: hyper::service::Service<http::Request<Incoming>, Response = http::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut admission = Admission::new(limits.max_connections, open);
    let (closing_tx, closing_rx) = watch::channel(false);
    // Owned here, so that dropping this future aborts every connection task.
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => {
                let Some(((stream, _remote), slot)) = admission.admit(accepted).await else {
                    continue;
                };
                // Nagle off: an answer is one small write the proxy waits for.
                let _ = stream.set_nodelay(true);
                connections.spawn(serve_connection(
                    stream,
                    slot,
                    service.clone(),
                    limits.clone(),
                    closing_rx.clone(),
                ));
            }
            // Reap finished connections, so the set holds only open ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let _ = closing_tx.send(true);
    while connections.join_next().await.is_some() {}
}

/// Serves one connection until it closes, its phase deadline passes, or (after `closing`) its
/// graceful shutdown ends.
async fn serve_connection<S, B>(
    stream: TcpStream,
    slot: Slot,
    service: S,
    limits: Limits,
    mut closing: watch::Receiver<bool>,
) where
    S: hyper::service::Service<http::Request<Incoming>, Response = http::Response<B>>
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let phase = Arc::new(Phase::new());
    let io = Watched {
        stream,
        phase: Arc::clone(&phase),
        _slot: slot,
    };
    let service = Tracking {
        inner: service,
        phase: Arc::clone(&phase),
    };
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .keep_alive(true)
        // This module's deadlines replace it (see the module documentation).
        .header_read_timeout(None)
        .max_header_size(limits.max_header_bytes);
    let served = http1.serve_connection(TokioIo::new(io), service);
    tokio::pin!(served);
    let mut shutting_down = false;
    loop {
        let deadline = phase.deadline(&limits);
        tokio::select! {
            result = &mut served => {
                if let Err(error) = result {
                    tracing::debug!(%error, "http connection ended with an error");
                }
                return;
            }
            () = sleep_until(deadline) => {
                // The phase may have moved on since the deadline was read: look again.
                if phase.deadline(&limits).is_some_and(|d| d <= Instant::now()) {
                    tracing::debug!(phase = ?phase.now(), "http connection past its deadline; closing");
                    return;
                }
            }
            _ = closing.wait_for(|closing| *closing), if !shutting_down => {
                shutting_down = true;
                served.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Sleeps until `deadline`, or for ever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Where one connection is between requests, which decides the deadline that runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for the first byte of a request since the given moment (its last answer).
    Idle(Instant),
    /// A request head has been arriving since the given moment.
    Head(Instant),
    /// This many requests are being answered (hyper answers one at a time; the count keeps a
    /// late end of one answer from hiding the next).
    Busy(usize),
}

/// One connection's [`State`], written by its socket reads and its requests, read by its task.
#[derive(Debug)]
struct Phase(Mutex<State>);

impl Phase {
    /// A new connection: its first request head is due from now.
    fn new() -> Phase {
        Phase(Mutex::new(State::Head(Instant::now())))
    }

    fn now(&self) -> State {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn update(&self, change: impl FnOnce(State) -> State) {
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        *state = change(*state);
    }

    /// Bytes arrived: an idle connection starts a request head.
    fn read(&self) {
        self.update(|state| match state {
            State::Idle(_) => State::Head(Instant::now()),
            other => other,
        });
    }

    /// A request's head is whole and it is being answered.
    fn request(&self) {
        self.update(|state| match state {
            State::Busy(n) => State::Busy(n + 1),
            State::Idle(_) | State::Head(_) => State::Busy(1),
        });
    }

    /// A request's answer has been sent (or dropped).
    fn answered(&self) {
        self.update(|state| match state {
            State::Busy(n) if n > 1 => State::Busy(n - 1),
            _ => State::Idle(Instant::now()),
        });
    }

    /// When the connection is closed unless its phase changes first; `None` while a request
    /// is being answered.
    fn deadline(&self, limits: &Limits) -> Option<Instant> {
        match self.now() {
            State::Idle(since) => Some(since + limits.idle_timeout),
            State::Head(since) => Some(since + limits.header_timeout),
            State::Busy(_) => None,
        }
    }
}

/// The socket of one connection, noting the bytes that arrive in its [`Phase`], and holding the
/// connection's place under the cap until it closes.
struct Watched {
    stream: TcpStream,
    phase: Arc<Phase>,
    _slot: Slot,
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = Pin::new(&mut this.stream).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = read
            && buf.filled().len() > before
        {
            this.phase.read();
        }
        read
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// The service in front of the one served: a request is in flight from its call until its
/// answer's body has been sent (or dropped).
struct Tracking<S> {
    inner: S,
    phase: Arc<Phase>,
}

impl<S, B> hyper::service::Service<http::Request<Incoming>> for Tracking<S>
where
    S: hyper::service::Service<http::Request<Incoming>, Response = http::Response<B>>,
    S::Future: Send + 'static,
    B: http_body::Body,
{
    type Response = http::Response<Tracked<B>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn call(&self, request: http::Request<Incoming>) -> Self::Future {
        self.phase.request();
        let answered = Answered(Arc::clone(&self.phase));
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await?;
            Ok(response.map(|body| Tracked {
                body,
                _answered: answered,
            }))
        })
    }
}

/// Marks a request answered when dropped.
struct Answered(Arc<Phase>);

impl Drop for Answered {
    fn drop(&mut self) {
        self.0.answered();
    }
}

/// A response body that keeps its request in flight until hyper has sent it all (or dropped
/// it).
pub struct Tracked<B> {
    body: B,
    _answered: Answered,
}

impl<B: http_body::Body + Unpin> http_body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each phase runs its own deadline: the head deadline from the connection's opening and
    /// from the first byte after an answer, the idle one from the answer, none while busy.
    #[tokio::test(start_paused = true)]
    async fn each_phase_runs_its_own_deadline() {
        let limits = Limits {
            max_connections: 1,
            max_header_bytes: 1024,
            header_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(30),
        };
        let opened = Instant::now();
        let phase = Phase::new();
        assert_eq!(
            phase.deadline(&limits),
            Some(opened + limits.header_timeout)
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        // More bytes of the same head do not move its deadline.
        phase.read();
        assert_eq!(
            phase.deadline(&limits),
            Some(opened + limits.header_timeout)
        );
        phase.request();
        assert_eq!(phase.deadline(&limits), None, "busy: no deadline");
        tokio::time::advance(Duration::from_secs(5)).await;
        phase.read();
        assert_eq!(
            phase.deadline(&limits),
            None,
            "bytes while busy are the request's"
        );
        phase.answered();
        let answered = Instant::now();
        assert_eq!(
            phase.deadline(&limits),
            Some(answered + limits.idle_timeout)
        );
        tokio::time::advance(Duration::from_secs(20)).await;
        phase.read();
        assert_eq!(
            phase.deadline(&limits),
            Some(Instant::now() + limits.header_timeout),
            "the next head's first byte starts the head deadline"
        );
    }
}
