//! The gRPC server's side of the configuration: where it listens (`listen`) and the `[server]`
//! table of its limits.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, invalid};

/// The `[server]` table as written: limits of the gRPC listener (all optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Connections open at once.
    pub max_connections: Option<u64>,
    /// Concurrent streams per HTTP/2 connection.
    pub max_concurrent_streams: Option<u64>,
    /// Largest request message accepted, in bytes.
    pub max_request_bytes: Option<u64>,
    /// Time a new connection has to send the HTTP/2 preface.
    pub handshake_timeout_seconds: Option<u64>,
    /// Time without a request frame after which a connection is closed.
    pub idle_timeout_seconds: Option<u64>,
    /// Age after which a connection is asked to go away.
    pub max_connection_age_seconds: Option<u64>,
    /// Interval of HTTP/2 keepalive pings.
    pub keepalive_interval_seconds: Option<u64>,
    /// Time to wait for a keepalive ping's answer.
    pub keepalive_timeout_seconds: Option<u64>,
    /// Deadline of one Check, answered in-band (503) when exceeded.
    pub check_timeout_ms: Option<u64>,
    /// Runtime worker threads; 0 (default): one per CPU.
    pub worker_threads: Option<u64>,
}

/// Where the gRPC listener listens: `IP:PORT`, or `unix:PATH` for a Unix domain socket (a
/// sidecar's Envoy on the same host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A Unix domain socket's path.
    Unix(std::path::PathBuf),
}

/// Longest Unix socket path, in bytes: `sun_path` holds 108 on Linux, NUL included.
pub const MAX_UNIX_SOCKET_PATH: usize = 107;

impl ListenAddr {
    /// Parses `IP:PORT` or `unix:PATH`.
    pub fn parse(text: &str) -> Result<ListenAddr, ConfigError> {
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() || path.len() > MAX_UNIX_SOCKET_PATH || path.contains('\0') {
                return Err(invalid(
                    "listen",
                    text,
                    format!("a Unix socket path is 1 to {MAX_UNIX_SOCKET_PATH} bytes"),
                ));
            }
            return Ok(ListenAddr::Unix(path.into()));
        }
        text.parse().map(ListenAddr::Tcp).map_err(|_| {
            invalid(
                "listen",
                text,
                "expected IP:PORT (e.g. \"0.0.0.0:9191\") or unix:PATH",
            )
        })
    }

    /// The TCP address, if it is one.
    pub fn tcp(&self) -> Option<SocketAddr> {
        match self {
            ListenAddr::Tcp(addr) => Some(*addr),
            ListenAddr::Unix(_) => None,
        }
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(addr) => write!(f, "{addr}"),
            ListenAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// Limits of the gRPC server, compiled from `[server]`. Each bounds what one client can make the
/// server hold or do; SECURITY.md's Limits table lists them with their defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLimits {
    /// Connections open at once; beyond it, a new connection is closed at once.
    pub max_connections: usize,
    /// SETTINGS_MAX_CONCURRENT_STREAMS of every connection.
    pub max_concurrent_streams: u32,
    /// Largest request message decoded, in bytes (a larger Check is refused with
    /// OUT_OF_RANGE, tonic's code for it, before it is buffered).
    pub max_request_bytes: usize,
    /// A connection that has not sent the HTTP/2 preface by then is closed.
    pub handshake_timeout: Duration,
    /// A connection that has carried no request frame for this long is closed.
    pub idle_timeout: Duration,
    /// A connection older than this is asked to go away (GOAWAY), then closed after a grace.
    pub max_connection_age: Duration,
    /// HTTP/2 PING interval.
    pub keepalive_interval: Duration,
    /// A PING unanswered for this long closes the connection.
    pub keepalive_timeout: Duration,
    /// One Check's deadline; past it, the answer is 503 in-band.
    pub check_timeout: Duration,
    /// Threads that run Checks; 0: one per CPU. One thread runs tokio's current-thread
    /// scheduler: no cross-thread wake-ups, and a first-in first-out run queue that lets the
    /// answers to Checks that arrived together leave in one write (the cheapest per Check,
    /// for a sidecar sharing a core or two with Envoy); more threads verify more tokens at once.
    pub worker_threads: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        RawServer::default()
            .compile()
            .unwrap_or_else(|_| unreachable!("the defaults are valid"))
    }
}

