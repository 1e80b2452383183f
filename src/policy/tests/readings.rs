//! The readings an upstream might apply (`HEAD` as `GET`, letter case, format suffixes,
//! compatibility forms) that refuse a request, and the exemption of configured paths.

use super::*;

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
