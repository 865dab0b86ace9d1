//! Documents the filter fetches itself through an Envoy cluster: a provider's
//! JWKS, directly or through OpenID Connect discovery. Envoy runs one VM per
//! worker; they share one fetch. The fetched document and its fetch state
//! (`FetchRecord`) live in shared data, and only the VM that wins the record's
//! compare-and-swap fetches; the others pick the document up. A failed refresh
//! keeps the last good document and backs off.

mod discovery;
mod record;
mod store;

pub use discovery::{jwks_location, JwksLocation};
pub use record::{FetchPolicy, FetchReason, FetchRecord};
pub use store::{StoreId, STORES};

use std::rc::Rc;

use crate::digest::sha256;
use crate::host_api::{compare_and_swap, CallResponse, Cas, SharedData, SharedRecord, Swap, Target};

/// Compare-and-swap attempts on a fetch record before giving up (other VMs keep winning).
const MAX_RECORD_ATTEMPTS: usize = 8;

/// Where a document comes from and when, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchConfig {
    /// The first call: the document itself, or the discovery document naming it.
    pub target: Target,
    /// Set when `target` is an OpenID Connect discovery document.
    pub discovery: Option<Discovery>,
    /// When it is fetched.
    pub policy: FetchPolicy,
    /// Larger responses are refused (and the last good document kept).
    pub max_response_bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// An OpenID Connect discovery fetch: the document names the JWKS.
pub struct Discovery {
    /// The cluster for a `jwks_uri` on another host than the discovery document's.
    pub jwks_cluster: Option<String>,
}

/// Which call of a fetch an answer belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The discovery document.
    Discovery,
    /// The document itself.
    Document,
}

/// What a fetch does after one of its calls answered.
#[derive(Debug)]
pub enum Progress {
    /// Make this call next (the document named by a discovery document).
    Call(Target),
    /// The document was fetched and is in use here and in shared data.
    Fetched {
        /// Whether the value changed.
        changed: bool,
    },
    /// The fetch failed; see `RemoteDocument::fail`.
    Failed(String),
}

/// What a fetched document says of itself in the logs.
pub trait Summary {
    /// E.g. "3 signing keys".
    fn summary(&self) -> String;
}

/// The fetch protocol of one document, whatever it holds (what the plugin's fetch loop drives).
pub trait Fetch {
    /// Where and when it is fetched.
    fn fetch_config(&self) -> &FetchConfig;
    /// The first call of a fetch.
    fn first_step(&self) -> Step;
    /// Pick up what another VM fetched; true when the value changed.
    fn sync(&mut self, shared: &dyn SharedData) -> bool;
    /// `sync` only when another VM finished a fetch since this one looked (one small read).
    fn sync_if_fetched(&mut self, shared: &dyn SharedData) -> bool;
    /// Start a fetch if one is due (or wanted for an unknown `kid`) and this VM wins the lease.
    fn start(&mut self, shared: &dyn SharedData, now_ms: u64, refetch_wanted: bool) -> Option<FetchReason>;
    /// An answer to one of the fetch's calls.
    fn on_response(
        &mut self,
        shared: &dyn SharedData,
        step: Step,
        response: &dyn CallResponse,
        now_ms: u64,
    ) -> Progress;
    /// A fetch failed: back off; returns the delay before the next attempt, in ms.
    fn fail(&mut self, shared: &dyn SharedData, now_ms: u64) -> u64;
    /// The value's summary; None before the first fetch.
    fn summary(&self) -> Option<String>;
    /// When a fetch last succeeded (Envoy-wide, as this VM last read it); 0: never.
    fn last_success_ms(&self) -> u64;
    /// Counts value changes and finished fetches: waiting requests look again when it moves.
    fn events(&self) -> u64;
}

