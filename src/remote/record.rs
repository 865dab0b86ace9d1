//! The fetch state of one remote document, as every VM of the Envoy sees it in
//! shared data: who fetches (a lease), when it last worked, and the backoff.

use crate::host_api::SharedRecord;

const MAX_BACKOFF_MS: u64 = 60_000;

/// When to fetch, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchPolicy {
    /// How often the document is fetched again.
    pub refresh_ms: u64,
    /// How long a call may take.
    pub timeout_ms: u64,
    /// An unknown `kid` triggers at most one refetch per this interval.
    pub min_refetch_ms: u64,
}

/// The fetch state of one remote document, shared by every VM of the Envoy through
/// proxy-wasm shared data and changed only by compare-and-swap, so that one VM
/// fetches for all and the others use its result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FetchRecord {
    /// A VM is fetching until then (a lease; it expires if that VM never answers).
    pub lease_until_ms: u64,
    /// When a fetch last succeeded; 0: never.
    pub last_success_ms: u64,
    /// The last fetch triggered by an unknown `kid`.
    pub last_forced_ms: u64,
    /// Failed fetches in a row.
    pub failures: u32,
    /// No attempt before then (backoff after failures).
    pub next_attempt_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
/// Why a fetch starts.
pub enum FetchReason {
    /// Never fetched, or the refresh interval passed.
    Refresh,
    /// A token named a `kid` the key set does not have.
    UnknownKid,
}

impl SharedRecord for FetchRecord {
    /// A record that does not decode is treated as absent (the next CAS replaces it).
    fn decode(bytes: Option<&[u8]>) -> FetchRecord {
        bytes.and_then(FetchRecord::parse).unwrap_or_default()
    }

    fn encode(&self) -> Vec<u8> {
        format!(
            "1 {} {} {} {} {}",
            self.lease_until_ms, self.last_success_ms, self.last_forced_ms, self.failures, self.next_attempt_ms
        )
        .into_bytes()
    }
}

