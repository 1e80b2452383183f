//! The key set over time: loading, rotation, unknown-`kid` refetches, and faults of the JWKS
//! endpoint at start-up and mid-run. Real HTTP server, real scopegate, real tokens.

use std::time::Duration;

use crate::common::*;
use serde_json::json;
use tonic_health::pb::health_check_response::ServingStatus;

const RULES: &str = r#"
[[rules]]
path = "/restricted_resource"
scopes = ["read:messages"]

[[rules]]
path = "/public"
public = true
"#;

/// Refresh every second, so mid-run behaviour shows up quickly.
const FAST_REFRESH: &str = "jwks_refresh_seconds = 1\njwks_min_refresh_seconds = 1\n";

async fn allowed(gate: &Scopegate, key: &TestKey) -> bool {
    let token = key.mint(&claims("read:messages"));
    gate.ask("GET", "/restricted_resource", Some(&bearer(&token)))
        .await
        .code
        == OK
}

#[tokio::test]
async fn key_rotation_new_kid_verifies_at_once_and_removed_key_stops() {
    let old = TestKey::generate("old");
    let new = TestKey::generate("new");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&old]))).await;
    let extra = format!("jwks_refetch_cooldown_seconds = 1\n{RULES}");
    let gate = Scopegate::start_ready(&jwks.url(), &extra).await;
    assert!(allowed(&gate, &old).await);

    // The issuer publishes a new key and starts signing with it: the very first token with the new
    // kid triggers a refetch and is allowed.
    jwks.set(Reply::json(&jwks_of(&[&old, &new])));
    assert!(
        allowed(&gate, &new).await,
        "first token of a rotated-in key"
    );
    assert!(allowed(&gate, &old).await);

    // The old key is withdrawn. Tokens signed with it stop verifying once the set is refreshed;
    // a token with an unknown kid is what forces that refresh here.
    jwks.set(Reply::json(&jwks_of(&[&new])));
    let stranger = TestKey::generate("stranger");
    eventually(
        "withdrawn key stops verifying",
        Duration::from_secs(10),
        || async {
            // A token with an unknown kid forces the refresh (once the 1 s cooldown has passed).
            assert!(!allowed(&gate, &stranger).await);
            !allowed(&gate, &old).await
        },
    )
    .await;
    assert!(allowed(&gate, &new).await);
    gate.stop().await;
}

/// Concurrent Checks while the issuer rotates: workers send tokens of whichever key currently
/// signs, and the switch to a new `kid` happens mid-load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_under_load_denies_no_valid_token_and_refetches_once() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    const WORKERS: usize = 16;
    let old = TestKey::generate("old");
    let new = TestKey::generate("new");
    let tokens = Arc::new([
        old.mint(&claims("read:messages")),
        new.mint(&claims("read:messages")),
    ]);
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&old]))).await;
    let gate = Scopegate::start_ready(&jwks.url(), RULES).await;
    assert_eq!(jwks.hits(), 1, "one fetch at start-up");

    let signing = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let (client, tokens) = (gate.client.clone(), tokens.clone());
        let (signing, done, stop) = (signing.clone(), done.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut denied = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let key = signing.load(Ordering::SeqCst);
                let check = request(
                    "GET",
                    "/restricted_resource",
                    &[("authorization", &bearer(&tokens[key]))],
                );
                let response = client.clone().check(check).await.expect("in-band");
                let answer = Answer::of(&response.into_inner());
                if answer.code != OK {
                    denied.push(format!("key {key}: {} {}", answer.http, answer.message()));
                }
                done.fetch_add(1, Ordering::SeqCst);
            }
            denied
        }));
    }
    let reach = |n: usize| {
        let done = done.clone();
        eventually("load progressing", Duration::from_secs(60), move || {
            let done = done.clone();
            async move { done.load(Ordering::SeqCst) >= n }
        })
    };
    reach(500).await;
    // The issuer publishes the new key, then starts signing with it, while requests are in flight.
    jwks.set(Reply::json(&jwks_of(&[&old, &new])));
    signing.store(1, Ordering::SeqCst);
    let rotated_at = done.load(Ordering::SeqCst);
    reach(rotated_at + 1000).await;
    stop.store(true, Ordering::SeqCst);

    let mut denied = Vec::new();
    for worker in workers {
        denied.extend(worker.await.expect("worker"));
    }
    assert!(denied.is_empty(), "valid tokens denied: {denied:?}");
    assert_eq!(
        jwks.hits(),
        2,
        "every worker's first new-kid token shares one refetch"
    );
    gate.stop().await;
}

