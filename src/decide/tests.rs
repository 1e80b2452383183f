use super::*;

use crate::auth::binding::BindingError;
use crate::auth::sources::TokenSource;
use crate::auth::verify::VerifyError;
use crate::policy::PathError;

#[test]
fn challenge_values_are_quoted_strings() {
    assert_eq!(
        challenge("scopegate", "invalid_token", "token has expired", None),
        r#"Bearer realm="scopegate", error="invalid_token", error_description="token has expired""#
    );
    assert_eq!(
        challenge("a\"b\\c", "e", "line\nbreak", Some("x y")),
        r#"Bearer realm="a\"b\\c", error="e", error_description="line break", scope="x y""#
    );
}

/// Every denial's answer: status, `error`, reason, and which of `www-authenticate` and
/// `retry-after` it carries, beside a JSON body and `content-type` every denial has.
#[test]
fn every_denial_has_its_status_body_and_headers() {
    let realm = "scopegate";
    // (denial, status, error, reason, challenge, retry-after)
    type Case = (
        Denial,
        u16,
        &'static str,
        Reason,
        Option<&'static str>,
        Option<&'static str>,
    );
    let cases: Vec<Case> = vec![
        (
            Denial::Unauthenticated(AuthError::Credentials(CredentialsError::Missing)),
            401,
            "unauthorized",
            Reason::missing_token,
            Some(r#"Bearer realm="scopegate""#),
            None,
        ),
        (
            Denial::Unauthenticated(AuthError::Credentials(CredentialsError::Malformed)),
            400,
            "invalid_request",
            Reason::invalid_request,
            Some(r#"Bearer realm="scopegate", error="invalid_request""#),
            None,
        ),
        (
            Denial::Unauthenticated(AuthError::Token(VerifyError::WrongIssuer)),
            401,
            "invalid_token",
            Reason::invalid_token,
            Some(r#"Bearer realm="scopegate", error="invalid_token""#),
            None,
        ),
        (
            Denial::IssuerNotAccepted,
            401,
            "invalid_token",
            Reason::issuer_not_accepted,
            Some(r#"Bearer realm="scopegate", error="invalid_token""#),
            None,
        ),
        (
            Denial::AudienceNotAccepted,
            401,
            "invalid_token",
            Reason::audience_not_accepted,
            Some(r#"Bearer realm="scopegate", error="invalid_token""#),
            None,
        ),
        (
            Denial::Unauthenticated(AuthError::KeysUnavailable),
            503,
            "temporarily_unavailable",
            Reason::keys_unavailable,
            None,
            Some("5"),
        ),
        (
            Denial::InsufficientScope {
                required: vec!["a".into(), "b".into()],
            },
            403,
            "insufficient_scope",
            Reason::insufficient_scope,
            Some(r#"Bearer realm="scopegate", error="insufficient_scope""#),
            None,
        ),
        (
            Denial::InsufficientClaims(Box::new(crate::policy::ClaimMismatch {
                key: "org_id".into(),
                expected: vec!["acme".into()],
                found: Some("other".into()),
            })),
            403,
            "insufficient_claims",
            Reason::claims,
            Some(r#"Bearer realm="scopegate", error="insufficient_claims""#),
            None,
        ),
        (
            Denial::RouteDenied,
            403,
            "insufficient_scope",
            Reason::route_denied,
            Some(r#"Bearer realm="scopegate", error="insufficient_scope""#),
            None,
        ),
        (
            Denial::BadPath(PathError::NotAbsolute),
            400,
            "invalid_request",
            Reason::bad_path,
            None,
            None,
        ),
        (
            Denial::TimedOut,
            503,
            "temporarily_unavailable",
            Reason::timed_out,
            None,
            Some("1"),
        ),
        (
            Denial::Unauthenticated(AuthError::Binding(BindingError::DpopProof(
                "htm is not the request method",
            ))),
            401,
            "invalid_token",
            Reason::dpop_proof,
            Some(
                r#"DPoP realm="scopegate", error="invalid_dpop_proof", error_description="DPoP proof is invalid: htm is not the request method", algs="ES256 ES384 EdDSA RS256 PS256""#,
            ),
            None,
        ),
        (
            Denial::Unauthenticated(AuthError::Binding(BindingError::DpopReplay)),
            401,
            "invalid_token",
            Reason::dpop_proof,
            Some(r#"DPoP realm="scopegate", error="invalid_dpop_proof""#),
            None,
        ),
        (
            Denial::Unauthenticated(AuthError::Binding(BindingError::ReplayCacheFull)),
            503,
            "temporarily_unavailable",
            Reason::dpop_proof,
            None,
            Some("1"),
        ),
        (
            Denial::Unauthenticated(AuthError::Binding(BindingError::Downgrade)),
            401,
            "invalid_token",
            Reason::binding,
            Some(r#"Bearer realm="scopegate", error="invalid_token""#),
            None,
        ),
        (
            Denial::Unauthenticated(AuthError::Binding(BindingError::NotBound)),
            401,
            "invalid_token",
            Reason::binding,
            Some(r#"Bearer realm="scopegate", error="invalid_token""#),
            None,
        ),
    ];
    for (denial, status, error, reason, challenge, retry) in cases {
        let denied = deny(&denial, realm, true);
        assert_eq!((denied.status, denied.error), (status, error), "{denial:?}");
        // A credential from a cookie, another header or a query parameter: the same answer
        // without the challenge.
        let unchallenged = deny(&denial, realm, false);
        assert_eq!(
            unchallenged
                .headers
                .iter()
                .find(|(n, _)| *n == "www-authenticate"),
            None,
            "{denial:?}"
        );
        assert_eq!(
            (unchallenged.status, &unchallenged.body),
            (denied.status, &denied.body)
        );
        assert_eq!(denial_answer(&denial).1, reason, "{denial:?}");
        let body: serde_json::Value = serde_json::from_str(&denied.body).expect("JSON body");
        assert_eq!(body["error"], error, "{denial:?}");
        assert_eq!(body["message"], denial.to_string(), "{denial:?}");
        assert_eq!(denied.message, denial.to_string());
        let header = |name: &str| {
            denied
                .headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(header("content-type"), Some("application/json"));
        match challenge {
            Some(prefix) => assert!(
                header("www-authenticate").is_some_and(|c| c.starts_with(prefix)),
                "{denial:?}: {:?}",
                header("www-authenticate")
            ),
            None => assert_eq!(header("www-authenticate"), None, "{denial:?}"),
        }
        assert_eq!(header("retry-after"), retry, "{denial:?}");
    }
    let scope = deny(
        &Denial::InsufficientScope {
            required: vec!["a".into(), "b".into()],
        },
        realm,
        true,
    );
    assert!(
        scope.headers[1].1.ends_with(r#", scope="a b""#),
        "{scope:?}"
    );
    // A claims denial names neither the claim nor either value, to the client.
    let claims = deny(
        &Denial::InsufficientClaims(Box::new(crate::policy::ClaimMismatch {
            key: "org_id".into(),
            expected: vec!["acme".into()],
            found: Some("other".into()),
        })),
        realm,
        true,
    );
    for secret in ["org_id", "acme", "other"] {
        assert!(!claims.body.contains(secret), "{claims:?}");
        assert!(!claims.headers[1].1.contains(secret), "{claims:?}");
    }
}

/// An allow sets the identity it has and removes what it lacks, so a client's own copy of an
/// identity header never reaches the upstream; an anonymous allow removes them all.
#[test]
fn an_allow_sets_what_the_token_says_and_removes_the_rest() {
    let forwarded = vec!["x-auth-email".to_owned()];
    let sources = TokenSources::default();
    let claims = VerifiedClaims::for_tests(Some("user-1"), &["read", "write"]);
    assert_eq!(
        allow(Some(&claims), &forwarded, &sources, Metadata::new()),
        Verdict::Allow {
            set: vec![
                (SUBJECT_HEADER, "user-1".to_owned()),
                (SCOPES_HEADER, "read write".to_owned()),
            ],
            remove: vec!["x-auth-email"],
            metadata: Metadata::new(),
            remove_query: vec![],
        }
    );
    let bare = VerifiedClaims::for_tests(None, &[]);
    for claims in [Some(&bare), None] {
        assert_eq!(
            allow(claims, &forwarded, &sources, Metadata::new()),
            Verdict::Allow {
                set: vec![],
                remove: vec![SUBJECT_HEADER, SCOPES_HEADER, "x-auth-email"],
                remove_query: vec![],
                metadata: Metadata::new(),
            }
        );
    }
    // A query token source's parameter is removed on every allow, public routes' too.
    let query = TokenSources::new(vec![
        TokenSource::authorization(),
        TokenSource::query("access_token").expect("a parameter name"),
    ])
    .expect("two sources");
    for claims in [Some(&claims), None] {
        let Verdict::Allow { remove_query, .. } =
            allow(claims, &forwarded, &query, Metadata::new())
        else {
            panic!("an allow");
        };
        assert_eq!(remove_query, ["access_token"]);
    }
}

/// The request view keeps every value of a header, in order, under its lower-case name; a
/// credential that is not UTF-8 makes the credentials malformed, while the policy still sees
/// the value (read with U+FFFD) and the log never takes it as a request id.
#[test]
fn the_request_view_keeps_every_value_by_lower_case_name() {
    let mut view = Request::new("GET", "/x?y=1")
        .with_scheme("https")
        .with_host("api.example")
        .with_peer_certificate("");
    view.push_header("X-Forwarded-For", "a");
    view.push_header("x-forwarded-for", "b");
    view.push_header("Authorization", "Bearer t");
    assert_eq!(view.text_values("x-forwarded-for"), ["a", "b"]);
    assert_eq!(view.text_values("X-Forwarded-For"), Vec::<&str>::new());
    let sources = TokenSources::default();
    assert_eq!(sources.extract(&&view).token.as_deref(), Ok("t"));
    assert_eq!(
        (view.method(), view.path(), view.scheme(), view.host()),
        ("GET", "/x?y=1", "https", "api.example")
    );
    assert_eq!(
        view.peer_certificate(),
        None,
        "an empty certificate is none"
    );
    assert!(view.same_values("x-forwarded-for", [("a", true), ("b", true)].into_iter()));
    assert!(!view.same_values("x-forwarded-for", [("a", true)].into_iter()));

    view.push_header_bytes("authorization", b"Bearer \xff");
    let only_bad = {
        let mut only = Request::new("GET", "/x");
        only.push_header_bytes("authorization", b"Bearer \xff");
        sources.extract(&&only).token.map(|t| t.into_owned())
    };
    assert_eq!(only_bad, Err(CredentialsError::Malformed));
    assert_eq!(view.text_values("authorization")[1], "Bearer \u{fffd}");
    view.push_header_bytes("x-request-id", b"\xff");
    view.push_header("x-request-id", "id-2");
    assert_eq!(view.first_value("x-request-id"), Some("id-2"));
}

/// A DPoP proof's URL is the request's own scheme, host (or `dpop_public_base_url`) and path:
/// a client's `x-envoy-original-path` cannot name another path for `htu`.
#[test]
fn the_dpop_url_is_the_requests_own_whatever_x_envoy_original_path_says() {
    let mut view = Request::new("GET", "/restricted_resource?page=2")
        .with_scheme("https")
        .with_host("api.example");
    view.push_header("x-envoy-original-path", "/another_resource");
    assert_eq!(
        request_url(&view, None),
        "https://api.example/restricted_resource?page=2"
    );
    assert_eq!(
        request_url(&view, Some("https://edge.example")),
        "https://edge.example/restricted_resource?page=2"
    );
}
