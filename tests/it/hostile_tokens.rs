//! Hostile tokens and headers against a direct gRPC Check: each case names the status and error
//! code it must get. Together with tests/authentication.rs this is the evidence behind the
//! README's behaviour table.

use crate::common::*;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

const PROTECTED: &str = "[[rules]]\npath = \"/r\"\nscopes = [\"read:messages\"]\n";

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn with(claim: &str, value: Value) -> Value {
    let mut c = claims("read:messages");
    c[claim] = value;
    c
}

/// Signs exactly the given header and payload bytes (not re-serialised JSON).
fn mint_bytes(key: &TestKey, header: &[u8], payload: &[u8]) -> String {
    let input = format!("{}.{}", b64(header), b64(payload));
    let signature = key.sign_bytes(input.as_bytes());
    format!("{input}.{}", b64(signature))
}

async fn expect_invalid(env: &Env, name: &str, token: &str, message: &str) {
    let answer = env.ask("GET", "/r", Some(&bearer(token))).await;
    assert_eq!(
        (answer.http, answer.error(), answer.message()),
        (401, "invalid_token", message),
        "{name}"
    );
}

#[tokio::test]
async fn time_claims_of_every_shape() {
    // Boundaries are checked to the second in verify's unit tests, with the clock passed in.
    // Here the real clock runs while the cases are sent, so every case keeps a margin that only
    // grows (or stays safe for 30 s) as time passes.
    let env = Env::start(PROTECTED).await;
    let t = now();
    let k = &env.key;
    for (name, token, outcome) in [
        (
            "exp fractional, future",
            k.mint(&with("exp", json!(t as f64 + 100.5))),
            None,
        ),
        (
            "exp zero",
            k.mint(&with("exp", json!(0))),
            Some("token has expired"),
        ),
        (
            "exp negative",
            k.mint(&with("exp", json!(-1))),
            Some("token has expired"),
        ),
        (
            "exp null",
            k.mint(&with("exp", Value::Null)),
            Some("token has no expiry"),
        ),
        (
            "exp string",
            k.mint(&with("exp", json!("never"))),
            Some("token claims are malformed"),
        ),
        (
            "exp bool",
            k.mint(&with("exp", json!(true))),
            Some("token claims are malformed"),
        ),
        (
            "exp array",
            k.mint(&with("exp", json!([t + 100]))),
            Some("token claims are malformed"),
        ),
        (
            "exp 61 s ago, past the 60 s leeway",
            k.mint(&with("exp", json!(t - 61))),
            Some("token has expired"),
        ),
        (
            "exp 30 s ago, inside leeway",
            k.mint(&with("exp", json!(t - 30))),
            None,
        ),
        (
            "nbf in 30 s, inside leeway",
            k.mint(&with("nbf", json!(t + 30))),
            None,
        ),
        (
            "nbf in 90 s, past leeway",
            k.mint(&with("nbf", json!(t + 90))),
            Some("token is not valid yet"),
        ),
        (
            "nbf string",
            k.mint(&with("nbf", json!("0"))),
            Some("token claims are malformed"),
        ),
        (
            "iat string",
            k.mint(&with("iat", json!("now"))),
            Some("token claims are malformed"),
        ),
        (
            "exp beyond f64",
            mint_bytes(
                k,
                br#"{"alg":"RS256","kid":"key-1"}"#,
                format!(r#"{{"iss":"{ISSUER}","aud":"{AUDIENCE}","exp":1e400,"scope":"read:messages"}}"#).as_bytes(),
            ),
            Some("token claims are malformed"),
        ),
        (
            "exp beyond 64 bits",
            mint_bytes(
                k,
                br#"{"alg":"RS256","kid":"key-1"}"#,
                format!(r#"{{"iss":"{ISSUER}","aud":"{AUDIENCE}","exp":184467440737095516160,"scope":"read:messages"}}"#)
                    .as_bytes(),
            ),
            None,
        ),
    ] {
        match outcome {
            None => env
                .ask("GET", "/r", Some(&bearer(&token)))
                .await
                .assert_allowed(),
            Some(message) => expect_invalid(&env, name, &token, message).await,
        }
    }
    env.gate.stop().await;
}

#[tokio::test]
async fn issuer_and_audience_look_alikes() {
    let env = Env::start(PROTECTED).await;
    let k = &env.key;
    for iss in [
        "HTTPS://ISSUER.TEST/",
        "https://Issuer.test/",
        "https://issuer.test",
        "https://issuer.test//",
        "https://issuer.test:443/",
        "https://issuer.test/x",
        "https://issuer.test.evil/",
        "http://issuer.test/",
        " https://issuer.test/",
    ] {
        expect_invalid(
            &env,
            iss,
            &k.mint(&with("iss", json!(iss))),
            "token issuer is not accepted",
        )
        .await;
    }
    for aud in [
        json!("https://api.test/"),
        json!("HTTPS://API.TEST"),
        json!([]),
        json!([["https://api.test"]]),
    ] {
        let token = k.mint(&with("aud", aud.clone()));
        let answer = env.ask("GET", "/r", Some(&bearer(&token))).await;
        assert_eq!(
            (answer.http, answer.error()),
            (401, "invalid_token"),
            "{aud}"
        );
    }
    for aud in [json!(1), json!({"aud": "https://api.test"}), json!(null)] {
        let token = k.mint(&with("aud", aud.clone()));
        let answer = env.ask("GET", "/r", Some(&bearer(&token))).await;
        assert_eq!(
            (answer.http, answer.error()),
            (401, "invalid_token"),
            "{aud}"
        );
    }
    env.gate.stop().await;
}

/// `sub` travels to the upstream in a header; a control character there could never be forwarded
/// (Envoy refuses the answer), so the token is refused instead.
#[tokio::test]
async fn identity_with_control_characters_is_refused() {
    let env = Env::start(PROTECTED).await;
    let message = "token subject cannot be forwarded as written";
    for (name, claims) in [
        ("sub CR/LF", with("sub", json!("user\r\nx-auth-admin: 1"))),
        ("sub NUL", with("sub", json!("user\u{0}"))),
        ("sub DEL", with("sub", json!("user\u{7f}"))),
        ("sub tab", with("sub", json!("a\tb"))),
    ] {
        expect_invalid(&env, name, &env.key.mint(&claims), message).await;
    }
    // Non-ASCII text is not a control character: forwarded as UTF-8.
    let answer = env
        .ask(
            "GET",
            "/r",
            Some(&bearer(&env.key.mint(&with("sub", json!("zoë"))))),
        )
        .await;
    answer.assert_allowed();
    assert_eq!(answer.headers["x-auth-subject"], "zoë");
    env.gate.stop().await;
}

/// `sub` reaches the upstream in `x-auth-subject`, whose HTTP/1.1 parsers strip surrounding
/// whitespace: `"  alice  "` would arrive as `alice`, another subject than the one checked and
/// logged. Characters that display as nothing or reorder the text around them (bidirectional
/// controls, zero-width space, line and paragraph separators, byte order mark) would make logs
/// and admin screens show another subject than the upstream acts on. Both are refused; the
/// zero-width joiner, which emoji sequences need, is not.
#[tokio::test]
async fn identity_that_reads_differently_upstream_is_refused() {
    let env = Env::start(PROTECTED).await;
    let message = "token subject cannot be forwarded as written";
    for (name, sub) in [
        ("spaces around", "  alice  "),
        ("leading space", " alice"),
        ("trailing space", "alice "),
        ("trailing no-break space", "alice\u{a0}"),
        ("right-to-left override", "admin\u{202e}nimda"),
        ("left-to-right embedding", "\u{202a}alice"),
        ("first strong isolate", "alice\u{2068}"),
        ("pop directional isolate", "ali\u{2069}ce"),
        ("zero-width space", "ali\u{200b}ce"),
        ("line separator", "alice\u{2028}bob"),
        ("paragraph separator", "alice\u{2029}bob"),
        ("byte order mark", "\u{feff}alice"),
    ] {
        expect_invalid(&env, name, &env.key.mint(&with("sub", json!(sub))), message).await;
    }
    // Inner spaces and the zero-width joiner read the same upstream: forwarded as they are.
    for sub in ["alice smith", "\u{1f469}\u{200d}\u{1f4bb}"] {
        let answer = env
            .ask(
                "GET",
                "/r",
                Some(&bearer(&env.key.mint(&with("sub", json!(sub))))),
            )
            .await;
        answer.assert_allowed();
        assert_eq!(answer.headers["x-auth-subject"], sub);
    }
    env.gate.stop().await;
}

/// Granted scopes reach the upstream as one space-joined header. A scope that is not an RFC 6749
/// scope-token (a space inside an `scp` element, Unicode whitespace, quotes, backslashes,
/// non-ASCII, control characters) could make the upstream read a scope that was never checked,
/// so the whole token is refused, even on a route whose own scope it carries.
#[tokio::test]
async fn scopes_that_are_not_scope_tokens_are_refused() {
    let env = Env::start(PROTECTED).await;
    let message = "token scopes are not valid scope-tokens";
    for (name, claims) in [
        (
            "scp element with a space",
            with("scp", json!(["read:messages", "x admin"])),
        ),
        (
            "scp element empty",
            with("scp", json!(["read:messages", ""])),
        ),
        (
            "no-break space",
            with("scope", json!("read:messages x\u{a0}admin")),
        ),
        (
            "em space",
            with("scope", json!("read:messages\u{2003}admin")),
        ),
        (
            "zero-width space",
            with("scope", json!("read:messages x\u{200b}admin")),
        ),
        (
            "ideographic space in scp",
            with("scp", json!("read:messages\u{3000}admin")),
        ),
        ("tab", with("scope", json!("read:messages\tadmin"))),
        ("line feed", with("scope", json!("read:messages\nadmin"))),
        (
            "control in scp",
            with("scp", json!(["read:messages", "a\u{1b}b"])),
        ),
        ("quote", with("scope", json!("read:messages a\"b"))),
        ("backslash", with("scope", json!("read:messages a\\b"))),
        ("non-ASCII", with("scope", json!("read:messages léa"))),
    ] {
        expect_invalid(&env, name, &env.key.mint(&claims), message).await;
    }
    // What is allowed is forwarded as scope-tokens that split back into exactly the granted set.
    let mut granted = with(
        "scope",
        json!("  read:messages   a!#$%&'()*+,-./:;<=>?@[]^_`{|}~ "),
    );
    granted["scp"] = json!(["b", "read:messages"]);
    let answer = env
        .ask("GET", "/r", Some(&bearer(&env.key.mint(&granted))))
        .await;
    answer.assert_allowed();
    let forwarded: Vec<&str> = answer.headers["x-auth-scopes"].split_whitespace().collect();
    assert_eq!(
        forwarded,
        ["a!#$%&'()*+,-./:;<=>?@[]^_`{|}~", "b", "read:messages"]
    );
    assert_eq!(
        answer.headers["x-auth-scopes"],
        forwarded.join(" "),
        "single spaces"
    );
    env.gate.stop().await;
}

/// RFC 9068 access tokens carry `typ: at+jwt`; with `token_types` set, a token of another type
/// (an ID token, say) or of no declared type is refused.
#[tokio::test]
async fn token_types_are_enforced_when_configured() {
    let env = Env::start(&format!("token_types = [\"at+jwt\"]\n{PROTECTED}")).await;
    let good = claims("read:messages");
    for typ in ["at+jwt", "AT+JWT", "application/at+jwt"] {
        let token = env
            .key
            .mint_raw(&json!({"alg": "RS256", "kid": "key-1", "typ": typ}), &good);
        env.ask("GET", "/r", Some(&bearer(&token)))
            .await
            .assert_allowed();
    }
    let message = "token type is not accepted";
    for (name, header) in [
        ("JWT", json!({"alg": "RS256", "kid": "key-1", "typ": "JWT"})),
        ("no typ", json!({"alg": "RS256", "kid": "key-1"})),
        (
            "typ null",
            json!({"alg": "RS256", "kid": "key-1", "typ": null}),
        ),
        (
            "typ array",
            json!({"alg": "RS256", "kid": "key-1", "typ": ["at+jwt"]}),
        ),
        (
            "other subtype",
            json!({"alg": "RS256", "kid": "key-1", "typ": "application/jwt"}),
        ),
    ] {
        expect_invalid(&env, name, &env.key.mint_raw(&header, &good), message).await;
    }
    // The default mints `typ: JWT`: refused here, accepted without token_types (every other test).
    expect_invalid(&env, "default typ", &env.key.mint(&good), message).await;
    env.gate.stop().await;
}

/// A JWK without `alg` verifies every allowed algorithm of its key type (RSA: RS* and PS*); a
/// JWK with `alg` verifies only that one. Operators who want one algorithm per key list only that
/// algorithm in `algorithms`, or use an issuer that publishes `alg`.
#[tokio::test]
async fn a_key_without_alg_verifies_each_allowed_algorithm_and_no_other() {
    let key = TestKey::generate("no-alg");
    let mut jwk = key.jwk();
    jwk.as_object_mut().expect("object").remove("alg");
    let server = JwksServer::start(Reply::json(&json!({ "keys": [jwk] }))).await;
    let gate = Scopegate::start_ready(
        &server.url(),
        &format!("algorithms = [\"RS256\", \"PS256\"]\n{PROTECTED}"),
    )
    .await;
    let good = claims("read:messages");
    let sign = |padding: &'static dyn aws_lc_rs::signature::RsaEncoding, alg: &str| {
        key.mint_with(padding, &json!({"alg": alg, "kid": "no-alg"}), &good)
    };
    use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RSA_PKCS1_SHA384, RSA_PSS_SHA256};
    for token in [
        sign(&RSA_PKCS1_SHA256, "RS256"),
        sign(&RSA_PSS_SHA256, "PS256"),
    ] {
        gate.ask("GET", "/r", Some(&bearer(&token)))
            .await
            .assert_allowed();
    }
    let answer = gate
        .ask(
            "GET",
            "/r",
            Some(&bearer(&sign(&RSA_PKCS1_SHA384, "RS384"))),
        )
        .await;
    assert_eq!(
        (answer.http, answer.message()),
        (401, "token algorithm is not allowed")
    );
    // A PSS signature under a header that says RS256 does not verify: the key is prepared for
    // each algorithm separately, and the header's algorithm picks the scheme.
    let mislabelled = key.mint_with(
        &RSA_PSS_SHA256,
        &json!({"alg": "RS256", "kid": "no-alg"}),
        &good,
    );
    let answer = gate.ask("GET", "/r", Some(&bearer(&mislabelled))).await;
    assert_eq!(
        (answer.http, answer.message()),
        (401, "token signature is invalid")
    );
    gate.stop().await;
}

