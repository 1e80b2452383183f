//! The mapping's tables: security to rules, errors naming the operation, base paths, closing
//! rules, merge keys, unknown fields, names, and the rendered TOML the configuration accepts.

use std::collections::HashSet;

use super::*;
use crate::policy::MAX_RULE_NAME_BYTES;

/// Schemes every case can use; `oidc`, `key` and `basic` count only where a case names them.
const HEAD: &str = r#"
openapi: 3.0.3
info: {title: Items, version: "1.2"}
components:
  securitySchemes:
    oauth:
      type: oauth2
      flows: {clientCredentials: {tokenUrl: "https://issuer.example/token", scopes: {}}}
    oidc: {type: openIdConnect, openIdConnectUrl: "https://issuer.example/.well-known/openid-configuration"}
    key: {type: apiKey, in: header, name: X-Key}
    basic: {type: http, scheme: basic}
"#;

fn generate(body: &str, options: &Options) -> Result<Rules, OpenApiError> {
    rules(&Document::parse(&format!("{HEAD}{body}"))?, options)
}

/// A rule in one line: `GET /items any[a,b]`; templates are marked `T`, a closing rule's
/// method is `*`.
fn describe(rule: &GeneratedRule) -> String {
    let path = match rule.path() {
        PathRule::Exact(p) => p.clone(),
        PathRule::Template(t) => format!("T{t}"),
    };
    let access = match rule.requirement() {
        Access::Public => "public".to_owned(),
        Access::Authenticated => "token".to_owned(),
        Access::AnyScope(s) => format!("any[{}]", s.join(",")),
        Access::AllScopes(s) => format!("all[{}]", s.join(",")),
        Access::Deny => "deny".to_owned(),
    };
    format!("{} {path} {access}", rule.method().unwrap_or("*"))
}

/// The operations' rules of `rules`, described, without the closing rules.
fn operations(rules: &Rules) -> Vec<String> {
    rules
        .rules()
        .iter()
        .filter(|r| r.method().is_some())
        .map(describe)
        .collect()
}

/// `rules` rendered and appended to a minimal configuration, compiled as `serve` would.
fn compile(rules: &Rules, default: &str) -> Result<crate::config::Config, String> {
    let config = format!(
        "issuer = \"https://issuer.example/\"\naudience = \"https://api.example.com\"\n\
             default = \"{default}\"\n\n{}",
        render(rules, "t.yaml", false)
    );
    crate::config::RawConfig::from_toml(&config, "test")
        .and_then(crate::config::RawConfig::compile)
        .map_err(|e| format!("{e}\n{config}"))
}

fn scheme(name: &str) -> Options {
    Options {
        scheme: Some(name.to_owned()),
        ..Options::default()
    }
}

fn base(path: &str) -> Options {
    Options {
        base_path: Some(path.to_owned()),
        ..Options::default()
    }
}

