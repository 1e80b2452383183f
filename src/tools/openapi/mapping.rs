//! The pure mapping of a document to rules: each operation's `security` to a requirement, for
//! every server base path, literal paths before the templates that also match them, and each
//! path closed by a `deny` rule for the methods the document does not list.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};

use super::OpenApiError;
use super::model::{Document, SecurityRequirement};
use super::text::{comment_text, shorten};
use crate::auth::verify::is_scope_token;
use crate::policy::{MAX_RULE_NAME_BYTES, Template, normalize};

/// Choices the document leaves open.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The `oauth2` or `openIdConnect` scheme whose tokens scopegate verifies; needed when the
    /// document uses several.
    pub scheme: Option<String>,
    /// Prefix of every rule path; `None`: the path of each distinct `servers` URL of the
    /// operation, else of its path item, else of the document (a rule for each). An empty
    /// string prefixes nothing.
    pub base_path: Option<String>,
    /// Write every rule with `shadow = true`: evaluated and reported, not enforced, for the
    /// first step of a rollout.
    pub shadow: bool,
}

/// How a generated rule matches the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathRule {
    /// `path = "..."`: a path without parameters.
    Exact(String),
    /// `template = "..."`: a path with `{name}` or `{*}` segments.
    Template(String),
}

/// What a generated rule requires: what a document's `security` can say, and the closing rule
/// of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// `public = true`: no token needed.
    Public,
    /// No requirement key: any valid token.
    Authenticated,
    /// `scopes`: a token granting at least one of these.
    AnyScope(Vec<String>),
    /// `all_scopes`: a token granting every one of these.
    AllScopes(Vec<String>),
    /// `deny = true`: the closing rule of a path, refusing (after authentication) every method
    /// the document does not list for it.
    Deny,
}

/// One rule: for one operation, or the closing rule of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedRule {
    pub(super) operation: String,
    pub(super) name: String,
    pub(super) path: PathRule,
    pub(super) method: Option<&'static str>,
    pub(super) requirement: Access,
    pub(super) summary: Option<String>,
}

impl GeneratedRule {
    /// The operation, `METHOD /path` as the document writes the path; for a closing rule, its
    /// path or template, base path included.
    pub fn operation(&self) -> &str {
        &self.operation
    }

    /// The rule's `name`: the `operationId` when usable, else the operation (with the base
    /// path when the operation has several).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The rule's path or template, base path included.
    pub fn path(&self) -> &PathRule {
        &self.path
    }

    /// The one method the rule names; `None` for a closing rule, which takes every method the
    /// rules before it left.
    pub fn method(&self) -> Option<&str> {
        self.method
    }

    /// What the rule requires: public, any valid token, any-of or all-of scopes, or deny.
    pub fn requirement(&self) -> &Access {
        &self.requirement
    }
}

/// The rules for a document, in the order they must be checked, with what the header comment
/// says about their source.
#[derive(Debug, Clone)]
pub struct Rules {
    pub(super) title: Option<String>,
    pub(super) version: Option<String>,
    pub(super) openapi: String,
    pub(super) scheme: Option<String>,
    pub(super) rules: Vec<GeneratedRule>,
}

impl Rules {
    /// The rules in order.
    pub fn rules(&self) -> &[GeneratedRule] {
        &self.rules
    }
}

/// What a path segment is, for ordering and telling paths apart.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Variable,
}

/// An operation under one base path on its way to a rule.
struct Draft<'a> {
    operation: String,
    /// What the rule's name is made from when the `operationId` is not usable: the operation,
    /// or, when it has several base paths, the operation with the base path.
    label: String,
    /// The `operationId`, with the base path when the operation has several.
    operation_id: Option<String>,
    summary: Option<&'a str>,
    method: &'static str,
    path: PathRule,
    shape: Vec<Segment>,
    requirement: Access,
}

