//! The gRPC listeners: the accept loop, the connection-level limits, and the serving of each
//! connection by hyper's HTTP/2 server over tonic's routes.
//!
//! tonic's own server has no connection cap, no deadline for a new connection to start talking,
//! no idle timeout, retries at once when the process is out of file descriptors (spinning a
//! core), and offers no way to close one connection gracefully. So this module owns the accept
//! loop and serves every connection itself:
//!
//! - At most `max_connections` are open at once. A semaphore permit travels with each connection
//!   (handshake included) and is released when it closes; beyond the cap a new connection is
//!   closed at once, so its client fails fast instead of hanging. The permits held are what the
//!   `scopegate_connections` gauge shows, when one is given.
//! - The 24-byte HTTP/2 client preface must arrive within `handshake_timeout`, or the connection
//!   is closed; so is one that sends anything else (the server speaks only HTTP/2, with prior
//!   knowledge). The preface is replayed to hyper, which reads it as if from the socket.
//! - When `accept` fails for lack of resources (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`), the
//!   loop backs off, 10 ms doubling to 1 s, logging once per streak, instead of retrying at once.
//! - With TLS, the TLS handshake and the preface must both finish within `handshake_timeout`.
//!   The server configuration is read afresh for each connection from a shared slot, so a reload
//!   replaces certificates, key and client CA for the next handshake without a restart; a
//!   client without an acceptable certificate (when one is required) fails the TLS handshake
//!   and never reaches the gRPC server. Plaintext sent to a TLS listener fails it too.
//!
//! Each connection is then served by [`hyper::server::conn::http2`] with the settings tonic's
//! server applied (streams per connection, header list size, keepalive PINGs and their timeout,
//! hyper's timer) and the request extensions tonic adds (the peer's addresses, and with TLS its
//! certificates), honouring a client's `grpc-timeout` as tonic does. A connection is told to go
//! away with a graceful HTTP/2 GOAWAY (NO_ERROR), never cut, when:
//!
//! - it is idle: no request frame (HEADERS, DATA, CONTINUATION) for `idle_timeout` and no stream
//!   in flight. PING, SETTINGS and WINDOW_UPDATE frames do not count, so keepalive pings cannot
//!   keep an unused connection open for ever; the end of a stream counts, so the timeout runs
//!   from the last answer;
//! - it reaches `max_connection_age`;
//! - the server shuts down.
//!
//! hyper's graceful shutdown sends GOAWAY with the highest stream id and a PING, and after the
//! PING's answer a second GOAWAY with the last stream it took: a Check the client sent before
//! it saw the first GOAWAY is still answered, and the client opens its next stream on a new
//! connection. Streams in flight finish. A connection still open `idle_timeout` after its
//! GOAWAY without a request frame since (a client that never answers the PING, or holds a
//! stream open) is closed.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;
use tonic::service::Routes;
use tonic::transport::server::{Connected as _, TcpConnectInfo, TlsConnectInfo};

/// The HTTP/2 client connection preface (RFC 9113 §3.4).
pub const HTTP2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Shortest and longest pause after `accept` fails for lack of resources.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));

/// How often, at most, refused connections (over the cap) are logged.
const CAPACITY_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The limits this module enforces, and the HTTP/2 settings each connection is served with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once, handshakes included.
    pub max_connections: usize,
    /// Time a new connection has to send the HTTP/2 preface.
    pub handshake_timeout: Duration,
    /// Time without a request frame (and with no stream in flight) after which a connection is
    /// told to go away; also how long it may stay open after that without a request frame.
    pub idle_timeout: Duration,
    /// Streams a client may have open at once on one connection
    /// (`SETTINGS_MAX_CONCURRENT_STREAMS`).
    pub max_concurrent_streams: u32,
    /// Largest request header list, in bytes (`SETTINGS_MAX_HEADER_LIST_SIZE`).
    pub max_header_list_bytes: u32,
    /// How often to PING the client, and how long it has to answer before the connection is
    /// closed; `None`: no keepalive pings.
    pub keepalive: Option<(Duration, Duration)>,
    /// Age at which a connection is told to go away; `None`: no limit.
    pub max_connection_age: Option<Duration>,
}

