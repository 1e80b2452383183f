//! Opaque access tokens through token introspection (RFC 7662), over the gRPC Check against a
//! real introspection endpoint on loopback (`Endpoint` below: a real HTTP server that checks
//! the client's credentials, answers from its list of issued tokens, counts its calls, and can
//! be made to fail): active tokens allowed with their scopes, inactive, revoked, mis-issued and
//! expiry-less ones refused, every endpoint failure a 503 that lets nothing through, the caches,
//! caps and single-flight measured in calls received, and the client secret in no log line and
//! no metric.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::common::binary::Binary;
use crate::common::*;
use crate::observability::{sample, scrape};

const CLIENT_ID: &str = "scopegate";
const SECRET: &str = "introspection-secret-7f3a9c";

/// How the endpoint answers.
#[derive(Clone)]
enum Behaviour {
    /// From its list of tokens (`active: false` for any other).
    Answer,
    /// This status, with a JSON body that would be an active answer.
    Status(u16),
    /// Answers after this long.
    Slow(Duration),
    /// A body of this many bytes.
    Huge(usize),
    /// Not JSON.
    Html,
    /// Waits until released ([`Endpoint::release`]), then answers.
    Held,
}

#[derive(Clone)]
struct EndpointState {
    tokens: Arc<Mutex<HashMap<String, Value>>>,
    calls: Arc<AtomicUsize>,
    behaviour: Arc<Mutex<Behaviour>>,
    /// Every call's form, as received.
    forms: Arc<Mutex<Vec<HashMap<String, String>>>>,
    released: tokio::sync::watch::Sender<bool>,
}

/// A real RFC 7662 endpoint on loopback: `POST /introspect` with the client's credentials
/// (Basic or in the form), answering from its tokens.
struct Endpoint {
    addr: SocketAddr,
    state: EndpointState,
}

impl Endpoint {
    async fn start() -> Endpoint {
        let state = EndpointState {
            tokens: Arc::default(),
            calls: Arc::default(),
            behaviour: Arc::new(Mutex::new(Behaviour::Answer)),
            forms: Arc::default(),
            released: tokio::sync::watch::channel(false).0,
        };
        let app = axum::Router::new()
            .route("/introspect", axum::routing::post(introspect))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind endpoint");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Endpoint { addr, state }
    }

    fn url(&self) -> String {
        format!("http://{}/introspect", self.addr)
    }

    /// Issues `token` with this answer.
    fn issue(&self, token: &str, answer: Value) {
        self.state
            .tokens
            .lock()
            .expect("lock")
            .insert(token.into(), answer);
    }

    /// Revokes `token`: from now on it answers `active: false`.
    fn revoke(&self, token: &str) {
        self.state.tokens.lock().expect("lock").remove(token);
    }

    fn calls(&self) -> usize {
        self.state.calls.load(Ordering::SeqCst)
    }

    fn behave(&self, behaviour: Behaviour) {
        *self.state.behaviour.lock().expect("lock") = behaviour;
    }

    fn release(&self) {
        self.state.released.send_replace(true);
    }

    fn forms(&self) -> Vec<HashMap<String, String>> {
        self.state.forms.lock().expect("lock").clone()
    }
}

