//! Route rules through a direct gRPC Check: any-of and all-of scopes, methods, public routes, the
//! three defaults, identity headers for the upstream, and path canonicalisation.

use crate::common::*;
use serde_json::{Value, json};

const RULES: &str = r#"
[[rules]]
path = "/restricted_resource"
scopes = ["read:messages"]

[[rules]]
path = "/another_resource"
scopes = ["some:scope", "some:other_scope"]

[[rules]]
path = "/messages"
methods = ["POST", "DELETE"]
all_scopes = ["write:messages", "audit"]

[[rules]]
path = "/messages"
scopes = ["read:messages"]

[[rules]]
prefix = "/public/"
public = true

[[rules]]
prefix = "/admin/"
all_scopes = ["admin"]
"#;

#[tokio::test]
async fn any_of_scopes_follow_the_samples_intersection_rule() {
    let env = Env::start(RULES).await;
    for (path, scope, allowed) in [
        ("/restricted_resource", "read:messages", true),
        ("/restricted_resource", "openid read:messages profile", true),
        ("/restricted_resource", "write:messages", false),
        ("/restricted_resource", "", false),
        ("/restricted_resource", "read:messages:all", false),
        ("/restricted_resource", "READ:MESSAGES", false),
        ("/another_resource", "some:other_scope", true),
        ("/another_resource", "some:scope", true),
        ("/another_resource", "read:messages", false),
    ] {
        let answer = env.ask_with_scope("GET", path, scope).await;
        if allowed {
            answer.assert_allowed();
        } else {
            answer.assert_denied(403, "insufficient_scope");
            assert_eq!(answer.code, PERMISSION_DENIED);
            assert_eq!(
                answer.message(),
                "Insufficient scope",
                "the sample's message"
            );
        }
    }
    env.gate.stop().await;
}

#[tokio::test]
async fn insufficient_scope_challenge_names_the_required_scopes() {
    let env = Env::start(RULES).await;
    let answer = env
        .ask_with_scope("GET", "/another_resource", "openid")
        .await;
    answer.assert_denied(403, "insufficient_scope");
    assert_eq!(
        answer.challenge(),
        "Bearer realm=\"scopegate\", error=\"insufficient_scope\", \
         error_description=\"Insufficient scope\", scope=\"some:scope some:other_scope\""
    );
    env.gate.stop().await;
}

#[tokio::test]
async fn methods_select_rules_and_all_of_needs_every_scope() {
    let env = Env::start(RULES).await;
    for (method, scope, allowed) in [
        ("POST", "write:messages audit", true),
        ("POST", "write:messages", false),
        ("POST", "read:messages", false),
        ("DELETE", "audit write:messages", true),
        ("GET", "read:messages", true),
        ("GET", "write:messages audit", false),
        ("PUT", "read:messages", true), // falls through to the any-method rule
    ] {
        let answer = env.ask_with_scope(method, "/messages", scope).await;
        if allowed {
            answer.assert_allowed();
        } else {
            answer.assert_denied(403, "insufficient_scope");
        }
    }
    // Methods are case-sensitive: `post` is not `POST`. It reaches a rule with another
    // requirement than `POST` would, so it is refused rather than decided by either.
    let answer = env
        .ask_with_scope("post", "/messages", "read:messages")
        .await;
    answer.assert_denied(400, "invalid_request");
    assert_eq!(
        answer.message(),
        "request method differs from a configured rule's only in letter case"
    );
    env.gate.stop().await;
}

/// The README's own rule behind `default = "allow"`, so that a request that dodged it would show
/// as an anonymous allow. Upstream frameworks answer HEAD with the GET handler, serve `/x/` and
/// (on Windows) `/x.` from `/x`, and may compare letters case-insensitively in Unicode; each such
/// spelling is decided as what it stands for, or refused.
const README_RULE: &str = r#"
default = "allow"

[[rules]]
path = "/restricted_resource"
methods = ["GET"]
scopes = ["read:messages"]

[[rules]]
prefix = "/admin/"
scopes = ["admin"]

[[rules]]
path = "/admin"
scopes = ["admin"]

