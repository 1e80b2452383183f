//! Rules: what a route demands ([`Requirement`]), how a rule matches the canonical path
//! ([`PathMatch`]), one compiled `[[rules]]` entry ([`Rule`]), and why a rule or a policy is
//! refused ([`PolicyError`], [`Conflict`]).

use std::fmt;
use std::sync::Arc;

#[cfg(doc)]
use super::Policy;
use super::claims::{ClaimCondition, ClaimMismatch, check_all};
use super::{Denial, Template};
use crate::auth::token::is_http_token;
use crate::auth::verify::VerifiedClaims;

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
    /// Whole-segment path template (`/items/{id}/notes/{**}`).
    Template(Template),
}

impl PathMatch {
    /// The configuration key it is written under: `path`, `prefix` or `template`.
    pub fn key_name(&self) -> &'static str {
        match self {
            PathMatch::Exact(_) => "path",
            PathMatch::Prefix(_) => "prefix",
            PathMatch::Template(_) => "template",
        }
    }

    /// The configured path, prefix or template.
    pub fn pattern(&self) -> &str {
        match self {
            PathMatch::Exact(p) | PathMatch::Prefix(p) => p,
            PathMatch::Template(t) => t.pattern(),
        }
    }

    /// Whether every path this matcher takes is also taken by `earlier` (so a rule with this
    /// matcher after one with `earlier` could only be reached where `earlier` is not). May
    /// answer `false` for a covered matcher (a prefix under a template); never `true` for one
    /// that is not.
    pub(crate) fn covered_by(&self, earlier: &PathMatch) -> bool {
        use PathMatch::{Exact, Prefix, Template};
        match (self, earlier) {
            (Exact(p), Exact(q)) => p == q,
            (Exact(p) | Prefix(p), Prefix(q)) => p.starts_with(q),
            (Prefix(_) | Template(_), Exact(_)) => false,
            (Exact(p), Template(t)) => t.matches(p, Case::Sensitive),
            (Prefix(_), Template(_)) => false,
            // Every path the template takes starts with its text up to the first variable.
            (Template(t), Prefix(q)) => t.literal_lead().starts_with(q.as_str()),
            (Template(ours), Template(theirs)) => ours.covered_by(theirs),
        }
    }

    /// `path` as this matcher spells the part it matches, when it matches `path` with case
    /// ignored: the request this matcher would take that differs from `path` only in letter
    /// case.
    pub(crate) fn respelled(&self, path: &str) -> Option<String> {
        match self {
            PathMatch::Exact(p) => path.eq_ignore_ascii_case(p).then(|| p.clone()),
            PathMatch::Prefix(p) => {
                let head = path.as_bytes().get(..p.len())?;
                let tail = path.get(p.len()..)?;
                head.eq_ignore_ascii_case(p.as_bytes())
                    .then(|| format!("{p}{tail}"))
            }
            PathMatch::Template(t) => t.respelled(path),
        }
    }

    pub(crate) fn matches(&self, path: &str, case: Case) -> bool {
        let (pattern, candidate) = match self {
            PathMatch::Exact(p) => (p, Some(path.as_bytes())),
            PathMatch::Prefix(p) => (p, path.as_bytes().get(..p.len())),
            PathMatch::Template(t) => return t.matches(path, case),
        };
        candidate.is_some_and(|c| match case {
            Case::Sensitive => c == pattern.as_bytes(),
            Case::Ignored => c.eq_ignore_ascii_case(pattern.as_bytes()),
        })
    }
}

/// How [`PathMatch::matches`] compares letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Case {
    Sensitive,
    /// ASCII letters compared without case: how a case-insensitive upstream would read the path.
    Ignored,
}

/// Which verified tokens a rule takes, beyond what their issuer's own checks demand: the rule's
/// `issuers` and `audiences`. Checked against the claims of every request (cached claims
/// included), after verification and before scopes. The default accepts every verified token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accepts {
    /// The token's `iss` must be one of these (exact); `None`: any configured issuer.
    issuers: Option<Vec<String>>,
    /// The token's `aud` must contain one of these (exact); `None`: the issuer's check alone.
    audiences: Option<Vec<String>>,
}

/// What every route without `issuers` and `audiences` accepts (the default among them).
pub(super) static ACCEPTS_ANY: Accepts = Accepts {
    issuers: None,
    audiences: None,
};

