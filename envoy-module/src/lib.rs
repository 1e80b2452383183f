//! scopegate in-proxy: the decision core compiled into an Envoy dynamic module, an HTTP filter
//! (`envoy.filters.http.dynamic_modules`) for exactly Envoy 1.40.0.
//!
//! The fourth front door over the one core: where the gRPC service fills a
//! `decide::Request` from a `CheckRequest` and the HTTP listener from a proxy's forwarded
//! headers, this filter fills it from Envoy's request header map ([`view::request_view`]) and
//! calls `decide::check`, the function the other front doors call. The answer is applied in
//! place: a denial becomes Envoy's local reply (status, JSON body, `WWW-Authenticate`,
//! `Retry-After`), an allow sets the identity headers and removes the client's copies.
//!
//! - Configuration: the filter configuration is a scopegate TOML document, compiled by
//!   `config::compile_module_config` (what `check-config` checks, less the listener keys). Each
//!   Envoy filter configuration (a new bootstrap, an xDS update) is a new [`Filter`] config with
//!   its own keys, token cache and background thread; the old one ends when Envoy drops it.
//! - Keys: a background thread per filter configuration runs the library's JWKS refreshers on a
//!   current-thread runtime; workers read the key sets' snapshots lock-free. A worker never
//!   waits: a decision that would (an unknown `kid` refetch) is handed to that runtime, the
//!   request is held (`StopIteration`), and Envoy's scheduler brings the answer back to the
//!   worker, within the configuration's `unknown_kid_wait_ms` and the Check deadline.
//! - Metrics: `checks_total` (labels `decision`, `status`, `reason`, `rule`) as an Envoy
//!   counter in the filter's `metrics_namespace`.
//! - Panics: every event hook runs under `catch_unwind`; a panic while deciding answers the
//!   request 503 (fail closed), anywhere else it is logged, and no unwind reaches Envoy.

pub mod abi;
pub mod view;

