//! Remote JWKS in the host: one fetch per Envoy, not per worker. Every VM keeps
//! its parsed copy of the key set; the fetched document and the fetch state
//! live in proxy-wasm shared data, and only the VM that wins the state's
//! compare-and-swap fetches. A failed refresh keeps the last good keys.

use std::time::Duration;

use log::{info, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType};

use crate::jwks_remote::{jwks_location_from_discovery, FetchReason, FetchRecord, JwksLocation, RemoteSource};
use crate::jwt::{KeySet, Provider};
use crate::password::sha256;

use super::filter::Filter;
use super::metrics::metric_safe;

/// A `cas` no entry ever has: a set with it only creates an absent key (Envoy
/// checks `cas` only against an existing entry), which makes "create if absent" atomic.
const CREATE_ONLY: u32 = u32::MAX;

pub struct RemoteProvider {
    name: String,
    metric_name: String,
    source: RemoteSource,
    keys_key: String,
    record_key: String,
    pub keys: Option<KeySet>,
    keys_cas: Option<u32>,
    /// The last fetch state read from shared data.
    pub record: FetchRecord,
    /// Counts key changes and finished fetches, so waiting requests know to look again.
    pub events: u64,
}

/// Which step of a fetch a call is: with discovery, the document first, then its JWKS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchStep {
    Discovery,
    Jwks,
}

/// One call on its way: whose, which step, and where to (for the logs).
pub struct PendingCall {
    provider: usize,
    step: FetchStep,
    target: Target,
}

/// Where a call goes.
#[derive(Debug, Clone)]
struct Target {
    cluster: String,
    authority: String,
    path: String,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cluster {}, authority {}, path {}", self.cluster, self.authority, self.path)
    }
}

/// What a finished call does next.
enum Outcome {
    Keys { body: Vec<u8>, keys: KeySet },
    FetchJwks(Target),
    Failed(String),
}

impl RemoteProvider {
    pub fn new(provider: &Provider) -> Option<RemoteProvider> {
        let source = RemoteSource::from_config(provider.remote_jwks.as_ref(), provider.discovery.as_ref())?;
        // Two plugin configurations in one VM id must not share state by accident.
        let identity = format!("{}\0{}\0{}\0{}", provider.name, provider.issuer, source.cluster, source.path);
        let digest = sha256(identity.as_bytes());
        let tag: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        Some(RemoteProvider {
            name: provider.name.clone(),
            metric_name: metric_safe(&provider.name),
            keys_key: format!("wasm_authn/{tag}/jwks"),
            record_key: format!("wasm_authn/{tag}/fetch"),
            source,
            keys: None,
            keys_cas: None,
            record: FetchRecord::default(),
            events: 0,
        })
    }

    /// Whether a request with an unknown `kid` may wait for a refetch now.
    pub fn refetch_allowed(&self, now_ms: u64) -> bool {
        self.record.refetch_allowed(now_ms, &self.source.policy)
    }

    /// Load the key set another VM stored, if it changed. Returns whether it did.
    pub fn sync_keys(&mut self) -> bool {
        let Ok((Some(body), cas)) = hostcalls::get_shared_data(&self.keys_key) else {
            return false;
        };
        if cas.is_some() && cas == self.keys_cas {
            return false;
        }
        match KeySet::from_remote_jwks(&body) {
            Ok(keys) => {
                self.keys = Some(keys);
                self.keys_cas = cas;
                self.events += 1;
                true
            }
            Err(_) => false,
        }
    }

    /// Read the shared fetch state; returns its `cas` (`None` when absent).
    /// A fetch another VM finished counts as an event, so requests waiting here look again.
    pub fn sync_record(&mut self) -> Option<u32> {
        let previous = self.record;
        let cas = match hostcalls::get_shared_data(&self.record_key) {
            Ok((Some(bytes), cas)) => {
                self.record = FetchRecord::decode(&bytes).unwrap_or_default();
                cas
            }
            _ => {
                self.record = FetchRecord::default();
                None
            }
        };
        if self.record.last_success_ms != previous.last_success_ms || self.record.failures != previous.failures {
            self.events += 1;
        }
        cas
    }

