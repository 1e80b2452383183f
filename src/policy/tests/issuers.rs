//! Rules that take tokens only from some issuers or for some audiences, what cannot be
//! checked, and readings that reach other issuers or audiences.

use super::*;

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