/// A modulus with nothing left once its leading zero bytes are stripped (`"n": ""`, `"AA"`) made
/// the bit-length arithmetic underflow: a panic inside the refresher task in debug builds, so the
/// honest key beside it never loaded and health never said SERVING.
#[tokio::test]
async fn an_empty_or_all_zero_modulus_is_skipped_by_a_running_server() {
    let key = TestKey::generate("good");
    let mut entries = vec![key.jwk()];
    for (kid, n) in [("empty", ""), ("zero", "AA"), ("zeros", "AAAAAAAA")] {
        let mut jwk = key.jwk();
        jwk["kid"] = json!(kid);
        jwk["n"] = json!(n);
        entries.insert(0, jwk);
    }
    let server = JwksServer::start(Reply::json(&json!({ "keys": entries }))).await;
    let gate = Scopegate::start_ready(&server.url(), PROTECTED).await;
    for kid in ["empty", "zero", "zeros"] {
        let token = key.mint_raw(
            &json!({"alg": "RS256", "kid": kid}),
            &claims("read:messages"),
        );
        let answer = gate.ask("GET", "/r", Some(&bearer(&token))).await;
        assert_eq!(
            (answer.http, answer.message()),
            (401, "token signing key is unknown"),
            "{kid}"
        );
    }
    gate.ask(
        "GET",
        "/r",
        Some(&bearer(&key.mint(&claims("read:messages")))),
    )
    .await
    .assert_allowed();
    gate.stop().await;
}