impl RawServer {
    /// The limits, each checked against its range; an error names `server.KEY` and the value.
    pub(super) fn compile(self) -> Result<ServerLimits, ConfigError> {
        let number = |key: &str, value: Option<u64>, default: u64, range: (u64, u64)| {
            let v = value.unwrap_or(default);
            if v < range.0 || v > range.1 {
                return Err(invalid(
                    format!("server.{key}"),
                    v,
                    format!("must be between {} and {}", range.0, range.1),
                ));
            }
            Ok(v)
        };
        let secs = |key: &str, value, default, range| {
            number(key, value, default, range).map(Duration::from_secs)
        };
        let limits = ServerLimits {
            max_connections: number("max_connections", self.max_connections, 1024, (1, 65_536))?
                as usize,
            max_concurrent_streams: number(
                "max_concurrent_streams",
                self.max_concurrent_streams,
                100,
                (1, 10_000),
            )? as u32,
            // Envoy's own request headers are at most 60 KiB by default, and a CheckRequest
            // carries them plus the path: 128 KiB leaves room, and a 4 MiB flood does not fit.
            max_request_bytes: number(
                "max_request_bytes",
                self.max_request_bytes,
                128 * 1024,
                (16 * 1024, 4 * 1024 * 1024),
            )? as usize,
            handshake_timeout: secs(
                "handshake_timeout_seconds",
                self.handshake_timeout_seconds,
                10,
                (1, 300),
            )?,
            idle_timeout: secs(
                "idle_timeout_seconds",
                self.idle_timeout_seconds,
                300,
                (1, 86_400),
            )?,
            max_connection_age: secs(
                "max_connection_age_seconds",
                self.max_connection_age_seconds,
                3_600,
                (1, 7 * 86_400),
            )?,
            keepalive_interval: secs(
                "keepalive_interval_seconds",
                self.keepalive_interval_seconds,
                60,
                (1, 3_600),
            )?,
            keepalive_timeout: secs(
                "keepalive_timeout_seconds",
                self.keepalive_timeout_seconds,
                20,
                (1, 600),
            )?,
            check_timeout: Duration::from_millis(number(
                "check_timeout_ms",
                self.check_timeout_ms,
                400,
                (10, 60_000),
            )?),
            worker_threads: number("worker_threads", self.worker_threads, 0, (0, 256))? as usize,
        };
        Ok(limits)
    }
}

/// The `[http_server]` table as written: limits of the HTTP authorization listener
/// (`http_listen`; all optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttpServer {
    /// Connections open at once.
    pub max_connections: Option<u64>,
    /// Largest request head (request line and headers), in bytes.
    pub max_header_bytes: Option<u64>,
    /// Time a request head has to arrive whole, from its first byte (from the connection's
    /// opening for the first request).
    pub header_timeout_seconds: Option<u64>,
    /// Time a kept-alive connection may wait for its next request.
    pub idle_timeout_seconds: Option<u64>,
}

/// Limits of the HTTP authorization listener, compiled from `[http_server]`. The README's
/// Limits table lists them with their defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpServerLimits {
    /// Connections open at once; beyond it, a new connection is closed at once.
    pub max_connections: usize,
    /// Largest request head (request line and headers) read, in bytes; a larger one is
    /// answered 431 and the connection closed.
    pub max_header_bytes: usize,
    /// A request head not complete this long after its first byte (after the connection
    /// opened, for the first request) closes the connection; a body not complete this long
    /// after its head is answered 408.
    pub header_timeout: Duration,
    /// A kept-alive connection with no request for this long after its last answer is closed.
    pub idle_timeout: Duration,
}

impl Default for HttpServerLimits {
    fn default() -> Self {
        RawHttpServer::default()
            .compile()
            .unwrap_or_else(|_| unreachable!("the defaults are valid"))
    }
}

impl RawHttpServer {
    /// The limits, each checked against its range; an error names `http_server.KEY` and the
    /// value.
    pub(super) fn compile(self) -> Result<HttpServerLimits, ConfigError> {
        let number = |key: &str, value: Option<u64>, default: u64, range: (u64, u64)| {
            let v = value.unwrap_or(default);
            if v < range.0 || v > range.1 {
                return Err(invalid(
                    format!("http_server.{key}"),
                    v,
                    format!("must be between {} and {}", range.0, range.1),
                ));
            }
            Ok(v)
        };
        Ok(HttpServerLimits {
            max_connections: number("max_connections", self.max_connections, 1024, (1, 65_536))?
                as usize,
            // nginx and Envoy send the client's headers on (Envoy's own limit is 60 KiB by
            // default), plus a few of their own: 64 KiB fits them, and a flood does not.
            max_header_bytes: number(
                "max_header_bytes",
                self.max_header_bytes,
                64 * 1024,
                (1024, 1024 * 1024),
            )? as usize,
            header_timeout: Duration::from_secs(number(
                "header_timeout_seconds",
                self.header_timeout_seconds,
                10,
                (1, 300),
            )?),
            idle_timeout: Duration::from_secs(number(
                "idle_timeout_seconds",
                self.idle_timeout_seconds,
                300,
                (1, 86_400),
            )?),
        })
    }
}
