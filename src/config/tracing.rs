//! `[tracing]`: where a decision's span is exported (OTLP over gRPC), how requests without a
//! sampled parent are sampled, and whose trace context is trusted. Absent: tracing is off, and
//! a Check makes no span at all.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

use super::{ConfigError, invalid};
use crate::telemetry::traces::ExportSettings;

/// `service_name`'s default.
pub const DEFAULT_SERVICE_NAME: &str = "scopegate";

/// The `[tracing]` table as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTracing {
    /// The collector's OTLP/gRPC endpoint, `http://host:port`; required in the table.
    pub otlp_endpoint: Option<String>,
    /// The `service.name` of the spans; default `scopegate`.
    pub service_name: Option<String>,
    /// The probability a request without a sampled parent starts a trace; default 0.
    pub sample_ratio: Option<f64>,
    /// gRPC metadata sent with every export: a value inline, or `{ file = "path" }`.
    pub headers: Option<BTreeMap<String, RawHeaderValue>>,
    /// Take the trace context from the client's own request headers (the CheckRequest's, the
    /// HTTP listener's); default false.
    pub trust_client_trace_context: Option<bool>,
    /// Put the token's `sub` on the span (`enduser.id`); default false.
    pub trace_subject: Option<bool>,
}

/// A `[tracing.headers]` value as written.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawHeaderValue {
    /// The value itself.
    Inline(String),
    /// A file holding the value (a secret kept out of the configuration file).
    File(RawHeaderFile),
}

/// `{ file = "path" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeaderFile {
    /// The file's path; its content, without a trailing line break, is the value.
    pub file: String,
}

/// The compiled `[tracing]` table. Only the configuration's compile builds one: the endpoint is an
/// `http://` URL with a host, the ratio lies in [0, 1], header names and values are ones gRPC
/// metadata can carry.
#[derive(Clone, PartialEq)]
pub struct TracingSettings {
    export: ExportSettings,
    trust_client_trace_context: bool,
    trace_subject: bool,
}

impl TracingSettings {
    /// Where and how spans are exported.
    pub fn export(&self) -> &ExportSettings {
        &self.export
    }

    /// Whether the client's own `traceparent` (in the request it sent, not the transport's
    /// metadata) may be the parent of a decision's span.
    pub fn trust_client_trace_context(&self) -> bool {
        self.trust_client_trace_context
    }

    /// Whether a decision's span carries the token's subject.
    pub fn trace_subject(&self) -> bool {
        self.trace_subject
    }
}

/// Header values are secrets: only their names are shown.
impl fmt::Debug for TracingSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TracingSettings")
            .field("export", &self.export)
            .field(
                "trust_client_trace_context",
                &self.trust_client_trace_context,
            )
            .field("trace_subject", &self.trace_subject)
            .finish()
    }
}

/// As `check-config` prints it, header values redacted.
impl fmt::Display for TracingSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.export;
        write!(
            f,
            "OTLP {} as {}, roots sampled at {}, client trace context {}, subject {}",
            e.endpoint,
            e.service_name,
            e.sample_ratio,
            if self.trust_client_trace_context {
                "trusted"
            } else {
                "ignored"
            },
            if self.trace_subject {
                "on spans"
            } else {
                "left out"
            },
        )?;
        for (name, _) in &e.headers {
            write!(f, ", header {name}: (redacted)")?;
        }
        Ok(())
    }
}

