//! The `[[rules]]` routes, compiled into [`crate::policy::Rule`]s, and the checks of the claim
//! names, forwarded headers and algorithms an issuer's tokens are read with.

use serde::Deserialize;

use super::{ConfigError, Issuer, StringOrList, invalid};
use crate::auth::token::is_http_token;
use crate::auth::verify::{Algorithm, ForwardClaim, REGISTERED_CLAIMS, is_scope_token};
use crate::policy::{ClaimCondition, PathMatch, Policy, Requirement, Rule, Template, normalize};

/// One `[[rules]]` entry as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    /// Name in logs and metrics (default `rules[N]`).
    pub name: Option<String>,
    /// Exact path.
    pub path: Option<String>,
    /// Path prefix.
    pub prefix: Option<String>,
    /// Whole-segment path template (`/items/{id}/{**}`).
    pub template: Option<String>,
    /// Methods; absent means any.
    pub methods: Option<Vec<String>>,
    /// Any-of scopes.
    pub scopes: Option<Vec<String>>,
    /// All-of scopes.
    pub all_scopes: Option<Vec<String>>,
    /// No token needed.
    pub public: Option<bool>,
    /// Refused after authentication (401 without a valid token, else 403), as `default = "deny"`.
    pub deny: Option<bool>,
    /// Evaluated, logged and counted, but never enforced.
    pub shadow: Option<bool>,
    /// Claim conditions: claim name or JSON Pointer -> value or any-of list, `{name}` being the
    /// template's path variable.
    pub claims: Option<std::collections::BTreeMap<String, StringOrList>>,
    /// The configured issuers whose tokens the rule takes (default: every one).
    pub issuers: Option<Vec<String>>,
    /// The rule takes only tokens whose `aud` contains one of these, besides the issuer's own
    /// audience check (default: that check alone).
    pub audiences: Option<Vec<String>>,
    /// The rule takes only sender-constrained (DPoP- or certificate-bound) tokens; default
    /// false.
    pub sender_constrained: Option<bool>,
}

/// `{prefix}scope_claims`: the claims whose union is the granted scopes; default `scope`, `scp`.
pub(super) fn compile_scope_claims(
    prefix: &str,
    names: Option<Vec<String>>,
) -> Result<Vec<String>, ConfigError> {
    let names = names.unwrap_or_else(|| vec!["scope".to_string(), "scp".to_string()]);
    if names.is_empty() {
        return Err(invalid(
            format!("{prefix}scope_claims"),
            &names,
            "at least one claim is needed; leave the key out for [\"scope\", \"scp\"]",
        ));
    }
    for (i, name) in names.iter().enumerate() {
        let key = format!("{prefix}scope_claims[{i}]");
        if name.is_empty() || name.chars().any(char::is_control) {
            return Err(invalid(key, name, "a claim name is non-empty text"));
        }
        if REGISTERED_CLAIMS.contains(&name.as_str()) {
            return Err(invalid(key, name, "a registered claim cannot carry scopes"));
        }
        if names[..i].contains(name) {
            return Err(invalid(key, name, "listed twice"));
        }
    }
    Ok(names)
}

/// Headers a forwarded claim may not take: scopegate's own identity headers, and headers whose
/// meaning belongs to HTTP, the proxy, the credentials or the request's tracing. A claim set
/// there would let a token choose what the upstream reads as the request's method
/// (`x-http-method-override` and its spellings), client address or scheme (`forwarded`), request
/// id or trace (which logs join on), or proof of possession (`dpop`).
pub const RESERVED_HEADERS: [&str; 20] = [
    "x-auth-subject",
    "x-auth-scopes",
    "authorization",
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "te",
    "upgrade",
    "cookie",
    "proxy-authorization",
    "x-request-id",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "forwarded",
    "dpop",
    "traceparent",
    "tracestate",
];

/// Prefixes of header names a forwarded claim may not take: Envoy's own (`x-envoy-`), the
/// proxy's record of the client and the original request (`x-forwarded-`, `x-original-`), and
/// names kept for scopegate (`x-scopegate-`).
pub const RESERVED_HEADER_PREFIXES: [&str; 4] =
    ["x-envoy-", "x-forwarded-", "x-original-", "x-scopegate-"];

