//! The part of Envoy 1.40.0's dynamic-module ABI (`source/extensions/dynamic_modules/abi/abi.h`
//! at that release, ABI version [`ABI_VERSION`]) that the HTTP filter uses, written from the
//! header's documentation: the `#[repr(C)]` types, and the callbacks Envoy implements.
//!
//! The callbacks are looked up once, in the Envoy process, when the module is loaded
//! ([`Callbacks::load`]), rather than linked: the module then carries no undefined symbol, a
//! missing callback fails the load with its name instead of crashing a request, and the unit
//! tests link without Envoy. The event hooks the module implements are in `lib.rs`.

use std::ffi::{CStr, c_char, c_void};
use std::sync::OnceLock;

/// The ABI version the module was written against: Envoy 1.40.0's
/// `ENVOY_DYNAMIC_MODULES_ABI_VERSION`. Envoy logs "matched" for it (and a deprecation
/// warning for any other version it still accepts).
pub const ABI_VERSION: &CStr = c"v0.2.0";

/// `envoy_dynamic_module_type_envoy_buffer`: bytes owned by Envoy.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct EnvoyBuffer {
    /// First byte (may be null when `length` is 0).
    pub ptr: *const c_char,
    /// Length in bytes.
    pub length: usize,
}

impl EnvoyBuffer {
    /// A null buffer, for Envoy to fill.
    pub const EMPTY: EnvoyBuffer = EnvoyBuffer {
        ptr: std::ptr::null(),
        length: 0,
    };

    /// The bytes.
    ///
    /// # Safety
    /// `ptr` must point at `length` readable bytes that stay valid for `'a` (Envoy's buffers
    /// are valid until the end of the event hook they were handed to).
    pub unsafe fn bytes<'a>(self) -> &'a [u8] {
        if self.ptr.is_null() || self.length == 0 {
            &[]
        } else {
            // SAFETY: the caller vouches for the pointer and length.
            unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.length) }
        }
    }
}

/// `envoy_dynamic_module_type_module_buffer`: bytes owned by the module, read by Envoy during
/// the call they are passed to.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ModuleBuffer {
    /// First byte.
    pub ptr: *const c_char,
    /// Length in bytes.
    pub length: usize,
}

impl ModuleBuffer {
    /// A buffer over `bytes` (which must outlive the call it is passed to).
    pub fn of(bytes: &[u8]) -> ModuleBuffer {
        ModuleBuffer {
            ptr: bytes.as_ptr().cast(),
            length: bytes.len(),
        }
    }

    /// The null buffer (for `set_header`: remove the header).
    pub const NULL: ModuleBuffer = ModuleBuffer {
        ptr: std::ptr::null(),
        length: 0,
    };
}

/// `envoy_dynamic_module_type_module_http_header`: a header the module hands Envoy.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ModuleHttpHeader {
    /// Name bytes.
    pub key_ptr: *const c_char,
    /// Name length.
    pub key_length: usize,
    /// Value bytes.
    pub value_ptr: *const c_char,
    /// Value length.
    pub value_length: usize,
}

/// `envoy_dynamic_module_type_envoy_http_header`: a header in one of Envoy's header maps.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct EnvoyHttpHeader {
    /// Name bytes.
    pub key_ptr: *const c_char,
    /// Name length.
    pub key_length: usize,
    /// Value bytes.
    pub value_ptr: *const c_char,
    /// Value length.
    pub value_length: usize,
}

impl EnvoyHttpHeader {
    /// A null entry, for Envoy to fill.
    pub const EMPTY: EnvoyHttpHeader = EnvoyHttpHeader {
        key_ptr: std::ptr::null(),
        key_length: 0,
        value_ptr: std::ptr::null(),
        value_length: 0,
    };
}

/// `envoy_dynamic_module_type_http_header_type_RequestHeader` (a C enum: `int`).
pub const REQUEST_HEADER: u32 = 0;