use std::ffi::{c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use scopegate::auth::jwks::{self, Jwks};
use scopegate::config::{Config, compile_module_config};
use scopegate::decide::{self, Generation, Verdict};
use scopegate::telemetry::metrics::{Metrics, Transport};

use abi::{Callbacks, EnvoyBuffer, ModuleBuffer, ModuleHttpHeader};

/// How long a new filter configuration waits for its issuers' first key fetches before Envoy
/// takes it (requests before the keys arrive are answered 503 with `Retry-After`).
const FIRST_FETCH_WAIT: Duration = Duration::from_secs(3);

/// The scheduler event that brings a decision finished on the background runtime back to the
/// worker.
const DECIDED_EVENT: u64 = 1;

/// The Envoy counter's labels, in order.
const CHECK_LABELS: [&str; 4] = ["decision", "status", "reason", "rule"];

/// One filter configuration: what every request of its filter chain is decided with.
pub struct Filter {
    generation: Arc<Generation>,
    metrics: Metrics,
    background: Background,
    /// The Envoy counter `checks_total`, when Envoy defined it.
    checks_counter: Option<usize>,
}

/// The thread that runs the key refreshers and the decisions that wait; stopped and joined
/// when the filter configuration is destroyed.
struct Background {
    runtime: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Why a filter configuration was refused.
#[derive(Debug)]
pub struct ConfigRefused(String);

impl std::fmt::Display for ConfigRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Filter {
    /// Compiles `text` and starts the key refreshers of its issuers on a background thread,
    /// waiting up to 3 s for their first fetches.
    pub fn new(text: &str) -> Result<Filter, ConfigRefused> {
        let config = compile_module_config(text, "dynamic module filter_config")
            .map_err(|e| ConfigRefused(e.to_string()))?;
        let config = Arc::new(config);
        let metrics = Metrics::new();
        let fetched = Arc::new(tokio::sync::Notify::new());
        let mut refreshers = Vec::new();
        let mut key_sets = Vec::new();
        for issuer in config.issuers() {
            let client = jwks::http_client(&issuer.jwks).map_err(|e| {
                ConfigRefused(format!(
                    "issuer {}: cannot build its HTTP client: {e}",
                    issuer.expectations.issuer
                ))
            })?;
            let set = Jwks::with_observer(
                issuer.jwks.clone(),
                Arc::clone(&fetched),
                metrics.issuer(&issuer.expectations.issuer),
            );
            refreshers.push((set.clone(), client));
            key_sets.push(set);
        }
        let background = Background::start(refreshers)?;
        let waits: Vec<Jwks> = key_sets.clone();
        let (done, first) = std::sync::mpsc::channel();
        background.runtime.spawn(async move {
            for set in &waits {
                set.first_attempt(FIRST_FETCH_WAIT).await;
            }
            let _ = done.send(());
        });
        let _ = first.recv_timeout(FIRST_FETCH_WAIT + Duration::from_millis(500));
        Ok(Filter {
            generation: Arc::new(Generation::new(config, key_sets)),
            metrics,
            background,
            checks_counter: None,
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        self.generation.config()
    }
}

impl Background {
    fn start(
        refreshers: Vec<(Jwks, scopegate::net::outbound::Client)>,
    ) -> Result<Background, ConfigRefused> {
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("scopegate-keys".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = handle_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = handle_tx.send(Ok(runtime.handle().clone()));
                runtime.block_on(async move {
                    let (stop_all, _) = tokio::sync::watch::channel(false);
                    for (set, client) in refreshers {
                        let mut stop = stop_all.subscribe();
                        tokio::spawn(async move {
                            // A refresher that panicked is restarted, never left dead while
                            // requests count on it.
                            loop {
                                let shutdown = {
                                    let mut stop = stop.clone();
                                    async move {
                                        let _ = stop.wait_for(|s| *s).await;
                                    }
                                };
                                let run = tokio::spawn(
                                    set.clone().run_refresher(client.clone(), shutdown),
                                );
                                let _ = run.await;
                                if *stop.borrow_and_update() {
                                    break;
                                }
                                set.refresher_stopped();
                                tokio::time::sleep(Duration::from_secs(1)).await;
                            }
                        });
                    }
                    let _ = stopped.await;
                    let _ = stop_all.send(true);
                });
            })
            .map_err(|e| ConfigRefused(format!("cannot start the key thread: {e}")))?;
        let runtime = handle_rx
            .recv()
            .map_err(|_| ConfigRefused("the key thread ended before its runtime started".into()))?
            .map_err(|e| ConfigRefused(format!("cannot start the key runtime: {e}")))?;
        Ok(Background {
            runtime,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

/// A decided request, owned, so it can cross from the background runtime to the worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Let through, with these headers set (`(name, value)`) and removed.
    Allow {
        /// Set, overwriting any client copy.
        set: Vec<(String, String)>,
        /// Removed.
        remove: Vec<String>,
    },
    /// Answered here.
    Deny {
        /// HTTP status.
        status: u16,
        /// Response headers.
        headers: Vec<(String, String)>,
        /// JSON body.
        body: String,
    },
}

/// An answer and the labels it is counted under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// What the request gets.
    pub answer: Answer,
    /// `decision`, `status`, `reason`, `rule`.
    pub labels: [String; 4],
}

/// The 503 a request gets when deciding it failed inside the module (a panic, a query token
/// source the filter cannot strip): fail closed, in-band.
pub fn unavailable(why: &str) -> Outcome {
    let body = serde_json::json!({"error": "temporarily_unavailable", "message": why}).to_string();
    Outcome {
        answer: Answer::Deny {
            status: 503,
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("retry-after".into(), "1".into()),
            ],
            body,
        },
        labels: [
            "deny".into(),
            "503".into(),
            "module_failure".into(),
            "none".into(),
        ],
    }
}

/// The owned outcome of a decided request.
pub fn outcome(decided: &decide::Decided<'_>) -> Outcome {
    let labels = [
        format!("{:?}", decided.labels.decision),
        decided.labels.status.to_string(),
        format!("{:?}", decided.labels.reason),
        decided.labels.rule.to_string(),
    ];
    let answer = match &decided.verdict {
        Verdict::Allow { remove_query, .. } if !remove_query.is_empty() => {
            // The filter does not rewrite :path, so a token in the URL would reach the
            // upstream. The configuration refuses query sources; were one to get here, the
            // request is refused rather than let through with it.
            return unavailable("query token sources are not supported by the Envoy module");
        }
        Verdict::Allow { set, remove, .. } => Answer::Allow {
            set: set
                .iter()
                .map(|(name, value)| ((*name).to_owned(), value.clone()))
                .collect(),
            remove: remove.iter().map(|name| (*name).to_owned()).collect(),
        },
        Verdict::Deny(denied) => Answer::Deny {
            status: denied.status,
            headers: denied
                .headers
                .iter()
                .map(|(name, value)| ((*name).to_owned(), value.clone()))
                .collect(),
            body: denied.body.clone(),
        },
    };
    Outcome { answer, labels }
}

/// The request headers, copied out of Envoy's map so a decision may outlive the hook: every
/// name and value in one buffer (two allocations per request, whatever the header count).
#[derive(Debug, Default, Clone)]
pub struct OwnedHeaders {
    bytes: Vec<u8>,
    /// Per header: where its name starts, the name's length, the value's length (the value
    /// follows the name).
    spans: Vec<(usize, usize, usize)>,
}

impl OwnedHeaders {
    /// Room for `count` headers.
    pub fn with_capacity(count: usize) -> OwnedHeaders {
        OwnedHeaders {
            bytes: Vec::with_capacity(count * 32),
            spans: Vec::with_capacity(count),
        }
    }

    /// Appends one header.
    pub fn push(&mut self, name: &[u8], value: &[u8]) {
        self.spans.push((self.bytes.len(), name.len(), value.len()));
        self.bytes.extend_from_slice(name);
        self.bytes.extend_from_slice(value);
    }

    /// The headers as `(name, value)` pairs, in order.
    pub fn pairs(&self) -> Vec<(&[u8], &[u8])> {
        self.spans
            .iter()
            .map(|&(at, name, value)| {
                (
                    &self.bytes[at..at + name],
                    &self.bytes[at + name..at + name + value],
                )
            })
            .collect()
    }
}

/// Decides `headers` with `generation`: the view, then `decide::check` (or
/// `decide::refuse_unreadable`), counted in `metrics` under the module's transport.
pub async fn decide_owned(
    generation: Arc<Generation>,
    metrics: Metrics,
    headers: OwnedHeaders,
    started: Instant,
) -> Outcome {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let pairs = headers.pairs();
    match view::request_view(&pairs) {
        Ok(request) => {
            let decided = decide::check(
                &generation,
                &request,
                now,
                Transport::module,
                &metrics,
                started,
            )
            .await;
            outcome(&decided)
        }
        Err(why) => {
            let seen = scopegate::decide::Request::default();
            let decided = decide::refuse_unreadable(
                &generation,
                &seen,
                why,
                Transport::module,
                &metrics,
                started,
            );
            outcome(&decided)
        }
    }
}

type Deciding = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// One HTTP stream's filter.
struct Stream {
    filter: Arc<Filter>,
    /// A decision finished on the background runtime, waiting for the scheduler's event.
    pending: Arc<Mutex<Option<Outcome>>>,
    /// Where the request stands ([`OPEN`], [`HELD`], [`ANSWERED`]): read by the body and
    /// trailer hooks, which must not let a held request through (Envoy resumes a stopped
    /// request when a later hook says Continue).
    state: AtomicU8,
}

/// Let through (or not yet seen): the body and trailers follow the headers.
const OPEN: u8 = 0;
/// Waiting for a decision on the key runtime: the body is buffered, nothing goes on.
const HELD: u8 = 1;
/// Answered here (a local reply): nothing goes on.
const ANSWERED: u8 = 2;

/// The scheduler Envoy made for one held request. Dropping it commits the decided event (once)
/// and deletes it: however the task that holds it ends (its outcome stored, a panic, the
/// runtime shutting down), the held request is woken, and without an outcome it is answered
/// 503 rather than held for ever.
struct Scheduler {
    handle: *mut c_void,
    committed: bool,
}

// SAFETY: Envoy documents the scheduler's commit as safe from any thread; delete only frees
// Envoy's handle (which holds the filter weakly) and is called once.
unsafe impl Send for Scheduler {}

impl Scheduler {
    fn new(handle: *mut c_void) -> Scheduler {
        Scheduler {
            handle,
            committed: false,
        }
    }

    fn commit(&mut self) {
        if self.committed {
            return;
        }
        self.committed = true;
        if let Some(callbacks) = Callbacks::get() {
            // SAFETY: a live scheduler made by scheduler_new; a no-op once the stream is gone.
            unsafe { (callbacks.scheduler_commit)(self.handle, DECIDED_EVENT) }
        }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.commit();
        if let Some(callbacks) = Callbacks::get() {
            // SAFETY: made by scheduler_new, deleted exactly once here.
            unsafe { (callbacks.scheduler_delete)(self.handle) }
        }
    }
}

/// Reads the request header map of `filter_envoy`.
///
/// # Safety
/// `filter_envoy` must be the live filter of the current hook.
unsafe fn request_headers(
    callbacks: &Callbacks,
    filter_envoy: *mut c_void,
) -> Option<OwnedHeaders> {
    // SAFETY: per the function's contract.
    let count = unsafe { (callbacks.get_headers_size)(filter_envoy, abi::REQUEST_HEADER) };
    let mut entries = vec![abi::EnvoyHttpHeader::EMPTY; count];
    // SAFETY: `entries` has room for `count` headers, as get_headers requires.
    if count > 0
        && !unsafe {
            (callbacks.get_headers)(filter_envoy, abi::REQUEST_HEADER, entries.as_mut_ptr())
        }
    {
        return None;
    }
    let mut headers = OwnedHeaders::with_capacity(count);
    for h in &entries {
        // SAFETY: Envoy's header bytes, valid until the end of this hook; copied now.
        let (name, value) = unsafe {
            (
                EnvoyBuffer {
                    ptr: h.key_ptr,
                    length: h.key_length,
                }
                .bytes(),
                EnvoyBuffer {
                    ptr: h.value_ptr,
                    length: h.value_length,
                }
                .bytes(),
            )
        };
        headers.push(name, value);
    }
    Some(headers)
}

/// Applies `outcome` to the held or current request: the local reply of a denial, or the
/// identity headers of an allow (then, when `resume`, the request goes on).
///
/// # Safety
/// `filter_envoy` must be the live filter of the current hook.
unsafe fn apply(
    callbacks: &Callbacks,
    filter: &Filter,
    filter_envoy: *mut c_void,
    outcome: &Outcome,
    resume: bool,
) -> u32 {
    if let Some(id) = filter.checks_counter {
        let mut values: Vec<ModuleBuffer> = outcome
            .labels
            .iter()
            .map(|v| ModuleBuffer::of(v.as_bytes()))
            .collect();
        // SAFETY: the counter was defined with as many labels; the buffers outlive the call.
        unsafe {
            (callbacks.increment_counter)(filter_envoy, id, values.as_mut_ptr(), values.len(), 1)
        };
    }
    match &outcome.answer {
        Answer::Allow { set, remove } => {
            for name in remove {
                // SAFETY: a null value removes every copy of the header.
                unsafe {
                    (callbacks.set_header)(
                        filter_envoy,
                        abi::REQUEST_HEADER,
                        ModuleBuffer::of(name.as_bytes()),
                        ModuleBuffer::NULL,
                    )
                };
            }
            for (name, value) in set {
                // SAFETY: set replaces every copy the client sent; the buffers outlive the call.
                let done = unsafe {
                    (callbacks.set_header)(
                        filter_envoy,
                        abi::REQUEST_HEADER,
                        ModuleBuffer::of(name.as_bytes()),
                        ModuleBuffer::of(value.as_bytes()),
                    )
                };
                if !done {
                    // An identity header that cannot be set must not let the client's copy
                    // (or none) through: fail closed.
                    let failed = unavailable("the identity headers could not be set");
                    // SAFETY: as above.
                    return unsafe {
                        apply(
                            callbacks,
                            filter,
                            filter_envoy,
                            &Outcome {
                                labels: outcome.labels.clone(),
                                ..failed
                            },
                            resume,
                        )
                    };
                }
            }
            if resume {
                // SAFETY: the request was held by this filter's StopIteration.
                unsafe { (callbacks.continue_decoding)(filter_envoy) };
            }
            abi::HEADERS_CONTINUE
        }
        Answer::Deny {
            status,
            headers,
            body,
        } => {
            let mut wire: Vec<ModuleHttpHeader> = headers
                .iter()
                .map(|(name, value)| ModuleHttpHeader {
                    key_ptr: name.as_ptr().cast(),
                    key_length: name.len(),
                    value_ptr: value.as_ptr().cast(),
                    value_length: value.len(),
                })
                .collect();
            // SAFETY: the headers and body outlive the call; Envoy copies them.
            unsafe {
                (callbacks.send_response)(
                    filter_envoy,
                    u32::from(*status),
                    wire.as_mut_ptr(),
                    wire.len(),
                    ModuleBuffer::of(body.as_bytes()),
                    ModuleBuffer::of(b"scopegate_denied"),
                )
            };
            abi::HEADERS_STOP_ITERATION
        }
    }
}

/// Runs `body` so that no panic unwinds into Envoy: a panic gives `fallback`, logged.
fn guarded<T>(hook: &str, fallback: T, body: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(value) => value,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_owned());
            abi::log(
                abi::LOG_ERROR,
                &format!("scopegate module: {hook} panicked: {message}"),
            );
            fallback
        }
    }
}

// ------------------------------------------------------------------------------------------
// Event hooks (abi.h, Envoy 1.40.0). Each one is guarded.
// ------------------------------------------------------------------------------------------

/// Program init: resolves Envoy's callbacks and returns the ABI version; null (the module is
/// unloaded) when a callback is missing, as in an Envoy of another ABI.
#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    guarded("program init", std::ptr::null(), || {
        match Callbacks::load() {
            Ok(_) => abi::ABI_VERSION.as_ptr(),
            Err(e) => {
                eprintln!("scopegate module: {e}");
                std::ptr::null()
            }
        }
    })
}

