//! Path templates, shadow rules and CORS preflights, through real Checks: templates decide
//! whole segments; a shadow rule is counted and logged with what it would have decided while the
//! next rule or the default decides; a browser's preflight passes only when asked for, and
//! nothing else that looks like one does.

use serde_json::Value;

use crate::common::binary::Binary;
use crate::common::*;
use crate::observability::{sample, scrape};

#[tokio::test]
async fn templates_decide_whole_segments_through_check() {
    let env = Env::start(
        "default = \"deny\"\n\
         [[rules]]\npath = \"/items/mine\"\n\
         [[rules]]\ntemplate = \"/items/{id}\"\nmethods = [\"GET\"]\nscopes = [\"read:items\"]\n\
         [[rules]]\ntemplate = \"/items/{id}/notes/{rest=**}\"\nall_scopes = [\"read:items\", \"notes\"]\n\
         [[rules]]\ntemplate = \"/files/{**}\"\npublic = true\n",
    )
    .await;
    // (method, path, scope of the token or None for no token, HTTP status)
    let cases: &[(&str, &str, Option<&str>, i32)] = &[
        ("GET", "/items/42", Some("read:items"), 200),
        ("HEAD", "/items/42", Some("read:items"), 200),
        ("GET", "/items/42", Some("openid"), 403),
        ("GET", "/items/42", None, 401),
        ("GET", "/items/mine", Some("openid"), 200),
        // Not the template: another method, an extra segment, an empty segment.
        ("PUT", "/items/42", Some("read:items"), 403),
        ("GET", "/items/42/other", Some("read:items"), 403),
        ("GET", "/items//42", Some("read:items"), 400),
        ("GET", "/items/42/notes/1/2", Some("read:items notes"), 200),
        ("GET", "/items/42/notes/1", Some("read:items"), 403),
        // `{**}` needs one segment or more.
        ("GET", "/items/42/notes", Some("read:items notes"), 403),
        ("GET", "/files/a/b.txt", None, 200),
        ("GET", "/files/", None, 401),
        ("GET", "/files", None, 401),
        // Readings that reach the template are refused as for literal rules.
        ("GET", "/ITEMS/42", Some("read:items"), 400),
        ("GET", "/items/42/", Some("read:items"), 400),
        ("GET", "/items/%34%32", Some("read:items"), 200),
    ];
    for (method, path, scope, status) in cases {
        let answer = match scope {
            Some(scope) => env.ask_with_scope(method, path, scope).await,
            None => env.ask(method, path, None).await,
        };
        assert_eq!(
            answer.status(),
            *status,
            "{method} {path} {scope:?}: {answer:?}"
        );
    }
}

fn shadow_config(jwks_uri: &str, default: &str) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\ndecision_log = \"all\"\n\
         issuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\njwks_uri = \"{jwks_uri}\"\n\
         default = \"{default}\"\n\
         [[rules]]\nname = \"admin rollout\"\ntemplate = \"/admin/{{**}}\"\nscopes = [\"admin\"]\nshadow = true\n\
         [[rules]]\nname = \"status\"\npath = \"/status\"\npublic = true\n\
         [[rules]]\nname = \"status would need a token\"\npath = \"/status\"\nshadow = true\n"
    )
}