/// `..._on_http_filter_request_headers_status_Continue`.
pub const HEADERS_CONTINUE: u32 = 0;
/// `..._on_http_filter_request_headers_status_StopIteration`: the filter resumes the request
/// itself (`continue_decoding`) or answers it.
pub const HEADERS_STOP_ITERATION: u32 = 1;
/// `Continue` of the body, trailers and local-reply statuses.
pub const CONTINUE: u32 = 0;
/// `..._on_http_filter_request_body_status_StopIterationAndBuffer`.
pub const BODY_STOP_AND_BUFFER: u32 = 1;
/// `..._on_http_filter_request_body_status_StopIterationNoBuffer`.
pub const BODY_STOP_NO_BUFFER: u32 = 3;
/// `..._on_http_filter_request_trailers_status_StopIteration`.
pub const TRAILERS_STOP_ITERATION: u32 = 1;
/// `envoy_dynamic_module_type_metrics_result_Success`.
pub const METRICS_SUCCESS: u32 = 0;

/// `envoy_dynamic_module_type_log_level_Warn`.
pub const LOG_WARN: u32 = 3;
/// `envoy_dynamic_module_type_log_level_Error`.
pub const LOG_ERROR: u32 = 4;
/// `envoy_dynamic_module_type_log_level_Info`.
pub const LOG_INFO: u32 = 2;

/// Signatures of the callbacks, as abi.h declares them.
#[allow(missing_docs)]
pub type GetHeadersSize = unsafe extern "C" fn(*mut c_void, u32) -> usize;
#[allow(missing_docs)]
pub type GetHeaders = unsafe extern "C" fn(*mut c_void, u32, *mut EnvoyHttpHeader) -> bool;
#[allow(missing_docs)]
pub type SetHeader = unsafe extern "C" fn(*mut c_void, u32, ModuleBuffer, ModuleBuffer) -> bool;
#[allow(missing_docs)]
pub type SendResponse = unsafe extern "C" fn(
    *mut c_void,
    u32,
    *mut ModuleHttpHeader,
    usize,
    ModuleBuffer,
    ModuleBuffer,
);
#[allow(missing_docs)]
pub type ContinueDecoding = unsafe extern "C" fn(*mut c_void);
#[allow(missing_docs)]
pub type SchedulerNew = unsafe extern "C" fn(*mut c_void) -> *mut c_void;
#[allow(missing_docs)]
pub type SchedulerCommit = unsafe extern "C" fn(*mut c_void, u64);
#[allow(missing_docs)]
pub type SchedulerDelete = unsafe extern "C" fn(*mut c_void);
#[allow(missing_docs)]
pub type DefineCounter =
    unsafe extern "C" fn(*mut c_void, ModuleBuffer, *mut ModuleBuffer, usize, *mut usize) -> u32;
#[allow(missing_docs)]
pub type IncrementCounter =
    unsafe extern "C" fn(*mut c_void, usize, *mut ModuleBuffer, usize, u64) -> u32;
#[allow(missing_docs)]
pub type Log = unsafe extern "C" fn(u32, ModuleBuffer);

/// The callbacks of Envoy's the module calls, resolved in the Envoy process.
#[derive(Debug, Clone, Copy)]
pub struct Callbacks {
    /// `envoy_dynamic_module_callback_http_get_headers_size(filter, header_type) -> size_t`.
    pub get_headers_size: GetHeadersSize,
    /// `envoy_dynamic_module_callback_http_get_headers(filter, header_type, result) -> bool`.
    pub get_headers: GetHeaders,
    /// `envoy_dynamic_module_callback_http_set_header(filter, header_type, key, value) ->
    /// bool`; a null value removes every copy.
    pub set_header: SetHeader,
    /// `envoy_dynamic_module_callback_http_send_response(filter, status, headers, count, body,
    /// details)`.
    pub send_response: SendResponse,
    /// `envoy_dynamic_module_callback_http_filter_continue_decoding(filter)`.
    pub continue_decoding: ContinueDecoding,
    /// `envoy_dynamic_module_callback_http_filter_scheduler_new(filter) -> scheduler`.
    pub scheduler_new: SchedulerNew,
    /// `envoy_dynamic_module_callback_http_filter_scheduler_commit(scheduler, event_id)`: safe
    /// from any thread, a no-op once the filter is gone.
    pub scheduler_commit: SchedulerCommit,
    /// `envoy_dynamic_module_callback_http_filter_scheduler_delete(scheduler)`.
    pub scheduler_delete: SchedulerDelete,
    /// `envoy_dynamic_module_callback_http_filter_config_define_counter(config, name,
    /// label_names, count, id_out) -> metrics_result`.
    pub define_counter: DefineCounter,
    /// `envoy_dynamic_module_callback_http_filter_increment_counter(filter, id, label_values,
    /// count, value) -> metrics_result`.
    pub increment_counter: IncrementCounter,
    /// `envoy_dynamic_module_callback_log(level, message)`.
    pub log: Log,
}

