//! Where a request's access token is read from: the configured token sources (`[[token_sources]]`),
//! tried in order, and the one rule that binds them: a request carries its credentials in one
//! place only (RFC 6750 §2).
//!
//! | source | read from | token |
//! |---|---|---|
//! | `header` with `scheme` | every value of the header | the token68 after one of the auth-schemes (case-insensitive), as [`token::scheme_token`] |
//! | `header` without `scheme` | every value of the header | the whole value, OWS trimmed |
//! | `cookie` | every `Cookie` header value, `; `-separated pairs (RFC 6265 §5.4; `,` separates too, as Envoy joins repeated headers with it) | the cookie's value, DQUOTEs around it removed |
//! | `query` | the query string, read as the policy reads it (split at `&`, `;`, `#`; percent-decoded) | the parameter's value |
//!
//! A token must be token68 (the characters of a compact JWS) and at most
//! [`MAX_CREDENTIALS_BYTES`]. A request whose credentials sit in two places (two sources, one
//! header or parameter twice, one cookie with two different values) is malformed
//! ([`CredentialsError::Several`]); identical copies of a cookie count once, since browsers send
//! a name twice for cookies of different paths. An `Authorization` value of another scheme, an
//! empty header or cookie value, and an empty parameter carry no credential.

use std::borrow::Cow;
use std::fmt;

use super::token::{self, CredentialsError, MAX_CREDENTIALS_BYTES, is_http_token};

/// The header every default configuration reads, and the only one whose denials carry an RFC
/// 6750 challenge.
pub const AUTHORIZATION: &str = "authorization";

/// One place a token may be read from. Built only by its validating constructors, so a name is
/// always one the request can carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSource {
    place: Place,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Place {
    /// A header (lower case), with the auth-schemes its value must start with, or none: the whole
    /// value is the token.
    Header {
        name: String,
        schemes: Option<Vec<String>>,
    },
    /// A cookie, by its exact (case-sensitive) name.
    Cookie(String),
    /// A query parameter, by its exact name.
    Query(String),
}

/// Why a token source cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// Not an RFC 9110 token, or one with `_` (which Envoy refuses in header names).
    #[error("a header name is an RFC 9110 token without `_`")]
    HeaderName,
    /// An auth-scheme that is not an RFC 9110 token, or an empty list of them.
    #[error("an auth-scheme is an RFC 9110 token (e.g. \"Bearer\"), and the list is not empty")]
    Scheme,
    /// Not an RFC 6265 cookie-name (an RFC 9110 token).
    #[error("a cookie name is an RFC 6265 cookie-name (an RFC 9110 token)")]
    CookieName,
    /// Empty, or with characters a query parameter name carries only percent-encoded.
    #[error(
        "a query parameter name is not empty and has no `&`, `;`, `#`, `=`, `%`, `+` or spaces"
    )]
    QueryName,
    /// The same place as an earlier source.
    #[error("the same place as token_sources[{0}]")]
    Duplicate(usize),
    /// No source at all.
    #[error("at least one token source is needed")]
    Empty,
}

impl TokenSource {
    /// The header `name` (any case; kept in lower case). `schemes`: the auth-schemes the value
    /// must start with (compared case-insensitively), or `None`: the whole value is the token.
    pub fn header(name: &str, schemes: Option<Vec<String>>) -> Result<TokenSource, SourceError> {
        if !is_http_token(name) || name.contains('_') {
            return Err(SourceError::HeaderName);
        }
        if let Some(schemes) = &schemes
            && (schemes.is_empty() || !schemes.iter().all(|s| is_http_token(s)))
        {
            return Err(SourceError::Scheme);
        }
        Ok(TokenSource {
            place: Place::Header {
                name: name.to_ascii_lowercase(),
                schemes,
            },
        })
    }

    /// The cookie `name` (case-sensitive, as RFC 6265 compares them).
    pub fn cookie(name: &str) -> Result<TokenSource, SourceError> {
        if !is_http_token(name) {
            return Err(SourceError::CookieName);
        }
        Ok(TokenSource {
            place: Place::Cookie(name.to_owned()),
        })
    }

