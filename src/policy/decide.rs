//! The decision: how a resolved request is decided ([`Resolved::decide`]) from its route's
//! [`Requirement`] and the outcome of authentication ([`decide`]), and why a request is denied
//! ([`Denial`]). Pure: no I/O, no clocks, no gRPC types.

#[cfg(doc)]
use super::{Accepts, Policy};
use super::{ClaimMismatch, PathError, RequestPath, Requirement, Route, Rule};
use crate::auth::binding::BindingError;
use crate::auth::introspect_cache::{IntrospectError, Unavailable};
use crate::auth::token::CredentialsError;
use crate::auth::verify::{VerifiedClaims, VerifyError};

/// Where a request stands under the policy: its canonical path, the rule (or default) that
/// decides it, and the shadow rules it matches. Built by [`Policy::resolve`], the one step the
/// service and `explain` share, so both read a request the same way.
#[derive(Debug)]
pub struct Resolved<'a> {
    /// The canonical path, or why there is none.
    pub path: Result<RequestPath, PathError>,
    /// The deciding rule or default, or why the request is refused before any.
    pub route: Result<Route<'a>, PathError>,
    /// Shadow rules matching the request (none when the path is refused).
    pub shadows: Vec<&'a Rule>,
}

/// How authenticating one request went, as [`Resolved::decide`] takes it.
// One lives on the stack per Check and moves into the decision; boxing the claims would cost an
// allocation per Check to save stack bytes that `Option<Authentication>` spent before.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum AuthOutcome {
    /// Not attempted: nothing that decides, nor any shadow rule, needed a token.
    NotAttempted,
    /// Attempted, with this outcome.
    Done(Authentication),
    /// Cut off by the Check's deadline (waiting on an unknown-`kid` refetch).
    TimedOut,
}

