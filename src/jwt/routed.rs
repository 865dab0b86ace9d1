//! Signature checks as `jwt_compact::Algorithm`s: RS256/384/512 and ES256 go to the
//! host's BoringSSL first (`SignatureBackend`), everything else and every key the host
//! cannot check is verified in pure Rust by jwt-compact's own algorithms, within the
//! per-token budget of pure-Rust public-key checks.

use std::borrow::Cow;
use std::cell::Cell;

use jwt_compact::alg::{Ed25519, Es256, Hs256, Hs256Key, Hs384, Hs384Key, Hs512, Hs512Key, Rsa, RsaSignature};
use jwt_compact::{Algorithm as JwsAlgorithm, AlgorithmSignature};

use super::algorithm::Algorithm;
use super::backend::SignatureBackend;
use super::der::ecdsa_jws_to_der;
use super::keys::{Key, KeyMaterial, P256Key, RsaKey};

/// At most this many pure-Rust public-key checks per token (PS*, EdDSA, or RS*/ES256
/// without the host's BoringSSL: 0.3-1.5 ms each in the VM).
pub const MAX_PURE_PUBLIC_KEY_CHECKS: u32 = 1;

/// What the signature checks of one token share: the host's checker and the budget.
pub(super) struct Checks<'b> {
    backend: &'b dyn SignatureBackend,
    pure_public_key_checks: Cell<u32>,
}

impl<'b> Checks<'b> {
    pub fn new(backend: &'b dyn SignatureBackend) -> Checks<'b> {
        Checks { backend, pure_public_key_checks: Cell::new(0) }
    }

    /// Take one pure-Rust public-key check, if any is left.
    fn take_pure(&self) -> bool {
        let used = self.pure_public_key_checks.get();
        if used >= MAX_PURE_PUBLIC_KEY_CHECKS {
            return false;
        }
        self.pure_public_key_checks.set(used + 1);
        true
    }

    /// Whether `key` (already known to allow `alg`) verifies `signature` over `signing_input`.
    pub fn key_verifies(&self, key: &Key, alg: Algorithm, signing_input: &[u8], signature: &[u8]) -> bool {
        match key.material() {
            KeyMaterial::Hmac(secret) => match alg {
                Algorithm::HS256 => verifies(&Hs256, &Hs256Key::new(secret), signing_input, signature),
                Algorithm::HS384 => verifies(&Hs384, &Hs384Key::new(secret), signing_input, signature),
                Algorithm::HS512 => verifies(&Hs512, &Hs512Key::new(secret), signing_input, signature),
                _ => false,
            },
            KeyMaterial::Rsa(rsa) => {
                RoutedRsa::new(alg, self).is_some_and(|routed| verifies(&routed, rsa, signing_input, signature))
            }
            KeyMaterial::P256(p256) => {
                alg == Algorithm::ES256 && verifies(&RoutedEs256 { checks: self }, p256, signing_input, signature)
            }
            KeyMaterial::Ed25519(ed25519) => {
                alg == Algorithm::EdDSA
                    && verifies(&Budgeted { inner: Ed25519, checks: self }, ed25519, signing_input, signature)
            }
        }
    }
}

/// What jwt-compact's `Validator` does for one key, without parsing the claims again
/// for every key tried: the signature length (jwt-compact's `try_from_slice` may panic
/// on a wrong one), its decoding, then the check.
fn verifies<A: JwsAlgorithm>(alg: &A, key: &A::VerifyingKey, signing_input: &[u8], signature: &[u8]) -> bool {
    if A::Signature::LENGTH.is_some_and(|length| length.get() != signature.len()) {
        return false;
    }
    A::Signature::try_from_slice(signature).is_ok_and(|signature| alg.verify_signature(&signature, key, signing_input))
}

/// RS256/384/512 (host first) and PS256/384/512 (pure Rust) with an RSA key.
pub(super) struct RoutedRsa<'c> {
    alg: Algorithm,
    pure: Rsa,
    checks: &'c Checks<'c>,
}

impl<'c> RoutedRsa<'c> {
    fn new(alg: Algorithm, checks: &'c Checks<'c>) -> Option<RoutedRsa<'c>> {
        let pure = match alg {
            Algorithm::RS256 => Rsa::rs256(),
            Algorithm::RS384 => Rsa::rs384(),
            Algorithm::RS512 => Rsa::rs512(),
            Algorithm::PS256 => Rsa::ps256(),
            Algorithm::PS384 => Rsa::ps384(),
            Algorithm::PS512 => Rsa::ps512(),
            _ => return None,
        };
        Some(RoutedRsa { alg, pure, checks })
    }
}

impl JwsAlgorithm for RoutedRsa<'_> {
    type SigningKey = rsa::RsaPrivateKey;
    type VerifyingKey = RsaKey;
    type Signature = RsaSignature;

    fn name(&self) -> Cow<'static, str> {
        Cow::Borrowed(self.alg.name())
    }

    fn sign(&self, signing_key: &rsa::RsaPrivateKey, message: &[u8]) -> RsaSignature {
        self.pure.sign(signing_key, message)
    }

    fn verify_signature(&self, signature: &RsaSignature, key: &RsaKey, message: &[u8]) -> bool {
        let host_answer = match self.alg {
            Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 => {
                self.checks.backend.verify(self.alg, &key.spki_der, message, &signature.as_bytes())
            }
            _ => None,
        };
        host_answer
            .unwrap_or_else(|| self.checks.take_pure() && self.pure.verify_signature(signature, &key.key, message))
    }
}

/// ES256: the host gets the JWS `r||s` re-encoded as DER; pure Rust when it cannot answer.
pub(super) struct RoutedEs256<'c> {
    checks: &'c Checks<'c>,
}

impl JwsAlgorithm for RoutedEs256<'_> {
    type SigningKey = p256::ecdsa::SigningKey;
    type VerifyingKey = P256Key;
    type Signature = p256::ecdsa::Signature;

    fn name(&self) -> Cow<'static, str> {
        Cow::Borrowed("ES256")
    }

    fn sign(&self, signing_key: &p256::ecdsa::SigningKey, message: &[u8]) -> p256::ecdsa::Signature {
        Es256.sign(signing_key, message)
    }

    fn verify_signature(&self, signature: &p256::ecdsa::Signature, key: &P256Key, message: &[u8]) -> bool {
        let host_answer = ecdsa_jws_to_der(&signature.to_bytes()).and_then(|der_signature| {
            self.checks.backend.verify(Algorithm::ES256, &key.spki_der, message, &der_signature)
        });
        host_answer.unwrap_or_else(|| self.checks.take_pure() && Es256.verify_signature(signature, &key.key, message))
    }
}

/// A pure-Rust public-key algorithm (EdDSA) that may run only while the budget allows.
struct Budgeted<'c, A> {
    inner: A,
    checks: &'c Checks<'c>,
}

impl<A: JwsAlgorithm> JwsAlgorithm for Budgeted<'_, A> {
    type SigningKey = A::SigningKey;
    type VerifyingKey = A::VerifyingKey;
    type Signature = A::Signature;

    fn name(&self) -> Cow<'static, str> {
        self.inner.name()
    }

    fn sign(&self, signing_key: &A::SigningKey, message: &[u8]) -> A::Signature {
        self.inner.sign(signing_key, message)
    }

    fn verify_signature(&self, signature: &A::Signature, key: &A::VerifyingKey, message: &[u8]) -> bool {
        self.checks.take_pure() && self.inner.verify_signature(signature, key, message)
    }
}