static CALLBACKS: OnceLock<Callbacks> = OnceLock::new();

/// Looks `name` up among the symbols of the process (Envoy's binary exports its callbacks).
fn lookup(name: &CStr) -> Result<*mut c_void, String> {
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name has no other precondition.
    let symbol = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    if symbol.is_null() {
        Err(format!(
            "{} not found in the process",
            name.to_string_lossy()
        ))
    } else {
        Ok(symbol)
    }
}

macro_rules! resolve {
    ($name:literal, $ty:ty) => {{
        let symbol = lookup($name)?;
        // SAFETY: the symbol is Envoy's callback of that name, whose C signature (abi.h of
        // Envoy 1.40.0) the type spells out.
        unsafe { std::mem::transmute::<*mut c_void, $ty>(symbol) }
    }};
}

impl Callbacks {
    /// Resolves every callback once; the error names the first one missing.
    pub fn load() -> Result<&'static Callbacks, String> {
        if let Some(callbacks) = CALLBACKS.get() {
            return Ok(callbacks);
        }
        let callbacks = Callbacks {
            get_headers_size: resolve!(
                c"envoy_dynamic_module_callback_http_get_headers_size",
                GetHeadersSize
            ),
            get_headers: resolve!(
                c"envoy_dynamic_module_callback_http_get_headers",
                GetHeaders
            ),
            set_header: resolve!(c"envoy_dynamic_module_callback_http_set_header", SetHeader),
            send_response: resolve!(
                c"envoy_dynamic_module_callback_http_send_response",
                SendResponse
            ),
            continue_decoding: resolve!(
                c"envoy_dynamic_module_callback_http_filter_continue_decoding",
                ContinueDecoding
            ),
            scheduler_new: resolve!(
                c"envoy_dynamic_module_callback_http_filter_scheduler_new",
                SchedulerNew
            ),
            scheduler_commit: resolve!(
                c"envoy_dynamic_module_callback_http_filter_scheduler_commit",
                SchedulerCommit
            ),
            scheduler_delete: resolve!(
                c"envoy_dynamic_module_callback_http_filter_scheduler_delete",
                SchedulerDelete
            ),
            define_counter: resolve!(
                c"envoy_dynamic_module_callback_http_filter_config_define_counter",
                DefineCounter
            ),
            increment_counter: resolve!(
                c"envoy_dynamic_module_callback_http_filter_increment_counter",
                IncrementCounter
            ),
            log: resolve!(c"envoy_dynamic_module_callback_log", Log),
        };
        Ok(CALLBACKS.get_or_init(|| callbacks))
    }

    /// The callbacks, once [`Callbacks::load`] succeeded (at program init, before any hook).
    pub fn get() -> Option<&'static Callbacks> {
        CALLBACKS.get()
    }
}

/// Logs `message` through Envoy's `dynamic_modules` logger, when the callbacks are loaded.
pub fn log(level: u32, message: &str) {
    if let Some(callbacks) = Callbacks::get() {
        // SAFETY: the buffer outlives the call; Envoy copies the message.
        unsafe { (callbacks.log)(level, ModuleBuffer::of(message.as_bytes())) }
    }
}