async fn introspect(
    axum::extract::State(state): axum::extract::State<EndpointState>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    state.calls.fetch_add(1, Ordering::SeqCst);
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    state.forms.lock().expect("lock").push(form.clone());
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{SECRET}"))
    );
    let by_basic = headers
        .get("authorization")
        .is_some_and(|v| v.as_bytes() == basic.as_bytes());
    let by_post = form.get("client_id").map(String::as_str) == Some(CLIENT_ID)
        && form.get("client_secret").map(String::as_str) == Some(SECRET);
    if by_basic == by_post {
        // Neither, or both (RFC 6749 §2.3: one method per request).
        return (
            axum::http::StatusCode::UNAUTHORIZED,
            "{\"error\":\"invalid_client\"}",
        )
            .into_response();
    }
    let behaviour = state.behaviour.lock().expect("lock").clone();
    let answer = || {
        let token = form.get("token").cloned().unwrap_or_default();
        state
            .tokens
            .lock()
            .expect("lock")
            .get(&token)
            .cloned()
            .unwrap_or(json!({"active": false}))
    };
    let json_reply = |status: u16, value: Value| {
        (
            axum::http::StatusCode::from_u16(status).expect("status"),
            [("content-type", "application/json")],
            value.to_string(),
        )
            .into_response()
    };
    match behaviour {
        Behaviour::Answer => json_reply(200, answer()),
        Behaviour::Status(status) => json_reply(status, active(&["read"])),
        Behaviour::Slow(delay) => {
            tokio::time::sleep(delay).await;
            json_reply(200, answer())
        }
        Behaviour::Huge(bytes) => {
            let mut value = active(&["read"]);
            value["padding"] = json!("x".repeat(bytes));
            json_reply(200, value)
        }
        Behaviour::Html => (
            axum::http::StatusCode::OK,
            [("content-type", "text/html")],
            "<html>maintenance</html>",
        )
            .into_response(),
        Behaviour::Held => {
            let mut released = state.released.subscribe();
            let _ = released.wait_for(|r| *r).await;
            json_reply(200, answer())
        }
    }
}

/// An active answer for the test issuer and audience with these scopes.
fn active(scopes: &[&str]) -> Value {
    json!({
        "active": true,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-42",
        "client_id": "shop-frontend",
        "scope": scopes.join(" "),
        "exp": now() + 600,
        "token_type": "Bearer",
    })
}

/// A secret file in `dir`.
fn secret_file(dir: &tempfile::TempDir) -> String {
    let path = dir.path().join("client-secret");
    std::fs::write(&path, format!("{SECRET}\n")).expect("write secret");
    path.display().to_string()
}

/// The shorthand issuer with keys at `jwks_uri`, introspecting at `endpoint` with `extra`
/// keys, and a rule needing `read` on `/r`.
fn config_text(jwks_uri: &str, endpoint: &str, secret: &str, extra: &str) -> String {
    format!(
        "issuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\njwks_uri = \"{jwks_uri}\"\n\
         introspection = \"opaque\"\nintrospection_endpoint = \"{endpoint}\"\n\
         client_id = \"{CLIENT_ID}\"\nclient_secret_file = \"{secret}\"\n{extra}\n\
         [[rules]]\npath = \"/r\"\nscopes = [\"read\"]\n"
    )
}

struct Setup {
    endpoint: Endpoint,
    gate: Scopegate,
    key: TestKey,
    _dir: tempfile::TempDir,
    _jwks: JwksServer,
}

async fn setup(extra: &str) -> Setup {
    let endpoint = Endpoint::start().await;
    let key = TestKey::generate("k1");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
    let dir = tempfile::tempdir().expect("dir");
    let text = config_text(&jwks.url(), &endpoint.url(), &secret_file(&dir), extra);
    let config = scopegate::config::RawConfig::from_toml(&text, "<test>")
        .and_then(scopegate::config::RawConfig::compile)
        .expect("compiles");
    let gate = Scopegate::start_with(config).await;
    gate.wait_serving().await;
    Setup {
        endpoint,
        gate,
        key,
        _dir: dir,
        _jwks: jwks,
    }
}

async fn ask(gate: &Scopegate, token: &str) -> Answer {
    gate.ask("GET", "/r", Some(&bearer(token))).await
}

