//! Authorization policy: which routes need what, and the pure decision function.
//!
//! [`Policy::route`] finds the first rule matching a request's method and canonical path (or the
//! default), refusing paths whose rule would change if letter case were ignored; [`decide`]
//! combines that rule's [`Requirement`] with the outcome of authentication into a [`Decision`]. Both are pure: no I/O, no clocks, no gRPC types. The service layer maps
//! each [`Denial`] variant to an HTTP answer.

pub mod path;

use std::fmt;

pub use path::{PathError, RequestPath, normalize};

use crate::token::CredentialsError;
use crate::verify::{VerifiedClaims, VerifyError};

/// What a matched route demands of the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// No token needed (`public = true`, or `default = "allow"`).
    Public,
    /// Any valid token.
    Authenticated,
    /// A valid token granting at least one of these scopes (the sample's intersection rule).
    AnyScope(Vec<String>),
    /// A valid token granting every one of these scopes.
    AllScopes(Vec<String>),
    /// Never allowed (`default = "deny"`). A token is still verified first, so that a caller
    /// without valid credentials learns nothing about which routes exist.
    Deny,
}

impl Requirement {
    /// Whether deciding needs an authenticated token.
    pub fn needs_token(&self) -> bool {
        !matches!(self, Requirement::Public)
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Requirement::Public => f.write_str("public (no token)"),
            Requirement::Authenticated => f.write_str("any valid token"),
            Requirement::AnyScope(s) => write!(f, "any of scopes [{}]", s.join(", ")),
            Requirement::AllScopes(s) => write!(f, "all of scopes [{}]", s.join(", ")),
            Requirement::Deny => f.write_str("deny"),
        }
    }
}

/// How a rule matches the canonical path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// The whole path, exactly.
    Exact(String),
    /// Any path starting with this string (plain string prefix, as Envoy's `prefix`:
    /// `/admin` also matches `/administrator`; write `/admin/` for a subtree).
    Prefix(String),
}

impl PathMatch {
    /// The configured path or prefix.
    pub fn pattern(&self) -> &str {
        match self {
            PathMatch::Exact(p) | PathMatch::Prefix(p) => p,
        }
    }

    /// Whether this matcher takes `path` only when letter case is ignored: a rule written with
    /// this path would then be refused as a case variant of this one.
    pub(crate) fn matches_only_ignoring_case(&self, path: &str) -> bool {
        self.matches(path, Case::Ignored) && !self.matches(path, Case::Sensitive)
    }

    fn matches(&self, path: &str, case: Case) -> bool {
        let (path, pattern) = (path.as_bytes(), self.pattern().as_bytes());
        let candidate = match self {
            PathMatch::Exact(_) => Some(path),
            PathMatch::Prefix(_) => path.get(..pattern.len()),
        };
        candidate.is_some_and(|c| match case {
            Case::Sensitive => c == pattern,
            Case::Ignored => c.eq_ignore_ascii_case(pattern),
        })
    }
}

/// How [`PathMatch::matches`] compares letters.
#[derive(Debug, Clone, Copy)]
enum Case {
    Sensitive,
    /// ASCII letters compared without case: how a case-insensitive upstream would read the path.
    Ignored,
}

/// One compiled `[[rules]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Position-based name used in logs, e.g. `rules[2]`.
    pub name: String,
    /// Path matcher.
    pub path: PathMatch,
    /// Upper-cased methods; `None` matches any method. Compared case-insensitively, so that
    /// `get` cannot slip past a rule written for `GET`.
    pub methods: Option<Vec<String>>,
    /// What the route needs.
    pub requirement: Requirement,
}

/// The ordered rules plus the requirement for requests no rule matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Rules in configuration order; the first match decides.
    pub rules: Vec<Rule>,
    /// Requirement for unmatched requests.
    pub default: Requirement,
}

/// The rule (or default) that applies to one request.
#[derive(Debug, Clone, Copy)]
pub struct Route<'a> {
    /// `rules[N]` or `default`, for logs.
    pub name: &'a str,
    /// What the request needs.
    pub requirement: &'a Requirement,
}