/// The rules for `doc`, or the first reason one cannot be written: one rule per operation and
/// base path, and after the operations of each path (each shape: `/items/{id}` and
/// `/items/{name}` are one), a closing `deny` rule for the methods the document does not list
/// there.
pub fn rules(doc: &Document, options: &Options) -> Result<Rules, OpenApiError> {
    let base_override = options
        .base_path
        .as_deref()
        .map(|given| clean_base_path(given, given))
        .transpose()?;
    let scheme = choose_scheme(doc, options)?;
    let mut drafts: Vec<Draft> = Vec::new();
    for (path, item) in &doc.paths.0 {
        if let Some(reference) = &item.reference {
            return Err(OpenApiError::PathItemRef {
                path: path.clone(),
                reference: reference.clone(),
            });
        }
        if let Some(field) = item.unknown_fields.first() {
            return Err(OpenApiError::UnknownPathField {
                path: path.clone(),
                field: field.clone(),
            });
        }
        if !path.starts_with('/') {
            return Err(OpenApiError::PathNotAbsolute(path.clone()));
        }
        for (method, op) in &item.operations {
            let operation = format!("{method} {path}");
            // Every server the operation is served under: a request under any of them reaches
            // it, so each needs its rules.
            let mut bases: Vec<String> = Vec::new();
            match &base_override {
                Some(base) => bases.push(base.clone()),
                None => {
                    let servers = [&op.servers, &item.servers, &doc.servers]
                        .into_iter()
                        .find(|servers| !servers.is_empty())
                        .map_or(&[][..], Vec::as_slice);
                    for server in servers {
                        let base = server_path(&server.url)?;
                        if !bases.contains(&base) {
                            bases.push(base);
                        }
                    }
                    if bases.is_empty() {
                        bases.push(String::new());
                    }
                }
            }
            let security = op.security.as_deref().or(doc.security.as_deref());
            let requirement = requirement(&operation, security, doc, scheme.as_deref())?;
            let several = bases.len() > 1;
            for base in &bases {
                let (rule_path, shape) = rule_path(&operation, base, path)?;
                if let Some(earlier) = drafts
                    .iter()
                    .find(|d| d.method == *method && d.shape == shape)
                {
                    return Err(OpenApiError::DuplicateOperation {
                        operation,
                        earlier: earlier.operation.clone(),
                    });
                }
                let shown_base = if base.is_empty() { "/" } else { base.as_str() };
                drafts.push(Draft {
                    label: if several {
                        format!("{method} {base}{path}")
                    } else {
                        operation.clone()
                    },
                    operation_id: op.operation_id.as_ref().map(|t| {
                        if several {
                            format!("{} {shown_base}", t.0)
                        } else {
                            t.0.clone()
                        }
                    }),
                    operation: operation.clone(),
                    summary: op.summary.as_ref().map(|t| t.0.as_str()),
                    method,
                    path: rule_path,
                    shape,
                    requirement: requirement.clone(),
                });
            }
        }
    }
    // Operations on paths of one shape form a group, closed by one deny rule: a closing rule
    // between two of them would take the later one's method first.
    let mut groups: Vec<(&[Segment], Vec<usize>)> = Vec::new();
    for (i, draft) in drafts.iter().enumerate() {
        match groups.iter_mut().find(|(shape, _)| *shape == draft.shape) {
            Some((_, members)) => members.push(i),
            None => groups.push((&draft.shape, vec![i])),
        }
    }
    let shapes: Vec<&[Segment]> = groups.iter().map(|(shape, _)| *shape).collect();
    let group_order = order(&shapes);
    // Names: the operations' first, so a closing rule never takes an operationId's place.
    let mut labels: Vec<(Option<&str>, String)> = drafts
        .iter()
        .map(|d| (d.operation_id.as_deref(), d.label.clone()))
        .collect();
    let closing = |members: &[usize]| {
        let first = &drafts[members[0]];
        let written = match &first.path {
            PathRule::Exact(p) | PathRule::Template(p) => p.clone(),
        };
        (first.path.clone(), written)
    };
    labels.extend(
        groups
            .iter()
            .map(|(_, members)| (None, format!("{} other methods", closing(members).1))),
    );
    let names = names(&labels);
    let (op_names, closing_names) = names.split_at(drafts.len());
    let mut ordered = Vec::with_capacity(drafts.len() + groups.len());
    for g in group_order {
        let Some((_, members)) = groups.get(g) else {
            continue;
        };
        for &i in members {
            let d = &drafts[i];
            ordered.push(GeneratedRule {
                operation: d.operation.clone(),
                name: op_names[i].clone(),
                path: d.path.clone(),
                method: Some(d.method),
                requirement: d.requirement.clone(),
                summary: d.summary.map(comment_text).filter(|s| !s.is_empty()),
            });
        }
        let (path, operation) = closing(members);
        ordered.push(GeneratedRule {
            operation,
            name: closing_names[g].clone(),
            path,
            method: None,
            requirement: Access::Deny,
            summary: Some("every method the document does not list".to_owned()),
        });
    }
    Ok(Rules {
        title: doc.info.title.as_ref().map(|t| t.0.clone()),
        version: doc.info.version.as_ref().map(|t| t.0.clone()),
        openapi: doc
            .openapi
            .as_ref()
            .map(|t| t.0.clone())
            .unwrap_or_default(),
        scheme,
        rules: ordered,
    })
}

