//! The pure JWT core: keys (JWK, JWKS, PEM, HMAC secrets), each bound to the
//! algorithms it may verify; compact JWS verification with `kid` selection; and
//! the claim checks. No host calls: the time and the host's signature checker
//! come in as arguments, so everything here is tested natively.

mod claims;
mod der;
mod keys;
mod provider;
mod verify;

pub use claims::claim_at;
pub use der::ecdsa_jws_to_der;
pub use keys::{Key, KeySet, MAX_JWKS_KEYS};
pub use provider::{ClaimToHeader, Provider, ProviderConfig};
pub use verify::{verify, MAX_PAYLOAD_BYTES, MAX_PURE_PUBLIC_KEY_CHECKS, MAX_SIGNATURE_CHECKS, MAX_TOKEN_BYTES};

/// The JWS algorithms this filter verifies. Anything else (`none` first) is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    HS256,
    HS384,
    HS512,
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    EdDSA,
}

impl Algorithm {
    /// The algorithm named by a JWS `alg` header or a JWK `alg` member (exact, case-sensitive).
    pub fn from_name(name: &str) -> Option<Algorithm> {
        use Algorithm::*;
        Some(match name {
            "HS256" => HS256,
            "HS384" => HS384,
            "HS512" => HS512,
            "RS256" => RS256,
            "RS384" => RS384,
            "RS512" => RS512,
            "PS256" => PS256,
            "PS384" => PS384,
            "PS512" => PS512,
            "ES256" => ES256,
            "EdDSA" => EdDSA,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        use Algorithm::*;
        match self {
            HS256 => "HS256",
            HS384 => "HS384",
            HS512 => "HS512",
            RS256 => "RS256",
            RS384 => "RS384",
            RS512 => "RS512",
            PS256 => "PS256",
            PS384 => "PS384",
            PS512 => "PS512",
            ES256 => "ES256",
            EdDSA => "EdDSA",
        }
    }
}

/// What a valid token says about its bearer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// Index of the provider that vouched for the token.
    pub provider: usize,
    pub principal: String,
    /// `claim_to_headers` results, in configuration order; claims that are missing or
    /// unusable as header values are left out.
    pub headers: Vec<(String, String)>,
    pub expires_at: Option<u64>,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtError {
    TooLarge,
    Malformed,
    /// `none`, an unknown `alg`, or an `alg` the selected key is not bound to.
    UnsupportedAlgorithm,
    UnknownIssuer,
    UnknownKey {
        provider: usize,
    },
    /// The provider's remote key set has not been fetched yet: the token may be fine.
    KeysNotLoaded {
        provider: usize,
    },
    BadSignature,
    Expired,
    NotYetValid,
    WrongAudience,
    MissingExpiration,
    LifetimeTooLong,
    MissingPrincipal,
    /// A principal claim that cannot be a header value, or has surrounding whitespace.
    InvalidPrincipal,
}

impl JwtError {
    /// RFC 6750 `error_description`; never echoes the token.
    pub fn description(&self) -> &'static str {
        match self {
            JwtError::TooLarge => "token too large",
            JwtError::Malformed => "malformed token",
            JwtError::UnsupportedAlgorithm => "algorithm not allowed",
            JwtError::UnknownIssuer => "unknown issuer",
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
        }
    }

    /// Metric-safe reason label.
    pub fn reason(&self) -> &'static str {
        match self {
            JwtError::TooLarge => "jwt_too_large",
            JwtError::Malformed => "jwt_malformed",
            JwtError::UnsupportedAlgorithm => "jwt_algorithm",
            JwtError::UnknownIssuer => "jwt_unknown_issuer",
            JwtError::UnknownKey { .. } => "jwt_unknown_key",
            JwtError::KeysNotLoaded { .. } => "jwt_keys_not_loaded",
            JwtError::BadSignature => "jwt_bad_signature",
            JwtError::Expired => "jwt_expired",
            JwtError::NotYetValid => "jwt_not_yet_valid",
            JwtError::WrongAudience => "jwt_audience",
            JwtError::MissingExpiration => "jwt_no_expiration",
            JwtError::LifetimeTooLong => "jwt_lifetime",
            JwtError::MissingPrincipal => "jwt_no_principal",
            JwtError::InvalidPrincipal => "jwt_bad_principal",
        }
    }
}

/// Host-provided signature checking (Envoy's BoringSSL through a foreign function).
/// Asked for RS256/RS384/RS512 and ES256 only; for ES256 `signature` is the DER
/// re-encoding of the JWS `r||s`. Returns None when it cannot check this
/// algorithm or key, and the pure-Rust path is used instead.
pub trait SignatureBackend {
    fn verify(&self, alg: Algorithm, spki_der: &[u8], signing_input: &[u8], signature: &[u8]) -> Option<bool>;
}

/// No host help: every signature is checked in Rust.
#[derive(Debug, Clone, Copy, Default)]
pub struct PureRust;

impl SignatureBackend for PureRust {
    fn verify(&self, _alg: Algorithm, _spki_der: &[u8], _signing_input: &[u8], _signature: &[u8]) -> Option<bool> {
        None
    }
}

#[cfg(test)]
mod tests;
