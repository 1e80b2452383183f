//! Property-based tests over the parsers that see attacker-controlled input first: the Bearer
//! header parser, token extraction from the token sources, the path canonicaliser, the token
//! verifier and the method-override reading.
//! None may panic, no input that lacks a valid token may ever be allowed onto a protected route,
//! and no request is decided under another method than the one it asks the upstream to run.
//! The strategies are built so that most cases reach what a property claims about (canonical
//! paths, valid and refused tokens, public and protected routes), and the properties that could
//! otherwise pass on cases that never got there count, per branch, how many did and assert it.

use std::cell::Cell;
use std::sync::OnceLock;

use crate::common::{TestKey, claims, jwks_of, now};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use scopegate::auth::keys::KeySet;
use scopegate::auth::token::bearer_token;
use scopegate::auth::verify::{self, Algorithm, Expectations};
use scopegate::policy::{self, Decision, PathMatch, Policy, Requirement, Rule};
use serde_json::{Value, json};

struct Fixture {
    key: TestKey,
    keys: KeySet,
    expect: Expectations,
    /// Valid, with the scope the protected route asks for.
    token: String,
    /// Tokens that must not open the protected route: another scope, expired, another
    /// audience, signed by a key the set does not hold.
    refused: Vec<String>,
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
        let with = |claim: &str, value: Value| {
            let mut c = claims("read:messages");
            c[claim] = value;
            key.mint(&c)
        };
        let refused = vec![
            key.mint(&claims("write:messages")),
            with("exp", json!(now() - 3600)),
            with("aud", json!("https://elsewhere.test")),
            TestKey::generate("key-1").mint(&claims("read:messages")),
        ];
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
                retain_claims: Vec::new(),
            },
            token,
            refused,
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

/// Paths an upstream could be asked for: mostly canonical already or canonical once decoded
/// (percent-encoded letters, UTF-8, dots inside names, a query), under `/public/` about a third
/// of the time; then absolute paths built from every trick character; then anything at all.
fn raw_path() -> impl Strategy<Value = String> {
    let segment = "([a-zA-Z0-9_~+-]|%[46][1-9A-F]|%C3%A9|é|\\.[a-z]|[a-z]\\.){1,6}";
    let canonical = (
        prop::bool::weighted(0.35),
        proptest::collection::vec(segment, 0..4),
        any::<bool>(),
        proptest::option::of("[a-z]{1,3}=[a-z0-9%]{0,4}"),
    )
        .prop_map(|(public, segments, trailing, query)| {
            let mut path = if public {
                "/public".to_string()
            } else {
                String::new()
            };
            for segment in segments {
                path.push('/');
                path.push_str(&segment);
            }
            if trailing || path.is_empty() {
                path.push('/');
            }
            if let Some(query) = query {
                path.push('?');
                path.push_str(&query);
            }
            path
        });
    prop_oneof![
        6 => canonical,
        3 => "/(/|%2[fF]|%2[eE]|\\.|\\.\\.|;|\\\\|%5[cC]|%25|%00|[a-z]{1,4}|\\?|#){0,10}",
        1 => any::<String>(),
    ]
}

/// What the request carries as credentials: the valid token, one of the refused ones, or
/// header values of any shape (which can never hold a valid token).
#[derive(Clone, Debug)]
enum Credentials {
    Valid,
    Refused(usize),
    Values(Vec<String>),
}

fn credentials() -> impl Strategy<Value = Credentials> {
    prop_oneof![
        3 => Just(Credentials::Valid),
        2 => (0..fixture().refused.len()).prop_map(Credentials::Refused),
        3 => proptest::collection::vec(header_value(), 0..3).prop_map(Credentials::Values),
    ]
}

/// A JWS header for a correctly signed token: mostly the one the key set accepts, otherwise
/// another algorithm or `kid`, `crit`, and key-pointing members that must be ignored.
fn signed_header() -> impl Strategy<Value = (Value, bool)> {
    let alg = prop_oneof![
        6 => Just(json!("RS256")),
        1 => prop::sample::select(vec![json!("RS384"), json!("HS256"), json!("none"), json!("rs256"), json!(1)]),
    ];
    let kid = prop_oneof![
        6 => Just(json!("key-1")),
        1 => prop::sample::select(vec![json!("key-2"), json!("KEY-1"), json!(1)]),
    ];
    let extra = prop::sample::select(vec![
        None,
        None,
        Some(("jku", json!("http://127.0.0.1:1/jwks"))),
        Some(("x5u", json!("http://127.0.0.1:1/cert"))),
        Some(("typ", json!("JWT"))),
        Some(("crit", json!(["exp"]))),
    ]);
    (alg, kid, extra).prop_map(|(alg, kid, extra)| {
        let valid =
            alg == json!("RS256") && kid == json!("key-1") && !matches!(extra, Some(("crit", _)));
        let mut header = json!({"alg": alg, "kid": kid});
        if let Some((name, value)) = extra {
            header[name] = value;
        }
        (header, valid)
    })
}

