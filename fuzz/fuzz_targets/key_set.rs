//! Fuzzes `scopegate::auth::keys::KeySet::parse`, which reads the issuer's JWKS document: bytes from
//! the network that decide which keys tokens are checked against, parsed by the background
//! refresher, where a panic would stop key rotation.
//!
//! Every algorithm is allowed (`Algorithm::ALL`), so every key is prepared six times, and the
//! entry cap is [`MAX_KEYS`]. The fixed modulus below is the public half of a 2048-bit key made
//! with `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048` for this target; the
//! private half was never written anywhere but a temporary file, deleted at once.
//!
//! Input modes, by the first byte, so that mutations reach the key arithmetic instead of dying in
//! JSON syntax:
//! - `n`: the rest, base64url-encoded without padding, is the modulus of the only entry of a
//!   document, an RSA JWK with `kid` `fuzz` and `e` `AQAB`;
//! - `e`: the rest, encoded the same way, is the exponent of that entry, whose modulus is
//!   [`MODULUS`];
//! - `x`: the rest, encoded the same way, is the `x` of the only entry of a document, an Ed25519
//!   OKP JWK with `kid` `fuzz`;
//! - `k`: the rest is spliced as text between the brackets of `{"keys":[...]}`, so it holds
//!   entries (any number, of any shape);
//! - anything else: the whole input is the document.
//!
//! Properties:
//! - no panic, whatever the document (a modulus with nothing left after its leading zero bytes
//!   once underflowed);
//! - a document with more entries than [`MAX_KEYS`] is always refused with `TooManyKeys`;
//! - on `Ok`: the set is not empty; every entry is either in the set or in the skip list, so
//!   `len() + skipped.len()` is the number of entries and at most [`MAX_KEYS`]; `kids()` is sorted
//!   without duplicates and every kid in it is found by `find(Some(kid))`, as a key with that kid;
//!   `find(None)` answers exactly when the set holds one key;
//! - `n` mode: a modulus outside 2048..=8192 bits once its leading zero bytes are dropped is
//!   refused with the `ModulusSize` reason, and an accepted one is inside that range;
//! - `e` mode: an accepted exponent is odd, greater than 1 and at most 32 bits wide;
//! - `x` mode: an accepted key is 32 bytes, its `y` (sign bit cleared) is below the field prime
//!   and none of the 8 points of small order (checked against [`SMALL_ORDER_Y`], written out
//!   here apart from the library's own list); a refused 32-byte key of that kind is refused for
//!   `SmallOrder`;
//! - in all three, the one entry is either the whole set (as `fuzz`) or the one skipped entry.
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use scopegate::auth::keys::{KeySet, ParseError, SkipReason, SkippedKey};
use scopegate::auth::verify::Algorithm;

/// Entry cap: small, so that the fuzzer meets it often, with room for a few real keys below it.
const MAX_KEYS: usize = 16;

/// A valid 2048-bit RSA modulus (public key material only), base64url without padding.
const MODULUS: &str = "wiTL-DuerNmR5VNBkRLyfM65AAK0rttfcRV-yGGFrsLnqT2HHnOLb0BK2EZc5E7XeOCgYisJcposnc0FUHjppLU6yNm9R4P1MeZSFBhXRT6d7lTIw5qLh877qU1kBVl_tRVWWM2XI6YDvgIrfFcq-c3APATINinZTKAKlOQRzhVUIrteagQ1lyv52-a2KbVPVmmIAMnQRxQEhRpl3F3wIQuNlRgYB87Npa0MCUWABxZEHsRqlgFQSYXF7b1NeH9s1ysNHXZ6Y7nY0f_oyQjsh0mMZMYDTRp-injR-0qcWm4trzQBzWyJ7RpXwDp7Ythajp0ZswmP9nI9Y4rU2NMgpw";