/// A JWKS publishing Ed25519 keys of small order (32 zero bytes, the usual placeholder; the
/// identity; an order-8 point): a signature of R = identity and s = 0, made without any private
/// key, verifies under such a key for a quarter (an eighth, all) of messages, so a running
/// server that loaded one let `scope=admin` through within a few tries. The entries are skipped
/// at load, and every forged token is refused as signed by an unknown key; a real Ed25519 key
/// beside them still verifies.
#[tokio::test]
async fn ed25519_keys_of_small_order_are_skipped_and_forgeries_refused() {
    let real = CurveKey::ed25519("real");
    let small_order = [
        ("zero", [0u8; 32].to_vec()),
        ("identity", {
            let mut x = vec![0u8; 32];
            x[0] = 1;
            x
        }),
        (
            "order8",
            vec![
                0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef,
                0x98, 0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88,
                0x6d, 0x53, 0xfc, 0x05,
            ],
        ),
    ];
    let mut entries: Vec<Value> = small_order
        .iter()
        .map(|(kid, x)| json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64(x)}))
        .collect();
    entries.push(real.jwk.clone());
    let server = JwksServer::start(Reply::json(&json!({ "keys": entries }))).await;
    let gate = Scopegate::start_ready(
        &server.url(),
        "algorithms = [\"EdDSA\"]\n[[rules]]\npath = \"/admin\"\nscopes = [\"admin\"]\n",
    )
    .await;
    // R = the identity's encoding (y = 1), s = 0: no private key involved.
    let mut forged_signature = vec![0u8; 64];
    forged_signature[0] = 1;
    let mut let_through = Vec::new();
    for (kid, _) in &small_order {
        for attempt in 0..48 {
            let mut payload = claims("admin");
            payload["jti"] = json!(format!("forged-{kid}-{attempt}"));
            let input = format!(
                "{}.{}",
                b64(json!({"alg": "EdDSA", "kid": kid}).to_string()),
                b64(payload.to_string())
            );
            let token = format!("{input}.{}", b64(&forged_signature));
            let answer = gate.ask("GET", "/admin", Some(&bearer(&token))).await;
            if answer.http != 401 || answer.message() != "token signing key is unknown" {
                let what = match answer.http {
                    0 => format!(
                        "allowed, x-auth-scopes {:?}",
                        answer.headers.get("x-auth-scopes")
                    ),
                    http => format!("{http} {}", answer.message()),
                };
                let_through.push(format!("{kid} #{attempt}: {what}"));
            }
        }
    }
    assert!(let_through.is_empty(), "{let_through:#?}");
    let good = real.mint(jsonwebtoken::Algorithm::EdDSA, &claims("admin"));
    gate.ask("GET", "/admin", Some(&bearer(&good)))
        .await
        .assert_allowed();
    gate.stop().await;
}

