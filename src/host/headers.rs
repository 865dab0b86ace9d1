//! Reading the request headers as bytes, decoded by the core (`header_map`), and
//! the request body. The SDK's own readers panic on a name that is not UTF-8 or
//! on an unexpected status; these cannot.
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
}

/// The request headers, or None when the host cannot give them (fail closed).
pub fn request_headers() -> Option<Vec<(String, String)>> {
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
    let serialized = unsafe { Vec::from_raw_parts(data, size, size) };
    crate::header_map::decode(&serialized)
}

/// The first `max_size` bytes of the buffered request body, or None when the host cannot give them.
pub fn request_body(max_size: usize) -> Option<Vec<u8>> {
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
