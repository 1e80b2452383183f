//! Several trusted issuers side by side (`[[issuers]]`): each token is verified with the keys of
//! the issuer its `iss` names, and no other; one issuer's outage leaves the others' tokens alone.
//! Rules may take tokens only from some of them (`issuers`) or for some audiences
//! (`audiences`), held to them on every request, cached tokens included.

use std::time::Duration;

use serde_json::{Value, json};
use tonic_health::pb::health_check_response::ServingStatus;

use crate::common::binary::Binary;
use crate::common::*;
use crate::observability::{sample, scrape, token_cache_lookups};

const A: &str = "https://a.issuer.test/";
const B: &str = "https://b.issuer.test/realms/staff";

fn from(issuer: &str, scope: &str) -> Value {
    let mut c = claims(scope);
    c["iss"] = json!(issuer);
    c
}

async fn start(a_jwks: &JwksServer, b_jwks: &JwksServer, b_extra: &str) -> Scopegate {
    let text = format!(
        r#"
        [forward_claims]
        "x-auth-email" = "email"

        [[issuers]]
        issuer = "{A}"
        audience = "{AUDIENCE}"
        jwks_uri = "{}"

        [[issuers]]
        issuer = "{B}"
        audience = ["account", "{AUDIENCE}"]
        jwks_uri = "{}"
        {b_extra}

        [[rules]]
        path = "/r"
        scopes = ["read:messages"]
        "#,
        a_jwks.url(),
        b_jwks.url()
    );
    let config = scopegate::config::RawConfig::from_toml(&text, "<test>")
        .expect("parses")
        .compile()
        .expect("compiles");
    Scopegate::start_with(config).await
}

/// Both issuers publish a key under the same `kid`. Each token verifies with its own issuer's
/// key only; a token naming an issuer nobody configured is refused without any fetch.
#[tokio::test]
async fn each_token_is_verified_with_its_own_issuers_keys_only() {
    let a_key = TestKey::generate("key-1");
    let b_key = TestKey::generate("key-1");
    let a_jwks = JwksServer::start(Reply::json(&jwks_of(&[&a_key]))).await;
    let b_jwks = JwksServer::start(Reply::json(&jwks_of(&[&b_key]))).await;
    let gate = start(&a_jwks, &b_jwks, "").await;
    gate.wait_serving().await;
    let ask = |token: String| {
        let gate = &gate;
        async move { gate.ask("GET", "/r", Some(&bearer(&token))).await }
    };
    eventually("both key sets loaded", Duration::from_secs(10), || async {
        ask(b_key.mint(&from(B, "read:messages"))).await.code == OK
    })
    .await;

    ask(a_key.mint(&from(A, "read:messages")))
        .await
        .assert_allowed();
    ask(b_key.mint(&from(B, "read:messages")))
        .await
        .assert_allowed();
    // A's key (same kid) under B's name, and the other way round.
    for token in [
        a_key.mint(&from(B, "read:messages")),
        b_key.mint(&from(A, "read:messages")),
    ] {
        let answer = ask(token).await;
        assert_eq!(
            (answer.http, answer.message()),
            (401, "token signature is invalid")
        );
    }
    let hits = (a_jwks.hits(), b_jwks.hits());
    let mut no_iss = claims("read:messages");
    no_iss.as_object_mut().expect("object").remove("iss");
    for (name, token) in [
        (
            "unknown issuer",
            a_key.mint(&from("https://c.issuer.test/", "read:messages")),
        ),
        (
            "a look-alike",
            a_key.mint(&from("https://a.issuer.test", "read:messages")),
        ),
        ("no iss", a_key.mint(&no_iss)),
        (
            "iss not a string",
            a_key.mint(&{
                let mut c = claims("read:messages");
                c["iss"] = json!([A]);
                c
            }),
        ),
    ] {
        let answer = ask(token).await;
        assert_eq!(
            (answer.http, answer.message()),
            (401, "token issuer is not accepted"),
            "{name}"
        );
    }
    assert_eq!(
        (a_jwks.hits(), b_jwks.hits()),
        hits,
        "no fetch for a stranger"
    );
    let answer = ask("not-a-jwt".into()).await;
    assert_eq!(
        answer.message(),
        "token is not a compact JWS (header.payload.signature)"
    );
    gate.stop().await;
}

