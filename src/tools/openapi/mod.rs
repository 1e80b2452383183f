//! `[[rules]]` tables from an OpenAPI 3.0 or 3.1 document: what `scopegate openapi-rules` prints.
//!
//! [`Document::parse`] reads the few parts of a document that decide access (servers, paths and
//! their operations, `security`, `components.securitySchemes`) from YAML or JSON, ignoring the
//! rest; [`rules`] maps them to one rule per operation, a pure function; [`render`] writes the
//! rules as TOML to append to a configuration. [`rules_from_file`] does all three.
//!
//! The mapping never produces a rule weaker than the document: what a rule cannot express is an
//! error naming the operation (`GET /items/{id}`) or path.
//!
//! | the operation's `security` (else the document's) | rule |
//! |---|---|
//! | absent in both | any valid token (no key) |
//! | `[]`, or any requirement `{}` among the alternatives | `public = true` |
//! | one requirement `{oauth: [a, b]}` | `all_scopes = ["a", "b"]` (one scope: `scopes = ["a"]`) |
//! | one requirement `{oauth: []}`, or such an alternative | any valid token |
//! | alternatives `{oauth: [a]}`, `{oauth: [b]}` | `scopes = ["a", "b"]` (any-of) |
//! | alternatives of which some need several scopes | error, unless absorption removes them |
//! | a requirement with only apiKey, http or mutualTLS schemes | error |
//! | a requirement needing an OAuth scheme *and* another scheme | error |
//!
//! Alternatives are simplified before that choice by absorption only, which keeps their meaning:
//! `[a]` or `[a, b]` is `[a]`. Only `oauth2` and `openIdConnect` schemes carry scopes scopegate can
//! check. A document that uses several of them needs [`Options::scheme`]; requirements naming only
//! the other OAuth schemes are then dropped as alternatives (scopegate verifies the chosen
//! scheme's tokens), which can only make a rule stricter.
//!
//! A path without parameters becomes `path`, one with parameters a `template` (`{id}` keeps its
//! name when it is `[A-Za-z0-9_.-]+`, otherwise `{*}`); a segment mixing text and a parameter
//! (`/files/{name}.json`) is an error. Every path is prefixed with a base path: the option's,
//! else the path of each distinct `servers` URL of the operation, else of its path item, else of
//! the document, one rule per base path (names then carry the base path). Rules keep document
//! order (operations of a path item in the order written), except that a literal path moves
//! before a template that also matches it, since the first match wins. The operations of each
//! path (paths of one shape, such as `/items/{id}` and `/items/{name}`, count as one) are
//! followed by a closing `deny = true` rule without `methods`, so a method the document does not
//! list there is refused rather than decided by the configuration's default.
//!
//! YAML merge keys (`<<: *anchor`) are applied before anything is read, and fields the
//! document, a path item or an operation does not define are errors (extensions `x-...`
//! excepted): either, ignored, could drop a `security` and leave a weaker rule.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::fmt;
use std::path::Path;

use serde::Deserialize;
use serde::de::{self, IgnoredAny, MapAccess, Visitor};

use crate::auth::verify::is_scope_token;
use crate::policy::{MAX_RULE_NAME_BYTES, Template, normalize};

/// The operation keys of an OpenAPI 3.0/3.1 path item, and the methods they stand for.
const OPERATIONS: [(&str, &str); 8] = [
    ("get", "GET"),
    ("put", "PUT"),
    ("post", "POST"),
    ("delete", "DELETE"),
    ("options", "OPTIONS"),
    ("head", "HEAD"),
    ("patch", "PATCH"),
    ("trace", "TRACE"),
];

/// The other fixed fields of a path item; none changes who may call an operation (`servers` is
/// read separately, as it changes the path).
const OTHER_PATH_ITEM_FIELDS: [&str; 3] = ["summary", "description", "parameters"];

/// The fixed fields of an OpenAPI 3.0/3.1 document that [`Document`] does not read; none
/// changes who may call an operation.
const OTHER_DOCUMENT_FIELDS: [&str; 4] = ["jsonSchemaDialect", "webhooks", "tags", "externalDocs"];

/// The fixed fields of an operation that [`Operation`] does not read; none changes who may call
/// it.
const OTHER_OPERATION_FIELDS: [&str; 8] = [
    "tags",
    "description",
    "externalDocs",
    "parameters",
    "requestBody",
    "responses",
    "callbacks",
    "deprecated",
];

