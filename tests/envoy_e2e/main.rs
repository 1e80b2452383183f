//! End to end through a real Envoy running the repository's `envoy/envoy.yaml`, in front of the demo
//! upstream, with tokens from the development issuer. Envoy must be installed
//! (`scripts/install-envoy`); these tests fail, never skip, without it.

#[path = "../common/mod.rs"]
mod common;

use std::time::Duration;

use common::eventually;
use common::stack::Stack;
use serde_json::Value;

async fn json(response: reqwest::Response) -> (u16, reqwest::header::HeaderMap, Value) {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.text().await.expect("body");
    let value = serde_json::from_str(&body)
        .unwrap_or_else(|_| panic!("JSON body expected, got {status}: {body:?}"));
    (status, headers, value)
}

/// Asserts that a denial is scopegate's, not Envoy's: the status, and scopegate's JSON body with
/// the `error` code wanted and a `message`. A status alone would also pass on an answer Envoy
/// made itself (a 400 for a request it refuses, a 403 or 503 from ext_authz with no response
/// from scopegate).
fn assert_scopegates_denial(status: u16, body: &str, want: u16, error: &str, context: &str) {
    assert_eq!(status, want, "{context}: {body}");
    let value: Value = serde_json::from_str(body).unwrap_or_else(|_| {
        panic!("{context}: scopegate's JSON denial expected, got {status}: {body:?}")
    });
    assert_eq!(value["error"].as_str(), Some(error), "{context}: {body}");
    assert!(
        value["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{context}: scopegate's denial has a message: {body}"
    );
}

/// [`assert_scopegates_denial`] on a response.
async fn scopegates_denial(response: reqwest::Response, want: u16, error: &str, context: &str) {
    let status = response.status().as_u16();
    let body = response.text().await.expect("body");
    assert_scopegates_denial(status, &body, want, error, context);
}

/// Asserts that Envoy answered `want` itself, before asking scopegate: no JSON denial of
/// scopegate's in the body.
async fn envoys_own_answer(response: reqwest::Response, want: u16, context: &str) {
    let status = response.status().as_u16();
    let body = response.text().await.expect("body");
    assert_eq!(status, want, "{context}: {body}");
    let scopegates = serde_json::from_str::<Value>(&body).is_ok_and(|v| v["error"].is_string());
    assert!(
        !scopegates,
        "{context}: Envoy's own answer expected: {body}"
    );
}

/// The `error` code scopegate answers a denial status with, when the request carried a token
/// or not (a 401 without one is `unauthorized`, with one `invalid_token`).
fn error_for(status: u16, with_token: bool) -> &'static str {
    match (status, with_token) {
        (400, _) => "invalid_request",
        (401, false) => "unauthorized",
        (401, true) => "invalid_token",
        (403, _) => "insufficient_scope",
        (503, _) => "temporarily_unavailable",
        _ => panic!("{status} is not a status scopegate denies with"),
    }
}

fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_enforces_scopegate_decisions() {
    let stack = Stack::start().await;

    // No token: 401 with the JSON body and challenge scopegate chose.
    let (status, headers, body) = json(stack.get("/restricted_resource", &[]).await).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "unauthorized");
    assert_eq!(header(&headers, "content-type"), "application/json");
    assert_eq!(
        header(&headers, "www-authenticate"),
        "Bearer realm=\"scopegate\""
    );

    // A token without the scope: 403, the sample's message, the required scope in the challenge.
    let weak = format!("Bearer {}", stack.token("openid"));
    let (status, headers, body) = json(
        stack
            .get("/restricted_resource", &[("authorization", &weak)])
            .await,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "insufficient_scope");
    assert_eq!(body["message"], "Insufficient scope");
    assert!(
        header(&headers, "www-authenticate").contains("scope=\"read:messages\""),
        "{headers:?}"
    );

    // An invalid token: 401 invalid_token.
    let (status, headers, body) = json(
        stack
            .get("/restricted_resource", &[("authorization", "Bearer a.b.c")])
            .await,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_token")),
        "{body}"
    );
    assert!(header(&headers, "www-authenticate").contains("error=\"invalid_token\""));

    // The right scope: 200 from the upstream, which sees the identity scopegate set, not the
    // one the client sent.
    let good = format!("Bearer {}", stack.token("read:messages openid"));
    let spoof = [
        ("authorization", good.as_str()),
        ("x-auth-subject", "admin"),
        ("x-auth-scopes", "admin"),
    ];
    let (status, _, body) = json(stack.get("/restricted_resource", &spoof).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["message"], "Access Granted");
    assert_eq!(
        body["allowed_scopes"],
        serde_json::json!(["openid", "read:messages"])
    );
    assert_eq!(body["subject"], "e2e-user");

    // Public route: no token needed, and spoofed identity headers never reach the upstream.
    let (status, _, body) = json(
        stack
            .get(
                "/public",
                &[("x-auth-subject", "admin"), ("x-auth-scopes", "admin")],
            )
            .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["subject"], Value::Null);
    assert_eq!(body["scopes_header"], Value::Null);

    // Unlisted route: any valid token (default = "authenticated").
    scopegates_denial(
        stack.get("/unlisted", &[]).await,
        401,
        "unauthorized",
        "/unlisted",
    )
    .await;
    let (status, _, body) = json(stack.get("/unlisted", &[("authorization", &weak)]).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["path"], "/unlisted");

    // Path tricks: Envoy normalises dot segments before scopegate sees the path, so a "public"
    // prefix cannot smuggle a protected path; escaped slashes are refused at the edge, by Envoy.
    let (status, _, body) = json(stack.get("/public/../restricted_resource", &[]).await).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unauthorized")),
        "{body}"
    );
    envoys_own_answer(
        stack.get("/public%2F..%2Frestricted_resource", &[]).await,
        400,
        "an escaped slash",
    )
    .await;
    scopegates_denial(
        stack
            .get("/restricted_resource;x=1", &[("authorization", &good)])
            .await,
        400,
        "invalid_request",
        "path parameters are refused by scopegate",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_credentials_through_envoy() {
    let stack = Stack::start().await;
    let good = stack.token("read:messages");

    // Two Authorization headers: Envoy joins them into one comma-separated value, which is not a
    // single Bearer credential. (This configuration sends `headers`; the `header_map` form, which
    // keeps both values, is refused too: `it::authentication::header_map_input_…`.)
    let response = stack
        .http
        .get(format!("{}/restricted_resource", stack.url))
        .header("authorization", format!("Bearer {good}"))
        .header("authorization", format!("Bearer {good}"))
        .send()
        .await
        .expect("answer");
    let (status, _, body) = json(response).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );

    let b64 = |v: serde_json::Value| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let payload = good.split('.').nth(1).expect("payload").to_string();
    let cases: Vec<(String, u16, &str)> = vec![
        (format!("bearer {good}"), 200, ""),
        (format!("Bearer\t{good}"), 400, "invalid_request"),
        (format!("Bearer {good} {good}"), 400, "invalid_request"),
        (
            format!(
                "Bearer {}.{payload}.",
                b64(serde_json::json!({"alg": "none"}))
            ),
            401,
            "invalid_token",
        ),
        (
            format!(
                "Bearer {}.{payload}.AAAA",
                b64(serde_json::json!({"alg": "HS256"}))
            ),
            401,
            "invalid_token",
        ),
        (format!("Bearer {good}x"), 401, "invalid_token"),
        ("Basic dXNlcjpwYXNz".to_string(), 401, "unauthorized"),
        // Over scopegate's 16 KiB credential cap, well under Envoy's header limit.
        (
            format!("Bearer {}", "a".repeat(20 * 1024)),
            400,
            "invalid_request",
        ),
    ];
    for (authorization, want, error) in cases {
        let response = stack
            .get("/restricted_resource", &[("authorization", &authorization)])
            .await;
        let status = response.status().as_u16();
        let body: serde_json::Value =
            serde_json::from_str(&response.text().await.expect("body")).expect("JSON");
        assert_eq!(status, want, "{authorization:.40}: {body}");
        if want != 200 {
            assert_eq!(body["error"], error, "{authorization:.40}");
        }
    }

    // A percent-encoded spelling of the protected path still needs the scope.
    let weak = format!("Bearer {}", stack.token("openid"));
    let response = stack
        .get("/%72estricted_resource", &[("authorization", &weak)])
        .await;
    scopegates_denial(
        response,
        403,
        "insufficient_scope",
        "/%72estricted_resource",
    )
    .await;
    // Envoy passes letter case through; a case variant of a rule's path is refused, not given the
    // default (the demo upstream happens to be case-sensitive, others are not).
    for authorization in [&weak, &format!("Bearer {good}")] {
        let response = stack
            .get("/RESTRICTED_RESOURCE", &[("authorization", authorization)])
            .await;
        let (status, _, body) = json(response).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_request"))
        );
    }
}

