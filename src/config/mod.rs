//! Configuration in two stages: [`RawConfig`] is the TOML file as written (unknown keys refused),
//! with environment overrides applied; [`Config`] is its compiled, validated form (socket address,
//! URLs, durations, matchers, scope sets). Compilation happens before any port is bound, and every
//! error names the key and the value at fault.
//!
//! Each part of the file is compiled in a module of its own: `server` (`listen`, the
//! `[server]` table and the HTTP listener's `[http_server]` table), `issuers` (the issuers, their token rules and the shared key-set settings), `introspection` (an issuer's token introspection keys),
//! `rules` (`[[rules]]`, and the checks of claim names, forwarded headers and algorithms),
//! `metadata` (the dynamic metadata's keys and `metadata_claims`), `replay_store` (the
//! `dpop_replay_store*` keys), `sources` (`[[token_sources]]`), `module` (the Envoy module's
//! configuration: the same document less the listener keys), `warnings` ([`ConfigWarning`]) and
//! `print` (the compiled
//! configuration as `check-config` prints it, [`Config`]'s `Display`). Those modules are
//! private; what they make public is re-exported here, so every public path is `config::X`.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

use crate::auth::sources::TokenSources;
use crate::net::tls::TlsFiles;
use crate::policy::{Policy, PolicyError, Requirement};

mod introspection;
mod issuers;
mod metadata;
mod module;
mod print;
mod replay_store;
mod rules;
mod server;
mod sources;
mod tracing;
mod warnings;

pub use introspection::RawIntrospection;
pub use issuers::{Issuer, RawIssuer, RawTokenRules};
use issuers::{RawFetch, RawJwks, TokenRules};
pub use metadata::{
    METADATA_CLIENT_ID, METADATA_ISSUER, METADATA_RULE, METADATA_SCOPES, METADATA_SUBJECT,
    MetadataClaim, RESERVED_METADATA_KEYS,
};
pub use module::{MODULE_REFUSED_KEYS, compile_module_config};
pub use rules::{RESERVED_HEADER_PREFIXES, RESERVED_HEADERS, RawRule};
use rules::{check_rule_issuers, compile_rule};
pub use server::{
    HttpServerLimits, ListenAddr, MAX_UNIX_SOCKET_PATH, RawHttpServer, RawServer, ServerLimits,
};
pub use sources::RawTokenSource;
use sources::compile_token_sources;
use tracing::compile_tracing;
pub use tracing::{RawHeaderFile, RawHeaderValue, RawTracing, TracingSettings};
pub use warnings::ConfigWarning;

/// Environment variables that override keys of the file, and the key each one sets.
pub const ENV_OVERRIDES: [(&str, &str); 6] = [
    ("SCOPEGATE_LISTEN", "listen"),
    ("SCOPEGATE_METRICS_LISTEN", "metrics_listen"),
    ("SCOPEGATE_HTTP_LISTEN", "http_listen"),
    ("SCOPEGATE_ISSUER", "issuer"),
    ("SCOPEGATE_AUDIENCE", "audience"),
    ("SCOPEGATE_JWKS_URI", "jwks_uri"),
];

