//! [`Request`]: a request as the decision core reads it, whatever transport brought it.

use std::borrow::Cow;

use crate::auth::sources::CredentialsView;

/// One request header: its name in lower case and its value, read as text.
#[derive(Debug, Clone)]
struct Header<'a> {
    name: Cow<'a, str>,
    /// The value; one that is not UTF-8 is read with U+FFFD for its invalid bytes (so it is
    /// never a method name or a form's media type by accident, but still present).
    value: Cow<'a, str>,
    /// Whether the value was valid UTF-8 as received (a credential that is not is malformed).
    utf8: bool,
}

/// A request as the decision core reads it: method, scheme, host, path with query, headers by
/// lower-case name with every value kept in the order received, and the peer certificate when
/// the transport has one. Borrows from the transport's own request where it can, so filling
/// it copies no header value that is already text.
///
/// The gRPC adapter fills it from Envoy's `CheckRequest`; an HTTP front door fills it from the
/// request itself or from the `X-Forwarded-*` / `X-Original-*` headers a proxy sets, which is
/// why scheme and host are fields of their own rather than headers.
#[derive(Debug, Clone, Default)]
pub struct Request<'a> {
    method: &'a str,
    scheme: &'a str,
    host: &'a str,
    path: &'a str,
    headers: Vec<Header<'a>>,
    peer_certificate: Option<&'a str>,
    /// The W3C trace context the transport itself received (gRPC metadata), as opposed to the
    /// client's own headers: `traceparent` values, then `tracestate` values.
    trace_context: Option<(Vec<&'a str>, Vec<&'a str>)>,
}

impl<'a> Request<'a> {
    /// A request for `method` on `path` (the request target as sent, query included), with no
    /// headers yet.
    pub fn new(method: &'a str, path: &'a str) -> Request<'a> {
        Request {
            method,
            path,
            ..Request::default()
        }
    }

    /// With `scheme` (`http`, `https`) as the client used it.
    pub fn with_scheme(mut self, scheme: &'a str) -> Self {
        self.scheme = scheme;
        self
    }

    /// With `host` (the `:authority` or `Host`) as the client sent it.
    pub fn with_host(mut self, host: &'a str) -> Self {
        self.host = host;
        self
    }

    /// With the client's certificate (URL-encoded PEM, as Envoy passes it), where the
    /// transport had one.
    pub fn with_peer_certificate(mut self, certificate: &'a str) -> Self {
        self.peer_certificate = Some(certificate).filter(|c| !c.is_empty());
        self
    }

    /// With the W3C trace context the transport received beside the request (Envoy's gRPC
    /// metadata when it traces): its `traceparent` and `tracestate` values. The parent of the
    /// decision's span when tracing is on; the client's own headers count only where
    /// `trust_client_trace_context` says so.
    pub fn with_trace_context(
        mut self,
        traceparent: Vec<&'a str>,
        tracestate: Vec<&'a str>,
    ) -> Self {
        self.trace_context = Some((traceparent, tracestate)).filter(|(p, _)| !p.is_empty());
        self
    }

    /// The trace context the transport received beside the request, if it had one.
    pub fn trace_context(&self) -> Option<(&[&'a str], &[&'a str])> {
        self.trace_context
            .as_ref()
            .map(|(p, s)| (p.as_slice(), s.as_slice()))
    }

    /// Adds one header value; `name` in any case (it is kept in lower case).
    pub fn push_header(&mut self, name: &'a str, value: &'a str) {
        self.headers.push(Header {
            name: lower(name),
            value: Cow::Borrowed(value),
            utf8: true,
        });
    }

    /// Adds one header value received as bytes, which need not be UTF-8.
    pub fn push_header_bytes(&mut self, name: &'a str, value: &'a [u8]) {
        self.headers.push(Header {
            name: lower(name),
            value: String::from_utf8_lossy(value),
            utf8: std::str::from_utf8(value).is_ok(),
        });
    }

    /// The method, as sent.
    pub fn method(&self) -> &'a str {
        self.method
    }

    /// The scheme, or empty when the transport did not say.
    pub fn scheme(&self) -> &'a str {
        self.scheme
    }

    /// The host, or empty when the transport did not say.
    pub fn host(&self) -> &'a str {
        self.host
    }

    /// The path with its query, as sent.
    pub fn path(&self) -> &'a str {
        self.path
    }

    /// The client certificate, when the transport had one.
    pub fn peer_certificate(&self) -> Option<&'a str> {
        self.peer_certificate
    }

    /// The values of the header `name` (lower case), in order, read as text.
    pub fn text_values(&self, name: &str) -> Vec<&str> {
        self.named(name).map(|h| h.value.as_ref()).collect()
    }

    /// The first value of the header `name` (lower case) that was valid UTF-8.
    pub fn first_value(&self, name: &str) -> Option<&str> {
        self.named(name).find(|h| h.utf8).map(|h| h.value.as_ref())
    }

    /// Whether every value of `name` equals, in order, the values `others` gives.
    pub(crate) fn same_values<'o>(
        &self,
        name: &str,
        others: impl Iterator<Item = (&'o str, bool)>,
    ) -> bool {
        let mut mine = self.named(name);
        for (value, utf8) in others {
            match mine.next() {
                Some(h) if h.value == value && h.utf8 == utf8 => {}
                _ => return false,
            }
        }
        mine.next().is_none()
    }

    fn named<'s, 'n>(
        &'s self,
        name: &'n str,
    ) -> impl Iterator<Item = &'s Header<'a>> + use<'s, 'n, 'a> {
        self.headers.iter().filter(move |h| h.name == name)
    }
}

/// What token extraction reads: header values with whether each was UTF-8, and the path.
impl<'s, 'a> CredentialsView<'s> for &'s Request<'a> {
    fn header(&self, name: &str) -> Vec<(&'s str, bool)> {
        self.named(name)
            .map(|h| (h.value.as_ref(), h.utf8))
            .collect()
    }

    fn path(&self) -> &'s str {
        self.path
    }
}

/// `name` in lower case, borrowed when it already is.
fn lower(name: &str) -> Cow<'_, str> {
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    }
}