/// One issuer's JWKS is down: its tokens get 503, the other issuer's are served, and health
/// stays SERVING (Envoy keeps sending traffic the instance can serve).
#[tokio::test]
async fn one_issuers_outage_never_denies_the_others_tokens() {
    let a_key = TestKey::generate("key-1");
    let b_key = TestKey::generate("key-1");
    let a_jwks = JwksServer::start(Reply::json(&jwks_of(&[&a_key]))).await;
    let b_jwks = JwksServer::start(Reply::Respond(503, vec![], b"down".to_vec())).await;
    let gate = start(&a_jwks, &b_jwks, "").await;
    gate.wait_serving().await;
    gate.ask(
        "GET",
        "/r",
        Some(&bearer(&a_key.mint(&from(A, "read:messages")))),
    )
    .await
    .assert_allowed();
    gate.ask(
        "GET",
        "/r",
        Some(&bearer(&b_key.mint(&from(B, "read:messages")))),
    )
    .await
    .assert_denied(503, "temporarily_unavailable");
    assert_eq!(gate.health("").await, ServingStatus::Serving as i32);
    // B comes back: its tokens are served too.
    b_jwks.set(Reply::json(&jwks_of(&[&b_key])));
    eventually("B's keys loaded", Duration::from_secs(15), || async {
        gate.ask(
            "GET",
            "/r",
            Some(&bearer(&b_key.mint(&from(B, "read:messages")))),
        )
        .await
        .code
            == OK
    })
    .await;
    gate.stop().await;
}

/// An entry's own `algorithms` and `forward_claims` apply to its tokens only; every issuer's
/// forwarded headers are stripped from requests that do not set them.
#[tokio::test]
async fn each_issuer_has_its_own_algorithms_and_forwarded_claims() {
    let a_key = TestKey::generate("key-1");
    let b_key = TestKey::generate("key-1");
    // B publishes its key without alg, and allows PS256 only.
    let mut b_jwk = b_key.jwk();
    b_jwk.as_object_mut().expect("object").remove("alg");
    let a_jwks = JwksServer::start(Reply::json(&jwks_of(&[&a_key]))).await;
    let b_jwks = JwksServer::start(Reply::json(&json!({ "keys": [b_jwk] }))).await;
    let gate = start(
        &a_jwks,
        &b_jwks,
        "algorithms = [\"PS256\"]\n[issuers.forward_claims]\n\"x-auth-org\" = \"/org/id\"",
    )
    .await;
    gate.wait_serving().await;
    let good_b = {
        let mut c = from(B, "read:messages");
        c["email"] = json!("b@example.com");
        c["org"] = json!({"id": "staff"});
        b_key.mint_with(
            &aws_lc_rs::signature::RSA_PSS_SHA256,
            &json!({"alg": "PS256", "kid": "key-1"}),
            &c,
        )
    };
    let answer = eventually_allowed(&gate, &good_b).await;
    // B forwards org only; A's x-auth-email is removed from B's requests.
    assert_eq!(answer.headers["x-auth-org"], "staff");
    assert!(
        answer.removed.iter().any(|h| h == "x-auth-email"),
        "{answer:?}"
    );
    // RS256 is A's default, not B's.
    let answer = gate
        .ask(
            "GET",
            "/r",
            Some(&bearer(&b_key.mint(&from(B, "read:messages")))),
        )
        .await;
    assert_eq!(
        (answer.http, answer.message()),
        (401, "token algorithm is not allowed")
    );
    // A forwards email only.
    let mut a = from(A, "read:messages");
    a["email"] = json!("a@example.com");
    a["org"] = json!({"id": "x"});
    let answer = gate.ask("GET", "/r", Some(&bearer(&a_key.mint(&a)))).await;
    answer.assert_allowed();
    assert_eq!(answer.headers["x-auth-email"], "a@example.com");
    assert!(
        answer.removed.iter().any(|h| h == "x-auth-org"),
        "{answer:?}"
    );
    gate.stop().await;
}

