//! Client certificates as a credential (`"mtls"`): the principal is a name from the
//! certificate Envoy verified in the TLS handshake (`src/peer.rs`), qualified
//! `mtls:<name>`, with the same per-principal privileges as users and clients.
//!
//! The filter trusts the listener: Envoy must require and verify client certificates
//! (`require_client_certificate`, a `validation_context` with the trusted CA). A
//! certificate is never read from a header (`x-forwarded-client-cert` is not offered).

use std::collections::HashMap;
use std::rc::Rc;

use crate::peer::{Peer, PeerCertificate};
use crate::pipeline::credential::{Credential, CredentialError};
use crate::pipeline::route::{Kind, Require};
use crate::principal::{AuthMethod, Principal};
use crate::privileges::Privileges;
use crate::reason::Reason;

/// Where in the certificate the principal's name is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameSource {
    /// The first URI SAN (a SPIFFE id: `spiffe://example.org/ns/prod/sa/billing`).
    UriSan,
    /// The first DNS SAN.
    DnsSan,
    /// The subject's common name.
    SubjectCn,
}

impl NameSource {
    pub fn from_name(name: &str) -> Option<NameSource> {
        match name {
            "uri_san" => Some(NameSource::UriSan),
            "dns_san" => Some(NameSource::DnsSan),
            "subject_cn" => Some(NameSource::SubjectCn),
            _ => None,
        }
    }
}

/// The `mtls` section, compiled.
#[derive(Debug)]
pub struct Mtls {
    pub name_from: NameSource,
    /// Listed principals: where their privileges are in `privileges`.
    pub principals: HashMap<String, usize>,
    pub privileges: Vec<Rc<Privileges>>,
    /// Names under these prefixes are admitted with the default privileges.
    pub allow_prefixes: Vec<String>,
    /// The privileges of a principal admitted by a prefix (or of any, with no list).
    pub defaults: Rc<Privileges>,
}

/// Longest name taken from a certificate (it becomes a header value).
const MAX_NAME_BYTES: usize = 1024;

impl Mtls {
    /// The certificate's principal name, from the configured source; None when the
    /// certificate has none there, or one unusable as a header value.
    pub fn name_of(&self, peer: &PeerCertificate) -> Option<String> {
        let name = match self.name_from {
            NameSource::UriSan => peer.uri_san.clone(),
            NameSource::DnsSan => peer.dns_san.clone(),
            NameSource::SubjectCn => peer.common_name(),
        }?;
        let usable = !name.is_empty()
            && name.len() <= MAX_NAME_BYTES
            && name.trim() == name
            && !name.chars().any(char::is_control);
        usable.then_some(name)
    }

    /// Whether anything restricts which certificates are principals.
    fn lists_principals(&self) -> bool {
        !self.principals.is_empty() || !self.allow_prefixes.is_empty()
    }

    /// The principal a verified certificate named `name` is: a listed one, one under an
    /// allowed prefix, or (no list) any.
    pub fn verify(&self, name: &str) -> Result<Principal, Reason> {
        let privileges = match self.principals.get(name).and_then(|&i| self.privileges.get(i)) {
            Some(privileges) => privileges,
            None if !self.lists_principals() || self.allow_prefixes.iter().any(|p| name.starts_with(p.as_str())) => {
                &self.defaults
            }
            None => return Err(Reason::MtlsNotAllowed),
        };
        Ok(Principal::configured(name, AuthMethod::Mtls, privileges))
    }
}

/// The request's credential once its client certificate counts: the certificate, when
/// the rule accepts `mtls` and the headers carry no credential the rule accepts (a
/// rule that accepts only `mtls` passes over a header credential it cannot read, too).
pub(crate) fn with_certificate(
    mtls: Option<&Mtls>,
    require: &Require,
    peer: Peer,
    extracted: Result<Option<Credential>, CredentialError>,
) -> Result<Option<Credential>, CredentialError> {
    let Some(mtls) = mtls else { return extracted };
    let only_certificates = match require {
        Require::Kinds(kinds) if kinds.contains(&Kind::Mtls) => kinds.iter().all(|kind| *kind == Kind::Mtls),
        Require::Any | Require::Optional | Require::OptionalOrFailed => false,
        // A tree takes the certificate beside the other credentials (`certificate_credential`).
        Require::Kinds(_) | Require::None | Require::Tree(_) => return extracted,
    };
    let use_certificate = match &extracted {
        Ok(Some(credential)) => !credential.offered(require.schemes()),
        Ok(None) => true,
        Err(_) => only_certificates,
    };
    if !use_certificate {
        return extracted;
    }
    match certificate_credential(Some(mtls), peer) {
        Some(credential) => Ok(Some(credential)),
        None => extracted,
    }
}