#[test]
fn security_maps_to_the_rule_that_says_the_same() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "global security",
            "security: [{oauth: [read]}]\npaths: {/items: {get: {}, post: {}}}",
            &["GET /items any[read]", "POST /items any[read]"],
        ),
        (
            "an operation's security replaces the global one",
            "security: [{oauth: [read]}]\n\
                 paths: {/items: {get: {}, post: {security: [{oauth: [write]}]}}}",
            &["GET /items any[read]", "POST /items any[write]"],
        ),
        (
            "alternatives of one scope each: any-of",
            "paths: {/items: {get: {security: [{oauth: [a]}, {oauth: [b]}]}}}",
            &["GET /items any[a,b]"],
        ),
        (
            "one requirement with several scopes: all-of",
            "paths: {/items: {get: {security: [{oauth: [a, b]}]}}}",
            &["GET /items all[a,b]"],
        ),
        (
            "security: [] is public, also against a global requirement",
            "security: [{oauth: [read]}]\npaths: {/items: {get: {security: []}}}",
            &["GET /items public"],
        ),
        (
            "a {} alternative allows anonymous calls",
            "paths: {/items: {get: {security: [{oauth: [a]}, {}]}}}",
            &["GET /items public"],
        ),
        (
            "{} beside an apiKey alternative: still anonymous",
            "paths: {/items: {get: {security: [{key: []}, {}]}}}",
            &["GET /items public"],
        ),
        (
            "no security anywhere: any valid token",
            "paths: {/items: {get: {}}}",
            &["GET /items token"],
        ),
        (
            "a requirement without scopes: any valid token",
            "security: [{oauth: []}]\npaths: {/items: {get: {}}}",
            &["GET /items token"],
        ),
        (
            "an alternative without scopes: any valid token",
            "paths: {/items: {get: {security: [{oauth: [a]}, {oauth: []}]}}}",
            &["GET /items token"],
        ),
        (
            "absorption: [a] or [a, b] is [a]",
            "paths: {/items: {get: {security: [{oauth: [a, b]}, {oauth: [a]}]}}}",
            &["GET /items any[a]"],
        ),
        (
            "equal alternatives and repeated scopes count once",
            "paths: {/items: {get: {security: [{oauth: [b, a, b]}, {oauth: [a, b]}]}}}",
            &["GET /items all[b,a]"],
        ),
        (
            "openIdConnect scopes count like oauth2 ones",
            "paths: {/items: {get: {security: [{oidc: [openid, read]}]}}}",
            &["GET /items all[openid,read]"],
        ),
        (
            "a defined but unused second OAuth scheme needs no --scheme",
            "paths: {/a: {get: {security: [{oauth: [a]}]}}, /b: {get: {security: []}}}",
            &["GET /a any[a]", "GET /b public"],
        ),
        (
            "every operation key, in the order written; other path item keys ignored",
            "paths:\n  /items:\n    summary: s\n    description: d\n    parameters: []\n    \
                 x-extra: 1\n    trace: {}\n    patch: {}\n    head: {}\n    options: {}\n    \
                 delete: {}\n    post: {}\n    put: {}\n    get: {}",
            &[
                "TRACE /items token",
                "PATCH /items token",
                "HEAD /items token",
                "OPTIONS /items token",
                "DELETE /items token",
                "POST /items token",
                "PUT /items token",
                "GET /items token",
            ],
        ),
        (
            "path templates keep names of template syntax, else {*}",
            "paths:\n  /items/{id}/notes/{note.id-2_x}: {get: {}}\n  /users/{user id}: {get: {}}\n  \
                 /tags/{}: {get: {}}\n  /: {get: {}}\n  /dir/: {get: {}}\n  /a/{id}/b/{id}: {get: {}}",
            &[
                "GET T/items/{id}/notes/{note.id-2_x} token",
                "GET T/users/{*} token",
                "GET T/tags/{*} token",
                "GET / token",
                "GET /dir/ token",
                "GET T/a/{id}/b/{*} token",
            ],
        ),
        (
            "a literal path moves before the templates that match it",
            "paths:\n  /items/{id}: {get: {}}\n  /other: {get: {}}\n  /items/mine: {get: {}}\n  \
                 /items/{id}/x: {get: {}}\n  /{kind}/{id}/x: {get: {}}\n  /items/mine/x: {get: {}}",
            &[
                "GET /other token",
                "GET /items/mine token",
                "GET T/items/{id} token",
                "GET /items/mine/x token",
                "GET T/items/{id}/x token",
                "GET T/{kind}/{id}/x token",
            ],
        ),
        (
            "a template moves after the templates that are literal where it is not",
            "paths:\n  /{a}/x: {get: {}}\n  /y/{b}: {get: {}}\n  /z/{c}: {get: {}}",
            // /{a}/x takes /y/x and /z/x too, where the others are literal first.
            &[
                "GET T/y/{b} token",
                "GET T/z/{c} token",
                "GET T/{a}/x token",
            ],
        ),
        (
            "paths that no request could match twice keep document order",
            "paths:\n  /z/{c}: {get: {}}\n  /y/{b}: {get: {}}\n  /b: {get: {}}\n  /a/{x}/c: {get: {}}\n  /a: {get: {}}",
            &[
                "GET T/z/{c} token",
                "GET T/y/{b} token",
                "GET /b token",
                "GET T/a/{x}/c token",
                "GET /a token",
            ],
        ),
        (
            "the same template under other methods is no duplicate",
            "paths:\n  /items/{id}: {get: {}}\n  /items/{name}: {delete: {}}",
            &["GET T/items/{id} token", "DELETE T/items/{name} token"],
        ),
    ];
    for (label, body, want) in cases {
        let got = generate(body, &Options::default()).unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_eq!(&operations(&got), want, "{label}");
        compile(&got, "authenticated").unwrap_or_else(|e| panic!("{label}: {e}"));
    }
}

