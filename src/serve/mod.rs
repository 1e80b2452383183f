//! Serving: the running process around the decision.
//!
//! - [`service`]: the gRPC `Authorization/Check` service: `CheckRequest` → request view →
//!   [`crate::decide::check`] → `CheckResponse`.
//! - [`http`]: the HTTP authorization listener's adapter: the three dialects (`/envoy/`,
//!   `/forward-auth`, `/nginx-auth`) → request view → [`crate::decide::check`] → HTTP answer.
//! - [`server`]: the listeners, the key-set refreshers, health, the reload loop and graceful
//!   shutdown; the shutdown signal is passed in as a future.
//! - [`reload`]: what asks for a configuration reload (SIGHUP, the file watch).

pub mod http;
pub mod reload;
pub mod server;
pub mod service;