/// The TLS server configuration in force, replaced whole on reload.
pub type TlsSlot = Arc<arc_swap::ArcSwap<rustls::ServerConfig>>;

/// A bound listening socket: TCP, or a Unix domain socket (for an Envoy on the same host).
#[derive(Debug)]
pub enum Bound {
    /// A TCP listener.
    Tcp(TcpListener),
    /// A Unix socket listener, and its path.
    Unix(UnixListener, std::path::PathBuf),
}

impl From<TcpListener> for Bound {
    fn from(listener: TcpListener) -> Bound {
        Bound::Tcp(listener)
    }
}

impl Bound {
    /// Where it listens, for logs: `IP:PORT` or `unix:PATH`.
    pub fn describe(&self) -> String {
        match self {
            Bound::Tcp(listener) => listener
                .local_addr()
                .map_or_else(|_| "?".into(), |a| a.to_string()),
            Bound::Unix(_, path) => format!("unix:{}", path.display()),
        }
    }

    async fn accept(&self) -> io::Result<(Transport, String)> {
        match self {
            Bound::Tcp(listener) => {
                let (stream, remote) = listener.accept().await?;
                // Nagle off: a Check answer is a few small frames that the client waits for.
                let _ = stream.set_nodelay(true);
                Ok((Transport::Plain(stream), remote.to_string()))
            }
            Bound::Unix(listener, _) => {
                let (stream, _) = listener.accept().await?;
                Ok((Transport::Unix(stream), "unix peer".into()))
            }
        }
    }
}

/// Serves `routes` on the connections `listener` accepts (over TLS when `tls` is given; TCP
/// only), each under `limits`, until `shutdown` resolves; `open`, when given, follows the number
/// of connections holding a place under the cap. Then it stops accepting (the listening
/// socket is closed), tells every connection to go away and returns once all have closed.
/// Dropping the returned future closes every connection at once: that is the drain deadline.
pub async fn serve(
    listener: impl Into<Bound>,
    limits: Limits,
    tls: Option<TlsSlot>,
    open: Option<Gauge>,
    routes: Routes,
    shutdown: impl Future<Output = ()>,
) {
    let http2 = http2_builder(&limits);
    let mut incoming = incoming(listener.into(), limits.clone(), tls, open);
    let (closing_tx, closing_rx) = watch::channel(false);
    // Owned here, so that dropping this future aborts every connection task.
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = incoming.next() => match accepted {
                Some(connection) => {
                    connections.spawn(serve_connection(
                        connection,
                        routes.clone(),
                        http2.clone(),
                        limits.clone(),
                        closing_rx.clone(),
                    ));
                }
                None => break,
            },
            // Reap finished connections, so the set holds only open ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    // Dropping the stream ends the accept loop, which closes the listening socket.
    drop(incoming);
    let _ = closing_tx.send(true);
    while connections.join_next().await.is_some() {}
}

/// hyper's HTTP/2 server with the settings tonic's server gave it: the timer (which keepalive
/// needs), streams per connection, header list size, keepalive. Everything else keeps hyper's
/// defaults, as under tonic, except the cap on streams a client makes the server reset
/// (`max_local_error_reset_streams`), which tonic lifted and this keeps at hyper's 1024.
fn http2_builder(limits: &Limits) -> hyper::server::conn::http2::Builder<TokioExecutor> {
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_concurrent_streams)
        .max_header_list_size(limits.max_header_list_bytes);
    if let Some((interval, timeout)) = limits.keepalive {
        builder
            .keep_alive_interval(interval)
            .keep_alive_timeout(timeout);
    }
    builder
}

/// Why a connection is told to go away, for the log.
#[derive(Debug, Clone, Copy)]
enum GoingAway {
    Idle,
    Aged,
    ShuttingDown,
}

