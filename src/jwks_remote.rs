//! Remote JWKS: configuration and the pure state of fetching (issue 3).

use serde::Deserialize;

/// `jwt.providers[i].remote_jwks`: a JWKS fetched through an Envoy cluster.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RemoteJwksConfig {
    pub cluster: String,
    pub authority: String,
    pub path: String,
    #[serde(default = "default_refresh_seconds")]
    pub refresh_seconds: u64,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

/// `jwt.providers[i].discovery`: an OpenID Connect discovery document whose
/// `jwks_uri` names the JWKS, fetched through the same cluster.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryConfig {
    pub cluster: String,
    pub authority: String,
    #[serde(default = "default_discovery_path")]
    pub path: String,
    #[serde(default = "default_refresh_seconds")]
    pub refresh_seconds: u64,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_refresh_seconds() -> u64 {
    300
}
fn default_timeout_ms() -> u64 {
    2000
}
fn default_discovery_path() -> String {
    "/.well-known/openid-configuration".to_string()
}

/// Bounds on what the filter reads from a JWKS or discovery endpoint.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;
/// An unknown `kid` triggers at most one refetch per this interval per provider.
pub const MIN_REFETCH_INTERVAL_MS: u64 = 30_000;
const MAX_BACKOFF_MS: u64 = 60_000;

/// Where one provider's keys come from, resolved from its configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteSource {
    pub cluster: String,
    pub authority: String,
    /// The JWKS path, or the discovery document's path when `discovery` is set.
    pub path: String,
    pub discovery: bool,
    pub refresh_ms: u64,
    pub timeout_ms: u64,
}

impl RemoteSource {
    pub fn from_config(remote: Option<&RemoteJwksConfig>, discovery: Option<&DiscoveryConfig>) -> Option<RemoteSource> {
        match (remote, discovery) {
            (Some(r), _) => Some(RemoteSource {
                cluster: r.cluster.clone(),
                authority: r.authority.clone(),
                path: r.path.clone(),
                discovery: false,
                refresh_ms: r.refresh_seconds.saturating_mul(1000),
                timeout_ms: r.timeout_ms,
            }),
            (None, Some(d)) => Some(RemoteSource {
                cluster: d.cluster.clone(),
                authority: d.authority.clone(),
                path: d.path.clone(),
                discovery: true,
                refresh_ms: d.refresh_seconds.saturating_mul(1000),
                timeout_ms: d.timeout_ms,
            }),
            (None, None) => None,
        }
    }
}

/// Validate the shared fields of `remote_jwks` / `discovery` (`path` names the object).
pub fn validate(cluster: &str, authority: &str, fetch_path: &str, refresh_seconds: u64, timeout_ms: u64, path: &str) -> Result<(), crate::config::ConfigError> {
    use crate::config::ConfigError;
    if cluster.is_empty() {
        return Err(ConfigError::new(format!("{path}.cluster"), "must name an Envoy cluster"));
    }
    if authority.is_empty() || authority.contains(['/', ' ']) {
        return Err(ConfigError::new(format!("{path}.authority"), "must be a host name (the :authority sent)"));
    }
    if !fetch_path.starts_with('/') {
        return Err(ConfigError::new(format!("{path}.path"), "must start with '/'"));
    }
    if !(1..=86_400).contains(&refresh_seconds) {
        return Err(ConfigError::new(format!("{path}.refresh_seconds"), "must be between 1 and 86400"));
    }
    if !(100..=60_000).contains(&timeout_ms) {
        return Err(ConfigError::new(format!("{path}.timeout_ms"), "must be between 100 and 60000"));
    }
    Ok(())
}

/// The fetch state of one provider, shared by every VM of the Envoy through
/// proxy-wasm shared data and changed only by compare-and-swap, so that one VM
/// fetches for all and the others use its result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FetchRecord {
    /// A VM is fetching until then (a lease; it expires if that VM never answers).
    pub lease_until_ms: u64,
    pub last_success_ms: u64,
    /// The last fetch triggered by an unknown `kid`.
    pub last_forced_ms: u64,
    pub failures: u32,
    /// No attempt before then (backoff after failures).
    pub next_attempt_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchReason {
    /// Never fetched, or the refresh interval passed.
    Refresh,
    /// A token named a `kid` the key set does not have.
    UnknownKid,
}