#[tokio::test]
async fn duplicate_members_and_non_json_payloads_are_refused() {
    let env = Env::start(PROTECTED).await;
    let header: &[u8] = br#"{"alg":"RS256","kid":"key-1"}"#;
    let good_payload = format!(
        r#"{{"iss":"{ISSUER}","aud":"{AUDIENCE}","exp":{}}}"#,
        now() + 100
    );
    let duplicate_scope = format!(
        r#"{{"iss":"{ISSUER}","aud":"{AUDIENCE}","exp":{},"scope":"x","scope":"read:messages"}}"#,
        now() + 100
    );
    let cases: [(&str, &[u8], &[u8], &str); 6] = [
        (
            "duplicate scope",
            header,
            duplicate_scope.as_bytes(),
            "token claims are malformed",
        ),
        (
            "duplicate alg",
            br#"{"alg":"none","alg":"RS256","kid":"key-1"}"#,
            good_payload.as_bytes(),
            "token header is malformed",
        ),
        (
            "payload not UTF-8",
            header,
            b"{\"iss\":\"\xff\"}",
            "token claims are malformed",
        ),
        (
            "payload not JSON",
            header,
            b"iss=me",
            "token claims are malformed",
        ),
        (
            "payload a string",
            header,
            b"\"claims\"",
            "token claims are malformed",
        ),
        (
            "header not UTF-8",
            b"{\"alg\":\"RS256\xff\"}",
            good_payload.as_bytes(),
            "token header is malformed",
        ),
    ];
    for (name, header, payload, message) in cases {
        expect_invalid(&env, name, &mint_bytes(&env.key, header, payload), message).await;
    }
    env.gate.stop().await;
}