async fn eventually_allowed(gate: &Scopegate, token: &str) -> Answer {
    eventually("the token is allowed", Duration::from_secs(10), || async {
        gate.ask("GET", "/r", Some(&bearer(token))).await.code == OK
    })
    .await;
    gate.ask("GET", "/r", Some(&bearer(token))).await
}

/// An issuer found by OIDC discovery, with a path in its issuer URL (as Keycloak realms have):
/// the provider configuration under the issuer's own path names its jwks_uri, and its tokens
/// verify beside an issuer given by jwks_uri. A configuration naming another issuer is refused:
/// its keys are never fetched, and its tokens get 503.
#[tokio::test]
async fn an_issuer_found_by_discovery_verifies_beside_one_by_jwks_uri() {
    let a_key = TestKey::generate("key-1");
    let b_key = TestKey::generate("key-1");
    let a_jwks = JwksServer::start(Reply::json(&jwks_of(&[&a_key]))).await;
    let idp = JwksServer::start(Reply::Respond(404, vec![], vec![])).await;
    let issuer = idp.url_of("/realms/staff");
    idp.route(
        "/realms/staff/.well-known/openid-configuration",
        Reply::json(&json!({
            "issuer": issuer,
            "jwks_uri": idp.url_of("/realms/staff/protocol/openid-connect/certs"),
        })),
    );
    idp.route(
        "/realms/staff/protocol/openid-connect/certs",
        Reply::json(&jwks_of(&[&b_key])),
    );
    let config = |b_issuer: &str| {
        scopegate::config::RawConfig::from_toml(
            &format!(
                r#"
                [[issuers]]
                issuer = "{A}"
                audience = "{AUDIENCE}"
                jwks_uri = "{}"

                [[issuers]]
                issuer = "{b_issuer}"
                audience = "{AUDIENCE}"
                "#,
                a_jwks.url()
            ),
            "<test>",
        )
        .expect("parses")
        .compile()
        .expect("compiles")
    };
    let gate = Scopegate::start_with(config(&issuer)).await;
    let b_token = b_key.mint(&from(&issuer, "read:messages"));
    eventually_allowed(&gate, &b_token).await;
    gate.ask(
        "GET",
        "/r",
        Some(&bearer(&a_key.mint(&from(A, "read:messages")))),
    )
    .await
    .assert_allowed();
    gate.stop().await;

    // The same document now names another issuer: B's keys are never fetched.
    idp.route(
        "/realms/staff/.well-known/openid-configuration",
        Reply::json(&json!({
            "issuer": "https://impostor.test/",
            "jwks_uri": idp.url_of("/realms/staff/protocol/openid-connect/certs"),
        })),
    );
    let certs = idp.hits_on("/realms/staff/protocol/openid-connect/certs");
    let gate = Scopegate::start_with(config(&issuer)).await;
    gate.wait_serving().await; // A's keys
    eventually("discovery retried", Duration::from_secs(10), || async {
        idp.hits_on("/realms/staff/.well-known/openid-configuration") >= 3
    })
    .await;
    gate.ask("GET", "/r", Some(&bearer(&b_token)))
        .await
        .assert_denied(503, "temporarily_unavailable");
    assert_eq!(
        idp.hits_on("/realms/staff/protocol/openid-connect/certs"),
        certs,
        "a mismatched configuration's jwks_uri is never fetched"
    );
    gate.stop().await;
}

fn shorthand(issuer: &str) -> scopegate::config::Config {
    scopegate::config::RawConfig::from_toml(
        &format!(
            "issuer = {issuer:?}\naudience = \"{AUDIENCE}\"\n\
             [[rules]]\npath = \"/r\"\nscopes = [\"read:messages\"]\n"
        ),
        "<test>",
    )
    .and_then(scopegate::config::RawConfig::compile)
    .expect("compiles")
}

