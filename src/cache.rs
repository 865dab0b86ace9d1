//! The verified-credential cache: a credential that verified is remembered,
//! keyed by a SHA-256 digest of it (never the credential itself), so that a
//! caller repeating it costs a hash and a lookup, not a signature check or a bcrypt.
//! One per VM; bounded in entries; no entry outlives its lifetime or the token's `exp`.

use std::collections::{HashMap, VecDeque};

use sha2::{Digest, Sha256};

use crate::digest::Sha256Digest;

/// The verified-credential cache's bounds (`cache` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    pub max_entries: usize,
    pub ttl_seconds: u64,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings { max_entries: 4096, ttl_seconds: 300 }
    }
}

pub struct VerifiedCache<T> {
    settings: CacheSettings,
    entries: HashMap<Sha256Digest, Entry<T>>,
    /// Insertion order, for evicting the oldest when full.
    order: VecDeque<Sha256Digest>,
}

struct Entry<T> {
    value: T,
    expires_at: u64,
}

/// The digest a credential is cached under; the scheme tag keeps schemes apart.
pub fn cache_key(scheme: &str, parts: &[&[u8]]) -> Sha256Digest {
    let mut hasher = Sha256::new();
    hasher.update(scheme.as_bytes());
    for part in parts {
        // Length-prefixed, so ("ab","c") and ("a","bc") differ.
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hasher.finalize().into()
}

impl<T: Clone> VerifiedCache<T> {
    pub fn new(settings: CacheSettings) -> Self {
        VerifiedCache { settings, entries: HashMap::new(), order: VecDeque::new() }
    }

    pub fn get(&mut self, key: &Sha256Digest, now: u64) -> Option<T> {
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
    pub fn insert(&mut self, key: Sha256Digest, value: T, now: u64, not_after: Option<u64>) {
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
        // `order` may hold digests already dropped on expiry; keep it bounded too.
        if self.order.len() > self.settings.max_entries * 2 {
            let entries = &self.entries;
            self.order.retain(|k| entries.contains_key(k));
        }
    }

    /// Forget everything: keys changed, so what verified before may not now.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.order.clear();
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

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
    fn disabled_when_zero() {
        let mut c = cache(0, 60);
        let k = cache_key("k", &[]);
        c.insert(k, "v", 0, None);
        assert_eq!(c.get(&k, 0), None);
    }
}