/// The OAuth scheme whose requirements count: `--scheme`, else the only `oauth2` or
/// `openIdConnect` scheme that the operations' requirements name (none: `None`). Schemes that
/// are defined but never required do not count, so a document listing a spare one needs no
/// `--scheme`; two in use do, as their tokens and scopes may differ and scopegate cannot tell
/// which scheme a token came from.
fn choose_scheme(doc: &Document, options: &Options) -> Result<Option<String>, OpenApiError> {
    if let Some(chosen) = &options.scheme {
        return match scheme_kind(doc, chosen) {
            None => Err(OpenApiError::SchemeNotFound(chosen.clone())),
            Some(Ok(SchemeKind::OAuth)) => Ok(Some(chosen.clone())),
            Some(Ok(SchemeKind::Other(kind))) => Err(OpenApiError::SchemeNotOAuth {
                scheme: chosen.clone(),
                kind: kind.to_owned(),
            }),
            Some(Err(e)) => Err(e),
        };
    }
    let mut used: Vec<&str> = Vec::new();
    for item in doc.paths.0.iter().map(|(_, item)| item) {
        for (_, op) in &item.operations {
            let security = op.security.as_deref().or(doc.security.as_deref());
            for (name, _) in security.into_iter().flatten().flat_map(|r| &r.0) {
                if matches!(scheme_kind(doc, name), Some(Ok(SchemeKind::OAuth)))
                    && !used.contains(&name.as_str())
                {
                    used.push(name);
                }
            }
        }
    }
    match used.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some((*one).to_owned())),
        several => Err(OpenApiError::SeveralSchemes(several.join(", "))),
    }
}

enum SchemeKind<'a> {
    OAuth,
    Other(&'a str),
}

/// The kind of the scheme called `name`, `None` when the document does not define it.
fn scheme_kind<'a>(doc: &'a Document, name: &str) -> Option<Result<SchemeKind<'a>, OpenApiError>> {
    let (_, scheme) = doc
        .components
        .security_schemes
        .0
        .iter()
        .find(|(n, _)| n == name)?;
    Some(match scheme.kind.as_deref() {
        Some("oauth2" | "openIdConnect") => Ok(SchemeKind::OAuth),
        Some(other) => Ok(SchemeKind::Other(other)),
        None => Err(OpenApiError::UntypedScheme(name.to_owned())),
    })
}

