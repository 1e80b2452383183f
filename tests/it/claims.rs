//! Claim conditions (tenant checks) through real Checks: `claims = { org_id = "{org}" }` binds a
//! template's path variable to a claim, compared exactly; every spelling of another tenant is
//! refused (403, or 400 where the path itself is refused); a cached token is checked again on
//! every request; malformed conditions stop start-up naming their key.

use serde_json::{Value, json};

use crate::common::binary::Binary;
use crate::common::*;
use crate::observability::{sample, scrape, token_cache_lookups};

const RULES: &str = r#"
[[rules]]
name = "tenant items"
template = "/orgs/{org}/items/{rest=**}"
scopes = ["read"]
claims = { org_id = "{org}" }

[[rules]]
name = "tenant admin"
template = "/orgs/{org}/admin"
claims = { org_id = "{org}", "/realm_access/roles" = ["admin", "owner"] }

[[rules]]
name = "team files"
template = "/teams/{team}/files/{path=**}"
claims = { teams = "{team}", "/files/prefix" = "{path}" }
"#;

/// Claims of the test issuer with `extra` members merged in.
fn tenant(extra: Value) -> Value {
    let mut claims = claims("read");
    for (name, value) in extra.as_object().expect("an object") {
        claims[name] = value.clone();
    }
    claims
}

#[tokio::test]
async fn a_tenant_check_binds_the_path_variable_to_the_claim_exactly() {
    let env = Env::start(RULES).await;
    let acme = env.key.mint(&tenant(json!({ "org_id": "acme" })));
    let upper = env.key.mint(&tenant(json!({ "org_id": "ACME" })));
    let admin = env.key.mint(&tenant(json!({
        "org_id": "acme",
        "realm_access": { "roles": ["reader", "owner"] },
    })));
    let reader = env.key.mint(&tenant(json!({
        "org_id": "acme",
        "realm_access": { "roles": ["reader"] },
    })));
    let numeric = env.key.mint(&tenant(json!({ "org_id": 7 })));
    let listed = env
        .key
        .mint(&tenant(json!({ "org_id": ["globex", "acme"] })));
    let none = env.key.mint(&claims("read"));
    let teams = env.key.mint(&tenant(json!({
        "teams": ["red", "blue"],
        "files": { "prefix": "a/b" },
    })));
    // (token, path, HTTP status; 403s are insufficient_claims, 400s invalid_request)
    let cases: &[(&str, &str, &str, i32)] = &[
        ("own tenant", &acme, "/orgs/acme/items/1", 200),
        ("other tenant", &acme, "/orgs/globex/items/1", 403),
        // Spellings of another tenant, or of this one, are never folded into a match.
        ("case variant", &acme, "/orgs/ACME/items/1", 403),
        ("case of the claim", &upper, "/orgs/acme/items/1", 403),
        ("case, both", &upper, "/orgs/ACME/items/1", 200),
        (
            "fullwidth (NFKC acme)",
            &acme,
            "/orgs/%EF%BD%81cme/items/1",
            403,
        ),
        ("dotless i", &acme, "/orgs/acm%C4%B1/items/1", 403),
        ("percent-decoded once", &acme, "/orgs/%61cme/items/1", 200),
        ("encoded slash", &acme, "/orgs/acme%2Fglobex/items/1", 400),
        ("double-encoded", &acme, "/orgs/%2561cme/items/1", 400),
        ("trailing space", &acme, "/orgs/acme%20/items/1", 403),
        ("missing claim", &none, "/orgs/acme/items/1", 403),
        ("claim of another type", &numeric, "/orgs/7/items/1", 403),
        ("array claim contains", &listed, "/orgs/acme/items/1", 200),
        ("array claim, other", &listed, "/orgs/initech/items/1", 403),
        // Every condition must hold; a list is any-of.
        ("role and tenant", &admin, "/orgs/acme/admin", 200),
        ("role missing", &reader, "/orgs/acme/admin", 403),
        ("role, other tenant", &admin, "/orgs/globex/admin", 403),
        // `{name=**}` binds the rest of the path, segments joined by `/`.
        ("rest binds", &teams, "/teams/blue/files/a/b", 200),
        ("rest, deeper", &teams, "/teams/blue/files/a/b/c", 403),
        ("rest, other team", &teams, "/teams/green/files/a/b", 403),
    ];
    for (what, token, path, status) in cases {
        let answer = env.ask("GET", path, Some(&bearer(token))).await;
        match status {
            200 => answer.assert_allowed(),
            403 => {
                answer.assert_denied(403, "insufficient_claims");
                assert_eq!(answer.code, PERMISSION_DENIED, "{what}");
                assert_eq!(answer.message(), "Token claims do not permit this request");
                assert_eq!(
                    answer.challenge(),
                    "Bearer realm=\"scopegate\", error=\"insufficient_claims\", \
                     error_description=\"Token claims do not permit this request\"",
                    "{what}"
                );
            }
            _ => answer.assert_denied(*status, "invalid_request"),
        }
        assert_eq!(answer.status(), *status, "{what}: {path}");
    }
    // Scopes are checked first: a token for the tenant without the scope is insufficient_scope.
    let unscoped = env.key.mint(&{
        let mut c = tenant(json!({ "org_id": "acme" }));
        c["scope"] = json!("openid");
        c
    });
    env.ask("GET", "/orgs/acme/items/1", Some(&bearer(&unscoped)))
        .await
        .assert_denied(403, "insufficient_scope");
    // A path that leaves the rule under a reading (the literal segment's case) is refused,
    // not decided by the default without the condition.
    env.ask("GET", "/ORGS/globex/items/1", Some(&bearer(&acme)))
        .await
        .assert_denied(400, "invalid_request");
    // Even where the rule asks no more than the default (any valid token) but for its claims.
    env.ask("GET", "/TEAMS/green/files/a/b", Some(&bearer(&teams)))
        .await
        .assert_denied(400, "invalid_request");
    env.gate.stop().await;
}

