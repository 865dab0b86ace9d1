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
    /// most specific attribute first), unescaped (`\,` is `,`; `\0A` and `\C3\A9`, which
    /// Envoy writes for a control character and for UTF-8, are their bytes, so a name is
    /// never another certificate's); None when there is none, it is not UTF-8, or its
    /// value is hex-encoded DER (`CN=#0C03...`: not text).
    pub fn common_name(&self) -> Option<String> {
        let mut rest = self.subject.as_deref()?.as_bytes();
        loop {
            let is_cn = rest.get(..3).is_some_and(|head| head.eq_ignore_ascii_case(b"CN="));
            if is_cn {
                rest = rest.get(3..)?;
                if rest.first() == Some(&b'#') {
                    return None;
                }
            }
            let mut value = Vec::new();
            let mut next_rdn = None;
            let mut i = 0;
            while let Some(&byte) = rest.get(i) {
                match byte {
                    b'\\' => match rest.get(i + 1..i + 3).and_then(hex_byte) {
                        Some(escaped) => {
                            value.push(escaped);
                            i += 3;
                        }
                        None => {
                            value.extend(rest.get(i + 1));
                            i += 2;
                        }
                    },
                    // Walk the RDNs: `CN=a\,b,O=x` is CN "a,b".
                    b',' | b'+' => {
                        next_rdn = rest.get(i + 1..);
                        break;
                    }
                    _ => {
                        value.push(byte);
                        i += 1;
                    }
                }
            }
            if is_cn {
                return String::from_utf8(value).ok().filter(|name| !name.is_empty());
            }
            rest = next_rdn?;
        }
    }
}

/// Two hex digits' byte (`+1` is not one, though `u8::from_str_radix` would take it).
fn hex_byte(pair: &[u8]) -> Option<u8> {
    let digits = std::str::from_utf8(pair).ok().filter(|digits| digits.bytes().all(|b| b.is_ascii_hexdigit()))?;
    u8::from_str_radix(digits, 16).ok()
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
        // Envoy's escapes for a control character and for UTF-8 are their bytes: never
        // the name of the certificate whose CN is those hex digits.
        assert_eq!(cn("CN=caf\\C3\\A9,O=x").as_deref(), Some("caf\u{e9}"));
        assert_eq!(cn("CN=\\12").as_deref(), Some("\u{12}"));
        assert_eq!(cn("CN=ad\\0Amin").as_deref(), Some("ad\nmin"));
        assert_eq!(cn("CN=a\\+1\\\\b").as_deref(), Some("a+1\\b"), "an escaped '+' is no hex");
        assert_eq!(cn("CN=\\#12").as_deref(), Some("#12"));
        assert_eq!(cn("CN=#0C0161"), None, "hex-encoded DER is no text");
        assert_eq!(cn("CN=\\C3"), None, "not UTF-8");
    }
}
