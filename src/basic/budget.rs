//! A worker's budget for slow password hashes (bcrypt): a token bucket of
//! hashing time. A bcrypt check blocks the Envoy worker thread; past the
//! budget, an attempt that would need one is answered at once instead, so
//! valid traffic on that worker keeps its latency.

const NS_PER_MS: u64 = 1_000_000;
const NS_PER_S: u64 = 1_000_000_000;

#[derive(Debug)]
pub struct SlowHashBudget {
    /// Hashing time granted per second of wall time.
    per_second_ns: u64,
    /// At most this much saved up (one second's grant): a burst after idle time.
    capacity_ns: u64,
    /// May go below zero: a hash is paid for after it ran.
    balance_ns: i64,
    last_ns: u64,
}

impl SlowHashBudget {
    pub fn new(ms_per_second: u64) -> SlowHashBudget {
        let per_second_ns = ms_per_second.saturating_mul(NS_PER_MS);
        SlowHashBudget {
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

    /// Whether a slow hash may run now.
    pub fn available(&mut self, now_ns: u64) -> bool {
        self.refill(now_ns);
        self.balance_ns > 0
    }

    /// Pay for a hash that took `ns`.
    pub fn spend(&mut self, ns: u64) {
        self.balance_ns = self.balance_ns.saturating_sub(i64::try_from(ns).unwrap_or(i64::MAX));
    }

    /// Whole seconds until a hash may run again (at least 1).
    pub fn retry_after_seconds(&self) -> u64 {
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

    const MS: u64 = NS_PER_MS;

    #[test]
    fn a_quarter_of_each_second() {
        let mut budget = SlowHashBudget::new(250);
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
        let mut budget = SlowHashBudget::new(100);
        assert!(budget.available(NS_PER_S));
        assert!(budget.available(3600 * NS_PER_S));
        budget.spend(250 * MS);
        assert!(!budget.available(3600 * NS_PER_S + MS));
        assert_eq!(budget.retry_after_seconds(), 2);
    }

    #[test]
    fn clock_going_backwards_grants_nothing() {
        let mut budget = SlowHashBudget::new(100);
        assert!(budget.available(5 * NS_PER_S));
        budget.spend(200 * MS);
        assert!(!budget.available(NS_PER_S));
    }
}
