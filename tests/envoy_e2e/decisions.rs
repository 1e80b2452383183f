//! What an allow and a denial look like through Envoy: scopegate's decisions reach the client
//! with their status, JSON body and challenge, the upstream gets the identity and forwarded-claim
//! headers (never a client's copy, never a value it would read differently), and scopegate's
//! decision log joins Envoy's access log by request id.

use std::time::Duration;

use crate::common;
use crate::common::eventually;
use crate::common::stack::Stack;
use crate::support::{envoys_own_answer, header, json, scopegates_denial};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_enforces_scopegate_decisions() {
    let stack = Stack::start().await;

    // No token: 401 with the JSON body and challenge scopegate chose.
    let (status, headers, body) = json(stack.get("/restricted_resource", &[]).await).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "unauthorized");
    assert_eq!(header(&headers, "content-type"), "application/json");
    assert_eq!(
        header(&headers, "www-authenticate"),
        "Bearer realm=\"scopegate\""
    );

    // A token without the scope: 403, the sample's message, the required scope in the challenge.
    let weak = format!("Bearer {}", stack.token("openid"));
    let (status, headers, body) = json(
        stack
            .get("/restricted_resource", &[("authorization", &weak)])
            .await,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "insufficient_scope");
    assert_eq!(body["message"], "Insufficient scope");
    assert!(
        header(&headers, "www-authenticate").contains("scope=\"read:messages\""),
        "{headers:?}"
    );

    // An invalid token: 401 invalid_token.
    let (status, headers, body) = json(
        stack
            .get("/restricted_resource", &[("authorization", "Bearer a.b.c")])
            .await,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_token")),
        "{body}"
    );
    assert!(header(&headers, "www-authenticate").contains("error=\"invalid_token\""));

    // The right scope: 200 from the upstream, which sees the identity scopegate set, not the
    // one the client sent.
    let good = format!("Bearer {}", stack.token("read:messages openid"));
    let spoof = [
        ("authorization", good.as_str()),
        ("x-auth-subject", "admin"),
        ("x-auth-scopes", "admin"),
    ];
    let (status, _, body) = json(stack.get("/restricted_resource", &spoof).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["message"], "Access Granted");
    assert_eq!(
        body["allowed_scopes"],
        serde_json::json!(["openid", "read:messages"])
    );
    assert_eq!(body["subject"], "e2e-user");

    // Public route: no token needed, and spoofed identity headers never reach the upstream.
    let (status, _, body) = json(
        stack
            .get(
                "/public",
                &[("x-auth-subject", "admin"), ("x-auth-scopes", "admin")],
            )
            .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["subject"], Value::Null);
    assert_eq!(body["scopes_header"], Value::Null);

    // Unlisted route: any valid token (default = "authenticated").
    scopegates_denial(
        stack.get("/unlisted", &[]).await,
        401,
        "unauthorized",
        "/unlisted",
    )
    .await;
    let (status, _, body) = json(stack.get("/unlisted", &[("authorization", &weak)]).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["path"], "/unlisted");

    // Path tricks: Envoy normalises dot segments before scopegate sees the path, so a "public"
    // prefix cannot smuggle a protected path; escaped slashes are refused at the edge, by Envoy.
    let (status, _, body) = json(stack.get("/public/../restricted_resource", &[]).await).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unauthorized")),
        "{body}"
    );
    envoys_own_answer(
        stack.get("/public%2F..%2Frestricted_resource", &[]).await,
        400,
        "an escaped slash",
    )
    .await;
    scopegates_denial(
        stack
            .get("/restricted_resource;x=1", &[("authorization", &good)])
            .await,
        400,
        "invalid_request",
        "path parameters are refused by scopegate",
    )
    .await;
}