/// Why a document could not be turned into rules. Each variant about one operation names it as
/// `METHOD /path` (the path as the document writes it).
#[derive(Debug, thiserror::Error)]
pub enum OpenApiError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not YAML, or YAML without the expected shape.
    #[error("not a readable OpenAPI document (YAML): {0}")]
    Yaml(#[from] serde_yaml_ng::Error),
    /// Not JSON, or JSON without the expected shape.
    #[error("not a readable OpenAPI document (JSON): {0}")]
    Json(#[from] serde_json::Error),
    /// No `openapi` field, as in a Swagger 2.0 document.
    #[error(
        "no `openapi` version field: only OpenAPI 3.0 and 3.1 documents are read (not Swagger 2.0)"
    )]
    NoVersion,
    /// An `openapi` version other than 3.0.x or 3.1.x.
    #[error("openapi {0:?}: only OpenAPI 3.0 and 3.1 documents are read")]
    Version(String),
    /// A path item given as a `$ref`, which is not followed.
    #[error(
        "path {path}: a path item $ref ({reference}) is not followed; write the path item inline"
    )]
    PathItemRef {
        /// The path.
        path: String,
        /// The reference.
        reference: String,
    },
    /// A path item field OpenAPI 3.0/3.1 does not define: perhaps an operation spelt otherwise,
    /// which would be skipped silently if ignored.
    #[error(
        "path {path}: unknown field {field:?}; operations are lower-case get, put, post, delete, \
         options, head, patch, trace (extensions start with x-)"
    )]
    UnknownPathField {
        /// The path.
        path: String,
        /// The field.
        field: String,
    },
    /// A top-level field OpenAPI 3.0/3.1 does not define: perhaps `security` spelt otherwise,
    /// which would drop the document's requirement silently if ignored.
    #[error(
        "unknown top-level field {0:?}; a document's fields are openapi, info, \
         jsonSchemaDialect, servers, paths, webhooks, components, security, tags and \
         externalDocs (extensions start with x-)"
    )]
    UnknownDocumentField(String),
    /// An operation field OpenAPI 3.0/3.1 does not define: perhaps `security` spelt otherwise,
    /// which would give the operation the document's requirement silently if ignored.
    #[error(
        "{operation}: unknown field {field:?}; an operation's fields are tags, summary, \
         description, externalDocs, operationId, parameters, requestBody, responses, callbacks, \
         deprecated, security and servers (extensions start with x-)"
    )]
    UnknownOperationField {
        /// The operation.
        operation: String,
        /// The field.
        field: String,
    },
    /// A path that does not start with `/`.
    #[error("path {0:?} does not start with /")]
    PathNotAbsolute(String),
    /// A segment that mixes literal text and a parameter.
    #[error(
        "{operation}: the segment {segment:?} mixes text and a parameter, which a rule template \
         cannot express (a template variable is a whole segment)"
    )]
    PartialSegment {
        /// The operation.
        operation: String,
        /// The segment.
        segment: String,
    },
    /// A path that a rule could never match as written.
    #[error("{operation}: the rule path {path:?} {reason}")]
    UnusablePath {
        /// The operation.
        operation: String,
        /// The path with its base path.
        path: String,
        /// Why.
        reason: String,
    },
    /// Two operations with the same method on paths of the same shape.
    #[error(
        "{operation}: {earlier} has the same method and path (parameter names do not tell paths \
         apart), so one of the two rules could never apply"
    )]
    DuplicateOperation {
        /// The later operation.
        operation: String,
        /// The earlier one.
        earlier: String,
    },
    /// A security requirement naming a scheme `components.securitySchemes` lacks.
    #[error(
        "{operation}: security names {scheme:?}, which components.securitySchemes does not define"
    )]
    UnknownScheme {
        /// The operation.
        operation: String,
        /// The scheme.
        scheme: String,
    },
    /// A security scheme without a `type`, such as a `$ref`, which is not followed.
    #[error("security scheme {0:?} has no `type` (a $ref scheme is not followed); write it inline")]
    UntypedScheme(String),
    /// A requirement whose schemes are all of kinds scopegate cannot check.
    #[error(
        "{operation}: a security requirement uses only {schemes}, which scopegate cannot check \
         (it verifies OAuth 2.0 access tokens); only oauth2 and openIdConnect schemes map to rules"
    )]
    NotOAuth {
        /// The operation.
        operation: String,
        /// The schemes, with their types.
        schemes: String,
    },
    /// A requirement needing an OAuth scheme and another scheme at once.
    #[error(
        "{operation}: a security requirement needs {oauth:?} together with {other}, which a rule \
         cannot express (scopegate checks only the OAuth 2.0 token)"
    )]
    CombinedWithOther {
        /// The operation.
        operation: String,
        /// The OAuth scheme.
        oauth: String,
        /// The other schemes, with their types.
        other: String,
    },
    /// A requirement needing two OAuth schemes at once.
    #[error(
        "{operation}: a security requirement needs the OAuth schemes {schemes} together, which a \
         rule cannot express (a request carries one token)"
    )]
    CombinedOAuth {
        /// The operation.
        operation: String,
        /// The schemes.
        schemes: String,
    },
    /// With `--scheme`, an operation whose every requirement is for other OAuth schemes.
    #[error(
        "{operation}: no security requirement uses the scheme {scheme:?}, so no token scopegate \
         checks could be allowed; describe the operation for that scheme or pick another"
    )]
    NotForScheme {
        /// The operation.
        operation: String,
        /// The chosen scheme.
        scheme: String,
    },
    /// Alternatives that neither any-of nor all-of scopes can express.
    #[error(
        "{operation}: the security alternatives {alternatives} need all of several scopes in some \
         alternative and another alternative besides; neither `scopes` (any-of) nor \
         `all_scopes` (all-of) can express that, and a weaker rule is not written"
    )]
    Inexpressible {
        /// The operation.
        operation: String,
        /// The alternatives, after absorption.
        alternatives: String,
    },
    /// A scope no token could grant.
    #[error(
        "{operation}: the scope {scope:?} is not an RFC 6749 scope-token (printable ASCII without \
         space, `\"` or `\\`), so no token could grant it"
    )]
    BadScope {
        /// The operation.
        operation: String,
        /// The scope.
        scope: String,
    },
    /// Several OAuth schemes in use and no `--scheme`.
    #[error(
        "the document uses several OAuth 2.0 / OpenID Connect security schemes ({0}); say with \
         --scheme which one's tokens scopegate verifies"
    )]
    SeveralSchemes(String),
    /// `--scheme` names no scheme of the document.
    #[error("--scheme {0:?}: components.securitySchemes does not define it")]
    SchemeNotFound(String),
    /// `--scheme` names a scheme of another kind.
    #[error(
        "--scheme {scheme:?} is of type {kind:?}; only oauth2 and openIdConnect schemes carry scopes"
    )]
    SchemeNotOAuth {
        /// The scheme.
        scheme: String,
        /// Its type.
        kind: String,
    },
    /// A server URL with variables, whose path is then unknown.
    #[error("the servers URL {0:?} has variables, so its path is not known; give --base-path")]
    ServerVariables(String),
    /// A server URL that is relative without a leading `/`.
    #[error(
        "the servers URL {0:?} is relative to where the document is served, so its path is not \
         known; give --base-path"
    )]
    RelativeServerUrl(String),
    /// A base path that cannot prefix rule paths.
    #[error("base path {base_path:?}: {reason}")]
    BadBasePath {
        /// The base path as given.
        base_path: String,
        /// Why.
        reason: &'static str,
    },
}

/// A string field that some documents write as a YAML number or boolean (`version: 1.0`,
/// `openapi: 3.1`); read as text either way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Text(String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl Visitor<'_> for TextVisitor {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_owned()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Text, E> {
                // `{:?}` keeps the `.0` of `3.0`.
                Ok(Text(format!("{v:?}")))
            }
        }
        deserializer.deserialize_any(TextVisitor)
    }
}

/// A map in document order (rules keep the order of `paths`), refusing duplicate keys.
#[derive(Debug)]
struct OrderedMap<V>(Vec<(String, V)>);

impl<V> Default for OrderedMap<V> {
    fn default() -> Self {
        OrderedMap(Vec::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for OrderedMap<V> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for MapVisitor<V> {
            type Value = OrderedMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut seen = HashSet::new();
                let mut entries = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, V>()? {
                    if !seen.insert(key.clone()) {
                        return Err(de::Error::custom(format!("duplicate key {key:?}")));
                    }
                    entries.push((key, value));
                }
                Ok(OrderedMap(entries))
            }
        }
        deserializer.deserialize_map(MapVisitor(std::marker::PhantomData))
    }
}