/// The configuration file as written. Every key is optional at this stage; required keys and
/// value ranges are checked by [`RawConfig::compile`].
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// gRPC listen address.
    pub listen: Option<String>,
    /// Exact expected `iss`.
    pub issuer: Option<String>,
    /// Accepted audience(s).
    pub audience: Option<StringOrList>,
    /// JWKS URL; absent: found by OIDC discovery (falling back to the issuer's
    /// `/.well-known/jwks.json` when the issuer has no discovery document).
    pub jwks_uri: Option<String>,
    /// Allow plain-http key sources on hosts that are not loopback: for the one-issuer
    /// shorthand, and the default of every `[[issuers]]` entry. Default false.
    pub allow_insecure_http: Option<bool>,
    /// The one-issuer shorthand's PEM CA bundle, trusted for its discovery and JWKS fetches
    /// besides the platform's roots.
    pub ca_file: Option<String>,
    /// Trust only `ca_file`'s CAs, not the platform's, for the one-issuer shorthand.
    pub ca_file_only: Option<bool>,
    /// Clock skew tolerated on `exp`/`nbf`.
    pub leeway_seconds: Option<u64>,
    /// What unmatched requests need.
    pub default: Option<DefaultAction>,
    /// Token algorithm allow-list.
    pub algorithms: Option<Vec<String>>,
    /// `realm` of `WWW-Authenticate` challenges.
    pub realm: Option<String>,
    /// JWKS refresh interval without `Cache-Control: max-age`.
    pub jwks_refresh_seconds: Option<u64>,
    /// Lower bound on the JWKS refresh interval.
    pub jwks_min_refresh_seconds: Option<u64>,
    /// Upper bound on the JWKS refresh interval.
    pub jwks_max_refresh_seconds: Option<u64>,
    /// Minimum time between unknown-`kid` refetches.
    pub jwks_refetch_cooldown_seconds: Option<u64>,
    /// Time limit of one JWKS fetch.
    pub jwks_fetch_timeout_seconds: Option<u64>,
    /// Largest JWKS body accepted.
    pub jwks_max_bytes: Option<u64>,
    /// How long the last good key set may be used without a successful refresh.
    pub jwks_max_stale_seconds: Option<u64>,
    /// Most entries a JWKS document may list; a longer one is refused whole.
    pub jwks_max_keys: Option<u64>,
    /// How long a Check with an unknown `kid` waits for the refetch it asked for.
    pub unknown_kid_wait_ms: Option<u64>,
    /// Accepted `typ` header values (e.g. `["at+jwt"]`); absent accepts any.
    pub token_types: Option<Vec<String>>,
    /// Claims whose union is the granted scopes; default `["scope", "scp"]`.
    pub scope_claims: Option<Vec<String>>,
    /// Header name -> claim name or JSON Pointer, forwarded to the upstream on allow.
    pub forward_claims: Option<std::collections::BTreeMap<String, String>>,
    /// Claims (names or JSON Pointers) added to an allow's dynamic metadata; default none.
    pub metadata_claims: Option<Vec<String>>,
    /// Several trusted issuers, instead of the top-level `issuer`, `audience` and `jwks_uri`.
    pub issuers: Option<Vec<RawIssuer>>,
    /// Address of the plain-HTTP `/metrics` listener; absent: no metrics listener.
    pub metrics_listen: Option<String>,
    /// Which decisions are logged: `deny` (default), `all` or `off`.
    pub decision_log: Option<DecisionLog>,
    /// What CORS preflight requests need: `authenticate` (default) or `allow`.
    pub cors_preflight: Option<CorsPreflight>,
    /// Reload when the configuration file's directory changes (as on SIGHUP); default false.
    pub reload_on_change: Option<bool>,
    /// Address of a plaintext listener serving only `grpc.health.v1` (for probes that cannot
    /// speak TLS); absent: none.
    pub health_listen: Option<String>,
    /// TLS for the gRPC listener; absent: plaintext.
    pub tls: Option<RawTls>,
    /// Verified tokens remembered (0: none); default 10000.
    pub token_cache_size: Option<u64>,
    /// The verified-token cache's byte budget; default 32 MiB.
    pub token_cache_max_bytes: Option<u64>,
    /// Largest DPoP proof accepted, in bytes; default 8 KiB.
    pub dpop_max_proof_bytes: Option<u64>,
    /// How old a DPoP proof's `iat` may be, in seconds (plus the issuer's leeway); default 60.
    pub dpop_proof_window_seconds: Option<u64>,
    /// The DPoP replay cache's byte budget; default 16 MiB.
    pub dpop_replay_cache_bytes: Option<u64>,
    /// The scheme and host clients use (`https://api.example`), for a DPoP proof's `htu` where
    /// TLS ends before Envoy; absent: the scheme and host of the request as received.
    pub dpop_public_base_url: Option<String>,
    /// Where DPoP proofs are remembered when replicas share one store: `redis://host:port[/db]`;
    /// absent: in this process (`dpop_replay_cache_bytes`).
    pub dpop_replay_store: Option<String>,
    /// A file holding the Redis password (`AUTH`); absent: none sent.
    pub dpop_replay_store_password_file: Option<String>,
    /// The longest a call to the replay store may wait, connecting included; default 100 ms
    /// (at most half of `server.check_timeout_ms`).
    pub dpop_replay_store_timeout_ms: Option<u64>,
    /// The most calls to the replay store in flight at once; default 256.
    pub dpop_replay_store_max_in_flight: Option<u64>,
    /// Limits of the gRPC server.
    #[serde(default)]
    pub server: RawServer,
    /// Address of the HTTP authorization listener (proxies' `auth_request`, `forward_auth`,
    /// Envoy's `http_service`); absent: none.
    pub http_listen: Option<String>,
    /// Limits of the HTTP authorization listener.
    #[serde(default)]
    pub http_server: RawHttpServer,
    /// Route rules, first match wins.
    #[serde(default)]
    pub rules: Vec<RawRule>,
    /// Where the token is read from, in order; default `Authorization: Bearer` only.
    pub token_sources: Option<Vec<RawTokenSource>>,
    /// Allow `query` token sources (tokens in URLs leak into logs and `Referer`); default false.
    pub allow_query_tokens: Option<bool>,
    /// Read a certificate-bound token's client certificate from `x-forwarded-client-cert` when
    /// the request has one (a proxy in front ended the client's TLS and vouches for it); default
    /// false: only the transport's peer certificate counts, since a client can write that header
    /// wherever no proxy replaces it.
    pub trust_forwarded_client_cert: Option<bool>,
    /// The one-issuer shorthand's token introspection: `"opaque"` or `"always"`.
    pub introspection: Option<String>,
    /// The shorthand's introspection endpoint; absent: found by discovery.
    pub introspection_endpoint: Option<String>,
    /// The client id the shorthand's introspection authenticates with.
    pub client_id: Option<String>,
    /// A file holding that client's secret.
    pub client_secret_file: Option<String>,
    /// `"client_secret_basic"` (default) or `"client_secret_post"`.
    pub client_auth: Option<String>,
    /// Refuse active introspection answers without `aud`; default true.
    pub introspection_require_audience: Option<bool>,
    /// How long an active introspection answer is remembered at most; default 60.
    pub introspection_cache_seconds: Option<u64>,
    /// How long an inactive introspection answer is remembered; default 10.
    pub introspection_negative_cache_seconds: Option<u64>,
    /// Most introspection calls in flight at once; default 64.
    pub introspection_max_in_flight: Option<u64>,
    /// Most introspection calls started per second; default 100.
    pub introspection_max_calls_per_second: Option<u64>,
    /// Tracing: the decision spans' export; absent: off.
    pub tracing: Option<RawTracing>,
}