/// `{prefix}forward_claims`: header name -> claim, each header an HTTP token that no one else
/// owns ([`RESERVED_HEADERS`], [`RESERVED_HEADER_PREFIXES`]), each claim unregistered.
pub(super) fn compile_forward_claims(
    prefix: &str,
    table: std::collections::BTreeMap<String, String>,
) -> Result<Vec<ForwardClaim>, ConfigError> {
    let mut out: Vec<ForwardClaim> = Vec::new();
    for (header, spec) in table {
        let key = format!("{prefix}forward_claims.{header:?}");
        if !is_http_token(&header) || header.contains('_') {
            return Err(invalid(
                key,
                &header,
                "a header name is an RFC 9110 token without `_` (which Envoy refuses)",
            ));
        }
        let lower = header.to_ascii_lowercase();
        if RESERVED_HEADERS.contains(&lower.as_str())
            || RESERVED_HEADER_PREFIXES
                .iter()
                .any(|prefix| lower.starts_with(prefix))
        {
            return Err(invalid(
                key,
                &header,
                "a header scopegate, HTTP, Envoy, the proxy or tracing already owns (a claim \
                 there could change how the upstream reads the request)",
            ));
        }
        let claim = ForwardClaim::new(&lower, &spec).ok_or_else(|| {
            invalid(
                &key,
                &spec,
                "a claim name, or a JSON Pointer (RFC 6901) starting with `/`",
            )
        })?;
        if REGISTERED_CLAIMS.contains(&claim.claim.as_str()) {
            return Err(invalid(
                key,
                &spec,
                "registered claims are not forwarded (`sub` already is, as x-auth-subject)",
            ));
        }
        if out.iter().any(|f| f.header == lower) {
            return Err(invalid(
                key,
                &header,
                "the same header twice (names ignore case)",
            ));
        }
        out.push(claim);
    }
    Ok(out)
}

/// `{prefix}algorithms`: the allow-list, duplicates dropped; default `RS256`.
pub(super) fn compile_algorithms(
    prefix: &str,
    names: Option<Vec<String>>,
) -> Result<Vec<Algorithm>, ConfigError> {
    let names = names.unwrap_or_else(|| vec!["RS256".to_string()]);
    if names.is_empty() {
        return Err(invalid(
            format!("{prefix}algorithms"),
            &names,
            "at least one algorithm is needed",
        ));
    }
    let supported: Vec<&str> = Algorithm::ALL.iter().map(|a| a.as_str()).collect();
    let mut out = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let alg = name.parse::<Algorithm>().map_err(|()| {
            let why = if name.eq_ignore_ascii_case("none")
                || name.to_ascii_uppercase().starts_with("HS")
            {
                "unsigned and HMAC tokens are never accepted".to_string()
            } else {
                format!("supported: {}", supported.join(", "))
            };
            invalid(format!("{prefix}algorithms[{i}]"), name, why)
        })?;
        if !out.contains(&alg) {
            out.push(alg);
        }
    }
    Ok(out)
}

