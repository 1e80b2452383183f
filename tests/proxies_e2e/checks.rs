//! The checks every proxy's end-to-end tests run through its shipped configuration: decisions
//! reach the client with their real status, body and challenge; identity headers reach the
//! upstream only as scopegate set them; a 503 without keys; keep-alive to scopegate; a long
//! challenge; and the original request is the one the proxy describes, never one a client
//! describes in its own `X-Forwarded-*` or `X-Original-*` headers.

use serde_json::Value;

use crate::harness::{Answer, Keys, ProxyKind, ProxyStack};

/// The original request reaches scopegate in headers the proxy sets itself (`X-Forwarded-Method`,
/// `-Uri`, `-Host`, `-Proto` for `/forward-auth`; `X-Original-Method`, `-URI` for
/// `/nginx-auth`): a client sending its own cannot make a protected request read as a public
/// one, nor a public one as a protected one.
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
        ("x-original-uri", "/restricted_resource"),
        ("x-original-method", "GET"),
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

/// The headers a client sends to claim an identity of its own choosing.
pub const SPOOFED: [(&str, &str); 2] = [
    ("x-auth-subject", "mallory"),
    ("x-auth-scopes", "admin:everything"),
];

/// [`SPOOFED`] and `x-auth-client`, the demo configuration's `forward_claims` header (`azp`),
/// for the proxies whose shipped files pass every `x-auth-*` header of scopegate's answer and
/// none of the client's (Envoy, Caddy, Traefik; nginx names each header it passes).
pub const SPOOFED_WITH_FORWARDED_CLAIM: [(&str, &str); 3] =
    [SPOOFED[0], SPOOFED[1], ("x-auth-client", "spoofed-client")];

/// What every proxy passes on, whatever its configuration language: 401 without a token, with
/// the challenge; 403 for a missing scope, with the JSON body and the `insufficient_scope`
/// challenge; 400 for a refused reading of the path (an encoded dot) or of the method (a method
/// override or a form POST that could run another rule's handler) and for malformed
/// credentials; 200 with the identity headers at the upstream; and a request body that never
/// reaches scopegate (the POST is allowed, not refused as an oversized authorization request).
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

    // A refused reading: `/restricted_resource.` could be served as /restricted_resource.
    let answer = stack
        .get("/restricted_resource%2e", &[("authorization", &good)])
        .await;
    answer.assert_denial(400, "invalid_request", None);

    // A HEAD is decided as the GET it stands for: no body, so the status and the challenge say
    // whose answer it is.
    for (authorization, status, challenge) in [
        (None, 401, "realm="),
        (Some(&weak), 403, "insufficient_scope"),
    ] {
        let mut headers = Vec::new();
        if let Some(authorization) = authorization {
            headers.push(("authorization", authorization.as_str()));
        }
        let answer = stack
            .send(reqwest::Method::HEAD, "/restricted_resource", &headers, "")
            .await;
        assert_eq!(answer.status, status, "{answer:?}");
        assert!(
            answer
                .header("www-authenticate")
                .is_some_and(|c| c.contains(challenge)),
            "{answer:?}"
        );
    }
    let answer = stack
        .send(
            reqwest::Method::HEAD,
            "/restricted_resource",
            &[("authorization", &good)],
            "",
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");

    // Refused readings of the method: a POST (any token will do) naming GET (which needs
    // read:messages) in each override header, and a form POST, whose body could name one. The
    // proxy must pass those headers for scopegate to see them.
    for (name, value) in [
        ("x-http-method-override", "GET"),
        ("x-http-method", "GET"),
        ("x-method-override", "GET"),
        ("content-type", "application/x-www-form-urlencoded"),
    ] {
        let answer = stack
            .send(
                reqwest::Method::POST,
                "/restricted_resource",
                &[("authorization", &weak), (name, value)],
                "a=b",
            )
            .await;
        answer.assert_denial(400, "invalid_request", None);
    }

    // The absolute form of a request target (what clients send to a forward proxy): decided on
    // its path like any other, never passed unchecked.
    for authorization in ["", &weak] {
        let mut request = "GET http://api.test/restricted_resource HTTP/1.1\r\nHost: api.test\r\n\
                           Connection: close\r\n"
            .to_string();
        if !authorization.is_empty() {
            request.push_str(&format!("Authorization: {authorization}\r\n"));
        }
        request.push_str("\r\n");
        let answer = stack.raw(&request).await;
        let (status, error) = if authorization.is_empty() {
            (401, "unauthorized")
        } else {
            (403, "insufficient_scope")
        };
        answer.assert_denial(status, error, Some("realm="));
    }

    let answer = stack
        .get("/restricted_resource", &[("authorization", "Bearer a b")])
        .await;
    answer.assert_denial(400, "invalid_request", Some("error=\"invalid_request\""));

    let answer = stack
        .get("/restricted_resource", &[("authorization", &good)])
        .await;
    let (subject, scopes, _) = answer.upstream_saw();
    assert_eq!(
        (subject.as_deref(), scopes.as_deref()),
        (Some("e2e-user"), Some("read:messages")),
        "{answer:?}"
    );

    // A body four times what scopegate would take on an authorization request (413): the
    // proxy passes it to the upstream, never to scopegate. (Small enough for the demo upstream,
    // which answers without reading it, to take whole into its socket's buffer.)
    let body = "x".repeat(4 * scopegate::serve::http::MAX_BODY_BYTES);
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

/// A client's own identity headers (`spoofed`: name, value) never reach the upstream:
/// overwritten by a token that has the claims, removed for a token that lacks them (no `sub`, no
/// `scope`) and on the public route without a token. `x-auth-subject` and
/// `x-auth-scopes` are checked for scopegate's own values too.
pub async fn assert_spoofed_identity_never_reaches_the_upstream(
    stack: &ProxyStack,
    spoofed: &[(&str, &str)],
) {
    let with_claims = format!("Bearer {}", stack.token("read:messages"));
    let without_claims = format!(
        "Bearer {}",
        stack.token_with(
            "",
            serde_json::Map::from_iter([("sub".into(), Value::Null)])
        )
    );
    // (case, path, Authorization, the subject and scopes the upstream must see)
    type Case<'a> = (
        &'a str,
        &'a str,
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
    );
    let cases: [Case; 3] = [
        (
            "a token with the claims",
            "/restricted_resource",
            Some(&with_claims),
            Some("e2e-user"),
            Some("read:messages"),
        ),
        (
            "a token without sub or scope",
            "/anything",
            Some(&without_claims),
            None,
            None,
        ),
        ("the public route, no token", "/public", None, None, None),
    ];
    for (case, path, authorization, subject, scopes) in cases {
        let mut headers = spoofed.to_vec();
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
        for (_, value) in spoofed {
            assert!(
                !all.to_string().contains(value),
                "{case}: a spoofed value reached the upstream: {answer:?}"
            );
        }
    }
}