/// Claims for a correctly signed token: the valid ones with up to three changes, each either
/// harmless (a claim nobody reads) or one that alone must refuse the token.
fn signed_claims() -> impl Strategy<Value = (Value, bool)> {
    // (claim, value or removal, whether the token stays valid)
    let change = prop::sample::select(vec![
        ("note", Some(json!("anything")), true),
        ("scope", Some(json!("read:messages write:messages")), true),
        ("iss", Some(json!("https://elsewhere.test/")), false),
        ("iss", None, false),
        ("aud", Some(json!("https://elsewhere.test")), false),
        ("aud", None, false),
        ("exp", Some(json!(now() - 3600)), false),
        ("exp", Some(json!("soon")), false),
        ("exp", None, false),
        ("nbf", Some(json!(now() + 3600)), false),
        ("scope", Some(json!("read\"messages")), false),
        ("sub", Some(json!("user\u{1}admin")), false),
    ]);
    proptest::collection::vec(change, 0..3).prop_map(|changes| {
        let mut claims = claims("read:messages");
        // A later change to the same claim replaces an earlier one, its verdict with it.
        let mut verdicts = std::collections::BTreeMap::new();
        for (claim, value, keeps) in changes {
            match value {
                Some(value) => claims[claim] = value,
                None => {
                    claims.as_object_mut().expect("an object").remove(claim);
                }
            }
            verdicts.insert(claim, keeps);
        }
        (claims, verdicts.values().all(|keeps| *keeps))
    })
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
    }
}

/// How many cases a property saw and how many reached each of its branches. A property whose
/// strategy seldom reaches what it claims about proves little, so each test asserts its shares.
#[derive(Default)]
struct Reached {
    cases: Cell<usize>,
    branches: [Cell<usize>; 4],
}

impl Reached {
    fn case(&self) {
        self.cases.set(self.cases.get() + 1);
    }

    fn hit(&self, branch: usize) {
        self.branches[branch].set(self.branches[branch].get() + 1);
    }

    /// Asserts that at least `share` of the cases reached `branch`.
    fn at_least(&self, branch: usize, share: f64, what: &str) {
        let (cases, hits) = (self.cases.get(), self.branches[branch].get());
        assert!(
            hits as f64 >= share * cases as f64,
            "only {hits} of {cases} cases {what}"
        );
    }
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        ..Config::default()
    })
}

/// Whatever canonicalisation accepts is canonical: absolute, no empty or dot segment, nothing
/// left to decode or strip, and a fixed point, so no second decoding by an upstream can reach
/// another rule. Most cases are accepted (and some refused), so the claim is exercised.
#[test]
fn canonical_paths_are_unambiguous_and_stable() {
    const ACCEPTED: usize = 0;
    const REFUSED: usize = 1;
    let reached = Reached::default();
    runner(512)
        .run(&raw_path(), |raw| {
            reached.case();
            let Ok(path) = policy::normalize(&raw) else {
                reached.hit(REFUSED);
                return Ok(());
            };
            reached.hit(ACCEPTED);
            let p = path.as_str();
            prop_assert!(p.starts_with('/'));
            prop_assert!(!p.contains("//"));
            prop_assert!(!p.contains(['\\', ';', '%', '?', '#']));
            prop_assert!(!p.chars().any(|c| c.is_control()));
            prop_assert!(p.split('/').all(|s| s != "." && s != ".."));
            // Canonical output is a fixed point: no second decoding can change what matched.
            let again = policy::normalize(p);
            prop_assert_eq!(again.as_ref().map(|x| x.as_str()), Ok(p));
            Ok(())
        })
        .expect("property");
    reached.at_least(ACCEPTED, 0.4, "were canonicalised");
    reached.at_least(REFUSED, 0.05, "were refused");
}

