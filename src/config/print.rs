//! The compiled configuration as `check-config` prints it: one line per setting, then the issuers,
//! the rules and the default, from compiled values only.

use std::fmt;

use super::{Config, CorsPreflight, DecisionLog};
use crate::auth::verify::TokenType;

impl fmt::Display for Config {
    /// The compiled configuration as `check-config` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "listen            {}", self.listen)?;
        if let Some(metrics) = self.metrics_listen {
            writeln!(f, "metrics_listen    {metrics}")?;
        }
        if let Some(health) = self.health_listen {
            writeln!(f, "health_listen     {health}")?;
        }
        if let Some(http) = self.http_listen {
            let l = &self.http_server;
            writeln!(
                f,
                "http_listen       {http}: {} connections, request heads up to {} bytes, \
                 head {}s, idle {}s",
                l.max_connections,
                l.max_header_bytes,
                l.header_timeout.as_secs(),
                l.idle_timeout.as_secs()
            )?;
        }
        if let Some(tls) = &self.tls {
            writeln!(
                f,
                "tls               cert {}, key {}, client certificates {}",
                tls.cert_file.display(),
                tls.key_file.display(),
                tls.client_ca_file.as_ref().map_or_else(
                    || "not asked for".to_string(),
                    |ca| format!("required (CA {})", ca.display())
                )
            )?;
        }
        writeln!(
            f,
            "token_cache_size  {} (at most {} bytes: token_cache_max_bytes)",
            self.token_cache_size, self.token_cache_max_bytes
        )?;
        writeln!(
            f,
            "dpop              proofs up to {} bytes, iat within {} s, replay cache {} bytes, htu base {}",
            self.dpop.max_proof_bytes(),
            self.dpop.window_seconds(),
            self.dpop.replay_cache_bytes(),
            self.dpop.public_base_url().unwrap_or("from the request"),
        )?;
        match self.dpop.replay_store() {
            None => writeln!(
                f,
                "dpop replay store in this process (each replica remembers only its own proofs)"
            )?,
            // The password is never printed: only whether one is sent.
            Some(store) => writeln!(
                f,
                "dpop replay store {} ({}), calls within {} ms, at most {} in flight",
                store.target(),
                if store.has_password() {
                    "password from dpop_replay_store_password_file"
                } else {
                    "no password"
                },
                store.timeout().as_millis(),
                store.max_in_flight(),
            )?,
        }
        let decision_log = match self.decision_log {
            DecisionLog::Deny => "deny",
            DecisionLog::All => "all",
            DecisionLog::Off => "off",
        };
        writeln!(f, "decision_log      {decision_log}")?;
        let cors_preflight = match self.cors_preflight {
            CorsPreflight::Authenticate => "authenticate",
            CorsPreflight::Allow => "allow",
        };
        writeln!(f, "cors_preflight    {cors_preflight}")?;
        for source in self.token_sources.iter() {
            writeln!(f, "token source      {source}")?;
        }
        let client_certificate = if self.trust_forwarded_client_cert {
            "x-forwarded-client-cert when sent, else the peer's (trust_forwarded_client_cert)"
        } else {
            "the peer's only"
        };
        writeln!(f, "client cert       {client_certificate}")?;
        match &self.tracing {
            Some(tracing) => writeln!(f, "tracing           {tracing}")?,
            None => writeln!(f, "tracing           off")?,
        }
        for issuer in &self.issuers {
            let e = &issuer.expectations;
            writeln!(f, "issuer            {}", e.issuer)?;
            writeln!(f, "audience          {}", e.audiences.join(", "))?;
            let algs: Vec<&str> = e.algorithms.iter().map(|a| a.as_str()).collect();
            writeln!(f, "algorithms        {}", algs.join(", "))?;
            writeln!(f, "leeway            {}s", e.leeway_seconds)?;
            writeln!(f, "scope claims      {}", e.scope_claims.join(", "))?;
            for forward in &e.forward_claims {
                writeln!(
                    f,
                    "forward           {} <- {}{}",
                    forward.header, forward.claim, forward.pointer
                )?;
            }
            if !issuer.metadata_claims.is_empty() {
                let keys: Vec<&str> = issuer.metadata_claims.iter().map(|m| m.key()).collect();
                writeln!(f, "metadata claims   {}", keys.join(", "))?;
            }
            if let Some(types) = &e.token_types {
                let types: Vec<&str> = types.iter().map(TokenType::as_str).collect();
                writeln!(f, "token types       {}", types.join(", "))?;
            }
            let j = &issuer.jwks;
            match (&j.discovery_issuer, &j.fallback_uri) {
                (None, _) => writeln!(f, "jwks_uri          {}", j.uri)?,
                (Some(_), None) => writeln!(f, "jwks_uri          by OIDC discovery, {}", j.uri)?,
                (Some(_), Some(fallback)) => writeln!(
                    f,
                    "jwks_uri          by OIDC discovery, {} (if it answers 404: {fallback})",
                    j.uri
                )?,
            }
            writeln!(
                f,
                "fetched           {}, trusting {}",
                if j.fetch_policy.allow_insecure_http {
                    "over https or plain http (allow_insecure_http)"
                } else {
                    "over https (plain http to loopback only)"
                },
                j.fetch_policy.trust
            )?;
            if let Some(i) = &issuer.introspection {
                // The secret's file is named; its content never is.
                writeln!(
                    f,
                    "introspection     {} tokens at {}, client {:?} ({}, secret in {}), aud {}",
                    i.mode,
                    i.endpoint,
                    i.client_id,
                    i.client_auth,
                    i.client_secret_file.display(),
                    if i.require_audience {
                        "required"
                    } else {
                        "optional"
                    }
                )?;
                writeln!(
                    f,
                    "introspection     cached {}s (inactive {}s), at most {} in flight and {} calls/s",
                    i.cache_seconds,
                    i.negative_cache_seconds,
                    i.max_in_flight,
                    i.max_calls_per_second
                )?;
            }
        }
        // The fetch settings are the same for every issuer.
        let j = &self.issuers[0].jwks;
        writeln!(
            f,
            "jwks refresh      {}s (max-age honoured within {}s..{}s), timeout {}s, max {} bytes and {} keys, stale after {}s",
            j.refresh.as_secs(),
            j.min_refresh.as_secs(),
            j.max_refresh.as_secs(),
            j.fetch_timeout.as_secs(),
            j.max_bytes,
            j.max_keys,
            j.max_stale.as_secs()
        )?;
        writeln!(
            f,
            "unknown kid       one refetch per {}s, a Check waits at most {}ms for it",
            j.refetch_cooldown.as_secs(),
            j.unknown_kid_wait.as_millis()
        )?;
        writeln!(f, "realm             {}", self.realm)?;
        let l = &self.server;
        writeln!(
            f,
            "server            {} connections, {} streams each, requests up to {} bytes, \
             handshake {}s, idle {}s, age {}s, keepalive {}s/{}s, Check deadline {}ms, \
             worker threads {}",
            l.max_connections,
            l.max_concurrent_streams,
            l.max_request_bytes,
            l.handshake_timeout.as_secs(),
            l.idle_timeout.as_secs(),
            l.max_connection_age.as_secs(),
            l.keepalive_interval.as_secs(),
            l.keepalive_timeout.as_secs(),
            l.check_timeout.as_millis(),
            if l.worker_threads == 0 {
                "one per CPU".to_string()
            } else {
                l.worker_threads.to_string()
            }
        )?;
        writeln!(f, "rules (first match wins):")?;
        for rule in self.policy.rules() {
            let path = format!("{:<6} {}", rule.path().key_name(), rule.path().pattern());
            let methods = rule
                .methods()
                .map_or_else(|| "any method".to_string(), |m| m.join(","));
            writeln!(
                f,
                "  {:<9} {path:<30} {methods:<12} -> {}{}{}{}",
                rule.name(),
                rule.requirement(),
                rule.accepts(),
                if rule.is_sender_constrained() {
                    ", sender-constrained tokens only"
                } else {
                    ""
                },
                if rule.is_shadow() {
                    "  [shadow: reported, never enforced]"
                } else {
                    ""
                }
            )?;
            for condition in rule.claims() {
                writeln!(
                    f,
                    "  {:<9} claim {} in {:?}",
                    "",
                    condition.key(),
                    condition.values()
                )?;
            }
        }
        write!(
            f,
            "  default   everything else                             -> {}",
            self.policy.default_requirement()
        )
    }
}
