//! What the policy reads from a request beyond its method and path: the method overrides with
//! which upstream frameworks run another method's handler, and whether it is a CORS preflight
//! that `cors_preflight = "allow"` lets through.
//!
//! Rails (`Rack::MethodOverride`), Express (`method-override`), ASP.NET Core
//! (`UseHttpMethodOverride`), Spring (`HiddenHttpMethodFilter`) and Laravel run the handler of
//! the method a request names in a header, a `_method` query parameter or a `_method` form
//! field, in place of its own. Which of these they read, and for which of the request's own
//! methods, differs; so [`Policy::resolve_request`] decides a request carrying any of them under
//! that method too, whatever the request's own method, and refuses it where the two differ.

use std::borrow::Cow;

use super::{PathError, Policy, Requirement, Resolved};
use crate::auth::token::is_http_token;

/// The request headers, lower-case, whose value upstream frameworks run as the request's method.
pub const METHOD_OVERRIDE_HEADERS: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// The query parameter (and form field) whose value upstream frameworks run as the request's
/// method.
pub const METHOD_OVERRIDE_PARAMETER: &str = "_method";

/// The media types of a form body, which Rails, Spring, Laravel and Express read a `_method`
/// field from on a `POST`.
pub const FORM_MEDIA_TYPES: [&str; 2] =
    ["application/x-www-form-urlencoded", "multipart/form-data"];

/// A method the policy tries for "any other method": named by no rule, so it stands for every
/// method no rule names.
const UNLISTED_METHOD: &str = "UNLISTED-METHOD";

/// The one method a request asks an upstream to run in place of its own, upper-cased, if any.
/// `values(name)` gives every value of the header `name` (lower-case) the request has;
/// `raw_path` is the `:path` as sent, query included.
///
/// Every override header value and every `_method` query parameter counts, so that no reader
/// can pick a different one than scopegate decided by: two of them (even equal ones), a comma
/// list (Envoy joins repeated headers with `,`), or a value that is not an RFC 9110 token is
/// refused ([`PathError::BadMethodOverride`]). Query parameters are read as frameworks read
/// them: split at `&` and also at `;` and `#`, which some parsers split at too; names and values
/// percent-decoded, `+` read as a space, so `%5Fmethod=%44ELETE` is `_method=DELETE`.
pub fn method_override<'v>(
    raw_path: &str,
    values: impl Fn(&str) -> Vec<&'v str>,
) -> Result<Option<String>, PathError> {
    let mut found: Vec<Cow<'_, str>> = METHOD_OVERRIDE_HEADERS
        .iter()
        .flat_map(|name| values(name))
        .map(Cow::Borrowed)
        .collect();
    if let Some((_, query)) = raw_path.split_once('?') {
        for piece in query.split(['&', ';', '#']) {
            found.extend(
                form_urlencoded::parse(piece.as_bytes())
                    .filter(|(name, _)| name.trim() == METHOD_OVERRIDE_PARAMETER)
                    .map(|(_, value)| value),
            );
        }
    }
    match found.as_slice() {
        [] => Ok(None),
        [one] => {
            let method = one.trim();
            if is_http_token(method) {
                Ok(Some(method.to_ascii_uppercase()))
            } else {
                Err(PathError::BadMethodOverride)
            }
        }
        _ => Err(PathError::BadMethodOverride),
    }
}

/// Whether any `content-type` value is a form's media type (parameters and letter case aside).
pub fn is_form(content_types: &[&str]) -> bool {
    content_types.iter().any(|value| {
        let media_type = value.split(';').next().unwrap_or_default().trim();
        FORM_MEDIA_TYPES
            .iter()
            .any(|form| media_type.eq_ignore_ascii_case(form))
    })
}

/// Whether a request is a CORS preflight as browsers send it: `OPTIONS` with a non-empty
/// `Origin` and `Access-Control-Request-Method`, and no `Authorization` (browsers never send
/// credentials on a preflight, so one with them is some other client's `OPTIONS`, decided as
/// usual). `values(name)` gives every value of the header `name` (lower-case) the request has.
pub fn is_cors_preflight<'v>(method: &str, values: impl Fn(&str) -> Vec<&'v str>) -> bool {
    let present = |name: &str| values(name).iter().any(|v| !v.trim().is_empty());
    method == "OPTIONS"
        && present("origin")
        && present("access-control-request-method")
        && values("authorization").is_empty()
}

