//! The proxy-wasm ABI calls made here rather than through the SDK: the request
//! headers as bytes (decoded by the core, `header_map`) and the request body, whose
//! SDK readers panic on a name that is not UTF-8 or on an unexpected status; a
//! local reply with its details, a property, the host's log level, which the SDK
//! cannot make or makes with a panic on an unexpected status.
#![allow(unsafe_code)] // the ABI call itself; everything after it is safe code.

use proxy_wasm::types::{BufferType, MapType, Status};

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_pairs(
        map_type: MapType,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> Status;
    fn proxy_get_buffer_bytes(
        buffer_type: BufferType,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> Status;
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> Status;
    fn proxy_set_property(path_data: *const u8, path_size: usize, value_data: *const u8, value_size: usize) -> Status;
    fn proxy_get_log_level(return_level: *mut u32) -> Status;
}

/// The request headers serialized (`header_map::decode` reads them), or None when
/// the host cannot give them (fail closed).
pub(super) fn request_headers() -> Option<Vec<u8>> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the host writes a pointer to `size` bytes it allocated through the
    // module's `proxy_on_memory_allocate` (a boxed slice of exactly that length),
    // whose ownership passes to us, as in the SDK's own `get_map_bytes`.
    let status = unsafe { proxy_get_header_map_pairs(MapType::HttpRequestHeaders, &mut data, &mut size) };
    if status != Status::Ok {
        return None;
    }
    if data.is_null() {
        return Some(Vec::new());
    }
    // SAFETY: see above; the buffer is reclaimed exactly once, here.
    Some(unsafe { Vec::from_raw_parts(data, size, size) })
}

/// The first `max_size` bytes of the buffered request body, or None when the host cannot give them.
pub(super) fn request_body(max_size: usize) -> Option<Vec<u8>> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: as for the headers: the host hands over a buffer of `size` bytes it
    // allocated through `proxy_on_memory_allocate`.
    let status = unsafe { proxy_get_buffer_bytes(BufferType::HttpRequestBody, 0, max_size, &mut data, &mut size) };
    match status {
        Status::Ok if !data.is_null() => {
            // SAFETY: see above; reclaimed exactly once, here.
            Some(unsafe { Vec::from_raw_parts(data, size, size) })
        }
        Status::Ok | Status::NotFound => Some(Vec::new()),
        _ => None,
    }
}

/// Answer the request: `details` is what Envoy's `%RESPONSE_CODE_DETAILS%` shows.
pub(super) fn send_local_response(status: u16, details: &str, headers: &[u8], body: &[u8]) -> bool {
    // SAFETY: every pointer and length is of a live slice the host only reads.
    let status = unsafe {
        proxy_send_local_response(
            u32::from(status),
            details.as_ptr(),
            details.len(),
            body.as_ptr(),
            body.len(),
            headers.as_ptr(),
            headers.len(),
            -1, // not a gRPC reply
        )
    };
    status == Status::Ok
}

/// Set a one-segment property of the stream (Envoy keeps it as filter state `wasm.<name>`).
pub(super) fn set_property(name: &str, value: &str) -> bool {
    // SAFETY: as above; a one-segment path is the segment's bytes.
    let status = unsafe { proxy_set_property(name.as_ptr(), name.len(), value.as_ptr(), value.len()) };
    status == Status::Ok
}

/// The host's log level for wasm (Envoy: its `wasm` logger), when it says. Read as a
/// number: Envoy may answer 6 ("off"), which no `LogLevel` is.
pub(super) fn log_level() -> Option<log::LevelFilter> {
    let mut level: u32 = 0;
    // SAFETY: the host writes one u32 to the given address.
    let status = unsafe { proxy_get_log_level(&mut level) };
    if status != Status::Ok {
        return None;
    }
    Some(match level {
        0 => log::LevelFilter::Trace,
        1 => log::LevelFilter::Debug,
        2 => log::LevelFilter::Info,
        3 => log::LevelFilter::Warn,
        4 | 5 => log::LevelFilter::Error,
        _ => log::LevelFilter::Off,
    })
}