/// A new filter configuration: the TOML compiled, refreshers started, `checks_total` defined.
/// Null refuses it (Envoy rejects the configuration), with the reason logged.
///
/// # Safety
/// Envoy's contract: `config` is valid for the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    config_envoy: *mut c_void,
    _name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> *const c_void {
    guarded("filter config new", std::ptr::null(), || {
        // SAFETY: Envoy's buffer, valid during this hook.
        let bytes = unsafe { config.bytes() };
        let text = match std::str::from_utf8(bytes) {
            Ok(text) => text,
            Err(_) => {
                abi::log(
                    abi::LOG_ERROR,
                    "scopegate module: the filter configuration is not UTF-8 text",
                );
                return std::ptr::null();
            }
        };
        let mut filter = match Filter::new(text) {
            Ok(filter) => filter,
            Err(e) => {
                abi::log(
                    abi::LOG_ERROR,
                    &format!("scopegate module: configuration refused: {e}"),
                );
                return std::ptr::null();
            }
        };
        if let Some(callbacks) = Callbacks::get() {
            let mut names: Vec<ModuleBuffer> = CHECK_LABELS
                .iter()
                .map(|n| ModuleBuffer::of(n.as_bytes()))
                .collect();
            let mut id = 0usize;
            // SAFETY: Envoy's config pointer of this hook; the buffers outlive the call.
            let result = unsafe {
                (callbacks.define_counter)(
                    config_envoy,
                    ModuleBuffer::of(b"checks_total"),
                    names.as_mut_ptr(),
                    names.len(),
                    &mut id,
                )
            };
            if result == abi::METRICS_SUCCESS {
                filter.checks_counter = Some(id);
            } else {
                abi::log(
                    abi::LOG_WARN,
                    "scopegate module: checks_total could not be defined",
                );
            }
        }
        for warning in filter.config().warnings() {
            abi::log(abi::LOG_WARN, &format!("scopegate module: {warning}"));
        }
        Arc::into_raw(Arc::new(filter)).cast()
    })
}

