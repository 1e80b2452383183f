//! Route lookup: rules and policies refused at start-up, the first matching rule, shadow
//! rules, methods that are not tokens, and paths whose rule changes with letter case.

use super::*;

fn policy() -> Policy {
    Policy::new(
        vec![
            rule(
                "rules[0]",
                PathMatch::Exact("/health".into()),
                None,
                Requirement::Public,
            ),
            rule(
                "rules[1]",
                PathMatch::Exact("/messages".into()),
                Some(&["POST", "PUT"]),
                Requirement::AllScopes(vec!["write:messages".into(), "audit".into()]),
            ),
            rule(
                "rules[2]",
                PathMatch::Exact("/messages".into()),
                None,
                Requirement::AnyScope(vec!["read:messages".into()]),
            ),
            rule(
                "rules[3]",
                PathMatch::Prefix("/admin/".into()),
                None,
                Requirement::Deny,
            ),
            // A plain string prefix, as in Envoy: it also matches /apiary.
            rule(
                "rules[4]",
                PathMatch::Prefix("/api".into()),
                None,
                Requirement::Deny,
            ),
        ],
        Requirement::Authenticated,
    )
    .expect("a valid policy")
}

#[test]
fn rules_and_policies_that_cannot_mean_what_they_say_are_refused() {
    let exact = |p: &str| PathMatch::Exact(p.into());
    let any = || Requirement::Authenticated;
    let methods = |ms: &[&str]| Some(ms.iter().map(|m| m.to_string()).collect());
    for (methods, key) in [
        (Some(Vec::new()), "rules[0].methods"),
        (methods(&["GE T"]), "rules[0].methods"),
        (methods(&["get"]), "rules[0].methods"),
    ] {
        let err = Rule::new(0, None, exact("/a"), methods, any()).expect_err("refused");
        assert_eq!(err.key(), key, "{err}");
    }
    let shadowed = Policy::new(
        vec![
            rule("rules[0]", PathMatch::Prefix("/".into()), None, any()),
            rule("rules[1]", exact("/admin"), None, Requirement::Deny),
        ],
        Requirement::Deny,
    )
    .expect_err("an earlier prefix takes /admin");
    assert!(
        matches!(shadowed, PolicyError::Unreachable { .. }),
        "{shadowed:?}"
    );
    assert_eq!(
        (shadowed.key().as_str(), shadowed.value()),
        ("rules[1].path", "/admin")
    );
    let conflicting = Policy::new(
        vec![
            rule("rules[0]", exact("/admin"), None, Requirement::Deny),
            rule("rules[1]", exact("/Admin"), None, Requirement::Public),
        ],
        Requirement::Deny,
    )
    .expect_err("/Admin is /admin with case ignored");
    assert!(
        matches!(conflicting, PolicyError::ConflictingReading(_)),
        "{conflicting:?}"
    );
    assert!(
        conflicting.to_string().contains("letter case"),
        "{conflicting}"
    );
}