/// The `y` coordinates of the Ed25519 points of small order below the field prime, as
/// little-endian numbers: 0, 1, the order-8 pair and p - 1.
const SMALL_ORDER_Y: [&str; 5] = [
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0100000000000000000000000000000000000000000000000000000000000000",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
];

/// The `kid` of the one entry in `n`, `e` and `x` modes.
const KID: &str = "fuzz";

/// Which part of the document the input chose to be.
enum Mode {
    Modulus(Vec<u8>),
    Exponent(Vec<u8>),
    Ed25519(Vec<u8>),
    Entries,
    Document,
}

fuzz_target!(|data: &[u8]| {
    let (mode, document) = match data.split_first() {
        Some((b'n', modulus)) => (
            Mode::Modulus(modulus.to_vec()),
            single_key(&URL_SAFE_NO_PAD.encode(modulus), "AQAB"),
        ),
        Some((b'e', exponent)) => (
            Mode::Exponent(exponent.to_vec()),
            single_key(MODULUS, &URL_SAFE_NO_PAD.encode(exponent)),
        ),
        Some((b'x', x)) => (
            Mode::Ed25519(x.to_vec()),
            format!(
                r#"{{"keys":[{{"kty":"OKP","crv":"Ed25519","kid":"{KID}","x":"{}"}}]}}"#,
                URL_SAFE_NO_PAD.encode(x)
            )
            .into_bytes(),
        ),
        Some((b'k', entries)) => {
            let mut document = b"{\"keys\":[".to_vec();
            document.extend_from_slice(entries);
            document.extend_from_slice(b"]}");
            (Mode::Entries, document)
        }
        _ => (Mode::Document, data.to_vec()),
    };

    let result = KeySet::parse(&document, &Algorithm::ALL, MAX_KEYS);
    let entries = count_entries(&document);

    if let Some(entries) = entries
        && entries > MAX_KEYS
    {
        assert!(
            matches!(result, Err(ParseError::TooManyKeys { limit: MAX_KEYS })),
            "a document of {entries} entries (cap {MAX_KEYS}) was not refused as too many: \
             {result:?}"
        );
    }
    if let Ok((set, skipped)) = &result {
        check_set(set, skipped, entries);
    }

    match mode {
        Mode::Modulus(modulus) => {
            let bits = bits_without_leading_zeros(&modulus);
            let in_range = (2048..=8192).contains(&bits);
            check_single(&result);
            if !in_range {
                assert_eq!(
                    one_skip_reason(&result),
                    Some(format!("{}: 1", SkipReason::ModulusSize)),
                    "a {bits}-bit modulus was not refused for its size: {result:?}"
                );
            }
            if result.is_ok() {
                assert!(in_range, "a {bits}-bit modulus was accepted");
            }
        }
        Mode::Exponent(exponent) => {
            check_single(&result);
            if result.is_ok() {
                let digits: Vec<u8> = exponent.iter().copied().skip_while(|b| *b == 0).collect();
                let value = digits.iter().try_fold(0u64, |acc, b| {
                    acc.checked_mul(256)?.checked_add(u64::from(*b))
                });
                assert!(
                    matches!(value, Some(v) if v > 1 && v % 2 == 1 && v <= u64::from(u32::MAX)),
                    "exponent {exponent:02x?} was accepted"
                );
            }
        }
        Mode::Ed25519(x) => {
            check_single(&result);
            let weak = x.len() == 32 && {
                let mut y = x.clone();
                y[31] &= 0x7f;
                // y >= p = 2^255 - 19, or one of the small-order values.
                let non_canonical =
                    y[31] == 0x7f && y[1..31].iter().all(|b| *b == 0xff) && y[0] >= 0xed;
                let hex: String = y.iter().map(|b| format!("{b:02x}")).collect();
                non_canonical || SMALL_ORDER_Y.contains(&hex.as_str())
            };
            if result.is_ok() {
                assert!(x.len() == 32 && !weak, "Ed25519 key {x:02x?} was accepted");
            }
            if weak {
                assert_eq!(
                    one_skip_reason(&result),
                    Some(format!("{}: 1", SkipReason::SmallOrder)),
                    "small-order or non-canonical key {x:02x?} not refused as such"
                );
            }
        }
        Mode::Entries | Mode::Document => {}
    }
});