/// What `security` (the operation's, else the document's) requires of a request.
fn requirement(
    operation: &str,
    security: Option<&[SecurityRequirement]>,
    doc: &Document,
    scheme: Option<&str>,
) -> Result<Access, OpenApiError> {
    let Some(alternatives) = security else {
        return Ok(Access::Authenticated);
    };
    // `{}` allows anonymous calls, so no other alternative can make the operation stricter.
    if alternatives.is_empty() || alternatives.iter().any(|r| r.0.is_empty()) {
        return Ok(Access::Public);
    }
    let mut ours: Vec<Vec<String>> = Vec::new();
    for alternative in alternatives {
        let mut scopes: Option<&[String]> = None;
        let mut oauth: Vec<&str> = Vec::new();
        let mut other: Vec<String> = Vec::new();
        for (name, listed) in &alternative.0 {
            match scheme_kind(doc, name) {
                None => {
                    return Err(OpenApiError::UnknownScheme {
                        operation: operation.to_owned(),
                        scheme: name.clone(),
                    });
                }
                Some(Err(e)) => return Err(e),
                Some(Ok(SchemeKind::OAuth)) => {
                    oauth.push(name);
                    if Some(name.as_str()) == scheme {
                        scopes = Some(listed);
                    }
                }
                Some(Ok(SchemeKind::Other(kind))) => other.push(format!("{name:?} ({kind})")),
            }
        }
        if let (Some(oauth), false) = (oauth.first(), other.is_empty()) {
            return Err(OpenApiError::CombinedWithOther {
                operation: operation.to_owned(),
                oauth: (*oauth).to_owned(),
                other: other.join(", "),
            });
        }
        if oauth.is_empty() {
            return Err(OpenApiError::NotOAuth {
                operation: operation.to_owned(),
                schemes: other.join(", "),
            });
        }
        if oauth.len() > 1 {
            return Err(OpenApiError::CombinedOAuth {
                operation: operation.to_owned(),
                schemes: oauth.join(", "),
            });
        }
        // One OAuth scheme; if it is not the chosen one, the alternative is for tokens scopegate
        // does not take, and leaving it out can only make the rule stricter.
        let Some(scopes) = scopes else { continue };
        let mut set: Vec<String> = Vec::new();
        for scope in scopes {
            if !is_scope_token(scope) {
                return Err(OpenApiError::BadScope {
                    operation: operation.to_owned(),
                    scope: scope.clone(),
                });
            }
            if !set.contains(scope) {
                set.push(scope.clone());
            }
        }
        ours.push(set);
    }
    if ours.is_empty() {
        return Err(OpenApiError::NotForScheme {
            operation: operation.to_owned(),
            scheme: scheme.unwrap_or_default().to_owned(),
        });
    }
    let ours = absorb(ours);
    match ours.as_slice() {
        [only] if only.is_empty() => Ok(Access::Authenticated),
        [only] if only.len() == 1 => Ok(Access::AnyScope(only.clone())),
        [only] => Ok(Access::AllScopes(only.clone())),
        several if several.iter().all(|a| a.len() == 1) => Ok(Access::AnyScope(
            several.iter().flatten().cloned().collect(),
        )),
        several => Err(OpenApiError::Inexpressible {
            operation: operation.to_owned(),
            alternatives: several
                .iter()
                .map(|a| format!("[{}]", a.join(", ")))
                .collect::<Vec<_>>()
                .join(" or "),
        }),
    }
}

/// `alternatives` without those that another alternative makes redundant: one needing every
/// scope of another (and maybe more) adds nothing to the any-of (`[a]` or `[a, b]` is `[a]`).
/// The first of equal alternatives stays, so the order is the document's.
fn absorb(alternatives: Vec<Vec<String>>) -> Vec<Vec<String>> {
    let covers = |small: &[String], big: &[String]| small.iter().all(|s| big.contains(s));
    let mut kept: Vec<Vec<String>> = Vec::new();
    for (i, alt) in alternatives.iter().enumerate() {
        let redundant = alternatives.iter().enumerate().any(|(j, other)| {
            j != i
                && covers(other, alt)
                && (other.len() < alt.len() || (other.len() == alt.len() && j < i))
        });
        if !redundant {
            kept.push(alt.clone());
        }
    }
    kept
}