#[test]
fn what_a_rule_cannot_say_is_an_error_naming_the_operation() {
    let cases: &[(&str, &str, Options, &str)] = &[
        (
            "apiKey only",
            "paths: {/items: {get: {security: [{key: []}]}}}",
            Options::default(),
            "GET /items: a security requirement uses only \"key\" (apiKey)",
        ),
        (
            "http only, from the global security",
            "security: [{basic: []}]\npaths: {/items: {put: {}}}",
            Options::default(),
            "PUT /items: a security requirement uses only \"basic\" (http)",
        ),
        (
            "an apiKey alternative beside an OAuth one",
            "paths: {/items: {get: {security: [{oauth: [a]}, {key: []}]}}}",
            Options::default(),
            "GET /items: a security requirement uses only",
        ),
        (
            "OAuth and apiKey together",
            "paths: {/items: {get: {security: [{oauth: [a], key: []}]}}}",
            Options::default(),
            "GET /items: a security requirement needs \"oauth\" together with \"key\" (apiKey)",
        ),
        (
            "two OAuth schemes together",
            "paths: {/items: {get: {security: [{oauth: [a], oidc: [b]}]}}}",
            scheme("oauth"),
            "GET /items: a security requirement needs the OAuth schemes oauth, oidc together",
        ),
        (
            "an inexpressible mix of all-of and any-of",
            "paths: {\"/items/{id}\": {delete: {security: [{oauth: [a, b]}, {oauth: [c]}]}}}",
            Options::default(),
            "DELETE /items/{id}: the security alternatives [a, b] or [c]",
        ),
        (
            "an undefined scheme",
            "paths: {/items: {get: {security: [{nope: []}]}}}",
            Options::default(),
            "GET /items: security names \"nope\"",
        ),
        (
            "a scope no token can grant",
            "paths: {/items: {get: {security: [{oauth: [\"read items\"]}]}}}",
            Options::default(),
            "GET /items: the scope \"read items\"",
        ),
        (
            "a parameter inside a segment",
            "paths: {\"/files/{name}.json\": {get: {}}}",
            Options::default(),
            "GET /files/{name}.json: the segment \"{name}.json\" mixes text and a parameter",
        ),
        (
            "a template's shape twice for one method",
            "paths:\n  /items/{id}: {get: {}}\n  /items/{name}: {get: {}}",
            Options::default(),
            "GET /items/{name}: GET /items/{id} has the same method and path",
        ),
        (
            "a path a request never has",
            "paths: {/a//b: {get: {}}}",
            Options::default(),
            "GET /a//b: the rule path \"/a//b\" could never match",
        ),
        (
            "an encoded path",
            "paths: {/a%20b: {get: {}}}",
            Options::default(),
            "GET /a%20b: the rule path \"/a%20b\" is not in the canonical form",
        ),
        (
            "a literal star",
            "paths: {/a/*: {get: {}}}",
            Options::default(),
            "GET /a/*: the rule path \"/a/*\" holds `*`",
        ),
        (
            "a relative path",
            "paths: {items: {get: {}}}",
            Options::default(),
            "path \"items\" does not start with /",
        ),
        (
            "a path item $ref",
            "paths: {/items: {$ref: \"#/components/pathItems/items\"}}",
            Options::default(),
            "path /items: a path item $ref",
        ),
        (
            "an operation key in upper case",
            "paths: {/items: {GET: {}}}",
            Options::default(),
            "path /items: unknown field \"GET\"",
        ),
        (
            "two OAuth schemes in use without --scheme",
            "paths: {/a: {get: {security: [{oauth: [a]}]}}, /b: {get: {security: [{oidc: [b]}]}}}",
            Options::default(),
            "several OAuth 2.0 / OpenID Connect security schemes (oauth, oidc)",
        ),
        (
            "--scheme naming no scheme",
            "paths: {/a: {get: {}}}",
            scheme("nope"),
            "--scheme \"nope\": components.securitySchemes does not define it",
        ),
        (
            "--scheme naming an apiKey scheme",
            "paths: {/a: {get: {}}}",
            scheme("key"),
            "--scheme \"key\" is of type \"apiKey\"",
        ),
        (
            "with --scheme, an operation only for another OAuth scheme",
            "paths: {/a: {get: {security: [{oidc: [b]}]}}}",
            scheme("oauth"),
            "GET /a: no security requirement uses the scheme \"oauth\"",
        ),
        (
            "server variables",
            "servers: [{url: \"https://{region}.example.com/v1\"}]\npaths: {/a: {get: {}}}",
            Options::default(),
            "has variables, so its path is not known; give --base-path",
        ),
        (
            "a server URL relative to the document",
            "servers: [{url: v1}]\npaths: {/a: {get: {}}}",
            Options::default(),
            "the servers URL \"v1\" is relative",
        ),
        (
            "a base path without a leading /",
            "paths: {/a: {get: {}}}",
            base("v1"),
            "base path \"v1\": a base path starts with /",
        ),
    ];
    for (label, body, options, want) in cases {
        match generate(body, options) {
            Ok(rules) => panic!("{label}: {:?}", rules.rules()),
            Err(e) => assert!(e.to_string().contains(want), "{label}: {e}"),
        }
    }
}

