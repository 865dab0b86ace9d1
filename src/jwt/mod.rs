//! The pure JWT core: keys (JWK, JWKS, PEM, HMAC secrets), each bound to the
//! algorithms it may verify; compact JWS verification with `kid` selection; and
//! the claim checks. No host calls: the time and the host's signature checker
//! come in as arguments, so everything here is tested natively.

mod algorithm;
mod backend;
mod claims;
mod der;
mod encoding;
mod error;
pub mod introspection;
mod keys;
mod provider;
mod verify;

pub use algorithm::Algorithm;
pub use backend::{PureRust, SignatureBackend};
pub use claims::claim_at;
pub(crate) use claims::{check_claims, claim_headers, condition_values, numeric_date, principal, scopes, token_id};
pub use der::ecdsa_jws_to_der;
pub use encoding::{
    jwk_bytes, only_pem_block, PemError, JWK_BASE64, OID_EC_PUBLIC_KEY, OID_ED25519, OID_P256, OID_RSA_ENCRYPTION,
    PRIVATE_KEY,
};
pub use error::JwtError;
pub use keys::{thumbprint, Key, KeyError, KeySet, MAX_JWKS_KEYS};
pub use provider::{normalized_pem, ClaimToHeader, Dpop, FetchedKeys, Provider, ProviderId, ProviderKind, TokenOutput};
pub use verify::{
    check_signature, looks_like_jws, verify, VerifiedToken, MAX_PAYLOAD_BYTES, MAX_PURE_PUBLIC_KEY_CHECKS,
    MAX_SIGNATURE_CHECKS, MAX_TOKEN_BYTES,
};

#[cfg(test)]
mod tests;
