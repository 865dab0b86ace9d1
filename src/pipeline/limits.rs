//! Limits per principal, exact across every worker of one Envoy: requests per
//! hour (a sliding hour, estimated from two fixed hourly windows) and requests
//! in flight. The counts live in shared data (`shared_table.rs`), changed only
//! by compare-and-swap; a refused request is not counted. A principal's record is
//! forgotten only when the table is full (`max_tracked_principals`), the idlest
//! first, never while it has requests in flight; once both its hours are past and
//! nothing is in flight it holds nothing, and its place is free.
//!
//! The sliding hour: a request at `e` seconds into the current hour sees
//! `previous * (3600 - e) / 3600 + current` requests before it, and passes while
//! that (with itself) is at most the limit. The estimate is exact when the
//! previous hour's requests were evenly spread. At worst (all of them in its last
//! moment) an hour that ends `e` seconds into the current one holds up to
//! `limit * (1 + e / 3600)` requests: a burst right after the edge is refused
//! (`e` near 0: about `limit`), never twice the limit.

use crate::host_api::SharedData;
use crate::shared_table::{Retention, SharedTable, Updated, VALUES};

pub(crate) const WINDOW_SECONDS: u64 = 3600;

/// The gauge of the principals the limits keep records of (moved by `Admission::Admitted`'s change).
pub(crate) const TRACKED_GAUGE: &str = "tracked_principals";

/// A principal's limits, defaults applied; None: unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub requests_per_hour: Option<u64>,
    pub max_concurrent: Option<u64>,
}

impl Limits {
    pub fn is_unlimited(&self) -> bool {
        self.requests_per_hour.is_none() && self.max_concurrent.is_none()
    }
}

/// A principal's counts, as its record in the table holds them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counts {
    /// The index of the current hour (unix seconds / 3600).
    hour: u64,
    /// Requests in the hour before it.
    previous: u64,
    /// Requests in it.
    current: u64,
    in_flight: u64,
}

impl Counts {
    fn decode(values: &[u64; VALUES]) -> Counts {
        let [hour, previous, current, in_flight] = *values;
        Counts { hour, previous, current, in_flight }
    }

    fn encode(self) -> [u64; VALUES] {
        [self.hour, self.previous, self.current, self.in_flight]
    }
}

/// Nothing of a record counts once both its hours are past and nothing is in flight;
/// a record with requests in flight is never forgotten (its slots would come back to nobody).
const RETENTION: Retention = Retention {
    expired: |entry, now| {
        let counts = Counts::decode(&entry.values);
        counts.in_flight == 0 && now / WINDOW_SECONDS >= counts.hour + 2
    },
    evictable: |entry| Counts::decode(&entry.values).in_flight == 0,
};

/// What the limits say of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Counted. `release` when its stream ends, if it holds a slot in flight.
    Admitted {
        holds_slot: bool,
        quota: Option<Quota>,
        /// The change in the records the table holds (the tracked-principals gauge moves by
        /// it). A refused request changes none, but after a rare race (a record removed
        /// to make room for this principal, which another VM had added meanwhile).
        tracked_change: i64,
    },
    RateLimited {
        retry_after_seconds: u64,
        quota: Quota,
    },
    ConcurrencyLimited,
    /// Other workers kept winning the compare-and-swap, or the table is full of
    /// principals with requests in flight: nothing was counted.
    Unavailable,
}

/// The hourly quota as the RateLimit fields report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub limit: u64,
    /// Requests left in the sliding hour (after this one, if admitted).
    pub remaining: u64,
    /// Seconds until the quota is restored (the end of the current hour; for a refusal, the retry).
    pub reset_seconds: u64,
}

/// The shared counts of every limited principal.
#[derive(Debug)]
pub(crate) struct LimitTable {
    table: SharedTable,
}

impl LimitTable {
    pub(crate) fn new(max_tracked_principals: usize) -> LimitTable {
        LimitTable { table: SharedTable::new("limits", max_tracked_principals, RETENTION) }
    }

    /// The key a principal is counted under: its qualified name (`principal::QualifiedName::limit_key`).
    pub(crate) fn key(qualified: &str) -> u64 {
        SharedTable::key(qualified)
    }

