//! Authorization policy: which routes need what, and the pure decision function.
//!
//! [`Policy::route`] finds the first rule matching a request's method and canonical path (or the
//! default), deciding `HEAD` as the `GET` it stands for, and refusing a request whose requirement
//! would change under a reading an upstream might apply (letter case, ASCII or Unicode; a trailing
//! slash, dot or space; a format suffix; the Unicode compatibility form; the method's case);
//! [`decide`] combines that rule's [`Requirement`] with
//! the outcome of authentication into a [`Decision`]. Both are pure: no I/O, no clocks, no gRPC
//! types. The service layer maps each [`Denial`] variant to an HTTP answer.

pub mod path;
pub mod request;
pub mod template;

use std::fmt;
use std::sync::Arc;

pub use path::{PathError, RequestPath, normalize};
pub use template::{Template, TemplateError};

use crate::auth::token::{CredentialsError, is_http_token};
use crate::auth::verify::{VerifiedClaims, VerifyError};

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

/// Longest rule `name`, in bytes: it becomes a metric label and a log field.
pub const MAX_RULE_NAME_BYTES: usize = 64;

/// One compiled `[[rules]]` entry. Built only by [`Rule::new`], which checks its name and
/// methods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Position-based key used in configuration errors: `rules[2]`.
    key: String,
    /// The configured `name`, else the key: what logs and metrics call the rule.
    name: Arc<str>,
    path: PathMatch,
    /// Upper-case RFC 9110 tokens, at least one; `None` matches any method.
    methods: Option<Vec<String>>,
    requirement: Requirement,
    /// Evaluated and reported, never enforced: see [`Policy::shadow_rules`].
    shadow: bool,
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
        })
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

    fn matches_method(&self, method: &str) -> bool {
        self.methods
            .as_ref()
            .is_none_or(|ms| ms.iter().any(|m| m == method))
    }

    /// The configuration key of this rule's path: `rules[N].path` or `rules[N].prefix`.
    fn path_key(&self) -> String {
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
        }
    }
}

/// The ordered rules plus the requirement for requests no rule matches. Built only by
/// [`Policy::new`], which refuses rules that could never apply and rules whose own paths another
/// reading would send elsewhere; [`Policy::route`] relies on the latter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    rules: Vec<Rule>,
    default: Requirement,
    /// `default`, as logs and metrics call the default.
    default_name: Arc<str>,
}

/// The rule (or default) that applies to one request.
#[derive(Debug, Clone, Copy)]
pub struct Route<'a> {
    /// The rule, `None` for the default.
    pub rule: Option<&'a Rule>,
    /// The rule's name (or `rules[N]`), or `default`: for logs and metrics.
    pub name: &'a Arc<str>,
    /// What the request needs.
    pub requirement: &'a Requirement,
}

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
        let under = |requirement: &Requirement, auth: &AuthOutcome| match auth {
            AuthOutcome::TimedOut if requirement.needs_token() => Decision::Deny(Denial::TimedOut),
            AuthOutcome::Done(auth) if requirement.needs_token() => {
                decide(requirement, Some(auth.clone()))
            }
            _ => decide(requirement, None),
        };
        let shadows = self
            .shadows
            .iter()
            .map(|rule| under(rule.requirement(), &auth))
            .collect();
        let decision = match &self.route {
            Err(e) => Decision::Deny(Denial::BadPath(*e)),
            Ok(_) if preflight => Decision::Allow(None),
            // The one authentication outcome moves into the decision: no copy on this path.
            Ok(route) => match auth {
                AuthOutcome::Done(auth) if route.requirement.needs_token() => {
                    decide(route.requirement, Some(auth))
                }
                auth => under(route.requirement, &auth),
            },
        };
        (decision, shadows)
    }
}

/// A spelling of a request that scopegate reached under another reading than the one it decides
/// by, and the rule (or default, `None`) that reading reaches: see [`Policy::route`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading<'a> {
    /// Which reading, as the error the request is refused with.
    pub error: PathError,
    /// The path under that reading.
    pub path: String,
    /// The rule it reaches, `None` for the default.
    pub rule: Option<&'a Rule>,
}