/// An active opaque token is allowed with its scopes and subject, after one call that
/// authenticates the client (Basic by default) and hints `access_token`; a JWT of the same
/// issuer is still verified by signature, without a call.
#[tokio::test]
async fn an_active_opaque_token_is_allowed_with_its_scopes() {
    let s = setup("").await;
    s.endpoint.issue("opaque-abc", active(&["read", "write"]));
    let answer = ask(&s.gate, "opaque-abc").await;
    answer.assert_allowed();
    assert_eq!(answer.headers["x-auth-subject"], "user-42");
    assert_eq!(answer.headers["x-auth-scopes"], "read write");
    let forms = s.endpoint.forms();
    assert_eq!(forms.len(), 1);
    assert_eq!(forms[0]["token"], "opaque-abc");
    assert_eq!(forms[0]["token_type_hint"], "access_token");
    assert!(!forms[0].contains_key("client_secret"), "Basic, not post");

    // Cached: no second call.
    ask(&s.gate, "opaque-abc").await.assert_allowed();
    // Ory's shape is opaque too; scopes are enforced as for a JWT.
    s.endpoint.issue("ory_at_x.y", active(&["write"]));
    ask(&s.gate, "ory_at_x.y")
        .await
        .assert_denied(403, "insufficient_scope");
    assert_eq!(s.endpoint.calls(), 2);
    let jwt = s.key.mint(&claims("read"));
    ask(&s.gate, &jwt).await.assert_allowed();
    assert_eq!(s.endpoint.calls(), 2, "a JWT is verified, not introspected");
}

/// An inactive (unknown) token is 401 `invalid_token`; so are answers for another issuer, for
/// no accepted audience, and without `exp`.
#[tokio::test]
async fn inactive_and_mis_issued_answers_are_refused() {
    let s = setup("").await;
    let mut other_issuer = active(&["read"]);
    other_issuer["iss"] = json!("https://evil.test/");
    let mut other_audience = active(&["read"]);
    other_audience["aud"] = json!("https://other-api.test");
    let mut no_exp = active(&["read"]);
    no_exp.as_object_mut().expect("object").remove("exp");
    let mut expired = active(&["read"]);
    expired["exp"] = json!(now() - 3600);
    for (token, answer, message) in [
        ("never-issued", None, "token is not active"),
        (
            "wrong-iss",
            Some(other_issuer),
            "token issuer is not accepted",
        ),
        (
            "wrong-aud",
            Some(other_audience),
            "token audience is not accepted",
        ),
        ("no-exp", Some(no_exp), "token has no expiry"),
        ("expired", Some(expired), "token has expired"),
    ] {
        if let Some(answer) = answer {
            s.endpoint.issue(token, answer);
        }
        let answer = ask(&s.gate, token).await;
        answer.assert_denied(401, "invalid_token");
        assert_eq!(answer.message(), message, "{token}");
    }
}

/// A revoked token is still allowed while its active answer is cached (the documented
/// trade-off), and refused once `introspection_cache_seconds` has passed.
#[tokio::test]
async fn a_revoked_token_is_refused_once_the_positive_cache_expires() {
    let s = setup("introspection_cache_seconds = 1").await;
    s.endpoint.issue("soon-revoked", active(&["read"]));
    ask(&s.gate, "soon-revoked").await.assert_allowed();
    s.endpoint.revoke("soon-revoked");
    let answer = ask(&s.gate, "soon-revoked").await;
    // Within the second it was cached (a slow machine may already be past it).
    if s.endpoint.calls() == 1 {
        answer.assert_allowed();
    }
    eventually(
        "the revoked token refused",
        Duration::from_secs(10),
        || async { ask(&s.gate, "soon-revoked").await.status() == 401 },
    )
    .await;
    assert_eq!(
        ask(&s.gate, "soon-revoked").await.message(),
        "token is not active"
    );
}

/// A flood of junk tokens costs the identity provider at most one call per token per negative
/// window, and distinct junk tokens at most the calls-per-second bucket: past it, 503 with
/// `Retry-After`, never 401 (the token may be fine) and never an allow.
#[tokio::test]
async fn a_junk_token_flood_is_bounded_by_the_negative_cache_and_the_caps() {
    let s = setup(
        "introspection_negative_cache_seconds = 600\nintrospection_max_calls_per_second = 5\n\
         introspection_max_in_flight = 64",
    )
    .await;
    // The same junk token, again and again: one call.
    for _ in 0..20 {
        ask(&s.gate, "junk-same")
            .await
            .assert_denied(401, "invalid_token");
    }
    assert_eq!(s.endpoint.calls(), 1);
    // 60 distinct junk tokens: at most the bucket's depth (5, of which one is spent) and what
    // refills while they are asked.
    let mut refused = 0;
    let mut throttled = 0;
    for i in 0..60 {
        let answer = ask(&s.gate, &format!("junk-{i}")).await;
        assert_ne!(answer.code, 0, "junk allowed: {answer:?}");
        match answer.status() {
            401 => refused += 1,
            503 => {
                answer.assert_denied(503, "temporarily_unavailable");
                assert_eq!(answer.headers["retry-after"], "1");
                throttled += 1;
            }
            other => panic!("junk token answered {other}"),
        }
    }
    let calls = s.endpoint.calls();
    assert_eq!(calls, 1 + refused, "one call per 401");
    assert!(
        throttled > 0 && calls < 30,
        "{calls} calls for 60 junk tokens"
    );
}