/// The filter configuration is gone: its refreshers stop and the key thread is joined (when
/// the last stream holding it ends).
///
/// # Safety
/// `config` is a pointer returned by `..._config_new`, destroyed once.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(config: *const c_void) {
    guarded("filter config destroy", (), || {
        if !config.is_null() {
            // SAFETY: made by Arc::into_raw in config_new, released once here.
            drop(unsafe { Arc::from_raw(config.cast::<Filter>()) });
        }
    })
}

/// Per-route configurations are not supported: refused.
#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_new(
    _name: EnvoyBuffer,
    _config: EnvoyBuffer,
) -> *const c_void {
    abi::log(
        abi::LOG_ERROR,
        "scopegate module: per-route configuration is not supported; configure the rules in the filter's TOML",
    );
    std::ptr::null()
}

/// Never called: no per-route configuration is ever made.
#[unsafe(no_mangle)]
pub extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_destroy(
    _config: *const c_void,
) {
}

/// A new stream of a filter configuration.
///
/// # Safety
/// `config` is a live pointer returned by `..._config_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: *const c_void,
    _filter_envoy: *mut c_void,
) -> *const c_void {
    guarded("filter new", std::ptr::null(), || {
        if config.is_null() {
            return std::ptr::null();
        }
        let config = config.cast::<Filter>();
        // SAFETY: a live Arc made by config_new; one more strong count for the stream.
        let filter = unsafe {
            Arc::increment_strong_count(config);
            Arc::from_raw(config)
        };
        Box::into_raw(Box::new(Stream {
            filter,
            pending: Arc::new(Mutex::new(None)),
            state: AtomicU8::new(OPEN),
        }))
        .cast()
    })
}

