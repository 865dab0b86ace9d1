//! Introspection answers shared by every worker of the Envoy, and the one call per
//! new token: in proxy-wasm shared data, changed only by compare-and-swap.
//!
//! - **Keyed by a keyed hash of the token, never the token**: SipHash-1-3 with a
//!   128-bit output under a random key the first worker stores (`INTROSPECTION_KEY`,
//!   created once with compare-and-swap), so every worker computes the same key and
//!   nothing stored reveals a token or lets a client aim at another's entry.
//! - **Bounded**: a record lives in the slot its key picks (`key % slots`, a slot
//!   being one shared-data value of at most `PER_SLOT` records, read and written
//!   whole); a full slot forgets an expired record first, else the one that expires
//!   soonest. The store holds at most `slots * PER_SLOT` records (`max_entries`
//!   rounded up to a multiple of `PER_SLOT`).
//! - **One call per new token**: the first worker to find no record for a key
//!   writes a pending record (its lease: the call's timeout and a margin) and makes
//!   the call; every other request with that token, on any worker, finds the lease
//!   and waits for the answer, which the caller stores in its place. A lease whose
//!   caller never answers expires, and the next request calls again.

use std::cell::OnceCell;

use rand_core::{OsRng, RngCore};
use std::hash::Hasher;

use siphasher::sip128::{Hasher128, SipHasher13};

use super::verdict::{Answer, Verdict};
use crate::host_api::{compare_and_swap, Cas, SharedData, SharedRecord, Swap};
use crate::reason::Reason;
use crate::token_claims::ClaimValues;

/// The shared-data key of the hash key every worker uses.
pub const INTROSPECTION_KEY: &str = "wasm_authn/introspection/key";

/// Records per slot at most.
const PER_SLOT: usize = 8;
const FORMAT: u8 = 2;
/// Compare-and-swap attempts before giving up (other workers keep winning).
const MAX_ATTEMPTS: usize = 16;

/// What a worker finds for a token, or takes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Nobody had asked: this worker holds the lease and makes the call.
    Call,
    /// A call is on its way (this worker's or another's).
    Pending,
    /// The stored verdict, valid until then (ms).
    Stored(Verdict, u64),
    /// Other workers kept winning the compare-and-swap: nothing is known.
    Unavailable,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Pending,
    Done(Verdict),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    key: u128,
    until_ms: u64,
    state: State,
}

#[derive(Debug)]
/// Introspection answers stored in shared data for every worker, by token digest.
pub struct AnswerStore {
    prefix: String,
    slots: u64,
    /// The shared hash key, read (or created) on first use.
    hash_key: OnceCell<[u8; 16]>,
}

impl AnswerStore {
    /// At most about `max_entries` answers, under `wasm_authn/introspection/<tag>/...`
    /// (`tag`: what tells this provider's answers from another's).
    pub fn new(tag: &str, max_entries: usize) -> AnswerStore {
        let slots = max_entries.div_ceil(PER_SLOT).max(1) as u64;
        AnswerStore { prefix: format!("wasm_authn/introspection/{tag}/{slots}/"), slots, hash_key: OnceCell::new() }
    }

    /// Whether two stores read and write the same answers.
    #[cfg(test)]
    pub(crate) fn shares_answers_with(&self, other: &AnswerStore) -> bool {
        self.prefix == other.prefix
    }

    /// The key a token's answer is stored under.
    pub fn key(&self, shared: &dyn SharedData, token: &str) -> u128 {
        let hash_key = self.hash_key.get_or_init(|| shared_hash_key(shared));
        let mut hasher = SipHasher13::new_with_key(hash_key);
        hasher.write(token.as_bytes());
        hasher.finish128().as_u128()
    }

    fn slot_key(&self, key: u128) -> String {
        format!("{}{}", self.prefix, (key % u128::from(self.slots)))
    }

    /// Whether a call about `key` is still on its way (a held request waits while it is).
    pub fn pending(&self, shared: &dyn SharedData, key: u128, now_ms: u64) -> bool {
        let records = read_slot(shared, &self.slot_key(key));
        records.iter().any(|r| r.key == key && r.until_ms > now_ms && r.state == State::Pending)
    }

    /// The stored verdict about `key`, else the lease of its call (`lease_until_ms`) if nobody holds it.
    pub fn claim(&self, shared: &dyn SharedData, key: u128, now_ms: u64, lease_until_ms: u64) -> Claim {
        let slot_key = self.slot_key(key);
        let claim = compare_and_swap(shared, &slot_key, MAX_ATTEMPTS, |Slot(mut records)| {
            if let Some(record) = records.iter().find(|r| r.key == key && r.until_ms > now_ms) {
                return Swap::Stop(match &record.state {
                    State::Pending => Claim::Pending,
                    State::Done(verdict) => Claim::Stored(verdict.clone(), record.until_ms),
                });
            }
            put(&mut records, Record { key, until_ms: lease_until_ms, state: State::Pending }, now_ms);
            Swap::Write(Slot(records), Claim::Call)
        });
        claim.unwrap_or(Claim::Unavailable)
    }