    /// Take the fetch if it is due and no other VM has it.
    fn try_lease(&mut self, now_ms: u64, refetch_wanted: bool) -> bool {
        let cas = self.sync_record();
        let Some(reason) = self.record.due(now_ms, &self.source.policy, refetch_wanted) else {
            return false;
        };
        let leased = self.record.leased(now_ms, &self.source.policy, reason);
        if hostcalls::set_shared_data(&self.record_key, Some(&leased.encode()), Some(cas.unwrap_or(CREATE_ONLY)))
            .is_err()
        {
            return false; // another VM took it first
        }
        self.record = leased;
        if reason == FetchReason::UnknownKid {
            info!("wasm-authn: provider {}: unknown key id, fetching its JWKS again", self.name);
        }
        true
    }

    /// Update the shared fetch state with compare-and-swap, retrying on a race.
    fn finish(&mut self, update: impl Fn(&FetchRecord) -> FetchRecord) {
        for _ in 0..8 {
            let cas = self.sync_record();
            let next = update(&self.record);
            if hostcalls::set_shared_data(&self.record_key, Some(&next.encode()), Some(cas.unwrap_or(CREATE_ONLY)))
                .is_ok()
            {
                self.record = next;
                return;
            }
        }
    }

    /// Where the first call of a fetch goes: the JWKS, or the discovery document.
    fn first_target(&self) -> Target {
        Target {
            cluster: self.source.cluster.clone(),
            authority: self.source.authority.clone(),
            path: self.source.path.clone(),
        }
    }

    /// Where the JWKS named by a discovery document is fetched: through the discovery
    /// cluster when it is on the same host, else through `jwks_cluster`.
    fn jwks_target(&self, location: JwksLocation) -> Result<Target, String> {
        if location.authority.eq_ignore_ascii_case(&self.source.authority) {
            return Ok(Target {
                cluster: self.source.cluster.clone(),
                authority: location.authority,
                path: location.path,
            });
        }
        match &self.source.jwks_cluster {
            Some(cluster) => Ok(Target { cluster: cluster.clone(), authority: location.authority, path: location.path }),
            None => Err(format!(
                "the discovery document's jwks_uri is on host {}, not on {}: set discovery.jwks_cluster to an Envoy cluster for {}",
                location.authority, self.source.authority, location.authority
            )),
        }
    }

    fn dispatch(&self, target: &Target) -> Option<u32> {
        let headers = vec![
            (":method", "GET"),
            (":path", target.path.as_str()),
            (":authority", target.authority.as_str()),
            ("accept", "application/json"),
        ];
        let timeout = Duration::from_millis(self.source.policy.timeout_ms);
        hostcalls::dispatch_http_call(&target.cluster, headers, None, vec![], timeout).ok()
    }
}

/// Called on every tick: pick up keys other VMs fetched, start due fetches.
pub fn tick(filter: &mut Filter, now_ms: u64) {
    let mut changed = false;
    for index in 0..filter.remote.len() {
        let fetching = filter.pending_calls.values().any(|call| call.provider == index);
        let refetch_wanted = filter.refetch_wanted(index);
        let Some(provider) = filter.remote[index].as_mut() else { continue };
        changed |= provider.sync_keys();
        if !fetching && provider.try_lease(now_ms, refetch_wanted) {
            // With discovery, the document is read again at every fetch: its jwks_uri may change.
            let step = if provider.source.discovery { FetchStep::Discovery } else { FetchStep::Jwks };
            let target = provider.first_target();
            match provider.dispatch(&target) {
                Some(token) => {
                    filter.pending_calls.insert(token, PendingCall { provider: index, step, target });
                }
                None => fail(filter, index, now_ms, &target, "the call could not be made (unknown cluster?)".into()),
            }
        }
    }
    if changed {
        filter.authn.keys_changed();
    }
}