/// The path part of a server URL, as a base path: `https://api.example.com/v1/` → `/v1`.
fn server_path(url: &str) -> Result<String, OpenApiError> {
    if url.contains(['{', '}']) {
        return Err(OpenApiError::ServerVariables(url.to_owned()));
    }
    let after_authority = |rest: &str| match rest.find(['/', '?', '#']) {
        Some(i) if rest[i..].starts_with('/') => rest[i..].to_owned(),
        _ => String::new(),
    };
    let path = if let Some(i) = url.find("://") {
        after_authority(&url[i + 3..])
    } else if let Some(rest) = url.strip_prefix("//") {
        after_authority(rest)
    } else if url.starts_with('/') || url.is_empty() {
        url.to_owned()
    } else {
        return Err(OpenApiError::RelativeServerUrl(url.to_owned()));
    };
    let path = path.split(['?', '#']).next().unwrap_or_default();
    clean_base_path(path, url)
}

/// `path` as a prefix of rule paths: no trailing `/` (`/` prefixes nothing), a leading `/`,
/// no template characters. `given` is what the error shows.
fn clean_base_path(path: &str, given: &str) -> Result<String, OpenApiError> {
    let bad = |reason| OpenApiError::BadBasePath {
        base_path: given.to_owned(),
        reason,
    };
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    if !trimmed.starts_with('/') {
        return Err(bad("a base path starts with /"));
    }
    if trimmed.contains(['{', '}', '*']) {
        return Err(bad("a base path is literal: no `{`, `}` or `*`"));
    }
    Ok(trimmed.to_owned())
}

/// The rule path (`path` or `template`) of `path` under `base`, and its shape.
fn rule_path(
    operation: &str,
    base: &str,
    path: &str,
) -> Result<(PathRule, Vec<Segment>), OpenApiError> {
    let full = format!("{base}{path}");
    let mut shape = Vec::new();
    let mut written = Vec::new();
    // With each variable as a plain segment, to check the literal parts.
    let mut probe = Vec::new();
    for segment in full.split('/').skip(1) {
        if !segment.contains(['{', '}']) {
            shape.push(Segment::Literal(segment.to_owned()));
            written.push(segment.to_owned());
            probe.push(segment);
            continue;
        }
        let name = segment
            .strip_prefix('{')
            .and_then(|s| s.strip_suffix('}'))
            .filter(|name| !name.contains(['{', '}']))
            .ok_or_else(|| OpenApiError::PartialSegment {
                operation: operation.to_owned(),
                segment: segment.to_owned(),
            })?;
        // A name repeated in one path (which OpenAPI forbids) is kept the first time only:
        // template variable names are unique, since claim conditions refer to them.
        let keep = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
            && !written.contains(&format!("{{{name}}}"));
        written.push(if keep {
            format!("{{{name}}}")
        } else {
            "{*}".to_owned()
        });
        shape.push(Segment::Variable);
        probe.push("x");
    }
    let probe = format!("/{}", probe.join("/"));
    let unusable = |reason: String| OpenApiError::UnusablePath {
        operation: operation.to_owned(),
        path: full.clone(),
        reason,
    };
    if probe.contains('*') {
        return Err(unusable(
            "holds `*`, which rule paths refuse as a wildcard look-alike".into(),
        ));
    }
    if probe.ends_with(char::is_whitespace) {
        return Err(unusable(
            "ends with white space, which upstreams strip".into(),
        ));
    }
    match normalize(&probe) {
        Ok(canonical) if canonical.as_str() == probe => {}
        Ok(canonical) => {
            return Err(unusable(format!(
                "is not in the canonical form requests are matched in ({:?})",
                canonical.as_str()
            )));
        }
        Err(e) => return Err(unusable(format!("could never match: {e}"))),
    }
    let written = format!("/{}", written.join("/"));
    if !shape.contains(&Segment::Variable) {
        return Ok((PathRule::Exact(written), shape));
    }
    // The configuration's own parser has the last word on template syntax, so a template this
    // module writes is one the configuration accepts.
    Template::parse(&written).map_err(|e| unusable(format!("is not a usable template: {e}")))?;
    Ok((PathRule::Template(written), shape))
}

