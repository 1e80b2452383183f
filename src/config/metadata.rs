//! The keys of the dynamic metadata an allow carries (`decide` builds it): the fixed ones, and
//! the `metadata_claims` an issuer adds.

use super::{ConfigError, invalid};
use crate::auth::verify::ClaimSpec;

/// The metadata key of the token's `sub`.
pub const METADATA_SUBJECT: &str = "sub";
/// The metadata key of the issuer that verified the token (its `iss`, exactly).
pub const METADATA_ISSUER: &str = "iss";
/// The metadata key of the OAuth client: the `client_id` claim (RFC 9068), else `azp`.
pub const METADATA_CLIENT_ID: &str = "client_id";
/// The metadata key of the granted scopes, a list.
pub const METADATA_SCOPES: &str = "scopes";
/// The metadata key of the deciding rule's name (`default` when none matched).
pub const METADATA_RULE: &str = "rule";

/// Every key scopegate itself puts in an allow's metadata, and the one Envoy's ext_authz filter
/// adds to it (`ext_authz_duration`): no configured claim may take one of them.
pub const RESERVED_METADATA_KEYS: [&str; 6] = [
    METADATA_SUBJECT,
    METADATA_ISSUER,
    METADATA_CLIENT_ID,
    METADATA_SCOPES,
    METADATA_RULE,
    "ext_authz_duration",
];

/// A claim an allow's metadata carries (`metadata_claims`), under the key it is written as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetadataClaim {
    key: String,
    spec: ClaimSpec,
}

impl MetadataClaim {
    /// `spec` under `key` (a `forward_claims` header's name, checked where it is compiled).
    pub(super) fn new(key: &str, spec: ClaimSpec) -> MetadataClaim {
        MetadataClaim {
            key: key.to_owned(),
            spec,
        }
    }

    /// The metadata key: the claim name or JSON Pointer as written.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The claim it reads.
    pub fn spec(&self) -> &ClaimSpec {
        &self.spec
    }
}

/// `{prefix}metadata_claims`: claim names or JSON Pointers (RFC 6901), each a metadata key of
/// its own that neither scopegate's fixed keys ([`RESERVED_METADATA_KEYS`]) nor a forwarded
/// header of the same issuer (`forward_headers`, which are metadata keys too) already takes.
pub(super) fn compile_metadata_claims(
    key: &str,
    specs: &[String],
    forward_headers: &[&str],
) -> Result<Vec<MetadataClaim>, ConfigError> {
    let mut out: Vec<MetadataClaim> = Vec::with_capacity(specs.len());
    for (i, written) in specs.iter().enumerate() {
        let key = format!("{key}[{i}]");
        let spec = ClaimSpec::parse(written).ok_or_else(|| {
            invalid(
                &key,
                written,
                "a claim name, or a JSON Pointer (RFC 6901) starting with `/`",
            )
        })?;
        if RESERVED_METADATA_KEYS.contains(&written.as_str()) {
            return Err(invalid(
                key,
                written,
                "every allow's metadata already has this key (sub, iss, client_id, scopes, \
                 rule; ext_authz_duration is Envoy's); a claim of that name can be named by its \
                 JSON Pointer, \"/NAME\"",
            ));
        }
        // `iss`, `sub` and `aud` are kept from their fields; the times never are.
        if ["exp", "nbf", "iat"].contains(&spec.claim()) {
            return Err(invalid(
                key,
                written,
                "the token's times are checked, not passed on",
            ));
        }
        if forward_headers.contains(&written.as_str()) {
            return Err(invalid(
                key,
                written,
                "forward_claims already puts a value under this key (its header's name)",
            ));
        }
        if out.iter().any(|m| m.key == *written) {
            return Err(invalid(key, written, "listed twice"));
        }
        out.push(MetadataClaim {
            key: written.clone(),
            spec,
        });
    }
    Ok(out)
}