impl<T: Summary> Fetch for RemoteDocument<T> {
    fn fetch_config(&self) -> &FetchConfig {
        &self.state.fetch
    }
    fn first_step(&self) -> Step {
        self.state.first_step()
    }
    fn sync(&mut self, shared: &dyn SharedData) -> bool {
        RemoteDocument::sync(self, shared)
    }
    fn sync_if_fetched(&mut self, shared: &dyn SharedData) -> bool {
        RemoteDocument::sync_if_fetched(self, shared)
    }
    fn start(&mut self, shared: &dyn SharedData, now_ms: u64, refetch_wanted: bool) -> Option<FetchReason> {
        self.state.start(shared, now_ms, refetch_wanted)
    }
    fn on_response(
        &mut self,
        shared: &dyn SharedData,
        step: Step,
        response: &dyn CallResponse,
        now_ms: u64,
    ) -> Progress {
        RemoteDocument::on_response(self, shared, step, response, now_ms)
    }
    fn fail(&mut self, shared: &dyn SharedData, now_ms: u64) -> u64 {
        self.state.fail(shared, now_ms)
    }
    fn summary(&self) -> Option<String> {
        self.value.as_ref().map(Summary::summary)
    }
    fn last_success_ms(&self) -> u64 {
        self.state.record.last_success_ms
    }
    fn events(&self) -> u64 {
        self.state.events
    }
}

/// How a fetched body becomes the document's value (Err: not one; the last good kept).
pub type Parse<T> = Rc<dyn Fn(&[u8]) -> Result<T, String>>;

/// One remote document in one VM: its configuration, its parsed value, and what
/// this VM last read of the shared fetch state. Only parsing depends on what the
/// document holds: the rest (`FetchState`) is compiled once for every kind.
pub struct RemoteDocument<T> {
    state: FetchState,
    parse: Parse<T>,
    value: Option<T>,
}

/// A remote document's fetch, whatever it holds.
struct FetchState {
    fetch: FetchConfig,
    body_key: String,
    record_key: String,
    body_version: Option<u32>,
    record: FetchRecord,
    /// Counts changes of value and finished fetches, so that waiting requests look again.
    events: u64,
}

impl<T> std::fmt::Debug for RemoteDocument<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteDocument").field("fetch", &self.state.fetch).field("record", &self.state.record).finish()
    }
}

impl<T> RemoteDocument<T> {
    /// `identity` keeps the shared-data keys of different documents (and of two plugin
    /// configurations in one VM id) apart.
    pub fn new(fetch: FetchConfig, identity: &str, parse: Parse<T>) -> Self {
        RemoteDocument { state: FetchState::new(fetch, identity), parse, value: None }
    }

    /// The last good document, None until the first fetch.
    pub fn value(&self) -> Option<&T> {
        self.value.as_ref()
    }

    /// Counts value changes and finished fetches: waiting requests look again when it moves.
    pub fn events(&self) -> u64 {
        self.state.events
    }

    /// The shared fetch state, as this VM last read it.
    pub fn record(&self) -> &FetchRecord {
        &self.state.record
    }

    /// Whether a request with an unknown `kid` may wait for a refetch now.
    pub fn refetch_allowed(&self, now_ms: u64) -> bool {
        self.state.record.refetch_allowed(now_ms, &self.state.fetch.policy)
    }

    /// The last fetch failed: what the document would say now is not known.
    pub fn failing(&self) -> bool {
        self.state.record.failing()
    }

    /// Pick up a fetch another VM finished since this VM last looked: one small read
    /// (the fetch record) when nothing changed. True when the value changed.
    pub fn sync_if_fetched(&mut self, shared: &dyn SharedData) -> bool {
        let last_success = self.state.record.last_success_ms;
        self.state.sync_record(shared);
        self.state.record.last_success_ms != last_success && self.sync(shared)
    }

    /// Pick up what another VM stored, and the shared fetch state. True when the value changed.
    pub fn sync(&mut self, shared: &dyn SharedData) -> bool {
        let Some((body, version)) = self.state.stored_body(shared) else {
            return false;
        };
        match (self.parse)(&body) {
            Ok(value) => {
                self.value = Some(value);
                self.state.body_version = Some(version);
                self.state.events += 1;
                true
            }
            // Only a VM that parsed it stores a body; a mismatch here means another configuration wrote it.
            Err(_) => false,
        }
    }

    /// Take the fetch if it is due and no other VM has it; the caller then calls `fetch.target`.
    pub fn start(&mut self, shared: &dyn SharedData, now_ms: u64, refetch_wanted: bool) -> Option<FetchReason> {
        self.state.start(shared, now_ms, refetch_wanted)
    }

