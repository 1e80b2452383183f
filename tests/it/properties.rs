//! Property-based tests over the parsers that see attacker-controlled input first: the Bearer
//! header parser, the path canonicaliser, the token verifier and the method-override reading.
//! None may panic, no input that lacks a valid token may ever be allowed onto a protected route,
//! and no request is decided under another method than the one it asks the upstream to run.

use std::sync::OnceLock;

use crate::common::{TestKey, claims, jwks_of, now};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;
use scopegate::keys::KeySet;
use scopegate::policy::{self, Decision, PathMatch, Policy, Requirement, Rule};
use scopegate::token::bearer_token;
use scopegate::verify::{self, Algorithm, Expectations};

struct Fixture {
    key: TestKey,
    keys: KeySet,
    expect: Expectations,
    token: String,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let key = TestKey::generate("key-1");
        let (keys, _) = KeySet::parse(
            jwks_of(&[&key]).to_string().as_bytes(),
            &[Algorithm::RS256],
            100,
        )
        .expect("jwks");
        let token = key.mint(&claims("read:messages"));
        Fixture {
            key,
            keys,
            expect: Expectations {
                issuer: crate::common::ISSUER.into(),
                audiences: vec![crate::common::AUDIENCE.into()],
                leeway_seconds: 60,
                algorithms: vec![Algorithm::RS256],
                token_types: None,
                scope_claims: vec!["scope".into(), "scp".into()],
                forward_claims: Vec::new(),
            },
            token,
        }
    })
}

fn protected_policy() -> Policy {
    let rules = vec![
        Rule::new(
            0,
            None,
            PathMatch::Prefix("/public/".into()),
            None,
            Requirement::Public,
        )
        .expect("rule"),
        Rule::new(
            1,
            None,
            PathMatch::Prefix("/".into()),
            None,
            Requirement::AnyScope(vec!["read:messages".into()]),
        )
        .expect("rule"),
    ];
    Policy::new(rules, Requirement::Deny).expect("a valid policy")
}

/// Header values: mostly Bearer-looking, with hostile characters mixed in.
fn header_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[ \t]{0,2}(?i:bearer)[ \t,]{0,3}[A-Za-z0-9._~+/=\\- ,\t\"\\\\]{0,40}",
        "(?i:basic|bearer|token) [ -~]{0,30}",
    ]
}

/// Paths: mostly path-looking, with every trick character in the alphabet.
fn raw_path() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "(/|%2[fF]|%2[eE]|\\.|\\.\\.|;|\\\\|%5[cC]|%25|%00|[a-z]{1,4}|\\?|#){0,10}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn bearer_parser_never_panics_and_returns_only_token68(values in proptest::collection::vec(header_value(), 0..3)) {
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        if let Ok(token) = bearer_token(&refs) {
            prop_assert_eq!(values.len(), 1);
            let body = token.trim_end_matches('=');
            prop_assert!(!body.is_empty());
            prop_assert!(body.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)));
            prop_assert!(values[0].trim_start_matches([' ', '\t']).to_ascii_lowercase().starts_with("bearer "));
        }
    }

    #[test]
    fn canonical_paths_are_unambiguous_and_stable(raw in raw_path()) {
        if let Ok(path) = policy::normalize(&raw) {
            let p = path.as_str();
            prop_assert!(p.starts_with('/'));
            prop_assert!(!p.contains("//"));
            prop_assert!(!p.contains(['\\', ';', '%', '?', '#']));
            prop_assert!(!p.chars().any(|c| c.is_control()));
            prop_assert!(p.split('/').all(|s| s != "." && s != ".."));
            // Canonical output is a fixed point: no second decoding can change what matched.
            let again = policy::normalize(p);
            prop_assert_eq!(again.as_ref().map(|x| x.as_str()), Ok(p));
        }
    }

    #[test]
    fn arbitrary_strings_never_verify(token in any::<String>()) {
        let f = fixture();
        prop_assert!(verify::verify(&token, &f.keys, &f.expect, now()).is_err());
    }

    #[test]
    fn any_change_to_a_valid_token_makes_it_fail(at in any::<prop::sample::Index>(), byte in 0x21u8..0x7f) {
        let f = fixture();
        let mut bytes = f.token.clone().into_bytes();
        let i = at.index(bytes.len());
        prop_assume!(bytes[i] != byte);
        bytes[i] = byte;
        let Ok(mutated) = String::from_utf8(bytes) else { return Ok(()) };
        // A changed base64url character can decode to the same bytes only in the unused low
        // bits of a segment's last character, which the decoder refuses (non-canonical).
        prop_assert!(verify::verify(&mutated, &f.keys, &f.expect, now()).is_err(), "{}", mutated);
    }

    #[test]
    fn tokens_signed_over_other_bytes_never_verify(header in any::<String>(), payload in any::<String>()) {
        let f = fixture();
        let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(&header), URL_SAFE_NO_PAD.encode(&payload));
        let signature = f.token.rsplit('.').next().expect("signature");
        let token = format!("{input}.{signature}");
        prop_assert!(verify::verify(&token, &f.keys, &f.expect, now()).is_err());
        // Even correctly signed, arbitrary headers and payloads must also pass every claim check.
        let signed = f.key.mint_raw(&serde_json::json!(header), &serde_json::json!(payload));
        prop_assert!(verify::verify(&signed, &f.keys, &f.expect, now()).is_err());
    }

    #[test]
    fn protected_routes_are_never_allowed_without_a_valid_token(
        method in "[A-Za-z]{1,7}",
        raw in raw_path(),
        values in proptest::collection::vec(header_value(), 0..3),
    ) {
        let f = fixture();
        let policy = protected_policy();
        let Ok(path) = policy::normalize(&raw) else { return Ok(()) };
        let Ok(route) = policy.route(&method, &path) else { return Ok(()) };
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        let auth = route.requirement.needs_token().then(|| {
            let token = bearer_token(&refs).map_err(policy::AuthError::from)?;
            Ok(verify::verify(token, &f.keys, &f.expect, now())?)
        });
        let decision = policy::decide(route.requirement, auth);
        if matches!(decision, Decision::Allow(_)) {
            prop_assert!(path.as_str().starts_with("/public/"), "allowed {} {}", method, path);
        }
    }
}

