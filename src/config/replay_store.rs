//! The `dpop_replay_store*` keys: where DPoP proofs are remembered when the replicas share one
//! store (Redis), and how each call to it is bounded. Absent: the in-process cache
//! (`dpop_replay_cache_bytes`).

use std::time::Duration;

use crate::auth::replay::{
    DEFAULT_MAX_IN_FLIGHT, DEFAULT_TIMEOUT, Password, RedisSettings, RedisTarget,
};

use super::{ConfigError, invalid};

/// Largest `dpop_replay_store_max_in_flight`.
const MAX_IN_FLIGHT: u64 = 65_536;

/// The `dpop_replay_store*` keys as written.
#[derive(Debug, Default)]
pub(super) struct RawReplayStore {
    pub(super) url: Option<String>,
    pub(super) password_file: Option<String>,
    pub(super) timeout_ms: Option<u64>,
    pub(super) max_in_flight: Option<u64>,
}

impl RawReplayStore {
    /// The shared store's settings, or `None` for the in-process cache. A call to the store
    /// waits at most half of `check_timeout` (default 100 ms when that is less), so a Check of a
    /// DPoP request stays well inside the time Envoy gives it. The password file is read here,
    /// at every (re)load, so a reload takes a changed password.
    pub(super) fn compile(
        self,
        check_timeout: Duration,
    ) -> Result<Option<RedisSettings>, ConfigError> {
        let Some(url) = self.url else {
            let stray = [
                (
                    "dpop_replay_store_password_file",
                    self.password_file.is_some(),
                ),
                ("dpop_replay_store_timeout_ms", self.timeout_ms.is_some()),
                (
                    "dpop_replay_store_max_in_flight",
                    self.max_in_flight.is_some(),
                ),
            ];
            if let Some((key, _)) = stray.iter().find(|(_, set)| *set) {
                return Err(invalid(
                    *key,
                    "(set)",
                    "applies only with dpop_replay_store = \"redis://host:port\"",
                ));
            }
            return Ok(None);
        };
        let target = RedisTarget::parse(&url)
            .map_err(|reason| invalid("dpop_replay_store", &url, reason))?;
        let password = match self.password_file {
            None => None,
            Some(path) => {
                // The error names the file, never its content.
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    invalid(
                        "dpop_replay_store_password_file",
                        &path,
                        format!("cannot be read: {e}"),
                    )
                })?;
                Some(Password::from_file_content(&text).ok_or_else(|| {
                    invalid(
                        "dpop_replay_store_password_file",
                        &path,
                        "holds no password (the file is empty)",
                    )
                })?)
            }
        };
        let longest = check_timeout / 2;
        let timeout = match self.timeout_ms {
            None => DEFAULT_TIMEOUT.min(longest),
            Some(ms) => {
                let timeout = Duration::from_millis(ms);
                if ms == 0 || timeout > longest {
                    return Err(invalid(
                        "dpop_replay_store_timeout_ms",
                        ms,
                        format!(
                            "must be between 1 and half of server.check_timeout_ms ({} ms)",
                            longest.as_millis()
                        ),
                    ));
                }
                timeout
            }
        };
        let max_in_flight = self.max_in_flight.unwrap_or(DEFAULT_MAX_IN_FLIGHT as u64);
        if !(1..=MAX_IN_FLIGHT).contains(&max_in_flight) {
            return Err(invalid(
                "dpop_replay_store_max_in_flight",
                max_in_flight,
                format!("must be between 1 and {MAX_IN_FLIGHT}"),
            ));
        }
        Ok(Some(RedisSettings::new(
            target,
            password,
            timeout,
            usize::try_from(max_in_flight).unwrap_or(usize::MAX),
        )))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::time::Duration;

    use super::super::tests::compile;

    #[test]
    fn the_store_compiles_is_printed_without_its_password_and_errors_name_key_and_value() {
        let c = compile("").expect("the default");
        assert_eq!(c.dpop().replay_store(), None);
        assert!(
            c.to_string().contains("dpop replay store in this process"),
            "{c}"
        );

        let c = compile("dpop_replay_store = \"redis://127.0.0.1:6380/2\"").expect("a store");
        let store = c.dpop().replay_store().expect("a store");
        assert_eq!(store.target().to_string(), "redis://127.0.0.1:6380/2");
        assert_eq!(store.timeout(), Duration::from_millis(100));
        assert_eq!(store.max_in_flight(), 256);
        assert!(!store.has_password());
        assert!(
            c.to_string().contains(
                "dpop replay store redis://127.0.0.1:6380/2 (no password), calls within 100 ms, \
                 at most 256 in flight"
            ),
            "{c}"
        );
        // Half of a short check_timeout_ms bounds the default.
        let c = compile("dpop_replay_store = \"redis://r\"\n[server]\ncheck_timeout_ms = 50")
            .expect("a short check timeout");
        let store = c.dpop().replay_store().expect("a store");
        assert_eq!(store.timeout(), Duration::from_millis(25));

        let mut file = tempfile::NamedTempFile::new().expect("a scratch file");
        file.write_all(b"s3cret-redis-password\n").expect("written");
        let path = file.path().display().to_string();
        let c = compile(&format!(
            "dpop_replay_store = \"redis://r:7000\"\ndpop_replay_store_password_file = {path:?}\n\
             dpop_replay_store_timeout_ms = 40\ndpop_replay_store_max_in_flight = 8"
        ))
        .expect("a store with a password");
        let store = c.dpop().replay_store().expect("a store");
        assert!(store.has_password());
        assert_eq!(store.timeout(), Duration::from_millis(40));
        assert_eq!(store.max_in_flight(), 8);
        let printed = c.to_string();
        assert!(
            printed.contains("redis://r:7000/0 (password from dpop_replay_store_password_file)"),
            "{printed}"
        );
        assert!(!printed.contains("s3cret"), "{printed}");
        assert!(!format!("{c:?}").contains("s3cret"));

        let empty = tempfile::NamedTempFile::new().expect("a scratch file");
        let empty = empty.path().display().to_string();
        let missing = "/nonexistent/scopegate-redis-password";
        // (configuration, what the error names: the key and the value)
        let cases: &[(String, &[&str])] = &[
            (
                "dpop_replay_store = \"rediss://r:6379\"".into(),
                &["dpop_replay_store", "rediss://r:6379", "TLS"],
            ),
            (
                "dpop_replay_store = \"http://r:6379\"".into(),
                &["dpop_replay_store", "http://r:6379", "scheme"],
            ),
            (
                "dpop_replay_store = \"redis://:pw@r:6379\"".into(),
                &["dpop_replay_store", "password_file"],
            ),
            (
                "dpop_replay_store = \"redis://\"".into(),
                &["dpop_replay_store", "\"redis://\"", "host"],
            ),
            (
                "dpop_replay_store = \"redis://r/x\"".into(),
                &["dpop_replay_store", "redis://r/x", "database number"],
            ),
            (
                format!(
                    "dpop_replay_store = \"redis://r\"\ndpop_replay_store_password_file = {missing:?}"
                ),
                &["dpop_replay_store_password_file", missing, "cannot be read"],
            ),
            (
                format!(
                    "dpop_replay_store = \"redis://r\"\ndpop_replay_store_password_file = {empty:?}"
                ),
                &["dpop_replay_store_password_file", "empty"],
            ),
            (
                "dpop_replay_store = \"redis://r\"\ndpop_replay_store_timeout_ms = 0".into(),
                &["dpop_replay_store_timeout_ms", "= 0"],
            ),
            (
                "dpop_replay_store = \"redis://r\"\ndpop_replay_store_timeout_ms = 201".into(),
                &["dpop_replay_store_timeout_ms", "201", "200 ms"],
            ),
            (
                "dpop_replay_store = \"redis://r\"\ndpop_replay_store_max_in_flight = 0".into(),
                &["dpop_replay_store_max_in_flight", "= 0"],
            ),
            (
                "dpop_replay_store = \"redis://r\"\ndpop_replay_store_max_in_flight = 65537".into(),
                &["dpop_replay_store_max_in_flight", "65537"],
            ),
            (
                "dpop_replay_store_timeout_ms = 50".into(),
                &[
                    "dpop_replay_store_timeout_ms",
                    "only with dpop_replay_store",
                ],
            ),
            (
                format!("dpop_replay_store_password_file = {empty:?}"),
                &[
                    "dpop_replay_store_password_file",
                    "only with dpop_replay_store",
                ],
            ),
        ];
        for (extra, words) in cases {
            let err = compile(extra).expect_err(extra).to_string();
            for word in *words {
                assert!(err.contains(word), "{extra:?}: {err} should say {word:?}");
            }
        }
    }
}
