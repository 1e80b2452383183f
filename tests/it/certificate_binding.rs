//! Certificate-bound tokens (RFC 8705) over gRPC: a token whose `cnf["x5t#S256"]` names a
//! certificate is let through only with that certificate, from Envoy's
//! `attributes.source.certificate` (filled here as Envoy fills it, URL-encoded PEM) or, only
//! with `trust_forwarded_client_cert = true`, from one `x-forwarded-client-cert` element; on
//! every request, a token cache hit included.

use crate::common::binary::Binary;
use crate::common::*;
use crate::observability::{sample, scrape, token_cache_lookups};
use envoy_types::pb::envoy::service::auth::v3::CheckRequest;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::Peer;
use serde_json::json;

const RULE: &str = "[[rules]]\npath = \"/r\"\nscopes = [\"read\"]\n";

/// A throw-away client certificate: its PEM as Envoy passes it (URL-encoded), the hex SHA-256
/// of its DER as an XFCC `Hash=` carries it, and its `x5t#S256`.
struct ClientCert {
    url_encoded: String,
    hex: String,
    x5t: String,
}

impl ClientCert {
    fn generate(name: &str) -> ClientCert {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("certificate");
        ClientCert::generate_from(&cert)
    }

    fn generate_from(cert: &rcgen::Certificate) -> ClientCert {
        use base64::Engine as _;
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, cert.der());
        ClientCert {
            url_encoded: url_encode(&cert.pem()),
            hex: digest.as_ref().iter().map(|b| format!("{b:02x}")).collect(),
            x5t: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref()),
        }
    }
}

/// Envoy's URL-encoding of a PEM: every byte but the unreserved ones escaped.
fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A token for `/r` bound to the certificate `x5t`.
fn bound_token(key: &TestKey, x5t: &str) -> String {
    let mut claims = claims("read");
    claims["cnf"] = json!({ "x5t#S256": x5t });
    key.mint(&claims)
}

/// GET /r with `token`, the peer certificate `peer` and extra headers, as Envoy would ask.
fn check_request(token: &str, peer: Option<&str>, headers: &[(&str, &str)]) -> CheckRequest {
    let authorization = bearer(token);
    let mut all = vec![("authorization", authorization.as_str())];
    all.extend_from_slice(headers);
    let mut request = request("GET", "/r", &all);
    if let Some(peer) = peer {
        let attributes = request.attributes.as_mut().expect("attributes");
        attributes.source = Some(Peer {
            certificate: peer.to_owned(),
            ..Default::default()
        });
    }
    request
}

async fn ask(env: &Env, token: &str, peer: Option<&str>, headers: &[(&str, &str)]) -> Answer {
    Answer::of(&env.gate.check(check_request(token, peer, headers)).await)
}

#[tokio::test]
async fn a_certificate_bound_token_needs_the_certificate_it_names() {
    let env = Env::start(RULE).await;
    let mine = ClientCert::generate("client.test");
    let other = ClientCert::generate("other.test");
    let token = bound_token(&env.key, &mine.x5t);

    ask(&env, &token, Some(&mine.url_encoded), &[])
        .await
        .assert_allowed();
    for (case, peer) in [
        ("another certificate", Some(other.url_encoded.as_str())),
        ("no certificate", None),
        ("not a certificate", Some("not%20PEM")),
    ] {
        let answer = ask(&env, &token, peer, &[]).await;
        answer.assert_denied(401, "invalid_token");
        assert!(
            answer.challenge().starts_with("Bearer ")
                && answer.challenge().contains("error=\"invalid_token\""),
            "{case}: {answer:?}"
        );
    }
    // A plain bearer token needs no certificate, and a certificate changes nothing for it.
    let plain = env.key.mint(&claims("read"));
    ask(&env, &plain, None, &[]).await.assert_allowed();
    ask(&env, &plain, Some(&other.url_encoded), &[])
        .await
        .assert_allowed();
}