impl Accepts {
    /// The issuers a token must come from, when the rule names them.
    pub fn issuers(&self) -> Option<&[String]> {
        self.issuers.as_deref()
    }

    /// The audiences a token's `aud` must contain one of, when the rule names them.
    pub fn audiences(&self) -> Option<&[String]> {
        self.audiences.as_deref()
    }

    /// Whether neither is set, so every verified token is accepted.
    pub fn is_any(&self) -> bool {
        self.issuers.is_none() && self.audiences.is_none()
    }

    /// Whether `claims` may be taken: the issuer first, then the audience, so that a token of an
    /// issuer the route refuses is told so whatever its `aud`.
    pub fn check(&self, claims: &VerifiedClaims) -> Result<(), Denial> {
        if let Some(issuers) = &self.issuers
            && !issuers.iter().any(|i| i == claims.issuer())
        {
            return Err(Denial::IssuerNotAccepted);
        }
        if let Some(audiences) = &self.audiences
            && !claims.audiences().iter().any(|a| audiences.contains(a))
        {
            return Err(Denial::AudienceNotAccepted);
        }
        Ok(())
    }
}

impl fmt::Display for Accepts {
    /// ` from issuers [..] for audiences [..]`, each part only when set: what `check-config`
    /// and conflict messages append to the requirement.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(issuers) = &self.issuers {
            write!(f, " from issuers [{}]", issuers.join(", "))?;
        }
        if let Some(audiences) = &self.audiences {
            write!(f, " for audiences [{}]", audiences.join(", "))?;
        }
        Ok(())
    }
}

/// Longest rule `name`, in bytes: it becomes a metric label and a log field.
pub const MAX_RULE_NAME_BYTES: usize = 64;

/// One compiled `[[rules]]` entry. Built only by [`Rule::new`], which checks its name and
/// methods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Position-based key used in configuration errors: `rules[2]`.
    pub(super) key: String,
    /// The configured `name`, else the key: what logs and metrics call the rule.
    pub(super) name: Arc<str>,
    pub(super) path: PathMatch,
    /// Upper-case RFC 9110 tokens, at least one; `None` matches any method.
    pub(super) methods: Option<Vec<String>>,
    pub(super) requirement: Requirement,
    /// Evaluated and reported, never enforced: see [`Policy::shadow_rules`].
    pub(super) shadow: bool,
    /// Claim conditions (all-of), on top of the requirement: see [`Rule::with_claims`].
    pub(super) claims: Vec<ClaimCondition>,
    /// The issuers and audiences the rule takes tokens from ([`Rule::accepting_issuers`],
    /// [`Rule::accepting_audiences`]).
    pub(super) accepts: Accepts,
    /// Takes only sender-constrained tokens (DPoP- or certificate-bound): see
    /// [`Rule::sender_constrained`].
    pub(super) sender_constrained: bool,
}

impl Rule {
    /// The rule at position `index` of `[[rules]]` (its key is `rules[index]`), called `name`
    /// in logs and metrics when given, else by its key. A name is 1 to [`MAX_RULE_NAME_BYTES`]
    /// bytes without control characters, and not `default` or `none`, which label the default
    /// and refused requests. `methods`, when given, must be non-empty upper-case RFC 9110
    /// tokens: methods are compared exactly, as HTTP methods are case-sensitive, so a
    /// lower-case rule would match only lower-case requests.
    pub fn new(
        index: usize,
        name: Option<String>,
        path: PathMatch,
        methods: Option<Vec<String>>,
        requirement: Requirement,
    ) -> Result<Rule, PolicyError> {
        let key = format!("rules[{index}]");
        if let Some(given) = &name
            && (given.is_empty()
                || given.len() > MAX_RULE_NAME_BYTES
                || given.chars().any(char::is_control)
                || matches!(given.as_str(), "default" | "none"))
        {
            return Err(PolicyError::BadName {
                rule: key,
                name: given.clone(),
            });
        }
        let name: Arc<str> = name.unwrap_or_else(|| key.clone()).into();
        let rule = key;
        if let Some(list) = &methods {
            if list.is_empty() {
                return Err(PolicyError::NoMethods { rule });
            }
            if let Some(bad) = list.iter().find(|m| !is_http_token(m)) {
                return Err(PolicyError::NotAMethod {
                    rule,
                    method: bad.clone(),
                });
            }
            if let Some(lower) = list
                .iter()
                .find(|m| m.bytes().any(|b| b.is_ascii_lowercase()))
            {
                return Err(PolicyError::LowerCaseMethod {
                    rule,
                    method: lower.clone(),
                });
            }
        }
        Ok(Rule {
            key: rule,
            name,
            path,
            methods,
            requirement,
            shadow: false,
            claims: Vec::new(),
            accepts: Accepts::default(),
            sender_constrained: false,
        })
    }