/// Phases of the kill test, as seen by the load workers. A phase starts before the action that
/// names it, so that an answer caused by the action can never be counted in the phase before.
const UP: usize = 0;
const KILLING: usize = 1;
const KILLED: usize = 2;
const RESTARTING: usize = 3;
const SERVING_AGAIN: usize = 4;

/// One request of the kill test's load: which kind, and the phase when it was sent and answered.
#[derive(Debug)]
struct Observed {
    kind: usize,
    sent: usize,
    answered: usize,
    status: u16,
    /// Whether the body is scopegate's JSON denial (an `error` code), not Envoy's own answer.
    scopegates: bool,
    /// The start of the body, for failure messages.
    body: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_fails_closed_while_scopegate_is_killed_under_load_and_recovers() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    let mut stack = Stack::start().await;
    let good = format!("Bearer {}", stack.token("read:messages"));
    let weak = format!("Bearer {}", stack.token("openid"));
    // (path, Authorization, status while scopegate runs). Whatever the kind, while it is down
    // the answer must be Envoy's status_on_error, 503: public routes are not waved through.
    let kinds: Arc<Vec<(&str, Option<String>, u16)>> = Arc::new(vec![
        ("/restricted_resource", Some(good.clone()), 200),
        ("/restricted_resource", None, 401),
        ("/restricted_resource", Some(weak), 403),
        ("/restricted_resource", Some("Bearer a.b.c".into()), 401),
        ("/public", None, 200),
    ]);

    let phase = Arc::new(AtomicUsize::new(UP));
    let answered_in = Arc::new([(); 5].map(|()| AtomicUsize::new(0)));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for worker in 0..8 {
        let (http, url, kinds) = (stack.http.clone(), stack.url.clone(), kinds.clone());
        let (phase, answered_in, stop) = (phase.clone(), answered_in.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut n = worker;
            while !stop.load(Ordering::SeqCst) {
                let kind = n % kinds.len();
                n += 1;
                let (path, authorization, _) = &kinds[kind];
                let mut request = http.get(format!("{url}{path}"));
                if let Some(value) = authorization {
                    request = request.header("authorization", value);
                }
                let sent = phase.load(Ordering::SeqCst);
                let response = request.send().await.expect("Envoy answers");
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                let scopegates =
                    serde_json::from_str::<Value>(&body).is_ok_and(|v| v["error"].is_string());
                let body: String = body.chars().take(120).collect();
                let answered = phase.load(Ordering::SeqCst);
                if sent == answered {
                    answered_in[sent].fetch_add(1, Ordering::SeqCst);
                }
                seen.push(Observed {
                    kind,
                    sent,
                    answered,
                    status: status.as_u16(),
                    scopegates,
                    body,
                });
            }
            seen
        }));
    }
    let settle = |p: usize, n: usize| {
        let answered_in = answered_in.clone();
        eventually("load in this phase", Duration::from_secs(60), move || {
            let answered_in = answered_in.clone();
            async move { answered_in[p].load(Ordering::SeqCst) >= n }
        })
    };

    settle(UP, 200).await;
    phase.store(KILLING, Ordering::SeqCst);
    stack.kill_scopegate();
    phase.store(KILLED, Ordering::SeqCst);
    settle(KILLED, 300).await;

    // scopegate comes back on the same address: Envoy resumes without a restart.
    phase.store(RESTARTING, Ordering::SeqCst);
    stack.restart_scopegate();
    eventually("traffic served again", Duration::from_secs(30), || async {
        stack
            .get("/restricted_resource", &[("authorization", &good)])
            .await
            .status()
            == 200
    })
    .await;
    phase.store(SERVING_AGAIN, Ordering::SeqCst);
    settle(SERVING_AGAIN, 200).await;
    stop.store(true, Ordering::SeqCst);

    let mut wrong = Vec::new();
    let mut total = 0;
    for worker in workers {
        for seen in worker.await.expect("worker") {
            total += 1;
            let (path, authorization, expected) = &kinds[seen.kind];
            // A denial while scopegate runs is its JSON answer; the 503 while it is down is
            // Envoy's status_on_error, with no answer of scopegate's.
            let its_own = seen.status == *expected && (*expected == 200 || seen.scopegates);
            let envoys = seen.status == 503 && !seen.scopegates;
            let ok = match (seen.sent, seen.answered) {
                // Sent and answered once scopegate was dead: the configured status, always.
                (KILLED, KILLED) => envoys,
                // Entirely while it ran: its own answer.
                (UP, UP) | (SERVING_AGAIN, SERVING_AGAIN) => its_own,
                // Around the kill or the restart: either, never anything else.
                _ => its_own || envoys,
            };
            if !ok {
                wrong.push(format!(
                    "{path} {} in phases {}..{}: {} {:?}",
                    authorization
                        .as_deref()
                        .map_or("no token", |_| "with token"),
                    seen.sent,
                    seen.answered,
                    seen.status,
                    seen.body
                ));
            }
        }
    }
    let stats = if wrong.is_empty() {
        String::new()
    } else {
        stack.stats("ext_authz|cluster.scopegate").await
    };
    assert!(
        wrong.is_empty(),
        "{} of {total} answers were wrong: {:?}\nscopegate log:\n{}\nEnvoy stats:\n{stats}",
        wrong.len(),
        &wrong[..wrong.len().min(20)],
        stack.scopegate_log()
    );
}

