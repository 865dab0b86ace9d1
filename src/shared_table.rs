//! Small per-name records shared by every VM of the Envoy (limit counts, password
//! failures, one-time token ids), in proxy-wasm shared data changed only by
//! compare-and-swap, and bounded in memory whatever names clients bring.
//!
//! How it is laid out, and why:
//!
//! - **A record never moves.** A name's record lives in the slot its key picks
//!   (`key % slots`, about `capacity / 8` slots), a slot being one shared-data value
//!   (`wasm_authn/<table>/<slots>/<slot>`) of up to `MAX_PER_SLOT` records, read and
//!   written whole. A request for a name already there reads one slot and writes it
//!   back with compare-and-swap: its change is atomic across VMs, and a request
//!   touches O(1) shared entries whatever the table holds, never a scan.
//! - **Full means full.** The records of the whole table are counted in one more
//!   value (`.../count`), changed only when a record is added or removed, never on
//!   the path of a name already there. A new name first reserves its place in that
//!   count (compare-and-swap: racing VMs never take more than `capacity`), then
//!   writes its slot; a place it no longer needs (another VM added the same name
//!   meanwhile) is given back. (Given back after as many lost races as an update
//!   allows, a place stays counted: the table then holds one record fewer; no
//!   request is ever let through for it.) A slot is never "full" before the table is: it takes
//!   up to `MAX_PER_SLOT` records, eight times the average of a full table
//!   (a slot that reaches it forgets its idlest record, which random names make
//!   vanishingly rare: names are SHA-256 digests).
//! - **Expired records are free.** The caller's `Retention` says when a record
//!   holds nothing any more (both hourly windows of a limit count past, no request
//!   in flight; a failure window over; a one-time token past its expiry). A new name
//!   takes an expired record's place in its own slot at once, table full or not,
//!   without touching the count.
//! - **Eviction only when full, idlest first, never a pinned record.** When the
//!   count says full, the new name's slot and the next `SAMPLE` slots of a sweep
//!   (a cursor per VM, moving on each time) are looked at, and the idlest record
//!   that `Retention::evictable` allows (never one with requests in flight, never an
//!   unexpired one-time token) gives its place; an expired one first. Found in
//!   another slot, it is removed there (compare-and-swap, if it is still as seen)
//!   and its place in the count passes to the new name. Exact least-recently-used
//!   order across VMs would need every request to write one shared order of all
//!   names; this keeps each request to its own slot, at the price of choosing the
//!   idlest of about `(SAMPLE + 1) * 8` records rather than of all: every record,
//!   exactly, in a table of up to `(SAMPLE + 1) * 8` (three slots). When nothing
//!   there may go, up to `MAX_SWEEP` slots are looked at; then the name is refused
//!   (`Updated::Full`), which its caller answers as it must (a 503, never a pass).
//! - **Records read together live together**: `update_near` keeps a record in the
//!   slot of another key (a user name's failures per source beside its failures
//!   from everywhere), so `records_near` reads them all at once.
//! - **A resize starts afresh**: the slot count is part of every key, so a table
//!   of another size never reads the old one's records (they stay, unread).

use std::cell::Cell;

use crate::digest::sha256;
use crate::host_api::{compare_and_swap, Cas, SharedData, SharedRecord, Swap};

/// Numbers one record holds (their meaning is the caller's).
pub const VALUES: usize = 4;
/// Records per slot on average when the table is full.
const PER_SLOT: usize = 8;
/// Records one slot may hold: a slot is never full before the table is, but for skew.
const MAX_PER_SLOT: usize = 8 * PER_SLOT;
/// Slots besides a new name's own looked at for the idlest record, when the table is full.
const SAMPLE: u64 = 2;
/// Slots looked at, at most, for a record that may go.
const MAX_SWEEP: u64 = 8;
const ENTRY_BYTES: usize = 8 * (2 + VALUES);
const FORMAT: u8 = 1;
/// Compare-and-swap attempts before giving up on an update (another VM keeps winning).
const MAX_ATTEMPTS: usize = 16;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
/// One record of a table.
pub struct Entry {
    /// The name's digest (`SharedTable::key`).
    pub key: u64,
    /// When it was last written, in the caller's unit of time.
    pub touched: u64,
    /// What its caller keeps in it.
    pub values: [u64; VALUES],
}