/// The parts of an OpenAPI 3.0 or 3.1 document that decide who may call what. Everything else
/// (schemas, responses, 3.1's `webhooks` and `jsonSchemaDialect`, ...) is ignored.
#[derive(Debug, Deserialize)]
pub struct Document {
    openapi: Option<Text>,
    #[serde(default)]
    info: Info,
    #[serde(default)]
    servers: Vec<Server>,
    #[serde(default)]
    paths: OrderedMap<PathItem>,
    security: Option<Vec<SecurityRequirement>>,
    #[serde(default)]
    components: Components,
    /// Every other field, checked against [`OTHER_DOCUMENT_FIELDS`] by [`Document::parse`].
    #[serde(flatten)]
    other: OrderedMap<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
struct Info {
    title: Option<Text>,
    version: Option<Text>,
}

#[derive(Debug, Deserialize)]
struct Server {
    url: String,
}

#[derive(Debug, Default, Deserialize)]
struct Components {
    #[serde(default, rename = "securitySchemes")]
    security_schemes: OrderedMap<SecurityScheme>,
}

#[derive(Debug, Deserialize)]
struct SecurityScheme {
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// Scheme name → scopes; all of its schemes at once (AND).
type SecurityRequirement = OrderedMap<Vec<String>>;

/// A path item: its operations in the order written, and what else could change a rule.
#[derive(Debug, Default)]
struct PathItem {
    reference: Option<String>,
    servers: Vec<Server>,
    operations: Vec<(&'static str, Operation)>,
    unknown_fields: Vec<String>,
}

impl<'de> Deserialize<'de> for PathItem {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ItemVisitor;
        impl<'de> Visitor<'de> for ItemVisitor {
            type Value = PathItem;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a path item (a map)")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PathItem, A::Error> {
                let mut item = PathItem::default();
                while let Some(key) = map.next_key::<String>()? {
                    if let Some((_, method)) = OPERATIONS.iter().find(|(k, _)| *k == key) {
                        item.operations.push((method, map.next_value()?));
                    } else if key == "$ref" {
                        item.reference = Some(map.next_value()?);
                    } else if key == "servers" {
                        item.servers = map.next_value()?;
                    } else {
                        map.next_value::<IgnoredAny>()?;
                        if !key.starts_with("x-") && !OTHER_PATH_ITEM_FIELDS.contains(&&*key) {
                            item.unknown_fields.push(key);
                        }
                    }
                }
                Ok(item)
            }
        }
        deserializer.deserialize_map(ItemVisitor)
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Operation {
    operation_id: Option<Text>,
    summary: Option<Text>,
    security: Option<Vec<SecurityRequirement>>,
    #[serde(default)]
    servers: Vec<Server>,
    /// Every other field, checked against [`OTHER_OPERATION_FIELDS`] by [`Document::parse`].
    #[serde(flatten)]
    other: OrderedMap<IgnoredAny>,
}

/// Whether `field`, not read by its object, is one that may be ignored: a fixed field of `known`
/// or an extension (`x-...`).
fn ignorable(field: &str, known: &[&str]) -> bool {
    field.starts_with("x-") || known.contains(&field)
}

/// Whether a YAML merge key (`<<`) is left anywhere in `value`.
fn has_merge_key(value: &serde_yaml_ng::Value) -> bool {
    use serde_yaml_ng::Value;
    match value {
        Value::Mapping(map) => map
            .iter()
            .any(|(k, v)| k.as_str() == Some("<<") || has_merge_key(v)),
        Value::Sequence(items) => items.iter().any(has_merge_key),
        Value::Tagged(tagged) => has_merge_key(&tagged.value),
        _ => false,
    }
}

impl Document {
    /// Reads a document from YAML, or from JSON when its first character (after white space)
    /// is `{`, and checks that it is OpenAPI 3.0 or 3.1. YAML merge keys (`<<: *anchor`) are
    /// applied first, as YAML 1.1 readers apply them, so an operation taking its `security`
    /// from an anchor keeps it. Fields the document or an operation does not define are
    /// refused (extensions `x-...` excepted): ignored, a misspelt `security` would leave the
    /// weaker requirement in force.
    pub fn parse(text: &str) -> Result<Document, OpenApiError> {
        let doc: Document = if text
            .trim_start_matches('\u{feff}')
            .trim_start()
            .starts_with('{')
        {
            serde_json::from_str(text.trim_start_matches('\u{feff}'))?
        } else {
            let mut value: serde_yaml_ng::Value = serde_yaml_ng::from_str(text)?;
            // A merged mapping may hold a merge key of its own, which one pass puts back in
            // place; each pass resolves one level of such chains, and anchors cannot nest
            // without end.
            while has_merge_key(&value) {
                value.apply_merge()?;
            }
            serde_yaml_ng::from_value(value)?
        };
        let Some(Text(version)) = &doc.openapi else {
            return Err(OpenApiError::NoVersion);
        };
        let mut parts = version.split('.');
        if !(parts.next() == Some("3") && matches!(parts.next(), Some("0" | "1"))) {
            return Err(OpenApiError::Version(version.clone()));
        }
        if let Some((field, _)) = doc
            .other
            .0
            .iter()
            .find(|(field, _)| !ignorable(field, &OTHER_DOCUMENT_FIELDS))
        {
            return Err(OpenApiError::UnknownDocumentField(field.clone()));
        }
        for (path, item) in &doc.paths.0 {
            for (method, op) in &item.operations {
                if let Some((field, _)) = op
                    .other
                    .0
                    .iter()
                    .find(|(field, _)| !ignorable(field, &OTHER_OPERATION_FIELDS))
                {
                    return Err(OpenApiError::UnknownOperationField {
                        operation: format!("{method} {path}"),
                        field: field.clone(),
                    });
                }
            }
        }
        Ok(doc)
    }
}

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
    operation: String,
    name: String,
    path: PathRule,
    method: Option<&'static str>,
    requirement: Access,
    summary: Option<String>,
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
    title: Option<String>,
    version: Option<String>,
    openapi: String,
    scheme: Option<String>,
    rules: Vec<GeneratedRule>,
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
        let keep = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
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

/// `text` cut to at most `max` bytes on a character boundary, marked with `...` when cut.
fn shorten(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max.saturating_sub(3);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// `text` on one line, fit for a comment: white space runs become one space; control and
/// bidirectional-override characters are dropped (they could hide what the line says); long
/// text is cut.
fn comment_text(text: &str) -> String {
    let visible: String = text
        .chars()
        .filter(|c| !matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'))
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    shorten(
        &visible.split_whitespace().collect::<Vec<_>>().join(" "),
        160,
    )
}

/// A TOML string literal.
fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn toml_array(items: &[String]) -> String {
    toml::Value::Array(items.iter().cloned().map(toml::Value::String).collect()).to_string()
}

/// The rules as `[[rules]]` tables and comments only, so the text can be appended to a
/// configuration file. `source` names the document in the first comment.
/// With `shadow`, every rule gets `shadow = true`.
pub fn render(rules: &Rules, source: &str, shadow: bool) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let described = match (&rules.title, &rules.version) {
        (Some(t), Some(v)) => format!("{} {}", comment_text(t), comment_text(v)),
        (Some(t), None) => comment_text(t),
        (None, Some(v)) => format!("version {}", comment_text(v)),
        (None, None) => "untitled".to_owned(),
    };
    let _ = writeln!(
        out,
        "# Generated by `scopegate openapi-rules` from {} ({described}, OpenAPI {}).",
        comment_text(source),
        comment_text(&rules.openapi)
    );
    if let Some(scheme) = &rules.scheme {
        let _ = writeln!(
            out,
            "# Scopes of the security scheme {}.",
            comment_text(scheme)
        );
    }
    let _ = writeln!(
        out,
        "# First match wins: literal paths come before templates that also match them. Each\n\
         # path's operations end with a deny rule for the methods the document does not list."
    );
    let _ = writeln!(
        out,
        "# Use these rules with default = \"deny\": a path parameter here matches one segment, but\n\
         # a framework may let it span several (FastAPI's {{file_path:path}} is published as\n\
         # {{file_path}}), and such requests, matching no rule, get the default."
    );
    if rules.rules.is_empty() {
        let _ = writeln!(out, "# The document describes no operations.");
    }
    for rule in &rules.rules {
        out.push('\n');
        let _ = match &rule.summary {
            Some(summary) => writeln!(out, "# {}: {summary}", comment_text(&rule.operation)),
            None => writeln!(out, "# {}", comment_text(&rule.operation)),
        };
        out.push_str("[[rules]]\n");
        let _ = writeln!(out, "name = {}", toml_string(&rule.name));
        let _ = match &rule.path {
            PathRule::Exact(p) => writeln!(out, "path = {}", toml_string(p)),
            PathRule::Template(t) => writeln!(out, "template = {}", toml_string(t)),
        };
        if let Some(method) = rule.method {
            let _ = writeln!(out, "methods = {}", toml_array(&[method.to_owned()]));
        }
        let _ = match &rule.requirement {
            Access::Public => writeln!(out, "public = true"),
            Access::Deny => writeln!(out, "deny = true"),
            Access::AnyScope(s) => writeln!(out, "scopes = {}", toml_array(s)),
            Access::AllScopes(s) => writeln!(out, "all_scopes = {}", toml_array(s)),
            // Any valid token is what a rule without a requirement key needs.
            Access::Authenticated => Ok(()),
        };
        if shadow {
            out.push_str("shadow = true\n");
        }
    }
    out
}

/// Reads the document at `path` and returns its rules as TOML ([`render`]), or why not.
pub fn rules_from_file(path: &Path, options: &Options) -> Result<String, OpenApiError> {
    let text = std::fs::read_to_string(path).map_err(|source| OpenApiError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let doc = Document::parse(&text)?;
    let generated = rules(&doc, options)?;
    let source = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    Ok(render(&generated, &source, options.shadow))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Schemes every case can use; `oidc`, `key` and `basic` count only where a case names them.
    const HEAD: &str = r#"
openapi: 3.0.3
info: {title: Items, version: "1.2"}
components:
  securitySchemes:
    oauth:
      type: oauth2
      flows: {clientCredentials: {tokenUrl: "https://issuer.example/token", scopes: {}}}
    oidc: {type: openIdConnect, openIdConnectUrl: "https://issuer.example/.well-known/openid-configuration"}
    key: {type: apiKey, in: header, name: X-Key}
    basic: {type: http, scheme: basic}
"#;

    fn generate(body: &str, options: &Options) -> Result<Rules, OpenApiError> {
        rules(&Document::parse(&format!("{HEAD}{body}"))?, options)
    }

    /// A rule in one line: `GET /items any[a,b]`; templates are marked `T`, a closing rule's
    /// method is `*`.
    fn describe(rule: &GeneratedRule) -> String {
        let path = match rule.path() {
            PathRule::Exact(p) => p.clone(),
            PathRule::Template(t) => format!("T{t}"),
        };
        let access = match rule.requirement() {
            Access::Public => "public".to_owned(),
            Access::Authenticated => "token".to_owned(),
            Access::AnyScope(s) => format!("any[{}]", s.join(",")),
            Access::AllScopes(s) => format!("all[{}]", s.join(",")),
            Access::Deny => "deny".to_owned(),
        };
        format!("{} {path} {access}", rule.method().unwrap_or("*"))
    }

    /// The operations' rules of `rules`, described, without the closing rules.
    fn operations(rules: &Rules) -> Vec<String> {
        rules
            .rules()
            .iter()
            .filter(|r| r.method().is_some())
            .map(describe)
            .collect()
    }

    /// `rules` rendered and appended to a minimal configuration, compiled as `serve` would.
    fn compile(rules: &Rules, default: &str) -> Result<crate::config::Config, String> {
        let config = format!(
            "issuer = \"https://issuer.example/\"\naudience = \"https://api.example.com\"\n\
             default = \"{default}\"\n\n{}",
            render(rules, "t.yaml", false)
        );
        crate::config::RawConfig::from_toml(&config, "test")
            .and_then(crate::config::RawConfig::compile)
            .map_err(|e| format!("{e}\n{config}"))
    }

    fn scheme(name: &str) -> Options {
        Options {
            scheme: Some(name.to_owned()),
            ..Options::default()
        }
    }

    fn base(path: &str) -> Options {
        Options {
            base_path: Some(path.to_owned()),
            ..Options::default()
        }
    }

    #[test]
    fn security_maps_to_the_rule_that_says_the_same() {
        let cases: &[(&str, &str, &[&str])] = &[
            (
                "global security",
                "security: [{oauth: [read]}]\npaths: {/items: {get: {}, post: {}}}",
                &["GET /items any[read]", "POST /items any[read]"],
            ),
            (
                "an operation's security replaces the global one",
                "security: [{oauth: [read]}]\n\
                 paths: {/items: {get: {}, post: {security: [{oauth: [write]}]}}}",
                &["GET /items any[read]", "POST /items any[write]"],
            ),
            (
                "alternatives of one scope each: any-of",
                "paths: {/items: {get: {security: [{oauth: [a]}, {oauth: [b]}]}}}",
                &["GET /items any[a,b]"],
            ),
            (
                "one requirement with several scopes: all-of",
                "paths: {/items: {get: {security: [{oauth: [a, b]}]}}}",
                &["GET /items all[a,b]"],
            ),
            (
                "security: [] is public, also against a global requirement",
                "security: [{oauth: [read]}]\npaths: {/items: {get: {security: []}}}",
                &["GET /items public"],
            ),
            (
                "a {} alternative allows anonymous calls",
                "paths: {/items: {get: {security: [{oauth: [a]}, {}]}}}",
                &["GET /items public"],
            ),
            (
                "{} beside an apiKey alternative: still anonymous",
                "paths: {/items: {get: {security: [{key: []}, {}]}}}",
                &["GET /items public"],
            ),
            (
                "no security anywhere: any valid token",
                "paths: {/items: {get: {}}}",
                &["GET /items token"],
            ),
            (
                "a requirement without scopes: any valid token",
                "security: [{oauth: []}]\npaths: {/items: {get: {}}}",
                &["GET /items token"],
            ),
            (
                "an alternative without scopes: any valid token",
                "paths: {/items: {get: {security: [{oauth: [a]}, {oauth: []}]}}}",
                &["GET /items token"],
            ),
            (
                "absorption: [a] or [a, b] is [a]",
                "paths: {/items: {get: {security: [{oauth: [a, b]}, {oauth: [a]}]}}}",
                &["GET /items any[a]"],
            ),
            (
                "equal alternatives and repeated scopes count once",
                "paths: {/items: {get: {security: [{oauth: [b, a, b]}, {oauth: [a, b]}]}}}",
                &["GET /items all[b,a]"],
            ),
            (
                "openIdConnect scopes count like oauth2 ones",
                "paths: {/items: {get: {security: [{oidc: [openid, read]}]}}}",
                &["GET /items all[openid,read]"],
            ),
            (
                "a defined but unused second OAuth scheme needs no --scheme",
                "paths: {/a: {get: {security: [{oauth: [a]}]}}, /b: {get: {security: []}}}",
                &["GET /a any[a]", "GET /b public"],
            ),
            (
                "every operation key, in the order written; other path item keys ignored",
                "paths:\n  /items:\n    summary: s\n    description: d\n    parameters: []\n    \
                 x-extra: 1\n    trace: {}\n    patch: {}\n    head: {}\n    options: {}\n    \
                 delete: {}\n    post: {}\n    put: {}\n    get: {}",
                &[
                    "TRACE /items token",
                    "PATCH /items token",
                    "HEAD /items token",
                    "OPTIONS /items token",
                    "DELETE /items token",
                    "POST /items token",
                    "PUT /items token",
                    "GET /items token",
                ],
            ),
            (
                "path templates keep names of template syntax, else {*}",
                "paths:\n  /items/{id}/notes/{note.id-2_x}: {get: {}}\n  /users/{user id}: {get: {}}\n  \
                 /tags/{}: {get: {}}\n  /: {get: {}}\n  /dir/: {get: {}}",
                &[
                    "GET T/items/{id}/notes/{note.id-2_x} token",
                    "GET T/users/{*} token",
                    "GET T/tags/{*} token",
                    "GET / token",
                    "GET /dir/ token",
                ],
            ),
            (
                "a literal path moves before the templates that match it",
                "paths:\n  /items/{id}: {get: {}}\n  /other: {get: {}}\n  /items/mine: {get: {}}\n  \
                 /items/{id}/x: {get: {}}\n  /{kind}/{id}/x: {get: {}}\n  /items/mine/x: {get: {}}",
                &[
                    "GET /other token",
                    "GET /items/mine token",
                    "GET T/items/{id} token",
                    "GET /items/mine/x token",
                    "GET T/items/{id}/x token",
                    "GET T/{kind}/{id}/x token",
                ],
            ),
            (
                "a template moves after the templates that are literal where it is not",
                "paths:\n  /{a}/x: {get: {}}\n  /y/{b}: {get: {}}\n  /z/{c}: {get: {}}",
                // /{a}/x takes /y/x and /z/x too, where the others are literal first.
                &[
                    "GET T/y/{b} token",
                    "GET T/z/{c} token",
                    "GET T/{a}/x token",
                ],
            ),
            (
                "paths that no request could match twice keep document order",
                "paths:\n  /z/{c}: {get: {}}\n  /y/{b}: {get: {}}\n  /b: {get: {}}\n  /a/{x}/c: {get: {}}\n  /a: {get: {}}",
                &[
                    "GET T/z/{c} token",
                    "GET T/y/{b} token",
                    "GET /b token",
                    "GET T/a/{x}/c token",
                    "GET /a token",
                ],
            ),
            (
                "the same template under other methods is no duplicate",
                "paths:\n  /items/{id}: {get: {}}\n  /items/{name}: {delete: {}}",
                &["GET T/items/{id} token", "DELETE T/items/{name} token"],
            ),
        ];
        for (label, body, want) in cases {
            let got =
                generate(body, &Options::default()).unwrap_or_else(|e| panic!("{label}: {e}"));
            assert_eq!(&operations(&got), want, "{label}");
            compile(&got, "authenticated").unwrap_or_else(|e| panic!("{label}: {e}"));
        }
    }

    #[test]
    fn what_a_rule_cannot_say_is_an_error_naming_the_operation() {
        let cases: &[(&str, &str, Options, &str)] = &[
            (
                "apiKey only",
                "paths: {/items: {get: {security: [{key: []}]}}}",
                Options::default(),
                "GET /items: a security requirement uses only \"key\" (apiKey)",
            ),
            (
                "http only, from the global security",
                "security: [{basic: []}]\npaths: {/items: {put: {}}}",
                Options::default(),
                "PUT /items: a security requirement uses only \"basic\" (http)",
            ),
            (
                "an apiKey alternative beside an OAuth one",
                "paths: {/items: {get: {security: [{oauth: [a]}, {key: []}]}}}",
                Options::default(),
                "GET /items: a security requirement uses only",
            ),
            (
                "OAuth and apiKey together",
                "paths: {/items: {get: {security: [{oauth: [a], key: []}]}}}",
                Options::default(),
                "GET /items: a security requirement needs \"oauth\" together with \"key\" (apiKey)",
            ),
            (
                "two OAuth schemes together",
                "paths: {/items: {get: {security: [{oauth: [a], oidc: [b]}]}}}",
                scheme("oauth"),
                "GET /items: a security requirement needs the OAuth schemes oauth, oidc together",
            ),
            (
                "an inexpressible mix of all-of and any-of",
                "paths: {\"/items/{id}\": {delete: {security: [{oauth: [a, b]}, {oauth: [c]}]}}}",
                Options::default(),
                "DELETE /items/{id}: the security alternatives [a, b] or [c]",
            ),
            (
                "an undefined scheme",
                "paths: {/items: {get: {security: [{nope: []}]}}}",
                Options::default(),
                "GET /items: security names \"nope\"",
            ),
            (
                "a scope no token can grant",
                "paths: {/items: {get: {security: [{oauth: [\"read items\"]}]}}}",
                Options::default(),
                "GET /items: the scope \"read items\"",
            ),
            (
                "a parameter inside a segment",
                "paths: {\"/files/{name}.json\": {get: {}}}",
                Options::default(),
                "GET /files/{name}.json: the segment \"{name}.json\" mixes text and a parameter",
            ),
            (
                "a template's shape twice for one method",
                "paths:\n  /items/{id}: {get: {}}\n  /items/{name}: {get: {}}",
                Options::default(),
                "GET /items/{name}: GET /items/{id} has the same method and path",
            ),
            (
                "a path a request never has",
                "paths: {/a//b: {get: {}}}",
                Options::default(),
                "GET /a//b: the rule path \"/a//b\" could never match",
            ),
            (
                "an encoded path",
                "paths: {/a%20b: {get: {}}}",
                Options::default(),
                "GET /a%20b: the rule path \"/a%20b\" is not in the canonical form",
            ),
            (
                "a literal star",
                "paths: {/a/*: {get: {}}}",
                Options::default(),
                "GET /a/*: the rule path \"/a/*\" holds `*`",
            ),
            (
                "a relative path",
                "paths: {items: {get: {}}}",
                Options::default(),
                "path \"items\" does not start with /",
            ),
            (
                "a path item $ref",
                "paths: {/items: {$ref: \"#/components/pathItems/items\"}}",
                Options::default(),
                "path /items: a path item $ref",
            ),
            (
                "an operation key in upper case",
                "paths: {/items: {GET: {}}}",
                Options::default(),
                "path /items: unknown field \"GET\"",
            ),
            (
                "two OAuth schemes in use without --scheme",
                "paths: {/a: {get: {security: [{oauth: [a]}]}}, /b: {get: {security: [{oidc: [b]}]}}}",
                Options::default(),
                "several OAuth 2.0 / OpenID Connect security schemes (oauth, oidc)",
            ),
            (
                "--scheme naming no scheme",
                "paths: {/a: {get: {}}}",
                scheme("nope"),
                "--scheme \"nope\": components.securitySchemes does not define it",
            ),
            (
                "--scheme naming an apiKey scheme",
                "paths: {/a: {get: {}}}",
                scheme("key"),
                "--scheme \"key\" is of type \"apiKey\"",
            ),
            (
                "with --scheme, an operation only for another OAuth scheme",
                "paths: {/a: {get: {security: [{oidc: [b]}]}}}",
                scheme("oauth"),
                "GET /a: no security requirement uses the scheme \"oauth\"",
            ),
            (
                "server variables",
                "servers: [{url: \"https://{region}.example.com/v1\"}]\npaths: {/a: {get: {}}}",
                Options::default(),
                "has variables, so its path is not known; give --base-path",
            ),
            (
                "a server URL relative to the document",
                "servers: [{url: v1}]\npaths: {/a: {get: {}}}",
                Options::default(),
                "the servers URL \"v1\" is relative",
            ),
            (
                "a base path without a leading /",
                "paths: {/a: {get: {}}}",
                base("v1"),
                "base path \"v1\": a base path starts with /",
            ),
        ];
        for (label, body, options, want) in cases {
            match generate(body, options) {
                Ok(rules) => panic!("{label}: {:?}", rules.rules()),
                Err(e) => assert!(e.to_string().contains(want), "{label}: {e}"),
            }
        }
    }

    #[test]
    fn scheme_picks_the_alternatives_for_its_tokens() {
        let body = "paths: {/a: {get: {security: [{oauth: [a]}, {oidc: [b]}]}}, \
                    /b: {get: {security: [{oidc: [c, d]}, {oauth: []}]}}}";
        for (chosen, want) in [
            ("oauth", ["GET /a any[a]", "GET /b token"]),
            ("oidc", ["GET /a any[b]", "GET /b all[c,d]"]),
        ] {
            let got = generate(body, &scheme(chosen)).expect("rules");
            assert_eq!(operations(&got), want, "--scheme {chosen}");
        }
    }

    #[test]
    fn base_path_comes_from_the_servers_or_the_option() {
        let paths = "paths:\n  /items: {get: {operationId: listItems}}\n";
        /// (label, servers, options, rules described, rule names)
        type Case<'a> = (&'a str, String, Options, &'a [&'a str], &'a [&'a str]);
        let cases: &[Case] = &[
            (
                "no servers",
                String::new(),
                Options::default(),
                &["GET /items token", "* /items deny"],
                &["listItems", "/items other methods"],
            ),
            (
                "every server, absolute URL with trailing / trimmed",
                "servers: [{url: \"https://api.example.com/v1/\"}, {url: /v2}]\n".into(),
                Options::default(),
                &[
                    "GET /v1/items token",
                    "* /v1/items deny",
                    "GET /v2/items token",
                    "* /v2/items deny",
                ],
                &[
                    "listItems /v1",
                    "/v1/items other methods",
                    "listItems /v2",
                    "/v2/items other methods",
                ],
            ),
            (
                "servers with one path count once",
                "servers: [{url: \"https://a.example/v1\"}, {url: \"https://b.example/v1/\"}]\n"
                    .into(),
                Options::default(),
                &["GET /v1/items token", "* /v1/items deny"],
                &["listItems", "/v1/items other methods"],
            ),
            (
                "the root beside a base path",
                "servers: [{url: \"https://api.example.com\"}, {url: /api}]\n".into(),
                Options::default(),
                &[
                    "GET /items token",
                    "* /items deny",
                    "GET /api/items token",
                    "* /api/items deny",
                ],
                &[
                    "listItems /",
                    "/items other methods",
                    "listItems /api",
                    "/api/items other methods",
                ],
            ),
            (
                "URL with a query",
                "servers: [{url: \"https://api.example.com?x=/y\"}]\n".into(),
                Options::default(),
                &["GET /items token", "* /items deny"],
                &["listItems", "/items other methods"],
            ),
            (
                "relative URL",
                "servers: [{url: /api/v1}]\n".into(),
                Options::default(),
                &["GET /api/v1/items token", "* /api/v1/items deny"],
                &["listItems", "/api/v1/items other methods"],
            ),
            (
                "the root",
                "servers: [{url: /}]\n".into(),
                Options::default(),
                &["GET /items token", "* /items deny"],
                &["listItems", "/items other methods"],
            ),
            (
                "--base-path wins, also over variables and several servers",
                "servers: [{url: \"https://{host}/v1\"}, {url: /v2}]\n".into(),
                base("/gw/"),
                &["GET /gw/items token", "* /gw/items deny"],
                &["listItems", "/gw/items other methods"],
            ),
            (
                "--base-path \"\" prefixes nothing",
                "servers: [{url: /v1}]\n".into(),
                base(""),
                &["GET /items token", "* /items deny"],
                &["listItems", "/items other methods"],
            ),
        ];
        for (label, servers, options, want, names) in cases {
            let got = generate(&format!("{servers}{paths}"), options)
                .unwrap_or_else(|e| panic!("{label}: {e}"));
            let described: Vec<String> = got.rules().iter().map(describe).collect();
            assert_eq!(&described, want, "{label}");
            let got_names: Vec<&str> = got.rules().iter().map(GeneratedRule::name).collect();
            assert_eq!(&got_names, names, "{label}");
            compile(&got, "authenticated").unwrap_or_else(|e| panic!("{label}: {e}"));
        }
        // A path item's servers, and an operation's, replace the document's; without an
        // operationId, several base paths name the rule by the full path.
        let body = "servers: [{url: /v1}]\npaths:\n  /a:\n    servers: [{url: /v2}]\n    \
                    get: {}\n    post: {servers: [{url: \"https://x.example/v3\"}, {url: /v4}]}\n  \
                    /b: {get: {}}";
        let got = generate(body, &Options::default()).expect("rules");
        assert_eq!(
            operations(&got),
            [
                "GET /v2/a token",
                "POST /v3/a token",
                "POST /v4/a token",
                "GET /v1/b token"
            ]
        );
        let names: Vec<&str> = got.rules().iter().map(GeneratedRule::name).collect();
        assert_eq!(
            names,
            [
                "GET /a",
                "/v2/a other methods",
                "POST /v3/a",
                "/v3/a other methods",
                "POST /v4/a",
                "/v4/a other methods",
                "GET /b",
                "/v1/b other methods"
            ]
        );
        // A second server with variables is no more known than a first one.
        match generate(
            &format!(
                "servers: [{{url: /v1}}, {{url: \"https://{{region}}.example/v2\"}}]\n{paths}"
            ),
            &Options::default(),
        ) {
            Ok(rules) => panic!("{:?}", rules.rules()),
            Err(e) => assert!(e.to_string().contains("has variables"), "{e}"),
        }
    }