/// `[tracing]` → [`TracingSettings`]; `None` when the table is absent. Header files are read
/// here, so a missing one stops the start (or the reload) naming its key.
pub(super) fn compile_tracing(
    raw: Option<RawTracing>,
) -> Result<Option<TracingSettings>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let endpoint = raw.otlp_endpoint.ok_or_else(|| ConfigError::Missing {
        key: "tracing.otlp_endpoint".into(),
        hint: " (the collector's OTLP/gRPC address, e.g. \"http://otel-collector:4317\"; \
               remove [tracing] to turn tracing off)"
            .into(),
    })?;
    let url = reqwest::Url::parse(&endpoint).map_err(|e| {
        invalid(
            "tracing.otlp_endpoint",
            &endpoint,
            format!("not a URL: {e}"),
        )
    })?;
    if url.scheme() != "http" || url.host_str().is_none_or(str::is_empty) {
        return Err(invalid(
            "tracing.otlp_endpoint",
            &endpoint,
            "must be http://host:port (plaintext gRPC to a collector nearby, such as a sidecar \
             or a node agent; TLS to the collector is not supported)",
        ));
    }
    if !url.username().is_empty() || url.password().is_some() || url.query().is_some() {
        return Err(invalid(
            "tracing.otlp_endpoint",
            &endpoint,
            "must not carry credentials or a query (send an API key in [tracing.headers])",
        ));
    }
    let service_name = raw
        .service_name
        .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_owned());
    if service_name.is_empty()
        || service_name.len() > 255
        || service_name.chars().any(char::is_control)
    {
        return Err(invalid(
            "tracing.service_name",
            &service_name,
            "must be 1 to 255 bytes without control characters",
        ));
    }
    let sample_ratio = raw.sample_ratio.unwrap_or(0.0);
    if !(0.0..=1.0).contains(&sample_ratio) {
        return Err(invalid(
            "tracing.sample_ratio",
            sample_ratio,
            "must be between 0 (follow the caller only) and 1 (every request)",
        ));
    }
    let mut headers = Vec::new();
    for (name, value) in raw.headers.unwrap_or_default() {
        let key = format!("tracing.headers.{name}");
        let lower = name.to_ascii_lowercase();
        if lower.ends_with("-bin")
            || tonic::metadata::AsciiMetadataKey::from_bytes(lower.as_bytes()).is_err()
        {
            return Err(invalid(
                key,
                &name,
                "not a gRPC metadata name (letters, digits, `-`, `_`, `.`; not `-bin`)",
            ));
        }
        let value = match value {
            RawHeaderValue::Inline(value) => value,
            RawHeaderValue::File(RawHeaderFile { file }) => {
                let text = std::fs::read_to_string(&file).map_err(|e| {
                    invalid(format!("{key}.file"), &file, format!("cannot read it: {e}"))
                })?;
                text.trim_end_matches(['\r', '\n']).to_owned()
            }
        };
        // Never echo the value: it is a secret.
        if value.is_empty()
            || !value
                .bytes()
                .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
        {
            return Err(invalid(
                key,
                "(redacted)",
                "the value must be non-empty printable ASCII",
            ));
        }
        if headers.iter().any(|(n, _): &(String, String)| *n == lower) {
            return Err(invalid(
                key,
                &name,
                "named twice (names are case-insensitive)",
            ));
        }
        headers.push((lower, value));
    }
    Ok(Some(TracingSettings {
        export: ExportSettings {
            endpoint,
            service_name,
            sample_ratio,
            headers,
        },
        trust_client_trace_context: raw.trust_client_trace_context.unwrap_or(false),
        trace_subject: raw.trace_subject.unwrap_or(false),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(text: &str) -> Result<Option<TracingSettings>, String> {
        #[derive(Deserialize)]
        struct Wrapper {
            tracing: Option<RawTracing>,
        }
        let wrapper: Wrapper = toml::from_str(text).map_err(|e| e.to_string())?;
        compile_tracing(wrapper.tracing).map_err(|e| e.to_string())
    }

    #[test]
    fn absent_is_off_and_defaults_follow_the_caller() {
        assert!(compile("").unwrap().is_none());
        let t = compile("[tracing]\notlp_endpoint = \"http://collector:4317\"")
            .unwrap()
            .unwrap();
        assert_eq!(t.export().service_name, "scopegate");
        assert_eq!(t.export().sample_ratio, 0.0);
        assert!(!t.trust_client_trace_context());
        assert!(!t.trace_subject());
    }

    #[test]
    fn refused_values_name_their_key() {
        let cases = [
            ("[tracing]", "tracing.otlp_endpoint"),
            (
                "[tracing]\notlp_endpoint = \"collector:4317\"",
                "tracing.otlp_endpoint",
            ),
            (
                "[tracing]\notlp_endpoint = \"https://c:4317\"",
                "tracing.otlp_endpoint",
            ),
            (
                "[tracing]\notlp_endpoint = \"http://u:p@c:4317\"",
                "tracing.otlp_endpoint",
            ),
            (
                "[tracing]\notlp_endpoint = \"http://c:4317\"\nsample_ratio = 1.5",
                "tracing.sample_ratio",
            ),
            (
                "[tracing]\notlp_endpoint = \"http://c:4317\"\nsample_ratio = -0.1",
                "tracing.sample_ratio",
            ),
            (
                "[tracing]\notlp_endpoint = \"http://c:4317\"\nsample_ratio = nan",
                "tracing.sample_ratio",
            ),
            (
                "[tracing]\notlp_endpoint = \"http://c:4317\"\nservice_name = \"\"",
                "tracing.service_name",
            ),
            (
                "[tracing]\notlp_endpoint = \"http://c:4317\"\nheaders = { \"a b\" = \"x\" }",
                "tracing.headers.a b",
            ),
            (
                "[tracing]\notlp_endpoint = \"http://c:4317\"\nheaders = { key-bin = \"x\" }",
                "tracing.headers.key-bin",
            ),
            (
                "[tracing]\notlp_endpoint = \"http://c:4317\"\nheaders = { key = \"\\n\" }",
                "tracing.headers.key",
            ),
            (
                "[tracing]\notlp_endpoint = \"http://c:4317\"\nheaders = { key = { file = \"/nonexistent/key\" } }",
                "tracing.headers.key.file",
            ),
            (
                "[tracing]\notlp_endpoint = \"http://c:4317\"\nheaders = { Key = \"a\", key = \"b\" }",
                "tracing.headers.key",
            ),
        ];
        for (text, key) in cases {
            let error = compile(text).expect_err(text);
            assert!(error.contains(&format!("`{key}`")), "{text}: {error}");
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let error = compile("[tracing]\notlp_endpoint = \"http://c:4317\"\nratio = 1").unwrap_err();
        assert!(error.contains("ratio"), "{error}");
    }

    #[test]
    fn header_values_come_inline_or_from_files_and_are_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "from-a-file\n").unwrap();
        let text = format!(
            "[tracing]\notlp_endpoint = \"http://c:4317\"\n\
             headers = {{ x-api-key = \"inline-secret\", Authorization = {{ file = {:?} }} }}",
            path.display().to_string()
        );
        let t = compile(&text).unwrap().unwrap();
        assert_eq!(
            t.export().headers,
            vec![
                ("authorization".to_owned(), "from-a-file".to_owned()),
                ("x-api-key".to_owned(), "inline-secret".to_owned()),
            ]
        );
        for shown in [t.to_string(), format!("{t:?}")] {
            assert!(
                !shown.contains("secret") && !shown.contains("from-a-file"),
                "{shown}"
            );
            assert!(shown.contains("x-api-key"), "{shown}");
        }
    }
}
