//! An OTLP trace receiver on loopback: the collector's `TraceService` from the OTLP protobuf
//! definitions (`opentelemetry-proto`), served by tonic. It keeps every span it is sent, with
//! its resource's `service.name`, and the gRPC metadata of every export.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};

/// One span as received.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    pub service: String,
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    /// The OTLP `SpanKind` number (2: server, 3: client).
    pub kind: i32,
    pub attributes: BTreeMap<String, String>,
    /// `(trace id, span id)` of each link.
    pub links: Vec<(String, String)>,
    /// Every attribute value of the span, its links, events and resource, as text.
    pub every_value: Vec<String>,
}

impl ReceivedSpan {
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes.get(name).map(String::as_str)
    }
}

#[derive(Default)]
struct Received {
    spans: Vec<ReceivedSpan>,
    metadata: Vec<BTreeMap<String, String>>,
}

/// The receiver, serving until dropped.
pub struct OtlpReceiver {
    pub addr: SocketAddr,
    received: Arc<Mutex<Received>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Service {
    received: Arc<Mutex<Received>>,
}

#[tonic::async_trait]
impl TraceService for Service {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let metadata = request
            .metadata()
            .iter()
            .filter_map(|entry| match entry {
                tonic::metadata::KeyAndValueRef::Ascii(k, v) => {
                    Some((k.to_string(), v.to_str().unwrap_or("").to_owned()))
                }
                tonic::metadata::KeyAndValueRef::Binary(..) => None,
            })
            .collect();
        let mut spans = Vec::new();
        for resource_spans in request.into_inner().resource_spans {
            let resource = resource_spans
                .resource
                .map(|r| r.attributes)
                .unwrap_or_default();
            let service = resource
                .iter()
                .find(|kv| kv.key == "service.name")
                .map(|kv| text(kv.value.as_ref()))
                .unwrap_or_default();
            let resource_values: Vec<String> =
                resource.iter().map(|kv| text(kv.value.as_ref())).collect();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    let mut every_value = resource_values.clone();
                    let values = |kvs: &[KeyValue]| -> Vec<String> {
                        kvs.iter().map(|kv| text(kv.value.as_ref())).collect()
                    };
                    every_value.extend(values(&span.attributes));
                    for link in &span.links {
                        every_value.extend(values(&link.attributes));
                    }
                    for event in &span.events {
                        every_value.push(event.name.clone());
                        every_value.extend(values(&event.attributes));
                    }
                    if let Some(status) = &span.status {
                        every_value.push(status.message.clone());
                    }
                    spans.push(ReceivedSpan {
                        service: service.clone(),
                        name: span.name.clone(),
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                        kind: span.kind,
                        attributes: span
                            .attributes
                            .iter()
                            .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
                            .collect(),
                        links: span
                            .links
                            .iter()
                            .map(|l| (hex(&l.trace_id), hex(&l.span_id)))
                            .collect(),
                        every_value,
                    });
                }
            }
        }
        let mut received = self.received.lock().expect("receiver lock");
        received.spans.extend(spans);
        received.metadata.push(metadata);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl OtlpReceiver {
    /// Serves on `127.0.0.1:0`.
    pub async fn start() -> OtlpReceiver {
        super::watchdog::arm();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the OTLP receiver");
        let addr = listener.local_addr().expect("addr");
        let received = Arc::new(Mutex::new(Received::default()));
        let service = TraceServiceServer::new(Service {
            received: Arc::clone(&received),
        });
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                .await;
        });
        OtlpReceiver {
            addr,
            received,
            task,
        }
    }

    /// `http://127.0.0.1:port`, for `otlp_endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.received.lock().expect("receiver lock").spans.clone()
    }

    /// The gRPC metadata of every export so far.
    pub fn metadata(&self) -> Vec<BTreeMap<String, String>> {
        self.received
            .lock()
            .expect("receiver lock")
            .metadata
            .clone()
    }

    /// The spans named `name`.
    pub fn named(&self, name: &str) -> Vec<ReceivedSpan> {
        self.spans()
            .into_iter()
            .filter(|s| s.name == name)
            .collect()
    }

    /// Waits until `condition` holds of the spans received (the exporter sends a batch every
    /// few seconds, or when its process stops).
    pub async fn wait_for(&self, what: &str, condition: impl Fn(&[ReceivedSpan]) -> bool) {
        super::eventually(what, Duration::from_secs(60), || {
            let spans = self.spans();
            let holds = condition(&spans);
            async move { holds }
        })
        .await;
    }
}
