//! End to end through a real Envoy (the repository's `envoy/envoy.yaml`, the demo upstream and
//! both development issuers, RS256 and EdDSA) for what a rule demands of a token beyond scopes:
//! the issuers and audiences it takes. Envoy must be installed (`scripts/install-envoy`); these
//! tests fail, never skip, without it.

mod common;

use common::stack::{DEMO_AUDIENCE, Stack};
use serde_json::{Value, json};

/// The status and JSON body of GET `path` through Envoy with `token`.
async fn get(stack: &Stack, path: &str, token: &str) -> (u16, Value) {
    let response = stack
        .get(path, &[("authorization", &format!("Bearer {token}"))])
        .await;
    let status = response.status().as_u16();
    let body = response.text().await.expect("body");
    let value = serde_json::from_str(&body)
        .unwrap_or_else(|_| panic!("JSON body expected, got {status}: {body:?}"));
    (status, value)
}

/// A rule taking only the RS256 issuer's tokens lets them through to the upstream and answers
/// the EdDSA issuer's (valid elsewhere) 401 `invalid_token`; a rule taking only tokens for the
/// orders API answers a token for the demo audience alone 401, and lets one for both through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_take_only_their_issuers_and_audiences_through_envoy() {
    let stack = Stack::start_with_rules(|rs256| {
        format!(
            "[[rules]]\nprefix = \"/staff/\"\nissuers = [\"{rs256}\"]\n\
             [[rules]]\nprefix = \"/orders/\"\naudiences = [\"https://orders.api\"]\n"
        )
    })
    .await;
    let rs256 = stack.token("read:messages");
    let eddsa = stack.eddsa_token("read:messages");
    let for_orders = stack.token_with(
        "",
        [(
            "aud".to_string(),
            json!([DEMO_AUDIENCE, "https://orders.api"]),
        )]
        .into_iter()
        .collect(),
    );
    // Both issuers' tokens are good where any issuer is taken.
    for token in [&rs256, &eddsa] {
        let (status, body) = get(&stack, "/restricted_resource", token).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = get(&stack, "/staff/list", &rs256).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["path"], "/staff/list", "the upstream answered: {body}");
    assert_eq!(body["auth_headers"]["x-auth-subject"], "e2e-user", "{body}");
    let (status, body) = get(&stack, "/staff/list", &eddsa).await;
    assert_eq!(
        (status, body["error"].as_str(), body["message"].as_str()),
        (
            401,
            Some("invalid_token"),
            Some("token issuer is not accepted on this route")
        ),
        "{body}"
    );
    let (status, body) = get(&stack, "/orders/7", &for_orders).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["path"], "/orders/7", "the upstream answered: {body}");
    for token in [&rs256, &eddsa] {
        let (status, body) = get(&stack, "/orders/7", token).await;
        assert_eq!(
            (status, body["error"].as_str(), body["message"].as_str()),
            (
                401,
                Some("invalid_token"),
                Some("token audience is not accepted on this route")
            ),
            "{body}"
        );
    }
}
