//! wasm-authn: an authentication filter for Envoy and Istio (proxy-wasm).
//!
//! Everything outside `host` is a pure core, tested natively with `cargo test`:
//! `pipeline` is the decision for one request, stage by stage; `plugin` is one
//! VM's state and the events it handles. `host` is the thin proxy-wasm adapter,
//! compiled for wasm32 only.

pub mod api_key;
pub mod authenticate;
pub mod basic;
pub mod basic_auth;
pub mod binding;
pub mod budget;
pub mod cache;
pub mod config;
pub mod cookie;
pub mod credential;
pub mod digest;
pub mod envoy_crypto;
pub mod fleet;
pub mod header_map;
pub mod host_api;
pub mod introspection;
pub mod jwt;
pub mod limits;
pub mod method_override;
pub mod mtls;
pub mod network;
pub mod password;
pub mod path;
pub mod peer;
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
pub mod request_principal;
pub mod requirement;
pub mod revocation;
pub mod route;
pub mod shape;
pub mod shared_table;
pub mod stream;
pub mod token_claims;
pub mod token_endpoint;
pub mod token_location;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

// Type-checked natively by `cargo clippy` too (`cfg(clippy)`); it links only into the wasm module.
#[cfg(any(target_arch = "wasm32", clippy))]
mod host;