/// The client certificate as a credential, when `mtls` is configured and names it.
pub(crate) fn certificate_credential(mtls: Option<&Mtls>, peer: Peer) -> Option<Credential> {
    let name = peer.get().and_then(|certificate| mtls?.name_of(certificate))?;
    Some(Credential::Mtls { name })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mtls(principals: &[&str], prefixes: &[&str], name_from: NameSource) -> Mtls {
        let listed = Rc::new(Privileges { methods: Some(vec!["GET".into()]), ..Privileges::default() });
        Mtls {
            name_from,
            principals: principals.iter().map(|name| (name.to_string(), 0)).collect(),
            privileges: vec![listed],
            allow_prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
            defaults: Rc::new(Privileges::default()),
        }
    }

    #[test]
    fn listed_principals_have_their_privileges_and_prefixes_the_defaults() {
        let config = mtls(&["spiffe://example.org/billing"], &["spiffe://example.org/ns/prod/"], NameSource::UriSan);
        let billing = config.verify("spiffe://example.org/billing").expect("listed");
        assert_eq!(billing.qualified.as_str(), "mtls:spiffe://example.org/billing");
        assert_eq!(billing.method, AuthMethod::Mtls);
        assert!(billing.privileges.methods.is_some());
        let prod = config.verify("spiffe://example.org/ns/prod/sa/web").expect("under a prefix");
        assert!(prod.privileges.methods.is_none());
        assert_eq!(config.verify("spiffe://example.org/ns/dev/sa/web"), Err(Reason::MtlsNotAllowed));
        assert_eq!(config.verify("spiffe://example.org/billing2"), Err(Reason::MtlsNotAllowed));
        // Without a list, any certificate the listener verified is a principal.
        assert!(mtls(&[], &[], NameSource::UriSan).verify("anything").is_ok());
    }

    #[test]
    fn the_name_comes_from_the_configured_source_only() {
        let peer = PeerCertificate {
            uri_san: Some("spiffe://example.org/a".into()),
            dns_san: Some("a.example.org".into()),
            subject: Some("CN=a-cn,O=Example".into()),
            ..PeerCertificate::default()
        };
        let of = |from| mtls(&[], &[], from).name_of(&peer);
        assert_eq!(of(NameSource::UriSan).as_deref(), Some("spiffe://example.org/a"));
        assert_eq!(of(NameSource::DnsSan).as_deref(), Some("a.example.org"));
        assert_eq!(of(NameSource::SubjectCn).as_deref(), Some("a-cn"));
        let bare = PeerCertificate { subject: Some("CN=x\ny".into()), ..PeerCertificate::default() };
        assert_eq!(mtls(&[], &[], NameSource::UriSan).name_of(&bare), None, "no URI SAN");
        assert_eq!(mtls(&[], &[], NameSource::SubjectCn).name_of(&bare), None, "a control character");
        let escaped = PeerCertificate { subject: Some("CN=x\\0Ay".into()), ..PeerCertificate::default() };
        assert_eq!(mtls(&[], &[], NameSource::SubjectCn).name_of(&escaped), None, "one as Envoy writes it");
    }

    #[test]
    fn the_certificate_is_the_credential_where_the_headers_carry_none_the_rule_takes() {
        let config = mtls(&[], &[], NameSource::UriSan);
        let peer = PeerCertificate { uri_san: Some("spiffe://x/a".into()), ..PeerCertificate::default() };
        let certificate = Ok(Some(Credential::Mtls { name: "spiffe://x/a".into() }));
        let bearer = || Ok(Some(Credential::bearer("t")));
        let only = Require::Kinds(vec![Kind::Mtls]);
        let either = Require::Kinds(vec![Kind::Mtls, Kind::Jwt { provider: None }]);
        let with = |require: &Require, extracted| {
            with_certificate(Some(&config), require, Peer::Known(Some(&peer)), extracted)
        };
        assert_eq!(with(&Require::Any, Ok(None)), certificate);
        assert_eq!(with(&Require::Optional, Ok(None)), certificate);
        assert_eq!(with(&Require::Any, bearer()), bearer(), "a token names the caller on a service's connection");
        assert_eq!(with(&either, bearer()), bearer());
        assert_eq!(with(&only, bearer()), certificate);
        assert_eq!(with(&only, Err(CredentialError::Ambiguous)), certificate);
        assert_eq!(with(&Require::Any, Err(CredentialError::Ambiguous)), Err(CredentialError::Ambiguous));
        assert_eq!(with(&Require::Kinds(vec![Kind::Basic]), Ok(None)), Ok(None), "not accepted here");
        assert_eq!(with_certificate(Some(&config), &only, Peer::Known(None), Ok(None)), Ok(None), "no certificate");
        assert_eq!(with_certificate(None, &only, Peer::Known(Some(&peer)), Ok(None)), Ok(None), "not configured");
    }
}
