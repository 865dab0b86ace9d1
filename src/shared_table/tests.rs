use std::rc::Rc;

use super::*;
use crate::testing::FakeShared;

/// values[0]: a count; values[1]: pinned while non-zero; values[2]: when it expires (0: never).
const RULES: Retention = Retention {
    expired: |entry, now| entry.values[2] != 0 && now >= entry.values[2],
    evictable: |entry| entry.values[1] == 0,
};

fn add_one(values: Option<&[u64; VALUES]>) -> Option<[u64; VALUES]> {
    let mut next = values.copied().unwrap_or_default();
    next[0] += 1;
    Some(next)
}

fn with(values: [u64; VALUES]) -> impl FnMut(Option<&[u64; VALUES]>) -> Option<[u64; VALUES]> {
    move |_| Some(values)
}

fn count(table: &SharedTable, shared: &FakeShared, key: u64) -> Option<u64> {
    table.read(shared, key).map(|entry| entry.values[0])
}

/// `n` keys whose records live in slot `slot` of a table of `slots` slots.
fn keys_in_slot(slot: u64, slots: u64, n: usize) -> Vec<u64> {
    (0..).map(|i| i * slots + slot).take(n).collect()
}

#[test]
fn counts_per_name_and_reads_back() {
    let shared = FakeShared::default();
    let table = SharedTable::new("t", 64, RULES);
    let (a, b) = (SharedTable::key("alice"), SharedTable::key("bob"));
    for _ in 0..3 {
        table.update(&shared, a, 1, add_one);
    }
    assert_eq!(table.update(&shared, b, 2, add_one), (Updated::Written([1, 0, 0, 0]), 1));
    assert_eq!(count(&table, &shared, a), Some(3));
    assert_eq!(table.read(&shared, b).map(|e| e.touched), Some(2));
    assert_eq!(table.read(&shared, SharedTable::key("carol")), None);
    assert_eq!(table.len(&shared), 2);
}

#[test]
fn a_name_already_there_costs_one_read_and_one_write() {
    let shared = FakeShared::default();
    let table = SharedTable::new("t", 10_000, RULES);
    table.update(&shared, 7, 1, add_one);
    let (reads, writes) = (shared.reads(), shared.writes());
    assert_eq!(table.update(&shared, 7, 2, add_one), (Updated::Written([2, 0, 0, 0]), 0));
    assert_eq!((shared.reads() - reads, shared.writes() - writes), (1, 1));
}

/// Issue 17.10: with room for 16, nine names in one slot of 8 on average forget nobody.
#[test]
fn nothing_is_forgotten_before_the_table_is_full() {
    let shared = FakeShared::default();
    let table = SharedTable::new("t", 16, RULES); // two slots
    let crowded = keys_in_slot(0, 2, 12);
    let others = keys_in_slot(1, 2, 4);
    for (t, key) in crowded.iter().chain(&others).enumerate() {
        table.update(&shared, *key, t as u64, add_one);
    }
    for key in crowded.iter().chain(&others) {
        assert_eq!(count(&table, &shared, *key), Some(1), "key {key}");
    }
    assert_eq!(table.len(&shared), 16);
}

#[test]
fn a_full_table_forgets_its_idlest_first() {
    let shared = FakeShared::default();
    let table = SharedTable::new("t", 16, RULES);
    let keys = keys_in_slot(0, 2, 10).into_iter().chain(keys_in_slot(1, 2, 6)).collect::<Vec<_>>();
    for (t, key) in keys.iter().enumerate() {
        table.update(&shared, *key, 100 + t as u64, add_one);
    }
    // The first key is touched again: the second is now the idlest, in the other slot
    // than the newcomer's.
    table.update(&shared, keys[0], 200, add_one);
    let newcomer = keys_in_slot(1, 2, 7)[6];
    assert_eq!(table.update(&shared, newcomer, 201, add_one), (Updated::Written([1, 0, 0, 0]), 0));
    assert_eq!(table.read(&shared, keys[1]), None, "the idlest went");
    assert_eq!(count(&table, &shared, keys[0]), Some(2));
    assert_eq!(count(&table, &shared, newcomer), Some(1));
    assert_eq!(table.len(&shared), 16);
    // And the next idlest next.
    table.update(&shared, 999 * 2, 202, add_one);
    assert_eq!(table.read(&shared, keys[2]), None);
    assert!(keys[3..].iter().all(|key| table.read(&shared, *key).is_some()));
}

