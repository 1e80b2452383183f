//! End to end through a real Envoy running the repository's `envoy/envoy.yaml`, in front of the demo
//! upstream, with tokens from the development issuer. Envoy must be installed
//! (`scripts/install-envoy`); these tests fail, never skip, without it.

#[path = "../common/mod.rs"]
mod common;
mod support;

mod claims;
mod credentials;
mod decisions;
mod faults;
mod issuers;
mod metadata;
mod openapi;
mod requests;
mod token_sources;
mod transport;