impl Policy {
    /// The first rule matching `method` and `path`, else the default.
    ///
    /// Paths match case-sensitively, but an upstream may not: `/ADMIN/x` could reach the same
    /// handler as `/admin/x`. So the route is also looked up with ASCII case ignored, and if that
    /// would pick a different rule the path is refused ([`PathError::CaseVariant`]) rather than
    /// given the (possibly weaker) rule its spelling happens to match. A path written exactly as
    /// a rule's own path or prefix is never refused this way: the configuration refuses a rule
    /// that an earlier rule would take only with case ignored.
    pub fn route<'a>(&'a self, method: &str, path: &RequestPath) -> Result<Route<'a>, PathError> {
        let sensitive = self.find(method, path, Case::Sensitive);
        let same_rule = match (sensitive, self.find(method, path, Case::Ignored)) {
            (None, None) => true,
            (Some(a), Some(b)) => std::ptr::eq(a, b),
            _ => false,
        };
        if !same_rule {
            return Err(PathError::CaseVariant);
        }
        Ok(sensitive.map_or(
            Route {
                name: "default",
                requirement: &self.default,
            },
            |rule| Route {
                name: &rule.name,
                requirement: &rule.requirement,
            },
        ))
    }

    /// The first matching rule under `case`.
    fn find(&self, method: &str, path: &RequestPath, case: Case) -> Option<&Rule> {
        self.rules.iter().find(|rule| {
            rule.path.matches(path.as_str(), case)
                && rule
                    .methods
                    .as_ref()
                    .is_none_or(|ms| ms.iter().any(|m| m.eq_ignore_ascii_case(method)))
        })
    }
}

/// The outcome of authenticating a request's credentials.
pub type Authentication = Result<VerifiedClaims, AuthError>;

/// Why authentication failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No usable Bearer credentials were taken from the request.
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    /// The token did not verify.
    #[error(transparent)]
    Token(#[from] VerifyError),
    /// No key set has loaded yet, or the last good one is older than `jwks_max_stale_seconds`,
    /// so nothing can be verified.
    #[error("signing keys are not available")]
    KeysUnavailable,
}

/// Why a request is denied. One variant per reason; the service maps each to a response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    /// The path cannot be matched unambiguously.
    #[error(transparent)]
    BadPath(#[from] PathError),
    /// Authentication failed.
    #[error(transparent)]
    Unauthenticated(#[from] AuthError),
    /// The token lacks the scopes the route needs.
    #[error("Insufficient scope")]
    InsufficientScope {
        /// The scopes the route asks for (any-of or all-of, as configured).
        required: Vec<String>,
    },
    /// The route is denied to everyone (`default = "deny"`).
    #[error("Route is not permitted")]
    RouteDenied,
}

/// What a request may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Let it through, anonymously (public route) or as the token's subject.
    Allow(Option<VerifiedClaims>),
    /// Refuse it.
    Deny(Denial),
}