/// The `[tls]` table as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// PEM certificate chain.
    pub cert_file: Option<String>,
    /// PEM private key.
    pub key_file: Option<String>,
    /// PEM CA certificates that client certificates must chain to.
    pub client_ca_file: Option<String>,
}

/// A string or an array of strings.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum StringOrList {
    /// One value.
    One(String),
    /// Several values.
    Many(Vec<String>),
}

/// The `default` key: what a request that no rule matches needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DefaultAction {
    /// Any valid token.
    Authenticated,
    /// Denied (after authentication).
    Deny,
    /// Let through without a token.
    Allow,
}

/// The `decision_log` key: which Check decisions get a log line of their own (at info, target
/// `scopegate::decision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DecisionLog {
    /// Denials only.
    #[default]
    Deny,
    /// Every decision.
    All,
    /// None.
    Off,
}

/// The `cors_preflight` key: what a browser's CORS preflight (`OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`, and no credentials, which browsers never put on one) needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CorsPreflight {
    /// Decided like any other request, so a protected route answers it 401. The default:
    /// nothing reaches the upstream without a rule allowing it, and a preflight let through
    /// runs whatever the upstream does with `OPTIONS`, which its team should decide to allow.
    #[default]
    Authenticate,
    /// Let through without a token where the request the preflight announces could pass (see
    /// [`crate::policy::Policy::resolve_request`]; never any other `OPTIONS` request): for
    /// single-page apps whose upstream answers CORS itself.
    Allow,
}

impl DecisionLog {
    /// Whether a decision (`allowed` or not) is logged.
    pub fn logs(self, allowed: bool) -> bool {
        match self {
            DecisionLog::All => true,
            DecisionLog::Deny => !allowed,
            DecisionLog::Off => false,
        }
    }
}

/// The compiled configuration. Only [`RawConfig::compile`] builds one, after validating it, so
/// its fields stay private: there is at least one issuer, no two share an `iss`, and every
/// limit lies in its documented range.
#[derive(Debug, Clone)]
pub struct Config {
    listen: ListenAddr,
    metrics_listen: Option<SocketAddr>,
    decision_log: DecisionLog,
    cors_preflight: CorsPreflight,
    reload_on_change: bool,
    health_listen: Option<SocketAddr>,
    http_listen: Option<SocketAddr>,
    tls: Option<TlsFiles>,
    token_cache_size: usize,
    token_cache_max_bytes: u64,
    dpop: DpopSettings,
    issuers: Vec<Issuer>,
    policy: Policy,
    token_sources: TokenSources,
    trust_forwarded_client_cert: bool,
    tracing: Option<TracingSettings>,
    realm: String,
    server: ServerLimits,
    http_server: HttpServerLimits,
    warnings: Vec<ConfigWarning>,
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The path given.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not valid TOML, an unknown key, or a value of the wrong type. The message names the key
    /// and the line.
    #[error("config file {path}: {source}")]
    Parse {
        /// The path given (or `<string>`).
        path: String,
        /// The parser's error.
        source: Box<toml::de::Error>,
    },
    /// A key is required but absent.
    #[error("`{key}` is required{hint}")]
    Missing {
        /// The key.
        key: String,
        /// How to set it.
        hint: String,
    },
    /// A key has a value that cannot be used.
    #[error("`{key}` = {value}: {reason}")]
    Invalid {
        /// The key, e.g. `rules[2].scopes`.
        key: String,
        /// The offending value, as TOML-ish text.
        value: String,
        /// Why it is refused.
        reason: String,
    },
}

impl From<PolicyError> for ConfigError {
    fn from(e: PolicyError) -> ConfigError {
        ConfigError::Invalid {
            key: e.key(),
            value: format!("{:?}", e.value()),
            reason: e.to_string(),
        }
    }
}

