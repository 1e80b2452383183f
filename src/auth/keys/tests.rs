use super::*;

const RS256: &[Algorithm] = &[Algorithm::RS256];

pub(crate) fn generated_modulus() -> Vec<u8> {
    use aws_lc_rs::signature::KeyPair as _;
    let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("key");
    pair.public_key()
        .modulus()
        .big_endian_without_leading_zero()
        .to_vec()
}

pub(crate) fn rsa(kid: &str, n: &[u8]) -> serde_json::Value {
    serde_json::json!({"kty": "RSA", "kid": kid, "n": URL_SAFE_NO_PAD.encode(n), "e": "AQAB"})
}

fn parse(doc: &serde_json::Value) -> Result<(KeySet, Vec<SkippedKey>), ParseError> {
    KeySet::parse(doc.to_string().as_bytes(), RS256, 100)
}

fn reasons(skipped: &[SkippedKey]) -> Vec<(Option<&str>, SkipReason)> {
    skipped
        .iter()
        .map(|s| (s.kid.as_deref(), s.reason))
        .collect()
}

#[test]
fn malformed_documents_are_errors() {
    for doc in [&b"{}"[..], b"{\"keys\":123}", b"<html>", b"", b"[]"] {
        let err = KeySet::parse(doc, RS256, 100).expect_err("must fail");
        assert!(matches!(err, ParseError::Malformed(_)), "{err}");
    }
    let err = KeySet::parse(br#"{"keys":[]}"#, RS256, 100).expect_err("empty");
    assert!(
        matches!(&err, ParseError::NoUsableKeys { skipped } if skipped.count == 0),
        "{err}"
    );
}

#[test]
fn unusable_entries_are_skipped_with_a_reason() {
    let small_n = [0xC5u8; 128]; // 1024 bits
    let doc = serde_json::json!({"keys": [
        {"kty": "EC", "kid": "ec", "crv": "P-256", "x": "AA", "y": "AA"},
        {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
        {"kid": "nokty"},
        {"kty": "RSA", "kid": "enc", "use": "enc", "n": "AA", "e": "AQAB"},
        {"kty": "RSA", "kid": "ops", "key_ops": ["encrypt"], "n": "AA", "e": "AQAB"},
        {"kty": "RSA", "kid": "hs", "alg": "HS256", "n": "AA", "e": "AQAB"},
        {"kty": "RSA", "kid": "ps", "alg": "PS256", "n": "AA", "e": "AQAB"},
        rsa("small", &small_n),
        {"kty": "RSA", "kid": "nobase64", "n": "!!", "e": "AQAB"},
        {"kty": "RSA", "kid": "noe", "n": URL_SAFE_NO_PAD.encode(small_n)},
        {"kty": "RSA", "kid": "typed", "n": 5, "e": "AQAB"},
        "not an object",
    ]});
    let err = parse(&doc).expect_err("nothing usable");
    let ParseError::NoUsableKeys { skipped } = &err else {
        panic!("{err}")
    };
    assert_eq!(skipped.count, 12, "{err}");
    assert_eq!(
        skipped.reasons,
        "malformed JWK: 2, kty not RSA, EC or OKP: 2, use is not sig: 1, \
             key_ops lacks verify: 1, alg not on the allow-list: 2, \
             alg not a supported signature algorithm: 1, \
             key member missing, not base64url or of the wrong length: 2, \
             modulus not 2048..=8192 bits: 1"
    );
    assert_eq!(skipped.first_kids, ["ec", "hmac", "nokty", "enc", "ops"]);
}

/// The bit length is taken after stripping leading zero bytes; nothing may be left
/// (`"n": ""`, `"AA"`), which used to underflow (a panic in debug builds, inside the
/// refresher task, and a huge wrapped length in release).
#[test]
fn modulus_length_is_measured_without_underflow() {
    let n = generated_modulus();
    let mut with_zero = vec![0u8];
    with_zero.extend_from_slice(&n);
    let mut many_zeros = vec![0u8; 64];
    many_zeros.extend_from_slice(&n);
    let mut short_after_zeros = vec![0u8; 300];
    short_after_zeros.extend_from_slice(&[0xC5; 128]);
    let cases: [(&str, Vec<u8>, Option<SkipReason>); 8] = [
        ("empty", vec![], Some(SkipReason::ModulusSize)),
        ("one zero byte", vec![0], Some(SkipReason::ModulusSize)),
        ("all zero", vec![0; 256], Some(SkipReason::ModulusSize)),
        ("one", vec![1], Some(SkipReason::ModulusSize)),
        (
            "1024 bits behind zeros",
            short_after_zeros,
            Some(SkipReason::ModulusSize),
        ),
        ("8200 bits", vec![0xFF; 1025], Some(SkipReason::ModulusSize)),
        ("one leading zero", with_zero, None),
        ("many leading zeros", many_zeros, None),
    ];
    for (name, modulus, want) in cases {
        let good = rsa("good", &n);
        let doc = serde_json::json!({"keys": [rsa("probe", &modulus), good]});
        let (set, skipped) = parse(&doc).expect("the good key keeps the set usable");
        match want {
            Some(reason) => assert_eq!(reasons(&skipped), [(Some("probe"), reason)], "{name}"),
            None => {
                assert!(skipped.is_empty(), "{name}: {skipped:?}");
                assert!(set.find(Some("probe")).is_some(), "{name}");
            }
        }
    }
    for (bytes, bits) in [
        (&[][..], 0),
        (&[1][..], 1),
        (&[0x80, 0][..], 16),
        (&[0x7F][..], 7),
    ] {
        assert_eq!(bit_length(bytes), bits, "{bytes:?}");
    }
}

/// The public halves of a fresh P-256, P-384 and Ed25519 key, as JWK coordinates.
fn curve_keys() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair,
        Ed25519KeyPair, KeyPair as _,
    };
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let ec = |alg| {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).expect("EC key");
        EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref())
            .expect("pkcs8")
            .public_key()
            .as_ref()
            .to_vec()
    };
    let ed = Ed25519KeyPair::generate().expect("Ed25519 key");
    (
        ec(&ECDSA_P256_SHA256_FIXED_SIGNING),
        ec(&ECDSA_P384_SHA384_FIXED_SIGNING),
        ed.public_key().as_ref().to_vec(),
    )
}