/// There is no decision cache, and this keeps it honest: a token is allowed right up to its
/// `exp` (plus leeway) and denied from then on, however often it was allowed before.
#[tokio::test]
async fn a_token_stops_working_at_its_exp_however_often_it_was_allowed() {
    let key = TestKey::generate("key-1");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
    let gate = Scopegate::start_ready(&jwks.url(), &format!("leeway_seconds = 0\n{RULES}")).await;
    let mut soon = claims("read:messages");
    soon["exp"] = json!(now() + 2);
    let token = key.mint(&soon);
    let ask = || async {
        gate.ask("GET", "/restricted_resource", Some(&bearer(&token)))
            .await
    };
    ask().await.assert_allowed();
    eventually("token expired", Duration::from_secs(10), || async {
        ask().await.code != OK
    })
    .await;
    for _ in 0..20 {
        let answer = ask().await;
        answer.assert_denied(401, "invalid_token");
        assert_eq!(answer.message(), "token has expired");
    }
    gate.stop().await;
}

#[tokio::test]
async fn removed_key_stops_verifying_after_scheduled_refresh() {
    let old = TestKey::generate("old");
    let new = TestKey::generate("new");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&old, &new]))).await;
    let gate = Scopegate::start_ready(&jwks.url(), &format!("{FAST_REFRESH}{RULES}")).await;
    assert!(allowed(&gate, &old).await);
    jwks.set(Reply::json(&jwks_of(&[&new])));
    let token = old.mint(&claims("read:messages"));
    eventually("old key withdrawn", Duration::from_secs(10), || async {
        let answer = gate
            .ask("GET", "/restricted_resource", Some(&bearer(&token)))
            .await;
        answer.code == UNAUTHENTICATED && answer.message() == "token signing key is unknown"
    })
    .await;
    assert!(allowed(&gate, &new).await);
    gate.stop().await;
}

/// Random `kid`s cause at most one refetch per `jwks_refetch_cooldown_seconds` (5 s by
/// default); inside the cooldown they are refused at once.
#[tokio::test]
async fn unknown_kid_flood_causes_at_most_one_refetch_per_cooldown() {
    let key = TestKey::generate("key-1");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
    let gate = Scopegate::start_ready(&jwks.url(), RULES).await;
    assert_eq!(jwks.hits(), 1, "one fetch at start-up");

    let mut tasks = Vec::new();
    for i in 0..200 {
        let token = key.mint_raw(
            &json!({"alg": "RS256", "kid": format!("random-{i}")}),
            &claims("read:messages"),
        );
        let client = gate.client.clone();
        tasks.push(tokio::spawn(async move {
            let request = request(
                "GET",
                "/restricted_resource",
                &[("authorization", &bearer(&token))],
            );
            let response = client
                .clone()
                .check(request)
                .await
                .expect("in-band")
                .into_inner();
            Answer::of(&response)
        }));
    }
    for task in tasks {
        let answer = task.await.expect("task");
        answer.assert_denied(401, "invalid_token");
        assert_eq!(answer.message(), "token signing key is unknown");
    }
    assert_eq!(jwks.hits(), 2, "200 random kids must share one refetch");
    assert!(
        allowed(&gate, &key).await,
        "known keys keep working during a flood"
    );
    gate.stop().await;
}