/// What the enforced rule and each shadow rule decide, for every authentication outcome:
/// nothing done for a shadow rule (a failed token, a timeout) reaches the enforced answer.
#[test]
fn resolved_requests_are_decided_and_shadow_rules_only_reported() {
    use AuthOutcome::*;
    let read = || Requirement::AnyScope(vec!["read".into()]);
    let p = Policy::new(
        vec![
            rule("rules[0]", PathMatch::Prefix("/".into()), None, read()).shadowed(true),
            rule(
                "rules[1]",
                PathMatch::Exact("/status".into()),
                None,
                Requirement::Public,
            ),
            rule("rules[2]", PathMatch::Exact("/items".into()), None, read()),
        ],
        Requirement::Deny,
    )
    .expect("valid");
    let good = || Done(Ok(VerifiedClaims::for_tests(Some("u"), &["read"])));
    let bad = || Done(Err(AuthError::KeysUnavailable));
    let timed_out = Decision::Deny(Denial::TimedOut);
    let unavailable = Decision::Deny(Denial::Unauthenticated(AuthError::KeysUnavailable));
    let allowed = Decision::Allow(Some(VerifiedClaims::for_tests(Some("u"), &["read"])));
    // (path, preflight, authentication, needs a token, decision, the shadow rule's)
    let cases = [
        (
            "/status",
            false,
            TimedOut,
            true,
            Decision::Allow(None),
            timed_out.clone(),
        ),
        (
            "/status",
            false,
            bad(),
            true,
            Decision::Allow(None),
            unavailable.clone(),
        ),
        (
            "/status",
            false,
            good(),
            true,
            Decision::Allow(None),
            allowed.clone(),
        ),
        (
            "/items",
            false,
            TimedOut,
            true,
            timed_out.clone(),
            timed_out.clone(),
        ),
        (
            "/items",
            false,
            bad(),
            true,
            unavailable.clone(),
            unavailable.clone(),
        ),
        (
            "/items",
            false,
            good(),
            true,
            allowed.clone(),
            allowed.clone(),
        ),
        (
            "/items",
            true,
            TimedOut,
            true,
            Decision::Allow(None),
            timed_out.clone(),
        ),
    ];
    for (path, preflight, auth, needs, decision, would) in cases {
        let resolved = p.resolve("GET", path);
        assert_eq!(resolved.needs_token(preflight), needs, "{path}");
        assert_eq!(
            resolved.route_needs_token(preflight),
            path == "/items" && !preflight
        );
        let label = format!("{path} {preflight} {auth:?}");
        assert_eq!(
            resolved.decide(preflight, auth),
            (decision, vec![would]),
            "{label}"
        );
    }
    // A refused path: no route, no shadow rule.
    let refused = p.resolve("GET", "/a/../items");
    assert!(!refused.needs_token(false));
    assert!(matches!(
        refused.decide(false, NotAttempted),
        (Decision::Deny(Denial::BadPath(_)), ref shadows) if shadows.is_empty()
    ));
}

/// A method that is not an RFC 9110 token is refused before any rule decides it, even where
/// no rule restricts methods and the default allows: `GET\r\nFAKE` would otherwise pass.
#[test]
fn methods_that_are_not_tokens_are_refused_before_any_rule() {
    let p = Policy::new(
        vec![
            rule(
                "rules[0]",
                PathMatch::Prefix("/".into()),
                None,
                Requirement::Public,
            )
            .shadowed(true),
        ],
        Requirement::Public,
    )
    .expect("valid");
    for (method, refused) in [
        ("GET", false),
        ("PATCH", false),
        ("M-SEARCH", false),
        ("get", false),
        ("GET\r\nFAKE", true),
        ("GET\n", true),
        ("GET ", true),
        (" GET", true),
        ("GE T", true),
        ("", true),
        ("GET\0", true),
        ("G/ET", true),
        ("GÉT", true),
        ("\"GET\"", true),
    ] {
        let resolved = p.resolve(method, "/anything");
        assert_eq!(
            resolved.route.as_ref().err(),
            refused.then_some(&PathError::MethodNotToken),
            "{method:?}"
        );
        if refused {
            assert!(
                resolved.shadows.is_empty(),
                "{method:?}: no shadow rule either"
            );
            assert!(matches!(
                resolved.decide(false, AuthOutcome::NotAttempted).0,
                Decision::Deny(Denial::BadPath(PathError::MethodNotToken))
            ));
        }
    }
}