/// Serves one connection until it closes: GOAWAY when it is idle, aged or the server shuts down
/// (`closing`), and a hard close when it stays open an idle timeout after that without a
/// request frame.
async fn serve_connection(
    connection: Connection,
    routes: Routes,
    http2: hyper::server::conn::http2::Builder<TokioExecutor>,
    limits: Limits,
    mut closing: watch::Receiver<bool>,
) {
    let activity = Arc::clone(&connection.activity);
    let service = Streams {
        routes,
        activity: Arc::clone(&activity),
        peer: connection.peer(),
    };
    let served =
        http2.serve_connection(TokioIo::new(connection), TowerToHyperService::new(service));
    tokio::pin!(served);
    let aged = async {
        match limits.max_connection_age {
            Some(age) => tokio::time::sleep(age).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(aged);
    let mut went_away: Option<Instant> = None;
    loop {
        let why = tokio::select! {
            result = &mut served => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended with an error");
                }
                return;
            }
            () = activity.idle(limits.idle_timeout, went_away) => {
                if went_away.is_some() {
                    tracing::debug!(
                        timeout = ?limits.idle_timeout,
                        "connection still open an idle timeout after GOAWAY; closing"
                    );
                    return;
                }
                GoingAway::Idle
            }
            () = &mut aged, if went_away.is_none() => GoingAway::Aged,
            _ = closing.wait_for(|closing| *closing), if went_away.is_none() => {
                GoingAway::ShuttingDown
            }
        };
        tracing::debug!(reason = ?why, "connection told to go away (GOAWAY)");
        served.as_mut().graceful_shutdown();
        went_away = Some(Instant::now());
    }
}

/// The accepted, HTTP/2-speaking connections of `listener`, over TLS when `tls` is given, each
/// counted in `open` while it holds its place. The accept loop runs until the stream is dropped.
fn incoming(
    listener: Bound,
    limits: Limits,
    tls: Option<TlsSlot>,
    open: Option<Gauge>,
) -> ReceiverStream<Connection> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(accept_loop(listener, limits, tls, open, tx));
    ReceiverStream::new(rx)
}

/// One connection's place under the cap: its semaphore permit, counted in the gauge of open
/// connections from when it is taken until it is dropped with the connection (or with a
/// handshake that failed).
pub(crate) struct Slot {
    _permit: OwnedSemaphorePermit,
    open: Option<Gauge>,
}

impl Slot {
    fn new(permit: OwnedSemaphorePermit, open: Option<Gauge>) -> Slot {
        if let Some(open) = &open {
            open.inc();
        }
        Slot {
            _permit: permit,
            open,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(open) = &self.open {
            open.dec();
        }
    }
}

async fn accept_loop(
    listener: Bound,
    limits: Limits,
    tls: Option<TlsSlot>,
    open: Option<Gauge>,
    tx: mpsc::Sender<Connection>,
) {
    let mut admission = Admission::new(limits.max_connections, open);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            // `serve` dropped the stream: the server is shutting down.
            () = tx.closed() => return,
        };
        let Some(((transport, remote), permit)) = admission.admit(accepted).await else {
            continue;
        };
        let (tx, limits) = (tx.clone(), limits.clone());
        let tls = tls.as_ref().map(|slot| slot.load_full());
        tokio::spawn(async move {
            if let Some(connection) = handshake(transport, remote, permit, &limits, tls).await {
                let _ = tx.send(connection).await;
            }
        });
    }
}

/// What every accept loop does with the result of `accept`: backs off while the process is out
/// of resources, and gives an accepted connection its place under the cap, or closes it at once
/// (logging at most once per [`CAPACITY_LOG_INTERVAL`]) when there is none.
pub(crate) struct Admission {
    permits: Arc<Semaphore>,
    max_connections: usize,
    open: Option<Gauge>,
    backoff: Option<Duration>,
    refused: u64,
    last_refusal_log: Option<Instant>,
}

impl Admission {
    /// At most `max_connections` at once, counted in `open` when given.
    pub(crate) fn new(max_connections: usize, open: Option<Gauge>) -> Admission {
        Admission {
            permits: Arc::new(Semaphore::new(max_connections)),
            max_connections,
            open,
            backoff: None,
            refused: 0,
            last_refusal_log: None,
        }
    }

