//! Failed password checks, counted across every VM of the Envoy per user name
//! and source address, and per user name from every source:
//! - past `max_failures` in a window from one source, that source's attempts for
//!   the name are refused with 429 until the window ends, without a check: one
//!   guesser throttles itself, not the name's owner elsewhere;
//! - past `max_failures_per_name` from all sources together (a distributed guess:
//!   at least `max_failures_per_name / max_failures` sources in one window), the
//!   name is refused from everywhere until the window ends, its owner's right
//!   password included (anything else would tell the guessers which guess was right).
//!
//! A refusal comes before any remembered verification: the verified-credential
//! cache never answers for a throttled source. IPv6 sources count by their /64
//! (one subscriber's prefix), IPv4 ones by address; a request whose source the
//! host did not give counts as one unknown source. A name's records share its slot
//! (`SharedTable::update_near`): one read checks both. Unknown names are counted
//! in a table of their own, so a flood of made-up names cannot push real users'
//! counts out, and both kinds of name answer alike.

use std::net::IpAddr;

use crate::host_api::SharedData;
use crate::request::Source;
use crate::shared_table::{Entry, Retention, SharedTable, VALUES};

/// Names (and sources of a name) tracked per table.
const CAPACITY: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FailureLimit {
    /// Per user name and source.
    pub max_failures: u32,
    /// Per user name, from every source.
    pub max_failures_per_name: u32,
    pub window_seconds: u64,
}

pub(crate) struct FailureThrottle {
    limit: FailureLimit,
    known: SharedTable,
    unknown: SharedTable,
}

/// A record's failures, as the table holds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Failures {
    /// When the window ends (unix seconds).
    window_end: u64,
    /// Failures in it.
    count: u64,
}

impl Failures {
    fn decode(values: &[u64; VALUES]) -> Failures {
        let [window_end, count, ..] = *values;
        Failures { window_end, count }
    }

    fn encode(self) -> [u64; VALUES] {
        [self.window_end, self.count, 0, 0]
    }
}

/// A record is worth nothing once its window is over; any may go when the table is full.
const RETENTION: Retention =
    Retention { expired: |entry, now| now >= Failures::decode(&entry.values).window_end, evictable: |_| true };

/// The keys of a name's records: from everywhere, and from one source.
struct Keys;

impl Keys {
    fn name(user: &str) -> u64 {
        SharedTable::key(user)
    }

    fn pair(user: &str, source: Option<IpAddr>) -> u64 {
        // A kind byte, the source's bytes (an IPv6 address's /64), then the name.
        let mut pair = Vec::with_capacity(10 + user.len());
        match source.map(|ip| ip.to_canonical()) {
            Some(IpAddr::V4(v4)) => {
                pair.push(4);
                pair.extend_from_slice(&v4.octets());
            }
            Some(IpAddr::V6(v6)) => {
                pair.push(6);
                pair.extend_from_slice(&v6.octets()[..8]);
            }
            None => pair.push(0),
        }
        pair.extend_from_slice(user.as_bytes());
        SharedTable::key(pair)
    }
}