#[test]
fn scheme_picks_the_alternatives_for_its_tokens() {
    let body = "paths: {/a: {get: {security: [{oauth: [a]}, {oidc: [b]}]}}, \
                    /b: {get: {security: [{oidc: [c, d]}, {oauth: []}]}}}";
    for (chosen, want) in [
        ("oauth", ["GET /a any[a]", "GET /b token"]),
        ("oidc", ["GET /a any[b]", "GET /b all[c,d]"]),
    ] {
        let got = generate(body, &scheme(chosen)).expect("rules");
        assert_eq!(operations(&got), want, "--scheme {chosen}");
    }
}

#[test]
fn base_path_comes_from_the_servers_or_the_option() {
    let paths = "paths:\n  /items: {get: {operationId: listItems}}\n";
    /// (label, servers, options, rules described, rule names)
    type Case<'a> = (&'a str, String, Options, &'a [&'a str], &'a [&'a str]);
    let cases: &[Case] = &[
        (
            "no servers",
            String::new(),
            Options::default(),
            &["GET /items token", "* /items deny"],
            &["listItems", "/items other methods"],
        ),
        (
            "every server, absolute URL with trailing / trimmed",
            "servers: [{url: \"https://api.example.com/v1/\"}, {url: /v2}]\n".into(),
            Options::default(),
            &[
                "GET /v1/items token",
                "* /v1/items deny",
                "GET /v2/items token",
                "* /v2/items deny",
            ],
            &[
                "listItems /v1",
                "/v1/items other methods",
                "listItems /v2",
                "/v2/items other methods",
            ],
        ),
        (
            "servers with one path count once",
            "servers: [{url: \"https://a.example/v1\"}, {url: \"https://b.example/v1/\"}]\n".into(),
            Options::default(),
            &["GET /v1/items token", "* /v1/items deny"],
            &["listItems", "/v1/items other methods"],
        ),
        (
            "the root beside a base path",
            "servers: [{url: \"https://api.example.com\"}, {url: /api}]\n".into(),
            Options::default(),
            &[
                "GET /items token",
                "* /items deny",
                "GET /api/items token",
                "* /api/items deny",
            ],
            &[
                "listItems /",
                "/items other methods",
                "listItems /api",
                "/api/items other methods",
            ],
        ),
        (
            "URL with a query",
            "servers: [{url: \"https://api.example.com?x=/y\"}]\n".into(),
            Options::default(),
            &["GET /items token", "* /items deny"],
            &["listItems", "/items other methods"],
        ),
        (
            "relative URL",
            "servers: [{url: /api/v1}]\n".into(),
            Options::default(),
            &["GET /api/v1/items token", "* /api/v1/items deny"],
            &["listItems", "/api/v1/items other methods"],
        ),
        (
            "the root",
            "servers: [{url: /}]\n".into(),
            Options::default(),
            &["GET /items token", "* /items deny"],
            &["listItems", "/items other methods"],
        ),
        (
            "--base-path wins, also over variables and several servers",
            "servers: [{url: \"https://{host}/v1\"}, {url: /v2}]\n".into(),
            base("/gw/"),
            &["GET /gw/items token", "* /gw/items deny"],
            &["listItems", "/gw/items other methods"],
        ),
        (
            "--base-path \"\" prefixes nothing",
            "servers: [{url: /v1}]\n".into(),
            base(""),
            &["GET /items token", "* /items deny"],
            &["listItems", "/items other methods"],
        ),
    ];
    for (label, servers, options, want, names) in cases {
        let got = generate(&format!("{servers}{paths}"), options)
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        let described: Vec<String> = got.rules().iter().map(describe).collect();
        assert_eq!(&described, want, "{label}");
        let got_names: Vec<&str> = got.rules().iter().map(GeneratedRule::name).collect();
        assert_eq!(&got_names, names, "{label}");
        compile(&got, "authenticated").unwrap_or_else(|e| panic!("{label}: {e}"));
    }
    // A path item's servers, and an operation's, replace the document's; without an
    // operationId, several base paths name the rule by the full path.
    let body = "servers: [{url: /v1}]\npaths:\n  /a:\n    servers: [{url: /v2}]\n    \
                    get: {}\n    post: {servers: [{url: \"https://x.example/v3\"}, {url: /v4}]}\n  \
                    /b: {get: {}}";
    let got = generate(body, &Options::default()).expect("rules");
    assert_eq!(
        operations(&got),
        [
            "GET /v2/a token",
            "POST /v3/a token",
            "POST /v4/a token",
            "GET /v1/b token"
        ]
    );
    let names: Vec<&str> = got.rules().iter().map(GeneratedRule::name).collect();
    assert_eq!(
        names,
        [
            "GET /a",
            "/v2/a other methods",
            "POST /v3/a",
            "/v3/a other methods",
            "POST /v4/a",
            "/v4/a other methods",
            "GET /b",
            "/v1/b other methods"
        ]
    );
    // A second server with variables is no more known than a first one.
    match generate(
        &format!("servers: [{{url: /v1}}, {{url: \"https://{{region}}.example/v2\"}}]\n{paths}"),
        &Options::default(),
    ) {
        Ok(rules) => panic!("{:?}", rules.rules()),
        Err(e) => assert!(e.to_string().contains("has variables"), "{e}"),
    }
}