/// Smallest and largest `dpop_max_proof_bytes`: a proof with an ES256 key is about 500 bytes,
/// one with an RSA-4096 key under 2 KiB.
const DPOP_PROOF_BYTES: std::ops::RangeInclusive<u64> = 1024..=65536;
/// Smallest and largest `dpop_proof_window_seconds`.
const DPOP_WINDOW_SECONDS: std::ops::RangeInclusive<u64> = 1..=600;
/// Smallest and largest `dpop_replay_cache_bytes` (1 MiB to 4 GiB).
const DPOP_REPLAY_CACHE_BYTES: std::ops::RangeInclusive<u64> = (1 << 20)..=(4 << 30);

/// How DPoP proofs are checked (the `dpop_*` keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpopSettings {
    max_proof_bytes: usize,
    window_seconds: u64,
    replay_cache_bytes: u64,
    public_base_url: Option<String>,
    replay_store: Option<crate::auth::replay::RedisSettings>,
}

impl Default for DpopSettings {
    fn default() -> Self {
        DpopSettings {
            max_proof_bytes: crate::auth::dpop::DEFAULT_MAX_PROOF_BYTES,
            window_seconds: crate::auth::dpop::DEFAULT_PROOF_WINDOW_SECONDS,
            replay_cache_bytes: crate::auth::replay::DEFAULT_REPLAY_CACHE_BYTES,
            public_base_url: None,
            replay_store: None,
        }
    }
}

impl DpopSettings {
    /// Largest proof accepted, in bytes (`dpop_max_proof_bytes`).
    pub fn max_proof_bytes(&self) -> usize {
        self.max_proof_bytes
    }

    /// How old a proof's `iat` may be, in seconds (`dpop_proof_window_seconds`).
    pub fn window_seconds(&self) -> u64 {
        self.window_seconds
    }

    /// The replay cache's byte budget (`dpop_replay_cache_bytes`).
    pub fn replay_cache_bytes(&self) -> u64 {
        self.replay_cache_bytes
    }

    /// `scheme://host[:port]` clients use, without a trailing `/`, when configured
    /// (`dpop_public_base_url`).
    pub fn public_base_url(&self) -> Option<&str> {
        self.public_base_url.as_deref()
    }

    /// The Redis store the replicas share (`dpop_replay_store`); `None`: the in-process cache.
    pub fn replay_store(&self) -> Option<&crate::auth::replay::RedisSettings> {
        self.replay_store.as_ref()
    }
}

/// The `dpop_*` keys, checked.
fn compile_dpop(
    max_proof_bytes: Option<u64>,
    window_seconds: Option<u64>,
    replay_cache_bytes: Option<u64>,
    public_base_url: Option<String>,
) -> Result<DpopSettings, ConfigError> {
    let defaults = DpopSettings::default();
    let in_range =
        |key: &str, value: Option<u64>, default: u64, range: std::ops::RangeInclusive<u64>| {
            let value = value.unwrap_or(default);
            if range.contains(&value) {
                Ok(value)
            } else {
                Err(invalid(
                    key,
                    value,
                    format!("must be between {} and {}", range.start(), range.end()),
                ))
            }
        };
    let max_proof_bytes = in_range(
        "dpop_max_proof_bytes",
        max_proof_bytes,
        defaults.max_proof_bytes as u64,
        DPOP_PROOF_BYTES,
    )?;
    let window_seconds = in_range(
        "dpop_proof_window_seconds",
        window_seconds,
        defaults.window_seconds,
        DPOP_WINDOW_SECONDS,
    )?;
    let replay_cache_bytes = in_range(
        "dpop_replay_cache_bytes",
        replay_cache_bytes,
        defaults.replay_cache_bytes,
        DPOP_REPLAY_CACHE_BYTES,
    )?;
    let public_base_url = match public_base_url {
        None => None,
        Some(text) => {
            let base = text.strip_suffix('/').unwrap_or(&text);
            // Only scheme and authority: the path is the one the client sent.
            let fits = crate::auth::dpop::normalise_url(base)
                .is_some_and(|url| url.splitn(4, '/').nth(3).is_some_and(str::is_empty))
                && !base.contains(['?', '#']);
            if !fits {
                return Err(invalid(
                    "dpop_public_base_url",
                    &text,
                    "must be an http or https URL with a host and no path, query or fragment \
                     (e.g. \"https://api.example\")",
                ));
            }
            Some(base.to_owned())
        }
    };
    Ok(DpopSettings {
        max_proof_bytes: usize::try_from(max_proof_bytes).unwrap_or(usize::MAX),
        window_seconds,
        replay_cache_bytes,
        public_base_url,
        replay_store: None,
    })
}

/// `value` as an absolute http or https URL with a host, or an error for `key`.
fn parse_http_url(key: &str, value: &str) -> Result<reqwest::Url, ConfigError> {
    let url = reqwest::Url::parse(value)
        .map_err(|e| invalid(key, value, format!("not an absolute URL: {e}")))?;
    if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() {
        return Err(invalid(
            key,
            value,
            "must be an http:// or https:// URL with a host",
        ));
    }
    Ok(url)
}

