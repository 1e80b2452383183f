//! What the proxies calling scopegate's `/forward-auth` dialect (Caddy's `forward_auth`,
//! Traefik's `forwardAuth`) show end to end besides what every proxy does (`harness`): a 503
//! reaches the client as scopegate made it, a forwarded claim's header reaches the upstream only
//! as scopegate set it, and the original request is the one the proxy describes, never one a
//! client describes in its own `X-Forwarded-*` headers.

use serde_json::Value;

use crate::harness::{Answer, ProxyStack};

/// Identity headers a client sends of its own, with values that must never reach the upstream:
/// the built-in ones and `x-auth-client`, the demo configuration's `forward_claims` header
/// (`azp`), which the shipped files name only by their `x-auth-*` wildcard.
pub const SPOOFED: [(&str, &str); 3] = [
    ("x-auth-subject", "spoofed-admin"),
    ("x-auth-scopes", "spoofed:scope"),
    ("x-auth-client", "spoofed-client"),
];

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

/// The client's identity headers, a forwarded claim's among them, never reach the upstream:
/// with a token holding the claims they arrive as scopegate set them (overwritten), with a token
/// lacking them, or on the public route, not at all (removed).
pub async fn assert_spoofed_claim_headers_never_reach_the_upstream(stack: &ProxyStack) {
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
