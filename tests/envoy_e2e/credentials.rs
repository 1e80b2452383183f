//! Hostile credentials through Envoy: malformed or repeated `Authorization` headers, one token
//! of every hostile class, bytes that are not UTF-8; each gets scopegate's in-band JSON denial.

use std::time::Duration;

use crate::common;
use crate::common::stack::Stack;
use crate::support::{json, scopegates_denial};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_credentials_through_envoy() {
    let stack = Stack::start().await;
    let good = stack.token("read:messages");

    // Two Authorization headers: Envoy joins them into one comma-separated value, which is not a
    // single Bearer credential. (This configuration sends `headers`; the `header_map` form, which
    // keeps both values, is refused too: `it::authentication::header_map_input_…`.)
    let response = stack
        .http
        .get(format!("{}/restricted_resource", stack.url))
        .header("authorization", format!("Bearer {good}"))
        .header("authorization", format!("Bearer {good}"))
        .send()
        .await
        .expect("answer");
    let (status, _, body) = json(response).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );

    let b64 = |v: serde_json::Value| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let payload = good.split('.').nth(1).expect("payload").to_string();
    let cases: Vec<(String, u16, &str)> = vec![
        (format!("bearer {good}"), 200, ""),
        (format!("Bearer\t{good}"), 400, "invalid_request"),
        (format!("Bearer {good} {good}"), 400, "invalid_request"),
        (
            format!(
                "Bearer {}.{payload}.",
                b64(serde_json::json!({"alg": "none"}))
            ),
            401,
            "invalid_token",
        ),
        (
            format!(
                "Bearer {}.{payload}.AAAA",
                b64(serde_json::json!({"alg": "HS256"}))
            ),
            401,
            "invalid_token",
        ),
        (format!("Bearer {good}x"), 401, "invalid_token"),
        ("Basic dXNlcjpwYXNz".to_string(), 401, "unauthorized"),
        // Over scopegate's 16 KiB credential cap, well under Envoy's header limit.
        (
            format!("Bearer {}", "a".repeat(20 * 1024)),
            400,
            "invalid_request",
        ),
    ];
    for (authorization, want, error) in cases {
        let response = stack
            .get("/restricted_resource", &[("authorization", &authorization)])
            .await;
        let status = response.status().as_u16();
        let body: serde_json::Value =
            serde_json::from_str(&response.text().await.expect("body")).expect("JSON");
        assert_eq!(status, want, "{authorization:.40}: {body}");
        if want != 200 {
            assert_eq!(body["error"], error, "{authorization:.40}");
        }
    }

    // A percent-encoded spelling of the protected path still needs the scope.
    let weak = format!("Bearer {}", stack.token("openid"));
    let response = stack
        .get("/%72estricted_resource", &[("authorization", &weak)])
        .await;
    scopegates_denial(
        response,
        403,
        "insufficient_scope",
        "/%72estricted_resource",
    )
    .await;
    // Envoy passes letter case through; a case variant of a rule's path is refused, not given the
    // default (the demo upstream happens to be case-sensitive, others are not).
    for authorization in [&weak, &format!("Bearer {good}")] {
        let response = stack
            .get("/RESTRICTED_RESOURCE", &[("authorization", authorization)])
            .await;
        let (status, _, body) = json(response).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_request"))
        );
    }
}