    /// What `config` decides for `method` on `path`: the requirement, `"refused"` when the
    /// request is refused before any rule.
    fn decided(config: &crate::config::Config, method: &str, path: &str) -> String {
        match config.policy().resolve(method, path).route {
            Ok(route) => format!("{} {}", route.name, route.requirement),
            Err(_) => "refused".to_owned(),
        }
    }

    #[test]
    fn each_path_closes_with_a_deny_rule_after_its_operations() {
        let cases: &[(&str, &str, &[&str])] = &[
            (
                "one operation: the other methods are denied",
                "paths: {/admin/users: {get: {security: [{oauth: [admin]}]}}}",
                &["GET /admin/users any[admin]", "* /admin/users deny"],
            ),
            (
                "every operation of a path, then its closing rule",
                "paths: {/items: {get: {}, post: {}}, /other: {delete: {}}}",
                &[
                    "GET /items token",
                    "POST /items token",
                    "* /items deny",
                    "DELETE /other token",
                    "* /other deny",
                ],
            ),
            (
                "paths of one shape close once, after both",
                "paths:\n  /items/{id}: {get: {}}\n  /other: {get: {}}\n  /items/{name}: {delete: {}}",
                &[
                    "GET T/items/{id} token",
                    "DELETE T/items/{name} token",
                    "* T/items/{id} deny",
                    "GET /other token",
                    "* /other deny",
                ],
            ),
            (
                "a literal path and its closing rule before the template that matches it",
                "paths:\n  /items/{id}: {get: {}, delete: {}}\n  /items/mine: {get: {}}\n  \
                 /{kind}/{id}: {get: {}}",
                &[
                    "GET /items/mine token",
                    "* /items/mine deny",
                    "GET T/items/{id} token",
                    "DELETE T/items/{id} token",
                    "* T/items/{id} deny",
                    "GET T/{kind}/{id} token",
                    "* T/{kind}/{id} deny",
                ],
            ),
            (
                "a path and its trailing-slash twin",
                "paths:\n  /dir: {get: {}}\n  /dir/: {get: {}}",
                &[
                    "GET /dir token",
                    "* /dir deny",
                    "GET /dir/ token",
                    "* /dir/ deny",
                ],
            ),
            (
                "a path item without operations has no rules",
                "paths: {/nothing: {summary: s}, /a: {get: {}}}",
                &["GET /a token", "* /a deny"],
            ),
        ];
        for (label, body, want) in cases {
            let got =
                generate(body, &Options::default()).unwrap_or_else(|e| panic!("{label}: {e}"));
            let described: Vec<String> = got.rules().iter().map(describe).collect();
            assert_eq!(&described, want, "{label}");
            // The start-up checks (unreachable rules, conflicting readings) accept them under
            // either default.
            for default in ["deny", "authenticated", "allow"] {
                compile(&got, default).unwrap_or_else(|e| panic!("{label}, {default}: {e}"));
            }
        }

        // What the configuration then decides: the documented method as the document says,
        // every other one denied whatever the default, HEAD as the GET it stands for.
        let body = "paths:\n  /admin/users: {get: {security: [{oauth: [admin]}]}}\n  \
                    /items/{id}: {get: {security: [{oauth: [read]}]}}\n  /items/mine: {post: {}}";
        let config = compile(
            &generate(body, &Options::default()).expect("rules"),
            "authenticated",
        )
        .expect("compiles");
        for (method, path, want) in [
            (
                "GET",
                "/admin/users",
                "GET /admin/users any of scopes [admin]",
            ),
            (
                "HEAD",
                "/admin/users",
                "GET /admin/users any of scopes [admin]",
            ),
            ("POST", "/admin/users", "/admin/users other methods deny"),
            ("DELETE", "/admin/users", "/admin/users other methods deny"),
            (
                "PROPFIND",
                "/admin/users",
                "/admin/users other methods deny",
            ),
            ("GET", "/items/7", "GET /items/{id} any of scopes [read]"),
            ("PUT", "/items/7", "/items/{id} other methods deny"),
            ("POST", "/items/mine", "POST /items/mine any valid token"),
            // The literal path's closing rule comes first: stricter than the template's GET.
            ("GET", "/items/mine", "/items/mine other methods deny"),
            // Not in the document: the default decides.
            ("POST", "/elsewhere", "default any valid token"),
        ] {
            assert_eq!(decided(&config, method, path), want, "{method} {path}");
        }
    }

