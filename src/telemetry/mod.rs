//! What scopegate tells its operators, below every layer that counts something: nothing here
//! depends on tokens, rules or configuration, so any layer may count in it.
//!
//! - [`metrics`]: the Prometheus registry, its bounded label sets, and `GET /metrics`.
//! - [`traces`]: a decision as an OpenTelemetry span in the caller's trace, exported over OTLP.

pub mod metrics;
pub mod traces;