/// One token of each hostile class from tests/hostile_tokens.rs, through Envoy: Envoy passes the
/// header through untouched, and every one must come back as scopegate's JSON denial.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_tokens_through_envoy() {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use common::stack::{DEMO_AUDIENCE, demo_claims};
    use common::{ISSUER, JwksServer, Reply, TestKey, now};
    use serde_json::json;

    let key = TestKey::generate("key-1");
    let attacker = TestKey::generate("key-1");
    let mut enc = key.jwk();
    enc["kid"] = json!("enc");
    enc["use"] = json!("enc");
    let jwks = JwksServer::start(Reply::json(&json!({"keys": [key.jwk(), enc]}))).await;
    // The attacker's keys, served where the `jku` case points: a fetch would be a hit here.
    let attacker_jwks = JwksServer::start(Reply::json(&json!({"keys": [attacker.jwk()]}))).await;
    let stack = Stack::start_with_issuer(ISSUER, &jwks.url()).await;

    let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
    let valid = demo_claims;
    let with = |claim: &str, value: Value| {
        let mut c = valid("read:messages");
        c[claim] = value;
        c
    };
    let rs256 = json!({"alg": "RS256", "kid": "key-1"});
    let signed_bytes = |header: &[u8], payload: &[u8]| {
        let input = format!("{}.{}", b64(header), b64(payload));
        let signature = key.sign_bytes(input.as_bytes());
        format!("{input}.{}", b64(&signature))
    };
    let good = key.mint_raw(&rs256, &valid("read:messages"));
    let (head, payload) = good
        .rsplit_once('.')
        .expect("three parts")
        .0
        .split_once('.')
        .expect("");
    let signature = good.rsplit('.').next().expect("signature");
    let mut expired = valid("openid");
    expired["exp"] = json!(now() - 3600);

    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("control", good.clone(), 200, ""),
        ("alg none", format!("{}.{payload}.", b64(br#"{"alg":"none"}"#)), 401, "invalid_token"),
        ("alg NoNe", format!("{}.{payload}.", b64(br#"{"alg":"NoNe"}"#)), 401, "invalid_token"),
        (
            "HS256",
            format!("{}.{payload}.{signature}", b64(br#"{"alg":"HS256","kid":"key-1"}"#)),
            401,
            "invalid_token",
        ),
        (
            "ES256 zero signature",
            format!("{}.{payload}.{}", b64(br#"{"alg":"ES256","kid":"key-1"}"#), b64(&[0; 64])),
            401,
            "invalid_token",
        ),
        (
            "jku naming the attacker's keys",
            attacker.mint_raw(
                &json!({"alg": "RS256", "kid": "key-1", "jku": attacker_jwks.url()}),
                &valid("read:messages"),
            ),
            401,
            "invalid_token",
        ),
        (
            "kid path",
            key.mint_raw(&json!({"alg": "RS256", "kid": "../../etc/passwd"}), &valid("read:messages")),
            401,
            "invalid_token",
        ),
        (
            "kid of a use=enc key",
            key.mint_raw(&json!({"alg": "RS256", "kid": "enc"}), &valid("read:messages")),
            401,
            "invalid_token",
        ),
        (
            "crit",
            key.mint_raw(
                &json!({"alg": "RS256", "kid": "key-1", "crit": ["exp"]}),
                &valid("read:messages"),
            ),
            401,
            "invalid_token",
        ),
        (
            "cty JWT",
            key.mint_raw(
                &json!({"alg": "RS256", "kid": "key-1", "cty": "JWT"}),
                &valid("read:messages"),
            ),
            401,
            "invalid_token",
        ),
        ("JWE shape", format!("{head}.{payload}.{signature}.a.b"), 401, "invalid_token"),
        ("empty signature", format!("{head}.{payload}."), 401, "invalid_token"),
        ("+ and / alphabet", format!("{head}.{payload}.{}", signature.replace('-', "+").replace('_', "/")), 401, "invalid_token"),
        ("exp as string", key.mint_raw(&rs256, &with("exp", json!("9999999999"))), 401, "invalid_token"),
        ("exp far past", key.mint_raw(&rs256, &with("exp", json!(1))), 401, "invalid_token"),
        ("nbf in an hour", key.mint_raw(&rs256, &with("nbf", json!(now() + 3600))), 401, "invalid_token"),
        ("iat as string", key.mint_raw(&rs256, &with("iat", json!("now"))), 401, "invalid_token"),
        ("iss without slash", key.mint_raw(&rs256, &with("iss", json!(ISSUER.trim_end_matches('/')))), 401, "invalid_token"),
        ("iss upper case", key.mint_raw(&rs256, &with("iss", json!(ISSUER.to_uppercase()))), 401, "invalid_token"),
        ("aud as number", key.mint_raw(&rs256, &with("aud", json!(1))), 401, "invalid_token"),
        ("aud with slash", key.mint_raw(&rs256, &with("aud", json!(format!("{DEMO_AUDIENCE}/")))), 401, "invalid_token"),
        (
            "duplicate exp",
            signed_bytes(
                br#"{"alg":"RS256","kid":"key-1"}"#,
                format!(
                    r#"{{"iss":"{ISSUER}","aud":"{DEMO_AUDIENCE}","exp":1,"exp":{},"scope":"read:messages"}}"#,
                    now() + 3600
                )
                .as_bytes(),
            ),
            401,
            "invalid_token",
        ),
        ("payload an array", signed_bytes(br#"{"alg":"RS256","kid":"key-1"}"#, b"[]"), 401, "invalid_token"),
        ("payload not UTF-8", signed_bytes(br#"{"alg":"RS256","kid":"key-1"}"#, b"{\"a\":\"\xff\"}"), 401, "invalid_token"),
        ("scope prefix look-alike", key.mint_raw(&rs256, &valid("read:message read:messages2")), 403, "insufficient_scope"),
        ("scope other case", key.mint_raw(&rs256, &valid("READ:MESSAGES")), 403, "insufficient_scope"),
        ("expired and unscoped", key.mint_raw(&rs256, &expired), 401, "invalid_token"),
        // Identity Envoy could not put in a header: refused by scopegate (without the check,
        // Envoy answered a bare 503 "invalid header value").
        ("sub with CR/LF", key.mint_raw(&rs256, &with("sub", json!("a\r\nx-injected: 1"))), 401, "invalid_token"),
        ("sub with NUL", key.mint_raw(&rs256, &with("sub", json!("a\u{0}b"))), 401, "invalid_token"),
        ("scope with a control", key.mint_raw(&rs256, &valid("read:messages a\u{1}b")), 401, "invalid_token"),
        // Scopes that would not split back into the checked set upstream.
        ("scp element with a space", key.mint_raw(&rs256, &with("scp", json!(["read:messages", "x admin"]))), 401, "invalid_token"),
        ("scope with a no-break space", key.mint_raw(&rs256, &valid("read:messages x\u{a0}admin")), 401, "invalid_token"),
        ("crit null", key.mint_raw(&json!({"alg": "RS256", "kid": "key-1", "crit": null}), &valid("read:messages")), 401, "invalid_token"),
        ("sub in UTF-8", key.mint_raw(&rs256, &with("sub", json!("zoë"))), 200, ""),
    ];
    for (name, token, want, error) in cases {
        let response = stack
            .get(
                "/restricted_resource",
                &[("authorization", &format!("Bearer {token}"))],
            )
            .await;
        let status = response.status().as_u16();
        let body = response.text().await.expect("body");
        assert_eq!(status, want, "{name}: {body}");
        if want != 200 {
            let body: Value = serde_json::from_str(&body).expect("scopegate's JSON denial");
            assert_eq!(body["error"], error, "{name}");
        }
    }
    assert_eq!(
        attacker_jwks.hits(),
        0,
        "a token's jku never makes scopegate fetch from where it points"
    );
    // A non-ASCII subject reaches the upstream intact, as UTF-8.
    let token = key.mint_raw(&rs256, &with("sub", json!("zoë")));
    let response = stack
        .get(
            "/restricted_resource",
            &[("authorization", &format!("Bearer {token}"))],
        )
        .await;
    let (status, _, body) = json(response).await;
    assert_eq!((status, body["subject"].as_str()), (200, Some("zoë")));
}

/// Spellings that an upstream framework reads as a protected route, sent through Envoy with the
/// shipped configuration: HEAD (answered by the GET handler), a trailing slash, dot or space, a
/// lower-case method (HTTP/1.1, passed through by Envoy as written), and underscored identity
/// headers (which CGI-style upstreams read as the real ones).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_readings_through_envoy() {
    let stack = Stack::start().await;
    let weak = format!("Bearer {}", stack.token("openid"));
    let good = format!("Bearer {}", stack.token("read:messages"));

    let head = |authorization: Option<&str>| {
        let mut request = stack
            .http
            .head(format!("{}/restricted_resource", stack.url));
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        request.send()
    };
    // A HEAD response has no body; the status and the challenge say whose answer it is.
    let response = head(None).await.expect("Envoy answers");
    assert_eq!(response.status(), 401);
    assert_eq!(
        header(response.headers(), "www-authenticate"),
        "Bearer realm=\"scopegate\"",
        "{:?}",
        response.headers()
    );
    let response = head(Some(&weak)).await.expect("Envoy answers");
    assert_eq!(response.status(), 403);
    assert!(
        header(response.headers(), "www-authenticate").contains("insufficient_scope"),
        "{:?}",
        response.headers()
    );
    assert_eq!(
        head(Some(&good)).await.expect("Envoy answers").status(),
        200
    );

    for path in [
        "/restricted_resource/",
        "/restricted_resource.",
        "/restricted_resource%20",
        "/restricted_resource%2e",
        "/RESTRICTED_RESOURCE/",
        // A dotless ı, which upper-cases to I: Envoy passes the encoded bytes through.
        "/restr%C4%B1cted_resource",
    ] {
        let response = stack.get(path, &[("authorization", &weak)]).await;
        let (status, _, body) = json(response).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_request")),
            "{path}: {body}"
        );
    }

    // A lower-case method. Envoy refuses it over HTTP/1.1 on its own, but passes it through over
    // HTTP/2 (prior knowledge), where ordinary clients never send one: so, a raw HTTP/2 client.
    let addr = stack.url.trim_start_matches("http://").to_string();
    let socket = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let (client, connection) = h2::client::handshake(socket).await.expect("h2 handshake");
    tokio::spawn(connection);
    let mut client = client.ready().await.expect("h2 ready");
    for (method, authorization, want) in [
        ("get", &weak, 400),
        ("get", &good, 400),
        ("GET", &good, 200),
        ("GET", &weak, 403),
    ] {
        let request = http::Request::builder()
            .method(http::Method::from_bytes(method.as_bytes()).expect("method token"))
            .uri(format!("http://{addr}/restricted_resource"))
            .header("authorization", authorization.as_str())
            .body(())
            .expect("request");
        let (response, _) = client.send_request(request, true).expect("send");
        let response = response.await.expect("response");
        let status = response.status().as_u16();
        let mut stream = response.into_body();
        let mut body = Vec::new();
        while let Some(chunk) = stream.data().await {
            let chunk = chunk.expect("body");
            let _ = stream.flow_control().release_capacity(chunk.len());
            body.extend_from_slice(&chunk);
        }
        let body = String::from_utf8_lossy(&body);
        let context = format!("{method} {authorization:.20}");
        if want == 200 {
            assert_eq!(status, want, "{context}: {body}");
        } else {
            assert_scopegates_denial(status, &body, want, error_for(want, true), &context);
        }
    }

    // Identity headers under their underscore spelling never reach the upstream: Envoy refuses
    // the request itself (headers_with_underscores_action: REJECT_REQUEST).
    for name in ["x_auth_subject", "x_auth_scopes"] {
        let response = stack
            .get("/public", &[(name, "admin"), ("authorization", &good)])
            .await;
        envoys_own_answer(response, 400, name).await;
    }
    let response = stack.get("/public", &[]).await;
    assert_eq!(response.status(), 200);
}

/// Route rules needing `admin`, as in issue #20, under `default = "allow"`.
fn admin_rules(issuer: &str, jwks_uri: &str) -> String {
    use common::stack::DEMO_AUDIENCE;
    format!(
        r#"issuer = "{issuer}"
jwks_uri = "{jwks_uri}"
audience = "{DEMO_AUDIENCE}"
default = "allow"
[[rules]]
path = "/admin"
scopes = ["admin"]
[[rules]]
prefix = "/admin/"
scopes = ["admin"]
[[rules]]
path = "/reports/annual"
scopes = ["admin"]
[[rules]]
template = "/items/{{id}}/notes"
scopes = ["admin"]
[[rules]]
path = "/export"
methods = ["POST"]
scopes = ["export"]
[[rules]]
prefix = "/export/"
scopes = ["export"]
"#
    )
}

/// Format suffixes (Rails' `(.:format)`, DRF's format suffixes, Spring MVC's suffix matching)
/// and Unicode compatibility forms (NFKC: fullwidth letters) through Envoy with the shipped
/// configuration, under `default = "allow"`: each reaches an upstream's protected handler, so
/// each is refused with scopegate's 400 whatever the token, while the paths as written are
/// decided by their rules.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn format_suffixes_and_compatibility_forms_through_envoy() {
    let stack = Stack::start_with_config(admin_rules).await;
    let admin = format!("Bearer {}", stack.token("admin"));
    let weak = format!("Bearer {}", stack.token("openid"));
    for path in ["/admin", "/reports/annual", "/items/1/notes"] {
        assert_eq!(stack.get(path, &[]).await.status(), 401, "{path}");
        let response = stack.get(path, &[("authorization", &admin)]).await;
        assert_eq!(response.status(), 200, "{path}");
    }
    for path in [
        "/admin.json",
        "/admin.xml",
        "/reports/annual.json",
        "/items/1/notes.json",
        "/ADMIN.json",
        "/admin.json/",
        "/admin.tar.gz",
        // ａdmin, ＡＤＭＩＮ, with a suffix, a fullwidth full stop before the suffix.
        "/%EF%BD%81dmin",
        "/%EF%BC%A1%EF%BC%A4%EF%BC%AD%EF%BC%A9%EF%BC%AE",
        "/%EF%BD%81dmin.json",
        "/admin%EF%BC%8Ejson",
        // Compatibility forms that gain a delimiter or a dot segment: ／..／, ‥, ＼.
        "/public%EF%BC%8F..%EF%BC%8Fadmin",
        "/public/%E2%80%A5/admin",
        "/public%EF%BC%BCadmin",
    ] {
        for authorization in [None, Some(&weak), Some(&admin)] {
            let headers: Vec<(&str, &str)> = authorization
                .map(|a| ("authorization", a.as_str()))
                .into_iter()
                .collect();
            let (status, _, body) = json(stack.get(path, &headers).await).await;
            assert_eq!(
                (status, body["error"].as_str()),
                (400, Some("invalid_request")),
                "{path} {authorization:.20?}: {body}"
            );
        }
    }
    // A suffix that reaches nothing protected, or the same requirement: decided as usual.
    let (status, _, body) = json(stack.get("/other.json", &[]).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(stack.get("/admin/users.json", &[]).await.status(), 401);
}

/// A rule for `POST /export` beside `prefix = "/export/"` under `default = "allow"`, through
/// Envoy: `GET`, `DELETE` and `HEAD /export`, which Express (non-strict routing) and ASP.NET
/// Core serve from the `/export/` handlers, are refused with 400 as they are without the POST
/// rule, instead of passing with no token; `POST /export` keeps its rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configured_path_exemption_holds_only_for_its_rules_methods_through_envoy() {
    use reqwest::Method;
    let stack = Stack::start_with_config(admin_rules).await;
    let export = format!("Bearer {}", stack.token("export"));
    for method in [Method::GET, Method::DELETE, Method::PUT] {
        for headers in [&[][..], &[("authorization", export.as_str())][..]] {
            let (status, _, body) =
                json(stack.send(method.clone(), "/export", headers).await).await;
            assert_eq!(
                (status, body["error"].as_str()),
                (400, Some("invalid_request")),
                "{method} /export: {body}"
            );
        }
    }
    // A HEAD answer has no body: the status alone says it was refused.
    let response = stack.send(Method::HEAD, "/export", &[]).await;
    assert_eq!(response.status(), 400);
    let response = stack.send(Method::POST, "/export", &[]).await;
    assert_eq!(response.status(), 401);
    let headers = [("authorization", export.as_str())];
    let response = stack.send(Method::POST, "/export", &headers).await;
    assert_eq!(response.status(), 200);
    assert_eq!(stack.get("/export/", &[]).await.status(), 401);
    assert_eq!(stack.get("/export/", &headers).await.status(), 200);
    assert_eq!(stack.get("/elsewhere", &[]).await.status(), 200);
}

/// Bytes that are not UTF-8 in the one header Envoy forwards to scopegate. A Check carrying a
/// string field that is not UTF-8 would fail to decode in tonic (INTERNAL, before scopegate's
/// handler runs, and so fail open under `failure_mode_allow: true`); Envoy's path must stay
/// in-band: scopegate's own JSON answer, never Envoy's status_on_error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_utf8_header_bytes_through_envoy_are_answered_in_band() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stack = Stack::start().await;
    let addr = stack.url.trim_start_matches("http://").to_string();
    let token = stack.token("read:messages");
    for value in [
        b"Bearer \xff\xfe".to_vec(),
        [b"Bearer ".as_slice(), token.as_bytes(), b"\xc3"].concat(),
        b"\xe9t\xe9".to_vec(),
    ] {
        let mut request =
            b"GET /restricted_resource HTTP/1.1\r\nhost: x\r\nconnection: close\r\nauthorization: "
                .to_vec();
        request.extend_from_slice(&value);
        request.extend_from_slice(b"\r\n\r\n");
        let mut socket = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connect");
        socket.write_all(&request).await.expect("write");
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut answer)).await;
        let answer = String::from_utf8_lossy(&answer);
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
        let status = head.split(' ').nth(1).unwrap_or("");
        assert!(
            matches!(status, "400" | "401") && body.contains("\"error\":"),
            "{value:?}: {answer}"
        );
    }
}

/// scopegate closes connections that carry no request for `idle_timeout_seconds` (2 s here, so
/// that Envoy's pooled connection is closed under it between two bursts, while the health-check
/// connection, probed every second, never idles). Envoy reconnects:
/// nothing is lost, every request of the next burst gets scopegate's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_reconnects_after_an_idle_close_and_loses_nothing() {
    let stack = Stack::start_with_gate_config("server = { idle_timeout_seconds = 2 }").await;
    let good = format!("Bearer {}", stack.token("read:messages"));
    let connections = || stack.stat("cluster.scopegate.upstream_cx_total");
    let burst = || async {
        for i in 0..20 {
            let (authorization, want) = if i % 2 == 0 {
                (Some(good.as_str()), 200)
            } else {
                (None, 401)
            };
            let headers: Vec<(&str, &str)> = authorization
                .map(|a| vec![("authorization", a)])
                .unwrap_or_default();
            let response = stack.get("/restricted_resource", &headers).await;
            let context = format!("request {i} of a burst");
            if want == 200 {
                assert_eq!(response.status(), want, "{context}");
            } else {
                scopegates_denial(response, want, "unauthorized", &context).await;
            }
        }
    };
    burst().await;
    let before = connections().await;
    let closed = stack.stat("cluster.scopegate.upstream_cx_destroy").await;
    // After the idle timeout scopegate closes the pooled connection (health checks use a
    // connection of their own, which stays busy): wait until Envoy has seen it go.
    eventually(
        "the pooled connection closed for idleness",
        Duration::from_secs(30),
        || async { stack.stat("cluster.scopegate.upstream_cx_destroy").await > closed },
    )
    .await;
    burst().await;
    let after = connections().await;
    assert!(
        after > before,
        "Envoy should have opened a new connection after the idle close ({before} then {after})"
    );
}

/// Requests timed to reach scopegate as its idle timeout (1 s) closes Envoy's pooled connection,
/// round after round: every one gets scopegate's answer, never Envoy's `status_on_error` 503.
/// scopegate sends GOAWAY and waits for streams in flight; Envoy sends its next request on a new
/// connection. Before, the idle timer cut the connection's read side, and a request caught in
/// that moment got 503. (The shipped Envoy files close idle connections first, after 60 s;
/// Istio's pools keep them for an hour.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_racing_scopegates_idle_close_are_all_answered() {
    let stack = Stack::start_with_gate_config("server = { idle_timeout_seconds = 1 }").await;
    let connections = || stack.stat("cluster.scopegate.upstream_cx_total");
    let before = connections().await;
    for round in 0..24u64 {
        // From 6 ms before the idle deadline to 5 ms after it, counted from the last answer.
        tokio::time::sleep(Duration::from_millis(994 + round % 12)).await;
        let response = stack.get("/restricted_resource", &[]).await;
        assert_eq!(
            response.status(),
            401,
            "round {round}: scopegate's answer, not Envoy's status_on_error"
        );
    }
    let after = connections().await;
    assert!(
        after > before + 10,
        "the idle close should have raced most rounds ({before} then {after} connections)"
    );
}

/// Forwarded claims through Envoy: the upstream sees the token's claim under the configured
/// header, never a client's copy, whether the token lacks the claim or the route is public.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_claims_through_envoy() {
    use common::stack::DEMO_AUDIENCE;
    let stack = Stack::start_with_config(|issuer, jwks_uri| {
        format!(
            r#"issuer = "{issuer}"
jwks_uri = "{jwks_uri}"
audience = "{DEMO_AUDIENCE}"
forward_claims = {{ "x-auth-email" = "email", "x-auth-org-id" = "/org/id" }}
[[rules]]
path = "/restricted_resource"
scopes = ["read:messages"]
[[rules]]
path = "/public"
public = true
"#
        )
    })
    .await;
    let mut extra = serde_json::Map::new();
    extra.insert("email".into(), serde_json::json!("e2e@example.com"));
    extra.insert("org".into(), serde_json::json!({"id": "acme"}));
    let full = format!("Bearer {}", stack.token_with("read:messages", extra));
    let bare = format!("Bearer {}", stack.token("read:messages"));
    let spoof = [
        ("x-auth-email", "attacker@example.com"),
        ("x-auth-org-id", "evil"),
    ];
    for (path, authorization, email, org) in [
        (
            "/restricted_resource",
            Some(&full),
            Some("e2e@example.com"),
            Some("acme"),
        ),
        ("/restricted_resource", Some(&bare), None, None),
        ("/public", None, None, None),
    ] {
        let mut headers: Vec<(&str, &str)> = spoof.to_vec();
        if let Some(a) = authorization {
            headers.push(("authorization", a));
        }
        let response = stack.get(path, &headers).await;
        let (status, _, body) = json(response).await;
        assert_eq!(status, 200, "{path}: {body}");
        let seen = &body["auth_headers"];
        assert_eq!(seen["x-auth-email"].as_str(), email, "{path}: {body}");
        assert_eq!(seen["x-auth-org-id"].as_str(), org, "{path}: {body}");
    }
}

/// Identity that would read differently upstream, through Envoy: a `sub` or forwarded claim with
/// surrounding whitespace (which the upstream's HTTP/1.1 parser strips: `"  alice  "` would
/// arrive as `alice`), with a bidirectional control or zero-width space, and an array element
/// holding the `,` that joins forwarded arrays get scopegate's 401; the comma format and the
/// zero-width joiner of emoji reach the upstream unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_that_reads_differently_upstream_through_envoy() {
    use common::stack::DEMO_AUDIENCE;
    let stack = Stack::start_with_config(|issuer, jwks_uri| {
        format!(
            r#"issuer = "{issuer}"
jwks_uri = "{jwks_uri}"
audience = "{DEMO_AUDIENCE}"
forward_claims = {{ "x-auth-email" = "email", "x-auth-groups" = "groups" }}
[[rules]]
path = "/restricted_resource"
scopes = ["read:messages"]
[[rules]]
path = "/public"
public = true
"#
        )
    })
    .await;
    let token = |claim: &str, value: serde_json::Value| {
        let mut extra = serde_json::Map::new();
        extra.insert(claim.into(), value);
        format!("Bearer {}", stack.token_with("read:messages", extra))
    };
    for (claim, value) in [
        ("sub", serde_json::json!("  alice  ")),
        ("sub", serde_json::json!("alice\t")),
        ("sub", serde_json::json!("nimda\u{202e}admin")),
        ("sub", serde_json::json!("ali\u{200b}ce")),
        ("sub", serde_json::json!("alice\u{2028}")),
        ("email", serde_json::json!(" alice@example.com")),
        ("email", serde_json::json!("alice\u{2066}@example.com")),
        ("groups", serde_json::json!(["eng,admin"])),
        ("groups", serde_json::json!(["eng", " admin"])),
    ] {
        let authorization = token(claim, value.clone());
        let response = stack
            .get("/restricted_resource", &[("authorization", &authorization)])
            .await;
        let (status, headers, body) = json(response).await;
        assert_eq!(status, 401, "{claim}: {value}: {body}");
        assert_eq!(body["error"], "invalid_token", "{claim}: {value}: {body}");
        assert!(
            header(&headers, "www-authenticate").contains("invalid_token"),
            "{claim}: {value}"
        );
    }
    let mut extra = serde_json::Map::new();
    extra.insert(
        "sub".into(),
        serde_json::json!("\u{1f469}\u{200d}\u{1f4bb} alice"),
    );
    extra.insert("groups".into(), serde_json::json!(["eng", "admin"]));
    let authorization = format!("Bearer {}", stack.token_with("read:messages", extra));
    let response = stack
        .get("/restricted_resource", &[("authorization", &authorization)])
        .await;
    let (status, _, body) = json(response).await;
    assert_eq!(status, 200, "{body}");
    let seen = &body["auth_headers"];
    assert_eq!(
        seen["x-auth-subject"].as_str(),
        Some("\u{1f469}\u{200d}\u{1f4bb} alice"),
        "{body}"
    );
    assert_eq!(seen["x-auth-groups"].as_str(), Some("eng,admin"), "{body}");
}

/// Two issuers behind Envoy: the development issuer (RS256, by jwks_uri) and one found by OIDC
/// discovery under a path, publishing an EC P-256 key (ES256). Each issuer's tokens pass; a
/// token naming one issuer but signed by the other's key, a forged one, and one naming an
/// unknown issuer get scopegate's 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_issuers_and_an_ec_key_through_envoy() {
    use base64::Engine as _;
    use common::stack::DEMO_AUDIENCE;
    use common::{CurveKey, JwksServer, Reply};

    let key = CurveKey::ec("ec-1", "P-256");
    let forger = CurveKey::ec("ec-1", "P-256");

    let idp = JwksServer::start(Reply::Respond(404, vec![], vec![])).await;
    let staff = idp.url_of("/realms/staff");
    idp.route(
        "/realms/staff/.well-known/openid-configuration",
        Reply::json(&serde_json::json!({
            "issuer": staff,
            "jwks_uri": idp.url_of("/realms/staff/certs"),
        })),
    );
    idp.route(
        "/realms/staff/certs",
        Reply::json(&serde_json::json!({ "keys": [key.jwk.clone()] })),
    );
    let stack = Stack::start_with_config(|issuer, jwks_uri| {
        format!(
            r#"
            [[issuers]]
            issuer = "{issuer}"
            audience = "{DEMO_AUDIENCE}"
            jwks_uri = "{jwks_uri}"

            [[issuers]]
            issuer = "{staff}"
            audience = "{DEMO_AUDIENCE}"
            algorithms = ["ES256"]

            [[rules]]
            path = "/restricted_resource"
            scopes = ["read:messages"]

            [[rules]]
            path = "/public"
            public = true
            "#
        )
    })
    .await;
    let es256 = |iss: &str, key: &CurveKey| {
        let mut claims = common::stack::demo_claims("read:messages");
        claims["iss"] = serde_json::json!(iss);
        format!(
            "Bearer {}",
            key.mint(jsonwebtoken::Algorithm::ES256, &claims)
        )
    };
    let get = |authorization: String| {
        let stack = &stack;
        async move {
            let response = stack
                .get("/restricted_resource", &[("authorization", &authorization)])
                .await;
            json(response).await
        }
    };

    let (status, _, body) = get(format!("Bearer {}", stack.token("read:messages"))).await;
    assert_eq!(status, 200, "{body}");
    let staff_token = es256(&staff, &key);
    eventually(
        "the discovered issuer's keys",
        Duration::from_secs(15),
        || async { get(staff_token.clone()).await.0 == 200 },
    )
    .await;
    let dev_issuer = stack.token("read:messages");
    let dev_iss = {
        let payload = dev_issuer.split('.').nth(1).expect("payload");
        let claims: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .expect("b64"),
        )
        .expect("json");
        claims["iss"].as_str().expect("iss").to_string()
    };
    for (name, authorization, message) in [
        (
            "EC key under the RS256 issuer's name",
            es256(&dev_iss, &key),
            "token algorithm is not allowed",
        ),
        (
            "forged ES256",
            es256(&staff, &forger),
            "token signature is invalid",
        ),
        (
            "unknown issuer",
            es256("https://elsewhere.test/", &key),
            "token issuer is not accepted",
        ),
    ] {
        let (status, _, body) = get(authorization).await;
        assert_eq!(
            (status, body["error"].as_str(), body["message"].as_str()),
            (401, Some("invalid_token"), Some(message)),
            "{name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_configuration_trusts_an_eddsa_issuer_beside_the_rs256_one() {
    // demo/scopegate.toml as the demo runs it: the RS256 issuer by jwks_uri, the EdDSA issuer by
    // discovery, and `azp` forwarded for both.
    let stack = Stack::start().await;
    for (name, token) in [
        (
            "RS256",
            stack.token_with(
                "read:messages",
                [("azp".to_string(), "rs-client".into())]
                    .into_iter()
                    .collect(),
            ),
        ),
        ("EdDSA", stack.eddsa_token("read:messages")),
    ] {
        let good = format!("Bearer {token}");
        let (status, _, body) = json(
            stack
                .get(
                    "/restricted_resource",
                    &[("authorization", &good), ("x-auth-client", "spoofed")],
                )
                .await,
        )
        .await;
        assert_eq!(status, 200, "{name}: {body}");
        assert_eq!(body["message"], "Access Granted", "{name}");
        let expected_client = if name == "RS256" {
            "rs-client"
        } else {
            "e2e-client"
        };
        assert_eq!(
            body["auth_headers"]["x-auth-client"], expected_client,
            "{name}: the claim, never the client's copy"
        );
    }
    // The EdDSA issuer's token without the scope is 403; a spoofed client header never reaches
    // the public route.
    let weak = format!("Bearer {}", stack.eddsa_token("openid"));
    let (status, _, body) = json(
        stack
            .get("/restricted_resource", &[("authorization", &weak)])
            .await,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("insufficient_scope")),
        "{body}"
    );
    let (status, _, body) = json(stack.get("/public", &[("x-auth-client", "spoofed")]).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["auth_headers"], serde_json::json!({}), "{body}");
}

/// scopegate's decision log line for a request carries the `x-request-id` that Envoy wrote to
/// its access log for the same request (Envoy generates it; the shipped configuration passes it
/// to scopegate), so the two logs join.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decision_logs_join_envoys_access_log_by_request_id() {
    let stack = Stack::start().await;
    let path = format!("/join-check-{}", std::process::id());
    let response = stack.get(&path, &[]).await;
    scopegates_denial(response, 401, "unauthorized", &path).await;
    // Envoy's default access log line: `... "<x-request-id>" "<authority>" ...` after the path.
    let mut request_id = String::new();
    eventually("Envoy's access log line", Duration::from_secs(10), || {
        let log = stack.envoy_log();
        let found = log
            .lines()
            .find(|line| line.contains(&path))
            .and_then(|line| {
                line.split('"')
                    .find(|field| field.len() == 36 && field.matches('-').count() == 4)
                    .map(str::to_owned)
            });
        let seen = found.is_some();
        if let Some(id) = found {
            request_id = id;
        }
        async move { seen }
    })
    .await;
    eventually("scopegate's decision line", Duration::from_secs(10), || {
        let log = stack.scopegate_log();
        let joined = log.lines().any(|line| {
            line.contains("scopegate::decision")
                && line.contains(&format!("request_id=\"{request_id}\""))
                && line.contains(&format!("path=\"{path}\""))
                && line.contains("reason=missing_token")
        });
        async move { joined }
    })
    .await;
}

