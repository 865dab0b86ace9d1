//! `plugin::Plugin` as the host adapter drives it: random sequences of host
//! callbacks (request headers, body chunks with or without their end, trailers,
//! ticks that bring held streams back, answers and failures of the fetches the
//! plugin starts, stream ends, response headers) on a few interleaved streams,
//! with a configuration that holds requests every way it can (remote keys, an
//! unknown `kid` refetched, the remote revocation list, a token request's body,
//! a form read for its API key).
//!
//! Properties (the invariant of `src/pipeline/stream.rs`):
//! - a stream is continued only after a decision allowed it: the first `Continue`
//!   since its headers carries the decision's changes, and none comes after an answer;
//! - a request whose credential is forged, wrong, refused or revoked, and a token
//!   request, is never continued;
//! - a form whose field holds the key is continued only once its body is complete,
//!   and the body that goes upstream no longer holds the key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasm_authn_fuzz::streams::{run, Op};

fuzz_target!(|data: &[u8]| {
    run(&Op::decode(data));
});
