//! DPoP-bound tokens (RFC 9449) over the gRPC Check: real issuer keys, real client keys (ES256
//! and EdDSA, signed with aws-lc-rs directly, not with scopegate's code), the proof checked on
//! every request whether the token is cached or not, each proof accepted once, downgrades to
//! `Bearer` refused, and `sender_constrained` rules.

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use envoy_types::pb::envoy::service::auth::v3::CheckRequest;
use serde_json::{Value, json};

use crate::common::*;

pub(crate) const HOST: &str = "api.example";

/// A client's DPoP key.
pub(crate) enum ProofKey {
    Es256(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

impl ProofKey {
    pub(crate) fn es256() -> ProofKey {
        ProofKey::Es256(EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("P-256"))
    }

    fn ed25519() -> ProofKey {
        ProofKey::Ed25519(Ed25519KeyPair::generate().expect("Ed25519"))
    }

    fn jwk(&self) -> Value {
        match self {
            ProofKey::Es256(pair) => {
                let point = pair.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256",
                    "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                    "y": URL_SAFE_NO_PAD.encode(&point[33..])})
            }
            ProofKey::Ed25519(pair) => json!({"kty": "OKP", "crv": "Ed25519",
                "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref())}),
        }
    }

    /// The RFC 7638 thumbprint, written out here as the RFC says (required members in
    /// lexicographic order, no whitespace).
    pub(crate) fn jkt(&self) -> String {
        let jwk = self.jwk();
        let text = match self {
            ProofKey::Es256(_) => format!(
                r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
                jwk["x"].as_str().expect("x"),
                jwk["y"].as_str().expect("y")
            ),
            ProofKey::Ed25519(_) => format!(
                r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
                jwk["x"].as_str().expect("x")
            ),
        };
        URL_SAFE_NO_PAD.encode(digest(&SHA256, text.as_bytes()))
    }

    /// A proof for `method` on `url` with `token`, a fresh `jti` each time.
    pub(crate) fn proof(&self, method: &str, url: &str, token: &str) -> String {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let jti = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.sign(&json!({
            "htm": method,
            "htu": url,
            "iat": now(),
            "jti": format!("jti-{jti}-{}", now()),
            "ath": URL_SAFE_NO_PAD.encode(digest(&SHA256, token.as_bytes())),
        }))
    }

    fn sign(&self, claims: &Value) -> String {
        let alg = match self {
            ProofKey::Es256(_) => "ES256",
            ProofKey::Ed25519(_) => "EdDSA",
        };
        let header = json!({"typ": "dpop+jwt", "alg": alg, "jwk": self.jwk()});
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = match self {
            ProofKey::Es256(pair) => pair
                .sign(&SystemRandom::new(), signed.as_bytes())
                .expect("sign")
                .as_ref()
                .to_vec(),
            ProofKey::Ed25519(pair) => pair.sign(signed.as_bytes()).as_ref().to_vec(),
        };
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
    }
}

/// Claims bound to `jkt`.
pub(crate) fn bound(scope: &str, jkt: &str) -> Value {
    let mut claims = claims(scope);
    claims["cnf"] = json!({ "jkt": jkt });
    claims
}

/// A Check for `method` on `path` of https://api.example, with these header values (a name
/// may repeat: they travel as Envoy's raw header map).
pub(crate) fn check_request(method: &str, path: &str, headers: &[(&str, &str)]) -> CheckRequest {
    let raw: Vec<(&str, &[u8])> = headers.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
    let mut request = raw_request(method, path, &raw);
    let http = request
        .attributes
        .as_mut()
        .and_then(|a| a.request.as_mut())
        .and_then(|r| r.http.as_mut())
        .expect("an http request");
    http.scheme = "https".into();
    http.host = HOST.into();
    request
}

const RULES: &str = "[[rules]]\npath = \"/orders\"\nscopes = [\"read\"]\n\
                     [[rules]]\npath = \"/bound\"\nscopes = [\"read\"]\nsender_constrained = true\n";

async fn ask(env: &Env, method: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    Answer::of(&env.gate.check(check_request(method, path, headers)).await)
}

#[tokio::test]
async fn a_dpop_bound_token_passes_with_a_fresh_proof_on_every_request_and_each_proof_once() {
    let env = Env::start(RULES).await;
    for client in [ProofKey::es256(), ProofKey::ed25519()] {
        let token = env.key.mint(&bound("read", &client.jkt()));
        let authorization = format!("DPoP {token}");
        let url = format!("https://{HOST}/orders");
        let proof = client.proof("GET", &url, &token);
        let headers = [("authorization", authorization.as_str()), ("dpop", &proof)];
        ask(&env, "GET", "/orders", &headers).await.assert_allowed();
        // A query is not part of htu.
        let proof = client.proof("GET", &url, &token);
        let headers = [("authorization", authorization.as_str()), ("dpop", &proof)];
        ask(&env, "GET", "/orders?page=2", &headers)
            .await
            .assert_allowed();

        // The same proof again: a replay, refused though the token is now cached.
        let replayed = ask(&env, "GET", "/orders?page=2", &headers).await;
        replayed.assert_denied(401, "invalid_token");
        assert!(
            replayed.challenge().starts_with("DPoP ")
                && replayed
                    .challenge()
                    .contains(r#"error="invalid_dpop_proof""#)
                && replayed
                    .challenge()
                    .contains(r#"algs="ES256 ES384 EdDSA RS256 PS256""#),
            "{replayed:?}"
        );

        // The cached token without a proof, or with one for another request: refused.
        let no_proof = [("authorization", authorization.as_str())];
        ask(&env, "GET", "/orders", &no_proof)
            .await
            .assert_denied(401, "invalid_token");
        for (method, proof_url) in [
            ("POST", url.clone()),
            ("GET", format!("https://{HOST}/bound")),
            ("GET", format!("http://{HOST}/orders")),
        ] {
            let proof = client.proof(method, &proof_url, &token);
            let headers = [("authorization", authorization.as_str()), ("dpop", &proof)];
            let answer = ask(&env, "GET", "/orders", &headers).await;
            answer.assert_denied(401, "invalid_token");
            assert!(answer.message().contains("DPoP proof"), "{answer:?}");
        }
        // Another token's proof (ath), and another client's key.
        let other_token = env.key.mint(&bound("read write", &client.jkt()));
        let proof = client.proof("GET", &url, &other_token);
        let headers = [("authorization", authorization.as_str()), ("dpop", &proof)];
        ask(&env, "GET", "/orders", &headers)
            .await
            .assert_denied(401, "invalid_token");
        let proof = ProofKey::es256().proof("GET", &url, &token);
        let headers = [("authorization", authorization.as_str()), ("dpop", &proof)];
        ask(&env, "GET", "/orders", &headers)
            .await
            .assert_denied(401, "invalid_token");
        // Two DPoP headers, each a valid proof.
        let (one, two) = (
            client.proof("GET", &url, &token),
            client.proof("GET", &url, &token),
        );
        let headers = [
            ("authorization", authorization.as_str()),
            ("dpop", &one),
            ("dpop", &two),
        ];
        let answer = ask(&env, "GET", "/orders", &headers).await;
        answer.assert_denied(401, "invalid_token");
        assert!(answer.message().contains("more than one"), "{answer:?}");
    }
}

#[tokio::test]
async fn a_bound_token_under_bearer_and_an_unbound_one_under_dpop_are_refused() {
    let env = Env::start(RULES).await;
    let client = ProofKey::es256();
    let token = env.key.mint(&bound("read", &client.jkt()));
    let proof = client.proof("GET", &format!("https://{HOST}/orders"), &token);
    // The downgrade, with a valid proof beside it.
    let headers = [("authorization", &*bearer(&token)), ("dpop", &*proof)];
    let answer = ask(&env, "GET", "/orders", &headers).await;
    answer.assert_denied(401, "invalid_token");
    assert!(answer.message().contains("Bearer"), "{answer:?}");
    assert!(answer.challenge().starts_with("Bearer "), "{answer:?}");

    let plain = env.key.mint(&claims("read"));
    let authorization = format!("DPoP {plain}");
    let proof = client.proof("GET", &format!("https://{HOST}/orders"), &plain);
    let headers = [("authorization", authorization.as_str()), ("dpop", &proof)];
    let answer = ask(&env, "GET", "/orders", &headers).await;
    answer.assert_denied(401, "invalid_token");
    assert!(answer.message().contains("not DPoP-bound"), "{answer:?}");
    // The same plain token as Bearer is still a Bearer token.
    ask(
        &env,
        "GET",
        "/orders",
        &[("authorization", &bearer(&plain))],
    )
    .await
    .assert_allowed();
}

#[tokio::test]
async fn a_sender_constrained_rule_refuses_a_plain_bearer_token() {
    let env = Env::start(RULES).await;
    let plain = env.key.mint(&claims("read"));
    let answer = ask(&env, "GET", "/bound", &[("authorization", &bearer(&plain))]).await;
    answer.assert_denied(401, "invalid_token");
    assert!(
        answer.message().contains("not sender-constrained"),
        "{answer:?}"
    );
    let client = ProofKey::ed25519();
    let token = env.key.mint(&bound("read", &client.jkt()));
    let authorization = format!("DPoP {token}");
    let proof = client.proof("GET", &format!("https://{HOST}/bound"), &token);
    let headers = [("authorization", authorization.as_str()), ("dpop", &proof)];
    ask(&env, "GET", "/bound", &headers).await.assert_allowed();
}

#[tokio::test]
async fn a_malformed_cnf_makes_the_token_invalid() {
    let env = Env::start(RULES).await;
    for cnf in [
        json!("not an object"),
        json!({ "jkt": "short" }),
        json!({ "jkt": ProofKey::es256().jkt(), "x5t#S256": ProofKey::es256().jkt() }),
    ] {
        let mut claims = claims("read");
        claims["cnf"] = cnf;
        let token = env.key.mint(&claims);
        ask(
            &env,
            "GET",
            "/orders",
            &[("authorization", &bearer(&token))],
        )
        .await
        .assert_denied(401, "invalid_token");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn explain_checks_a_dpop_proof_and_says_which_binding_check_failed() {
    let key = TestKey::generate("key-1");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
    let config = format!(
        "issuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\njwks_uri = \"{}\"\n{RULES}",
        jwks.url()
    );
    let client = ProofKey::es256();
    let token = key.mint(&bound("read", &client.jkt()));
    let url = format!("https://{HOST}/orders");
    let run = |proof: Option<String>| {
        let (config, token) = (config.clone(), token.clone());
        async move {
            let mut args = ["--method", "GET", "--path", "/orders", "--token"]
                .map(str::to_owned)
                .to_vec();
            args.push(token);
            if let Some(proof) = proof {
                args.extend(["--dpop-proof".to_owned(), proof]);
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let output = crate::explain::explain(&config, &args, "").await;
            (
                output.status.code(),
                String::from_utf8_lossy(&output.stdout).into_owned(),
            )
        }
    };
    let (code, out) = run(Some(client.proof("GET", &url, &token))).await;
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = run(Some(client.proof("POST", &url, &token))).await;
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("htm is not the request method"), "{out}");
    let (code, out) = run(None).await;
    assert_eq!(code, Some(3), "{out}");
    assert!(
        out.contains("DPoP-bound token sent as a Bearer token"),
        "{out}"
    );
}

#[tokio::test]
async fn a_reload_keeps_the_proofs_seen_so_none_can_be_replayed_across_it() {
    let key = TestKey::generate("reload-kid");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
    let config = |scope: &str| {
        format!(
            "listen = \"127.0.0.1:0\"\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\n\
             jwks_uri = \"{}\"\n[[rules]]\npath = \"/orders\"\nscopes = [\"{scope}\"]\n",
            jwks.url()
        )
    };
    let binary =
        crate::common::binary::Binary::start("dpop-reload", &config("read"), "info", None).await;
    binary.keys_loaded().await;
    let mut client = binary.client().await;
    let proof_key = ProofKey::es256();
    let token = key.mint(&bound("read write", &proof_key.jkt()));
    let authorization = format!("DPoP {token}");
    let proof = proof_key.proof("GET", &format!("https://{HOST}/orders"), &token);
    let headers = [("authorization", authorization.as_str()), ("dpop", &proof)];
    let mut ask = async || {
        let response = client
            .check(check_request("GET", "/orders", &headers))
            .await
            .expect("in-band answer")
            .into_inner();
        Answer::of(&response)
    };
    ask().await.assert_allowed();

    // Another rule set (the token would pass it too): the proof seen before is still refused.
    let path = binary.config_path();
    let staged = path.with_extension("staged");
    std::fs::write(&staged, config("write")).expect("write");
    std::fs::rename(&staged, &path).expect("rename");
    binary.sighup();
    binary
        .wait_for_log("configuration reloaded", std::time::Duration::from_secs(10))
        .await;
    let replayed = ask().await;
    replayed.assert_denied(401, "invalid_token");
    assert!(replayed.message().contains("already used"), "{replayed:?}");
}
