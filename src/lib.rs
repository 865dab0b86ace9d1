//! wasm-authn: an authentication filter for Envoy and Istio (proxy-wasm).
//!
//! Everything outside `host` is a pure core, tested natively with `cargo test`:
//! `pipeline` is the decision for one request, stage by stage; `plugin` is one
//! VM's state and the events it handles. `host` is the thin proxy-wasm adapter,
//! compiled for wasm32 only.

pub mod api_key;
pub mod authenticate;
pub mod basic;
pub mod budget;
pub mod cache;
pub mod config;
pub mod cookie;
pub mod credential;
pub mod digest;
pub mod envoy_crypto;
pub mod fetched;
pub mod fleet;
// The rate-limit engine's rules (`wasm-authn ratelimit-config`): native only.
#[cfg(not(target_arch = "wasm32"))]
pub mod fleet_rules;
pub mod header_map;
pub mod host_api;
pub mod jwt;
pub mod limits;
pub mod method_override;
pub mod network;
pub mod password;
pub mod path;
pub mod pipeline;
pub mod plugin;
pub mod policy;
pub mod principal;
pub mod privileges;
pub mod query;
pub mod reason;
pub mod remote;
pub mod reply;
pub mod request;
pub mod revocation;
pub mod route;
pub mod shape;
pub mod shared_table;
pub mod stream;
pub mod token_endpoint;
pub mod token_location;

#[cfg(test)]
mod testing;

// Type-checked natively by `cargo clippy` too (`cfg(clippy)`); it links only into the wasm module.
#[cfg(any(target_arch = "wasm32", clippy))]
mod host;