fn invalid(
    key: impl Into<String>,
    value: impl fmt::Debug,
    reason: impl Into<String>,
) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        value: format!("{value:?}"),
        reason: reason.into(),
    }
}

const DEFAULT_LISTEN: &str = "0.0.0.0:9191";
const DEFAULT_TOKEN_CACHE_SIZE: u64 = 10_000;
const MAX_TOKEN_CACHE_SIZE: u64 = 1_000_000;
/// Ample for the default 10,000 entries of ordinary tokens (about 3 KiB each with their
/// share of the budget), and an eighth of the shipped Kubernetes memory limit (256 MiB).
const DEFAULT_TOKEN_CACHE_MAX_BYTES: u64 = 32 * 1024 * 1024;
/// At 1 MiB, the largest entry cached is 16 KiB (a token of about 200 scopes).
const MIN_TOKEN_CACHE_MAX_BYTES: u64 = 1024 * 1024;
const MAX_TOKEN_CACHE_MAX_BYTES: u64 = 16 * 1024 * 1024 * 1024;
const DEFAULT_REALM: &str = "scopegate";

impl RawConfig {
    /// Parses TOML text; `origin` names the source in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<RawConfig, ConfigError> {
        toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: origin.to_string(),
            source: Box::new(source),
        })
    }

    /// Reads and parses a TOML file.
    pub fn from_file(path: &Path) -> Result<RawConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        RawConfig::from_toml(&text, &path.display().to_string())
    }

    /// Applies the [`ENV_OVERRIDES`] found by `lookup` (normally `std::env::var`). An empty value
    /// counts as unset. `SCOPEGATE_AUDIENCE` may list several audiences separated by commas.
    pub fn apply_env(&mut self, lookup: impl Fn(&str) -> Option<String>) {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        if let Some(v) = get("SCOPEGATE_LISTEN") {
            self.listen = Some(v);
        }
        if let Some(v) = get("SCOPEGATE_METRICS_LISTEN") {
            self.metrics_listen = Some(v);
        }
        if let Some(v) = get("SCOPEGATE_HTTP_LISTEN") {
            self.http_listen = Some(v);
        }
        if let Some(v) = get("SCOPEGATE_ISSUER") {
            self.issuer = Some(v);
        }
        if let Some(v) = get("SCOPEGATE_AUDIENCE") {
            let list: Vec<String> = v.split(',').map(|a| a.trim().to_string()).collect();
            self.audience = Some(StringOrList::Many(list));
        }
        if let Some(v) = get("SCOPEGATE_JWKS_URI") {
            self.jwks_uri = Some(v);
        }
    }

    /// Validates everything and builds the [`Config`].
    pub fn compile(self) -> Result<Config, ConfigError> {
        let listen_text = self.listen.unwrap_or_else(|| DEFAULT_LISTEN.to_string());
        let listen = ListenAddr::parse(&listen_text)?;
        let tcp_listen = listen.tcp();

        let metrics_listen = self
            .metrics_listen
            .map(|text| socket_addr("metrics_listen", &text, "127.0.0.1:9464"))
            .transpose()?;
        if metrics_listen.is_some_and(|m| Some(m) == tcp_listen && m.port() != 0) {
            return Err(invalid(
                "metrics_listen",
                listen.to_string(),
                "the metrics listener needs an address of its own, not `listen`'s",
            ));
        }
        let decision_log = self.decision_log.unwrap_or_default();
        let cors_preflight = self.cors_preflight.unwrap_or_default();
        let reload_on_change = self.reload_on_change.unwrap_or(false);
        let health_listen = self
            .health_listen
            .map(|text| socket_addr("health_listen", &text, "0.0.0.0:9192"))
            .transpose()?;
        let taken = [tcp_listen, metrics_listen];
        if let Some(health) = health_listen
            && health.port() != 0
            && taken.contains(&Some(health))
        {
            return Err(invalid(
                "health_listen",
                health.to_string(),
                "the health listener needs an address of its own",
            ));
        }
        let http_listen = self
            .http_listen
            .map(|text| socket_addr("http_listen", &text, "127.0.0.1:9193"))
            .transpose()?;
        let taken = [tcp_listen, metrics_listen, health_listen];
        if let Some(http) = http_listen
            && http.port() != 0
            && taken.contains(&Some(http))
        {
            return Err(invalid(
                "http_listen",
                http.to_string(),
                "the HTTP authorization listener needs an address of its own",
            ));
        }
        let http_server = self.http_server.compile()?;
        let token_cache_size = self.token_cache_size.unwrap_or(DEFAULT_TOKEN_CACHE_SIZE);
        if token_cache_size > MAX_TOKEN_CACHE_SIZE {
            return Err(invalid(
                "token_cache_size",
                token_cache_size,
                format!("must be between 0 (off) and {MAX_TOKEN_CACHE_SIZE}"),
            ));
        }
        let token_cache_max_bytes = self
            .token_cache_max_bytes
            .unwrap_or(DEFAULT_TOKEN_CACHE_MAX_BYTES);
        if !(MIN_TOKEN_CACHE_MAX_BYTES..=MAX_TOKEN_CACHE_MAX_BYTES).contains(&token_cache_max_bytes)
        {
            return Err(invalid(
                "token_cache_max_bytes",
                token_cache_max_bytes,
                format!(
                    "must be between {MIN_TOKEN_CACHE_MAX_BYTES} and {MAX_TOKEN_CACHE_MAX_BYTES} \
                     (token_cache_size = 0 turns the cache off)"
                ),
            ));
        }
        let mut dpop = compile_dpop(
            self.dpop_max_proof_bytes,
            self.dpop_proof_window_seconds,
            self.dpop_replay_cache_bytes,
            self.dpop_public_base_url,
        )?;
        let replay_store = replay_store::RawReplayStore {
            url: self.dpop_replay_store,
            password_file: self.dpop_replay_store_password_file,
            timeout_ms: self.dpop_replay_store_timeout_ms,
            max_in_flight: self.dpop_replay_store_max_in_flight,
        };
        let tls = match self.tls {
            None => None,
            Some(_) if matches!(listen, ListenAddr::Unix(_)) => {
                return Err(invalid(
                    "tls",
                    listen.to_string(),
                    "a Unix socket listener does not speak TLS (it never leaves the host); \
                     remove [tls] or listen on TCP",
                ));
            }
            Some(raw) => {
                let file = |key: &str, value: Option<String>| {
                    value
                        .filter(|v| !v.is_empty())
                        .map(std::path::PathBuf::from)
                        .ok_or_else(|| ConfigError::Missing {
                            key: format!("tls.{key}"),
                            hint: " (a PEM file path)".into(),
                        })
                };
                Some(TlsFiles {
                    cert_file: file("cert_file", raw.cert_file)?,
                    key_file: file("key_file", raw.key_file)?,
                    client_ca_file: raw
                        .client_ca_file
                        .map(|v| file("client_ca_file", Some(v)))
                        .transpose()?,
                })
            }
        };

        let realm = self.realm.unwrap_or_else(|| DEFAULT_REALM.to_string());
        if realm.is_empty()
            || realm
                .chars()
                .any(|c| c == '"' || c == '\\' || c.is_control() || !c.is_ascii())
        {
            return Err(invalid(
                "realm",
                &realm,
                "must be non-empty printable ASCII without quotes or backslashes",
            ));
        }

        let jwks_template = RawJwks {
            jwks_refresh_seconds: self.jwks_refresh_seconds,
            jwks_min_refresh_seconds: self.jwks_min_refresh_seconds,
            jwks_max_refresh_seconds: self.jwks_max_refresh_seconds,
            jwks_refetch_cooldown_seconds: self.jwks_refetch_cooldown_seconds,
            jwks_fetch_timeout_seconds: self.jwks_fetch_timeout_seconds,
            jwks_max_bytes: self.jwks_max_bytes,
            jwks_max_stale_seconds: self.jwks_max_stale_seconds,
            jwks_max_keys: self.jwks_max_keys,
            unknown_kid_wait_ms: self.unknown_kid_wait_ms,
        }
        .compile()?;

        let rules = self
            .rules
            .into_iter()
            .enumerate()
            .map(|(i, raw)| compile_rule(i, raw))
            .collect::<Result<Vec<_>, _>>()?;
        let default = match self.default.unwrap_or(DefaultAction::Authenticated) {
            DefaultAction::Authenticated => Requirement::Authenticated,
            DefaultAction::Deny => Requirement::Deny,
            DefaultAction::Allow => Requirement::Public,
        };
        let policy = Policy::new(rules, default)?;
        let server = self.server.compile()?;
        dpop.replay_store = replay_store.compile(server.check_timeout)?;

        let allow_insecure_http = self.allow_insecure_http.unwrap_or(false);
        let introspection = RawIntrospection {
            introspection: self.introspection,
            introspection_endpoint: self.introspection_endpoint,
            client_id: self.client_id,
            client_secret_file: self.client_secret_file,
            client_auth: self.client_auth,
            introspection_require_audience: self.introspection_require_audience,
            introspection_cache_seconds: self.introspection_cache_seconds,
            introspection_negative_cache_seconds: self.introspection_negative_cache_seconds,
            introspection_max_in_flight: self.introspection_max_in_flight,
            introspection_max_calls_per_second: self.introspection_max_calls_per_second,
        };
        // Top-level token rules: the shorthand issuer's, and the defaults of every [[issuers]].
        let defaults = TokenRules::compile(
            "",
            RawTokenRules {
                leeway_seconds: self.leeway_seconds,
                algorithms: self.algorithms,
                scope_claims: self.scope_claims,
                token_types: self.token_types,
                forward_claims: self.forward_claims,
                metadata_claims: self.metadata_claims,
            },
            None,
        )?;
        let issuers = match self.issuers {
            None => vec![Issuer::compile(
                "",
                self.issuer,
                self.audience,
                self.jwks_uri,
                RawFetch {
                    allow_insecure_http,
                    ca_file: self.ca_file,
                    ca_file_only: self.ca_file_only,
                    introspection,
                },
                defaults,
                &jwks_template,
            )?],
            Some(list) => {
                // allow_insecure_http is every entry's default; a CA belongs to one issuer.
                let shorthand = [
                    ("issuer", self.issuer.is_some()),
                    ("audience", self.audience.is_some()),
                    ("jwks_uri", self.jwks_uri.is_some()),
                    ("ca_file", self.ca_file.is_some()),
                    ("ca_file_only", self.ca_file_only.is_some()),
                ];
                let introspecting = introspection.given();
                if let Some(key) = shorthand
                    .iter()
                    .find(|(_, set)| *set)
                    .map(|(key, _)| *key)
                    .or(introspecting.first().copied())
                {
                    return Err(invalid(
                        key,
                        "with [[issuers]]",
                        "the top-level issuer keys (and SCOPEGATE_ISSUER, _AUDIENCE, _JWKS_URI) \
                         describe one issuer; with [[issuers]], describe every issuer there",
                    ));
                }
                if list.is_empty() {
                    return Err(invalid("issuers", "[]", "list at least one issuer"));
                }
                let mut issuers: Vec<Issuer> = Vec::with_capacity(list.len());
                for (i, raw) in list.into_iter().enumerate() {
                    let prefix = format!("issuers[{i}].");
                    let rules = TokenRules::compile(&prefix, raw.rules, Some(&defaults))?;
                    let issuer = Issuer::compile(
                        &prefix,
                        raw.issuer,
                        raw.audience,
                        raw.jwks_uri,
                        RawFetch {
                            allow_insecure_http: raw
                                .allow_insecure_http
                                .unwrap_or(allow_insecure_http),
                            ca_file: raw.ca_file,
                            ca_file_only: raw.ca_file_only,
                            introspection: raw.introspection,
                        },
                        rules,
                        &jwks_template,
                    )?;
                    if let Some(earlier) = issuers
                        .iter()
                        .position(|e| e.expectations.issuer == issuer.expectations.issuer)
                    {
                        return Err(invalid(
                            format!("{prefix}issuer"),
                            &issuer.expectations.issuer,
                            format!("issuers[{earlier}] has the same issuer"),
                        ));
                    }
                    issuers.push(issuer);
                }
                issuers
            }
        };
        check_rule_issuers(&policy, &issuers)?;
        // An opaque token names no issuer, so only one issuer can be the one to ask.
        let mut opaque = issuers
            .iter()
            .enumerate()
            .filter(|(_, issuer)| issuer.takes_opaque_tokens());
        if let (Some((first, _)), Some((second, issuer))) = (opaque.next(), opaque.next()) {
            return Err(invalid(
                format!("issuers[{second}].introspection"),
                issuer
                    .introspection
                    .as_ref()
                    .map(|i| i.mode.to_string())
                    .unwrap_or_default(),
                format!(
                    "issuers[{first}].introspection is set too, and opaque tokens name no \
                     issuer: at most one issuer may introspect"
                ),
            ));
        }

        // Verification keeps, of every token, the claims configuration reads back (rules' claim
        // conditions), whichever issuer signed it: a rule does not choose the issuer.
        let mut issuers = issuers;
        for issuer in &mut issuers {
            for spec in policy.claim_specs() {
                issuer.expectations.retain(spec.clone());
            }
        }

        let token_sources = compile_token_sources(
            self.token_sources,
            self.allow_query_tokens.unwrap_or(false),
            http_listen.is_some(),
        )?;
        for issuer in &issuers {
            for forward in &issuer.expectations.forward_claims {
                if let Some(i) = token_sources
                    .iter()
                    .position(|s| s.kind() == "header" && s.name() == forward.header)
                {
                    return Err(invalid(
                        format!("forward_claims.{:?}", forward.header),
                        &forward.header,
                        format!(
                            "token_sources[{i}] reads the token from this header (a claim there \
                             would let a token choose the credentials the upstream sees)"
                        ),
                    ));
                }
            }
        }

        Ok(Config {
            listen,
            metrics_listen,
            decision_log,
            cors_preflight,
            reload_on_change,
            health_listen,
            http_listen,
            tls,
            token_cache_size: token_cache_size as usize,
            token_cache_max_bytes,
            dpop,
            issuers,
            policy,
            token_sources,
            trust_forwarded_client_cert: self.trust_forwarded_client_cert.unwrap_or(false),
            tracing: compile_tracing(self.tracing)?,
            realm,
            server,
            http_server,
            warnings: Vec::new(),
        }
        .with_warnings())
    }
}