/// One token of each hostile class from `tests/it/hostile_tokens.rs`, through Envoy: Envoy passes
/// the header through untouched, and every one must come back as scopegate's JSON denial.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_tokens_through_envoy() {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use common::stack::{DEMO_AUDIENCE, demo_claims};
    use common::{ISSUER, JwksServer, Reply, TestKey, now};
    use serde_json::json;

    let key = TestKey::generate("key-1");
    let attacker = TestKey::generate("key-1");
    let mut enc = key.jwk();
    enc["kid"] = json!("enc");
    enc["use"] = json!("enc");
    let jwks = JwksServer::start(Reply::json(&json!({"keys": [key.jwk(), enc]}))).await;
    // The attacker's keys, served where the `jku` case points: a fetch would be a hit here.
    let attacker_jwks = JwksServer::start(Reply::json(&json!({"keys": [attacker.jwk()]}))).await;
    let stack = Stack::start_with_issuer(ISSUER, &jwks.url()).await;

    let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
    let valid = demo_claims;
    let with = |claim: &str, value: Value| {
        let mut c = valid("read:messages");
        c[claim] = value;
        c
    };
    let rs256 = json!({"alg": "RS256", "kid": "key-1"});
    let signed_bytes = |header: &[u8], payload: &[u8]| {
        let input = format!("{}.{}", b64(header), b64(payload));
        let signature = key.sign_bytes(input.as_bytes());
        format!("{input}.{}", b64(&signature))
    };
    let good = key.mint_raw(&rs256, &valid("read:messages"));
    let (head, payload) = good
        .rsplit_once('.')
        .expect("three parts")
        .0
        .split_once('.')
        .expect("");
    let signature = good.rsplit('.').next().expect("signature");
    let mut expired = valid("openid");
    expired["exp"] = json!(now() - 3600);

    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("control", good.clone(), 200, ""),
        ("alg none", format!("{}.{payload}.", b64(br#"{"alg":"none"}"#)), 401, "invalid_token"),
        ("alg NoNe", format!("{}.{payload}.", b64(br#"{"alg":"NoNe"}"#)), 401, "invalid_token"),
        (
            "HS256",
            format!("{}.{payload}.{signature}", b64(br#"{"alg":"HS256","kid":"key-1"}"#)),
            401,
            "invalid_token",
        ),
        (
            "ES256 zero signature",
            format!("{}.{payload}.{}", b64(br#"{"alg":"ES256","kid":"key-1"}"#), b64(&[0; 64])),
            401,
            "invalid_token",
        ),
        (
            "jku naming the attacker's keys",
            attacker.mint_raw(
                &json!({"alg": "RS256", "kid": "key-1", "jku": attacker_jwks.url()}),
                &valid("read:messages"),
            ),
            401,
            "invalid_token",
        ),
        (
            "kid path",
            key.mint_raw(&json!({"alg": "RS256", "kid": "../../etc/passwd"}), &valid("read:messages")),
            401,
            "invalid_token",
        ),
        (
            "kid of a use=enc key",
            key.mint_raw(&json!({"alg": "RS256", "kid": "enc"}), &valid("read:messages")),
            401,
            "invalid_token",
        ),
        (
            "crit",
            key.mint_raw(
                &json!({"alg": "RS256", "kid": "key-1", "crit": ["exp"]}),
                &valid("read:messages"),
            ),
            401,
            "invalid_token",
        ),
        (
            "cty JWT",
            key.mint_raw(
                &json!({"alg": "RS256", "kid": "key-1", "cty": "JWT"}),
                &valid("read:messages"),
            ),
            401,
            "invalid_token",
        ),
        ("JWE shape", format!("{head}.{payload}.{signature}.a.b"), 401, "invalid_token"),
        ("empty signature", format!("{head}.{payload}."), 401, "invalid_token"),
        ("+ and / alphabet", format!("{head}.{payload}.{}", signature.replace('-', "+").replace('_', "/")), 401, "invalid_token"),
        ("exp as string", key.mint_raw(&rs256, &with("exp", json!("9999999999"))), 401, "invalid_token"),
        ("exp far past", key.mint_raw(&rs256, &with("exp", json!(1))), 401, "invalid_token"),
        ("nbf in an hour", key.mint_raw(&rs256, &with("nbf", json!(now() + 3600))), 401, "invalid_token"),
        ("iat as string", key.mint_raw(&rs256, &with("iat", json!("now"))), 401, "invalid_token"),
        ("iss without slash", key.mint_raw(&rs256, &with("iss", json!(ISSUER.trim_end_matches('/')))), 401, "invalid_token"),
        ("iss upper case", key.mint_raw(&rs256, &with("iss", json!(ISSUER.to_uppercase()))), 401, "invalid_token"),
        ("aud as number", key.mint_raw(&rs256, &with("aud", json!(1))), 401, "invalid_token"),
        ("aud with slash", key.mint_raw(&rs256, &with("aud", json!(format!("{DEMO_AUDIENCE}/")))), 401, "invalid_token"),
        (
            "duplicate exp",
            signed_bytes(
                br#"{"alg":"RS256","kid":"key-1"}"#,
                format!(
                    r#"{{"iss":"{ISSUER}","aud":"{DEMO_AUDIENCE}","exp":1,"exp":{},"scope":"read:messages"}}"#,
                    now() + 3600
                )
                .as_bytes(),
            ),
            401,
            "invalid_token",
        ),
        ("payload an array", signed_bytes(br#"{"alg":"RS256","kid":"key-1"}"#, b"[]"), 401, "invalid_token"),
        ("payload not UTF-8", signed_bytes(br#"{"alg":"RS256","kid":"key-1"}"#, b"{\"a\":\"\xff\"}"), 401, "invalid_token"),
        ("scope prefix look-alike", key.mint_raw(&rs256, &valid("read:message read:messages2")), 403, "insufficient_scope"),
        ("scope other case", key.mint_raw(&rs256, &valid("READ:MESSAGES")), 403, "insufficient_scope"),
        ("expired and unscoped", key.mint_raw(&rs256, &expired), 401, "invalid_token"),
        // Identity Envoy could not put in a header: refused by scopegate (without the check,
        // Envoy answered a bare 503 "invalid header value").
        ("sub with CR/LF", key.mint_raw(&rs256, &with("sub", json!("a\r\nx-injected: 1"))), 401, "invalid_token"),
        ("sub with NUL", key.mint_raw(&rs256, &with("sub", json!("a\u{0}b"))), 401, "invalid_token"),
        ("scope with a control", key.mint_raw(&rs256, &valid("read:messages a\u{1}b")), 401, "invalid_token"),
        // Scopes that would not split back into the checked set upstream.
        ("scp element with a space", key.mint_raw(&rs256, &with("scp", json!(["read:messages", "x admin"]))), 401, "invalid_token"),
        ("scope with a no-break space", key.mint_raw(&rs256, &valid("read:messages x\u{a0}admin")), 401, "invalid_token"),
        ("crit null", key.mint_raw(&json!({"alg": "RS256", "kid": "key-1", "crit": null}), &valid("read:messages")), 401, "invalid_token"),
        ("sub in UTF-8", key.mint_raw(&rs256, &with("sub", json!("zoë"))), 200, ""),
    ];
    for (name, token, want, error) in cases {
        let response = stack
            .get(
                "/restricted_resource",
                &[("authorization", &format!("Bearer {token}"))],
            )
            .await;
        let status = response.status().as_u16();
        let body = response.text().await.expect("body");
        assert_eq!(status, want, "{name}: {body}");
        if want != 200 {
            let body: Value = serde_json::from_str(&body).expect("scopegate's JSON denial");
            assert_eq!(body["error"], error, "{name}");
        }
    }
    assert_eq!(
        attacker_jwks.hits(),
        0,
        "a token's jku never makes scopegate fetch from where it points"
    );
    // A non-ASCII subject reaches the upstream intact, as UTF-8.
    let token = key.mint_raw(&rs256, &with("sub", json!("zoë")));
    let response = stack
        .get(
            "/restricted_resource",
            &[("authorization", &format!("Bearer {token}"))],
        )
        .await;
    let (status, _, body) = json(response).await;
    assert_eq!((status, body["subject"].as_str()), (200, Some("zoë")));
}

/// Bytes that are not UTF-8 in the one header Envoy forwards to scopegate. A Check carrying a
/// string field that is not UTF-8 would fail to decode in tonic (INTERNAL, before scopegate's
/// handler runs, and so fail open under `failure_mode_allow: true`); Envoy's path must stay
/// in-band: scopegate's own JSON answer, never Envoy's status_on_error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_utf8_header_bytes_through_envoy_are_answered_in_band() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stack = Stack::start().await;
    let addr = stack.url.trim_start_matches("http://").to_string();
    let token = stack.token("read:messages");
    for value in [
        b"Bearer \xff\xfe".to_vec(),
        [b"Bearer ".as_slice(), token.as_bytes(), b"\xc3"].concat(),
        b"\xe9t\xe9".to_vec(),
    ] {
        let mut request =
            b"GET /restricted_resource HTTP/1.1\r\nhost: x\r\nconnection: close\r\nauthorization: "
                .to_vec();
        request.extend_from_slice(&value);
        request.extend_from_slice(b"\r\n\r\n");
        let mut socket = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connect");
        socket.write_all(&request).await.expect("write");
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut answer)).await;
        let answer = String::from_utf8_lossy(&answer);
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
        let status = head.split(' ').nth(1).unwrap_or("");
        assert!(
            matches!(status, "400" | "401") && body.contains("\"error\":"),
            "{value:?}: {answer}"
        );
    }
}
