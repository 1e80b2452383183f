use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::*;

fn expect() -> Expectations {
    Expectations {
        issuer: "https://issuer.example/".into(),
        audiences: vec!["api".into(), "other".into()],
        leeway_seconds: 60,
        algorithms: vec![Algorithm::RS256],
        token_types: None,
        scope_claims: vec!["scope".into(), "scp".into()],
        forward_claims: Vec::new(),
        retain_claims: Vec::new(),
    }
}

fn claims(json: &str) -> Claims {
    parse_claims(json.as_bytes(), &expect().scope_claims, &[], &[]).expect("test claims parse")
}

#[test]
fn algorithm_names_are_case_sensitive_and_closed() {
    for (name, want) in [
        ("RS256", Some(Algorithm::RS256)),
        ("PS512", Some(Algorithm::PS512)),
        ("rs256", None),
        ("none", None),
        ("HS256", None),
        ("", None),
    ] {
        assert_eq!(name.parse::<Algorithm>().ok(), want, "{name}");
    }
}

#[test]
fn claim_checks_table() {
    let now = 1_000_000;
    let cases: &[(&str, Result<(), VerifyError>)] = &[
        (
            r#"{"iss":"https://issuer.example/","aud":"api","exp":1000100}"#,
            Ok(()),
        ),
        (
            r#"{"iss":"https://issuer.example/","aud":["x","other"],"exp":1000100}"#,
            Ok(()),
        ),
        (
            r#"{"iss":"https://issuer.example/","aud":"api"}"#,
            Err(VerifyError::MissingExpiry),
        ),
        // leeway: 60 s past exp is still accepted, 61 s is not
        (
            r#"{"iss":"https://issuer.example/","aud":"api","exp":999940}"#,
            Ok(()),
        ),
        (
            r#"{"iss":"https://issuer.example/","aud":"api","exp":999939}"#,
            Err(VerifyError::Expired),
        ),
        (
            r#"{"iss":"https://issuer.example/","aud":"api","exp":1000100,"nbf":1000060}"#,
            Ok(()),
        ),
        (
            r#"{"iss":"https://issuer.example/","aud":"api","exp":1000100,"nbf":1000061}"#,
            Err(VerifyError::NotYetValid),
        ),
        (
            r#"{"iss":"https://issuer.example","aud":"api","exp":1000100}"#,
            Err(VerifyError::WrongIssuer),
        ),
        (
            r#"{"iss":"HTTPS://issuer.example/","aud":"api","exp":1000100}"#,
            Err(VerifyError::WrongIssuer),
        ),
        (
            r#"{"aud":"api","exp":1000100}"#,
            Err(VerifyError::WrongIssuer),
        ),
        (
            r#"{"iss":"https://issuer.example/","aud":"API","exp":1000100}"#,
            Err(VerifyError::WrongAudience),
        ),
        (
            r#"{"iss":"https://issuer.example/","aud":[],"exp":1000100}"#,
            Err(VerifyError::WrongAudience),
        ),
        (
            r#"{"iss":"https://issuer.example/","exp":1000100}"#,
            Err(VerifyError::WrongAudience),
        ),
        // Identity that cannot be forwarded as a header value.
        (
            r#"{"iss":"https://issuer.example/","aud":"api","exp":1000100,"sub":"a\r\nx-admin: 1"}"#,
            Err(VerifyError::ControlCharacterInClaim),
        ),
        (
            r#"{"iss":"https://issuer.example/","aud":"api","exp":1000100,"sub":"a\u0000"}"#,
            Err(VerifyError::ControlCharacterInClaim),
        ),
        (
            r#"{"iss":"https://issuer.example/","aud":"api","exp":1000100,"sub":"zoë","scope":"read"}"#,
            Ok(()),
        ),
        // A zero-width joiner holds emoji sequences together; it stays allowed.
        (
            r#"{"iss":"https://issuer.example/","aud":"api","exp":1000100,"sub":"a\u200db c"}"#,
            Ok(()),
        ),
    ];
    // A `sub` that would read upstream as another subject, or display as something else.
    for sub in [
        "  alice  ",
        " alice",
        "alice ",
        "alice\u{a0}",
        "\u{3000}alice",
        "ali\u{202e}ce",
        "ali\u{202a}ce",
        "ali\u{2066}ce",
        "ali\u{2069}ce",
        "ali\u{200b}ce",
        "alice\u{2028}x",
        "alice\u{2029}x",
        "\u{feff}alice",
    ] {
        let json = serde_json::json!({
            "iss": "https://issuer.example/", "aud": "api", "exp": 1_000_100, "sub": sub,
        })
        .to_string();
        assert_eq!(
            check_claims(claims(&json), &expect(), now, Source::Signature).map(|_| ()),
            Err(VerifyError::ControlCharacterInClaim),
            "{sub:?}"
        );
    }
    for (json, want) in cases {
        let got = check_claims(claims(json), &expect(), now, Source::Signature).map(|_| ());
        assert_eq!(&got, want, "{json}");
    }
}