/// `{"keys":[{"kty":"RSA","kid":"fuzz","n":N,"e":E}]}`.
fn single_key(n: &str, e: &str) -> Vec<u8> {
    format!(r#"{{"keys":[{{"kty":"RSA","kid":"{KID}","n":"{n}","e":"{e}"}}]}}"#).into_bytes()
}

/// How many entries the document's `keys` array holds, read on its own (entries are not looked
/// into); `None` when the document does not have that shape.
fn count_entries(document: &[u8]) -> Option<usize> {
    #[derive(serde::Deserialize)]
    struct Outline {
        keys: Vec<serde::de::IgnoredAny>,
    }
    serde_json::from_slice::<Outline>(document)
        .ok()
        .map(|outline| outline.keys.len())
}

fn check_set(set: &KeySet, skipped: &[SkippedKey], entries: Option<usize>) {
    assert!(!set.is_empty(), "Ok with an empty key set");
    let entries = entries.expect("a document that parsed has a readable keys array");
    assert_eq!(
        set.len() + skipped.len(),
        entries,
        "{} kept + {} skipped != {entries} entries",
        set.len(),
        skipped.len()
    );
    assert!(
        entries <= MAX_KEYS,
        "{entries} entries accepted over the cap"
    );

    let kids = set.kids();
    assert!(
        kids.windows(2).all(|pair| pair[0] < pair[1]),
        "kids() not sorted or holds duplicates: {kids:?}"
    );
    assert!(kids.len() <= set.len(), "more kids than keys: {kids:?}");
    for kid in &kids {
        let key = set.find(Some(kid));
        assert!(key.is_some(), "kid {kid:?} listed but not found");
        assert_eq!(
            key.and_then(|k| k.kid()),
            Some(*kid),
            "find({kid:?}) returned another key"
        );
    }
    assert_eq!(
        set.find(None).is_some(),
        set.len() == 1,
        "find(None) with {} keys",
        set.len()
    );
}

/// In `n` and `e` modes the document is well formed and holds one entry: it is either kept, as
/// the whole set, or skipped, making the document unusable.
fn check_single(result: &Result<(KeySet, Vec<SkippedKey>), ParseError>) {
    match result {
        Ok((set, skipped)) => {
            assert!(skipped.is_empty(), "one entry both kept and skipped");
            assert_eq!(set.kids(), [KID], "the one entry is not kept under its kid");
        }
        Err(ParseError::NoUsableKeys { skipped }) => {
            assert_eq!(skipped.count, 1, "one entry, {} skipped", skipped.count);
            assert_eq!(skipped.first_kids, [KID], "skip summary lost the kid");
        }
        Err(other) => panic!("a well-formed one-entry document was refused: {other}"),
    }
}

/// The skip summary's reasons when the document was refused for having no usable key.
fn one_skip_reason(result: &Result<(KeySet, Vec<SkippedKey>), ParseError>) -> Option<String> {
    match result {
        Err(ParseError::NoUsableKeys { skipped }) => Some(skipped.reasons.clone()),
        _ => None,
    }
}

/// Bit length of a big-endian unsigned integer, leading zero bytes allowed; 0 for zero.
fn bits_without_leading_zeros(bytes: &[u8]) -> usize {
    let mut bits = 0;
    for (index, byte) in bytes.iter().enumerate() {
        if *byte != 0 {
            let remaining_bytes = bytes.len() - index - 1;
            bits = remaining_bytes * 8 + (8 - byte.leading_zeros() as usize);
            break;
        }
    }
    bits
}