    /// The accepted connection with its place under the cap, or `None` (after the backoff's
    /// pause, when `accept` failed for lack of resources): accept the next one.
    pub(crate) async fn admit<T>(&mut self, accepted: io::Result<T>) -> Option<(T, Slot)> {
        let connection = match accepted {
            Ok(connection) => {
                self.backoff = None;
                connection
            }
            Err(error) if out_of_resources(&error) => {
                let delay = self
                    .backoff
                    .map_or(ACCEPT_BACKOFF.0, |d| (d * 2).min(ACCEPT_BACKOFF.1));
                if self.backoff.is_none() {
                    tracing::warn!(
                        %error,
                        "cannot accept connections (out of file descriptors or memory); \
                         backing off until it clears"
                    );
                }
                self.backoff = Some(delay);
                tokio::time::sleep(delay).await;
                return None;
            }
            // A connection that failed before it was accepted (reset, aborted): the next one.
            Err(error) => {
                tracing::debug!(%error, "accept failed");
                return None;
            }
        };
        let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else {
            self.refused += 1;
            if self
                .last_refusal_log
                .is_none_or(|at| at.elapsed() >= CAPACITY_LOG_INTERVAL)
            {
                tracing::warn!(
                    max_connections = self.max_connections,
                    refused = self.refused,
                    "connection limit reached; closing new connections"
                );
                self.last_refusal_log = Some(Instant::now());
                self.refused = 0;
            }
            return None;
        };
        Some((connection, Slot::new(permit, self.open.clone())))
    }
}

/// Whether an `accept` error means the process or system is out of something, in which case
/// retrying at once only spins.
pub(crate) fn out_of_resources(error: &io::Error) -> bool {
    // EMFILE 24, ENFILE 23, ENOBUFS 105, ENOMEM 12 on Linux; other systems report the first two
    // the same way, and an unmatched code only loses the backoff, not the connection.
    matches!(error.raw_os_error(), Some(24 | 23 | 105 | 12))
        || error.kind() == io::ErrorKind::OutOfMemory
}

/// Completes the TLS handshake (with `tls`) and reads the HTTP/2 preface, both within the
/// handshake timeout; the connection, or `None` (closed).
async fn handshake(
    transport: Transport,
    remote: String,
    permit: Slot,
    limits: &Limits,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> Option<Connection> {
    let opening = async {
        let mut transport = match (tls, transport) {
            (None, transport) => transport,
            // The configuration refuses TLS on a Unix socket; were it given one, refuse it.
            (Some(_), Transport::Unix(_) | Transport::Tls(_)) => {
                return Err(io::Error::other("TLS is for TCP connections only"));
            }
            (Some(config), Transport::Plain(stream)) => {
                let accepted = tokio_rustls::TlsAcceptor::from(config)
                    .accept(stream)
                    .await
                    .map_err(|error| {
                        tracing::debug!(%remote, %error, "TLS handshake failed; closing");
                        error
                    })?;
                Transport::Tls(Box::new(accepted))
            }
        };
        let mut preface = [0u8; 24];
        transport.read_exact(&mut preface).await?;
        Ok::<_, io::Error>((transport, preface))
    };
    match tokio::time::timeout(limits.handshake_timeout, opening).await {
        Ok(Ok((transport, preface))) if &preface == HTTP2_PREFACE => {
            Some(Connection::new(transport, permit))
        }
        Ok(Ok(_)) => {
            tracing::debug!(%remote, "not an HTTP/2 client; closing");
            None
        }
        Ok(Err(_)) => None,
        Err(_) => {
            tracing::debug!(%remote, timeout = ?limits.handshake_timeout, "no handshake in time; closing");
            None
        }
    }
}

/// The byte stream under a connection: TCP, TLS over TCP, or a Unix socket.
enum Transport {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    Unix(UnixStream),
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Transport::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
            Transport::Unix(unix) => Pin::new(unix).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Transport::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
            Transport::Unix(unix) => Pin::new(unix).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            Transport::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
            Transport::Unix(unix) => Pin::new(unix).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Transport::Plain(tcp) => tcp.is_write_vectored(),
            Transport::Tls(tls) => tls.is_write_vectored(),
            Transport::Unix(unix) => unix.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Transport::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
            Transport::Unix(unix) => Pin::new(unix).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Transport::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
            Transport::Unix(unix) => Pin::new(unix).poll_shutdown(cx),
        }
    }
}

