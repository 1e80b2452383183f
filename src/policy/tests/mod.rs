//! The policy's tables, one file per concept: [`routes`] (rules and policies refused at
//! start-up, route lookup, shadow rules), [`templates`] (templates beside literal paths),
//! [`readings`] (`HEAD` and the readings that refuse a request) and [`issuers`] (rules' issuers
//! and audiences). The helpers that build a rule and a template are shared here.

use super::*;
use crate::auth::verify::VerifiedClaims;

mod issuers;
mod readings;
mod routes;
mod templates;

/// A rule whose key is `key` (`rules[N]`).
fn rule(key: &str, path: PathMatch, methods: Option<&[&str]>, req: Requirement) -> Rule {
    let methods = methods.map(|ms| ms.iter().map(|m| m.to_string()).collect());
    let index = key
        .strip_prefix("rules[")
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|n| n.parse().ok())
        .expect("a rules[N] key");
    Rule::new(index, None, path, methods, req).expect("a valid rule")
}

fn template(t: &str) -> PathMatch {
    PathMatch::Template(Template::parse(t).expect("a valid template"))
}