#[test]
fn ec_and_ed25519_keys_load_for_their_own_algorithms_only() {
    use Algorithm::*;
    let (p256, p384, ed) = curve_keys();
    let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
    // An uncompressed point is 04 ‖ x ‖ y.
    let ec = |point: &[u8], crv: &str| {
        let size = (point.len() - 1) / 2;
        serde_json::json!({"kty": "EC", "crv": crv, "x": b64(&point[1..1 + size]),
                "y": b64(&point[1 + size..])})
    };
    let okp = |x: &[u8]| serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": b64(x)});
    let with = |mut jwk: serde_json::Value, member: &str, value: serde_json::Value| {
        jwk[member] = value;
        jwk
    };
    let all = [RS256, ES256, ES384, EdDSA, Ed25519];
    let mut off_curve = p256.clone();
    off_curve[40] ^= 1;
    type Case<'a> = (
        &'a str,
        serde_json::Value,
        &'a [Algorithm],
        Result<Vec<Algorithm>, SkipReason>,
    );
    let cases: Vec<Case> = vec![
        (
            "P-256 with alg",
            with(ec(&p256, "P-256"), "alg", "ES256".into()),
            &all,
            Ok(vec![ES256]),
        ),
        (
            "P-256 without alg",
            ec(&p256, "P-256"),
            &all,
            Ok(vec![ES256]),
        ),
        (
            "P-384 without alg",
            ec(&p384, "P-384"),
            &all,
            Ok(vec![ES384]),
        ),
        (
            "Ed25519 without alg",
            okp(&ed),
            &all,
            Ok(vec![EdDSA, Ed25519]),
        ),
        (
            "Ed25519, alg EdDSA",
            with(okp(&ed), "alg", "EdDSA".into()),
            &all,
            Ok(vec![EdDSA]),
        ),
        (
            "Ed25519, alg Ed25519",
            with(okp(&ed), "alg", "Ed25519".into()),
            &all,
            Ok(vec![Ed25519]),
        ),
        // The curve and the algorithm must agree.
        (
            "P-256 as ES384",
            with(ec(&p256, "P-256"), "alg", "ES384".into()),
            &all,
            Err(SkipReason::AlgorithmMismatch),
        ),
        (
            "P-256 as RS256",
            with(ec(&p256, "P-256"), "alg", "RS256".into()),
            &all,
            Err(SkipReason::AlgorithmMismatch),
        ),
        (
            "Ed25519 as ES256",
            with(okp(&ed), "alg", "ES256".into()),
            &all,
            Err(SkipReason::AlgorithmMismatch),
        ),
        (
            "P-384 coordinates as P-256",
            ec(&p384, "P-256"),
            &all,
            Err(SkipReason::BadEncoding),
        ),
        // Only what the allow-list names.
        (
            "P-256, RS256 allowed",
            ec(&p256, "P-256"),
            &[RS256],
            Err(SkipReason::AlgorithmNotAllowed),
        ),
        (
            "Ed25519, ES256 allowed",
            okp(&ed),
            &[ES256],
            Err(SkipReason::AlgorithmNotAllowed),
        ),
        // Shapes that are not the exact uncompressed point or a 32-byte key.
        (
            "short x",
            with(ec(&p256, "P-256"), "x", b64(&p256[1..32]).into()),
            &all,
            Err(SkipReason::BadEncoding),
        ),
        (
            "no y",
            with(ec(&p256, "P-256"), "y", serde_json::Value::Null),
            &all,
            Err(SkipReason::BadEncoding),
        ),
        (
            "point off the curve",
            ec(&off_curve, "P-256"),
            &all,
            Err(SkipReason::Rejected),
        ),
        (
            "Ed25519 with y",
            with(okp(&ed), "y", "AA".into()),
            &all,
            Err(SkipReason::BadEncoding),
        ),
        (
            "Ed25519, 31 bytes",
            okp(&ed[..31]),
            &all,
            Err(SkipReason::BadEncoding),
        ),
        // Other curves and types.
        (
            "Ed448",
            with(okp(&ed), "crv", "Ed448".into()),
            &all,
            Err(SkipReason::UnsupportedCurve),
        ),
        (
            "secp256k1",
            with(ec(&p256, "P-256"), "crv", "secp256k1".into()),
            &all,
            Err(SkipReason::UnsupportedCurve),
        ),
        (
            "X25519",
            with(okp(&ed), "crv", "X25519".into()),
            &all,
            Err(SkipReason::UnsupportedCurve),
        ),
        (
            "EC without crv",
            with(ec(&p256, "P-256"), "crv", serde_json::Value::Null),
            &all,
            Err(SkipReason::UnsupportedCurve),
        ),
    ];
    for (name, jwk, allowed, want) in cases {
        let got = parse_key(&jwk, allowed).map(|key| {
            key.verifiers
                .iter()
                .map(|(alg, _)| *alg)
                .collect::<Vec<_>>()
        });
        assert_eq!(got, want, "{name}");
    }
}