/// The request headers: decided now, or held while the decision waits on the background
/// runtime.
///
/// # Safety
/// Envoy's pointers of this stream.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    filter_envoy: *mut c_void,
    stream: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    let Some(callbacks) = Callbacks::get() else {
        return abi::HEADERS_STOP_ITERATION;
    };
    // A panic here answers 503 rather than let the request through.
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: Envoy's pointers of this hook.
        unsafe { request_headers_hook(callbacks, filter_envoy, stream) }
    }));
    match outcome {
        Ok(status) => status,
        Err(_) => {
            abi::log(
                abi::LOG_ERROR,
                "scopegate module: deciding a request panicked; answered 503",
            );
            guarded("panic answer", abi::HEADERS_STOP_ITERATION, || {
                let failed = unavailable("the request could not be decided");
                // SAFETY: as above.
                let Some(stream) = (unsafe { stream.cast::<Stream>().as_ref() }) else {
                    return abi::HEADERS_STOP_ITERATION;
                };
                stream.state.store(ANSWERED, Ordering::Relaxed);
                // SAFETY: as above.
                unsafe { apply(callbacks, &stream.filter, filter_envoy, &failed, false) };
                abi::HEADERS_STOP_ITERATION
            })
        }
    }
}

/// # Safety
/// Envoy's pointers of this stream.
unsafe fn request_headers_hook(
    callbacks: &'static Callbacks,
    filter_envoy: *mut c_void,
    stream: *const c_void,
) -> u32 {
    // SAFETY: made by filter_new, live until filter_destroy.
    let Some(stream) = (unsafe { stream.cast::<Stream>().as_ref() }) else {
        return abi::HEADERS_STOP_ITERATION;
    };
    let filter = &stream.filter;
    let started = Instant::now();
    // SAFETY: Envoy's pointer of this hook.
    let Some(headers) = (unsafe { request_headers(callbacks, filter_envoy) }) else {
        let failed = unavailable("the request headers could not be read");
        // SAFETY: as above.
        return unsafe { apply(callbacks, filter, filter_envoy, &failed, false) };
    };
    let mut deciding: Deciding = Box::pin(decide_owned(
        Arc::clone(&filter.generation),
        filter.metrics.clone(),
        headers,
        started,
    ));
    // Polled once here, inside the key runtime's context (the deadline's timer is that
    // runtime's): a decision that needs nothing from the network is done in this poll.
    let first = {
        let _context = filter.background.runtime.enter();
        deciding
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
    };
    match first {
        Poll::Ready(outcome) => {
            // SAFETY: as above.
            let status = unsafe { apply(callbacks, filter, filter_envoy, &outcome, false) };
            if status != abi::HEADERS_CONTINUE {
                stream.state.store(ANSWERED, Ordering::Relaxed);
            }
            status
        }
        Poll::Pending => {
            stream.state.store(HELD, Ordering::Relaxed);
            // It waits (an unknown kid's refetch): the rest runs on the key runtime, and the
            // scheduler brings the outcome back to this worker.
            // SAFETY: Envoy's pointer of this hook.
            let mut scheduler = Scheduler::new(unsafe { (callbacks.scheduler_new)(filter_envoy) });
            let pending = Arc::clone(&stream.pending);
            filter.background.runtime.spawn(async move {
                let outcome = deciding.await;
                if let Ok(mut slot) = pending.lock() {
                    *slot = Some(outcome);
                }
                scheduler.commit();
                drop(scheduler);
            });
            abi::HEADERS_STOP_ITERATION
        }
    }
}

