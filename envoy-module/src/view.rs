//! The decision core's request view of the request headers Envoy hands the filter: the
//! module's counterpart of the gRPC service's `request_view` over a `CheckRequest`. Pure.

use scopegate::decide::Request;

/// Why a request cannot be read into a view: the message of the 400 `invalid_request` it gets.
pub type Unreadable = &'static str;

/// The view of `headers` (Envoy's request header map, pseudo-headers included, every value in
/// order): method from `:method`, path (with query) from `:path`, host from `:authority`,
/// scheme from `:scheme`, and every header, pseudo-headers too (as Envoy's ext_authz passes
/// them to the service), by lower-case name with every value kept.
///
/// A `:method` or `:path` that is missing, repeated or not UTF-8, or a header name that is not
/// UTF-8, makes the request unreadable: it is refused, never decided on a guess.
pub fn request_view<'a>(headers: &[(&'a [u8], &'a [u8])]) -> Result<Request<'a>, Unreadable> {
    let method = single(headers, b":method")
        .ok_or("the request's :method is missing, repeated or not text")?;
    let path =
        single(headers, b":path").ok_or("the request's :path is missing, repeated or not text")?;
    let host = first(headers, b":authority")
        .or_else(|| first(headers, b"host"))
        .unwrap_or_default();
    let scheme = first(headers, b":scheme").unwrap_or_default();
    let mut view = Request::new(method, path)
        .with_scheme(scheme)
        .with_host(host);
    for (name, value) in headers {
        let name = std::str::from_utf8(name).map_err(|_| "a request header's name is not text")?;
        view.push_header_bytes(name, value);
    }
    Ok(view)
}

/// The one value of `name`, when there is exactly one and it is UTF-8.
fn single<'a>(headers: &[(&'a [u8], &'a [u8])], name: &[u8]) -> Option<&'a str> {
    let mut values = headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name));
    let (_, value) = values.next()?;
    if values.next().is_some() {
        return None;
    }
    std::str::from_utf8(value).ok()
}

/// The first value of `name`, when it is UTF-8.
fn first<'a>(headers: &[(&'a [u8], &'a [u8])], name: &[u8]) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .and_then(|(_, value)| std::str::from_utf8(value).ok())
}
