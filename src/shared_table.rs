//! Small per-name records shared by every VM of the Envoy: a fixed number of
//! shared-data slots, each holding a few entries, changed only by
//! compare-and-swap. Bounded in memory whatever names clients bring: a full
//! slot forgets its least recently touched entry.

use crate::digest::sha256;
use crate::host_api::{Cas, SharedData};

/// Numbers one entry holds (their meaning is the caller's).
pub const VALUES: usize = 4;
/// Entries per slot: a slot is one shared-data value, read and written whole.
const PER_SLOT: usize = 8;
const ENTRY_BYTES: usize = 8 * (2 + VALUES);
const FORMAT: u8 = 1;
/// Compare-and-swap attempts before giving up on an update (another VM keeps winning).
const MAX_ATTEMPTS: usize = 16;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Entry {
    /// The name's digest (`SharedTable::key`).
    pub key: u64,
    /// When it was last written, in the caller's unit of time.
    pub touched: u64,
    pub values: [u64; VALUES],
}

#[derive(Debug)]
pub struct SharedTable {
    prefix: String,
    slots: u64,
}

impl SharedTable {
    /// A table for about `capacity` names, under shared-data keys `wasm_authn/<name>/<slot>`.
    pub fn new(name: &str, capacity: usize) -> SharedTable {
        let slots = capacity.div_ceil(PER_SLOT).max(1) as u64;
        SharedTable { prefix: format!("wasm_authn/{name}/"), slots }
    }

    /// The digest a name is kept under (a collision would need 2^64 work against a chosen name).
    pub fn key(name: &str) -> u64 {
        let digest = sha256(name.as_bytes());
        u64::from_le_bytes([digest[0], digest[1], digest[2], digest[3], digest[4], digest[5], digest[6], digest[7]])
    }

    fn slot_key(&self, key: u64) -> String {
        format!("{}{}", self.prefix, key % self.slots)
    }

    /// The entry of `key`, if any.
    pub fn read(&self, shared: &dyn SharedData, key: u64) -> Option<Entry> {
        let (bytes, _) = shared.get(&self.slot_key(key))?;
        decode(&bytes).into_iter().find(|entry| entry.key == key)
    }

    /// Change the entry of `key` atomically. `update` sees the current values (None:
    /// absent) and returns the values to write, or None to leave the entry as it is.
    /// Returns the values the entry has afterwards, or None when another VM kept
    /// winning the compare-and-swap.
    pub fn update(
        &self,
        shared: &dyn SharedData,
        key: u64,
        now: u64,
        mut update: impl FnMut(Option<&[u64; VALUES]>) -> Option<[u64; VALUES]>,
    ) -> Option<[u64; VALUES]> {
        let slot_key = self.slot_key(key);
        for _ in 0..MAX_ATTEMPTS {
            let (mut entries, cas) = match shared.get(&slot_key) {
                Some((bytes, version)) => (decode(&bytes), Cas::Expect(version)),
                None => (Vec::new(), Cas::CreateOnly),
            };
            let position = entries.iter().position(|entry| entry.key == key);
            let current = position.and_then(|i| entries.get(i)).map(|entry| entry.values);
            let Some(values) = update(current.as_ref()) else {
                return current;
            };
            let entry = Entry { key, touched: now, values };
            match position {
                Some(i) => entries[i] = entry,
                None if entries.len() < PER_SLOT => entries.push(entry),
                None => {
                    if let Some(idle) = entries.iter_mut().min_by_key(|entry| entry.touched) {
                        *idle = entry;
                    }
                }
            }
            if shared.set(&slot_key, &encode(&entries), cas) {
                return Some(values);
            }
        }
        None
    }
}

/// What `insert_once` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Once {
    /// Not seen before (or only as an expired entry): recorded.
    First,
    /// Recorded before, and not expired.
    Again,
    /// The slot is full of entries that have not expired: nothing may be forgotten.
    Full,
    /// Other VMs kept winning the compare-and-swap.
    Unavailable,
}

impl SharedTable {
    /// Record `key` until `expires_at`, unless it is already recorded and unexpired.
    /// Unlike `update`, a full slot forgets only an expired entry, never a live one:
    /// what this remembers (a one-time token's id) must not be forgotten early.
    pub fn insert_once(&self, shared: &dyn SharedData, key: u64, expires_at: u64, now: u64) -> Once {
        let slot_key = self.slot_key(key);
        for _ in 0..MAX_ATTEMPTS {
            let (mut entries, cas) = match shared.get(&slot_key) {
                Some((bytes, version)) => (decode(&bytes), Cas::Expect(version)),
                None => (Vec::new(), Cas::CreateOnly),
            };
            // `touched` is when the entry expires.
            if entries.iter().any(|entry| entry.key == key && entry.touched > now) {
                return Once::Again;
            }
            entries.retain(|entry| entry.touched > now);
            if entries.len() >= PER_SLOT {
                return Once::Full;
            }
            entries.push(Entry { key, touched: expires_at, values: [0; VALUES] });
            if shared.set(&slot_key, &encode(&entries), cas) {
                return Once::First;
            }
        }
        Once::Unavailable
    }
}