#[tokio::test]
async fn kid_injection_finds_no_key() {
    let env = Env::start(PROTECTED).await;
    let huge = "k".repeat(8 * 1024);
    for kid in [
        json!("../../../../etc/passwd"),
        json!("key-1' OR '1'='1"),
        json!("key-1\"}"),
        json!("key-1\r\nx-injected: 1"),
        json!("key-1\u{0}"),
        json!("KEY-1"),
        json!(" key-1"),
        json!(huge),
    ] {
        let token = env.key.mint_raw(
            &json!({"alg": "RS256", "kid": kid}),
            &claims("read:messages"),
        );
        let answer = env.ask("GET", "/r", Some(&bearer(&token))).await;
        assert_eq!(
            (answer.http, answer.message()),
            (401, "token signing key is unknown"),
            "{kid}"
        );
    }
    for kid in [json!(["key-1"]), json!({"kid": "key-1"}), json!(1)] {
        let token = env.key.mint_raw(
            &json!({"alg": "RS256", "kid": kid}),
            &claims("read:messages"),
        );
        let answer = env.ask("GET", "/r", Some(&bearer(&token))).await;
        assert_eq!(
            (answer.http, answer.error()),
            (401, "invalid_token"),
            "{kid}"
        );
    }
    // `"kid": null` counts as absent: with one key in the set, that key is tried and verifies.
    let token = env.key.mint_raw(
        &json!({"alg": "RS256", "kid": null}),
        &claims("read:messages"),
    );
    env.ask("GET", "/r", Some(&bearer(&token)))
        .await
        .assert_allowed();
    env.gate.stop().await;
}

