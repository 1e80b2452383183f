//! Claim conditions: what a rule's `claims = { ... }` asks of the token, bound to the variables
//! of the rule's path template (`org_id = "{org}"` on `template = "/orgs/{org}/{**}"`).
//!
//! A condition names a claim (a top-level name or an RFC 6901 JSON Pointer, read as
//! `forward_claims` reads it) and one or more expected values (any-of); every condition of a rule
//! must hold (all-of). A claim holds when it is a string equal to an expected value, or an array
//! of strings one of whose elements is. Comparison is exact, byte for byte: no case folding, no
//! Unicode normalisation. A missing claim, a claim of another type (a number, an object, an
//! array holding anything but strings) or no match is a mismatch. The claims are read from
//! [`VerifiedClaims`] on every request, cached token or not: a condition's outcome depends on
//! the path, so it is never cached.

use std::fmt;

use crate::auth::verify::{ClaimSpec, REGISTERED_CLAIMS, VerifiedClaims};

/// One `claims` entry of a rule: a claim and the values it may hold. Built only by
/// [`ClaimCondition::new`], which checks the claim's spelling and the values' syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimCondition {
    /// The claim as written (the key under `claims`).
    key: String,
    spec: ClaimSpec,
    /// Any-of; never empty.
    values: Vec<Pattern>,
}

/// An expected value: text with `{name}` path variables in it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern(Vec<Part>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Variable(String),
}

/// Why a condition failed, for `explain` and tests: the claim as written, the values it was to
/// hold (path variables filled in) and what the token had (`None`: no such claim). Never sent to
/// the client, whose answer names no claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimMismatch {
    /// The claim as written under `claims`.
    pub key: String,
    /// The accepted values, path variables filled in.
    pub expected: Vec<String>,
    /// The token's value of the claim, if it has one.
    pub found: Option<serde_json::Value>,
}

impl fmt::Display for ClaimMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "claim {:?} must be one of {:?}", self.key, self.expected)?;
        match &self.found {
            Some(value) => write!(f, " (the token has {value})"),
            None => f.write_str(" (the token has no such claim)"),
        }
    }
}

impl ClaimCondition {
    /// The condition `key = values`: `key` a claim name, or a JSON Pointer starting with `/`;
    /// `values` one or more non-empty strings, each text with `{name}` variables (names of
    /// letters, digits, `_`, `-` and `.`, as in templates). `Err` holds the reason. The time
    /// claims (`exp`, `nbf`, `iat`) are numbers and cannot be conditions.
    pub fn new(key: &str, values: &[String]) -> Result<ClaimCondition, String> {
        let spec = ClaimSpec::parse(key).ok_or_else(|| {
            "a claim name, or a JSON Pointer (RFC 6901) starting with `/`".to_string()
        })?;
        if REGISTERED_CLAIMS.contains(&spec.claim())
            && !matches!(spec.claim(), "iss" | "sub" | "aud")
        {
            return Err(
                "`exp`, `nbf` and `iat` are numbers checked by verification; conditions \
                 compare strings"
                    .into(),
            );
        }
        if values.is_empty() {
            return Err("an empty list would refuse every token; give one or more values".into());
        }
        let values = values
            .iter()
            .map(|value| Pattern::parse(value))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ClaimCondition {
            key: key.to_owned(),
            spec,
            values,
        })
    }

    /// The claim as written.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The claim it reads, as [`VerifiedClaims::claim`] takes it.
    pub fn spec(&self) -> &ClaimSpec {
        &self.spec
    }

    /// The path variables its values name.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.values.iter().flat_map(|pattern| {
            pattern.0.iter().filter_map(|part| match part {
                Part::Variable(name) => Some(name.as_str()),
                Part::Text(_) => None,
            })
        })
    }

    /// The values as written (`{org}`, `admin`), for `check-config` and `explain`.
    pub fn values(&self) -> Vec<String> {
        self.values.iter().map(Pattern::to_string).collect()
    }

    /// Whether `claims` satisfy this condition with the path variables `captures`; a variable
    /// missing from `captures` (which the configuration rules out) fails closed.
    pub fn check(
        &self,
        claims: &VerifiedClaims,
        captures: &[(&str, &str)],
    ) -> Result<(), ClaimMismatch> {
        let expected: Option<Vec<String>> = self
            .values
            .iter()
            .map(|pattern| pattern.expand(captures))
            .collect();
        let found = claims.claim(&self.spec);
        let holds = |expected: &[String]| match found {
            Some(serde_json::Value::String(text)) => expected.contains(text),
            Some(serde_json::Value::Array(items)) => {
                // An array of strings, every element a string: one of another type makes the
                // claim another type, refused whatever the other elements hold.
                let strings: Option<Vec<&str>> =
                    items.iter().map(serde_json::Value::as_str).collect();
                strings.is_some_and(|items| {
                    items
                        .iter()
                        .any(|item| expected.iter().any(|want| want == item))
                })
            }
            _ => false,
        };
        match &expected {
            Some(expected) if holds(expected) => Ok(()),
            _ => Err(ClaimMismatch {
                key: self.key.clone(),
                expected: expected.unwrap_or_else(|| self.values()),
                found: found.cloned(),
            }),
        }
    }
}

