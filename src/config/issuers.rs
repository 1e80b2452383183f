//! The trusted issuers: the one-issuer shorthand and `[[issuers]]` entries, each with its token
//! rules, where its keys come from (a `jwks_uri`, or OIDC discovery) and how they are fetched
//! (CA files, `allow_insecure_http`).

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::introspection::RawIntrospection;
use super::metadata::{MetadataClaim, compile_metadata_claims};
use super::rules::{compile_algorithms, compile_forward_claims, compile_scope_claims};
use super::{ConfigError, StringOrList, invalid, parse_http_url};
use crate::auth::introspect::{IntrospectionSettings, Mode};
use crate::auth::jwks::JwksSettings;
use crate::auth::verify::{Algorithm, ClaimSpec, Expectations, ForwardClaim, TokenType};
use crate::net::outbound::{CaBundle, FetchPolicy, Trust};

/// Slack between the longest possible refresh cycle and `jwks_max_stale_seconds`.
const STALE_MARGIN: Duration = Duration::from_secs(10);
const DEFAULT_MAX_KEYS: u64 = 100;
const MAX_MAX_KEYS: u64 = 1_000;
/// Below the shipped Envoy configuration's 0.5 s ext_authz timeout, so the client gets
/// scopegate's answer rather than Envoy's error.
const DEFAULT_UNKNOWN_KID_WAIT_MS: u64 = 300;
const MAX_UNKNOWN_KID_WAIT_MS: u64 = 10_000;

/// One trusted issuer: what its tokens must satisfy, and where its keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issuer {
    /// Issuer, audiences, algorithms, scope and forwarded claims, leeway, token types.
    pub expectations: Expectations,
    /// Its JWKS and how it is fetched and cached.
    pub jwks: JwksSettings,
    /// The claims an allow's dynamic metadata carries besides the fixed keys and the forwarded
    /// claims (`metadata_claims`); each is retained by `expectations`.
    pub metadata_claims: Vec<MetadataClaim>,
    /// Each `forward_claims` header as a metadata key, with the claim it reads (retained by
    /// `expectations`, so the metadata has the claim's JSON value: an array as a list).
    pub forwarded_metadata: Vec<MetadataClaim>,
    /// Its token introspection (RFC 7662), when `introspection` is set.
    pub introspection: Option<IntrospectionSettings>,
    /// Where it is written: `""` for the top-level shorthand, `issuers[i].` for an entry (so
    /// that warnings name its keys).
    pub(super) prefix: String,
}

/// How one issuer's keys are fetched, as written: `allow_insecure_http` already resolved
/// against the top level; and its token introspection, fetched under the same policy.
pub(super) struct RawFetch {
    pub(super) allow_insecure_http: bool,
    pub(super) ca_file: Option<String>,
    pub(super) ca_file_only: Option<bool>,
    pub(super) introspection: RawIntrospection,
}

impl RawFetch {
    /// The [`FetchPolicy`]; the CA file is read (and checked) now, so a missing or unusable one
    /// is an error naming `{prefix}ca_file` and the path, at start-up and at every reload.
    fn compile(self, prefix: &str) -> Result<FetchPolicy, ConfigError> {
        let trust = match (self.ca_file, self.ca_file_only.unwrap_or(false)) {
            (None, false) => Trust::Platform,
            (None, true) => {
                return Err(invalid(
                    format!("{prefix}ca_file_only"),
                    true,
                    format!("needs {prefix}ca_file: it says whose CAs replace the platform's"),
                ));
            }
            (Some(path), only) => {
                let bundle = CaBundle::read(Path::new(&path))
                    .map_err(|e| invalid(format!("{prefix}ca_file"), &path, e.reason))?;
                if only {
                    Trust::Only(bundle)
                } else {
                    Trust::PlatformAnd(bundle)
                }
            }
        };
        Ok(FetchPolicy {
            allow_insecure_http: self.allow_insecure_http,
            trust,
        })
    }
}

