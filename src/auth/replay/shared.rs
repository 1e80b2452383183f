//! The replay store several replicas share: Redis (`dpop_replay_store`), one atomic
//! `SET key 1 NX PX <ms>` per proof, so of two replicas given the same proof exactly one is
//! told the key was new.
//!
//! Every call is bounded: it waits at most the configured timeout (connecting included), and
//! at most the configured number of calls are in flight; past either, and on any error, the
//! proof is refused as unverifiable ([`ReplayError::Store`]), never let through unchecked.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ConnectionAddr, IntoConnectionInfo as _, RedisConnectionInfo, Value};
use std::sync::OnceLock;
use tokio::sync::Semaphore;

use crate::telemetry::metrics::StoreFailure;

use super::ReplayError;

/// What every proof's key starts with, so the store can share a Redis with other data.
pub const KEY_PREFIX: &str = "scopegate:dpop:";
/// Redis's own port, when the URL names none.
pub const DEFAULT_PORT: u16 = 6379;
/// Default `dpop_replay_store_timeout_ms`, unless half of `check_timeout_ms` is less.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(100);
/// Default `dpop_replay_store_max_in_flight`.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;
/// Store failures are logged at most once in this many seconds (each is counted).
const LOG_EVERY_SECONDS: u64 = 10;

/// Where the store is: `redis://host[:port][/db]`, checked. No credentials: a password comes
/// from a file ([`Password`]), never from the URL, which is printed and logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisTarget {
    host: String,
    port: u16,
    db: u16,
}

impl RedisTarget {
    /// Parses `redis://host[:port][/db]`; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<RedisTarget, &'static str> {
        let url = reqwest::Url::parse(text)
            .map_err(|_| "must be a URL of the form redis://host:port[/db]")?;
        match url.scheme() {
            "redis" => {}
            "rediss" => return Err("TLS to Redis (rediss) is not supported: use redis://"),
            _ => return Err("the scheme must be redis:// (redis://host:port[/db])"),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("no credentials in the URL (it is printed and logged): \
                 put the password in dpop_replay_store_password_file");
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err("no query or fragment: redis://host:port[/db]");
        }
        // An IPv6 address comes in brackets; the connection wants it without.
        let host = match url.host_str() {
            Some(host) if !host.is_empty() => host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(host)
                .to_owned(),
            _ => return Err("a host is required: redis://host:port[/db]"),
        };
        let port = url.port().unwrap_or(DEFAULT_PORT);
        if port == 0 {
            return Err("the port must not be 0");
        }
        let db = match url.path() {
            "" | "/" => 0,
            path => path
                .strip_prefix('/')
                .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|n| n.parse::<u16>().ok())
                .ok_or("the path must be a database number (redis://host:port/0)")?,
        };
        Ok(RedisTarget { host, port, db })
    }

    /// The host, as the URL names it (an IPv6 address without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port (6379 unless the URL names one).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The database number (0 unless the URL names one).
    pub fn db(&self) -> u16 {
        self.db
    }
}

impl fmt::Display for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "redis://[{}]:{}/{}", self.host, self.port, self.db)
        } else {
            write!(f, "redis://{}:{}/{}", self.host, self.port, self.db)
        }
    }
}

/// The Redis password (`AUTH`), read from `dpop_replay_store_password_file`. Never printed:
/// its `Debug` says only that there is one.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// The password in `text`, a file's content without its line end; `None` when it is empty.
    pub fn from_file_content(text: &str) -> Option<Password> {
        let password = text.strip_suffix('\n').unwrap_or(text);
        let password = password.strip_suffix('\r').unwrap_or(password);
        (!password.is_empty()).then(|| Password(password.to_owned()))
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(..)")
    }
}

/// How the shared store is reached and bounded. Two equal settings reach the same store the same
/// way, so a reload that leaves them equal keeps the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    target: RedisTarget,
    password: Option<Password>,
    timeout: Duration,
    max_in_flight: usize,
}

impl RedisSettings {
    /// The store at `target`, with `password` if it asks for one; each call waits at most
    /// `timeout` (at least a millisecond), at most `max_in_flight` (at least one) at once.
    pub fn new(
        target: RedisTarget,
        password: Option<Password>,
        timeout: Duration,
        max_in_flight: usize,
    ) -> RedisSettings {
        RedisSettings {
            target,
            password,
            timeout: timeout.max(Duration::from_millis(1)),
            max_in_flight: max_in_flight.max(1),
        }
    }

    /// Where the store is.
    pub fn target(&self) -> &RedisTarget {
        &self.target
    }

    /// Whether a password is sent.
    pub fn has_password(&self) -> bool {
        self.password.is_some()
    }

