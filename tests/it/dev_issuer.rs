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
    assert_eq!(
        discovery["introspection_endpoint"],
        format!("{}oauth/introspect", issuer.url)
    );
    assert_eq!(
        discovery["revocation_endpoint"],
        format!("{}oauth/revoke", issuer.url)
    );
    for endpoint in ["introspection", "revocation"] {
        assert_eq!(
            discovery[format!("{endpoint}_endpoint_auth_methods_supported")],
            json!(["client_secret_basic", "client_secret_post"])
        );
    }
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

/// How a test authenticates at the introspection and revocation endpoints.
#[derive(Clone, Copy)]
enum Client<'a> {
    /// `client_secret_basic` with this id and secret.
    Basic(&'a str, &'a str),
    /// `client_secret_post` with this id and secret.
    Post(&'a str, &'a str),
    /// Both at once (which RFC 6749 §2.3 forbids).
    Both,
    /// No client authentication.
    Anonymous,
}

/// The demo client every test issuer accepts.
const DEMO: Client = Client::Basic("scopegate", "demo-introspection-secret");

/// POSTs `form` (plus the client's fields) to `endpoint` (`introspect` or `revoke`); returns the
/// status, the `WWW-Authenticate` header and the body as JSON (`null` when empty).
async fn oauth_post(
    issuer: &Issuer,
    endpoint: &str,
    client: Client<'_>,
    form: &[(&str, &str)],
) -> (u16, String, Value) {
    let mut fields: Vec<(&str, &str)> = form.to_vec();
    let mut request = issuer.http.post(format!("{}oauth/{endpoint}", issuer.url));
    match client {
        Client::Basic(id, secret) => request = request.basic_auth(id, Some(secret)),
        Client::Post(id, secret) => fields.extend([("client_id", id), ("client_secret", secret)]),
        Client::Both => {
            request = request.basic_auth("scopegate", Some("demo-introspection-secret"));
            fields.extend([
                ("client_id", "scopegate"),
                ("client_secret", "demo-introspection-secret"),
            ]);
        }
        Client::Anonymous => {}
    }
    let body = serde_urlencoded::to_string(&fields).expect("form");
    let response = request
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("endpoint answers");
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().expect("ascii").to_string())
        .unwrap_or_default();
    let text = response.text().await.expect("body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).expect("JSON answer")
    };
    (status, challenge, body)
}

async fn introspect(issuer: &Issuer, token: &str) -> Value {
    let (status, _, answer) = oauth_post(
        issuer,
        "introspect",
        DEMO,
        &[("token", token), ("token_type_hint", "access_token")],
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    answer
}

async fn token_of(issuer: &Issuer, body: Value) -> String {
    let (status, answer) = token_request(issuer, "application/json", body.to_string()).await;
    assert_eq!(status, 200, "{answer}");
    answer["access_token"]
        .as_str()
        .expect("access_token")
        .to_string()
}

#[tokio::test]
async fn opaque_tokens_and_jwts_are_introspected_as_active_with_their_claims() {
    let issuer = start_issuer().await;
    let request = json!({"grant_type": "client_credentials", "client_id": "svc", "audience": "https://api.example.com", "scope": "read:messages write:messages", "token_format": "opaque"});
    let opaque = token_of(&issuer, request.clone()).await;
    assert!(opaque.starts_with("sgo_"), "{opaque}");
    assert_ne!(opaque.split('.').count(), 3, "an opaque token is no JWT");
    // As a form field too; and two tokens of one second differ (each has its own jti).
    let form = "grant_type=client_credentials&client_id=svc&audience=https%3A%2F%2Fapi.example.com&token_format=opaque";
    let (status, answer) =
        token_request(&issuer, "application/x-www-form-urlencoded", form.into()).await;
    assert_eq!(status, 200, "{answer}");
    let second = answer["access_token"].as_str().expect("token");
    assert!(second.starts_with("sgo_") && second != opaque, "{second}");

    let answer = introspect(&issuer, &opaque).await;
    let now = now();
    assert_eq!(answer["active"], true, "{answer}");
    assert_eq!(answer["iss"], issuer.url);
    assert_eq!(answer["sub"], "svc@clients");
    assert_eq!(answer["aud"], "https://api.example.com");
    assert_eq!(answer["scope"], "read:messages write:messages");
    assert_eq!(answer["client_id"], "svc");
    assert_eq!(answer["token_type"], "Bearer");
    let (iat, exp) = (answer["iat"].as_u64(), answer["exp"].as_u64());
    assert!(iat.is_some_and(|iat| iat.abs_diff(now) <= 5), "{answer}");
    assert_eq!(exp, iat.map(|iat| iat + 3600), "{answer}");

    // The issuer's JWTs are introspected as active too (as Keycloak and Okta do).
    let mut jwt_request = request;
    jwt_request["token_format"] = json!("jwt");
    let jwt = token_of(&issuer, jwt_request).await;
    assert_eq!(jwt.split('.').count(), 3);
    let answer = introspect(&issuer, &jwt).await;
    assert_eq!(
        (&answer["active"], &answer["client_id"], &answer["scope"]),
        (
            &json!(true),
            &json!("svc"),
            &json!("read:messages write:messages")
        ),
        "{answer}"
    );

    // `mint-token --opaque` with the same key file mints tokens the running issuer reads, with
    // the extra claims given.
    let minted = mint_cli(
        &issuer,
        &[
            "--opaque",
            "--audience",
            "https://api.example.com",
            "--scope",
            "read:messages",
            "--subject",
            "ops",
            "--claim",
            "client_id=\"cli\"",
            "--claim",
            "tenant=\"acme\"",
        ],
    );
    assert!(minted.starts_with("sgo_"), "{minted}");
    let answer = introspect(&issuer, &minted).await;
    assert_eq!(
        (
            &answer["active"],
            &answer["sub"],
            &answer["client_id"],
            &answer["tenant"]
        ),
        (&json!(true), &json!("ops"), &json!("cli"), &json!("acme")),
        "{answer}"
    );
    let request =
        json!({"grant_type": "client_credentials", "audience": "a", "token_format": "macaroon"});
    let (status, answer) = token_request(&issuer, "application/json", request.to_string()).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("invalid_request"))
    );
}

