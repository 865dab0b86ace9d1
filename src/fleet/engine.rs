//! What the filter asks the rate-limit engine itself (with `limits.scope: "fleet"`):
//! whether a one-time keypair token was used anywhere in the fleet, and whether a
//! user name's failed passwords, counted across the fleet, reached their limit.
//! Envoy's rate-limit filter cannot ask these (it runs after this filter, never sees
//! a refused password, and cannot hold a decision): the filter sends Envoy's
//! `ShouldRateLimit` itself and holds the request for the answer.
//!
//! Pure: the descriptors, the request's bytes (hand-encoded protobuf: three small
//! messages) and the answer's reading. Each Envoy's own records stay the fast local
//! check; the engine is asked only once they pass.
//!
//! ```text
//!   one-time token:   [("one_time_keypair", <keypair>), ("jti", <jti>)]   counted: 1 per use
//!   password checked: [("basic_failures", <user>)] with hits_addend 0    checked, not counted
//!   password failed:  [("basic_failures", <user>)]                       counted: 1 per failure
//! ```

use crate::principal::{AuthMethod, Principal};

/// The descriptor keys the engine's rules name (`fleet_rules` writes them).
pub(crate) const ONE_TIME_KEY: &str = "one_time_keypair";
pub(crate) const JTI_KEY: &str = "jti";
pub(crate) const FAILURES_KEY: &str = "basic_failures";

/// The gRPC service and method of Envoy's rate-limit API (the host adapter calls them).
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub(crate) const SERVICE: &str = "envoy.service.ratelimit.v3.RateLimitService";
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub(crate) const METHOD: &str = "ShouldRateLimit";

/// The most a request waits for the engine's answer: the call's timeout (Envoy answers
/// it then with a gRPC error), as long as Envoy's rate-limit filter waits as
/// `ratelimit-config` prints it.
pub(crate) const TIMEOUT_MS: u64 = 250;

/// The Envoy cluster of the engine's gRPC endpoint (HTTP/2), as `ratelimit-config` names it.
pub(crate) const CLUSTER: &str = "ratelimit";

/// `limits.engine_*`: how the filter asks the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Engine {
    /// The rate-limit domain (Limitador's namespace).
    pub domain: String,
    /// When the engine does not answer: refuse (503) instead of deciding on the local records alone.
    pub failure_mode_deny: bool,
}

/// What the filter asks the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Check {
    /// A one-time token's use, counted: over the limit when it was used before, anywhere.
    OneTime { keypair: String, jti: String },
    /// Whether a user name's failures reached their limit: checked, not counted.
    Locked { user: String },
    /// A failed password for a user name, counted.
    Failure { user: String },
}

/// The engine's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    Ok,
    OverLimit,
    /// No answer (gRPC error, timeout, the engine or its storage down) or one that says neither.
    Failed,
}

/// What the engine must confirm before `principal` is allowed: a one-time keypair
/// token's first use fleet-wide, or that a Basic user's name is not locked.
pub(crate) fn confirmation(principal: &Principal, one_time: impl Fn(&str) -> bool) -> Option<Check> {
    match principal.method {
        AuthMethod::Keypair if one_time(&principal.id) => {
            let jti = principal.token.as_ref()?.jti.as_ref()?;
            Some(Check::OneTime { keypair: principal.id.clone(), jti: jti.clone() })
        }
        AuthMethod::Basic => Some(Check::Locked { user: principal.id.clone() }),
        _ => None,
    }
}

/// The most of a value sent (a user name or `jti` is the client's choice): longer ones
/// are cut, at a character's end. Two names alike in their first 128 bytes share one
/// count: a guesser could as well fail with the name itself; two tokens of one keypair,
/// one use.
const MAX_VALUE_BYTES: usize = 128;

/// A descriptor value as the engine gets it: its first 128 bytes (at most), as they are.
/// Neither engine reads anything into a value: Limitador compares it as a string, and
/// envoyproxy/ratelimit's cache key (`<domain>_<key>_<value>_..._<window>`) cannot meet
/// another's for these descriptors (a user name is the only value after its fixed key;
/// a `jti` follows its keypair's id, which `ratelimit-config` refuses with a `_`).
pub(crate) fn value(raw: &str) -> &str {
    let mut end = raw.len().min(MAX_VALUE_BYTES);
    while !raw.is_char_boundary(end) {
        end -= 1;
    }
    raw.get(..end).unwrap_or_default()
}

impl Check {
    /// `envoy.service.ratelimit.v3.RateLimitRequest` for `domain` with this one descriptor:
    /// `domain` (1), `descriptors` (2: `entries` (1: `key` 1, `value` 2) and, to check
    /// without counting, the descriptor's own `hits_addend` (3, a `UInt64Value`) of 0).
    /// The request's `hits_addend` is left out: 0, which engines read as 1.
    pub(crate) fn request(&self, domain: &str) -> Vec<u8> {
        let (entries, check_only): (&[(&str, &str)], bool) = match self {
            Check::OneTime { keypair, jti } => (&[(ONE_TIME_KEY, keypair), (JTI_KEY, jti)], false),
            Check::Locked { user } => (&[(FAILURES_KEY, user)], true),
            Check::Failure { user } => (&[(FAILURES_KEY, user)], false),
        };
        let mut descriptor = Vec::new();
        for (key, raw) in entries {
            let mut entry = Vec::new();
            field(&mut entry, 1, key.as_bytes());
            field(&mut entry, 2, value(raw).as_bytes());
            field(&mut descriptor, 1, &entry);
        }
        if check_only {
            field(&mut descriptor, 3, &[]); // UInt64Value { value: 0 }: present, zero
        }
        let mut message = Vec::new();
        field(&mut message, 1, domain.as_bytes());
        field(&mut message, 2, &descriptor);
        message
    }
}

