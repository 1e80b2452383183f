//! Whole-segment path templates: `/items/{id}/notes/{**}`.
//!
//! The syntax is Istio's: `{name}` or `{*}` stands for exactly one non-empty segment, `{**}` or
//! `{name=**}` for the rest of the path (one or more segments, so `/a/{**}` matches neither
//! `/a` nor `/a/`), and only as the last segment. A variable is always a whole segment: a
//! segment that mixes text and a variable (`/f/{name}.json`) is refused, because what such a
//! segment matches depends on greedy or lazy matching, which upstream routers disagree on.
//! Literal segments must already be in canonical form, as [`super::normalize`] produces it, or
//! they could never match a request.
//!
//! A variable's name is what a rule's claim conditions refer to it by: `Template::captures`
//! gives each named variable's text in a matched path, so one name may appear only once.

use std::fmt;

use super::Case;
use super::path::normalize;

/// One segment of a [`Template`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// Text matched exactly (or without ASCII case, for [`Case::Ignored`]).
    Literal(String),
    /// `{name}` or `{*}` (no name): one non-empty segment.
    One(Option<String>),
    /// `{**}` (no name) or `{name=**}`: the rest of the path, at least one non-empty segment.
    Rest(Option<String>),
}

/// A parsed path template. Built only by [`Template::parse`], which guarantees at least one
/// variable, `{**}` only last, and canonical literal segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// As configured.
    pattern: String,
    /// The segments after the leading `/`.
    segments: Vec<Segment>,
}

/// Why a template was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// Does not start with `/`.
    #[error("a template starts with `/`")]
    NotAbsolute,
    /// No `{...}` anywhere.
    #[error("has no `{{...}}` variable; write it as `path` instead")]
    NoVariable,
    /// `//`, which a canonical request path never has.
    #[error("has an empty segment (`//`), which no canonical request path has")]
    EmptySegment,
    /// A segment that mixes text and a variable, or holds two.
    #[error(
        "segment {0:?} mixes text and a variable; a variable must be a whole segment \
         (`/files/{{name}}`, not `/files/{{name}}.json`)"
    )]
    PartialSegment(String),
    /// `{}` or a name outside `[A-Za-z0-9_.-]`.
    #[error(
        "variable {0:?} is not `{{name}}`, `{{*}}`, `{{**}}` or `{{name=**}}` (names use \
         letters, digits, `_`, `-` and `.`)"
    )]
    BadVariable(String),
    /// `{**}` before the last segment.
    #[error("`{{**}}` matches the rest of the path, so it must be the last segment")]
    RestNotLast,
    /// The same variable name twice: a claim condition naming it could not say which it means.
    #[error("variable name {0:?} appears twice; each names one part of the path")]
    DuplicateName(String),
    /// A `*` outside braces.
    #[error("`*` matches only itself outside braces; write `{{*}}` for one segment")]
    BareStar,
    /// A literal segment that is not in canonical form.
    #[error("literal segments are matched in canonical form: {0}")]
    NotCanonical(String),
}

impl Template {
    /// Parses `pattern` (see the module documentation for the syntax).
    pub fn parse(pattern: &str) -> Result<Template, TemplateError> {
        let body = pattern
            .strip_prefix('/')
            .ok_or(TemplateError::NotAbsolute)?;
        let parts: Vec<&str> = body.split('/').collect();
        let last = parts.len() - 1;
        let mut segments = Vec::with_capacity(parts.len());
        for (index, part) in parts.iter().enumerate() {
            let segment = if part.contains(['{', '}']) {
                let inner = part
                    .strip_prefix('{')
                    .and_then(|p| p.strip_suffix('}'))
                    .filter(|inner| !inner.contains(['{', '}']))
                    .ok_or_else(|| TemplateError::PartialSegment((*part).to_owned()))?;
                variable(inner).ok_or_else(|| TemplateError::BadVariable((*part).to_owned()))?
            } else if part.contains('*') {
                return Err(TemplateError::BareStar);
            } else if part.is_empty() && index != last {
                return Err(TemplateError::EmptySegment);
            } else {
                // The last segment may be empty: a trailing slash, as in an exact path.
                Segment::Literal((*part).to_owned())
            };
            if matches!(segment, Segment::Rest(_)) && index != last {
                return Err(TemplateError::RestNotLast);
            }
            if let Segment::One(Some(name)) | Segment::Rest(Some(name)) = &segment
                && segments
                    .iter()
                    .any(|earlier: &Segment| earlier.name() == Some(name))
            {
                return Err(TemplateError::DuplicateName(name.clone()));
            }
            segments.push(segment);
        }
        if !segments.iter().any(|s| !matches!(s, Segment::Literal(_))) {
            return Err(TemplateError::NoVariable);
        }
        let template = Template {
            pattern: pattern.to_owned(),
            segments,
        };
        // The literal text must survive canonicalisation unchanged: a template that names
        // `/%61dmin/{id}` or `/a/../{id}` could never match a canonical path.
        let example = template.example();
        if example.ends_with(char::is_whitespace) {
            return Err(TemplateError::NotCanonical(
                "ends with whitespace, which upstreams strip or refuse".into(),
            ));
        }
        match normalize(&example) {
            Ok(canonical) if canonical.as_str() == example => Ok(template),
            Ok(canonical) => Err(TemplateError::NotCanonical(format!(
                "{example:?} reads as {:?}",
                canonical.as_str()
            ))),
            Err(e) => Err(TemplateError::NotCanonical(format!(
                "could never match: {e}"
            ))),
        }
    }

