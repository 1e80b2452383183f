//! One DPoP request through a real Envoy running the shipped configuration: the `dpop` header
//! reaches scopegate (`allowed_headers`), the proof's `htu` is the URL the client called, and
//! the same proof sent again is refused with the DPoP challenge.

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;

use crate::common::now;
use crate::common::stack::Stack;

/// An ES256 DPoP proof for `method` on `url` with `token`, signed by `pair`.
fn proof(
    pair: &EcdsaKeyPair,
    jwk: &serde_json::Value,
    method: &str,
    url: &str,
    token: &str,
) -> String {
    let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk});
    let claims = json!({
        "htm": method, "htu": url, "iat": now(), "jti": format!("e2e-{}", now()),
        "ath": URL_SAFE_NO_PAD.encode(digest(&SHA256, token.as_bytes())),
    });
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = pair
        .sign(&SystemRandom::new(), signed.as_bytes())
        .expect("sign");
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dpop_request_passes_through_envoy_once_and_its_replay_does_not() {
    let stack = Stack::start().await;
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("P-256");
    let point = pair.public_key().as_ref();
    let (x, y) = (
        URL_SAFE_NO_PAD.encode(&point[1..33]),
        URL_SAFE_NO_PAD.encode(&point[33..]),
    );
    let jwk = json!({"kty": "EC", "crv": "P-256", "x": x, "y": y});
    let thumbprint = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    let jkt = URL_SAFE_NO_PAD.encode(digest(&SHA256, thumbprint.as_bytes()));
    let token = stack.token_with(
        "read:messages",
        serde_json::Map::from_iter([("cnf".to_string(), json!({ "jkt": jkt }))]),
    );
    let authorization = format!("DPoP {token}");
    let path = "/restricted_resource";
    let proof = proof(&pair, &jwk, "GET", &format!("{}{path}", stack.url), &token);
    let headers = [("authorization", authorization.as_str()), ("dpop", &proof)];

    let allowed = stack.get(path, &headers).await;
    assert_eq!(allowed.status().as_u16(), 200, "{:?}", allowed.text().await);

    let replayed = stack.get(path, &headers).await;
    assert_eq!(replayed.status().as_u16(), 401);
    let challenge = replayed
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        challenge.starts_with("DPoP ") && challenge.contains(r#"error="invalid_dpop_proof""#),
        "{challenge}"
    );

    // The token without its proof, and as a Bearer token: refused.
    let no_proof = stack.get(path, &[("authorization", &authorization)]).await;
    assert_eq!(no_proof.status().as_u16(), 401);
    let downgrade = stack
        .get(path, &[("authorization", &format!("Bearer {token}"))])
        .await;
    assert_eq!(downgrade.status().as_u16(), 401);
}

/// The client's ES256 key as a JWK, and its RFC 7638 thumbprint.
fn client_key() -> (EcdsaKeyPair, serde_json::Value, String) {
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("P-256");
    let point = pair.public_key().as_ref();
    let (x, y) = (
        URL_SAFE_NO_PAD.encode(&point[1..33]),
        URL_SAFE_NO_PAD.encode(&point[33..]),
    );
    let jwk = json!({"kty": "EC", "crv": "P-256", "x": x, "y": y});
    let thumbprint = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    let jkt = URL_SAFE_NO_PAD.encode(digest(&SHA256, thumbprint.as_bytes()));
    (pair, jwk, jkt)
}

/// A client cannot steer `htu` with an `x-envoy-original-path` header of its own: a proof made
/// for `/another_resource` does not pass on `/restricted_resource`, neither behind the shipped
/// configuration (which does not send the header to scopegate) nor behind one that does (a user
/// who added it to `allowed_headers`). Envoy passes a client's header of that name on unchanged
/// (it set none: the route rewrites nothing), so scopegate never reads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_own_x_envoy_original_path_does_not_steer_htu() {
    let forwarded = |yaml: String| {
        crate::common::stack::substitute(
            &yaml,
            "- exact: dpop\n",
            "- exact: dpop\n                          - exact: x-envoy-original-path\n",
            1,
        )
    };
    for (what, stack) in [
        ("shipped", Stack::start().await),
        (
            "forwarding x-envoy-original-path",
            Stack::start_with_gate_config_and_envoy("", forwarded).await,
        ),
    ] {
        let (pair, jwk, jkt) = client_key();
        let token = stack.token_with(
            "read:messages",
            serde_json::Map::from_iter([("cnf".to_string(), json!({ "jkt": jkt }))]),
        );
        let authorization = format!("DPoP {token}");
        let elsewhere = format!("{}/another_resource", stack.url);
        let proof = proof(&pair, &jwk, "GET", &elsewhere, &token);
        let steered = stack
            .get(
                "/restricted_resource",
                &[
                    ("authorization", &authorization),
                    ("dpop", &proof),
                    ("x-envoy-original-path", "/another_resource"),
                ],
            )
            .await;
        let status = steered.status().as_u16();
        let body = steered.text().await.expect("body");
        crate::support::assert_scopegates_denial(status, &body, 401, "invalid_token", what);
        assert!(body.contains("htu"), "{what}: {body}");
    }
}
