//! The development issuer: discovery, JWKS, the client-credentials token endpoint, key
//! persistence, the loopback guard, and `mint-token` — each checked against real scopegate.

use crate::common::*;
use scopegate::dev::issuer::{DevAlgorithm, DevIssuer, DevIssuerError};
use serde_json::{Value, json};
use tokio::net::TcpListener;

struct Issuer {
    url: String,
    alg: DevAlgorithm,
    key_file: std::path::PathBuf,
    http: reqwest::Client,
    /// Holds the key file's directory until the test ends.
    _dir: tempfile::TempDir,
}

async fn start_issuer() -> Issuer {
    start_issuer_for(DevAlgorithm::Rs256).await
}

async fn start_issuer_for(alg: DevAlgorithm) -> Issuer {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/", listener.local_addr().expect("addr"));
    let dir = tempfile::tempdir().expect("scratch dir");
    let key_file = dir.path().join("key.der");
    let issuer = DevIssuer::load_or_create_for(&key_file, &url, alg).expect("key");
    tokio::spawn(issuer.serve(listener, false, std::future::pending()));
    Issuer {
        url,
        alg,
        key_file,
        http: reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client"),
        _dir: dir,
    }
}

/// scopegate trusting `issuer` with its algorithm only.
async fn scopegate_for(issuer: &Issuer) -> Scopegate {
    scopegate_allowing(issuer, issuer.alg.name()).await
}

async fn scopegate_allowing(issuer: &Issuer, alg: &str) -> Scopegate {
    let text = format!(
        "issuer = \"{}\"\naudience = \"https://api.example.com\"\nalgorithms = [\"{alg}\"]\n[[rules]]\npath = \"/r\"\nscopes = [\"read:messages\"]\n",
        issuer.url
    );
    let config = scopegate::config::RawConfig::from_toml(&text, "<test>")
        .expect("toml")
        .compile()
        .expect("config");
    Scopegate::start_with(config).await
}

async fn token_request(issuer: &Issuer, content_type: &str, body: String) -> (u16, Value) {
    let response = issuer
        .http
        .post(format!("{}oauth/token", issuer.url))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("token endpoint answers");
    let status = response.status().as_u16();
    (
        status,
        serde_json::from_str(&response.text().await.expect("body")).expect("JSON answer"),
    )
}

async fn get_json(issuer: &Issuer, url: &str) -> Value {
    let response = issuer.http.get(url).send().await.expect("GET answers");
    assert_eq!(response.status(), 200, "{url}");
    serde_json::from_str(&response.text().await.expect("body")).expect("JSON body")
}

#[tokio::test]
async fn discovery_and_jwks_are_served() {
    let issuer = start_issuer().await;
    let discovery = get_json(
        &issuer,
        &format!("{}.well-known/openid-configuration", issuer.url),
    )
    .await;
    assert_eq!(discovery["issuer"], issuer.url);
    assert_eq!(
        discovery["jwks_uri"],
        format!("{}.well-known/jwks.json", issuer.url)
    );
    assert_eq!(
        discovery["token_endpoint"],
        format!("{}oauth/token", issuer.url)
    );
    let jwks = get_json(&issuer, discovery["jwks_uri"].as_str().expect("uri")).await;
    let key = &jwks["keys"][0];
    assert_eq!(
        (
            key["kty"].as_str(),
            key["use"].as_str(),
            key["alg"].as_str()
        ),
        (Some("RSA"), Some("sig"), Some("RS256"))
    );
}

