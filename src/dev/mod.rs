//! Development-only code: never on the request path, and never needed to run scopegate in
//! production. The binary exposes it as the `dev-issuer`, `mint-token` and `demo-upstream`
//! subcommands for the demo, the Docker stack and the tests.

pub mod demo;
pub mod issuer;
