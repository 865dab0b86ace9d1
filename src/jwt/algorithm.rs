//! The JWS algorithms this filter verifies (RFC 7518), by their registered names.

/// The JWS algorithms this filter verifies. Anything else (`none` first) is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// HMAC with SHA-256.
    HS256,
    /// HMAC with SHA-384.
    HS384,
    /// HMAC with SHA-512.
    HS512,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// ECDSA on P-384 with SHA-384 (verified by Envoy's BoringSSL).
    ES384,
    /// Ed25519.
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
            "ES384" => ES384,
            "EdDSA" => EdDSA,
            _ => return None,
        })
    }

    /// Its JOSE name (`RS256`).
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
            ES384 => "ES384",
            EdDSA => "EdDSA",
        }
    }
}
