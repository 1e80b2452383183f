//! What the proxies calling scopegate's `/forward-auth` dialect (Caddy's `forward_auth`,
//! Traefik's `forwardAuth`) show end to end besides what every proxy does (`harness`): the
//! original request is the one the proxy describes, never one a client describes in its own
//! `X-Forwarded-*` headers.

use crate::harness::{Answer, ProxyStack};

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