/// Envoy → scopegate over mutual TLS with the shipped `envoy/envoy-tls.yaml`: health checks and
/// Checks both travel over TLS with Envoy's client certificate, and every decision comes
/// through as over plaintext.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_talks_to_scopegate_over_mutual_tls() {
    let stack = Stack::start_mtls().await;
    scopegates_denial(
        stack.get("/restricted_resource", &[]).await,
        401,
        "unauthorized",
        "no token",
    )
    .await;
    let weak = format!("Bearer {}", stack.token("openid"));
    scopegates_denial(
        stack
            .get("/restricted_resource", &[("authorization", &weak)])
            .await,
        403,
        "insufficient_scope",
        "without the scope",
    )
    .await;
    let good = format!("Bearer {}", stack.token("read:messages"));
    let (status, _, body) = json(
        stack
            .get("/restricted_resource", &[("authorization", &good)])
            .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["message"], "Access Granted");
    assert!(
        stack.stat("cluster.scopegate.ssl.handshake").await > 0,
        "the Checks went over TLS"
    );
    assert_eq!(
        stack.stat("cluster.scopegate.ssl.connection_error").await,
        0
    );
}

/// The rest of the issuer rules through Envoy: a second issuer publishing the dev issuer's very
/// `kid` (neither issuer's key verifies the other's tokens), a discovery document naming another
/// issuer (that issuer's tokens get scopegate's 503, the others are unaffected), Auth0 RBAC
/// `permissions` as scopes, and EdDSA tokens, good and forged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kid_collisions_discovery_mismatch_permissions_and_eddsa_through_envoy() {
    use base64::Engine as _;
    use common::stack::DEMO_AUDIENCE;
    use common::{CurveKey, JwksServer, Reply, TestKey};

    let idp = JwksServer::start(Reply::Respond(404, vec![], vec![])).await;
    let (twin_iss, liar_iss, ed_iss) = (
        idp.url_of("/realms/twin"),
        idp.url_of("/realms/liar"),
        idp.url_of("/realms/ed"),
    );
    let ed_key = CurveKey::ed25519("ed-1");
    let ed_forger = CurveKey::ed25519("ed-1");
    idp.route(
        "/realms/liar/.well-known/openid-configuration",
        Reply::json(&serde_json::json!({
            "issuer": "https://someone-else.test/",
            "jwks_uri": idp.url_of("/realms/liar/certs"),
        })),
    );
    idp.route(
        "/realms/ed/.well-known/openid-configuration",
        Reply::json(&serde_json::json!({
            "issuer": ed_iss,
            "jwks_uri": idp.url_of("/realms/ed/certs"),
        })),
    );
    idp.route(
        "/realms/ed/certs",
        Reply::json(&serde_json::json!({ "keys": [ed_key.jwk.clone()] })),
    );
    // The twin publishes (at its jwks_uri) a key under the dev issuer's kid, set below.
    let twin_certs = idp.url_of("/realms/twin/certs");
    let stack = Stack::start_with_config(|issuer, jwks_uri| {
        format!(
            r#"
            [[issuers]]
            issuer = "{issuer}"
            audience = "{DEMO_AUDIENCE}"
            jwks_uri = "{jwks_uri}"
            scope_claims = ["scope", "permissions"]

            [[issuers]]
            issuer = "{twin_iss}"
            audience = "{DEMO_AUDIENCE}"
            jwks_uri = "{twin_certs}"

            [[issuers]]
            issuer = "{liar_iss}"
            audience = "{DEMO_AUDIENCE}"

            [[issuers]]
            issuer = "{ed_iss}"
            audience = "{DEMO_AUDIENCE}"
            algorithms = ["EdDSA"]

            [[rules]]
            path = "/restricted_resource"
            scopes = ["read:messages"]

            [[rules]]
            path = "/public"
            public = true
            "#
        )
    })
    .await;
    let dev_token = stack.token("openid");
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(dev_token.split('.').next().expect("header"))
            .expect("b64"),
    )
    .expect("json");
    let dev_kid = header["kid"].as_str().expect("kid").to_string();
    let twin = TestKey::generate(&dev_kid);
    idp.route(
        "/realms/twin/certs",
        Reply::json(&common::jwks_of(&[&twin])),
    );

    let get = |token: String| {
        let stack = &stack;
        async move {
            let authorization = format!("Bearer {token}");
            json(
                stack
                    .get("/restricted_resource", &[("authorization", &authorization)])
                    .await,
            )
            .await
        }
    };
    let claims_for = |iss: &str, extra: serde_json::Value| {
        let mut claims = common::stack::demo_claims("openid");
        claims["iss"] = serde_json::json!(iss);
        if let serde_json::Value::Object(extra) = extra {
            claims.as_object_mut().expect("claims").extend(extra);
        }
        claims
    };
    // The twin's keys load on their own schedule (its refresher retries after the 404 above).
    let twin_good = twin.mint(&claims_for(
        &twin_iss,
        serde_json::json!({"scope": "read:messages"}),
    ));
    eventually("the twin's keys", Duration::from_secs(15), || async {
        get(twin_good.clone()).await.0 == 200
    })
    .await;

    // Same kid, other issuer: the dev issuer's key never verifies a token naming the twin, and
    // the twin's key never one naming the dev issuer.
    let dev_iss = {
        let payload: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(dev_token.split('.').nth(1).expect("payload"))
                .expect("b64"),
        )
        .expect("json");
        payload["iss"].as_str().expect("iss").to_string()
    };
    let dev_signed_as_twin = stack.token_with(
        "read:messages",
        [("iss".to_string(), serde_json::json!(twin_iss))]
            .into_iter()
            .collect(),
    );
    let twin_signed_as_dev = twin.mint(&claims_for(
        &dev_iss,
        serde_json::json!({"scope": "read:messages"}),
    ));
    for (name, token) in [
        ("dev key, twin's name", dev_signed_as_twin),
        ("twin key, dev issuer's name", twin_signed_as_dev),
    ] {
        let (status, _, body) = get(token).await;
        assert_eq!(
            (status, body["message"].as_str()),
            (401, Some("token signature is invalid")),
            "{name}: {body}"
        );
    }

    // Auth0 RBAC: a grant in `permissions` counts for the issuer that lists that claim.
    let rbac = stack.token_with(
        "openid",
        [(
            "permissions".to_string(),
            serde_json::json!(["read:messages"]),
        )]
        .into_iter()
        .collect(),
    );
    assert_eq!(get(rbac).await.0, 200, "permissions as scopes");
    let twin_rbac = twin.mint(&claims_for(
        &twin_iss,
        serde_json::json!({"permissions": ["read:messages"]}),
    ));
    let (status, _, body) = get(twin_rbac).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("insufficient_scope")),
        "an issuer without permissions in scope_claims ignores it: {body}"
    );

    // A discovery document naming another issuer: that issuer's tokens get scopegate's own
    // 503 (keys unavailable), never a fetch of the document's jwks_uri, and nobody else's.
    let liar = TestKey::generate("liar-1");
    let (status, _, body) = get(liar.mint(&claims_for(
        &liar_iss,
        serde_json::json!({"scope": "read:messages"}),
    )))
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("temporarily_unavailable")),
        "{body}"
    );
    assert_eq!(idp.hits_on("/realms/liar/certs"), 0);

    // EdDSA: good and forged.
    let ed_claims = claims_for(&ed_iss, serde_json::json!({"scope": "read:messages"}));
    let ed_good = ed_key.mint(jsonwebtoken::Algorithm::EdDSA, &ed_claims);
    eventually(
        "the EdDSA issuer's keys",
        Duration::from_secs(15),
        || async { get(ed_good.clone()).await.0 == 200 },
    )
    .await;
    let (status, _, body) = get(ed_forger.mint(jsonwebtoken::Algorithm::EdDSA, &ed_claims)).await;
    assert_eq!(
        (status, body["message"].as_str()),
        (401, Some("token signature is invalid")),
        "{body}"
    );
    assert_eq!(
        get(stack.token("read:messages")).await.0,
        200,
        "the dev issuer is unaffected"
    );
}

