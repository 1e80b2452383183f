//! End to end through a real Envoy running the repository's `envoy/envoy.yaml` (or its TLS and
//! Unix socket variants), addresses rewritten to loopback, in front of the demo upstream and the
//! scopegate binary, with tokens from the development issuers: what reaches the client and the
//! upstream for each decision, hostile credentials and requests, faults and recovery, issuers and
//! keys, the hop to scopegate, generated rules, claim conditions, dynamic metadata, token
//! sources, DPoP proofs, opaque tokens by introspection and certificate-bound tokens (behind `envoy/envoy-client-mtls.yaml`), a
//! module each; and the in-proxy mode, scopegate as Envoy's dynamic module (`envoy/envoy-module.yaml`). Envoy must be installed (`scripts/install-envoy`, or the binary named by
//! `SCOPEGATE_ENVOY_BIN`); these tests fail, never skip, without it. The stack they run is in
//! `tests/common/stack.rs`, the helpers the modules share in `support`.

#[path = "../common/mod.rs"]
mod common;
mod support;

mod claims;
mod credentials;
mod decisions;
mod dpop;
mod faults;
mod introspection;
mod issuers;
mod metadata;
mod module;
mod mtls_bound;
mod openapi;
mod requests;
mod token_sources;
mod tracing;
mod transport;
