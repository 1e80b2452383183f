//! What every proxy calling scopegate's `/forward-auth` dialect (Caddy's `forward_auth`,
//! Traefik's `forwardAuth`) must show end to end, whatever its configuration syntax: the
//! decisions reach the client as scopegate made them, identity headers reach the upstream only
//! as scopegate set them, and the original request is the one the proxy describes, never one a
//! client describes in its own `X-Forwarded-*` headers.

use serde_json::Value;

use crate::harness::{Answer, ProxyStack};

/// Identity headers a client sends of its own, with values that must never reach the upstream.
pub const SPOOFED: [(&str, &str); 3] = [
    ("x-auth-subject", "spoofed-admin"),
    ("x-auth-scopes", "spoofed:scope"),
    ("x-auth-client", "spoofed-client"),
];

/// 401 without a token (a challenge without an error code), 403 without the scope (the scope
/// wanted in the challenge), 400 for an unreadable credential and for a refused reading
/// (`/restricted_resource.` could be served as `/restricted_resource`), each with scopegate's
/// JSON body; 200 with the identity headers (also for a query and a POST with a body, which
/// the proxy never sends to scopegate).
pub async fn assert_decisions_reach_the_client(stack: &ProxyStack) {
    let weak = format!("Bearer {}", stack.token("openid"));
    let good = format!("Bearer {}", stack.token("read:messages"));

    let answer = stack.get("/restricted_resource", &[]).await;
    answer.assert_denial(401, "unauthorized", Some("realm="));
    assert!(
        !answer
            .header("www-authenticate")
            .unwrap_or_default()
            .contains("error="),
        "no error code without credentials (RFC 6750 §3.1): {answer:?}"
    );

    let answer = stack
        .get("/restricted_resource", &[("authorization", &weak)])
        .await;
    answer.assert_denial(
        403,
        "insufficient_scope",
        Some("error=\"insufficient_scope\""),
    );
    assert!(
        answer
            .header("www-authenticate")
            .unwrap_or_default()
            .contains("read:messages"),
        "the challenge names the scope wanted: {answer:?}"
    );

    let answer = stack
        .get("/restricted_resource%2e", &[("authorization", &good)])
        .await;
    answer.assert_denial(400, "invalid_request", None);

    let answer = stack
        .get("/restricted_resource", &[("authorization", "Bearer a b")])
        .await;
    answer.assert_denial(400, "invalid_request", Some("error=\"invalid_request\""));

    for path in ["/restricted_resource", "/restricted_resource?page=2"] {
        let answer = stack.get(path, &[("authorization", &good)]).await;
        let (subject, scopes, _) = answer.upstream_saw();
        assert_eq!(
            (subject.as_deref(), scopes.as_deref()),
            (Some("e2e-user"), Some("read:messages")),
            "{path}: {answer:?}"
        );
    }

    // 256 KiB of body: the proxy passes it to the upstream, never to scopegate (which would
    // answer 413).
    let body = "x".repeat(256 << 10);
    let answer = stack
        .send(
            reqwest::Method::POST,
            "/anything",
            &[
                ("authorization", &good),
                ("content-type", "application/json"),
            ],
            &body,
        )
        .await;
    let (subject, _, _) = answer.upstream_saw();
    assert_eq!(subject.as_deref(), Some("e2e-user"), "{answer:?}");
}

/// Without keys, a request with a token gets scopegate's 503 with its JSON body and
/// `Retry-After`; one without a token is still 401, and the public route still served.
pub async fn assert_503_reaches_the_client(stack: &ProxyStack) {
    let good = format!("Bearer {}", stack.token("read:messages"));
    let answer = stack
        .get("/restricted_resource", &[("authorization", &good)])
        .await;
    answer.assert_denial(503, "temporarily_unavailable", None);
    assert_eq!(
        answer.header("retry-after").as_deref(),
        Some("5"),
        "{answer:?}"
    );
    stack
        .get("/restricted_resource", &[])
        .await
        .assert_denial(401, "unauthorized", Some("realm="));
    assert_eq!(stack.get("/public", &[]).await.status, 200);
}

