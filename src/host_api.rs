//! What the core asks of its host, as small traits: shared data with
//! compare-and-swap, outgoing HTTP calls, counters and a clock (signature checks
//! are `jwt::SignatureBackend`).
//! The proxy-wasm adapter (`host/`) implements them on Envoy's hostcalls; tests
//! implement them with fakes, several VMs sharing one store.

/// How a shared-data write is conditioned (proxy-wasm `set_shared_data`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cas {
    /// Write whatever is there.
    Any,
    /// Write only over the version read. Envoy checks this only against an existing
    /// entry: an absent key is written whatever the expectation.
    Expect(u32),
    /// Create only: refused if the key exists.
    CreateOnly,
}

impl Cas {
    /// Whether Envoy takes the write over an entry at `current` (its version; None: absent).
    /// The fake hosts of the tests and fuzz targets answer by it.
    pub fn allows(self, current: Option<u32>) -> bool {
        match (self, current) {
            (Cas::Any, _) | (Cas::Expect(_), None) => true,
            (Cas::Expect(expected), Some(version)) => expected == version,
            (Cas::CreateOnly, current) => current.is_none(),
        }
    }
}

/// Data shared by every VM of one Envoy (one `vm_id`), versioned for compare-and-swap.
pub trait SharedData {
    /// The value and its version (never 0), or None when absent.
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)>;
    /// False when the condition failed (another VM wrote first) or the host refused.
    fn set(&self, key: &str, value: &[u8], cas: Cas) -> bool;
}

/// A value kept in shared data, read and written whole.
pub trait SharedRecord: Sized {
    /// The record of the stored bytes (None: absent); what does not decode reads as
    /// the empty record, which the next write replaces.
    fn decode(bytes: Option<&[u8]>) -> Self;
    /// The record as shared data holds it.
    fn encode(&self) -> Vec<u8>;
}

/// What a change does with the record it read.
pub enum Swap<R, T> {
    /// Write this record; `compare_and_swap` returns `T` once it is written.
    Write(R, T),
    /// Write nothing and return `T`.
    Stop(T),
    /// Read the record again (what it depends on changed meanwhile); an attempt spent.
    Again,
}

/// Change the record at `key` atomically across VMs: read it, let `change` decide,
/// write by compare-and-swap; read again when another VM wrote first, `attempts`
/// times at most. None: other VMs kept winning, nothing was written.
pub fn compare_and_swap<R: SharedRecord, T>(
    shared: &dyn SharedData,
    key: &str,
    attempts: usize,
    mut change: impl FnMut(R) -> Swap<R, T>,
) -> Option<T> {
    let mut result = None;
    let done = swap_bytes(shared, key, attempts, &mut |bytes| match change(R::decode(bytes)) {
        Swap::Write(next, value) => {
            result = Some(value);
            Swap::Write(next.encode(), ())
        }
        Swap::Stop(value) => {
            result = Some(value);
            Swap::Stop(())
        }
        Swap::Again => Swap::Again,
    });
    if done {
        result
    } else {
        None
    }
}

/// A change of the stored bytes (None: absent).
type ByteChange<'a> = dyn FnMut(Option<&[u8]>) -> Swap<Vec<u8>, ()> + 'a;

/// `compare_and_swap` on the bytes, compiled once: true once written or stopped.
fn swap_bytes(shared: &dyn SharedData, key: &str, attempts: usize, change: &mut ByteChange) -> bool {
    for _ in 0..attempts {
        let current = shared.get(key);
        let cas = current.as_ref().map_or(Cas::CreateOnly, |(_, version)| Cas::Expect(*version));
        match change(current.as_ref().map(|(bytes, _)| bytes.as_slice())) {
            Swap::Write(next, ()) => {
                if shared.set(key, &next, cas) {
                    return true;
                }
            }
            Swap::Stop(()) => return true,
            Swap::Again => {}
        }
    }
    false
}

/// Where an outgoing call goes: an Envoy cluster, and the request's authority and path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The Envoy cluster the call goes to.
    pub cluster: String,
    /// The `:authority` sent.
    pub authority: String,
    /// The `:path` sent.
    pub path: String,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cluster {}, authority {}, path {}", self.cluster, self.authority, self.path)
    }
}

/// Outgoing HTTP calls (proxy-wasm `dispatch_http_call`); answers come back later, by token.
pub trait HttpCalls {
    /// A GET; the call's token, or None when it could not be made (unknown cluster, say).
    fn get(&mut self, target: &Target, timeout_ms: u64) -> Option<u32>;
    /// A form POST (`application/x-www-form-urlencoded`) with an optional `Authorization`.
    fn post_form(&mut self, target: &Target, authorization: Option<&str>, body: &[u8], timeout_ms: u64) -> Option<u32>;
    /// Envoy's `RateLimitService/ShouldRateLimit` on `cluster` (gRPC) with this request message.
    fn should_rate_limit(&mut self, cluster: &str, message: &[u8], timeout_ms: u64) -> Option<u32>;
}

/// The answer to an outgoing call, read during the host's callback.
pub trait CallResponse {
    /// `:status`; None when there was no response (timeout, connection failure).
    fn status(&self) -> Option<u16>;
    /// The size of the answer's body.
    fn body_size(&self) -> usize;
    /// The body; called only once its size is known to be acceptable.
    fn body(&self) -> Vec<u8>;
}

/// The request body the host has buffered (read once a body that decides is complete).
pub trait RequestBody {
    /// Its first `max_size` bytes, or None when the host cannot give them.
    fn read(&self, max_size: usize) -> Option<Vec<u8>>;
}

/// A body already read.
impl RequestBody for &[u8] {
    fn read(&self, max_size: usize) -> Option<Vec<u8>> {
        Some(self.iter().take(max_size).copied().collect())
    }
}

/// Envoy counters and gauges (`wasmcustom.wasm_authn.<name>` on the stats page).
pub trait Counters {
    /// Add one to the counter `name`.
    fn increment(&mut self, name: &str);
    /// Count what most requests end in. The host may add these up and hand them to
    /// Envoy on its next tick (within a second): a host call saved per request.
    fn count_soon(&mut self, outcome: Outcome);
    /// Move a gauge (shared by every VM, as counters are) by `delta`.
    fn add_to_gauge(&mut self, name: &str, delta: i64);
}

/// What most requests end in: the counters `count_soon` takes (`ALL` is in declaration order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Allowed with a verified principal.
    Allowed,
    /// Let through by `bypass` or a `require: "none"` rule.
    Bypassed,
    /// Let through without a credential on an optional route.
    Anonymous,
}

impl Outcome {
    /// Every outcome, in counter order.
    pub const ALL: [Outcome; 3] = [Outcome::Allowed, Outcome::Bypassed, Outcome::Anonymous];

    /// The counter's name.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Bypassed => "bypassed",
            Outcome::Anonymous => "anonymous",
        }
    }
}

/// Time as the host tells it.
pub trait Clock {
    /// Nanoseconds since the Unix epoch; None when the host cannot tell.
    fn now_ns(&self) -> Option<u64>;
}