#[tokio::test]
async fn unknown_expired_forged_and_foreign_tokens_are_inactive() {
    let issuer = start_issuer().await;
    let audience = ["--audience", "https://api.example.com"];
    let good = mint_cli(&issuer, &[&audience[..], &["--opaque"]].concat());
    let expired = mint_cli(
        &issuer,
        &[&audience[..], &["--opaque", "--claim", "exp=1"]].concat(),
    );
    let not_yet = mint_cli(
        &issuer,
        &[&audience[..], &["--opaque", "--claim", "nbf=99999999999"]].concat(),
    );
    let expired_jwt = mint_cli(&issuer, &[&audience[..], &["--claim", "exp=1"]].concat());
    // Another issuer's key: the same format, a MAC or signature this issuer did not make.
    let other = start_issuer().await;
    let foreign_opaque = mint_cli(&other, &[&audience[..], &["--opaque"]].concat());
    let foreign_jwt = mint_cli(&other, &audience);
    // A changed claim under the original MAC.
    let (claims, mac) = good["sgo_".len()..].split_at(good.len() - "sgo_".len() - 44);
    let mut forged_claims: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, claims)
            .expect("claims"),
    )
    .expect("json");
    forged_claims["scope"] = json!("admin");
    let forged = format!(
        "sgo_{}{mac}",
        base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            forged_claims.to_string()
        )
    );
    assert_eq!(introspect(&issuer, &good).await["active"], true);
    for (what, token) in [
        ("expired", expired.as_str()),
        ("not yet valid", not_yet.as_str()),
        ("expired JWT", expired_jwt.as_str()),
        ("another issuer's opaque token", foreign_opaque.as_str()),
        ("another issuer's JWT", foreign_jwt.as_str()),
        ("a changed claim", forged.as_str()),
        ("truncated", &good[..good.len() - 1]),
        ("unknown", "sgo_nothing_here"),
        ("junk", "not-a-token"),
        ("three dots", "a.b.c"),
        ("huge", &"x".repeat(40_000)),
    ] {
        assert_eq!(
            introspect(&issuer, token).await,
            json!({"active": false}),
            "{what}"
        );
    }
}