    /// The query parameter `name`, matched as written: a parameter that names it only once
    /// percent-decoded is refused, since the proxy removing it may compare names undecoded.
    pub fn query(name: &str) -> Result<TokenSource, SourceError> {
        if name.is_empty()
            || name
                .chars()
                .any(|c| "&;#=%+".contains(c) || c.is_whitespace() || c.is_control())
        {
            return Err(SourceError::QueryName);
        }
        Ok(TokenSource {
            place: Place::Query(name.to_owned()),
        })
    }

    /// `Authorization: Bearer <token>` or `Authorization: DPoP <token>` (RFC 9449 §7.1), the
    /// default source. Which scheme a token may come under is the binding's to decide
    /// ([`crate::auth::binding::check`]): a DPoP-bound token only under `DPoP`, any other only
    /// under `Bearer`.
    pub fn authorization() -> TokenSource {
        TokenSource {
            place: Place::Header {
                name: AUTHORIZATION.to_owned(),
                schemes: Some(vec!["Bearer".to_owned(), "DPoP".to_owned()]),
            },
        }
    }

    /// `header`, `cookie` or `query`.
    pub fn kind(&self) -> &'static str {
        match self.place {
            Place::Header { .. } => "header",
            Place::Cookie(_) => "cookie",
            Place::Query(_) => "query",
        }
    }

    /// The header (lower case), cookie or parameter name.
    pub fn name(&self) -> &str {
        match &self.place {
            Place::Header { name, .. } | Place::Cookie(name) | Place::Query(name) => name,
        }
    }

    /// A header source's auth-schemes; `None` for a header read whole, a cookie or a parameter.
    pub fn schemes(&self) -> Option<&[String]> {
        match &self.place {
            Place::Header { schemes, .. } => schemes.as_deref(),
            _ => None,
        }
    }

    /// Whether this is the `Authorization` header, the only source whose denials carry an RFC
    /// 6750 challenge.
    pub fn is_authorization(&self) -> bool {
        matches!(&self.place, Place::Header { name, .. } if name == AUTHORIZATION)
    }

    /// What this source finds in the request.
    fn find<'a>(&self, request: &impl CredentialsView<'a>) -> Found<'a> {
        match &self.place {
            Place::Header { name, schemes } => {
                let mut values = Vec::new();
                for (value, utf8) in request.header(name) {
                    if !utf8 {
                        return Found::Bad(CredentialsError::Malformed);
                    }
                    values.push(value);
                }
                match schemes {
                    Some(schemes) => match token::scheme_token(&values, schemes) {
                        Ok(token) => Found::Token(Cow::Borrowed(token)),
                        Err(e) if e.is_absent() => Found::Absent(e),
                        Err(e) => Found::Bad(e),
                    },
                    None => match values.as_slice() {
                        [] => Found::Absent(CredentialsError::Missing),
                        [one] => found(Cow::Borrowed(one.trim_matches([' ', '\t']))),
                        _ => Found::Bad(CredentialsError::Several),
                    },
                }
            }
            Place::Cookie(name) => {
                let mut seen: Vec<&'a str> = Vec::new();
                for header in request.header("cookie") {
                    // `;` separates cookies (RFC 6265 §5.4); `,` too, since Envoy joins a
                    // repeated Cookie header with it in a CheckRequest's `headers`, and no
                    // cookie-value may hold one (§4.1.1).
                    for pair in header.0.split([';', ',']) {
                        let Some((key, value)) = pair.split_once('=') else {
                            continue;
                        };
                        if key.trim_matches([' ', '\t']) != name {
                            continue;
                        }
                        let value = value.trim_matches([' ', '\t']);
                        // RFC 6265 §4.1.1: a cookie-value may be wrapped in DQUOTEs.
                        let value = value
                            .strip_prefix('"')
                            .and_then(|v| v.strip_suffix('"'))
                            .unwrap_or(value);
                        if !value.is_empty() && !seen.contains(&value) {
                            seen.push(value);
                        }
                    }
                }
                match seen.as_slice() {
                    [] => Found::Absent(CredentialsError::Missing),
                    [one] => found(Cow::Borrowed(one)),
                    _ => Found::Bad(CredentialsError::Several),
                }
            }
            Place::Query(name) => {
                let Some((_, query)) = request.path().split_once('?') else {
                    return Found::Absent(CredentialsError::Missing);
                };
                let mut values = Vec::new();
                for piece in query.split(['&', ';', '#']) {
                    for (key, value) in form_urlencoded::parse(piece.as_bytes()) {
                        if key.trim() != name {
                            continue;
                        }
                        // Spelled otherwise than configured (percent-encoded, spaces around):
                        // the proxy might not remove it, so it is refused, never used.
                        let raw = piece.split('=').next().unwrap_or_default();
                        if raw != name {
                            return Found::Bad(CredentialsError::Malformed);
                        }
                        values.push(value);
                    }
                }
                match values.len() {
                    0 => Found::Absent(CredentialsError::Missing),
                    1 => match values.pop() {
                        Some(value) if value.is_empty() => Found::Absent(CredentialsError::Missing),
                        Some(value) => found(value),
                        None => Found::Absent(CredentialsError::Missing),
                    },
                    _ => Found::Bad(CredentialsError::Several),
                }
            }
        }
    }
}

