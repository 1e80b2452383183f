//! `[[token_sources]]`: where the token is read from, each entry exactly one place, compiled into
//! the [`TokenSources`] the request path reads.

use serde::Deserialize;

use super::{ConfigError, StringOrList, invalid};
use crate::auth::sources::{TokenSource, TokenSources};

/// One `[[token_sources]]` entry as written: exactly one of `header`, `cookie` or `query`, and
/// `scheme` only beside `header`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTokenSource {
    /// A header name: the token is its whole value, or follows one of `scheme`.
    pub header: Option<String>,
    /// The auth-scheme(s) a `header` value starts with (case-insensitive); absent: none.
    pub scheme: Option<StringOrList>,
    /// A cookie name (case-sensitive).
    pub cookie: Option<String>,
    /// A query parameter name (needs `allow_query_tokens = true`).
    pub query: Option<String>,
}

/// `[[token_sources]]` (absent: `Authorization: Bearer`), each entry exactly one place;
/// `query` ones only with `allow_query_tokens`, and never beside `http_listen`, whose proxies
/// cannot be told to remove the parameter before the upstream.
pub(super) fn compile_token_sources(
    raw: Option<Vec<RawTokenSource>>,
    allow_query_tokens: bool,
    http_listen: bool,
) -> Result<TokenSources, ConfigError> {
    let Some(raw) = raw else {
        return Ok(TokenSources::default());
    };
    let mut sources = Vec::with_capacity(raw.len());
    for (i, entry) in raw.into_iter().enumerate() {
        let key = |name: &str| format!("token_sources[{i}].{name}");
        let scheme = entry.scheme.map(|scheme| match scheme {
            StringOrList::One(one) => vec![one],
            StringOrList::Many(many) => many,
        });
        let given: Vec<&str> = [
            ("header", entry.header.is_some()),
            ("cookie", entry.cookie.is_some()),
            ("query", entry.query.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect();
        let source = match (entry.header, entry.cookie, entry.query) {
            (Some(header), None, None) => {
                TokenSource::header(&header, scheme.clone()).map_err(|e| match e {
                    crate::auth::sources::SourceError::Scheme => {
                        invalid(key("scheme"), scheme.unwrap_or_default(), e.to_string())
                    }
                    e => invalid(key("header"), &header, e.to_string()),
                })?
            }
            (None, cookie, query) if scheme.is_some() => {
                return Err(invalid(
                    key("scheme"),
                    scheme.unwrap_or_default(),
                    format!(
                        "only a header source has an auth-scheme (this one is {})",
                        if cookie.is_some() {
                            "a cookie"
                        } else if query.is_some() {
                            "a query parameter"
                        } else {
                            "empty"
                        }
                    ),
                ));
            }
            (None, Some(cookie), None) => TokenSource::cookie(&cookie)
                .map_err(|e| invalid(key("cookie"), &cookie, e.to_string()))?,
            (None, None, Some(query)) => {
                if !allow_query_tokens {
                    return Err(invalid(
                        key("query"),
                        &query,
                        "tokens in URLs leak into access logs, browser history and Referer; \
                         set allow_query_tokens = true to accept them anyway",
                    ));
                }
                if http_listen {
                    return Err(invalid(
                        key("query"),
                        &query,
                        "the HTTP authorization listener (http_listen) cannot make nginx, Caddy, \
                         Traefik or Envoy's http_service remove the parameter, so the token would \
                         reach the upstream; use the gRPC service (Envoy removes it) or another \
                         source",
                    ));
                }
                TokenSource::query(&query)
                    .map_err(|e| invalid(key("query"), &query, e.to_string()))?
            }
            _ => {
                return Err(invalid(
                    format!("token_sources[{i}]"),
                    given,
                    "exactly one of header, cookie or query",
                ));
            }
        };
        sources.push(source);
    }
    TokenSources::new(sources)
        .map_err(|(i, e)| invalid(format!("token_sources[{i}]"), i, e.to_string()))
}
