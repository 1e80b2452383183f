//! `scopegate explain`, run as a process against a real JWKS server: the answer and its exit
//! status for an allow, a 401, a 403, a 503 and a bad configuration; `--claims` checks all but
//! the signature; the token never appears in the output.

use std::io::Write as _;
use std::process::{Output, Stdio};

use crate::common::*;
use serde_json::{Value, json};

fn config(jwks_uri: &str) -> String {
    format!(
        "issuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\njwks_uri = \"{jwks_uri}\"\n\
         default = \"deny\"\n\
         [[rules]]\nname = \"item read\"\ntemplate = \"/items/{{id}}\"\nmethods = [\"GET\"]\n\
         scopes = [\"read:items\"]\n\
         [[rules]]\nname = \"stricter item read\"\ntemplate = \"/items/{{id}}\"\nmethods = [\"GET\"]\n\
         all_scopes = [\"read:items\", \"audit\"]\nshadow = true\n\
         [[rules]]\npath = \"/status\"\npublic = true\n"
    )
}

/// Runs `scopegate explain` with `args` after `--config FILE`, feeding `stdin`.
pub(crate) async fn explain(config: &str, args: &[&str], stdin: &str) -> Output {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("scopegate.toml");
    std::fs::write(&path, config).expect("write config");
    let mut command = crate::common::scopegate_command();
    command
        .arg("explain")
        .arg("--config")
        .arg(&path)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let stdin = stdin.to_owned();
    // The JWKS server runs on this test's runtime: wait for the process off it.
    tokio::task::spawn_blocking(move || {
        let mut child = command.spawn().expect("run scopegate explain");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write stdin");
        let output = child.wait_with_output().expect("explain output");
        drop(dir);
        output
    })
    .await
    .expect("explain ran")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn explain_decides_like_serve_and_says_why() {
    let key = TestKey::generate("explain-kid");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
    let config = config(&jwks.url());
    let good = key.mint(&claims("read:items"));
    let weak = key.mint(&claims("openid"));
    let forged = TestKey::generate("explain-kid").mint(&claims("read:items"));
    let header = format!("Bearer {good}");

    // (arguments, stdin, exit status, text the output must hold)
    let get = ["--method", "GET", "--path", "/items/42?x=1"];
    let cases: Vec<(Vec<&str>, &str, i32, Vec<&str>)> = vec![
        (
            [&get[..], &["--token-file", "-"]].concat(),
            good.as_str(),
            0,
            vec![
                "canonical    /items/42",
                "\"item read\" (rules[0]): template /items/{id}, methods GET",
                "requires     any of scopes [read:items]",
                "shadow rule  \"stricter item read\" (rules[1])",
                "would deny (403 insufficient_scope), not enforced",
                "grants       sub auth0|user-1, scopes [read:items], key explain-kid",
                "decision     allow 200 (authorized)",
            ],
        ),
        (
            get.to_vec(),
            "",
            3,
            vec!["credentials  none", "decision     deny 401 (missing_token)"],
        ),
        (
            [&get[..], &["--token", weak.as_str()]].concat(),
            "",
            3,
            vec!["decision     deny 403 (insufficient_scope): insufficient_scope"],
        ),
        (
            [&get[..], &["--token", forged.as_str()]].concat(),
            "",
            3,
            vec!["decision     deny 401 (invalid_token)"],
        ),
        (
            vec![
                "--method",
                "GET",
                "--path",
                "/items/42/notes",
                "--token",
                &good,
            ],
            "",
            3,
            vec![
                "rule         default: everything else",
                "decision     deny 403 (route_denied)",
            ],
        ),
        (
            vec!["--method", "GET", "--path", "/status"],
            "",
            0,
            vec!["credentials  not read", "decision     allow 200 (public)"],
        ),
        // The whole header value, as copied from a request, works too.
        (
            [&get[..], &["--token", &header]].concat(),
            "",
            0,
            vec!["decision     allow 200 (authorized)"],
        ),
        (
            vec!["--method", "GET", "--path", "/items/../status"],
            "",
            3,
            vec!["canonical    refused", "decision     deny 400 (bad_path)"],
        ),
    ];
    for (args, stdin, status, wants) in cases {
        let output = explain(&config, &args, stdin).await;
        let out = text(&output);
        assert_eq!(output.status.code(), Some(status), "{args:?}\n{out}");
        for want in wants {
            assert!(out.contains(want), "{args:?}: no {want:?} in\n{out}");
        }
        for token in [&good, &weak, &forged] {
            // (The `Bearer ` case above is the same token.)
            let signature = token.rsplit('.').next().expect("a JWS");
            assert!(!out.contains(signature), "{args:?} printed a token:\n{out}");
        }
    }
}

/// With `[[token_sources]]`, `--token` and `--claims` go where the first source reads them (a
/// cookie, another header, a query parameter), so `explain` decides as `serve` would; the
/// path it prints never holds the query, nor so a query token.
#[tokio::test(flavor = "multi_thread")]
async fn explain_places_the_token_in_the_first_token_source() {
    let key = TestKey::generate("explain-kid");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
    let good = key.mint(&claims("read:items"));
    let weak = key.mint(&claims("openid"));
    // After the rules (tables), so each is a top-level `[[token_sources]]` entry.
    let sources = [
        "[[token_sources]]\ncookie = \"at\"\n",
        "[[token_sources]]\nheader = \"x-api-token\"\n",
        "[[token_sources]]\nquery = \"access_token\"\n",
        "[[token_sources]]\nheader = \"authorization\"\nscheme = [\"DPoP\", \"Bearer\"]\n",
    ];
    let get = ["--method", "GET", "--path", "/items/42"];
    for source in sources {
        let config = format!("allow_query_tokens = true\n{}{source}", config(&jwks.url()));
        for (token, status, want) in [
            (&good, 0, "decision     allow 200 (authorized)"),
            (&weak, 3, "decision     deny 403 (insufficient_scope)"),
        ] {
            let with_scheme = format!("Bearer {token}");
            for given in [token.as_str(), with_scheme.as_str()] {
                let output = explain(&config, &[&get[..], &["--token", given]].concat(), "").await;
                let out = text(&output);
                assert_eq!(output.status.code(), Some(status), "{source}\n{out}");
                assert!(out.contains(want), "{source}: no {want:?} in\n{out}");
                let signature = token.rsplit('.').next().expect("a JWS");
                assert!(
                    !out.contains(signature),
                    "{source}: printed a token:\n{out}"
                );
            }
        }
        let claims = claims("read:items").to_string();
        let output = explain(&config, &[&get[..], &["--claims", &claims]].concat(), "").await;
        let out = text(&output);
        assert!(
            out.contains("decision     allow 200 (authorized)"),
            "{source}\n{out}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn explain_with_claims_checks_everything_but_the_signature() {
    // Nothing listens here: --claims never fetches keys.
    let config = config("http://127.0.0.1:9/jwks.json");
    let mut claims = claims("read:items audit");
    let ok = claims.to_string();
    claims["exp"] = json!(now() - 3600);
    let expired = claims.to_string();
    claims["exp"] = json!(now() + 3600);
    claims["aud"] = json!("https://another.api");
    let wrong_audience = claims.to_string();
    let get = ["--method", "GET", "--path", "/items/7", "--json"];
    for (claims, status, reason) in [
        (ok.as_str(), 200, "authorized"),
        (expired.as_str(), 401, "invalid_token"),
        (wrong_audience.as_str(), 401, "invalid_token"),
    ] {
        let output = explain(&config, &[&get[..], &["--claims", claims]].concat(), "").await;
        let explained: Value = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("--json prints JSON ({e}):\n{}", text(&output)));
        assert_eq!(explained["answer"]["status"], status, "{explained:#}");
        assert_eq!(explained["answer"]["reason"], reason, "{explained:#}");
        assert!(
            explained["credentials"]
                .as_str()
                .is_some_and(|c| c.contains("signature is NOT checked")),
            "{explained:#}"
        );
        assert_eq!(
            output.status.code(),
            Some(if status == 200 { 0 } else { 3 })
        );
        // What the allow tells the proxy (Envoy's dynamic metadata); a denial tells nothing.
        if status == 200 {
            assert_eq!(
                explained["metadata"]["sub"], "auth0|user-1",
                "{explained:#}"
            );
            assert_eq!(
                explained["metadata"]["scopes"],
                json!(["audit", "read:items"]),
                "{explained:#}"
            );
        } else {
            assert!(explained["metadata"].is_null(), "{explained:#}");
        }
    }
    let output = explain(
        &config,
        &["--method", "GET", "--path", "/items/7", "--claims", &ok],
        "",
    )
    .await;
    let out = text(&output);
    assert!(
        out.lines()
            .any(|line| line.starts_with("metadata     {")
                && line.contains(r#""sub":"auth0|user-1""#)),
        "{out}"
    );
    // The shadow rule, which needs `audit` too, would allow here.
    let output = explain(&config, &[&get[..], &["--claims", &ok]].concat(), "").await;
    let explained: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(
        explained["shadow_rules"][0]["rule"]["name"],
        "stricter item read"
    );
    assert_eq!(explained["shadow_rules"][0]["would"]["decision"], "allow");
}

#[tokio::test(flavor = "multi_thread")]
async fn explain_answers_503_when_keys_cannot_be_fetched_and_1_or_2_on_bad_input() {
    // Nothing listens on the discard port: the one fetch fails.
    let config_text = config("http://127.0.0.1:9/jwks.json");
    let token = TestKey::generate("k").mint(&claims("read:items"));
    let output = explain(
        &config_text,
        &["--method", "GET", "--path", "/items/1", "--token", &token],
        "",
    )
    .await;
    let out = text(&output);
    assert_eq!(output.status.code(), Some(3), "{out}");
    assert!(out.contains("could not be fetched"), "{out}");
    assert!(
        out.contains("decision     deny 503 (keys_unavailable)"),
        "{out}"
    );

    let bad = explain(
        "issuer = \"https://x/\"\naudience = \"a\"\n[[rules]]\ntemplate = \"/f/{name}.json\"\n",
        &["--method", "GET", "--path", "/"],
        "",
    )
    .await;
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));
    assert!(text(&bad).contains("rules[0].template"), "{}", text(&bad));

    let usage = explain(
        &config_text,
        &[
            "--method", "GET", "--path", "/", "--token", "a", "--claims", "{}",
        ],
        "",
    )
    .await;
    assert_eq!(usage.status.code(), Some(2), "{}", text(&usage));
}

#[tokio::test(flavor = "multi_thread")]
async fn explain_recognises_a_cors_preflight_only_when_the_configuration_allows_it() {
    let preflight = [
        "--method",
        "OPTIONS",
        "--path",
        "/items/7",
        "--header",
        "Origin: https://app.example",
        "--header",
        "access-control-request-method: GET",
    ];
    let allowing = format!(
        "cors_preflight = \"allow\"\n{}",
        config("http://127.0.0.1:9/jwks.json")
    );
    let output = explain(&allowing, &preflight, "").await;
    let out = text(&output);
    assert_eq!(output.status.code(), Some(0), "{out}");
    assert!(
        out.contains("decision     allow 200 (cors_preflight)"),
        "{out}"
    );
    assert!(out.contains("not read: a CORS preflight"), "{out}");
    // Without the setting, or with credentials, it is decided like any request.
    let output = explain(&config("http://127.0.0.1:9/jwks.json"), &preflight, "").await;
    assert_eq!(output.status.code(), Some(3), "{}", text(&output));
    let output = explain(
        &allowing,
        &[&preflight[..], &["--header", "authorization: Basic eA=="]].concat(),
        "",
    )
    .await;
    assert_eq!(output.status.code(), Some(3), "{}", text(&output));
    assert!(text(&output).contains("401"), "{}", text(&output));
}

/// Method overrides and forged preflights: `explain` (with `--header` and the query in
/// `--path`) answers each request with the status a Check from the running service gets.
#[tokio::test(flavor = "multi_thread")]
async fn explain_decides_method_overrides_and_forged_preflights_as_serve_does() {
    let key = TestKey::generate("explain-kid");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
    let rules = "cors_preflight = \"allow\"\ndefault = \"deny\"\n\
         [[rules]]\npath = \"/admin/users\"\nmethods = [\"OPTIONS\"]\nscopes = [\"admin\"]\n\
         [[rules]]\ntemplate = \"/items/{id}\"\nmethods = [\"GET\"]\nscopes = [\"read:items\"]\n\
         [[rules]]\ntemplate = \"/items/{id}\"\nmethods = [\"POST\"]\nscopes = [\"write:items\"]\n\
         [[rules]]\ntemplate = \"/items/{id}\"\nmethods = [\"DELETE\"]\nscopes = [\"delete:items\"]\n";
    let gate = Scopegate::start_ready(&jwks.url(), rules).await;
    let config = format!(
        "issuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\njwks_uri = \"{}\"\n{rules}",
        jwks.url()
    );
    let write = bearer(&key.mint(&claims("write:items")));
    let preflight = |announced: &'static str| {
        vec![
            ("origin", "https://invented.example"),
            ("access-control-request-method", announced),
        ]
    };
    // (method, path, headers, with the write:items token, status)
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, bool, i32);
    let cases: Vec<Case> = vec![
        ("POST", "/items/1", vec![], true, 200),
        (
            "POST",
            "/items/1",
            vec![("x-http-method-override", "DELETE")],
            true,
            400,
        ),
        ("POST", "/items/1?_method=delete", vec![], true, 400),
        (
            "POST",
            "/items/1?_method=GET&_method=GET",
            vec![],
            true,
            400,
        ),
        (
            "POST",
            "/items/1",
            vec![("content-type", "application/x-www-form-urlencoded")],
            true,
            400,
        ),
        ("OPTIONS", "/admin/users", preflight("GET"), false, 401),
        ("OPTIONS", "/items/1", preflight("GET"), false, 200),
        ("OPTIONS", "/items/1", preflight("PUT"), false, 401),
    ];
    for (method, path, headers, token, status) in cases {
        let mut args = vec!["--method", method, "--path", path];
        let lines: Vec<String> = headers.iter().map(|(n, v)| format!("{n}: {v}")).collect();
        for line in &lines {
            args.extend(["--header", line.as_str()]);
        }
        let mut sent = headers.clone();
        if token {
            args.extend(["--token", write.as_str()]);
            sent.push(("authorization", write.as_str()));
        }
        let served = Answer::of(&gate.check(request(method, path, &sent)).await);
        assert_eq!(
            served.status(),
            status,
            "serve: {method} {path} {headers:?}"
        );
        let output = explain(&config, &args, "").await;
        let out = text(&output);
        let want = if status == 200 { 0 } else { 3 };
        assert_eq!(output.status.code(), Some(want), "{out}");
        assert!(
            out.contains(&format!(
                "decision     {} {status} ",
                if status == 200 { "allow" } else { "deny" }
            )),
            "{out}"
        );
    }
    gate.stop().await;
}

