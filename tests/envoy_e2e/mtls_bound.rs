//! Certificate-bound tokens (RFC 8705) through a real Envoy running the shipped
//! `envoy/envoy-client-mtls.yaml`: the client shows its certificate to Envoy, Envoy passes it
//! in each Check (`include_peer_certificate: true`), and a token whose `cnf["x5t#S256"]` names
//! that certificate goes through while one naming another certificate is refused.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::common::stack::Stack;
use crate::support::{json, scopegates_denial};

/// base64url(SHA-256(`der`)): the `x5t#S256` of a certificate.
fn x5t(der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der))
}

/// A token for `read:messages` bound to the certificate `x5t`.
fn bound_token(stack: &Stack, x5t: &str) -> String {
    let cnf = serde_json::json!({ "x5t#S256": x5t });
    stack.token_with(
        "read:messages",
        serde_json::Map::from_iter([("cnf".to_string(), cnf)]),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_bound_token_goes_through_envoy_only_with_its_certificate() {
    let stack = Stack::start_client_mtls("").await;
    assert!(stack.url.starts_with("https://"), "{}", stack.url);
    let mine = x5t(&stack.certificate_der("client.crt"));

    let good = format!("Bearer {}", bound_token(&stack, &mine));
    let (status, _, body) = json(
        stack
            .get("/restricted_resource", &[("authorization", &good)])
            .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["message"], "Access Granted");

    // Bound to another certificate (the one Envoy serves with): the client's is not it.
    let server_der = stack.certificate_der("server.crt");
    let stolen = format!("Bearer {}", bound_token(&stack, &x5t(&server_der)));
    scopegates_denial(
        stack
            .get("/restricted_resource", &[("authorization", &stolen)])
            .await,
        401,
        "invalid_token",
        "bound to another certificate",
    )
    .await;

    // A plain bearer token is unaffected by the certificate.
    let plain = format!("Bearer {}", stack.token("read:messages"));
    let (status, _, body) = json(
        stack
            .get("/restricted_resource", &[("authorization", &plain)])
            .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
}