/// An accepted connection that has sent the HTTP/2 preface: the TCP (or TLS) stream, with the
/// preface replayed first and request frames noted as activity, and the connection's slot under
/// the cap.
struct Connection {
    stream: Transport,
    /// How many bytes of the preface have been handed to the reader.
    replayed: usize,
    frames: FrameWalker,
    activity: Arc<Activity>,
    _permit: Slot,
}

impl Connection {
    fn new(stream: Transport, permit: Slot) -> Self {
        Connection {
            stream,
            replayed: 0,
            frames: FrameWalker::default(),
            activity: Arc::new(Activity::new()),
            _permit: permit,
        }
    }

    /// Who is on the other end, as tonic puts it in request extensions.
    fn peer(&self) -> Peer {
        match &self.stream {
            Transport::Plain(tcp) => Peer::Tcp(tcp.connect_info()),
            Transport::Tls(tls) => Peer::Tls(tls.connect_info()),
            Transport::Unix(_) => Peer::Tcp(TcpConnectInfo {
                local_addr: None,
                remote_addr: None,
            }),
        }
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.replayed < HTTP2_PREFACE.len() {
            let rest = &HTTP2_PREFACE[this.replayed..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.replayed += n;
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut this.stream).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = read
            && this.frames.feed(&buf.filled()[before..])
        {
            this.activity.touch();
        }
        read
    }
}

impl AsyncWrite for Connection {
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

/// The connection information tonic's server puts in every request's extensions, so
/// `Request::remote_addr` and, over TLS, `Request::peer_certs` answer as under tonic.
#[derive(Clone)]
enum Peer {
    Tcp(TcpConnectInfo),
    Tls(TlsConnectInfo<TcpConnectInfo>),
}

impl Peer {
    fn insert_into(&self, extensions: &mut http::Extensions) {
        match self {
            Peer::Tcp(tcp) => {
                extensions.insert(tcp.clone());
            }
            Peer::Tls(tls) => {
                extensions.insert(tls.get_ref().clone());
                extensions.insert(tls.clone());
            }
        }
    }
}

/// What the idle timeout watches on one connection: when it last carried a request frame or
/// finished a stream, and how many streams are in flight. Written by the connection's reads
/// and by its streams' tasks, read by the connection's task.
#[derive(Debug)]
struct Activity {
    /// The moment the times below count from.
    origin: Instant,
    /// Nanoseconds from `origin` to the last request frame or stream end.
    last: AtomicU64,
    /// Streams whose answer has not been sent (or dropped) yet.
    in_flight: AtomicUsize,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            origin: Instant::now(),
            last: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    /// Notes activity now.
    fn touch(&self) {
        let nanos = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last.fetch_max(nanos, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.origin + Duration::from_nanos(self.last.load(Ordering::Relaxed))
    }

    /// A stream has started; it is in flight until the guard is dropped.
    fn stream(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    /// Resolves once the connection has been idle for `timeout`: no request frame or stream end
    /// for that long and no stream in flight. After a GOAWAY sent at `went_away`, counts from
    /// then and no longer waits for streams in flight.
    async fn idle(&self, timeout: Duration, went_away: Option<Instant>) {
        loop {
            let since = went_away.map_or(self.last(), |at| at.max(self.last()));
            let deadline = since + timeout;
            if Instant::now() < deadline {
                tokio::time::sleep_until(deadline).await;
            } else if went_away.is_some() || self.in_flight.load(Ordering::Relaxed) == 0 {
                return;
            } else {
                // A stream is in flight; its end counts as activity, so the deadline moves.
                tokio::time::sleep(timeout).await;
            }
        }
    }
}

/// One stream in flight on a connection; its end is activity.
#[derive(Debug)]
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The per-connection service in front of tonic's routes: counts each stream in flight until
/// its answer has been sent, adds the connection information to the request, and answers a
/// client's `grpc-timeout` as tonic does.
#[derive(Clone)]
struct Streams {
    routes: Routes,
    activity: Arc<Activity>,
    peer: Peer,
}

impl tower::Service<http::Request<hyper::body::Incoming>> for Streams {
    type Response = http::Response<Tracked>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<http::Response<Tracked>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        tower::Service::<http::Request<tonic::body::Body>>::poll_ready(&mut self.routes, cx)
    }

    fn call(&mut self, request: http::Request<hyper::body::Incoming>) -> Self::Future {
        let stream = self.activity.stream();
        let mut request = request.map(tonic::body::Body::new);
        self.peer.insert_into(request.extensions_mut());
        let deadline = grpc_timeout(request.headers());
        let answer = self.routes.call(request);
        Box::pin(async move {
            let response = match deadline {
                None => answer.await?,
                Some(deadline) => match tokio::time::timeout(deadline, answer).await {
                    Ok(response) => response?,
                    // What tonic answers when a client's deadline passes.
                    Err(_) => {
                        tonic::Status::cancelled(tonic::TimeoutExpired(()).to_string()).into_http()
                    }
                },
            };
            Ok(response.map(|body| Tracked {
                body,
                _stream: stream,
            }))
        })
    }
}

/// The `grpc-timeout` header's deadline (gRPC over HTTP/2: 1 to 8 digits and a unit), or `None`
/// when it is absent or malformed, as tonic reads it (but for a leading `+`, which tonic's
/// integer parsing lets through and the grammar does not).
fn grpc_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at_checked(value.len().checked_sub(1)?)?;
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// A response body that keeps its stream counted in flight until hyper has sent it all (or
/// dropped it).
struct Tracked {
    body: tonic::body::Body,
    _stream: InFlight,
}

impl http_body::Body for Tracked {
    type Data = <tonic::body::Body as http_body::Body>::Data;
    type Error = <tonic::body::Body as http_body::Body>::Error;

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

/// Walks the HTTP/2 frame headers in the bytes a client sends after the preface, to tell request
/// frames from connection upkeep. It only reads the 9-byte headers (length, type) and skips
/// payloads; framing errors are hyper's to find.
#[derive(Debug, Default)]
struct FrameWalker {
    header: [u8; 9],
    have: usize,
    skip: usize,
}

impl FrameWalker {
    /// Feeds the next bytes; whether a request frame (DATA, HEADERS, CONTINUATION) began in them.
    fn feed(&mut self, mut bytes: &[u8]) -> bool {
        let mut request = false;
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (self.header.len() - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have == self.header.len() {
                self.have = 0;
                let [l0, l1, l2, kind, ..] = self.header;
                self.skip = u32::from_be_bytes([0, l0, l1, l2]) as usize;
                request |= matches!(kind, 0x0 | 0x1 | 0x9);
            }
        }
        request
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
        let len = (payload.len() as u32).to_be_bytes();
        let mut out = vec![len[1], len[2], len[3], kind, 0, 0, 0, 0, 1];
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn only_request_frames_count_as_activity() {
        let settings = frame(0x4, &[0; 12]);
        let ping = frame(0x6, &[7; 8]);
        let window = frame(0x8, &[0, 0, 1, 0]);
        let headers = frame(0x1, &[0x82; 20]);
        let data = frame(0x0, &[1; 300]);
        let continuation = frame(0x9, &[0x84; 3]);
        for (name, bytes, want) in [
            ("settings", settings.clone(), false),
            ("ping", ping.clone(), false),
            ("window update", window.clone(), false),
            ("headers", headers.clone(), true),
            ("data", data.clone(), true),
            ("continuation", continuation.clone(), true),
            (
                "upkeep only",
                [settings, ping.clone(), window].concat(),
                false,
            ),
            ("ping then headers", [ping, headers].concat(), true),
        ] {
            assert_eq!(FrameWalker::default().feed(&bytes), want, "{name}");
            // Byte by byte, the same answer: frame headers may be split across reads.
            let mut walker = FrameWalker::default();
            let seen: Vec<bool> = bytes.iter().map(|b| walker.feed(&[*b])).collect();
            let split = seen.contains(&true);
            assert_eq!(split, want, "{name}, one byte at a time");
        }
        // A payload that happens to look like a HEADERS frame header is skipped, not read.
        let mut walker = FrameWalker::default();
        assert!(!walker.feed(&frame(0x6, &[0, 0, 0, 1, 0, 0, 0, 0])));
        assert!(!walker.feed(&frame(0x4, &[])));
    }

    #[test]
    fn grpc_timeouts_are_read_by_the_grpc_grammar() {
        let ms = Duration::from_millis;
        for (value, want) in [
            ("50m", Some(ms(50))),
            ("1S", Some(Duration::from_secs(1))),
            ("2M", Some(Duration::from_secs(120))),
            ("1H", Some(Duration::from_secs(3600))),
            ("250u", Some(Duration::from_micros(250))),
            ("99999999n", Some(Duration::from_nanos(99_999_999))),
            ("0m", Some(Duration::ZERO)),
            // Nine digits, no digits, no unit, another unit, signs, spaces: ignored.
            ("123456789m", None),
            ("m", None),
            ("50", None),
            ("", None),
            ("50x", None),
            ("-5m", None),
            ("+5m", None),
            (" 5m", None),
            ("5 m", None),
            ("5é", None),
        ] {
            let mut headers = http::HeaderMap::new();
            headers.insert(
                "grpc-timeout",
                http::HeaderValue::from_str(value).expect("header value"),
            );
            assert_eq!(grpc_timeout(&headers), want, "{value:?}");
        }
        assert_eq!(grpc_timeout(&http::HeaderMap::new()), None);
    }

    /// The idle timer counts from the last request frame or stream end, waits while a stream is
    /// in flight, and after a GOAWAY counts from it and no longer waits for streams.
    #[tokio::test(start_paused = true)]
    async fn idleness_waits_for_streams_in_flight() {
        let timeout = Duration::from_secs(10);
        let idle_after = |activity: Arc<Activity>, went_away: Option<Instant>| {
            tokio::spawn(async move {
                let started = Instant::now();
                activity.idle(timeout, went_away).await;
                started.elapsed()
            })
        };
        // Nothing happens: idle after the timeout.
        let activity = Arc::new(Activity::new());
        assert_eq!(
            idle_after(Arc::clone(&activity), None).await.expect("task"),
            timeout
        );

        // A request frame 4 s in moves the deadline to 14 s.
        let activity = Arc::new(Activity::new());
        let waiting = idle_after(Arc::clone(&activity), None);
        tokio::time::sleep(Duration::from_secs(4)).await;
        activity.touch();
        assert_eq!(waiting.await.expect("task"), Duration::from_secs(14));

        // A stream in flight from 1 s to 25 s: idle 10 s after it ends, at 35 s.
        let activity = Arc::new(Activity::new());
        let waiting = idle_after(Arc::clone(&activity), None);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let stream = activity.stream();
        tokio::time::sleep(Duration::from_secs(24)).await;
        assert!(!waiting.is_finished(), "idle while a stream is in flight");
        drop(stream);
        assert_eq!(waiting.await.expect("task"), Duration::from_secs(35));

        // After a GOAWAY at 5 s, a stream still in flight does not hold the connection: closed
        // 10 s after the GOAWAY.
        let activity = Arc::new(Activity::new());
        let _stream = activity.stream();
        tokio::time::sleep(Duration::from_secs(5)).await;
        let waiting = idle_after(Arc::clone(&activity), Some(Instant::now()));
        assert_eq!(waiting.await.expect("task"), timeout);
    }

    #[test]
    fn resource_exhaustion_is_told_from_other_accept_errors() {
        for (code, want) in [
            (24, true),
            (23, true),
            (105, true),
            (12, true),
            (103, false),
        ] {
            assert_eq!(
                out_of_resources(&io::Error::from_raw_os_error(code)),
                want,
                "{code}"
            );
        }
    }
}
