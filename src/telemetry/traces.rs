//! Traces: a decision as a span in the caller's trace, exported over OTLP/gRPC.
//!
//! [`Tracer`] holds the OpenTelemetry SDK's tracer provider: a parent-based sampler (a caller's
//! sampled parent is followed, an unsampled one too; a request without a parent is a root
//! sampled at `sample_ratio`), a batch processor on a bounded queue behind a span processor of
//! its own, which drops a span rather than queue it past [`QUEUE_SPANS`] and counts every span
//! that is not exported in `scopegate_trace_spans_dropped_total`, and the OTLP tonic exporter.
//! Exports run on the SDK's own thread, so a slow or unreachable collector never delays a
//! Check: it only fills the queue, and what does not fit is dropped and counted.
//!
//! Spans are made with the SDK directly, one per decision, rather than through a `tracing`
//! layer, so a log line costs nothing more with tracing on. A span that would not be sampled
//! is never made ([`Tracer::start_check`] answers `None`), so an unsampled Check costs the
//! parsing of its `traceparent` and no more. The spans' context travels with the decision's
//! future (`opentelemetry::context::FutureExt::with_context`), carrying the [`Tracer`], so the
//! layers below (the token cache, the unknown-`kid` wait) add to it without a parameter.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use opentelemetry::propagation::{Extractor, TextMapPropagator as _};
use opentelemetry::trace::{
    SpanContext, SpanKind, Status, TraceContextExt as _, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{WithExportConfig as _, WithTonicConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider, SpanData,
    SpanExporter, SpanProcessor,
};
use prometheus_client::metrics::counter::Counter;

/// The span of one decision.
pub const CHECK_SPAN: &str = "scopegate.check";
/// A Check's wait for the unknown-`kid` refetch it joined or started (a child of the Check,
/// linked to the fetch).
pub const WAIT_SPAN: &str = "scopegate.jwks.unknown_kid_wait";
/// One JWKS fetch by an issuer's refresher: a child of the wait of the Check that asked for
/// it, or a root span (sampled at `sample_ratio`) when the refresher fetched on its own.
pub const FETCH_SPAN: &str = "scopegate.jwks.fetch";

/// Most finished spans waiting for export; one more is dropped and counted.
pub const QUEUE_SPANS: usize = 2048;
/// Most spans in one export request.
const BATCH_SPANS: usize = 512;
/// How long one export may take before its spans count as dropped.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how spans are exported: the compiled `[tracing]` table's export part.
#[derive(Clone, PartialEq)]
pub struct ExportSettings {
    /// The collector's OTLP/gRPC endpoint (`http://host:4317`).
    pub endpoint: String,
    /// The `service.name` resource attribute.
    pub service_name: String,
    /// The probability a request without a parent starts a sampled trace, in [0, 1].
    pub sample_ratio: f64,
    /// gRPC metadata sent with every export (a collector's API key): lower-case names.
    pub headers: Vec<(String, String)>,
}

/// The header values are secrets: never printed.
impl fmt::Debug for ExportSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExportSettings")
            .field("endpoint", &self.endpoint)
            .field("service_name", &self.service_name)
            .field("sample_ratio", &self.sample_ratio)
            .field(
                "headers",
                &self.headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Why the exporter could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TracingError {
    /// A header name or value gRPC metadata cannot carry.
    #[error("tracing header `{0}` cannot be sent as gRPC metadata")]
    Header(String),
    /// The OTLP exporter refused its settings.
    #[error("OTLP exporter: {0}")]
    Exporter(String),
}

/// The trace exporter and its sampler. Cheap to clone; built once per process (tracing
/// settings need a restart), inside the Tokio runtime that carries the exporter's connection.
#[derive(Clone)]
pub struct Tracer {
    inner: Arc<Inner>,
}

struct Inner {
    tracer: SdkTracer,
    provider: SdkTracerProvider,
    /// Whether a root (no parent) may be sampled at all: `sample_ratio` > 0.
    roots: bool,
}

impl fmt::Debug for Tracer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracer").finish_non_exhaustive()
    }
}