/// Which readings [`Policy::conflicting_reading`] tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Readings {
    /// Letter case and trailing characters: those whose conflicts between rules `Policy::new`
    /// refuses, so configured paths are exempt from them at request time.
    Established,
    /// Format suffixes and Unicode compatibility forms (alone, or with the established
    /// readings): never checked at start-up, where they would refuse configurations that
    /// started before they were read, so checked at request time even for configured paths.
    Later,
    /// Both.
    All,
}

impl Policy {
    /// The policy deciding by `rules` in order (the first match wins), and by `default` where
    /// none matches. Refuses a rule an earlier one always wins, and a rule whose own path, read as
    /// an upstream might, reaches another rule with a different requirement.
    pub fn new(rules: Vec<Rule>, default: Requirement) -> Result<Policy, PolicyError> {
        let policy = Policy {
            rules,
            default,
            default_name: "default".into(),
        };
        policy.reject_duplicate_names()?;
        policy.reject_unreachable_rules()?;
        policy.reject_conflicting_readings()?;
        Ok(policy)
    }

    /// The rules, in the order they are tried.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The requirement for requests no rule matches.
    pub fn default_requirement(&self) -> &Requirement {
        &self.default
    }

    fn reject_duplicate_names(&self) -> Result<(), PolicyError> {
        for (i, rule) in self.rules.iter().enumerate() {
            if let Some(earlier) = self.rules[..i].iter().find(|e| e.name == rule.name) {
                return Err(PolicyError::DuplicateName {
                    rule: rule.key.clone(),
                    name: rule.name.to_string(),
                    earlier: earlier.key.clone(),
                });
            }
        }
        Ok(())
    }

    /// Refuses a rule that an earlier rule always wins: every path it matches the earlier one
    /// matches too, for every method it names. It could never decide anything, so it cannot
    /// mean what it says (`prefix = "/"` before `path = "/admin"`).
    fn reject_unreachable_rules(&self) -> Result<(), PolicyError> {
        for (i, rule) in self.enforced().enumerate() {
            let cover = self.enforced().take(i).find(|earlier| {
                rule.path.covered_by(&earlier.path)
                    && match (&earlier.methods, &rule.methods) {
                        (None, _) => true,
                        (Some(_), None) => false,
                        (Some(theirs), Some(ours)) => ours.iter().all(|m| theirs.contains(m)),
                    }
            });
            if let Some(earlier) = cover {
                return Err(PolicyError::Unreachable {
                    key: rule.path_key(),
                    pattern: rule.path.pattern().to_owned(),
                    earlier: earlier.key.clone(),
                    earlier_pattern: earlier.path.pattern().to_owned(),
                });
            }
        }
        Ok(())
    }

    /// Refuses a rule whose own path, under a reading an upstream might apply (letter case,
    /// ASCII or Unicode; a trailing slash, dot or space), reaches another rule with a different
    /// requirement: a public `/admın` beside a protected `/admin`, or `path = "/admin"` beside a
    /// weaker `prefix = "/admin/"`. Requests for configured paths are exempt from those readings
    /// in [`Policy::route`] (under the methods their rules take), so this is where such a
    /// conflict must be caught. Format suffixes and compatibility forms are not tried here:
    /// `route` checks them for configured paths too. Each method the rule names is tried (every method named anywhere, and one named nowhere, for a rule
    /// without `methods`).
    fn reject_conflicting_readings(&self) -> Result<(), PolicyError> {
        match self.reading_conflicts(Readings::Established, true).pop() {
            Some(conflict) => Err(PolicyError::ConflictingReading(Box::new(conflict))),
            None => Ok(()),
        }
    }

