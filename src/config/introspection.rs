//! An issuer's token introspection (RFC 7662) as written, and compiled: `introspection`, the
//! endpoint, the client's credentials (the secret read from `client_secret_file` at start-up
//! and at every reload, its content never shown), and the caches' times and the caps, all on
//! the issuer (or the one-issuer shorthand), since each protects and is served by one identity
//! provider.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, invalid};
use crate::auth::introspect::{ClientAuth, ClientSecret, Endpoint, IntrospectionSettings, Mode};
use crate::net::outbound::FetchPolicy;

const DEFAULT_CACHE_SECONDS: u64 = 60;
const DEFAULT_NEGATIVE_CACHE_SECONDS: u64 = 10;
const DEFAULT_MAX_IN_FLIGHT: u64 = 64;
const DEFAULT_MAX_CALLS_PER_SECOND: u64 = 100;
/// An hour: longer would honour a revocation later than any deployment should accept.
const MAX_CACHE_SECONDS: u64 = 3_600;
const MAX_IN_FLIGHT: u64 = 10_000;
const MAX_CALLS_PER_SECOND: u64 = 100_000;

/// The introspection keys of an issuer (or of the shorthand), as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIntrospection {
    /// `"opaque"` or `"always"`: which of the issuer's tokens are introspected; absent: none.
    pub introspection: Option<String>,
    /// The endpoint; absent: the discovery document's `introspection_endpoint`.
    pub introspection_endpoint: Option<String>,
    /// The client id scopegate authenticates with.
    pub client_id: Option<String>,
    /// A file holding the client secret (never the secret itself).
    pub client_secret_file: Option<String>,
    /// `"client_secret_basic"` (default) or `"client_secret_post"`.
    pub client_auth: Option<String>,
    /// Refuse active answers without `aud`; default true.
    pub introspection_require_audience: Option<bool>,
    /// How long an active answer is remembered at most; default 60.
    pub introspection_cache_seconds: Option<u64>,
    /// How long an inactive answer is remembered; default 10.
    pub introspection_negative_cache_seconds: Option<u64>,
    /// Most calls in flight at once; default 64.
    pub introspection_max_in_flight: Option<u64>,
    /// Most calls started per second; default 100.
    pub introspection_max_calls_per_second: Option<u64>,
}

