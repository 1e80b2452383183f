//! In-proxy mode: the real pinned Envoy running `envoy/envoy-module.yaml` with the scopegate
//! dynamic module loaded (no scopegate process): the module's own denials (401, 403, 400), an
//! allow with the identity headers set and the client's copies removed, a key rotation that the
//! module picks up by an unknown-`kid` refetch (the request held and resumed through Envoy's
//! scheduler), and the decision counters as Envoy stats.
//!
//! The module is the file `SCOPEGATE_ENVOY_MODULE` names (`scripts/test` builds it and sets
//! it); without it these tests fail, never skip.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::net::TcpListener;

use crate::common::stack::{DEMO_AUDIENCE, envoy_addresses, envoy_binary, scratch_dir, substitute};
use crate::common::{ISSUER, JwksServer, Reply, TestKey, claims, eventually, jwks_of, watchdog};
use crate::support::{json, scopegates_denial};

/// The module's file name, as Envoy looks it up by the name in envoy-module.yaml.
const MODULE_FILE: &str = "libscopegate_envoy_module.so";

/// The module built for the tests: `SCOPEGATE_ENVOY_MODULE`, which must name an existing
/// `libscopegate_envoy_module.so`.
fn module_file() -> PathBuf {
    let path = std::env::var_os("SCOPEGATE_ENVOY_MODULE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!(
                "SCOPEGATE_ENVOY_MODULE is not set: build the module (cargo build --release -p \
             scopegate-envoy-module) and name {MODULE_FILE}; scripts/test does both. \
             End-to-end tests never skip."
            )
        });
    assert!(
        path.is_file(),
        "SCOPEGATE_ENVOY_MODULE={}: no such file",
        path.display()
    );
    assert_eq!(
        path.file_name().and_then(|n| n.to_str()),
        Some(MODULE_FILE),
        "Envoy finds the module by name: {}",
        path.display()
    );
    path
}

/// Envoy with the module, in front of the demo upstream, deciding with keys from `jwks`.
struct InProxy {
    url: String,
    admin: String,
    http: reqwest::Client,
    envoy: Child,
    _dir: tempfile::TempDir,
}

impl Drop for InProxy {
    fn drop(&mut self) {
        let _ = self.envoy.kill();
        let _ = self.envoy.wait();
        watchdog::child_ended(self.envoy.id());
    }
}