    /// Rules whose own path, read without a format suffix or in Unicode compatibility form,
    /// reaches another rule with a different requirement (a public `path = "/report.json"` beside
    /// `path = "/report"` needing `admin`), at most one conflict per rule. [`Policy::new`] allows
    /// them, so that every configuration that started before these readings still starts, but
    /// [`Policy::route`] refuses (400) requests for such a path under the conflicting method:
    /// the configuration reports them as warnings.
    pub fn conflicts_refused_at_request_time(&self) -> Vec<Conflict> {
        self.reading_conflicts(Readings::Later, false)
    }

    /// The conflicts of [`Policy::reject_conflicting_readings`] under `readings`, at most one per
    /// rule, and only the first when `first_only`. For the later readings, only each rule's own
    /// pattern is tried: that is the path `route` checks them on for a configured path.
    fn reading_conflicts(&self, readings: Readings, first_only: bool) -> Vec<Conflict> {
        let mut every_method: Vec<&str> = self
            .enforced()
            .flat_map(|rule| rule.methods.iter().flatten().map(String::as_str))
            .chain(["GET", "HEAD", "UNLISTED-METHOD"])
            .collect();
        every_method.sort_unstable();
        every_method.dedup();
        // A request for a configured exact path is exempt from readings in `route`, so a
        // template or prefix that takes a case variant of it must be tried on that variant here:
        // beside a public `path = "/Items/mine"`, `template = "/items/{id}"` takes
        // `/items/mine`, the same resource to a case-insensitive upstream.
        let exact_paths: Vec<&str> = self
            .enforced()
            .filter(|rule| matches!(rule.path, PathMatch::Exact(_)))
            .map(|rule| rule.path.pattern())
            .collect();
        let mut conflicts = Vec::new();
        'rules: for rule in self.enforced() {
            let methods: Vec<&str> = match &rule.methods {
                Some(methods) => methods.iter().map(String::as_str).collect(),
                None => every_method.clone(),
            };
            let pattern = rule.path.pattern();
            let mut samples = vec![pattern.to_owned()];
            if readings == Readings::Established && !matches!(rule.path, PathMatch::Exact(_)) {
                for exact in &exact_paths {
                    // A respelling is a path the matcher takes as written.
                    if let Some(sample) = rule.path.respelled(exact)
                        && !samples.contains(&sample)
                    {
                        samples.push(sample);
                    }
                }
            }
            for sample in &samples {
                for &method in &methods {
                    if let Some(conflict) = self.check_readings(rule, sample, method, readings) {
                        conflicts.push(conflict);
                        if first_only {
                            return conflicts;
                        }
                        continue 'rules;
                    }
                }
            }
        }
        conflicts
    }

    /// The conflict, if `sample` (a path `rule` takes) reaches under one of `readings` another
    /// rule with a different requirement: see [`Policy::reject_conflicting_readings`].
    fn check_readings(
        &self,
        rule: &Rule,
        sample: &str,
        method: &str,
        readings: Readings,
    ) -> Option<Conflict> {
        let own = self.lookup(method, sample, Case::Sensitive);
        // Only another rule counts, and only one that does not take this path as written:
        // reaching the default under a reading is what a specific rule is for, and a broader
        // rule that takes the path itself (`prefix = "/items/"` behind a public `path =
        // "/items/special"`) is one this rule deliberately makes an exception to.
        let counts = |other: Option<&Rule>| {
            other.is_some_and(|other| !other.path.matches(sample, Case::Sensitive))
        };
        let reading = self.conflicting_reading(method, sample, own, readings, counts)?;
        let other = reading.rule?;
        Some(Conflict {
            key: rule.path_key(),
            pattern: sample.to_owned(),
            how: match reading.error {
                PathError::TrailingVariant => "with a trailing slash, dot or space changed",
                PathError::FormatVariant => "without its format suffix",
                PathError::CompatibilityVariant => "in Unicode compatibility form (NFKC)",
                _ => "with letter case ignored",
            },
            reading: reading.path,
            method: method.to_owned(),
            other: other.key.clone(),
            other_pattern: other.path.pattern().to_owned(),
            other_requirement: other.requirement.to_string(),
            own: own.map_or_else(
                || "the default".to_string(),
                |r| format!("{} ({})", r.key, r.requirement),
            ),
        })
    }

    /// The rules that decide requests: all but the shadow rules, in order.
    fn enforced(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter().filter(|rule| !rule.shadow)
    }

    /// Whether any rule is in shadow mode (so the service need not ask per request).
    pub fn has_shadow_rules(&self) -> bool {
        self.rules.iter().any(|rule| rule.shadow)
    }

    /// Canonicalises `raw_path` (the `:path` as sent) and finds the route and the shadow rules
    /// for `method` on it. A method that is not an RFC 9110 token is refused
    /// ([`PathError::MethodNotToken`]) before any rule is looked at: Envoy only forwards tokens,
    /// so such a method comes from a direct caller, and a rule that names no method would
    /// otherwise decide it.
    pub fn resolve(&self, method: &str, raw_path: &str) -> Resolved<'_> {
        let path = normalize(raw_path);
        let method_ok = is_http_token(method);
        let route = path.as_ref().map_err(|e| *e).and_then(|p| {
            if method_ok {
                self.route(method, p)
            } else {
                Err(PathError::MethodNotToken)
            }
        });
        let shadows = match &path {
            Ok(p) if method_ok && self.has_shadow_rules() => self.shadow_rules(method, p),
            _ => Vec::new(),
        };
        Resolved {
            path,
            route,
            shadows,
        }
    }

    /// The shadow rules that match `method` on the canonical `path`, wherever they sit: each is
    /// evaluated and reported as if it alone applied, while the request is decided by
    /// [`Policy::route`], which skips them. `HEAD` also matches a shadow rule for `GET`, as it
    /// would an enforced one.
    pub fn shadow_rules<'a>(&'a self, method: &str, path: &RequestPath) -> Vec<&'a Rule> {
        self.rules
            .iter()
            .filter(|rule| {
                rule.shadow
                    && rule.path.matches(path.as_str(), Case::Sensitive)
                    && (rule.matches_method(method)
                        || (method == "HEAD"
                            && !rule.names_method("HEAD")
                            && rule.matches_method("GET")))
            })
            .collect()
    }

    /// The rule (or default) deciding `method` on `path`.
    ///
    /// `HEAD` is decided as the `GET` it stands for (frameworks answer `HEAD` by running the `GET`
    /// handler), unless the first rule taking `HEAD` on this path names `HEAD` explicitly.
    ///
    /// Rules match the path and method exactly, but an upstream may read a request differently:
    /// letters without case (ASCII, or Unicode folding, where `ı`, `ſ` and the Kelvin sign become
    /// `I`, `S` and `k`), one trailing `/` added or removed, trailing dots and whitespace removed
    /// (`/admin.`, `/admin%20`), a format suffix on the last segment removed (`/admin.json`), the
    /// path in Unicode compatibility form (NFKC: `/ｓecret`), these combined, and the method
    /// without case. If any of those readings would reach a rule (or the default) with a
    /// different requirement, the request is refused with the reading's [`PathError`] rather than
    /// decided under one reading. A path whose compatibility form gains a delimiter or a dot
    /// segment (`/public／..／admin`) is refused whatever the rules.
    ///
    /// A path equal to a configured `path` or `prefix`, under a method that rule takes (`HEAD`
    /// as the `GET` it stands for), is never refused for letter case or trailing characters: the
    /// configuration refuses rules whose own paths would conflict that way. Format suffixes and
    /// compatibility forms are not checked at start-up (configurations that started before they
    /// were read must keep starting), so for such a path they are checked here, counting only
    /// another rule that does not take the path as written, as the start-up check counts.
    pub fn route<'a>(&'a self, method: &str, path: &RequestPath) -> Result<Route<'a>, PathError> {
        let path = path.as_str();
        if compatibility_form(path).is_some_and(|folded| gains_delimiter(path, &folded)) {
            return Err(PathError::CompatibilityDelimiter);
        }
        let own = self.lookup(method, path, Case::Sensitive);
        let upper = method
            .bytes()
            .any(|b| b.is_ascii_lowercase())
            .then(|| method.to_ascii_uppercase());
        if let Some(upper) = &upper
            && self.requirement(self.lookup(upper, path, Case::Sensitive)) != self.requirement(own)
        {
            return Err(PathError::MethodCaseVariant);
        }
        // Path readings, under the method as sent and, for a method with lower-case letters, as
        // an upstream that ignores method case would read it (`get /x/` is `GET /x` to some).
        //
        // A path a template takes as written is the template's: a reading that leaves every
        // rule for the default does not count (`/items/42/` reaching `default = "allow"` must
        // not refuse `/items/42`), as a configured path's readings are checked only against
        // other rules. Readings that reach another rule still count.
        let templated = own.is_some_and(|rule| matches!(rule.path, PathMatch::Template(_)));
        let counts = |other: Option<&Rule>| !templated || other.is_some();
        // A configured path, under a method its rule takes, is exempt from the established
        // readings (the start-up check refused their conflicts) but not from the later ones,
        // which that check leaves alone so that every configuration that started still starts:
        // those are counted here as the start-up check counts (another rule that does not take
        // the path as written), so `path = "/feed.xml"` stays usable beside a stricter default.
        let as_configured =
            |other: Option<&Rule>| other.is_some_and(|o| !o.path.matches(path, Case::Sensitive));
        for method in std::iter::once(method).chain(upper.as_deref()) {
            let reading = match self.configured_readings(method, path) {
                Some(readings) => {
                    self.conflicting_reading(method, path, own, readings, as_configured)
                }
                None => self.conflicting_reading(method, path, own, Readings::All, counts),
            };
            if let Some(reading) = reading {
                return Err(reading.error);
            }
        }
        Ok(own.map_or(
            Route {
                rule: None,
                name: &self.default_name,
                requirement: &self.default,
            },
            |rule| Route {
                rule: Some(rule),
                name: &rule.name,
                requirement: &rule.requirement,
            },
        ))
    }

    /// The first reading of `method` `path` (decided by `own`) that reaches a different
    /// requirement through a rule (or default) that `counts`, if any, among the path readings of
    /// [`Policy::route`] that `readings` selects; the configuration runs it on each rule's own
    /// path with the established ones.
    pub(crate) fn conflicting_reading<'a>(
        &'a self,
        method: &str,
        path: &str,
        own: Option<&'a Rule>,
        readings: Readings,
        counts: impl Fn(Option<&'a Rule>) -> bool,
    ) -> Option<Reading<'a>> {
        let own_requirement = self.requirement(own);
        // Each spelling is also read with letter case ignored, ASCII and Unicode-folded.
        for (error, spelling) in spellings(path, readings) {
            let folded = fold_case_to_ascii(&spelling);
            for candidate in std::iter::once(&spelling).chain(folded.as_ref()) {
                for case in [Case::Sensitive, Case::Ignored] {
                    let rule = self.lookup(method, candidate, case);
                    if self.requirement(rule) != own_requirement && counts(rule) {
                        return Some(Reading {
                            error,
                            path: candidate.clone(),
                            rule,
                        });
                    }
                }
            }
        }
        None
    }

    /// The readings a request for a configured path still needs, as the start-up check counts
    /// them, or `None` when `path` is no enforced rule's pattern under `method`. Where the
    /// start-up check tried `method` on that pattern (the rule takes it), only the later
    /// readings; for `HEAD` on a rule that takes `GET` alone, which it did not try, all of them.
    /// A rule for `POST /export` says nothing of `GET /export`, which some upstreams serve from
    /// a `/export/` handler: that request is read as any unconfigured path is.
    fn configured_readings(&self, method: &str, path: &str) -> Option<Readings> {
        let takes = |method: &str| {
            self.enforced()
                .any(|rule| rule.path.pattern() == path && rule.matches_method(method))
        };
        if takes(method) {
            Some(Readings::Later)
        } else if method == "HEAD" && takes("GET") {
            Some(Readings::All)
        } else {
            None
        }
    }

    fn requirement<'a>(&'a self, rule: Option<&'a Rule>) -> &'a Requirement {
        rule.map_or(&self.default, |rule| &rule.requirement)
    }

    /// The deciding rule under `case`, with `HEAD` read as `GET` (see [`Policy::route`]).
    pub(crate) fn lookup(&self, method: &str, path: &str, case: Case) -> Option<&Rule> {
        if method == "HEAD" {
            return match self.find("HEAD", path, case) {
                Some(rule) if rule.names_method("HEAD") => Some(rule),
                _ => self.find("GET", path, case),
            };
        }
        self.find(method, path, case)
    }

    /// The first rule matching under `case`.
    fn find(&self, method: &str, path: &str, case: Case) -> Option<&Rule> {
        self.enforced()
            .find(|rule| rule.path.matches(path, case) && rule.matches_method(method))
    }
}