impl Tracer {
    /// Starts the exporter for `settings`, counting dropped spans in `dropped`. Must run in a
    /// Tokio runtime (the exporter's connection is driven by it); connects lazily, so an
    /// unreachable collector is no error here.
    pub fn start(settings: &ExportSettings, dropped: Counter) -> Result<Tracer, TracingError> {
        let mut metadata = tonic::metadata::MetadataMap::new();
        for (name, value) in &settings.headers {
            let key = tonic::metadata::AsciiMetadataKey::from_bytes(name.as_bytes())
                .map_err(|_| TracingError::Header(name.clone()))?;
            let value = value
                .parse()
                .map_err(|_| TracingError::Header(name.clone()))?;
            metadata.insert(key, value);
        }
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(settings.endpoint.clone())
            .with_timeout(EXPORT_TIMEOUT)
            .with_metadata(metadata)
            .build()
            .map_err(|e| TracingError::Exporter(e.to_string()))?;
        let queued = Arc::new(AtomicUsize::new(0));
        let exporter = Counted {
            inner: exporter,
            queued: Arc::clone(&queued),
            dropped: dropped.clone(),
            failing: AtomicBool::new(false),
        };
        let batch = BatchSpanProcessor::builder(exporter)
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_max_queue_size(QUEUE_SPANS)
                    .with_max_export_batch_size(BATCH_SPANS)
                    .build(),
            )
            .build();
        let provider = SdkTracerProvider::builder()
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                settings.sample_ratio,
            ))))
            .with_span_processor(Bounded {
                inner: batch,
                queued,
                dropped,
            })
            .with_resource(
                Resource::builder()
                    .with_service_name(settings.service_name.clone())
                    .build(),
            )
            .build();
        let tracer = provider.tracer("scopegate");
        Ok(Tracer {
            inner: Arc::new(Inner {
                tracer,
                provider,
                roots: settings.sample_ratio > 0.0,
            }),
        })
    }

    /// The span of one decision, `scopegate.check`, as the context the decision runs in: a
    /// child of `parent` (a W3C trace context read by [`parent_context`]) or a root. `None`
    /// when it would not be sampled (an unsampled parent; no parent and `sample_ratio` 0, or
    /// the ratio's draw): nothing is made then.
    pub fn start_check(&self, parent: Option<&Context>, method: &str) -> Option<Context> {
        self.start_span(CHECK_SPAN, SpanKind::Server, parent)
            .inspect(|cx| {
                cx.span()
                    .set_attribute(KeyValue::new("http.request.method", known_method(method)));
            })
    }

    /// The parent a transport's trace context gives a decision, as [`parent_context`] reads
    /// it; but while no root is ever sampled (`sample_ratio` 0), only a sampled parent can
    /// lead to a span, so a `traceparent` whose flags field (where W3C puts it) does not say
    /// sampled, or cannot be read, is answered `None` without parsing the rest: the common
    /// case of a proxy that traces and did not sample costs next to nothing.
    pub fn parent(&self, traceparent: &[&str], tracestate: &[&str]) -> Option<Context> {
        if !self.inner.roots {
            let [one] = traceparent else {
                return None;
            };
            let sampled = one
                .get(53..55)
                .and_then(|flags| u8::from_str_radix(flags, 16).ok())
                .is_some_and(|flags| flags & 1 == 1);
            if !sampled {
                return None;
            }
        }
        parent_context(traceparent, tracestate)
    }

    /// A JWKS fetch's span: a child of `asked_by` (the wait of the Check that asked for it),
    /// or a root sampled at `sample_ratio`. `None` when not sampled. `uri` is the configured
    /// key set URL (configuration, not a request value).
    pub fn start_fetch(&self, asked_by: Option<&Context>, uri: &str) -> Option<Context> {
        self.start_span(FETCH_SPAN, SpanKind::Client, asked_by)
            .inspect(|cx| {
                cx.span()
                    .set_attribute(KeyValue::new("url.full", uri.to_owned()));
            })
    }

    fn start_span(
        &self,
        name: &'static str,
        kind: SpanKind,
        parent: Option<&Context>,
    ) -> Option<Context> {
        let sampled_parent = parent.map(|cx| cx.span().span_context().is_sampled());
        // The sampler is parent-based: skip the SDK where its answer is known to be "drop".
        if sampled_parent == Some(false) || (sampled_parent.is_none() && !self.inner.roots) {
            return None;
        }
        let root = Context::new();
        let span = self
            .inner
            .tracer
            .span_builder(name)
            .with_kind(kind)
            .start_with_context(&self.inner.tracer, parent.unwrap_or(&root));
        let cx = parent
            .unwrap_or(&root)
            .with_span(span)
            .with_value(self.clone());
        cx.span().is_recording().then_some(cx)
    }

    /// Flushes what is queued and stops the exporter, waiting at most `within` (blocking: run
    /// it off the runtime's workers).
    pub fn shutdown(&self, within: Duration) {
        if let Err(error) = self.inner.provider.shutdown_with_timeout(within) {
            tracing::warn!(%error, "trace export did not finish within its shutdown bound");
        }
    }
}