    /// Store a call's verdict about `key` until `until_ms`, in place of its lease.
    pub fn store(&self, shared: &dyn SharedData, key: u128, verdict: Verdict, until_ms: u64, now_ms: u64) -> bool {
        let slot_key = self.slot_key(key);
        let record = Record { key, until_ms, state: State::Done(verdict) };
        let stored = compare_and_swap(shared, &slot_key, MAX_ATTEMPTS, |Slot(mut records)| {
            put(&mut records, record.clone(), now_ms);
            Swap::Write(Slot(records), ())
        });
        stored.is_some()
    }
}

/// The hash key every worker shares: the first to look creates it.
fn shared_hash_key(shared: &dyn SharedData) -> [u8; 16] {
    let stored = |shared: &dyn SharedData| shared.get(INTROSPECTION_KEY).and_then(|(bytes, _)| bytes.try_into().ok());
    if let Some(key) = stored(shared) {
        return key;
    }
    let mut key = [0u8; 16];
    // Without randomness the key is fixed: keys stay collision-free for honest input.
    let _ = OsRng.try_fill_bytes(&mut key);
    // Another worker may create it first: its key is the one.
    shared.set(INTROSPECTION_KEY, &key, Cas::CreateOnly);
    stored(shared).unwrap_or(key)
}

/// Put `record` in place of its key's, else of an expired one, else (the slot full) of the one that expires soonest.
fn put(records: &mut Vec<Record>, record: Record, now_ms: u64) {
    let place = records
        .iter()
        .position(|r| r.key == record.key)
        .or_else(|| records.iter().position(|r| r.until_ms <= now_ms))
        .or_else(|| {
            (records.len() >= PER_SLOT)
                .then(|| records.iter().enumerate().min_by_key(|(_, r)| r.until_ms).map(|(i, _)| i))
                .flatten()
        });
    match place.and_then(|i| records.get_mut(i)) {
        Some(slot) => *slot = record,
        None => records.push(record),
    }
}

/// One slot's records, read and written whole.
struct Slot(Vec<Record>);

impl SharedRecord for Slot {
    fn decode(bytes: Option<&[u8]>) -> Slot {
        Slot(bytes.and_then(decode).unwrap_or_default())
    }

    fn encode(&self) -> Vec<u8> {
        encode(&self.0)
    }
}

fn read_slot(shared: &dyn SharedData, slot_key: &str) -> Vec<Record> {
    Slot::decode(shared.get(slot_key).as_ref().map(|(bytes, _)| bytes.as_slice())).0
}

fn encode(records: &[Record]) -> Vec<u8> {
    let mut out = vec![FORMAT];
    for record in records {
        out.extend_from_slice(&record.key.to_le_bytes());
        out.extend_from_slice(&record.until_ms.to_le_bytes());
        match &record.state {
            State::Pending => out.push(0),
            State::Done(Verdict::Active(answer)) => {
                out.push(1);
                text(&mut out, &answer.principal);
                out.extend_from_slice(&(answer.scopes.len() as u32).to_le_bytes());
                answer.scopes.iter().for_each(|scope| text(&mut out, scope));
                out.extend_from_slice(&(answer.headers.len() as u32).to_le_bytes());
                for (name, value) in &answer.headers {
                    text(&mut out, name);
                    text(&mut out, value);
                }
                text(&mut out, answer.jti.as_deref().unwrap_or(""));
                for time in [answer.issued_at, answer.expires_at] {
                    out.extend_from_slice(&time.map_or(u64::MAX, |t| t).to_le_bytes());
                }
                // The values of the claims rules test, each with its claim's place.
                out.extend_from_slice(&(answer.claims.0.len() as u32).to_le_bytes());
                for (place, value) in &answer.claims.0 {
                    out.extend_from_slice(&(*place as u32).to_le_bytes());
                    text(&mut out, value);
                }
            }
            State::Done(Verdict::Inactive) => out.push(2),
            State::Done(Verdict::Refused(error)) => {
                out.push(3);
                let index = Reason::ALL.iter().position(|reason| reason == error).unwrap_or(0) as u16;
                out.extend_from_slice(&index.to_le_bytes());
            }
            State::Done(Verdict::Failed) => out.push(4),
        }
    }
    out
}

fn text(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&(text.len() as u32).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
}