/// The spellings of `path` reached by removing or adding one trailing `/` (not for the root) and
/// by removing trailing dots and whitespace, in any combination (`/admin./` → `/admin.` →
/// `/admin`), without `path` itself: spellings that upstreams such as Express (non-strict
/// routing), Spring Boot 2, ASP.NET Core or IIS serve from the handler of the bare path.
fn trailing_variants(path: &str) -> Vec<String> {
    fn toggled(path: &str) -> Option<String> {
        match path.strip_suffix('/') {
            _ if path == "/" => None,
            Some(bare) => Some(bare.to_owned()),
            None => Some(format!("{path}/")),
        }
    }
    fn trimmed(path: &str) -> Option<String> {
        // Never empty: a canonical path starts with `/`, which is not trimmed.
        let trimmed = path.trim_end_matches(|c: char| c == '.' || c.is_whitespace());
        (trimmed.len() != path.len()).then(|| trimmed.to_owned())
    }
    // Every step shortens the path or toggles its one trailing slash, so this ends: the results
    // are prefixes of `path`, each with or without one `/` appended.
    let mut out: Vec<String> = Vec::new();
    let mut queue = vec![path.to_owned()];
    while let Some(current) = queue.pop() {
        for variant in [toggled(&current), trimmed(&current)].into_iter().flatten() {
            if variant != path && !out.contains(&variant) {
                out.push(variant.clone());
                queue.push(variant);
            }
        }
    }
    out
}