#[tokio::test]
async fn an_untrusted_forwarded_certificate_is_never_read() {
    // No trust_forwarded_client_cert: the default.
    let env = Env::start(RULE).await;
    let mine = ClientCert::generate("client.test");
    let other = ClientCert::generate("other.test");
    let token = bound_token(&env.key, &mine.x5t);
    let xfcc = format!("Hash={}", mine.hex);

    // Only the header, naming the right certificate: a client could have written it.
    ask(&env, &token, None, &[("x-forwarded-client-cert", &xfcc)])
        .await
        .assert_denied(401, "invalid_token");
    // The peer certificate decides, whatever the header says.
    let wrong = format!("Hash={}", other.hex);
    ask(
        &env,
        &token,
        Some(&mine.url_encoded),
        &[("x-forwarded-client-cert", &wrong)],
    )
    .await
    .assert_allowed();
}

#[tokio::test]
async fn a_trusted_forwarded_certificate_counts_when_it_is_one_element() {
    let env = Env::start(&format!("trust_forwarded_client_cert = true\n{RULE}")).await;
    let mine = ClientCert::generate("client.test");
    let other = ClientCert::generate("other.test");
    let token = bound_token(&env.key, &mine.x5t);

    let by_hash = format!(
        "By=spiffe://front;Hash={};Subject=\"/CN=client, O=a;b\"",
        mine.hex
    );
    let by_cert = format!("Cert=\"{}\"", mine.url_encoded);
    for xfcc in [&by_hash, &by_cert] {
        ask(&env, &token, None, &[("x-forwarded-client-cert", xfcc)])
            .await
            .assert_allowed();
    }
    let two_elements = format!("Hash={},Hash={}", other.hex, mine.hex);
    let another = format!("Hash={}", other.hex);
    let malformed = format!("Hash={}; Cert", mine.hex);
    for (case, xfcc, peer) in [
        ("two elements", two_elements.as_str(), None),
        ("another certificate", &another, None),
        (
            "the forwarded one wins over the peer's",
            &another,
            Some(mine.url_encoded.as_str()),
        ),
        ("malformed", &malformed, None),
        ("neither Hash nor Cert", "By=spiffe://front", None),
    ] {
        let answer = ask(&env, &token, peer, &[("x-forwarded-client-cert", xfcc)]).await;
        assert_eq!(
            (answer.status(), answer.error()),
            (401, "invalid_token"),
            "{case}: {answer:?}"
        );
    }
    // Two headers, each naming the right certificate: still two, still refused.
    let one = format!("Hash={}", mine.hex);
    ask(
        &env,
        &token,
        None,
        &[
            ("x-forwarded-client-cert", &one),
            ("X-Forwarded-Client-Cert", &one),
        ],
    )
    .await
    .assert_denied(401, "invalid_token");
    // Without the header, the peer certificate still counts.
    ask(&env, &token, Some(&mine.url_encoded), &[])
        .await
        .assert_allowed();
}

#[tokio::test]
async fn a_cached_bound_token_still_needs_its_certificate() {
    let key = TestKey::generate("k1");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
    let config = format!(
        "listen = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\nissuer = \"{ISSUER}\"\n\
         audience = \"{AUDIENCE}\"\njwks_uri = \"{}\"\n{RULE}",
        jwks.url()
    );
    let binary = Binary::start("cert-bound-cache", &config, "info", None).await;
    binary.keys_loaded().await;
    let metrics = binary.metrics_addr().await;
    let mine = ClientCert::generate("client.test");
    let other = ClientCert::generate("other.test");
    let token = bound_token(&key, &mine.x5t);
    let ask = |peer: Option<String>| {
        let request = check_request(&token, peer.as_deref(), &[]);
        let binary = &binary;
        async move {
            Answer::of(
                &binary
                    .client()
                    .await
                    .check(request)
                    .await
                    .expect("in-band answer")
                    .into_inner(),
            )
        }
    };

    ask(Some(mine.url_encoded.clone())).await.assert_allowed();
    assert_eq!(token_cache_lookups(&metrics).await, (0.0, 1.0), "cached");
    ask(None).await.assert_denied(401, "invalid_token");
    ask(Some(other.url_encoded.clone()))
        .await
        .assert_denied(401, "invalid_token");
    assert_eq!(
        token_cache_lookups(&metrics).await,
        (2.0, 1.0),
        "both refusals came from the cache"
    );
    ask(Some(mine.url_encoded.clone())).await.assert_allowed();

    let scrape = scrape(&metrics).await;
    let refused = sample(
        &scrape,
        "scopegate_checks_total",
        &[
            ("transport", "grpc"),
            ("decision", "deny"),
            ("status", "401"),
            ("reason", "binding"),
        ],
    );
    assert_eq!(refused, 2.0, "counted under reason binding");
}