#[test]
fn wrongly_typed_or_duplicated_claims_do_not_parse() {
    let scope_claims = [
        "scope".to_string(),
        "scp".to_string(),
        "permissions".to_string(),
    ];
    for json in [
        r#"{"exp":"1000100"}"#,
        r#"{"exp":true}"#,
        r#"{"aud":1}"#,
        r#"{"aud":[1]}"#,
        r#"{"iss":["https://issuer.example/"]}"#,
        r#"{"scope":7}"#,
        r#"{"scope":["read",7]}"#,
        r#"{"permissions":{"read":true}}"#,
        r#"{"sub":7}"#,
        r#"{"iat":"yesterday"}"#,
        r#"{"exp":1e400}"#,
        // A claim read here, twice: which value counts would depend on the reader.
        r#"{"exp":1,"exp":2}"#,
        r#"{"scope":"x","scope":"admin"}"#,
        r#"{"permissions":[],"permissions":["admin"]}"#,
        r#"{"iat":1,"iat":2}"#,
        r#"{"a":1} trailing"#,
        r#"[1,2,3]"#,
        r#""string""#,
    ] {
        assert!(
            parse_claims(json.as_bytes(), &scope_claims, &[], &[]).is_none(),
            "{json}"
        );
    }
    // Claims nobody reads may repeat; a scope claim may be a string or an array, or null.
    for json in [
        r#"{"x":1,"x":2}"#,
        r#"{"scope":["read","write"]}"#,
        r#"{"scope":null,"scp":"a b"}"#,
        r#"{"\u0073cope":"escaped name"}"#,
    ] {
        assert!(
            parse_claims(json.as_bytes(), &scope_claims, &[], &[]).is_some(),
            "{json}"
        );
    }
}