#[tokio::test]
async fn client_credentials_tokens_are_accepted_by_scopegate() {
    let issuer = start_issuer().await;
    let gate = scopegate_for(&issuer).await;
    gate.wait_serving().await;

    let body = json!({"grant_type": "client_credentials", "client_id": "svc", "audience": "https://api.example.com", "scope": "read:messages"});
    let (status, answer) = token_request(&issuer, "application/json", body.to_string()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["token_type"], "Bearer");
    assert_eq!(answer["expires_in"], 3600);
    assert_eq!(answer["scope"], "read:messages");
    let token = answer["access_token"].as_str().expect("token");
    let decision = gate.ask("GET", "/r", Some(&bearer(token))).await;
    decision.assert_allowed();
    assert_eq!(decision.headers["x-auth-subject"], "svc@clients");

    // The same as a form, as OAuth clients usually send it; no scope → 403 on the scoped route.
    let form = "grant_type=client_credentials&audience=https%3A%2F%2Fapi.example.com".to_string();
    let (status, answer) = token_request(&issuer, "application/x-www-form-urlencoded", form).await;
    assert_eq!(status, 200, "{answer}");
    let token = answer["access_token"].as_str().expect("token");
    gate.ask("GET", "/r", Some(&bearer(token)))
        .await
        .assert_denied(403, "insufficient_scope");
    gate.stop().await;
}

#[tokio::test]
async fn token_endpoint_errors_follow_oauth() {
    let issuer = start_issuer().await;
    for (body, error) in [
        (
            json!({"grant_type": "client_credentials"}),
            "invalid_request",
        ),
        (
            json!({"grant_type": "client_credentials", "audience": ""}),
            "invalid_request",
        ),
        (
            json!({"grant_type": "password", "audience": "a"}),
            "unsupported_grant_type",
        ),
        (json!({"audience": "a"}), "unsupported_grant_type"),
    ] {
        let (status, answer) = token_request(&issuer, "application/json", body.to_string()).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (400, Some(error)),
            "{body}"
        );
    }
    let (status, answer) = token_request(&issuer, "application/json", "not json".into()).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("invalid_request"))
    );
}

#[tokio::test]
async fn key_is_persisted_and_non_loopback_is_refused() {
    let issuer = start_issuer().await;
    let first = DevIssuer::load_or_create(&issuer.key_file, &issuer.url).expect("load");
    let second = DevIssuer::load_or_create(&issuer.key_file, &issuer.url).expect("load");
    assert_eq!(
        first.kid(),
        second.kid(),
        "the key file is reused, not regenerated"
    );

    let open = TcpListener::bind("0.0.0.0:0").await.expect("bind");
    let refused = first.serve(open, false, std::future::pending()).await;
    assert!(
        matches!(refused, Err(DevIssuerError::NotLoopback(_))),
        "{refused:?}"
    );
}

/// Runs `scopegate mint-token` with the issuer's key, algorithm and URL plus `args`; returns
/// the token.
fn mint_cli(issuer: &Issuer, args: &[&str]) -> String {
    let out = crate::common::scopegate_command()
        .args([
            "mint-token",
            "--key-file",
            issuer.key_file.to_str().expect("utf8"),
        ])
        .args(["--issuer", &issuer.url, "--alg", issuer.alg.name()])
        .args(args)
        .output()
        .expect("run mint-token");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf8")
        .trim()
        .to_string()
}

#[tokio::test]
async fn mint_token_cli_makes_tokens_scopegate_accepts() {
    let issuer = start_issuer().await;
    let gate = scopegate_for(&issuer).await;
    gate.wait_serving().await;
    let audience = ["--audience", "https://api.example.com"];

    let token = mint_cli(
        &issuer,
        &[
            &audience[..],
            &["--scope", "read:messages", "--subject", "ops"],
        ]
        .concat(),
    );
    let answer = gate.ask("GET", "/r", Some(&bearer(&token))).await;
    answer.assert_allowed();
    assert_eq!(answer.headers["x-auth-subject"], "ops");

    let expired = mint_cli(&issuer, &[&audience[..], &["--claim", "exp=1"]].concat());
    gate.ask("GET", "/r", Some(&bearer(&expired)))
        .await
        .assert_denied(401, "invalid_token");
    gate.stop().await;
}