impl Issuer {
    /// Compiles one issuer's identity (`{prefix}issuer`, `audience`, `jwks_uri`, how its keys
    /// are fetched) with its token rules. Without `jwks_uri`, keys are found by OIDC discovery:
    /// the issuer (trailing `/` removed) + `/.well-known/openid-configuration`. For the
    /// top-level shorthand only, a discovery document that answers 404 falls back to the
    /// issuer's `/.well-known/jwks.json` (the shorthand's default before discovery, Auth0's
    /// layout), so that nothing that worked then stops working. Every URL keys would be
    /// fetched from must satisfy the issuer's [`FetchPolicy`].
    pub(super) fn compile(
        prefix: &str,
        issuer: Option<String>,
        audience: Option<StringOrList>,
        jwks_uri: Option<String>,
        mut fetch: RawFetch,
        rules: TokenRules,
        jwks_template: &JwksSettings,
    ) -> Result<Issuer, ConfigError> {
        let env_hint = |var: &str| {
            if prefix.is_empty() {
                format!("; or set {var}")
            } else {
                String::new()
            }
        };
        let issuer = issuer.ok_or_else(|| ConfigError::Missing {
            key: format!("{prefix}issuer"),
            hint: format!(
                " (the exact `iss` of your tokens, e.g. \"https://TENANT.auth0.com/\"{})",
                env_hint("SCOPEGATE_ISSUER")
            ),
        })?;
        let issuer_url = parse_http_url(&format!("{prefix}issuer"), &issuer)?;
        let audiences = match audience {
            None => {
                return Err(ConfigError::Missing {
                    key: format!("{prefix}audience"),
                    hint: format!(" (your API identifier{})", env_hint("SCOPEGATE_AUDIENCE")),
                });
            }
            Some(StringOrList::One(a)) => vec![a],
            Some(StringOrList::Many(list)) => list,
        };
        if audiences.is_empty() || audiences.iter().any(|a| a.trim().is_empty()) {
            return Err(invalid(
                format!("{prefix}audience"),
                &audiences,
                "audiences must be non-empty strings",
            ));
        }
        let derive = |path: &str| {
            issuer_url
                .join(&format!(
                    "{}{path}",
                    issuer_url.path().trim_end_matches('/')
                ))
                .map_err(|e| {
                    invalid(
                        format!("{prefix}issuer"),
                        &issuer,
                        format!("cannot derive {path}: {e}"),
                    )
                })
        };
        let introspection = std::mem::take(&mut fetch.introspection);
        let fetch_policy = fetch.compile(prefix)?;
        let introspection = introspection.compile(
            prefix,
            &issuer,
            derive("/.well-known/openid-configuration")?,
            &fetch_policy,
            jwks_template.fetch_timeout,
        )?;
        let (jwks_uri, discovery_issuer, fallback_uri) = match jwks_uri {
            Some(uri) => {
                let key = format!("{prefix}jwks_uri");
                let url = parse_http_url(&key, &uri)?;
                fetch_policy
                    .permits(&url)
                    .map_err(|e| invalid(key, &uri, e.to_string()))?;
                (url, None, None)
            }
            None => {
                let discovery = derive("/.well-known/openid-configuration")?;
                fetch_policy.permits(&discovery).map_err(|e| {
                    invalid(
                        format!("{prefix}issuer"),
                        &issuer,
                        format!(
                            "without jwks_uri its keys are found by OIDC discovery, and {e};                              or give an https {prefix}jwks_uri"
                        ),
                    )
                })?;
                let fallback = if prefix.is_empty() {
                    Some(derive("/.well-known/jwks.json")?)
                } else {
                    None
                };
                (discovery, Some(issuer.clone()), fallback)
            }
        };
        let mut issuer = Issuer {
            prefix: prefix.to_string(),
            jwks: JwksSettings {
                uri: jwks_uri,
                discovery_issuer,
                fallback_uri,
                fetch_policy,
                algorithms: rules.algorithms.clone(),
                ..jwks_template.clone()
            },
            expectations: Expectations {
                issuer,
                audiences,
                leeway_seconds: rules.leeway_seconds,
                algorithms: rules.algorithms,
                token_types: rules.token_types,
                scope_claims: rules.scope_claims,
                forward_claims: rules.forward_claims,
                // Filled once the rules are compiled: `Config::retain_claims`.
                retain_claims: Vec::new(),
            },
            metadata_claims: rules.metadata_claims,
            forwarded_metadata: Vec::new(),
            introspection,
        };
        // What the metadata reads again from cached claims: the metadata claims, and the
        // forwarded claims as JSON values (so that an array is a list there).
        issuer.forwarded_metadata = issuer
            .expectations
            .forward_claims
            .iter()
            .filter_map(|f| {
                ClaimSpec::parse(&forward_spec(f)).map(|spec| MetadataClaim::new(&f.header, spec))
            })
            .collect();
        let kept: Vec<ClaimSpec> = issuer
            .metadata_claims
            .iter()
            .chain(&issuer.forwarded_metadata)
            .map(|m| m.spec().clone())
            .collect();
        for spec in kept {
            issuer.expectations.retain(spec);
        }
        Ok(issuer)
    }
}