/// The one-issuer shorthand without `jwks_uri` finds its keys by OIDC discovery, as Keycloak,
/// Okta, Entra and Google publish them (here under a realm's path, not at
/// `/.well-known/jwks.json`). An issuer with no discovery document (404) still gets its keys
/// from `issuer + /.well-known/jwks.json`, the shorthand's default before discovery; any other
/// discovery failure stays a failure (503), that URL never asked.
#[tokio::test]
async fn the_shorthand_finds_keys_by_discovery_and_falls_back_to_jwks_json_only_on_404() {
    let key = TestKey::generate("key-1");
    let token_for = |issuer: &str| key.mint(&from(issuer, "read:messages"));

    // A realm whose keys are where its discovery document says, and nowhere else.
    let idp = JwksServer::start(Reply::Respond(404, vec![], vec![])).await;
    let issuer = idp.url_of("/realms/staff");
    idp.route(
        "/realms/staff/.well-known/openid-configuration",
        Reply::json(&json!({
            "issuer": issuer,
            "jwks_uri": idp.url_of("/realms/staff/protocol/openid-connect/certs"),
        })),
    );
    idp.route(
        "/realms/staff/protocol/openid-connect/certs",
        Reply::json(&jwks_of(&[&key])),
    );
    let gate = Scopegate::start_with(shorthand(&issuer)).await;
    eventually_allowed(&gate, &token_for(&issuer)).await;
    assert_eq!(idp.hits_on("/realms/staff/.well-known/jwks.json"), 0);
    gate.stop().await;

    // No discovery document at all (404): the keys at issuer + /.well-known/jwks.json.
    let plain = JwksServer::start(Reply::Respond(404, vec![], vec![])).await;
    let issuer = plain.url_of("/");
    plain.route("/.well-known/jwks.json", Reply::json(&jwks_of(&[&key])));
    let gate = Scopegate::start_with(shorthand(&issuer)).await;
    eventually_allowed(&gate, &token_for(&issuer)).await;
    assert!(plain.hits_on("/.well-known/openid-configuration") >= 1);
    gate.stop().await;

    // A discovery document that fails otherwise (500) is no licence to guess.
    let broken = JwksServer::start(Reply::Respond(404, vec![], vec![])).await;
    let issuer = broken.url_of("/");
    broken.route(
        "/.well-known/openid-configuration",
        Reply::Respond(500, vec![], b"down".to_vec()),
    );
    broken.route("/.well-known/jwks.json", Reply::json(&jwks_of(&[&key])));
    let gate = Scopegate::start_with(shorthand(&issuer)).await;
    eventually("discovery retried", Duration::from_secs(10), || async {
        broken.hits_on("/.well-known/openid-configuration") >= 2
    })
    .await;
    gate.ask("GET", "/r", Some(&bearer(&token_for(&issuer))))
        .await
        .assert_denied(503, "temporarily_unavailable");
    assert_eq!(broken.hits_on("/.well-known/jwks.json"), 0);
    gate.stop().await;
}

/// The fallback to `/.well-known/jwks.json` is logged as a warning once, not at every refresh
/// (the real binary, refreshing every second).
#[tokio::test]
async fn the_shorthands_fallback_is_logged_once() {
    let key = TestKey::generate("key-1");
    let plain = JwksServer::start(Reply::Respond(404, vec![], vec![])).await;
    plain.route("/.well-known/jwks.json", Reply::json(&jwks_of(&[&key])));
    let binary = crate::common::binary::Binary::start(
        "discovery-fallback",
        &format!(
            "listen = \"127.0.0.1:0\"\nissuer = {:?}\naudience = \"{AUDIENCE}\"\n\
             jwks_refresh_seconds = 1\njwks_min_refresh_seconds = 1\n",
            plain.url_of("/")
        ),
        "info",
        None,
    )
    .await;
    eventually("three loads", Duration::from_secs(20), || async {
        binary.count_in_log("JWKS loaded") >= 3
    })
    .await;
    assert_eq!(
        binary.count_in_log("has no OIDC discovery document"),
        1,
        "{}",
        binary.log_text()
    );
    assert!(plain.hits_on("/.well-known/openid-configuration") >= 3);
}

const ORDERS: &str = "https://orders.api";

