//! The client certificate Envoy verified in the TLS handshake (the listener's
//! `validation_context`), as its `connection.*` properties give it. Never from a
//! header: a client can send any header, not a certificate whose key it lacks.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::password::decode_hex;

/// What the filter knows of the connection's client certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerCertificate {
    /// RFC 8705 3.1's `x5t#S256`: base64url (no padding) of the SHA-256 of the DER
    /// certificate (Envoy's `connection.sha256_peer_certificate_digest` is hex).
    pub thumbprint: String,
    /// The first URI SAN (`connection.uri_san_peer_certificate`), e.g. a SPIFFE id.
    pub uri_san: Option<String>,
    /// The first DNS SAN (`connection.dns_san_peer_certificate`).
    pub dns_san: Option<String>,
    /// The subject, RFC 2253 (`connection.subject_peer_certificate`).
    pub subject: Option<String>,
}

impl PeerCertificate {
    /// A certificate from Envoy's hex SHA-256 digest; None unless it is 32 bytes of hex.
    pub fn from_hex_digest(hex: &str) -> Option<PeerCertificate> {
        let digest = decode_hex::<32>(hex)?;
        Some(PeerCertificate { thumbprint: URL_SAFE_NO_PAD.encode(digest), ..PeerCertificate::default() })
    }

    /// The subject's common name: the first `CN=` of the RFC 2253 text (which names the
    /// most specific attribute first), unescaped; None when there is none.
    pub fn common_name(&self) -> Option<String> {
        let subject = self.subject.as_deref()?;
        let mut name = String::new();
        let mut chars = subject.chars();
        let mut at_start = true;
        // Walk the RDNs: `CN=a\,b,O=x` is CN "a,b".
        while let Some(start) = at_start.then_some(chars.as_str()) {
            at_start = false;
            let is_cn = start.get(..3).is_some_and(|head| head.eq_ignore_ascii_case("CN="));
            if is_cn {
                chars.nth(2);
            }
            let mut escaped = false;
            for c in chars.by_ref() {
                match (escaped, c) {
                    (false, '\\') => escaped = true,
                    (false, ',' | '+') => {
                        at_start = true;
                        break;
                    }
                    _ => {
                        escaped = false;
                        if is_cn {
                            name.push(c);
                        }
                    }
                }
            }
            if is_cn {
                return Some(name).filter(|name| !name.is_empty());
            }
        }
        None
    }
}

/// The connection's client certificate: read from the host only when a decision asks
/// (a configured `mtls` section, or a token bound to a certificate).
#[derive(Clone, Copy)]
pub enum Peer<'a> {
    /// Known (None: no verified client certificate, or not asked for).
    Known(Option<&'a PeerCertificate>),
    /// Read from the host when first asked (the reader remembers it).
    Lazy(&'a dyn ReadPeer),
}

/// The host's reader of the connection's certificate, which remembers what it read.
pub trait ReadPeer {
    /// The certificate, read at most once.
    fn read(&self) -> Option<&PeerCertificate>;
}

impl<'a> Peer<'a> {
    /// The certificate, read if it is read lazily; None: none.
    pub fn get(self) -> Option<&'a PeerCertificate> {
        match self {
            Peer::Known(peer) => peer,
            Peer::Lazy(reader) => reader.read(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envoy_hex_digest_becomes_the_rfc_8705_thumbprint() {
        // SHA-256 of "abc": RFC 4648 base64url of its 32 bytes.
        let hex = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let peer = PeerCertificate::from_hex_digest(hex).map(|p| p.thumbprint);
        assert_eq!(peer.as_deref(), Some("ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"));
        assert_eq!(PeerCertificate::from_hex_digest(&hex.to_uppercase()).map(|p| p.thumbprint), peer);
        for bad in ["", "ab", &hex[1..], &format!("{}zz", &hex[2..]), &format!("{hex}00")] {
            assert_eq!(PeerCertificate::from_hex_digest(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_common_name_is_read_from_the_rfc_2253_subject() {
        let cn = |subject: &str| PeerCertificate { subject: Some(subject.into()), ..Default::default() }.common_name();
        assert_eq!(cn("CN=billing,OU=svc,O=Example").as_deref(), Some("billing"));
        assert_eq!(cn("O=Example,CN=billing").as_deref(), Some("billing"));
        assert_eq!(cn("CN=a\\,b,O=x").as_deref(), Some("a,b"));
        assert_eq!(cn("O=x\\,CN=forged,OU=y").as_deref(), None, "an escaped comma starts no RDN");
        assert_eq!(cn("cn=lower").as_deref(), Some("lower"));
        assert_eq!(cn("O=Example"), None);
        assert_eq!(cn("CN=,O=x"), None);
    }
}
