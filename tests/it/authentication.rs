//! Every 401 and 400 path of a direct gRPC Check against the real server, with real keys and a real
//! JWKS server. Each denial must come back in-band (never as a gRPC error).

use crate::common::*;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;

const PROTECTED: &str = r#"
[[rules]]
path = "/restricted_resource"
scopes = ["read:messages"]
"#;

#[tokio::test]
async fn valid_token_is_allowed() {
    let env = Env::start(PROTECTED).await;
    let answer = env
        .ask_with_scope("GET", "/restricted_resource", "read:messages")
        .await;
    answer.assert_allowed();
    env.gate.stop().await;
}

#[tokio::test]
async fn no_credentials_is_401_without_error_code() {
    let env = Env::start(PROTECTED).await;
    for authorization in [None, Some("Basic dXNlcjpwYXNz"), Some("Negotiate abc")] {
        let answer = env.ask("GET", "/restricted_resource", authorization).await;
        answer.assert_denied(401, "unauthorized");
        assert_eq!(answer.code, UNAUTHENTICATED);
        assert_eq!(
            answer.challenge(),
            "Bearer realm=\"scopegate\"",
            "{authorization:?}"
        );
    }
    env.gate.stop().await;
}

#[tokio::test]
async fn malformed_bearer_credentials_are_400_invalid_request() {
    let env = Env::start(PROTECTED).await;
    let token = env.key.mint(&claims("read:messages"));
    let cases = [
        "Bearer".to_string(),
        "Bearer ".to_string(),
        format!("Bearer\t{token}"),
        format!("Bearer {token} extra"),
        format!("Bearer {token}, Bearer {token}"),
        "Bearer a\"b".to_string(),
        // One byte over the 16 KiB bound on the whole value.
        format!("Bearer {}", "a".repeat(16 * 1024 - "Bearer ".len() + 1)),
    ];
    for authorization in &cases {
        let answer = env
            .ask("GET", "/restricted_resource", Some(authorization))
            .await;
        answer.assert_denied(400, "invalid_request");
        assert_eq!(answer.code, UNAUTHENTICATED);
        assert!(
            answer
                .challenge()
                .starts_with("Bearer realm=\"scopegate\", error=\"invalid_request\""),
            "{answer:?}"
        );
    }
    // A value of exactly 16 KiB is read as credentials: its token fails verification instead.
    let at_the_bound = format!("Bearer {}", "a".repeat(16 * 1024 - "Bearer ".len()));
    env.ask("GET", "/restricted_resource", Some(&at_the_bound))
        .await
        .assert_denied(401, "invalid_token");
    env.gate.stop().await;
}

#[tokio::test]
async fn scheme_is_case_insensitive() {
    let env = Env::start(PROTECTED).await;
    let token = env.key.mint(&claims("read:messages"));
    for scheme in ["bearer", "BEARER", "BeArEr"] {
        env.ask(
            "GET",
            "/restricted_resource",
            Some(&format!("{scheme} {token}")),
        )
        .await
        .assert_allowed();
    }
    env.gate.stop().await;
}

#[tokio::test]
async fn header_map_input_is_read_and_duplicate_headers_are_refused() {
    let env = Env::start(PROTECTED).await;
    let good = bearer(&env.key.mint(&claims("read:messages")));
    let raw = |headers: &[(&str, &[u8])]| raw_request("GET", "/restricted_resource", headers);

    let answer = Answer::of(
        &env.gate
            .check(raw(&[("authorization", good.as_bytes())]))
            .await,
    );
    answer.assert_allowed();

    let twice = raw(&[
        ("authorization", good.as_bytes()),
        ("authorization", good.as_bytes()),
    ]);
    Answer::of(&env.gate.check(twice).await).assert_denied(400, "invalid_request");

    let not_utf8 = raw(&[("authorization", b"Bearer \xff\xfe")]);
    Answer::of(&env.gate.check(not_utf8).await).assert_denied(400, "invalid_request");

    let none = raw(&[("x-other", b"1")]);
    Answer::of(&env.gate.check(none).await).assert_denied(401, "unauthorized");
    env.gate.stop().await;
}

