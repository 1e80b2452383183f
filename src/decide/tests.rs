use super::*;

#[test]
fn challenge_values_are_quoted_strings() {
    assert_eq!(
        challenge("scopegate", "invalid_token", "token has expired", None),
        r#"Bearer realm="scopegate", error="invalid_token", error_description="token has expired""#
    );
    assert_eq!(
        challenge("a\"b\\c", "e", "line\nbreak", Some("x y")),
        r#"Bearer realm="a\"b\\c", error="e", error_description="line break", scope="x y""#
    );
}