#[test]
fn shadow_rules_are_reported_but_never_decide() {
    let read = || Requirement::AnyScope(vec!["read".into()]);
    let rules = vec![
        // Would be unreachable behind rules[1], and a case variant of it: exempt as shadow.
        rule("rules[0]", template("/items/{id}"), None, Requirement::Deny).shadowed(true),
        rule(
            "rules[1]",
            PathMatch::Prefix("/items/".into()),
            None,
            read(),
        ),
        rule(
            "rules[2]",
            PathMatch::Exact("/Items/1".into()),
            None,
            read(),
        )
        .shadowed(true),
        rule(
            "rules[3]",
            PathMatch::Exact("/items/x".into()),
            Some(&["GET"]),
            read(),
        )
        .shadowed(true),
    ];
    for default in [Requirement::Deny, Requirement::Authenticated] {
        let p = Policy::new(rules.clone(), default).expect("shadow rules are exempt");
        assert!(p.has_shadow_rules());
        for (method, path, decided_by, shadows) in [
            ("GET", "/items/1", "rules[1]", &["rules[0]"][..]),
            ("GET", "/items/x", "rules[1]", &["rules[0]", "rules[3]"][..]),
            (
                "HEAD",
                "/items/x",
                "rules[1]",
                &["rules[0]", "rules[3]"][..],
            ),
            ("POST", "/items/x", "rules[1]", &["rules[0]"][..]),
            ("GET", "/other", "default", &[][..]),
            ("GET", "/items/1/2", "rules[1]", &[][..]),
        ] {
            let path = normalize(path).expect("canonical");
            let route = p.route(method, &path).expect("decided");
            assert_eq!(&**route.name, decided_by, "{method} {path}");
            let got: Vec<&str> = p
                .shadow_rules(method, &path)
                .into_iter()
                .map(|r| r.key())
                .collect();
            assert_eq!(got, shadows, "{method} {path}");
        }
        // A shadow rule's own path is not exempt from readings: `/Items/1` is still refused.
        let path = normalize("/Items/1").expect("canonical");
        assert_eq!(
            p.route("GET", &path).map(|r| &**r.name),
            Err(PathError::CaseVariant)
        );
    }
}

#[test]
fn first_matching_rule_wins() {
    let p = policy();
    for (method, path, want) in [
        ("GET", "/health", "rules[0]"),
        ("POST", "/messages", "rules[1]"),
        ("PUT", "/messages", "rules[1]"),
        ("GET", "/messages", "rules[2]"),
        ("DELETE", "/messages", "rules[2]"),
        ("GET", "/admin/users", "rules[3]"),
        ("GET", "/api", "rules[4]"),
        ("GET", "/apiary/bees", "rules[4]"),
        ("GET", "/messages/1", "default"),
        ("GET", "/", "default"),
    ] {
        let path = normalize(path).expect("canonical");
        let route = p.route(method, &path).expect("not a case variant");
        assert_eq!(&**route.name, want, "{method} {path}");
    }
}

#[test]
fn paths_whose_rule_changes_with_letter_case_are_refused() {
    let p = policy();
    for (method, path, want) in [
        // Would reach rules[3]'s handler on a case-insensitive upstream, but the default here.
        ("GET", "/ADMIN/users", Err(PathError::CaseVariant)),
        ("GET", "/Admin/", Err(PathError::CaseVariant)),
        ("GET", "/Health", Err(PathError::CaseVariant)),
        // rules[1] with case ignored; as written nothing matches and the default applies.
        ("POST", "/MESSAGES", Err(PathError::CaseVariant)),
        // Case only matters where it changes the rule.
        ("GET", "/Other", Ok("default")),
        ("GET", "/admin/Users", Ok("rules[3]")),
        ("GET", "/API", Err(PathError::CaseVariant)),
        // The bare path of a protected subtree: `/admin/` would reach rules[3].
        ("GET", "/admin", Err(PathError::TrailingVariant)),
        ("GET", "/apiary/BEES", Ok("rules[4]")),
        // Non-ASCII letters without an ASCII twin are compared as written.
        ("GET", "/ädmin/", Ok("default")),
    ] {
        let path = normalize(path).expect("canonical");
        let got = p.route(method, &path).map(|r| &**r.name);
        assert_eq!(got, want, "{method} {path}");
    }
}