/// The rules the equivalence test decides under: those of `authorization`'s and
/// `hostile_tokens`'s cases (any-of and all-of scopes, methods, a public path, a route denied to
/// all, templates with method overrides, forwarded claims, a shadow rule, CORS preflights,
/// token sources besides `Authorization`).
fn equivalence_config(jwks_uri: &str) -> String {
    format!(
        "issuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\njwks_uri = \"{jwks_uri}\"\n\
         default = \"deny\"\ncors_preflight = \"allow\"\nmetadata_claims = [\"aud\"]\n\
         [forward_claims]\n\"x-auth-email\" = \"email\"\n\
         [[rules]]\nname = \"messages read\"\npath = \"/restricted_resource\"\nscopes = [\"read:messages\", \"admin\"]\n\
         [[rules]]\ntemplate = \"/items/{{id}}\"\nmethods = [\"POST\", \"PUT\"]\nscopes = [\"write:items\"]\n\
         [[rules]]\ntemplate = \"/items/{{id}}\"\nmethods = [\"DELETE\"]\nscopes = [\"delete:items\"]\n\
         [[rules]]\npath = \"/audit\"\nall_scopes = [\"read:messages\", \"audit\"]\n\
         [[rules]]\nname = \"trial\"\npath = \"/trial\"\nscopes = [\"t\"]\nshadow = true\n\
         [[rules]]\nprefix = \"/public/\"\npublic = true\n\
         [[rules]]\nprefix = \"/admin/\"\nscopes = [\"admin\"]\n\
         [[rules]]\npath = \"/kitchen\"\nscopes = [\"k\"]\n\
         [[rules]]\nname = \"tenant\"\ntemplate = \"/orgs/{{org}}/{{**}}\"\n\
         claims = {{ org_id = \"{{org}}\" }}\n\
         [[rules]]\nname = \"orders\"\nprefix = \"/orders/\"\nissuers = [\"{ISSUER}\"]\n\
         audiences = [\"https://orders.api\"]\n\
         [[token_sources]]\nheader = \"authorization\"\nscheme = [\"Bearer\", \"DPoP\"]\n\
         [[token_sources]]\nheader = \"x-api-token\"\n\
         [[token_sources]]\ncookie = \"at\"\n"
    )
}