impl RawIntrospection {
    /// The keys given, by name, for errors about keys that need `introspection`.
    pub(super) fn given(&self) -> Vec<&'static str> {
        [
            ("introspection", self.introspection.is_some()),
            (
                "introspection_endpoint",
                self.introspection_endpoint.is_some(),
            ),
            ("client_id", self.client_id.is_some()),
            ("client_secret_file", self.client_secret_file.is_some()),
            ("client_auth", self.client_auth.is_some()),
            (
                "introspection_require_audience",
                self.introspection_require_audience.is_some(),
            ),
            (
                "introspection_cache_seconds",
                self.introspection_cache_seconds.is_some(),
            ),
            (
                "introspection_negative_cache_seconds",
                self.introspection_negative_cache_seconds.is_some(),
            ),
            (
                "introspection_max_in_flight",
                self.introspection_max_in_flight.is_some(),
            ),
            (
                "introspection_max_calls_per_second",
                self.introspection_max_calls_per_second.is_some(),
            ),
        ]
        .into_iter()
        .filter_map(|(key, set)| set.then_some(key))
        .collect()
    }

    /// Compiles the keys under `prefix` for `issuer` (whose discovery document is `discovery`),
    /// fetched under `fetch_policy` within `fetch_timeout`. `None` without `introspection`;
    /// its other keys are then an error. The secret file is read now: missing, unreadable or
    /// empty is an error naming the key and the file, never its content.
    pub(super) fn compile(
        self,
        prefix: &str,
        issuer: &str,
        discovery: reqwest::Url,
        fetch_policy: &FetchPolicy,
        fetch_timeout: Duration,
    ) -> Result<Option<IntrospectionSettings>, ConfigError> {
        let Some(mode) = &self.introspection else {
            if let Some(key) = self.given().first() {
                return Err(invalid(
                    format!("{prefix}{key}"),
                    "set",
                    format!("only with {prefix}introspection = \"opaque\" or \"always\""),
                ));
            }
            return Ok(None);
        };
        let mode = match mode.as_str() {
            "opaque" => Mode::Opaque,
            "always" => Mode::Always,
            _ => {
                return Err(invalid(
                    format!("{prefix}introspection"),
                    mode,
                    "must be \"opaque\" (introspect opaque tokens) or \"always\" (JWTs too)",
                ));
            }
        };
        let client_auth = match self.client_auth.as_deref() {
            None | Some("client_secret_basic") => ClientAuth::ClientSecretBasic,
            Some("client_secret_post") => ClientAuth::ClientSecretPost,
            Some(other) => {
                return Err(invalid(
                    format!("{prefix}client_auth"),
                    other,
                    "must be \"client_secret_basic\" or \"client_secret_post\"",
                ));
            }
        };
        let endpoint = match self.introspection_endpoint {
            Some(text) => {
                let key = format!("{prefix}introspection_endpoint");
                let url = super::parse_http_url(&key, &text)?;
                fetch_policy
                    .permits(&url)
                    .map_err(|e| invalid(&key, &text, e.to_string()))?;
                Endpoint::Configured(url)
            }
            None => {
                fetch_policy.permits(&discovery).map_err(|e| {
                    invalid(
                        format!("{prefix}issuer"),
                        issuer,
                        format!(
                            "without introspection_endpoint the endpoint is found by OIDC \
                             discovery, and {e}; or give an https {prefix}introspection_endpoint"
                        ),
                    )
                })?;
                Endpoint::Discovered {
                    document: discovery,
                    issuer: issuer.to_owned(),
                }
            }
        };
        let client_id = match self.client_id {
            Some(id) if !id.is_empty() && !id.chars().any(char::is_control) => id,
            Some(id) => {
                return Err(invalid(
                    format!("{prefix}client_id"),
                    &id,
                    "must be non-empty, without control characters",
                ));
            }
            None => {
                return Err(ConfigError::Missing {
                    key: format!("{prefix}client_id"),
                    hint: " (the client scopegate introspects as)".into(),
                });
            }
        };
        let key = format!("{prefix}client_secret_file");
        let Some(file) = self.client_secret_file else {
            return Err(ConfigError::Missing {
                key,
                hint: " (a file holding the client secret; never the secret itself)".into(),
            });
        };
        // The error names the file and why it cannot be read; nothing of its content.
        let text = std::fs::read_to_string(&file)
            .map_err(|e| invalid(&key, &file, format!("cannot be read: {}", e.kind())))?;
        let client_secret = ClientSecret::from_file_text(&text)
            .ok_or_else(|| invalid(&key, &file, "holds no secret (it is empty)"))?;
        let range = |name: &str, value: Option<u64>, default: u64, (low, high): (u64, u64)| {
            let value = value.unwrap_or(default);
            if (low..=high).contains(&value) {
                Ok(value)
            } else {
                Err(invalid(
                    format!("{prefix}{name}"),
                    value,
                    format!("must be between {low} and {high}"),
                ))
            }
        };
        let cache_seconds = range(
            "introspection_cache_seconds",
            self.introspection_cache_seconds,
            DEFAULT_CACHE_SECONDS,
            (0, MAX_CACHE_SECONDS),
        )?;
        let negative_cache_seconds = range(
            "introspection_negative_cache_seconds",
            self.introspection_negative_cache_seconds,
            DEFAULT_NEGATIVE_CACHE_SECONDS,
            (0, MAX_CACHE_SECONDS),
        )?;
        let max_in_flight = range(
            "introspection_max_in_flight",
            self.introspection_max_in_flight,
            DEFAULT_MAX_IN_FLIGHT,
            (1, MAX_IN_FLIGHT),
        )?;
        let max_calls_per_second = range(
            "introspection_max_calls_per_second",
            self.introspection_max_calls_per_second,
            DEFAULT_MAX_CALLS_PER_SECOND,
            (1, MAX_CALLS_PER_SECOND),
        )?;
        Ok(Some(IntrospectionSettings {
            mode,
            endpoint,
            client_id,
            client_secret,
            client_secret_file: PathBuf::from(file),
            client_auth,
            require_audience: self.introspection_require_audience.unwrap_or(true),
            cache_seconds,
            negative_cache_seconds,
            max_in_flight: max_in_flight as usize,
            max_calls_per_second: max_calls_per_second as u32,
            fetch_policy: fetch_policy.clone(),
            fetch_timeout,
        }))
    }
}

