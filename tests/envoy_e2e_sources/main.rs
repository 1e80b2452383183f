//! Token sources end to end: a real Envoy running the repository's `envoy/envoy.yaml` with the
//! `allowed_headers` lines the README's Token sources section shows, in front of the demo
//! upstream (which echoes the query it got), with tokens from the development issuer. Envoy
//! must be installed (`scripts/install-envoy`); these tests fail, never skip, without it.

#[path = "../common/mod.rs"]
mod common;

mod token_sources;