/// What a table may forget, and when: its caller's rules.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// The record holds nothing any more at `now`: its place may be taken at any time.
    pub expired: fn(&Entry, u64) -> bool,
    /// It may be forgotten to make room in a full table (the idlest first).
    pub evictable: fn(&Entry) -> bool,
}

/// A change to a record: its values (None: absent or expired) to what to write (None: nothing).
type Change<'a> = dyn FnMut(Option<&[u64; VALUES]>) -> Option<[u64; VALUES]> + 'a;

/// What `update` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Updated {
    /// Written: the record's values now.
    Written([u64; VALUES]),
    /// `update` left it as it was (None: there is no live record).
    Unchanged(Option<[u64; VALUES]>),
    /// The table is full and nothing it could forget may go.
    Full,
    /// Other VMs kept winning the compare-and-swap: nothing was written.
    Unavailable,
}

#[derive(Debug)]
/// A bounded table of per-name records in shared data.
pub struct SharedTable {
    prefix: String,
    slots: u64,
    capacity: u64,
    retention: Retention,
    /// This VM's sweep position.
    sweep: Cell<u64>,
}

/// Where a new record goes.
enum Room {
    /// Its place in the count is held: reserved (the count grew), or passed on by a record removed elsewhere.
    Held {
        reserved: bool,
    },
    /// In place of this record of its own slot.
    Replace(usize),
    Full,
    Unavailable,
}

impl SharedTable {
    /// A table of at most `capacity` names, under shared-data keys `wasm_authn/<name>/...`.
    pub fn new(name: &str, capacity: usize, retention: Retention) -> SharedTable {
        let slots = capacity.div_ceil(PER_SLOT).max(1) as u64;
        SharedTable {
            prefix: format!("wasm_authn/{name}/{slots}/"),
            slots,
            capacity: capacity as u64,
            retention,
            sweep: Cell::new(0),
        }
    }

    /// The digest a name is kept under (a collision would need 2^64 work against a chosen name).
    pub fn key(name: impl AsRef<[u8]>) -> u64 {
        let digest = sha256(name.as_ref());
        u64::from_le_bytes([digest[0], digest[1], digest[2], digest[3], digest[4], digest[5], digest[6], digest[7]])
    }

    fn slot_key(&self, slot: u64) -> String {
        format!("{}{slot}", self.prefix)
    }

    fn count_key(&self) -> String {
        format!("{}count", self.prefix)
    }

    /// The record of `key`, if any (expired or not: its values say).
    pub fn read(&self, shared: &dyn SharedData, key: u64) -> Option<Entry> {
        self.records_near(shared, key).into_iter().find(|entry| entry.key == key)
    }

    /// Every record of the slot of `near` (those `update_near` keeps there among them): one read.
    pub fn records_near(&self, shared: &dyn SharedData, near: u64) -> Vec<Entry> {
        read_slot(shared, &self.slot_key(near % self.slots)).0 .0
    }

    /// Records the table holds (expired ones awaiting reuse included).
    pub fn len(&self, shared: &dyn SharedData) -> u64 {
        read_count(shared, &self.count_key()).0 .0
    }

    /// Change the record of `key` atomically. `update` sees its values (None: absent or
    /// expired) and returns the values to write, or None to leave it as it is. Also
    /// returns the change in the number of records the table holds (-1, 0 or 1).
    pub fn update(
        &self,
        shared: &dyn SharedData,
        key: u64,
        now: u64,
        mut update: impl FnMut(Option<&[u64; VALUES]>) -> Option<[u64; VALUES]>,
    ) -> (Updated, i64) {
        self.update_dyn(shared, key, key, now, &mut update)
    }

    /// `update` of a record kept in the slot of `near` (records read together are kept together).
    pub fn update_near(
        &self,
        shared: &dyn SharedData,
        near: u64,
        key: u64,
        now: u64,
        mut update: impl FnMut(Option<&[u64; VALUES]>) -> Option<[u64; VALUES]>,
    ) -> (Updated, i64) {
        self.update_dyn(shared, near, key, now, &mut update)
    }

