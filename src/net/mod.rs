//! The network layer, at the bottom: what scopegate accepts and what it asks of other servers,
//! knowing nothing of tokens or rules.
//!
//! - [`listener`]: the gRPC listeners: accept loop, connection cap, handshake and idle deadlines,
//!   and each connection served by hyper's HTTP/2 server over tonic's routes.
//! - [`http1`]: the HTTP/1.1 listener (the HTTP authorization listener's): accept loop,
//!   connection cap, head size, head and idle deadlines, keep-alive, graceful shutdown; generic
//!   over the service it serves.
//! - [`tls`]: the rustls server configuration from the `[tls]` PEM files.
//! - [`outbound`]: every request to another server (discovery, JWKS): https unless loopback or
//!   allowed, the trusted roots, no redirects, bounded time.

pub mod http1;
pub mod listener;
pub mod outbound;
pub mod tls;