/// The JOSE header of a compact JWS.
fn header_of(token: &str) -> Value {
    use base64::Engine as _;
    let b64 = token.split('.').next().expect("header segment");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(b64)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON header")
}

#[tokio::test]
async fn es256_and_eddsa_issuers_publish_their_keys_and_mint_tokens_scopegate_verifies() {
    for (alg, kty, crv) in [
        (DevAlgorithm::Es256, "EC", "P-256"),
        (DevAlgorithm::EdDsa, "OKP", "Ed25519"),
    ] {
        let issuer = start_issuer_for(alg).await;
        let jwks = get_json(&issuer, &format!("{}.well-known/jwks.json", issuer.url)).await;
        let key = &jwks["keys"][0];
        assert_eq!(
            (
                key["kty"].as_str(),
                key["crv"].as_str(),
                key["alg"].as_str()
            ),
            (Some(kty), Some(crv), Some(alg.name())),
            "{jwks}"
        );
        let discovery = get_json(
            &issuer,
            &format!("{}.well-known/openid-configuration", issuer.url),
        )
        .await;
        assert_eq!(
            discovery["id_token_signing_alg_values_supported"],
            json!([alg.name()])
        );

        let gate = scopegate_for(&issuer).await;
        gate.wait_serving().await;
        // From the token endpoint and from the command line, both with the issuer's algorithm.
        let body = json!({"grant_type": "client_credentials", "audience": "https://api.example.com", "scope": "read:messages"});
        let (status, answer) = token_request(&issuer, "application/json", body.to_string()).await;
        assert_eq!(status, 200, "{answer}");
        let served = answer["access_token"].as_str().expect("token").to_string();
        let minted = mint_cli(
            &issuer,
            &[
                "--audience",
                "https://api.example.com",
                "--scope",
                "read:messages",
            ],
        );
        for token in [&served, &minted] {
            assert_eq!(header_of(token)["alg"], alg.name(), "{alg}");
            assert_eq!(header_of(token)["kid"], key["kid"], "{alg}");
            gate.ask("GET", "/r", Some(&bearer(token)))
                .await
                .assert_allowed();
        }
        // A forged signature (last byte of the payload changed) is refused.
        let mut parts: Vec<String> = minted.split('.').map(str::to_owned).collect();
        let last = parts[1].pop().expect("payload");
        parts[1].push(if last == 'A' { 'B' } else { 'A' });
        gate.ask("GET", "/r", Some(&bearer(&parts.join("."))))
            .await
            .assert_denied(401, "invalid_token");
        gate.stop().await;

        // Allowing only RS256, scopegate skips the issuer's one key: the set holds nothing it
        // may verify with, so the same validly signed token is refused as keys unavailable.
        let strict = scopegate_allowing(&issuer, "RS256").await;
        strict
            .ask("GET", "/r", Some(&bearer(&minted)))
            .await
            .assert_denied(503, "temporarily_unavailable");
        strict.stop().await;
    }
}

#[test]
fn a_key_file_of_another_kind_is_refused_not_replaced() {
    let dir = tempfile::tempdir().expect("scratch dir");
    let key_file = dir.path().join("key.der");
    DevIssuer::load_or_create(&key_file, "http://127.0.0.1:1/").expect("RSA key");
    let before = std::fs::read(&key_file).expect("key file");
    for alg in [DevAlgorithm::Es256, DevAlgorithm::EdDsa] {
        let err = DevIssuer::load_or_create_for(&key_file, "http://127.0.0.1:1/", alg)
            .expect_err("an RSA key is no EC or Ed25519 key");
        assert!(matches!(err, DevIssuerError::BadKey { .. }), "{err:?}");
        assert!(err.to_string().contains("key file of its own"), "{err}");
    }
    assert_eq!(std::fs::read(&key_file).expect("key file"), before);
    let out = crate::common::scopegate_command()
        .args(["mint-token", "--audience", "a", "--alg", "HS256"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("RS256, ES256 or EdDSA"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