/// What `config` decides for `method` on `path`: the requirement, `"refused"` when the
/// request is refused before any rule.
fn decided(config: &crate::config::Config, method: &str, path: &str) -> String {
    match config.policy().resolve(method, path).route {
        Ok(route) => format!("{} {}", route.name, route.requirement),
        Err(_) => "refused".to_owned(),
    }
}

#[test]
fn each_path_closes_with_a_deny_rule_after_its_operations() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "one operation: the other methods are denied",
            "paths: {/admin/users: {get: {security: [{oauth: [admin]}]}}}",
            &["GET /admin/users any[admin]", "* /admin/users deny"],
        ),
        (
            "every operation of a path, then its closing rule",
            "paths: {/items: {get: {}, post: {}}, /other: {delete: {}}}",
            &[
                "GET /items token",
                "POST /items token",
                "* /items deny",
                "DELETE /other token",
                "* /other deny",
            ],
        ),
        (
            "paths of one shape close once, after both",
            "paths:\n  /items/{id}: {get: {}}\n  /other: {get: {}}\n  /items/{name}: {delete: {}}",
            &[
                "GET T/items/{id} token",
                "DELETE T/items/{name} token",
                "* T/items/{id} deny",
                "GET /other token",
                "* /other deny",
            ],
        ),
        (
            "a literal path and its closing rule before the template that matches it",
            "paths:\n  /items/{id}: {get: {}, delete: {}}\n  /items/mine: {get: {}}\n  \
                 /{kind}/{id}: {get: {}}",
            &[
                "GET /items/mine token",
                "* /items/mine deny",
                "GET T/items/{id} token",
                "DELETE T/items/{id} token",
                "* T/items/{id} deny",
                "GET T/{kind}/{id} token",
                "* T/{kind}/{id} deny",
            ],
        ),
        (
            "a path and its trailing-slash twin",
            "paths:\n  /dir: {get: {}}\n  /dir/: {get: {}}",
            &[
                "GET /dir token",
                "* /dir deny",
                "GET /dir/ token",
                "* /dir/ deny",
            ],
        ),
        (
            "a path item without operations has no rules",
            "paths: {/nothing: {summary: s}, /a: {get: {}}}",
            &["GET /a token", "* /a deny"],
        ),
    ];
    for (label, body, want) in cases {
        let got = generate(body, &Options::default()).unwrap_or_else(|e| panic!("{label}: {e}"));
        let described: Vec<String> = got.rules().iter().map(describe).collect();
        assert_eq!(&described, want, "{label}");
        // The start-up checks (unreachable rules, conflicting readings) accept them under
        // either default.
        for default in ["deny", "authenticated", "allow"] {
            compile(&got, default).unwrap_or_else(|e| panic!("{label}, {default}: {e}"));
        }
    }

    // What the configuration then decides: the documented method as the document says,
    // every other one denied whatever the default, HEAD as the GET it stands for.
    let body = "paths:\n  /admin/users: {get: {security: [{oauth: [admin]}]}}\n  \
                    /items/{id}: {get: {security: [{oauth: [read]}]}}\n  /items/mine: {post: {}}";
    let config = compile(
        &generate(body, &Options::default()).expect("rules"),
        "authenticated",
    )
    .expect("compiles");
    for (method, path, want) in [
        (
            "GET",
            "/admin/users",
            "GET /admin/users any of scopes [admin]",
        ),
        (
            "HEAD",
            "/admin/users",
            "GET /admin/users any of scopes [admin]",
        ),
        ("POST", "/admin/users", "/admin/users other methods deny"),
        ("DELETE", "/admin/users", "/admin/users other methods deny"),
        (
            "PROPFIND",
            "/admin/users",
            "/admin/users other methods deny",
        ),
        ("GET", "/items/7", "GET /items/{id} any of scopes [read]"),
        ("PUT", "/items/7", "/items/{id} other methods deny"),
        ("POST", "/items/mine", "POST /items/mine any valid token"),
        // The literal path's closing rule comes first: stricter than the template's GET.
        ("GET", "/items/mine", "/items/mine other methods deny"),
        // Not in the document: the default decides.
        ("POST", "/elsewhere", "default any valid token"),
    ] {
        assert_eq!(decided(&config, method, path), want, "{method} {path}");
    }
}