/// A token signed by the configured key over a header and claims of the shapes an issuer (or
/// an attacker holding a token) could produce verifies exactly when every check passes: the
/// algorithm and `kid` the key set holds, no `crit`, key-pointing members ignored, and the
/// issuer, audience, expiry, not-before, scopes and subject all right.
#[test]
fn correctly_signed_tokens_verify_only_when_every_check_passes() {
    const VERIFIED: usize = 0;
    const REFUSED_HEADER: usize = 1;
    const REFUSED_CLAIMS: usize = 2;
    let f = fixture();
    let reached = Reached::default();
    runner(256)
        .run(
            &(signed_header(), signed_claims()),
            |((header, header_ok), (claims, claims_ok))| {
                reached.case();
                let token = f.key.mint_raw(&header, &claims);
                let verified = verify::verify(&token, &f.keys, &f.expect, now());
                prop_assert_eq!(
                    verified.is_ok(),
                    header_ok && claims_ok,
                    "{} {} {:?}",
                    header,
                    claims,
                    verified.err()
                );
                match (header_ok, claims_ok) {
                    (true, true) => reached.hit(VERIFIED),
                    (false, _) => reached.hit(REFUSED_HEADER),
                    (true, false) => reached.hit(REFUSED_CLAIMS),
                }
                Ok(())
            },
        )
        .expect("property");
    reached.at_least(VERIFIED, 0.08, "verified");
    reached.at_least(REFUSED_HEADER, 0.1, "had a header to refuse");
    reached.at_least(REFUSED_CLAIMS, 0.1, "had claims to refuse");
}

/// No request without the valid token is ever allowed onto the protected route, and the valid
/// token is (so the allow branch is live); `/public/` is always allowed. Most cases reach the
/// decision, and each of public allow, token allow and deny is hit.
#[test]
fn protected_routes_are_never_allowed_without_a_valid_token() {
    const DECIDED: usize = 0;
    const ALLOWED_PUBLIC: usize = 1;
    const ALLOWED_WITH_TOKEN: usize = 2;
    const DENIED: usize = 3;
    let f = fixture();
    let policy = protected_policy();
    let method = prop_oneof![
        4 => prop::sample::select(&["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"][..]).prop_map(str::to_string),
        1 => "[A-Za-z]{1,7}",
    ];
    let reached = Reached::default();
    runner(512)
        .run(
            &(method, raw_path(), credentials()),
            |(method, raw, credentials)| {
                reached.case();
                // Refused paths and methods are denied before any rule (tested elsewhere); this
                // property is about the requests that reach one.
                let routed = policy::normalize(&raw)
                    .ok()
                    .and_then(|path| Some((policy.route(&method, &path).ok()?, path)));
                prop_assume!(routed.is_some(), "refused before routing");
                let (route, path) = routed.expect("assumed");
                reached.hit(DECIDED);
                let values = match &credentials {
                    Credentials::Valid => vec![format!("Bearer {}", f.token)],
                    Credentials::Refused(i) => vec![format!("Bearer {}", f.refused[*i])],
                    Credentials::Values(values) => values.clone(),
                };
                let refs: Vec<&str> = values.iter().map(String::as_str).collect();
                let auth = route.requirement.needs_token().then(|| {
                    let token = bearer_token(&refs).map_err(policy::AuthError::from)?;
                    Ok(verify::verify(token, &f.keys, &f.expect, now())?)
                });
                let decision = policy::decide(route.requirement, auth);
                let public = path.as_str().starts_with("/public/");
                let allowed = matches!(decision, Decision::Allow(_));
                prop_assert_eq!(
                    allowed,
                    public || matches!(credentials, Credentials::Valid),
                    "{} {} with {:?}",
                    method,
                    path,
                    credentials
                );
                reached.hit(match (allowed, public) {
                    (true, true) => ALLOWED_PUBLIC,
                    (true, false) => ALLOWED_WITH_TOKEN,
                    (false, _) => DENIED,
                });
                Ok(())
            },
        )
        .expect("property");
    reached.at_least(DECIDED, 0.4, "reached decide");
    reached.at_least(ALLOWED_PUBLIC, 0.05, "were allowed as public");
    reached.at_least(ALLOWED_WITH_TOKEN, 0.05, "were allowed with the token");
    reached.at_least(DENIED, 0.15, "were denied");
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

/// A request as token extraction reads it, for
/// [`extraction_never_panics_and_takes_only_what_one_place_sent`].
#[derive(Debug, Clone)]
struct Sent {
    headers: Vec<(&'static str, String)>,
    path: String,
}

impl<'a> scopegate::auth::sources::CredentialsView<'a> for &'a Sent {
    fn header(&self, name: &str) -> Vec<(&'a str, bool)> {
        self.headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| (v.as_str(), true))
            .collect()
    }

    fn path(&self) -> &'a str {
        &self.path
    }
}

