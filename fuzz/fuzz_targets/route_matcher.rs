//! Fuzzes the path canonicaliser and the route matcher (`scopegate::policy::normalize`,
//! `Policy::route`, `policy::decide`): together they decide which rule, and so which scopes, a
//! request needs, and a spelling of a path that slipped past its rule would be an authorization
//! bypass.
//!
//! Input: `METHOD SP RAW-PATH` (split at the first space; without one the method is `GET`), both
//! UTF-8 as the gRPC request carries them. Two policies compiled through the real configuration
//! code are tried: one whose unmatched requests are public (so a dodged rule would show as an
//! anonymous allow) and one whose unmatched requests are denied.
//!
//! Properties:
//! - no panic;
//! - a canonical path is a fixed point: it holds no `?` or `#` (encoded ones are refused, raw ones
//!   end the path), it canonicalises to itself, and so does its fully percent-encoded spelling, so
//!   no encoding reaches a different rule;
//! - the route is the first rule that matches by a plain reading of the compiled rules (exact
//!   method, `HEAD` read as `GET` unless the rule taking it names `HEAD`), and its only possible
//!   refusals are the reading variants (`CaseVariant`, `TrailingVariant`, `MethodCaseVariant`,
//!   `FormatVariant`, `CompatibilityVariant`) and `CompatibilityDelimiter`;
//! - a path whose NFKC form holds a `/` more, or a `\`, `%`, `?`, `#`, `;` or dot segment, is
//!   refused with `CompatibilityDelimiter`, and no other path is;
//! - another spelling that some upstream reads alike (the method or the path's letters in the
//!   other case, one trailing slash added or removed, trailing dots and spaces removed, the last
//!   format suffix or every one removed, the NFKC form, and any method-case and path spelling
//!   together) either reaches the same requirement or is refused;
//! - without authentication (`None`, or a failed one) a route that needs a token is never allowed,
//!   and a public route is always allowed anonymously.
#![no_main]

use std::fmt::Write as _;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use scopegate::config::RawConfig;
use scopegate::policy::path::MAX_PATH_BYTES;
use scopegate::policy::{
    AuthError, Decision, Denial, PathError, PathMatch, Policy, RequestPath, Rule, decide, normalize,
};
use scopegate::auth::token::CredentialsError;

/// NFKC, for the compatibility reading, independently of scopegate's use of it.
const NFKC: icu_normalizer::ComposingNormalizerBorrowed<'static> =
    icu_normalizer::ComposingNormalizerBorrowed::new_nfkc();

/// Rules shared by both policies: exact and prefix paths, templates, method lists in either case,
/// any-of and all-of scopes, a protected subtree inside a public one, non-ASCII and space
/// characters, a path whose rule takes one method beside a subtree taking every method, and a
/// shadow rule that would make everything public were it enforced.
const RULES: &str = r#"
[[rules]]
path = "/health"
public = true

[[rules]]
path = "/messages"
methods = ["POST", "PUT"]
all_scopes = ["write:messages", "audit"]

[[rules]]
path = "/messages"
scopes = ["read:messages"]

[[rules]]
prefix = "/admin/"
all_scopes = ["admin"]

[[rules]]
prefix = "/api"
scopes = ["api:read", "api:write"]

[[rules]]
prefix = "/public/private/"
scopes = ["private"]

[[rules]]
prefix = "/public/"
public = true

[[rules]]
path = "/caf\u00e9/menu"
methods = ["GET"]

[[rules]]
path = "/docs/a b"
public = true

[[rules]]
path = "/items/mine"

[[rules]]
template = "/items/{id}"
methods = ["GET"]
scopes = ["items:read"]

[[rules]]
template = "/items/{id}/notes/{rest=**}"
all_scopes = ["items:read", "notes"]

[[rules]]
path = "/export"
methods = ["POST"]
scopes = ["export"]

[[rules]]
prefix = "/export/"
scopes = ["export"]

[[rules]]
name = "would make items public"
template = "/{any}/{**}"
public = true
shadow = true
"#;