/// The spellings of `path` that `readings` covers, each with the error that refuses a request
/// whose requirement it changes, established readings first: `path` itself (to be read without
/// case), its [`trailing_variants`], then its [`format_variants`], then its Unicode compatibility
/// form with its own trailing and format variants. No spelling is listed twice.
fn spellings(path: &str, readings: Readings) -> Vec<(PathError, String)> {
    let mut out: Vec<(PathError, String)> = Vec::new();
    let mut push = |error: PathError, spelling: String| {
        if !out.iter().any(|(_, seen)| *seen == spelling) {
            out.push((error, spelling));
        }
    };
    let established = trailing_variants(path);
    if readings != Readings::Later {
        push(PathError::CaseVariant, path.to_owned());
        for variant in &established {
            push(PathError::TrailingVariant, variant.clone());
        }
    }
    if readings == Readings::Established {
        return out;
    }
    for variant in format_variants(path) {
        if variant != path && !established.contains(&variant) {
            push(PathError::FormatVariant, variant);
        }
    }
    if let Some(compatible) = compatibility_form(path) {
        let variants = trailing_variants(&compatible)
            .into_iter()
            .chain(format_variants(&compatible));
        push(PathError::CompatibilityVariant, compatible.clone());
        for variant in variants {
            if variant != path {
                push(PathError::CompatibilityVariant, variant);
            }
        }
    }
    out
}

