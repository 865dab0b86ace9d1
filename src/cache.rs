//! The verified-credential cache: a credential that verified is remembered,
//! keyed by a keyed 128-bit hash of it (never the credential itself), so that a
//! caller repeating it costs a hash and a lookup, not a signature check or a bcrypt.
//! One per VM; bounded in entries; no entry outlives its lifetime or the token's `exp`.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use rand_core::{OsRng, RngCore};
use siphasher::sip128::{Hasher128, SipHasher13};

/// What a credential is remembered under.
pub type CacheKey = u128;

/// The verified-credential cache's bounds (`cache` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    /// The most verifications remembered.
    pub max_entries: usize,
    /// How long one is remembered (never past the credential's own expiry).
    pub ttl_seconds: u64,
}

/// Verifications one VM remembers, by credential digest: bounded, oldest out first.
pub struct VerifiedCache<T> {
    settings: CacheSettings,
    entries: HashMap<CacheKey, Entry<T>, BuildHasherDefault<AlreadyHashed>>,
    /// Insertion order, for evicting the oldest when full.
    order: VecDeque<CacheKey>,
}

/// Keys are outputs of a keyed PRF already: the map uses their low bits as they are
/// (hashing them again would buy nothing against flooding and cost a SipHash).
#[derive(Default)]
pub struct AlreadyHashed(u64);