impl Config {
    /// What this configuration does that is allowed but probably unintended, or that leaves a
    /// documented gap open: printed by `check-config`, logged at start-up and at every reload.
    pub fn warnings(&self) -> &[ConfigWarning] {
        &self.warnings
    }

    /// gRPC listen address.
    pub fn listen(&self) -> &ListenAddr {
        &self.listen
    }

    /// Address of the `/metrics` listener, if any.
    pub fn metrics_listen(&self) -> Option<SocketAddr> {
        self.metrics_listen
    }

    /// Which decisions are logged.
    pub fn decision_log(&self) -> DecisionLog {
        self.decision_log
    }

    /// What CORS preflight requests need.
    pub fn cors_preflight(&self) -> CorsPreflight {
        self.cors_preflight
    }

    /// Whether a certificate-bound token's client certificate is read from a trusted proxy's
    /// `x-forwarded-client-cert` (when the request has one) rather than only from the
    /// transport's peer certificate.
    pub fn trust_forwarded_client_cert(&self) -> bool {
        self.trust_forwarded_client_cert
    }

    /// The `[tracing]` settings; `None`: tracing is off.
    pub fn tracing(&self) -> Option<&TracingSettings> {
        self.tracing.as_ref()
    }

    /// Whether a change in the configuration file's directory reloads it.
    pub fn reload_on_change(&self) -> bool {
        self.reload_on_change
    }