#[tokio::test]
async fn jwks_down_at_start_denies_reports_not_serving_and_recovers_alone() {
    let key = TestKey::generate("key-1");
    let jwks = JwksServer::start(Reply::Respond(503, vec![], b"down".to_vec())).await;
    let gate = Scopegate::start(&jwks.url(), RULES).await;

    let not_serving = ServingStatus::NotServing as i32;
    assert_eq!(gate.health("").await, not_serving);
    assert_eq!(
        gate.health("envoy.service.auth.v3.Authorization").await,
        not_serving
    );
    let authorization = bearer(&key.mint(&claims("read:messages")));
    let answer = gate
        .ask("GET", "/restricted_resource", Some(&authorization))
        .await;
    answer.assert_denied(503, "temporarily_unavailable");
    assert_eq!(answer.code, UNAVAILABLE);
    assert_eq!(
        answer.headers.get("retry-after").map(String::as_str),
        Some("5")
    );
    // Public routes do not need keys.
    gate.ask("GET", "/public", None).await.assert_allowed();

    // Retries keep going (with backoff), and the service recovers by itself.
    eventually("a retry", Duration::from_secs(10), || async {
        jwks.hits() >= 2
    })
    .await;
    jwks.set(Reply::json(&jwks_of(&[&key])));
    gate.wait_serving().await;
    assert_eq!(
        gate.health("envoy.service.auth.v3.Authorization").await,
        ServingStatus::Serving as i32
    );
    gate.ask("GET", "/restricted_resource", Some(&authorization))
        .await
        .assert_allowed();
    gate.stop().await;
}

/// Serves a good key set, then `bad` on every refresh: the good set must stay in force.
async fn last_good_key_set_survives(name: &str, bad: Reply) {
    let key = TestKey::generate("key-1");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
    let extra = format!("{FAST_REFRESH}jwks_fetch_timeout_seconds = 1\n{RULES}");
    let gate = Scopegate::start_ready(&jwks.url(), &extra).await;
    jwks.set(bad);
    let before = jwks.hits();
    // The refresher is sequential: a second bad fetch proves the first was fully processed.
    eventually(name, Duration::from_secs(15), || async {
        jwks.hits() >= before + 2
    })
    .await;
    assert!(
        allowed(&gate, &key).await,
        "last good keys must survive a refresh that is {name}"
    );
    assert_eq!(
        gate.health("").await,
        ServingStatus::Serving as i32,
        "{name}"
    );
    gate.stop().await;
}

#[tokio::test]
async fn refresh_answering_500_keeps_keys() {
    last_good_key_set_survives("HTTP 500", Reply::Respond(500, vec![], b"oops".to_vec())).await;
}

#[tokio::test]
async fn refresh_answering_404_keeps_keys() {
    last_good_key_set_survives("HTTP 404", Reply::Respond(404, vec![], vec![])).await;
}

#[tokio::test]
async fn refresh_answering_html_keeps_keys() {
    let html = Reply::Respond(
        200,
        vec![("content-type".into(), "text/html".into())],
        b"<html>".to_vec(),
    );
    last_good_key_set_survives("HTML", html).await;
}

#[tokio::test]
async fn refresh_answering_empty_object_keeps_keys() {
    last_good_key_set_survives("{}", Reply::json(&json!({}))).await;
}

#[tokio::test]
async fn refresh_answering_keys_123_keeps_keys() {
    last_good_key_set_survives("{\"keys\":123}", Reply::json(&json!({"keys": 123}))).await;
}

#[tokio::test]
async fn refresh_answering_no_usable_keys_keeps_keys() {
    last_good_key_set_survives("no keys", Reply::json(&json!({"keys": []}))).await;
    let hmac_only = json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]});
    last_good_key_set_survives("only unusable keys", Reply::json(&hmac_only)).await;
}

#[tokio::test]
async fn refresh_that_stalls_keeps_keys() {
    last_good_key_set_survives("stalled", Reply::Stall).await;
}