/// A fetch answered (or failed: no `:status` means timeout or connection failure).
pub fn on_response(filter: &mut Filter, token: u32, body_size: usize, now_ms: u64) {
    let Some(call) = filter.pending_calls.remove(&token) else { return };
    let index = call.provider;
    let Some(provider) = filter.remote[index].as_mut() else { return };
    let outcome = read_response(provider, call.step, body_size);
    match outcome {
        Outcome::FetchJwks(target) => match provider.dispatch(&target) {
            Some(next) => {
                filter.pending_calls.insert(next, PendingCall { provider: index, step: FetchStep::Jwks, target });
            }
            None => fail(filter, index, now_ms, &target, "the call could not be made (unknown cluster?)".into()),
        },
        Outcome::Keys { body, keys } => {
            let count = keys.len();
            // An unchanged document changes nothing: no VM re-parses it or forgets its cache.
            let (stored, stored_cas) = hostcalls::get_shared_data(&provider.keys_key).unwrap_or((None, None));
            let changed = stored.as_deref() != Some(body.as_slice());
            if changed {
                // Store first, then record success: a VM that sees the record sees the keys.
                let _ = hostcalls::set_shared_data(&provider.keys_key, Some(&body), None);
                provider.keys_cas = hostcalls::get_shared_data(&provider.keys_key).ok().and_then(|(_, cas)| cas);
            } else {
                provider.keys_cas = stored_cas;
            }
            if changed || provider.keys.is_none() {
                provider.keys = Some(keys);
                filter.authn.keys_changed();
            }
            provider.finish(|r| r.succeeded(now_ms));
            provider.events += 1;
            let metric = format!("jwks_fetch_success.{}", provider.metric_name);
            let what = if changed { "" } else { " (unchanged)" };
            info!("wasm-authn: provider {}: fetched {count} signing keys{what} ({})", provider.name, call.target);
            filter.metrics.increment(&metric);
        }
        Outcome::Failed(reason) => fail(filter, index, now_ms, &call.target, reason),
    }
}

fn read_response(provider: &RemoteProvider, step: FetchStep, body_size: usize) -> Outcome {
    let status = hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status").ok().flatten();
    let Some(status) = status else {
        return Outcome::Failed("no response (timeout or connection failure)".to_string());
    };
    if status != "200" {
        // Envoy answers a call it could not deliver with its own 503 (unreachable) or 504 (timeout).
        let hint = match status.as_str() {
            "503" => " (endpoint unavailable, or Envoy could not reach the cluster)",
            "504" => " (timed out)",
            _ => "",
        };
        return Outcome::Failed(format!("HTTP status {status}{hint}"));
    }
    let limit = provider.source.max_response_bytes;
    if body_size > limit {
        return Outcome::Failed(format!(
            "response of {body_size} bytes is larger than {limit} bytes (max_response_bytes)"
        ));
    }
    let body = hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size).ok().flatten().unwrap_or_default();
    if step == FetchStep::Discovery {
        return match jwks_location_from_discovery(&body).and_then(|location| provider.jwks_target(location)) {
            Ok(target) => Outcome::FetchJwks(target),
            Err(e) => Outcome::Failed(e),
        };
    }
    match KeySet::from_remote_jwks(&body) {
        Ok(keys) => Outcome::Keys { body, keys },
        Err(e) => Outcome::Failed(e),
    }
}

fn fail(filter: &mut Filter, index: usize, now_ms: u64, target: &Target, reason: String) {
    let Some(provider) = filter.remote[index].as_mut() else { return };
    let policy = provider.source.policy;
    provider.finish(|r| r.failed(now_ms, &policy));
    provider.events += 1;
    let retry_ms = provider.record.next_attempt_ms.saturating_sub(now_ms);
    let kept = if provider.keys.is_some() { "keeping the last good keys" } else { "no keys yet" };
    warn!(
        "wasm-authn: provider {}: JWKS fetch failed ({target}): {reason}; {kept}; retrying in {retry_ms} ms",
        provider.name
    );
    let metric = format!("jwks_fetch_failed.{}", provider.metric_name);
    filter.metrics.increment(&metric);
}

/// Look at what other VMs fetched, for every remote provider (the rare path of a
/// token whose key this VM does not know, or whose keys are not loaded yet).
pub fn sync_all(filter: &mut Filter) {
    let mut changed = false;
    for provider in filter.remote.iter_mut().flatten() {
        changed |= provider.sync_keys();
        provider.sync_record();
    }
    if changed {
        filter.authn.keys_changed();
    }
}