/// The in-flight cap: with the endpoint holding its answers, no more than
/// `introspection_max_in_flight` calls are open, and the Checks past it get 503 at once.
#[tokio::test]
async fn calls_in_flight_are_capped() {
    let s = setup("introspection_max_in_flight = 3\n[server]\ncheck_timeout_ms = 30000\n").await;
    s.endpoint.behave(Behaviour::Held);
    let gate = Arc::new(s.gate);
    let mut waiting = Vec::new();
    for i in 0..3 {
        let gate = Arc::clone(&gate);
        waiting.push(tokio::spawn(async move {
            ask(&gate, &format!("held-{i}")).await.status()
        }));
    }
    eventually("three calls held", Duration::from_secs(10), || async {
        s.endpoint.calls() == 3
    })
    .await;
    for i in 0..10 {
        let answer = ask(&gate, &format!("over-{i}")).await;
        answer.assert_denied(503, "temporarily_unavailable");
    }
    assert_eq!(s.endpoint.calls(), 3);
    s.endpoint.release();
    for task in waiting {
        assert_eq!(task.await.expect("task"), 401);
    }
}

/// 100 concurrent Checks of one new token make one call, and all are allowed.
#[tokio::test]
async fn concurrent_checks_of_one_token_share_one_call() {
    let s = setup("[server]\ncheck_timeout_ms = 30000\n").await;
    s.endpoint.issue("popular", active(&["read"]));
    s.endpoint.behave(Behaviour::Held);
    let gate = Arc::new(s.gate);
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let gate = Arc::clone(&gate);
            tokio::spawn(async move { ask(&gate, "popular").await.status() })
        })
        .collect();
    eventually("the first call", Duration::from_secs(10), || async {
        s.endpoint.calls() >= 1
    })
    .await;
    // Give the other Checks the time to arrive: each must join the call in flight (without
    // single-flight they would each make one, and this wait would end early).
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while s.endpoint.calls() < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    s.endpoint.release();
    for task in tasks {
        assert_eq!(task.await.expect("task"), 200);
    }
    assert_eq!(s.endpoint.calls(), 1);
}

/// Whatever goes wrong at the endpoint (down, slow past the fetch timeout, 5xx, not JSON, an
/// answer too large, refusing the client) is a 503 that lets nothing through, and is never
/// remembered: the endpoint is asked again when it is back.
#[tokio::test]
async fn endpoint_failures_are_503_and_let_nothing_through() {
    let s = setup("jwks_fetch_timeout_seconds = 1\n[server]\ncheck_timeout_ms = 5000\n").await;
    s.endpoint.issue("fine-token", active(&["read"]));
    for behaviour in [
        Behaviour::Status(500),
        Behaviour::Status(502),
        Behaviour::Status(401),
        Behaviour::Html,
        // Past the 64 KiB bound on answers.
        Behaviour::Huge(200_000),
        Behaviour::Slow(Duration::from_secs(3)),
    ] {
        s.endpoint.behave(behaviour);
        let answer = ask(&s.gate, "fine-token").await;
        answer.assert_denied(503, "temporarily_unavailable");
        assert_eq!(answer.headers["retry-after"], "1");
        assert!(!answer.headers.contains_key("www-authenticate"));
    }
    s.endpoint.behave(Behaviour::Answer);
    ask(&s.gate, "fine-token").await.assert_allowed();
}

