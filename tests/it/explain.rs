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
async fn explain(config: &str, args: &[&str], stdin: &str) -> Output {
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
    }
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
