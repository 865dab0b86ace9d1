//! Stored-secret formats for passwords and API keys, checked in constant time.
//!
//! Secrets are never stored in clear: `sha256:<hex>`, htpasswd `{SHA}<base64>`
//! (SHA-1, the format Envoy's own `basic_auth` reads) and bcrypt (`$2a$`, `$2b$`, `$2y$`).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

use crate::digest::{sha256, Sha256Digest};

/// The longest password or API key checked; bcrypt reads only 72 bytes anyway.
pub const MAX_SECRET_BYTES: usize = 1024;

/// The costliest bcrypt accepted. One check runs on the Envoy worker thread and
/// blocks it: about 75 ms at cost 10 inside Envoy's V8, doubling with each step
/// (docs/security.md: the measured time of every cost).
pub const MAX_BCRYPT_COST: u32 = 12;
/// The cheapest bcrypt cost accepted.
pub const MIN_BCRYPT_COST: u32 = 4;

#[derive(Clone, PartialEq, Eq)]
/// A stored password (or API key) hash, as htpasswd and the configuration write it.
pub enum PasswordHash {
    /// `{SHA256}`: a SHA-256 digest (for long random secrets such as API keys).
    Sha256(Sha256Digest),
    /// htpasswd `{SHA}`: unsalted SHA-1, accepted for files written for Envoy's `basic_auth`.
    Sha1([u8; 20]),
    /// `$2y$`/`$2b$`: bcrypt.
    Bcrypt {
        /// The hash as written (`$2y$10$...`).
        hash: String,
        /// Its cost (log2 of the rounds).
        cost: u32,
    },
}

// Hashes are secrets too: keep them out of logs and panics.
impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            PasswordHash::Sha256(_) => "sha256",
            PasswordHash::Sha1(_) => "{SHA}",
            PasswordHash::Bcrypt { .. } => "bcrypt",
        };
        write!(f, "PasswordHash({kind})")
    }
}

impl PasswordHash {
    /// Parse a hash as written in the configuration or an htpasswd line.
    pub fn parse(text: &str) -> Result<PasswordHash, String> {
        if let Some(hex) = text.strip_prefix("sha256:") {
            return decode_hex::<32>(hex)
                .map(PasswordHash::Sha256)
                .ok_or_else(|| "sha256: needs 64 hex digits".to_string());
        }
        if let Some(b64) = text.strip_prefix("{SHA}") {
            let bytes = STANDARD.decode(b64).map_err(|_| "{SHA} needs base64".to_string())?;
            let digest: [u8; 20] = bytes.try_into().map_err(|_| "{SHA} needs a 20-byte SHA-1 digest".to_string())?;
            return Ok(PasswordHash::Sha1(digest));
        }
        if ["$2a$", "$2b$", "$2y$"].iter().any(|p| text.starts_with(p)) {
            // Validate the cost and salt now, not on the first request.
            let parts: bcrypt::HashParts = text.parse().map_err(|_| "invalid bcrypt hash".to_string())?;
            let cost = parts.get_cost();
            if !(MIN_BCRYPT_COST..=MAX_BCRYPT_COST).contains(&cost) {
                return Err(format!("bcrypt cost must be between {MIN_BCRYPT_COST} and {MAX_BCRYPT_COST}"));
            }
            return Ok(PasswordHash::Bcrypt { hash: text.to_string(), cost });
        }
        Err("unsupported hash format: use sha256:<hex>, {SHA}<base64> or bcrypt ($2a$, $2b$, $2y$); never a clear-text secret".into())
    }

    /// Whether this hash is slow to check (worth caching a success).
    pub fn is_slow(&self) -> bool {
        matches!(self, PasswordHash::Bcrypt { .. })
    }

    /// The bcrypt cost, for bcrypt hashes.
    pub fn bcrypt_cost(&self) -> Option<u32> {
        match self {
            PasswordHash::Bcrypt { cost, .. } => Some(*cost),
            _ => None,
        }
    }

    /// Whether `secret` matches (in constant time for SHA-256).
    pub fn verify(&self, secret: &[u8]) -> bool {
        if secret.len() > MAX_SECRET_BYTES {
            return false;
        }
        match self {
            PasswordHash::Sha256(expected) => sha256(secret).ct_eq(expected).into(),
            PasswordHash::Sha1(expected) => {
                let digest: [u8; 20] = Sha1::digest(secret).into();
                digest.ct_eq(expected).into()
            }
            // bcrypt::verify compares the digests in constant time.
            PasswordHash::Bcrypt { hash, .. } => bcrypt::verify(secret, hash).unwrap_or(false),
        }
    }
}

/// `N` bytes from their hex digits (either case); None unless exactly that.
pub fn decode_hex<const N: usize>(hex: &str) -> Option<[u8; N]> {
    let bytes = hex.as_bytes();
    if bytes.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let high = (pair[0] as char).to_digit(16)?;
        let low = (pair[1] as char).to_digit(16)?;
        out[i] = (high * 16 + low) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // echo -n secret | sha256sum
    const SECRET_SHA256: &str = "sha256:2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b";
    // htpasswd -nbs user secret
    const SECRET_SHA1: &str = "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=";

    #[test]
    fn sha256_accepts_only_the_secret() {
        let hash = PasswordHash::parse(SECRET_SHA256).unwrap();
        assert!(hash.verify(b"secret"));
        assert!(!hash.verify(b"Secret"));
        assert!(!hash.verify(b""));
        assert!(!hash.is_slow());
    }

    #[test]
    fn sha256_hex_is_case_insensitive() {
        let upper = format!("sha256:{}", SECRET_SHA256[7..].to_ascii_uppercase());
        assert!(PasswordHash::parse(&upper).unwrap().verify(b"secret"));
    }

    #[test]
    fn htpasswd_sha1() {
        let hash = PasswordHash::parse(SECRET_SHA1).unwrap();
        assert!(hash.verify(b"secret"));
        assert!(!hash.verify(b"secreT"));
    }

    #[test]
    fn bcrypt_variants() {
        let hash = bcrypt::hash_with_salt("secret", 4, [7u8; 16]).unwrap();
        for version in [bcrypt::Version::TwoA, bcrypt::Version::TwoB, bcrypt::Version::TwoY] {
            let text = hash.format_for_version(version);
            let parsed = PasswordHash::parse(&text).unwrap();
            assert!(parsed.is_slow());
            assert!(parsed.verify(b"secret"), "{text}");
            assert!(!parsed.verify(b"wrong"), "{text}");
        }
    }

    #[test]
    fn rejects_bad_formats() {
        for bad in [
            "secret",
            "sha256:abc",
            "sha256:zz80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b",
            "{SHA}not base64!",
            "{SHA}c2hvcnQ=",
            "$2b$99$abcdefghijklmnopqrstuu",
            "$2b$13$kXBS.sdgJcloTZAO67Zg7O6L/y4d32zPZH5keZQD7ebRCCWdLey5y",
            "$2b$10$tooshort",
            "md5:abc",
        ] {
            assert!(PasswordHash::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn oversized_secret_is_refused_without_hashing() {
        let hash = PasswordHash::parse(SECRET_SHA256).unwrap();
        assert!(!hash.verify(&vec![b'a'; MAX_SECRET_BYTES + 1]));
    }

    #[test]
    fn debug_never_shows_the_hash() {
        let hash = PasswordHash::parse(SECRET_SHA256).unwrap();
        assert_eq!(format!("{hash:?}"), "PasswordHash(sha256)");
    }
}