    /// Admit one request of `key` under `limits` at `now` (unix seconds), counting it.
    pub(crate) fn admit(&self, shared: &dyn SharedData, key: u64, limits: &Limits, now: u64) -> Admission {
        let mut outcome = Admission::Unavailable;
        let (written, records) = self.table.update(shared, key, now, |current| {
            let (previous, count, in_flight) = rolled(current, now);
            if let Some(limit) = limits.max_concurrent {
                if in_flight >= limit {
                    outcome = Admission::ConcurrencyLimited;
                    return None;
                }
            }
            let mut quota = None;
            if let Some(limit) = limits.requests_per_hour {
                if !fits(previous, count + 1, limit, now) {
                    let retry_after_seconds = retry_after(previous, count, limit, now);
                    outcome = Admission::RateLimited {
                        retry_after_seconds,
                        quota: Quota { limit, remaining: 0, reset_seconds: retry_after_seconds },
                    };
                    return None;
                }
                let used = estimate_ceil(previous, count + 1, now);
                let reset_seconds = WINDOW_SECONDS - now % WINDOW_SECONDS;
                quota = Some(Quota { limit, remaining: limit.saturating_sub(used), reset_seconds });
            }
            let holds_slot = limits.max_concurrent.is_some();
            outcome = Admission::Admitted { holds_slot, quota, tracked_change: 0 };
            let next = Counts {
                hour: now / WINDOW_SECONDS,
                previous,
                current: if limits.requests_per_hour.is_some() { count + 1 } else { count },
                in_flight: if holds_slot { in_flight + 1 } else { in_flight },
            };
            Some(next.encode())
        });
        match (written, outcome) {
            (Updated::Written(_), Admission::Admitted { holds_slot, quota, .. }) => {
                Admission::Admitted { holds_slot, quota, tracked_change: records }
            }
            (Updated::Unchanged(_), refused) => refused,
            // No room for it, or another VM kept winning: nothing was counted.
            _ => Admission::Unavailable,
        }
    }

    /// A request that held a slot in flight ended.
    pub(crate) fn release(&self, shared: &dyn SharedData, key: u64, now: u64) {
        self.table.update(shared, key, now, |current| {
            let mut next = Counts::decode(current?);
            next.in_flight = next.in_flight.saturating_sub(1);
            Some(next.encode())
        });
    }
}

#[cfg(test)]
impl LimitTable {
    /// Requests of `key` in flight now.
    pub(crate) fn in_flight(&self, shared: &dyn SharedData, key: u64) -> u64 {
        self.table.read(shared, key).map_or(0, |entry| Counts::decode(&entry.values).in_flight)
    }

    /// Principals with a record (what the `tracked_principals` gauge adds up).
    pub(crate) fn tracked(&self, shared: &dyn SharedData) -> u64 {
        self.table.len(shared)
    }
}

/// The counts at `now`: the stored hour moved on to the current one.
fn rolled(current: Option<&[u64; VALUES]>, now: u64) -> (u64, u64, u64) {
    let Some(counts) = current.map(Counts::decode) else { return (0, 0, 0) };
    let hour = now / WINDOW_SECONDS;
    match hour.checked_sub(counts.hour) {
        Some(0) => (counts.previous, counts.current, counts.in_flight),
        Some(1) => (counts.current, 0, counts.in_flight),
        // Older (or a clock that went back): nothing of it counts now.
        _ => (0, 0, counts.in_flight),
    }
}

/// Whether `previous * (W - e) / W + current <= limit`, in integers.
fn fits(previous: u64, current: u64, limit: u64, now: u64) -> bool {
    let elapsed = now % WINDOW_SECONDS;
    let weighted = u128::from(previous) * u128::from(WINDOW_SECONDS - elapsed);
    weighted + u128::from(current) * u128::from(WINDOW_SECONDS) <= u128::from(limit) * u128::from(WINDOW_SECONDS)
}

/// The estimate of requests in the sliding hour, rounded up.
fn estimate_ceil(previous: u64, current: u64, now: u64) -> u64 {
    let elapsed = now % WINDOW_SECONDS;
    let weighted = (u128::from(previous) * u128::from(WINDOW_SECONDS - elapsed)).div_ceil(u128::from(WINDOW_SECONDS));
    u64::try_from(weighted).unwrap_or(u64::MAX).saturating_add(current)
}

/// Whole seconds until one more request fits (at least 1, at most two hours).
fn retry_after(previous: u64, current: u64, limit: u64, now: u64) -> u64 {
    let window_start = now - now % WINDOW_SECONDS;
    // Within this hour: the previous hour's weight must shrink enough.
    if current < limit && previous > 0 {
        let room = u128::from(limit - current - 1) * u128::from(WINDOW_SECONDS);
        // previous * (W - e) <= room  <=>  e >= W - room / previous
        let needed = u128::from(WINDOW_SECONDS).saturating_sub(room / u128::from(previous));
        if needed < u128::from(WINDOW_SECONDS) {
            let at = window_start + u64::try_from(needed).unwrap_or(WINDOW_SECONDS);
            return at.saturating_sub(now).max(1);
        }
    }
    // In the next hour this hour is the previous one.
    let next_start = window_start + WINDOW_SECONDS;
    if current == 0 {
        return next_start.saturating_sub(now).max(1);
    }
    let room = u128::from(limit.saturating_sub(1)) * u128::from(WINDOW_SECONDS);
    let needed = u128::from(WINDOW_SECONDS).saturating_sub(room / u128::from(current));
    let at = next_start + u64::try_from(needed).unwrap_or(WINDOW_SECONDS);
    at.saturating_sub(now).clamp(1, 2 * WINDOW_SECONDS)
}

#[cfg(test)]
mod tests;