#[tokio::test]
async fn cache_control_max_age_sets_the_refresh_interval() {
    let key = TestKey::generate("key-1");
    let mut reply = Reply::json(&jwks_of(&[&key]));
    if let Reply::Respond(_, headers, _) = &mut reply {
        headers.push(("cache-control".into(), "public, max-age=1".into()));
    }
    let jwks = JwksServer::start(reply).await;
    let quiet = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
    let gate = Scopegate::start_ready(&jwks.url(), "jwks_min_refresh_seconds = 1\n").await;
    let quiet_gate = Scopegate::start_ready(&quiet.url(), "").await;
    // max-age=1 (above the 1 s floor) instead of the 600 s default interval...
    eventually("refresh by max-age", Duration::from_secs(10), || async {
        jwks.hits() >= 3
    })
    .await;
    // ...while, over the same seconds, a server without max-age got no refresh at all.
    assert_eq!(quiet.hits(), 1, "no max-age: the 600 s default applies");
    gate.stop().await;
    quiet_gate.stop().await;
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let key = TestKey::generate("key-1");
    let target = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
    let redirect = JwksServer::start(Reply::Respond(
        302,
        vec![("location".into(), target.url())],
        vec![],
    ))
    .await;
    let gate = Scopegate::start(&redirect.url(), RULES).await;
    eventually("a retry", Duration::from_secs(10), || async {
        redirect.hits() >= 2
    })
    .await;
    assert_eq!(
        target.hits(),
        0,
        "the redirect target must never be fetched"
    );
    assert_eq!(gate.health("").await, ServingStatus::NotServing as i32);
    assert!(!allowed(&gate, &key).await);
    gate.stop().await;
}

/// A JWKS body over `jwks_max_bytes` replaces nothing: the set loaded before keeps verifying
/// and health stays SERVING. The body is not read whole: announced by `content-length`, it is
/// refused on the announcement; unannounced, reading stops at the cap. What the issuer's socket
/// took is counted: over two refused fetches, less than one 50 MB body (the kernel's buffers on
/// loopback hold a few MB; a reader that read on would take all 50 MB at every fetch).
#[tokio::test]
async fn oversized_jwks_body_is_refused() {
    let key = TestKey::generate("key-1");
    const BIG: usize = 50 << 20;
    let cases: [(usize, &str, bool); 3] = [
        // Just over a small configured cap.
        (4096, "jwks_max_bytes = 2048\n", true),
        // 50 MB against the default cap (1 MiB), announced, then not.
        (BIG, "", true),
        (BIG, "", false),
    ];
    for (padding, extra, announced) in cases {
        let jwks = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
        let gate =
            Scopegate::start_ready(&jwks.url(), &format!("{extra}{FAST_REFRESH}{RULES}")).await;
        assert!(allowed(&gate, &key).await);
        let mut doc = jwks_of(&[&key]);
        doc["padding"] = json!("x".repeat(padding));
        let body = doc.to_string().into_bytes();
        jwks.set(if announced {
            Reply::json(&doc)
        } else {
            Reply::Unsized(body)
        });
        let (hits, sent) = (jwks.hits(), jwks.body_bytes());
        eventually("two refused refreshes", Duration::from_secs(15), || async {
            jwks.hits() >= hits + 2
        })
        .await;
        if padding == BIG {
            let taken = jwks.body_bytes() - sent;
            assert!(
                taken < BIG,
                "{taken} bytes of the oversized body were taken (announced: {announced})"
            );
        }
        assert_eq!(
            gate.health("").await,
            ServingStatus::Serving as i32,
            "{padding} {announced}: the last good set is kept"
        );
        assert!(
            allowed(&gate, &key).await,
            "{padding} {announced}: the last good set verifies"
        );
        gate.stop().await;
    }
}

#[tokio::test]
async fn stalled_jwks_at_start_times_out_and_check_never_waits_for_it() {
    let key = TestKey::generate("key-1");
    let jwks = JwksServer::start(Reply::Stall).await;
    let gate = Scopegate::start(
        &jwks.url(),
        &format!("jwks_fetch_timeout_seconds = 1\n{RULES}"),
    )
    .await;
    // Check answers at once (503) while the fetch hangs; the test's own timeout bounds it.
    let token = key.mint(&claims("read:messages"));
    let answer = tokio::time::timeout(Duration::from_secs(2), async {
        gate.ask("GET", "/restricted_resource", Some(&bearer(&token)))
            .await
    })
    .await
    .expect("Check must not wait on the JWKS fetch");
    answer.assert_denied(503, "temporarily_unavailable");
    // The stalled fetch times out and is retried; once the endpoint answers, service recovers.
    eventually(
        "a retry after the timeout",
        Duration::from_secs(10),
        || async { jwks.hits() >= 2 },
    )
    .await;
    jwks.set(Reply::json(&jwks_of(&[&key])));
    gate.wait_serving().await;
    assert!(allowed(&gate, &key).await);
    gate.stop().await;
}