/// The trace context a transport received, as a parent: `Some` only for exactly one
/// well-formed W3C `traceparent` (with its `tracestate`, where there is exactly one); several
/// or a malformed one are ignored, never an error.
pub fn parent_context(traceparent: &[&str], tracestate: &[&str]) -> Option<Context> {
    let [traceparent] = traceparent else {
        return None;
    };
    let carrier = Carrier {
        traceparent,
        tracestate: match tracestate {
            [one] => Some(one),
            _ => None,
        },
    };
    let cx = TraceContextPropagator::new().extract(&carrier);
    cx.span().span_context().is_valid().then_some(cx)
}

struct Carrier<'a> {
    traceparent: &'a str,
    tracestate: Option<&'a str>,
}

impl Extractor for Carrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            "traceparent" => Some(self.traceparent),
            "tracestate" => self.tracestate,
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent", "tracestate"]
    }
}

/// Sets `attributes` on the span the current context carries, if it records one (the token
/// cache's answer, from below the decision core). Costs a thread-local read otherwise.
pub fn annotate_current(attributes: impl FnOnce() -> Vec<KeyValue>) {
    Context::map_current(|cx| {
        if cx.has_active_span() && cx.span().is_recording() {
            cx.span().set_attributes(attributes());
        }
    });
}

/// A child of the current context's span named `name` (the unknown-`kid` wait), when the
/// current context records one; `None` otherwise.
pub fn child_of_current(name: &'static str) -> Option<Context> {
    let cx = Context::current();
    if !cx.has_active_span() || !cx.span().is_recording() {
        return None;
    }
    let tracer = cx.get::<Tracer>()?.clone();
    tracer.start_span(name, SpanKind::Internal, Some(&cx))
}

/// Links the span of `cx` to `to` (a wait to the fetch it waited for).
pub fn link(cx: &Context, to: SpanContext) {
    cx.span().add_link(to, Vec::new());
}

/// Ends the span of `cx`, marking it an error with `error` when given.
pub fn end(cx: &Context, error: Option<&'static str>) {
    let span = cx.span();
    if let Some(error) = error {
        span.set_status(Status::error(error));
    }
    span.end();
}

/// `method` as the span attribute `http.request.method` carries it: one of the methods HTTP
/// defines, else `_OTHER`, so a client cannot write what it likes into a trace.
fn known_method(method: &str) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    ];
    KNOWN
        .into_iter()
        .find(|known| *known == method)
        .unwrap_or("_OTHER")
}

/// The span processor in front of the SDK's batch processor: it keeps the count of spans
/// queued and not yet taken for export, drops (and counts) a span that would take it past
/// [`QUEUE_SPANS`], and so also keeps the batch processor's own queue from ever dropping one
/// uncounted (it has the same bound).
#[derive(Debug)]
struct Bounded {
    inner: BatchSpanProcessor,
    queued: Arc<AtomicUsize>,
    dropped: Counter,
}

impl SpanProcessor for Bounded {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        let admitted = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < QUEUE_SPANS).then_some(n + 1)
            })
            .is_ok();
        if admitted {
            self.inner.on_end(span);
        } else {
            self.dropped.inc();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The OTLP exporter, counting the spans of every batch it is given out of the queue, and
/// those of a batch that fails (refused, unreachable, timed out) as dropped.
#[derive(Debug)]
struct Counted<E> {
    inner: E,
    queued: Arc<AtomicUsize>,
    dropped: Counter,
    /// Whether the last export failed, so a failing collector is logged once, not per batch.
    failing: AtomicBool,
}

impl<E: SpanExporter> SpanExporter for Counted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        self.queued.fetch_sub(spans, Ordering::AcqRel);
        let result = self.inner.export(batch).await;
        match &result {
            Ok(()) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("trace export recovered");
                }
            }
            Err(error) => {
                self.dropped.inc_by(spans as u64);
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(%error, spans, "trace export failed; spans are dropped until it recovers");
                }
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_context_takes_one_well_formed_traceparent() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let cases: [(&[&str], bool); 8] = [
            (&[good], true),
            (&[], false),
            (&[good, good], false),
            (&["garbage"], false),
            (
                &["00-00000000000000000000000000000000-00f067aa0ba902b7-01"],
                false,
            ),
            (
                &["00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"],
                false,
            ),
            (
                &["00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"],
                false,
            ),
            (
                &["ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"],
                false,
            ),
        ];
        for (traceparent, valid) in cases {
            assert_eq!(
                parent_context(traceparent, &[]).is_some(),
                valid,
                "{traceparent:?}"
            );
        }
    }

    #[test]
    fn known_method_maps_the_rest_to_other() {
        for (method, expected) in [
            ("GET", "GET"),
            ("PATCH", "PATCH"),
            ("get", "_OTHER"),
            ("X-SECRET-PATH", "_OTHER"),
        ] {
            assert_eq!(known_method(method), expected);
        }
    }
}