    /// The longest a call waits, connecting included.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The most calls in flight at once.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }
}

/// Proofs remembered in Redis, shared by every replica configured with it. Connects on first
/// use (on the runtime that serves requests) and reconnects by itself; a call that finds it
/// unreachable refuses the proof.
pub struct RedisReplayStore {
    settings: RedisSettings,
    connection: OnceLock<ConnectionManager>,
    in_flight: Semaphore,
    /// The Unix second of the last failure logged, and the failures since, unlogged.
    last_logged: AtomicU64,
    unlogged: AtomicU64,
}

impl fmt::Debug for RedisReplayStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisReplayStore")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl RedisReplayStore {
    /// A store for `settings`; nothing is connected until the first proof.
    pub fn new(settings: RedisSettings) -> RedisReplayStore {
        RedisReplayStore {
            in_flight: Semaphore::new(settings.max_in_flight),
            settings,
            connection: OnceLock::new(),
            last_logged: AtomicU64::new(0),
            unlogged: AtomicU64::new(0),
        }
    }

    /// The connection manager, made on first use. Making it opens nothing (the first command
    /// connects); it fails only for settings the configuration never produces.
    fn connection(&self) -> redis::RedisResult<ConnectionManager> {
        if let Some(connection) = self.connection.get() {
            return Ok(connection.clone());
        }
        let target = &self.settings.target;
        let mut redis = RedisConnectionInfo::default().set_db(i64::from(target.db));
        if let Some(Password(password)) = &self.settings.password {
            redis = redis.set_password(password);
        }
        let info = ConnectionAddr::Tcp(target.host.clone(), target.port)
            .into_connection_info()?
            .set_redis_settings(redis);
        let client = redis::Client::open(info)?;
        // One attempt per connection (the next call after a failure starts another), each
        // bounded like a call, so a store that is down costs a call its timeout and no more.
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(Some(self.settings.timeout))
            .set_response_timeout(Some(self.settings.timeout));
        let connection = ConnectionManager::new_lazy_with_config(client, config)?;
        // Two first calls at once may both make one; the one kept is shared from then on.
        Ok(self.connection.get_or_init(|| connection).clone())
    }

    /// How it is reached.
    pub fn settings(&self) -> &RedisSettings {
        &self.settings
    }

    /// Remembers `key` until `expires_at` has passed (the proof is accepted through that whole
    /// second); `Err(Replayed)` when Redis already holds it, `Err(Store(_))` when Redis could
    /// not say.
    pub async fn remember(
        &self,
        key: [u8; 32],
        expires_at: u64,
        now: u64,
    ) -> Result<(), ReplayError> {
        let result = self.set_nx(key, expires_at, now).await;
        if let Err(ReplayError::Store(failure)) = result {
            self.log_failure(failure, now);
        }
        result
    }

    async fn set_nx(&self, key: [u8; 32], expires_at: u64, now: u64) -> Result<(), ReplayError> {
        // Full: refused at once rather than queued behind a store that may be slow.
        let Ok(_permit) = self.in_flight.try_acquire() else {
            return Err(ReplayError::Store(StoreFailure::busy));
        };
        let ttl_ms = expires_at
            .saturating_add(1)
            .saturating_sub(now)
            .saturating_mul(1000)
            .max(1);
        let mut command = redis::cmd("SET");
        command
            .arg(redis_key(&key).as_slice())
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms);
        let Ok(mut connection) = self.connection() else {
            return Err(ReplayError::Store(StoreFailure::error));
        };
        let answer = tokio::time::timeout(
            self.settings.timeout,
            command.query_async::<Value>(&mut connection),
        )
        .await;
        match answer {
            Err(_) => Err(ReplayError::Store(StoreFailure::timeout)),
            Ok(Ok(Value::Okay)) => Ok(()),
            Ok(Ok(Value::SimpleString(s))) if s == "OK" => Ok(()),
            // NX and the key exists: the proof was remembered before.
            Ok(Ok(Value::Nil)) => Err(ReplayError::Replayed),
            Ok(Ok(_)) => Err(ReplayError::Store(StoreFailure::error)),
            Ok(Err(e)) if e.is_timeout() => Err(ReplayError::Store(StoreFailure::timeout)),
            Ok(Err(e)) if e.is_io_error() || e.is_connection_dropped() => {
                Err(ReplayError::Store(StoreFailure::unreachable))
            }
            Ok(Err(_)) => Err(ReplayError::Store(StoreFailure::error)),
        }
    }

    /// Logs a failure at warn, at most once every [`LOG_EVERY_SECONDS`], with how many went
    /// unlogged since: a store that is down must not flood the log. Names the store and the
    /// kind of failure, never a key.
    fn log_failure(&self, failure: StoreFailure, now: u64) {
        let last = self.last_logged.load(Ordering::Relaxed);
        if now < last.saturating_add(LOG_EVERY_SECONDS)
            || self
                .last_logged
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            self.unlogged.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let unlogged = self.unlogged.swap(0, Ordering::Relaxed);
        tracing::warn!(
            store = %self.settings.target,
            failure = ?failure,
            unlogged_since_last = unlogged,
            "DPoP replay store failed: DPoP requests are refused (503) until it answers"
        );
    }
}

