//! `[[token_sources]]` through the real gRPC service: each source is read, credentials in two
//! places are 400, cookies are read from every `Cookie` header, a query token is removed before
//! the upstream and never logged, and only the `Authorization` source is challenged.

use crate::common::binary::Binary;
use crate::common::*;

/// Every kind of source, the default one first.
const SOURCES: &str = r#"
allow_query_tokens = true
[[token_sources]]
header = "authorization"
scheme = "Bearer"
[[token_sources]]
header = "x-api-token"
[[token_sources]]
cookie = "at"
[[token_sources]]
query = "access_token"
[[rules]]
path = "/restricted_resource"
scopes = ["read:messages"]
[[rules]]
path = "/public"
public = true
"#;

/// A request's target and headers.
type Sent<'a> = (&'a str, Vec<(&'a str, &'a str)>);

/// Checks `path` with `headers` against `env`, each header value as one entry of Envoy's
/// `header_map` (`encode_raw_headers`), so a repeated header arrives repeated.
async fn ask(env: &Env, path: &str, headers: &[(&str, &str)]) -> Answer {
    let raw: Vec<(&str, &[u8])> = headers.iter().map(|(n, v)| (*n, v.as_bytes())).collect();
    Answer::of(&env.gate.check(raw_request("GET", path, &raw)).await)
}