fn policies() -> &'static [Policy; 2] {
    static POLICIES: OnceLock<[Policy; 2]> = OnceLock::new();
    POLICIES.get_or_init(|| {
        ["allow", "deny"].map(|default| {
            let text = format!(
                "issuer = \"https://issuer.fuzz.example/\"\naudience = \"https://api.fuzz.example\"\ndefault = \"{default}\"\n{RULES}"
            );
            RawConfig::from_toml(&text, "<fuzz>")
                .and_then(RawConfig::compile)
                .expect("the fuzzing policy compiles")
                .policy()
                .clone()
        })
    })
}

fuzz_target!(|data: &[u8]| {
    let (method, raw) = match data.iter().position(|b| *b == b' ') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (&b"GET"[..], data),
    };
    let (Ok(method), Ok(raw)) = (std::str::from_utf8(method), std::str::from_utf8(raw)) else {
        return;
    };
    let Ok(path) = normalize(raw) else {
        // Refused paths are denied before any rule is looked at; only "no panic" applies.
        return;
    };

    let canonical = path.as_str();
    assert!(
        !canonical.contains(['?', '#']),
        "canonical path {path:?} holds a query or fragment delimiter"
    );
    assert_eq!(
        normalize(canonical).as_ref(),
        Ok(&path),
        "canonical path {path:?} does not canonicalise to itself"
    );
    let encoded = percent_encode_all(path.as_str());
    if encoded.len() <= MAX_PATH_BYTES {
        assert_eq!(
            normalize(&encoded).as_ref(),
            Ok(&path),
            "fully encoded {encoded:?} does not canonicalise to {path:?}"
        );
    }

    for policy in policies() {
        check_route(policy, method, &path);
    }
});

fn check_route(policy: &Policy, method: &str, path: &RequestPath) {
    let compatible = NFKC.normalize(path.as_str());
    let gains_delimiter = {
        let slashes = |s: &str| s.matches('/').count();
        compatible.contains(['\\', '%', '?', '#', ';'])
            || slashes(&compatible) > slashes(path.as_str())
            || compatible.split('/').any(|s| s == "." || s == "..")
    };
    let route = match policy.route(method, path) {
        Err(PathError::CompatibilityDelimiter) => {
            assert!(
                gains_delimiter,
                "{path:?} refused for a delimiter its compatibility form {compatible:?} lacks"
            );
            return;
        }
        _ if gains_delimiter => {
            panic!("{path:?} reads as {compatible:?} in compatibility form but was not refused")
        }
        Ok(route) => route,
        Err(
            PathError::CaseVariant
            | PathError::TrailingVariant
            | PathError::MethodCaseVariant
            | PathError::FormatVariant
            | PathError::CompatibilityVariant,
        ) => {
            return;
        }
        Err(other) => panic!("route refused {path:?} with {other:?}, which only normalize returns"),
    };
    let expected = first_match(policy, method, path.as_str()).map_or("default", |r| &**r.name());
    assert_eq!(
        &**route.name, expected,
        "{method} {path:?} routed to {} instead of {expected}",
        route.name
    );

    // Another spelling an upstream might read the same way either reaches the same requirement
    // or is refused: the method in either case, the path's letters in either case, one trailing
    // slash added or removed, trailing dots and spaces removed, format suffixes removed, the
    // compatibility form.
    let bare = path.as_str().trim_end_matches(['.', ' ']);
    let toggled = match path.as_str().strip_suffix('/') {
        Some(stripped) if !stripped.is_empty() => stripped.to_string(),
        Some(_) => path.as_str().to_string(),
        None => format!("{}/", path.as_str()),
    };
    let suffix = |p: &str| -> Option<usize> {
        let (head, ext) = p.rsplit_once('.')?;
        (!ext.is_empty() && ext.bytes().all(|b| b.is_ascii_alphanumeric())).then_some(head.len())
    };
    let mut unsuffixed = path.as_str();
    let mut unsuffixed_once = None;
    while let Some(end) = suffix(unsuffixed) {
        unsuffixed = &unsuffixed[..end];
        unsuffixed_once.get_or_insert(unsuffixed);
    }
    let spellings = [
        path.as_str().to_ascii_uppercase(),
        path.as_str().to_ascii_lowercase(),
        toggled,
        if bare.is_empty() {
            "/".to_string()
        } else {
            bare.to_string()
        },
        unsuffixed_once.unwrap_or(path.as_str()).to_string(),
        unsuffixed.to_string(),
        compatible.to_ascii_lowercase(),
        compatible.into_owned(),
    ];
    // A path a template takes as written is the template's: a reading that leaves every rule
    // for the default is not counted, as `Policy::route` documents (`/items/42/` falling to
    // `default = "allow"` must not refuse `/items/42`); readings reaching another rule are.
    let templated = route
        .rule
        .is_some_and(|rule| matches!(rule.path(), PathMatch::Template(_)));
    for other_method in [method.to_ascii_uppercase(), method.to_ascii_lowercase()] {
        for spelling in std::iter::once(path.as_str()).chain(spellings.iter().map(String::as_str)) {
            let Ok(other) = normalize(spelling) else {
                continue;
            };
            if let Ok(other_route) = policy.route(&other_method, &other) {
                if templated && other_route.rule.is_none() {
                    continue;
                }
                assert_eq!(
                    other_route.requirement, route.requirement,
                    "{method} {path:?} and {other_method} {other:?} are read alike by some \
                     upstream but reach different requirements ({} and {})",
                    route.name, other_route.name
                );
            }
        }
    }

    let requirement = route.requirement;
    let anonymous = decide(requirement, None);
    let failed = decide(requirement, Some(Err(AuthError::KeysUnavailable)));
    if requirement.needs_token() {
        assert_eq!(
            anonymous,
            Decision::Deny(Denial::Unauthenticated(AuthError::Credentials(
                CredentialsError::Missing
            ))),
            "{method} {path:?} needs a token ({requirement}) but was not denied without one"
        );
        assert!(
            matches!(failed, Decision::Deny(Denial::Unauthenticated(_))),
            "{method} {path:?} needs a token ({requirement}) but a failed authentication gave {failed:?}"
        );
    } else {
        assert_eq!(
            anonymous,
            Decision::Allow(None),
            "public route {} denied an anonymous request",
            route.name
        );
    }
}