/// Without keys, a request with a token gets scopegate's 503 as scopegate made it, with its JSON body and
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

/// The proxy keeps its connections to scopegate open between authorization requests: twenty
/// requests one after another open at most `most` connections besides those the stack's start
/// opened (the proxy's worker threads may each open one), where a proxy opening one per request
/// would leave twenty. Counting only new ones keeps out connections of an earlier process that
/// had the same port, still in TIME_WAIT.
pub async fn assert_keeps_connections_to_scopegate_alive(stack: &ProxyStack, most: usize) {
    let good = format!("Bearer {}", stack.token("read:messages"));
    let before = stack.connections_to_scopegate();
    assert!(
        !before.is_empty(),
        "the start's requests went through scopegate"
    );
    for _ in 0..20 {
        let answer = stack
            .get("/restricted_resource", &[("authorization", &good)])
            .await;
        assert_eq!(answer.status, 200, "{answer:?}");
    }
    let new = stack.connections_to_scopegate().difference(&before).count();
    assert!(
        new <= most,
        "{new} new connections to scopegate for 20 requests, at most {most} expected"
    );
}

/// A 403 whose challenge names 150 scopes (over 6 KiB) reaches the client whole, as scopegate's
/// denial: a proxy whose buffer for the authorization answer's headers is too small turns it
/// into a failure (503).
pub async fn assert_a_long_challenge_reaches_the_client(kind: &impl ProxyKind) {
    let scopes: Vec<String> = (0..150)
        .map(|i| format!("\"scope:{i:03}-{}\"", "s".repeat(32)))
        .collect();
    let rules = format!(
        "[[rules]]\npath = \"/many_scopes\"\nscopes = [{}]\n",
        scopes.join(", ")
    );
    let stack = ProxyStack::start_with_rules(kind, Keys::Served, &rules).await;
    let weak = format!("Bearer {}", stack.token("openid"));
    let answer = stack.get("/many_scopes", &[("authorization", &weak)]).await;
    answer.assert_denial(403, "insufficient_scope", Some("scope:149-"));
    assert!(
        answer.header("www-authenticate").unwrap_or_default().len() > 6 << 10,
        "{answer:?}"
    );
}

/// With scopegate gone (stopped once the stack is up), the proxy lets nothing through: neither a
/// protected request with a good token nor a public one reaches the upstream; each gets the
/// proxy's own failure, a 5xx (Caddy 502, Traefik 500; nginx and Envoy as their files say).
/// Returns the answers, for what each proxy says on top.
pub async fn assert_fails_closed_without_scopegate(kind: &impl ProxyKind) -> Vec<Answer> {
    let mut stack = ProxyStack::start(kind, Keys::Served).await;
    let good = format!("Bearer {}", stack.token("read:messages"));
    stack.stop_scopegate().await;
    let mut answers = Vec::new();
    for (path, headers) in [
        (
            "/restricted_resource",
            vec![("authorization", good.as_str())],
        ),
        ("/public", vec![]),
    ] {
        let answer = stack.get(path, &headers).await;
        assert!(
            (500..600).contains(&answer.status),
            "{path} without scopegate: {answer:?}"
        );
        answers.push(answer);
    }
    answers
}