/// The token rules of one issuer as written: at the top level (the shorthand issuer's, and the
/// defaults of every `[[issuers]]` entry) or in an entry, which may override each.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTokenRules {
    /// Clock skew tolerated on `exp`/`nbf`.
    pub leeway_seconds: Option<u64>,
    /// Token algorithm allow-list.
    pub algorithms: Option<Vec<String>>,
    /// Claims whose union is the granted scopes.
    pub scope_claims: Option<Vec<String>>,
    /// Accepted `typ` header values.
    pub token_types: Option<Vec<String>>,
    /// Header name -> claim name or JSON Pointer, forwarded to the upstream on allow.
    pub forward_claims: Option<std::collections::BTreeMap<String, String>>,
    /// Claims (names or JSON Pointers) added to an allow's dynamic metadata.
    pub metadata_claims: Option<Vec<String>>,
}

/// One `[[issuers]]` entry as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIssuer {
    /// Exact expected `iss`.
    pub issuer: Option<String>,
    /// Accepted audience(s).
    pub audience: Option<StringOrList>,
    /// JWKS URL; absent: found by OIDC discovery.
    pub jwks_uri: Option<String>,
    /// Allow plain-http key sources on hosts that are not loopback; default: the top-level
    /// `allow_insecure_http`.
    pub allow_insecure_http: Option<bool>,
    /// PEM CA bundle trusted for this issuer's discovery and JWKS fetches, besides the
    /// platform's roots.
    pub ca_file: Option<String>,
    /// Trust only `ca_file`'s CAs, not the platform's.
    pub ca_file_only: Option<bool>,
    /// Overrides of the top-level token rules.
    #[serde(flatten)]
    pub rules: RawTokenRules,
    /// Its token introspection.
    #[serde(flatten)]
    pub introspection: RawIntrospection,
}

impl Issuer {
    /// Whether its opaque tokens are introspected (`introspection` set, in either mode).
    pub fn takes_opaque_tokens(&self) -> bool {
        self.introspection.is_some()
    }

    /// Whether its JWTs are introspected too, so its keys are never fetched
    /// (`introspection = "always"`).
    pub fn introspects_jwts(&self) -> bool {
        self.introspection
            .as_ref()
            .is_some_and(|i| i.mode == Mode::Always)
    }
}

/// Compiled token rules.
#[derive(Debug, Clone)]
pub(super) struct TokenRules {
    leeway_seconds: u64,
    algorithms: Vec<Algorithm>,
    scope_claims: Vec<String>,
    token_types: Option<Vec<TokenType>>,
    forward_claims: Vec<ForwardClaim>,
    /// As written (checked against `forward_claims` once both are known).
    metadata_claims_written: Option<(String, Vec<String>)>,
    metadata_claims: Vec<MetadataClaim>,
}

