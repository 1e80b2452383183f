//! End to end through a real Envoy running the repository's `envoy/envoy.yaml`, for issue #23's
//! claim conditions: a tenant check (`claims = { org_id = "{org}" }`) lets a tenant's token reach
//! its own tenant's path and answers 403 `insufficient_claims` on another's. Envoy must be
//! installed (`scripts/install-envoy`); this test fails, never skips, without it.

use crate::common::stack::{DEMO_AUDIENCE, Stack};
use serde_json::{Value, json};

fn tenant_rules(issuer: &str, jwks_uri: &str) -> String {
    format!(
        r#"issuer = "{issuer}"
jwks_uri = "{jwks_uri}"
audience = "{DEMO_AUDIENCE}"
[[rules]]
path = "/public"
public = true
[[rules]]
name = "tenant items"
template = "/orgs/{{org}}/items/{{rest=**}}"
claims = {{ org_id = "{{org}}" }}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_enforces_a_tenant_check() {
    let stack = Stack::start_with_config(tenant_rules).await;
    let token = stack.token_with(
        "read",
        serde_json::Map::from_iter([("org_id".into(), json!("acme"))]),
    );
    let authorization = format!("Bearer {token}");
    let headers = [("authorization", authorization.as_str())];

    let own = stack.get("/orgs/acme/items/1", &headers).await;
    assert_eq!(own.status(), 200, "own tenant");
    // The demo upstream answers with what reached it: scopegate's identity headers.
    let body: Value =
        serde_json::from_str(&own.text().await.expect("body")).expect("the upstream's JSON");
    assert_eq!(body["auth_headers"]["x-auth-subject"], "e2e-user", "{body}");

    for path in [
        "/orgs/globex/items/1",
        "/orgs/ACME/items/1",
        "/orgs/%EF%BD%81cme/items/1",
    ] {
        let response = stack.get(path, &headers).await;
        let status = response.status().as_u16();
        let challenge = response
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = response.text().await.expect("body");
        assert_eq!(status, 403, "{path}: {body}");
        let value: Value = serde_json::from_str(&body)
            .unwrap_or_else(|_| panic!("{path}: scopegate's JSON denial expected: {body:?}"));
        assert_eq!(value["error"], "insufficient_claims", "{path}: {body}");
        assert!(
            challenge.contains("error=\"insufficient_claims\""),
            "{path}: {challenge}"
        );
    }
    // No token: 401, as for any protected rule.
    assert_eq!(stack.get("/orgs/acme/items/1", &[]).await.status(), 401);
}