/// Requests carrying tokens from a small pool (so the same one often turns up twice) in any of
/// the four sources, among other cookies and parameters and hostile characters.
fn sent() -> impl Strategy<Value = Sent> {
    let token = prop_oneof![
        Just("a.b.c".to_owned()),
        Just("x.y.z".to_owned()),
        "[A-Za-z0-9._~+/=\\-]{1,12}",
        "[ -~]{0,12}",
    ];
    let cookie = (
        prop_oneof![Just("at"), Just("AT"), Just("other"), Just(" at")],
        token.clone(),
    )
        .prop_map(|(name, value)| format!("{name}={value}"));
    let cookie_header = proptest::collection::vec(cookie, 1..4).prop_map(|pairs| pairs.join("; "));
    let header = prop_oneof![
        token
            .clone()
            .prop_map(|t| ("authorization", format!("Bearer {t}"))),
        token
            .clone()
            .prop_map(|t| ("authorization", format!("Basic {t}"))),
        token.clone().prop_map(|t| ("x-api-token", t)),
        cookie_header.prop_map(|c| ("cookie", c)),
    ];
    let parameter = (
        prop_oneof![Just("access_token"), Just("x"), Just("%61ccess_token")],
        token,
    )
        .prop_map(|(name, value)| format!("{name}={value}"));
    (
        proptest::collection::vec(header, 0..4),
        proptest::collection::vec(parameter, 0..3),
    )
        .prop_map(|(headers, parameters)| Sent {
            headers,
            path: format!("/r?{}", parameters.join("&")),
        })
}

/// Token extraction never panics; what it takes is token68 of at most 16 KiB and was sent in
/// the one place it names; and a request whose two sources each carry a token it would take
/// alone is refused as credentials in more than one place. Both outcomes are reached often.
#[test]
fn extraction_never_panics_and_takes_only_what_one_place_sent() {
    use scopegate::auth::sources::{TokenSource, TokenSources};
    use scopegate::auth::token::{CredentialsError, MAX_CREDENTIALS_BYTES};
    let sources = TokenSources::new(vec![
        TokenSource::authorization(),
        TokenSource::header("x-api-token", None).expect("a header name"),
        TokenSource::cookie("at").expect("a cookie name"),
        TokenSource::query("access_token").expect("a parameter name"),
    ])
    .expect("four sources");
    let alone =
        |i: usize| TokenSources::new(vec![sources.iter().nth(i).cloned().expect("a source")]);
    let reached = Reached::default();
    runner(2048)
        .run(&sent(), |sent| {
            reached.case();
            let got = sources.extract(&&sent);
            if let Ok(token) = &got.token {
                reached.hit(0);
                let body = token.trim_end_matches('=');
                prop_assert!(!body.is_empty() && token.len() <= MAX_CREDENTIALS_BYTES);
                prop_assert!(
                    body.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
                );
                let source = got.source.expect("a token names its source");
                let place = sources.iter().nth(source).expect("a source");
                let sent_there = match place.kind() {
                    "query" => sent.path.contains(token.as_ref()),
                    _ => sent.headers.iter().any(|(n, v)| {
                        (*n == place.name() || (place.kind() == "cookie" && *n == "cookie"))
                            && v.contains(token.as_ref())
                    }),
                };
                prop_assert!(sent_there, "{token:?} from {place} was not sent there");
            }
            // Each source alone: two that would each take a token make the request malformed.
            let takers = (0..4)
                .filter(|&i| alone(i).expect("one source").extract(&&sent).token.is_ok())
                .count();
            if takers >= 2 {
                reached.hit(1);
                prop_assert_eq!(
                    got.token.clone().map(|t| t.into_owned()),
                    Err(CredentialsError::Several)
                );
            }
            Ok(())
        })
        .expect("the properties hold");
    reached.at_least(0, 0.1, "took a token");
    reached.at_least(1, 0.05, "carried tokens in two places");
}