#[test]
fn pinned_records_are_never_forgotten() {
    let shared = FakeShared::default();
    let table = SharedTable::new("t", 8, RULES); // one slot
    for key in 0..8 {
        table.update(&shared, key, key, with([1, u64::from(key != 5), 0, 0]));
    }
    // Only key 5 is not pinned: it goes, though it is not the idlest.
    assert_eq!(table.update(&shared, 100, 50, add_one), (Updated::Written([1, 0, 0, 0]), 0));
    assert_eq!(table.read(&shared, 5), None);
    assert!((0..8).filter(|k| *k != 5).all(|key| table.read(&shared, key).is_some()));
    // All pinned: no room, and nothing written.
    table.update(&shared, 100, 51, with([1, 1, 0, 0]));
    let writes = shared.writes();
    assert_eq!(table.update(&shared, 101, 52, add_one), (Updated::Full, 0));
    assert_eq!(shared.writes(), writes);
    // A name already there is still counted.
    assert!(matches!(table.update(&shared, 3, 53, add_one), (Updated::Written(_), 0)));
}

#[test]
fn expired_records_are_free_places_table_full_or_not() {
    let shared = FakeShared::default();
    let table = SharedTable::new("t", 16, RULES);
    table.update(&shared, 0, 1, with([1, 0, 10, 0])); // expires at 10
    table.update(&shared, 2, 1, add_one);
    // Expired: it reads as absent, and is written again in its place, not as a new record.
    let fresh = [9, 0, 0, 0];
    assert_eq!(table.update(&shared, 0, 10, |current| Some(*current.unwrap_or(&fresh))), (Updated::Written(fresh), 0));
    // A newcomer of its slot takes an expired record's place.
    table.update(&shared, 4, 20, with([1, 0, 30, 0]));
    assert_eq!(table.update(&shared, 6, 30, add_one), (Updated::Written([1, 0, 0, 0]), 0));
    assert_eq!(table.read(&shared, 4), None);
    assert_eq!(table.len(&shared), 3);
    // In a full table an expired record goes before the idlest live one.
    for key in 100..112 {
        table.update(&shared, key * 2 + 1, 40, add_one);
    }
    table.update(&shared, 1, 41, with([1, 0, 45, 0])); // slot 1, expires at 45
    assert_eq!(table.len(&shared), 16);
    table.update(&shared, 1000, 50, add_one); // slot 0: its idlest live record is older
    assert_eq!(table.read(&shared, 1), None);
    assert_eq!(count(&table, &shared, 2), Some(1));
}

#[test]
fn updates_from_racing_vms_are_never_lost() {
    let shared = FakeShared::default();
    let table = SharedTable::new("t", 8, RULES);
    let key = SharedTable::key("alice");
    // Another VM writes between this VM's read and its write, three times.
    let other_vm = move |shared: &FakeShared| {
        SharedTable::new("t", 8, RULES).update(shared, key, 0, add_one);
    };
    shared.interfere_before_next_sets(3, Rc::new(other_vm));
    assert_eq!(table.update(&shared, key, 1, add_one), (Updated::Written([4, 0, 0, 0]), 0));
    assert_eq!(count(&table, &shared, key), Some(4));
    assert_eq!(table.len(&shared), 1, "one record, however many VMs added it");
}

#[test]
fn racing_newcomers_never_take_more_than_the_table_holds() {
    let shared = FakeShared::default();
    let table = SharedTable::new("t", 16, RULES);
    for key in 0..15 {
        table.update(&shared, key, 1, add_one);
    }
    // The last place: another VM takes it for another name while this VM reserves it.
    let other_vm = |shared: &FakeShared| {
        SharedTable::new("t", 16, RULES).update(shared, 1001, 2, add_one);
    };
    shared.interfere_before_next_sets(1, Rc::new(other_vm));
    assert_eq!(table.update(&shared, 1003, 3, add_one), (Updated::Written([1, 0, 0, 0]), 0));
    assert_eq!(table.len(&shared), 16);
    let kept = (0..15).chain([1001, 1003]).filter(|key| table.read(&shared, *key).is_some()).count();
    assert_eq!(kept, 16, "one went to make room, once the table was full");
}

