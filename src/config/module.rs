//! The configuration of the Envoy dynamic module (`envoy-module/`): a scopegate TOML document
//! compiled as `check-config` compiles one, less the listener parts. Inside Envoy the requests
//! come from Envoy's own listener, so a key that would open a port of scopegate's (or set the
//! limits of one) is refused by name rather than silently ignored.

use super::{Config, ConfigError, RawConfig};

/// The top-level keys the module refuses: every listener of the standalone service and its
/// limits.
pub const MODULE_REFUSED_KEYS: [&str; 6] = [
    "listen",
    "server",
    "tls",
    "metrics_listen",
    "health_listen",
    "http_listen",
];

/// Compiles `text`, the filter configuration Envoy hands the module, into a [`Config`]: the
/// same two stages as the service's file (unknown keys refused, then every value validated),
/// after refusing the listener keys of [`MODULE_REFUSED_KEYS`]; `query` token sources are
/// refused too. `origin` names the source in
/// errors. Environment overrides are not applied: the configuration is Envoy's, whole.
pub fn compile_module_config(text: &str, origin: &str) -> Result<Config, ConfigError> {
    let table: toml::Table = toml::from_str(text).map_err(|source| ConfigError::Parse {
        path: origin.to_string(),
        source: Box::new(source),
    })?;
    if let Some(key) = MODULE_REFUSED_KEYS.iter().find(|k| table.contains_key(**k)) {
        let value = table.get(*key).map_or_else(String::new, |v| match v {
            toml::Value::Table(_) => format!("[{key}]"),
            other => other.to_string(),
        });
        return Err(ConfigError::Invalid {
            key: (*key).to_string(),
            value,
            reason: "the Envoy module has no listener of its own (Envoy's listener takes the \
                     requests); remove the key from the filter configuration"
                .to_string(),
        });
    }
    // Spans come from Envoy's own tracer in-proxy: the module has no exporter, so a `[tracing]`
    // table would be accepted and never export a span.
    if let Some(value) = table.get("tracing") {
        return Err(ConfigError::Invalid {
            key: "tracing".to_string(),
            value: match value {
                toml::Value::Table(_) => "[tracing]".to_string(),
                other => other.to_string(),
            },
            reason: "the Envoy module exports no spans of its own (Envoy's tracer traces the \
                     request); remove the table from the filter configuration"
                .to_string(),
        });
    }
    let config = RawConfig::from_toml(text, origin)?.compile()?;
    // The filter lets a request through as it came: it cannot strip a query parameter from
    // the URL, so a token read from one would reach the upstream (and its logs).
    if let Some((at, source)) = config
        .token_sources()
        .iter()
        .enumerate()
        .find(|(_, source)| source.kind() == "query")
    {
        let name = source.name();
        return Err(ConfigError::Invalid {
            key: format!("token_sources[{at}].query"),
            value: format!("{name:?}"),
            reason: "the Envoy module cannot remove a token from the URL before the upstream; \
                     use a header or cookie source"
                .to_string(),
        });
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::BASE;

    #[test]
    fn a_service_configuration_without_listeners_compiles() {
        let config = compile_module_config(
            &format!("{BASE}[[rules]]\npath = \"/x\"\nscopes = [\"a\"]\n"),
            "<module>",
        )
        .expect("compiles");
        assert_eq!(config.issuers().len(), 1);
    }

    #[test]
    fn every_listener_key_is_refused_by_name() {
        let cases = [
            (
                "listen = \"127.0.0.1:9191\"\n",
                "listen",
                "\"127.0.0.1:9191\"",
            ),
            ("[server]\nmax_connections = 10\n", "server", "[server]"),
            (
                "[tls]\ncert_file = \"c\"\nkey_file = \"k\"\n",
                "tls",
                "[tls]",
            ),
            (
                "metrics_listen = \"127.0.0.1:9464\"\n",
                "metrics_listen",
                "\"127.0.0.1:9464\"",
            ),
            (
                "health_listen = \"127.0.0.1:9192\"\n",
                "health_listen",
                "\"127.0.0.1:9192\"",
            ),
            (
                "http_listen = \"127.0.0.1:9193\"\n",
                "http_listen",
                "\"127.0.0.1:9193\"",
            ),
        ];
        for (extra, key, value) in cases {
            let err =
                compile_module_config(&format!("{BASE}{extra}"), "<module>").expect_err(extra);
            let text = err.to_string();
            assert!(
                matches!(&err, ConfigError::Invalid { key: k, value: v, .. } if k == key && v == value),
                "{extra}: {text}"
            );
            assert!(text.contains("no listener of its own"), "{text}");
        }
    }

    #[test]
    fn a_tracing_table_is_refused_by_name() {
        let text = format!("{BASE}[tracing]\notlp_endpoint = \"http://127.0.0.1:4317\"\n");
        let err = compile_module_config(&text, "<module>").expect_err("refused");
        let message = err.to_string();
        assert!(message.contains("tracing"), "{message}");
        assert!(message.contains("Envoy's tracer"), "{message}");
    }

    #[test]
    fn a_query_token_source_is_refused() {
        let err = compile_module_config(
            &format!(
                "{BASE}allow_query_tokens = true\n[[token_sources]]\nheader = \"authorization\"\n\
                 [[token_sources]]\nquery = \"access_token\"\n"
            ),
            "<module>",
        )
        .expect_err("a query source");
        assert!(
            matches!(&err, ConfigError::Invalid { key, .. } if key == "token_sources[1].query"),
            "{err}"
        );
    }

    #[test]
    fn the_service_checks_still_apply() {
        // Unknown keys and bad values are refused as check-config refuses them.
        let unknown = compile_module_config(&format!("{BASE}no_such_key = 1\n"), "<module>")
            .expect_err("unknown key");
        assert!(unknown.to_string().contains("no_such_key"), "{unknown}");
        let missing =
            compile_module_config("audience = \"a\"\n", "<module>").expect_err("no issuer");
        assert!(missing.to_string().contains("issuer"), "{missing}");
        let not_toml = compile_module_config("issuer = ", "<module>").expect_err("not TOML");
        assert!(matches!(not_toml, ConfigError::Parse { .. }), "{not_toml}");
    }
}
