//! Opaque tokens through a real Envoy running the repository's `envoy/envoy.yaml`: scopegate
//! introspects them at the development issuer's RFC 7662 endpoint (found by discovery); an
//! active one reaches the upstream with the identity scopegate set, an inactive one is 401.

use crate::common::stack::{DEMO_AUDIENCE, Stack};
use crate::support::{header, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opaque_token_is_introspected_through_envoy() {
    let secrets = tempfile::tempdir().expect("dir");
    let secret = secrets.path().join("introspection-secret");
    std::fs::write(&secret, scopegate::dev::introspection::DEMO_CLIENT_SECRET)
        .expect("write secret");
    let secret = secret.display().to_string();
    let stack = Stack::start_with_config(|issuer, jwks_uri| {
        format!(
            r#"
            [[issuers]]
            issuer = "{issuer}"
            audience = "{DEMO_AUDIENCE}"
            jwks_uri = "{jwks_uri}"
            introspection = "opaque"
            client_id = "scopegate"
            client_secret_file = "{secret}"

            [[rules]]
            path = "/restricted_resource"
            scopes = ["read:messages"]

            [[rules]]
            path = "/public"
            public = true
            "#
        )
    })
    .await;
    let opaque = stack.opaque_token("read:messages openid");
    assert_eq!(opaque.split('.').count(), 1, "not a JWT: {opaque}");
    let (status, _, body) = json(
        stack
            .get(
                "/restricted_resource",
                &[
                    ("authorization", &format!("Bearer {opaque}")),
                    ("x-auth-subject", "admin"),
                ],
            )
            .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["auth_headers"]["x-auth-subject"], "e2e-user", "{body}");
    assert_eq!(
        body["auth_headers"]["x-auth-scopes"], "openid read:messages",
        "{body}"
    );

    // An opaque token the issuer never minted (its MAC fails): inactive, 401.
    let last = if opaque.ends_with('A') { 'B' } else { 'A' };
    let forged = format!("{}{last}", &opaque[..opaque.len() - 1]);
    let (status, headers, body) = json(
        stack
            .get(
                "/restricted_resource",
                &[("authorization", &format!("Bearer {forged}"))],
            )
            .await,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str(), body["message"].as_str()),
        (401, Some("invalid_token"), Some("token is not active")),
        "{body}"
    );
    assert!(header(&headers, "www-authenticate").contains("error=\"invalid_token\""));
}
