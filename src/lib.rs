//! scopegate: an Envoy external-authorization (ext_authz v3) gRPC service that verifies OAuth 2.0
//! JWT access tokens against an issuer's JWKS and enforces the scopes each route requires.
//!
//! # Layout
//!
//! A `Check` call flows top to bottom through these modules; only `service` knows Envoy or gRPC
//! types, and `verify` and `policy` are pure (no I/O, no clocks, no async).
//!
//! - [`config`]: TOML and environment input (`RawConfig`) compiled into a validated [`config::Config`]
//!   before any port is bound. Every error names the offending key and value.
//! - [`token`]: pulls the Bearer credential out of the request's `Authorization` header(s),
//!   enforcing RFC 6750/7235 syntax.
//! - [`keys`] (a leaf): signature algorithms, and JWKS documents parsed once into ready-to-use
//!   verifying keys, with the reasons an entry is skipped.
//! - [`jwks`]: the issuer's key set over time: a lock-free snapshot for readers, and the
//!   background task that fetches and refreshes it.
//! - [`verify`]: checks a compact JWS against a key-set snapshot (algorithm allow-list, signature,
//!   `exp`/`nbf`/`iss`/`aud`) and is the only place that can build [`verify::VerifiedClaims`].
//! - [`token_cache`]: verified tokens remembered by digest, re-checked (time, key) on each use;
//!   one cache per configuration generation.
//! - [`policy`]: path normalisation, route matching (exact paths, prefixes, whole-segment
//!   templates; shadow rules reported but never enforced), what it reads from headers (method
//!   overrides and CORS preflights, [`policy::request`]) and [`policy::decide`], which turns a
//!   route's requirement plus the authentication outcome into a [`policy::Decision`].
//! - [`service`]: the tonic `Authorization/Check` implementation: extract → verify → decide →
//!   respond, and the mapping of every denial to HTTP status, JSON body and `WWW-Authenticate`;
//!   each Check counted in [`metrics`] and, per `decision_log`, logged.
//! - [`server`]: wires the gRPC server (Authorization, `grpc.health.v1`, reflection), the JWKS
//!   refresher and graceful shutdown; the shutdown signal is passed in as a future.
//! - [`listener`]: the accept loop under the server: connection cap, TLS and HTTP/2 handshake
//!   deadline, idle timeout, and backoff when the process runs out of file descriptors.
//! - [`tls`]: the rustls server configuration from the `[tls]` files.
//! - [`reload`]: what asks for a configuration reload (SIGHUP, the file watch); the reload
//!   itself, which swaps the generation Checks read, is [`server`]'s.
//! - [`metrics`]: the Prometheus registry, its bounded label sets, and `GET /metrics`.
//! - [`outbound`]: every request to another server (discovery, JWKS): https or loopback only,
//!   the trusted CAs, no redirects, bounded time.
//!
//! Beside the service, for demos and tests (never on the request path):
//! - [`dev`]: development-only code, never needed in production: [`dev::issuer`], a token
//!   issuer (JWKS, discovery, client-credentials tokens), and [`dev::demo`], the upstream API
//!   that stands behind Envoy in the demo.
//! - [`probe`]: gRPC and HTTP health probes for container healthchecks.
//! - [`explain`]: `scopegate explain`, one request decided offline by the same steps as a Check,
//!   with the reasons shown.
//! - [`openapi`]: `[[rules]]` written from an OpenAPI 3.0/3.1 document's operations and
//!   `security` (`scopegate openapi-rules`); a pure mapping plus a TOML renderer.
//!
//! The binary (`src/main.rs`) only parses the command line and calls into [`server`], [`explain`],
//! [`config`] or [`openapi`].

pub mod config;
pub mod dev;
pub mod explain;
pub mod jwks;
pub mod keys;
pub mod listener;
pub mod metrics;
pub mod openapi;
pub mod outbound;
pub mod policy;
pub mod probe;
pub mod reload;
pub mod server;
pub mod service;
pub mod tls;
pub mod token;
pub mod token_cache;
pub mod verify;