/// The first rule whose method list and path pattern accept the request, read straight from the
/// compiled rules (case-sensitive path and method), with HEAD read as GET unless the rule that
/// takes HEAD names it.
fn first_match<'a>(policy: &'a Policy, method: &str, path: &str) -> Option<&'a Rule> {
    let find = |method: &str| {
        policy.rules().iter().filter(|rule| !rule.is_shadow()).find(|rule| {
            let path_ok = match rule.path() {
                PathMatch::Exact(exact) => path == exact,
                PathMatch::Prefix(prefix) => path.starts_with(prefix.as_str()),
                PathMatch::Template(template) => template_matches(template.pattern(), path),
            };
            let method_ok = rule
                .methods()
                .is_none_or(|methods| methods.iter().any(|m| m == method));
            path_ok && method_ok
        })
    };
    if method == "HEAD" {
        match find("HEAD") {
            Some(rule) if rule.methods().into_iter().flatten().any(|m| m == "HEAD") => Some(rule),
            _ => find("GET"),
        }
    } else {
        find(method)
    }
}

/// Whether the template `pattern` takes `path`, read segment by segment: `{name}` is one
/// non-empty segment, a last `{...**}` one or more segments, anything else itself.
fn template_matches(pattern: &str, path: &str) -> bool {
    let pattern: Vec<&str> = pattern.split('/').collect();
    let path: Vec<&str> = path.split('/').collect();
    for (i, want) in pattern.iter().enumerate() {
        if want.starts_with('{') && want.ends_with("**}") {
            return path.len() > i && path[i..].concat() != "";
        }
        let Some(got) = path.get(i) else { return false };
        let ok = if want.starts_with('{') { !got.is_empty() } else { got == want };
        if !ok {
            return false;
        }
    }
    path.len() == pattern.len()
}

/// Every byte but `/` percent-encoded: the spelling furthest from the canonical one.
fn percent_encode_all(path: &str) -> String {
    let mut out = String::with_capacity(path.len() * 3);
    for b in path.bytes() {
        if b == b'/' {
            out.push('/');
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}