/// Items protected per method and a public GET path whose DELETE is protected, under
/// `default = "allow"`: the shapes a method override could dodge.
fn per_method_policy() -> Policy {
    let scope = |s: &str| Requirement::AnyScope(vec![s.into()]);
    let template = |t: &str| PathMatch::Template(policy::Template::parse(t).expect("template"));
    let methods = |ms: &[&str]| Some(ms.iter().map(|m| m.to_string()).collect());
    let rules = vec![
        Rule::new(
            0,
            None,
            template("/items/{id}"),
            methods(&["GET"]),
            scope("read"),
        ),
        Rule::new(
            1,
            None,
            template("/items/{id}"),
            methods(&["POST", "PUT"]),
            scope("write"),
        ),
        Rule::new(
            2,
            None,
            template("/items/{id}"),
            methods(&["DELETE"]),
            scope("delete"),
        ),
        Rule::new(
            3,
            None,
            PathMatch::Exact("/notes".into()),
            methods(&["DELETE"]),
            scope("delete"),
        ),
    ];
    let rules = rules.into_iter().collect::<Result<_, _>>().expect("rules");
    Policy::new(rules, Requirement::Public).expect("a valid policy")
}

/// A `_method` query parameter as some client might spell it, with the method it names (which
/// scopegate must assume an upstream runs).
fn override_parameter() -> impl Strategy<Value = (String, &'static str)> {
    let method = prop::sample::select(&["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"][..]);
    let spelling =
        prop::sample::select(&["_method", "%5Fmethod", "%5fmethod", "_m%65thod", "+_method"][..]);
    let case = any::<bool>();
    (spelling, method, case).prop_map(|(name, method, lower)| {
        let value = if lower {
            method.to_ascii_lowercase()
        } else {
            method.to_string()
        };
        // The first letter percent-encoded, as a client is free to.
        let value = format!("%{:02X}{}", value.as_bytes()[0], &value[1..]);
        (format!("{name}={value}"), method)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Whatever the request's own method, however the override is spelt and wherever it sits
    /// in the query: a request decided at all is decided as the method it names would be, and
    /// two overrides are never decided.
    #[test]
    fn a_method_override_is_never_decided_differently_from_the_method_it_names(
        own in prop::sample::select(&["GET", "POST", "PUT", "DELETE", "OPTIONS"][..]),
        path in prop::sample::select(&["/items/7", "/notes", "/elsewhere"][..]),
        overrides in proptest::collection::vec(override_parameter(), 0..3),
        noise in proptest::collection::vec("[a-z]{1,3}=[a-z0-9]{0,3}", 0..3),
        separators in proptest::collection::vec(prop::sample::select(&["&", ";", "#"][..]), 6),
        header in proptest::option::of(prop::sample::select(&["GET", "PUT", "DELETE", "delete"][..])),
    ) {
        let policy = per_method_policy();
        let pieces: Vec<&str> = noise.iter().map(String::as_str)
            .chain(overrides.iter().map(|(piece, _)| piece.as_str()))
            .collect();
        let mut query = String::new();
        for (i, piece) in pieces.iter().enumerate() {
            if i > 0 {
                query.push_str(separators[i % separators.len()]);
            }
            query.push_str(piece);
        }
        let raw = if query.is_empty() { path.to_string() } else { format!("{path}?{query}") };
        let headers: Vec<(&str, &str)> = header.iter().map(|m| ("x-http-method-override", *m)).collect();
        let lookup = |name: &str| headers.iter().filter(|(n, _)| *n == name).map(|(_, v)| *v).collect::<Vec<&str>>();
        let (resolved, _) = policy.resolve_request(own, &raw, false, lookup);
        let named: Vec<String> = overrides.iter().map(|(_, m)| m.to_string())
            .chain(header.map(|m| m.to_ascii_uppercase()))
            .collect();
        match (&resolved.route, named.as_slice()) {
            (Ok(route), [one]) => {
                let canonical = policy::normalize(path).expect("canonical");
                let theirs = policy.route(one, &canonical).expect("decided");
                prop_assert_eq!(route.requirement, theirs.requirement, "{} {}", own, raw);
            }
            (Ok(_), []) => {}
            (Ok(_), _) => prop_assert!(false, "{} overrides decided: {} {}", named.len(), own, raw),
            (Err(_), _) => {}
        }
    }
}
