//! The configuration's own tests: defaults, the errors that name their key, the README's
//! reference, required keys and environment overrides; each part's tests sit beside it.

use std::time::Duration;

use super::*;
use crate::auth::sources::TokenSources;
use crate::auth::verify::{Algorithm, TokenType};
use crate::net::outbound::FetchPolicy;

pub(super) const BASE: &str =
    "issuer = \"https://tenant.example/\"\naudience = \"https://api.example\"\n";

pub(super) fn compile(extra: &str) -> Result<Config, ConfigError> {
    RawConfig::from_toml(&format!("{BASE}{extra}"), "<test>")?.compile()
}

#[test]
fn defaults() {
    let c = compile("").expect("minimal config");
    assert_eq!(c.listen.to_string(), "0.0.0.0:9191");
    assert_eq!(
        c.issuers[0].jwks.uri.as_str(),
        "https://tenant.example/.well-known/openid-configuration"
    );
    assert_eq!(c.issuers[0].jwks.fetch_policy, FetchPolicy::default());
    assert!(c.warnings().is_empty(), "{:?}", c.warnings());
    assert_eq!(c.issuers[0].expectations.leeway_seconds, 60);
    assert_eq!(c.issuers[0].expectations.algorithms, [Algorithm::RS256]);
    assert_eq!(c.issuers[0].jwks.refresh, Duration::from_secs(600));
    assert_eq!(c.issuers[0].jwks.refetch_cooldown, Duration::from_secs(5));
    assert_eq!(
        *c.policy().default_requirement(),
        Requirement::Authenticated
    );
    assert!(c.policy().rules().is_empty());
    assert_eq!(c.issuers[0].jwks.max_keys, 100);
    assert_eq!(
        c.issuers[0].jwks.unknown_kid_wait,
        Duration::from_millis(300)
    );
    assert_eq!(c.issuers[0].expectations.token_types, None);
    assert_eq!(c.issuers[0].expectations.scope_claims, ["scope", "scp"]);
    assert_eq!(c.server, ServerLimits::default());
    assert_eq!(c.server.max_connections, 1024);
    assert_eq!(c.server.max_concurrent_streams, 100);
    assert_eq!(c.server.max_request_bytes, 128 * 1024);
    assert_eq!(c.server.handshake_timeout, Duration::from_secs(10));
    assert_eq!(c.server.idle_timeout, Duration::from_secs(300));
    assert_eq!(c.server.check_timeout, Duration::from_millis(400));
    assert_eq!(
        c.http_listen, None,
        "the HTTP listener is off unless asked for"
    );
    assert_eq!(c.http_server, HttpServerLimits::default());
    assert_eq!(c.http_server.max_connections, 1024);
    assert_eq!(c.http_server.max_header_bytes, 64 * 1024);
    assert_eq!(c.http_server.header_timeout, Duration::from_secs(10));
    assert_eq!(c.http_server.idle_timeout, Duration::from_secs(300));
}