/// Checks every condition in order (all-of); the first that fails is the mismatch.
pub fn check_all(
    conditions: &[ClaimCondition],
    claims: &VerifiedClaims,
    captures: &[(&str, &str)],
) -> Result<(), ClaimMismatch> {
    conditions
        .iter()
        .try_for_each(|condition| condition.check(claims, captures))
}

impl Pattern {
    fn parse(value: &str) -> Result<Pattern, String> {
        if value.is_empty() {
            return Err("an expected value is non-empty text".into());
        }
        let is_name = |name: &str| {
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        };
        let mut parts = Vec::new();
        let mut rest = value;
        while !rest.is_empty() {
            match rest.find(['{', '}']) {
                None => {
                    parts.push(Part::Text(rest.to_owned()));
                    break;
                }
                Some(at) => {
                    if at > 0 {
                        parts.push(Part::Text(rest[..at].to_owned()));
                    }
                    let after = &rest[at..];
                    let close = after
                        .strip_prefix('{')
                        .and_then(|inner| inner.find('}').map(|end| &inner[..end]))
                        .filter(|name| is_name(name))
                        .ok_or_else(|| {
                            "`{` and `}` only enclose a path variable's name, as `{org}` (names \
                             use letters, digits, `_`, `-` and `.`)"
                                .to_string()
                        })?;
                    parts.push(Part::Variable(close.to_owned()));
                    rest = &after[close.len() + 2..];
                }
            }
        }
        Ok(Pattern(parts))
    }