[[rules]]
path = "/kitchen"
scopes = ["admin"]

[[rules]]
path = "/public"
methods = ["GET"]
public = true
"#;

#[tokio::test]
async fn head_is_decided_as_the_get_it_stands_for() {
    let env = Env::start(README_RULE).await;
    let weak = bearer(&env.key.mint(&claims("openid")));
    let good = bearer(&env.key.mint(&claims("read:messages")));
    env.ask("HEAD", "/restricted_resource", None)
        .await
        .assert_denied(401, "unauthorized");
    env.ask("HEAD", "/restricted_resource", Some(&weak))
        .await
        .assert_denied(403, "insufficient_scope");
    env.ask("HEAD", "/restricted_resource", Some(&good))
        .await
        .assert_allowed();
    // Other methods the rule does not name still fall to the default.
    env.ask("POST", "/restricted_resource", None)
        .await
        .assert_allowed();
    env.gate.stop().await;
}

/// Spellings of a protected path that an upstream could read as it, each refused (400) with a
/// message naming the reading: (method, path, what the message names). Shared with
/// `it::explain`'s equivalence test, which runs them through every transport.
pub(crate) const REFUSED_SPELLINGS: &[(&str, &str, &str)] = &[
    (
        "GET",
        "/restricted_resource/",
        "a trailing slash, dot or space",
    ),
    (
        "HEAD",
        "/restricted_resource/",
        "a trailing slash, dot or space",
    ),
    (
        "GET",
        "/restricted_resource.",
        "a trailing slash, dot or space",
    ),
    (
        "GET",
        "/restricted_resource%2e",
        "a trailing slash, dot or space",
    ),
    (
        "GET",
        "/restricted_resource%20",
        "a trailing slash, dot or space",
    ),
    (
        "GET",
        "/restricted_resource%20./",
        "a trailing slash, dot or space",
    ),
    ("GET", "/adm%C4%B1n/users", "letter case"),
    ("GET", "/ADMIN/users", "letter case"),
    ("GET", "/%E2%84%AAitchen", "letter case"),
    ("GET", "/KITCHEN", "letter case"),
    ("get", "/restricted_resource", "request method differs"),
];

/// Ambiguous paths refused outright (400), with or without a token. Shared with `it::explain`'s
/// equivalence test, which runs them through every transport.
pub(crate) const AMBIGUOUS_PATHS: &[&str] = &[
    "/public/../admin/users",
    "/public/%2e%2e/admin/users",
    "/public%2F..%2Fadmin/users",
    "//admin/users",
    "/admin/users;x=1",
    "/public\\..\\admin",
    "/restricted_resource%23",
    "/restricted_resource%3Fx",
    "/RESTRICTED_RESOURCE",
    "/%52estricted_resource",
    "/Admin/users",
    "/a%zz",
    "relative",
    "",
];

#[tokio::test]
async fn spellings_an_upstream_reads_as_a_protected_path_are_refused() {
    let env = Env::start(README_RULE).await;
    let weak = bearer(&env.key.mint(&claims("openid")));
    for (method, path, message) in REFUSED_SPELLINGS {
        for authorization in [None, Some(weak.as_str())] {
            let answer = env.ask(method, path, authorization).await;
            answer.assert_denied(400, "invalid_request");
            assert!(
                answer.message().contains(message),
                "{method} {path}: {answer:?}"
            );
        }
    }
    // Spellings that change nothing, and the README's subtree pair, stay as they were.
    let admin = bearer(&env.key.mint(&claims("admin")));
    for (path, authorization) in [
        ("/admin", Some(admin.as_str())),
        ("/admin/", Some(admin.as_str())),
        ("/admin/Users/", Some(admin.as_str())),
        ("/elsewhere/", None),
        ("/Elsewhere.", None),
        ("/public", None),
    ] {
        env.ask("GET", path, authorization).await.assert_allowed();
    }
    env.gate.stop().await;
}