/// `rules[index]` as a [`Rule`]: exactly one of `path`, `prefix` and `template`, and one
/// requirement.
pub(super) fn compile_rule(index: usize, raw: RawRule) -> Result<Rule, ConfigError> {
    let name = format!("rules[{index}]");
    let key = |field: &str| format!("{name}.{field}");
    let path = match (raw.path, raw.prefix, raw.template) {
        (Some(p), None, None) => PathMatch::Exact(canonical_rule_path(&key("path"), p)?),
        (None, Some(p), None) => PathMatch::Prefix(canonical_rule_path(&key("prefix"), p)?),
        (None, None, Some(t)) => PathMatch::Template(
            Template::parse(&t).map_err(|e| invalid(key("template"), &t, e.to_string()))?,
        ),
        (None, None, None) => {
            return Err(ConfigError::Missing {
                key: format!("{name}.path`, `{name}.prefix` or `{name}.template"),
                hint: " (each rule matches an exact `path`, a `prefix` or a `template`)".into(),
            });
        }
        _ => {
            return Err(invalid(
                &name,
                "more than one of path, prefix and template",
                "set exactly one of `path`, `prefix` and `template`",
            ));
        }
    };
    let methods = raw.methods;
    let public = raw.public.unwrap_or(false);
    let check_scopes = |field: &str, list: Vec<String>| -> Result<Vec<String>, ConfigError> {
        if list.is_empty() {
            return Err(invalid(
                key(field),
                &list,
                "an empty scope list would require nothing; leave the key out for \"any valid token\"",
            ));
        }
        for s in &list {
            if !is_scope_token(s) {
                return Err(invalid(
                    key(field),
                    s,
                    "a scope is a non-empty run of printable ASCII without spaces, `\"` or `\\` \
                     (an RFC 6749 scope-token); no token could ever grant this one",
                ));
            }
        }
        Ok(list)
    };
    if raw.deny == Some(true) {
        // A deny rule refuses every request it takes; any requirement beside it would read as
        // an exception it does not make.
        let beside = [
            ("public", raw.public == Some(true)),
            ("scopes", raw.scopes.is_some()),
            ("all_scopes", raw.all_scopes.is_some()),
            ("claims", raw.claims.is_some()),
        ];
        if let Some((field, _)) = beside.iter().find(|(_, set)| *set) {
            return Err(invalid(
                key(field),
                "with deny = true",
                "a deny rule refuses every request it matches (after authentication), so it \
                 cannot also be public or grant access by scopes; drop one of the two",
            ));
        }
        let rule = Rule::new(index, raw.name, path, methods, Requirement::Deny)?;
        let rule = accepting(rule, raw.issuers, raw.audiences)?;
        let rule = rule.sender_constrained(raw.sender_constrained.unwrap_or(false));
        return Ok(rule.shadowed(raw.shadow.unwrap_or(false)));
    }
    let requirement = match (public, raw.scopes, raw.all_scopes) {
        (true, None, None) => Requirement::Public,
        (true, Some(_), _) => {
            return Err(invalid(
                key("scopes"),
                "with public = true",
                "a public rule needs no token, so it cannot require scopes",
            ));
        }
        (true, None, Some(_)) => {
            return Err(invalid(
                key("all_scopes"),
                "with public = true",
                "a public rule needs no token, so it cannot require scopes",
            ));
        }
        (false, Some(_), Some(_)) => {
            return Err(invalid(
                &name,
                "scopes and all_scopes",
                "set at most one of `scopes` (any-of) and `all_scopes` (all-of)",
            ));
        }
        (false, Some(list), None) => Requirement::AnyScope(check_scopes("scopes", list)?),
        (false, None, Some(list)) => Requirement::AllScopes(check_scopes("all_scopes", list)?),
        (false, None, None) => Requirement::Authenticated,
    };
    let rule = Rule::new(index, raw.name, path, methods, requirement)?;
    let rule = match raw.claims {
        None => rule,
        Some(table) => {
            if table.is_empty() {
                return Err(invalid(
                    key("claims"),
                    "{}",
                    "an empty table checks nothing; leave the key out",
                ));
            }
            let mut conditions = Vec::with_capacity(table.len());
            for (claim, values) in table {
                let values = match values {
                    StringOrList::One(one) => vec![one],
                    StringOrList::Many(many) => many,
                };
                let condition = ClaimCondition::new(&claim, &values).map_err(|reason| {
                    invalid(format!("{name}.claims.{claim:?}"), &values, reason)
                })?;
                if let Some(same) = conditions
                    .iter()
                    .find(|c: &&ClaimCondition| c.spec() == condition.spec())
                {
                    return Err(invalid(
                        format!("{name}.claims.{claim:?}"),
                        &values,
                        format!(
                            "{:?} names the same claim; give one key its list of values",
                            same.key()
                        ),
                    ));
                }
                conditions.push(condition);
            }
            rule.with_claims(conditions)?
        }
    };
    let rule = accepting(rule, raw.issuers, raw.audiences)?;
    if raw.sender_constrained == Some(true) && public {
        return Err(invalid(
            key("sender_constrained"),
            true,
            "a public rule reads no token, so it cannot require a bound one",
        ));
    }
    let rule = rule.sender_constrained(raw.sender_constrained.unwrap_or(false));
    Ok(rule.shadowed(raw.shadow.unwrap_or(false)))
}

/// `rule` with its `issuers` and `audiences`, when given ([`Rule::accepting_issuers`]).
fn accepting(
    rule: Rule,
    issuers: Option<Vec<String>>,
    audiences: Option<Vec<String>>,
) -> Result<Rule, ConfigError> {
    let rule = match issuers {
        Some(list) => rule.accepting_issuers(list)?,
        None => rule,
    };
    Ok(match audiences {
        Some(list) => rule.accepting_audiences(list)?,
        None => rule,
    })
}

