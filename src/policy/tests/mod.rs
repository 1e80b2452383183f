//! The policy's tables: rules and policies refused at start-up, route lookup with templates,
//! shadow rules and `HEAD`, and the readings that refuse a request.

use super::*;
use crate::auth::verify::VerifiedClaims;

/// A rule whose key is `key` (`rules[N]`).
fn rule(key: &str, path: PathMatch, methods: Option<&[&str]>, req: Requirement) -> Rule {
    let methods = methods.map(|ms| ms.iter().map(|m| m.to_string()).collect());
    let index = key
        .strip_prefix("rules[")
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|n| n.parse().ok())
        .expect("a rules[N] key");
    Rule::new(index, None, path, methods, req).expect("a valid rule")
}

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

fn template(t: &str) -> PathMatch {
    PathMatch::Template(Template::parse(t).expect("a valid template"))
}

/// Templates beside literal paths, as `openapi-rules` orders them: literal first.
fn template_policy() -> Policy {
    let read = || Requirement::AnyScope(vec!["read:items".into()]);
    let write = || Requirement::AnyScope(vec!["write:items".into()]);
    Policy::new(
        vec![
            rule(
                "rules[0]",
                PathMatch::Exact("/items/mine".into()),
                None,
                Requirement::Authenticated,
            ),
            rule("rules[1]", template("/items/{id}"), Some(&["GET"]), read()),
            rule("rules[2]", template("/items/{id}"), Some(&["PUT"]), write()),
            rule("rules[3]", template("/items/{id}/notes/{**}"), None, read()),
            rule("rules[4]", template("/files/{rest=**}"), None, write()),
        ],
        Requirement::Public,
    )
    .expect("a valid policy")
}

#[test]
fn templates_match_whole_segments() {
    let p = template_policy();
    for (method, path, want) in [
        ("GET", "/items/mine", Ok("rules[0]")),
        ("GET", "/items/42", Ok("rules[1]")),
        ("HEAD", "/items/42", Ok("rules[1]")),
        ("PUT", "/items/42", Ok("rules[2]")),
        ("DELETE", "/items/42", Ok("default")),
        ("GET", "/items/42/notes/1", Ok("rules[3]")),
        ("GET", "/items/42/notes/1/2/3", Ok("rules[3]")),
        ("GET", "/files/a", Ok("rules[4]")),
        ("GET", "/files/a/b.txt", Ok("rules[4]")),
        // An extra segment, or none where one is needed: not the template.
        ("GET", "/items/42/other", Ok("default")),
        ("GET", "/items", Ok("default")),
        // `{**}` needs at least one segment, so the subtree's own root is the default's.
        ("GET", "/items/42/notes", Ok("default")),
        // But a path that reads as a template's under another reading is refused, as for
        // literal rules: a trailing slash, letter case.
        ("GET", "/items/42/", Err(PathError::TrailingVariant)),
        ("GET", "/items/42/notes/", Ok("default")),
        ("GET", "/files/", Ok("default")),
        ("GET", "/ITEMS/42", Err(PathError::CaseVariant)),
        ("GET", "/Items/mine", Err(PathError::CaseVariant)),
        // `/items/mine` with case ignored: the literal rule, not the template's PUT.
        ("PUT", "/items/MINE", Err(PathError::CaseVariant)),
        // Readings that only reach the default do not refuse a templated path.
        ("GET", "/items/42.", Ok("rules[1]")),
    ] {
        let path = normalize(path).expect("canonical");
        let got = p.route(method, &path).map(|r| &**r.name);
        assert_eq!(got, want, "{method} {path}");
    }
}