/// An endpoint nobody listens on: 503.
#[tokio::test]
async fn an_endpoint_that_is_down_is_503() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed = format!("http://{}/introspect", listener.local_addr().expect("addr"));
    drop(listener);
    let key = TestKey::generate("k1");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
    let dir = tempfile::tempdir().expect("dir");
    let text = config_text(&jwks.url(), &closed, &secret_file(&dir), "");
    let config = scopegate::config::RawConfig::from_toml(&text, "<test>")
        .and_then(scopegate::config::RawConfig::compile)
        .expect("compiles");
    let gate = Scopegate::start_with(config).await;
    gate.wait_serving().await;
    ask(&gate, "any-opaque-token")
        .await
        .assert_denied(503, "temporarily_unavailable");
}

/// `client_secret_post` puts the credentials in the form; `introspection = "always"`
/// introspects the issuer's JWTs too, so no key is ever fetched, and such a configuration is
/// SERVING without any key set.
#[tokio::test]
async fn always_introspects_jwts_and_serves_without_keys() {
    let endpoint = Endpoint::start().await;
    let keys = JwksServer::start(Reply::Respond(500, Vec::new(), Vec::new())).await;
    let dir = tempfile::tempdir().expect("dir");
    let text = format!(
        "[[issuers]]\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\njwks_uri = \"{}\"\n\
         introspection = \"always\"\nintrospection_endpoint = \"{}\"\n\
         client_id = \"{CLIENT_ID}\"\nclient_secret_file = \"{}\"\n\
         client_auth = \"client_secret_post\"\n\
         [[rules]]\npath = \"/r\"\nscopes = [\"read\"]\n",
        keys.url(),
        endpoint.url(),
        secret_file(&dir)
    );
    let config = scopegate::config::RawConfig::from_toml(&text, "<test>")
        .and_then(scopegate::config::RawConfig::compile)
        .expect("compiles");
    let gate = Scopegate::start_with(config).await;
    gate.wait_serving().await;
    // A lightweight JWT, signed by a key nobody published: its signature is not what decides.
    let jwt = TestKey::generate("unpublished").mint(&claims("read"));
    endpoint.issue(&jwt, active(&["read"]));
    ask(&gate, &jwt).await.assert_allowed();
    let forms = endpoint.forms();
    assert_eq!(forms[0]["client_id"], CLIENT_ID);
    assert_eq!(forms[0]["client_secret"], SECRET);
    ask(&gate, "opaque-unknown")
        .await
        .assert_denied(401, "invalid_token");
    assert_eq!(keys.hits(), 0, "an always issuer's keys are never fetched");
}

/// A missing or unreadable secret file stops start-up with an error naming the key and the
/// file, never its content.
#[tokio::test]
async fn a_missing_or_unreadable_secret_file_is_a_start_up_error() {
    let dir = tempfile::tempdir().expect("dir");
    let missing = dir.path().join("no-such-secret").display().to_string();
    let unreadable = dir.path().display().to_string();
    for file in [missing, unreadable] {
        let text = config_text(
            "https://keys.test/jwks",
            "https://idp.test/introspect",
            &file,
            "",
        );
        let error = scopegate::config::RawConfig::from_toml(&text, "<test>")
            .and_then(scopegate::config::RawConfig::compile)
            .expect_err("refused")
            .to_string();
        assert!(
            error.contains(&format!("`client_secret_file` = {file:?}: cannot be read")),
            "{error}"
        );
    }
    // The binary refuses the configuration, naming the file and nothing of a secret.
    let config = dir.path().join("config.toml");
    let missing = dir.path().join("no-such-secret").display().to_string();
    std::fs::write(
        &config,
        config_text(
            "https://keys.test/jwks",
            "https://idp.test/introspect",
            &missing,
            "",
        ),
    )
    .expect("write config");
    let output = scopegate_command()
        .arg("check-config")
        .arg("--config")
        .arg(&config)
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("client_secret_file") && stderr.contains(&missing),
        "{stderr}"
    );
}

