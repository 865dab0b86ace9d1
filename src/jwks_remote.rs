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
    #[serde(default = "default_min_refetch_seconds")]
    pub min_refetch_seconds: u64,
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
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
    /// The cluster for a `jwks_uri` on another host than `authority`.
    pub jwks_cluster: Option<String>,
    #[serde(default = "default_refresh_seconds")]
    pub refresh_seconds: u64,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "default_min_refetch_seconds")]
    pub min_refetch_seconds: u64,
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
}

fn default_refresh_seconds() -> u64 {
    300
}
fn default_timeout_ms() -> u64 {
    2000
}
fn default_min_refetch_seconds() -> u64 {
    30
}
fn default_max_response_bytes() -> usize {
    64 * 1024
}
fn default_discovery_path() -> String {
    "/.well-known/openid-configuration".to_string()
}

const MAX_BACKOFF_MS: u64 = 60_000;
const MAX_RESPONSE_BYTES_LIMIT: usize = 1024 * 1024;

/// When to fetch, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchPolicy {
    pub refresh_ms: u64,
    pub timeout_ms: u64,
    /// An unknown `kid` triggers at most one refetch per this interval.
    pub min_refetch_ms: u64,
}

/// Where one provider's keys come from, resolved from `remote_jwks` or `discovery`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteSource {
    pub cluster: String,
    pub authority: String,
    /// The JWKS path, or the discovery document's path when `discovery` is set.
    pub path: String,
    pub discovery: bool,
    /// With discovery: the cluster for a `jwks_uri` on another host than `authority`.
    pub jwks_cluster: Option<String>,
    pub policy: FetchPolicy,
    pub max_response_bytes: usize,
}

impl RemoteSource {
    pub fn from_config(remote: Option<&RemoteJwksConfig>, discovery: Option<&DiscoveryConfig>) -> Option<RemoteSource> {
        let source = |cluster: &str,
                      authority: &str,
                      path: &str,
                      discovery: bool,
                      refresh_seconds: u64,
                      timeout_ms: u64,
                      min_refetch_seconds: u64,
                      max_response_bytes: usize| RemoteSource {
            cluster: cluster.to_string(),
            authority: authority.to_string(),
            path: path.to_string(),
            discovery,
            jwks_cluster: None,
            policy: FetchPolicy {
                refresh_ms: refresh_seconds.saturating_mul(1000),
                timeout_ms,
                min_refetch_ms: min_refetch_seconds.saturating_mul(1000),
            },
            max_response_bytes,
        };
        match (remote, discovery) {
            (Some(r), _) => Some(source(
                &r.cluster,
                &r.authority,
                &r.path,
                false,
                r.refresh_seconds,
                r.timeout_ms,
                r.min_refetch_seconds,
                r.max_response_bytes,
            )),
            (None, Some(d)) => Some(RemoteSource {
                jwks_cluster: d.jwks_cluster.clone(),
                ..source(
                    &d.cluster,
                    &d.authority,
                    &d.path,
                    true,
                    d.refresh_seconds,
                    d.timeout_ms,
                    d.min_refetch_seconds,
                    d.max_response_bytes,
                )
            }),
            (None, None) => None,
        }
    }

    /// Validate the settings; `at` is the provider's field path.
    pub fn validate(&self, at: &str) -> Result<(), crate::config::ConfigError> {
        use crate::config::ConfigError;
        let object = if self.discovery { "discovery" } else { "remote_jwks" };
        let field = |name: &str| format!("{at}.{object}.{name}");
        if self.cluster.is_empty() {
            return Err(ConfigError::new(field("cluster"), "must name an Envoy cluster"));
        }
        if self.jwks_cluster.as_deref().is_some_and(str::is_empty) {
            return Err(ConfigError::new(field("jwks_cluster"), "must name an Envoy cluster"));
        }
        if self.authority.is_empty() || self.authority.contains(['/', ' ']) {
            return Err(ConfigError::new(field("authority"), "must be a host name (the :authority sent)"));
        }
        if !self.path.starts_with('/') {
            return Err(ConfigError::new(field("path"), "must start with '/'"));
        }
        if !(1_000..=86_400_000).contains(&self.policy.refresh_ms) {
            return Err(ConfigError::new(field("refresh_seconds"), "must be between 1 and 86400"));
        }
        if !(100..=60_000).contains(&self.policy.timeout_ms) {
            return Err(ConfigError::new(field("timeout_ms"), "must be between 100 and 60000"));
        }
        if !(1_000..=3_600_000).contains(&self.policy.min_refetch_ms) {
            return Err(ConfigError::new(field("min_refetch_seconds"), "must be between 1 and 3600"));
        }
        if !(1024..=MAX_RESPONSE_BYTES_LIMIT).contains(&self.max_response_bytes) {
            return Err(ConfigError::new(field("max_response_bytes"), "must be between 1024 and 1048576"));
        }
        Ok(())
    }
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

/// Where an OpenID Connect discovery document says the JWKS is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksLocation {
    /// The `jwks_uri` host (and port), lowercase.
    pub authority: String,
    /// Its path and query.
    pub path: String,
}