/// A request carrying [`SPOOFED`], and the identity the upstream must see instead.
struct SpoofCase<'a> {
    case: &'a str,
    path: &'a str,
    authorization: Option<&'a str>,
    /// `x-auth-subject` as the upstream must see it; `None`: absent.
    subject: Option<&'a str>,
    /// `x-auth-scopes` as the upstream must see it; `None`: absent.
    scopes: Option<&'a str>,
}

/// The client's identity headers never reach the upstream: with a token holding the claims
/// they arrive as scopegate set them (overwritten), with a token lacking them, or on the public
/// route, not at all (removed).
pub async fn assert_spoofed_identity_never_reaches_the_upstream(stack: &ProxyStack) {
    let with_claims = format!("Bearer {}", stack.token("read:messages"));
    let without_claims = format!(
        "Bearer {}",
        stack.token_with(
            "",
            serde_json::Map::from_iter([("sub".into(), Value::Null)])
        )
    );
    let cases = [
        SpoofCase {
            case: "a token with the claims",
            path: "/restricted_resource",
            authorization: Some(&with_claims),
            subject: Some("e2e-user"),
            scopes: Some("read:messages"),
        },
        SpoofCase {
            case: "a token without sub or scope",
            path: "/anything",
            authorization: Some(&without_claims),
            subject: None,
            scopes: None,
        },
        SpoofCase {
            case: "the public route, no token",
            path: "/public",
            authorization: None,
            subject: None,
            scopes: None,
        },
    ];
    for SpoofCase {
        case,
        path,
        authorization,
        subject,
        scopes,
    } in cases
    {
        let mut headers = SPOOFED.to_vec();
        if let Some(authorization) = authorization {
            headers.push(("authorization", authorization));
        }
        let answer = stack.get(path, &headers).await;
        let (seen_subject, seen_scopes, all) = answer.upstream_saw();
        assert_eq!(
            (seen_subject.as_deref(), seen_scopes.as_deref()),
            (subject, scopes),
            "{case}: {answer:?}"
        );
        for (_, spoofed) in SPOOFED {
            assert!(
                !all.to_string().contains(spoofed),
                "{case}: a spoofed value reached the upstream: {answer:?}"
            );
        }
    }
}

/// The original request reaches scopegate in `X-Forwarded-Method`, `-Uri`, `-Host` and
/// `-Proto`, which the proxy sets itself: a client sending its own cannot make a protected
/// request read as a public one, nor a public one as a protected one.
pub async fn assert_a_client_cannot_choose_the_request_decided(stack: &ProxyStack) {
    let weak = format!("Bearer {}", stack.token("openid"));
    let claims = [
        ("x-forwarded-uri", "/public"),
        ("x-forwarded-method", "OPTIONS"),
        ("x-forwarded-host", "elsewhere.example"),
        ("x-forwarded-proto", "https"),
        ("x-original-uri", "/public"),
        ("x-original-method", "OPTIONS"),
    ];
    let mut headers = claims.to_vec();
    stack
        .get("/restricted_resource", &headers)
        .await
        .assert_denial(401, "unauthorized", Some("realm="));
    headers.push(("authorization", &weak));
    stack
        .get("/restricted_resource", &headers)
        .await
        .assert_denial(403, "insufficient_scope", Some("insufficient_scope"));
    // And the other way round: a public request claiming a protected one is still public.
    let headers = [
        ("x-forwarded-uri", "/restricted_resource"),
        ("x-forwarded-method", "GET"),
    ];
    let answer = stack.get("/public", &headers).await;
    assert_eq!(answer.status, 200, "{answer:?}");
}

/// `GET path` with `authorization`, sent as written (a client library would resolve dot
/// segments first), on a connection of its own.
pub async fn raw_get(stack: &ProxyStack, path: &str, authorization: &str) -> Answer {
    stack
        .raw(&format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {authorization}\r\n\
             Connection: close\r\n\r\n"
        ))
        .await
}