/// `scopegate:dpop:` and the key in lower-case hex.
fn redis_key(key: &[u8; 32]) -> [u8; KEY_PREFIX.len() + 64] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; KEY_PREFIX.len() + 64];
    out[..KEY_PREFIX.len()].copy_from_slice(KEY_PREFIX.as_bytes());
    for (i, byte) in key.iter().enumerate() {
        out[KEY_PREFIX.len() + 2 * i] = HEX[usize::from(byte >> 4)];
        out[KEY_PREFIX.len() + 2 * i + 1] = HEX[usize::from(byte & 0xf)];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_from_redis_urls_and_anything_else_is_refused() {
        // (URL, Ok((host, port, db)) or a word of the error)
        type Row = (&'static str, Result<(&'static str, u16, u16), &'static str>);
        let rows: &[Row] = &[
            ("redis://127.0.0.1:6379", Ok(("127.0.0.1", 6379, 0))),
            ("redis://127.0.0.1:6380/", Ok(("127.0.0.1", 6380, 0))),
            ("redis://redis.internal/3", Ok(("redis.internal", 6379, 3))),
            ("redis://[::1]:7000/15", Ok(("::1", 7000, 15))),
            ("rediss://redis.internal:6379", Err("TLS")),
            ("http://redis.internal:6379", Err("scheme")),
            ("redis.internal:6379", Err("scheme")),
            ("redis://:secret@redis.internal:6379", Err("credentials")),
            ("redis://user:secret@redis.internal", Err("credentials")),
            ("redis://user@redis.internal", Err("credentials")),
            ("redis://", Err("host")),
            ("redis:///0", Err("host")),
            ("redis://redis.internal:0", Err("port")),
            ("redis://redis.internal:99999", Err("URL")),
            ("redis://redis.internal/db", Err("database number")),
            ("redis://redis.internal/-1", Err("database number")),
            ("redis://redis.internal/70000", Err("database number")),
            ("redis://redis.internal/0/1", Err("database number")),
            ("redis://redis.internal/0?protocol=resp3", Err("query")),
            ("redis://redis.internal/0#insecure", Err("fragment")),
            ("", Err("URL")),
        ];
        for (text, want) in rows {
            let got = RedisTarget::parse(text);
            match (want, &got) {
                (Ok((host, port, db)), Ok(target)) => {
                    assert_eq!(
                        (target.host(), target.port(), target.db()),
                        (*host, *port, *db),
                        "{text}"
                    );
                }
                (Err(word), Err(reason)) => assert!(reason.contains(word), "{text}: {reason}"),
                _ => panic!("{text}: {got:?}, want {want:?}"),
            }
        }
        assert_eq!(
            RedisTarget::parse("redis://[::1]:7000").map(|t| t.to_string()),
            Ok("redis://[::1]:7000/0".to_owned())
        );
    }

    #[test]
    fn a_password_file_gives_its_first_line_and_never_prints_it() {
        assert_eq!(Password::from_file_content(""), None);
        assert_eq!(Password::from_file_content("\n"), None);
        let password = Password::from_file_content("s3cret\r\n");
        assert_eq!(password, Some(Password("s3cret".to_owned())));
        assert!(!format!("{password:?}").contains("s3cret"));
        let settings = RedisSettings::new(
            RedisTarget::parse("redis://127.0.0.1").unwrap(),
            password,
            DEFAULT_TIMEOUT,
            DEFAULT_MAX_IN_FLIGHT,
        );
        assert!(!format!("{settings:?}").contains("s3cret"));
    }

    #[test]
    fn keys_are_the_prefix_and_the_identity_in_hex() {
        let mut key = [0u8; 32];
        key[0] = 0xab;
        key[31] = 0x01;
        let text = redis_key(&key);
        let text = std::str::from_utf8(&text).unwrap();
        assert_eq!(
            text,
            "scopegate:dpop:ab000000000000000000000000000000000000000000000000000000000000\
             01"
        );
    }
}
