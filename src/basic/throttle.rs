//! Failed password checks per user name, counted across every VM of the Envoy:
//! past `max_failures` in a window, the name is refused with 429 until the
//! window ends, without a hash. Unknown names are counted in a table of their
//! own, so a flood of made-up names cannot push real users' counts out, and
//! both kinds of name answer alike.

use crate::host_api::SharedData;
use crate::shared_table::{Retention, SharedTable, VALUES};

/// Names tracked per table.
const CAPACITY: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureLimit {
    pub max_failures: u32,
    pub window_seconds: u64,
}

pub struct FailureThrottle {
    limit: FailureLimit,
    known: SharedTable,
    unknown: SharedTable,
}

// values[0]: when the window ends (unix seconds); values[1]: failures in it.
const END: usize = 0;
const FAILURES: usize = 1;

/// A record is worth nothing once its window is over; any may go when the table is full.
const RETENTION: Retention = Retention { expired: |entry, now| now >= entry.values[END], evictable: |_| true };

impl FailureThrottle {
    pub fn new(limit: FailureLimit) -> FailureThrottle {
        FailureThrottle {
            limit,
            known: SharedTable::new("basic_failures", CAPACITY, RETENTION),
            unknown: SharedTable::new("basic_failures_unknown", CAPACITY, RETENTION),
        }
    }

    fn table(&self, known: bool) -> &SharedTable {
        if known {
            &self.known
        } else {
            &self.unknown
        }
    }

    /// Seconds until `user` may try again, when it is over the limit now.
    pub fn over_limit(&self, shared: &dyn SharedData, user: &str, known: bool, now_s: u64) -> Option<u64> {
        let entry = self.table(known).read(shared, SharedTable::key(user))?;
        let window_end = entry.values[END];
        let failures = u32::try_from(entry.values[FAILURES]).unwrap_or(u32::MAX);
        (now_s < window_end && failures >= self.limit.max_failures).then(|| window_end - now_s)
    }

    /// Count one failed check of `user`.
    pub fn record_failure(&self, shared: &dyn SharedData, user: &str, known: bool, now_s: u64) {
        let window = self.limit.window_seconds;
        self.table(known).update(shared, SharedTable::key(user), now_s, |current| {
            let mut next = [0; VALUES];
            // An expired record reads as none: a new window starts at this failure.
            match current {
                Some(values) => {
                    next[END] = values[END];
                    next[FAILURES] = values[FAILURES].saturating_add(1);
                }
                None => {
                    next[END] = now_s.saturating_add(window);
                    next[FAILURES] = 1;
                }
            }
            Some(next)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeShared;

    const LIMIT: FailureLimit = FailureLimit { max_failures: 3, window_seconds: 60 };

    #[test]
    fn a_name_is_refused_past_its_failures_until_the_window_ends() {
        let shared = FakeShared::default();
        let throttle = FailureThrottle::new(LIMIT);
        for t in 0..3 {
            assert_eq!(throttle.over_limit(&shared, "alice", true, 1000 + t), None);
            throttle.record_failure(&shared, "alice", true, 1000 + t);
        }
        assert_eq!(throttle.over_limit(&shared, "alice", true, 1010), Some(50));
        assert_eq!(throttle.over_limit(&shared, "bob", true, 1010), None);
        assert_eq!(throttle.over_limit(&shared, "alice", false, 1010), None, "unknown names are apart");
        assert_eq!(throttle.over_limit(&shared, "alice", true, 1060), None);
        throttle.record_failure(&shared, "alice", true, 1060);
        assert_eq!(throttle.over_limit(&shared, "alice", true, 1061), None, "a new window starts at one");
    }

    #[test]
    fn counts_are_shared_by_every_vm() {
        let shared = FakeShared::default();
        let workers: Vec<FailureThrottle> = (0..4).map(|_| FailureThrottle::new(LIMIT)).collect();
        for (i, worker) in workers.iter().take(3).enumerate() {
            worker.record_failure(&shared, "alice", true, 1000 + i as u64);
        }
        assert!(workers[3].over_limit(&shared, "alice", true, 1005).is_some());
    }
}
