use super::*;
use crate::testing::FakeShared;

const HOUR: u64 = WINDOW_SECONDS;
const T0: u64 = 1_800_000_000 - 1_800_000_000 % HOUR; // the start of an hour

fn per_hour(limit: u64) -> Limits {
    Limits { requests_per_hour: Some(limit), max_concurrent: None }
}

fn admitted(admission: Admission) -> bool {
    matches!(admission, Admission::Admitted { .. })
}

#[test]
fn a_limit_of_n_admits_exactly_n() {
    let shared = FakeShared::default();
    let table = LimitTable::new(100);
    let key = LimitTable::key("api-key:c");
    let results: Vec<bool> = (0..12).map(|i| admitted(table.admit(&shared, key, &per_hour(10), T0 + i))).collect();
    assert_eq!(results.iter().filter(|a| **a).count(), 10);
    assert!(results[..10].iter().all(|a| *a) && !results[10] && !results[11]);
    let other = LimitTable::key("api-key:d");
    assert!(admitted(table.admit(&shared, other, &per_hour(10), T0 + 20)), "principals do not share a budget");
}

#[test]
fn the_hour_slides_no_burst_across_the_edge() {
    let shared = FakeShared::default();
    let table = LimitTable::new(100);
    let key = 7;
    // Ten requests at the very end of an hour...
    for i in 0..10 {
        assert!(admitted(table.admit(&shared, key, &per_hour(10), T0 + HOUR - 10 + i)));
    }
    // ...weigh fully just after the edge: no second burst.
    assert!(!admitted(table.admit(&shared, key, &per_hour(10), T0 + HOUR)));
    assert!(!admitted(table.admit(&shared, key, &per_hour(10), T0 + HOUR + 300)));
    // A tenth of the hour later a tenth of them no longer counts: one more fits.
    assert!(admitted(table.admit(&shared, key, &per_hour(10), T0 + HOUR + HOUR / 10)));
    assert!(!admitted(table.admit(&shared, key, &per_hour(10), T0 + HOUR + HOUR / 10 + 1)));
    // Two hours on, nothing is left.
    assert!(admitted(table.admit(&shared, key, &per_hour(10), T0 + 3 * HOUR)));
}

#[test]
fn retry_after_is_when_one_more_fits() {
    let shared = FakeShared::default();
    let table = LimitTable::new(100);
    for i in 0..4 {
        table.admit(&shared, 1, &per_hour(4), T0 + i);
    }
    // All four in this hour: one fits once a quarter of the next hour has passed.
    let Admission::RateLimited { retry_after_seconds, .. } = table.admit(&shared, 1, &per_hour(4), T0 + 100) else {
        panic!()
    };
    assert_eq!(retry_after_seconds, HOUR - 100 + HOUR / 4);
    assert!(!admitted(table.admit(&shared, 1, &per_hour(4), T0 + 100 + retry_after_seconds - 1)));
    assert!(admitted(table.admit(&shared, 1, &per_hour(4), T0 + 100 + retry_after_seconds)));

    // Four at the end of the previous hour: one fits once a quarter of this one has passed.
    for i in 0..4 {
        table.admit(&shared, 2, &per_hour(4), T0 - 4 + i);
    }
    let Admission::RateLimited { retry_after_seconds, .. } = table.admit(&shared, 2, &per_hour(4), T0 + 60) else {
        panic!()
    };
    assert_eq!(retry_after_seconds, HOUR / 4 - 60);
}

#[test]
fn quota_fields() {
    let shared = FakeShared::default();
    let table = LimitTable::new(100);
    let Admission::Admitted { quota: Some(quota), tracked_change: 1, .. } =
        table.admit(&shared, 3, &per_hour(5), T0 + 600)
    else {
        panic!()
    };
    assert_eq!(quota, Quota { limit: 5, remaining: 4, reset_seconds: HOUR - 600 });
    let Admission::Admitted { tracked_change, .. } = table.admit(&shared, 3, &per_hour(5), T0 + 601) else { panic!() };
    assert_eq!(tracked_change, 0);
}