fn encode(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + entries.len() * ENTRY_BYTES);
    out.push(FORMAT);
    for entry in entries {
        out.extend_from_slice(&entry.key.to_le_bytes());
        out.extend_from_slice(&entry.touched.to_le_bytes());
        for value in entry.values {
            out.extend_from_slice(&value.to_le_bytes());
        }
    }
    out
}

/// A slot that does not decode is read as empty (the next write replaces it).
fn decode(bytes: &[u8]) -> Vec<Entry> {
    let Some((&FORMAT, body)) = bytes.split_first() else {
        return Vec::new();
    };
    if body.len() % ENTRY_BYTES != 0 || body.len() / ENTRY_BYTES > PER_SLOT {
        return Vec::new();
    }
    body.chunks_exact(ENTRY_BYTES)
        .map(|chunk| {
            let word = |i: usize| {
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(&chunk[i * 8..i * 8 + 8]);
                u64::from_le_bytes(bytes)
            };
            let mut values = [0u64; VALUES];
            for (i, value) in values.iter_mut().enumerate() {
                *value = word(2 + i);
            }
            Entry { key: word(0), touched: word(1), values }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeShared;

    fn add_one(values: Option<&[u64; VALUES]>) -> Option<[u64; VALUES]> {
        let mut next = values.copied().unwrap_or_default();
        next[0] += 1;
        Some(next)
    }

    #[test]
    fn counts_per_name_and_reads_back() {
        let shared = FakeShared::default();
        let table = SharedTable::new("t", 64);
        let (a, b) = (SharedTable::key("alice"), SharedTable::key("bob"));
        for _ in 0..3 {
            table.update(&shared, a, 1, add_one);
        }
        table.update(&shared, b, 2, add_one);
        assert_eq!(table.read(&shared, a).map(|e| e.values[0]), Some(3));
        assert_eq!(table.read(&shared, b).map(|e| (e.values[0], e.touched)), Some((1, 2)));
        assert_eq!(table.read(&shared, SharedTable::key("carol")), None);
    }

    #[test]
    fn a_full_slot_forgets_the_least_recently_touched() {
        let shared = FakeShared::default();
        let table = SharedTable::new("t", 1); // one slot of PER_SLOT entries
        for i in 0..PER_SLOT as u64 {
            table.update(&shared, i, 10 + i, add_one);
        }
        table.update(&shared, 0, 100, add_one); // entry 0 is now the freshest
        table.update(&shared, 99, 101, add_one);
        assert!(table.read(&shared, 1).is_none(), "the idlest entry went");
        assert_eq!(table.read(&shared, 0).map(|e| e.values[0]), Some(2));
        assert_eq!(table.read(&shared, 99).map(|e| e.values[0]), Some(1));
    }

    #[test]
    fn updates_from_racing_vms_are_never_lost() {
        let shared = FakeShared::default();
        let table = SharedTable::new("t", 8);
        let key = SharedTable::key("alice");
        // Another VM writes between this VM's read and its write, three times.
        let other_vm = move |shared: &FakeShared| {
            SharedTable::new("t", 8).update(shared, key, 0, add_one);
        };
        shared.interfere_before_next_sets(3, std::rc::Rc::new(other_vm));
        assert_eq!(table.update(&shared, key, 1, add_one).map(|v| v[0]), Some(1 + 3));
        assert_eq!(table.read(&shared, key).map(|e| e.values[0]), Some(4));
    }

    #[test]
    fn leaving_an_entry_unchanged_writes_nothing() {
        let shared = FakeShared::default();
        let table = SharedTable::new("t", 8);
        assert_eq!(table.update(&shared, 7, 1, |_| None), None);
        assert_eq!(shared.writes(), 0);
    }

    #[test]
    fn once_means_once_until_it_expires_and_live_entries_are_never_forgotten() {
        let shared = FakeShared::default();
        let table = SharedTable::new("t", 1); // one slot of PER_SLOT entries
        assert_eq!(table.insert_once(&shared, 1, 100, 10), Once::First);
        assert_eq!(table.insert_once(&shared, 1, 100, 50), Once::Again);
        assert_eq!(table.insert_once(&shared, 1, 200, 100), Once::First, "expired: a new life");
        for key in 2..=PER_SLOT as u64 {
            assert_eq!(table.insert_once(&shared, key, 150, 100), Once::First);
        }
        assert_eq!(table.insert_once(&shared, 99, 150, 100), Once::Full, "every entry is live");
        assert_eq!(table.insert_once(&shared, 1, 300, 120), Once::Again, "and still known");
        assert_eq!(table.insert_once(&shared, 99, 300, 150), Once::First, "room once some expired");
    }

    #[test]
    fn garbage_reads_as_empty() {
        assert!(decode(b"").is_empty());
        assert!(decode(&[2, 0, 0]).is_empty());
        assert!(decode(&[FORMAT, 1, 2, 3]).is_empty());
        let many = encode(&[Entry::default(); PER_SLOT + 1]);
        assert!(decode(&many).is_empty());
    }
}