/// The spellings of `path` without the format suffix of its last segment, as Rails
/// (`(.:format)` on every route), Django REST framework (`format_suffix_patterns`) and Spring
/// MVC's suffix pattern matching serve them from the bare path's handler: the last `.ext`
/// removed, and every trailing `.ext` removed (`/a.tar.gz` → `/a.tar`, `/a`), where an `ext`
/// is ASCII letters and digits; each also after and before the [`trailing_variants`]
/// (`/admin.json/`, `/admin.json.`, `/admin/`). A bounded set, however many dots the path has.
fn format_variants(path: &str) -> Vec<String> {
    /// `path` with its last `.ext` removed, if its last segment ends with one.
    fn strip_one(path: &str) -> Option<&str> {
        let (head, ext) = path.rsplit_once('.')?;
        (!ext.is_empty() && ext.bytes().all(|b| b.is_ascii_alphanumeric())).then_some(head)
    }
    /// `path` with every trailing `.ext` removed, if it has more than one.
    fn strip_all(path: &str) -> Option<&str> {
        let mut bare = strip_one(path)?;
        let mut stripped = 1;
        while let Some(shorter) = strip_one(bare) {
            bare = shorter;
            stripped += 1;
        }
        (stripped > 1).then_some(bare)
    }
    let mut out: Vec<String> = Vec::new();
    for before in std::iter::once(path.to_owned()).chain(trailing_variants(path)) {
        for bare in [strip_one(&before), strip_all(&before)]
            .into_iter()
            .flatten()
        {
            for after in std::iter::once(bare.to_owned()).chain(trailing_variants(bare)) {
                if after != path && !out.contains(&after) {
                    out.push(after);
                }
            }
        }
    }
    out
}