#[tokio::test]
async fn shadow_rules_are_counted_and_logged_but_never_enforced() {
    let key = TestKey::generate("shadow-kid");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
    for (default, default_status, default_reason) in [
        ("deny", 403, "route_denied"),
        ("authenticated", 200, "authorized"),
    ] {
        let binary = Binary::start_json(
            &format!("shadow-{default}"),
            &shadow_config(&jwks.url(), default),
            "info",
        )
        .await;
        binary.keys_loaded().await;
        let metrics = binary.metrics_addr().await;
        let mut client = binary.client().await;
        let admin = bearer(&key.mint(&claims("admin")));
        let user = bearer(&key.mint(&claims("openid")));
        // (path, Authorization, enforced status)
        let cases = [
            ("/admin/users", Some(&admin), default_status),
            ("/admin/users", Some(&user), default_status),
            ("/admin/users", None, 401),
            ("/status", None, 200),
        ];
        for (path, authorization, status) in cases {
            let headers: Vec<(&str, &str)> = authorization
                .map(|a| {
                    vec![
                        ("authorization", a.as_str()),
                        ("x-request-id", "shadow-req"),
                    ]
                })
                .unwrap_or_else(|| vec![("x-request-id", "shadow-req")]);
            let answer = Answer::of(
                &client
                    .check(request("GET", path, &headers))
                    .await
                    .expect("in-band")
                    .into_inner(),
            );
            assert_eq!(answer.status(), status, "default {default}: GET {path}");
        }

        let scrape = scrape(&metrics).await;
        let shadow = |rule, decision| {
            sample(
                &scrape,
                "scopegate_shadow_decisions_total",
                &[("rule", rule), ("decision", decision)],
            )
        };
        assert_eq!(shadow("admin rollout", "allow"), 1.0, "default {default}");
        assert_eq!(shadow("admin rollout", "deny"), 2.0, "default {default}");
        assert_eq!(shadow("status would need a token", "deny"), 1.0);
        assert_eq!(shadow("status would need a token", "allow"), 0.0);
        // The Checks themselves were decided by the default and the public rule only.
        let checks = |rule| {
            scrape
                .samples
                .iter()
                .filter(|s| s.metric == "scopegate_checks_total")
                .filter(|s| s.labels.get("rule") == Some(rule))
                .count()
        };
        assert_eq!(checks("admin rollout"), 0, "a shadow rule never decides");
        assert_eq!(checks("status would need a token"), 0);
        assert_eq!(
            sample(
                &scrape,
                "scopegate_checks_total",
                &[("rule", "default"), ("reason", default_reason)]
            ),
            2.0,
            "default {default}"
        );

        // One shadow log line per evaluation, with the rule and its would-be answer.
        let line = binary
            .wait_for_log("scopegate::shadow", std::time::Duration::from_secs(10))
            .await;
        let shadow_lines: Vec<Value> = binary
            .log_text()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|v| v["target"] == "scopegate::shadow")
            .collect();
        assert_eq!(shadow_lines.len(), 4, "{line}");
        assert!(
            shadow_lines.iter().any(|v| v["rule"] == "admin rollout"
                && v["decision"] == "deny"
                && v["status"] == 403
                && v["request_id"] == "shadow-req"),
            "{shadow_lines:#?}"
        );
        assert!(
            !binary
                .log_text()
                .contains(admin.trim_start_matches("Bearer ")),
            "a token was logged"
        );
    }
}

#[tokio::test]
async fn cors_preflights_pass_only_when_asked_for_and_only_real_ones() {
    let rules = "[[rules]]\nprefix = \"/api/\"\nscopes = [\"read\"]\n";
    let preflight: &[(&str, &str)] = &[
        ("origin", "https://app.example"),
        ("access-control-request-method", "DELETE"),
    ];
    let allowing = Env::start(&format!("cors_preflight = \"allow\"\n{rules}")).await;
    let default = Env::start(rules).await;
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut headers = preflight.to_vec();
        headers.extend_from_slice(extra);
        headers
    };
    // (gate, method, path, headers, HTTP status)
    type Case<'a> = (&'a Env, &'a str, &'a str, Vec<(&'a str, &'a str)>, i32);
    let cases: Vec<Case> = vec![
        (&allowing, "OPTIONS", "/api/items", preflight.to_vec(), 200),
        // An identity the client sends along is not passed on.
        (
            &allowing,
            "OPTIONS",
            "/api/items",
            with(&[("x-auth-subject", "admin"), ("x-auth-scopes", "read")]),
            200,
        ),
        // The default decides preflights like any request.
        (&default, "OPTIONS", "/api/items", preflight.to_vec(), 401),
        // Not a preflight: a method other than OPTIONS, a missing header, credentials.
        (&allowing, "DELETE", "/api/items", preflight.to_vec(), 401),
        (&allowing, "options", "/api/items", preflight.to_vec(), 401),
        (&allowing, "OPTIONS", "/api/items", vec![preflight[0]], 401),
        (&allowing, "OPTIONS", "/api/items", vec![preflight[1]], 401),
        (
            &allowing,
            "OPTIONS",
            "/api/items",
            vec![("origin", ""), preflight[1]],
            401,
        ),
        (
            &allowing,
            "OPTIONS",
            "/api/items",
            with(&[("authorization", "Bearer not.a.token")]),
            401,
        ),
        // A refused path stays refused.
        (
            &allowing,
            "OPTIONS",
            "/api/../admin",
            preflight.to_vec(),
            400,
        ),
    ];
    for (gate, method, path, headers, status) in cases {
        let answer = Answer::of(&gate.gate.check(request(method, path, &headers)).await);
        assert_eq!(answer.status(), status, "{method} {path} {headers:?}");
        if status == 200 {
            // An anonymous allow: no identity reaches the upstream. Nothing is set, and the
            // identity headers are removed, so a client's own copies never arrive.
            answer.assert_allowed();
            assert!(answer.headers.is_empty(), "{headers:?}: {answer:?}");
            assert_eq!(
                answer.removed,
                ["x-auth-subject", "x-auth-scopes"],
                "{headers:?}"
            );
        }
    }
}