    #[test]
    fn merge_keys_are_applied_before_the_mapping() {
        let cases: &[(&str, &str, &[&str])] = &[
            (
                "an operation's security from an anchor",
                "x-admin-only: &adminOnly\n  security: [{oauth: [admin]}]\n\
                 security: [{oauth: [read]}]\n\
                 paths:\n  /admin/users:\n    get:\n      <<: *adminOnly\n      operationId: x\n  \
                 /pets: {get: {}}",
                &["GET /admin/users any[admin]", "GET /pets any[read]"],
            ),
            (
                "the document's security from an anchor at the root",
                "x-defaults: &defaults\n  security: [{oauth: [read]}]\n<<: *defaults\n\
                 paths: {/pets: {get: {}}}",
                &["GET /pets any[read]"],
            ),
            (
                "a list of merges, the first one's key winning",
                "x-a: &a {security: [{oauth: [a]}]}\nx-b: &b {security: [{oauth: [b]}], summary: s}\n\
                 paths: {/p: {get: {<<: [*a, *b]}}}",
                &["GET /p any[a]"],
            ),
            (
                "a key written beside the merge wins over the merged one",
                "x-admin-only: &adminOnly {security: [{oauth: [admin]}]}\n\
                 paths: {/p: {get: {<<: *adminOnly, security: [{oauth: [other]}]}}}",
                &["GET /p any[other]"],
            ),
            (
                "merges of merges",
                "x-base: &base {security: [{oauth: [admin]}]}\nx-mid: &mid {<<: *base, summary: m}\n\
                 paths: {/p: {get: {<<: *mid}}}",
                &["GET /p any[admin]"],
            ),
            (
                "operations of a path item from an anchor",
                "x-ops: &ops {get: {security: [{oauth: [read]}]}, delete: {security: [{oauth: [admin]}]}}\n\
                 paths: {/p: {<<: *ops}}",
                &["GET /p any[read]", "DELETE /p any[admin]"],
            ),
        ];
        for (label, body, want) in cases {
            let got =
                generate(body, &Options::default()).unwrap_or_else(|e| panic!("{label}: {e}"));
            assert_eq!(&operations(&got), want, "{label}");
        }
        match generate("paths: {/p: {get: {<<: 7}}}", &Options::default()) {
            Ok(rules) => panic!("a scalar merge: {:?}", rules.rules()),
            Err(e) => assert!(e.to_string().contains("(YAML)"), "{e}"),
        }
    }