    /// One call of this document's fetch answered.
    pub fn on_response(
        &mut self,
        shared: &dyn SharedData,
        step: Step,
        response: &dyn CallResponse,
        now_ms: u64,
    ) -> Progress {
        let body = match self.state.document_body(step, response) {
            Ok(body) => body,
            Err(progress) => return progress,
        };
        let value = match (self.parse)(&body) {
            Ok(value) => value,
            Err(reason) => return Progress::Failed(reason),
        };
        let changed = self.state.fetched(shared, &body, now_ms) || self.value.is_none();
        self.value = Some(value);
        Progress::Fetched { changed }
    }

    /// The fetch failed (or a call could not be made): back off, keep the last good
    /// document. Returns the milliseconds until the next attempt.
    pub fn fail(&mut self, shared: &dyn SharedData, now_ms: u64) -> u64 {
        self.state.fail(shared, now_ms)
    }
}

impl FetchState {
    fn new(fetch: FetchConfig, identity: &str) -> FetchState {
        let digest = sha256(format!("{identity}\0{}\0{}", fetch.target.cluster, fetch.target.path).as_bytes());
        let tag: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        FetchState {
            fetch,
            body_key: format!("wasm_authn/{tag}/body"),
            record_key: format!("wasm_authn/{tag}/fetch"),
            body_version: None,
            record: FetchRecord::default(),
            events: 0,
        }
    }

    /// The shared fetch state, and the stored body when it is not the one this VM has.
    #[inline(never)] // once for every kind of document, not inlined into each
    fn stored_body(&mut self, shared: &dyn SharedData) -> Option<(Vec<u8>, u32)> {
        self.sync_record(shared);
        shared.get(&self.body_key).filter(|(_, version)| Some(*version) != self.body_version)
    }

    /// Read the shared fetch state; returns its version (None when absent). A fetch
    /// another VM finished counts as an event.
    fn sync_record(&mut self, shared: &dyn SharedData) -> Option<u32> {
        let (bytes, version) = shared.get(&self.record_key).unzip();
        observe(&mut self.record, &mut self.events, FetchRecord::decode(bytes.as_deref()));
        version
    }

    /// The step of the first call: with discovery, the document is read again at every
    /// fetch (its `jwks_uri` may change).
    fn first_step(&self) -> Step {
        if self.fetch.discovery.is_some() {
            Step::Discovery
        } else {
            Step::Document
        }
    }

    #[inline(never)] // once for every kind of document, not inlined into each
    fn start(&mut self, shared: &dyn SharedData, now_ms: u64, refetch_wanted: bool) -> Option<FetchReason> {
        let version = self.sync_record(shared);
        let reason = self.record.due(now_ms, &self.fetch.policy, refetch_wanted)?;
        let leased = self.record.leased(now_ms, &self.fetch.policy, reason);
        let cas = version.map_or(Cas::CreateOnly, Cas::Expect);
        if !shared.set(&self.record_key, &leased.encode(), cas) {
            return None; // another VM took it first
        }
        self.record = leased;
        Some(reason)
    }

    /// The document's body from an answer (Err: the next call, or the failure).
    #[inline(never)] // once for every kind of document, not inlined into each
    fn document_body(&self, step: Step, response: &dyn CallResponse) -> Result<Vec<u8>, Progress> {
        let body = self.read(response).map_err(Progress::Failed)?;
        if step == Step::Discovery {
            return Err(match jwks_location(&body).and_then(|location| self.jwks_target(location)) {
                Ok(target) => Progress::Call(target),
                Err(reason) => Progress::Failed(reason),
            });
        }
        Ok(body)
    }

    /// A body that parsed: stored for the other VMs when it changed, the success recorded.
    /// True when it changed.
    #[inline(never)] // once for every kind of document, not inlined into each
    fn fetched(&mut self, shared: &dyn SharedData, body: &[u8], now_ms: u64) -> bool {
        // An unchanged document changes nothing: no VM parses it again or forgets its cache.
        let stored = shared.get(&self.body_key);
        let changed = stored.as_ref().map(|(stored_body, _)| stored_body.as_slice()) != Some(body);
        if changed {
            // Store first, then record success: a VM that sees the record sees the document.
            shared.set(&self.body_key, body, Cas::Any);
            self.body_version = shared.get(&self.body_key).map(|(_, version)| version);
        } else {
            self.body_version = stored.map(|(_, version)| version);
        }
        self.update_record(shared, |record| record.succeeded(now_ms));
        self.events += 1;
        changed
    }

