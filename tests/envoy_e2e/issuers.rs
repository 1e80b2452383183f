//! Issuers and keys through Envoy: several issuers, EC and EdDSA keys, colliding `kid`s, a
//! discovery document naming another issuer, Auth0 `permissions` as scopes, and the issuers and
//! audiences a rule takes.

use std::time::Duration;

use crate::common;
use crate::common::eventually;
use crate::common::stack::{DEMO_AUDIENCE, Stack};
use crate::support::json;
use serde_json::{Value, json};

/// Two issuers behind Envoy: the development issuer (RS256, by jwks_uri) and one found by OIDC
/// discovery under a path, publishing an EC P-256 key (ES256). Each issuer's tokens pass; a
/// token naming one issuer but signed by the other's key, a forged one, and one naming an
/// unknown issuer get scopegate's 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_issuers_and_an_ec_key_through_envoy() {
    use base64::Engine as _;
    use common::stack::DEMO_AUDIENCE;
    use common::{CurveKey, JwksServer, Reply};

    let key = CurveKey::ec("ec-1", "P-256");
    let forger = CurveKey::ec("ec-1", "P-256");

    let idp = JwksServer::start(Reply::Respond(404, vec![], vec![])).await;
    let staff = idp.url_of("/realms/staff");
    idp.route(
        "/realms/staff/.well-known/openid-configuration",
        Reply::json(&serde_json::json!({
            "issuer": staff,
            "jwks_uri": idp.url_of("/realms/staff/certs"),
        })),
    );
    idp.route(
        "/realms/staff/certs",
        Reply::json(&serde_json::json!({ "keys": [key.jwk.clone()] })),
    );
    let stack = Stack::start_with_config(|issuer, jwks_uri| {
        format!(
            r#"
            [[issuers]]
            issuer = "{issuer}"
            audience = "{DEMO_AUDIENCE}"
            jwks_uri = "{jwks_uri}"

            [[issuers]]
            issuer = "{staff}"
            audience = "{DEMO_AUDIENCE}"
            algorithms = ["ES256"]

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
    let es256 = |iss: &str, key: &CurveKey| {
        let mut claims = common::stack::demo_claims("read:messages");
        claims["iss"] = serde_json::json!(iss);
        format!(
            "Bearer {}",
            key.mint(jsonwebtoken::Algorithm::ES256, &claims)
        )
    };
    let get = |authorization: String| {
        let stack = &stack;
        async move {
            let response = stack
                .get("/restricted_resource", &[("authorization", &authorization)])
                .await;
            json(response).await
        }
    };

    let (status, _, body) = get(format!("Bearer {}", stack.token("read:messages"))).await;
    assert_eq!(status, 200, "{body}");
    let staff_token = es256(&staff, &key);
    eventually(
        "the discovered issuer's keys",
        Duration::from_secs(15),
        || async { get(staff_token.clone()).await.0 == 200 },
    )
    .await;
    let dev_issuer = stack.token("read:messages");
    let dev_iss = {
        let payload = dev_issuer.split('.').nth(1).expect("payload");
        let claims: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .expect("b64"),
        )
        .expect("json");
        claims["iss"].as_str().expect("iss").to_string()
    };
    for (name, authorization, message) in [
        (
            "EC key under the RS256 issuer's name",
            es256(&dev_iss, &key),
            "token algorithm is not allowed",
        ),
        (
            "forged ES256",
            es256(&staff, &forger),
            "token signature is invalid",
        ),
        (
            "unknown issuer",
            es256("https://elsewhere.test/", &key),
            "token issuer is not accepted",
        ),
    ] {
        let (status, _, body) = get(authorization).await;
        assert_eq!(
            (status, body["error"].as_str(), body["message"].as_str()),
            (401, Some("invalid_token"), Some(message)),
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_configuration_trusts_an_eddsa_issuer_beside_the_rs256_one() {
    // demo/scopegate.toml as the demo runs it: the RS256 issuer by jwks_uri, the EdDSA issuer by
    // discovery, and `azp` forwarded for both.
    let stack = Stack::start().await;
    for (name, token) in [
        (
            "RS256",
            stack.token_with(
                "read:messages",
                [("azp".to_string(), "rs-client".into())]
                    .into_iter()
                    .collect(),
            ),
        ),
        ("EdDSA", stack.eddsa_token("read:messages")),
    ] {
        let good = format!("Bearer {token}");
        let (status, _, body) = json(
            stack
                .get(
                    "/restricted_resource",
                    &[("authorization", &good), ("x-auth-client", "spoofed")],
                )
                .await,
        )
        .await;
        assert_eq!(status, 200, "{name}: {body}");
        assert_eq!(body["message"], "Access Granted", "{name}");
        let expected_client = if name == "RS256" {
            "rs-client"
        } else {
            "e2e-client"
        };
        assert_eq!(
            body["auth_headers"]["x-auth-client"], expected_client,
            "{name}: the claim, never the client's copy"
        );
    }
    // The EdDSA issuer's token without the scope is 403; a spoofed client header never reaches
    // the public route.
    let weak = format!("Bearer {}", stack.eddsa_token("openid"));
    let (status, _, body) = json(
        stack
            .get("/restricted_resource", &[("authorization", &weak)])
            .await,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("insufficient_scope")),
        "{body}"
    );
    let (status, _, body) = json(stack.get("/public", &[("x-auth-client", "spoofed")]).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["auth_headers"], serde_json::json!({}), "{body}");
}

/// The rest of the issuer rules through Envoy: a second issuer publishing the dev issuer's very
/// `kid` (neither issuer's key verifies the other's tokens), a discovery document naming another
/// issuer (that issuer's tokens get scopegate's 503, the others are unaffected), Auth0 RBAC
/// `permissions` as scopes, and EdDSA tokens, good and forged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kid_collisions_discovery_mismatch_permissions_and_eddsa_through_envoy() {
    use base64::Engine as _;
    use common::stack::DEMO_AUDIENCE;
    use common::{CurveKey, JwksServer, Reply, TestKey};

    let idp = JwksServer::start(Reply::Respond(404, vec![], vec![])).await;
    let (twin_iss, liar_iss, ed_iss) = (
        idp.url_of("/realms/twin"),
        idp.url_of("/realms/liar"),
        idp.url_of("/realms/ed"),
    );
    let ed_key = CurveKey::ed25519("ed-1");
    let ed_forger = CurveKey::ed25519("ed-1");
    idp.route(
        "/realms/liar/.well-known/openid-configuration",
        Reply::json(&serde_json::json!({
            "issuer": "https://someone-else.test/",
            "jwks_uri": idp.url_of("/realms/liar/certs"),
        })),
    );
    idp.route(
        "/realms/ed/.well-known/openid-configuration",
        Reply::json(&serde_json::json!({
            "issuer": ed_iss,
            "jwks_uri": idp.url_of("/realms/ed/certs"),
        })),
    );
    idp.route(
        "/realms/ed/certs",
        Reply::json(&serde_json::json!({ "keys": [ed_key.jwk.clone()] })),
    );
    // The twin publishes (at its jwks_uri) a key under the dev issuer's kid, set below.
    let twin_certs = idp.url_of("/realms/twin/certs");
    let stack = Stack::start_with_config(|issuer, jwks_uri| {
        format!(
            r#"
            [[issuers]]
            issuer = "{issuer}"
            audience = "{DEMO_AUDIENCE}"
            jwks_uri = "{jwks_uri}"
            scope_claims = ["scope", "permissions"]

            [[issuers]]
            issuer = "{twin_iss}"
            audience = "{DEMO_AUDIENCE}"
            jwks_uri = "{twin_certs}"

            [[issuers]]
            issuer = "{liar_iss}"
            audience = "{DEMO_AUDIENCE}"

            [[issuers]]
            issuer = "{ed_iss}"
            audience = "{DEMO_AUDIENCE}"
            algorithms = ["EdDSA"]

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
    let dev_token = stack.token("openid");
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(dev_token.split('.').next().expect("header"))
            .expect("b64"),
    )
    .expect("json");
    let dev_kid = header["kid"].as_str().expect("kid").to_string();
    let twin = TestKey::generate(&dev_kid);
    idp.route(
        "/realms/twin/certs",
        Reply::json(&common::jwks_of(&[&twin])),
    );

    let get = |token: String| {
        let stack = &stack;
        async move {
            let authorization = format!("Bearer {token}");
            json(
                stack
                    .get("/restricted_resource", &[("authorization", &authorization)])
                    .await,
            )
            .await
        }
    };
    let claims_for = |iss: &str, extra: serde_json::Value| {
        let mut claims = common::stack::demo_claims("openid");
        claims["iss"] = serde_json::json!(iss);
        if let serde_json::Value::Object(extra) = extra {
            claims.as_object_mut().expect("claims").extend(extra);
        }
        claims
    };
    // The twin's keys load on their own schedule (its refresher retries after the 404 above).
    let twin_good = twin.mint(&claims_for(
        &twin_iss,
        serde_json::json!({"scope": "read:messages"}),
    ));
    eventually("the twin's keys", Duration::from_secs(15), || async {
        get(twin_good.clone()).await.0 == 200
    })
    .await;

    // Same kid, other issuer: the dev issuer's key never verifies a token naming the twin, and
    // the twin's key never one naming the dev issuer.
    let dev_iss = {
        let payload: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(dev_token.split('.').nth(1).expect("payload"))
                .expect("b64"),
        )
        .expect("json");
        payload["iss"].as_str().expect("iss").to_string()
    };
    let dev_signed_as_twin = stack.token_with(
        "read:messages",
        [("iss".to_string(), serde_json::json!(twin_iss))]
            .into_iter()
            .collect(),
    );
    let twin_signed_as_dev = twin.mint(&claims_for(
        &dev_iss,
        serde_json::json!({"scope": "read:messages"}),
    ));
    for (name, token) in [
        ("dev key, twin's name", dev_signed_as_twin),
        ("twin key, dev issuer's name", twin_signed_as_dev),
    ] {
        let (status, _, body) = get(token).await;
        assert_eq!(
            (status, body["message"].as_str()),
            (401, Some("token signature is invalid")),
            "{name}: {body}"
        );
    }

    // Auth0 RBAC: a grant in `permissions` counts for the issuer that lists that claim.
    let rbac = stack.token_with(
        "openid",
        [(
            "permissions".to_string(),
            serde_json::json!(["read:messages"]),
        )]
        .into_iter()
        .collect(),
    );
    assert_eq!(get(rbac).await.0, 200, "permissions as scopes");
    let twin_rbac = twin.mint(&claims_for(
        &twin_iss,
        serde_json::json!({"permissions": ["read:messages"]}),
    ));
    let (status, _, body) = get(twin_rbac).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("insufficient_scope")),
        "an issuer without permissions in scope_claims ignores it: {body}"
    );

    // A discovery document naming another issuer: that issuer's tokens get scopegate's own
    // 503 (keys unavailable), never a fetch of the document's jwks_uri, and nobody else's.
    let liar = TestKey::generate("liar-1");
    let (status, _, body) = get(liar.mint(&claims_for(
        &liar_iss,
        serde_json::json!({"scope": "read:messages"}),
    )))
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("temporarily_unavailable")),
        "{body}"
    );
    assert_eq!(idp.hits_on("/realms/liar/certs"), 0);

    // EdDSA: good and forged.
    let ed_claims = claims_for(&ed_iss, serde_json::json!({"scope": "read:messages"}));
    let ed_good = ed_key.mint(jsonwebtoken::Algorithm::EdDSA, &ed_claims);
    eventually(
        "the EdDSA issuer's keys",
        Duration::from_secs(15),
        || async { get(ed_good.clone()).await.0 == 200 },
    )
    .await;
    let (status, _, body) = get(ed_forger.mint(jsonwebtoken::Algorithm::EdDSA, &ed_claims)).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (401, Some("token signature is invalid")),
        "{body}"
    );
    assert_eq!(
        get(stack.token("read:messages")).await.0,
        200,
        "the dev issuer is unaffected"
    );
}

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