fn binary_config(jwks_uri: &str) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\nissuer = \"{ISSUER}\"\n\
         audience = \"{AUDIENCE}\"\njwks_uri = \"{jwks_uri}\"\n{RULES}"
    )
}

#[tokio::test]
async fn a_cached_token_is_checked_against_each_paths_tenant() {
    let key = TestKey::generate("k1");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
    let binary = Binary::start("claims-cache", &binary_config(&jwks.url()), "info", None).await;
    binary.keys_loaded().await;
    let metrics = binary.metrics_addr().await;
    let token = key.mint(&tenant(json!({ "org_id": "acme" })));
    let client = binary.client().await;
    let ask = |path: &'static str| {
        let mut client = client.clone();
        let authorization = bearer(&token);
        async move {
            Answer::of(
                &client
                    .check(request("GET", path, &[("authorization", &authorization)]))
                    .await
                    .expect("in-band answer")
                    .into_inner(),
            )
        }
    };
    let lookups = || token_cache_lookups(&metrics);

    ask("/orgs/acme/items/1").await.assert_allowed();
    assert_eq!(lookups().await, (0.0, 1.0), "verified once");
    ask("/orgs/acme/items/2").await.assert_allowed();
    assert_eq!(
        lookups().await,
        (1.0, 1.0),
        "tenant A's path: a hit, allowed"
    );
    ask("/orgs/globex/items/1")
        .await
        .assert_denied(403, "insufficient_claims");
    assert_eq!(
        lookups().await,
        (2.0, 1.0),
        "tenant B's path: a hit too, and refused"
    );
    ask("/orgs/acme/items/3").await.assert_allowed();

    let scrape = scrape(&metrics).await;
    let denied = sample(
        &scrape,
        "scopegate_checks_total",
        &[
            ("transport", "grpc"),
            ("decision", "deny"),
            ("status", "403"),
            ("reason", "claims"),
            ("rule", "tenant items"),
        ],
    );
    assert_eq!(denied, 1.0, "counted under reason claims");
}