/// `path` in Unicode Normalization Form KC, or `None` when that is `path` itself. Compatibility
/// characters (fullwidth `ｓ`, the `ﬁ` ligature, superscripts) become their plain forms, as
/// under Windows best-fit mappings and routers that normalise paths before matching them.
fn compatibility_form(path: &str) -> Option<String> {
    const NFKC: icu_normalizer::ComposingNormalizerBorrowed<'static> =
        icu_normalizer::ComposingNormalizerBorrowed::new_nfkc();
    if path.is_ascii() {
        return None;
    }
    let folded = NFKC.normalize(path);
    (folded != path).then(|| folded.into_owned())
}

/// Whether `folded`, the compatibility form of the canonical `path`, has a delimiter that
/// `path` lacks (a `/`, or a `\`, `%`, `?`, `#` or `;`, which no canonical path holds) or a
/// dot segment (`／`, `＼`, `％`, `．．`, `‥` and `℀`, which reads `a/c`). Read folded, such a
/// path is another path altogether (`/public／..／admin`), not a spelling of one.
fn gains_delimiter(path: &str, folded: &str) -> bool {
    let slashes = |s: &str| s.bytes().filter(|b| *b == b'/').count();
    folded.contains(['\\', '%', '?', '#', ';'])
        || slashes(folded) > slashes(path)
        || folded
            .split('/')
            .any(|segment| matches!(segment, "." | ".."))
}

/// `path` with every non-ASCII character that a case-insensitive comparison could equate with
/// an ASCII letter replaced by that letter (`ı` → `I`, `ſ` → `S`, Kelvin sign `K` → `k`, `İ` →
/// `i`), or `None` when there is none. Java's `equalsIgnoreCase`, .NET's `OrdinalIgnoreCase` and
/// Unicode case folding all equate some of these with ASCII.
fn fold_case_to_ascii(path: &str) -> Option<String> {
    fn ascii_twin(c: char) -> Option<char> {
        let mut upper = c.to_uppercase();
        if let (Some(u), None) = (upper.next(), upper.next())
            && u.is_ascii()
        {
            return Some(u);
        }
        // The simple lower-case mapping is the first character of the full one (`İ` → `i̇`).
        c.to_lowercase().next().filter(char::is_ascii)
    }
    if path.is_ascii() {
        return None;
    }
    let mut changed = false;
    let folded: String = path
        .chars()
        .map(|c| match ascii_twin(c) {
            Some(twin) if !c.is_ascii() => {
                changed = true;
                twin
            }
            _ => c,
        })
        .collect();
    changed.then_some(folded)
}