#[tokio::test]
async fn introspection_and_revocation_authenticate_their_client() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/", listener.local_addr().expect("addr"));
    let dir = tempfile::tempdir().expect("scratch dir");
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, "rs-s3cret\n").expect("secret file");
    let client =
        scopegate::dev::introspection::IntrospectionClient::from_secret_file("rs", &secret_file)
            .expect("client");
    let key_file = dir.path().join("key.der");
    let served = DevIssuer::load_or_create_for(&key_file, &url, DevAlgorithm::Es256)
        .expect("key")
        .with_introspection_client(client);
    tokio::spawn(served.serve(listener, false, std::future::pending()));
    let issuer = Issuer {
        url,
        alg: DevAlgorithm::Es256,
        key_file,
        http: reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client"),
        _dir: dir,
    };
    let token = mint_cli(&issuer, &["--opaque", "--audience", "a"]);
    let form = [("token", token.as_str())];
    for endpoint in ["introspect", "revoke"] {
        for (what, client) in [
            ("none", Client::Anonymous),
            ("the demo secret", DEMO),
            ("a wrong secret", Client::Basic("rs", "rs-s3creT")),
            ("the secret's newline", Client::Basic("rs", "rs-s3cret\n")),
            ("another id", Client::Basic("scopegate", "rs-s3cret")),
            ("a wrong posted secret", Client::Post("rs", "nope")),
            ("a posted id alone", Client::Post("rs", "")),
        ] {
            let (status, challenge, answer) = oauth_post(&issuer, endpoint, client, &form).await;
            assert_eq!(
                (status, answer["error"].as_str()),
                (401, Some("invalid_client")),
                "{endpoint} with {what}"
            );
            assert!(challenge.starts_with("Basic "), "{endpoint}: {challenge}");
        }
        let (status, _, answer) = oauth_post(&issuer, endpoint, Client::Both, &form).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (400, Some("invalid_request")),
            "{endpoint} with two client authentication methods"
        );
        let (status, _, answer) =
            oauth_post(&issuer, endpoint, Client::Basic("rs", "rs-s3cret"), &[]).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (400, Some("invalid_request")),
            "{endpoint} without a token"
        );
        let response = issuer
            .http
            .post(format!("{}oauth/{endpoint}", issuer.url))
            .basic_auth("rs", Some("rs-s3cret"))
            .header("content-type", "application/json")
            .body(json!({"token": token}).to_string())
            .send()
            .await
            .expect("answer");
        assert_eq!(response.status(), 400, "{endpoint} with a JSON body");
    }
    // The right client, by either method.
    for client in [
        Client::Basic("rs", "rs-s3cret"),
        Client::Post("rs", "rs-s3cret"),
    ] {
        let (status, _, answer) = oauth_post(&issuer, "introspect", client, &form).await;
        assert_eq!((status, &answer["active"]), (200, &json!(true)), "{answer}");
    }
    let (status, _, _) =
        oauth_post(&issuer, "revoke", Client::Post("rs", "rs-s3cret"), &form).await;
    assert_eq!(status, 200);

    // dev-issuer refuses to start with a secret file it cannot read, naming it.
    let out = crate::common::scopegate_command()
        .args(["dev-issuer", "--listen", "127.0.0.1:0"])
        .args(["--introspection-client-secret-file", "/nonexistent/secret"])
        .output()
        .expect("run dev-issuer");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("/nonexistent/secret"),
        "{stderr}"
    );
}

#[tokio::test]
async fn revoked_tokens_are_inactive_and_revocation_always_answers_200() {
    let issuer = start_issuer().await;
    let request = json!({"grant_type": "client_credentials", "audience": "https://api.example.com", "token_format": "opaque"});
    let revoked = token_of(&issuer, request.clone()).await;
    let kept = token_of(&issuer, request).await;
    let jwt = mint_cli(&issuer, &["--audience", "https://api.example.com"]);
    for token in [&revoked, &kept, &jwt] {
        assert_eq!(introspect(&issuer, token).await["active"], true);
    }
    for token in [revoked.as_str(), jwt.as_str(), "junk", "sgo_x_y"] {
        let (status, _, body) = oauth_post(
            &issuer,
            "revoke",
            DEMO,
            &[("token", token), ("token_type_hint", "refresh_token")],
        )
        .await;
        assert_eq!((status, body), (200, Value::Null), "{token}");
    }
    assert_eq!(
        introspect(&issuer, &revoked).await,
        json!({"active": false})
    );
    assert_eq!(introspect(&issuer, &jwt).await, json!({"active": false}));
    assert_eq!(
        introspect(&issuer, &kept).await["active"],
        true,
        "revoking one token leaves another of the same second alone"
    );
}