/// How a DPoP case's proof is made: for `htm` on the transport's own URL of `path`, with the
/// hash of `token`.
struct ProofFor<'a> {
    htm: &'a str,
    path: &'a str,
    token: &'a str,
    /// The reason every transport must give.
    reason: &'a str,
}

/// The HTTP request `dialect`'s proxy sends to ask about `method path` with `headers`: `None`
/// when the path cannot be a request target there (Envoy puts it in the target itself, which
/// is never empty or relative, and which the `http` crate refuses for some bytes, as hyper
/// does on the wire).
fn proxied(
    dialect: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Option<http::Request<()>> {
    let request = match dialect {
        // Envoy's target is `/envoy` and the original path, which always starts with `/`.
        "envoy" if !path.starts_with('/') => return None,
        "envoy" => http::Request::builder()
            .method(method)
            .uri(format!("/envoy{path}"))
            .header("host", "app.example"),
        "forward-auth" => http::Request::builder()
            .uri("/forward-auth")
            .header("x-forwarded-method", method)
            .header("x-forwarded-uri", path)
            .header("x-forwarded-host", "app.example")
            .header("x-forwarded-proto", "https"),
        _ => http::Request::builder()
            .uri("/nginx-auth")
            .header("x-original-method", method)
            .header("x-original-uri", path)
            .header("host", "app.example"),
    };
    let request = headers.iter().fold(request, |request, (name, value)| {
        request.header(*name, *value)
    });
    request.body(()).ok()
}

/// gRPC Checks, HTTP decisions and `explain` give the same verdict for the same request: every
/// case (this table, and the hostile-path tables of `it::authorization`) runs through the gRPC
/// adapter into the decision core, through the HTTP adapter in each of its three dialects (the
/// request the proxy would send, read by `serve::http::request_view`) into the same core,
/// through `explain`'s own keys into the same core, and through the real gRPC service; the core
/// verdicts (status, body, headers to set and remove, labels) must be equal, and the service's
/// `CheckResponse` must be the gRPC wire mapping of that verdict. DPoP cases (a valid proof,
/// wrong `htu`, wrong `htm`, another token's `ath`, a bound token as Bearer or without a proof)
/// get a fresh proof per transport, for the URL that transport reconstructs.
#[tokio::test(flavor = "multi_thread")]
async fn grpc_checks_and_explain_give_the_same_verdict_for_every_case() {
    use envoy_types::pb::envoy::service::auth::v3::authorization_server::Authorization as _;
    use scopegate::decide::{self, Generation, Verdict};
    use scopegate::serve::service::{self, AuthorizationService};
    use scopegate::telemetry::metrics::Metrics;

    let key = TestKey::generate("equal-kid");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
    let config =
        scopegate::config::RawConfig::from_toml(&equivalence_config(&jwks.url()), "<test>")
            .expect("parses")
            .compile()
            .expect("compiles");
    let config = std::sync::Arc::new(config);
    // The live generation's keys: the same JWKS document, fetched once and installed.
    let key_sets = config
        .issuers()
        .iter()
        .map(|issuer| issuer.jwks.clone())
        .collect::<Vec<_>>();
    let mut sets = Vec::new();
    for settings in key_sets {
        let (keys, _) = scopegate::auth::jwks::fetch_once(&settings)
            .await
            .expect("keys");
        let set = scopegate::auth::jwks::Jwks::new(settings);
        set.install(keys);
        sets.push(set);
    }
    let live = std::sync::Arc::new(arc_swap::ArcSwap::from_pointee(Generation::new(
        std::sync::Arc::clone(&config),
        sets,
    )));
    let grpc = AuthorizationService::with_live(std::sync::Arc::clone(&live), Metrics::new());

    let with = |claim: &str, value: Value| {
        let mut c = claims("read:messages");
        c[claim] = value;
        key.mint(&c)
    };
    let tokens = [
        ("good", key.mint(&claims("read:messages"))),
        ("all scopes", key.mint(&claims("read:messages audit"))),
        ("weak", key.mint(&claims("openid"))),
        ("write", key.mint(&claims("write:items"))),
        ("with email", with("email", json!("zoë@example.com"))),
        (
            "for orders",
            with("aud", json!([AUDIENCE, "https://orders.api"])),
        ),
        ("no sub", {
            let mut c = claims("");
            c.as_object_mut().expect("object").remove("sub");
            key.mint(&c)
        }),
        ("expired", with("exp", json!(now() - 3600))),
        ("not yet", with("nbf", json!(now() + 3600))),
        (
            "exp as string",
            with("exp", json!((now() + 3600).to_string())),
        ),
        (
            "issuer look-alike",
            with("iss", json!("https://issuer.test")),
        ),
        (
            "audience look-alike",
            with("aud", json!("https://api.test/")),
        ),
        ("control in sub", with("sub", json!("a\nb"))),
        ("bad scope", with("scope", json!("read:messages \"x\""))),
        (
            "forged",
            TestKey::generate("equal-kid").mint(&claims("read:messages")),
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                base64::Engine::encode(
                    &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                    r#"{"alg":"none","kid":"equal-kid"}"#
                ),
                base64::Engine::encode(
                    &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                    claims("read:messages").to_string()
                )
            ),
        ),
        (
            "crit",
            key.mint_raw(
                &json!({"alg": "RS256", "kid": "equal-kid", "crit": ["exp"]}),
                &claims("read:messages"),
            ),
        ),
        ("not a jwt", "abc.def".to_owned()),
    ];
    let bearers: Vec<(&str, String)> = tokens
        .iter()
        .map(|(name, token)| (*name, format!("Bearer {token}")))
        .collect();
    let good = bearers[0].1.as_str();
    let write = bearers[3].1.as_str();

    // (method, path, headers)
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>);
    let mut cases: Vec<Case> = vec![
        ("GET", "/restricted_resource", vec![]),
        (
            "GET",
            "/restricted_resource",
            vec![("authorization", "Basic dTpw")],
        ),
        (
            "GET",
            "/restricted_resource",
            vec![("authorization", "Bearer")],
        ),
        (
            "GET",
            "/restricted_resource",
            vec![("authorization", "Bearer a b")],
        ),
        (
            "GET",
            "/restricted_resource?x=1",
            vec![("authorization", good)],
        ),
        (
            "HEAD",
            "/restricted_resource",
            vec![("authorization", good)],
        ),
        ("GET", "/audit", vec![("authorization", good)]),
        ("GET", "/unlisted", vec![("authorization", good)]),
        ("GET", "/unlisted", vec![]),
        (
            "GET",
            "/public/x",
            vec![("x-auth-subject", "admin"), ("x-auth-email", "a@b")],
        ),
        ("GET", "/trial", vec![("authorization", good)]),
        (
            "GET",
            "/a/../restricted_resource",
            vec![("authorization", good)],
        ),
        (
            "GET",
            "/restricted%2fresource",
            vec![("authorization", good)],
        ),
        (
            "GET",
            "//restricted_resource",
            vec![("authorization", good)],
        ),
        ("POST", "/items/1", vec![("authorization", write)]),
        (
            "POST",
            "/items/1",
            vec![
                ("authorization", write),
                ("x-http-method-override", "DELETE"),
            ],
        ),
        (
            "POST",
            "/items/1",
            vec![
                ("authorization", write),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
        ),
        (
            "OPTIONS",
            "/restricted_resource",
            vec![
                ("origin", "https://app.example"),
                ("access-control-request-method", "GET"),
            ],
        ),
        (
            "OPTIONS",
            "/restricted_resource",
            vec![("origin", "https://app.example")],
        ),
    ];
    // Token sources: a header and a cookie (denials without a challenge), two places at once.
    let (raw_good, raw_weak) = (tokens[0].1.as_str(), tokens[2].1.as_str());
    let cookie_good = format!("theme=dark; at={raw_good}");
    let cookie_weak = format!("at={raw_weak}");
    let cookies_two = format!("at={raw_good}; at={raw_weak}");
    cases.extend([
        (
            "GET",
            "/restricted_resource",
            vec![("x-api-token", raw_good)],
        ),
        (
            "GET",
            "/restricted_resource",
            vec![("x-api-token", raw_weak)],
        ),
        (
            "GET",
            "/restricted_resource",
            vec![("cookie", cookie_good.as_str())],
        ),
        (
            "GET",
            "/restricted_resource",
            vec![("cookie", cookie_weak.as_str())],
        ),
        (
            "GET",
            "/restricted_resource",
            vec![("cookie", cookies_two.as_str())],
        ),
        (
            "GET",
            "/restricted_resource",
            vec![("authorization", good), ("cookie", cookie_good.as_str())],
        ),
    ]);
    for (_, bearer) in &bearers {
        cases.push((
            "GET",
            "/restricted_resource",
            vec![("authorization", bearer)],
        ));
        cases.push(("GET", "/audit", vec![("authorization", bearer)]));
        cases.push(("GET", "/orders/1", vec![("authorization", bearer)]));
    }
    // A tenant check: the tenant's own path, another's, and a spelling of its own.
    let tenant = format!("Bearer {}", with("org_id", json!("acme")));
    for path in [
        "/orgs/acme/x",
        "/orgs/globex/x",
        "/orgs/ACME/x",
        "/ORGS/acme/x",
    ] {
        cases.push(("GET", path, vec![("authorization", &tenant)]));
    }
    // The hostile paths, with and without a token that passes.
    let admin = format!("Bearer {}", key.mint(&claims("admin k read:messages")));
    for (method, path, _) in crate::authorization::REFUSED_SPELLINGS {
        cases.push((method, path, vec![]));
        cases.push((method, path, vec![("authorization", &admin)]));
    }
    for path in crate::authorization::AMBIGUOUS_PATHS {
        cases.push(("GET", path, vec![]));
        cases.push(("GET", path, vec![("authorization", &admin)]));
    }

    // DPoP-bound tokens: each case's proof is made afresh for every transport, since the live
    // generation remembers every proof it accepts (explain does not, it decides with the gRPC
    // view) and each transport reconstructs its own URL for `htu`.
    let client = scopegate::dev::dpop::ProofKey::generate().expect("a DPoP key");
    let mut bound = claims("read:messages");
    bound["cnf"] = json!({ "jkt": client.jkt() });
    let bound = key.mint(&bound);
    let dpop_bound = format!("DPoP {bound}");
    let bearer_bound = format!("Bearer {bound}");
    cases.push((
        "GET",
        "/restricted_resource",
        vec![("authorization", &bearer_bound)],
    ));
    cases.push((
        "GET",
        "/restricted_resource",
        vec![("authorization", &dpop_bound)],
    ));
    let dpop_headers = vec![("authorization", dpop_bound.as_str())];
    let dpop_cases: Vec<(Case, ProofFor)> = vec![
        (
            ("GET", "/restricted_resource", dpop_headers.clone()),
            ProofFor {
                htm: "GET",
                path: "/restricted_resource",
                token: &bound,
                reason: "authorized",
            },
        ),
        (
            ("GET", "/restricted_resource?page=2", dpop_headers.clone()),
            ProofFor {
                htm: "GET",
                path: "/restricted_resource",
                token: &bound,
                reason: "authorized",
            },
        ),
        (
            ("GET", "/restricted_resource", dpop_headers.clone()),
            ProofFor {
                htm: "GET",
                path: "/audit",
                token: &bound,
                reason: "dpop_proof",
            },
        ),
        (
            ("GET", "/restricted_resource", dpop_headers.clone()),
            ProofFor {
                htm: "POST",
                path: "/restricted_resource",
                token: &bound,
                reason: "dpop_proof",
            },
        ),
        (
            ("GET", "/restricted_resource", dpop_headers),
            ProofFor {
                htm: "GET",
                path: "/restricted_resource",
                token: raw_good,
                reason: "dpop_proof",
            },
        ),
    ];
    let all_cases = cases
        .iter()
        .map(|case| (case, None))
        .chain(dpop_cases.iter().map(|(case, proof)| (case, Some(proof))));
    // A case's headers with a fresh proof (if it has one) for the URL `base` and the path.
    let with_proof = |headers: &[(&str, &str)], proof: Option<&ProofFor>, base: &str| {
        let mut headers: Vec<(String, String)> = headers
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        if let Some(proof) = proof {
            let url = format!("{base}{}", proof.path);
            let made = client.proof(proof.htm, &url, Some(proof.token));
            headers.push(("dpop".to_owned(), made.expect("a proof")));
        }
        headers
    };

    let mut compared = std::collections::BTreeSet::new();
    let mut http_compared = 0;
    let mut dpop_compared = 0;
    for ((method, path, headers), proof) in all_cases {
        // The gRPC Check names https://api.example, as Envoy does from :scheme and :authority.
        let grpc_check = || {
            let headers = with_proof(headers, proof, "https://api.example");
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str()))
                .collect();
            let mut check = request(method, path, &headers);
            if let Some(http) = check
                .attributes
                .as_mut()
                .and_then(|a| a.request.as_mut())
                .and_then(|r| r.http.as_mut())
                .filter(|_| proof.is_some())
            {
                http.scheme = "https".into();
                http.host = "api.example".into();
            }
            check
        };
        let check = grpc_check();
        let http = check
            .attributes
            .clone()
            .and_then(|a| a.request)
            .and_then(|r| r.http)
            .expect("http");
        let view = service::request_view(&http, None);
        let generation = live.load_full();
        let now = now();
        let core = decide::decide(&*generation, &view, now, &Metrics::new()).await;
        let same =
            scopegate::tools::explain::decide_view(&config, &view, now, |verdict, labels| {
                (verdict == &core.verdict && labels == &core.labels)
                    .then_some(())
                    .ok_or_else(|| format!("explain: {verdict:?} {labels:?}"))
            })
            .await
            .expect("explain decides");
        assert_eq!(
            same,
            Ok(()),
            "{method} {path} {headers:?}: gRPC core {:?} {:?}",
            core.verdict,
            core.labels
        );
        // The service's own Check, with a proof of its own (the core above used the first).
        let wire = grpc
            .check(tonic::Request::new(grpc_check()))
            .await
            .expect("in-band answer")
            .into_inner();
        assert_eq!(
            wire,
            service::response(core.verdict.clone(), &core.labels),
            "{method} {path}: the service answers the core's verdict"
        );
        compared.insert(format!("{:?}", core.labels.reason));
        if let Some(proof) = proof {
            assert_eq!(
                format!("{:?}", core.labels.reason),
                proof.reason,
                "{method} {path}: {:?}",
                core.verdict
            );
        }

        // The same request through the HTTP adapter, as each proxy would send it.
        for dialect in ["envoy", "forward-auth", "nginx"] {
            // The proxy's URL: https://app.example, from the forwarded host and proto.
            let mut headers = with_proof(headers, proof, "https://app.example");
            if proof.is_some() && dialect != "forward-auth" {
                headers.push(("x-forwarded-proto".to_owned(), "https".to_owned()));
            }
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str()))
                .collect();
            let Some(proxied) = proxied(dialect, method, path, &headers) else {
                continue;
            };
            match scopegate::serve::http::request_view(&proxied) {
                Ok((_, view)) => {
                    let decided = decide::decide(&*generation, &view, now, &Metrics::new()).await;
                    assert_eq!(
                        (&decided.verdict, &decided.labels),
                        (&core.verdict, &core.labels),
                        "{dialect}: {method} {path} {headers:?}"
                    );
                    http_compared += 1;
                    dpop_compared += usize::from(proof.is_some());
                }
                // A URI that is not a path never reaches the core over HTTP; the gRPC Check
                // refuses it there, with the same status and error.
                Err(scopegate::serve::http::Unread::Unreadable(..)) if !path.starts_with('/') => {
                    let Verdict::Deny(denied) = &core.verdict else {
                        panic!("{method} {path:?}: {:?}", core.verdict);
                    };
                    assert_eq!((denied.status, denied.error), (400, "invalid_request"));
                }
                Err(other) => panic!("{dialect}: {method} {path} {headers:?}: {other:?}"),
            }
        }
    }
    assert!(
        http_compared >= cases.len() * 2,
        "most cases ran through HTTP: {http_compared} of {}",
        cases.len() * 3
    );
    assert_eq!(
        dpop_compared,
        dpop_cases.len() * 3,
        "every DPoP case ran through every HTTP dialect"
    );
    // The table reaches every reason a request can be given without a fault.
    for reason in [
        "authorized",
        "public",
        "cors_preflight",
        "missing_token",
        "invalid_request",
        "invalid_token",
        "insufficient_scope",
        "claims",
        "route_denied",
        "bad_path",
        "audience_not_accepted",
        "dpop_proof",
        "binding",
    ] {
        assert!(
            compared.contains(reason),
            "no case gives {reason}: {compared:?}"
        );
    }
}

