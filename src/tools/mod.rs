//! Commands beside the server, never on the request path.
//!
//! - [`explain`]: `scopegate explain`, one request decided offline by the decision core a Check uses.
//! - [`openapi`]: `scopegate openapi-rules`, `[[rules]]` written from an OpenAPI document.
//! - [`probe`]: gRPC and HTTP health probes for container healthchecks (`scopegate health`).

pub mod explain;
pub mod openapi;
pub mod probe;