/// The shortest refresh cycle the configuration accepts, and the shortest `max_stale` it allows
/// for it (max refresh 1 s + fetch timeout 1 s + 10 s), with a 1 s unknown-kid cooldown.
const SHORT_STALE: &str = "jwks_refresh_seconds = 1\njwks_min_refresh_seconds = 1\n\
    jwks_max_refresh_seconds = 1\njwks_fetch_timeout_seconds = 1\njwks_max_stale_seconds = 12\n\
    jwks_refetch_cooldown_seconds = 1\n";

/// With `jwks_max_stale_seconds = 12` (`SHORT_STALE`), a set the issuer stops serving is
/// withdrawn (503, NOT_SERVING); a Check then asks for a fetch, which brings it back.
#[tokio::test]
async fn last_good_keys_expire_after_max_stale_and_a_check_brings_them_back() {
    let key = TestKey::generate("key-1");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
    let gate = Scopegate::start_ready(&jwks.url(), &format!("{SHORT_STALE}{RULES}")).await;
    assert!(allowed(&gate, &key).await);

    // The issuer goes away: the last good set is used for at most 12 s more, then every protected
    // request is refused and health says NOT_SERVING.
    jwks.set(Reply::Respond(500, vec![], vec![]));
    let token = key.mint(&claims("read:messages"));
    eventually("stale keys refused", Duration::from_secs(30), || async {
        gate.ask("GET", "/restricted_resource", Some(&bearer(&token)))
            .await
            .http
            == 503
    })
    .await;
    let answer = gate
        .ask("GET", "/restricted_resource", Some(&bearer(&token)))
        .await;
    answer.assert_denied(503, "temporarily_unavailable");
    assert_eq!(answer.message(), "signing keys are not available");
    let not_serving = ServingStatus::NotServing as i32;
    eventually("health NOT_SERVING", Duration::from_secs(5), || async {
        gate.health("").await == not_serving
    })
    .await;
    assert_eq!(
        gate.health("envoy.service.auth.v3.Authorization").await,
        not_serving
    );

    // The refresher has failed several times in a row, so its next retry is 8-10 s away. Wait
    // for one of those failures, so that its backoff has just begun.
    let hits = jwks.hits();
    eventually("another failed fetch", Duration::from_secs(20), || async {
        jwks.hits() > hits
    })
    .await;
    // The issuer comes back. A Check that finds the keys stale asks for a fetch (once per
    // cooldown), so service resumes within seconds, not at the end of the backoff.
    jwks.set(Reply::json(&jwks_of(&[&key])));
    eventually(
        "a stale Check brings the keys back before the backoff ends",
        Duration::from_secs(4),
        || allowed(&gate, &key),
    )
    .await;
    gate.wait_serving().await;
    gate.stop().await;
}