#[tokio::test]
async fn scp_claim_grants_scopes_too() {
    let env = Env::start(RULES).await;
    for scp in [json!(["read:messages"]), json!("openid read:messages")] {
        let mut c = claims("");
        c.as_object_mut().expect("object").remove("scope");
        c["scp"] = scp;
        let token = env.key.mint(&c);
        env.ask("GET", "/restricted_resource", Some(&bearer(&token)))
            .await
            .assert_allowed();
    }
    env.gate.stop().await;
}

#[tokio::test]
async fn allow_sets_identity_headers_overwriting_client_copies() {
    let env = Env::start(RULES).await;
    let token = env.key.mint(&claims("read:messages openid"));
    let request = request(
        "GET",
        "/restricted_resource",
        &[
            ("authorization", &bearer(&token)),
            ("x-auth-subject", "attacker"),
            ("x-auth-scopes", "admin"),
        ],
    );
    let response = env.gate.check(request).await;
    let answer = Answer::of(&response);
    answer.assert_allowed();
    assert_eq!(answer.headers["x-auth-subject"], "auth0|user-1");
    assert_eq!(answer.headers["x-auth-scopes"], "openid read:messages");
    let Some(envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse::OkResponse(
        ok,
    )) = &response.http_response
    else {
        panic!("OK response expected");
    };
    for h in &ok.headers {
        assert_eq!(
            h.append_action,
            envoy_types::ext_authz::v3::pb::HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
            "identity headers must overwrite, never append: {h:?}"
        );
    }
    env.gate.stop().await;
}

#[tokio::test]
async fn token_without_sub_or_scopes_removes_the_identity_headers() {
    let env = Env::start("").await;
    let mut c = claims("");
    c.as_object_mut().expect("object").remove("sub");
    c.as_object_mut().expect("object").remove("scope");
    let token = env.key.mint(&c);
    let answer = env.ask("GET", "/anything", Some(&bearer(&token))).await;
    answer.assert_allowed();
    assert!(answer.headers.is_empty(), "{answer:?}");
    assert!(answer.removed.contains(&"x-auth-subject".to_string()));
    assert!(answer.removed.contains(&"x-auth-scopes".to_string()));
    env.gate.stop().await;
}

#[tokio::test]
async fn public_routes_need_no_token_and_strip_spoofed_identity() {
    let env = Env::start(RULES).await;
    let request = request(
        "GET",
        "/public/index.html",
        &[("x-auth-subject", "admin"), ("x-auth-scopes", "admin")],
    );
    let answer = Answer::of(&env.gate.check(request).await);
    answer.assert_allowed();
    assert!(answer.headers.is_empty(), "{answer:?}");
    assert_eq!(answer.removed, ["x-auth-subject", "x-auth-scopes"]);

    // A broken token on a public route does not matter.
    env.ask("GET", "/public/x", Some("Bearer garbage"))
        .await
        .assert_allowed();
    env.gate.stop().await;
}

#[tokio::test]
async fn default_authenticated_needs_any_valid_token() {
    let env = Env::start("").await;
    env.ask("GET", "/unlisted", None)
        .await
        .assert_denied(401, "unauthorized");
    env.ask_with_scope("GET", "/unlisted", "")
        .await
        .assert_allowed();
    env.gate.stop().await;
}

#[tokio::test]
async fn default_deny_refuses_unlisted_routes_after_authentication() {
    let env = Env::start("default = \"deny\"\n[[rules]]\npath = \"/ok\"").await;
    env.ask("GET", "/unlisted", None)
        .await
        .assert_denied(401, "unauthorized");
    let answer = env
        .ask_with_scope("GET", "/unlisted", "read:messages admin")
        .await;
    answer.assert_denied(403, "insufficient_scope");
    assert_eq!(answer.message(), "Route is not permitted");
    env.ask_with_scope("GET", "/ok", "").await.assert_allowed();
    env.gate.stop().await;
}