#[test]
fn templates_are_checked_for_unreachable_rules_and_confusable_readings() {
    let read = || Requirement::AnyScope(vec!["read".into()]);
    let cases: &[(Vec<Rule>, &str)] = &[
        // A literal path after a template that takes it.
        (
            vec![
                rule("rules[0]", template("/items/{id}"), None, read()),
                rule(
                    "rules[1]",
                    PathMatch::Exact("/items/mine".into()),
                    None,
                    read(),
                ),
            ],
            "rules[1].path",
        ),
        // A narrower template after a wider one.
        (
            vec![
                rule("rules[0]", template("/items/{**}"), None, read()),
                rule("rules[1]", template("/items/{id}/notes"), None, read()),
            ],
            "rules[1].template",
        ),
        // A template under an earlier prefix.
        (
            vec![
                rule(
                    "rules[0]",
                    PathMatch::Prefix("/items/".into()),
                    None,
                    read(),
                ),
                rule("rules[1]", template("/items/{id}"), None, read()),
            ],
            "rules[1].template",
        ),
        // Case: a public template beside a protected one spelled differently.
        (
            vec![
                rule(
                    "rules[0]",
                    template("/Items/{id}"),
                    None,
                    Requirement::Public,
                ),
                rule("rules[1]", template("/items/{id}"), None, read()),
            ],
            "rules[1].template",
        ),
        // Case: a public literal path that a protected template takes in other letters,
        // which is exempt from readings at request time.
        (
            vec![
                rule(
                    "rules[0]",
                    PathMatch::Exact("/Items/mine".into()),
                    None,
                    Requirement::Public,
                ),
                rule("rules[1]", template("/items/{id}"), None, read()),
            ],
            "rules[1].template",
        ),
    ];
    for (rules, key) in cases {
        let err = Policy::new(rules.clone(), Requirement::Public).expect_err(key);
        assert_eq!(err.key(), *key, "{err}");
    }
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

/// The README's rule, a protected subtree beside its bare path, a public path, and
/// `default = "allow"`, so a reading that dodged a rule would show as an anonymous allow.
fn readings_policy() -> Policy {
    let read = || Requirement::AnyScope(vec!["read:messages".into()]);
    let admin = || Requirement::AnyScope(vec!["admin".into()]);
    Policy::new(
        vec![
            rule(
                "rules[0]",
                PathMatch::Exact("/restricted_resource".into()),
                Some(&["GET"]),
                read(),
            ),
            rule(
                "rules[1]",
                PathMatch::Prefix("/admin/".into()),
                None,
                admin(),
            ),
            rule("rules[2]", PathMatch::Exact("/admin".into()), None, admin()),
            rule(
                "rules[3]",
                PathMatch::Exact("/kitchen".into()),
                Some(&["GET", "POST"]),
                admin(),
            ),
            rule(
                "rules[4]",
                PathMatch::Exact("/status".into()),
                Some(&["HEAD"]),
                Requirement::Public,
            ),
            rule(
                "rules[5]",
                PathMatch::Exact("/status".into()),
                None,
                Requirement::Authenticated,
            ),
            rule(
                "rules[6]",
                PathMatch::Exact("/secret".into()),
                Some(&["PUT"]),
                admin(),
            ),
        ],
        Requirement::Public,
    )
    .expect("a valid policy")
}

#[test]
fn head_is_decided_as_get_unless_a_rule_names_it() {
    let p = readings_policy();
    for (method, path, want) in [
        // HEAD runs the GET handler: it gets the GET-only rule.
        ("HEAD", "/restricted_resource", "rules[0]"),
        ("GET", "/restricted_resource", "rules[0]"),
        ("POST", "/restricted_resource", "default"),
        ("HEAD", "/admin/users", "rules[1]"),
        // A rule naming HEAD keeps it.
        ("HEAD", "/status", "rules[4]"),
        ("GET", "/status", "rules[5]"),
        // A GET-only rule elsewhere does not pull HEAD away from the default.
        ("HEAD", "/other", "default"),
    ] {
        let path = normalize(path).expect("canonical");
        let route = p.route(method, &path).expect("no conflicting reading");
        assert_eq!(&**route.name, want, "{method} {path}");
    }
}

#[test]
fn requests_whose_requirement_changes_under_another_reading_are_refused() {
    use PathError::{CaseVariant, MethodCaseVariant, TrailingVariant};
    let p = readings_policy();
    for (method, path, want) in [
        // Trailing slash added or removed.
        ("GET", "/restricted_resource/", Err(TrailingVariant)),
        ("HEAD", "/restricted_resource/", Err(TrailingVariant)),
        // ... but the README's prefix-plus-path pair, with equal requirements, stays usable.
        ("GET", "/admin", Ok("rules[2]")),
        ("GET", "/admin/", Ok("rules[1]")),
        // Trailing dots and whitespace (decoded from %2e and %20).
        ("GET", "/restricted_resource.", Err(TrailingVariant)),
        ("GET", "/restricted_resource%2e", Err(TrailingVariant)),
        ("GET", "/restricted_resource%20", Err(TrailingVariant)),
        ("GET", "/restricted_resource.%20.", Err(TrailingVariant)),
        ("GET", "/restricted_resource%C2%A0", Err(TrailingVariant)),
        ("GET", "/kitchen./", Err(TrailingVariant)),
        // Letter case: ASCII, and non-ASCII letters that fold to ASCII.
        ("GET", "/RESTRICTED_RESOURCE", Err(CaseVariant)),
        ("GET", "/adm%C4%B1n/users", Err(CaseVariant)), // dotless ı
        ("GET", "/%E2%84%AAitchen", Err(CaseVariant)),  // Kelvin sign
        ("GET", "/%C5%BFecret", Ok("default")),         // long s, but GET: both public
        ("PUT", "/%C5%BFecret", Err(CaseVariant)),      // long s reaching a PUT rule
        ("GET", "/%C4%B0tchen", Ok("default")),         // İ → i: "/itchen", no rule
        // Combined: a trailing slash on a case variant.
        ("GET", "/ADMIN", Err(CaseVariant)),
        ("GET", "/Restricted_Resource/", Err(TrailingVariant)),
        // Method case: methods are case-sensitive, and a lower-case one that would reach
        // a different rule upper-cased is refused.
        ("get", "/restricted_resource", Err(MethodCaseVariant)),
        ("post", "/kitchen", Err(MethodCaseVariant)),
        ("get", "/other", Ok("default")),
        // Method case and a path reading together: `get /restricted_resource/` reaches the
        // default either way, but `GET /restricted_resource` is the protected rule.
        ("get", "/restricted_resource/", Err(TrailingVariant)),
        ("get", "/RESTRICTED_RESOURCE", Err(CaseVariant)),
        // Readings that reach the same requirement change nothing.
        ("GET", "/other/", Ok("default")),
        ("GET", "/OTHER.", Ok("default")),
        ("GET", "/admin/Users/", Ok("rules[1]")),
    ] {
        let path = normalize(path).expect("canonical");
        let got = p.route(method, &path).map(|r| &**r.name);
        assert_eq!(got, want, "{method} {path}");
    }
}

/// The rules (`path = "/admin"` and `prefix = "/admin/"` needing `admin`), a
/// protected file-like path and template, and `default = "allow"`: a format suffix or a
/// compatibility form that dodged them would show as an anonymous allow.
fn suffix_policy() -> Policy {
    let admin = || Requirement::AnyScope(vec!["admin".into()]);
    Policy::new(
        vec![
            rule("rules[0]", PathMatch::Exact("/admin".into()), None, admin()),
            rule(
                "rules[1]",
                PathMatch::Prefix("/admin/".into()),
                None,
                admin(),
            ),
            rule(
                "rules[2]",
                PathMatch::Exact("/reports/annual".into()),
                None,
                admin(),
            ),
            rule("rules[3]", template("/items/{id}/notes"), None, admin()),
            rule(
                "rules[4]",
                PathMatch::Exact("/secret".into()),
                Some(&["GET"]),
                Requirement::Authenticated,
            ),
        ],
        Requirement::Public,
    )
    .expect("a valid policy")
}

#[test]
fn format_suffixes_and_compatibility_forms_that_reach_another_requirement_are_refused() {
    use PathError::{CompatibilityDelimiter, CompatibilityVariant, FormatVariant, TrailingVariant};
    let p = suffix_policy();
    for (method, path, want) in [
        // A format suffix on the last segment: Rails, DRF, Spring MVC serve the bare path.
        ("GET", "/admin.json", Err(FormatVariant)),
        ("GET", "/admin.xml", Err(FormatVariant)),
        ("GET", "/admin.v2", Err(FormatVariant)),
        ("GET", "/admin%2Ejson", Err(FormatVariant)),
        ("GET", "/reports/annual.json", Err(FormatVariant)),
        ("GET", "/items/1/notes.json", Err(FormatVariant)),
        ("HEAD", "/items/1/notes.json", Err(FormatVariant)),
        ("DELETE", "/admin.json", Err(FormatVariant)),
        // Several suffixes, and suffixes combined with the established readings.
        ("GET", "/admin.tar.gz", Err(FormatVariant)),
        ("GET", "/ADMIN.json", Err(FormatVariant)),
        ("GET", "/admin.json/", Err(FormatVariant)),
        ("GET", "/admin.json.", Err(FormatVariant)),
        ("GET", "/admin.json%20", Err(FormatVariant)),
        ("GET", "/admin..json", Err(FormatVariant)),
        ("GET", "/adm%C4%B1n.json", Err(FormatVariant)),
        // `/admin` then read with its trailing slash: the subtree, same requirement.
        ("GET", "/admin/.json", Ok("rules[1]")),
        // Not a format suffix: a dot inside, a non-alphanumeric extension, an earlier
        // segment, or one that reaches the same requirement.
        ("GET", "/admin.j-s", Ok("default")),
        ("GET", "/admin.json/x", Ok("default")),
        ("GET", "/other.json", Ok("default")),
        ("GET", "/admin/users.json", Ok("rules[1]")),
        ("GET", "/secret.json", Err(FormatVariant)),
        ("PUT", "/secret.json", Ok("default")),
        // Unicode compatibility forms (NFKC): fullwidth letters, and with the other readings.
        ("GET", "/%EF%BD%93ecret", Err(CompatibilityVariant)), // ｓecret
        ("PUT", "/%EF%BD%93ecret", Ok("default")),
        (
            "GET",
            "/%EF%BD%81%EF%BD%84%EF%BD%8D%EF%BD%89%EF%BD%8E", // ａｄｍｉｎ
            Err(CompatibilityVariant),
        ),
        ("GET", "/%EF%BC%A1DMIN", Err(CompatibilityVariant)), // Ａ, then case
        ("GET", "/%EF%BD%81dmin/users", Err(CompatibilityVariant)),
        ("GET", "/%EF%BD%81dmin.json", Err(CompatibilityVariant)),
        ("GET", "/admin%EF%BC%8Ejson", Err(CompatibilityVariant)), // ．json
        ("GET", "/reports/annual%EF%BC%8E", Err(CompatibilityVariant)),
        ("GET", "/admin%E3%80%80", Err(TrailingVariant)), // ideographic space
        ("GET", "/%EF%BD%86oo", Ok("default")),
        ("GET", "/caf%C3%A9", Ok("default")),
        // A compatibility form that gains a delimiter or a dot segment: refused outright,
        // whatever the rules.
        (
            "GET",
            "/public%EF%BC%8F..%EF%BC%8Fadmin", // ／..／
            Err(CompatibilityDelimiter),
        ),
        (
            "GET",
            "/public/%EF%BC%8E%EF%BC%8E/admin", // ．．
            Err(CompatibilityDelimiter),
        ),
        (
            "GET",
            "/public/%E2%80%A5/admin",
            Err(CompatibilityDelimiter),
        ), // ‥
        ("GET", "/public%EF%BC%8Fadmin", Err(CompatibilityDelimiter)),
        ("GET", "/admin%EF%BC%BCx", Err(CompatibilityDelimiter)), // ＼
        ("GET", "/admin%EF%BC%85x", Err(CompatibilityDelimiter)), // ％
        ("GET", "/admin%EF%BC%9Fx", Err(CompatibilityDelimiter)), // ？
        ("GET", "/admin%EF%BC%83x", Err(CompatibilityDelimiter)), // ＃
        ("GET", "/admin%EF%BC%9Bx", Err(CompatibilityDelimiter)), // ；
        ("GET", "/%E2%84%80", Err(CompatibilityDelimiter)),       // ℀, a/c
        ("GET", "/other%EF%BC%8F", Err(CompatibilityDelimiter)),
        // The paths as written still pass.
        ("GET", "/admin", Ok("rules[0]")),
        ("GET", "/admin/", Ok("rules[1]")),
        ("GET", "/reports/annual", Ok("rules[2]")),
        ("GET", "/items/1/notes", Ok("rules[3]")),
    ] {
        let path = normalize(path).expect("canonical");
        let got = p.route(method, &path).map(|r| &**r.name);
        assert_eq!(got, want, "{method} {path}");
    }
}

/// Configured paths and the later readings: the start-up check leaves them alone, so every
/// configuration that started still starts, and a configured path is refused at request
/// time only where such a reading reaches another rule with a different requirement.
#[test]
fn configured_paths_are_refused_at_request_time_where_a_later_reading_conflicts() {
    let admin = || Requirement::AnyScope(vec!["admin".into()]);
    let p = Policy::new(
        vec![
            rule(
                "rules[0]",
                PathMatch::Exact("/feed.xml".into()),
                None,
                Requirement::Public,
            ),
            rule(
                "rules[1]",
                PathMatch::Exact("/report.json".into()),
                None,
                Requirement::Public,
            ),
            rule(
                "rules[2]",
                PathMatch::Exact("/report".into()),
                None,
                admin(),
            ),
            rule(
                "rules[3]",
                PathMatch::Exact("/\u{ff53}tatus".into()),
                None,
                Requirement::Public,
            ),
            rule(
                "rules[4]",
                PathMatch::Exact("/status".into()),
                None,
                admin(),
            ),
            rule(
                "rules[5]",
                PathMatch::Exact("/docs.html".into()),
                None,
                Requirement::Public,
            ),
            rule("rules[6]", PathMatch::Prefix("/docs".into()), None, admin()),
        ],
        Requirement::Authenticated,
    )
    .expect("configurations that start today keep starting");
    for (path, want) in [
        // `/feed` reaches only the default, and `/docs` a rule that takes `/docs.html` too.
        ("/feed.xml", Ok("rules[0]")),
        ("/docs.html", Ok("rules[5]")),
        ("/report.json", Err(PathError::FormatVariant)),
        ("/%EF%BD%93tatus", Err(PathError::CompatibilityVariant)),
        ("/report", Ok("rules[2]")),
        ("/status", Ok("rules[4]")),
    ] {
        let path = normalize(path).expect("canonical");
        let got = p.route("GET", &path).map(|r| &**r.name);
        assert_eq!(got, want, "{path}");
    }
}

/// A configured path is exempt from the established readings only under the methods its
/// rule takes (`HEAD` as the `GET` it stands for): other methods are read as on any path.
#[test]
fn the_configured_path_exemption_holds_only_for_the_rules_methods() {
    use PathError::TrailingVariant;
    let export = || Requirement::AnyScope(vec!["export".into()]);
    let p = Policy::new(
        vec![
            rule(
                "rules[0]",
                PathMatch::Exact("/export".into()),
                Some(&["POST"]),
                export(),
            ),
            rule(
                "rules[1]",
                PathMatch::Prefix("/export/".into()),
                None,
                export(),
            ),
            rule(
                "rules[2]",
                PathMatch::Exact("/summary".into()),
                Some(&["GET"]),
                export(),
            ),
            rule(
                "rules[3]",
                PathMatch::Prefix("/summary/".into()),
                None,
                export(),
            ),
        ],
        Requirement::Public,
    )
    .expect("a valid policy");
    for (method, path, want) in [
        ("POST", "/export", Ok("rules[0]")),
        ("GET", "/export", Err(TrailingVariant)),
        ("DELETE", "/export", Err(TrailingVariant)),
        ("HEAD", "/export", Err(TrailingVariant)),
        ("GET", "/export/", Ok("rules[1]")),
        // HEAD is the GET its rule takes.
        ("GET", "/summary", Ok("rules[2]")),
        ("HEAD", "/summary", Ok("rules[2]")),
        ("POST", "/summary", Err(TrailingVariant)),
    ] {
        let path = normalize(path).expect("canonical");
        let got = p.route(method, &path).map(|r| &**r.name);
        assert_eq!(got, want, "{method} {path}");
    }
}

const STAFF: &str = "https://staff.example.com/";
const CUSTOMERS: &str = "https://customers.example.com/";

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Rules taking tokens only from some issuers or for some audiences: `/staff/` the staff
/// issuer's, `/orders/` tokens for the orders API, `/both` both, `/any` any verified token.
fn accepting_policy() -> Policy {
    let read = || Requirement::AnyScope(vec!["read".into()]);
    Policy::new(
        vec![
            rule(
                "rules[0]",
                PathMatch::Prefix("/staff/".into()),
                None,
                read(),
            )
            .accepting_issuers(strings(&[STAFF]))
            .expect("valid"),
            rule(
                "rules[1]",
                PathMatch::Prefix("/orders/".into()),
                None,
                read(),
            )
            .accepting_audiences(strings(&["https://orders.api", "orders"]))
            .expect("valid"),
            rule("rules[2]", PathMatch::Exact("/both".into()), None, read())
                .accepting_issuers(strings(&[STAFF, CUSTOMERS]))
                .and_then(|r| r.accepting_audiences(strings(&["https://orders.api"])))
                .expect("valid"),
            rule("rules[3]", PathMatch::Exact("/any".into()), None, read()),
            // Evaluated and reported only: what it would decide counts the issuer too.
            rule("rules[4]", PathMatch::Prefix("/".into()), None, read())
                .accepting_issuers(strings(&[STAFF]))
                .expect("valid")
                .shadowed(true),
        ],
        Requirement::Deny,
    )
    .expect("a valid policy")
}

#[test]
fn rules_take_tokens_only_from_their_issuers_and_for_their_audiences() {
    let p = accepting_policy();
    let token = |iss: &str, aud: &[&str], scopes: &[&str]| {
        VerifiedClaims::for_tests(Some("u"), scopes).issued_by(iss, aud)
    };
    let issuer = Some(Denial::IssuerNotAccepted);
    let audience = Some(Denial::AudienceNotAccepted);
    let scope = Some(Denial::InsufficientScope {
        required: vec!["read".into()],
    });
    // (path, token, the denial (None: allowed), the shadow rule's denial)
    let cases = [
        ("/staff/x", token(STAFF, &["api"], &["read"]), None, None),
        (
            "/staff/x",
            token(CUSTOMERS, &["api"], &["read"]),
            issuer.clone(),
            issuer.clone(),
        ),
        // The issuer comes before scopes: authentication errors before authorization errors.
        (
            "/staff/x",
            token(CUSTOMERS, &["api"], &[]),
            issuer.clone(),
            issuer.clone(),
        ),
        (
            "/staff/x",
            token(STAFF, &["api"], &[]),
            scope.clone(),
            scope.clone(),
        ),
        // Compared exactly: another spelling of the staff issuer is another issuer.
        (
            "/staff/x",
            token("https://staff.example.com", &["api"], &["read"]),
            issuer.clone(),
            issuer.clone(),
        ),
        (
            "/staff/x",
            token("https://STAFF.example.com/", &["api"], &["read"]),
            issuer.clone(),
            issuer.clone(),
        ),
        (
            "/orders/1",
            token(CUSTOMERS, &["https://orders.api"], &["read"]),
            None,
            issuer.clone(),
        ),
        (
            "/orders/1",
            token(CUSTOMERS, &["api", "orders"], &["read"]),
            None,
            issuer.clone(),
        ),
        (
            "/orders/1",
            token(STAFF, &["api"], &["read"]),
            audience.clone(),
            None,
        ),
        (
            "/orders/1",
            token(STAFF, &["https://orders.api/"], &["read"]),
            audience.clone(),
            None,
        ),
        (
            "/orders/1",
            token(STAFF, &["ORDERS"], &["read"]),
            audience.clone(),
            None,
        ),
        (
            "/orders/1",
            token(STAFF, &[], &["read"]),
            audience.clone(),
            None,
        ),
        (
            "/orders/1",
            token(STAFF, &["orders"], &[]),
            scope.clone(),
            scope.clone(),
        ),
        (
            "/both",
            token(CUSTOMERS, &["https://orders.api"], &["read"]),
            None,
            issuer.clone(),
        ),
        (
            "/both",
            token(STAFF, &["https://orders.api"], &["read"]),
            None,
            None,
        ),
        // The issuer is checked first: a token failing both is told about its issuer.
        (
            "/both",
            token("https://other.example/", &["api"], &["read"]),
            issuer.clone(),
            issuer.clone(),
        ),
        (
            "/both",
            token(CUSTOMERS, &["api"], &["read"]),
            audience.clone(),
            issuer.clone(),
        ),
        (
            "/any",
            token(CUSTOMERS, &["api"], &["read"]),
            None,
            issuer.clone(),
        ),
    ];
    for (path, claims, denial, shadow_denial) in cases {
        let resolved = p.resolve("GET", path);
        let (decision, shadows) = resolved.decide(false, AuthOutcome::Done(Ok(claims.clone())));
        let expect = |denial: Option<Denial>| match denial {
            None => Decision::Allow(Some(claims.clone())),
            Some(denial) => Decision::Deny(denial),
        };
        assert_eq!(decision, expect(denial), "{path} {claims:?}");
        assert_eq!(
            shadows,
            vec![expect(shadow_denial)],
            "shadow: {path} {claims:?}"
        );
    }
    // Failed authentication is told as it is, whatever the rule accepts.
    let (decision, _) = p
        .resolve("GET", "/staff/x")
        .decide(false, AuthOutcome::Done(Err(AuthError::KeysUnavailable)));
    assert_eq!(
        decision,
        Decision::Deny(Denial::Unauthenticated(AuthError::KeysUnavailable))
    );
}

#[test]
fn issuers_and_audiences_that_cannot_be_checked_are_refused() {
    let exact = || PathMatch::Exact("/x".into());
    let read = || Requirement::AnyScope(vec!["read".into()]);
    type Setter = fn(Rule, Vec<String>) -> Result<Rule, PolicyError>;
    let issuers: Setter = Rule::accepting_issuers;
    let audiences: Setter = Rule::accepting_audiences;
    // (requirement, setter, list, the key and value refused)
    let cases: [(Requirement, Setter, &[&str], &str, &str); 8] = [
        (read(), issuers, &[], "rules[0].issuers", "[]"),
        (read(), audiences, &[], "rules[0].audiences", "[]"),
        (read(), issuers, &[STAFF, ""], "rules[0].issuers[1]", ""),
        (
            read(),
            audiences,
            &["a", "b", "a"],
            "rules[0].audiences[2]",
            "a",
        ),
        (
            Requirement::Public,
            issuers,
            &[STAFF],
            "rules[0].issuers",
            "with public = true",
        ),
        (
            Requirement::Public,
            audiences,
            &["a"],
            "rules[0].audiences",
            "with public = true",
        ),
        (
            Requirement::Deny,
            issuers,
            &[STAFF],
            "rules[0].issuers",
            "with deny = true",
        ),
        (
            Requirement::Deny,
            audiences,
            &["a"],
            "rules[0].audiences",
            "with deny = true",
        ),
    ];
    for (requirement, set, list, key, value) in cases {
        let error = set(
            rule("rules[0]", exact(), None, requirement.clone()),
            strings(list),
        )
        .expect_err(&format!("{requirement} {list:?}"));
        assert_eq!(
            (error.key().as_str(), error.value()),
            (key, value),
            "{error}"
        );
    }
    for requirement in [
        Requirement::Authenticated,
        read(),
        Requirement::AllScopes(vec!["a".into()]),
    ] {
        let r = rule("rules[0]", exact(), None, requirement)
            .accepting_issuers(strings(&[STAFF]))
            .and_then(|r| r.accepting_audiences(strings(&["a", "b"])))
            .expect("valid");
        assert_eq!(r.accepts().issuers(), Some(&strings(&[STAFF])[..]));
        assert_eq!(r.accepts().audiences(), Some(&strings(&["a", "b"])[..]));
    }
}

/// A reading that reaches a rule with the same scopes but other issuers or audiences is a
/// conflict like any other: the staff-only rule must not be reachable, respelt, through one
/// that takes every issuer's tokens.
#[test]
fn readings_that_reach_other_issuers_or_audiences_conflict() {
    let read = || Requirement::AnyScope(vec!["read".into()]);
    let staff_only = |r: Rule| r.accepting_issuers(strings(&[STAFF])).expect("valid");
    let orders_only = |r: Rule| r.accepting_audiences(strings(&["orders"])).expect("valid");
    for (restrict, what) in [
        (staff_only as fn(Rule) -> Rule, "from issuers"),
        (orders_only as fn(Rule) -> Rule, "for audiences"),
    ] {
        let error = Policy::new(
            vec![
                restrict(rule(
                    "rules[0]",
                    PathMatch::Exact("/Admin".into()),
                    None,
                    read(),
                )),
                rule("rules[1]", PathMatch::Prefix("/admin".into()), None, read()),
            ],
            Requirement::Deny,
        )
        .expect_err("a case reading reaches the rule taking every issuer's tokens");
        assert!(
            matches!(&error, PolicyError::ConflictingReading(c) if c.own.contains(what)),
            "{error}"
        );
        // At request time too: with the same scopes, `/STAFF/x` is refused, not decided by the
        // default's weaker acceptance.
        let p = Policy::new(
            vec![restrict(rule(
                "rules[0]",
                PathMatch::Prefix("/staff/".into()),
                None,
                read(),
            ))],
            read(),
        )
        .expect("valid");
        let path = normalize("/STAFF/x").expect("canonical");
        assert_eq!(
            p.route("GET", &path).map(|r| &**r.name),
            Err(PathError::CaseVariant)
        );
        // The same acceptance is no conflict.
        Policy::new(
            vec![
                restrict(rule(
                    "rules[0]",
                    PathMatch::Exact("/Admin".into()),
                    None,
                    read(),
                )),
                restrict(rule(
                    "rules[1]",
                    PathMatch::Prefix("/admin".into()),
                    None,
                    read(),
                )),
            ],
            Requirement::Deny,
        )
        .expect("the same demands under every reading");
    }
}