/// `rules[0]` (`staff`) takes only B's tokens, `rules[1]` (`orders`) only tokens whose `aud`
/// holds the orders API, and the shadow rule `watch` would take only A's; everything else
/// takes any valid token.
fn accepting_config(a_jwks: &JwksServer, b_jwks: &JwksServer) -> String {
    format!(
        r#"
        listen = "127.0.0.1:0"
        metrics_listen = "127.0.0.1:0"

        [[issuers]]
        issuer = "{A}"
        audience = "{AUDIENCE}"
        jwks_uri = "{}"

        [[issuers]]
        issuer = "{B}"
        audience = ["account", "{AUDIENCE}"]
        jwks_uri = "{}"

        [[rules]]
        name = "staff"
        prefix = "/staff/"
        scopes = ["read:messages"]
        issuers = ["{B}"]

        [[rules]]
        name = "orders"
        prefix = "/orders/"
        audiences = ["{ORDERS}"]

        [[rules]]
        name = "watch"
        prefix = "/"
        issuers = ["{A}"]
        shadow = true
        "#,
        a_jwks.url(),
        b_jwks.url()
    )
}

fn issued(issuer: &str, audiences: &[&str], scope: &str) -> Value {
    let mut c = from(issuer, scope);
    c["aud"] = json!(audiences);
    c
}

/// The reply to GET `path` with `token`: status and the denial's `error` and message.
async fn ask_binary(binary: &Binary, path: &str, token: &str) -> Answer {
    Answer::of(
        &binary
            .client()
            .await
            .check(request("GET", path, &[("authorization", &bearer(token))]))
            .await
            .expect("in-band answer")
            .into_inner(),
    )
}

async fn two_issuers(name: &str) -> (Binary, String, TestKey, TestKey) {
    let a_key = TestKey::generate("a-1");
    let b_key = TestKey::generate("b-1");
    let a_jwks = JwksServer::start(Reply::json(&jwks_of(&[&a_key]))).await;
    let b_jwks = JwksServer::start(Reply::json(&jwks_of(&[&b_key]))).await;
    let binary = Binary::start(name, &accepting_config(&a_jwks, &b_jwks), "info", None).await;
    binary.keys_loaded().await;
    let metrics = binary.metrics_addr().await;
    // Both key sets in force (health turns SERVING with the first).
    eventually("B's keys loaded", Duration::from_secs(10), || async {
        ask_binary(&binary, "/r", &b_key.mint(&from(B, "")))
            .await
            .code
            == OK
    })
    .await;
    // The JWKS servers answer for the binary's whole life.
    std::mem::forget((a_jwks, b_jwks));
    (binary, metrics, a_key, b_key)
}

/// A rule's `issuers` take the named issuer's tokens and refuse another configured issuer's
/// with 401 `invalid_token`, without naming the issuers it takes; its `audiences` take a token
/// whose `aud` holds one of them and refuse others 401, on top of the issuer's own audience
/// check. Each refusal has its reason label, and the shadow rule's would-be decision counts
/// its issuers too.
#[tokio::test]
async fn rules_take_tokens_only_from_their_issuers_and_for_their_audiences() {
    let (binary, metrics, a_key, b_key) = two_issuers("rule-issuers").await;
    let read = "read:messages";
    let issuer_refused = "token issuer is not accepted on this route";
    let audience_refused = "token audience is not accepted on this route";
    // (path, token, status, error, message): A's tokens are marked, for the shadow rule.
    let cases = [
        ("/staff/x", b_key.mint(&from(B, read)), 200, "", ""),
        (
            "/staff/x",
            a_key.mint(&from(A, read)),
            401,
            "invalid_token",
            issuer_refused,
        ),
        // The issuer is checked before scopes: the token is told what is wrong with it first.
        (
            "/staff/x",
            a_key.mint(&from(A, "")),
            401,
            "invalid_token",
            issuer_refused,
        ),
        (
            "/staff/x",
            b_key.mint(&from(B, "")),
            403,
            "insufficient_scope",
            "Insufficient scope",
        ),
        (
            "/orders/1",
            a_key.mint(&issued(A, &[AUDIENCE, ORDERS], "")),
            200,
            "",
            "",
        ),
        (
            "/orders/1",
            b_key.mint(&issued(B, &["account", ORDERS], "")),
            200,
            "",
            "",
        ),
        (
            "/orders/1",
            a_key.mint(&issued(A, &[AUDIENCE], "")),
            401,
            "invalid_token",
            audience_refused,
        ),
        (
            "/orders/1",
            a_key.mint(&issued(A, &[AUDIENCE, "https://orders.api/"], "")),
            401,
            "invalid_token",
            audience_refused,
        ),
        // The issuer's own audience check still holds: the orders API alone is not A's audience.
        (
            "/orders/1",
            a_key.mint(&issued(A, &[ORDERS], "")),
            401,
            "invalid_token",
            "token audience is not accepted",
        ),
    ];
    for (path, token, status, error, message) in &cases {
        let answer = ask_binary(&binary, path, token).await;
        assert_eq!(
            (answer.status(), answer.error(), answer.message()),
            (*status, *error, *message),
            "{path}"
        );
        if *status == 401 {
            assert!(
                answer.challenge().contains("error=\"invalid_token\""),
                "{path}"
            );
            for name in [A, B, "issuer.test"] {
                assert!(!answer.message().contains(name) && !answer.challenge().contains(name));
            }
        }
    }
    let scrape = scrape(&metrics).await;
    let checks = |rule: &str, reason: &str| {
        sample(
            &scrape,
            "scopegate_checks_total",
            &[("rule", rule), ("reason", reason), ("status", "401")],
        )
    };
    assert_eq!(checks("staff", "issuer_not_accepted"), 2.0);
    assert_eq!(checks("orders", "audience_not_accepted"), 2.0);
    assert_eq!(checks("orders", "invalid_token"), 1.0);
    // The shadow rule (A only) would deny B's tokens and the token that fails verification, and
    // take A's valid ones: the two Checks made while waiting for B's keys count as B's.
    let shadow = |decision: &str| {
        sample(
            &scrape,
            "scopegate_shadow_decisions_total",
            &[("rule", "watch"), ("decision", decision)],
        )
    };
    let waiting: f64 = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "scopegate_checks_total" && s.labels.get("rule") == Some("default"))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum();
    let b_checks = 3.0 + waiting;
    assert_eq!((shadow("allow"), shadow("deny")), (5.0, b_checks + 1.0));
}