    #[inline(never)] // once for every kind of document, not inlined into each
    fn fail(&mut self, shared: &dyn SharedData, now_ms: u64) -> u64 {
        let policy = self.fetch.policy;
        self.update_record(shared, |record| record.failed(now_ms, &policy));
        self.events += 1;
        self.record.next_attempt_ms.saturating_sub(now_ms)
    }

    fn read(&self, response: &dyn CallResponse) -> Result<Vec<u8>, String> {
        let Some(status) = response.status() else {
            return Err("no response (timeout or connection failure)".to_string());
        };
        if status != 200 {
            // Envoy answers a call it could not deliver with its own 503 (unreachable) or 504 (timeout).
            let hint = match status {
                503 => " (endpoint unavailable, or Envoy could not reach the cluster)",
                504 => " (timed out)",
                _ => "",
            };
            return Err(format!("HTTP status {status}{hint}"));
        }
        let limit = self.fetch.max_response_bytes;
        let size = response.body_size();
        if size > limit {
            return Err(format!("response of {size} bytes is larger than {limit} bytes (max_response_bytes)"));
        }
        Ok(response.body())
    }

    /// Where the JWKS named by a discovery document is fetched: through the discovery
    /// cluster when it is on the same host, else through `jwks_cluster`.
    fn jwks_target(&self, location: JwksLocation) -> Result<Target, String> {
        let first = &self.fetch.target;
        if location.authority.eq_ignore_ascii_case(&first.authority) {
            return Ok(Target { cluster: first.cluster.clone(), authority: location.authority, path: location.path });
        }
        match self.fetch.discovery.as_ref().and_then(|d| d.jwks_cluster.clone()) {
            Some(cluster) => Ok(Target { cluster, authority: location.authority, path: location.path }),
            None => Err(format!(
                "the discovery document's jwks_uri is on host {}, not on {}: set discovery.jwks_cluster to an Envoy cluster for {}",
                location.authority, first.authority, location.authority
            )),
        }
    }

    /// Update the shared fetch state with compare-and-swap, retrying on a race.
    fn update_record(&mut self, shared: &dyn SharedData, update: impl Fn(&FetchRecord) -> FetchRecord) {
        let written = swap_record(shared, &self.record_key, &mut self.record, &mut self.events, &update);
        if let Some(next) = written {
            self.record = next;
        }
    }
}

/// A credential store (`api_keys.remote`, `basic.remote`; `store.rs`): where its document
/// comes from, and how it is read.
pub struct Store<T> {
    /// Where and when it is fetched.
    pub fetch: FetchConfig,
    /// How its body becomes credentials (Err: not a document; the last good kept).
    pub parse: Parse<T>,
}

impl<T> std::fmt::Debug for Store<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("fetch", &self.fetch).finish()
    }
}

impl<T> Store<T> {
    /// How long a request with a credential nothing configured holds waits for the
    /// first fetch (one call's timeout, and a second more), then 503.
    pub fn wait_ms(&self) -> u64 {
        self.fetch.policy.timeout_ms + 1000
    }

    /// Its document, nothing fetched yet.
    pub fn document(&self, id: StoreId) -> RemoteDocument<T> {
        RemoteDocument::new(self.fetch.clone(), id.names().2, Rc::clone(&self.parse))
    }
}

/// `RemoteDocument::update_record` of every kind of document, compiled once: each record
/// read is observed (`record`, `events`) as `sync_record` does.
fn swap_record(
    shared: &dyn SharedData,
    key: &str,
    record: &mut FetchRecord,
    events: &mut u64,
    update: &dyn Fn(&FetchRecord) -> FetchRecord,
) -> Option<FetchRecord> {
    compare_and_swap(shared, key, MAX_RECORD_ATTEMPTS, |read: FetchRecord| {
        observe(record, events, read);
        let next = update(&read);
        Swap::Write(next, next)
    })
}

/// The shared record as just read: a success or failure since the last read is an event.
fn observe(record: &mut FetchRecord, events: &mut u64, read: FetchRecord) {
    if read.last_success_ms != record.last_success_ms || read.failures != record.failures {
        *events += 1;
    }
    *record = read;
}

#[cfg(test)]
mod tests;