/// Forwarded claims through Envoy: the upstream sees the token's claim under the configured
/// header, never a client's copy, whether the token lacks the claim or the route is public.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_claims_through_envoy() {
    use common::stack::DEMO_AUDIENCE;
    let stack = Stack::start_with_config(|issuer, jwks_uri| {
        format!(
            r#"issuer = "{issuer}"
jwks_uri = "{jwks_uri}"
audience = "{DEMO_AUDIENCE}"
forward_claims = {{ "x-auth-email" = "email", "x-auth-org-id" = "/org/id" }}
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
    let mut extra = serde_json::Map::new();
    extra.insert("email".into(), serde_json::json!("e2e@example.com"));
    extra.insert("org".into(), serde_json::json!({"id": "acme"}));
    let full = format!("Bearer {}", stack.token_with("read:messages", extra));
    let bare = format!("Bearer {}", stack.token("read:messages"));
    let spoof = [
        ("x-auth-email", "attacker@example.com"),
        ("x-auth-org-id", "evil"),
    ];
    for (path, authorization, email, org) in [
        (
            "/restricted_resource",
            Some(&full),
            Some("e2e@example.com"),
            Some("acme"),
        ),
        ("/restricted_resource", Some(&bare), None, None),
        ("/public", None, None, None),
    ] {
        let mut headers: Vec<(&str, &str)> = spoof.to_vec();
        if let Some(a) = authorization {
            headers.push(("authorization", a));
        }
        let response = stack.get(path, &headers).await;
        let (status, _, body) = json(response).await;
        assert_eq!(status, 200, "{path}: {body}");
        let seen = &body["auth_headers"];
        assert_eq!(seen["x-auth-email"].as_str(), email, "{path}: {body}");
        assert_eq!(seen["x-auth-org-id"].as_str(), org, "{path}: {body}");
    }
}

/// Identity that would read differently upstream, through Envoy: a `sub` or forwarded claim with
/// surrounding whitespace (which the upstream's HTTP/1.1 parser strips: `"  alice  "` would
/// arrive as `alice`), with a bidirectional control or zero-width space, and an array element
/// holding the `,` that joins forwarded arrays get scopegate's 401; the comma format and the
/// zero-width joiner of emoji reach the upstream unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_that_reads_differently_upstream_through_envoy() {
    use common::stack::DEMO_AUDIENCE;
    let stack = Stack::start_with_config(|issuer, jwks_uri| {
        format!(
            r#"issuer = "{issuer}"
jwks_uri = "{jwks_uri}"
audience = "{DEMO_AUDIENCE}"
forward_claims = {{ "x-auth-email" = "email", "x-auth-groups" = "groups" }}
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
    let token = |claim: &str, value: serde_json::Value| {
        let mut extra = serde_json::Map::new();
        extra.insert(claim.into(), value);
        format!("Bearer {}", stack.token_with("read:messages", extra))
    };
    for (claim, value) in [
        ("sub", serde_json::json!("  alice  ")),
        ("sub", serde_json::json!("alice\t")),
        ("sub", serde_json::json!("nimda\u{202e}admin")),
        ("sub", serde_json::json!("ali\u{200b}ce")),
        ("sub", serde_json::json!("alice\u{2028}")),
        ("email", serde_json::json!(" alice@example.com")),
        ("email", serde_json::json!("alice\u{2066}@example.com")),
        ("groups", serde_json::json!(["eng,admin"])),
        ("groups", serde_json::json!(["eng", " admin"])),
    ] {
        let authorization = token(claim, value.clone());
        let response = stack
            .get("/restricted_resource", &[("authorization", &authorization)])
            .await;
        let (status, headers, body) = json(response).await;
        assert_eq!(status, 401, "{claim}: {value}: {body}");
        assert_eq!(body["error"], "invalid_token", "{claim}: {value}: {body}");
        assert!(
            header(&headers, "www-authenticate").contains("invalid_token"),
            "{claim}: {value}"
        );
    }
    let mut extra = serde_json::Map::new();
    extra.insert(
        "sub".into(),
        serde_json::json!("\u{1f469}\u{200d}\u{1f4bb} alice"),
    );
    extra.insert("groups".into(), serde_json::json!(["eng", "admin"]));
    let authorization = format!("Bearer {}", stack.token_with("read:messages", extra));
    let response = stack
        .get("/restricted_resource", &[("authorization", &authorization)])
        .await;
    let (status, _, body) = json(response).await;
    assert_eq!(status, 200, "{body}");
    let seen = &body["auth_headers"];
    assert_eq!(
        seen["x-auth-subject"].as_str(),
        Some("\u{1f469}\u{200d}\u{1f4bb} alice"),
        "{body}"
    );
    assert_eq!(seen["x-auth-groups"].as_str(), Some("eng,admin"), "{body}");
}

/// scopegate's decision log line for a request carries the `x-request-id` that Envoy wrote to
/// its access log for the same request (Envoy generates it; the shipped configuration passes it
/// to scopegate), so the two logs join.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decision_logs_join_envoys_access_log_by_request_id() {
    let stack = Stack::start().await;
    let path = format!("/join-check-{}", std::process::id());
    let response = stack.get(&path, &[]).await;
    scopegates_denial(response, 401, "unauthorized", &path).await;
    // Envoy's default access log line: `... "<x-request-id>" "<authority>" ...` after the path.
    let mut request_id = String::new();
    eventually("Envoy's access log line", Duration::from_secs(10), || {
        let log = stack.envoy_log();
        let found = log
            .lines()
            .find(|line| line.contains(&path))
            .and_then(|line| {
                line.split('"')
                    .find(|field| field.len() == 36 && field.matches('-').count() == 4)
                    .map(str::to_owned)
            });
        let seen = found.is_some();
        if let Some(id) = found {
            request_id = id;
        }
        async move { seen }
    })
    .await;
    eventually("scopegate's decision line", Duration::from_secs(10), || {
        let log = stack.scopegate_log();
        let joined = log.lines().any(|line| {
            line.contains("scopegate::decision")
                && line.contains(&format!("request_id=\"{request_id}\""))
                && line.contains(&format!("path=\"{path}\""))
                && line.contains("reason=missing_token")
        });
        async move { joined }
    })
    .await;
}