/// A Check waits for an unknown-`kid` refetch at most `unknown_kid_wait_ms`, so it is answered
/// in-band before Envoy's own timeout (0.5 s in the shipped configuration) would answer 503, or,
/// under `failure_mode_allow`, let the request through. The fetch goes on and serves later Checks.
///
/// The outcome shows the bound without timing anything: the JWKS takes 3 s to answer and
/// `server.check_timeout_ms` is 2500, so a Check that waited for the fetch (or for anything
/// longer than the deadline) would be answered 503 by the deadline; the 401 can only come from
/// the end of the 200 ms wait. (`jwks::tests::a_waiter_is_woken_by_the_end_of_its_own_fetch_only`
/// shows the wait ends at `unknown_kid_wait` to the millisecond, under paused time.)
#[tokio::test]
async fn an_unknown_kid_waits_at_most_unknown_kid_wait_and_the_fetch_goes_on() {
    let old = TestKey::generate("old");
    let new = TestKey::generate("new");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&old]))).await;
    let gate = Scopegate::start_ready(
        &jwks.url(),
        &format!("unknown_kid_wait_ms = 200\n{RULES}\n[server]\ncheck_timeout_ms = 2500\n"),
    )
    .await;
    // The issuer signs with a new key, and its JWKS endpoint takes 3 s to list it (within the
    // 5 s fetch timeout, past the Check deadline).
    jwks.set(Reply::Delayed(
        Duration::from_secs(3),
        Box::new(Reply::json(&jwks_of(&[&old, &new]))),
    ));
    let token = new.mint(&claims("read:messages"));
    let answer = gate
        .ask("GET", "/restricted_resource", Some(&bearer(&token)))
        .await;
    answer.assert_denied(401, "invalid_token");
    assert_eq!(answer.message(), "token signing key is unknown");
    assert_eq!(jwks.hits(), 2, "the refetch was asked for");
    // Within the cooldown (5 s) nothing new is fetched, yet the key arrives from the fetch that
    // the first Check started.
    eventually("the new key loaded", Duration::from_secs(10), || {
        allowed(&gate, &new)
    })
    .await;
    assert_eq!(jwks.hits(), 2, "served by the same fetch");
    gate.stop().await;
}

/// A discovery document (itself fetched from a loopback host) that names a plain-http
/// `jwks_uri` on a host that is not loopback is refused before anything is asked of that host:
/// anyone on that path could substitute the keys. The refresh fails as a discovery error (the
/// last good set stays, the failure is counted and logged) and the issuer's tokens get 503.
/// With `allow_insecure_http = true` the same document is followed.
#[tokio::test]
async fn a_discovery_document_naming_plain_http_keys_off_loopback_is_refused() {
    let key = TestKey::generate("key-1");
    let idp = JwksServer::start(Reply::Respond(404, vec![], vec![])).await;
    let issuer = idp.url_of("/");
    // `.invalid` never resolves (RFC 6761): a fetch that were attempted would fail on DNS,
    // unlike the refusal, which names the rule.
    idp.route(
        "/.well-known/openid-configuration",
        Reply::json(&json!({ "issuer": issuer, "jwks_uri": "http://keys.invalid/certs" })),
    );
    let config = |extra: &str| {
        scopegate::config::RawConfig::from_toml(
            &format!(
                "jwks_fetch_timeout_seconds = 2\n{RULES}\n\
                 [[issuers]]\nissuer = {issuer:?}\naudience = \"{AUDIENCE}\"\n{extra}\n"
            ),
            "<test>",
        )
        .and_then(scopegate::config::RawConfig::compile)
        .expect("compiles")
    };

    let refused = scopegate::auth::jwks::fetch_once(&config("").issuers()[0].jwks)
        .await
        .expect_err("refused");
    assert_eq!(
        refused.result(),
        scopegate::telemetry::metrics::FetchResult::discovery_error,
        "{refused}"
    );
    assert!(
        refused.to_string().contains("http://keys.invalid/certs")
            && refused.to_string().contains("allow_insecure_http"),
        "{refused}"
    );
    let gate = Scopegate::start_with(config("")).await;
    let mut claims = claims("read:messages");
    claims["iss"] = json!(issuer);
    gate.ask(
        "GET",
        "/restricted_resource",
        Some(&bearer(&key.mint(&claims))),
    )
    .await
    .assert_denied(503, "temporarily_unavailable");
    gate.stop().await;

    // Allowed: the document is followed (and the fetch then fails on the unresolvable name).
    let followed =
        scopegate::auth::jwks::fetch_once(&config("allow_insecure_http = true").issuers()[0].jwks)
            .await
            .expect_err("keys.invalid does not resolve");
    assert_eq!(
        followed.result(),
        scopegate::telemetry::metrics::FetchResult::network_error,
        "{followed}"
    );
}
