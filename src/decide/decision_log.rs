//! The decision log: one line per answered request (target `scopegate::decision`) and per
//! shadow rule's would-be answer (target `scopegate::shadow`), at info.

use crate::auth::verify::VerifiedClaims;
use crate::policy::{Denial, Rule};
use crate::telemetry::metrics::{self, Reason, Transport};

use super::{Labels, Request};

/// The request header whose value the decision log records as `request_id`: the id Envoy
/// generates (or passes on) and writes to its access log, so the two logs join.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Longest `request_id` written to a log line, in bytes (a UUID is 36).
pub const MAX_LOGGED_REQUEST_ID: usize = 128;
/// Longest path prefix written to a log line, in bytes.
pub const MAX_LOGGED_PATH: usize = 256;
/// Longest method prefix written to a log line, in bytes.
pub const MAX_LOGGED_METHOD: usize = 32;

/// The identity fields of a verified token that the decision log records.
#[derive(Debug, Clone)]
pub(super) struct Identity {
    sub: Option<String>,
    kid: Option<String>,
    azp: Option<String>,
    client_id: Option<String>,
}

impl Identity {
    pub(super) fn of(claims: &VerifiedClaims) -> Identity {
        Identity {
            sub: claims.subject().map(str::to_owned),
            kid: claims.kid().map(str::to_owned),
            azp: claims.azp().map(str::to_owned),
            client_id: claims.client_id().map(str::to_owned),
        }
    }
}

/// Everything one decision log line says.
pub(super) struct DecisionRecord<'a> {
    pub(super) request: &'a Request<'a>,
    pub(super) transport: Transport,
    pub(super) labels: &'a Labels<'a>,
    pub(super) denial: Option<&'a Denial>,
    /// The verified token's identity, when it passed verification.
    pub(super) who: Option<Identity>,
    pub(super) took: std::time::Duration,
}

/// Writes one decision log line (target `scopegate::decision`, at info): with `--log-format
/// json`, one JSON object whose fields join Envoy's access log by `request_id`. The query
/// string and the token are never written; client-controlled text is bounded, and quoted and
/// escaped in the text format. Identity fields (`sub`, `kid`, `azp`, `client_id`) come from
/// verified tokens only; `iss` is the issuer the token was routed to.
pub(super) fn decision(record: &DecisionRecord<'_>) {
    let request = record.request;
    let request_id = request
        .first_value(REQUEST_ID_HEADER)
        .map(|id| truncated(id, MAX_LOGGED_REQUEST_ID));
    let path = truncated(bare_path(request.path()), MAX_LOGGED_PATH);
    let method = truncated(request.method(), MAX_LOGGED_METHOD);
    let labels = record.labels;
    let who = record.who.as_ref();
    tracing::info!(
        target: "scopegate::decision",
        request_id = request_id.as_deref(),
        transport = ?record.transport,
        decision = ?labels.decision,
        status = labels.status,
        reason = ?labels.reason,
        detail = record.denial.map(tracing::field::display),
        rule = %labels.rule,
        // Recorded as strings, never `%` (Display): the text format then writes them quoted,
        // with `"`, `\` and control characters escaped, so a CR/LF a direct caller puts in
        // them cannot start a forged log line; JSON escapes strings in any case.
        method = &*method,
        path = &*path,
        iss = labels.issuer,
        sub = who.and_then(|w| w.sub.as_deref()),
        kid = who.and_then(|w| w.kid.as_deref()),
        azp = who.and_then(|w| w.azp.as_deref()),
        client_id = who.and_then(|w| w.client_id.as_deref()),
        duration_us = u64::try_from(record.took.as_micros()).unwrap_or(u64::MAX),
        "decision"
    );
}

/// Writes what the shadow rule `shadow` would have decided (target `scopegate::shadow`).
pub(super) fn shadow(
    request: &Request<'_>,
    transport: Transport,
    shadow: &Rule,
    decision: metrics::Decision,
    status: u16,
    reason: Reason,
) {
    let request_id = request
        .first_value(REQUEST_ID_HEADER)
        .map(|id| truncated(id, MAX_LOGGED_REQUEST_ID));
    tracing::info!(
        target: "scopegate::shadow",
        request_id = request_id.as_deref(),
        transport = ?transport,
        rule = %shadow.name(),
        decision = ?decision,
        status = status,
        reason = ?reason,
        // As `&str`, not `%`: text logs then quote and escape them (see `decision`).
        method = &*truncated(request.method(), MAX_LOGGED_METHOD),
        path = &*truncated(bare_path(request.path()), MAX_LOGGED_PATH),
        "shadow rule decision (not enforced)"
    );
}

/// The path without its query or fragment, which the log never holds.
fn bare_path(path: &str) -> &str {
    path.split(['?', '#']).next().unwrap_or_default()
}

/// `text`, or its first `max` bytes (cut at a character boundary) followed by `…` and the full
/// length, so a log line never grows with what a client sends.
fn truncated(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…({} bytes)", &text[..end], text.len()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logged_fields_are_bounded() {
        assert_eq!(truncated("/short", 256), "/short");
        let long = format!("/{}", "a".repeat(3_000_000));
        let cut = truncated(&long, MAX_LOGGED_PATH);
        assert!(cut.len() < MAX_LOGGED_PATH + 32, "{}", cut.len());
        assert!(cut.ends_with("…(3000001 bytes)"), "{cut}");
        // Never cut inside a character.
        assert_eq!(truncated("ééé", 3), "é…(6 bytes)");
        // SECURITY.md's Limits table: a method is cut at 32 bytes, a request_id at 128.
        assert_eq!((MAX_LOGGED_METHOD, MAX_LOGGED_REQUEST_ID), (32, 128));
        let long_method = "M".repeat(33);
        let method = truncated(&long_method, MAX_LOGGED_METHOD);
        assert_eq!(method, format!("{}…(33 bytes)", "M".repeat(32)));
        let long_id = "r".repeat(129);
        let id = truncated(&long_id, MAX_LOGGED_REQUEST_ID);
        assert_eq!(id, format!("{}…(129 bytes)", "r".repeat(128)));
    }
}