    /// The template as configured.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The text every matched path starts with: the pattern up to its first variable.
    pub(crate) fn literal_lead(&self) -> &str {
        self.pattern
            .find('{')
            .map_or(self.pattern.as_str(), |at| &self.pattern[..at])
    }

    /// A path this template matches, with `x` for each variable.
    fn example(&self) -> String {
        let mut out = String::new();
        for segment in &self.segments {
            out.push('/');
            match segment {
                Segment::Literal(text) => out.push_str(text),
                Segment::One(_) | Segment::Rest(_) => out.push('x'),
            }
        }
        out
    }

    /// Whether `path` (canonical) matches, comparing literal segments under `case`.
    pub(crate) fn matches(&self, path: &str, case: Case) -> bool {
        let Some(mut rest) = path.strip_prefix('/') else {
            return false;
        };
        let last = self.segments.len() - 1;
        for (index, segment) in self.segments.iter().enumerate() {
            if let Segment::Rest(_) = segment {
                // One or more segments: a canonical path has no `//`, so any text is that.
                return !rest.is_empty();
            }
            let (part, after) = match rest.split_once('/') {
                Some((part, after)) => (part, Some(after)),
                None => (rest, None),
            };
            let ok = match segment {
                Segment::Literal(text) => match case {
                    Case::Sensitive => part == text,
                    Case::Ignored => part.eq_ignore_ascii_case(text),
                },
                _ => !part.is_empty(),
            };
            match (ok, after, index == last) {
                (false, _, _) => return false,
                (true, None, true) => return true,
                (true, Some(after), false) => rest = after,
                // The path has more segments than the template, or fewer.
                (true, _, _) => return false,
            }
        }
        false
    }

    /// `path` with each literal segment spelled as this template spells it, when the template
    /// matches `path` with case ignored: the request this template would take that differs
    /// from `path` only in letter case.
    pub(crate) fn respelled(&self, path: &str) -> Option<String> {
        if !self.matches(path, Case::Ignored) {
            return None;
        }
        let mut parts = path.strip_prefix('/')?.split('/');
        let mut out = String::with_capacity(path.len());
        for segment in &self.segments {
            match segment {
                Segment::Rest(_) => {
                    let rest: Vec<&str> = parts.by_ref().collect();
                    out.push('/');
                    out.push_str(&rest.join("/"));
                }
                Segment::Literal(text) => {
                    parts.next()?;
                    out.push('/');
                    out.push_str(text);
                }
                Segment::One(_) => {
                    out.push('/');
                    out.push_str(parts.next()?);
                }
            }
        }
        Some(out)
    }

    /// Whether every path `self` matches is matched by `other`.
    pub(crate) fn covered_by(&self, other: &Template) -> bool {
        for (index, theirs) in other.segments.iter().enumerate() {
            let Some(ours) = self.segments.get(index) else {
                return false;
            };
            let covered = match (ours, theirs) {
                // The rest of ours is one or more segments whatever they are.
                (_, Segment::Rest(_)) => return true,
                (Segment::Literal(a), Segment::Literal(b)) => a == b,
                (Segment::Literal(a), Segment::One(_)) => !a.is_empty(),
                (Segment::One(_), Segment::One(_)) => true,
                _ => false,
            };
            if !covered {
                return false;
            }
        }
        self.segments.len() == other.segments.len()
    }

