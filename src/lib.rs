//! wasm-authn: an authentication filter for Envoy and Istio (proxy-wasm).
//!
//! Everything outside `host` is a pure core, tested natively with `cargo test`;
//! `host` is the thin proxy-wasm adapter, compiled for wasm32 only.

pub mod authn;
pub mod cache;
pub mod config;
pub mod credential;
pub mod envoy_verify;
pub mod header_map;
pub mod jwks_remote;
pub mod jwt;
pub mod password;
pub mod path;
pub mod reject;

#[cfg(target_arch = "wasm32")]
mod host;