impl FailureThrottle {
    pub(crate) fn new(limit: FailureLimit) -> FailureThrottle {
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

    /// Seconds until `user` may try again from `source`, when it is over a limit now.
    /// The source (a host call) is read only when a record near the name's is over the
    /// per-source limit: most requests have none.
    pub(crate) fn over_limit(
        &self,
        shared: &dyn SharedData,
        user: &str,
        source: Source,
        known: bool,
        now_s: u64,
    ) -> Option<u64> {
        let name = Keys::name(user);
        let records = self.table(known).records_near(shared, name);
        let wait = |record: &Entry, max: u32| {
            let Failures { window_end, count } = Failures::decode(&record.values);
            let failures = u32::try_from(count).unwrap_or(u32::MAX);
            (now_s < window_end && failures >= max).then(|| window_end - now_s)
        };
        let over = |key: u64, max: u32| wait(records.iter().find(|record| record.key == key)?, max);
        let any_source_over =
            records.iter().any(|record| record.key != name && wait(record, self.limit.max_failures).is_some());
        let from_source = any_source_over.then(|| over(Keys::pair(user, source.get()), self.limit.max_failures));
        let from_everywhere = over(name, self.limit.max_failures_per_name);
        from_source.flatten().max(from_everywhere)
    }

    /// Count one failed check of `user` from `source`.
    pub(crate) fn record_failure(
        &self,
        shared: &dyn SharedData,
        user: &str,
        source: Option<IpAddr>,
        known: bool,
        now_s: u64,
    ) {
        let (name, pair) = (Keys::name(user), Keys::pair(user, source));
        let end = now_s.saturating_add(self.limit.window_seconds);
        // An expired record reads as none: a new window starts at this failure.
        let count = |current: Option<&[u64; VALUES]>| {
            let next = match current.map(Failures::decode) {
                Some(failures) => Failures { count: failures.count.saturating_add(1), ..failures },
                None => Failures { window_end: end, count: 1 },
            };
            Some(next.encode())
        };
        let table = self.table(known);
        table.update_near(shared, name, pair, now_s, count);
        table.update(shared, name, now_s, count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeShared;

    const LIMIT: FailureLimit = FailureLimit { max_failures: 3, max_failures_per_name: 7, window_seconds: 60 };

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn a_source_is_refused_past_its_failures_until_the_window_ends() {
        let shared = FakeShared::default();
        let throttle = FailureThrottle::new(LIMIT);
        let (guesser, owner) = (ip("192.0.2.7"), ip("198.51.100.1"));
        for t in 0..3 {
            assert_eq!(throttle.over_limit(&shared, "alice", Source::Known(guesser), true, 1000 + t), None);
            throttle.record_failure(&shared, "alice", guesser, true, 1000 + t);
        }
        assert_eq!(throttle.over_limit(&shared, "alice", Source::Known(guesser), true, 1010), Some(50));
        assert_eq!(
            throttle.over_limit(&shared, "alice", Source::Known(owner), true, 1010),
            None,
            "the owner elsewhere is not"
        );
        assert_eq!(throttle.over_limit(&shared, "bob", Source::Known(guesser), true, 1010), None);
        assert_eq!(
            throttle.over_limit(&shared, "alice", Source::Known(guesser), false, 1010),
            None,
            "unknown names are apart"
        );
        assert_eq!(throttle.over_limit(&shared, "alice", Source::Known(guesser), true, 1060), None);
        throttle.record_failure(&shared, "alice", guesser, true, 1060);
        assert_eq!(
            throttle.over_limit(&shared, "alice", Source::Known(guesser), true, 1061),
            None,
            "a new window starts at one"
        );
    }

    #[test]
    fn many_sources_together_meet_the_ceiling_of_the_name() {
        let shared = FakeShared::default();
        let throttle = FailureThrottle::new(LIMIT);
        // Seven failures from seven sources: none over its own limit, the name over its ceiling.
        for i in 1..=7 {
            let source = ip(&format!("203.0.113.{i}"));
            assert_eq!(throttle.over_limit(&shared, "alice", Source::Known(source), true, 1000), None, "source {i}");
            throttle.record_failure(&shared, "alice", source, true, 1000);
        }
        assert_eq!(
            throttle.over_limit(&shared, "alice", Source::Known(ip("198.51.100.1")), true, 1001),
            Some(59),
            "from anywhere"
        );
        assert_eq!(throttle.over_limit(&shared, "bob", Source::Known(ip("198.51.100.1")), true, 1001), None);
    }

    #[test]
    fn an_ipv6_subscriber_counts_as_its_prefix_and_a_missing_source_as_one() {
        let shared = FakeShared::default();
        let throttle = FailureThrottle::new(LIMIT);
        for host in 1..=3 {
            throttle.record_failure(&shared, "alice", ip(&format!("2001:db8:1:2::{host}")), true, 1000);
        }
        assert!(throttle.over_limit(&shared, "alice", Source::Known(ip("2001:db8:1:2:ffff::9")), true, 1001).is_some());
        assert_eq!(throttle.over_limit(&shared, "alice", Source::Known(ip("2001:db8:1:3::1")), true, 1001), None);
        // An IPv4 address, however it is written, is one source.
        for _ in 0..3 {
            throttle.record_failure(&shared, "bob", ip("::ffff:192.0.2.9"), true, 1000);
        }
        assert!(throttle.over_limit(&shared, "bob", Source::Known(ip("192.0.2.9")), true, 1001).is_some());
        for _ in 0..3 {
            throttle.record_failure(&shared, "carol", None, true, 1000);
        }
        assert!(throttle.over_limit(&shared, "carol", Source::Known(None), true, 1001).is_some());
        assert_eq!(throttle.over_limit(&shared, "carol", Source::Known(ip("192.0.2.9")), true, 1001), None);
    }

    #[test]
    fn counts_are_shared_by_every_vm() {
        let shared = FakeShared::default();
        let workers: Vec<FailureThrottle> = (0..4).map(|_| FailureThrottle::new(LIMIT)).collect();
        for (i, worker) in workers.iter().take(3).enumerate() {
            worker.record_failure(&shared, "alice", ip("192.0.2.7"), true, 1000 + i as u64);
        }
        assert!(workers[3].over_limit(&shared, "alice", Source::Known(ip("192.0.2.7")), true, 1005).is_some());
    }
}