/// Whether a request is a CORS preflight as browsers send it: `OPTIONS` with a non-empty
/// `Origin` and `Access-Control-Request-Method`, and no `Authorization` (browsers never send
/// credentials on a preflight, so one with them is some other client's `OPTIONS`, decided as
/// usual). `values(name)` gives every value of the header `name` (lower-case) the request has.
pub fn is_cors_preflight<'v>(method: &str, values: impl Fn(&str) -> Vec<&'v str>) -> bool {
    let present = |name: &str| values(name).iter().any(|v| !v.trim().is_empty());
    method == "OPTIONS"
        && present("origin")
        && present("access-control-request-method")
        && values("authorization").is_empty()
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
    /// The Check ran past its deadline (`check_timeout_ms`), waiting on a key refetch; answered
    /// in-band so that Envoy never has to decide (or, failing open, allow) on a timeout.
    #[error("authorization check timed out")]
    TimedOut,
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
        use PathError::{
            CompatibilityDelimiter, CompatibilityVariant, FormatVariant, TrailingVariant,
        };
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

    #[test]
    fn format_variants_compatibility_forms_and_gained_delimiters() {
        for (path, want) in [
            ("/", &[][..]),
            ("/admin", &[][..]),
            ("/admin.", &[][..]),
            ("/admin.json", &["/admin", "/admin/"][..]),
            ("/admin.json/", &["/admin", "/admin/"][..]),
            ("/admin.json.", &["/admin", "/admin/"][..]),
            ("/a.tar.gz", &["/a", "/a.tar", "/a.tar/", "/a/"][..]),
            ("/.json", &["/"][..]),
            ("/a/.json", &["/a", "/a/"][..]),
            ("/a.j-s", &[][..]),
            ("/a.json/b", &[][..]),
        ] {
            let mut got = format_variants(path);
            got.sort();
            assert_eq!(got, want, "{path}");
        }
        for (path, want) in [
            ("/admin", None),
            ("/caf\u{e9}", None),
            ("/cafe\u{301}", Some("/caf\u{e9}")),
            ("/\u{ff53}ecret", Some("/secret")),
            ("/\u{fb01}le", Some("/file")),
            ("/x\u{b2}", Some("/x2")),
            ("/a\u{ff0f}b", Some("/a/b")),
        ] {
            assert_eq!(compatibility_form(path).as_deref(), want, "{path}");
        }
        for (path, gains) in [
            ("/\u{ff53}ecret", false),
            ("/admin\u{ff0e}json", false),
            ("/a\u{ff0f}b", true),
            ("/a/\u{ff0e}\u{ff0e}", true),
            ("/a/\u{ff0e}", true),
            ("/a/\u{2025}", true),
            ("/a\u{ff3c}b", true),
            ("/a\u{ff05}b", true),
            ("/a\u{ff1f}b", true),
            ("/a\u{ff03}b", true),
            ("/a\u{ff1b}b", true),
            ("/\u{2100}", true),
        ] {
            let folded = compatibility_form(path).expect("a compatibility character");
            assert_eq!(gains_delimiter(path, &folded), gains, "{path}");
        }
    }

    #[test]
    fn trailing_variants_and_ascii_folding() {
        for (path, want) in [
            ("/", &[][..]),
            ("/a", &["/a/"][..]),
            ("/a/", &["/a"][..]),
            ("/a.", &["/a", "/a./", "/a/"][..]),
            ("/a/ ", &["/a", "/a/", "/a/ /"][..]),
            ("/a./", &["/a", "/a.", "/a/"][..]),
            ("/. .", &["/", "/. ./"][..]),
        ] {
            let mut got = trailing_variants(path);
            got.sort();
            assert_eq!(got, want, "{path}");
        }
        for (path, want) in [
            ("/admin", None),
            ("/adm\u{131}n", Some("/admIn")),
            ("/\u{212a}itchen", Some("/kitchen")),
            ("/\u{17f}ecret", Some("/Secret")),
            ("/\u{130}d", Some("/id")),
            ("/\u{e4}dmin", None),
        ] {
            assert_eq!(fold_case_to_ascii(path).as_deref(), want, "{path}");
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