    /// This rule with claim `conditions` (all-of) on top of its requirement, checked against the
    /// token's claims with the rule's template variables bound to the request's canonical path.
    /// Refused: conditions on a rule that needs no token, and a value naming a variable the
    /// rule's template does not bind (or any variable, for a rule without a template).
    pub fn with_claims(self, conditions: Vec<ClaimCondition>) -> Result<Rule, PolicyError> {
        let refuse = |condition: &ClaimCondition, reason: String| PolicyError::BadClaims {
            key: format!("{}.claims.{:?}", self.key, condition.key()),
            value: condition.values().join(", "),
            reason,
        };
        for condition in &conditions {
            if !self.requirement.needs_token() {
                return Err(refuse(
                    condition,
                    "a public rule reads no token, so it cannot check claims".into(),
                ));
            }
            for variable in condition.variables() {
                let bound = match &self.path {
                    PathMatch::Template(template) => template.variables().any(|v| v == variable),
                    _ => false,
                };
                if !bound {
                    let reason = match &self.path {
                        PathMatch::Template(template) => format!(
                            "{{{variable}}} is not a variable of template {:?}",
                            template.pattern()
                        ),
                        other => format!(
                            "{{{variable}}} names a path variable, but this rule matches a {}                              ({:?}), which has none; use `template`",
                            other.key_name(),
                            other.pattern()
                        ),
                    };
                    return Err(refuse(condition, reason));
                }
            }
        }
        Ok(Rule {
            claims: conditions,
            ..self
        })
    }

    /// Its claim conditions (none for most rules).
    pub fn claims(&self) -> &[ClaimCondition] {
        &self.claims
    }

    /// Whether verified `claims` meet this rule's claim conditions on canonical `path` (which
    /// the rule matches): the first condition that fails, if one does. A path the rule's
    /// template does not match binds nothing, so a condition with a variable fails closed.
    pub fn check_claims(&self, path: &str, claims: &VerifiedClaims) -> Result<(), ClaimMismatch> {
        if self.claims.is_empty() {
            return Ok(());
        }
        let captures = match &self.path {
            PathMatch::Template(template) => {
                template.captures(path, Case::Sensitive).unwrap_or_default()
            }
            _ => Vec::new(),
        };
        check_all(&self.claims, claims, &captures)
    }

    /// This rule taking tokens only from `issuers` (each compared exactly with the token's
    /// `iss`). Refused when the list is empty, holds an empty or repeated value, or the rule
    /// reads no token to check (public) or refuses every token (deny). That each names a
    /// configured issuer is the configuration's check.
    pub fn accepting_issuers(mut self, issuers: Vec<String>) -> Result<Rule, PolicyError> {
        self.check_acceptance("issuers", &issuers)?;
        self.accepts.issuers = Some(issuers);
        Ok(self)
    }

    /// This rule taking only tokens whose `aud` contains one of `audiences`, besides the
    /// issuer's own audience check. Refused as [`Rule::accepting_issuers`] refuses.
    pub fn accepting_audiences(mut self, audiences: Vec<String>) -> Result<Rule, PolicyError> {
        self.check_acceptance("audiences", &audiences)?;
        self.accepts.audiences = Some(audiences);
        Ok(self)
    }

