//! The pure JWT core: keys (JWK, JWKS, PEM, HMAC secrets), each bound to the
//! algorithms it may verify; compact JWS verification with `kid` selection and
//! issuer matching; the claim checks; token signing. jwt-compact parses the tokens,
//! does the time checks and the pure-Rust cryptography, and signs; what it does not
//! do (key binding, `kid` selection, issuer matching, the bounds) is here. No host
//! calls: the time and the host's signature checker come in as arguments, so
//! everything here is tested natively.

mod algorithm;
mod backend;
mod claims;
mod der;
mod error;
mod keys;
mod provider;
mod routed;
mod sign;
mod verify;

pub use algorithm::Algorithm;
pub use backend::{PureRust, SignatureBackend};
pub use claims::claim_at;
pub use der::ecdsa_jws_to_der;
pub use error::JwtError;
pub use keys::{Key, KeySet, MAX_JWKS_KEYS};
pub use provider::{ClaimToHeader, Provider, ProviderId};
pub use routed::MAX_PURE_PUBLIC_KEY_CHECKS;
pub use sign::{sign, SignError, SigningKey};
pub use verify::{verify, VerifiedToken, MAX_PAYLOAD_BYTES, MAX_SIGNATURE_CHECKS, MAX_TOKEN_BYTES};

#[cfg(test)]
mod tests;