#[test]
fn the_http_listener_and_its_limits_compile() {
    let c = compile(
        "http_listen = \"127.0.0.1:9193\"\n[http_server]\nmax_connections = 8\n\
         max_header_bytes = 1024\nheader_timeout_seconds = 2\nidle_timeout_seconds = 30",
    )
    .expect("compiles");
    assert_eq!(
        c.http_listen(),
        Some("127.0.0.1:9193".parse().expect("addr"))
    );
    let l = c.http_server();
    assert_eq!(l.max_connections, 8);
    assert_eq!(l.max_header_bytes, 1024);
    assert_eq!(l.header_timeout, Duration::from_secs(2));
    assert_eq!(l.idle_timeout, Duration::from_secs(30));
    // check-config prints it with its limits.
    assert!(
        c.to_string().contains(
            "http_listen       127.0.0.1:9193: 8 connections, request heads up to 1024 bytes, \
             head 2s, idle 30s"
        ),
        "{c}"
    );
    // Port 0 (the OS picks one) never clashes.
    compile("listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"").expect("port 0 twice");
}

#[test]
fn claim_conditions_are_retained_by_every_issuer_and_printed() {
    let c = compile(
        "[[rules]]\ntemplate = \"/orgs/{org}/{**}\"\n\
         claims = { org_id = \"{org}\", \"/realm_access/roles\" = [\"admin\", \"owner\"] }\n\
         [[rules]]\ntemplate = \"/teams/{org}\"\nclaims = { \"/org_id\" = \"{org}\" }\nshadow = true",
    )
    .expect("compiles");
    let retained: Vec<String> = c.issuers[0]
        .expectations
        .retain_claims
        .iter()
        .map(ToString::to_string)
        .collect();
    // Sorted by key within a rule (a TOML table), each claim once however it is spelt.
    assert_eq!(retained, ["/realm_access/roles", "org_id"]);
    assert!(
        c.to_string()
            .contains("claim /realm_access/roles in [\"admin\", \"owner\"]"),
        "{c}"
    );
    assert!(c.to_string().contains("claim org_id in [\"{org}\"]"), "{c}");
}

#[test]
fn stale_bound_accepts_its_floor_and_token_types_compile() {
    let c = compile(
        "jwks_refresh_seconds = 2\njwks_min_refresh_seconds = 1\njwks_max_refresh_seconds = 20\n\
         jwks_fetch_timeout_seconds = 2\njwks_max_stale_seconds = 32\n\
         unknown_kid_wait_ms = 0\njwks_max_keys = 1000\n\
         token_types = [\"Application/AT+JWT\", \"jwt\"]",
    )
    .expect("20 + 2 + 10 = 32 is enough");
    assert_eq!(c.issuers[0].jwks.max_stale, Duration::from_secs(32));
    assert_eq!(c.issuers[0].jwks.unknown_kid_wait, Duration::ZERO);
    let types: Vec<&str> = c.issuers[0]
        .expectations
        .token_types
        .iter()
        .flatten()
        .map(TokenType::as_str)
        .collect();
    assert_eq!(types, ["at+jwt", "jwt"]);
    assert!(
        c.to_string().contains("token types       at+jwt, jwt"),
        "{c}"
    );
}

#[test]
fn errors_name_the_key() {
    let cases: &[(&str, &str)] = &[
        ("bogus = 1", "bogus"),
        ("leeway_seconds = \"60\"", "leeway_seconds"),
        ("leeway_seconds = 601", "leeway_seconds"),
        ("listen = \"nope\"", "listen"),
        ("metrics_listen = \"nope\"", "metrics_listen"),
        ("http_listen = \"nope\"", "http_listen"),
        ("http_listen = \"unix:/run/s.sock\"", "http_listen"),
        (
            "listen = \"127.0.0.1:9193\"\nhttp_listen = \"127.0.0.1:9193\"",
            "http_listen",
        ),
        (
            "metrics_listen = \"127.0.0.1:9193\"\nhttp_listen = \"127.0.0.1:9193\"",
            "http_listen",
        ),
        (
            "health_listen = \"127.0.0.1:9193\"\nhttp_listen = \"127.0.0.1:9193\"",
            "http_listen",
        ),
        (
            "[http_server]\nmax_connections = 0",
            "http_server.max_connections",
        ),
        (
            "[http_server]\nmax_header_bytes = 1023",
            "http_server.max_header_bytes",
        ),
        (
            "[http_server]\nmax_header_bytes = 1048577",
            "http_server.max_header_bytes",
        ),
        (
            "[http_server]\nheader_timeout_seconds = 0",
            "http_server.header_timeout_seconds",
        ),
        (
            "[http_server]\nidle_timeout_seconds = 86401",
            "http_server.idle_timeout_seconds",
        ),
        ("[http_server]\nbogus = 1", "bogus"),
        ("listen = \"unix:\"", "listen"),
        (
            "listen = \"unix:/run/s.sock\"\n[tls]\ncert_file = \"c\"\nkey_file = \"k\"",
            "tls",
        ),
        ("decision_log = \"some\"", "some"),
        (
            "[[rules]]\nname = \"default\"\npath = \"/a\"",
            "rules[0].name",
        ),
        ("[[rules]]\nname = \"\"\npath = \"/a\"", "rules[0].name"),
        (
            "[[rules]]\nname = \"x\"\npath = \"/a\"\n[[rules]]\nname = \"x\"\npath = \"/b\"",
            "rules[1].name",
        ),
        (
            "[[rules]]\nname = \"rules[1]\"\npath = \"/a\"\n[[rules]]\npath = \"/b\"",
            "rules[1].name",
        ),
        ("jwks_uri = \"ftp://x/\"", "jwks_uri"),
        ("default = \"maybe\"", "maybe"),
        ("algorithms = [\"none\"]", "algorithms[0]"),
        ("algorithms = [\"HS256\"]", "algorithms[0]"),
        ("algorithms = []", "algorithms"),
        ("realm = 'a\"b'", "realm"),
        ("jwks_refresh_seconds = 10", "jwks_refresh_seconds"),
        (
            "jwks_fetch_timeout_seconds = 0",
            "jwks_fetch_timeout_seconds",
        ),
        ("jwks_max_bytes = 10", "jwks_max_bytes"),
        ("jwks_max_stale_seconds = 0", "jwks_max_stale_seconds"),
        ("jwks_max_stale_seconds = 599", "jwks_max_stale_seconds"),
        // The refresh can legitimately wait max_refresh (max-age honoured) plus a fetch.
        (
            "jwks_refresh_seconds = 2\njwks_min_refresh_seconds = 1\njwks_max_refresh_seconds = 20\njwks_max_stale_seconds = 3",
            "jwks_max_refresh_seconds (20) + jwks_fetch_timeout_seconds (5) + 10 = 35",
        ),
        (
            "jwks_refresh_seconds = 20\njwks_min_refresh_seconds = 1\njwks_max_refresh_seconds = 20\njwks_max_stale_seconds = 20",
            "jwks_max_stale_seconds",
        ),
        ("jwks_max_stale_seconds = 3614", "jwks_max_stale_seconds"),
        ("jwks_max_keys = 0", "jwks_max_keys"),
        ("jwks_max_keys = 1001", "jwks_max_keys"),
        ("unknown_kid_wait_ms = 10001", "unknown_kid_wait_ms"),
        ("token_cache_max_bytes = 0", "token_cache_max_bytes"),
        ("token_cache_max_bytes = 1048575", "token_cache_max_bytes"),
        (
            "token_cache_max_bytes = 17179869185",
            "token_cache_max_bytes",
        ),
        ("token_types = []", "token_types"),
        ("token_types = [\"at+jwt\", \"at jwt\"]", "token_types[1]"),
        ("token_types = [\"text/plain\"]", "token_types[0]"),
        ("scope_claims = []", "scope_claims"),
        ("scope_claims = [\"scope\", \"aud\"]", "scope_claims[1]"),
        ("scope_claims = [\"scope\", \"scope\"]", "scope_claims[1]"),
        ("scope_claims = [\"\"]", "scope_claims[0]"),
        // [[issuers]] beside the one-issuer shorthand (BASE sets issuer and audience).
        (
            "[[issuers]]\nissuer = \"https://a.example/\"\naudience = \"api\"\njwks_uri = \"https://a.example/keys\"\n",
            "`issuer` = \"with [[issuers]]\"",
        ),
        ("[forward_claims]\n\"x_email\" = \"email\"", "x_email"),
        (
            "[forward_claims]\n\"x-auth-subject\" = \"email\"",
            "x-auth-subject",
        ),
        (
            "[forward_claims]\n\"x-envoy-original-path\" = \"p\"",
            "x-envoy-original-path",
        ),
        ("[forward_claims]\n\"x-sub\" = \"sub\"", "registered claims"),
        (
            "[[rules]]\npath = \"/a\"\ndeny = true\npublic = true",
            "`rules[0].public` = \"with deny = true\"",
        ),
        (
            "[[rules]]\npath = \"/a\"\ndeny = true\nscopes = [\"a\"]",
            "`rules[0].scopes` = \"with deny = true\"",
        ),
        (
            "[[rules]]\npath = \"/a\"\ndeny = true\nall_scopes = [\"a\"]",
            "`rules[0].all_scopes` = \"with deny = true\"",
        ),
        ("[[rules]]\npath = \"/a\"\ndeny = \"yes\"", "deny"),
        (
            "[forward_claims]\n\"X-Request-Id\" = \"rid\"",
            "forward_claims.\"X-Request-Id\"",
        ),
        (
            "[forward_claims]\n\"x-http-method-override\" = \"m\"",
            "x-http-method-override",
        ),
        (
            "[forward_claims]\n\"x-http-method\" = \"m\"",
            "x-http-method",
        ),
        (
            "[forward_claims]\n\"x-method-override\" = \"m\"",
            "x-method-override",
        ),
        (
            "[forward_claims]\n\"x-forwarded-for\" = \"ip\"",
            "x-forwarded-for",
        ),
        (
            "[forward_claims]\n\"X-Forwarded-Proto\" = \"p\"",
            "X-Forwarded-Proto",
        ),
        ("[forward_claims]\n\"forwarded\" = \"f\"", "forwarded"),
        (
            "[forward_claims]\n\"x-original-uri\" = \"u\"",
            "x-original-uri",
        ),
        (
            "[forward_claims]\n\"x-scopegate-tenant\" = \"t\"",
            "x-scopegate-tenant",
        ),
        ("[forward_claims]\n\"dpop\" = \"d\"", "dpop"),
        ("[forward_claims]\n\"traceparent\" = \"t\"", "traceparent"),
        ("[forward_claims]\n\"tracestate\" = \"t\"", "tracestate"),
        ("[forward_claims]\n\"x-org\" = \"/org/~2\"", "x-org"),
        ("[forward_claims]\n\"x-org\" = \"/\"", "x-org"),
        (
            "[forward_claims]\n\"X-A\" = \"a\"\n\"x-a\" = \"b\"",
            "the same header twice",
        ),
        ("[server]\nmax_connections = 0", "server.max_connections"),
        (
            "[server]\nmax_request_bytes = 1000",
            "server.max_request_bytes",
        ),
        ("[server]\ncheck_timeout_ms = 0", "server.check_timeout_ms"),
        ("[server]\nworker_threads = 257", "server.worker_threads"),
        (
            "[server]\nidle_timeout_seconds = 0",
            "server.idle_timeout_seconds",
        ),
        ("[server]\nbogus = 1", "bogus"),
        ("[[rules]]\nscopes = [\"a\"]", "rules[0].path"),
        ("[[rules]]\npath = \"/a\"\nprefix = \"/b\"", "rules[0]"),
        (
            "[[rules]]\npath = \"/a\"\npublic = true\nscopes = [\"a\"]",
            "rules[0].scopes",
        ),
        ("[[rules]]\npath = \"/a\"\nscopes = []", "rules[0].scopes"),
        (
            "[[rules]]\npath = \"/a\"\nall_scopes = []",
            "rules[0].all_scopes",
        ),
        (
            "[[rules]]\npath = \"/a\"\nscopes = [\"a b\"]",
            "rules[0].scopes",
        ),
        // Not scope-tokens: no token could grant them.
        (
            "[[rules]]\npath = \"/a\"\nscopes = [\"read\u{200b}\"]",
            "rules[0].scopes",
        ),
        (
            "[[rules]]\npath = \"/a\"\nall_scopes = [\"ok\", \"léa\"]",
            "rules[0].all_scopes",
        ),
        (
            "[[rules]]\npath = \"/a\"\nscopes = [\"a\u{00a0}b\"]",
            "rules[0].scopes",
        ),
        (
            "[[rules]]\npath = \"/a\"\nscopes = [\"a\"]\nall_scopes = [\"b\"]",
            "rules[0]",
        ),
        ("[[rules]]\npath = \"/a\"\nmethods = []", "rules[0].methods"),
        (
            "[[rules]]\npath = \"/a\"\nmethods = [\"G T\"]",
            "rules[0].methods",
        ),
        (
            "[[rules]]\npath = \"/a\"\nmethods = [\"\"]",
            "rules[0].methods",
        ),
        ("[[rules]]\npath = \"a\"", "rules[0].path"),
        ("[[rules]]\npath = \"/a/../b\"", "rules[0].path"),
        ("[[rules]]\nprefix = \"/%61\"", "rules[0].prefix"),
        (
            "[[rules]]\npath = \"/Admin\"\npublic = true\n[[rules]]\nprefix = \"/admin\"",
            "rules[1] (\"/admin\"",
        ),
        (
            "[[rules]]\nprefix = \"/A\"\n[[rules]]\npath = \"/apple\"\npublic = true",
            "rules[1].path",
        ),
        ("[[rules]]\npath = \"/a\"\nscope = [\"x\"]", "scope"),
        // Methods are case-sensitive RFC 9110 tokens, written upper-case.
        (
            "[[rules]]\npath = \"/a\"\nmethods = [\"get\"]",
            "write \"GET\"",
        ),
        (
            "[[rules]]\npath = \"/a\"\nmethods = [\"Get\"]",
            "rules[0].methods",
        ),
        (
            "[[rules]]\npath = \"/a\"\nmethods = [\"GE(T\"]",
            "rules[0].methods",
        ),
        // A rule that an earlier rule always wins.
        (
            "[[rules]]\nprefix = \"/\"\npublic = true\n[[rules]]\npath = \"/admin\"",
            "rules[1].path",
        ),
        (
            "[[rules]]\nprefix = \"/admin/\"\n[[rules]]\npath = \"/admin/public\"\npublic = true",
            "rules[0] (\"/admin/\") comes first",
        ),
        (
            "[[rules]]\npath = \"/a\"\nmethods = [\"GET\", \"POST\"]\n[[rules]]\npath = \"/a\"\nmethods = [\"GET\"]\npublic = true",
            "rules[1].path",
        ),
        (
            "[[rules]]\npath = \"/a\"\n[[rules]]\npath = \"/a\"\nmethods = [\"PUT\"]\npublic = true",
            "rules[1].path",
        ),
        // Literals that look like globs or templates, and trailing whitespace.
        ("[[rules]]\npath = \"/admin/*\"", "rules[0].path"),
        ("[[rules]]\nprefix = \"/users/{id}\"", "use `template"),
        // Templates: named by key, with what is wrong.
        (
            "[[rules]]\ntemplate = \"/f/{name}.json\"",
            "rules[0].template",
        ),
        ("[[rules]]\ntemplate = \"/f/{name}.json\"", "whole segment"),
        ("[[rules]]\ntemplate = \"/a/{**}/b\"", "last segment"),
        ("[[rules]]\ntemplate = \"/a/b\"", "write it as `path`"),
        (
            "[[rules]]\npath = \"/a\"\ntemplate = \"/a/{x}\"",
            "exactly one of `path`, `prefix` and `template`",
        ),
        (
            "[[rules]]\ntemplate = \"/items/{id}\"\n[[rules]]\npath = \"/items/mine\"\npublic = true",
            "rules[1].path",
        ),
        ("[[rules]]\npath = \"/admin \"", "ends with whitespace"),
        // Rule paths that another rule with another requirement takes under a reading.
        (
            "[[rules]]\npath = \"/admin\"\nscopes = [\"admin\"]\n[[rules]]\npath = \"/adm\u{131}n\"\npublic = true",
            "letter case ignored",
        ),
        (
            "[[rules]]\npath = \"/admin\"\nscopes = [\"admin\"]\n[[rules]]\nprefix = \"/admin/\"\npublic = true",
            "trailing slash",
        ),
    ];
    for (extra, key) in cases {
        let err = compile(extra).expect_err(extra).to_string();
        assert!(
            err.contains(key),
            "error for {extra:?} should name {key:?}: {err}"
        );
    }
}

/// The README's configuration reference cannot drift: it mentions every key the parser
/// accepts (top level, `[server]`, `[[rules]]`), it is a valid configuration, and every
/// default it shows is the compiled default.
#[test]
fn the_readme_reference_lists_every_key_with_its_compiled_default() {
    let readme = include_str!("../../README.md");
    let reference = &readme[readme
        .find("### Configuration reference")
        .expect("the README has a configuration reference")..];
    let block = &reference[reference.find("```toml\n").expect("a toml block") + 8..];
    let block = &block[..block.find("```").expect("the block ends")];

    // Every `name =` in the block, in code or in a comment.
    let mut mentioned = std::collections::BTreeSet::new();
    for line in block.lines() {
        // Table headers, also commented out: `[server]`, `[[rules]]`, `# [forward_claims]`.
        let code = line.trim_start().trim_start_matches('#').trim_start();
        if code.starts_with('[')
            && let Some(header) = code.split_whitespace().next()
        {
            mentioned.insert(header.trim_matches(['[', ']']).to_string());
        }
        let mut rest = line;
        while let Some(at) = rest.find('=') {
            if let Some(name) = rest[..at].split_whitespace().last() {
                mentioned.insert(name.trim_start_matches('#').to_string());
            }
            rest = &rest[at + 1..];
        }
    }
    for (table, probe) in [
        ("", "bogus_key = 1"),
        ("server.", "[server]\nbogus_key = 1"),
        ("http_server.", "[http_server]\nbogus_key = 1"),
        ("rules[].", "[[rules]]\npath = \"/a\"\nbogus_key = 1"),
    ] {
        let error = RawConfig::from_toml(&format!("{BASE}{probe}"), "<test>")
            .expect_err("an unknown key is refused")
            .to_string();
        let accepted = error
            .split("expected one of ")
            .nth(1)
            .unwrap_or_else(|| panic!("{error}"));
        for key in accepted.split('`').skip(1).step_by(2) {
            assert!(
                mentioned.contains(key),
                "README's configuration reference does not mention `{table}{key}`"
            );
        }
    }

    let shown = RawConfig::from_toml(block, "README")
        .expect("the reference parses")
        .compile()
        .expect("the reference compiles");
    let defaults = RawConfig::from_toml(
        &format!(
            "issuer = {:?}\naudience = {:?}\njwks_uri = {:?}\n",
            shown.issuers[0].expectations.issuer,
            shown.issuers[0].expectations.audiences[0],
            shown.issuers[0].jwks.uri.as_str()
        ),
        "<defaults>",
    )
    .expect("parses")
    .compile()
    .expect("compiles");
    assert_eq!(shown.listen, defaults.listen, "listen");
    assert_eq!(
        shown.issuers[0].expectations, defaults.issuers[0].expectations,
        "token expectations"
    );
    assert_eq!(
        shown.issuers[0].jwks, defaults.issuers[0].jwks,
        "jwks_* settings"
    );
    assert_eq!(shown.server, defaults.server, "[server]");
    assert_eq!(shown.http_server, defaults.http_server, "[http_server]");
    assert_eq!(shown.realm, defaults.realm, "realm");
    assert_eq!(shown.decision_log, defaults.decision_log, "decision_log");
    assert_eq!(
        shown.cors_preflight, defaults.cors_preflight,
        "cors_preflight"
    );
    assert_eq!(
        shown.token_cache_size, defaults.token_cache_size,
        "token_cache_size"
    );
    assert_eq!(
        shown.token_cache_max_bytes, defaults.token_cache_max_bytes,
        "token_cache_max_bytes"
    );
    assert_eq!(
        shown.reload_on_change, defaults.reload_on_change,
        "reload_on_change"
    );
    assert_eq!(
        shown.trust_forwarded_client_cert, defaults.trust_forwarded_client_cert,
        "trust_forwarded_client_cert"
    );
    assert_eq!(
        shown.policy().default_requirement(),
        defaults.policy().default_requirement(),
        "default"
    );
}

#[test]
fn required_keys() {
    let err = RawConfig::default()
        .compile()
        .expect_err("empty")
        .to_string();
    assert!(err.contains("`issuer` is required"), "{err}");
    let raw = RawConfig {
        issuer: Some("https://i/".into()),
        ..RawConfig::default()
    };
    let err = raw.compile().expect_err("no audience").to_string();
    assert!(err.contains("`audience` is required"), "{err}");
}

#[test]
fn environment_overrides_the_file() {
    let mut raw = RawConfig::from_toml(BASE, "<test>").expect("parses");
    raw.apply_env(|name| match name {
        "SCOPEGATE_ISSUER" => Some("https://other.example/".into()),
        "SCOPEGATE_AUDIENCE" => Some("a, b".into()),
        "SCOPEGATE_JWKS_URI" => Some("http://127.0.0.1:1/keys".into()),
        "SCOPEGATE_LISTEN" => Some("127.0.0.1:0".into()),
        "SCOPEGATE_HTTP_LISTEN" => Some("127.0.0.1:9193".into()),
        _ => None,
    });
    let c = raw.compile().expect("compiles");
    assert_eq!(c.issuers[0].expectations.issuer, "https://other.example/");
    assert_eq!(c.issuers[0].expectations.audiences, ["a", "b"]);
    assert_eq!(c.issuers[0].jwks.uri.as_str(), "http://127.0.0.1:1/keys");
    assert_eq!(c.listen.to_string(), "127.0.0.1:0");
    assert_eq!(c.http_listen, Some("127.0.0.1:9193".parse().expect("addr")));
}

/// `trust_forwarded_client_cert`: off unless said, and `check-config` says where a client
/// certificate is read from.
#[test]
fn trust_forwarded_client_cert_defaults_off_and_is_printed() {
    let c = compile("").expect("the default");
    assert!(!c.trust_forwarded_client_cert());
    assert!(c.to_string().contains("client cert       the peer's only"));
    let c = compile("trust_forwarded_client_cert = true").expect("trusted");
    assert!(c.trust_forwarded_client_cert());
    assert!(
        c.to_string()
            .contains("client cert       x-forwarded-client-cert when sent")
    );
    let err = compile("trust_forwarded_client_cert = \"yes\"")
        .expect_err("not a boolean")
        .to_string();
    assert!(err.contains("trust_forwarded_client_cert"), "{err}");
}

/// `[[token_sources]]`: the default, what each entry compiles to (and `check-config` prints),
/// and each refusal naming its key and value.
#[test]
fn token_sources_compile_and_errors_name_the_key() {
    let c = compile("").expect("the default");
    assert_eq!(*c.token_sources(), TokenSources::default());
    let c = compile(
        "allow_query_tokens = true\n\
         [[token_sources]]\nheader = \"Authorization\"\nscheme = [\"Bearer\", \"DPoP\"]\n\
         [[token_sources]]\nheader = \"X-Api-Token\"\n\
         [[token_sources]]\ncookie = \"at\"\n\
         [[token_sources]]\nquery = \"access_token\"\n",
    )
    .expect("four sources");
    let printed = c.to_string();
    for line in [
        "token source      header authorization (scheme Bearer, DPoP)",
        "token source      header x-api-token (the whole value)",
        "token source      cookie at",
        "token source      query access_token",
    ] {
        assert!(printed.contains(line), "{line}\n{printed}");
    }
    let cases: &[(&str, &str)] = &[
        ("[[token_sources]]\nquery = \"t\"", "token_sources[0].query"),
        (
            "[[token_sources]]\nquery = \"t\"",
            "allow_query_tokens = true",
        ),
        (
            "allow_query_tokens = true\nhttp_listen = \"127.0.0.1:0\"\n[[token_sources]]\nquery = \"t\"",
            "http_listen",
        ),
        (
            "allow_query_tokens = true\n[[token_sources]]\nquery = \"a%62\"",
            "token_sources[0].query",
        ),
        (
            "[[token_sources]]\nheader = \"x_api\"",
            "token_sources[0].header",
        ),
        (
            "[[token_sources]]\nheader = \"authorization\"\nscheme = \"Bearer x\"",
            "token_sources[0].scheme",
        ),
        (
            "[[token_sources]]\nheader = \"authorization\"\nscheme = []",
            "token_sources[0].scheme",
        ),
        (
            "[[token_sources]]\ncookie = \"at\"\nscheme = \"Bearer\"",
            "token_sources[0].scheme",
        ),
        (
            "[[token_sources]]\ncookie = \"a b\"",
            "token_sources[0].cookie",
        ),
        (
            "[[token_sources]]\ncookie = \"at\"\nheader = \"x-t\"",
            "exactly one of header, cookie or query",
        ),
        (
            "[[token_sources]]\n",
            "exactly one of header, cookie or query",
        ),
        ("token_sources = []", "at least one token source"),
        (
            "[[token_sources]]\ncookie = \"at\"\n[[token_sources]]\ncookie = \"at\"",
            "token_sources[1]",
        ),
        (
            "[[token_sources]]\nheader = \"X-T\"\n[[token_sources]]\nheader = \"x-t\"",
            "the same place as token_sources[0]",
        ),
        ("[[token_sources]]\nbogus = \"at\"", "bogus"),
        // A claim may not be forwarded in the header the token is read from.
        (
            "[forward_claims]\n\"x-api-token\" = \"email\"\n[[token_sources]]\nheader = \"x-api-token\"",
            "forward_claims.\"x-api-token\"",
        ),
    ];
    for (extra, key) in cases {
        let err = compile(extra).expect_err(extra).to_string();
        assert!(
            err.contains(key),
            "error for {extra:?} should name {key:?}: {err}"
        );
    }
}