impl Hasher for AlreadyHashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u128` is used; anything else still spreads.
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u128(&mut self, key: u128) {
        self.0 = key as u64;
    }
}

/// Turns credentials into cache keys: SipHash-1-3, 128-bit output, with a key drawn
/// from the host's randomness once per VM, so outsiders can neither predict keys nor
/// make two credentials share one.
pub struct CacheKeys {
    key: [u8; 16],
}

impl CacheKeys {
    /// Digests under a fresh random key (one per VM).
    pub fn new() -> CacheKeys {
        let mut key = [0u8; 16];
        // Without randomness the key is fixed: still collision-free for honest input, and
        // the cache never decides who a caller is on a key alone (a miss verifies).
        let _ = OsRng.try_fill_bytes(&mut key);
        CacheKeys { key }
    }

    /// The key of a credential: its scheme tag and parts, each length-prefixed, so
    /// ("ab", "c") and ("a", "bc") differ and schemes never meet.
    pub fn of(&self, scheme: &str, parts: &[&[u8]]) -> CacheKey {
        let mut hasher = SipHasher13::new_with_key(&self.key);
        hasher.write(scheme.as_bytes());
        for part in parts {
            hasher.write(&(part.len() as u64).to_be_bytes());
            hasher.write(part);
        }
        hasher.finish128().as_u128()
    }
}

impl Default for CacheKeys {
    fn default() -> Self {
        CacheKeys::new()
    }
}

struct Entry<T> {
    value: T,
    expires_at: u64,
}

impl<T: Clone> VerifiedCache<T> {
    /// An empty cache bounded by `settings`.
    pub fn new(settings: CacheSettings) -> Self {
        VerifiedCache { settings, entries: HashMap::default(), order: VecDeque::new() }
    }

    /// The remembered value of `key`, if it has not expired by `now`.
    pub fn get(&mut self, key: &CacheKey, now: u64) -> Option<T> {
        match self.entries.get(key) {
            Some(entry) if now < entry.expires_at => Some(entry.value.clone()),
            Some(_) => {
                self.entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Remember a verified credential until `not_after` (a token's `exp`) or the configured lifetime, whichever is first.
    pub fn insert(&mut self, key: CacheKey, value: T, now: u64, not_after: Option<u64>) {
        if self.settings.max_entries == 0 || self.settings.ttl_seconds == 0 {
            return;
        }
        let lifetime_end = now.saturating_add(self.settings.ttl_seconds);
        let expires_at = not_after.map_or(lifetime_end, |exp| exp.min(lifetime_end));
        if expires_at <= now {
            return;
        }
        while self.entries.len() >= self.settings.max_entries {
            match self.order.pop_front() {
                Some(oldest) => {
                    self.entries.remove(&oldest);
                }
                None => break,
            }
        }
        if self.entries.insert(key, Entry { value, expires_at }).is_none() {
            self.order.push_back(key);
        }
        // `order` may hold keys already dropped on expiry; keep it bounded too.
        if self.order.len() > self.settings.max_entries * 2 {
            let entries = &self.entries;
            self.order.retain(|k| entries.contains_key(k));
        }
    }

    /// Remember a credential that is cheap to verify again, only while there is room
    /// (expired entries make some): it never evicts another. A population cycling through
    /// more such credentials than the cache holds then keeps hitting for those it holds,
    /// and each miss costs its verification and a length check, not an eviction.
    pub fn insert_if_room(&mut self, key: CacheKey, value: T, now: u64) {
        while let Some(oldest) = self.order.front() {
            match self.entries.get(oldest) {
                Some(entry) if now < entry.expires_at => break,
                Some(_) => {
                    self.entries.remove(oldest);
                }
                None => {}
            }
            self.order.pop_front();
        }
        if self.entries.len() < self.settings.max_entries || self.entries.contains_key(&key) {
            self.insert(key, value, now, None);
        }
    }

    /// Forget everything: keys changed, so what verified before may not now.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
    }

    /// How many are remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(max_entries: usize, ttl_seconds: u64) -> VerifiedCache<&'static str> {
        VerifiedCache::new(CacheSettings { max_entries, ttl_seconds })
    }

    fn cache_key(scheme: &str, parts: &[&[u8]]) -> CacheKey {
        thread_local!(static KEYS: CacheKeys = CacheKeys::new());
        KEYS.with(|keys| keys.of(scheme, parts))
    }

    #[test]
    fn remembers_until_lifetime() {
        let mut c = cache(10, 60);
        let k = cache_key("basic", &[b"alice", b"pw"]);
        c.insert(k, "alice", 1000, None);
        assert_eq!(c.get(&k, 1059), Some("alice"));
        assert_eq!(c.get(&k, 1060), None);
        assert!(c.is_empty());
    }

    #[test]
    fn never_outlives_exp() {
        let mut c = cache(10, 300);
        let k = cache_key("bearer", &[b"token"]);
        c.insert(k, "sub", 1000, Some(1010));
        assert_eq!(c.get(&k, 1009), Some("sub"));
        assert_eq!(c.get(&k, 1010), None);
        c.insert(k, "sub", 1000, Some(900));
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn bounded_by_evicting_oldest() {
        let mut c = cache(2, 60);
        let keys: Vec<_> = (0u8..3).map(|i| cache_key("k", &[&[i]])).collect();
        for k in &keys {
            c.insert(*k, "v", 0, None);
        }
        assert_eq!(c.len(), 2);
        assert_eq!(c.get(&keys[0], 1), None);
        assert_eq!(c.get(&keys[2], 1), Some("v"));
    }

    #[test]
    fn keys_are_length_prefixed() {
        assert_ne!(cache_key("basic", &[b"ab", b"c"]), cache_key("basic", &[b"a", b"bc"]));
        assert_ne!(cache_key("basic", &[b"x"]), cache_key("apikey", &[b"x"]));
    }

    #[test]
    fn keys_are_secret_per_vm() {
        let (a, b) = (CacheKeys::new(), CacheKeys::new());
        assert_eq!(a.of("bearer", &[b"t"]), a.of("bearer", &[b"t"]));
        assert_ne!(a.of("bearer", &[b"t"]), b.of("bearer", &[b"t"]), "another VM, another key");
    }

    #[test]
    fn disabled_when_zero() {
        let mut c = cache(0, 60);
        let k = cache_key("k", &[]);
        c.insert(k, "v", 0, None);
        assert_eq!(c.get(&k, 0), None);
    }

    #[test]
    fn cheap_entries_take_room_but_never_evict() {
        let mut c = cache(2, 60);
        let keys: Vec<_> = (0u8..4).map(|i| cache_key("k", &[&[i]])).collect();
        c.insert(keys[0], "slow", 0, None);
        c.insert_if_room(keys[1], "cheap", 10);
        c.insert_if_room(keys[2], "cheap", 10);
        assert_eq!(
            (c.get(&keys[0], 11), c.get(&keys[1], 11), c.get(&keys[2], 11)),
            (Some("slow"), Some("cheap"), None)
        );
        // Once the oldest expires, its room is taken.
        c.insert_if_room(keys[3], "cheap", 60);
        assert_eq!((c.get(&keys[0], 61), c.get(&keys[3], 61)), (None, Some("cheap")));
        assert_eq!(c.len(), 2);
    }
}