    /// The value with each variable replaced by its text in `captures`.
    fn expand(&self, captures: &[(&str, &str)]) -> Option<String> {
        let mut out = String::new();
        for part in &self.0 {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Variable(name) => {
                    let (_, value) = captures.iter().find(|(n, _)| n == name)?;
                    out.push_str(value);
                }
            }
        }
        Some(out)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in &self.0 {
            match part {
                Part::Text(text) => f.write_str(text)?,
                Part::Variable(name) => write!(f, "{{{name}}}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn condition(key: &str, values: &[&str]) -> ClaimCondition {
        let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        ClaimCondition::new(key, &values).expect(key)
    }

    #[test]
    fn conditions_are_checked_exactly_against_the_claims() {
        let tenant = condition("org_id", &["{org}"]);
        let roles = condition("/realm_access/roles", &["admin", "owner"]);
        let prefixed = condition("team", &["t-{org}-{team}"]);
        let org = [("org", "acme"), ("team", "ops")];
        let with = |spec: &str, value: serde_json::Value| {
            VerifiedClaims::for_tests(Some("u"), &[]).with_claim_for_tests(spec, value)
        };
        let cases: &[(&ClaimCondition, Option<serde_json::Value>, bool)] = &[
            (&tenant, Some(json!("acme")), true),
            (&tenant, Some(json!("other")), false),
            // Byte-wise: no case folding, no Unicode normalisation, no trimming.
            (&tenant, Some(json!("ACME")), false),
            (&tenant, Some(json!("ａｃｍｅ")), false),
            (&tenant, Some(json!("acme ")), false),
            (&tenant, Some(json!("acm")), false),
            // An array of strings holds when one element matches.
            (&tenant, Some(json!(["x", "acme"])), true),
            (&tenant, Some(json!(["x", "y"])), false),
            (&tenant, Some(json!([])), false),
            // Another type: refused, even beside a matching element.
            (&tenant, Some(json!(["acme", 1])), false),
            (&tenant, Some(json!(42)), false),
            (&tenant, Some(json!(true)), false),
            (&tenant, Some(json!(null)), false),
            (&tenant, Some(json!({"id": "acme"})), false),
            (&tenant, Some(json!([["acme"]])), false),
            (&tenant, None, false),
            (&roles, Some(json!(["reader", "owner"])), true),
            (&roles, Some(json!("admin")), true),
            (&roles, Some(json!(["reader"])), false),
            (&roles, Some(json!("Admin")), false),
            (&prefixed, Some(json!("t-acme-ops")), true),
            (&prefixed, Some(json!("t-acme-dev")), false),
        ];
        for (condition, value, holds) in cases {
            let claims = match value {
                Some(value) => with(condition.spec().to_string().as_str(), value.clone()),
                None => VerifiedClaims::for_tests(Some("u"), &[]),
            };
            let got = condition.check(&claims, &org);
            assert_eq!(got.is_ok(), *holds, "{} with {value:?}", condition.key());
            if let Err(mismatch) = got {
                assert_eq!(mismatch.key, condition.key());
                assert_eq!(mismatch.found, *value);
            }
        }
        // The mismatch says what was expected, variables filled in.
        let mismatch = tenant
            .check(&with("org_id", json!("other")), &org)
            .expect_err("other tenant");
        assert_eq!(mismatch.expected, ["acme"]);
        assert_eq!(
            mismatch.to_string(),
            r#"claim "org_id" must be one of ["acme"] (the token has "other")"#
        );
        // A variable the path did not bind fails closed.
        assert!(tenant.check(&with("org_id", json!("{org}")), &[]).is_err());
        // All-of: the first failing condition is reported.
        let both = [tenant.clone(), roles.clone()];
        let claims =
            with("org_id", json!("acme")).with_claim_for_tests("/realm_access/roles", json!(["x"]));
        assert_eq!(
            check_all(&both, &claims, &org).map_err(|m| m.key),
            Err("/realm_access/roles".into())
        );
        let claims = with("org_id", json!("acme"))
            .with_claim_for_tests("/realm_access/roles", json!(["owner"]));
        assert_eq!(check_all(&both, &claims, &org), Ok(()));
    }

    #[test]
    fn enforced_and_shadow_rules_check_their_conditions_on_the_path() {
        use crate::policy::{
            AuthOutcome, Decision, Denial, PathMatch, Policy, Requirement, Rule, Template,
        };
        let tenant = |index: usize, shadow: bool| {
            let template = Template::parse("/orgs/{org}/{rest=**}").expect("valid");
            Rule::new(
                index,
                Some(format!("tenant {index}")),
                PathMatch::Template(template),
                None,
                Requirement::Authenticated,
            )
            .expect("valid")
            .with_claims(vec![condition("org_id", &["{org}"])])
            .expect("binds {org}")
            .shadowed(shadow)
        };
        let policy = Policy::new(
            vec![tenant(0, true), tenant(1, false)],
            Requirement::Authenticated,
        )
        .expect("valid");
        assert_eq!(
            policy
                .claim_specs()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["org_id"]
        );
        let claims =
            VerifiedClaims::for_tests(Some("u"), &[]).with_claim_for_tests("org_id", json!("acme"));
        for (path, allowed) in [("/orgs/acme/x", true), ("/orgs/globex/x", false)] {
            let resolved = policy.resolve("GET", path);
            assert_eq!(resolved.shadows.len(), 1, "{path}");
            let (decision, shadows) = resolved.decide(false, AuthOutcome::Done(Ok(claims.clone())));
            for decision in [decision, shadows[0].clone()] {
                match (allowed, decision) {
                    (true, Decision::Allow(Some(_))) => {}
                    (false, Decision::Deny(Denial::InsufficientClaims(mismatch))) => {
                        assert_eq!(mismatch.expected, ["globex"]);
                        assert_eq!(mismatch.found, Some(json!("acme")));
                    }
                    (_, other) => panic!("{path}: {other:?}"),
                }
            }
        }
        // Refused when built: a variable the template lacks, a public rule with conditions.
        let rule = |path: PathMatch, requirement| {
            Rule::new(0, None, path, None, requirement).expect("valid")
        };
        let template = || PathMatch::Template(Template::parse("/orgs/{org}").expect("valid"));
        for (rule, values) in [
            (rule(template(), Requirement::Authenticated), ["{tenant}"]),
            (
                rule(
                    PathMatch::Prefix("/orgs/".into()),
                    Requirement::Authenticated,
                ),
                ["{org}"],
            ),
            (rule(template(), Requirement::Public), ["acme"]),
        ] {
            let error = rule
                .with_claims(vec![condition("org_id", &values)])
                .expect_err("refused");
            assert_eq!(error.key(), "rules[0].claims.\"org_id\"");
        }
    }

    #[test]
    fn conditions_are_refused_when_malformed() {
        let refused = |key: &str, values: &[&str]| {
            let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
            ClaimCondition::new(key, &values).is_err()
        };
        for (key, values) in [
            ("", &["x"][..]),
            ("/a~2", &["x"]),
            ("exp", &["1"]),
            ("/nbf", &["1"]),
            ("org_id", &[]),
            ("org_id", &[""]),
            ("org_id", &["{org"]),
            ("org_id", &["org}"]),
            ("org_id", &["{}"]),
            ("org_id", &["{a b}"]),
            ("org_id", &["{{org}}"]),
        ] {
            assert!(refused(key, values), "{key} = {values:?}");
        }
        let ok = condition("sub", &["user-{id}", "{a}{b}", "plain"]);
        assert_eq!(ok.variables().collect::<Vec<_>>(), ["id", "a", "b"]);
        assert_eq!(ok.values(), ["user-{id}", "{a}{b}", "plain"]);
    }
}
