//! Templates beside literal paths: whole-segment matching, and the start-up checks for
//! unreachable rules and confusable readings.

use super::*;

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