    fn check_acceptance(&self, field: &'static str, list: &[String]) -> Result<(), PolicyError> {
        let key = format!("{}.{field}", self.key);
        let refuse = |key: String, value: String, why: &'static str| {
            Err(PolicyError::BadAcceptance { key, value, why })
        };
        match self.requirement {
            Requirement::Public => {
                return refuse(
                    key,
                    "with public = true".into(),
                    "a public rule reads no token, so there is no issuer or audience to check",
                );
            }
            Requirement::Deny => {
                return refuse(
                    key,
                    "with deny = true".into(),
                    "a deny rule refuses every token, so no issuer or audience can be accepted",
                );
            }
            _ => {}
        }
        if list.is_empty() {
            return refuse(
                key,
                "[]".into(),
                "an empty list would accept no token; leave the key out to accept any",
            );
        }
        for (i, value) in list.iter().enumerate() {
            if value.is_empty() {
                return refuse(
                    format!("{key}[{i}]"),
                    value.clone(),
                    "a value is non-empty text",
                );
            }
            if list[..i].contains(value) {
                return refuse(format!("{key}[{i}]"), value.clone(), "listed twice");
            }
        }
        Ok(())
    }

    /// The issuers and audiences the rule takes tokens from.
    pub fn accepts(&self) -> &Accepts {
        &self.accepts
    }

    /// This rule taking only sender-constrained tokens when `constrained` is true
    /// (`sender_constrained = true`): a plain bearer token is refused 401 `invalid_token`,
    /// however good its scopes, since whoever copied it could use it.
    pub fn sender_constrained(self, constrained: bool) -> Rule {
        Rule {
            sender_constrained: constrained,
            ..self
        }
    }

    /// Whether the rule takes only sender-constrained tokens.
    pub fn is_sender_constrained(&self) -> bool {
        self.sender_constrained
    }

    /// This rule in shadow mode when `shadow` is true: evaluated for every request it matches
    /// and reported, but skipped when deciding (see [`Policy::shadow_rules`]).
    pub fn shadowed(self, shadow: bool) -> Rule {
        Rule { shadow, ..self }
    }

    /// Whether the rule is in shadow mode.
    pub fn is_shadow(&self) -> bool {
        self.shadow
    }

    /// What logs and metrics call the rule: its `name`, else its key (`rules[2]`).
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// Its position-based configuration key, `rules[N]`.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Path matcher.
    pub fn path(&self) -> &PathMatch {
        &self.path
    }

    /// Methods, upper-case; `None` matches any method. A request whose method would match
    /// another rule with case ignored is refused by [`Policy::route`].
    pub fn methods(&self) -> Option<&[String]> {
        self.methods.as_deref()
    }

    /// What the route needs.
    pub fn requirement(&self) -> &Requirement {
        &self.requirement
    }

    /// Whether the rule lists `method` by name (not merely matching every method).
    pub fn names_method(&self, method: &str) -> bool {
        self.methods
            .as_ref()
            .is_some_and(|ms| ms.iter().any(|m| m == method))
    }

    pub(super) fn matches_method(&self, method: &str) -> bool {
        self.methods
            .as_ref()
            .is_none_or(|ms| ms.iter().any(|m| m == method))
    }

    /// The configuration key of this rule's path: `rules[N].path` or `rules[N].prefix`.
    pub(super) fn path_key(&self) -> String {
        format!("{}.{}", self.key, self.path.key_name())
    }
}