/// Each case: (name, token) → 401 invalid_token.
#[tokio::test]
async fn invalid_tokens_are_401_invalid_token() {
    let env = Env::start(PROTECTED).await;
    let key = &env.key;
    let other_key = TestKey::generate("key-1"); // same kid, different key
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": "key-1"});
    let good = claims("read:messages");
    let with = |k: &str, v: serde_json::Value| {
        let mut c = good.clone();
        c[k] = v;
        c
    };
    let without = |k: &str| {
        let mut c = good.clone();
        c.as_object_mut().expect("object").remove(k);
        c
    };
    let b64 = |s: &str| URL_SAFE_NO_PAD.encode(s);
    let valid = key.mint(&good);
    let (valid_h, rest) = valid.split_once('.').expect("dot");
    let (valid_p, valid_s) = rest.split_once('.').expect("dot");

    let cases: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            key.mint(&with("exp", json!(now() - 3600))),
            "token has expired",
        ),
        (
            "expired beyond leeway",
            key.mint(&with("exp", json!(now() - 61))),
            "token has expired",
        ),
        ("no exp", key.mint(&without("exp")), "token has no expiry"),
        (
            "exp as string",
            key.mint(&with("exp", json!("9999999999"))),
            "token claims are malformed",
        ),
        (
            "not yet valid",
            key.mint(&with("nbf", json!(now() + 3600))),
            "token is not valid yet",
        ),
        (
            "wrong issuer",
            key.mint(&with("iss", json!("https://evil.test/"))),
            "token issuer is not accepted",
        ),
        (
            "issuer without slash",
            key.mint(&with("iss", json!("https://issuer.test"))),
            "token issuer is not accepted",
        ),
        (
            "issuer as array",
            key.mint(&with("iss", json!([ISSUER]))),
            "token claims are malformed",
        ),
        (
            "no issuer",
            key.mint(&without("iss")),
            "token issuer is not accepted",
        ),
        (
            "wrong audience",
            key.mint(&with("aud", json!("https://other.test"))),
            "token audience is not accepted",
        ),
        (
            "audience array without ours",
            key.mint(&with("aud", json!(["a", "b"]))),
            "token audience is not accepted",
        ),
        (
            "no audience",
            key.mint(&without("aud")),
            "token audience is not accepted",
        ),
        (
            "signed by another key",
            other_key.mint(&good),
            "token signature is invalid",
        ),
        (
            "tampered payload",
            format!(
                "{valid_h}.{}.{valid_s}",
                b64(&with("scope", json!("admin")).to_string())
            ),
            "token signature is invalid",
        ),
        (
            "unknown kid",
            key.mint_raw(&json!({"alg": "RS256", "kid": "nope"}), &good),
            "token signing key is unknown",
        ),
        (
            "alg none",
            format!("{}.{valid_p}.", b64(r#"{"alg":"none","kid":"key-1"}"#)),
            "token is not a compact JWS (header.payload.signature)",
        ),
        (
            "alg none with signature",
            format!(
                "{}.{valid_p}.{valid_s}",
                b64(r#"{"alg":"none","kid":"key-1"}"#)
            ),
            "token algorithm is not allowed",
        ),
        (
            "alg HS256",
            key.mint_raw(&json!({"alg": "HS256", "kid": "key-1"}), &good),
            "token algorithm is not allowed",
        ),
        (
            "alg RS512 not allowed",
            key.mint_raw(&json!({"alg": "RS512", "kid": "key-1"}), &good),
            "token algorithm is not allowed",
        ),
        (
            "alg missing",
            key.mint_raw(&json!({"kid": "key-1"}), &good),
            "token algorithm is not allowed",
        ),
        (
            "alg not a string",
            key.mint_raw(&json!({"alg": 256, "kid": "key-1"}), &good),
            "token algorithm is not allowed",
        ),
        (
            "crit header",
            key.mint_raw(
                &json!({"alg": "RS256", "kid": "key-1", "crit": ["exp"]}),
                &good,
            ),
            "token header has unsupported critical parameters",
        ),
        (
            // `null` is still a `crit` member (RFC 8725: refuse what is not understood).
            "crit null",
            key.mint_raw(
                &json!({"alg": "RS256", "kid": "key-1", "crit": null}),
                &good,
            ),
            "token header has unsupported critical parameters",
        ),
        (
            "crit empty",
            key.mint_raw(&json!({"alg": "RS256", "kid": "key-1", "crit": []}), &good),
            "token header has unsupported critical parameters",
        ),
        (
            "nested token",
            key.mint_raw(
                &json!({"alg": "RS256", "kid": "key-1", "cty": "JWT"}),
                &good,
            ),
            "nested tokens are not accepted",
        ),
        (
            "kid not a string",
            key.mint_raw(&json!({"alg": "RS256", "kid": 1}), &good),
            "token header is malformed",
        ),
        (
            "two segments",
            format!("{valid_h}.{valid_p}"),
            "token is not a compact JWS (header.payload.signature)",
        ),
        (
            "four segments",
            format!("{valid}.x"),
            "token is not a compact JWS (header.payload.signature)",
        ),
        (
            "JWE",
            "a.b.c.d.e".to_string(),
            "encrypted tokens (JWE) are not accepted",
        ),
        (
            "empty payload",
            format!("{valid_h}..{valid_s}"),
            "token is not a compact JWS (header.payload.signature)",
        ),
        (
            "padded signature",
            format!("{valid}=="),
            "token signature is not valid base64url",
        ),
        (
            "header not base64url",
            format!("{}.{valid_p}.{valid_s}", "e+J"),
            "token header is not valid base64url",
        ),
        (
            "header not an object",
            key.mint_raw(&json!(["RS256"]), &good),
            "token header is malformed",
        ),
        (
            "payload not an object",
            key.mint_raw(&header, &json!([1, 2])),
            "token claims are malformed",
        ),
    ];
    for (name, token, message) in cases {
        let answer = env
            .ask("GET", "/restricted_resource", Some(&bearer(&token)))
            .await;
        answer.assert_denied(401, "invalid_token");
        assert_eq!(answer.code, UNAUTHENTICATED, "{name}");
        assert_eq!(answer.message(), message, "{name}");
        assert_eq!(
            answer.challenge(),
            format!(
                "Bearer realm=\"scopegate\", error=\"invalid_token\", error_description=\"{message}\""
            ),
            "{name}"
        );
    }
    env.gate.stop().await;
}

#[tokio::test]
async fn token_within_leeway_is_accepted() {
    let env = Env::start(PROTECTED).await;
    let mut c = claims("read:messages");
    c["exp"] = json!(now() - 30);
    c["nbf"] = json!(now() + 30);
    let token = env.key.mint(&c);
    env.ask("GET", "/restricted_resource", Some(&bearer(&token)))
        .await
        .assert_allowed();
    env.gate.stop().await;
}

#[tokio::test]
async fn authentication_errors_come_before_scope_errors() {
    let env = Env::start(PROTECTED).await;
    let mut c = claims("nothing:useful");
    c["exp"] = json!(now() - 3600);
    let token = env.key.mint(&c);
    env.ask("GET", "/restricted_resource", Some(&bearer(&token)))
        .await
        .assert_denied(401, "invalid_token");
    env.gate.stop().await;
}

#[tokio::test]
async fn token_without_kid_is_matched_only_when_the_key_set_has_one_key() {
    let env = Env::start(PROTECTED).await;
    let no_kid = json!({"alg": "RS256", "typ": "JWT"});
    let token = env.key.mint_raw(&no_kid, &claims("read:messages"));
    env.ask("GET", "/restricted_resource", Some(&bearer(&token)))
        .await
        .assert_allowed();
    env.gate.stop().await;

    let second = TestKey::generate("key-2");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&env.key, &second]))).await;
    let gate = Scopegate::start_ready(&jwks.url(), PROTECTED).await;
    let answer = gate
        .ask("GET", "/restricted_resource", Some(&bearer(&token)))
        .await;
    answer.assert_denied(401, "invalid_token");
    assert_eq!(answer.message(), "token signing key is unknown");
    gate.stop().await;
}

