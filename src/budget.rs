//! A worker's budget of time for work that blocks it (bcrypt checks, signing
//! tokens): a token bucket of time. Such work blocks the Envoy worker thread;
//! past the budget, a request that would need it is answered at once instead, so
//! valid traffic on that worker keeps its latency.

use crate::host_api::Clock;

const NS_PER_MS: u64 = 1_000_000;
const NS_PER_S: u64 = 1_000_000_000;

#[derive(Debug, Clone, Copy)]
pub(crate) struct TimeBudget {
    /// Time granted per second of wall time.
    per_second_ns: u64,
    /// At most this much saved up (one second's grant): a burst after idle time.
    capacity_ns: u64,
    /// May go below zero: work is paid for after it ran.
    balance_ns: i64,
    last_ns: u64,
}

/// Why work did not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotRun {
    /// The budget is spent: try again after this long.
    Busy { retry_after_seconds: u64 },
    /// The host could not tell the time.
    NoClock,
}

impl TimeBudget {
    pub(crate) fn new(ms_per_second: u64) -> TimeBudget {
        let per_second_ns = ms_per_second.saturating_mul(NS_PER_MS);
        TimeBudget {
            per_second_ns,
            capacity_ns: per_second_ns,
            balance_ns: i64::try_from(per_second_ns).unwrap_or(i64::MAX),
            last_ns: 0,
        }
    }

    fn refill(&mut self, now_ns: u64) {
        if self.last_ns != 0 && now_ns > self.last_ns {
            let elapsed = u128::from(now_ns - self.last_ns);
            let grant = elapsed * u128::from(self.per_second_ns) / u128::from(NS_PER_S);
            let capacity = i128::from(self.capacity_ns);
            let balance = (i128::from(self.balance_ns) + i128::try_from(grant).unwrap_or(i128::MAX)).min(capacity);
            self.balance_ns = i64::try_from(balance).unwrap_or(i64::MAX);
        }
        if now_ns > self.last_ns {
            self.last_ns = now_ns;
        }
    }

    /// Whether work may run now.
    fn available(&mut self, now_ns: u64) -> bool {
        self.refill(now_ns);
        self.balance_ns > 0
    }

    /// Pay for work that took `ns`.
    fn spend(&mut self, ns: u64) {
        self.balance_ns = self.balance_ns.saturating_sub(i64::try_from(ns).unwrap_or(i64::MAX));
    }

    /// Run `work` if the budget allows it now, and pay for the time it took, by `clock`.
    pub(crate) fn run<T>(&mut self, clock: &dyn Clock, work: impl FnOnce() -> T) -> Result<T, NotRun> {
        let start = clock.now_ns().ok_or(NotRun::NoClock)?;
        if !self.available(start) {
            return Err(NotRun::Busy { retry_after_seconds: self.retry_after_seconds() });
        }
        let done = work();
        self.spend(clock.now_ns().unwrap_or(start).saturating_sub(start));
        Ok(done)
    }

    /// Whole seconds until work may run again (at least 1).
    fn retry_after_seconds(&self) -> u64 {
        if self.balance_ns > 0 || self.per_second_ns == 0 {
            return 1;
        }
        let owed = self.balance_ns.unsigned_abs().saturating_add(1);
        owed.div_ceil(self.per_second_ns).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{FakeHost, FakeShared};

    const MS: u64 = NS_PER_MS;

    #[test]
    fn a_quarter_of_each_second() {
        let mut budget = TimeBudget::new(250);
        let start = 10 * NS_PER_S;
        // Saved up: one second's grant, i.e. three 75 ms hashes and a fourth that overdraws.
        for i in 0..4 {
            assert!(budget.available(start + i), "hash {i}");
            budget.spend(75 * MS);
        }
        assert!(!budget.available(start + 10));
        assert_eq!(budget.retry_after_seconds(), 1);
        // 50 ms owed: refilled after 200 ms more.
        assert!(!budget.available(start + 150 * MS));
        assert!(budget.available(start + 250 * MS));
    }

    #[test]
    fn never_saves_more_than_a_second() {
        let mut budget = TimeBudget::new(100);
        assert!(budget.available(NS_PER_S));
        assert!(budget.available(3600 * NS_PER_S));
        budget.spend(250 * MS);
        assert!(!budget.available(3600 * NS_PER_S + MS));
        assert_eq!(budget.retry_after_seconds(), 2);
    }

    #[test]
    fn work_runs_within_the_budget_and_is_paid_for_by_the_clock() {
        let mut host = FakeHost::new(&FakeShared::default());
        host.tick_ns = 300 * MS; // each reading of the clock: 300 ms later
        let mut budget = TimeBudget::new(250);
        let runs: Vec<Result<u8, NotRun>> = (0..3).map(|_| budget.run(&host, || 7)).collect();
        assert_eq!(runs, [Ok(7), Ok(7), Err(NotRun::Busy { retry_after_seconds: 1 })]);
        struct Stopped;
        impl Clock for Stopped {
            fn now_ns(&self) -> Option<u64> {
                None
            }
        }
        assert_eq!(TimeBudget::new(250).run(&Stopped, || 7), Err(NotRun::NoClock));
    }

    #[test]
    fn clock_going_backwards_grants_nothing() {
        let mut budget = TimeBudget::new(100);
        assert!(budget.available(5 * NS_PER_S));
        budget.spend(200 * MS);
        assert!(!budget.available(NS_PER_S));
    }
}