    /// `update`, compiled once for every caller.
    fn update_dyn(
        &self,
        shared: &dyn SharedData,
        near: u64,
        key: u64,
        now: u64,
        update: &mut Change,
    ) -> (Updated, i64) {
        let home = near % self.slots;
        let slot_key = self.slot_key(home);
        let expired = self.retention.expired;
        // This call holds a place in the count for a new record of `key`.
        let mut held = false;
        let mut records = 0;
        let written = compare_and_swap(shared, &slot_key, MAX_ATTEMPTS, |Slot(mut entries)| {
            let own = entries.iter().position(|entry| entry.key == key);
            let current = own.filter(|&i| !expired(&entries[i], now)).map(|i| entries[i].values);
            let Some(values) = update(current.as_ref()) else {
                return Swap::Stop((Updated::Unchanged(current), false));
            };
            let entry = Entry { key, touched: now, values };
            // Its own record, else an expired one of its slot, else a new one.
            let reuse = own.or_else(|| entries.iter().position(|entry| expired(entry, now)));
            let added = match reuse {
                Some(i) => {
                    entries[i] = entry;
                    false
                }
                None if held && entries.len() < MAX_PER_SLOT => {
                    entries.push(entry);
                    true
                }
                // The rare slot at its most: its idlest record goes, table full or not.
                None if entries.len() >= MAX_PER_SLOT => match self.idlest(&entries, now) {
                    Some(i) => {
                        entries[i] = entry;
                        false
                    }
                    None => return Swap::Stop((Updated::Full, false)),
                },
                None => match self.make_room(shared, home, &entries, now) {
                    Room::Held { reserved } => {
                        held = true;
                        records += i64::from(reserved);
                        return Swap::Again; // read the slot again and take the place held
                    }
                    Room::Replace(i) => {
                        entries[i] = entry;
                        false
                    }
                    Room::Full => return Swap::Stop((Updated::Full, false)),
                    Room::Unavailable => return Swap::Stop((Updated::Unavailable, false)),
                },
            };
            Swap::Write(Slot(entries), (Updated::Written(values), added))
        });
        let (outcome, added) = written.unwrap_or((Updated::Unavailable, false));
        // A place held but not taken (the record was there after all) goes back.
        held &= !added;
        if held {
            self.give_back(shared);
            records -= 1;
        }
        (outcome, records)
    }

    /// The idlest record of `entries` that may go: an expired one first.
    fn idlest(&self, entries: &[Entry], now: u64) -> Option<usize> {
        let Retention { expired, evictable } = self.retention;
        (0..entries.len())
            .filter(|&i| expired(&entries[i], now) || evictable(&entries[i]))
            .min_by_key(|&i| (!expired(&entries[i], now), entries[i].touched))
    }

    /// Room for a new record in slot `home`, whose `entries` have none expired and room for one more.
    fn make_room(&self, shared: &dyn SharedData, home: u64, entries: &[Entry], now: u64) -> Room {
        let count_key = self.count_key();
        let expired = self.retention.expired;
        let idleness = |entry: &Entry| (!expired(entry, now), entry.touched);
        let room = compare_and_swap(shared, &count_key, MAX_ATTEMPTS, |Count(count)| {
            if count < self.capacity {
                return Swap::Write(Count(count.saturating_add(1)), Room::Held { reserved: true });
            }
            // Full: the idlest record that may go, of this slot or of the sweep's.
            let here = self.idlest(entries, now);
            let mut elsewhere: Option<(u64, Entry)> = None;
            let others = self.slots - 1;
            let start = self.sweep.get();
            for step in 0..MAX_SWEEP.min(others) {
                if step >= SAMPLE && (here.is_some() || elsewhere.is_some()) {
                    break;
                }
                let slot = (home + 1 + (start + step) % others) % self.slots;
                let (Slot(records), _) = read_slot(shared, &self.slot_key(slot));
                if let Some(i) = self.idlest(&records, now) {
                    let idler = |than: &Entry| idleness(&records[i]) < idleness(than);
                    let best = elsewhere.map(|(_, e)| e).or(here.map(|h| entries[h]));
                    if best.is_none_or(|best| idler(&best)) {
                        elsewhere = Some((slot, records[i]));
                    }
                }
            }
            self.sweep.set(start.wrapping_add(SAMPLE));
            match (elsewhere, here) {
                (Some((slot, victim)), _) => match self.remove(shared, slot, victim) {
                    true => Swap::Stop(Room::Held { reserved: false }),
                    false => Swap::Again, // it changed meanwhile: look again
                },
                (None, Some(i)) => Swap::Stop(Room::Replace(i)),
                (None, None) => Swap::Stop(Room::Full),
            }
        });
        room.unwrap_or(Room::Unavailable)
    }

