//! [`ConfigWarning`]s: what a valid configuration does that its author probably did not mean,
//! or that leaves a gap open by design, worked out from the compiled values.

use std::fmt;

use super::{Config, CorsPreflight, Issuer};
use crate::policy::Requirement;

/// Something a valid configuration does that is probably not what its author meant, or that
/// leaves a gap open by design: reported by `check-config`, and logged at start-up and at every
/// reload, but never refused, so that a configuration that starts keeps starting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// The key (or keys, comma-separated) the warning is about, as written in the file.
    pub key: String,
    /// What is wrong and what to do about it, naming the values involved.
    pub message: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl Config {
    /// The configuration with [`Config::warnings`] worked out: each check below looks at the
    /// compiled values only, so it cannot disagree with what is enforced.
    pub(super) fn with_warnings(mut self) -> Config {
        let mut warnings = Vec::new();
        warnings.extend(insecure_http_warnings(&self.issuers));
        warnings.extend(self.unknown_kid_wait_warning());
        warnings.extend(self.open_to_forged_preflights());
        warnings.extend(self.http_listen_warning());
        warnings.extend(self.metadata_key_warnings());
        warnings.extend(self.introspection_audience_warnings());
        // Refusing these at start-up would stop configurations that started before the format
        // suffix and compatibility readings existed; the requests they concern are refused.
        for conflict in self.policy.conflicts_refused_at_request_time() {
            warnings.push(ConfigWarning {
                message: format!(
                    "requests for {:?} are refused (400): {conflict}",
                    conflict.pattern
                ),
                key: conflict.key,
            });
        }
        self.warnings = warnings;
        self
    }

    /// `introspection_require_audience = false` accepts active answers without `aud`: a token
    /// the same provider issued for another API passes. Allowed (some providers leave `aud` out
    /// of their answers), but weaker, so said.
    fn introspection_audience_warnings(&self) -> Vec<ConfigWarning> {
        self.issuers
            .iter()
            .filter(|issuer| {
                issuer
                    .introspection
                    .as_ref()
                    .is_some_and(|i| !i.require_audience)
            })
            .map(|issuer| ConfigWarning {
                key: format!("{}introspection_require_audience", issuer.prefix),
                message: format!(
                    "introspection answers of {} without aud are accepted: a token it issued \
                     for another API passes too; keep it true unless the provider never sends aud",
                    issuer.expectations.issuer
                ),
            })
            .collect()
    }

    /// A Check that waits for a refetch asked for by an unknown `kid` is still under its
    /// deadline: a wait as long as `check_timeout_ms` (or longer) turns the 401 or the allow the
    /// new key would decide into a 503 whenever the refetch takes the whole wait. Not refused,
    /// because tests of the deadline rely on such configurations.
    fn unknown_kid_wait_warning(&self) -> Option<ConfigWarning> {
        let deadline = self.server.check_timeout;
        // Every issuer shares the top-level `unknown_kid_wait_ms`; report the longest once.
        let wait = self.issuers.iter().map(|i| i.jwks.unknown_kid_wait).max()?;
        (wait >= deadline).then(|| ConfigWarning {
            key: "unknown_kid_wait_ms, server.check_timeout_ms".into(),
            message: format!(
                "unknown_kid_wait_ms ({}) is not below server.check_timeout_ms ({}): a Check \
                 waiting for a new key can run out of time and be answered 503 instead of \
                 401 or 200; keep the wait below the Check deadline",
                wait.as_millis(),
                deadline.as_millis()
            ),
        })
    }

    /// The HTTP authorization listener takes the original request from whoever calls it (the
    /// target, `X-Forwarded-*`, `X-Original-*`): on an address other than loopback, anyone who
    /// reaches it can ask about any request, and learn the identity headers of any token they
    /// hold. Not refused: a proxy in another container needs such an address, on a network
    /// only it reaches.
    fn http_listen_warning(&self) -> Option<ConfigWarning> {
        let addr = self.http_listen?;
        (!addr.ip().is_loopback()).then(|| ConfigWarning {
            key: "http_listen".into(),
            message: format!(
                "{addr} is not a loopback address: whoever reaches it can claim any original \
                 request; bind it where only the proxy reaches it (loopback, or a network only \
                 the proxy is on)"
            ),
        })
    }

    /// Under `cors_preflight = "allow"`, a rule without `methods` (and a default) that needs a
    /// token but does not deny takes every method a preflight can announce, so an `OPTIONS`
    /// request anyone can forge (an invented `Origin`, any `Access-Control-Request-Method`)
    /// reaches the upstream there without one: harmless only where the upstream never serves
    /// `OPTIONS` with another method's handler. Public and denying ones leave no such gap, nor do
    /// shadow rules, which decide nothing.
    fn open_to_forged_preflights(&self) -> Vec<ConfigWarning> {
        if self.cors_preflight != CorsPreflight::Allow {
            return Vec::new();
        }
        let gap = |requirement: &Requirement| {
            !matches!(requirement, Requirement::Public | Requirement::Deny)
        };
        let consequence = "with cors_preflight = \"allow\", an OPTIONS request with any Origin and \
            Access-Control-Request-Method reaches the upstream there without a token, and an \
            upstream handler that answers every method (a Go ServeMux pattern without a method, \
            a Django function view) runs its GET logic for it";
        let mut warnings: Vec<ConfigWarning> = self
            .policy
            .rules()
            .iter()
            .filter(|rule| !rule.is_shadow() && rule.methods().is_none() && gap(rule.requirement()))
            .map(|rule| {
                // The key is already the warning's; a name of its own is worth repeating.
                let named = if **rule.name() == *rule.key() {
                    String::new()
                } else {
                    format!("{:?}, ", rule.name())
                };
                ConfigWarning {
                    key: rule.key().to_owned(),
                    message: format!(
                        "{named}{} {:?} ({}), has no methods, so {consequence}; list its methods, \
                         or let Envoy's CORS filter answer preflights",
                        rule.path().key_name(),
                        rule.path().pattern(),
                        rule.requirement()
                    ),
                }
            })
            .collect();
        let default = self.policy.default_requirement();
        if gap(default) {
            warnings.push(ConfigWarning {
                key: "default".to_owned(),
                message: format!(
                    "the default ({default}) takes every method on every path no rule takes, so \
                     {consequence}; set default = \"deny\" and list each route's methods, or let \
                     Envoy's CORS filter answer preflights"
                ),
            });
        }
        warnings
    }
}