    #[test]
    fn unknown_fields_of_documents_and_operations_are_errors() {
        let cases: &[(&str, &str)] = &[
            (
                "securty: [{oauth: [read]}]\npaths: {/p: {get: {}}}",
                "unknown top-level field \"securty\"",
            ),
            (
                "Security: [{oauth: [read]}]\npaths: {/p: {get: {}}}",
                "unknown top-level field \"Security\"",
            ),
            (
                "paths: {/p: {get: {securty: [{oauth: [read]}]}}}",
                "GET /p: unknown field \"securty\"",
            ),
        ];
        for (body, want) in cases {
            match generate(body, &Options::default()) {
                Ok(rules) => panic!("{body}: {:?}", rules.rules()),
                Err(e) => assert!(e.to_string().contains(want), "{body}: {e}"),
            }
        }
        // JSON has no merge keys: `<<` there is an unknown field like any other.
        let json = r#"{"openapi": "3.0.3", "paths": {"/p": {"get": {"<<": {"security": []}}}}}"#;
        match Document::parse(json) {
            Ok(_) => panic!("parsed"),
            Err(e) => assert!(
                e.to_string().contains("GET /p: unknown field \"<<\""),
                "{e}"
            ),
        }
        // Every fixed field, and extensions, are read or ignored.
        let all = "jsonSchemaDialect: d\nwebhooks: {}\ntags: []\nexternalDocs: {url: u}\nx-logo: 1\n\
                   paths:\n  /p:\n    get:\n      tags: []\n      summary: s\n      description: d\n      \
                   externalDocs: {url: u}\n      operationId: o\n      parameters: []\n      \
                   requestBody: {content: {}}\n      responses: {}\n      callbacks: {}\n      \
                   deprecated: true\n      security: []\n      servers: []\n      x-rate: 1";
        let got = generate(all, &Options::default()).expect("every fixed field");
        assert_eq!(operations(&got), ["GET /p public"]);
    }