    /// Remove `victim` from `slot`, if it is still there as it was seen.
    fn remove(&self, shared: &dyn SharedData, slot: u64, victim: Entry) -> bool {
        let slot_key = self.slot_key(slot);
        let (Slot(mut entries), cas) = read_slot(shared, &slot_key);
        let Some(i) = entries.iter().position(|entry| *entry == victim) else { return false };
        entries.swap_remove(i);
        shared.set(&slot_key, &Slot(entries).encode(), cas)
    }

    /// A place held in the count and not taken.
    fn give_back(&self, shared: &dyn SharedData) {
        compare_and_swap(shared, &self.count_key(), MAX_ATTEMPTS, |Count(count)| {
            Swap::Write(Count(count.saturating_sub(1)), ())
        });
    }
}

/// What `insert_once` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Once {
    /// Not seen before (or only as an expired record): recorded.
    First,
    /// Recorded before, and not expired.
    Again,
    /// The table is full of records that have not expired: nothing may be forgotten.
    Full,
    /// Other VMs kept winning the compare-and-swap.
    Unavailable,
}

/// A table of `insert_once` records: forgotten once expired, never before.
pub const ONE_TIME: Retention = Retention { expired: |entry, now| now >= entry.values[0], evictable: |_| false };

impl SharedTable {
    /// Record `key` until `expires_at`, unless it is already recorded and unexpired
    /// (a table of `ONE_TIME` retention: what it remembers, a one-time token's id,
    /// is never forgotten early).
    pub fn insert_once(&self, shared: &dyn SharedData, key: u64, expires_at: u64, now: u64) -> Once {
        match self.update(shared, key, now, |current| current.is_none().then_some([expires_at, 0, 0, 0])).0 {
            Updated::Written(_) => Once::First,
            Updated::Unchanged(_) => Once::Again,
            Updated::Full => Once::Full,
            Updated::Unavailable => Once::Unavailable,
        }
    }

    /// Give back a record `insert_once` made: the use it stood for was not made (the
    /// request was answered "try later"), so the next `insert_once` of `key` is `First`.
    /// Best effort: a record that cannot be rewritten keeps refusing until it expires.
    pub fn give_back_once(&self, shared: &dyn SharedData, key: u64, now: u64) {
        self.update(shared, key, now, |seen| seen.map(|_| [now, 0, 0, 0]));
    }
}

/// A slot's records (a slot that does not decode reads as empty).
struct Slot(Vec<Entry>);

/// The table's count of records (garbage reads as 0).
struct Count(u64);

impl SharedRecord for Slot {
    fn decode(bytes: Option<&[u8]>) -> Slot {
        Slot(bytes.map(decode).unwrap_or_default())
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + self.0.len() * ENTRY_BYTES);
        out.push(FORMAT);
        for entry in &self.0 {
            out.extend_from_slice(&entry.key.to_le_bytes());
            out.extend_from_slice(&entry.touched.to_le_bytes());
            for value in entry.values {
                out.extend_from_slice(&value.to_le_bytes());
            }
        }
        out
    }
}

impl SharedRecord for Count {
    fn decode(bytes: Option<&[u8]>) -> Count {
        Count(bytes.and_then(|bytes| bytes.try_into().ok()).map_or(0, u64::from_le_bytes))
    }

    fn encode(&self) -> Vec<u8> {
        self.0.to_le_bytes().to_vec()
    }
}

/// A shared record and how to write it back.
fn read<R: SharedRecord>(shared: &dyn SharedData, key: &str) -> (R, Cas) {
    match shared.get(key) {
        Some((bytes, version)) => (R::decode(Some(&bytes)), Cas::Expect(version)),
        None => (R::decode(None), Cas::CreateOnly),
    }
}

fn read_slot(shared: &dyn SharedData, slot_key: &str) -> (Slot, Cas) {
    read(shared, slot_key)
}

fn read_count(shared: &dyn SharedData, count_key: &str) -> (Count, Cas) {
    read(shared, count_key)
}

fn decode(bytes: &[u8]) -> Vec<Entry> {
    let Some((&FORMAT, body)) = bytes.split_first() else {
        return Vec::new();
    };
    if body.len() % ENTRY_BYTES != 0 || body.len() / ENTRY_BYTES > MAX_PER_SLOT {
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
mod tests;