/// Envoy → scopegate over a Unix socket with the shipped `envoy/envoy-uds.yaml` (a `pipe`
/// address): health checks and Checks both go through the socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_talks_to_scopegate_over_a_unix_socket() {
    let stack = Stack::start_uds().await;
    scopegates_denial(
        stack.get("/restricted_resource", &[]).await,
        401,
        "unauthorized",
        "no token",
    )
    .await;
    let good = format!("Bearer {}", stack.token("read:messages"));
    let (status, _, body) = json(
        stack
            .get("/restricted_resource", &[("authorization", &good)])
            .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(stack.stat("cluster.scopegate.upstream_rq_completed").await > 0);
    assert!(
        stack.stat("cluster.scopegate.health_check.success").await > 0,
        "gRPC health checks over the socket"
    );
}

/// Rules generated by `scopegate openapi-rules` from `demo/openapi.yaml`, appended to a
/// configuration whose default denies, protect the demo upstream through Envoy: each operation
/// needs what its `security` says, templated paths included, and anything the document does
/// not describe is denied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_generated_from_the_demo_openapi_document_protect_the_upstream() {
    use common::stack::DEMO_AUDIENCE;
    use reqwest::Method;
    let generated = common::scopegate_command()
        .args(["openapi-rules", "demo/openapi.yaml"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run openapi-rules");
    assert!(
        generated.status.success(),
        "{}",
        String::from_utf8_lossy(&generated.stderr)
    );
    let rules = String::from_utf8(generated.stdout).expect("UTF-8 rules");
    assert!(rules.contains("template = \"/messages/{id}\""), "{rules}");
    let stack = Stack::start_with_config(|issuer, jwks_uri| {
        format!(
            "issuer = \"{issuer}\"\njwks_uri = \"{jwks_uri}\"\naudience = \"{DEMO_AUDIENCE}\"\n\
             default = \"deny\"\n{rules}"
        )
    })
    .await;
    let bearer = |scope: &str| format!("Bearer {}", stack.token(scope));
    // (method, path, scope of the token or None, status through Envoy)
    let cases: &[(Method, &str, Option<&str>, u16)] = &[
        (
            Method::GET,
            "/restricted_resource",
            Some("read:messages"),
            200,
        ),
        (Method::GET, "/restricted_resource", Some("openid"), 403),
        (Method::GET, "/restricted_resource", None, 401),
        (
            Method::GET,
            "/another_resource",
            Some("some:other_scope"),
            200,
        ),
        (Method::GET, "/another_resource", Some("read:messages"), 403),
        (Method::GET, "/public", None, 200),
        (Method::GET, "/messages", Some("openid"), 200),
        (Method::GET, "/messages", None, 401),
        (Method::GET, "/messages/7", Some("read:messages"), 200),
        (Method::GET, "/messages/7", Some("delete:messages"), 403),
        (Method::DELETE, "/messages/7", Some("delete:messages"), 200),
        (Method::DELETE, "/messages/7", Some("read:messages"), 403),
        // Not in the document: an extra segment, another method, another path.
        (
            Method::GET,
            "/messages/7/attachments",
            Some("read:messages"),
            403,
        ),
        (
            Method::POST,
            "/messages",
            Some("read:messages delete:messages"),
            403,
        ),
        (Method::GET, "/admin", Some("read:messages"), 403),
    ];
    for (method, path, scope, status) in cases {
        let authorization = scope.map(bearer);
        let headers: Vec<(&str, &str)> = authorization
            .iter()
            .map(|a| ("authorization", a.as_str()))
            .collect();
        let response = stack.send(method.clone(), path, &headers).await;
        let got = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        let context = format!("{method} {path} {scope:?}");
        if *status == 200 {
            assert_eq!(got, *status, "{context}: {body}");
        } else {
            let error = error_for(*status, scope.is_some());
            assert_scopegates_denial(got, &body, *status, error, &context);
        }
    }
}

/// Method overrides through Envoy, in front of an upstream whose framework would run the
/// handler they name (Rails, Express, ASP.NET Core, Spring): a `write:items` token must not
/// reach the DELETE handler, nor a request without one the protected DELETE of a public GET path
/// under `default = "allow"`. Envoy must pass the override headers and `content-type` on
/// (`allowed_headers`), and the query untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn method_overrides_through_envoy() {
    use common::stack::DEMO_AUDIENCE;
    use reqwest::Method;
    let stack = Stack::start_with_config(|issuer, jwks_uri| {
        format!(
            "issuer = \"{issuer}\"\njwks_uri = \"{jwks_uri}\"\naudience = \"{DEMO_AUDIENCE}\"\n\
             default = \"allow\"\n\
             [[rules]]\npath = \"/restricted_resource\"\nscopes = [\"read:messages\"]\n\
             [[rules]]\ntemplate = \"/items/{{id}}\"\nmethods = [\"GET\"]\nscopes = [\"read:items\"]\n\
             [[rules]]\ntemplate = \"/items/{{id}}\"\nmethods = [\"POST\", \"PUT\"]\nscopes = [\"write:items\"]\n\
             [[rules]]\ntemplate = \"/items/{{id}}\"\nmethods = [\"DELETE\"]\nscopes = [\"delete:items\"]\n\
             [[rules]]\npath = \"/notes\"\nmethods = [\"DELETE\"]\nscopes = [\"delete:notes\"]\n"
        )
    })
    .await;
    let write = format!("Bearer {}", stack.token("write:items"));
    let form = ("content-type", "application/x-www-form-urlencoded");
    let multipart = ("content-type", "multipart/form-data; boundary=b");
    // (method, path, headers besides the token, body, send the token, status through Envoy)
    type Case<'a> = (Method, &'a str, Vec<(&'a str, &'a str)>, &'a str, bool, u16);
    let cases: Vec<Case> = vec![
        (Method::POST, "/items/1", vec![], "", true, 200),
        (
            Method::POST,
            "/items/1",
            vec![("x-http-method-override", "DELETE")],
            "",
            true,
            400,
        ),
        (
            Method::POST,
            "/items/1",
            vec![("x-http-method", "DELETE")],
            "",
            true,
            400,
        ),
        (
            Method::POST,
            "/items/1",
            vec![("x-method-override", "delete")],
            "",
            true,
            400,
        ),
        (
            Method::POST,
            "/items/1?_method=DELETE",
            vec![],
            "",
            true,
            400,
        ),
        (
            Method::POST,
            "/items/1?%5Fmethod=%64elete",
            vec![],
            "",
            true,
            400,
        ),
        (
            Method::GET,
            "/items/1?_method=DELETE",
            vec![],
            "",
            true,
            400,
        ),
        // Two override headers: Envoy joins them with a comma.
        (
            Method::POST,
            "/items/1",
            vec![
                ("x-http-method-override", "PUT"),
                ("x-http-method-override", "DELETE"),
            ],
            "",
            true,
            400,
        ),
        // A form body may hold `_method`, which scopegate never sees.
        (
            Method::POST,
            "/items/1",
            vec![form],
            "_method=delete",
            true,
            400,
        ),
        (
            Method::POST,
            "/items/1",
            vec![multipart],
            "--b\r\ncontent-disposition: form-data; name=\"_method\"\r\n\r\ndelete\r\n--b--\r\n",
            true,
            400,
        ),
        (
            Method::POST,
            "/items/1",
            vec![("content-type", "application/json")],
            "{}",
            true,
            200,
        ),
        (
            Method::POST,
            "/items/1",
            vec![("x-http-method-override", "PUT")],
            "",
            true,
            200,
        ),
        // default = "allow": the public GET of a path whose DELETE is protected.
        (Method::GET, "/notes", vec![], "", false, 200),
        (Method::GET, "/notes?_method=DELETE", vec![], "", false, 400),
        (
            Method::GET,
            "/notes",
            vec![("x-http-method-override", "DELETE")],
            "",
            false,
            400,
        ),
        (
            Method::POST,
            "/notes",
            vec![form],
            "_method=DELETE",
            false,
            400,
        ),
        (Method::POST, "/elsewhere", vec![form], "a=1", false, 200),
    ];
    for (method, path, headers, body, token, status) in cases {
        let mut request = stack
            .http
            .request(method.clone(), format!("{}{path}", stack.url))
            .body(body.to_owned());
        for (name, value) in &headers {
            request = request.header(*name, *value);
        }
        if token {
            request = request.header("authorization", &write);
        }
        let response = request.send().await.expect("Envoy answers");
        let got = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        assert_eq!(got, status, "{method} {path} {headers:?}: {text}");
        if status == 400 {
            // scopegate's answer, not Envoy's.
            let body: Value = serde_json::from_str(&text).expect("scopegate's JSON");
            assert_eq!(body["error"], "invalid_request", "{method} {path}: {body}");
        }
    }
}