/// The JWKS publishes the honest key under several kids, each entry disqualified one way (or
/// not a usable RSA key at all). If any of those entries were loaded, a token naming its kid
/// would verify, so each must get "unknown key" from a running server.
#[tokio::test]
async fn keys_unfit_for_signature_verification_never_verify() {
    let key = TestKey::generate("good");
    let other = TestKey::generate("dup");
    let entry = |kid: &str, changes: Value| {
        let mut jwk = key.jwk();
        jwk["kid"] = json!(kid);
        for (name, value) in changes.as_object().expect("object") {
            jwk[name] = value.clone();
        }
        jwk
    };
    let modulus = key.jwk()["n"].clone();
    // A 1024-bit modulus cannot verify the honest signature either, so the message tells a
    // skipped entry ("unknown") from a loaded one ("signature is invalid").
    let short = URL_SAFE_NO_PAD
        .decode(modulus.as_str().expect("n"))
        .expect("n decodes")[..128]
        .to_vec();
    let jwks = json!({"keys": [
        key.jwk(),
        entry("enc", json!({"use": "enc"})),
        entry("ops", json!({"key_ops": ["encrypt", "wrapKey"]})),
        entry("no-ops", json!({"key_ops": []})),
        entry("es", json!({"alg": "ES256"})),
        entry("hs", json!({"alg": "HS256"})),
        entry("e1", json!({"e": "AQ"})),
        entry("e-even", json!({"e": "AQAA"})),
        entry("rsa-1024", json!({"n": b64(&short)})),
        {"kty": "oct", "kid": "oct", "k": modulus, "alg": "HS256"},
        {"kty": "EC", "kid": "ec", "crv": "P-256", "x": modulus, "y": modulus},
        // A duplicate kid keeps the first entry: `other`'s key, not the honest one.
        other.jwk(),
        entry("dup", json!({})),
    ]});
    let server = JwksServer::start(Reply::json(&jwks)).await;
    let gate = Scopegate::start_ready(&server.url(), PROTECTED).await;
    let ask = |token: String| {
        let gate = &gate;
        async move { gate.ask("GET", "/r", Some(&bearer(&token))).await }
    };
    for kid in [
        "enc", "ops", "no-ops", "es", "hs", "e1", "e-even", "rsa-1024", "oct", "ec",
    ] {
        let token = key.mint_raw(
            &json!({"alg": "RS256", "kid": kid}),
            &claims("read:messages"),
        );
        let answer = ask(token).await;
        assert_eq!(
            (answer.http, answer.error(), answer.message()),
            (401, "invalid_token", "token signing key is unknown"),
            "{kid}"
        );
    }
    let token = key.mint_raw(
        &json!({"alg": "RS256", "kid": "dup"}),
        &claims("read:messages"),
    );
    let answer = ask(token).await;
    assert_eq!(
        (answer.http, answer.message()),
        (401, "token signature is invalid")
    );
    ask(other.mint(&claims("read:messages")))
        .await
        .assert_allowed();
    // The honest entry loaded, so the refusals above are the skip rules at work.
    ask(key.mint(&claims("read:messages")))
        .await
        .assert_allowed();
    gate.stop().await;
}