impl super::Config {
    /// A `forward_claims` header named as a fixed metadata key (`sub`, `iss`, `scopes`, `rule`)
    /// is still set, but the metadata keeps the fixed key's value: said, not refused, so that
    /// configurations that started before the metadata existed keep starting.
    pub(super) fn metadata_key_warnings(&self) -> Vec<super::ConfigWarning> {
        self.issuers
            .iter()
            .flat_map(|issuer| {
                issuer
                    .forwarded_metadata
                    .iter()
                    .filter(|m| RESERVED_METADATA_KEYS.contains(&m.key()))
                    .map(|m| super::ConfigWarning {
                        key: format!("{}forward_claims.{:?}", issuer.prefix, m.key()),
                        message: format!(
                            "the header is set, but an allow's dynamic metadata keeps its own \
                             {:?} key, not this claim; name the header otherwise to see the \
                             claim there",
                            m.key()
                        ),
                    })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::compile;

    const ISSUERS: &str = "[[issuers]]\nissuer = \"https://a.example/\"\naudience = \"api\"\n\
                           jwks_uri = \"https://a.example/keys\"\n";

    /// Every refused `metadata_claims` names its key (the entry's, or the top level's that an
    /// entry inherits) and the value.
    #[test]
    fn metadata_claims_that_would_clash_or_never_hold_a_value_are_refused() {
        let cases = [
            ("metadata_claims = [\"\"]", "metadata_claims[0]"),
            ("metadata_claims = [\"/org/~2\"]", "metadata_claims[0]"),
            (
                "metadata_claims = [\"email\", \"client_id\"]",
                "metadata_claims[1]",
            ),
            ("metadata_claims = [\"scopes\"]", "metadata_claims[0]"),
            (
                "metadata_claims = [\"ext_authz_duration\"]",
                "metadata_claims[0]",
            ),
            ("metadata_claims = [\"exp\"]", "metadata_claims[0]"),
            ("metadata_claims = [\"/iat\"]", "metadata_claims[0]"),
            (
                "metadata_claims = [\"email\", \"email\"]",
                "metadata_claims[1]",
            ),
            (
                "metadata_claims = [\"x-auth-email\"]\n[forward_claims]\n\"x-auth-email\" = \"email\"",
                "metadata_claims[0]",
            ),
        ];
        for (extra, key) in cases {
            let error = compile(extra).expect_err(extra).to_string();
            assert!(error.contains(key), "{extra}: {error}");
        }
        // An entry's own forward_claims against the top-level list it inherits.
        let inherited = format!(
            "metadata_claims = [\"x-org\"]\n{ISSUERS}[issuers.forward_claims]\n\"x-org\" = \"org\"\n"
        );
        let raw = crate::config::RawConfig::from_toml(&inherited, "<test>").expect("toml");
        let error = raw.compile().expect_err("clash").to_string();
        assert!(error.contains("metadata_claims[0]"), "{error}");
        let own = format!("{ISSUERS}metadata_claims = [\"org\", \"org\"]\n");
        let raw = crate::config::RawConfig::from_toml(&own, "<test>").expect("toml");
        let error = raw.compile().expect_err("twice").to_string();
        assert!(error.contains("issuers[0].metadata_claims[1]"), "{error}");
    }

    /// A forwarded header named as a fixed metadata key is accepted, with a warning naming it.
    #[test]
    fn a_forwarded_header_named_as_a_fixed_key_is_a_warning() {
        let config = compile("[forward_claims]\n\"rule\" = \"role\"\n\"x-auth-email\" = \"email\"")
            .expect("accepted");
        let warnings: Vec<String> = config.warnings().iter().map(ToString::to_string).collect();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].starts_with("forward_claims.\"rule\": "),
            "{warnings:?}"
        );
    }

    /// The claims are kept per issuer (an entry's list replaces the top level's), retained
    /// by its expectations (so the token cache keeps them), and printed by `check-config`.
    #[test]
    fn metadata_claims_are_per_issuer_retained_and_printed() {
        let text = format!(
            "metadata_claims = [\"tenant\", \"/org/id\"]\n{ISSUERS}\
             [[issuers]]\nissuer = \"https://b.example/\"\naudience = \"api\"\n\
             jwks_uri = \"https://b.example/keys\"\nmetadata_claims = [\"aud\"]\n"
        );
        let config = crate::config::RawConfig::from_toml(&text, "<test>")
            .and_then(crate::config::RawConfig::compile)
            .expect("valid");
        let keys = |i: usize| -> Vec<&str> {
            config.issuers()[i]
                .metadata_claims
                .iter()
                .map(|m| m.key())
                .collect()
        };
        assert_eq!(keys(0), ["tenant", "/org/id"]);
        assert_eq!(keys(1), ["aud"]);
        let retained: Vec<String> = config.issuers()[0]
            .expectations
            .retain_claims
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(retained, ["tenant", "/org/id"]);
        let printed = config.to_string();
        assert!(
            printed.contains("metadata claims   tenant, /org/id\n"),
            "{printed}"
        );
        assert!(printed.contains("metadata claims   aud\n"), "{printed}");
    }
}
