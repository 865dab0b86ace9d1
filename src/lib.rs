//! wasm-authn: an authentication filter for Envoy and Istio (proxy-wasm).
//!
//! Everything outside `host` is a pure core, tested natively with `cargo test`:
//! `pipeline` is the decision for one request, stage by stage; `plugin` is one
//! VM's state and the events it handles. `host` is the thin proxy-wasm adapter,
//! compiled for wasm32 only.
//!
//! The public modules are what the command-line companion (`src/bin`), the fuzz
//! targets (`fuzz/`) and `bench/stages` use; everything else is `pub(crate)`, so the
//! compiler finds what nothing uses. `unreachable_pub` keeps a `pub` from creeping
//! into a private module, and every public item is documented.

#![warn(missing_docs, unreachable_pub)]

mod api_key;
mod basic;
mod basic_auth;
mod binding;
mod budget;
pub mod cache;
pub mod config;
mod cookie;
pub mod digest;
pub mod dpop;
pub mod envoy_crypto;
pub mod fetched;
mod fleet;
// The rate-limit engine's rules (`wasm-authn ratelimit-config`): native only.
#[cfg(not(target_arch = "wasm32"))]
pub mod fleet_rules;
pub mod header_map;
pub mod host_api;
pub mod jwt;
mod method_override;
mod mtls;
mod network;
pub mod password;
pub mod path;
pub mod peer;
pub mod pipeline;
pub mod plugin;
pub mod principal;
mod privileges;
mod query;
pub mod reason;
pub mod remote;
mod reply;
pub mod request;
mod request_principal;
mod requirement;
pub mod shared_table;
pub mod token_claims;
mod token_endpoint;
mod token_location;

// The fake hosts, for every module's tests, fuzz/ and bench/stages (a test aid, not documented API).
#[allow(missing_docs)]
#[cfg(any(test, feature = "testing"))]
pub mod testing;

// Type-checked natively by `cargo clippy` too (`cfg(clippy)`); it links only into the wasm module.
#[cfg(any(target_arch = "wasm32", clippy))]
mod host;