/// A decision finished on the key runtime, back on this stream's worker: applied.
///
/// # Safety
/// Envoy's pointers of this stream.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    filter_envoy: *mut c_void,
    stream: *const c_void,
    event: u64,
) {
    let Some(callbacks) = Callbacks::get() else {
        return;
    };
    let done = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: made by filter_new, live until filter_destroy.
        let Some(stream) = (unsafe { stream.cast::<Stream>().as_ref() }) else {
            return;
        };
        if event != DECIDED_EVENT {
            return;
        }
        let outcome = stream.pending.lock().ok().and_then(|mut slot| slot.take());
        let outcome = outcome.unwrap_or_else(|| unavailable("the request could not be decided"));
        let allowed = matches!(outcome.answer, Answer::Allow { .. });
        // Before the request goes on: continue_decoding may run the body hooks at once.
        stream
            .state
            .store(if allowed { OPEN } else { ANSWERED }, Ordering::Relaxed);
        // SAFETY: Envoy's pointer of this hook; the request is held by StopIteration.
        let status = unsafe { apply(callbacks, &stream.filter, filter_envoy, &outcome, true) };
        if status != abi::HEADERS_CONTINUE {
            stream.state.store(ANSWERED, Ordering::Relaxed);
        }
    }));
    if done.is_err() {
        // The held request is answered rather than held for ever.
        abi::log(
            abi::LOG_ERROR,
            "scopegate module: resuming a held request panicked; answered 503",
        );
        guarded("panic answer", (), || {
            // SAFETY: made by filter_new, live until filter_destroy.
            if let Some(stream) = unsafe { stream.cast::<Stream>().as_ref() } {
                stream.state.store(ANSWERED, Ordering::Relaxed);
                let failed = unavailable("the request could not be decided");
                // SAFETY: Envoy's pointer of this hook.
                unsafe { apply(callbacks, &stream.filter, filter_envoy, &failed, false) };
            }
        });
    }
}

