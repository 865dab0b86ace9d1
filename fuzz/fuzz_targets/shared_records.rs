//! What the filter reads back from proxy-wasm shared data, where every VM of the
//! Envoy (and any other plugin sharing the VM id) writes: a remote document's fetch
//! record (`remote::FetchRecord::parse`) and stored body, read through
//! `RemoteDocument` (sync, start, a fetch's answer, a failure), and a slot (and the
//! count) of a table of records (`shared_table::SharedTable`).
//!
//! Input: record, NUL, body, NUL, slot (a store that answers those for any key of
//! their kind, as if another VM had written them), and the rest as numbers.
//!
//! Properties: no panic or overflow whatever is stored; a decoded record encodes
//! back to itself; a document picked up from shared data is exactly what the parser
//! makes of the stored body; a failure's backoff is at most a minute; an update of
//! the table that succeeds is read back as written.
#![no_main]

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use wasm_authn::host_api::{CallResponse, Cas, SharedData, SharedRecord, Target};
use wasm_authn::jwt::KeySet;
use wasm_authn::remote::{FetchConfig, FetchPolicy, FetchRecord, Progress, RemoteDocument, Step};
use wasm_authn::shared_table::{Retention, SharedTable, Updated, VALUES};
use wasm_authn_fuzz::{split_nul, NOW};

/// Shared data that already holds what other VMs wrote: `record` under every fetch
/// record key, `body` under every document key, `slot` under every other key.
struct Store<'a> {
    record: &'a [u8],
    body: &'a [u8],
    slot: &'a [u8],
    written: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    version: Cell<u32>,
}

impl SharedData for Store<'_> {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        if let Some(entry) = self.written.borrow().get(key) {
            return Some(entry.clone());
        }
        let stored = if key.ends_with("/fetch") {
            self.record
        } else if key.ends_with("/body") {
            self.body
        } else {
            self.slot
        };
        Some((stored.to_vec(), 1))
    }

    fn set(&self, key: &str, value: &[u8], cas: Cas) -> bool {
        let current = self.get(key).map(|(_, version)| version);
        let allowed = cas.allows(current);
        if allowed {
            self.version.set(self.version.get() + 1);
            self.written.borrow_mut().insert(key.to_string(), (value.to_vec(), self.version.get()));
        }
        allowed
    }
}

struct Response<'a>(&'a [u8]);

impl CallResponse for Response<'_> {
    fn status(&self) -> Option<u16> {
        Some(200)
    }
    fn body_size(&self) -> usize {
        self.0.len()
    }
    fn body(&self) -> Vec<u8> {
        self.0.to_vec()
    }
}

const POLICY: FetchPolicy = FetchPolicy { refresh_ms: 300_000, timeout_ms: 2_000, min_refetch_ms: 30_000 };

fn number(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    for (i, b) in bytes.iter().skip(at * 8).take(8).enumerate() {
        word[i] = *b;
    }
    u64::from_le_bytes(word)
}

fuzz_target!(|data: &[u8]| {
    let (record, rest) = split_nul(data);
    let (body, rest) = split_nul(rest);
    let (slot, numbers) = split_nul(rest);
    // Host time: milliseconds since the epoch, within a century of now.
    let now_ms = NOW * 1000 + number(numbers, 0) % (100 * 365 * 86_400_000);

    if let Some(decoded) = FetchRecord::parse(record) {
        assert_eq!(FetchRecord::parse(&decoded.encode()), Some(decoded));
        let _ = decoded.due(now_ms, &POLICY, true);
        let _ = decoded.refetch_allowed(now_ms, &POLICY);
        let failed = decoded.failed(now_ms, &POLICY);
        assert!(failed.next_attempt_ms - now_ms <= 60_000);
        let _ = decoded.succeeded(now_ms).leased(now_ms, &POLICY, wasm_authn::remote::FetchReason::UnknownKid);
    }

    let store = Store { record, body, slot, written: RefCell::default(), version: Cell::new(1) };
    let fetch = FetchConfig {
        target: Target { cluster: "jwks".into(), authority: "jwks.local".into(), path: "/jwks.json".into() },
        discovery: None,
        policy: POLICY,
        max_response_bytes: 65_536,
    };
    let mut document = RemoteDocument::new(fetch, "jwks\0fuzz\0issuer", std::rc::Rc::new(KeySet::from_remote_jwks));
    let changed = document.sync(&store);
    assert_eq!(changed, KeySet::from_remote_jwks(body).is_ok());
    assert_eq!(document.value().is_some(), changed);
    let _ = document.refetch_allowed(now_ms);
    let _ = document.start(&store, now_ms, number(numbers, 1) & 1 == 1);
    match document.on_response(&store, Step::Document, &Response(body), now_ms) {
        Progress::Fetched { .. } => assert!(document.value().is_some()),
        Progress::Failed(_) => assert!(KeySet::from_remote_jwks(body).is_err()),
        Progress::Call(_) => panic!("a JWKS answer asks for another call"),
    }
    assert!(document.fail(&store, now_ms) <= 60_000);

    let retention = Retention { expired: |entry, now| now >= entry.values[2], evictable: |entry| entry.values[3] == 0 };
    let table = SharedTable::new("fuzz", 8 * (1 + number(numbers, 2) as usize % 4), retention);
    let key = number(numbers, 3);
    let _ = table.read(&store, key);
    let _ = table.len(&store);
    let values = [number(numbers, 4), number(numbers, 5), now_ms + 1, number(numbers, 6) & 1];
    let (written, records) = table.update(&store, key, now_ms, |current| {
        let _ = current.map(|v: &[u64; VALUES]| v[0]);
        Some(values)
    });
    assert!((-1..=1).contains(&records));
    if let Updated::Written(_) = written {
        let entry = table.read(&store, key).expect("an entry just written");
        assert_eq!((entry.values, entry.touched), (values, now_ms));
    }
});
