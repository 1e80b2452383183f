//! End to end through real proxies running the repository's shipped configurations for
//! scopegate's HTTP authorization listener (`envoy/envoy-http.yaml`, `proxies/nginx/`, ...), in
//! front of the demo upstream, with tokens from the development issuer. Each proxy must be
//! installed (`scripts/install-envoy`, `scripts/install-nginx`, ...); these tests fail, never
//! skip, without it. The stack they share is in `harness`, the checks every proxy is held to in `checks`.

#[path = "../common/mod.rs"]
mod common;

mod harness;

mod caddy;
mod checks;
mod envoy_http;
mod nginx;
mod traefik;