impl FetchRecord {
    /// The record of its text, None when it does not read as one.
    pub fn parse(bytes: &[u8]) -> Option<FetchRecord> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut fields = text.split(' ');
        if fields.next()? != "1" {
            return None;
        }
        let mut next = || fields.next().and_then(|f| f.parse::<u64>().ok());
        let record = FetchRecord {
            lease_until_ms: next()?,
            last_success_ms: next()?,
            last_forced_ms: next()?,
            failures: u32::try_from(next()?).ok()?,
            next_attempt_ms: next()?,
        };
        Some(record)
    }

    /// Whether a VM holds the fetch's lease at `now_ms`.
    pub fn in_flight(&self, now_ms: u64) -> bool {
        self.lease_until_ms > now_ms
    }

    /// Whether a request with an unknown `kid` should wait for a refetch: one is
    /// under way, or one may start now.
    pub fn refetch_allowed(&self, now_ms: u64, policy: &FetchPolicy) -> bool {
        self.in_flight(now_ms) || (self.forced_refetch_allowed(now_ms, policy) && now_ms >= self.next_attempt_ms)
    }

    fn forced_refetch_allowed(&self, now_ms: u64, policy: &FetchPolicy) -> bool {
        self.last_forced_ms == 0 || now_ms.saturating_sub(self.last_forced_ms) >= policy.min_refetch_ms
    }

    /// Why a fetch should start now, if it should.
    pub fn due(&self, now_ms: u64, policy: &FetchPolicy, unknown_kid_waiting: bool) -> Option<FetchReason> {
        if self.in_flight(now_ms) || now_ms < self.next_attempt_ms {
            return None;
        }
        if self.last_success_ms == 0 || now_ms.saturating_sub(self.last_success_ms) >= policy.refresh_ms {
            return Some(FetchReason::Refresh);
        }
        if unknown_kid_waiting && self.forced_refetch_allowed(now_ms, policy) {
            return Some(FetchReason::UnknownKid);
        }
        None
    }

    /// The record a VM writes to take the fetch.
    pub fn leased(&self, now_ms: u64, policy: &FetchPolicy, reason: FetchReason) -> FetchRecord {
        FetchRecord {
            // Discovery takes two calls; a lease outliving both timeouts is never stolen early.
            lease_until_ms: now_ms + 2 * policy.timeout_ms + 1000,
            last_forced_ms: if reason == FetchReason::UnknownKid { now_ms } else { self.last_forced_ms },
            ..*self
        }
    }

    /// The record after a fetch succeeded at `now_ms`.
    pub fn succeeded(&self, now_ms: u64) -> FetchRecord {
        FetchRecord { lease_until_ms: 0, last_success_ms: now_ms, failures: 0, next_attempt_ms: 0, ..*self }
    }

    /// Back off exponentially from 1 s, capped at a minute (and at the refresh
    /// interval). Without any key yet every request waits or fails, so retry each second.
    pub fn failed(&self, now_ms: u64, policy: &FetchPolicy) -> FetchRecord {
        let failures = self.failures.saturating_add(1);
        let backoff = if self.last_success_ms == 0 {
            1000
        } else {
            (1000u64 << (failures - 1).min(6)).min(MAX_BACKOFF_MS).min(policy.refresh_ms.max(1000))
        };
        FetchRecord { lease_until_ms: 0, failures, next_attempt_ms: now_ms + backoff, ..*self }
    }

    /// Whether the last fetch attempt failed (keys may be stale, or missing).
    pub fn failing(&self) -> bool {
        self.failures > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: FetchPolicy = FetchPolicy { refresh_ms: 300_000, timeout_ms: 2_000, min_refetch_ms: 30_000 };

    #[test]
    fn record_round_trips_and_rejects_garbage() {
        let r =
            FetchRecord { lease_until_ms: 5, last_success_ms: 6, last_forced_ms: 7, failures: 2, next_attempt_ms: 9 };
        assert_eq!(FetchRecord::parse(&r.encode()), Some(r));
        for bad in [&b""[..], b"2 1 2 3 4 5", b"1 1 2 3", b"1 a b c d e", b"\xff"] {
            assert_eq!(FetchRecord::parse(bad), None);
        }
    }

    #[test]
    fn first_fetch_is_due_then_not_until_refresh() {
        let fresh = FetchRecord::default();
        assert_eq!(fresh.due(1_000, &POLICY, false), Some(FetchReason::Refresh));
        let leased = fresh.leased(1_000, &POLICY, FetchReason::Refresh);
        assert!(leased.in_flight(1_001));
        assert_eq!(leased.due(1_001, &POLICY, true), None, "one fetch at a time");
        let done = leased.succeeded(2_000);
        assert!(!done.in_flight(2_001));
        assert_eq!(done.due(100_000, &POLICY, false), None);
        assert_eq!(done.due(302_000, &POLICY, false), Some(FetchReason::Refresh));
    }

    #[test]
    fn unknown_kid_refetch_is_rate_limited() {
        let done = FetchRecord::default().succeeded(1_000);
        assert_eq!(done.due(2_000, &POLICY, true), Some(FetchReason::UnknownKid));
        let forced = done.leased(2_000, &POLICY, FetchReason::UnknownKid).succeeded(2_100);
        assert!(!forced.refetch_allowed(10_000, &POLICY));
        assert_eq!(forced.due(10_000, &POLICY, true), None);
        assert!(forced.refetch_allowed(32_000, &POLICY));
        assert_eq!(forced.due(32_000, &POLICY, true), Some(FetchReason::UnknownKid));
    }

    #[test]
    fn a_fetch_in_flight_lets_unknown_kids_wait() {
        let leased = FetchRecord::default().succeeded(1_000).leased(2_000, &POLICY, FetchReason::UnknownKid);
        assert!(leased.refetch_allowed(2_500, &POLICY));
    }

    #[test]
    fn failures_back_off_exponentially_and_keep_last_success() {
        let mut r = FetchRecord::default().succeeded(1_000);
        let mut waits = vec![];
        for _ in 0..8 {
            r = r.failed(10_000, &POLICY);
            waits.push(r.next_attempt_ms - 10_000);
        }
        assert_eq!(waits, vec![1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000]);
        assert_eq!(r.last_success_ms, 1_000);
        assert_eq!(r.due(10_500, &POLICY, false), None);
        assert_eq!(r.succeeded(20_000).failures, 0);
    }

    #[test]
    fn an_abandoned_lease_expires() {
        let leased = FetchRecord::default().leased(1_000, &POLICY, FetchReason::Refresh);
        assert_eq!(leased.due(6_001, &POLICY, false), Some(FetchReason::Refresh));
    }

    #[test]
    fn without_keys_a_failed_fetch_is_retried_each_second() {
        let mut r = FetchRecord::default();
        for _ in 0..5 {
            r = r.failed(10_000, &POLICY);
            assert_eq!(r.next_attempt_ms, 11_000);
            assert!(r.failing());
        }
        assert!(!r.succeeded(12_000).failing());
    }
}