/// Forged CORS preflights through Envoy (its CORS filter has no policy here, so every `OPTIONS`
/// reaches ext_authz) with `cors_preflight = "allow"` under `default = "deny"`: an invented
/// `Origin`, no token. An explicit `OPTIONS` rule wins; otherwise the preflight reaches the
/// upstream only where the request it announces would reach a rule that does not deny. A rule
/// without methods stays open to it, and scopegate says so at start-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_preflights_through_envoy() {
    use common::stack::DEMO_AUDIENCE;
    let stack = Stack::start_with_config(|issuer, jwks_uri| {
        format!(
            "issuer = \"{issuer}\"\njwks_uri = \"{jwks_uri}\"\naudience = \"{DEMO_AUDIENCE}\"\n\
             cors_preflight = \"allow\"\ndefault = \"deny\"\n\
             [[rules]]\npath = \"/public\"\npublic = true\n\
             [[rules]]\npath = \"/restricted_resource\"\nmethods = [\"GET\"]\nscopes = [\"read:messages\"]\n\
             [[rules]]\npath = \"/admin/users\"\nmethods = [\"OPTIONS\"]\nscopes = [\"admin\"]\n\
             [[rules]]\nprefix = \"/admin/\"\nmethods = [\"GET\"]\nscopes = [\"admin\"]\n\
             [[rules]]\ntemplate = \"/items/{{id}}\"\nmethods = [\"GET\"]\nscopes = [\"read:items\"]\n\
             [[rules]]\nname = \"reports\"\nprefix = \"/reports/\"\nscopes = [\"reports\"]\n"
        )
    })
    .await;
    // (path, announced method, status through Envoy)
    for (path, announced, status) in [
        // The explicit OPTIONS rule: no token, 401.
        ("/admin/users", "GET", 401),
        // The announced request decides: a GET reaches the admin rule, a DELETE the deny default.
        ("/admin/other", "DELETE", 401),
        ("/admin/other", "GET", 200),
        ("/items/7", "PUT", 401),
        ("/items/7", "GET", 200),
        ("/elsewhere", "GET", 401),
        // A rule without methods takes every announced method: the documented gap.
        ("/reports/q1", "DELETE", 200),
    ] {
        let response = stack
            .send(
                reqwest::Method::OPTIONS,
                path,
                &[
                    ("origin", "https://invented.example"),
                    ("access-control-request-method", announced),
                ],
            )
            .await;
        let got = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let context = format!("OPTIONS {path} announcing {announced}");
        assert_eq!(got, status, "{context}: {text}");
        if status != 200 {
            assert_scopegates_denial(got, &text, status, error_for(status, false), &context);
        }
        if status == 200 {
            // The upstream's answer, reached without any identity.
            let body: Value = serde_json::from_str(&text).expect("the upstream's JSON");
            assert_eq!(body["subject"], Value::Null, "{body}");
        }
    }
    let log = stack.scopegate_log();
    assert!(
        log.contains("rules[5]") && log.contains("reports") && log.contains("has no methods"),
        "the start-up warning names the rule: {log}"
    );
}