    /// Address of the plaintext health-only listener, if any.
    pub fn health_listen(&self) -> Option<SocketAddr> {
        self.health_listen
    }

    /// Address of the HTTP authorization listener, if any.
    pub fn http_listen(&self) -> Option<SocketAddr> {
        self.http_listen
    }

    /// Limits of the HTTP authorization listener.
    pub fn http_server(&self) -> &HttpServerLimits {
        &self.http_server
    }

    /// Most verified tokens remembered; 0: the cache is off.
    pub fn token_cache_size(&self) -> usize {
        self.token_cache_size
    }

    /// Most bytes the verified-token cache's entries may weigh in all (each weighs its
    /// estimated heap size, at least this over [`Config::token_cache_size`]).
    pub fn token_cache_max_bytes(&self) -> u64 {
        self.token_cache_max_bytes
    }

    /// How DPoP proofs are checked.
    pub fn dpop(&self) -> &DpopSettings {
        &self.dpop
    }

    /// The gRPC listener's TLS files, if it speaks TLS.
    pub fn tls(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    /// The trusted issuers (one for the top-level shorthand), each with what its tokens must
    /// satisfy and where its keys come from; at least one, with distinct `iss` values.
    pub fn issuers(&self) -> &[Issuer] {
        &self.issuers
    }

    /// The issuer (by index) whose keys and expectations verify a token: the only one when there
    /// is one, else the one whose `issuer` equals the token's `iss` exactly (`None`: no such
    /// issuer, or no `iss`). `iss` is asked for only when there are several, so with one issuer
    /// no token is read to choose.
    pub fn issuer_for<E>(
        &self,
        iss: impl FnOnce() -> Result<Option<String>, E>,
    ) -> Result<Option<usize>, E> {
        if let [_] = self.issuers.as_slice() {
            return Ok(Some(0));
        }
        let Some(iss) = iss()? else {
            return Ok(None);
        };
        Ok(self
            .issuers
            .iter()
            .position(|issuer| issuer.expectations.issuer == iss))
    }

    /// Route rules and default.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Where the token is read from, in order.
    pub fn token_sources(&self) -> &TokenSources {
        &self.token_sources
    }

    /// `realm` for `WWW-Authenticate`.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// Limits of the gRPC server.
    pub fn server(&self) -> &ServerLimits {
        &self.server
    }

    /// Every header any issuer forwards a claim in: all of them are set or removed on every
    /// allowed request, so a client's copy of one never reaches the upstream.
    pub fn forwarded_headers(&self) -> Vec<String> {
        let mut headers: Vec<String> = self
            .issuers
            .iter()
            .flat_map(|issuer| issuer.expectations.forward_claims.iter())
            .map(|forward| forward.header.clone())
            .collect();
        headers.sort_unstable();
        headers.dedup();
        headers
    }

    /// Loads `path` (if any), applies the process environment, and compiles.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut raw = match path {
            Some(path) => RawConfig::from_file(path)?,
            None => RawConfig::default(),
        };
        raw.apply_env(|name| std::env::var(name).ok());
        raw.compile()
    }
}

/// `text` as `IP:PORT`, or an error for `key` that shows `example`.
fn socket_addr(key: &str, text: &str, example: &str) -> Result<SocketAddr, ConfigError> {
    text.parse()
        .map_err(|_| invalid(key, text, format!("expected IP:PORT, e.g. {example:?}")))
}

#[cfg(test)]
mod tests;
