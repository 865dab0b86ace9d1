//! Fakes of the host for native tests: shared data with Envoy's compare-and-swap
//! semantics (one store shared by several fake VMs), outgoing calls recorded and
//! answered by the test, counters, a settable clock. The unit tests, the fuzz
//! targets and bench/stages all use these (feature `testing`; never in the module).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use crate::host_api::{CallResponse, Cas, Clock, Counters, HttpCalls, Outcome, SharedData, Target};
use crate::jwt::{Algorithm, SignatureBackend};
use crate::request::Header;

/// Request headers as the host's decoder gives them, from name-value pairs.
pub fn headers<'a>(pairs: &[(&'a str, &'a str)]) -> Vec<Header<'a>> {
    pairs.iter().map(|&(name, value)| (name.into(), value.into())).collect()
}

/// Something another VM does just before one of this store's next writes.
type Interference = Rc<dyn Fn(&FakeShared)>;

#[derive(Default)]
struct Store {
    entries: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    version: Cell<u32>,
    reads: Cell<usize>,
    writes: Cell<usize>,
    interference: RefCell<Vec<Interference>>,
}

/// Shared data as Envoy keeps it; clones share one store (one per Envoy).
#[derive(Clone, Default)]
pub struct FakeShared(Rc<Store>);

impl FakeShared {
    /// Before each of the next `n` writes, another VM does `interference` (a write of
    /// its own), as if it won the race between this VM's read and its write.
    pub fn interfere_before_next_sets(&self, n: usize, interference: Interference) {
        self.0.interference.borrow_mut().extend(std::iter::repeat_n(interference, n));
    }

    /// Successful writes so far.
    pub fn writes(&self) -> usize {
        self.0.writes.get()
    }

    /// Reads so far.
    pub fn reads(&self) -> usize {
        self.0.reads.get()
    }

    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.0.entries.borrow().keys().cloned().collect();
        keys.sort();
        keys
    }
}

impl SharedData for FakeShared {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.0.reads.set(self.0.reads.get() + 1);
        self.0.entries.borrow().get(key).cloned()
    }

    fn set(&self, key: &str, value: &[u8], cas: Cas) -> bool {
        let interference = self.0.interference.borrow_mut().pop();
        if let Some(interference) = interference {
            interference(self);
        }
        let mut entries = self.0.entries.borrow_mut();
        let current = entries.get(key).map(|(_, version)| *version);
        let allowed = cas.allows(current);
        if allowed {
            let version = self.0.version.get() + 1;
            self.0.version.set(version);
            entries.insert(key.to_string(), (value.to_vec(), version));
            self.0.writes.set(self.0.writes.get() + 1);
        }
        allowed
    }
}

/// One fake VM's host: the shared store of its Envoy, its own calls and counters.
pub struct FakeHost {
    pub shared: FakeShared,
    /// Calls made and not answered yet: (token, target).
    pub calls: Vec<(u32, Target)>,
    next_token: u32,
    /// Tokens of calls this host refuses to make (unknown cluster).
    pub refuse_calls: bool,
    /// Form POSTs made: (token, target, authorization, body).
    pub posts: Vec<(u32, Target, Option<String>, Vec<u8>)>,
    /// Questions to the rate-limit engine: (token, cluster, message).
    pub engine_calls: Vec<(u32, String, Vec<u8>)>,
    pub counters: HashMap<String, u64>,
    pub now_ns: Cell<u64>,
    /// Nanoseconds the clock moves on each reading (a slow hash takes time).
    pub tick_ns: u64,
    /// Readings of the clock (a slow hash reads it before and after).
    pub clock_reads: Cell<usize>,
}

impl FakeHost {
    pub fn new(shared: &FakeShared) -> FakeHost {
        FakeHost {
            shared: shared.clone(),
            calls: Vec::new(),
            next_token: 1,
            refuse_calls: false,
            posts: Vec::new(),
            engine_calls: Vec::new(),
            counters: HashMap::new(),
            now_ns: Cell::new(1_800_000_000_000_000_000),
            tick_ns: 0,
            clock_reads: Cell::new(0),
        }
    }