#[tokio::test]
async fn default_allow_lets_unlisted_routes_through_anonymously() {
    let env = Env::start("default = \"allow\"\n[[rules]]\npath = \"/private\"").await;
    let answer = env.ask("GET", "/unlisted", None).await;
    answer.assert_allowed();
    assert_eq!(answer.removed, ["x-auth-subject", "x-auth-scopes"]);
    env.ask("GET", "/private", None)
        .await
        .assert_denied(401, "unauthorized");
    // A case-insensitive upstream would serve /private for these; the weaker default must not
    // apply to them, token or not.
    for path in ["/PRIVATE", "/Private", "/%50rivate"] {
        for answer in [
            env.ask("GET", path, None).await,
            env.ask_with_scope("GET", path, "").await,
        ] {
            answer.assert_denied(400, "invalid_request");
            assert_eq!(
                answer.message(),
                "request path differs from a configured route only in letter case"
            );
        }
    }
    env.gate.stop().await;
}

#[tokio::test]
async fn paths_are_matched_in_canonical_form_or_refused() {
    let env = Env::start(RULES).await;
    // Spellings of protected paths still hit their rule.
    for path in [
        "/restricted_resource?scope=read:messages",
        "/%72estricted_resource",
        "/admin/%75sers",
    ] {
        env.ask_with_scope("GET", path, "openid")
            .await
            .assert_denied(403, "insufficient_scope");
    }
    // Ambiguous spellings are refused outright, with or without a token.
    for path in AMBIGUOUS_PATHS {
        for authorization in [None, Some("Bearer x")] {
            let answer = env.ask("GET", path, authorization).await;
            answer.assert_denied(400, "invalid_request");
            assert_eq!(answer.code, PERMISSION_DENIED, "{path:?}");
        }
    }
    env.gate.stop().await;
}

/// Auth0 RBAC puts granted permissions in a `permissions` array; with `scope_claims` naming it,
/// they count as scopes, under the same scope-token rule, and an unconfigured `scp` does not.
#[tokio::test]
async fn permissions_grant_scopes_when_configured() {
    let env = Env::start(&format!(
        "scope_claims = [\"scope\", \"permissions\"]\n{RULES}"
    ))
    .await;
    let with_permissions = |permissions: serde_json::Value| {
        let mut c = claims("openid");
        c["permissions"] = permissions;
        env.key.mint(&c)
    };
    env.ask(
        "GET",
        "/restricted_resource",
        Some(&bearer(&with_permissions(json!(["read:messages"])))),
    )
    .await
    .assert_allowed();
    let answer = env
        .ask(
            "GET",
            "/restricted_resource",
            Some(&bearer(&with_permissions(json!([
                "read:messages",
                "x admin"
            ])))),
        )
        .await;
    answer.assert_denied(401, "invalid_token");
    let mut scp_only = claims("openid");
    scp_only["scp"] = json!(["read:messages"]);
    env.ask(
        "GET",
        "/restricted_resource",
        Some(&bearer(&env.key.mint(&scp_only))),
    )
    .await
    .assert_denied(403, "insufficient_scope");
    env.gate.stop().await;
}

