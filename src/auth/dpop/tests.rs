use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _,
};
use serde_json::{Value, json};

use super::*;

const NOW: u64 = 1_000_000;
const TOKEN: &str = "header.payload.signature";
const URL: &str = "https://api.example/orders/1";

/// A client's proof key: ES256 or EdDSA, generated for the test.
enum ClientKey {
    Es256(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

impl ClientKey {
    fn es256() -> ClientKey {
        ClientKey::Es256(
            EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("a P-256 key"),
        )
    }

    fn ed25519() -> ClientKey {
        ClientKey::Ed25519(Ed25519KeyPair::generate().expect("an Ed25519 key"))
    }

    fn alg(&self) -> &'static str {
        match self {
            ClientKey::Es256(_) => "ES256",
            ClientKey::Ed25519(_) => "EdDSA",
        }
    }

    fn jwk(&self) -> Value {
        match self {
            ClientKey::Es256(pair) => {
                let point = pair.public_key().as_ref();
                json!({
                    "kty": "EC", "crv": "P-256",
                    "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                    "y": URL_SAFE_NO_PAD.encode(&point[33..]),
                })
            }
            ClientKey::Ed25519(pair) => json!({
                "kty": "OKP", "crv": "Ed25519",
                "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
            }),
        }
    }

    fn jkt(&self) -> String {
        thumbprint(self.jwk().as_object().expect("an object")).expect("a thumbprint")
    }

    fn sign(&self, header: &Value, claims: &Value) -> String {
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = match self {
            ClientKey::Es256(pair) => pair
                .sign(&SystemRandom::new(), signed.as_bytes())
                .expect("signs")
                .as_ref()
                .to_vec(),
            ClientKey::Ed25519(pair) => pair.sign(signed.as_bytes()).as_ref().to_vec(),
        };
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    fn header(&self) -> Value {
        json!({ "typ": "dpop+jwt", "alg": self.alg(), "jwk": self.jwk() })
    }
}

fn claims() -> Value {
    json!({
        "htm": "GET",
        "htu": URL,
        "iat": NOW,
        "jti": "e1j3V_bKic8-LAEB",
        "ath": URL_SAFE_NO_PAD.encode(digest(&SHA256, TOKEN.as_bytes())),
    })
}

fn check(proofs: &[&str], jkt: &str) -> Result<Proof, &'static str> {
    let expected = Expected {
        method: "GET",
        url: URL,
        token: TOKEN,
        jkt,
    };
    let limits = ProofLimits {
        leeway_seconds: 5,
        ..ProofLimits::default()
    };
    verify(proofs, &expected, &limits, &KeyCache::default(), NOW)
}

/// The claims with `member` set to `value` (or removed, for `Value::Null`).
fn with(mut value: Value, member: &str, to: Value) -> Value {
    let object = value.as_object_mut().expect("an object");
    if to.is_null() {
        object.remove(member);
    } else {
        object.insert(member.to_owned(), to);
    }
    value
}

#[test]
fn every_proof_mistake_is_refused_and_a_good_proof_passes() {
    for key in [ClientKey::es256(), ClientKey::ed25519()] {
        let jkt = key.jkt();
        let good = key.sign(&key.header(), &claims());
        assert!(check(&[&good], &jkt).is_ok(), "{}: a good proof", key.alg());
        let other = ClientKey::es256();
        let mut private_jwk = key.jwk();
        private_jwk["d"] = json!("AAAA");
        let cases: Vec<(&str, String, &str)> = vec![
            (
                "htm",
                key.sign(&key.header(), &with(claims(), "htm", json!("POST"))),
                "htm is not the request method",
            ),
            (
                "htm in lower case",
                key.sign(&key.header(), &with(claims(), "htm", json!("get"))),
                "htm is not the request method",
            ),
            (
                "htu path",
                key.sign(
                    &key.header(),
                    &with(claims(), "htu", json!("https://api.example/orders/2")),
                ),
                "htu is not the request URL",
            ),
            (
                "htu host",
                key.sign(
                    &key.header(),
                    &with(claims(), "htu", json!("https://evil.example/orders/1")),
                ),
                "htu is not the request URL",
            ),
            (
                "htu scheme",
                key.sign(
                    &key.header(),
                    &with(claims(), "htu", json!("http://api.example/orders/1")),
                ),
                "htu is not the request URL",
            ),
            (
                "ath of another token",
                key.sign(
                    &key.header(),
                    &with(
                        claims(),
                        "ath",
                        json!(URL_SAFE_NO_PAD.encode(digest(&SHA256, b"another"))),
                    ),
                ),
                "ath is not the token's hash",
            ),
            (
                "no ath",
                key.sign(&key.header(), &with(claims(), "ath", Value::Null)),
                "ath is not the token's hash",
            ),
            (
                "iat too old",
                key.sign(&key.header(), &with(claims(), "iat", json!(NOW - 66))),
                "iat is too old",
            ),
            (
                "iat in the future",
                key.sign(&key.header(), &with(claims(), "iat", json!(NOW + 6))),
                "iat is in the future",
            ),
            (
                "iat a string",
                key.sign(&key.header(), &with(claims(), "iat", json!("1000000"))),
                "iat is missing or not a number",
            ),
            (
                "no jti",
                key.sign(&key.header(), &with(claims(), "jti", Value::Null)),
                "jti is missing",
            ),
            (
                "typ JWT",
                key.sign(&with(key.header(), "typ", json!("JWT")), &claims()),
                "typ is not dpop+jwt",
            ),
            (
                "no typ",
                key.sign(&with(key.header(), "typ", Value::Null), &claims()),
                "typ is not dpop+jwt",
            ),
            (
                "alg HS256",
                key.sign(&with(key.header(), "alg", json!("HS256")), &claims()),
                "alg is not accepted",
            ),
            (
                "alg none",
                format!(
                    "{}.{}.",
                    URL_SAFE_NO_PAD.encode(with(key.header(), "alg", json!("none")).to_string()),
                    URL_SAFE_NO_PAD.encode(claims().to_string())
                ),
                "alg is not accepted",
            ),
            (
                "alg RS512 (asymmetric, not on the list)",
                key.sign(&with(key.header(), "alg", json!("RS512")), &claims()),
                "alg is not accepted",
            ),
            (
                "no jwk",
                key.sign(&with(key.header(), "jwk", Value::Null), &claims()),
                "no jwk",
            ),
            (
                "a private key in jwk",
                key.sign(&with(key.header(), "jwk", private_jwk.clone()), &claims()),
                "jwk holds a private key",
            ),
            (
                "signed by another key than its jwk",
                other.sign(&key.header(), &claims()),
                "signature does not verify",
            ),
            (
                "another key's proof for this token",
                other.sign(&other.header(), &claims()),
                "jwk is not the key the token is bound to",
            ),
            (
                "crit",
                key.sign(&with(key.header(), "crit", json!(["exp"])), &claims()),
                "crit is not understood",
            ),
            ("not a JWS", "a.b".to_owned(), "not a compact JWS"),
            (
                // Past dpop_max_proof_bytes (its default here): refused before parsing.
                "oversized",
                format!("{good}{}", "A".repeat(DEFAULT_MAX_PROOF_BYTES)),
                "proof is too large",
            ),
        ];
        for (what, proof, want) in cases {
            assert_eq!(check(&[&proof], &jkt), Err(want), "{}: {what}", key.alg());
        }
        assert_eq!(
            check(&[&good, &good], &jkt),
            Err("more than one DPoP header"),
            "two DPoP headers"
        );
        assert_eq!(check(&[], &jkt), Err("no DPoP header"));
    }
}

#[test]
fn the_replay_key_is_the_key_and_jti_and_expiry_follows_iat() {
    let key = ClientKey::es256();
    let jkt = key.jkt();
    let one = check(&[&key.sign(&key.header(), &claims())], &jkt).expect("valid");
    let again = check(&[&key.sign(&key.header(), &claims())], &jkt).expect("valid");
    assert_eq!(one.replay_key, again.replay_key, "same jkt and jti");
    assert_eq!(one.expires_at, NOW + 60 + 5);
    let other_jti = with(claims(), "jti", json!("another"));
    let other = check(&[&key.sign(&key.header(), &other_jti)], &jkt).expect("valid");
    assert_ne!(one.replay_key, other.replay_key);
}

#[test]
fn a_key_enters_the_cache_only_once_it_verified_a_signature() {
    let key = ClientKey::es256();
    let cache = KeyCache::default();
    let expected = Expected {
        method: "GET",
        url: URL,
        token: TOKEN,
        jkt: &key.jkt(),
    };
    let forged = ClientKey::es256().sign(&key.header(), &claims());
    let limits = ProofLimits::default();
    assert!(verify(&[&forged], &expected, &limits, &cache, NOW).is_err());
    assert!(cache.is_empty(), "a forged proof stores nothing");
    let good = key.sign(&key.header(), &claims());
    assert!(verify(&[&good], &expected, &limits, &cache, NOW).is_ok());
    assert!(verify(&[&good], &expected, &limits, &cache, NOW).is_ok());
    assert_eq!(cache.len(), 1);
}

#[test]
fn thumbprint_is_rfc_7638s() {
    // RFC 7638 §3.1's example key and thumbprint.
    let jwk = json!({
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    });
    assert_eq!(
        thumbprint(jwk.as_object().expect("an object")).as_deref(),
        Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
    );
}

#[test]
fn urls_compare_after_rfc_3986_normalisation() {
    let same = [
        ("https://api.example/a", "HTTPS://API.EXAMPLE/a"),
        ("https://api.example/a", "https://api.example:443/a"),
        ("http://api.example/a", "http://api.example:80/a"),
        ("https://api.example/a?x=1", "https://api.example/a#frag"),
        ("https://api.example/a/b", "https://api.example/a/./c/../b"),
        ("https://api.example/%7Euser", "https://api.example/~user"),
        ("https://api.example/a%2fb", "https://api.example/a%2Fb"),
        ("https://api.example", "https://api.example/"),
    ];
    for (a, b) in same {
        assert_eq!(normalise_url(a), normalise_url(b), "{a} = {b}");
        assert!(normalise_url(a).is_some(), "{a}");
    }
    let different = [
        ("https://api.example/a", "https://api.example/A"),
        ("https://api.example/a", "https://api.example:8443/a"),
        ("https://api.example/a%2Fb", "https://api.example/a/b"),
        ("https://api.example/a", "http://api.example/a"),
    ];
    for (a, b) in different {
        assert_ne!(normalise_url(a), normalise_url(b), "{a} != {b}");
    }
    for bad in [
        "/a",
        "ftp://api.example/a",
        "https://user@api.example/a",
        "https:///a",
        "https://api.example/%zz",
    ] {
        assert_eq!(normalise_url(bad), None, "{bad}");
    }
}

#[test]
fn a_token_request_proof_needs_no_ath_and_names_its_key_but_is_checked_otherwise() {
    let token_request = |proof: &str| {
        let limits = ProofLimits::default();
        verify_token_request(&[proof], "POST", URL, &limits, &KeyCache::default(), NOW)
    };
    let key = ClientKey::es256();
    let post = with(with(claims(), "htm", json!("POST")), "ath", Value::Null);
    let (proof, jkt) = token_request(&key.sign(&key.header(), &post)).expect("a good proof");
    assert_eq!(jkt, key.jkt());
    assert_eq!(proof.expires_at, NOW + DEFAULT_PROOF_WINDOW_SECONDS);
    // An ath, if any, is not the token request's business.
    assert!(token_request(&key.sign(&key.header(), &with(claims(), "htm", json!("POST")))).is_ok());
    for (what, claims, error) in [
        ("GET", claims(), "htm is not the request method"),
        (
            "another URL",
            with(post.clone(), "htu", json!("https://api.example/other")),
            "htu is not the request URL",
        ),
        (
            "an old iat",
            with(post.clone(), "iat", json!(NOW - 3600)),
            "iat is too old",
        ),
        (
            "no jti",
            with(post.clone(), "jti", Value::Null),
            "jti is missing",
        ),
    ] {
        assert_eq!(
            token_request(&key.sign(&key.header(), &claims)),
            Err(error),
            "{what}"
        );
    }
    // A signature by another key than the jwk's.
    let other = ClientKey::es256();
    let forged = other.sign(&key.header(), &post);
    assert_eq!(token_request(&forged), Err("signature does not verify"));
}
