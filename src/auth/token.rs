//! Bearer credential extraction from `Authorization` header values (RFC 6750 §2.1, RFC 7235 §2.1).
//!
//! Grammar accepted: `credentials = auth-scheme 1*SP token68`, where the scheme is compared
//! case-insensitively with `Bearer` and `token68 = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" /
//! "+" / "/" ) *"="`. Outcomes:
//! - no `Authorization` header, or another scheme (`Basic ...`): [`CredentialsError::Missing`] /
//!   [`CredentialsError::OtherScheme`], answered 401 with no error code (RFC 6750 §3.1);
//! - anything else that is not exactly one well-formed Bearer credential: 400 `invalid_request`.

/// Whether `s` is an RFC 9110 token (§5.6.2): the grammar of auth-schemes, method names and
/// header field names.
pub fn is_http_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Longest credential accepted, in bytes. Far above any real access token; bounds the work an
/// attacker can make the verifier do before any signature check.
pub const MAX_CREDENTIALS_BYTES: usize = 16 * 1024;

/// Why no Bearer token could be taken from the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    /// No `Authorization` header.
    #[error("no Authorization header")]
    Missing,
    /// An `Authorization` header with another scheme than Bearer.
    #[error("Authorization scheme is not Bearer")]
    OtherScheme,
    /// More than one `Authorization` header.
    #[error("more than one Authorization header")]
    Multiple,
    /// `Bearer` with no token after it.
    #[error("Bearer credentials are empty")]
    Empty,
    /// The token is not token68 (spaces, commas, tabs, other characters), or the separator is not
    /// spaces.
    #[error("Bearer credentials are malformed")]
    Malformed,
    /// Longer than [`MAX_CREDENTIALS_BYTES`].
    #[error("Authorization header is too long")]
    TooLong,
    /// No credentials in any of several token sources (with only `Authorization` configured:
    /// [`CredentialsError::Missing`]).
    #[error("no credentials in any token source")]
    NoneFound,
    /// Credentials in more than one place: two token sources, one header or query parameter
    /// twice, or one cookie with two different values (RFC 6750 §2: one method per request).
    #[error("credentials in more than one place")]
    Several,
}

impl CredentialsError {
    /// Whether the request simply carried no Bearer credentials (401 without error code), as
    /// opposed to malformed ones (400 `invalid_request`).
    pub fn is_absent(self) -> bool {
        matches!(
            self,
            CredentialsError::Missing | CredentialsError::OtherScheme | CredentialsError::NoneFound
        )
    }
}

/// Returns the token from the request's `Authorization` header values (all of them, as received).
pub fn bearer_token<'a>(values: &[&'a str]) -> Result<&'a str, CredentialsError> {
    scheme_token(values, &["Bearer"])
}

/// Returns the token from the values of a header whose credentials start with one of
/// `schemes` (compared case-insensitively, as RFC 9110 §11.1 says auth-schemes are); the
/// grammar and outcomes are [`bearer_token`]'s.
pub fn scheme_token<'a>(
    values: &[&'a str],
    schemes: &[impl AsRef<str>],
) -> Result<&'a str, CredentialsError> {
    let value = match values {
        [] => return Err(CredentialsError::Missing),
        [one] => *one,
        _ => return Err(CredentialsError::Multiple),
    };
    if value.len() > MAX_CREDENTIALS_BYTES {
        return Err(CredentialsError::TooLong);
    }
    // Envoy trims optional whitespace around field values; trim here too for direct callers.
    let value = value.trim_matches([' ', '\t']);
    if value.is_empty() {
        return Err(CredentialsError::Missing);
    }
    let (scheme, rest) = match value.find([' ', '\t']) {
        Some(at) => (&value[..at], &value[at..]),
        None => (value, ""),
    };
    if !schemes
        .iter()
        .any(|accepted| scheme.eq_ignore_ascii_case(accepted.as_ref()))
    {
        return Err(CredentialsError::OtherScheme);
    }
    if rest.is_empty() {
        return Err(CredentialsError::Empty);
    }
    let token = rest.trim_start_matches(' ');
    if token.len() == rest.len() {
        // The separator is not SP (a tab, say): RFC 7235 allows only 1*SP.
        return Err(CredentialsError::Malformed);
    }
    if token.is_empty() {
        return Err(CredentialsError::Empty);
    }
    if !is_token68(token) {
        return Err(CredentialsError::Malformed);
    }
    Ok(token)
}

/// Whether `s` is an RFC 9110 token68: the characters of a compact JWS, and more.
pub(crate) fn is_token68(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use CredentialsError::*;

    #[test]
    fn bearer_grammar_table() {
        let long = format!("Bearer {}", "a".repeat(MAX_CREDENTIALS_BYTES));
        let cases: &[(&[&str], Result<&str, CredentialsError>)] = &[
            (&[], Err(Missing)),
            (&[""], Err(Missing)),
            (&["Bearer abc.def.ghi"], Ok("abc.def.ghi")),
            (&["bearer abc"], Ok("abc")),
            (&["BEARER abc"], Ok("abc")),
            (&["Bearer    abc"], Ok("abc")),
            (&["Bearer abc=="], Ok("abc==")),
            (&["Bearer a-b_c~d+e/f"], Ok("a-b_c~d+e/f")),
            (&["Basic dXNlcjpwYXNz"], Err(OtherScheme)),
            (&["Bearerabc"], Err(OtherScheme)),
            (&["Token abc"], Err(OtherScheme)),
            (&["Bearer"], Err(Empty)),
            (&["Bearer "], Err(Empty)),
            (&["Bearer\tabc"], Err(Malformed)),
            (&["Bearer abc def"], Err(Malformed)),
            (&["Bearer abc, Bearer def"], Err(Malformed)),
            (&["Bearer a=b"], Err(Malformed)),
            (&["Bearer ==="], Err(Malformed)),
            (&["Bearer ab\"c"], Err(Malformed)),
            (&["Bearer ünïcode"], Err(Malformed)),
            (&["Bearer a", "Bearer b"], Err(Multiple)),
            (&[long.as_str()], Err(TooLong)),
        ];
        for (values, want) in cases {
            assert_eq!(bearer_token(values), *want, "{values:?}");
        }
    }

    /// A list of schemes accepts any of them, in any letter case, and nothing else.
    #[test]
    fn scheme_lists() {
        let schemes = ["Bearer", "DPoP"];
        assert_eq!(scheme_token(&["dpop a.b"], &schemes), Ok("a.b"));
        assert_eq!(scheme_token(&["BEARER a.b"], &schemes), Ok("a.b"));
        assert_eq!(scheme_token(&["Basic a"], &schemes), Err(OtherScheme));
        assert_eq!(scheme_token(&["Token a"], &["token"]), Ok("a"));
    }

    #[test]
    fn absent_versus_malformed() {
        assert!(Missing.is_absent());
        assert!(OtherScheme.is_absent());
        assert!(NoneFound.is_absent());
        for e in [Multiple, Empty, Malformed, TooLong, Several] {
            assert!(!e.is_absent(), "{e:?}");
        }
    }
}