    #[test]
    fn reads_openapi_3_0_and_3_1_in_yaml_and_json() {
        let yaml_31 = r#"
openapi: 3.1.0
jsonSchemaDialect: "https://spec.openapis.org/oas/3.1/dialect/base"
info: {title: T, version: 1.0, summary: s, license: {name: MIT, identifier: MIT}}
webhooks:
  newItem: {post: {security: [{nope: []}]}}
components:
  pathItems: {}
  securitySchemes:
    oauth: {type: oauth2, flows: {}}
security: [{oauth: [read]}]
paths:
  /items:
    get:
      responses: {"200": {description: ok}}
      requestBody: {content: {}}
"#;
        let json_30 = r#"
  {"openapi": "3.0.0", "info": {"title": "T", "version": "1"},
   "components": {"securitySchemes": {"oauth": {"type": "oauth2", "flows": {}}}},
   "paths": {"/items": {"get": {"security": [{"oauth": ["read"]}]}}}}"#;
        // YAML with the version as a number.
        let unquoted = "openapi: 3.0\ninfo: {title: T, version: 1}\npaths: {/items: {get: {}}}";
        for (label, text, want) in [
            ("3.1 YAML", yaml_31, "GET /items any[read]"),
            ("3.0 JSON", json_30, "GET /items any[read]"),
            ("unquoted version", unquoted, "GET /items token"),
        ] {
            let doc = Document::parse(text).unwrap_or_else(|e| panic!("{label}: {e}"));
            let got = rules(&doc, &Options::default()).unwrap_or_else(|e| panic!("{label}: {e}"));
            assert_eq!(operations(&got), [want], "{label}");
        }
        for (label, text, want) in [
            (
                "Swagger 2.0",
                "swagger: \"2.0\"\npaths: {}",
                "no `openapi` version field",
            ),
            ("3.2", "openapi: 3.2.0\npaths: {}", "openapi \"3.2.0\""),
            ("3.10", "openapi: 3.10.0\npaths: {}", "openapi \"3.10.0\""),
            ("bad JSON", "{\"openapi\": ", "(JSON)"),
            ("bad YAML", "openapi: [", "(YAML)"),
            (
                "duplicate path",
                "openapi: 3.0.0\npaths: {/a: {}, /a: {}}",
                "duplicate",
            ),
        ] {
            match Document::parse(text) {
                Ok(_) => panic!("{label}: parsed"),
                Err(e) => assert!(e.to_string().contains(want), "{label}: {e}"),
            }
        }
    }

