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
//!
//! The files, by concept: this one holds the errors and [`rules_from_file`]; `model` the serde
//! model of the document ([`Document`]); `mapping` the mapping to rules ([`rules`], [`Options`],
//! [`Rules`]); `render` the TOML output ([`render()`]); `tests.rs` the tables. Their public items
//! are re-exported here, so their paths are `tools::openapi::X`.

mod mapping;
mod model;
mod render;
#[cfg(test)]
mod tests;
mod text;

use std::path::Path;

pub use mapping::{Access, GeneratedRule, Options, PathRule, Rules, rules};
pub use model::Document;
pub use render::render;

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
