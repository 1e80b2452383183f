//! TLS and mTLS on the gRPC listener, with the real binary, real certificates (a throw-away CA
//! from `scopegate dev-certs`' generator) and real TLS clients: Checks, health and reflection
//! over TLS; plaintext and TLS below 1.2 refused; a stalled handshake closed at its deadline;
//! client certificates required and checked against the CA; the plaintext health-only
//! listener; renewed certificates taken up on SIGHUP. And the other direction: discovery and
//! keys fetched from an identity provider behind a private CA (`ca_file`, `ca_file_only`), over
//! a real rustls server, redirects never followed.

use std::path::Path;
use std::time::Duration;

use crate::common::binary::Binary;
use crate::common::*;
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use scopegate::dev::certs::{DevCerts, generate};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

fn hosts() -> Vec<String> {
    vec!["localhost".into(), "127.0.0.1".into()]
}

fn config(jwks_uri: &str, certs: &DevCerts, mtls: bool, extra: &str) -> String {
    let ca = if mtls {
        format!(
            "client_ca_file = {:?}\n",
            certs.ca_cert.display().to_string()
        )
    } else {
        String::new()
    };
    format!(
        "listen = \"127.0.0.1:0\"\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\n\
         jwks_uri = \"{jwks_uri}\"\n{extra}\n\
         [tls]\ncert_file = {:?}\nkey_file = {:?}\n{ca}\n\
         [[rules]]\npath = \"/r\"\nscopes = [\"read\"]\n",
        certs.server_cert.display().to_string(),
        certs.server_key.display().to_string(),
    )
}

/// One Check of GET /r with `token` over TLS, trusting `ca`, presenting `identity`: the HTTP
/// status (200 for an allow) or why the connection or call failed.
async fn check_over_tls(
    addr: &str,
    ca: &Path,
    identity: Option<(&Path, &Path)>,
    token: &str,
) -> Result<i32, String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(ca).expect("ca")))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(
            std::fs::read(cert).expect("cert"),
            std::fs::read(key).expect("key"),
        ));
    }
    let channel = Endpoint::from_shared(format!("https://{addr}"))
        .expect("endpoint")
        .tls_config(tls)
        .expect("tls config")
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    let answer = AuthorizationClient::new(channel)
        .check(request("GET", "/r", &[("authorization", &bearer(token))]))
        .await
        .map_err(|e| format!("call: {e:?}"))?
        .into_inner();
    Ok(Answer::of(&answer).status())
}

/// `scopegate health` against `addr` with `args`; whether it exited 0.
fn probe(addr: &str, args: &[&str]) -> bool {
    crate::common::scopegate_command()
        .args(["health", "--grpc", addr])
        .args(args)
        .output()
        .expect("run health")
        .status
        .success()
}