/// Whether a rule of shape `p` must come before one of shape `q`: both match some path, and at
/// the first segment where one is literal and the other a variable, `p`'s is literal.
fn must_precede(p: &[Segment], q: &[Segment]) -> bool {
    if p.len() != q.len() {
        return false;
    }
    let mut first = None;
    for (a, b) in p.iter().zip(q) {
        match (a, b) {
            (Segment::Literal(x), Segment::Literal(y)) if x != y => return false,
            // A variable takes a non-empty segment only (the `""` after a trailing `/`).
            (Segment::Literal(x), Segment::Variable) | (Segment::Variable, Segment::Literal(x))
                if x.is_empty() =>
            {
                return false;
            }
            (Segment::Literal(_), Segment::Variable) => {
                first.get_or_insert(true);
            }
            (Segment::Variable, Segment::Literal(_)) => {
                first.get_or_insert(false);
            }
            _ => {}
        }
    }
    first == Some(true)
}

/// Indices of `shapes` in rule order: document order, except that a shape moves before every
/// shape it [`must_precede`]. That relation only ever puts a literal before a variable at the
/// first difference, so it has no cycles; among the shapes free to go next, the earliest in the
/// document goes.
fn order(shapes: &[&[Segment]]) -> Vec<usize> {
    let n = shapes.len();
    let mut waiting_for = vec![0usize; n];
    for (q, wait) in waiting_for.iter_mut().enumerate() {
        *wait = (0..n)
            .filter(|&p| must_precede(shapes[p], shapes[q]))
            .count();
    }
    let mut ready: BinaryHeap<Reverse<usize>> = (0..n)
        .filter(|&i| waiting_for[i] == 0)
        .map(Reverse)
        .collect();
    let mut out = Vec::with_capacity(n);
    while let Some(Reverse(p)) = ready.pop() {
        out.push(p);
        for q in 0..n {
            if must_precede(shapes[p], shapes[q]) {
                waiting_for[q] -= 1;
                if waiting_for[q] == 0 {
                    ready.push(Reverse(q));
                }
            }
        }
    }
    out
}

/// A rule name for each (`operationId`, label) pair, unique: the `operationId` where it is a
/// usable name not taken yet, else the label (`GET /items/{id}`), shortened and numbered as
/// needed.
fn names(labels: &[(Option<&str>, String)]) -> Vec<String> {
    let mut used: HashSet<String> = HashSet::new();
    let mut out = Vec::with_capacity(labels.len());
    for (operation_id, label) in labels {
        let name = match operation_id {
            Some(id) if usable_name(id) && !used.contains(*id) => (*id).to_owned(),
            _ => {
                let label: String = label
                    .chars()
                    .map(|c| if c.is_control() { '?' } else { c })
                    .collect();
                let mut candidate = shorten(&label, MAX_RULE_NAME_BYTES);
                let mut n = 2;
                while used.contains(&candidate) || !usable_name(&candidate) {
                    let suffix = format!(" #{n}");
                    candidate = format!(
                        "{}{suffix}",
                        shorten(&label, MAX_RULE_NAME_BYTES - suffix.len())
                    );
                    n += 1;
                }
                candidate
            }
        };
        used.insert(name.clone());
        out.push(name);
    }
    out
}

/// What the configuration accepts as a rule name, less names shaped like the `rules[N]` labels
/// of unnamed rules, which the configuration the rules join may already use.
fn usable_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_RULE_NAME_BYTES
        && !name.chars().any(char::is_control)
        && !matches!(name, "default" | "none")
        && !name.starts_with("rules[")
}