#[test]
fn merge_keys_are_applied_before_the_mapping() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "an operation's security from an anchor",
            "x-admin-only: &adminOnly\n  security: [{oauth: [admin]}]\n\
                 security: [{oauth: [read]}]\n\
                 paths:\n  /admin/users:\n    get:\n      <<: *adminOnly\n      operationId: x\n  \
                 /pets: {get: {}}",
            &["GET /admin/users any[admin]", "GET /pets any[read]"],
        ),
        (
            "the document's security from an anchor at the root",
            "x-defaults: &defaults\n  security: [{oauth: [read]}]\n<<: *defaults\n\
                 paths: {/pets: {get: {}}}",
            &["GET /pets any[read]"],
        ),
        (
            "a list of merges, the first one's key winning",
            "x-a: &a {security: [{oauth: [a]}]}\nx-b: &b {security: [{oauth: [b]}], summary: s}\n\
                 paths: {/p: {get: {<<: [*a, *b]}}}",
            &["GET /p any[a]"],
        ),
        (
            "a key written beside the merge wins over the merged one",
            "x-admin-only: &adminOnly {security: [{oauth: [admin]}]}\n\
                 paths: {/p: {get: {<<: *adminOnly, security: [{oauth: [other]}]}}}",
            &["GET /p any[other]"],
        ),
        (
            "merges of merges",
            "x-base: &base {security: [{oauth: [admin]}]}\nx-mid: &mid {<<: *base, summary: m}\n\
                 paths: {/p: {get: {<<: *mid}}}",
            &["GET /p any[admin]"],
        ),
        (
            "operations of a path item from an anchor",
            "x-ops: &ops {get: {security: [{oauth: [read]}]}, delete: {security: [{oauth: [admin]}]}}\n\
                 paths: {/p: {<<: *ops}}",
            &["GET /p any[read]", "DELETE /p any[admin]"],
        ),
    ];
    for (label, body, want) in cases {
        let got = generate(body, &Options::default()).unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_eq!(&operations(&got), want, "{label}");
    }
    match generate("paths: {/p: {get: {<<: 7}}}", &Options::default()) {
        Ok(rules) => panic!("a scalar merge: {:?}", rules.rules()),
        Err(e) => assert!(e.to_string().contains("(YAML)"), "{e}"),
    }
}

#[test]
fn unknown_fields_of_documents_and_operations_are_errors() {
    let cases: &[(&str, &str)] = &[
        (
            "securty: [{oauth: [read]}]\npaths: {/p: {get: {}}}",
            "unknown top-level field \"securty\"",
        ),
        (
            "Security: [{oauth: [read]}]\npaths: {/p: {get: {}}}",
            "unknown top-level field \"Security\"",
        ),
        (
            "paths: {/p: {get: {securty: [{oauth: [read]}]}}}",
            "GET /p: unknown field \"securty\"",
        ),
    ];
    for (body, want) in cases {
        match generate(body, &Options::default()) {
            Ok(rules) => panic!("{body}: {:?}", rules.rules()),
            Err(e) => assert!(e.to_string().contains(want), "{body}: {e}"),
        }
    }
    // JSON has no merge keys: `<<` there is an unknown field like any other.
    let json = r#"{"openapi": "3.0.3", "paths": {"/p": {"get": {"<<": {"security": []}}}}}"#;
    match Document::parse(json) {
        Ok(_) => panic!("parsed"),
        Err(e) => assert!(
            e.to_string().contains("GET /p: unknown field \"<<\""),
            "{e}"
        ),
    }
    // Every fixed field, and extensions, are read or ignored.
    let all = "jsonSchemaDialect: d\nwebhooks: {}\ntags: []\nexternalDocs: {url: u}\nx-logo: 1\n\
                   paths:\n  /p:\n    get:\n      tags: []\n      summary: s\n      description: d\n      \
                   externalDocs: {url: u}\n      operationId: o\n      parameters: []\n      \
                   requestBody: {content: {}}\n      responses: {}\n      callbacks: {}\n      \
                   deprecated: true\n      security: []\n      servers: []\n      x-rate: 1";
    let got = generate(all, &Options::default()).expect("every fixed field");
    assert_eq!(operations(&got), ["GET /p public"]);
}

