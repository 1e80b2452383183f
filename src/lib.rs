//! scopegate: an Envoy external-authorization (ext_authz v3) gRPC service that verifies OAuth 2.0
//! JWT access tokens against an issuer's JWKS and enforces the scopes each route requires.
//!
//! # Layout
//!
//! The folders are layers. Each uses only the layers listed before it (never one after it), so
//! the tree reads bottom to top; ARCHITECTURE.md has the module table and the invariants.
//!
//! - [`net`]: what scopegate accepts and asks of other servers, knowing nothing of tokens:
//!   [`net::listener`] (accept loop, connection limits, each connection served over HTTP/2 and
//!   closed with GOAWAY), [`net::http1`] (the HTTP/1.1 listener: the same accept side, head size
//!   and head and idle deadlines, keep-alive, generic over its service), [`net::tls`] (the
//!   `[tls]` server configuration), [`net::outbound`]
//!   (every fetch from another server: https unless loopback or allowed, trusted roots).
//! - [`telemetry`]: [`telemetry::metrics`], the Prometheus registry and `GET /metrics`; every
//!   layer above counts in it; [`telemetry::traces`], a decision's span exported over OTLP.
//! - [`auth`]: from credentials to verified claims: [`auth::sources`] (the one credential out of
//!   the configured token sources), [`auth::token`] (the Bearer credential),
//!   [`auth::keys`] (JWKS documents parsed once), [`auth::jwks`] (an issuer's key set over time),
//!   [`auth::verify`] (pure; the only place that builds [`auth::verify::VerifiedClaims`]; the
//!   token's bytes read into a header and claims in its private `verify/parse.rs`),
//!   [`auth::binding`] (what a token is bound to, `cnf`), [`auth::dpop`] (DPoP proofs),
//!   [`auth::replay`] (proofs seen, in this process or in Redis: its private
//!   `replay/shared.rs`), [`auth::certificate`] (the client certificate's
//!   thumbprint), [`auth::heap`] (allocation sizes for the byte budgets),
//!   [`auth::token_cache`], and opaque tokens by introspection: [`auth::introspect`] (which
//!   tokens are JWTs, the call to an issuer's endpoint) and [`auth::introspect_cache`] (caches,
//!   single-flight and caps around it).
//! - [`policy`]: pure: the rules and the [`policy::Policy`] built from them with its start-up
//!   checks, route lookup and the readings an upstream might apply, [`policy::decide`] (files
//!   `rule`, `route` and `decide`, re-exported as `policy::X`), path canonicalisation
//!   ([`policy::path`]), templates ([`policy::template`]), method overrides and preflights
//!   ([`policy::request`]); its tables are in `policy/tests/`, one file per concept.
//! - [`config`]: TOML and environment input (`RawConfig`) compiled into a validated
//!   [`config::Config`] before any port is bound. Every error names the offending key and value.
//!   `config/mod.rs` holds the top level and the compile; its parts are `server` (`listen`,
//!   `[server]`, `[http_server]`), `issuers` (issuers, their token rules and key-set settings),
//!   `introspection` (an issuer's introspection keys), `rules`
//!   (`[[rules]]`, claim and header checks), `metadata`, `sources` (`[[token_sources]]`),
//!   `tracing` (`[tracing]`),
//!   `module` (the Envoy dynamic module's configuration: the same document less the listener keys),
//!   `warnings` and `print` (what `check-config` prints), with tests in `config/tests.rs`.
//! - [`decide`]: the transport-neutral decision core: a [`decide::Request`] view decided with the
//!   [`decide::Generation`] in force (extract → verify → decide → respond) into a
//!   [`decide::Verdict`] and its [`decide::Labels`], then counted and logged in one step every
//!   transport shares.
//! - [`serve`]: the running process: [`serve::service`] (the gRPC `Check`, a thin adapter from
//!   Envoy's types to the decision core and back), [`serve::http`] (the HTTP authorization
//!   listener's adapter: three proxies' dialects to the decision core and back),
//!   [`serve::server`] (listeners, refreshers, health,
//!   reload, graceful shutdown; the shutdown signal is passed in as a future) and
//!   [`serve::reload`] (SIGHUP and the file watch).
//! - [`tools`]: commands beside the server, never on the request path: [`tools::explain`],
//!   [`tools::openapi`] (`openapi-rules`: the document's model, the mapping to rules and the
//!   TOML output, one file each) and [`tools::probe`] (`scopegate health`).
//!
//! Apart from the layers, for demos and tests (never on the request path), behind the cargo
//! feature `dev` (on by default; the production build leaves it out):
//! - [`dev`]: development-only code: [`dev::issuer`], a token issuer (JWKS, discovery,
//!   client-credentials tokens, opaque tokens), [`dev::introspection`], its RFC 7662
//!   introspection and RFC 7009 revocation endpoints, [`dev::dpop`], a DPoP client key and its
//!   proofs, [`dev::demo`], the upstream API that stands behind Envoy in the
//!   demo, and [`dev::certs`], throw-away TLS certificates.
//!
//! The Envoy dynamic module (the workspace's `envoy-module/` crate) is a front door over this
//! library beside [`serve`]: it fills a [`decide::Request`] from Envoy's header map and calls
//! [`decide::check`].
//!
//! The binary (`src/main.rs`) only parses the command line and calls into [`serve::server`],
//! [`tools`], [`config`] or [`dev`].

pub mod auth;
pub mod config;
pub mod decide;
#[cfg(feature = "dev")]
pub mod dev;
pub mod net;
pub mod policy;
pub mod serve;
pub mod telemetry;
pub mod tools;