    #[test]
    fn names_are_operation_ids_when_usable_else_the_operation() {
        let long = "x".repeat(80);
        let body = format!(
            "paths:\n  /a: {{get: {{operationId: listA}}, post: {{operationId: listA}}}}\n  \
             /b: {{get: {{operationId: default}}, put: {{operationId: \"rules[0]\"}}, \
             post: {{operationId: \"POST /c\"}}}}\n  /c: {{post: {{}}}}\n  \
             /{long}/a: {{get: {{}}}}\n  /{long}/b: {{get: {{}}}}\n  /d: {{get: {{operationId: \"q\\\"uote\\\\d\"}}}}"
        );
        let got = generate(&body, &Options::default()).expect("rules");
        let names: Vec<&str> = got
            .rules()
            .iter()
            .filter(|r| r.method().is_some())
            .map(GeneratedRule::name)
            .collect();
        let shortened = format!("GET /{}...", "x".repeat(MAX_RULE_NAME_BYTES - 8));
        let numbered = format!("GET /{}... #2", "x".repeat(MAX_RULE_NAME_BYTES - 11));
        assert_eq!(
            names,
            [
                "listA",
                "POST /a",
                "GET /b",
                "PUT /b",
                "POST /c",
                "POST /c #2",
                shortened.as_str(),
                numbered.as_str(),
                "q\"uote\\d",
            ]
        );
        assert!(names.iter().all(|n| n.len() <= MAX_RULE_NAME_BYTES));
        // Closing rules are named by their path, after the operations had their pick.
        let closing: Vec<&str> = got
            .rules()
            .iter()
            .filter(|r| r.method().is_none())
            .map(GeneratedRule::name)
            .collect();
        let long_closing = format!("/{}...", "x".repeat(MAX_RULE_NAME_BYTES - 4));
        let long_closing_2 = format!("/{}... #2", "x".repeat(MAX_RULE_NAME_BYTES - 7));
        assert_eq!(
            closing,
            [
                "/a other methods",
                "/b other methods",
                "/c other methods",
                long_closing.as_str(),
                long_closing_2.as_str(),
                "/d other methods",
            ]
        );
        let all: HashSet<&str> = got.rules().iter().map(GeneratedRule::name).collect();
        assert_eq!(all.len(), got.rules().len(), "unique");
    }

    #[test]
    fn rendered_rules_are_toml_tables_the_configuration_accepts() {
        let body = r#"
servers: [{url: "https://api.example.com/v1"}]
security: [{oauth: [read]}]
paths:
  /items:
    get:
      operationId: listItems
      summary: "List items\n[[rules]]\npath = \"/\"\npublic = true"
    post: {security: [{oauth: [write, audit]}], summary: "Create an item \u202e"}
  /health: {get: {security: [], operationId: "say \"hi\" \\ 'there'"}}
  /me: {get: {security: [{oauth: []}]}}
  /admin: {get: {security: [{oauth: [admin]}, {oauth: [root]}]}}
  /items/{id}: {get: {}}
  /items/mine: {get: {security: [{oauth: [mine]}]}}
"#;
        let rules = generate(body, &Options::default()).expect("rules");
        let text = render(&rules, "items.yaml", false);
        assert!(
            text.starts_with(
                "# Generated by `scopegate openapi-rules` from items.yaml (Items 1.2, OpenAPI 3.0.3).\n\
                 # Scopes of the security scheme oauth.\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "# GET /items: List items [[rules]] path = \"/\" public = true\n[[rules]]\n"
            ),
            "{text}"
        );
        assert!(text.contains("# POST /items: Create an item\n"), "{text}");
        // Only rules: every top-level key is `rules`, an array of tables.
        let parsed: toml::Table = toml::from_str(&text).expect("TOML");
        assert_eq!(parsed.keys().collect::<Vec<_>>(), ["rules"]);
        let tables = parsed["rules"].as_array().expect("array");
        // Six paths, each with its closing rule.
        assert_eq!(tables.len(), 13);
        // The literal path first, or the template would shadow it.
        assert_eq!(tables[9]["path"].as_str(), Some("/v1/items/mine"));
        assert_eq!(tables[11]["template"].as_str(), Some("/v1/items/{id}"));
        assert_eq!(
            tables[12].to_string(),
            toml::Value::Table(toml::toml! {
                name = "/v1/items/{id} other methods"
                template = "/v1/items/{id}"
                deny = true
            })
            .to_string()
        );
        assert!(
            text.contains("# /v1/items: every method the document does not list\n[[rules]]\n"),
            "{text}"
        );
        assert!(text.contains("default = \"deny\""), "{text}");
        assert!(text.contains("{file_path:path}"), "{text}");
        assert_eq!(
            tables[0].to_string(),
            toml::Value::Table(toml::toml! {
                name = "listItems"
                path = "/v1/items"
                methods = ["GET"]
                scopes = ["read"]
            })
            .to_string()
        );
        assert_eq!(tables[1]["all_scopes"].as_array().map(Vec::len), Some(2));
        assert_eq!(tables[3]["public"].as_bool(), Some(true));
        assert_eq!(tables[3]["name"].as_str(), Some(r#"say "hi" \ 'there'"#));
        assert_eq!(tables[5].as_table().map(|t| t.len()), Some(3));
        // Appended to a configuration, they compile.
        let config = format!(
            "issuer = \"https://issuer.example/\"\naudience = \"https://api.example.com\"\n\n\
             [[rules]]\npath = \"/other\"\npublic = true\n\n{text}"
        );
        let compiled = crate::config::RawConfig::from_toml(&config, "test")
            .and_then(crate::config::RawConfig::compile)
            .unwrap_or_else(|e| panic!("{e}\n{config}"));
        assert_eq!(compiled.policy().rules().len(), 14);
    }

    #[test]
    fn templates_are_written_as_template_keys() {
        let rules = generate(
            "paths: {\"/items/{id}\": {get: {security: [{oauth: [read]}]}}}",
            &Options::default(),
        )
        .expect("rules");
        let text = render(&rules, "t.yaml", true);
        let parsed: toml::Table = toml::from_str(&text).expect("TOML");
        let rule = &parsed["rules"][0];
        assert_eq!(rule["template"].as_str(), Some("/items/{id}"));
        assert!(rule.get("path").is_none());
        assert_eq!(rule["name"].as_str(), Some("GET /items/{id}"));
        assert_eq!(rule["shadow"].as_bool(), Some(true), "--shadow");
        let enforced = render(&rules, "t.yaml", false);
        assert!(!enforced.contains("shadow"), "{enforced}");
    }

    #[test]
    fn a_document_without_operations_renders_comments_only() {
        let text = render(
            &generate("paths: {}", &Options::default()).expect("rules"),
            "x",
            false,
        );
        assert!(text.lines().all(|l| l.starts_with('#')), "{text}");
        assert!(
            toml::from_str::<toml::Table>(&text)
                .expect("TOML")
                .is_empty()
        );
    }
}