/// Why [`Rule::new`] or [`Policy::new`] refused a rule; [`PolicyError::key`] names the
/// configuration key at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A `name` that is empty, too long, holds control characters, or is reserved.
    #[error(
        "a rule name is 1 to {MAX_RULE_NAME_BYTES} bytes of text without control characters, \
         and not \"default\" or \"none\""
    )]
    BadName {
        /// The rule's key.
        rule: String,
        /// The name as written.
        name: String,
    },
    /// Two rules called the same in logs and metrics.
    #[error("{earlier} is already called that; rule names label metrics and must be unique")]
    DuplicateName {
        /// The rule's key.
        rule: String,
        /// The name.
        name: String,
        /// The key of the earlier rule with that name.
        earlier: String,
    },
    /// `methods = []`.
    #[error("leave `methods` out to match every method")]
    NoMethods {
        /// The rule's name.
        rule: String,
    },
    /// A method that is not an RFC 9110 token.
    #[error("not an HTTP method name (an RFC 9110 token, e.g. \"GET\")")]
    NotAMethod {
        /// The rule's name.
        rule: String,
        /// The method as written.
        method: String,
    },
    /// A method with lower-case letters: it would match only requests spelt the same way.
    #[error(
        "HTTP methods are case-sensitive and standard ones are upper-case; write {:?}",
        .method.to_ascii_uppercase()
    )]
    LowerCaseMethod {
        /// The rule's name.
        rule: String,
        /// The method as written.
        method: String,
    },
    /// An earlier rule takes every request this one would match, so it can never decide (shadow
    /// rules are exempt: they never decide anyway).
    #[error(
        "{earlier} ({earlier_pattern:?}) comes first and takes every request this rule would \
         match, so it can never apply; move it above {earlier} or remove it"
    )]
    Unreachable {
        /// The unreachable rule's path key (`rules[N].path`, `.prefix` or `.template`).
        key: String,
        /// Its path.
        pattern: String,
        /// The earlier rule's name.
        earlier: String,
        /// The earlier rule's path.
        earlier_pattern: String,
    },
    /// The rule's own path, read as an upstream might (letter case; a trailing slash, dot or
    /// space), reaches another rule with a different requirement: `Policy::route` exempts
    /// configured paths from those readings, so the conflict is refused here instead. (Format
    /// suffixes and compatibility forms are left to `Policy::route`, so that configurations that
    /// started before they were read keep starting.)
    #[error("{0}")]
    ConflictingReading(Box<Conflict>),
    /// A claim condition that cannot be checked: malformed, on a public rule, or naming a path
    /// variable the rule does not bind.
    #[error("{reason}")]
    BadClaims {
        /// `rules[N].claims."name"`.
        key: String,
        /// The values as written.
        value: String,
        /// Why, in words.
        reason: String,
    },
    /// `issuers` or `audiences` that cannot be checked as written: an empty list, an empty or
    /// repeated value, or on a rule that reads no token (public) or takes none (deny).
    #[error("{why}")]
    BadAcceptance {
        /// The key, `rules[N].issuers` or `rules[N].audiences`.
        key: String,
        /// The refused value, as written.
        value: String,
        /// Why.
        why: &'static str,
    },
}

/// The details of [`PolicyError::ConflictingReading`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The rule's path key.
    pub key: String,
    /// Its path.
    pub pattern: String,
    /// Which reading, in words.
    pub how: &'static str,
    /// The path under that reading.
    pub reading: String,
    /// The method tried.
    pub method: String,
    /// The rule the reading reaches.
    pub other: String,
    /// That rule's path.
    pub other_pattern: String,
    /// That rule's requirement, in words.
    pub other_requirement: String,
    /// What the path reaches as written, in words.
    pub own: String,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "read {} ({:?}, method {}), it reaches {} ({:?}: {}) instead of {}; an upstream that \
             reads it that way would serve one with the other's rule, so give both the same \
             requirement or paths that cannot be confused",
            self.how,
            self.reading,
            self.method,
            self.other,
            self.other_pattern,
            self.other_requirement,
            self.own
        )
    }
}

impl PolicyError {
    /// The configuration key at fault, e.g. `rules[2].methods` or `rules[0].prefix`.
    pub fn key(&self) -> String {
        match self {
            PolicyError::BadName { rule, .. } | PolicyError::DuplicateName { rule, .. } => {
                format!("{rule}.name")
            }
            PolicyError::NoMethods { rule }
            | PolicyError::NotAMethod { rule, .. }
            | PolicyError::LowerCaseMethod { rule, .. } => format!("{rule}.methods"),
            PolicyError::Unreachable { key, .. } => key.clone(),
            PolicyError::ConflictingReading(conflict) => conflict.key.clone(),
            PolicyError::BadClaims { key, .. } => key.clone(),
            PolicyError::BadAcceptance { key, .. } => key.clone(),
        }
    }

    /// The refused value as written.
    pub fn value(&self) -> &str {
        match self {
            PolicyError::BadName { name, .. } | PolicyError::DuplicateName { name, .. } => name,
            PolicyError::NoMethods { .. } => "[]",
            PolicyError::NotAMethod { method, .. }
            | PolicyError::LowerCaseMethod { method, .. } => method,
            PolicyError::Unreachable { pattern, .. } => pattern,
            PolicyError::ConflictingReading(conflict) => &conflict.pattern,
            PolicyError::BadClaims { value, .. } => value,
            PolicyError::BadAcceptance { value, .. } => value,
        }
    }
}