#[tokio::test]
async fn key_pointing_headers_never_cause_a_fetch_or_a_verify() {
    let env = Env::start(PROTECTED).await;
    let attacker = TestKey::generate("key-1");
    let attacker_jwks = JwksServer::start(Reply::json(&jwks_of(&[&attacker]))).await;
    for header in [
        json!({"alg": "RS256", "kid": "key-1", "jku": attacker_jwks.url()}),
        json!({"alg": "RS256", "kid": "key-1", "x5u": attacker_jwks.url()}),
        json!({"alg": "RS256", "kid": "key-1", "jwk": attacker.jwk()}),
        json!({"alg": "RS256", "kid": "key-1", "x5c": ["MIIB"]}),
    ] {
        let token = attacker.mint_raw(&header, &claims("read:messages"));
        let answer = env.ask("GET", "/r", Some(&bearer(&token))).await;
        assert_eq!(
            (answer.http, answer.message()),
            (401, "token signature is invalid"),
            "{header}"
        );
    }
    assert_eq!(
        attacker_jwks.hits(),
        0,
        "no outbound request may follow from a token"
    );
    // The honest key still works with those headers present: they are ignored, not trusted.
    let token = env.key.mint_raw(
        &json!({"alg": "RS256", "kid": "key-1", "jku": attacker_jwks.url()}),
        &claims("read:messages"),
    );
    env.ask("GET", "/r", Some(&bearer(&token)))
        .await
        .assert_allowed();
    env.gate.stop().await;
}

