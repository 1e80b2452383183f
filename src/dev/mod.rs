//! Development-only code: never on the request path, and never needed to run scopegate in
//! production. The binary exposes it as the `dev-issuer`, `mint-token`, `demo-upstream`,
//! `dev-certs` and `dpop-proof` subcommands for the demo, the Docker stack and the tests.

pub mod certs;
pub mod demo;
pub mod dpop;
pub mod introspection;
pub mod issuer;