/// The 8 Ed25519 points of small order in each of their 14 encodings (canonical; with the
/// sign bit set, including x = 0 "negative zero"; and with y = p or p + 1, which reduce to 0
/// and 1), and keys whose y is otherwise not below p, are skipped before the crypto library
/// sees them; real keys next to them still load. aws-lc-rs accepts every one of these 16 as
/// a public key (it checks the length only), and with the all-zero one a signature of
/// R = identity, s = 0 verifies for a quarter of all messages (`it::hostile_tokens`).
#[test]
fn ed25519_small_order_and_non_canonical_keys_are_skipped() {
    let hex = |text: &str| -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
            .collect()
    };
    let ff = "ff".repeat(30);
    let zeros = "00".repeat(30);
    let order8 = "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc";
    let order8_neg = "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03";
    let cases: Vec<(&str, String)> = vec![
        ("identity", format!("01{zeros}00")),
        ("identity, negative zero", format!("01{zeros}80")),
        ("order 2 (y = p - 1)", format!("ec{ff}7f")),
        ("order 2, negative zero", format!("ec{ff}ff")),
        ("order 4, y = 0 (all zero bytes)", format!("00{zeros}00")),
        ("order 4, y = 0, sign set", format!("00{zeros}80")),
        ("order 8", format!("{order8}05")),
        ("order 8, sign set", format!("{order8}85")),
        ("order 8, -y", format!("{order8_neg}7a")),
        ("order 8, -y, sign set", format!("{order8_neg}fa")),
        ("order 4, y = p", format!("ed{ff}7f")),
        ("order 4, y = p, sign set", format!("ed{ff}ff")),
        ("identity, y = p + 1", format!("ee{ff}7f")),
        ("identity, y = p + 1, sign set", format!("ee{ff}ff")),
        ("y = p + 2, not canonical", format!("ef{ff}7f")),
        ("y = 2^255 - 1, not canonical", format!("ff{ff}ff")),
    ];
    let (_, _, real) = curve_keys();
    let okp = |x: &[u8], kid: &str| {
        serde_json::json!({"kty": "OKP", "crv": "Ed25519", "kid": kid,
                "x": URL_SAFE_NO_PAD.encode(x)})
    };
    let mut wrong = Vec::new();
    for (name, encoding) in &cases {
        let x = hex(encoding);
        assert_eq!(x.len(), 32, "{name}");
        let doc = serde_json::json!({"keys": [okp(&x, "weak"), okp(&real, "real")]});
        let (set, skipped) = KeySet::parse(
            doc.to_string().as_bytes(),
            &[Algorithm::EdDSA, Algorithm::Ed25519],
            100,
        )
        .expect("the real key keeps the set usable");
        assert!(set.find(Some("real")).is_some(), "{name}");
        let got = reasons(&skipped);
        if got != [(Some("weak"), SkipReason::SmallOrder)] {
            let loaded = set.find(Some("weak")).is_some();
            wrong.push(format!("{name}: skipped {got:?}, loaded {loaded}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    // Just below p is a number like any other: whether it is a point is the library's call.
    assert!(!ed25519_small_order_or_non_canonical(&hex(&format!(
        "eb{ff}7f"
    ))));
    assert!(!ed25519_small_order_or_non_canonical(&real));
}

#[test]
fn duplicate_kids_and_bad_exponents_are_skipped_and_good_keys_kept() {
    let n = URL_SAFE_NO_PAD.encode(generated_modulus());
    let doc = serde_json::json!({"keys": [
        {"kty": "RSA", "kid": "a", "n": n, "e": "AQAB"},
        {"kty": "RSA", "kid": "a", "n": n, "e": "AQAB"},
        {"kty": "RSA", "kid": "even", "n": n, "e": "AQAA"},
        {"kty": "RSA", "kid": "one", "n": n, "e": "AQ"},
        {"kty": "RSA", "n": n, "e": "AQAB"},
    ]});
    let (set, skipped) = KeySet::parse(
        doc.to_string().as_bytes(),
        &[Algorithm::RS256, Algorithm::PS256],
        100,
    )
    .expect("usable");
    assert_eq!(set.len(), 2);
    assert_eq!(set.kids(), ["a"]);
    assert_eq!(
        reasons(&skipped),
        [
            (Some("a"), SkipReason::DuplicateKid),
            (Some("even"), SkipReason::Exponent),
            (Some("one"), SkipReason::Exponent),
        ]
    );
    // Without a published alg, the key is prepared for every allowed algorithm.
    let key = set.find(Some("a")).expect("kid a");
    assert!(key.verifier(Algorithm::RS256).is_some() && key.verifier(Algorithm::PS256).is_some());
    assert!(key.verifier(Algorithm::RS384).is_none(), "not allowed");
    assert!(
        set.find(None).is_none(),
        "two keys: a kid-less token is ambiguous"
    );
}

/// A document listing more entries than `jwks_max_keys` is refused whole, before any entry
/// is parsed, whatever the entries are.
#[test]
fn documents_over_the_key_cap_are_refused_whole() {
    let n = generated_modulus();
    let doc = |entries: usize| {
        let mut keys = vec![rsa("good", &n)];
        keys.extend((1..entries).map(|i| serde_json::json!({"kty": "junk", "kid": i})));
        serde_json::json!({ "keys": keys }).to_string()
    };
    let (set, skipped) = KeySet::parse(doc(3).as_bytes(), RS256, 3).expect("at the cap");
    assert_eq!((set.len(), skipped.len()), (1, 2));
    let err = KeySet::parse(doc(4).as_bytes(), RS256, 3).expect_err("over the cap");
    assert!(matches!(err, ParseError::TooManyKeys { limit: 3 }), "{err}");
    // Junk of any shape counts: the cap is on entries, checked before any is parsed.
    let junk = format!("{{\"keys\":[{}{{}}]}}", "0,".repeat(300_000));
    let err = KeySet::parse(junk.as_bytes(), RS256, 100).expect_err("300k entries");
    assert!(
        matches!(err, ParseError::TooManyKeys { limit: 100 }),
        "{err}"
    );
}

#[test]
fn skipped_entries_are_summarised_in_one_line() {
    let skipped: Vec<SkippedKey> = (0..300_000)
        .map(|i| SkippedKey {
            kid: Some(format!("{i}{}", "x".repeat(100))),
            reason: if i % 3 == 0 {
                SkipReason::UnsupportedKeyType
            } else {
                SkipReason::Malformed
            },
        })
        .collect();
    let summary = SkipSummary::of(&skipped);
    assert_eq!(summary.count, 300_000);
    assert_eq!(
        summary.reasons,
        "malformed JWK: 200000, kty not RSA, EC or OKP: 100000"
    );
    assert_eq!(summary.first_kids.len(), SUMMARY_KIDS);
    assert!(
        summary
            .first_kids
            .iter()
            .all(|k| k.chars().count() == SUMMARY_KID_CHARS)
    );
    assert!(summary.first_kids[0].starts_with("0x"));
}