#[tokio::test]
async fn each_token_source_is_read_and_only_authorization_is_challenged() {
    let env = Env::start(SOURCES).await;
    let good = env.key.mint(&claims("read:messages"));
    let weak = env.key.mint(&claims("openid"));
    let path = "/restricted_resource";
    let with_query = |token: &str| format!("{path}?x=1&access_token={token}");
    for token in [&good, &weak] {
        let cookie = format!("at={token}");
        let authorization = bearer(token);
        let query = with_query(token);
        let cases: [(&str, Sent<'_>, bool); 4] = [
            (
                "authorization",
                (path, vec![("authorization", &authorization)]),
                true,
            ),
            ("header", (path, vec![("x-api-token", token)]), false),
            ("cookie", (path, vec![("cookie", &cookie)]), false),
            ("query", (&query, vec![]), false),
        ];
        for (source, (path, headers), challenged) in cases {
            let answer = ask(&env, path, &headers).await;
            if token == &good {
                answer.assert_allowed();
                assert_eq!(
                    answer.headers.get("x-auth-subject").map(String::as_str),
                    Some("auth0|user-1"),
                    "{source}"
                );
                continue;
            }
            // A weak token from any source: 403, with a challenge only for Authorization.
            answer.assert_denied(403, "insufficient_scope");
            assert_eq!(
                answer.challenge().is_empty(),
                !challenged,
                "{source}: {answer:?}"
            );
        }
    }
    // A bad token and a malformed one: the JSON body alone outside Authorization.
    let forged = TestKey::generate("key-1").mint(&claims("read:messages"));
    let cookie = format!("at={forged}");
    let answer = ask(&env, path, &[("cookie", &cookie)]).await;
    answer.assert_denied(401, "invalid_token");
    assert_eq!(answer.challenge(), "", "{answer:?}");
    let answer = ask(&env, path, &[("x-api-token", "a b")]).await;
    answer.assert_denied(400, "invalid_request");
    assert_eq!(answer.challenge(), "", "{answer:?}");
    let answer = ask(&env, path, &[("authorization", &bearer(&forged))]).await;
    answer.assert_denied(401, "invalid_token");
    assert!(
        answer.challenge().starts_with("Bearer realm="),
        "{answer:?}"
    );
    // No credentials anywhere: challenged, since Authorization is one of the sources.
    let answer = ask(&env, path, &[]).await;
    answer.assert_denied(401, "unauthorized");
    assert_eq!(answer.challenge(), "Bearer realm=\"scopegate\"");
    env.gate.stop().await;
}

/// Without Authorization among the sources, no denial is challenged, and the Authorization
/// header is not read.
#[tokio::test]
async fn a_cookie_only_configuration_challenges_nobody() {
    let env = Env::start(
        "[[token_sources]]\ncookie = \"at\"\n\
         [[rules]]\npath = \"/restricted_resource\"\nscopes = [\"read:messages\"]\n",
    )
    .await;
    let good = env.key.mint(&claims("read:messages"));
    let answer = ask(
        &env,
        "/restricted_resource",
        &[("authorization", &bearer(&good))],
    )
    .await;
    answer.assert_denied(401, "unauthorized");
    assert_eq!(answer.challenge(), "", "{answer:?}");
    assert_eq!(answer.message(), "no credentials in any token source");
    let cookie = format!("at={good}");
    ask(&env, "/restricted_resource", &[("cookie", &cookie)])
        .await
        .assert_allowed();
    env.gate.stop().await;
}

#[tokio::test]
async fn credentials_in_two_places_are_400() {
    let env = Env::start(SOURCES).await;
    let a = env.key.mint(&claims("read:messages"));
    let b = env.key.mint(&claims("read:messages write:messages"));
    let path = "/restricted_resource";
    let (bearer_a, cookie_a) = (bearer(&a), format!("at={a}"));
    let (cookie_b, cookies_ab) = (format!("at={b}"), format!("at={a}; at={b}"));
    let query_a = format!("{path}?access_token={a}");
    let query_aa = format!("{path}?access_token={a}&access_token={a}");
    let cases: [(&str, Sent<'_>); 8] = [
        (
            "authorization and header",
            (
                path,
                vec![("authorization", &bearer_a), ("x-api-token", &a)],
            ),
        ),
        (
            "authorization and cookie",
            (
                path,
                vec![("authorization", &bearer_a), ("cookie", &cookie_a)],
            ),
        ),
        ("header and query", (&query_a, vec![("x-api-token", &a)])),
        ("cookie and query", (&query_a, vec![("cookie", &cookie_a)])),
        (
            "one header twice",
            (path, vec![("x-api-token", &a), ("x-api-token", &a)]),
        ),
        ("one parameter twice", (&query_aa, vec![])),
        (
            "two values of one cookie",
            (path, vec![("cookie", &cookies_ab)]),
        ),
        (
            "two values of one cookie, two headers",
            (path, vec![("cookie", &cookie_a), ("cookie", &cookie_b)]),
        ),
    ];
    for (what, (path, headers)) in cases {
        let answer = ask(&env, path, &headers).await;
        answer.assert_denied(400, "invalid_request");
        assert_eq!(
            answer.message(),
            "credentials in more than one place",
            "{what}"
        );
    }
    env.gate.stop().await;
}

#[tokio::test]
async fn cookies_are_read_from_every_cookie_header_and_identical_copies_count_once() {
    let env = Env::start(SOURCES).await;
    let good = env.key.mint(&claims("read:messages"));
    let path = "/restricted_resource";
    let among = format!("theme=dark; at={good}; lang=en");
    let once = format!("at={good}");
    let twice = format!("at={good}; at={good}");
    // Two Cookie headers as Envoy's `headers` map joins them.
    let joined = format!("theme=dark,{once}");
    let cases: [(&str, Vec<(&str, &str)>); 5] = [
        ("among other cookies", vec![("cookie", &among)]),
        (
            "in the second Cookie header",
            vec![("cookie", "theme=dark"), ("cookie", &once)],
        ),
        (
            "the same value twice in one header",
            vec![("cookie", &twice)],
        ),
        (
            "the same value in two headers",
            vec![("cookie", &once), ("cookie", &once)],
        ),
        (
            "two Cookie headers joined with a comma",
            vec![("cookie", &joined)],
        ),
    ];
    for (what, headers) in cases {
        let answer = ask(&env, path, &headers).await;
        assert_eq!(answer.code, OK, "{what}: {answer:?}");
    }
    env.gate.stop().await;
}

/// A query token is removed (`query_parameters_to_remove`) on every allow, a public route's
/// too, and no decision log line holds it.
#[tokio::test]
async fn a_query_token_is_removed_before_the_upstream_and_never_logged() {
    let env = Env::start(SOURCES).await;
    let good = env.key.mint(&claims("read:messages"));
    for path in [
        format!("/restricted_resource?access_token={good}"),
        format!("/public?access_token={good}"),
        "/public".to_owned(),
    ] {
        let answer = ask(&env, &path, &[]).await;
        answer.assert_allowed();
        assert_eq!(answer.removed_query, ["access_token"], "{path}");
    }
    // With Authorization only (the default), nothing is removed.
    let plain = Env::start("").await;
    let answer = plain.ask_with_scope("GET", "/x", "read:messages").await;
    answer.assert_allowed();
    assert!(answer.removed_query.is_empty(), "{answer:?}");
    plain.gate.stop().await;
    env.gate.stop().await;

    let key = TestKey::generate("key-1");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
    let config = format!(
        "listen = \"127.0.0.1:0\"\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\n\
         jwks_uri = \"{}\"\ndecision_log = \"all\"\n{SOURCES}",
        jwks.url()
    );
    let mut binary = Binary::start("query-token", &config, "info", None).await;
    binary.keys_loaded().await;
    let mut client = binary.client().await;
    let good = key.mint(&claims("read:messages"));
    let weak = key.mint(&claims("openid"));
    for token in [&good, &weak] {
        let path = format!("/restricted_resource?access_token={token}");
        let response = client
            .check(request("GET", &path, &[]))
            .await
            .expect("in-band answer")
            .into_inner();
        assert_eq!(
            Answer::of(&response).status(),
            if token == &good { 200 } else { 403 }
        );
    }
    drop(client);
    binary.terminate().await;
    let text = binary.log_text();
    assert!(
        text.lines()
            .filter(|l| l.contains("scopegate::decision"))
            .count()
            >= 2,
        "both decisions are logged:\n{text}"
    );
    for token in [&good, &weak] {
        for segment in token.split('.') {
            assert!(
                !text.contains(segment),
                "a token segment leaked into the logs:\n{text}"
            );
        }
    }
    assert!(
        !text.contains("access_token="),
        "the parameter is logged:\n{text}"
    );
}