    /// The names of its named variables, in order (`{*}` and `{**}` have none).
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(Segment::name)
    }

    /// Each named variable's text in `path` (canonical, so already percent-decoded once), when
    /// the template matches it: one segment for `{name}`, the rest of the path for
    /// `{name=**}` (its segments joined by `/`). Literal segments are compared under `case`.
    pub(crate) fn captures<'p>(&self, path: &'p str, case: Case) -> Option<Vec<(&str, &'p str)>> {
        if !self.matches(path, case) {
            return None;
        }
        let mut rest = path.strip_prefix('/')?;
        let mut out = Vec::new();
        for segment in &self.segments {
            if let Segment::Rest(name) = segment {
                if let Some(name) = name {
                    out.push((name.as_str(), rest));
                }
                break;
            }
            let (part, after) = rest.split_once('/').unwrap_or((rest, ""));
            if let Segment::One(Some(name)) = segment {
                out.push((name.as_str(), part));
            }
            rest = after;
        }
        Some(out)
    }
}

impl Segment {
    /// A variable's name, if it has one.
    fn name(&self) -> Option<&str> {
        match self {
            Segment::One(name) | Segment::Rest(name) => name.as_deref(),
            Segment::Literal(_) => None,
        }
    }
}

/// The segment a variable's inner text (between the braces) stands for, if well-formed.
fn variable(inner: &str) -> Option<Segment> {
    let is_name = |name: &str| {
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    };
    match inner.split_once('=') {
        None if inner == "*" => Some(Segment::One(None)),
        None if inner == "**" => Some(Segment::Rest(None)),
        None if is_name(inner) => Some(Segment::One(Some(inner.to_owned()))),
        Some((name, "*")) if is_name(name) => Some(Segment::One(Some(name.to_owned()))),
        Some((name, "**")) if is_name(name) => Some(Segment::Rest(Some(name.to_owned()))),
        _ => None,
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pattern)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        use TemplateError::*;
        let cases: &[(&str, Result<(), TemplateError>)] = &[
            ("/items/{id}", Ok(())),
            ("/items/{*}", Ok(())),
            ("/items/{id}/notes/{**}", Ok(())),
            ("/items/{id}/notes/{rest=**}", Ok(())),
            ("/items/{id=*}/", Ok(())),
            ("/{tenant}/items", Ok(())),
            ("/v1.2/{item_id}/{a-b.c}", Ok(())),
            ("items/{id}", Err(NotAbsolute)),
            ("/items/mine", Err(NoVariable)),
            ("/items//{id}", Err(EmptySegment)),
            (
                "/files/{name}.json",
                Err(PartialSegment("{name}.json".into())),
            ),
            ("/files/x{name}", Err(PartialSegment("x{name}".into()))),
            ("/files/{a}{b}", Err(PartialSegment("{a}{b}".into()))),
            ("/files/{name", Err(PartialSegment("{name".into()))),
            ("/files/name}", Err(PartialSegment("name}".into()))),
            ("/files/{}", Err(BadVariable("{}".into()))),
            ("/files/{a b}", Err(BadVariable("{a b}".into()))),
            ("/files/{a=b}", Err(BadVariable("{a=b}".into()))),
            ("/files/{=**}", Err(BadVariable("{=**}".into()))),
            ("/files/{***}", Err(BadVariable("{***}".into()))),
            ("/a/{**}/b", Err(RestNotLast)),
            ("/a/{rest=**}/{id}", Err(RestNotLast)),
            ("/a/*/{id}", Err(BareStar)),
            ("/a/{id}/b/{id}", Err(DuplicateName("id".into()))),
            ("/a/{id}/{id=**}", Err(DuplicateName("id".into()))),
            ("/a/{*}/{*}/{**}", Ok(())),
        ];
        for (pattern, want) in cases {
            assert_eq!(Template::parse(pattern).map(|_| ()), *want, "{pattern:?}");
        }
        for pattern in ["/%61dmin/{id}", "/a/../{id}", "/a;x/{id}", "/{id}/b "] {
            assert!(
                matches!(Template::parse(pattern), Err(NotCanonical(_))),
                "{pattern:?}"
            );
        }
    }

    #[test]
    fn match_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("/items/{id}", "/items/1", true),
            ("/items/{id}", "/items/abc-def", true),
            ("/items/{id}", "/items/", false),
            ("/items/{id}", "/items", false),
            ("/items/{id}", "/items/1/", false),
            ("/items/{id}", "/items/1/notes", false),
            ("/items/{id}", "/Items/1", false),
            ("/items/{id}", "/itemsx/1", false),
            ("/items/{id}/notes", "/items/1/notes", true),
            ("/items/{id}/notes", "/items//notes", false),
            ("/items/{id}/notes", "/items/1/notes/", false),
            ("/items/{id}/", "/items/1/", true),
            ("/items/{id}/", "/items/1", false),
            ("/{tenant}/items", "/acme/items", true),
            ("/{tenant}/items", "/items", false),
            ("/a/{**}", "/a/b", true),
            ("/a/{**}", "/a/b/c/d", true),
            ("/a/{**}", "/a/b/", true),
            ("/a/{**}", "/a/", false),
            ("/a/{**}", "/a", false),
            ("/a/{**}", "/ab/c", false),
            ("/a/{id}/{**}", "/a/1/x", true),
            ("/a/{id}/{**}", "/a/1/", false),
            ("/{**}", "/", false),
            ("/{**}", "/x", true),
            ("/{*}", "/", false),
        ];
        for (pattern, path, want) in cases {
            let template = Template::parse(pattern).expect(pattern);
            assert_eq!(
                template.matches(path, Case::Sensitive),
                *want,
                "{pattern} on {path}"
            );
        }
        let items = Template::parse("/items/{id}").expect("valid");
        assert!(items.matches("/ITEMS/1", Case::Ignored));
        assert!(!items.matches("/ITEMS/1", Case::Sensitive));
    }

    #[test]
    fn captures_table() {
        /// Pattern, path, the captures wanted.
        type Case3<'a> = (&'a str, &'a str, Option<&'a [(&'a str, &'a str)]>);
        let cases: &[Case3] = &[
            (
                "/orgs/{org}/items",
                "/orgs/acme/items",
                Some(&[("org", "acme")]),
            ),
            (
                "/orgs/{org}/items",
                "/orgs/ACME/items",
                Some(&[("org", "ACME")]),
            ),
            ("/orgs/{org}/items", "/orgs/acme/other", None),
            (
                "/orgs/{org}/items/{id=*}",
                "/orgs/a/items/7",
                Some(&[("org", "a"), ("id", "7")]),
            ),
            (
                "/orgs/{*}/items/{id}",
                "/orgs/a/items/7",
                Some(&[("id", "7")]),
            ),
            (
                "/files/{path=**}",
                "/files/a/b/c.txt",
                Some(&[("path", "a/b/c.txt")]),
            ),
            ("/files/{path=**}", "/files/a/", Some(&[("path", "a/")])),
            ("/files/{**}", "/files/a/b", Some(&[])),
            (
                "/{t}/x/{rest=**}",
                "/é/x/y/z",
                Some(&[("t", "é"), ("rest", "y/z")]),
            ),
        ];
        for (pattern, path, want) in cases {
            let template = Template::parse(pattern).expect(pattern);
            assert_eq!(
                template.captures(path, Case::Sensitive).as_deref(),
                *want,
                "{pattern} on {path}"
            );
        }
        let t = Template::parse("/orgs/{org}/{*}/{rest=**}").expect("valid");
        assert_eq!(t.variables().collect::<Vec<_>>(), ["org", "rest"]);
        // Literal segments under `case`, variables as written.
        assert_eq!(
            t.captures("/ORGS/Acme/x/y", Case::Ignored),
            Some(vec![("org", "Acme"), ("rest", "y")])
        );
    }

    #[test]
    fn coverage_and_respelling() {
        let t = |p: &str| Template::parse(p).expect(p);
        assert!(t("/items/{id}").covered_by(&t("/items/{other}")));
        assert!(t("/items/mine/{x}").covered_by(&t("/items/{id}/{y}")));
        assert!(t("/items/{id}/{**}").covered_by(&t("/items/{**}")));
        assert!(t("/items/{id}").covered_by(&t("/{a}/{b}")));
        assert!(!t("/items/{**}").covered_by(&t("/items/{id}")));
        assert!(!t("/items/{id}").covered_by(&t("/items/{id}/{x}")));
        assert!(!t("/items/{id}/x").covered_by(&t("/items/{id}")));
        assert!(!t("/{a}/items").covered_by(&t("/x/{b}")));
        assert_eq!(t("/items/{id}").literal_lead(), "/items/");
        assert_eq!(t("/{tenant}/x").literal_lead(), "/");
        assert_eq!(
            t("/items/{id}/notes").respelled("/ITEMS/Mine/NOTES"),
            Some("/items/Mine/notes".into())
        );
        assert_eq!(t("/a/{**}").respelled("/A/b/C"), Some("/a/b/C".into()));
        assert_eq!(t("/items/{id}").respelled("/other/1"), None);
    }
}