#[tokio::test]
async fn a_key_published_for_one_algorithm_verifies_no_other() {
    // RS512 is allowed, but the key is published with alg RS256.
    let key = TestKey::generate("key-1");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
    let extra = format!("algorithms = [\"RS256\", \"RS512\"]\n{PROTECTED}");
    let gate = Scopegate::start_ready(&jwks.url(), &extra).await;
    let token = key.mint_with(
        &aws_lc_rs::signature::RSA_PKCS1_SHA512,
        &json!({"alg": "RS512", "kid": "key-1"}),
        &claims("read:messages"),
    );
    let answer = gate
        .ask("GET", "/restricted_resource", Some(&bearer(&token)))
        .await;
    answer.assert_denied(401, "invalid_token");
    assert_eq!(answer.message(), "token algorithm does not match its key");
    gate.stop().await;
}

/// ES256, ES384 and EdDSA (and RFC 9864's Ed25519) tokens verify against EC P-256/P-384 and
/// Ed25519 keys once the algorithms are allowed; a forged signature, a key of another curve
/// or type under the token's kid, and an algorithm outside the allow-list never do.
#[tokio::test]
async fn ec_and_ed25519_tokens_verify_when_allowed_and_only_then() {
    use jsonwebtoken::Algorithm::{ES256, ES384, EdDSA};
    let p256 = CurveKey::ec("p256", "P-256");
    let p384 = CurveKey::ec("p384", "P-384");
    let ed = CurveKey::ed25519("ed");
    let forger = [CurveKey::ec("p256", "P-256"), CurveKey::ed25519("ed")];
    let server = JwksServer::start(Reply::json(
        &json!({"keys": [p256.jwk.clone(), p384.jwk.clone(), ed.jwk.clone()]}),
    ))
    .await;
    let gate = Scopegate::start_ready(
        &server.url(),
        "algorithms = [\"ES256\", \"ES384\", \"EdDSA\", \"Ed25519\"]\n\
         [[rules]]\npath = \"/r\"\nscopes = [\"read:messages\"]\n",
    )
    .await;
    let good = claims("read:messages");
    for (name, token) in [
        ("ES256", p256.mint(ES256, &good)),
        ("ES384", p384.mint(ES384, &good)),
        ("EdDSA", ed.mint(EdDSA, &good)),
        ("Ed25519", ed.mint_ed25519(&good)),
    ] {
        let answer = gate.ask("GET", "/r", Some(&bearer(&token))).await;
        assert_eq!(answer.code, OK, "{name}: {answer:?}");
    }
    for (name, token, message) in [
        (
            "ES256 forged",
            forger[0].mint(ES256, &good),
            "token signature is invalid",
        ),
        (
            "EdDSA forged",
            forger[1].mint(EdDSA, &good),
            "token signature is invalid",
        ),
        // The P-384 key cannot verify ES256, nor the Ed25519 key ES256.
        (
            "ES256 under the P-384 key's kid",
            {
                let mut header = jsonwebtoken::Header::new(ES256);
                header.kid = Some("p384".into());
                jsonwebtoken::encode(&header, &good, &p256.encoding).expect("encode")
            },
            "token algorithm does not match its key",
        ),
        (
            "ES256 under the Ed25519 key's kid",
            {
                let mut header = jsonwebtoken::Header::new(ES256);
                header.kid = Some("ed".into());
                jsonwebtoken::encode(&header, &good, &p256.encoding).expect("encode")
            },
            "token algorithm does not match its key",
        ),
    ] {
        let answer = gate.ask("GET", "/r", Some(&bearer(&token))).await;
        answer.assert_denied(401, "invalid_token");
        assert_eq!(answer.message(), message, "{name}");
    }
    gate.stop().await;

    // With RS256 alone allowed (the default), the same keys are skipped (an RSA key beside them
    // keeps the set usable) and the same tokens refused for their algorithm.
    let rsa = TestKey::generate("rsa");
    server.set(Reply::json(
        &json!({"keys": [p256.jwk.clone(), ed.jwk.clone(), rsa.jwk()]}),
    ));
    let gate = Scopegate::start_ready(
        &server.url(),
        "[[rules]]\npath = \"/r\"\nscopes = [\"read:messages\"]\n",
    )
    .await;
    for token in [p256.mint(ES256, &good), ed.mint(EdDSA, &good)] {
        let answer = gate.ask("GET", "/r", Some(&bearer(&token))).await;
        assert_eq!(
            (answer.http, answer.message()),
            (401, "token algorithm is not allowed")
        );
    }
    gate.stop().await;
}
