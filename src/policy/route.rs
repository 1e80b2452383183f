//! Route lookup: the rule (or default) deciding a request, and the readings an upstream might
//! apply to its path and method (letter case, trailing characters, format suffixes, the Unicode
//! compatibility form), any of which reaching another requirement refuses the request.

use std::sync::Arc;

use super::rule::{ACCEPTS_ANY, Case};
use super::{
    Accepts, PathError, PathMatch, Policy, RequestPath, Requirement, Resolved, Rule, normalize,
};
use crate::auth::token::is_http_token;

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

impl<'a> Route<'a> {
    /// The issuers and audiences the route takes tokens from (any, for the default).
    pub fn accepts(&self) -> &'a Accepts {
        self.rule.map_or(&ACCEPTS_ANY, Rule::accepts)
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
            && self.demand(self.lookup(upper, path, Case::Sensitive)) != self.demand(own)
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
        let own_demand = self.demand(own);
        // Each spelling is also read with letter case ignored, ASCII and Unicode-folded.
        for (error, spelling) in spellings(path, readings) {
            let folded = fold_case_to_ascii(&spelling);
            for candidate in std::iter::once(&spelling).chain(folded.as_ref()) {
                for case in [Case::Sensitive, Case::Ignored] {
                    let rule = self.lookup(method, candidate, case);
                    if self.demand(rule) != own_demand && counts(rule) {
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

    /// What deciding by `rule` (or the default) demands, as the readings compare it: its
    /// requirement, the issuers and audiences it takes tokens from, and, for a rule with claim
    /// conditions, the rule itself. Two readings of a request that reach different demands
    /// conflict, even with the same scopes: a route that takes only the staff issuer's tokens must
    /// not be reachable, respelt, through one that takes any issuer's. A rule's conditions bind
    /// its own template's variables, so no other rule demands the same, and a reading that leaves
    /// such a rule (`/ORGS/other/...` beside `/orgs/{org}/...` with `org_id = "{org}"`) is
    /// refused rather than decided without its conditions.
    fn demand<'a>(
        &'a self,
        rule: Option<&'a Rule>,
    ) -> (&'a Requirement, &'a Accepts, Option<&'a str>) {
        match rule {
            None => (&self.default, &ACCEPTS_ANY, None),
            Some(rule) => (
                &rule.requirement,
                &rule.accepts,
                (!rule.claims.is_empty()).then_some(rule.key.as_str()),
            ),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
