//! Request-path canonicalisation for route matching.
//!
//! Policy: **decode what is harmless, refuse what is ambiguous.** A path reaches the matcher only
//! in a form that every reasonable upstream reads the same way, so no spelling of a path can dodge
//! the rule that its canonical form matches.
//!
//! - The query (`?...`) and fragment (`#...`) are cut off.
//! - Percent-encoded octets are decoded (`/%61dmin` matches `/admin`); the result must be UTF-8.
//! - Refused (400 `invalid_request`): a path that does not start with `/`; a malformed `%` escape;
//!   an encoded `/`, `\` or `%` (`%2F`, `%5C`, `%25`: upstreams disagree on whether to decode them,
//!   or decode twice); a raw `\`; control characters; `;` (path parameters, which some servers
//!   strip before routing); empty segments (`//`); dot segments (`.`, `..`, also when encoded);
//!   paths over [`MAX_PATH_BYTES`].
//!
//! Matching is case-sensitive. The readings an upstream may apply on top of this form (letter
//! case, trailing characters, format suffixes, Unicode compatibility forms) depend on the rules,
//! so [`super::Policy::route`] checks them, and refuses there a path whose compatibility form
//! gains a delimiter. Envoy's own `normalize_path`/`merge_slashes` options, where
//! enabled, run before ext_authz and make most of these refusals unreachable in practice.

use std::fmt;

/// Longest path accepted, in bytes (before decoding).
pub const MAX_PATH_BYTES: usize = 8 * 1024;

/// A request path in canonical, decoded form. Only [`normalize`] builds one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestPath(String);

impl RequestPath {
    /// The canonical path.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Does not start with `/` (includes an empty path).
    #[error("request path is not absolute")]
    NotAbsolute,
    /// A `%` not followed by two hex digits.
    #[error("request path has a malformed percent-encoding")]
    BadEscape,
    /// `%2F`, `%5C`, `%25`, `%3F` or `%23`.
    #[error("request path has an encoded /, \\, %, ? or #")]
    EncodedSeparator,
    /// A raw backslash.
    #[error("request path contains a backslash")]
    Backslash,
    /// A control character, raw or encoded.
    #[error("request path contains a control character")]
    ControlCharacter,
    /// `;` path parameters, raw or encoded.
    #[error("request path contains a path parameter (;)")]
    PathParameter,
    /// Decoded bytes are not UTF-8.
    #[error("request path is not valid UTF-8")]
    NotUtf8,
    /// `//` somewhere in the path.
    #[error("request path has an empty segment")]
    EmptySegment,
    /// A `.` or `..` segment.
    #[error("request path has a dot segment")]
    DotSegment,
    /// Longer than [`MAX_PATH_BYTES`].
    #[error("request path is too long")]
    TooLong,
    /// Reaches a different requirement when letter case is ignored, ASCII or Unicode (see
    /// [`super::Policy::route`]).
    #[error("request path differs from a configured route only in letter case")]
    CaseVariant,
    /// Reaches a different requirement with one trailing `/` added or removed, or trailing dots
    /// or whitespace removed (see [`super::Policy::route`]).
    #[error("request path differs from a configured route only in a trailing slash, dot or space")]
    TrailingVariant,
    /// The method reaches a different requirement when letter case is ignored (methods are
    /// case-sensitive; see [`super::Policy::route`]).
    #[error("request method differs from a configured rule's only in letter case")]
    MethodCaseVariant,
    /// A method override (`X-HTTP-Method-Override`, `X-HTTP-Method`, `X-Method-Override`, a
    /// `_method` query parameter) names a method that reaches a different requirement, or is
    /// refused (see [`super::Policy::resolve_request`]).
    #[error("request carries a method override that a configured rule decides differently")]
    MethodOverride,
    /// Several method overrides, a comma list, or a value that is not an RFC 9110 token.
    #[error("request carries several method overrides, or one that is not a method name")]
    BadMethodOverride,
    /// A `POST` with a form body, which may carry a `_method` field scopegate cannot see, on a
    /// path whose rules differ by method.
    #[error(
        "request is a form POST (its body may carry a _method override) to a path whose rules \
         differ by method"
    )]
    FormMethodOverride,
    /// The method is not an RFC 9110 token (empty, or with spaces, control characters, `/` and
    /// the like): no HTTP client sends one, and it could only reach a rule that names no method.
    #[error("request method is not an HTTP token")]
    MethodNotToken,
    /// Reaches a different requirement without a format suffix on its last segment (`.json`,
    /// `.xml`: any `.` and ASCII letters and digits), alone or with a trailing reading (see
    /// [`super::Policy::route`]).
    #[error("request path differs from a configured route only in a format suffix")]
    FormatVariant,
    /// Reaches a different requirement in its Unicode compatibility form (NFKC: fullwidth
    /// `／ｓecret` is `/secret`), alone or with the other readings (see [`super::Policy::route`]).
    #[error("request path differs from a configured route only in Unicode compatibility form")]
    CompatibilityVariant,
    /// Its Unicode compatibility form (NFKC) holds a `/`, `\`, `%`, `?`, `#` or `;` the path
    /// does not, or a dot segment (`／`, `＼`, `．．`, `‥`): an upstream that folds it would route
    /// a different path, so it is refused whatever the rules (see [`super::Policy::route`]).
    #[error("request path gains a delimiter or dot segment in Unicode compatibility form")]
    CompatibilityDelimiter,
}