/// A slot that does not decode reads as empty (the next write replaces it).
fn decode(bytes: &[u8]) -> Option<Vec<Record>> {
    let mut reader = Reader(bytes);
    if reader.take(1)? != [FORMAT] {
        return None;
    }
    let mut records = Vec::new();
    while !reader.0.is_empty() && records.len() < PER_SLOT {
        let key = u128::from_le_bytes(reader.take(16)?.try_into().ok()?);
        let until_ms = reader.u64()?;
        let state = match reader.take(1)? {
            [0] => State::Pending,
            [1] => {
                let principal = reader.text()?;
                let scopes = (0..reader.u32()?).map(|_| reader.text()).collect::<Option<Vec<_>>>()?;
                let headers =
                    (0..reader.u32()?).map(|_| Some((reader.text()?, reader.text()?))).collect::<Option<_>>()?;
                let jti = Some(reader.text()?).filter(|jti| !jti.is_empty());
                let mut time = || reader.u64().map(|t| (t != u64::MAX).then_some(t));
                let (issued_at, expires_at) = (time()?, time()?);
                let mut claims = ClaimValues::default();
                for _ in 0..reader.u32()? {
                    let place = usize::try_from(reader.u32()?).ok()?;
                    claims.0.push((place, reader.text()?));
                }
                State::Done(Verdict::Active(Answer { principal, scopes, headers, jti, issued_at, expires_at, claims }))
            }
            [2] => State::Done(Verdict::Inactive),
            [3] => {
                let index = u16::from_le_bytes(reader.take(2)?.try_into().ok()?);
                State::Done(Verdict::Refused(*Reason::ALL.get(usize::from(index))?))
            }
            [4] => State::Done(Verdict::Failed),
            _ => return None,
        };
        records.push(Record { key, until_ms, state });
    }
    Some(records)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn text(&mut self) -> Option<String> {
        let len = usize::try_from(self.u32()?).ok()?;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeShared;

    fn active(principal: &str) -> Verdict {
        Verdict::Active(Answer {
            principal: principal.into(),
            scopes: vec!["a".into(), "b:c".into()],
            headers: vec![("x-h".into(), "v".into())],
            jti: Some("j1".into()),
            issued_at: Some(5),
            expires_at: None,
            claims: ClaimValues(vec![(0, "sadmin".into()), (0, "sops".into()), (2, "btrue".into())]),
        })
    }

    #[test]
    fn records_round_trip_and_garbage_reads_as_empty() {
        let records = vec![
            Record { key: 1, until_ms: 10, state: State::Pending },
            Record { key: 2, until_ms: 20, state: State::Done(active("alice")) },
            Record { key: 3, until_ms: 30, state: State::Done(Verdict::Inactive) },
            Record { key: 4, until_ms: 40, state: State::Done(Verdict::Refused(Reason::JwtAudience)) },
            Record { key: 5, until_ms: 50, state: State::Done(Verdict::Failed) },
        ];
        assert_eq!(decode(&encode(&records)), Some(records.clone()));
        let encoded = encode(&records);
        for cut in 1..encoded.len() {
            let _ = decode(&encoded[..cut]); // never panics
        }
        assert_eq!(decode(b"\x01"), None, "the format before claims were stored");
        assert_eq!(decode(b""), None);
    }

    #[test]
    fn one_worker_calls_the_others_wait_then_all_read_the_answer() {
        let shared = FakeShared::default();
        let (a, b) = (AnswerStore::new("t", 100), AnswerStore::new("t", 100));
        let key = a.key(&shared, "opaque-1");
        assert_eq!(b.key(&shared, "opaque-1"), key, "workers share the hash key");
        assert_ne!(a.key(&shared, "opaque-2"), key);
        assert_eq!(a.claim(&shared, key, 1_000, 4_000), Claim::Call);
        assert_eq!(b.claim(&shared, key, 1_001, 4_001), Claim::Pending);
        assert!(b.pending(&shared, key, 1_002));
        assert!(a.store(&shared, key, active("alice"), 9_000, 1_500));
        assert!(!b.pending(&shared, key, 1_600));
        assert_eq!(b.claim(&shared, key, 1_600, 4_600), Claim::Stored(active("alice"), 9_000));
        // Expired: the next request calls again.
        assert_eq!(b.claim(&shared, key, 9_000, 12_000), Claim::Call);
        // A lease whose caller never answered expires too.
        assert_eq!(a.claim(&shared, key, 12_000, 15_000), Claim::Call);
        assert!(shared.keys().iter().all(|k| !k.contains("opaque")));
    }

    #[test]
    fn a_full_slot_forgets_the_answer_that_expires_soonest() {
        let shared = FakeShared::default();
        let store = AnswerStore::new("t", 1); // one slot of PER_SLOT records
        for key in 0..PER_SLOT as u128 {
            assert!(store.store(&shared, key, Verdict::Inactive, 10_000 + key as u64, 0));
        }
        assert!(store.store(&shared, 100, Verdict::Inactive, 50_000, 0));
        assert_eq!(store.claim(&shared, 0, 1, 2), Claim::Call, "the soonest to expire went");
        let records = read_slot(&shared, &store.slot_key(0));
        assert_eq!(records.len(), PER_SLOT);
    }
}