/// The client secret is never logged (at debug, through successes and failures) and never in
/// `/metrics`, which counts the calls by result.
#[tokio::test]
async fn the_secret_is_never_logged_nor_in_metrics() {
    let endpoint = Endpoint::start().await;
    let key = TestKey::generate("k1");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
    let dir = tempfile::tempdir().expect("dir");
    let text = format!(
        "listen = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\ndecision_log = \"all\"\n{}",
        config_text(&jwks.url(), &endpoint.url(), &secret_file(&dir), "")
    );
    let binary = Binary::start("introspection-secret", &text, "debug", None).await;
    let metrics = binary.metrics_addr().await;
    endpoint.issue("good-opaque", active(&["read"]));
    let client = binary.client().await;
    let status = |token: &'static str| {
        let request = request("GET", "/r", &[("authorization", &bearer(token))]);
        let mut client = client.clone();
        async move { Answer::of(&client.check(request).await.expect("in-band").into_inner()).status() }
    };
    assert_eq!(status("good-opaque").await, 200);
    assert_eq!(status("bad-opaque").await, 401);
    endpoint.behave(Behaviour::Status(500));
    assert_eq!(status("other-opaque").await, 503);
    binary
        .wait_for_log("token introspection failed", Duration::from_secs(10))
        .await;
    let scrape = scrape(&metrics).await;
    let count = |result: &str| {
        sample(
            &scrape,
            "scopegate_introspection_requests_total",
            &[("issuer", ISSUER), ("result", result)],
        )
    };
    assert_eq!(
        (count("active"), count("inactive"), count("http_error")),
        (1.0, 1.0, 1.0)
    );
    let exposition = crate::observability::metrics_text(&metrics).await;
    let log = binary.log_text();
    for place in [&exposition, &log] {
        assert!(!place.contains(SECRET), "the secret leaked");
        assert!(!place.contains("good-opaque"), "a token leaked");
    }
}

/// The whole round trip against the real development issuer: its endpoint found by discovery,
/// an opaque token from its token endpoint allowed with its scopes, an unknown one refused, and
/// one revoked at its RFC 7009 endpoint refused once the positive cache has expired.
#[tokio::test]
async fn the_dev_issuers_opaque_tokens_round_trip() {
    use scopegate::dev::introspection::{DEFAULT_CLIENT_ID, DEMO_CLIENT_SECRET};
    use scopegate::dev::issuer::DevIssuer;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/", listener.local_addr().expect("addr"));
    let dir = tempfile::tempdir().expect("dir");
    let issuer = DevIssuer::load_or_create(&dir.path().join("key.der"), &url).expect("key");
    tokio::spawn(issuer.serve(listener, false, std::future::pending()));
    let secret = dir.path().join("secret");
    std::fs::write(&secret, DEMO_CLIENT_SECRET).expect("write");
    let text = format!(
        "issuer = \"{url}\"\naudience = \"https://api.example.com\"\n\
         introspection = \"opaque\"\nclient_id = \"{DEFAULT_CLIENT_ID}\"\n\
         client_secret_file = \"{}\"\nintrospection_cache_seconds = 1\n\
         [[rules]]\npath = \"/r\"\nscopes = [\"read\"]\n",
        secret.display()
    );
    let config = scopegate::config::RawConfig::from_toml(&text, "<test>")
        .and_then(scopegate::config::RawConfig::compile)
        .expect("compiles");
    let gate = Scopegate::start_with(config).await;
    gate.wait_serving().await;

    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let request = json!({
        "grant_type": "client_credentials",
        "client_id": "shop",
        "audience": "https://api.example.com",
        "scope": "read write",
        "token_format": "opaque",
    });
    let answer = http
        .post(format!("{url}oauth/token"))
        .header("content-type", "application/json")
        .body(request.to_string())
        .send()
        .await
        .expect("token endpoint")
        .text()
        .await
        .expect("body");
    let answer: Value = serde_json::from_str(&answer).expect("JSON");
    let token = answer["access_token"].as_str().expect("a token").to_owned();
    let allowed = ask(&gate, &token).await;
    allowed.assert_allowed();
    assert_eq!(allowed.headers["x-auth-scopes"], "read write");
    assert_eq!(allowed.headers["x-auth-subject"], "shop@clients");
    ask(&gate, "sgo_forged_token")
        .await
        .assert_denied(401, "invalid_token");

    let revoked = http
        .post(format!("{url}oauth/revoke"))
        .basic_auth(DEFAULT_CLIENT_ID, Some(DEMO_CLIENT_SECRET))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={token}"))
        .send()
        .await
        .expect("revocation endpoint");
    assert_eq!(revoked.status(), 200);
    eventually(
        "the revoked token refused",
        Duration::from_secs(10),
        || async { ask(&gate, &token).await.status() == 401 },
    )
    .await;
}

