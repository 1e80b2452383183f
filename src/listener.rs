//! The gRPC listener's accept loop: the connection-level limits that tonic does not have.
//!
//! tonic (with hyper) bounds streams per connection, header lists, message sizes, keepalive and
//! connection age. It has no connection cap, no deadline for a new connection to start talking,
//! no idle timeout, and its own accept loop retries at once when the process is out of file
//! descriptors, spinning a core. So this module owns the accept loop and hands tonic connections
//! that are already known to speak HTTP/2:
//!
//! - At most `max_connections` are open at once. A semaphore permit travels with each connection
//!   (handshake included) and is released when it closes; beyond the cap a new connection is
//!   closed at once, so its client fails fast instead of hanging. The permits held are what the
//!   `scopegate_connections` gauge shows, when one is given.
//! - The 24-byte HTTP/2 client preface must arrive within `handshake_timeout`, or the connection
//!   is closed; so is one that sends anything else (the server speaks only HTTP/2). The preface is
//!   replayed to tonic, which reads it as if from the socket.
//! - A connection that carries no request frame (HEADERS, DATA, CONTINUATION) for `idle_timeout`
//!   is closed: the read side reports end of stream. PING, SETTINGS and WINDOW_UPDATE frames do
//!   not count, so keepalive pings cannot keep an unused connection open for ever.
//! - When `accept` fails for lack of resources (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`), the
//!   loop backs off, 10 ms doubling to 1 s, logging once per streak, instead of retrying at once.
//!
//! - With TLS, the TLS handshake and the preface must both finish within `handshake_timeout`.
//!   The server configuration is read afresh for each connection from a shared slot, so a reload
//!   replaces certificates, key and client CA for the next handshake without a restart; a
//!   client without an acceptable certificate (when one is required) fails the TLS handshake
//!   and never reaches the gRPC server. Plaintext sent to a TLS listener fails it too.
//!
//! Connections reach tonic through a channel, already past these checks.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::{Instant, Sleep};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// The HTTP/2 client connection preface (RFC 9113 §3.4).
pub const HTTP2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Shortest and longest pause after `accept` fails for lack of resources.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));

/// How often, at most, refused connections (over the cap) are logged.
const CAPACITY_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The limits this module enforces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once, handshakes included.
    pub max_connections: usize,
    /// Time a new connection has to send the HTTP/2 preface.
    pub handshake_timeout: Duration,
    /// Time without a request frame after which a connection is closed.
    pub idle_timeout: Duration,
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

/// The accepted, HTTP/2-speaking connections of `listener`, for tonic's
/// `serve_with_incoming_shutdown`; over TLS when `tls` is given (TCP only). `open`, when given,
/// follows the number of connections holding a slot under the cap. The accept loop runs until
/// the stream is dropped.
pub fn incoming(
    listener: impl Into<Bound>,
    limits: Limits,
    tls: Option<TlsSlot>,
    open: Option<Gauge>,
) -> ReceiverStream<io::Result<Connection>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(accept_loop(listener.into(), limits, tls, open, tx));
    ReceiverStream::new(rx)
}

/// One connection's place under the cap: its semaphore permit, counted in the gauge of open
/// connections from when it is taken until it is dropped with the connection (or with a
/// handshake that failed).
struct Slot {
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
    tx: mpsc::Sender<io::Result<Connection>>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut backoff: Option<Duration> = None;
    let mut refused: u64 = 0;
    let mut last_refusal_log: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            // tonic dropped the stream: the server is shutting down.
            () = tx.closed() => return,
        };
        let (transport, remote) = match accepted {
            Ok(accepted) => {
                backoff = None;
                accepted
            }
            Err(error) if out_of_resources(&error) => {
                let delay = backoff.map_or(ACCEPT_BACKOFF.0, |d| (d * 2).min(ACCEPT_BACKOFF.1));
                if backoff.is_none() {
                    tracing::warn!(
                        %error,
                        "cannot accept connections (out of file descriptors or memory); \
                         backing off until it clears"
                    );
                }
                backoff = Some(delay);
                tokio::time::sleep(delay).await;
                continue;
            }
            // A connection that failed before it was accepted (reset, aborted): the next one.
            Err(error) => {
                tracing::debug!(%error, "accept failed");
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            refused += 1;
            if last_refusal_log.is_none_or(|at| at.elapsed() >= CAPACITY_LOG_INTERVAL) {
                tracing::warn!(
                    max_connections = limits.max_connections,
                    refused,
                    "connection limit reached; closing new connections"
                );
                last_refusal_log = Some(Instant::now());
                refused = 0;
            }
            drop(transport);
            continue;
        };
        let permit = Slot::new(permit, open.clone());
        let (tx, limits) = (tx.clone(), limits.clone());
        let tls = tls.as_ref().map(|slot| slot.load_full());
        tokio::spawn(async move {
            if let Some(connection) = handshake(transport, remote, permit, &limits, tls).await {
                let _ = tx.send(Ok(connection)).await;
            }
        });
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
            Some(Connection::new(transport, permit, limits.idle_timeout))
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

impl Transport {
    fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Transport::Plain(tcp) => Some(tcp),
            Transport::Tls(tls) => Some(tls.get_ref().0),
            Transport::Unix(_) => None,
        }
    }
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
/// preface replayed first, the idle deadline enforced on reads, and the connection's slot under
/// the cap.
pub struct Connection {
    stream: Transport,
    /// How many bytes of the preface have been handed to the reader.
    replayed: usize,
    frames: FrameWalker,
    idle_timeout: Duration,
    last_request: Instant,
    idle: Pin<Box<Sleep>>,
    _permit: Slot,
}

impl Connection {
    fn new(stream: Transport, permit: Slot, idle_timeout: Duration) -> Self {
        let now = Instant::now();
        Connection {
            stream,
            replayed: 0,
            frames: FrameWalker::default(),
            idle_timeout,
            last_request: now,
            idle: Box::pin(tokio::time::sleep_until(now + idle_timeout)),
            _permit: permit,
        }
    }

    /// Ready when the connection has carried no request frame for the idle timeout.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            let deadline = self.last_request + self.idle_timeout;
            if Instant::now() >= deadline {
                return Poll::Ready(());
            }
            if self.idle.deadline() != deadline {
                self.idle.as_mut().reset(deadline);
            }
            ready!(self.idle.as_mut().poll(cx));
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
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if this.frames.feed(&buf.filled()[before..]) {
                    this.last_request = Instant::now();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => match this.poll_idle(cx) {
                // End of stream: hyper closes the connection as if the client had.
                Poll::Ready(()) => {
                    tracing::debug!(timeout = ?this.idle_timeout, "idle connection; closing");
                    Poll::Ready(Ok(()))
                }
                Poll::Pending => Poll::Pending,
            },
        }
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

impl Connected for Connection {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        match self.stream.tcp() {
            Some(tcp) => tcp.connect_info(),
            None => TcpConnectInfo {
                local_addr: None,
                remote_addr: None,
            },
        }
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