impl InProxy {
    async fn start(jwks: &JwksServer) -> InProxy {
        watchdog::arm();
        let module = module_file();
        let dir = scratch_dir();
        let upstream = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let upstream_port = upstream.local_addr().expect("addr").port();
        tokio::spawn(scopegate::dev::demo::serve(
            upstream,
            std::future::pending(),
        ));

        let yaml = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("envoy/envoy-module.yaml"),
        )
        .expect("read envoy-module.yaml");
        // The shipped filter configuration, pointed at the test's issuer and key server, with
        // a short refetch cooldown so a rotation is picked up at once.
        let yaml = substitute(
            &yaml,
            "issuer = \"http://127.0.0.1:8081/\"\n",
            &format!("issuer = \"{ISSUER}\"\n"),
            1,
        );
        let yaml = substitute(
            &yaml,
            "jwks_uri = \"http://127.0.0.1:8081/.well-known/jwks.json\"\n",
            &format!("jwks_uri = \"{}\"\n", jwks.url()),
            1,
        );
        let yaml = substitute(
            &yaml,
            "default = \"authenticated\"\n",
            "default = \"authenticated\"\n                          jwks_refetch_cooldown_seconds = 1\n",
            1,
        );
        let yaml = substitute(&yaml, "address: 0.0.0.0\n", "address: 127.0.0.1\n", 1);
        let yaml = substitute(&yaml, "port_value: 9901\n", "port_value: 0\n", 1);
        let yaml = substitute(&yaml, "port_value: 10000\n", "port_value: 0\n", 1);
        let yaml = substitute(&yaml, "address: upstream\n", "address: 127.0.0.1\n", 1);
        let yaml = substitute(
            &yaml,
            "port_value: 8000\n",
            &format!("port_value: {upstream_port}\n"),
            1,
        );
        let config = dir.path().join("envoy.yaml");
        std::fs::write(&config, yaml).expect("write envoy config");
        let envoy_log = dir.path().join("envoy.log");
        let log = std::fs::File::create(&envoy_log).expect("log file");
        let admin_address_path = dir.path().join("envoy-admin-address");
        let envoy = Command::new(envoy_binary())
            .arg("-c")
            .arg(&config)
            .arg("--admin-address-path")
            .arg(&admin_address_path)
            .args(["--disable-hot-restart", "--log-level", "warn"])
            .args(["--component-log-level", "dynamic_modules:info"])
            .env(
                "ENVOY_DYNAMIC_MODULES_SEARCH_PATH",
                module.parent().expect("module directory"),
            )
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("start Envoy");
        watchdog::child_started(envoy.id(), "Envoy");
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("http client");
        let (admin, url) = envoy_addresses(&http, &admin_address_path, &envoy_log).await;
        let log = std::fs::read_to_string(&envoy_log).unwrap_or_default();
        assert!(
            log.contains("Dynamic module ABI version v0.2.0 matched."),
            "the module loads with the pinned Envoy's exact ABI version:\n{log}"
        );
        let proxy = InProxy {
            url,
            admin,
            http,
            envoy,
            _dir: dir,
        };
        // The public route answers once the upstream is reached through the filter.
        eventually(
            "Envoy routing through the module",
            Duration::from_secs(30),
            || async {
                proxy
                    .http
                    .get(format!("{}/public", proxy.url))
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200)
            },
        )
        .await;
        proxy
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(format!("{}{path}", self.url))
    }
}

/// A token of `key` for the demo audience with `scope`.
fn token(key: &TestKey, scope: &str) -> String {
    let mut claims = claims(scope);
    claims["aud"] = serde_json::json!(DEMO_AUDIENCE);
    key.mint(&claims)
}