impl FetchRecord {
    pub fn encode(&self) -> Vec<u8> {
        format!(
            "1 {} {} {} {} {}",
            self.lease_until_ms, self.last_success_ms, self.last_forced_ms, self.failures, self.next_attempt_ms
        )
        .into_bytes()
    }

    /// A record that does not decode is treated as absent (the next CAS replaces it).
    pub fn decode(bytes: &[u8]) -> Option<FetchRecord> {
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

    pub fn in_flight(&self, now_ms: u64) -> bool {
        self.lease_until_ms > now_ms
    }

    /// Whether a request with an unknown `kid` should wait for a refetch: one is
    /// under way, or one may start now.
    pub fn refetch_allowed(&self, now_ms: u64) -> bool {
        self.in_flight(now_ms) || (self.forced_refetch_allowed(now_ms) && now_ms >= self.next_attempt_ms)
    }

    fn forced_refetch_allowed(&self, now_ms: u64) -> bool {
        self.last_forced_ms == 0 || now_ms.saturating_sub(self.last_forced_ms) >= MIN_REFETCH_INTERVAL_MS
    }

    /// Why a fetch should start now, if it should.
    pub fn due(&self, now_ms: u64, refresh_ms: u64, unknown_kid_waiting: bool) -> Option<FetchReason> {
        if self.in_flight(now_ms) || now_ms < self.next_attempt_ms {
            return None;
        }
        if self.last_success_ms == 0 || now_ms.saturating_sub(self.last_success_ms) >= refresh_ms {
            return Some(FetchReason::Refresh);
        }
        if unknown_kid_waiting && self.forced_refetch_allowed(now_ms) {
            return Some(FetchReason::UnknownKid);
        }
        None
    }

    /// The record a VM writes to take the fetch.
    pub fn leased(&self, now_ms: u64, timeout_ms: u64, reason: FetchReason) -> FetchRecord {
        FetchRecord {
            // Discovery takes two calls; a lease outliving both timeouts is never stolen early.
            lease_until_ms: now_ms + 2 * timeout_ms + 1000,
            last_forced_ms: if reason == FetchReason::UnknownKid { now_ms } else { self.last_forced_ms },
            ..*self
        }
    }

    pub fn succeeded(&self, now_ms: u64) -> FetchRecord {
        FetchRecord { lease_until_ms: 0, last_success_ms: now_ms, failures: 0, next_attempt_ms: 0, ..*self }
    }

    /// Back off exponentially from 1 s, capped at a minute (and at the refresh interval).
    pub fn failed(&self, now_ms: u64, refresh_ms: u64) -> FetchRecord {
        let failures = self.failures.saturating_add(1);
        let backoff = (1000u64 << (failures - 1).min(6)).min(MAX_BACKOFF_MS).min(refresh_ms.max(1000));
        FetchRecord { lease_until_ms: 0, failures, next_attempt_ms: now_ms + backoff, ..*self }
    }
}

/// The path (and query) of the `jwks_uri` in an OpenID Connect discovery document;
/// it is fetched through the provider's cluster.
pub fn jwks_path_from_discovery(body: &[u8]) -> Result<String, String> {
    let document: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| "discovery document is not JSON".to_string())?;
    let uri = document
        .get("jwks_uri")
        .and_then(|v| v.as_str())
        .ok_or_else(|| "discovery document has no jwks_uri".to_string())?;
    let rest = uri
        .strip_prefix("https://")
        .or_else(|| uri.strip_prefix("http://"))
        .ok_or_else(|| "jwks_uri is not an http(s) URL".to_string())?;
    let path = match rest.find('/') {
        Some(i) => &rest[i..],
        None => "/",
    };
    let path = path.split('#').next().unwrap_or("/");
    if path.chars().any(|c| c.is_control() || c == ' ') {
        return Err("jwks_uri has an invalid path".into());
    }
    Ok(path.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_and_rejects_garbage() {
        let r = FetchRecord { lease_until_ms: 5, last_success_ms: 6, last_forced_ms: 7, failures: 2, next_attempt_ms: 9 };
        assert_eq!(FetchRecord::decode(&r.encode()), Some(r));
        for bad in [&b""[..], b"2 1 2 3 4 5", b"1 1 2 3", b"1 a b c d e", b"\xff"] {
            assert_eq!(FetchRecord::decode(bad), None);
        }
    }

    #[test]
    fn first_fetch_is_due_then_not_until_refresh() {
        let fresh = FetchRecord::default();
        assert_eq!(fresh.due(1_000, 300_000, false), Some(FetchReason::Refresh));
        let leased = fresh.leased(1_000, 2_000, FetchReason::Refresh);
        assert!(leased.in_flight(1_001));
        assert_eq!(leased.due(1_001, 300_000, true), None, "one fetch at a time");
        let done = leased.succeeded(2_000);
        assert!(!done.in_flight(2_001));
        assert_eq!(done.due(100_000, 300_000, false), None);
        assert_eq!(done.due(302_000, 300_000, false), Some(FetchReason::Refresh));
    }

    #[test]
    fn unknown_kid_refetch_is_rate_limited() {
        let done = FetchRecord::default().succeeded(1_000);
        assert_eq!(done.due(2_000, 300_000, true), Some(FetchReason::UnknownKid));
        let forced = done.leased(2_000, 2_000, FetchReason::UnknownKid).succeeded(2_100);
        assert!(!forced.refetch_allowed(10_000));
        assert_eq!(forced.due(10_000, 300_000, true), None);
        assert!(forced.refetch_allowed(32_000));
        assert_eq!(forced.due(32_000, 300_000, true), Some(FetchReason::UnknownKid));
    }

    #[test]
    fn a_fetch_in_flight_lets_unknown_kids_wait() {
        let leased = FetchRecord::default().succeeded(1_000).leased(2_000, 2_000, FetchReason::UnknownKid);
        assert!(leased.refetch_allowed(2_500));
    }

    #[test]
    fn failures_back_off_exponentially_and_keep_last_success() {
        let mut r = FetchRecord::default().succeeded(1_000);
        let mut waits = vec![];
        for _ in 0..8 {
            r = r.failed(10_000, 300_000);
            waits.push(r.next_attempt_ms - 10_000);
        }
        assert_eq!(waits, vec![1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000]);
        assert_eq!(r.last_success_ms, 1_000);
        assert_eq!(r.due(10_500, 300_000, false), None);
        assert_eq!(r.succeeded(20_000).failures, 0);
    }

    #[test]
    fn an_abandoned_lease_expires() {
        let leased = FetchRecord::default().leased(1_000, 2_000, FetchReason::Refresh);
        assert_eq!(leased.due(6_001, 300_000, false), Some(FetchReason::Refresh));
    }

    #[test]
    fn discovery_gives_the_jwks_path() {
        let doc = br#"{"issuer":"https://id.example","jwks_uri":"https://id.example/keys/jwks.json?v=2"}"#;
        assert_eq!(jwks_path_from_discovery(doc).unwrap(), "/keys/jwks.json?v=2");
        assert_eq!(jwks_path_from_discovery(br#"{"jwks_uri":"http://h"}"#).unwrap(), "/");
        assert!(jwks_path_from_discovery(b"not json").is_err());
        assert!(jwks_path_from_discovery(br#"{"issuer":"x"}"#).is_err());
        assert!(jwks_path_from_discovery(br#"{"jwks_uri":"ftp://h/x"}"#).is_err());
    }

    #[test]
    fn validation_names_the_field() {
        let err = validate("", "a", "/x", 300, 2000, "jwt.providers[0].remote_jwks").unwrap_err();
        assert_eq!(err.to_string(), "jwt.providers[0].remote_jwks.cluster: must name an Envoy cluster");
        assert!(validate("jwks", "a", "x", 300, 2000, "p").unwrap_err().path.ends_with(".path"));
        assert!(validate("jwks", "a", "/x", 0, 2000, "p").unwrap_err().path.ends_with(".refresh_seconds"));
        assert!(validate("jwks", "a", "/x", 300, 2000, "p").is_ok());
    }
}