/// One warning per issuer whose keys may come over plain http from a host that is not loopback:
/// allowed on purpose (a demo network), but anyone on that path can substitute the keys.
fn insecure_http_warnings(issuers: &[Issuer]) -> impl Iterator<Item = ConfigWarning> + '_ {
    issuers
        .iter()
        .filter(|issuer| issuer.jwks.fetch_policy.allow_insecure_http)
        .map(|issuer| ConfigWarning {
            key: format!("{}allow_insecure_http", issuer.prefix),
            message: format!(
                "keys of {} may be fetched over plain http from hosts that are not loopback, \
                 where anyone on the path can substitute them; use https outside a private \
                 test network",
                issuer.expectations.issuer
            ),
        })
}

#[cfg(test)]
mod tests {
    use super::super::tests::compile;
    use super::*;

    /// Under `cors_preflight = "allow"`, the rules (and default) that take every method and
    /// need a token are named: a forged preflight reaches the upstream there. Nothing is refused.
    #[test]
    fn rules_open_to_forged_preflights_are_warned_about() {
        let rules = "[[rules]]\nname = \"admin area\"\nprefix = \"/admin/\"\nscopes = [\"admin\"]\n\
                     [[rules]]\npath = \"/items\"\nmethods = [\"GET\"]\nscopes = [\"read\"]\n\
                     [[rules]]\npath = \"/status\"\npublic = true\n\
                     [[rules]]\npath = \"/closed\"\nshadow = true\nscopes = [\"x\"]\n";
        // (configuration, keys warned about)
        let cases: &[(String, &[&str])] = &[
            (rules.to_string(), &[]),
            (format!("cors_preflight = \"authenticate\"\n{rules}"), &[]),
            (
                format!("cors_preflight = \"allow\"\n{rules}"),
                &["rules[0]", "default"],
            ),
            (
                format!("cors_preflight = \"allow\"\ndefault = \"deny\"\n{rules}"),
                &["rules[0]"],
            ),
            (
                format!("cors_preflight = \"allow\"\ndefault = \"allow\"\n{rules}"),
                &["rules[0]"],
            ),
        ];
        for (text, keys) in cases {
            let config = compile(text).expect("warnings never refuse a configuration");
            let got: Vec<&str> = config.warnings().iter().map(|w| w.key.as_str()).collect();
            assert_eq!(got, *keys, "{text}");
        }
        let config = compile(&format!("cors_preflight = \"allow\"\n{rules}")).expect("valid");
        let message = config.warnings()[0].to_string();
        for part in [
            "rules[0]: \"admin area\", prefix \"/admin/\" (any of scopes [admin]), has no methods",
            "Envoy's CORS filter",
        ] {
            assert!(message.contains(part), "{message}");
        }
    }

