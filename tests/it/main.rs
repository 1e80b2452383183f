//! Every integration test but the Envoy end-to-end tests (`tests/envoy_e2e/`) and the soak
//! (`tests/soak.rs`), as modules of one test binary: one link instead of thirteen. Each module is
//! a capability; the fixtures they share (real keys, a JWKS server, scopegate in-process or as a
//! process, Envoy) are in `common`.

#[path = "../common/mod.rs"]
mod common;

mod authentication;
mod authorization;
mod certificate_binding;
mod claims;
mod cli;
mod compose;
mod dev_issuer;
mod distribution;
mod dockerfile;
mod dpop;
mod dpop_redis;
mod explain;
mod grpc_surface;
mod hostile_tokens;
mod http_authz;
mod introspection;
mod isolation;
mod issuers;
mod jwks_lifecycle;
mod kubernetes;
mod logging;
mod metadata;
mod observability;
mod openapi;
mod properties;
mod protos;
mod readme;
mod reload;
mod rule_features;
mod server_limits;
mod tls;
mod token_cache;
mod token_sources;
mod tracing;
mod unix_socket;
mod watchdog;
