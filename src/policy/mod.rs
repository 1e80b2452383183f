//! Authorization policy: which routes need what, and the pure decision function.
//!
//! [`Policy::route`] finds the first rule matching a request's method and canonical path (or the
//! default), deciding `HEAD` as the `GET` it stands for, and refusing a request whose requirement
//! would change under a reading an upstream might apply (letter case, ASCII or Unicode; a trailing
//! slash, dot or space; a format suffix; the Unicode compatibility form; the method's case);
//! [`decide`] combines that rule's [`Requirement`] with
//! the outcome of authentication into a [`Decision`]. Both are pure: no I/O, no clocks, no gRPC
//! types. The service layer maps each [`Denial`] variant to an HTTP answer.
//!
//! The files, by concept: this one holds [`Policy`], built only by [`Policy::new`] with its
//! start-up checks; `rule` what a rule demands and matches ([`Requirement`], [`PathMatch`],
//! [`Rule`]) and why one is refused ([`PolicyError`]); `route` route lookup and the readings;
//! `decide` [`Resolved::decide`], [`decide`] and the denials; [`path`] canonicalisation;
//! [`template`] whole-segment templates; [`request`] method overrides and preflights. The items
//! of `rule`, `route` and `decide` are re-exported here, so their paths are `policy::X`; the
//! tables that build a [`Policy`] are in `tests/`, one file per concept
//! (`policy::tests::routes`, `templates`, `readings`, `issuers`).

pub mod claims;
pub mod path;
pub mod request;
pub mod template;

mod decide;
mod route;
mod rule;
#[cfg(test)]
mod tests;

use std::sync::Arc;

pub use claims::{ClaimCondition, ClaimMismatch};
pub use decide::{
    AuthError, AuthOutcome, Authentication, Decision, Denial, Resolved, decide, decide_for,
};
pub use path::{PathError, RequestPath, normalize};
pub use request::is_cors_preflight;
pub use route::{Reading, Route};
pub use rule::{Accepts, Conflict, MAX_RULE_NAME_BYTES, PathMatch, PolicyError, Requirement, Rule};
pub use template::{Template, TemplateError};

use route::Readings;
use rule::Case;

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

    /// Every claim the rules' claim conditions read (shadow rules' included), each once: what
    /// verification must keep of a token ([`crate::auth::verify::Expectations::retain`]).
    pub fn claim_specs(&self) -> Vec<&crate::auth::verify::ClaimSpec> {
        let mut specs: Vec<&crate::auth::verify::ClaimSpec> = Vec::new();
        for condition in self.rules.iter().flat_map(|rule| rule.claims.iter()) {
            if !specs.contains(&condition.spec()) {
                specs.push(condition.spec());
            }
        }
        specs
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
            other_requirement: format!("{}{}", other.requirement, other.accepts),
            own: own.map_or_else(
                || "the default".to_string(),
                |r| format!("{} ({}{})", r.key, r.requirement, r.accepts),
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
}