/// `explain` shows a rule's issuers and audiences under `requires`, the token's issuer and
/// `aud`, and which of the two refused it (`issuer_not_accepted`, `audience_not_accepted`).
#[tokio::test(flavor = "multi_thread")]
async fn explain_shows_which_of_a_rules_issuers_and_audiences_refused_the_token() {
    let other = "https://other.issuer.test/";
    let config = format!(
        "[[issuers]]\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\n\
         jwks_uri = \"http://127.0.0.1:9/keys\"\n\
         [[issuers]]\nissuer = \"{other}\"\naudience = \"{AUDIENCE}\"\n\
         jwks_uri = \"http://127.0.0.1:9/keys\"\n\
         [[rules]]\nname = \"staff\"\nprefix = \"/staff/\"\nissuers = [\"{ISSUER}\"]\n\
         audiences = [\"https://orders.api\"]\n"
    );
    let with = |iss: &str, aud: &[&str]| {
        let mut c = claims("read");
        c["iss"] = json!(iss);
        c["aud"] = json!(aud);
        c.to_string()
    };
    let get = ["--method", "GET", "--path", "/staff/x", "--claims"];
    // (claims, exit status, lines the output must hold)
    let cases = [
        (
            with(other, &[AUDIENCE, "https://orders.api"]),
            3,
            vec![
                format!("requires     any valid token from issuers [{ISSUER}] for audiences [https://orders.api]"),
                format!("token        from {other}, aud [{AUDIENCE}, https://orders.api]"),
                "decision     deny 401 (issuer_not_accepted): invalid_token: token issuer is not accepted on this route".to_string(),
            ],
        ),
        (
            with(ISSUER, &[AUDIENCE]),
            3,
            vec![
                format!("token        from {ISSUER}, aud [{AUDIENCE}]"),
                "decision     deny 401 (audience_not_accepted): invalid_token: token audience is not accepted on this route".to_string(),
            ],
        ),
        (
            with(ISSUER, &[AUDIENCE, "https://orders.api"]),
            0,
            vec!["decision     allow 200 (authorized)".to_string()],
        ),
    ];
    for (claims, status, lines) in cases {
        let out = explain(&config, &[&get[..], &[claims.as_str()]].concat(), "").await;
        let shown = text(&out);
        assert_eq!(out.status.code(), Some(status), "{claims}: {shown}");
        for line in lines {
            assert!(shown.contains(&line), "{line:?} in {shown}");
        }
    }
}