#[cfg(test)]
mod tests {
    use crate::auth::introspect::{ClientAuth, Endpoint, Mode};
    use crate::config::RawConfig;

    fn compile(text: &str) -> Result<crate::config::Config, String> {
        RawConfig::from_toml(text, "<test>")
            .and_then(RawConfig::compile)
            .map_err(|e| e.to_string())
    }

    /// Every key compiles, with the defaults; the endpoint is configured or found by
    /// discovery; the secret is the file's content, shown nowhere.
    #[test]
    fn introspection_keys_compile_with_their_defaults() {
        let dir = tempfile::tempdir().expect("dir");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "hunter2-very-secret\n").expect("write");
        let secret = secret.display().to_string();
        let c = compile(&format!(
            "issuer = \"https://idp.example/\"\naudience = \"api\"\nintrospection = \"opaque\"\n\
             client_id = \"gate\"\nclient_secret_file = {secret:?}\n"
        ))
        .expect("compiles");
        let s = c.issuers()[0].introspection.as_ref().expect("introspects");
        assert_eq!(s.mode, Mode::Opaque);
        assert_eq!(
            s.endpoint,
            Endpoint::Discovered {
                document: "https://idp.example/.well-known/openid-configuration"
                    .parse()
                    .expect("url"),
                issuer: "https://idp.example/".into()
            }
        );
        assert_eq!(s.client_auth, ClientAuth::ClientSecretBasic);
        assert!(s.require_audience);
        assert_eq!(
            (
                s.cache_seconds,
                s.negative_cache_seconds,
                s.max_in_flight,
                s.max_calls_per_second
            ),
            (60, 10, 64, 100)
        );
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!c.to_string().contains("hunter2"));

        let c = compile(&format!(
            "[[issuers]]\nissuer = \"https://a/\"\naudience = \"api\"\nintrospection = \"always\"\n\
             introspection_endpoint = \"https://a/introspect\"\nclient_id = \"gate\"\n\
             client_secret_file = {secret:?}\nclient_auth = \"client_secret_post\"\n\
             introspection_require_audience = false\nintrospection_cache_seconds = 5\n\
             introspection_negative_cache_seconds = 0\nintrospection_max_in_flight = 2\n\
             introspection_max_calls_per_second = 3\n\
             [[issuers]]\nissuer = \"https://b/\"\naudience = \"api\"\n"
        ))
        .expect("compiles");
        let s = c.issuers()[0].introspection.as_ref().expect("introspects");
        assert_eq!(s.mode, Mode::Always);
        assert_eq!(
            s.endpoint,
            Endpoint::Configured("https://a/introspect".parse().expect("url"))
        );
        assert_eq!(s.client_auth, ClientAuth::ClientSecretPost);
        assert!(!s.require_audience);
        assert_eq!(
            (
                s.cache_seconds,
                s.negative_cache_seconds,
                s.max_in_flight,
                s.max_calls_per_second
            ),
            (5, 0, 2, 3)
        );
        assert!(c.issuers()[1].introspection.is_none());
        // Accepting answers without aud is allowed, and said to be weaker.
        let keys: Vec<&str> = c.warnings().iter().map(|w| w.key.as_str()).collect();
        assert_eq!(keys, ["issuers[0].introspection_require_audience"]);
    }

    /// Each refusal names the key (and the value or file), never the secret.
    #[test]
    fn introspection_errors_name_key_and_value() {
        let dir = tempfile::tempdir().expect("dir");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "hunter2-very-secret").expect("write");
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "").expect("write");
        let missing = dir.path().join("missing").display().to_string();
        let (secret, empty) = (secret.display().to_string(), empty.display().to_string());
        let base = "issuer = \"https://idp.example/\"\naudience = \"api\"\n";
        let on = "introspection = \"opaque\"\nclient_id = \"gate\"\n";
        let entry = |extra: &str| {
            format!(
                "[[issuers]]\nissuer = \"https://a/\"\naudience = \"api\"\nclient_id = \"g\"\n\
                 client_secret_file = {secret:?}\n{extra}\n"
            )
        };
        let cases: Vec<(String, String)> = vec![
            (
                format!("{base}{on}"),
                "`client_secret_file` is required".into(),
            ),
            (
                format!("{base}{on}client_secret_file = {missing:?}"),
                format!("`client_secret_file` = {missing:?}: cannot be read"),
            ),
            (
                format!(
                    "{base}{on}client_secret_file = {:?}",
                    dir.path().display().to_string()
                ),
                "`client_secret_file`".into(),
            ),
            (
                format!("{base}{on}client_secret_file = {empty:?}"),
                format!("`client_secret_file` = {empty:?}: holds no secret"),
            ),
            (
                format!("{base}introspection = \"opaque\"\nclient_secret_file = {secret:?}"),
                "`client_id` is required".into(),
            ),
            (
                format!("{base}client_id = \"gate\""),
                "`client_id` = \"set\": only with introspection".into(),
            ),
            (
                format!("{base}introspection = \"sometimes\""),
                "`introspection` = \"sometimes\": must be".into(),
            ),
            (
                format!(
                    "{base}{on}client_secret_file = {secret:?}\nclient_auth = \"private_key_jwt\""
                ),
                "`client_auth` = \"private_key_jwt\"".into(),
            ),
            (
                format!(
                    "{base}{on}client_secret_file = {secret:?}\n\
                     introspection_endpoint = \"http://idp.example/introspect\""
                ),
                "`introspection_endpoint` = \"http://idp.example/introspect\"".into(),
            ),
            (
                format!(
                    "{base}{on}client_secret_file = {secret:?}\nintrospection_cache_seconds = 3601"
                ),
                "`introspection_cache_seconds` = 3601: must be between 0 and 3600".into(),
            ),
            (
                format!(
                    "{base}{on}client_secret_file = {secret:?}\nintrospection_max_in_flight = 0"
                ),
                "`introspection_max_in_flight` = 0".into(),
            ),
            (
                format!(
                    "{base}{on}client_secret_file = {secret:?}\nintrospection_max_calls_per_second = 0"
                ),
                "`introspection_max_calls_per_second` = 0".into(),
            ),
            // At most one issuer takes opaque tokens: the error names both.
            (
                format!(
                    "{}{}",
                    entry("introspection = \"opaque\""),
                    entry("introspection = \"always\"").replace("https://a/", "https://b/")
                ),
                "`issuers[1].introspection` = \"always\": issuers[0].introspection".into(),
            ),
            // The shorthand's keys beside [[issuers]].
            (
                format!("introspection = \"opaque\"\n{}", entry("")),
                "`introspection` = \"with [[issuers]]\"".into(),
            ),
        ];
        for (text, want) in cases {
            let err = compile(&text).expect_err(&text);
            assert!(err.contains(&want), "{text}\n{err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
    }
}