impl Policy {
    /// Resolves a request as the service decides it and `explain` explains it:
    /// [`Policy::resolve`], then its method overrides, then whether it is a CORS preflight to let
    /// through (`preflights`: `cors_preflight = "allow"`). Returns the resolution and whether the
    /// request is such a preflight. `headers(name)` gives every value of the header `name`
    /// (lower-case) the request has.
    ///
    /// A request naming another method ([`method_override`]) is also resolved under that method,
    /// and refused ([`PathError::MethodOverride`]) when that reaches a different requirement
    /// (other issuers or audiences included) or is refused. A `POST` whose `content-type` is a form's ([`is_form`]) may carry a `_method`
    /// field in its body, which scopegate never sees: it is refused
    /// ([`PathError::FormMethodOverride`]) on a path whose rules differ by method.
    ///
    /// A preflight ([`is_cors_preflight`]) is let through only when the rule deciding `OPTIONS`
    /// on its path does not name `OPTIONS` (an explicit rule wins), and the request its
    /// `Access-Control-Request-Method` announces, on that path, reaches a requirement other than
    /// [`Requirement::Deny`] (neither a `deny` default nor a denying rule): a forged preflight
    /// gets no further than the request it announces could.
    pub fn resolve_request<'v>(
        &self,
        method: &str,
        raw_path: &str,
        preflights: bool,
        headers: impl Fn(&str) -> Vec<&'v str>,
    ) -> (Resolved<'_>, bool) {
        let mut resolved = self.resolve(method, raw_path);
        if let (Ok(path), Ok(route)) = (&resolved.path, &resolved.route) {
            let own = (route.requirement, route.accepts());
            // Ok when `method` reaches the same requirement as the request's own, taking tokens
            // from the same issuers for the same audiences.
            let agrees = |method: &str| {
                self.route(method, path)
                    .is_ok_and(|route| (route.requirement, route.accepts()) == own)
                    .then_some(())
                    .ok_or(PathError::MethodOverride)
            };
            let checked = method_override(raw_path, &headers).and_then(|named| match named {
                Some(named) => agrees(&named),
                None => Ok(()),
            });
            let checked = checked.and_then(|()| {
                if method.eq_ignore_ascii_case("POST")
                    && is_form(&headers("content-type"))
                    && self.methods_to_try().any(|m| agrees(m).is_err())
                {
                    Err(PathError::FormMethodOverride)
                } else {
                    Ok(())
                }
            });
            if let Err(e) = checked {
                resolved.route = Err(e);
            }
        }
        let preflight = preflights
            && is_cors_preflight(method, &headers)
            && self
                .announced_request_may_pass(&resolved, &headers("access-control-request-method"));
        (resolved, preflight)
    }

    /// Every method that can reach a requirement of its own: each one a rule names, `GET`,
    /// `HEAD`, `POST`, and one no rule names (for all the others).
    fn methods_to_try(&self) -> impl Iterator<Item = &str> {
        let named = self
            .enforced()
            .flat_map(|rule| rule.methods().into_iter().flatten().map(String::as_str));
        ["GET", "HEAD", "POST", UNLISTED_METHOD]
            .into_iter()
            .chain(named)
    }

    /// Whether a preflight resolved as `resolved`, announcing `announced` (its
    /// `Access-Control-Request-Method` values), may pass without a token: see
    /// [`Policy::resolve_request`]. Exactly one announced method, an RFC 9110 token.
    fn announced_request_may_pass(&self, resolved: &Resolved<'_>, announced: &[&str]) -> bool {
        let (Ok(path), Ok(route)) = (&resolved.path, &resolved.route) else {
            return false;
        };
        if route.rule.is_some_and(|rule| rule.names_method("OPTIONS")) {
            return false;
        }
        let [announced] = announced else {
            return false;
        };
        let announced = announced.trim();
        is_http_token(announced)
            && self
                .route(announced, path)
                .is_ok_and(|route| *route.requirement != Requirement::Deny)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{PathMatch, Rule, Template};

    fn rule(index: usize, path: PathMatch, methods: &[&str], requirement: Requirement) -> Rule {
        let methods =
            (!methods.is_empty()).then(|| methods.iter().map(|m| m.to_string()).collect());
        Rule::new(index, None, path, methods, requirement).expect("a valid rule")
    }

    fn template(t: &str) -> PathMatch {
        PathMatch::Template(Template::parse(t).expect("a valid template"))
    }

    fn scope(s: &str) -> Requirement {
        Requirement::AnyScope(vec![s.into()])
    }

    /// `(name, value)` request headers.
    type Headers<'a> = &'a [(&'a str, &'a str)];

    /// The headers `pairs` as the policy reads them: every value of a name, any case.
    fn lookup<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Vec<&'a str> {
        move |name| {
            pairs
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| *v)
                .collect()
        }
    }

    #[test]
    fn method_overrides_are_read_from_headers_and_the_query() {
        use PathError::BadMethodOverride as Bad;
        type Case<'a> = (&'a str, Headers<'a>, Result<Option<&'a str>, PathError>);
        let cases: &[Case] = &[
            ("/items/1", &[], Ok(None)),
            ("/items/1?method=DELETE&x_method=PUT", &[], Ok(None)),
            (
                "/items/1",
                &[("X-HTTP-Method-Override", "DELETE")],
                Ok(Some("DELETE")),
            ),
            (
                "/items/1",
                &[("x-http-method", " delete ")],
                Ok(Some("DELETE")),
            ),
            (
                "/items/1",
                &[("x-method-override", "Patch")],
                Ok(Some("PATCH")),
            ),
            ("/items/1?_method=delete", &[], Ok(Some("DELETE"))),
            ("/items/1?a=1&_method=PUT#top", &[], Ok(Some("PUT"))),
            // Percent-encoded name and value; `;` and `#` as separators.
            ("/items/1?%5Fmethod=%44ELETE", &[], Ok(Some("DELETE"))),
            ("/items/1?a=1;_method=DELETE", &[], Ok(Some("DELETE"))),
            ("/items/1?a=1#_method=DELETE", &[], Ok(Some("DELETE"))),
            ("/items/1?+_method=DELETE", &[], Ok(Some("DELETE"))),
            // Several values, even equal ones; a comma list; not a token; empty.
            ("/items/1?_method=PUT&_method=PUT", &[], Err(Bad)),
            ("/items/1?_method=PUT&%5Fmethod=DELETE", &[], Err(Bad)),
            (
                "/items/1?_method=PUT",
                &[("x-http-method", "PUT")],
                Err(Bad),
            ),
            (
                "/items/1",
                &[("x-http-method", "PUT"), ("x-method-override", "PUT")],
                Err(Bad),
            ),
            (
                "/items/1",
                &[("x-http-method-override", "PUT, DELETE")],
                Err(Bad),
            ),
            ("/items/1?_method=PUT,DELETE", &[], Err(Bad)),
            ("/items/1?_method=DEL+ETE", &[], Err(Bad)),
            ("/items/1?_method=DEL%00ETE", &[], Err(Bad)),
            ("/items/1?_method=%FF", &[], Err(Bad)),
            ("/items/1?_method", &[], Err(Bad)),
            ("/items/1", &[("x-http-method-override", "")], Err(Bad)),
        ];
        for (path, headers, want) in cases {
            let got = method_override(path, lookup(headers));
            assert_eq!(
                got.as_ref().map(|m| m.as_deref()),
                want.as_ref().map(|m| *m),
                "{path} {headers:?}"
            );
        }
    }

    #[test]
    fn form_media_types_are_recognised_with_parameters_and_any_case() {
        for (values, want) in [
            (&["application/x-www-form-urlencoded"][..], true),
            (
                &["Application/X-WWW-Form-Urlencoded; charset=utf-8"][..],
                true,
            ),
            (&[" multipart/form-data ; boundary=x"][..], true),
            (&["application/json", "multipart/form-data"][..], true),
            (&["application/json"][..], false),
            (&["multipart/mixed"][..], false),
            (&["text/plain"][..], false),
            (&[][..], false),
        ] {
            assert_eq!(is_form(values), want, "{values:?}");
        }
    }

    /// Items by method, an admin subtree beside its bare path, and a public GET path whose
    /// DELETE is protected, under `default = "allow"`.
    fn override_policy() -> Policy {
        Policy::new(
            vec![
                rule(0, template("/items/{id}"), &["GET"], scope("read:items")),
                rule(
                    1,
                    template("/items/{id}"),
                    &["POST", "PUT"],
                    scope("write:items"),
                ),
                rule(
                    2,
                    template("/items/{id}"),
                    &["DELETE"],
                    scope("delete:items"),
                ),
                rule(3, PathMatch::Exact("/admin".into()), &[], scope("admin")),
                rule(4, PathMatch::Prefix("/admin/".into()), &[], scope("admin")),
                rule(
                    5,
                    PathMatch::Exact("/notes".into()),
                    &["DELETE"],
                    scope("delete:notes"),
                ),
            ],
            Requirement::Public,
        )
        .expect("a valid policy")
    }

    #[test]
    fn requests_whose_method_override_reaches_another_requirement_are_refused() {
        use PathError::{BadMethodOverride, CaseVariant, FormMethodOverride, MethodOverride};
        let p = override_policy();
        let form = ("content-type", "application/x-www-form-urlencoded");
        let cases: &[(&str, &str, Headers, Result<&str, PathError>)] = &[
            ("POST", "/items/1", &[], Ok("rules[1]")),
            // The case: write:items running the DELETE handler.
            (
                "POST",
                "/items/1",
                &[("x-http-method-override", "DELETE")],
                Err(MethodOverride),
            ),
            (
                "POST",
                "/items/1",
                &[("x-http-method", "delete")],
                Err(MethodOverride),
            ),
            (
                "POST",
                "/items/1",
                &[("x-method-override", "DELETE")],
                Err(MethodOverride),
            ),
            ("POST", "/items/1?_method=DELETE", &[], Err(MethodOverride)),
            (
                "POST",
                "/items/1?%5Fmethod=delete",
                &[],
                Err(MethodOverride),
            ),
            // Whatever the request's own method.
            ("GET", "/items/1?_method=DELETE", &[], Err(MethodOverride)),
            ("PUT", "/items/1?_method=GET", &[], Err(MethodOverride)),
            // Under default = "allow": a public GET path whose DELETE is protected.
            (
                "GET",
                "/notes",
                &[("x-http-method-override", "DELETE")],
                Err(MethodOverride),
            ),
            ("GET", "/notes?_method=DELETE", &[], Err(MethodOverride)),
            ("DELETE", "/notes?_method=GET", &[], Err(MethodOverride)),
            // An override reaching the same requirement changes nothing.
            (
                "POST",
                "/items/1",
                &[("x-http-method-override", "PUT")],
                Ok("rules[1]"),
            ),
            ("POST", "/admin/users?_method=DELETE", &[], Ok("rules[4]")),
            ("GET", "/elsewhere?_method=DELETE", &[], Ok("default")),
            ("GET", "/notes?_method=GET", &[], Ok("default")),
            // A HEAD override is the GET it stands for.
            ("GET", "/items/1?_method=HEAD", &[], Ok("rules[0]")),
            // Several values or a non-token: refused even where nothing differs.
            (
                "GET",
                "/elsewhere?_method=GET&_method=GET",
                &[],
                Err(BadMethodOverride),
            ),
            (
                "GET",
                "/elsewhere",
                &[("x-http-method", "GET, PUT")],
                Err(BadMethodOverride),
            ),
            // A path refused on its own keeps its own reason.
            ("GET", "/ITEMS/1?_method=DELETE", &[], Err(CaseVariant)),
            // A form POST where the rules differ by method: the body may hold `_method`.
            ("POST", "/items/1", &[form], Err(FormMethodOverride)),
            (
                "POST",
                "/items/1",
                &[("content-type", "multipart/form-data; boundary=x")],
                Err(FormMethodOverride),
            ),
            ("POST", "/notes", &[form], Err(FormMethodOverride)),
            (
                "POST",
                "/items/1",
                &[("content-type", "application/json")],
                Ok("rules[1]"),
            ),
            // ... not where they do not, nor for another method.
            ("POST", "/admin/users", &[form], Ok("rules[4]")),
            ("POST", "/elsewhere", &[form], Ok("default")),
            ("PUT", "/items/1", &[form], Ok("rules[1]")),
        ];
        for (method, path, headers, want) in cases {
            let (resolved, preflight) = p.resolve_request(method, path, true, lookup(headers));
            let got = resolved.route.map(|route| &**route.name);
            assert_eq!(got, *want, "{method} {path} {headers:?}");
            assert!(!preflight);
        }
    }

    /// With `cors_preflight = "allow"` (`preflights` true), a preflight passes without a token
    /// only where the request it announces could pass; without it, never.
    #[test]
    fn preflights_pass_only_where_the_request_they_announce_could() {
        let p = Policy::new(
            vec![
                rule(0, PathMatch::Prefix("/admin/".into()), &[], scope("admin")),
                rule(
                    1,
                    PathMatch::Exact("/reports".into()),
                    &["OPTIONS"],
                    scope("admin"),
                ),
                rule(2, template("/items/{id}"), &["GET"], scope("read:items")),
                rule(
                    3,
                    PathMatch::Exact("/closed".into()),
                    &[],
                    Requirement::Deny,
                ),
                rule(
                    4,
                    PathMatch::Exact("/open".into()),
                    &[],
                    Requirement::Public,
                ),
            ],
            Requirement::Deny,
        )
        .expect("a valid policy");
        let origin = ("origin", "https://invented.example");
        // (path, announced methods, preflights allowed, deciding rule, let through)
        type Case<'a> = (
            &'a str,
            &'a [&'a str],
            bool,
            Result<&'a str, PathError>,
            bool,
        );
        let cases: &[Case] = &[
            // A rule without methods takes every announced method: open by design.
            ("/admin/users", &["GET"], true, Ok("rules[0]"), true),
            ("/admin/users", &["DELETE"], true, Ok("rules[0]"), true),
            // An explicit OPTIONS rule wins.
            ("/reports", &["GET"], true, Ok("rules[1]"), false),
            // The announced request decides: GET reaches a rule, DELETE the deny default.
            ("/items/1", &["GET"], true, Ok("default"), true),
            ("/items/1", &["HEAD"], true, Ok("default"), true),
            ("/items/1", &["DELETE"], true, Ok("default"), false),
            ("/elsewhere", &["GET"], true, Ok("default"), false),
            // A rule-level deny.
            ("/closed", &["GET"], true, Ok("rules[3]"), false),
            ("/open", &["GET"], true, Ok("rules[4]"), true),
            // Not exactly one announced method token, or one refused under its reading.
            ("/items/1", &["GET, DELETE"], true, Ok("default"), false),
            ("/items/1", &["GET", "GET"], true, Ok("default"), false),
            ("/items/1", &["get"], true, Ok("default"), false),
            ("/items/1", &[" "], true, Ok("default"), false),
            // A refused path, and preflights not allowed at all.
            (
                "/ADMIN/users",
                &["GET"],
                true,
                Err(PathError::CaseVariant),
                false,
            ),
            ("/items/1", &["GET"], false, Ok("default"), false),
        ];
        for (path, announced, allowed, rule, want) in cases {
            let mut headers = vec![origin];
            headers.extend(
                announced
                    .iter()
                    .map(|m| ("access-control-request-method", *m)),
            );
            let (resolved, preflight) =
                p.resolve_request("OPTIONS", path, *allowed, lookup(&headers));
            assert_eq!(
                resolved.route.map(|r| &**r.name),
                *rule,
                "{path} {announced:?}"
            );
            assert_eq!(preflight, *want, "{path} {announced:?} {allowed}");
        }
    }

    /// An override reaching a rule with the same scopes but other issuers or audiences runs a
    /// handler the token was not checked for: refused like one reaching other scopes.
    #[test]
    fn method_overrides_reaching_other_issuers_or_audiences_are_refused() {
        let staff = vec!["https://staff.example.com/".to_string()];
        let p = Policy::new(
            vec![
                rule(0, template("/items/{id}"), &["DELETE"], scope("items"))
                    .accepting_issuers(staff.clone())
                    .expect("valid"),
                rule(1, template("/items/{id}"), &["PUT"], scope("items"))
                    .accepting_audiences(vec!["orders".into()])
                    .expect("valid"),
                rule(2, template("/items/{id}"), &["PATCH"], scope("items"))
                    .accepting_issuers(staff)
                    .expect("valid"),
                rule(3, template("/items/{id}"), &[], scope("items")),
            ],
            Requirement::Deny,
        )
        .expect("a valid policy");
        for (header, want) in [
            ("DELETE", Err(PathError::MethodOverride)),
            ("PUT", Err(PathError::MethodOverride)),
            ("GET", Ok("rules[3]")),
        ] {
            let headers = [("x-http-method-override", header)];
            let (resolved, _) = p.resolve_request("POST", "/items/1", false, lookup(&headers));
            assert_eq!(resolved.route.map(|r| &**r.name), want, "POST as {header}");
        }
        // The same issuers: nothing changes.
        let headers = [("x-http-method-override", "DELETE")];
        let (resolved, _) = p.resolve_request("PATCH", "/items/1", false, lookup(&headers));
        assert_eq!(resolved.route.map(|r| &**r.name), Ok("rules[2]"));
    }
}