#[tokio::test]
async fn the_module_decides_inside_envoy() {
    let key = TestKey::generate("module-1");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
    let proxy = InProxy::start(&jwks).await;

    // 401 with the challenge: no token.
    let response = proxy
        .get("/restricted_resource")
        .send()
        .await
        .expect("send");
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer realm=\"scopegate\""
    );
    scopegates_denial(response, 401, "unauthorized", "no token").await;

    // 401 invalid_token: a token of a key nobody published.
    let stranger = TestKey::generate("stranger");
    let response = proxy
        .get("/restricted_resource")
        .bearer_auth(token(&stranger, "read:messages"))
        .send()
        .await
        .expect("send");
    scopegates_denial(response, 401, "invalid_token", "unknown key").await;

    // 403 insufficient_scope, the challenge naming the scope wanted.
    let response = proxy
        .get("/restricted_resource")
        .bearer_auth(token(&key, "other"))
        .send()
        .await
        .expect("send");
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .expect("text")
        .to_owned();
    assert!(
        challenge.contains("error=\"insufficient_scope\"")
            && challenge.contains("scope=\"read:messages\""),
        "{challenge}"
    );
    scopegates_denial(response, 403, "insufficient_scope", "missing scope").await;

    // 400 invalid_request: credentials in two Authorization headers.
    let good = token(&key, "read:messages");
    let response = proxy
        .get("/restricted_resource")
        .header("authorization", format!("Bearer {good}"))
        .header("authorization", format!("Bearer {good}"))
        .send()
        .await
        .expect("send");
    scopegates_denial(
        response,
        400,
        "invalid_request",
        "two Authorization headers",
    )
    .await;

    // 200: the upstream sees the identity the token carries, never the client's copies.
    let response = proxy
        .get("/restricted_resource")
        .bearer_auth(&good)
        .header("x-auth-subject", "admin")
        .header("x-auth-client", "spoofed")
        .send()
        .await
        .expect("send");
    let (status, _, body) = json(response).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["subject"], "auth0|user-1", "{body}");
    assert_eq!(body["scopes_header"], "read:messages", "{body}");
    assert!(
        !body["auth_headers"].to_string().contains("spoofed"),
        "the client's x-auth-client is removed: {body}"
    );

    // The decisions are Envoy stats, named as the service's metrics.
    let stats = proxy
        .http
        .get(format!("{}/stats/prometheus", proxy.admin))
        .send()
        .await
        .expect("stats")
        .text()
        .await
        .expect("text");
    // Envoy's Prometheus text names every stat envoy_<name>: the service's
    // scopegate_checks_total, less its transport label.
    for counted in [
        r#"envoy_scopegate_checks_total{decision="allow",status="200",reason="authorized",rule="rules[0]"} 1"#,
        r#"envoy_scopegate_checks_total{decision="deny",status="403",reason="insufficient_scope",rule="rules[0]"} 1"#,
        r#"envoy_scopegate_checks_total{decision="deny",status="400",reason="invalid_request",rule="rules[0]"} 1"#,
    ] {
        assert!(
            stats.lines().any(|line| line == counted),
            "{counted} in:\n{}",
            stats
                .lines()
                .filter(|line| line.contains("checks_total"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

#[tokio::test]
async fn a_rotated_key_is_fetched_while_the_request_waits() {
    let old = TestKey::generate("old");
    let new = TestKey::generate("new");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&old]))).await;
    let proxy = InProxy::start(&jwks).await;
    let allowed = |key: &TestKey| {
        let request = proxy
            .get("/restricted_resource")
            .bearer_auth(token(key, "read:messages"));
        async move { request.send().await.expect("send").status().as_u16() }
    };
    assert_eq!(allowed(&old).await, 200);
    // Past the refetch cooldown after the start-up fetch.
    tokio::time::sleep(Duration::from_millis(1200)).await;

    // The issuer rotates: the first token of the new key is held while the module refetches
    // the key set, then let through.
    let fetches = jwks.hits();
    jwks.set(Reply::json(&jwks_of(&[&new])));
    assert_eq!(
        allowed(&new).await,
        200,
        "the first token of the rotated-in key"
    );
    assert_eq!(jwks.hits(), fetches + 1, "one refetch for the unknown kid");
    assert_eq!(allowed(&new).await, 200);
    // A request with a body is held whole: its body does not let it through before the
    // decision. A key nobody publishes is refetched for (past the cooldown, from an issuer
    // slow enough that the body has arrived meanwhile) and refused.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    jwks.set(Reply::Delayed(
        Duration::from_millis(200),
        Box::new(Reply::json(&jwks_of(&[&new]))),
    ));
    let stranger = TestKey::generate("stranger");
    let response = proxy
        .http
        .post(format!("{}/another_resource", proxy.url))
        .bearer_auth(token(&stranger, "some:scope"))
        .body("x".repeat(64 * 1024))
        .send()
        .await
        .expect("send");
    scopegates_denial(response, 401, "invalid_token", "held request with a body").await;
    let response = proxy
        .http
        .post(format!("{}/another_resource", proxy.url))
        .bearer_auth(token(&new, "some:scope"))
        .body("x".repeat(64 * 1024))
        .send()
        .await
        .expect("send");
    let (status, _, body) = json(response).await;
    assert_eq!(status, 200, "a known key's request with a body: {body}");
    assert_eq!(body["subject"], "auth0|user-1", "{body}");
    // The withdrawn key no longer verifies.
    let response = proxy
        .get("/restricted_resource")
        .bearer_auth(token(&old, "read:messages"))
        .send()
        .await
        .expect("send");
    scopegates_denial(response, 401, "invalid_token", "withdrawn key").await;
}
