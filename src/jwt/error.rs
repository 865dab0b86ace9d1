//! Why a token was refused: one error kind, with its RFC 6750 description and counted reason.

use super::provider::ProviderId;
use crate::reason::Reason;

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtError {
    /// Longer than `MAX_TOKEN_BYTES`.
    TooLarge,
    /// Not a compact JWS, or its header or claims are not JSON objects.
    Malformed,
    /// `none`, an unknown `alg`, or an `alg` the selected key is not bound to.
    UnsupportedAlgorithm,
    /// No provider has the token's `iss`.
    UnknownIssuer,
    /// A provider's token found where that provider does not read tokens.
    WrongLocation,
    /// No key of the provider matches the token's `kid` and `alg`.
    UnknownKey {
        /// The provider whose keys were looked at.
        provider: ProviderId,
    },
    /// The provider's remote key set has not been fetched yet: the token may be fine.
    KeysNotLoaded {
        /// The provider whose keys are awaited.
        provider: ProviderId,
    },
    /// No key's signature check passed.
    BadSignature,
    /// Past `exp` (and the skew).
    Expired,
    /// Before `nbf` or `iat` (and the skew).
    NotYetValid,
    /// No `aud` the provider accepts.
    WrongAudience,
    /// No `exp`, and the provider requires one.
    MissingExpiration,
    /// `exp` further than `max_lifetime_seconds` from `iat` or now.
    LifetimeTooLong,
    /// No principal claim.
    MissingPrincipal,
    /// A principal claim that cannot be a header value, or has surrounding whitespace.
    InvalidPrincipal,
    /// A `cnf` claim binding the token in a way the filter cannot check.
    UnknownConfirmation,
}

impl JwtError {
    /// RFC 6750 `error_description`; never echoes the token.
    pub fn description(&self) -> &'static str {
        match self {
            JwtError::TooLarge => "token too large",
            JwtError::Malformed => "malformed token",
            JwtError::UnsupportedAlgorithm => "algorithm not allowed",
            JwtError::UnknownIssuer => "unknown issuer",
            JwtError::WrongLocation => "token not accepted in this location",
            JwtError::UnknownKey { .. } => "unknown signing key",
            JwtError::KeysNotLoaded { .. } => "signing keys not available yet",
            JwtError::BadSignature => "signature verification failed",
            JwtError::Expired => "token expired",
            JwtError::NotYetValid => "token not yet valid",
            JwtError::WrongAudience => "audience not allowed",
            JwtError::MissingExpiration => "expiration required",
            JwtError::LifetimeTooLong => "token lifetime too long",
            JwtError::MissingPrincipal => "principal claim missing",
            JwtError::InvalidPrincipal => "principal claim invalid",
            JwtError::UnknownConfirmation => "token bound to a key this filter cannot check",
        }
    }

    /// The reason a refusal is counted under.
    pub fn reason(&self) -> Reason {
        match self {
            JwtError::TooLarge => Reason::JwtTooLarge,
            JwtError::Malformed => Reason::JwtMalformed,
            JwtError::UnsupportedAlgorithm => Reason::JwtAlgorithm,
            JwtError::UnknownIssuer => Reason::JwtUnknownIssuer,
            JwtError::WrongLocation => Reason::JwtWrongLocation,
            JwtError::UnknownKey { .. } => Reason::JwtUnknownKey,
            JwtError::KeysNotLoaded { .. } => Reason::JwksUnavailable,
            JwtError::BadSignature => Reason::JwtBadSignature,
            JwtError::Expired => Reason::JwtExpired,
            JwtError::NotYetValid => Reason::JwtNotYetValid,
            JwtError::WrongAudience => Reason::JwtAudience,
            JwtError::MissingExpiration => Reason::JwtNoExpiration,
            JwtError::LifetimeTooLong => Reason::JwtLifetime,
            JwtError::MissingPrincipal => Reason::JwtNoPrincipal,
            JwtError::InvalidPrincipal => Reason::JwtBadPrincipal,
            JwtError::UnknownConfirmation => Reason::TokenBindingUnknown,
        }
    }
}