#[tokio::test]
async fn algorithm_confusion_is_refused() {
    let env = Env::start(PROTECTED).await;
    let good = claims("read:messages");
    let payload = b64(good.to_string());
    // `none` in any letter case, with and without a signature.
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = b64(json!({"alg": alg, "kid": "key-1"}).to_string());
        for signature in ["", "AAAA"] {
            let token = format!("{header}.{payload}.{signature}");
            let answer = env.ask("GET", "/r", Some(&bearer(&token))).await;
            assert_eq!(
                (answer.http, answer.error()),
                (401, "invalid_token"),
                "{alg} {signature:?}"
            );
        }
    }
    // HMAC keyed with the RSA public key, in the encodings an attacker would try.
    let jwk = env.key.jwk();
    let n = URL_SAFE_NO_PAD
        .decode(jwk["n"].as_str().expect("n"))
        .expect("n bytes");
    for (alg, secret) in [
        ("HS256", n.clone()),
        ("HS256", jwk.to_string().into_bytes()),
        ("HS384", n.clone()),
        ("HS512", n),
    ] {
        let header = b64(json!({"alg": alg, "kid": "key-1"}).to_string());
        let input = format!("{header}.{payload}");
        let mac = hmac(alg, &secret, input.as_bytes());
        let token = format!("{input}.{}", b64(mac));
        let answer = env.ask("GET", "/r", Some(&bearer(&token))).await;
        assert_eq!(
            (answer.http, answer.message()),
            (401, "token algorithm is not allowed"),
            "{alg}"
        );
    }
    // ECDSA with a zero-valued signature (the "psychic signature" class): ES* is never allowed.
    for alg in ["ES256", "ES384", "EdDSA", "RS256 ", "rs256"] {
        let header = b64(json!({"alg": alg, "kid": "key-1"}).to_string());
        let token = format!("{header}.{payload}.{}", b64([0u8; 64]));
        let answer = env.ask("GET", "/r", Some(&bearer(&token))).await;
        assert_eq!(
            (answer.http, answer.message()),
            (401, "token algorithm is not allowed"),
            "{alg}"
        );
    }
    env.gate.stop().await;
}

fn hmac(alg: &str, key: &[u8], message: &[u8]) -> Vec<u8> {
    let algorithm = match alg {
        "HS256" => aws_lc_rs::hmac::HMAC_SHA256,
        "HS384" => aws_lc_rs::hmac::HMAC_SHA384,
        _ => aws_lc_rs::hmac::HMAC_SHA512,
    };
    aws_lc_rs::hmac::sign(&aws_lc_rs::hmac::Key::new(algorithm, key), message)
        .as_ref()
        .to_vec()
}

#[tokio::test]
async fn non_canonical_encodings_are_refused() {
    let env = Env::start(PROTECTED).await;
    let valid = env.key.mint(&claims("read:messages"));
    let parts: Vec<&str> = valid.split('.').collect();
    let std_alphabet = |s: &str| s.replace('-', "+").replace('_', "/");
    let mut cases = vec![
        (
            "padded signature",
            format!("{}.{}.{}==", parts[0], parts[1], parts[2]),
        ),
        ("leading dot", format!(".{valid}")),
        ("trailing dot", format!("{valid}.")),
        (
            "double dot",
            format!("{}..{}.{}", parts[0], parts[1], parts[2]),
        ),
        ("empty signature", format!("{}.{}.", parts[0], parts[1])),
    ];
    // The standard alphabet, when the segment has a character that differs.
    if parts[2].contains(['-', '_']) {
        cases.push((
            "standard alphabet",
            format!("{}.{}.{}", parts[0], parts[1], std_alphabet(parts[2])),
        ));
    }
    // Non-zero pad bits: flip the unused low bits of the last signature character.
    let sig = parts[2];
    let last = sig.chars().last().expect("char");
    const ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let index = ALPHABET.find(last).expect("b64url char");
    let bumped = ALPHABET.as_bytes()[index ^ 1] as char; // 256-byte signature: 4 spare bits
    cases.push((
        "non-zero pad bits",
        format!(
            "{}.{}.{}{bumped}",
            parts[0],
            parts[1],
            &sig[..sig.len() - 1]
        ),
    ));
    for (name, token) in cases {
        let answer = env.ask("GET", "/r", Some(&bearer(&token))).await;
        assert_eq!(
            (answer.http, answer.error()),
            (401, "invalid_token"),
            "{name}"
        );
    }
    env.gate.stop().await;
}
