//! Proof of possession: a token bound to a client certificate (RFC 8705 3,
//! `cnf["x5t#S256"]`) or to a key (RFC 9449 6, `cnf.jkt`) serves only its holder.
//! Checked on every request, a token the cache remembers too: the binding is the
//! token's, the certificate this connection's.

use serde_json::{Map, Value};

use crate::peer::Peer;
use crate::reason::Reason;

/// What a token is bound to (its `cnf` claim, RFC 7800).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmation {
    /// `cnf["x5t#S256"]`: the client certificate's SHA-256 thumbprint (base64url).
    Certificate(String),
    /// `cnf.jkt`: the RFC 7638 thumbprint of the key DPoP proofs are signed with.
    Key(String),
}

/// Longest thumbprint read (SHA-256 in base64url is 43 characters).
const MAX_THUMBPRINT_BYTES: usize = 128;

/// A `cnf` claim this filter cannot check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UnknownBinding;

/// A token's `cnf`: None without one; an error for one this filter cannot check (a
/// binding it does not know is no reason to let any bearer use the token).
pub(crate) fn confirmation(claims: &Map<String, Value>) -> Result<Option<Confirmation>, UnknownBinding> {
    let Some(cnf) = claims.get("cnf") else { return Ok(None) };
    let cnf = cnf.as_object().ok_or(UnknownBinding)?;
    // One binding, and one this filter checks: a certificate's beside a `jwk` or a `kid`
    // binds the token to that key as well, which nothing here proves.
    if cnf.len() != 1 {
        return Err(UnknownBinding);
    }
    let member = |name| match cnf.get(name) {
        None => Ok(None),
        Some(Value::String(text)) if !text.is_empty() && text.len() <= MAX_THUMBPRINT_BYTES => Ok(Some(text.clone())),
        Some(_) => Err(UnknownBinding),
    };
    match (member("x5t#S256")?, member("jkt")?) {
        (Some(thumbprint), None) => Ok(Some(Confirmation::Certificate(thumbprint))),
        (None, Some(thumbprint)) => Ok(Some(Confirmation::Key(thumbprint))),
        // Both, or neither (`jwk`, `kid`, ...): not a binding this filter checks.
        _ => Err(UnknownBinding),
    }
}

/// Why a bound token was refused (401 `invalid_token`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unbound {
    /// Bound to a certificate, on a connection with another one, or none.
    WrongCertificate,
    /// Bound to a key: its DPoP proof is needed.
    NeedsProof,
}

impl Unbound {
    pub(crate) fn reason(self) -> Reason {
        match self {
            Unbound::WrongCertificate => Reason::TokenCertificateMismatch,
            Unbound::NeedsProof => Reason::DpopProofInvalid,
        }
    }

    pub(crate) fn message(self) -> &'static str {
        match self {
            Unbound::WrongCertificate => "token bound to another client certificate",
            Unbound::NeedsProof => "token bound to a key: a DPoP proof is required",
        }
    }
}

/// Whether a token bound to a certificate comes on a connection with that certificate.
pub(crate) fn check_certificate(confirmation: Option<&Confirmation>, peer: Peer) -> Result<(), Unbound> {
    match confirmation {
        None => Ok(()),
        Some(Confirmation::Certificate(thumbprint)) => match peer.get() {
            // Both public: a plain comparison.
            Some(certificate) if certificate.thumbprint == *thumbprint => Ok(()),
            _ => Err(Unbound::WrongCertificate),
        },
        Some(Confirmation::Key(_)) => Err(Unbound::NeedsProof),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::PeerCertificate;
    use serde_json::json;

    fn cnf(value: Value) -> Result<Option<Confirmation>, UnknownBinding> {
        let Value::Object(claims) = json!({ "cnf": value }) else { unreachable!() };
        confirmation(&claims)
    }

    #[test]
    fn the_cnf_claim_binds_to_a_certificate_or_a_key() {
        assert_eq!(confirmation(&Map::new()), Ok(None));
        assert_eq!(cnf(json!({"x5t#S256": "abc"})), Ok(Some(Confirmation::Certificate("abc".into()))));
        assert_eq!(cnf(json!({"jkt": "k"})), Ok(Some(Confirmation::Key("k".into()))));
        for unusable in [
            json!("abc"),
            json!({}),
            json!({"x5t#S256": 1}),
            json!({"x5t#S256": ""}),
            json!({"jwk": {"kty": "EC"}}),
            json!({"x5t#S256": "a", "jkt": "b"}),
            json!({"x5t#S256": "a", "jwk": {"kty": "EC"}}),
            json!({"x5t#S256": "a", "kid": "device-7"}),
        ] {
            assert_eq!(cnf(unusable.clone()), Err(UnknownBinding), "{unusable}");
        }
    }

    #[test]
    fn a_certificate_bound_token_needs_its_certificate() {
        let mine = PeerCertificate { thumbprint: "mine".into(), ..PeerCertificate::default() };
        let other = PeerCertificate { thumbprint: "other".into(), ..PeerCertificate::default() };
        let bound = Confirmation::Certificate("mine".into());
        assert_eq!(check_certificate(Some(&bound), Peer::Known(Some(&mine))), Ok(()));
        assert_eq!(check_certificate(Some(&bound), Peer::Known(Some(&other))), Err(Unbound::WrongCertificate));
        assert_eq!(check_certificate(Some(&bound), Peer::Known(None)), Err(Unbound::WrongCertificate));
        assert_eq!(check_certificate(None, Peer::Known(None)), Ok(()));
        let key = Confirmation::Key("k".into());
        assert_eq!(check_certificate(Some(&key), Peer::Known(Some(&mine))), Err(Unbound::NeedsProof));
    }
}