#[test]
fn a_place_held_for_a_name_another_vm_added_goes_back() {
    let shared = FakeShared::default();
    let table = SharedTable::new("t", 16, RULES);
    // Another VM adds the same name between this VM's reservation (the first write) and
    // its write of the record (the second).
    let writes = Rc::new(std::cell::Cell::new(0));
    let other_vm = move |shared: &FakeShared| {
        writes.set(writes.get() + 1);
        if writes.get() == 2 {
            SharedTable::new("t", 16, RULES).update(shared, 42, 1, add_one);
        }
    };
    shared.interfere_before_next_sets(2, Rc::new(other_vm));
    assert_eq!(table.update(&shared, 42, 2, add_one), (Updated::Written([2, 0, 0, 0]), 0));
    assert_eq!(table.len(&shared), 1);
    assert_eq!(count(&table, &shared, 42), Some(2));
}

#[test]
fn a_large_table_keeps_every_name_until_full_then_forgets_only_idle_ones() {
    let shared = FakeShared::default();
    let table = SharedTable::new("t", 10_000, RULES);
    let names: Vec<u64> = (0..10_000).map(|i| SharedTable::key(format!("principal-{i}"))).collect();
    for (t, key) in names.iter().enumerate() {
        table.update(&shared, *key, t as u64, add_one);
    }
    assert_eq!(table.len(&shared), 10_000);
    assert!(names.iter().all(|key| table.read(&shared, *key).is_some()), "none forgotten before it is full");
    // A thousand newcomers: each forgets the idlest of the records it looks at, never a recent one.
    for i in 0..1_000u64 {
        let key = SharedTable::key(format!("newcomer-{i}"));
        assert_eq!(table.update(&shared, key, 20_000 + i, add_one), (Updated::Written([1, 0, 0, 0]), 0));
    }
    assert_eq!(table.len(&shared), 10_000);
    let forgotten: Vec<usize> = (0..names.len()).filter(|&t| table.read(&shared, names[t]).is_none()).collect();
    assert_eq!(forgotten.len(), 1_000);
    assert!(forgotten.iter().all(|&t| t < 5_000), "only the older half: {:?}", forgotten.iter().max());
}

#[test]
fn once_means_once_until_it_expires_and_live_records_are_never_forgotten() {
    let shared = FakeShared::default();
    let table = SharedTable::new("t", 16, ONE_TIME); // two slots
    assert_eq!(table.insert_once(&shared, 0, 100, 10), Once::First);
    assert_eq!(table.insert_once(&shared, 0, 100, 50), Once::Again);
    assert_eq!(table.insert_once(&shared, 0, 200, 100), Once::First, "expired: a new life");
    // Fullness is the table's: sixteen live ids whatever their slots (twelve in one).
    for key in keys_in_slot(0, 2, 12).into_iter().skip(1).chain(keys_in_slot(1, 2, 4)) {
        assert_eq!(table.insert_once(&shared, key, 150, 100), Once::First, "{key}");
    }
    assert_eq!(table.insert_once(&shared, 99, 150, 100), Once::Full, "every record is live");
    assert_eq!(table.insert_once(&shared, 0, 300, 120), Once::Again, "and still known");
    assert_eq!(table.insert_once(&shared, 99, 300, 150), Once::First, "room once some expired");
    assert_eq!(table.len(&shared), 16);
}

