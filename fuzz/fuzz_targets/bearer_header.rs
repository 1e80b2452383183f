//! Fuzzes `scopegate::auth::token::bearer_token`, the first code that reads attacker-controlled request
//! bytes on every `Check`.
//!
//! Input: the bytes are cut into `Authorization` header values at NUL bytes; a trailing NUL ends
//! the last value rather than starting an empty one, so every list of values, `[]` and `[""]`
//! included, has an encoding. Inputs with a value that is not UTF-8 are skipped: the service
//! refuses such a header before it calls the parser.
//!
//! Properties:
//! - no panic, whatever the values;
//! - an accepted token is non-empty, token68, and a slice of the one header value given, so the
//!   verifier only ever sees bytes the client sent, in the only syntax RFC 6750 allows;
//! - the result, error kind included, equals that of the independent reading of the grammar in
//!   [`reference`], because the error kind decides between a 401 and a 400 `invalid_request`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scopegate::auth::token::{CredentialsError, MAX_CREDENTIALS_BYTES, bearer_token};

fuzz_target!(|data: &[u8]| {
    let Some(values) = header_values(data) else {
        return;
    };
    let result = bearer_token(&values);
    if let Ok(token) = result {
        assert!(!token.is_empty(), "accepted an empty token from {values:?}");
        assert!(
            is_token68(token),
            "accepted a token that is not token68: {token:?}"
        );
        assert!(
            values.iter().any(|value| is_slice_of(token, value)),
            "token {token:?} is not part of any header value in {values:?}"
        );
    }
    assert_eq!(
        result,
        reference(&values),
        "bearer_token and the reference grammar disagree on {values:?}"
    );
});

/// Cuts the input into header values (see the module documentation); `None` if one is not UTF-8.
fn header_values(data: &[u8]) -> Option<Vec<&str>> {
    if data.is_empty() {
        return Some(Vec::new());
    }
    let data = data.strip_suffix(&[0]).unwrap_or(data);
    data.split(|b| *b == 0)
        .map(|value| std::str::from_utf8(value).ok())
        .collect()
}

/// `credentials = auth-scheme 1*SP token68` (RFC 7235 §2.1) with optional whitespace around the
/// field value, written as a scan over bytes rather than with the string searches the parser
/// uses, so that a slip in either shows up as a disagreement.
fn reference<'a>(values: &[&'a str]) -> Result<&'a str, CredentialsError> {
    let value = match values {
        [] => return Err(CredentialsError::Missing),
        [value] => *value,
        _ => return Err(CredentialsError::Multiple),
    };
    if value.len() > MAX_CREDENTIALS_BYTES {
        return Err(CredentialsError::TooLong);
    }
    let bytes = value.as_bytes();
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let Some(start) = bytes.iter().position(|b| !is_ows(b)) else {
        return Err(CredentialsError::Missing);
    };
    // Both ends sit next to ASCII whitespace or at the ends of the value, so they are char
    // boundaries and the slicing below cannot panic.
    let end = bytes
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    let field = &value[start..end];
    let scheme_len = field.bytes().take_while(|b| !is_ows(b)).count();
    if !field[..scheme_len].eq_ignore_ascii_case("bearer") {
        return Err(CredentialsError::OtherScheme);
    }
    let after_scheme = &field[scheme_len..];
    if after_scheme.is_empty() {
        return Err(CredentialsError::Empty);
    }
    let spaces = after_scheme.bytes().take_while(|b| *b == b' ').count();
    if spaces == 0 {
        return Err(CredentialsError::Malformed);
    }
    let token = &after_scheme[spaces..];
    if token.is_empty() {
        return Err(CredentialsError::Empty);
    }
    if !is_token68(token) {
        return Err(CredentialsError::Malformed);
    }
    Ok(token)
}

/// `token68 = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="` (RFC 7235 §2.1).
fn is_token68(s: &str) -> bool {
    let bytes = s.as_bytes();
    let body = bytes
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(b))
        .count();
    body > 0 && bytes[body..].iter().all(|b| *b == b'=')
}

/// Whether `part` lies inside `whole`'s memory: a borrowed slice, not merely equal text.
fn is_slice_of(part: &str, whole: &str) -> bool {
    let (part_at, whole_at) = (part.as_ptr() as usize, whole.as_ptr() as usize);
    part_at >= whole_at && part_at + part.len() <= whole_at + whole.len()
}