/// `scopegate explain --client-cert FILE` checks a certificate-bound token against the PEM
/// file, as against the certificate Envoy passes, and says which check failed.
#[tokio::test(flavor = "multi_thread")]
async fn explain_checks_a_bound_token_against_the_client_certificate_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let write = |name: &str| {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("certificate");
        let path = dir.path().join(format!("{name}.pem"));
        std::fs::write(&path, cert.pem()).expect("write");
        (path.display().to_string(), ClientCert::generate_from(&cert))
    };
    let (mine_file, mine) = write("client.test");
    let (other_file, _) = write("other.test");
    // Nothing listens here: --claims never fetches keys.
    let config = format!(
        "issuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\n\
         jwks_uri = \"http://127.0.0.1:9/jwks.json\"\n{RULE}"
    );
    let mut bound = claims("read");
    bound["cnf"] = json!({ "x5t#S256": mine.x5t });
    let bound = bound.to_string();
    let get = [
        "--method", "GET", "--path", "/r", "--json", "--claims", &bound,
    ];
    for (case, cert, status, message) in [
        ("its certificate", Some(mine_file.as_str()), 200, None),
        (
            "another certificate",
            Some(other_file.as_str()),
            401,
            Some("client certificate does not match the token"),
        ),
        ("no certificate", None, 401, Some("none was presented")),
    ] {
        let mut args = get.to_vec();
        if let Some(cert) = cert {
            args.extend(["--client-cert", cert]);
        }
        let output = crate::explain::explain(&config, &args, "").await;
        let explained: serde_json::Value = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("{case}: JSON expected ({e}): {output:?}"));
        let answer = &explained["answer"];
        assert_eq!(answer["status"], status, "{case}: {explained:#}");
        if let Some(message) = message {
            assert_eq!(answer["reason"], "binding", "{case}: {explained:#}");
            assert!(
                answer["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(message)),
                "{case}: {explained:#}"
            );
        }
    }
}

/// The HTTP authorization listener has no peer certificate: a certificate-bound token passes
/// there only with `trust_forwarded_client_cert` and the proxy's `x-forwarded-client-cert`.
#[tokio::test]
async fn behind_the_http_listener_only_a_trusted_forwarded_certificate_counts() {
    let key = TestKey::generate("k1");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
    let mine = ClientCert::generate("client.test");
    let token = bearer(&bound_token(&key, &mine.x5t));
    let xfcc = format!("Hash={}", mine.hex);
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    for (trust, with_header, want) in [(true, true, 200), (true, false, 401), (false, true, 401)] {
        let config = format!(
            "listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\nissuer = \"{ISSUER}\"\n\
             audience = \"{AUDIENCE}\"\njwks_uri = \"{}\"\n\
             trust_forwarded_client_cert = {trust}\n{RULE}",
            jwks.url()
        );
        let binary = Binary::start("cert-bound-http", &config, "info", None).await;
        binary.keys_loaded().await;
        let mut request = client
            .get(format!("http://{}/envoy/r", binary.http_addr().await))
            .header("host", "app.example")
            .header("authorization", &token);
        if with_header {
            request = request.header("x-forwarded-client-cert", &xfcc);
        }
        let status = request.send().await.expect("an answer").status().as_u16();
        assert_eq!(
            status, want,
            "trust_forwarded_client_cert = {trust}, header sent: {with_header}"
        );
    }
}