/// Rules generated from a document that takes an operation's `security` through a YAML merge
/// key, documents one method per path and lists two servers, under the demo's `default =
/// "authenticated"`: through Envoy, the merged scope is required, a method the document does
/// not list is denied rather than left to the default, and the second server's base path is
/// protected like the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_rules_keep_merged_security_close_undocumented_methods_and_cover_every_server() {
    use common::stack::DEMO_AUDIENCE;
    use reqwest::Method;
    let dir = tempfile::tempdir().expect("scratch dir");
    let spec = dir.path().join("api.yaml");
    std::fs::write(
        &spec,
        "openapi: 3.1.0\n\
         info: {title: merged, version: \"1\"}\n\
         x-readers: &readers\n  security: [{dev_issuer: [read:messages]}]\n\
         security: [{dev_issuer: []}]\n\
         servers: [{url: \"http://127.0.0.1:8080\"}, {url: /v2}]\n\
         components: {securitySchemes: {dev_issuer: {type: oauth2, flows: {}}}}\n\
         paths:\n\
         \x20 /public: {get: {security: []}}\n\
         \x20 /messages:\n    get:\n      <<: *readers\n      operationId: listMessages\n\
         \x20 /messages/{id}: {delete: {security: [{dev_issuer: [delete:messages]}]}}\n",
    )
    .expect("write spec");
    let generated = common::scopegate_command()
        .arg("openapi-rules")
        .arg(&spec)
        .output()
        .expect("run openapi-rules");
    assert!(
        generated.status.success(),
        "{}",
        String::from_utf8_lossy(&generated.stderr)
    );
    let rules = String::from_utf8(generated.stdout).expect("UTF-8 rules");
    let stack = Stack::start_with_config(|issuer, jwks_uri| {
        format!(
            "issuer = \"{issuer}\"\njwks_uri = \"{jwks_uri}\"\naudience = \"{DEMO_AUDIENCE}\"\n\
             default = \"authenticated\"\n{rules}"
        )
    })
    .await;
    let bearer = |scope: &str| format!("Bearer {}", stack.token(scope));
    // (method, path, scope of the token or None, status through Envoy)
    let cases: &[(Method, &str, Option<&str>, u16)] = &[
        // The merged security, under both servers.
        (Method::GET, "/messages", Some("read:messages"), 200),
        (Method::GET, "/messages", Some("openid"), 403),
        (Method::GET, "/v2/messages", Some("read:messages"), 200),
        (Method::GET, "/v2/messages", Some("openid"), 403),
        (Method::GET, "/v2/messages", None, 401),
        // Methods the document does not list: denied after authentication.
        (Method::POST, "/messages", Some("read:messages"), 403),
        (Method::PUT, "/v2/messages", Some("read:messages"), 403),
        (Method::GET, "/messages/7", Some("delete:messages"), 403),
        (Method::DELETE, "/messages/7", Some("delete:messages"), 200),
        (Method::DELETE, "/v2/messages/7", Some("read:messages"), 403),
        (Method::GET, "/public", None, 200),
        (Method::POST, "/public", None, 401),
        (Method::POST, "/public", Some("openid"), 403),
        // Paths the document does not describe: the configuration's default.
        (Method::POST, "/elsewhere", Some("openid"), 200),
    ];
    for (method, path, scope, status) in cases {
        let authorization = scope.map(bearer);
        let headers: Vec<(&str, &str)> = authorization
            .iter()
            .map(|a| ("authorization", a.as_str()))
            .collect();
        let response = stack.send(method.clone(), path, &headers).await;
        let got = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        let context = format!("{method} {path} {scope:?}");
        if *status == 200 {
            assert_eq!(got, *status, "{context}: {body}");
        } else {
            let error = error_for(*status, scope.is_some());
            assert_scopegates_denial(got, &body, *status, error, &context);
        }
    }
}