/// The stream is gone.
///
/// # Safety
/// `stream` was made by `..._filter_new` and is destroyed once.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_destroy(stream: *const c_void) {
    guarded("filter destroy", (), || {
        if !stream.is_null() {
            // SAFETY: made by Box::into_raw in filter_new, freed once here.
            drop(unsafe { Box::from_raw(stream.cast::<Stream>().cast_mut()) });
        }
    })
}

/// The hooks the filter has no use for: everything after the request headers goes on.
macro_rules! pass {
    ($name:ident ( $($arg:ident : $ty:ty),* ) -> $ret:ty = $value:expr) => {
        /// Not used by the filter: continues.
        #[unsafe(no_mangle)]
        pub extern "C" fn $name($($arg: $ty),*) -> $ret {
            $(let _ = $arg;)*
            $value
        }
    };
    ($name:ident ( $($arg:ident : $ty:ty),* )) => {
        /// Not used by the filter.
        #[unsafe(no_mangle)]
        pub extern "C" fn $name($($arg: $ty),*) {
            $(let _ = $arg;)*
        }
    };
}

/// The state of the stream behind `stream`, [`ANSWERED`] when there is none.
///
/// # Safety
/// `stream` is null or was made by `..._filter_new` and not yet destroyed.
unsafe fn state_of(stream: *const c_void) -> u8 {
    // SAFETY: per the function's contract.
    unsafe { stream.cast::<Stream>().as_ref() }
        .map_or(ANSWERED, |s| s.state.load(Ordering::Relaxed))
}