#[test]
fn malformed_claim_conditions_stop_start_up_naming_their_key() {
    let base = format!(
        "issuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\njwks_uri = \"http://127.0.0.1:1/jwks\"\n"
    );
    let cases: &[(&str, &str, &str)] = &[
        (
            "template = \"/orgs/{org}/teams/{org}\"\nclaims = { org_id = \"{org}\" }",
            "rules[0].template",
            "appears twice",
        ),
        (
            "template = \"/orgs/{org}\"\nclaims = { org_id = \"{tenant}\" }",
            "rules[0].claims.\"org_id\"",
            "not a variable of template",
        ),
        (
            "prefix = \"/orgs/\"\nclaims = { org_id = \"{org}\" }",
            "rules[0].claims.\"org_id\"",
            "use `template`",
        ),
        (
            "template = \"/orgs/{org}\"\npublic = true\nclaims = { org_id = \"{org}\" }",
            "rules[0].claims.\"org_id\"",
            "public rule",
        ),
        (
            "template = \"/orgs/{org}\"\ndeny = true\nclaims = { org_id = \"{org}\" }",
            "rules[0].claims",
            "deny rule",
        ),
        (
            "template = \"/orgs/{org}\"\nclaims = { exp = \"{org}\" }",
            "rules[0].claims.\"exp\"",
            "numbers",
        ),
        (
            "template = \"/orgs/{org}\"\nclaims = { org_id = [] }",
            "rules[0].claims.\"org_id\"",
            "empty list",
        ),
        (
            "template = \"/orgs/{org}\"\nclaims = { org_id = \"{org\" }",
            "rules[0].claims.\"org_id\"",
            "path variable's name",
        ),
        (
            "template = \"/orgs/{org}\"\nclaims = { \"/a~2\" = \"x\" }",
            "rules[0].claims.\"/a~2\"",
            "JSON Pointer",
        ),
        (
            "template = \"/orgs/{org}\"\nclaims = { org_id = \"{org}\", \"/org_id\" = \"x\" }",
            "rules[0].claims.\"org_id\"",
            "same claim",
        ),
        (
            "template = \"/orgs/{org}\"\nclaims = {}",
            "rules[0].claims",
            "checks nothing",
        ),
    ];
    for (rule, key, reason) in cases {
        let text = format!("{base}[[rules]]\n{rule}\n");
        let error = scopegate::config::RawConfig::from_toml(&text, "<test>")
            .expect("parses")
            .compile()
            .expect_err(rule)
            .to_string();
        assert!(
            error.contains(key) && error.contains(reason),
            "{rule}: {error}"
        );
    }
    // The same conditions, well formed, start; `sub`, `iss` and `aud` may be conditions too.
    let text = format!(
        "{base}[[rules]]\ntemplate = \"/users/{{user}}\"\n\
         claims = {{ sub = \"{{user}}\", aud = \"{AUDIENCE}\" }}\n"
    );
    scopegate::config::RawConfig::from_toml(&text, "<test>")
        .expect("parses")
        .compile()
        .expect("compiles");
}

#[tokio::test(flavor = "multi_thread")]
async fn explain_names_the_condition_that_failed() {
    // Nothing listens here: --claims never fetches keys.
    let config = format!(
        "issuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\n\
         jwks_uri = \"http://127.0.0.1:9/jwks.json\"\n{RULES}"
    );
    let claims = tenant(json!({ "org_id": "acme" })).to_string();
    let run = |path: &'static str| {
        let config = config.clone();
        let claims = claims.clone();
        async move {
            crate::explain::explain(
                &config,
                &["--method", "GET", "--path", path, "--claims", &claims],
                "",
            )
            .await
        }
    };
    let own = run("/orgs/acme/items/1").await;
    let text = String::from_utf8_lossy(&own.stdout).into_owned();
    assert_eq!(own.status.code(), Some(0), "{text}");
    assert!(
        text.contains("requires     any of scopes [read], claims org_id in [\"{org}\"]"),
        "{text}"
    );
    assert!(!text.contains("claims       failed"), "{text}");

    let other = run("/orgs/globex/items/1").await;
    let text = String::from_utf8_lossy(&other.stdout).into_owned();
    assert_eq!(other.status.code(), Some(3), "{text}");
    assert!(
        text.contains(
            "claims       failed: claim \"org_id\" must be one of [\"globex\"] \
             (the token has \"acme\")"
        ),
        "{text}"
    );
    assert!(
        text.contains("decision     deny 403 (claims): insufficient_claims"),
        "{text}"
    );
}
