//! The core's host traits on Envoy's hostcalls: shared data, HTTP calls,
//! counters, the clock, and signatures through Envoy's BoringSSL.

use std::collections::HashMap;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType, MetricType, Status};

use crate::envoy_crypto::{decode_result, encode_arguments, FUNCTION_NAME};
use crate::host_api::{CallResponse, Cas, Clock, Counters, HttpCalls, Outcome, SharedData, Target};
use crate::jwt::{Algorithm, SignatureBackend};

/// A `cas` no entry ever has. Envoy checks `cas` only against an existing entry, so a
/// set with it creates an absent key and fails on an existing one: create-if-absent.
const CREATE_ONLY_CAS: u32 = u32::MAX;

pub(super) struct EnvoyHost {
    /// Counter ids, defined on first use (Envoy shares a counter between VMs by name).
    metric_ids: HashMap<String, u32>,
    gauge_ids: HashMap<String, u32>,
    /// Whether Envoy's `verify_signature` is there (and allowed by `envoy_crypto`).
    crypto: bool,
    /// `count_soon` counts not yet handed to Envoy, by `Outcome::ALL` order.
    pending: [u64; Outcome::ALL.len()],
}

impl EnvoyHost {
    /// Probe the host once: an empty argument list gives BadArgument where the function exists.
    pub(super) fn new(envoy_crypto: bool) -> EnvoyHost {
        let crypto = envoy_crypto
            && !matches!(hostcalls::call_foreign_function(FUNCTION_NAME, Some(&[])), Err(Status::NotFound));
        EnvoyHost { metric_ids: HashMap::new(), gauge_ids: HashMap::new(), crypto, pending: [0; Outcome::ALL.len()] }
    }

    pub(super) fn crypto_available(&self) -> bool {
        self.crypto
    }

    /// Hand Envoy what `count_soon` added up (the root calls it on every tick).
    pub(super) fn flush_counters(&mut self) {
        for (outcome, pending) in Outcome::ALL.iter().zip(self.pending.iter_mut()) {
            if *pending == 0 {
                continue;
            }
            if let Some(id) = metric(&mut self.metric_ids, MetricType::Counter, outcome.name()) {
                if hostcalls::increment_metric(id, i64::try_from(*pending).unwrap_or(i64::MAX)).is_ok() {
                    *pending = 0;
                }
            }
        }
    }
}

/// Unix time in milliseconds from the host (never the VM's own clock).
pub(super) fn now_ms() -> Option<u64> {
    now_ns().map(|ns| ns / 1_000_000).filter(|ms| *ms > 0)
}

fn now_ns() -> Option<u64> {
    let since_epoch = hostcalls::get_current_time().ok()?.duration_since(UNIX_EPOCH).ok()?;
    u64::try_from(since_epoch.as_nanos()).ok()
}

impl SharedData for EnvoyHost {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        match hostcalls::get_shared_data(key) {
            Ok((Some(value), Some(cas))) => Some((value, cas)),
            _ => None,
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: Cas) -> bool {
        let cas = match cas {
            Cas::Any => None,
            Cas::Expect(version) => Some(version),
            Cas::CreateOnly => Some(CREATE_ONLY_CAS),
        };
        hostcalls::set_shared_data(key, Some(value), cas).is_ok()
    }
}

impl HttpCalls for EnvoyHost {
    fn get(&mut self, target: &Target, timeout_ms: u64) -> Option<u32> {
        let headers = vec![
            (":method", "GET"),
            (":path", target.path.as_str()),
            (":authority", target.authority.as_str()),
            ("accept", "application/json"),
        ];
        hostcalls::dispatch_http_call(&target.cluster, headers, None, vec![], Duration::from_millis(timeout_ms)).ok()
    }

    fn post_form(&mut self, target: &Target, authorization: Option<&str>, body: &[u8], timeout_ms: u64) -> Option<u32> {
        let mut headers = vec![
            (":method", "POST"),
            (":path", target.path.as_str()),
            (":authority", target.authority.as_str()),
            ("content-type", "application/x-www-form-urlencoded"),
            ("accept", "application/json"),
        ];
        if let Some(authorization) = authorization {
            headers.push(("authorization", authorization));
        }
        let timeout = Duration::from_millis(timeout_ms);
        hostcalls::dispatch_http_call(&target.cluster, headers, Some(body), vec![], timeout).ok()
    }

    fn should_rate_limit(&mut self, cluster: &str, message: &[u8], timeout_ms: u64) -> Option<u32> {
        use crate::fleet::engine::{METHOD, SERVICE};
        let timeout = Duration::from_millis(timeout_ms);
        hostcalls::dispatch_grpc_call(cluster, SERVICE, METHOD, vec![], Some(message), timeout).ok()
    }
}

impl Counters for EnvoyHost {
    fn increment(&mut self, name: &str) {
        if let Some(id) = metric(&mut self.metric_ids, MetricType::Counter, name) {
            let _ = hostcalls::increment_metric(id, 1);
        }
    }

    fn count_soon(&mut self, outcome: Outcome) {
        if let Some(pending) = self.pending.get_mut(outcome as usize) {
            *pending += 1;
        }
    }

    fn add_to_gauge(&mut self, name: &str, delta: i64) {
        if let Some(id) = metric(&mut self.gauge_ids, MetricType::Gauge, name) {
            let _ = hostcalls::increment_metric(id, delta);
        }
    }
}

/// A metric's id, defined on first use (Envoy shares a metric between VMs by name).
fn metric(ids: &mut HashMap<String, u32>, kind: MetricType, name: &str) -> Option<u32> {
    if let Some(id) = ids.get(name) {
        return Some(*id);
    }
    let id = hostcalls::define_metric(kind, &format!("wasm_authn.{name}")).ok()?;
    ids.insert(name.to_string(), id);
    Some(id)
}

impl Clock for EnvoyHost {
    fn now_ns(&self) -> Option<u64> {
        now_ns()
    }
}

impl SignatureBackend for EnvoyHost {
    fn verify(&self, alg: Algorithm, spki_der: &[u8], signing_input: &[u8], signature: &[u8]) -> Option<bool> {
        if !self.crypto {
            return None;
        }
        let hash = match alg {
            Algorithm::RS256 | Algorithm::ES256 => "sha256",
            Algorithm::RS384 | Algorithm::ES384 => "sha384",
            Algorithm::RS512 => "sha512",
            _ => return None,
        };
        let arguments = encode_arguments(hash, spki_der, signature, signing_input);
        match hostcalls::call_foreign_function(FUNCTION_NAME, Some(&arguments)) {
            Ok(Some(result)) => decode_result(&result),
            Ok(None) => Some(false),
            // The host could not take these arguments: let the pure-Rust path decide.
            Err(_) => None,
        }
    }
}

/// The answer to a fetch, read during `on_http_call_response`.
pub(super) struct EnvoyCallResponse {
    pub body_size: usize,
}

impl CallResponse for EnvoyCallResponse {
    fn status(&self) -> Option<u16> {
        let status = hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, ":status").ok().flatten()?;
        std::str::from_utf8(&status).ok()?.parse().ok()
    }

    fn body_size(&self) -> usize {
        self.body_size
    }

    fn body(&self) -> Vec<u8> {
        hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, self.body_size).ok().flatten().unwrap_or_default()
    }
}