impl Resolved<'_> {
    /// Whether the deciding route needs the request's token; a CORS preflight let through
    /// (`preflight`) never does.
    pub fn route_needs_token(&self, preflight: bool) -> bool {
        !preflight && matches!(&self.route, Ok(route) if route.requirement.needs_token())
    }

    /// Whether the request's token must be verified: for the deciding route, or for a shadow
    /// rule (which must see what it would decide, though it decides nothing).
    pub fn needs_token(&self, preflight: bool) -> bool {
        self.route_needs_token(preflight)
            || self
                .shadows
                .iter()
                .any(|rule| rule.requirement().needs_token())
    }

    /// The decision, and what each of [`Resolved::shadows`] would decide, in order. A refused
    /// path is a [`Denial::BadPath`]; a preflight let through is an anonymous allow; a route that
    /// needs no token is decided without `auth`, so nothing done for a shadow rule (a token
    /// that fails, a verification that times out) can change the answer.
    pub fn decide(&self, preflight: bool, auth: AuthOutcome) -> (Decision, Vec<Decision>) {
        let under = |rule: Option<&Rule>, requirement: &Requirement, auth: &AuthOutcome| match auth
        {
            AuthOutcome::TimedOut if requirement.needs_token() => Decision::Deny(Denial::TimedOut),
            AuthOutcome::Done(auth) if requirement.needs_token() => {
                decide_for(rule, requirement, auth.clone())
            }
            _ => decide(requirement, None),
        };
        // A rule's claim conditions, read from the (possibly cached) claims on every request,
        // once the requirement holds: they bind the path, so no outcome of them is ever kept.
        let path = self.path.as_ref().map(RequestPath::as_str).unwrap_or("");
        let with_claims = |rule: Option<&Rule>, decision: Decision| match (rule, decision) {
            (Some(rule), Decision::Allow(Some(claims))) => match rule.check_claims(path, &claims) {
                Ok(()) => Decision::Allow(Some(claims)),
                Err(mismatch) => Decision::Deny(Denial::InsufficientClaims(Box::new(mismatch))),
            },
            (_, decision) => decision,
        };
        let shadows = self
            .shadows
            .iter()
            .map(|rule| with_claims(Some(rule), under(Some(rule), rule.requirement(), &auth)))
            .collect();
        let decision = match &self.route {
            Err(e) => Decision::Deny(Denial::BadPath(*e)),
            Ok(_) if preflight => Decision::Allow(None),
            // The one authentication outcome moves into the decision: no copy on this path.
            Ok(route) => with_claims(
                route.rule,
                match auth {
                    AuthOutcome::Done(auth) if route.requirement.needs_token() => {
                        decide_for(route.rule, route.requirement, auth)
                    }
                    auth => under(route.rule, route.requirement, &auth),
                },
            ),
        };
        (decision, shadows)
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
    /// The token verified, but the request does not prove what it is bound to (a DPoP proof,
    /// a client certificate), or sends it under the wrong scheme.
    #[error(transparent)]
    Binding(#[from] BindingError),
    /// The token must be introspected, and no usable answer came (the endpoint failed, or its
    /// caps were reached): the token may be fine, so never a 401.
    #[error(transparent)]
    IntrospectionUnavailable(#[from] Unavailable),
}

impl From<IntrospectError> for AuthError {
    /// A refused answer is the token's fault (401); no usable answer is not (503).
    fn from(error: IntrospectError) -> AuthError {
        match error {
            IntrospectError::Refused(e) => AuthError::Token(e),
            IntrospectError::Unavailable(e) => AuthError::IntrospectionUnavailable(e),
        }
    }
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
    /// The token verified, but its issuer is not among the route's `issuers` (401
    /// `invalid_token`). The message never names the issuers the route takes.
    #[error("token issuer is not accepted on this route")]
    IssuerNotAccepted,
    /// The token verified, but its `aud` holds none of the route's `audiences` (401
    /// `invalid_token`, as RFC 9068 §4 prescribes for an audience the resource does not take).
    #[error("token audience is not accepted on this route")]
    AudienceNotAccepted,
    /// The token lacks the scopes the route needs.
    #[error("Insufficient scope")]
    InsufficientScope {
        /// The scopes the route asks for (any-of or all-of, as configured).
        required: Vec<String>,
    },
    /// The token lacks a claim the route's claim conditions ask for, or holds another value
    /// (`claims = { org_id = "{org}" }` on another tenant's path). The answer names no claim;
    /// the mismatch is for `explain`.
    #[error("Token claims do not permit this request")]
    InsufficientClaims(Box<ClaimMismatch>),
    /// The route is denied to everyone (`default = "deny"`).
    #[error("Route is not permitted")]
    RouteDenied,
    /// The Check ran past its deadline (`check_timeout_ms`), waiting on a key refetch; answered
    /// in-band so that Envoy never has to decide (or, failing open, allow) on a timeout.
    #[error("authorization check timed out")]
    TimedOut,
    /// The transport could not read the request it was asked about (an HTTP front door's
    /// forwarded method or URI missing, repeated, not UTF-8 or not a path): refused before any
    /// rule is looked at. The policy never makes one; `decide::refuse_unreadable` does.
    #[error("{0}")]
    Unreadable(&'static str),
}

/// What a request may do.
// As `AuthOutcome`: one per Check, moved (not copied) from the authentication into the verdict;
// boxing the claims would cost an allocation per allowed Check to save stack bytes.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Let it through, anonymously (public route) or as the token's subject.
    Allow(Option<VerifiedClaims>),
    /// Refuse it.
    Deny(Denial),
}

/// Decides a request for `rule` (`None`: the default) from its `requirement` and the outcome of
/// authentication: a verified token is first held to the rule's issuers and audiences
/// ([`Accepts::check`]), then [`decide`] as for any route. Authentication errors come first,
/// then the issuer and audience, then scopes.
pub fn decide_for(
    rule: Option<&Rule>,
    requirement: &Requirement,
    auth: Authentication,
) -> Decision {
    if let (Some(rule), Ok(claims)) = (rule, &auth)
        && let Err(denial) = rule.accepts().check(claims)
    {
        return Decision::Deny(denial);
    }
    if let (Some(rule), Ok(claims)) = (rule, &auth)
        && rule.is_sender_constrained()
        && !claims.binding().is_bound()
    {
        return Decision::Deny(Denial::Unauthenticated(AuthError::Binding(
            BindingError::NotBound,
        )));
    }
    decide(requirement, Some(auth))
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