impl fmt::Display for TokenSource {
    /// As `check-config` prints it: `header authorization (scheme Bearer)`, `cookie at`,
    /// `query access_token`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.place {
            Place::Header {
                name,
                schemes: Some(schemes),
            } => write!(f, "header {name} (scheme {})", schemes.join(", ")),
            Place::Header {
                name,
                schemes: None,
            } => write!(f, "header {name} (the whole value)"),
            Place::Cookie(name) => write!(f, "cookie {name}"),
            Place::Query(name) => write!(f, "query {name}"),
        }
    }
}

/// What one source found.
enum Found<'a> {
    /// Nothing it reads as a credential (the error says what, for the 401's message).
    Absent(CredentialsError),
    /// A well-formed token.
    Token(Cow<'a, str>),
    /// A credential, malformed.
    Bad(CredentialsError),
}

/// `value` as a token: at most [`MAX_CREDENTIALS_BYTES`], token68; an empty one is no
/// credential.
fn found(value: Cow<'_, str>) -> Found<'_> {
    if value.is_empty() {
        Found::Absent(CredentialsError::Missing)
    } else if value.len() > MAX_CREDENTIALS_BYTES {
        Found::Bad(CredentialsError::TooLong)
    } else if !token::is_token68(&value) {
        Found::Bad(CredentialsError::Malformed)
    } else {
        Found::Token(value)
    }
}

/// What extraction reads of a request: header values by lower-case name (each with whether it
/// was valid UTF-8; one that was not is read lossily) and the path with its query.
pub trait CredentialsView<'a> {
    /// Every value of the header `name` (lower case), in order, with whether it was UTF-8.
    fn header(&self, name: &str) -> Vec<(&'a str, bool)>;
    /// The request target as sent, query included.
    fn path(&self) -> &'a str;
}

/// The outcome of extraction: the token, or why there is none, and the source it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extracted<'a> {
    /// The one token, or why the request has none (absent → 401, malformed → 400).
    pub token: Result<Cow<'a, str>, CredentialsError>,
    /// The index of the source the token (or the one malformed credential) came from; `None`
    /// when no source or several carried one.
    pub source: Option<usize>,
}

/// The configured token sources, in order: at least one, no two the same place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSources {
    sources: Vec<TokenSource>,
}

impl Default for TokenSources {
    /// `Authorization: Bearer` only.
    fn default() -> Self {
        TokenSources {
            sources: vec![TokenSource::authorization()],
        }
    }
}

impl TokenSources {
    /// `sources`, in order; an error names the index at fault.
    pub fn new(sources: Vec<TokenSource>) -> Result<TokenSources, (usize, SourceError)> {
        if sources.is_empty() {
            return Err((0, SourceError::Empty));
        }
        for (i, source) in sources.iter().enumerate() {
            let same = |other: &TokenSource| {
                other.kind() == source.kind() && other.name() == source.name()
            };
            if let Some(earlier) = sources[..i].iter().position(same) {
                return Err((i, SourceError::Duplicate(earlier)));
            }
        }
        Ok(TokenSources { sources })
    }

    /// The sources, in order.
    pub fn iter(&self) -> impl Iterator<Item = &TokenSource> {
        self.sources.iter()
    }