    pub fn counter(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }

    /// Take the calls made so far.
    pub fn take_calls(&mut self) -> Vec<(u32, Target)> {
        std::mem::take(&mut self.calls)
    }
}

impl SharedData for FakeHost {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.shared.get(key)
    }
    fn set(&self, key: &str, value: &[u8], cas: Cas) -> bool {
        self.shared.set(key, value, cas)
    }
}

impl HttpCalls for FakeHost {
    fn get(&mut self, target: &Target, _timeout_ms: u64) -> Option<u32> {
        if self.refuse_calls {
            return None;
        }
        let token = self.next_token;
        self.next_token += 1;
        self.calls.push((token, target.clone()));
        Some(token)
    }

    fn post_form(&mut self, target: &Target, authorization: Option<&str>, body: &[u8], _: u64) -> Option<u32> {
        if self.refuse_calls {
            return None;
        }
        let token = self.next_token;
        self.next_token += 1;
        self.posts.push((token, target.clone(), authorization.map(String::from), body.to_vec()));
        Some(token)
    }

    fn should_rate_limit(&mut self, cluster: &str, message: &[u8], _timeout_ms: u64) -> Option<u32> {
        if self.refuse_calls {
            return None;
        }
        let token = self.next_token;
        self.next_token += 1;
        self.engine_calls.push((token, cluster.to_string(), message.to_vec()));
        Some(token)
    }
}

impl Counters for FakeHost {
    fn increment(&mut self, name: &str) {
        *self.counters.entry(name.to_string()).or_default() += 1;
    }

    fn count_soon(&mut self, outcome: Outcome) {
        self.increment(outcome.name());
    }

    fn add_to_gauge(&mut self, name: &str, delta: i64) {
        let gauge = self.counters.entry(name.to_string()).or_default();
        *gauge = gauge.saturating_add_signed(delta);
    }
}

impl Clock for FakeHost {
    fn now_ns(&self) -> Option<u64> {
        let now = self.now_ns.get();
        self.now_ns.set(now + self.tick_ns);
        self.clock_reads.set(self.clock_reads.get() + 1);
        Some(now)
    }
}

/// No host crypto: every signature is checked in Rust.
impl SignatureBackend for FakeHost {
    fn verify(&self, alg: Algorithm, spki_der: &[u8], input: &[u8], signature: &[u8]) -> Option<bool> {
        HostP384.verify(alg, spki_der, input, signature)
    }
}

/// What the host's BoringSSL does for ES384 (the module leaves P-384 to it), done by
/// the `p384` crate; every other algorithm is left to the module.
pub struct HostP384;

impl SignatureBackend for HostP384 {
    fn verify(&self, alg: Algorithm, spki_der: &[u8], input: &[u8], der_signature: &[u8]) -> Option<bool> {
        use p384::ecdsa::signature::Verifier;
        use p384::pkcs8::DecodePublicKey;
        if alg != Algorithm::ES384 {
            return None;
        }
        let key = p384::ecdsa::VerifyingKey::from_public_key_der(spki_der).ok()?;
        let signature = p384::ecdsa::Signature::from_der(der_signature).ok()?;
        Some(key.verify(input, &signature).is_ok())
    }
}

/// An answer to a fake call.
pub struct FakeResponse {
    pub status: Option<u16>,
    pub body: Vec<u8>,
}

impl FakeResponse {
    pub fn ok(body: impl Into<Vec<u8>>) -> FakeResponse {
        FakeResponse { status: Some(200), body: body.into() }
    }

    pub fn status(status: u16) -> FakeResponse {
        FakeResponse { status: Some(status), body: Vec::new() }
    }

    pub fn none() -> FakeResponse {
        FakeResponse { status: None, body: Vec::new() }
    }
}

impl CallResponse for FakeResponse {
    fn status(&self) -> Option<u16> {
        self.status
    }
    fn body_size(&self) -> usize {
        self.body.len()
    }
    fn body(&self) -> Vec<u8> {
        self.body.clone()
    }
}
