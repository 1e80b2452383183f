//! Hostile paths and methods through Envoy: spellings, format suffixes, compatibility forms,
//! method overrides and forged CORS preflights that an upstream framework would read as another
//! route are refused or decided as that route.

use crate::common;
use crate::common::stack::Stack;
use crate::support::{assert_scopegates_denial, envoys_own_answer, error_for, header, json};
use serde_json::Value;

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