#[tokio::test]
async fn a_tls_listener_serves_checks_health_and_reflection_and_refuses_plaintext() {
    let dir = tempfile::tempdir().expect("dir");
    let certs = generate(dir.path(), &hosts()).expect("certs");
    let key = TestKey::generate("tls-kid");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
    let binary = Binary::start("tls", &config(&jwks.url(), &certs, false, ""), "info", None).await;
    binary.keys_loaded().await;
    let good = key.mint(&claims("read"));
    let weak = key.mint(&claims("openid"));
    assert_eq!(
        check_over_tls(&binary.addr, &certs.ca_cert, None, &good).await,
        Ok(200)
    );
    assert_eq!(
        check_over_tls(&binary.addr, &certs.ca_cert, None, &weak).await,
        Ok(403)
    );
    // Health and reflection share the TLS port.
    let ca = certs.ca_cert.to_str().expect("utf8");
    assert!(probe(
        &binary.addr,
        &["--tls-ca", ca, "--tls-server-name", "localhost"]
    ));
    let channel = Endpoint::from_shared(format!("https://{}", binary.addr))
        .expect("endpoint")
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(
                    std::fs::read(&certs.ca_cert).expect("ca"),
                ))
                .domain_name("localhost"),
        )
        .expect("tls")
        .connect()
        .await
        .expect("connect over TLS");
    let services = crate::grpc_surface::reflection_services(channel).await;
    assert!(
        services
            .iter()
            .any(|s| s == scopegate::serve::server::AUTHORIZATION_SERVICE),
        "{services:?}"
    );

    // Plaintext: a gRPC client without TLS gets nowhere, nor does the probe.
    let plaintext = async {
        let channel = Endpoint::from_shared(format!("http://{}", binary.addr))
            .ok()?
            .timeout(Duration::from_secs(5))
            .connect()
            .await
            .ok()?;
        AuthorizationClient::new(channel)
            .check(request("GET", "/r", &[("authorization", &bearer(&good))]))
            .await
            .ok()
    };
    assert!(plaintext.await.is_none(), "a plaintext Check was answered");
    assert!(!probe(&binary.addr, &[]), "the plaintext probe succeeded");
    // A server certificate the client does not trust: refused by the client.
    let other = tempfile::tempdir().expect("dir");
    let strangers = generate(other.path(), &hosts()).expect("certs");
    assert!(
        check_over_tls(&binary.addr, &strangers.ca_cert, None, &good)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn mtls_requires_a_client_certificate_from_the_configured_ca() {
    let dir = tempfile::tempdir().expect("dir");
    let certs = generate(dir.path(), &hosts()).expect("certs");
    let other = tempfile::tempdir().expect("dir");
    let strangers = generate(other.path(), &hosts()).expect("certs");
    let key = TestKey::generate("mtls-kid");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
    let binary = Binary::start(
        "mtls",
        &config(&jwks.url(), &certs, true, "health_listen = \"127.0.0.1:0\""),
        "debug",
        None,
    )
    .await;
    binary.keys_loaded().await;
    let good = key.mint(&claims("read"));
    let ours = (certs.client_cert.as_path(), certs.client_key.as_path());
    let theirs = (
        strangers.client_cert.as_path(),
        strangers.client_key.as_path(),
    );
    assert_eq!(
        check_over_tls(&binary.addr, &certs.ca_cert, Some(ours), &good).await,
        Ok(200)
    );
    let anonymous = check_over_tls(&binary.addr, &certs.ca_cert, None, &good).await;
    assert!(anonymous.is_err(), "no client certificate: {anonymous:?}");
    let foreign = check_over_tls(&binary.addr, &certs.ca_cert, Some(theirs), &good).await;
    assert!(foreign.is_err(), "another CA's certificate: {foreign:?}");
    assert!(
        binary.log_text().contains("TLS handshake failed"),
        "refused in the handshake"
    );

    // The probe with and without a client certificate.
    let ca = certs.ca_cert.to_str().expect("utf8");
    let (cert, client_key) = (
        certs.client_cert.to_str().expect("utf8"),
        certs.client_key.to_str().expect("utf8"),
    );
    assert!(probe(
        &binary.addr,
        &[
            "--tls-ca",
            ca,
            "--tls-cert",
            cert,
            "--tls-key",
            client_key,
            "--tls-server-name",
            "localhost"
        ]
    ));
    assert!(!probe(
        &binary.addr,
        &["--tls-ca", ca, "--tls-server-name", "localhost"]
    ));

    // The plaintext health listener answers health, and nothing else.
    let line = binary
        .wait_for_log("grpc.health.v1 only", Duration::from_secs(5))
        .await;
    let health_addr = crate::common::binary::listen_address(&line).expect("health address");
    assert!(probe(&health_addr, &[]), "kubelet-style plaintext probe");
    let channel = Endpoint::from_shared(format!("http://{health_addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let status = AuthorizationClient::new(channel)
        .check(request("GET", "/r", &[("authorization", &bearer(&good))]))
        .await
        .expect_err("no Authorization service on the health port");
    assert_eq!(status.code(), tonic::Code::Unimplemented);
}

#[tokio::test]
async fn renewed_certificates_are_taken_up_on_sighup() {
    let dir = tempfile::tempdir().expect("dir");
    let first = generate(dir.path(), &hosts()).expect("certs");
    let key = TestKey::generate("renew-kid");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
    let binary = Binary::start(
        "tls-renew",
        &config(&jwks.url(), &first, false, ""),
        "info",
        None,
    )
    .await;
    binary.keys_loaded().await;
    let good = key.mint(&claims("read"));
    let old_ca = dir.path().join("old-ca.crt");
    std::fs::copy(&first.ca_cert, &old_ca).expect("keep the old CA");
    assert_eq!(
        check_over_tls(&binary.addr, &old_ca, None, &good).await,
        Ok(200)
    );

    // New certificates from a new CA, written over the same files, then SIGHUP.
    let renewed = generate(dir.path(), &hosts()).expect("certs");
    binary.sighup();
    binary
        .wait_for_log("configuration reloaded", Duration::from_secs(10))
        .await;
    assert_eq!(
        check_over_tls(&binary.addr, &renewed.ca_cert, None, &good).await,
        Ok(200),
        "the new certificate is served"
    );
    assert!(
        check_over_tls(&binary.addr, &old_ca, None, &good)
            .await
            .is_err(),
        "the old certificate is not"
    );

    // A broken key file refuses the reload; the renewed certificate stays in force.
    std::fs::write(&renewed.server_key, "not a key").expect("write");
    binary.sighup();
    let refused = binary
        .wait_for_log("reload refused", Duration::from_secs(10))
        .await;
    assert!(refused.contains("server.key"), "{refused}");
    assert_eq!(
        check_over_tls(&binary.addr, &renewed.ca_cert, None, &good).await,
        Ok(200)
    );
}

/// An identity provider on https behind its own private CA, keys found by OIDC discovery under
/// the issuer's path: the discovery document and the JWKS come from the server `certs` names.
async fn private_idp(certs: &DevCerts, key: &TestKey) -> (JwksServer, String) {
    let idp = JwksServer::start_tls(
        Reply::Respond(404, vec![], vec![]),
        &certs.server_cert,
        &certs.server_key,
    )
    .await;
    let issuer = idp.url_of("/realms/staff");
    idp.route(
        "/realms/staff/.well-known/openid-configuration",
        Reply::json(&serde_json::json!({
            "issuer": issuer,
            "jwks_uri": idp.url_of("/realms/staff/certs"),
        })),
    );
    idp.route("/realms/staff/certs", Reply::json(&jwks_of(&[key])));
    (idp, issuer)
}

fn private_idp_config(issuer: &str, trust: &str) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\nissuer = \"{issuer}\"\naudience = \"{AUDIENCE}\"\n{trust}\n\
         [[rules]]\npath = \"/r\"\nscopes = [\"read\"]\n"
    )
}

fn compiled(text: &str) -> scopegate::config::Config {
    scopegate::config::RawConfig::from_toml(text, "<test>")
        .and_then(scopegate::config::RawConfig::compile)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// Discovery and JWKS over TLS from a server whose certificate a private CA signed: with that
/// CA in `ca_file` (added to the platform's roots, or alone with `ca_file_only`), for the
/// one-issuer shorthand or an `[[issuers]]` entry, the keys load and tokens verify; with the
/// platform's roots only, or another CA, the handshake fails, nothing is fetched, and tokens
/// get 503.
#[tokio::test]
async fn keys_from_an_identity_provider_behind_a_private_ca_need_its_ca_file() {
    let dir = tempfile::tempdir().expect("dir");
    let certs = generate(&dir.path().join("idp"), &hosts()).expect("certs");
    let other = generate(&dir.path().join("other"), &hosts()).expect("certs");
    let key = TestKey::generate("private-kid");
    let (idp, issuer) = private_idp(&certs, &key).await;
    let ca = |certs: &DevCerts| certs.ca_cert.display().to_string();
    let entry = |trust: &str| {
        format!(
            "[[issuers]]\nissuer = \"{issuer}\"\naudience = \"{AUDIENCE}\"\n{trust}\n\
             [[rules]]\npath = \"/r\"\nscopes = [\"read\"]\n"
        )
    };
    for (text, trusted) in [
        (
            private_idp_config(&issuer, &format!("ca_file = {:?}", ca(&certs))),
            true,
        ),
        (
            private_idp_config(
                &issuer,
                &format!("ca_file = {:?}\nca_file_only = true", ca(&certs)),
            ),
            true,
        ),
        (entry(&format!("ca_file = {:?}", ca(&certs))), true),
        (private_idp_config(&issuer, ""), false),
        (
            private_idp_config(&issuer, &format!("ca_file = {:?}", ca(&other))),
            false,
        ),
        (
            entry(&format!("ca_file = {:?}\nca_file_only = true", ca(&other))),
            false,
        ),
    ] {
        let config = compiled(&text);
        let hits = idp.hits();
        let fetched = scopegate::auth::jwks::fetch_once(&config.issuers()[0].jwks).await;
        if trusted {
            assert_eq!(fetched.map(|(keys, _)| keys.len()).ok(), Some(1), "{text}");
            assert_eq!(idp.hits(), hits + 2, "discovery and JWKS: {text}");
        } else {
            let error = fetched.expect_err(&text).to_string();
            assert!(error.contains("certificate"), "{text}: {error}");
            assert_eq!(idp.hits(), hits, "nothing is asked of an untrusted server");
        }
    }

    // The same through the server: tokens verify with the CA, and get 503 without it.
    let mut claims = claims("read");
    claims["iss"] = serde_json::json!(issuer);
    let token = key.mint(&claims);
    let gate = Scopegate::start_with(compiled(&private_idp_config(
        &issuer,
        &format!("ca_file = {:?}", ca(&certs)),
    )))
    .await;
    gate.wait_serving().await;
    gate.ask("GET", "/r", Some(&bearer(&token)))
        .await
        .assert_allowed();
    gate.stop().await;
    let gate = Scopegate::start_with(compiled(&private_idp_config(&issuer, ""))).await;
    gate.ask("GET", "/r", Some(&bearer(&token)))
        .await
        .assert_denied(503, "temporarily_unavailable");
    gate.stop().await;
}

/// The CA file is read again at every reload: new contents make the issuer a changed one,
/// whose keys are fetched (with a client trusting the new CA) before the new configuration
/// answers; a CA file that has gone missing refuses the reload, naming the key and the path,
/// and the configuration in force stays.
#[tokio::test]
async fn a_reload_reads_the_ca_file_again_and_refuses_a_missing_one() {
    let dir = tempfile::tempdir().expect("dir");
    let certs = generate(&dir.path().join("idp"), &hosts()).expect("certs");
    let other = generate(&dir.path().join("other"), &hosts()).expect("certs");
    let key = TestKey::generate("private-kid");
    let (_idp, issuer) = private_idp(&certs, &key).await;
    // The CA file starts out holding the wrong CA.
    let ca_file = dir.path().join("idp-ca.pem");
    std::fs::copy(&other.ca_cert, &ca_file).expect("copy");
    let binary = Binary::start(
        "private-ca-reload",
        &private_idp_config(
            &issuer,
            &format!("ca_file = {:?}", ca_file.display().to_string()),
        ),
        "info",
        None,
    )
    .await;
    binary
        .wait_for_log("JWKS refresh failed", Duration::from_secs(20))
        .await;
    let mut claims = claims("read");
    claims["iss"] = serde_json::json!(issuer);
    let token = key.mint(&claims);
    let status = |client: AuthorizationClient<tonic::transport::Channel>| {
        let token = token.clone();
        async move {
            let mut client = client;
            let answer = client
                .check(request("GET", "/r", &[("authorization", &bearer(&token))]))
                .await
                .expect("in-band answer")
                .into_inner();
            Answer::of(&answer).status()
        }
    };
    assert_eq!(status(binary.client().await).await, 503);

    // The right CA, same path, same configuration file: the reload fetches the keys anew.
    let staged = dir.path().join("idp-ca.pem.staged");
    std::fs::copy(&certs.ca_cert, &staged).expect("copy");
    std::fs::rename(&staged, &ca_file).expect("rename");
    binary.sighup();
    binary
        .wait_for_log("configuration reloaded", Duration::from_secs(20))
        .await;
    assert_eq!(status(binary.client().await).await, 200);

    // The CA file goes missing: the reload is refused, naming the key and the path.
    std::fs::remove_file(&ca_file).expect("remove");
    binary.sighup();
    let refused = binary
        .wait_for_log("reload refused", Duration::from_secs(20))
        .await;
    assert!(
        refused.contains("ca_file") && refused.contains(&ca_file.display().to_string()),
        "{refused}"
    );
    assert_eq!(status(binary.client().await).await, 200);
}

/// Renewed certificates written into the watched configuration directory, and a SIGHUP right
/// after: the directory's change is waiting when the signal comes, and must not stand in for
/// it. The signal reloads everything (the file's bytes are unchanged) and the new certificate
/// is served.
#[tokio::test]
async fn a_sighup_right_after_a_change_in_the_watched_directory_renews_the_certificates() {
    let dir = tempfile::tempdir().expect("dir");
    let first = generate(dir.path(), &hosts()).expect("certs");
    let key = TestKey::generate("renew-watch-kid");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
    let watched = "reload_on_change = true";
    let binary = Binary::start(
        "tls-renew-watched",
        &config(&jwks.url(), &first, false, watched),
        "info",
        None,
    )
    .await;
    binary.keys_loaded().await;
    let good = key.mint(&claims("read"));

    // Certificates in the configuration's own directory, taken up through the watch.
    let config_dir = binary.config_path().parent().expect("dir").to_path_buf();
    let second = generate(&config_dir, &hosts()).expect("certs");
    let staged = config_dir.join("config.staged");
    std::fs::write(&staged, config(&jwks.url(), &second, false, watched)).expect("write");
    std::fs::rename(&staged, binary.config_path()).expect("rename");
    binary
        .wait_for_log("configuration reloaded", Duration::from_secs(10))
        .await;
    let second_ca = dir.path().join("second-ca.crt");
    std::fs::copy(&second.ca_cert, &second_ca).expect("keep the second CA");
    assert_eq!(
        check_over_tls(&binary.addr, &second_ca, None, &good).await,
        Ok(200)
    );

    // Renewed in place, then at once SIGHUP.
    let renewed = generate(&config_dir, &hosts()).expect("certs");
    binary.sighup();
    eventually("the signal's reload", Duration::from_secs(10), || async {
        binary.count_in_log("configuration reloaded") == 2
    })
    .await;
    let line = binary
        .log_text()
        .lines()
        .rfind(|line| line.contains("configuration reloaded"))
        .unwrap_or_default()
        .to_string();
    assert!(line.contains("Signal"), "{line}");
    assert_eq!(
        check_over_tls(&binary.addr, &renewed.ca_cert, None, &good).await,
        Ok(200),
        "the renewed certificate is served"
    );
    assert!(
        check_over_tls(&binary.addr, &second_ca, None, &good)
            .await
            .is_err(),
        "the one before is not"
    );
}

/// Over https from a trusted private CA, a redirect is refused like any other: discovery and a
/// `jwks_uri` that answer 302 to plain http on loopback (which the fetch policy would allow as
/// a URL of its own) and one that answers 302 to another path of the same trusted server all
/// fail, the target is never asked, and tokens get 503. The targets serve the right documents:
/// configured directly, they load.
#[tokio::test]
async fn an_https_key_source_that_redirects_is_never_followed_to_http_or_anywhere() {
    let dir = tempfile::tempdir().expect("dir");
    let certs = generate(&dir.path().join("idp"), &hosts()).expect("certs");
    let key = TestKey::generate("redirect-kid");
    let idp = JwksServer::start_tls(
        Reply::Respond(404, vec![], vec![]),
        &certs.server_cert,
        &certs.server_key,
    )
    .await;
    let target = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
    let issuer = idp.url_of("/realms/staff");
    let discovery = "/realms/staff/.well-known/openid-configuration";
    target.route(
        discovery,
        Reply::json(&serde_json::json!({"issuer": issuer, "jwks_uri": target.url()})),
    );
    let moved = |to: String| Reply::Respond(302, vec![("location".into(), to)], vec![]);
    idp.route(discovery, moved(target.url_of(discovery)));
    idp.route("/to-http", moved(target.url()));
    idp.route("/to-https", moved(idp.url_of("/keys")));
    idp.route("/keys", Reply::json(&jwks_of(&[&key])));
    let trust = format!("ca_file = {:?}", certs.ca_cert.display().to_string());
    let with_uri = |uri: &str| format!("{trust}\njwks_uri = \"{uri}\"");

    for (text, redirected) in [
        (private_idp_config(&issuer, &trust), discovery.to_string()),
        (
            private_idp_config(&issuer, &with_uri(&idp.url_of("/to-http"))),
            "/.well-known/jwks.json".to_string(),
        ),
        (
            private_idp_config(&issuer, &with_uri(&idp.url_of("/to-https"))),
            "/keys".to_string(),
        ),
    ] {
        let asked = (target.hits(), idp.hits_on("/keys"));
        let error = scopegate::auth::jwks::fetch_once(&compiled(&text).issuers()[0].jwks)
            .await
            .expect_err(&text)
            .to_string();
        assert!(error.contains("HTTP 302"), "{text}: {error}");
        assert_eq!(
            (target.hits(), idp.hits_on("/keys")),
            asked,
            "the redirect to {redirected} was followed: {text}"
        );
    }
    // The targets themselves serve keys: only the redirect stood in the way.
    for uri in [target.url(), idp.url_of("/keys")] {
        let text = private_idp_config(&issuer, &with_uri(&uri));
        let keys = scopegate::auth::jwks::fetch_once(&compiled(&text).issuers()[0].jwks).await;
        assert_eq!(keys.map(|(keys, _)| keys.len()).ok(), Some(1), "{text}");
    }

    // Through the server: the token is refused with 503, never verified by the moved keys.
    let mut claims = claims("read");
    claims["iss"] = serde_json::json!(issuer);
    let token = key.mint(&claims);
    let gate = Scopegate::start_with(compiled(&private_idp_config(
        &issuer,
        &with_uri(&idp.url_of("/to-http")),
    )))
    .await;
    let (hits, asked) = (idp.hits_on("/to-http"), target.hits());
    eventually("the first fetch", Duration::from_secs(10), || async {
        idp.hits_on("/to-http") > hits
    })
    .await;
    gate.ask("GET", "/r", Some(&bearer(&token)))
        .await
        .assert_denied(503, "temporarily_unavailable");
    assert_eq!(target.hits(), asked, "the plain-http target is never asked");
    gate.stop().await;
}

/// Reads from `socket` until the peer closes it (true) or `within` passes (false).
async fn closed_within(socket: &mut tokio::net::TcpStream, within: Duration) -> bool {
    use tokio::io::AsyncReadExt as _;
    let mut buf = [0u8; 4096];
    tokio::time::timeout(within, async {
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// A ClientHello record as a client of TLS `version` (`[3, 1]` for 1.0, `[3, 2]` for 1.1,
/// `[3, 3]` for 1.2) writes it, built by hand since no TLS library here speaks below 1.2: ECDHE
/// suites (AES-GCM, and the CBC ones older clients offer), the groups and signature algorithms
/// a TLS 1.2 server needs, no `supported_versions` (so the version field is the offer).
fn client_hello(version: [u8; 2]) -> Vec<u8> {
    fn extension(kind: u16, data: &[u8]) -> Vec<u8> {
        let mut out = kind.to_be_bytes().to_vec();
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(data);
        out
    }
    let mut extensions = Vec::new();
    // supported_groups: x25519, secp256r1, secp384r1.
    extensions.extend(extension(10, &[0, 6, 0, 0x1d, 0, 0x17, 0, 0x18]));
    // ec_point_formats: uncompressed.
    extensions.extend(extension(11, &[1, 0]));
    // signature_algorithms: ECDSA P-256 and P-384, RSA-PSS and PKCS#1 with SHA-256 and SHA-384.
    extensions.extend(extension(13, &[0, 12, 4, 3, 5, 3, 8, 4, 8, 5, 4, 1, 5, 1]));
    let suites: [u16; 6] = [0xc02b, 0xc02f, 0xc02c, 0xc030, 0xc009, 0xc013];
    let mut body = version.to_vec();
    body.extend_from_slice(&[0x5a; 32]); // random
    body.push(0); // no session id
    body.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
    for suite in suites {
        body.extend_from_slice(&suite.to_be_bytes());
    }
    body.extend_from_slice(&[1, 0]); // compression: null only
    body.extend_from_slice(&(extensions.len() as u16).to_be_bytes());
    body.extend(extensions);
    let mut handshake = vec![1]; // client_hello
    handshake.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend(body);
    let mut record = vec![0x16, 3, 1]; // handshake record, version 1.0 as clients write it
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend(handshake);
    record
}

/// Sends `hello` on a new connection to `addr`; the first 7 bytes of the answer (a record header
/// and the start of its body), or fewer if the server closed first.
async fn answer_to(addr: &str, hello: &[u8]) -> Vec<u8> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
    socket.write_all(hello).await.expect("hello");
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while answer.len() < 7 {
        match tokio::time::timeout(Duration::from_secs(10), socket.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => answer.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    answer.truncate(7);
    answer
}

/// The gRPC listener speaks TLS 1.2 and 1.3 only: a TLS 1.0 or 1.1 ClientHello is answered
/// with a fatal `protocol_version` alert, never a ServerHello. The same hand-built hello
/// offering 1.2 gets a ServerHello, so it is the version that is refused, not the message.
#[tokio::test]
async fn a_tls_1_0_or_1_1_client_hello_is_refused_with_a_protocol_version_alert() {
    let dir = tempfile::tempdir().expect("dir");
    let certs = generate(dir.path(), &hosts()).expect("certs");
    let key = TestKey::generate("floor-kid");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
    let binary = Binary::start(
        "tls-floor",
        &config(&jwks.url(), &certs, false, ""),
        "info",
        None,
    )
    .await;
    let accepted = answer_to(&binary.addr, &client_hello([3, 3])).await;
    // A handshake record whose first message is a ServerHello (type 2).
    assert_eq!(
        (accepted.first(), accepted.get(5)),
        (Some(&0x16), Some(&2)),
        "TLS 1.2: {accepted:?}"
    );
    for (name, version) in [("TLS 1.0", [3, 1]), ("TLS 1.1", [3, 2])] {
        let refused = answer_to(&binary.addr, &client_hello(version)).await;
        // An alert record: fatal (2), protocol_version (70).
        assert_eq!(
            (refused.first(), refused.get(5), refused.get(6)),
            (Some(&0x15), Some(&2), Some(&70)),
            "{name}: {refused:?}"
        );
    }
    // Still serving TLS 1.2 and 1.3 clients.
    assert_eq!(
        check_over_tls(
            &binary.addr,
            &certs.ca_cert,
            None,
            &key.mint(&claims("read"))
        )
        .await,
        Ok(200)
    );
}

/// A client that opens a TCP connection to the TLS listener and sends nothing, or half a
/// ClientHello, holds a connection slot only until `server.handshake_timeout_seconds`: it is
/// then closed, the slot is free, and a real TLS client is served. Meanwhile, with every slot
/// held, a new connection is closed at once.
#[tokio::test]
async fn a_stalled_tls_client_is_closed_at_the_handshake_deadline_and_frees_its_slot() {
    use tokio::io::AsyncWriteExt as _;
    let dir = tempfile::tempdir().expect("dir");
    let certs = generate(dir.path(), &hosts()).expect("certs");
    let key = TestKey::generate("stall-kid");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
    let limits = "metrics_listen = \"127.0.0.1:0\"\n\
                  server = { max_connections = 2, handshake_timeout_seconds = 3 }";
    let binary = Binary::start(
        "tls-stall",
        &config(&jwks.url(), &certs, false, limits),
        "info,scopegate::net::listener=debug",
        None,
    )
    .await;
    binary.keys_loaded().await;
    let metrics = binary.metrics_addr().await;
    let connections = || async {
        crate::observability::sample(
            &crate::observability::scrape(&metrics).await,
            "scopegate_connections",
            &[],
        )
    };
    let token = key.mint(&claims("read"));

    let mut silent = tokio::net::TcpStream::connect(&binary.addr)
        .await
        .expect("connect");
    let mut half = tokio::net::TcpStream::connect(&binary.addr)
        .await
        .expect("connect");
    let hello = client_hello([3, 3]);
    half.write_all(&hello[..hello.len() / 2])
        .await
        .expect("half a hello");
    eventually("both slots taken", Duration::from_secs(10), || async {
        connections().await == 2.0
    })
    .await;
    // Within the 3 s the stalled clients have, a third connection is over the cap.
    let surplus = check_over_tls(&binary.addr, &certs.ca_cert, None, &token).await;
    assert!(surplus.is_err(), "every slot is held: {surplus:?}");

    for (name, socket) in [("silent", &mut silent), ("half a hello", &mut half)] {
        assert!(
            closed_within(socket, Duration::from_secs(20)).await,
            "{name}: still open long after the 3 s handshake deadline"
        );
    }
    binary
        .wait_for_log("no handshake in time", Duration::from_secs(5))
        .await;
    eventually("the slots released", Duration::from_secs(10), || async {
        connections().await == 0.0
    })
    .await;
    assert_eq!(
        check_over_tls(&binary.addr, &certs.ca_cert, None, &token).await,
        Ok(200)
    );
}