    /// The names of the query parameters that carry tokens: removed from every allowed request.
    pub fn query_names(&self) -> impl Iterator<Item = &str> {
        self.sources.iter().filter_map(|s| match &s.place {
            Place::Query(name) => Some(name.as_str()),
            _ => None,
        })
    }

    /// The names of the headers that carry tokens.
    pub fn header_names(&self) -> impl Iterator<Item = &str> {
        self.sources.iter().filter_map(|s| match &s.place {
            Place::Header { name, .. } => Some(name.as_str()),
            _ => None,
        })
    }

    /// Whether a denial of a request whose credential came from `source` (as [`Extracted`]
    /// says) carries an RFC 6750 challenge: only for the `Authorization` source, or, when no
    /// single source is known, whenever `Authorization` is one of the sources (the client may
    /// be meant to use it).
    pub fn challenges(&self, source: Option<usize>) -> bool {
        match source.and_then(|i| self.sources.get(i)) {
            Some(source) => source.is_authorization(),
            None => self.sources.iter().any(TokenSource::is_authorization),
        }
    }

    /// The one credential `request` carries. Pure.
    pub fn extract<'a>(&self, request: &impl CredentialsView<'a>) -> Extracted<'a> {
        // With `Authorization` alone, the 401 says what it always said.
        let mut absent = match self.sources.as_slice() {
            [only] if only.is_authorization() => CredentialsError::Missing,
            _ => CredentialsError::NoneFound,
        };
        let mut present: Option<(usize, Result<Cow<'a, str>, CredentialsError>)> = None;
        for (i, source) in self.sources.iter().enumerate() {
            let outcome = match source.find(request) {
                Found::Absent(why) => {
                    // "another scheme" says more than "none" in the 401's message.
                    if why == CredentialsError::OtherScheme {
                        absent = why;
                    }
                    continue;
                }
                Found::Token(token) => Ok(token),
                Found::Bad(why) => Err(why),
            };
            if present.is_some() {
                return Extracted {
                    token: Err(CredentialsError::Several),
                    source: None,
                };
            }
            present = Some((i, outcome));
        }
        match present {
            Some((i, token)) => Extracted {
                token,
                source: Some(i),
            },
            None => Extracted {
                token: Err(absent),
                source: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CredentialsError::*;

    struct View<'a> {
        headers: Vec<(&'a str, &'a str, bool)>,
        path: &'a str,
    }

    impl<'a> CredentialsView<'a> for View<'a> {
        fn header(&self, name: &str) -> Vec<(&'a str, bool)> {
            self.headers
                .iter()
                .filter(|(n, _, _)| *n == name)
                .map(|(_, v, utf8)| (*v, *utf8))
                .collect()
        }
        fn path(&self) -> &'a str {
            self.path
        }
    }

    fn view<'a>(path: &'a str, headers: &[(&'a str, &'a str)]) -> View<'a> {
        View {
            headers: headers.iter().map(|(n, v)| (*n, *v, true)).collect(),
            path,
        }
    }

    fn sources() -> TokenSources {
        TokenSources::new(vec![
            TokenSource::authorization(),
            TokenSource::header("X-Api-Token", None).unwrap(),
            TokenSource::cookie("at").unwrap(),
            TokenSource::query("access_token").unwrap(),
        ])
        .unwrap()
    }

    /// Every source alone, duplicates within one, several at once, and the grammar of each.
    #[test]
    fn extraction_table() {
        let long = format!("x-api-token={}", "a".repeat(MAX_CREDENTIALS_BYTES + 1));
        let long = long.split_once('=').unwrap().1;
        type Case<'a> = (
            &'a str,
            &'a [(&'a str, &'a str)],
            Result<&'a str, CredentialsError>,
            Option<usize>,
        );
        let cases: &[Case<'_>] = &[
            ("/", &[], Err(NoneFound), None),
            (
                "/",
                &[("authorization", "Bearer a.b.c")],
                Ok("a.b.c"),
                Some(0),
            ),
            (
                "/",
                &[("authorization", "bearer a.b.c")],
                Ok("a.b.c"),
                Some(0),
            ),
            (
                "/",
                &[("authorization", "Basic dXNlcg==")],
                Err(OtherScheme),
                None,
            ),
            // Another scheme carries no token of ours: the cookie is the one credential.
            (
                "/",
                &[("authorization", "Basic dXNlcg=="), ("cookie", "at=t.u.v")],
                Ok("t.u.v"),
                Some(2),
            ),
            (
                "/",
                &[("authorization", "Bearer a b")],
                Err(Malformed),
                Some(0),
            ),
            (
                "/",
                &[("authorization", "Bearer a"), ("authorization", "Bearer a")],
                Err(Multiple),
                Some(0),
            ),
            ("/", &[("x-api-token", "a.b.c")], Ok("a.b.c"), Some(1)),
            ("/", &[("x-api-token", "  a.b.c\t")], Ok("a.b.c"), Some(1)),
            ("/", &[("x-api-token", "")], Err(NoneFound), None),
            (
                "/",
                &[("x-api-token", "Bearer a.b.c")],
                Err(Malformed),
                Some(1),
            ),
            ("/", &[("x-api-token", "a,b")], Err(Malformed), Some(1)),
            ("/", &[("x-api-token", long)], Err(TooLong), Some(1)),
            (
                "/",
                &[("x-api-token", "a"), ("x-api-token", "a")],
                Err(Several),
                Some(1),
            ),
            ("/", &[("cookie", "at=a.b.c")], Ok("a.b.c"), Some(2)),
            (
                "/",
                &[("cookie", "x=1; at=a.b.c; y=2")],
                Ok("a.b.c"),
                Some(2),
            ),
            ("/", &[("cookie", "x=1;at=a.b.c")], Ok("a.b.c"), Some(2)),
            // Two Cookie headers as Envoy's `headers` map joins them.
            ("/", &[("cookie", "x=1,at=a.b.c")], Ok("a.b.c"), Some(2)),
            ("/", &[("cookie", "at=a,at=b")], Err(Several), Some(2)),
            ("/", &[("cookie", "at=\"a.b.c\"")], Ok("a.b.c"), Some(2)),
            (
                "/",
                &[("cookie", "x=1"), ("cookie", "at=a.b.c")],
                Ok("a.b.c"),
                Some(2),
            ),
            // Path-scoped cookies: the same value twice counts once, two values are two.
            ("/", &[("cookie", "at=a; at=a")], Ok("a"), Some(2)),
            (
                "/",
                &[("cookie", "at=a"), ("cookie", "at=a")],
                Ok("a"),
                Some(2),
            ),
            ("/", &[("cookie", "at=a; at=b")], Err(Several), Some(2)),
            (
                "/",
                &[("cookie", "at=a"), ("cookie", "at=b")],
                Err(Several),
                Some(2),
            ),
            // Names are case-sensitive and whole; an empty cookie carries nothing.
            ("/", &[("cookie", "AT=a; xat=b; at")], Err(NoneFound), None),
            ("/", &[("cookie", "at=")], Err(NoneFound), None),
            ("/", &[("cookie", "at=; at=a")], Ok("a"), Some(2)),
            ("/", &[("cookie", "at=a\"b")], Err(Malformed), Some(2)),
            ("/?access_token=a.b.c", &[], Ok("a.b.c"), Some(3)),
            ("/?x=1&access_token=a.b.c&y", &[], Ok("a.b.c"), Some(3)),
            ("/?access_token=a%2Eb.c", &[], Ok("a.b.c"), Some(3)),
            ("/?access_token=", &[], Err(NoneFound), None),
            (
                "/?access_token=a&access_token=a",
                &[],
                Err(Several),
                Some(3),
            ),
            (
                "/?access_token=a;access_token=b",
                &[],
                Err(Several),
                Some(3),
            ),
            ("/?access_token=a+b", &[], Err(Malformed), Some(3)),
            // Spelled otherwise: a proxy removing `access_token` might leave it upstream.
            ("/?%61ccess_token=a", &[], Err(Malformed), Some(3)),
            (
                "/?access_tokens=a&xaccess_token=b",
                &[],
                Err(NoneFound),
                None,
            ),
            // Two places at once: 400, whichever they are.
            (
                "/?access_token=a",
                &[("authorization", "Bearer a")],
                Err(Several),
                None,
            ),
            (
                "/",
                &[("authorization", "Bearer a"), ("cookie", "at=a")],
                Err(Several),
                None,
            ),
            (
                "/",
                &[("x-api-token", "a"), ("authorization", "Bearer b c")],
                Err(Several),
                None,
            ),
        ];
        let sources = sources();
        for (path, headers, want, source) in cases {
            let got = sources.extract(&view(path, headers));
            assert_eq!(got.token.as_deref(), want.as_deref(), "{path} {headers:?}");
            // A duplicate within one source is that source's malformed credential.
            assert_eq!(got.source, *source, "{path} {headers:?}");
        }
    }

    /// A credential header that is not UTF-8 is malformed; a cookie header that is not is read
    /// lossily, so only our cookie's own bytes matter.
    #[test]
    fn bytes_that_are_not_utf8() {
        let sources = sources();
        let bad = View {
            headers: vec![("x-api-token", "a\u{fffd}", false)],
            path: "/",
        };
        assert_eq!(sources.extract(&bad).token, Err(Malformed));
        let other_cookie = View {
            headers: vec![("cookie", "x=\u{fffd}; at=a.b.c", false)],
            path: "/",
        };
        assert_eq!(sources.extract(&other_cookie).token.as_deref(), Ok("a.b.c"));
    }

    /// With `Authorization` alone (the default), no credentials is `Missing`, as always.
    #[test]
    fn the_default_source_keeps_its_messages() {
        let default = TokenSources::default();
        assert_eq!(default.extract(&view("/", &[])).token, Err(Missing));
        assert_eq!(
            default
                .extract(&view("/", &[("authorization", "Basic dTpw")]))
                .token,
            Err(OtherScheme)
        );
        assert_eq!(
            default.extract(&view("/", &[("cookie", "at=a")])).token,
            Err(Missing)
        );
    }

    #[test]
    fn challenges_only_for_the_authorization_source() {
        let sources = sources();
        assert!(sources.challenges(Some(0)));
        for i in 1..4 {
            assert!(!sources.challenges(Some(i)), "{i}");
        }
        assert!(sources.challenges(None));
        let cookie_only = TokenSources::new(vec![TokenSource::cookie("at").unwrap()]).unwrap();
        assert!(!cookie_only.challenges(None));
        assert!(TokenSources::default().challenges(None));
    }

    #[test]
    fn names_are_validated() {
        assert_eq!(
            TokenSource::header("x_api", None),
            Err(SourceError::HeaderName)
        );
        assert_eq!(
            TokenSource::header("x api", None),
            Err(SourceError::HeaderName)
        );
        assert_eq!(
            TokenSource::header("authorization", Some(vec![])),
            Err(SourceError::Scheme)
        );
        assert_eq!(
            TokenSource::header("authorization", Some(vec!["Bearer x".into()])),
            Err(SourceError::Scheme)
        );
        assert_eq!(TokenSource::cookie("a=b"), Err(SourceError::CookieName));
        assert_eq!(TokenSource::cookie(""), Err(SourceError::CookieName));
        assert_eq!(TokenSource::cookie("a;b"), Err(SourceError::CookieName));
        for bad in ["", "a&b", "a=b", "a%62", "a b", "a+b", "a#"] {
            assert_eq!(
                TokenSource::query(bad),
                Err(SourceError::QueryName),
                "{bad}"
            );
        }
        let h = TokenSource::header("X-Api-Token", None).unwrap();
        assert_eq!(h.name(), "x-api-token");
        assert_eq!(
            TokenSources::new(vec![h.clone(), h]),
            Err((1, SourceError::Duplicate(0)))
        );
        assert_eq!(TokenSources::new(vec![]), Err((0, SourceError::Empty)));
        // A cookie and a parameter may share a name: they are different places.
        assert!(
            TokenSources::new(vec![
                TokenSource::cookie("t").unwrap(),
                TokenSource::query("t").unwrap()
            ])
            .is_ok()
        );
    }

    #[test]
    fn display_as_check_config_prints_it() {
        let printed: Vec<String> = sources().iter().map(ToString::to_string).collect();
        assert_eq!(
            printed,
            [
                "header authorization (scheme Bearer, DPoP)",
                "header x-api-token (the whole value)",
                "cookie at",
                "query access_token",
            ]
        );
    }
}