/// A length-delimited field.
fn field(out: &mut Vec<u8>, number: u8, bytes: &[u8]) {
    out.push(number << 3 | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// The answer to a call: gRPC status 0 and a `RateLimitResponse` that opens with its
/// `overall_code` (field 1, a varint: `08 01` OK, `08 02` OVER_LIMIT; encoders write
/// fields in order); anything else (UNKNOWN, which proto3 leaves out) failed.
pub(crate) fn answer(grpc_status: u32, body: &[u8]) -> Answer {
    match (grpc_status, body) {
        (0, [0x08, 0x01, ..]) => Answer::Ok,
        (0, [0x08, 0x02, ..]) => Answer::OverLimit,
        _ => Answer::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_cut_at_128_bytes_on_a_character_boundary() {
        assert_eq!(value("a_b c:d%~\"é\u{0}"), "a_b c:d%~\"é\u{0}");
        assert_eq!(value(&"x".repeat(200)), "x".repeat(128));
        // 63 two-byte characters and one cut in half: the half is left out.
        assert_eq!(value(&format!("x{}", "é".repeat(100))), format!("x{}", "é".repeat(63)));
    }

    #[test]
    fn a_one_time_request_is_the_protobuf_envoy_sends() {
        let check = Check::OneTime { keypair: "kp".into(), jti: "j_1".into() };
        let bytes = check.request("wasm_authn");
        // domain, then one descriptor of two entries, without hits_addend.
        let mut expected = vec![0x0a, 10];
        expected.extend_from_slice(b"wasm_authn");
        let entry_a = [&[0x0a, 16][..], b"one_time_keypair", &[0x12, 2], b"kp"].concat();
        let entry_b = [&[0x0a, 3][..], b"jti", &[0x12, 3], b"j_1"].concat();
        let descriptor = [&[0x0a, entry_a.len() as u8][..], &entry_a, &[0x0a, entry_b.len() as u8], &entry_b].concat();
        expected.extend_from_slice(&[0x12, descriptor.len() as u8]);
        expected.extend_from_slice(&descriptor);
        assert_eq!(bytes, expected);
    }

    #[test]
    fn a_check_carries_a_zero_hits_addend_and_a_failure_none() {
        let locked = Check::Locked { user: "bob".into() }.request("d");
        let failure = Check::Failure { user: "bob".into() }.request("d");
        let entry = [&[0x0a, 14][..], b"basic_failures", &[0x12, 3], b"bob"].concat();
        let counted = [&[0x0a, entry.len() as u8][..], &entry].concat();
        let checked = [&counted[..], &[0x1a, 0x00]].concat();
        assert_eq!(failure, [&[0x0a, 1, b'd', 0x12, counted.len() as u8][..], &counted].concat());
        assert_eq!(locked, [&[0x0a, 1, b'd', 0x12, checked.len() as u8][..], &checked].concat());
    }

    #[test]
    fn long_values_take_two_byte_lengths() {
        let user = "u".repeat(100);
        let bytes = Check::Failure { user: user.clone() }.request("d");
        // entry: 2 + 14 + 2 + 100 = 118 bytes; descriptor: 2 + 118 = 120; both fit one byte;
        // a 300-byte domain needs two.
        assert_eq!(bytes.len(), 3 + 2 + 120);
        let domain = "d".repeat(300);
        let bytes = Check::Failure { user }.request(&domain);
        assert_eq!(&bytes[..3], &[0x0a, 0xac, 0x02]);
    }

    #[test]
    fn the_answer_is_its_overall_code_under_grpc_status_zero() {
        assert_eq!(answer(0, &[0x08, 0x01]), Answer::Ok);
        assert_eq!(answer(0, &[0x08, 0x02]), Answer::OverLimit);
        // Statuses and headers may follow.
        assert_eq!(answer(0, &[0x08, 0x02, 0x12, 0x02, 0x08, 0x02]), Answer::OverLimit);
        // UNKNOWN (left out: another field first, or nothing), a gRPC error (14: unavailable;
        // 4: deadline), a truncated body.
        for (status, body) in
            [(0, &[][..]), (0, &[0x12, 0x00, 0x08, 0x01][..]), (14, &[0x08, 0x01][..]), (4, &[][..]), (0, &[0x08][..])]
        {
            assert_eq!(answer(status, body), Answer::Failed, "{status} {body:?}");
        }
        assert_eq!(answer(0, &[0x08, 0x03]), Answer::Failed);
    }

    #[test]
    fn only_one_time_keypairs_and_basic_users_are_confirmed() {
        use crate::privileges::Privileges;
        use std::rc::Rc;
        let privileges = Rc::new(Privileges::default());
        let user = Principal::configured("alice", AuthMethod::Basic, &privileges);
        assert_eq!(confirmation(&user, |_| true), Some(Check::Locked { user: "alice".into() }));
        let client = Principal::configured("c", AuthMethod::ApiKey, &privileges);
        assert_eq!(confirmation(&client, |_| true), None);
        let mut keypair = Principal::configured("kp", AuthMethod::Keypair, &privileges);
        keypair.token = Some(crate::principal::TokenFacts { jti: Some("j".into()), ..Default::default() });
        assert_eq!(
            confirmation(&keypair, |name| name == "kp"),
            Some(Check::OneTime { keypair: "kp".into(), jti: "j".into() })
        );
        assert_eq!(confirmation(&keypair, |_| false), None, "not one_time");
    }
}