/// The URL the DPoP tests' Checks name: `https://api.example` and the path.
const API: &str = "https://api.example";

/// A gRPC Check for `method` on `path` of [`API`] with these headers.
async fn ask_api(gate: &Scopegate, method: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut check = request(method, path, headers);
    let http = check
        .attributes
        .as_mut()
        .and_then(|a| a.request.as_mut())
        .and_then(|r| r.http.as_mut())
        .expect("an http request");
    http.scheme = "https".into();
    http.host = "api.example".into();
    Answer::of(&gate.check(check).await)
}

/// Runs `scopegate dpop-proof --key-file KEY` with `args`; returns its one line.
fn dpop_proof_cli(key_file: &std::path::Path, args: &[&str]) -> String {
    let out = crate::common::scopegate_command()
        .args(["dpop-proof", "--key-file", key_file.to_str().expect("utf8")])
        .args(args)
        .output()
        .expect("run dpop-proof");
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

/// The claims of a compact JWS, unverified.
fn claims_of(token: &str) -> Value {
    use base64::Engine as _;
    let b64 = token.split('.').nth(1).expect("claims segment");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(b64)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

#[tokio::test]
async fn dpop_proof_cli_proofs_pass_the_gate_for_a_token_minted_with_its_thumbprint() {
    let issuer = start_issuer().await;
    let gate = scopegate_for(&issuer).await;
    gate.wait_serving().await;
    let key_file = issuer._dir.path().join("client/dpop.der");
    let jkt = dpop_proof_cli(&key_file, &["--print-jkt"]);
    assert_eq!(jkt.len(), 43, "{jkt}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key_file)
            .expect("key file")
            .permissions();
        assert_eq!(mode.mode() & 0o777, 0o600, "the key file is private");
    }
    assert_eq!(
        dpop_proof_cli(&key_file, &["--print-jkt"]),
        jkt,
        "the key is kept"
    );
    let token = mint_cli(
        &issuer,
        &[
            "--audience",
            "https://api.example.com",
            "--scope",
            "read:messages",
            "--dpop-jkt",
            &jkt,
        ],
    );
    assert_eq!(claims_of(&token)["cnf"], json!({ "jkt": jkt }));
    let authorization = format!("DPoP {token}");
    let url = format!("{API}/r");
    let proof = dpop_proof_cli(
        &key_file,
        &["--method", "GET", "--url", &url, "--token", &token],
    );
    ask_api(
        &gate,
        "GET",
        "/r",
        &[("authorization", &authorization), ("dpop", &proof)],
    )
    .await
    .assert_allowed();
    // The same proof again, one made for another URL or method, or without the token's hash,
    // or by another key: refused, each for its own reason.
    let replayed = ask_api(
        &gate,
        "GET",
        "/r",
        &[("authorization", &authorization), ("dpop", &proof)],
    )
    .await;
    assert_bad_proof(&replayed, "already used");
    let other_key = issuer._dir.path().join("client/other.der");
    let other = format!("{API}/other");
    for (key, args, reason) in [
        (&key_file, vec!["GET", &other, &token], "htu"),
        (&key_file, vec!["POST", &url, &token], "htm"),
        (&key_file, vec!["GET", &url], "ath"),
        (
            &other_key,
            vec!["GET", &url, &token],
            "not the key the token is bound to",
        ),
    ] {
        let mut cli = vec!["--method", args[0], "--url", args[1]];
        if let Some(token) = args.get(2) {
            cli.extend(["--token", token]);
        }
        let proof = dpop_proof_cli(key, &cli);
        let answer = ask_api(
            &gate,
            "GET",
            "/r",
            &[("authorization", &authorization), ("dpop", &proof)],
        )
        .await;
        assert_bad_proof(&answer, reason);
    }
    gate.stop().await;
}

/// A 401 with the DPoP challenge's `invalid_dpop_proof`, its message naming `reason`.
fn assert_bad_proof(answer: &Answer, reason: &str) {
    answer.assert_denied(401, "invalid_token");
    assert!(
        answer.challenge().starts_with("DPoP ")
            && answer.challenge().contains(r#"error="invalid_dpop_proof""#)
            && answer.message().contains(reason),
        "{reason}: {answer:?}"
    );
}

#[tokio::test]
async fn mint_token_binds_to_a_certificate_or_a_dpop_key_but_not_both() {
    let issuer = start_issuer().await;
    let gate = scopegate_for(&issuer).await;
    gate.wait_serving().await;
    let x5t = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";
    let base = [
        "--audience",
        "https://api.example.com",
        "--scope",
        "read:messages",
    ];
    let token = mint_cli(&issuer, &[&base[..], &["--cnf-x5t", x5t]].concat());
    assert_eq!(claims_of(&token)["cnf"], json!({ "x5t#S256": x5t }));
    // Without the certificate it names, the gate refuses it.
    ask_api(&gate, "GET", "/r", &[("authorization", &bearer(&token))])
        .await
        .assert_denied(401, "invalid_token");
    // The opaque form carries the binding too, for introspection to report.
    let opaque = mint_cli(
        &issuer,
        &[&base[..], &["--opaque", "--dpop-jkt", x5t]].concat(),
    );
    let answer = introspect(&issuer, &opaque).await;
    assert_eq!(
        (&answer["cnf"], &answer["token_type"]),
        (&json!({ "jkt": x5t }), &json!("DPoP")),
        "{answer}"
    );
    gate.stop().await;

    for (args, complaint) in [
        (
            vec!["--dpop-jkt", x5t, "--cnf-x5t", x5t],
            "cannot be used with",
        ),
        (vec!["--dpop-jkt", "d1970e08e45935"], "base64url"),
        (vec!["--cnf-x5t", &x5t[1..]], "base64url"),
    ] {
        let out = crate::common::scopegate_command()
            .args(["mint-token", "--audience", "a"])
            .args(["--key-file", issuer.key_file.to_str().expect("utf8")])
            .args(&args)
            .output()
            .expect("run mint-token");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(complaint),
            "{args:?}: {stderr}"
        );
    }
}

#[tokio::test]
async fn a_token_request_with_a_dpop_proof_gets_a_token_bound_to_its_key() {
    use scopegate::dev::dpop::ProofKey;
    let issuer = start_issuer().await;
    let gate = scopegate_for(&issuer).await;
    gate.wait_serving().await;
    let key = ProofKey::generate().expect("client key");
    let token_url = format!("{}oauth/token", issuer.url);
    let body = json!({"grant_type": "client_credentials", "audience": "https://api.example.com", "scope": "read:messages"}).to_string();
    let request = |proof: String| {
        issuer
            .http
            .post(&token_url)
            .header("content-type", "application/json")
            .header("dpop", proof)
            .body(body.clone())
            .send()
    };
    let proof = key.proof("POST", &token_url, None).expect("proof");
    let response = request(proof.clone()).await.expect("answer");
    assert_eq!(response.status(), 200);
    let answer: Value = serde_json::from_str(&response.text().await.expect("body")).expect("JSON");
    assert_eq!(answer["token_type"], "DPoP", "{answer}");
    let token = answer["access_token"].as_str().expect("token");
    assert_eq!(claims_of(token)["cnf"], json!({ "jkt": key.jkt() }));
    let authorization = format!("DPoP {token}");
    let url = format!("{API}/r");
    let resource_proof = key.proof("GET", &url, Some(token)).expect("proof");
    ask_api(
        &gate,
        "GET",
        "/r",
        &[("authorization", &authorization), ("dpop", &resource_proof)],
    )
    .await
    .assert_allowed();
    ask_api(&gate, "GET", "/r", &[("authorization", &bearer(token))])
        .await
        .assert_denied(401, "invalid_token");

    // The same proof again, one for another URL or method, and a junk one: 400 invalid_dpop_proof.
    for (what, proof) in [
        ("replayed", proof),
        (
            "another URL",
            key.proof("POST", &format!("{}oauth/introspect", issuer.url), None)
                .expect("proof"),
        ),
        ("GET", key.proof("GET", &token_url, None).expect("proof")),
        ("junk", "a.b.c".to_string()),
    ] {
        let response = request(proof).await.expect("answer");
        assert_eq!(response.status(), 400, "{what}");
        let answer: Value =
            serde_json::from_str(&response.text().await.expect("body")).expect("JSON");
        assert_eq!(answer["error"], "invalid_dpop_proof", "{what}: {answer}");
    }
    gate.stop().await;
}