/// `forward_claims` puts claims in headers for the upstream: set when the token has the claim,
/// removed when it does not (so a client's own copy never arrives), removed on public routes.
#[tokio::test]
async fn forwarded_claims_reach_the_upstream_and_client_copies_never_do() {
    let env = Env::start(&format!(
        "[forward_claims]\n\"x-auth-email\" = \"email\"\n\"x-auth-org-id\" = \"/org/id\"\n{RULES}"
    ))
    .await;
    let mut full = claims("read:messages");
    full["email"] = json!("zoë@example.com");
    full["org"] = json!({"id": 42});
    let spoof = [
        ("x-auth-email", "attacker@example.com"),
        ("x-auth-org-id", "1"),
    ];
    let ask = |token: Option<String>, path: &'static str| {
        let env = &env;
        async move {
            let mut headers: Vec<(&str, &str)> = spoof.to_vec();
            let authorization = token.map(|t| bearer(&t));
            if let Some(a) = &authorization {
                headers.push(("authorization", a));
            }
            Answer::of(&env.gate.check(request("GET", path, &headers)).await)
        }
    };
    let answer = ask(Some(env.key.mint(&full)), "/restricted_resource").await;
    answer.assert_allowed();
    assert_eq!(answer.headers["x-auth-email"], "zoë@example.com");
    assert_eq!(answer.headers["x-auth-org-id"], "42");
    assert!(answer.removed.is_empty(), "{answer:?}");

    // The token lacks both: both are removed, the client's copies with them.
    let answer = ask(
        Some(env.key.mint(&claims("read:messages"))),
        "/restricted_resource",
    )
    .await;
    answer.assert_allowed();
    for header in ["x-auth-email", "x-auth-org-id"] {
        assert!(!answer.headers.contains_key(header), "{answer:?}");
        assert!(answer.removed.iter().any(|h| h == header), "{answer:?}");
    }
    // A public route forwards no identity at all.
    let answer = ask(None, "/public/page").await;
    answer.assert_allowed();
    for header in [
        "x-auth-subject",
        "x-auth-scopes",
        "x-auth-email",
        "x-auth-org-id",
    ] {
        assert!(
            answer.removed.iter().any(|h| h == header),
            "{header}: {answer:?}"
        );
    }
    // A value that cannot be a header value refuses the token, as for `sub`.
    let mut bad = claims("read:messages");
    bad["email"] = json!("a\r\nx-admin: 1");
    let answer = ask(Some(env.key.mint(&bad)), "/restricted_resource").await;
    answer.assert_denied(401, "invalid_token");
    assert_eq!(
        answer.message(),
        "token claims to forward cannot be forwarded as written"
    );
    env.gate.stop().await;
}

/// A method override (header, `_method` query parameter, or a form body that may hold one)
/// names the handler Rails, Express, ASP.NET Core or Spring run: the request is decided under
/// that method too, and refused where the two disagree, whatever its own method. The override
/// headers arrive in `headers`, as Envoy sends them, or in `header_map` (not UTF-8 included).
#[tokio::test]
async fn method_overrides_that_reach_another_rule_are_refused() {
    let env = Env::start(
        "default = \"allow\"\n\
         [[rules]]\ntemplate = \"/items/{id}\"\nmethods = [\"POST\", \"PUT\"]\nscopes = [\"write:items\"]\n\
         [[rules]]\ntemplate = \"/items/{id}\"\nmethods = [\"DELETE\"]\nscopes = [\"delete:items\"]\n\
         [[rules]]\npath = \"/notes\"\nmethods = [\"DELETE\"]\nscopes = [\"delete:notes\"]\n",
    )
    .await;
    let write = bearer(&env.key.mint(&claims("write:items")));
    let form = ("content-type", "application/x-www-form-urlencoded");
    // (method, path, headers, HTTP status)
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, i32);
    let cases: Vec<Case> = vec![
        ("POST", "/items/1", vec![], 200),
        (
            "POST",
            "/items/1",
            vec![("x-http-method-override", "DELETE")],
            400,
        ),
        ("POST", "/items/1", vec![("x-http-method", "DELETE")], 400),
        (
            "POST",
            "/items/1",
            vec![("x-method-override", "delete")],
            400,
        ),
        ("POST", "/items/1?_method=DELETE", vec![], 400),
        ("POST", "/items/1?%5Fmethod=%64elete", vec![], 400),
        ("PUT", "/items/1?_method=DELETE", vec![], 400),
        ("POST", "/items/1", vec![form], 400),
        (
            "POST",
            "/items/1",
            vec![("content-type", "multipart/form-data; boundary=b")],
            400,
        ),
        (
            "POST",
            "/items/1",
            vec![("content-type", "application/json")],
            200,
        ),
        (
            "POST",
            "/items/1",
            vec![("x-http-method-override", "PUT")],
            200,
        ),
        (
            "POST",
            "/items/1",
            vec![("x-http-method-override", "PUT,DELETE")],
            400,
        ),
        ("POST", "/items/1?_method=PUT&_method=PUT", vec![], 400),
        // Under default = "allow", a public GET whose DELETE is protected.
        ("GET", "/notes", vec![], 200),
        ("GET", "/notes?_method=DELETE", vec![], 400),
        (
            "GET",
            "/notes",
            vec![("x-http-method-override", "DELETE")],
            400,
        ),
        ("POST", "/notes", vec![form], 400),
        // Where nothing differs by method, an override changes nothing.
        ("GET", "/elsewhere?_method=DELETE", vec![], 200),
        ("POST", "/elsewhere", vec![form], 200),
    ];
    for (method, path, headers, status) in cases {
        let mut with_token = headers.clone();
        with_token.push(("authorization", &write));
        let answer = Answer::of(&env.gate.check(request(method, path, &with_token)).await);
        assert_eq!(answer.status(), status, "{method} {path} {headers:?}");
        if status == 400 {
            assert_eq!(answer.error(), "invalid_request", "{method} {path}");
        }
    }
    // The same through `header_map`; a value that is not UTF-8 is no method at all.
    for (value, status) in [(&b"DELETE"[..], 400), (b"PUT", 200), (b"PUT\xff", 400)] {
        let answer = Answer::of(
            &env.gate
                .check(raw_request(
                    "POST",
                    "/items/1",
                    &[
                        ("authorization", write.as_bytes()),
                        ("x-http-method-override", value),
                    ],
                ))
                .await,
        );
        assert_eq!(answer.status(), status, "{value:?}");
    }
    env.gate.stop().await;
}

