//! Signature checks through Envoy's BoringSSL (`verify_signature` foreign
//! function) for RS256/384/512 and ES256; everything else, and hosts without
//! the function, use the pure-Rust path.

use proxy_wasm::hostcalls;
use proxy_wasm::types::Status;

use crate::envoy_verify::{decode_result, encode_arguments, FUNCTION_NAME};
use crate::jwt::{Algorithm, SignatureBackend};

pub struct EnvoyCrypto {
    available: bool,
}

impl EnvoyCrypto {
    /// Probe the host once: an empty argument list gives BadArgument where the function exists.
    pub fn detect(enabled: bool) -> EnvoyCrypto {
        let available =
            enabled && !matches!(hostcalls::call_foreign_function(FUNCTION_NAME, Some(&[])), Err(Status::NotFound));
        EnvoyCrypto { available }
    }

    pub fn available(&self) -> bool {
        self.available
    }
}

impl SignatureBackend for EnvoyCrypto {
    fn verify(&self, alg: Algorithm, spki_der: &[u8], signing_input: &[u8], signature: &[u8]) -> Option<bool> {
        if !self.available {
            return None;
        }
        let hash = match alg {
            Algorithm::RS256 | Algorithm::ES256 => "sha256",
            Algorithm::RS384 => "sha384",
            Algorithm::RS512 => "sha512",
            _ => return None,
        };
        let arguments = encode_arguments(hash, spki_der, signature, signing_input);
        match hostcalls::call_foreign_function(FUNCTION_NAME, Some(&arguments)) {
            Ok(Some(result)) => decode_result(&result),
            Ok(None) => Some(false),
            // The host could not take these arguments: let the pure-Rust path decide.
            Err(_) => None,
        }
    }
}