/// A shadow rule never changes an answer, not even when verifying the token it needs runs past
/// the Check's deadline: the public route it shadows still answers 200 (and the shadow rule
/// would have answered 503).
#[tokio::test]
async fn a_shadow_rules_timed_out_verification_leaves_the_enforced_answer_alone() {
    let key = TestKey::generate("key-1");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
    let gate = Scopegate::start_ready(
        &jwks.url(),
        "unknown_kid_wait_ms = 5000\n[server]\ncheck_timeout_ms = 200\n\
         [[rules]]\nname = \"would need a token\"\npath = \"/status\"\nshadow = true\n\
         [[rules]]\npath = \"/status\"\npublic = true\n",
    )
    .await;
    jwks.set(Reply::Stall);
    // A token under a kid the key set lacks: its verification waits on a refetch that stalls.
    let token = TestKey::generate("rotated").mint(&claims("read"));
    let answer = gate.ask("GET", "/status", Some(&bearer(&token))).await;
    assert_eq!(answer.status(), 200, "{answer:?}");
    answer.assert_allowed();
    gate.stop().await;
}

/// A preflight anyone can forge (an invented `Origin`, no token) under `cors_preflight =
/// "allow"` and `default = "deny"`: an explicit `OPTIONS` rule wins, and otherwise it passes only
/// where the request it announces would reach a rule that does not deny.
#[tokio::test]
async fn forged_preflights_pass_only_where_the_announced_request_could() {
    let env = Env::start(
        "cors_preflight = \"allow\"\ndefault = \"deny\"\n\
         [[rules]]\npath = \"/admin/users\"\nmethods = [\"OPTIONS\"]\nscopes = [\"admin\"]\n\
         [[rules]]\nprefix = \"/admin/\"\nmethods = [\"GET\"]\nscopes = [\"admin\"]\n\
         [[rules]]\ntemplate = \"/items/{id}\"\nmethods = [\"GET\"]\nscopes = [\"read\"]\n",
    )
    .await;
    // (path, announced method, HTTP status)
    for (path, announced, status) in [
        // The explicit OPTIONS rule decides: no token, 401.
        ("/admin/users", "GET", 401),
        // The announced GET reaches a rule; the announced DELETE only the deny default.
        ("/admin/other", "GET", 200),
        ("/admin/other", "DELETE", 401),
        ("/items/7", "GET", 200),
        ("/items/7", "PUT", 401),
        ("/elsewhere", "GET", 401),
        // Not one method token.
        ("/items/7", "GET, PUT", 401),
    ] {
        let headers = [
            ("origin", "https://invented.example"),
            ("access-control-request-method", announced),
        ];
        let answer = Answer::of(&env.gate.check(request("OPTIONS", path, &headers)).await);
        assert_eq!(answer.status(), status, "{path} {announced}");
        if status == 200 {
            // Passed without a token, so without an identity.
            answer.assert_allowed();
            assert!(answer.headers.is_empty(), "{path} {announced}: {answer:?}");
            assert_eq!(
                answer.removed,
                ["x-auth-subject", "x-auth-scopes"],
                "{path} {announced}"
            );
        }
    }
    env.gate.stop().await;
}