#[test]
fn reads_openapi_3_0_and_3_1_in_yaml_and_json() {
    let yaml_31 = r#"
openapi: 3.1.0
jsonSchemaDialect: "https://spec.openapis.org/oas/3.1/dialect/base"
info: {title: T, version: 1.0, summary: s, license: {name: MIT, identifier: MIT}}
webhooks:
  newItem: {post: {security: [{nope: []}]}}
components:
  pathItems: {}
  securitySchemes:
    oauth: {type: oauth2, flows: {}}
security: [{oauth: [read]}]
paths:
  /items:
    get:
      responses: {"200": {description: ok}}
      requestBody: {content: {}}
"#;
    let json_30 = r#"
  {"openapi": "3.0.0", "info": {"title": "T", "version": "1"},
   "components": {"securitySchemes": {"oauth": {"type": "oauth2", "flows": {}}}},
   "paths": {"/items": {"get": {"security": [{"oauth": ["read"]}]}}}}"#;
    // YAML with the version as a number.
    let unquoted = "openapi: 3.0\ninfo: {title: T, version: 1}\npaths: {/items: {get: {}}}";
    for (label, text, want) in [
        ("3.1 YAML", yaml_31, "GET /items any[read]"),
        ("3.0 JSON", json_30, "GET /items any[read]"),
        ("unquoted version", unquoted, "GET /items token"),
    ] {
        let doc = Document::parse(text).unwrap_or_else(|e| panic!("{label}: {e}"));
        let got = rules(&doc, &Options::default()).unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_eq!(operations(&got), [want], "{label}");
    }
    for (label, text, want) in [
        (
            "Swagger 2.0",
            "swagger: \"2.0\"\npaths: {}",
            "no `openapi` version field",
        ),
        ("3.2", "openapi: 3.2.0\npaths: {}", "openapi \"3.2.0\""),
        ("3.10", "openapi: 3.10.0\npaths: {}", "openapi \"3.10.0\""),
        ("bad JSON", "{\"openapi\": ", "(JSON)"),
        ("bad YAML", "openapi: [", "(YAML)"),
        (
            "duplicate path",
            "openapi: 3.0.0\npaths: {/a: {}, /a: {}}",
            "duplicate",
        ),
    ] {
        match Document::parse(text) {
            Ok(_) => panic!("{label}: parsed"),
            Err(e) => assert!(e.to_string().contains(want), "{label}: {e}"),
        }
    }
}

#[test]
fn names_are_operation_ids_when_usable_else_the_operation() {
    let long = "x".repeat(80);
    let body = format!(
        "paths:\n  /a: {{get: {{operationId: listA}}, post: {{operationId: listA}}}}\n  \
             /b: {{get: {{operationId: default}}, put: {{operationId: \"rules[0]\"}}, \
             post: {{operationId: \"POST /c\"}}}}\n  /c: {{post: {{}}}}\n  \
             /{long}/a: {{get: {{}}}}\n  /{long}/b: {{get: {{}}}}\n  /d: {{get: {{operationId: \"q\\\"uote\\\\d\"}}}}"
    );
    let got = generate(&body, &Options::default()).expect("rules");
    let names: Vec<&str> = got
        .rules()
        .iter()
        .filter(|r| r.method().is_some())
        .map(GeneratedRule::name)
        .collect();
    let shortened = format!("GET /{}...", "x".repeat(MAX_RULE_NAME_BYTES - 8));
    let numbered = format!("GET /{}... #2", "x".repeat(MAX_RULE_NAME_BYTES - 11));
    assert_eq!(
        names,
        [
            "listA",
            "POST /a",
            "GET /b",
            "PUT /b",
            "POST /c",
            "POST /c #2",
            shortened.as_str(),
            numbered.as_str(),
            "q\"uote\\d",
        ]
    );
    assert!(names.iter().all(|n| n.len() <= MAX_RULE_NAME_BYTES));
    // Closing rules are named by their path, after the operations had their pick.
    let closing: Vec<&str> = got
        .rules()
        .iter()
        .filter(|r| r.method().is_none())
        .map(GeneratedRule::name)
        .collect();
    let long_closing = format!("/{}...", "x".repeat(MAX_RULE_NAME_BYTES - 4));
    let long_closing_2 = format!("/{}... #2", "x".repeat(MAX_RULE_NAME_BYTES - 7));
    assert_eq!(
        closing,
        [
            "/a other methods",
            "/b other methods",
            "/c other methods",
            long_closing.as_str(),
            long_closing_2.as_str(),
            "/d other methods",
        ]
    );
    let all: HashSet<&str> = got.rules().iter().map(GeneratedRule::name).collect();
    assert_eq!(all.len(), got.rules().len(), "unique");
}