/// A request body chunk: passed on only once the request is let through; buffered while it is
/// held (so the body waits for the decision), dropped once it was answered.
///
/// # Safety
/// Envoy's pointers of this stream.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    _filter_envoy: *mut c_void,
    stream: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    // SAFETY: Envoy's pointer of this stream.
    guarded("request body", abi::BODY_STOP_NO_BUFFER, || {
        match unsafe { state_of(stream) } {
            OPEN => abi::CONTINUE,
            HELD => abi::BODY_STOP_AND_BUFFER,
            _ => abi::BODY_STOP_NO_BUFFER,
        }
    })
}

/// Request trailers: as the body, they never let a held or answered request through.
///
/// # Safety
/// Envoy's pointers of this stream.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    _filter_envoy: *mut c_void,
    stream: *const c_void,
) -> u32 {
    // SAFETY: Envoy's pointer of this stream.
    guarded(
        "request trailers",
        abi::TRAILERS_STOP_ITERATION,
        || match unsafe { state_of(stream) } {
            OPEN => abi::CONTINUE,
            _ => abi::TRAILERS_STOP_ITERATION,
        },
    )
}
pass!(envoy_dynamic_module_on_http_filter_response_headers(f: *mut c_void, m: *const c_void, eos: bool) -> u32 = abi::CONTINUE);
pass!(envoy_dynamic_module_on_http_filter_response_body(f: *mut c_void, m: *const c_void, eos: bool) -> u32 = abi::CONTINUE);
pass!(envoy_dynamic_module_on_http_filter_response_trailers(f: *mut c_void, m: *const c_void) -> u32 = abi::CONTINUE);
pass!(envoy_dynamic_module_on_http_filter_stream_complete(f: *mut c_void, m: *const c_void));
pass!(envoy_dynamic_module_on_http_filter_http_callout_done(f: *mut c_void, m: *const c_void, id: u64, result: u32, headers: *mut abi::EnvoyHttpHeader, headers_size: usize, body: *mut EnvoyBuffer, body_size: usize));
pass!(envoy_dynamic_module_on_http_filter_http_stream_headers(f: *mut c_void, m: *const c_void, id: u64, headers: *mut abi::EnvoyHttpHeader, headers_size: usize, end: bool));
pass!(envoy_dynamic_module_on_http_filter_http_stream_data(f: *mut c_void, m: *const c_void, id: u64, data: *const EnvoyBuffer, count: usize, end: bool));
pass!(envoy_dynamic_module_on_http_filter_http_stream_trailers(f: *mut c_void, m: *const c_void, id: u64, trailers: *mut abi::EnvoyHttpHeader, size: usize));
pass!(envoy_dynamic_module_on_http_filter_http_stream_complete(f: *mut c_void, m: *const c_void, id: u64));
pass!(envoy_dynamic_module_on_http_filter_http_stream_reset(f: *mut c_void, m: *const c_void, id: u64, reason: u32));
pass!(envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(f: *mut c_void, m: *const c_void));
pass!(envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(f: *mut c_void, m: *const c_void));

#[cfg(test)]
mod tests;