/// The token cache keeps these checks honest: the same token, verified once, is allowed where
/// its issuer and audience are taken and refused where they are not, a cache hit every time
/// after the first.
#[tokio::test]
async fn a_cached_token_is_held_to_each_routes_issuers_and_audiences() {
    let (binary, metrics, a_key, _) = two_issuers("rule-issuers-cache").await;
    let lookups = || token_cache_lookups(&metrics);
    let token = a_key.mint(&issued(A, &[AUDIENCE], "read:messages"));
    let before = lookups().await;
    assert_eq!(ask_binary(&binary, "/r", &token).await.status(), 200);
    assert_eq!(lookups().await, (before.0, before.1 + 1.0), "verified once");
    for (path, status, reason) in [
        ("/r", 200, ""),
        (
            "/staff/x",
            401,
            "token issuer is not accepted on this route",
        ),
        (
            "/orders/1",
            401,
            "token audience is not accepted on this route",
        ),
        ("/r", 200, ""),
    ] {
        let hits = lookups().await.0;
        let answer = ask_binary(&binary, path, &token).await;
        assert_eq!(
            (answer.status(), answer.message()),
            (status, reason),
            "{path}"
        );
        assert_eq!(
            lookups().await,
            (hits + 1.0, before.1 + 1.0),
            "{path}: a cache hit"
        );
    }
}

/// An `issuers` entry naming no configured issuer (compared exactly) stops start-up with the
/// key and the value, before any port is bound.
#[test]
fn an_unconfigured_rule_issuer_is_refused_at_start_up() {
    let dir = tempfile::tempdir().expect("scratch dir");
    let path = dir.path().join("scopegate.toml");
    let text = format!(
        "listen = \"127.0.0.1:0\"\n[[issuers]]\nissuer = \"{A}\"\naudience = \"{AUDIENCE}\"\n\
         jwks_uri = \"http://127.0.0.1:9/keys\"\n[[rules]]\nprefix = \"/staff/\"\n\
         issuers = [\"{A}\", \"https://a.issuer.test\"]\n"
    );
    std::fs::write(&path, text).expect("write config");
    for command in ["check-config", "serve"] {
        let out = scopegate_command()
            .args([command, "--config", path.to_str().expect("utf8")])
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{command}: {stderr}");
        assert!(
            stderr.contains("`rules[0].issuers[1]` = \"https://a.issuer.test\""),
            "{command}: {stderr}"
        );
    }
}