#[test]
fn rendered_rules_are_toml_tables_the_configuration_accepts() {
    let body = r#"
servers: [{url: "https://api.example.com/v1"}]
security: [{oauth: [read]}]
paths:
  /items:
    get:
      operationId: listItems
      summary: "List items\n[[rules]]\npath = \"/\"\npublic = true"
    post: {security: [{oauth: [write, audit]}], summary: "Create an item \u202e"}
  /health: {get: {security: [], operationId: "say \"hi\" \\ 'there'"}}
  /me: {get: {security: [{oauth: []}]}}
  /admin: {get: {security: [{oauth: [admin]}, {oauth: [root]}]}}
  /items/{id}: {get: {}}
  /items/mine: {get: {security: [{oauth: [mine]}]}}
"#;
    let rules = generate(body, &Options::default()).expect("rules");
    let text = render(&rules, "items.yaml", false);
    assert!(
        text.starts_with(
            "# Generated by `scopegate openapi-rules` from items.yaml (Items 1.2, OpenAPI 3.0.3).\n\
                 # Scopes of the security scheme oauth.\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("# GET /items: List items [[rules]] path = \"/\" public = true\n[[rules]]\n"),
        "{text}"
    );
    assert!(text.contains("# POST /items: Create an item\n"), "{text}");
    // Only rules: every top-level key is `rules`, an array of tables.
    let parsed: toml::Table = toml::from_str(&text).expect("TOML");
    assert_eq!(parsed.keys().collect::<Vec<_>>(), ["rules"]);
    let tables = parsed["rules"].as_array().expect("array");
    // Six paths, each with its closing rule.
    assert_eq!(tables.len(), 13);
    // The literal path first, or the template would shadow it.
    assert_eq!(tables[9]["path"].as_str(), Some("/v1/items/mine"));
    assert_eq!(tables[11]["template"].as_str(), Some("/v1/items/{id}"));
    assert_eq!(
        tables[12].to_string(),
        toml::Value::Table(toml::toml! {
            name = "/v1/items/{id} other methods"
            template = "/v1/items/{id}"
            deny = true
        })
        .to_string()
    );
    assert!(
        text.contains("# /v1/items: every method the document does not list\n[[rules]]\n"),
        "{text}"
    );
    assert!(text.contains("default = \"deny\""), "{text}");
    assert!(text.contains("{file_path:path}"), "{text}");
    assert_eq!(
        tables[0].to_string(),
        toml::Value::Table(toml::toml! {
            name = "listItems"
            path = "/v1/items"
            methods = ["GET"]
            scopes = ["read"]
        })
        .to_string()
    );
    assert_eq!(tables[1]["all_scopes"].as_array().map(Vec::len), Some(2));
    assert_eq!(tables[3]["public"].as_bool(), Some(true));
    assert_eq!(tables[3]["name"].as_str(), Some(r#"say "hi" \ 'there'"#));
    assert_eq!(tables[5].as_table().map(|t| t.len()), Some(3));
    // Appended to a configuration, they compile.
    let config = format!(
        "issuer = \"https://issuer.example/\"\naudience = \"https://api.example.com\"\n\n\
             [[rules]]\npath = \"/other\"\npublic = true\n\n{text}"
    );
    let compiled = crate::config::RawConfig::from_toml(&config, "test")
        .and_then(crate::config::RawConfig::compile)
        .unwrap_or_else(|e| panic!("{e}\n{config}"));
    assert_eq!(compiled.policy().rules().len(), 14);
}

#[test]
fn templates_are_written_as_template_keys() {
    let rules = generate(
        "paths: {\"/items/{id}\": {get: {security: [{oauth: [read]}]}}}",
        &Options::default(),
    )
    .expect("rules");
    let text = render(&rules, "t.yaml", true);
    let parsed: toml::Table = toml::from_str(&text).expect("TOML");
    let rule = &parsed["rules"][0];
    assert_eq!(rule["template"].as_str(), Some("/items/{id}"));
    assert!(rule.get("path").is_none());
    assert_eq!(rule["name"].as_str(), Some("GET /items/{id}"));
    assert_eq!(rule["shadow"].as_bool(), Some(true), "--shadow");
    let enforced = render(&rules, "t.yaml", false);
    assert!(!enforced.contains("shadow"), "{enforced}");
}

#[test]
fn a_document_without_operations_renders_comments_only() {
    let text = render(
        &generate("paths: {}", &Options::default()).expect("rules"),
        "x",
        false,
    );
    assert!(text.lines().all(|l| l.starts_with('#')), "{text}");
    assert!(
        toml::from_str::<toml::Table>(&text)
            .expect("TOML")
            .is_empty()
    );
}
