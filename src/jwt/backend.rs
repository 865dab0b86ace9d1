//! Signature checks the host may do faster than the VM (Envoy's BoringSSL).

use super::algorithm::Algorithm;

/// Host-provided signature checking (Envoy's BoringSSL through a foreign function).
/// Asked for RS256/RS384/RS512 and ES256 only; for ES256 `signature` is the DER
/// re-encoding of the JWS `r||s`. Returns None when it cannot check this
/// algorithm or key, and the pure-Rust path is used instead.
pub trait SignatureBackend {
    /// Whether `signature` over `signing_input` verifies with the key `spki_der`; None: this backend does not check `alg`.
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