/// A forwarded claim must read upstream as it was checked: surrounding whitespace (stripped by
/// HTTP/1.1 parsers), invisible or reordering characters, and, in an array (forwarded joined
/// with `,`), an element holding `,`, which would read as two elements (`["eng,admin"]` and
/// `["eng", "admin"]` would arrive alike). Each refuses the token (401), as `sub` does.
#[tokio::test]
async fn forwarded_claims_that_read_differently_upstream_are_refused() {
    let env = Env::start(&format!(
        "[forward_claims]\n\"x-auth-email\" = \"email\"\n\"x-auth-groups\" = \"groups\"\n\
         \"x-auth-org-id\" = \"/org/id\"\n{RULES}"
    ))
    .await;
    let ask = |claim: &'static str, value: Value| {
        let env = &env;
        async move {
            let mut c = claims("read:messages");
            c[claim] = value;
            let authorization = bearer(&env.key.mint(&c));
            Answer::of(
                &env.gate
                    .check(request(
                        "GET",
                        "/restricted_resource",
                        &[("authorization", authorization.as_str())],
                    ))
                    .await,
            )
        }
    };
    for (claim, value) in [
        ("email", json!("  alice@example.com  ")),
        ("email", json!("alice@example.com ")),
        ("email", json!("\u{3000}alice@example.com")),
        ("email", json!("alice\u{202e}moc.elpmaxe@")),
        ("email", json!("alice\u{2067}@example.com")),
        ("email", json!("alice\u{200b}@example.com")),
        ("email", json!("alice@example.com\u{2028}")),
        ("email", json!("\u{feff}alice@example.com")),
        ("org", json!({"id": " acme"})),
        ("groups", json!(["eng,admin"])),
        ("groups", json!(["eng", " admin"])),
        ("groups", json!(["eng", "admin\u{202d}"])),
    ] {
        let answer = ask(claim, value.clone()).await;
        assert_eq!(
            (answer.http, answer.error(), answer.message()),
            (
                401,
                "invalid_token",
                "token claims to forward cannot be forwarded as written"
            ),
            "{claim}: {value}"
        );
    }
    // The documented comma format, inner spaces and the zero-width joiner pass as they are.
    for (claim, value, header, forwarded) in [
        (
            "groups",
            json!(["eng", "admin"]),
            "x-auth-groups",
            "eng,admin",
        ),
        (
            "email",
            json!("Alice Smith <a@example.com>"),
            "x-auth-email",
            "Alice Smith <a@example.com>",
        ),
        (
            "email",
            json!("\u{1f469}\u{200d}\u{1f4bb}@example.com"),
            "x-auth-email",
            "\u{1f469}\u{200d}\u{1f4bb}@example.com",
        ),
    ] {
        let answer = ask(claim, value.clone()).await;
        answer.assert_allowed();
        assert_eq!(answer.headers[header], forwarded, "{value}");
    }
    env.gate.stop().await;
}