/// The `jwks_uri` of an OpenID Connect discovery document.
pub fn jwks_location_from_discovery(body: &[u8]) -> Result<JwksLocation, String> {
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
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let path = path.split('#').next().unwrap_or("/");
    if path.chars().any(|c| c.is_control() || c == ' ') || authority.is_empty() || authority.contains(['@', ' ']) {
        return Err("jwks_uri is not a usable URL".into());
    }
    Ok(JwksLocation { authority: authority.to_ascii_lowercase(), path: path.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: FetchPolicy = FetchPolicy { refresh_ms: 300_000, timeout_ms: 2_000, min_refetch_ms: 30_000 };

    #[test]
    fn record_round_trips_and_rejects_garbage() {
        let r =
            FetchRecord { lease_until_ms: 5, last_success_ms: 6, last_forced_ms: 7, failures: 2, next_attempt_ms: 9 };
        assert_eq!(FetchRecord::decode(&r.encode()), Some(r));
        for bad in [&b""[..], b"2 1 2 3 4 5", b"1 1 2 3", b"1 a b c d e", b"\xff"] {
            assert_eq!(FetchRecord::decode(bad), None);
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
    fn discovery_gives_the_jwks_location() {
        let doc = br#"{"issuer":"https://id.example","jwks_uri":"https://ID.example:8443/keys/jwks.json?v=2"}"#;
        let location = jwks_location_from_discovery(doc).unwrap();
        assert_eq!(location.authority, "id.example:8443");
        assert_eq!(location.path, "/keys/jwks.json?v=2");
        assert_eq!(jwks_location_from_discovery(br#"{"jwks_uri":"http://h"}"#).unwrap().path, "/");
        assert!(jwks_location_from_discovery(b"not json").is_err());
        assert!(jwks_location_from_discovery(br#"{"issuer":"x"}"#).is_err());
        assert!(jwks_location_from_discovery(br#"{"jwks_uri":"ftp://h/x"}"#).is_err());
        assert!(jwks_location_from_discovery(br#"{"jwks_uri":"https:///x"}"#).is_err());
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

    #[test]
    fn validation_names_the_field() {
        let remote = |change: &dyn Fn(&mut RemoteJwksConfig)| {
            let mut config = RemoteJwksConfig {
                cluster: "jwks".into(),
                authority: "idp".into(),
                path: "/jwks.json".into(),
                refresh_seconds: default_refresh_seconds(),
                timeout_ms: default_timeout_ms(),
                min_refetch_seconds: default_min_refetch_seconds(),
                max_response_bytes: default_max_response_bytes(),
            };
            change(&mut config);
            RemoteSource::from_config(Some(&config), None).unwrap().validate("jwt.providers[0]")
        };
        assert!(remote(&|_| {}).is_ok());
        let err = remote(&|c| c.cluster.clear()).unwrap_err();
        assert_eq!(err.to_string(), "jwt.providers[0].remote_jwks.cluster: must name an Envoy cluster");
        let failing_field = |change: &dyn Fn(&mut RemoteJwksConfig)| remote(change).unwrap_err().path;
        assert!(failing_field(&|c| c.path = "x".into()).ends_with(".path"));
        assert!(failing_field(&|c| c.refresh_seconds = 0).ends_with(".refresh_seconds"));
        assert!(failing_field(&|c| c.min_refetch_seconds = 0).ends_with(".min_refetch_seconds"));
        assert!(failing_field(&|c| c.max_response_bytes = 10).ends_with(".max_response_bytes"));
    }
}