/// Canonicalises `raw` (the `:path` as Envoy saw it, query included) or says why it is refused.
pub fn normalize(raw: &str) -> Result<RequestPath, PathError> {
    let path = raw.split(['?', '#']).next().unwrap_or_default();
    if path.len() > MAX_PATH_BYTES {
        return Err(PathError::TooLong);
    }
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let (byte, was_encoded) = if b == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(PathError::BadEscape)?;
            let hex = std::str::from_utf8(hex).map_err(|_| PathError::BadEscape)?;
            let value = u8::from_str_radix(hex, 16).map_err(|_| PathError::BadEscape)?;
            i += 3;
            (value, true)
        } else {
            i += 1;
            (b, false)
        };
        match byte {
            // An encoded `?` or `#` would end the path for anything that decodes and then
            // splits again (`/admin%23x` read as `/admin`), so it is as ambiguous as `%2F`.
            b'/' | b'%' | b'?' | b'#' if was_encoded => return Err(PathError::EncodedSeparator),
            b'\\' if was_encoded => return Err(PathError::EncodedSeparator),
            b'\\' => return Err(PathError::Backslash),
            b';' => return Err(PathError::PathParameter),
            0..=0x1f | 0x7f => return Err(PathError::ControlCharacter),
            _ => decoded.push(byte),
        }
    }
    let decoded = String::from_utf8(decoded).map_err(|_| PathError::NotUtf8)?;
    let segments: Vec<&str> = decoded[1..].split('/').collect();
    let last = segments.len() - 1;
    for (index, segment) in segments.iter().enumerate() {
        match *segment {
            // A trailing slash (`/a/`) or the root (`/`) leaves one empty last segment.
            "" if index == last => {}
            "" => return Err(PathError::EmptySegment),
            "." | ".." => return Err(PathError::DotSegment),
            _ => {}
        }
    }
    Ok(RequestPath(decoded))
}

#[cfg(test)]
mod tests {
    use super::*;
    use PathError::*;

    #[test]
    fn normalize_table() {
        // SECURITY.md's Limits table says 8 KiB.
        assert_eq!(MAX_PATH_BYTES, 8 * 1024);
        let long = format!("/{}", "a".repeat(MAX_PATH_BYTES));
        let cases: &[(&str, Result<&str, PathError>)] = &[
            ("/", Ok("/")),
            ("/restricted_resource", Ok("/restricted_resource")),
            (
                "/restricted_resource?x=1&y=/../",
                Ok("/restricted_resource"),
            ),
            ("/a/b/", Ok("/a/b/")),
            ("/a#frag", Ok("/a")),
            ("/%61dmin", Ok("/admin")),
            ("/caf%C3%A9", Ok("/café")),
            ("/a%20b", Ok("/a b")),
            ("/ADMIN", Ok("/ADMIN")),
            ("", Err(NotAbsolute)),
            ("admin", Err(NotAbsolute)),
            ("*", Err(NotAbsolute)),
            ("?/admin", Err(NotAbsolute)),
            ("/a%2", Err(BadEscape)),
            ("/a%zz", Err(BadEscape)),
            ("/a%2Fb", Err(EncodedSeparator)),
            ("/a%2fb", Err(EncodedSeparator)),
            ("/a%5Cb", Err(EncodedSeparator)),
            ("/a%252Fb", Err(EncodedSeparator)),
            ("/admin%23x", Err(EncodedSeparator)),
            ("/admin%3fx=1", Err(EncodedSeparator)),
            ("/%3F", Err(EncodedSeparator)),
            ("/a\\b", Err(Backslash)),
            ("/a\tb", Err(ControlCharacter)),
            ("/a%00b", Err(ControlCharacter)),
            ("/a%0d%0ab", Err(ControlCharacter)),
            ("/admin;jsessionid=1", Err(PathParameter)),
            ("/admin%3B", Err(PathParameter)),
            ("/a%FFb", Err(NotUtf8)),
            ("//admin", Err(EmptySegment)),
            ("/public//admin", Err(EmptySegment)),
            ("/public/../admin", Err(DotSegment)),
            ("/public/%2e%2e/admin", Err(DotSegment)),
            ("/./admin", Err(DotSegment)),
            ("/admin/.", Err(DotSegment)),
            ("/admin/%2E", Err(DotSegment)),
            (long.as_str(), Err(TooLong)),
        ];
        for (raw, want) in cases {
            let got = normalize(raw);
            assert_eq!(
                got.as_ref().map(RequestPath::as_str),
                want.as_ref().map(|s| *s),
                "{raw:?}"
            );
        }
    }
}