/// Refuses a rule's `issuers` entry that names no configured issuer (compared exactly, as a
/// token's `iss` is): it could never match, and a typo there would refuse every token the rule
/// was written for.
pub(super) fn check_rule_issuers(
    policy: &Policy,
    configured: &[Issuer],
) -> Result<(), ConfigError> {
    for rule in policy.rules() {
        for (i, name) in rule
            .accepts()
            .issuers()
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            if !configured.iter().any(|c| c.expectations.issuer == *name) {
                let known: Vec<&str> = configured
                    .iter()
                    .map(|c| c.expectations.issuer.as_str())
                    .collect();
                return Err(invalid(
                    format!("{}.issuers[{i}]", rule.key()),
                    name,
                    format!(
                        "not a configured issuer (compared exactly); configured: {}",
                        known.join(", ")
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// A rule path must already be canonical, or it could never match a (canonicalised) request; and
/// it is a literal, so glob- or template-looking characters and trailing whitespace (which no
/// request path an upstream serves would carry) are refused with a hint.
fn canonical_rule_path(key: &str, path: String) -> Result<String, ConfigError> {
    if path.contains(['*', '{', '}']) {
        return Err(invalid(
            key,
            &path,
            "rule paths are literal: `*` and `{...}` match only themselves; use \
             `template = \"/items/{id}\"` for variable segments, or `prefix = \"/admin/\"` \
             for a subtree",
        ));
    }
    if path.ends_with(char::is_whitespace) {
        return Err(invalid(
            key,
            &path,
            "ends with whitespace, which upstreams strip or refuse; remove it",
        ));
    }
    match normalize(&path) {
        Ok(canonical) if canonical.as_str() == path => Ok(path),
        Ok(canonical) => Err(invalid(
            key,
            &path,
            format!(
                "request paths are matched in canonical form; write {:?}",
                canonical.as_str()
            ),
        )),
        Err(e) => Err(invalid(key, &path, format!("could never match: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::compile;
    use super::*;
    use crate::config::*;

    #[test]
    fn rules_compile() {
        let c = compile(
            r#"
            default = "deny"
            [[rules]]
            path = "/restricted_resource"
            methods = ["GET"]
            scopes = ["read:messages"]
            [[rules]]
            prefix = "/admin/"
            all_scopes = ["admin", "write"]
            [[rules]]
            path = "/health"
            public = true
            [[rules]]
            prefix = "/me"
            [[rules]]
            path = "/restricted_resource"
            deny = true
            [[rules]]
            path = "/other"
            deny = false
            "#,
        )
        .expect("compiles");
        let r = c.policy().rules();
        assert_eq!(*r[4].requirement(), Requirement::Deny);
        assert_eq!(r[4].methods(), None);
        assert_eq!(*r[5].requirement(), Requirement::Authenticated);
        assert_eq!(r[0].methods(), Some(&["GET".to_string()][..]));
        assert_eq!(
            *r[0].requirement(),
            Requirement::AnyScope(vec!["read:messages".into()])
        );
        assert_eq!(*r[1].path(), PathMatch::Prefix("/admin/".into()));
        assert_eq!(
            *r[1].requirement(),
            Requirement::AllScopes(vec!["admin".into(), "write".into()])
        );
        assert_eq!(*r[2].requirement(), Requirement::Public);
        assert_eq!(*r[3].requirement(), Requirement::Authenticated);
        assert_eq!(*c.policy().default_requirement(), Requirement::Deny);
        let shown = c.to_string();
        assert!(
            shown.contains("rules[1]") && shown.contains("all of scopes [admin, write]"),
            "{shown}"
        );
        assert!(
            shown.lines().any(|l| l.contains("rules[4]")
                && l.contains("any method")
                && l.ends_with("-> deny")),
            "{shown}"
        );
    }

    /// What the new checks must keep accepting: the README's subtree advice (the same scopes on
    /// `prefix = "/admin/"` and `path = "/admin"`), a rule naming HEAD beside a GET rule,
    /// extension methods, and a specific rule before a broader one.
    #[test]
    fn meaningful_rule_sets_still_compile() {
        compile(
            r#"
            [[rules]]
            prefix = "/admin/"
            scopes = ["admin"]
            [[rules]]
            path = "/admin"
            scopes = ["admin"]
            [[rules]]
            path = "/status"
            methods = ["HEAD"]
            public = true
            [[rules]]
            path = "/status"
            methods = ["GET", "PROPFIND"]
            [[rules]]
            path = "/items/special"
            public = true
            [[rules]]
            prefix = "/items/"
            scopes = ["read:items"]
            "#,
        )
        .expect("compiles");
    }

    /// Two issuers; `staff` takes only the staff issuer's tokens, `orders` only tokens for the
    /// orders API.
    const TWO_ISSUERS: &str = r#"
        [[issuers]]
        issuer = "https://staff.example.com/"
        audience = "api"
        jwks_uri = "https://staff.example.com/keys"
        [[issuers]]
        issuer = "https://customers.example.com/"
        audience = "api"
        jwks_uri = "https://customers.example.com/keys"
        "#;

    fn compile_issuers(rules: &str) -> Result<Config, ConfigError> {
        RawConfig::from_toml(&format!("{TWO_ISSUERS}{rules}"), "<test>")?.compile()
    }

    #[test]
    fn rule_issuers_and_audiences_compile_and_are_printed() {
        let c = compile_issuers(
            r#"
            [[rules]]
            name = "staff"
            prefix = "/staff/"
            issuers = ["https://staff.example.com/"]
            [[rules]]
            name = "orders"
            prefix = "/orders/"
            scopes = ["read"]
            audiences = ["https://orders.api"]
            [[rules]]
            name = "watch"
            prefix = "/"
            issuers = ["https://customers.example.com/", "https://staff.example.com/"]
            audiences = ["a", "b"]
            shadow = true
            "#,
        )
        .expect("compiles");
        let r = c.policy().rules();
        assert_eq!(
            r[0].accepts().issuers(),
            Some(&["https://staff.example.com/".to_string()][..])
        );
        assert_eq!(r[0].accepts().audiences(), None);
        assert_eq!(r[1].accepts().issuers(), None);
        assert_eq!(
            r[1].accepts().audiences(),
            Some(&["https://orders.api".to_string()][..])
        );
        let shown = c.to_string();
        for line in [
            "-> any valid token from issuers [https://staff.example.com/]",
            "-> any of scopes [read] for audiences [https://orders.api]",
            "-> any valid token from issuers [https://customers.example.com/, \
             https://staff.example.com/] for audiences [a, b]  [shadow",
        ] {
            assert!(shown.contains(line), "{line:?} in\n{shown}");
        }
    }

    #[test]
    fn rule_issuers_must_be_configured_and_both_lists_checkable() {
        let cases = [
            // Compared exactly, as the token's `iss` is: no trailing-slash or case leniency.
            (
                "path = \"/a\"\nissuers = [\"https://staff.example.com\"]",
                "`rules[0].issuers[0]` = \"https://staff.example.com\"",
            ),
            (
                "path = \"/a\"\nissuers = [\"https://staff.example.com/\", \"HTTPS://customers.example.com/\"]",
                "`rules[0].issuers[1]` = \"HTTPS://customers.example.com/\"",
            ),
            ("path = \"/a\"\nissuers = []", "`rules[0].issuers` = \"[]\""),
            (
                "path = \"/a\"\naudiences = []",
                "`rules[0].audiences` = \"[]\"",
            ),
            (
                "path = \"/a\"\naudiences = [\"\"]",
                "`rules[0].audiences[0]`",
            ),
            (
                "path = \"/a\"\naudiences = [\"x\", \"x\"]",
                "`rules[0].audiences[1]` = \"x\"",
            ),
            (
                "path = \"/a\"\npublic = true\nissuers = [\"https://staff.example.com/\"]",
                "`rules[0].issuers` = \"with public = true\"",
            ),
            (
                "path = \"/a\"\npublic = true\naudiences = [\"api\"]",
                "`rules[0].audiences` = \"with public = true\"",
            ),
            (
                "path = \"/a\"\ndeny = true\nissuers = [\"https://staff.example.com/\"]",
                "`rules[0].issuers` = \"with deny = true\"",
            ),
            (
                "path = \"/a\"\nissuers = \"https://staff.example.com/\"",
                "issuers",
            ),
        ];
        for (rule, want) in cases {
            let error = compile_issuers(&format!("[[rules]]\n{rule}\n"))
                .expect_err(rule)
                .to_string();
            assert!(error.contains(want), "{rule}: {error}");
        }
        // The one-issuer shorthand is a configured issuer like any other.
        compile("[[rules]]\npath = \"/a\"\nissuers = [\"https://tenant.example/\"]")
            .expect("the shorthand's issuer");
        let error = compile("[[rules]]\npath = \"/a\"\nissuers = [\"https://other.example/\"]")
            .expect_err("not configured")
            .to_string();
        assert!(error.contains("`rules[0].issuers[0]`"), "{error}");
    }
}