    /// A key wait as long as the Check deadline is allowed but reported, once, naming both
    /// keys and values; the defaults (300 ms under 400 ms) say nothing.
    #[test]
    fn unknown_kid_wait_at_or_past_the_check_deadline_is_a_warning() {
        let cases: [(&str, Option<&str>); 5] = [
            ("", None),
            ("unknown_kid_wait_ms = 399", None),
            (
                "unknown_kid_wait_ms = 400",
                Some("(400) is not below server.check_timeout_ms (400)"),
            ),
            (
                "unknown_kid_wait_ms = 2000",
                Some("(2000) is not below server.check_timeout_ms (400)"),
            ),
            (
                "unknown_kid_wait_ms = 300\n[server]\ncheck_timeout_ms = 100",
                Some("(300) is not below server.check_timeout_ms (100)"),
            ),
        ];
        for (extra, want) in cases {
            let c = compile(extra).expect("a warning never refuses the file");
            let warnings: Vec<&ConfigWarning> = c
                .warnings()
                .iter()
                .filter(|w| w.key.contains("unknown_kid_wait_ms"))
                .collect();
            match want {
                None => assert!(warnings.is_empty(), "{extra}: {warnings:?}"),
                Some(text) => {
                    assert_eq!(warnings.len(), 1, "{extra}: {warnings:?}");
                    assert_eq!(
                        warnings[0].key,
                        "unknown_kid_wait_ms, server.check_timeout_ms"
                    );
                    assert!(
                        warnings[0].message.contains(text),
                        "{extra}: {}",
                        warnings[0]
                    );
                }
            }
        }
    }

    #[test]
    fn an_http_listener_beyond_loopback_is_warned_about() {
        for (extra, warned) in [
            ("", false),
            ("http_listen = \"127.0.0.1:9193\"", false),
            ("http_listen = \"[::1]:9193\"", false),
            ("http_listen = \"0.0.0.0:9193\"", true),
            ("http_listen = \"10.0.0.5:9193\"", true),
        ] {
            let c = compile(extra).expect("a warning never refuses the file");
            let found: Vec<&ConfigWarning> = c
                .warnings()
                .iter()
                .filter(|w| w.key == "http_listen")
                .collect();
            assert_eq!(found.len(), usize::from(warned), "{extra}: {found:?}");
            if warned {
                assert!(
                    found[0].message.contains("not a loopback address"),
                    "{extra}"
                );
            }
        }
    }

    /// A configured path that a format suffix or compatibility reading confuses with another
    /// rule still compiles (it did before those readings existed), with a warning naming it,
    /// since its requests are refused; configurations without such a path get none.
    #[test]
    fn paths_refused_for_a_later_reading_are_warned_about() {
        let config = compile(
            r#"
            [[rules]]
            path = "/report.json"
            public = true
            [[rules]]
            path = "/report"
            scopes = ["admin"]
            [[rules]]
            path = "/feed.xml"
            public = true
            "#,
        )
        .expect("compiles");
        let warnings = config.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(warnings[0].key, "rules[0].path");
        assert!(
            warnings[0].message.contains("without its format suffix")
                && warnings[0].message.contains("rules[1]"),
            "{}",
            warnings[0]
        );
        let quiet = compile("[[rules]]\npath = \"/feed.xml\"\npublic = true\n").expect("compiles");
        assert_eq!(quiet.warnings(), &[]);
    }
}