#[test]
fn a_record_given_back_is_first_again_and_takes_no_more_room() {
    let shared = FakeShared::default();
    let table = SharedTable::new("t", 16, ONE_TIME);
    assert_eq!(table.insert_once(&shared, 7, 100, 10), Once::First);
    table.give_back_once(&shared, 7, 11);
    assert_eq!(table.insert_once(&shared, 7, 100, 12), Once::First);
    assert_eq!(table.insert_once(&shared, 7, 100, 13), Once::Again);
    // Giving back what was never recorded records nothing.
    table.give_back_once(&shared, 8, 14);
    assert_eq!(table.len(&shared), 1);
}

#[test]
fn garbage_reads_as_empty() {
    assert!(decode(b"").is_empty());
    assert!(decode(&[2, 0, 0]).is_empty());
    assert!(decode(&[FORMAT, 1, 2, 3]).is_empty());
    let many = Slot(vec![Entry::default(); MAX_PER_SLOT + 1]).encode();
    assert!(decode(&many).is_empty());
    let shared = FakeShared::default();
    let table = SharedTable::new("t", 8, RULES);
    shared.set(&table.count_key(), b"garbage", Cas::Any);
    assert_eq!(table.len(&shared), 0);
}

/// Every record the table holds, slot by slot.
fn all_records(table: &SharedTable, shared: &FakeShared) -> Vec<Entry> {
    (0..table.slots).flat_map(|slot| read_slot(shared, &table.slot_key(slot)).0 .0).collect()
}

/// Random updates from four VMs, each racing another VM's write into its read-then-write,
/// with and without records that expire: the count stays exact, a name has one record,
/// the table never holds more than its capacity, a pinned live record is never
/// forgotten, and (nothing expiring) nothing is forgotten before the table is full.
#[test]
fn racing_vms_keep_every_invariant() {
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move |bound: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % bound
    };
    for (capacity, expiring) in [(8, false), (16, false), (24, false), (40, false), (16, true), (40, true)] {
        let shared = FakeShared::default();
        let vms: Vec<SharedTable> = (0..4).map(|_| SharedTable::new("race", capacity, RULES)).collect();
        let mut seen = std::collections::HashSet::new();
        for step in 0..3_000u64 {
            let now = 1_000 + step;
            // Keys from a range twice the capacity; a quarter of the writes pin their record.
            let (key, pin) = (next(2 * capacity as u64), u64::from(next(4) == 0));
            let expires = if expiring && next(2) == 0 { now + next(30) } else { 0 };
            let other = (next(2 * capacity as u64), now);
            let interfere = next(3) == 0;
            if interfere {
                seen.insert(other.0);
                let other_vm = move |shared: &FakeShared| {
                    SharedTable::new("race", capacity, RULES).update(shared, other.0, other.1, add_one);
                };
                shared.interfere_before_next_sets(1, Rc::new(other_vm));
            }
            let live = |e: &Entry| !(RULES.expired)(e, now);
            let pinned_before: Vec<u64> =
                all_records(&vms[0], &shared).iter().filter(|e| e.values[1] != 0 && live(e)).map(|e| e.key).collect();
            let full_before = vms[0].len(&shared) >= capacity as u64;
            let vm = &vms[(step % 4) as usize];
            vm.update(&shared, key, now, |current| {
                let mut values = current.copied().unwrap_or_default();
                values[0] += 1;
                values[1] = pin;
                values[2] = expires;
                Some(values)
            });
            seen.insert(key);
            let records = all_records(&vms[0], &shared);
            assert_eq!(records.len() as u64, vms[0].len(&shared), "capacity {capacity}, step {step}: the count");
            assert!(records.len() <= capacity, "capacity {capacity}, step {step}: over capacity");
            let mut keys: Vec<u64> = records.iter().map(|e| e.key).collect();
            keys.sort_unstable();
            keys.dedup();
            assert_eq!(keys.len(), records.len(), "capacity {capacity}, step {step}: a name twice");
            for pinned in pinned_before.iter().filter(|k| **k != key) {
                assert!(
                    keys.binary_search(pinned).is_ok(),
                    "capacity {capacity}, step {step}: pinned {pinned} forgotten"
                );
            }
            if !expiring && !full_before && seen.len() <= capacity {
                assert_eq!(keys.len(), seen.len(), "capacity {capacity}, step {step}: forgotten before full");
            }
        }
    }
}
