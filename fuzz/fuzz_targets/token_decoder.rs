//! Fuzzes `scopegate::auth::verify::verify`, which takes the attacker's token apart (base64url segments,
//! JSON header, algorithm allow-list, key choice, RSA signature, JSON claims) before anything
//! trusts it.
//!
//! The key set is a fixed JWKS holding one 2048-bit RSA public key twice: as `fuzz-rs256`, published
//! for RS256 only, and as `fuzz-any`, published without `alg` and so prepared for all six
//! algorithms the configuration allows. Both key-selection paths and every RSA algorithm are thus
//! reachable. The private key was generated with `openssl genpkey -algorithm RSA -pkeyopt
//! rsa_keygen_bits:2048`, used once to sign [`SEED_TOKEN`] (RS256, `kid` `fuzz-rs256`, `exp` in
//! 2100) and then deleted; only the public `n` and `e` are kept here.
//!
//! Property: no panic, and `Ok` for no token but [`SEED_TOKEN`] itself, byte for byte. Without the
//! private key nobody can make another signature verify, so any other `Ok` means verification
//! accepted something it did not check (a second encoding of a segment, a key the token chose, an
//! algorithm confusion, ...).
//!
//! Input modes, by the first byte:
//! - `h`, `p` or `s`: the rest is the raw (decoded) header JSON, payload JSON or signature, which
//!   replaces that segment of the seed token, base64url-encoded; the other two segments stay
//!   valid, so mutations reach the header, key and signature checks instead of dying in the
//!   segment syntax;
//! - anything else: the whole input is the token (skipped when not UTF-8, which a header value
//!   reaching the verifier never is).
#![no_main]

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use scopegate::config::RawConfig;
use scopegate::auth::keys::KeySet;
use scopegate::auth::verify::{Expectations, verify};

/// The public half of the fuzzing key, in JWK form (base64url, big-endian).
const MODULUS: &str = "mCihTUgC5w9E1pE9Fh3xxxseF0DGD_rTox-52_XqFF2OJVSehIZNM9dCc_WCD-V4Aj1vhVcDJf7OxgLnKZac4Upba-ZNVZjn6z5UOKFLV1_d7FZi1RW4uPb4PHOra78mLAE9U7s509ZfdtOApsfdQa6eeKtx-W4G6941VM1DDJHbSvytWtRCWom5i1hk-zU5Lurffour4I_DPazmPFrWYbGx7a0YRkqbWJlOBMVXVfREtn57HweNGkMfP2cLAlpwff9JzBRnDkuE05IWHDXRVCFd4i-V12fhSrp9fjUEjDK5oxIrtGVHCgItL3CVOX1NAvXa4-KJiK4KyC845e-3Tw";
const EXPONENT: &str = "AQAB";

/// The one valid token: header `{"alg":"RS256","kid":"fuzz-rs256","typ":"JWT"}`, claims for
/// [`CONFIG`]'s issuer and audience with `exp` 4102444800 (2100-01-01) and two scopes.
const SEED_TOKEN: &str = concat!(
    "eyJhbGciOiJSUzI1NiIsImtpZCI6ImZ1enotcnMyNTYiLCJ0eXAiOiJKV1QifQ",
    ".",
    "eyJpc3MiOiJodHRwczovL2lzc3Vlci5mdXp6LmV4YW1wbGUvIiwic3ViIjoiZnV6ei1zZWVkIiwiYXVkIjoiaHR0cHM6Ly9hcGkuZnV6ei5leGFtcGxlIiwiaWF0IjoxNzAwMDAwMDAwLCJleHAiOjQxMDI0NDQ4MDAsInNjb3BlIjoicmVhZDptZXNzYWdlcyB3cml0ZTptZXNzYWdlcyJ9",
    ".",
    "OLMBUob7QPCFppLxDJKB0bhDYNQeHD1G1I8D5jRsZWpvX_C8EEDYkk1bjd68C5A6-DkmQXFzb6ue_qIdw_iSFxtfhfbSPI6JtiDLHnvhYOhSnTKBdGvb_mvXH_6Z3QAK69ddwZ34ftNglbyKxn9LnZvxC4cXwpWRW92MEVuVt5Kii-Wmu3Z2zuCXkTvVBKpVuMXOZauDBJ6_yYrA4a1bH9JhcR0BdttdQ1lKdN7sAeMJ0WZZwXgCCl3b8XQDu5A7W2PA8p7MTRseCQ-HfRoKdcm-8U3JljV3Y8uY1fke3iNV4G2yA-EJEkp0jtB1NPjGQZDo6MUozA0jc4Dpx2VvUw",
);

/// Compiled through the real configuration code, so the expectations are those a deployment gets.
const CONFIG: &str = r#"
issuer = "https://issuer.fuzz.example/"
audience = "https://api.fuzz.example"
leeway_seconds = 60
algorithms = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]
"#;

/// A fixed clock (2025-06-15), so that a crash reproduces whenever it is replayed.
const NOW: u64 = 1_750_000_000;

struct Fixture {
    keys: KeySet,
    expect: Expectations,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let expect = RawConfig::from_toml(CONFIG, "<fuzz>")
            .and_then(RawConfig::compile)
            .expect("the fuzzing configuration compiles")
            .issuers()[0]
            .expectations
            .clone();
        let jwks = format!(
            r#"{{"keys":[
                {{"kty":"RSA","use":"sig","alg":"RS256","kid":"fuzz-rs256","n":"{MODULUS}","e":"{EXPONENT}"}},
                {{"kty":"RSA","use":"sig","kid":"fuzz-any","n":"{MODULUS}","e":"{EXPONENT}"}}
            ]}}"#
        );
        let (keys, skipped) = KeySet::parse(jwks.as_bytes(), &expect.algorithms, 100)
            .expect("the fuzzing JWKS parses");
        assert!(skipped.is_empty(), "fuzzing JWKS entries skipped: {skipped:?}");
        // Without this the Ok branch below could be unreachable and the property vacuous.
        assert!(
            verify(SEED_TOKEN, &keys, &expect, NOW).is_ok(),
            "the seed token must verify against the embedded key"
        );
        Fixture { keys, expect }
    })
}

fuzz_target!(|data: &[u8]| {
    let fixture = fixture();
    let spliced;
    let token = match data.split_first() {
        Some((b'h', header)) => {
            spliced = splice(0, header);
            spliced.as_str()
        }
        Some((b'p', payload)) => {
            spliced = splice(1, payload);
            spliced.as_str()
        }
        Some((b's', signature)) => {
            spliced = splice(2, signature);
            spliced.as_str()
        }
        _ => match std::str::from_utf8(data) {
            Ok(token) => token,
            Err(_) => return,
        },
    };
    let result = verify(token, &fixture.keys, &fixture.expect, NOW);
    if let Ok(claims) = result {
        assert_eq!(
            token, SEED_TOKEN,
            "a token other than the seed verified (claims: {claims:?})"
        );
    }
});

/// The seed token with segment `index` replaced by `raw`, base64url-encoded.
fn splice(index: usize, raw: &[u8]) -> String {
    let mut segments: Vec<String> = SEED_TOKEN.split('.').map(str::to_owned).collect();
    segments[index] = URL_SAFE_NO_PAD.encode(raw);
    segments.join(".")
}