#[test]
fn in_flight_slots_are_taken_and_given_back() {
    let shared = FakeShared::default();
    let table = LimitTable::new(100);
    let two = Limits { requests_per_hour: None, max_concurrent: Some(2) };
    assert!(matches!(table.admit(&shared, 9, &two, T0), Admission::Admitted { holds_slot: true, .. }));
    assert!(admitted(table.admit(&shared, 9, &two, T0)));
    assert_eq!(table.admit(&shared, 9, &two, T0), Admission::ConcurrencyLimited);
    assert_eq!(table.in_flight(&shared, 9), 2);
    table.release(&shared, 9, T0 + 1);
    assert!(admitted(table.admit(&shared, 9, &two, T0 + 1)));
    for _ in 0..5 {
        table.release(&shared, 9, T0 + 2);
    }
    assert_eq!(table.in_flight(&shared, 9), 0, "never below zero");
}

#[test]
fn both_limits_and_workers_racing() {
    let shared = FakeShared::default();
    let workers: Vec<LimitTable> = (0..4).map(|_| LimitTable::new(100)).collect();
    let both = Limits { requests_per_hour: Some(20), max_concurrent: Some(3) };
    let mut admitted_count = 0;
    for i in 0..40u64 {
        let worker = &workers[(i % 4) as usize];
        match worker.admit(&shared, 5, &both, T0 + i) {
            Admission::Admitted { .. } => {
                admitted_count += 1;
                worker.release(&shared, 5, T0 + i);
            }
            Admission::RateLimited { .. } => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(admitted_count, 20, "exactly the limit, whichever worker counted");
    assert_eq!(workers[0].in_flight(&shared, 5), 0);
}

/// Limit keys whose records share slot 0 of a table of two slots.
fn keys_of_one_slot(n: usize) -> Vec<u64> {
    (0..).map(|i: u64| i * 2).take(n).collect()
}

/// Issue 17.10: nine principals in one slot of a 16-principal table used to reset a
/// victim's hourly count (and drop its requests in flight).
#[test]
fn a_principal_is_forgotten_only_when_the_table_is_full_and_never_in_flight() {
    let shared = FakeShared::default();
    let table = LimitTable::new(16);
    let keys = keys_of_one_slot(12);
    let (victim, others) = keys.split_first().unwrap();
    let one = Limits { requests_per_hour: Some(3), max_concurrent: Some(1) };
    for _ in 0..3 {
        assert!(admitted(table.admit(&shared, *victim, &per_hour(3), T0)));
    }
    assert!(admitted(table.admit(&shared, 1, &one, T0)), "a request in flight for key 1");
    let mut tracked = 2;
    for (i, key) in others.iter().enumerate() {
        let Admission::Admitted { tracked_change, .. } = table.admit(&shared, *key, &per_hour(3), T0 + 1 + i as u64)
        else {
            panic!()
        };
        tracked += tracked_change;
    }
    assert_eq!((tracked, table.tracked(&shared)), (13, 13), "the gauge reads what the table holds");
    assert!(!admitted(table.admit(&shared, *victim, &per_hour(3), T0 + 100)), "its count survived");

    // Full: the idlest go first, never the one in flight (the idlest of all).
    for key in 100..103u64 {
        assert!(admitted(table.admit(&shared, key * 2 + 1, &per_hour(3), T0 + 200 + key)));
    }
    assert_eq!(table.tracked(&shared), 16);
    assert!(admitted(table.admit(&shared, 1001, &per_hour(3), T0 + 400)));
    assert_eq!(table.in_flight(&shared, 1), 1, "never forgotten while in flight");
    assert!(admitted(table.admit(&shared, *victim, &per_hour(3), T0 + 500)), "the idlest was forgotten");
    assert_eq!(table.admit(&shared, 1, &one, T0 + 600), Admission::ConcurrencyLimited);
}

#[test]
fn a_table_full_of_requests_in_flight_refuses_newcomers_and_loses_no_slot() {
    let shared = FakeShared::default();
    let table = LimitTable::new(8);
    let one = Limits { requests_per_hour: None, max_concurrent: Some(1) };
    for key in 0..8 {
        assert!(admitted(table.admit(&shared, key, &one, T0)));
    }
    assert_eq!(table.admit(&shared, 100, &one, T0 + 1), Admission::Unavailable, "no room, nothing counted");
    assert!((0..8).all(|key| table.in_flight(&shared, key) == 1));
    table.release(&shared, 3, T0 + 2);
    assert!(admitted(table.admit(&shared, 100, &one, T0 + 3)), "a record with nothing in flight gives its place");
}