/// Forwarded claims and claim conditions read an introspection answer as they read a JWT: the
/// tenant check passes for the token's own tenant and refuses another's, and the forwarded
/// claim reaches the upstream's headers.
#[tokio::test]
async fn claim_conditions_and_forwarded_claims_read_the_answer() {
    let s = setup(
        "[forward_claims]\n\"x-auth-tenant\" = \"org_id\"\n\
         [[rules]]\ntemplate = \"/orgs/{org}/{**}\"\nclaims = { org_id = \"{org}\" }\n",
    )
    .await;
    let mut answer = active(&["read"]);
    answer["org_id"] = json!("acme");
    s.endpoint.issue("tenant-token", answer);
    let allowed = s
        .gate
        .ask("GET", "/orgs/acme/items", Some(&bearer("tenant-token")))
        .await;
    allowed.assert_allowed();
    assert_eq!(allowed.headers["x-auth-tenant"], "acme");
    s.gate
        .ask("GET", "/orgs/globex/items", Some(&bearer("tenant-token")))
        .await
        .assert_denied(403, "insufficient_claims");
}

/// `explain` routes and introspects a token as the service does: one call to the endpoint per
/// run, the answer held to the same expectations (allow, 403 for a missing scope, 401 for an
/// inactive token, 503 when the endpoint fails), and the token in no line of its output.
#[tokio::test(flavor = "multi_thread")]
async fn explain_introspects_an_opaque_token_as_the_service_does() {
    let endpoint = Endpoint::start().await;
    let key = TestKey::generate("k1");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
    let dir = tempfile::tempdir().expect("dir");
    let text = config_text(&jwks.url(), &endpoint.url(), &secret_file(&dir), "");
    endpoint.issue("opaque-good-1c9e", active(&["read"]));
    endpoint.issue("opaque-weak-77d2", active(&["write"]));
    let args = ["--method", "GET", "--path", "/r", "--token-file", "-"];
    // (token, the endpoint's behaviour, exit status, the decision line)
    let cases = [
        (
            "opaque-good-1c9e",
            Behaviour::Answer,
            0,
            "decision     allow 200",
        ),
        (
            "opaque-weak-77d2",
            Behaviour::Answer,
            3,
            "decision     deny 403 (insufficient_scope)",
        ),
        (
            "opaque-never-issued",
            Behaviour::Answer,
            3,
            "decision     deny 401 (invalid_token)",
        ),
        (
            "opaque-good-1c9e",
            Behaviour::Status(500),
            3,
            "decision     deny 503",
        ),
    ];
    for (at, (token, behaviour, status, decision)) in cases.into_iter().enumerate() {
        endpoint.behave(behaviour);
        let output = crate::explain::explain(&text, &args, token).await;
        let out = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(output.status.code(), Some(status), "{token}: {out}");
        assert!(out.contains(decision), "{token}: {out}");
        assert!(out.contains("introspected once"), "{token}: {out}");
        assert!(!out.contains(token), "the token is printed: {out}");
        assert_eq!(endpoint.calls(), at + 1, "one call per run: {out}");
    }
    // A JWT of the same issuer is verified by its signature, without a call.
    let jwt = key.mint(&claims("read"));
    let output = crate::explain::explain(&text, &args, &jwt).await;
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(endpoint.calls(), 4, "no call for a JWT");
}