#[test]
fn forwarded_claims_become_header_text() {
    let spec = |header: &str, claim: &str| ForwardClaim::new(header, claim).expect("valid");
    let forwarding = Expectations {
        forward_claims: vec![
            spec("x-email", "email"),
            spec("x-tenant", "https://example.com/tenant"),
            spec("x-org-id", "/org/id"),
            spec("x-slash", "/a~1b"),
            spec("x-roles", "roles"),
            spec("x-flags", "flags"),
            spec("x-org", "org"),
            spec("x-nested", "nested"),
            spec("x-count", "count"),
            spec("x-admin", "admin"),
            spec("x-nothing", "nothing"),
            spec("x-absent", "absent"),
            spec("x-scope", "scope"),
        ],
        ..expect()
    };
    let json = r#"{"iss":"https://issuer.example/","aud":"api","exp":1000100,
            "email":"zoë@example.com","https://example.com/tenant":"acme","org":{"id":42,"n":"x"},
            "a/b":"slashed","roles":["reader","writer"],"flags":[true,1,"x"],
            "nested":[[1],{"a":2}],"count":3,"admin":false,"nothing":null,"scope":"read write"}"#;
    let parsed = parse_claims(
        json.as_bytes(),
        &forwarding.scope_claims,
        &forwarding.forward_claims,
        &[],
    )
    .expect("parses");
    let verified = check_claims(parsed, &forwarding, 1_000_000, Source::Signature).expect("valid");
    let got: Vec<(&str, &str)> = verified
        .forwarded()
        .iter()
        .map(|(h, v)| (h.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("x-email", "zoë@example.com"),
            ("x-tenant", "acme"),
            ("x-org-id", "42"),
            ("x-slash", "slashed"),
            ("x-roles", "reader,writer"),
            ("x-flags", "true,1,x"),
            ("x-org", r#"{"id":42,"n":"x"}"#),
            ("x-nested", r#"[[1],{"a":2}]"#),
            ("x-count", "3"),
            ("x-admin", "false"),
            ("x-scope", "read write"),
        ]
    );
    // A scope claim that is also forwarded still grants its scopes.
    assert!(verified.has_scope("write"));

    for bad in [
        r#""email":"a\nb""#,
        r#""roles":["a","b\u0000"]"#,
        // Read upstream as something else, or displayed as something else.
        r#""email":"  alice@example.com  ""#,
        r#""email":"alice@example.com\t""#,
        r#""email":"alice\u202e@example.com""#,
        r#""email":"alice\u200b@example.com""#,
        r#""email":"alice\u2028@example.com""#,
        r#""email":"\ufeffalice@example.com""#,
        r#""org":{"id":" 42"}"#,
        // A comma inside an element reads as two elements once joined.
        r#""roles":["eng,admin"]"#,
        r#""roles":["eng"," admin"]"#,
        r#""roles":["eng","admin\u2066"]"#,
    ] {
        let json =
            format!(r#"{{"iss":"https://issuer.example/","aud":"api","exp":1000100,{bad}}}"#);
        let parsed = parse_claims(
            json.as_bytes(),
            &forwarding.scope_claims,
            &forwarding.forward_claims,
            &[],
        )
        .expect("parses");
        assert_eq!(
            check_claims(parsed, &forwarding, 1_000_000, Source::Signature).map(|_| ()),
            Err(VerifyError::UnforwardableClaim),
            "{bad}"
        );
    }
    // A forwarded claim may not appear twice either.
    let twice = r#"{"email":"a","email":"b"}"#;
    assert!(parse_claims(twice.as_bytes(), &[], &forwarding.forward_claims, &[]).is_none());
    for (spec_text, valid) in [
        ("email", true),
        ("/org/id", true),
        ("/a~1b~0c", true),
        ("", false),
        ("/", false),
        ("/a~2", false),
    ] {
        assert_eq!(
            ForwardClaim::new("x", spec_text).is_some(),
            valid,
            "{spec_text:?}"
        );
    }
}

#[test]
fn only_the_claims_named_are_retained_as_values() {
    let spec = |text: &str| ClaimSpec::parse(text).expect(text);
    let mut retaining = Expectations {
        forward_claims: vec![ForwardClaim::new("x-org", "org_id").expect("valid")],
        ..expect()
    };
    for text in [
        "org_id",
        "/realm_access/roles",
        "/org_id",
        "sub",
        "/aud/1",
        "scope",
        "tags",
        "absent",
        "/realm_access/missing",
        "/a~1b",
    ] {
        retaining.retain(spec(text));
    }
    // Two spellings of one claim are one spec, kept once.
    assert_eq!(retaining.retain_claims.len(), 9);
    let json = r#"{"iss":"https://issuer.example/","aud":["api","orders"],"exp":1000100,
        "sub":"alice","org_id":"acme","realm_access":{"roles":["admin","reader"],"n":1},
        "scope":"read write","tags":null,"a/b":"slashed","other":"not kept"}"#;
    let parsed = parse_claims(
        json.as_bytes(),
        &retaining.scope_claims,
        &retaining.forward_claims,
        &retaining.retain_claims,
    )
    .expect("parses");
    let verified = check_claims(parsed, &retaining, 1_000_000, Source::Signature).expect("valid");
    let got: Vec<(String, String)> = verified
        .retained()
        .iter()
        .map(|(spec, value)| (spec.to_string(), value.to_string()))
        .collect();
    let want = [
        ("org_id", r#""acme""#),
        ("/realm_access/roles", r#"["admin","reader"]"#),
        ("sub", r#""alice""#),
        ("/aud/1", r#""orders""#),
        ("scope", r#""read write""#),
        ("tags", "null"),
        ("a/b", r#""slashed""#),
    ];
    assert_eq!(
        got,
        want.map(|(s, v)| (s.to_string(), v.to_string())).to_vec()
    );
    assert_eq!(
        verified.claim(&spec("/org_id")),
        Some(&serde_json::json!("acme"))
    );
    assert_eq!(verified.claim(&spec("absent")), None);
    let made = VerifiedClaims::for_tests(None, &[]).with_claim_for_tests("org_id", "x".into());
    assert_eq!(made.claim(&spec("/org_id")), Some(&serde_json::json!("x")));
    assert_eq!(
        verified.claim(&spec("other")),
        None,
        "never named, never kept"
    );
    // A retained scope claim still grants its scopes; the forwarded claim is still forwarded.
    assert!(verified.has_scope("write"));
    assert_eq!(verified.forwarded(), [("x-org".into(), "acme".into())]);
    // What is kept is weighed: the same token without retention holds less.
    let plain = check_claims(claims(json), &expect(), 1_000_000, Source::Signature).expect("valid");
    assert!(verified.heap_bytes() > plain.heap_bytes() + 7 * 16);
    // A retained claim may not appear twice, like any claim that is read.
    let twice = r#"{"org_id":"a","org_id":"b"}"#;
    assert!(parse_claims(twice.as_bytes(), &[], &[], &retaining.retain_claims).is_none());
}

#[test]
fn scopes_come_from_the_configured_claims() {
    let rbac = Expectations {
        scope_claims: vec!["scope".into(), "permissions".into()],
        ..expect()
    };
    let base = r#""iss":"https://issuer.example/","aud":"api","exp":1000100"#;
    for (members, expectations, want) in [
        (
            r#""scope":"openid","permissions":["read:messages","write:messages"]"#,
            &rbac,
            &["openid", "read:messages", "write:messages"][..],
        ),
        // scp is not configured here: ignored.
        (
            r#""scope":"openid","scp":["admin"]"#,
            &rbac,
            &["openid"][..],
        ),
        (r#""permissions":"a b""#, &rbac, &["a", "b"][..]),
        // The default reads scope and scp, not permissions.
        (
            r#""permissions":["admin"],"scp":["read"]"#,
            &expect(),
            &["read"][..],
        ),
    ] {
        let json = format!("{{{base},{members}}}");
        let parsed =
            parse_claims(json.as_bytes(), &expectations.scope_claims, &[], &[]).expect("parses");
        let verified =
            check_claims(parsed, expectations, 1_000_000, Source::Signature).expect("valid");
        let scopes: Vec<&str> = verified.scopes().iter().map(String::as_str).collect();
        assert_eq!(scopes, want, "{json}");
    }
    // The scope-token rule holds for every configured claim.
    let json = format!(r#"{{{base},"permissions":["read:messages","x admin"]}}"#);
    let parsed = parse_claims(json.as_bytes(), &rbac.scope_claims, &[], &[]).expect("parses");
    assert_eq!(
        check_claims(parsed, &rbac, 1_000_000, Source::Signature).map(|_| ()),
        Err(VerifyError::InvalidScope)
    );
}

#[test]
fn scopes_must_be_scope_tokens() {
    let base = r#""iss":"https://issuer.example/","aud":"api","exp":1000100"#;
    let cases: &[(&str, Result<&[&str], VerifyError>)] = &[
        (r#""scope":"read:messages""#, Ok(&["read:messages"])),
        // Repeated, leading and trailing spaces only separate.
        (r#""scope":"  a   b ""#, Ok(&["a", "b"])),
        (r#""scope":"""#, Ok(&[])),
        (r#""scp":"a b""#, Ok(&["a", "b"])),
        (r#""scp":["a","b"]"#, Ok(&["a", "b"])),
        (r#""scp":[]"#, Ok(&[])),
        // Every printable ASCII character but space, `"` and `\` may appear.
        (
            r#""scope":"!#$%&'()*+,-./:;<=>?@[]^_`{|}~""#,
            Ok(&["!#$%&'()*+,-./:;<=>?@[]^_`{|}~"]),
        ),
        // An array element holding a space would be forwarded as two scopes.
        (
            r#""scp":["read:messages","x admin"]"#,
            Err(VerifyError::InvalidScope),
        ),
        (
            r#""scp":["read:messages",""]"#,
            Err(VerifyError::InvalidScope),
        ),
        (r#""scp":[" admin"]"#, Err(VerifyError::InvalidScope)),
        // Whitespace other than the ASCII space is no separator, and no scope character.
        (
            r#""scope":"read:messages x\u00a0admin""#,
            Err(VerifyError::InvalidScope),
        ),
        (
            r#""scope":"read:messages\u2003admin""#,
            Err(VerifyError::InvalidScope),
        ),
        (
            r#""scope":"read\u200badmin""#,
            Err(VerifyError::InvalidScope),
        ),
        (r#""scope":"read\tadmin""#, Err(VerifyError::InvalidScope)),
        (r#""scope":"read\nadmin""#, Err(VerifyError::InvalidScope)),
        (r#""scp":"a\u0001b""#, Err(VerifyError::InvalidScope)),
        (r#""scope":"a\"b""#, Err(VerifyError::InvalidScope)),
        (r#""scope":"a\\b""#, Err(VerifyError::InvalidScope)),
        (r#""scope":"léa""#, Err(VerifyError::InvalidScope)),
        (r#""scope":"a\u007fb""#, Err(VerifyError::InvalidScope)),
        // One bad scope anywhere refuses the token, even beside good ones.
        (
            r#""scope":"read:messages","scp":["ok","x y"]"#,
            Err(VerifyError::InvalidScope),
        ),
    ];
    for (members, want) in cases {
        let json = format!("{{{base},{members}}}");
        let got = check_claims(claims(&json), &expect(), 1_000_000, Source::Signature);
        match (got, want) {
            (Ok(verified), Ok(want)) => {
                let scopes: Vec<&str> = verified.scopes().iter().map(String::as_str).collect();
                assert_eq!(&scopes, want, "{json}");
                // What is forwarded splits back into exactly the checked set, whatever
                // whitespace the upstream splits on.
                let forwarded = scopes.join(" ");
                let split: Vec<&str> = forwarded.split_whitespace().collect();
                assert_eq!(split, scopes, "{json}");
            }
            (got, want) => assert_eq!(got.map(|_| ()), want.clone().map(|_| ()), "{json}"),
        }
    }
}

#[test]
fn scope_token_grammar() {
    for b in 0u8..=0x7f {
        let s = (b as char).to_string();
        let want = b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b);
        assert_eq!(is_scope_token(&s), want, "byte {b:#04x}");
    }
    assert!(!is_scope_token(""));
    assert!(!is_scope_token("é"));
    assert!(is_scope_token("read:messages"));
}

/// The error for a token with `header` over a valid payload and a dummy signature. The header
/// checks come before the key lookup, so an empty key set tells them apart: a header that
/// passes them ends at "unknown key".
fn header_outcome(header: &str, expect: &Expectations) -> VerifyError {
    let token = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(r#"{"iss":"https://issuer.example/","aud":"api","exp":1}"#),
        URL_SAFE_NO_PAD.encode([1u8; 256])
    );
    verify(&token, &KeySet::default(), expect, 0).expect_err("no key can verify")
}

#[test]
fn crit_is_refused_in_any_form() {
    for crit in [r#"["exp"]"#, "[]", "null", "\"exp\"", "{}", "0"] {
        let header = format!(r#"{{"alg":"RS256","kid":"k","crit":{crit}}}"#);
        assert_eq!(
            header_outcome(&header, &expect()),
            VerifyError::CriticalHeader,
            "{header}"
        );
    }
    assert_eq!(
        header_outcome(r#"{"alg":"RS256","kid":"k"}"#, &expect()),
        VerifyError::UnknownKey
    );
}

#[test]
fn token_types_compare_as_media_types() {
    let at_jwt = Expectations {
        token_types: Some(vec![TokenType::new("at+jwt").expect("valid")]),
        ..expect()
    };
    for (typ, accepted) in [
        (r#""at+jwt""#, true),
        (r#""AT+JWT""#, true),
        (r#""application/at+jwt""#, true),
        (r#""Application/AT+jwt""#, true),
        (r#""JWT""#, false),
        (r#""application/jwt""#, false),
        (r#""text/at+jwt""#, false),
        (r#""at+jwt ""#, false),
        (r#""""#, false),
        ("null", false),
        (r#"["at+jwt"]"#, false),
    ] {
        let header = format!(r#"{{"alg":"RS256","kid":"k","typ":{typ}}}"#);
        let want = if accepted {
            VerifyError::UnknownKey
        } else {
            VerifyError::WrongTokenType
        };
        assert_eq!(header_outcome(&header, &at_jwt), want, "{header}");
        // Without token_types, typ is not looked at.
        assert_eq!(
            header_outcome(&header, &expect()),
            VerifyError::UnknownKey,
            "{header}"
        );
    }
    assert_eq!(
        header_outcome(r#"{"alg":"RS256","kid":"k"}"#, &at_jwt),
        VerifyError::WrongTokenType,
        "a missing typ is refused when types are configured"
    );
    for (name, valid) in [
        ("at+jwt", true),
        ("application/at+jwt", true),
        ("JWT", true),
        ("", false),
        ("application/", false),
        ("at jwt", false),
        ("text/plain", false),
        ("a\"b", false),
    ] {
        assert_eq!(TokenType::new(name).is_some(), valid, "{name:?}");
    }
}

#[test]
fn scopes_merge_scope_and_scp() {
    let c = claims(
        r#"{"iss":"https://issuer.example/","aud":"api","exp":1000100,
                "scope":"read:messages  write:messages","scp":["admin","read:messages"]}"#,
    );
    let verified = check_claims(c, &expect(), 1_000_000, Source::Signature).expect("valid");
    let scopes: Vec<_> = verified.scopes().iter().map(String::as_str).collect();
    assert_eq!(scopes, ["admin", "read:messages", "write:messages"]);
    assert!(!verified.has_scope("read"));
    assert!(!verified.has_scope("READ:MESSAGES"));
}

/// The issuer and every `aud` value are kept, so that a rule's `issuers` and `audiences` can be
/// checked on every use of cached claims, and weighed, so that a token with thousands of
/// audiences cannot hold more of the cache than its byte budget allows.
#[test]
fn issuer_and_audiences_are_kept_and_weighed() {
    let checked = |json: &str| {
        check_claims(claims(json), &expect(), 1_000_000, Source::Signature).expect("valid")
    };
    let one = checked(r#"{"iss":"https://issuer.example/","aud":"api","exp":1000100}"#);
    assert_eq!(one.issuer(), "https://issuer.example/");
    assert_eq!(one.audiences(), ["api"]);
    let many = checked(
        r#"{"iss":"https://issuer.example/","aud":["x","api","https://orders.api"],"exp":1000100}"#,
    );
    assert_eq!(many.audiences(), ["x", "api", "https://orders.api"]);
    assert!(many.heap_bytes() > one.heap_bytes());
    let audiences: Vec<String> = (0..1000).map(|i| format!("\"aud-{i:06}\"")).collect();
    let huge = checked(&format!(
        r#"{{"iss":"https://issuer.example/","aud":["api",{}],"exp":1000100}}"#,
        audiences.join(",")
    ));
    assert_eq!(huge.audiences().len(), 1001);
    // Each value's buffer (10 bytes, 32 as allocated) and its `String` in the vector.
    assert!(
        huge.heap_bytes() >= 1001 * (32 + size_of::<String>()),
        "{}",
        huge.heap_bytes()
    );
}

/// An introspection answer becomes claims only when `active` is `true` and it carries `exp`;
/// `iss` (when present) and `aud` are held to the issuer's, the scopes come from `scope` under
/// the same scope-token rule, and an answer that is not a JSON object is the server's fault.
#[test]
fn introspection_answers_table() {
    let now = 1_000_000;
    let check = |json: &str, require_audience: bool| {
        introspected(json.as_bytes(), &expect(), require_audience, now).map(|c| {
            let scopes: Vec<&str> = c.scopes().iter().map(String::as_str).collect();
            (
                c.subject().map(str::to_owned),
                scopes.join(" "),
                c.issuer().to_owned(),
            )
        })
    };
    let iss = r#""iss":"https://issuer.example/""#;
    let ok = |sub: &str, scopes: &str| {
        Ok((
            Some(sub.to_owned()),
            scopes.to_owned(),
            "https://issuer.example/".to_owned(),
        ))
    };
    type Row = (
        String,
        bool,
        Result<(Option<String>, String, String), AnswerError>,
    );
    let cases: Vec<Row> = vec![
        (
            format!(r#"{{"active":true,{iss},"aud":"api","exp":1000100,"sub":"u","scope":"b a"}}"#),
            true,
            ok("u", "a b"),
        ),
        // No iss: the issuer's own endpoint answered.
        (
            r#"{"active":true,"aud":["x","api"],"exp":1000100,"sub":"u","scope":"a"}"#.into(),
            true,
            ok("u", "a"),
        ),
        // Inactive, in every spelling but `true`.
        (
            r#"{"active":false}"#.into(),
            true,
            Err(VerifyError::Inactive.into()),
        ),
        (
            r#"{"active":"true","exp":1000100}"#.into(),
            true,
            Err(VerifyError::Inactive.into()),
        ),
        (
            r#"{"exp":1000100}"#.into(),
            true,
            Err(VerifyError::Inactive.into()),
        ),
        // Active without exp, expired, not yet valid.
        (
            format!(r#"{{"active":true,{iss},"aud":"api"}}"#),
            true,
            Err(VerifyError::MissingExpiry.into()),
        ),
        (
            format!(r#"{{"active":true,{iss},"aud":"api","exp":999000}}"#),
            true,
            Err(VerifyError::Expired.into()),
        ),
        (
            format!(r#"{{"active":true,{iss},"aud":"api","exp":1000100,"nbf":1000500}}"#),
            true,
            Err(VerifyError::NotYetValid.into()),
        ),
        // Another issuer, another audience, no audience.
        (
            r#"{"active":true,"iss":"https://evil.example/","aud":"api","exp":1000100}"#.into(),
            true,
            Err(VerifyError::WrongIssuer.into()),
        ),
        (
            format!(r#"{{"active":true,{iss},"aud":"else","exp":1000100}}"#),
            true,
            Err(VerifyError::WrongAudience.into()),
        ),
        (
            format!(r#"{{"active":true,{iss},"exp":1000100,"sub":"u"}}"#),
            true,
            Err(VerifyError::WrongAudience.into()),
        ),
        // ...which introspection_require_audience = false lets through; a wrong one never.
        (
            format!(r#"{{"active":true,{iss},"exp":1000100,"sub":"u"}}"#),
            false,
            ok("u", ""),
        ),
        (
            format!(r#"{{"active":true,{iss},"aud":"else","exp":1000100}}"#),
            false,
            Err(VerifyError::WrongAudience.into()),
        ),
        // Scopes as for a JWT; `scp` is not an introspection member.
        (
            format!(r#"{{"active":true,{iss},"aud":"api","exp":1000100,"scope":"a\"b"}}"#),
            true,
            Err(VerifyError::InvalidScope.into()),
        ),
        (
            format!(r#"{{"active":true,{iss},"aud":"api","exp":1000100,"sub":"u","scp":["x"]}}"#),
            true,
            ok("u", ""),
        ),
        (
            format!(r#"{{"active":true,{iss},"aud":"api","exp":1000100,"sub":" u"}}"#),
            true,
            Err(VerifyError::ControlCharacterInClaim.into()),
        ),
        // Wrong types, duplicates, not an object.
        (
            format!(r#"{{"active":true,{iss},"aud":"api","exp":"soon"}}"#),
            true,
            Err(VerifyError::BadClaims.into()),
        ),
        (
            format!(r#"{{"active":true,{iss},"aud":"api","exp":1000100,"exp":1000200}}"#),
            true,
            Err(VerifyError::BadClaims.into()),
        ),
        (
            r#"{"active":true,"active":true}"#.into(),
            true,
            Err(AnswerError::Malformed),
        ),
        ("<html>".into(), true, Err(AnswerError::Malformed)),
        ("[true]".into(), true, Err(AnswerError::Malformed)),
        ("".into(), true, Err(AnswerError::Malformed)),
    ];
    for (json, require_audience, want) in cases {
        assert_eq!(check(&json, require_audience), want, "{json}");
    }
    // Introspected claims name no key, so no key set ever revalidates them as a JWT's.
    let claims = introspected(
        format!(r#"{{"active":true,{iss},"aud":"api","exp":1000100,"client_id":"c"}}"#).as_bytes(),
        &expect(),
        true,
        now,
    )
    .expect("active");
    assert_eq!(claims.client_id(), Some("c"));
    assert_eq!(claims.kid(), None);
}