/// Decides a request from its route's requirement and the authentication outcome.
///
/// `auth` is `None` when no authentication was attempted, which callers do only for requirements
/// where [`Requirement::needs_token`] is false. Should a caller pass `None` for a requirement that
/// needs a token, the request is denied as if it carried no credentials: the function fails
/// closed. Authentication failures always win over scope failures.
pub fn decide(requirement: &Requirement, auth: Option<Authentication>) -> Decision {
    if let Requirement::Public = requirement {
        return Decision::Allow(None);
    }
    let claims = match auth {
        Some(Ok(claims)) => claims,
        Some(Err(error)) => return Decision::Deny(Denial::Unauthenticated(error)),
        None => {
            return Decision::Deny(Denial::Unauthenticated(AuthError::Credentials(
                CredentialsError::Missing,
            )));
        }
    };
    let allowed = match requirement {
        Requirement::Public | Requirement::Authenticated => true,
        Requirement::AnyScope(scopes) => scopes.iter().any(|s| claims.has_scope(s)),
        Requirement::AllScopes(scopes) => scopes.iter().all(|s| claims.has_scope(s)),
        Requirement::Deny => return Decision::Deny(Denial::RouteDenied),
    };
    if allowed {
        Decision::Allow(Some(claims))
    } else {
        let required = match requirement {
            Requirement::AnyScope(s) | Requirement::AllScopes(s) => s.clone(),
            _ => Vec::new(),
        };
        Decision::Deny(Denial::InsufficientScope { required })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(name: &str, path: PathMatch, methods: Option<&[&str]>, req: Requirement) -> Rule {
        Rule {
            name: name.into(),
            path,
            methods: methods.map(|ms| ms.iter().map(|m| m.to_string()).collect()),
            requirement: req,
        }
    }

    fn policy() -> Policy {
        Policy {
            rules: vec![
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
            default: Requirement::Authenticated,
        }
    }

    #[test]
    fn first_matching_rule_wins() {
        let p = policy();
        for (method, path, want) in [
            ("GET", "/health", "rules[0]"),
            ("POST", "/messages", "rules[1]"),
            ("post", "/messages", "rules[1]"),
            ("put", "/messages", "rules[1]"),
            ("GET", "/messages", "rules[2]"),
            ("DELETE", "/messages", "rules[2]"),
            ("GET", "/admin/users", "rules[3]"),
            ("GET", "/admin", "default"),
            ("GET", "/api", "rules[4]"),
            ("GET", "/apiary/bees", "rules[4]"),
            ("GET", "/messages/1", "default"),
            ("GET", "/", "default"),
        ] {
            let path = normalize(path).expect("canonical");
            let route = p.route(method, &path).expect("not a case variant");
            assert_eq!(route.name, want, "{method} {path}");
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
            ("GET", "/apiary/BEES", Ok("rules[4]")),
            // Non-ASCII letters are compared as written.
            ("GET", "/ädmin/", Ok("default")),
        ] {
            let path = normalize(path).expect("canonical");
            let got = p.route(method, &path).map(|r| r.name);
            assert_eq!(got, want, "{method} {path}");
        }
    }

    #[test]
    fn public_needs_no_token_and_everything_else_fails_closed_without_one() {
        assert_eq!(decide(&Requirement::Public, None), Decision::Allow(None));
        for req in [
            Requirement::Authenticated,
            Requirement::AnyScope(vec!["a".into()]),
            Requirement::AllScopes(vec!["a".into()]),
            Requirement::Deny,
        ] {
            assert!(req.needs_token());
            assert_eq!(
                decide(&req, None),
                Decision::Deny(Denial::Unauthenticated(AuthError::Credentials(
                    CredentialsError::Missing
                ))),
                "{req}"
            );
            let failed = Some(Err(AuthError::Token(VerifyError::Expired)));
            assert_eq!(
                decide(&req, failed),
                Decision::Deny(Denial::Unauthenticated(AuthError::Token(
                    VerifyError::Expired
                ))),
                "authentication errors come before scope errors for {req}"
            );
        }
    }

    #[test]
    fn scope_requirements_table() {
        let any = Requirement::AnyScope(vec!["read:messages".into(), "admin".into()]);
        let all = Requirement::AllScopes(vec!["read:messages".into(), "admin".into()]);
        let cases: &[(&Requirement, &[&str], bool)] = &[
            (&Requirement::Authenticated, &[], true),
            (&any, &["read:messages"], true),
            (&any, &["admin"], true),
            (&any, &["read:message"], false),
            (&any, &["read:messages:extra", "Admin"], false),
            (&any, &[], false),
            (&all, &["read:messages", "admin"], true),
            (&all, &["read:messages"], false),
            (&Requirement::Deny, &["read:messages", "admin"], false),
        ];
        for (req, scopes, allowed) in cases {
            let claims = VerifiedClaims::for_tests(Some("user"), scopes);
            let decision = decide(req, Some(Ok(claims.clone())));
            match (allowed, decision) {
                (true, Decision::Allow(Some(c))) => assert_eq!(c, claims),
                (false, Decision::Deny(Denial::InsufficientScope { required })) => {
                    assert!(!matches!(req, Requirement::Deny));
                    assert_eq!(required.len(), 2, "{req}");
                }
                (false, Decision::Deny(Denial::RouteDenied)) => {
                    assert_eq!(**req, Requirement::Deny)
                }
                (_, other) => panic!("{req} with {scopes:?}: {other:?}"),
            }
        }
    }
}