impl TokenRules {
    /// Compiles `raw`; a key it leaves out takes its value from `defaults`, else the built-in
    /// default. Errors name the key under `prefix`.
    pub(super) fn compile(
        prefix: &str,
        raw: RawTokenRules,
        defaults: Option<&TokenRules>,
    ) -> Result<TokenRules, ConfigError> {
        let leeway_seconds = match (raw.leeway_seconds, defaults) {
            (Some(v), _) => v,
            (None, Some(d)) => d.leeway_seconds,
            (None, None) => DEFAULT_LEEWAY,
        };
        if leeway_seconds > MAX_LEEWAY {
            return Err(invalid(
                format!("{prefix}leeway_seconds"),
                leeway_seconds,
                format!(
                    "at most {MAX_LEEWAY} seconds; clock skew larger than that is a clock problem"
                ),
            ));
        }
        let algorithms = match (raw.algorithms, defaults) {
            (None, Some(d)) => d.algorithms.clone(),
            (names, _) => compile_algorithms(prefix, names)?,
        };
        let scope_claims = match (raw.scope_claims, defaults) {
            (None, Some(d)) => d.scope_claims.clone(),
            (names, _) => compile_scope_claims(prefix, names)?,
        };
        let forward_claims = match (raw.forward_claims, defaults) {
            (None, Some(d)) => d.forward_claims.clone(),
            (table, _) => compile_forward_claims(prefix, table.unwrap_or_default())?,
        };
        let token_types = match (raw.token_types, defaults) {
            (None, Some(d)) => d.token_types.clone(),
            (None, None) => None,
            (Some(list), _) if list.is_empty() => {
                return Err(invalid(
                    format!("{prefix}token_types"),
                    &list,
                    "an empty list would refuse every token; leave the key out to accept any typ",
                ));
            }
            (Some(list), _) => Some(
                list.iter()
                    .enumerate()
                    .map(|(i, name)| {
                        TokenType::new(name).ok_or_else(|| {
                            invalid(
                                format!("{prefix}token_types[{i}]"),
                                name,
                                "not a media type name such as \"at+jwt\" or \"application/at+jwt\"",
                            )
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        // An entry's own list, else the top level's, checked against this entry's forwarded
        // headers (an entry may override either).
        let metadata_claims_written = match (raw.metadata_claims, defaults) {
            (Some(list), _) => Some((format!("{prefix}metadata_claims"), list)),
            (None, Some(d)) => d.metadata_claims_written.clone(),
            (None, None) => None,
        };
        let metadata_claims = match &metadata_claims_written {
            None => Vec::new(),
            Some((key, list)) => {
                let headers: Vec<&str> = forward_claims.iter().map(|f| f.header.as_str()).collect();
                compile_metadata_claims(key, list, &headers)?
            }
        };
        Ok(TokenRules {
            leeway_seconds,
            algorithms,
            scope_claims,
            token_types,
            forward_claims,
            metadata_claims_written,
            metadata_claims,
        })
    }
}

/// The claim spec a forwarded claim reads, written as `forward_claims` takes it: a JSON
/// Pointer to the claim (escaped) and on into it.
fn forward_spec(forward: &ForwardClaim) -> String {
    let claim = forward.claim.replace('~', "~0").replace('/', "~1");
    format!("/{claim}{}", forward.pointer)
}

const DEFAULT_LEEWAY: u64 = 60;
const MAX_LEEWAY: u64 = 600;
/// The key-set settings every issuer shares, as written (the top-level `jwks_*` keys and
/// `unknown_kid_wait_ms`).
pub(super) struct RawJwks {
    pub(super) jwks_refresh_seconds: Option<u64>,
    pub(super) jwks_min_refresh_seconds: Option<u64>,
    pub(super) jwks_max_refresh_seconds: Option<u64>,
    pub(super) jwks_refetch_cooldown_seconds: Option<u64>,
    pub(super) jwks_fetch_timeout_seconds: Option<u64>,
    pub(super) jwks_max_bytes: Option<u64>,
    pub(super) jwks_max_stale_seconds: Option<u64>,
    pub(super) jwks_max_keys: Option<u64>,
    pub(super) unknown_kid_wait_ms: Option<u64>,
}

impl RawJwks {
    /// The shared [`JwksSettings`], each value checked against its range, and the refresh
    /// bounds and staleness against each other; the URL, its fetch policy and the algorithms
    /// are each issuer's own, set by [`Issuer::compile`].
    pub(super) fn compile(self) -> Result<JwksSettings, ConfigError> {
        let seconds = |key: &str, value: Option<u64>, default: u64, range: (u64, u64)| {
            let v = value.unwrap_or(default);
            if v < range.0 || v > range.1 {
                return Err(invalid(
                    key,
                    v,
                    format!("must be between {} and {}", range.0, range.1),
                ));
            }
            Ok(Duration::from_secs(v))
        };
        let refresh = seconds(
            "jwks_refresh_seconds",
            self.jwks_refresh_seconds,
            600,
            (1, 86_400),
        )?;
        let min_refresh = seconds(
            "jwks_min_refresh_seconds",
            self.jwks_min_refresh_seconds,
            60,
            (1, 86_400),
        )?;
        let max_refresh = seconds(
            "jwks_max_refresh_seconds",
            self.jwks_max_refresh_seconds,
            3_600,
            (1, 86_400),
        )?;
        if !(min_refresh <= refresh && refresh <= max_refresh) {
            return Err(invalid(
                "jwks_refresh_seconds",
                refresh.as_secs(),
                format!(
                    "must lie between jwks_min_refresh_seconds ({}) and jwks_max_refresh_seconds ({})",
                    min_refresh.as_secs(),
                    max_refresh.as_secs()
                ),
            ));
        }
        let refetch_cooldown = seconds(
            "jwks_refetch_cooldown_seconds",
            self.jwks_refetch_cooldown_seconds,
            5,
            (1, 3_600),
        )?;
        let fetch_timeout = seconds(
            "jwks_fetch_timeout_seconds",
            self.jwks_fetch_timeout_seconds,
            5,
            (1, 60),
        )?;
        let max_stale = seconds(
            "jwks_max_stale_seconds",
            self.jwks_max_stale_seconds,
            86_400,
            (1, 30 * 86_400),
        )?;
        // The refresher may wait up to max_refresh (an issuer's max-age is honoured that far) plus
        // one fetch before the set is renewed; 10 s more leaves room for a retry. A shorter
        // max_stale would pass validation and then deny every protected request (and flap
        // health) between two perfectly healthy refreshes.
        let stale_floor = max_refresh + fetch_timeout + STALE_MARGIN;
        if max_stale < stale_floor {
            return Err(invalid(
                "jwks_max_stale_seconds",
                max_stale.as_secs(),
                format!(
                    "must be at least jwks_max_refresh_seconds ({}) + jwks_fetch_timeout_seconds \
                     ({}) + {} = {}, or the keys could go stale between two successful refreshes",
                    max_refresh.as_secs(),
                    fetch_timeout.as_secs(),
                    STALE_MARGIN.as_secs(),
                    stale_floor.as_secs()
                ),
            ));
        }
        let max_keys = self.jwks_max_keys.unwrap_or(DEFAULT_MAX_KEYS);
        if !(1..=MAX_MAX_KEYS).contains(&max_keys) {
            return Err(invalid(
                "jwks_max_keys",
                max_keys,
                format!("must be between 1 and {MAX_MAX_KEYS}"),
            ));
        }
        let unknown_kid_wait_ms = self
            .unknown_kid_wait_ms
            .unwrap_or(DEFAULT_UNKNOWN_KID_WAIT_MS);
        if unknown_kid_wait_ms > MAX_UNKNOWN_KID_WAIT_MS {
            return Err(invalid(
                "unknown_kid_wait_ms",
                unknown_kid_wait_ms,
                format!(
                    "must be between 0 and {MAX_UNKNOWN_KID_WAIT_MS}; keep it below Envoy's \
                     ext_authz timeout, or the client gets Envoy's error instead of our answer"
                ),
            ));
        }
        let max_bytes = self.jwks_max_bytes.unwrap_or(1024 * 1024);
        if !(1024..=16 * 1024 * 1024).contains(&max_bytes) {
            return Err(invalid(
                "jwks_max_bytes",
                max_bytes,
                "must be between 1024 and 16777216",
            ));
        }
        Ok(JwksSettings {
            uri: "http://placeholder.invalid/".parse().expect("a valid URL"),
            discovery_issuer: None,
            fallback_uri: None,
            fetch_policy: FetchPolicy::default(),
            algorithms: Vec::new(),
            refresh,
            min_refresh,
            max_refresh,
            refetch_cooldown,
            fetch_timeout,
            max_bytes: max_bytes as usize,
            max_stale,
            max_keys: max_keys as usize,
            unknown_kid_wait: Duration::from_millis(unknown_kid_wait_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{BASE, compile};
    use super::*;
    use crate::config::*;

    /// The shorthand without `jwks_uri` finds its keys by discovery like an `[[issuers]]`
    /// entry, and falls back to the issuer's `/.well-known/jwks.json` (its old default) only
    /// when the discovery document answers 404; `jwks_uri` still overrides both.
    #[test]
    fn the_shorthand_uses_discovery_with_the_old_default_as_its_fallback() {
        for issuer in ["https://tenant.example", "https://tenant.example/"] {
            let raw = RawConfig::from_toml(
                &format!("issuer = {issuer:?}\naudience = [\"a\", \"b\"]"),
                "<test>",
            )
            .expect("parses");
            let c = raw.compile().expect("compiles");
            let jwks = &c.issuers[0].jwks;
            assert_eq!(
                jwks.uri.as_str(),
                "https://tenant.example/.well-known/openid-configuration"
            );
            assert_eq!(jwks.discovery_issuer.as_deref(), Some(issuer));
            assert_eq!(
                jwks.fallback_uri.as_ref().map(|u| u.as_str()),
                Some("https://tenant.example/.well-known/jwks.json")
            );
            assert_eq!(c.issuers[0].expectations.audiences, ["a", "b"]);
        }
        let c = compile("jwks_uri = \"https://keys.example/jwks\"").expect("compiles");
        let jwks = &c.issuers[0].jwks;
        assert_eq!(jwks.uri.as_str(), "https://keys.example/jwks");
        assert_eq!((&jwks.discovery_issuer, &jwks.fallback_uri), (&None, &None));
    }

    /// Keys come over https, or plain http from a loopback host, unless the issuer allows
    /// plain http; the refusal names the key. Allowing it is a warning naming the key.
    #[test]
    fn plain_http_key_sources_are_refused_unless_loopback_or_allowed() {
        let entry = |issuer: &str, extra: &str| {
            format!("[[issuers]]\nissuer = {issuer:?}\naudience = \"api\"\n{extra}\n")
        };
        let refused: &[(String, &str)] = &[
            (
                "jwks_uri = \"http://idp.example.com/keys\"".into(),
                "`jwks_uri` = \"http://idp.example.com/keys\"",
            ),
            (
                "jwks_uri = \"http://10.1.2.3/keys\"\nallow_insecure_http = false".into(),
                "`jwks_uri`",
            ),
            (
                entry("http://idp.example.com/", ""),
                "`issuers[0].issuer` = \"http://idp.example.com/\"",
            ),
            (
                entry("https://a.example/", "jwks_uri = \"http://a.example/keys\""),
                "`issuers[0].jwks_uri`",
            ),
            (
                format!(
                    "allow_insecure_http = true\n{}",
                    entry(
                        "https://a.example/",
                        "jwks_uri = \"http://a.example/k\"\nallow_insecure_http = false"
                    )
                ),
                "`issuers[0].jwks_uri`",
            ),
        ];
        for (extra, key) in refused {
            // The shorthand cases are checked with an http issuer, the rest on their own.
            let text = if extra.contains("[[issuers]]") {
                extra.clone()
            } else {
                format!("{BASE}{extra}")
            };
            let err = RawConfig::from_toml(&text, "<test>")
                .and_then(RawConfig::compile)
                .expect_err(extra)
                .to_string();
            assert!(
                err.contains(key) && err.contains("allow_insecure_http = true"),
                "{extra}: {err}"
            );
        }
        let err = RawConfig::from_toml(
            "issuer = \"http://idp.example.com/\"\naudience = \"api\"",
            "<test>",
        )
        .and_then(RawConfig::compile)
        .expect_err("an http issuer found by discovery")
        .to_string();
        assert!(
            err.contains("`issuer` = \"http://idp.example.com/\""),
            "{err}"
        );

        for (text, warned) in [
            (
                "issuer = \"http://127.0.0.1:8081/\"\naudience = \"api\"".to_string(),
                vec![],
            ),
            (
                format!("{BASE}jwks_uri = \"http://localhost:1/keys\""),
                vec![],
            ),
            (format!("{BASE}jwks_uri = \"http://[::1]:1/keys\""), vec![]),
            (
                "issuer = \"http://issuer:8081/\"\naudience = \"api\"\nallow_insecure_http = true"
                    .to_string(),
                vec!["allow_insecure_http"],
            ),
            (
                format!(
                    "allow_insecure_http = true\n{}{}",
                    entry("http://a:1/", ""),
                    entry(
                        "http://b:1/",
                        "allow_insecure_http = false\njwks_uri = \"https://b/k\""
                    ),
                ),
                vec!["issuers[0].allow_insecure_http"],
            ),
            (
                format!(
                    "{}{}",
                    entry("https://a/", "jwks_uri = \"https://a/k\""),
                    entry("http://b:1/", "allow_insecure_http = true"),
                ),
                vec!["issuers[1].allow_insecure_http"],
            ),
        ] {
            let c = RawConfig::from_toml(&text, "<test>")
                .and_then(RawConfig::compile)
                .unwrap_or_else(|e| panic!("{text}: {e}"));
            let keys: Vec<&str> = c.warnings().iter().map(|w| w.key.as_str()).collect();
            assert_eq!(keys, warned, "{text}");
        }
    }

    /// `ca_file` is read when the configuration compiles: a missing or unusable file, or
    /// `ca_file_only` without one, is an error naming the key (and the path); a CA belongs to
    /// one issuer, so the top-level one is the shorthand's and refused beside `[[issuers]]`.
    // Its certificates come from the development generator (feature `dev`).
    #[cfg(feature = "dev")]
    #[test]
    fn ca_files_are_read_at_compile_time_and_errors_name_key_and_path() {
        let dir = tempfile::tempdir().expect("dir");
        let certs = crate::dev::certs::generate(dir.path(), &["localhost".into()]).expect("certs");
        let ca = certs.ca_cert.display().to_string();
        let missing = dir.path().join("missing.pem").display().to_string();
        let key_file = certs.server_key.display().to_string();

        let c = compile(&format!("ca_file = {ca:?}")).expect("compiles");
        match &c.issuers[0].jwks.fetch_policy.trust {
            Trust::PlatformAnd(bundle) => assert_eq!(bundle.path(), certs.ca_cert),
            other => panic!("{other:?}"),
        }
        let c = compile(&format!("ca_file = {ca:?}\nca_file_only = true")).expect("compiles");
        assert!(matches!(
            c.issuers[0].jwks.fetch_policy.trust,
            Trust::Only(_)
        ));
        let entry =
            format!("[[issuers]]\nissuer = \"https://a/\"\naudience = \"api\"\nca_file = {ca:?}\n");
        let c = RawConfig::from_toml(&entry, "<test>")
            .and_then(RawConfig::compile)
            .expect("an entry's ca_file");
        assert!(c.issuers[0].jwks.fetch_policy.trust.ca_file().is_some());

        for (text, want) in [
            (
                format!("{BASE}ca_file = {missing:?}"),
                format!("`ca_file` = {missing:?}"),
            ),
            (
                format!("{BASE}ca_file = {key_file:?}"),
                format!("`ca_file` = {key_file:?}: no PEM certificate"),
            ),
            (
                format!("{BASE}ca_file_only = true"),
                "`ca_file_only` = true: needs ca_file".to_string(),
            ),
            (
                format!(
                    "{}ca_file_only = true\nca_file = {missing:?}",
                    entry.split("ca_file").next().unwrap_or_default()
                ),
                format!("`issuers[0].ca_file` = {missing:?}"),
            ),
            (
                format!("ca_file = {ca:?}\n{entry}"),
                "`ca_file` = \"with [[issuers]]\"".to_string(),
            ),
        ] {
            let err = RawConfig::from_toml(&text, "<test>")
                .and_then(RawConfig::compile)
                .expect_err(&text)
                .to_string();
            assert!(err.contains(&want), "{text}\n{err}");
        }
    }

    #[test]
    fn issuer_list_errors_name_the_key() {
        let entry = "[[issuers]]\nissuer = \"https://a.example/\"\naudience = \"api\"\njwks_uri = \"https://a.example/keys\"\n";
        let cases: &[(String, &str)] = &[
            (format!("{entry}{entry}"), "issuers[1].issuer"),
            (
                "[[issuers]]\nissuer = \"https://a.example/\"\njwks_uri = \"https://a/k\"".into(),
                "issuers[0].audience",
            ),
            (format!("{entry}bogus = 1"), "bogus"),
            (
                format!("{entry}algorithms = [\"HS256\"]"),
                "issuers[0].algorithms[0]",
            ),
            (
                format!("{entry}leeway_seconds = 601"),
                "issuers[0].leeway_seconds",
            ),
            (
                format!("{entry}scope_claims = [\"aud\"]"),
                "issuers[0].scope_claims[0]",
            ),
            (
                format!("{entry}[issuers.forward_claims]\n\"x_y\" = \"z\""),
                "issuers[0].forward_claims",
            ),
            ("issuers = []".into(), "issuers"),
        ];
        for (text, key) in cases {
            let err = RawConfig::from_toml(text, "<test>")
                .and_then(RawConfig::compile)
                .expect_err(text)
                .to_string();
            assert!(
                err.contains(key),
                "error for {text:?} should name {key:?}: {err}"
            );
        }
    }

    /// A token's issuer is chosen by exact `iss` among several, and with one issuer without
    /// reading the token at all.
    #[test]
    fn issuer_for_chooses_by_exact_iss_and_reads_nothing_with_one_issuer() {
        let two = RawConfig::from_toml(
            "[[issuers]]\nissuer = \"https://a.example/\"\naudience = \"api\"\n\
             [[issuers]]\nissuer = \"https://b.example/\"\naudience = \"api\"\n",
            "<test>",
        )
        .and_then(RawConfig::compile)
        .expect("compiles");
        let of = |iss: Option<&str>| {
            two.issuer_for(|| Ok::<_, ()>(iss.map(str::to_owned)))
                .expect("no error")
        };
        assert_eq!(of(Some("https://b.example/")), Some(1));
        assert_eq!(of(Some("https://a.example/")), Some(0));
        assert_eq!(of(Some("https://B.example/")), None);
        assert_eq!(of(Some("https://a.example")), None);
        assert_eq!(of(None), None);
        assert_eq!(
            two.issuer_for(|| Err::<Option<String>, _>("bad")),
            Err("bad")
        );
        let one = compile("").expect("shorthand");
        assert_eq!(
            one.issuer_for(|| -> Result<Option<String>, ()> { panic!("read a token") }),
            Ok(Some(0))
        );
    }

    /// An `[[issuers]]` entry without `jwks_uri` is found by OIDC discovery, under the issuer's
    /// own path, with no fallback (that is the shorthand's alone).
    #[test]
    fn issuers_without_jwks_uri_use_discovery() {
        for (issuer, want) in [
            (
                "https://sso.example.com/realms/staff",
                "https://sso.example.com/realms/staff/.well-known/openid-configuration",
            ),
            (
                "https://sso.example.com/realms/staff/",
                "https://sso.example.com/realms/staff/.well-known/openid-configuration",
            ),
            (
                "https://a.example/",
                "https://a.example/.well-known/openid-configuration",
            ),
        ] {
            let c = RawConfig::from_toml(
                &format!("[[issuers]]\nissuer = {issuer:?}\naudience = \"api\""),
                "<test>",
            )
            .and_then(RawConfig::compile)
            .expect("compiles");
            assert_eq!(c.issuers[0].jwks.uri.as_str(), want, "{issuer}");
            assert_eq!(c.issuers[0].jwks.discovery_issuer.as_deref(), Some(issuer));
            assert_eq!(c.issuers[0].jwks.fallback_uri, None);
        }
    }

    /// The environment overrides describe the one-issuer shorthand: beside `[[issuers]]` they
    /// are a configuration error, never silently a third issuer or an ignored setting.
    #[test]
    fn issuer_environment_overrides_conflict_with_an_issuer_list() {
        let mut raw = RawConfig::from_toml(
            "[[issuers]]\nissuer = \"https://a.example/\"\naudience = \"api\"\njwks_uri = \"https://a.example/k\"",
            "<test>",
        )
        .expect("parses");
        raw.apply_env(|name| (name == "SCOPEGATE_JWKS_URI").then(|| "https://x.example/k".into()));
        let err = raw.compile().expect_err("conflict").to_string();
        assert!(
            err.contains("`jwks_uri`") && err.contains("SCOPEGATE_ISSUER"),
            "{err}"
        );
    }

    /// `[[issuers]]` entries inherit the top-level token rules and may override each.
    #[test]
    fn issuers_inherit_and_override_the_top_level_rules() {
        let c = RawConfig::from_toml(
            r#"
            leeway_seconds = 30
            algorithms = ["RS256", "ES256"]
            scope_claims = ["scope", "permissions"]
            [forward_claims]
            "x-auth-email" = "email"

            [[issuers]]
            issuer = "https://a.example/"
            audience = "api"
            jwks_uri = "https://a.example/keys"

            [[issuers]]
            issuer = "https://b.example/realms/staff"
            audience = ["account", "api"]
            jwks_uri = "https://b.example/certs"
            algorithms = ["EdDSA"]
            leeway_seconds = 5
            [issuers.forward_claims]
            "x-auth-org" = "/org/id"
            "#,
            "<test>",
        )
        .expect("parses")
        .compile()
        .expect("compiles");
        let [a, b] = &c.issuers[..] else {
            panic!("two issuers: {:?}", c.issuers)
        };
        assert_eq!(a.expectations.leeway_seconds, 30);
        assert_eq!(
            a.expectations.algorithms,
            [Algorithm::RS256, Algorithm::ES256]
        );
        assert_eq!(a.jwks.algorithms, a.expectations.algorithms);
        assert_eq!(a.expectations.scope_claims, ["scope", "permissions"]);
        assert_eq!(b.expectations.leeway_seconds, 5);
        assert_eq!(b.expectations.algorithms, [Algorithm::EdDSA]);
        assert_eq!(b.jwks.algorithms, [Algorithm::EdDSA]);
        assert_eq!(b.expectations.scope_claims, ["scope", "permissions"]);
        assert_eq!(b.expectations.audiences, ["account", "api"]);
        assert_eq!(b.jwks.uri.as_str(), "https://b.example/certs");
        assert_eq!(c.forwarded_headers(), ["x-auth-email", "x-auth-org"]);
        assert!(
            c.to_string()
                .contains("issuer            https://b.example/realms/staff")
        );
    }
}
