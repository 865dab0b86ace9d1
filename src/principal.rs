//! A verified caller: who it is, how it proved it, who vouches for it, and what
//! it holds (scopes) and may do (privileges).
//!
//! A principal is named by who vouches for it (its `QualifiedName`):
//! `basic:<user>` (`basic.users`, htpasswd), `api-key:<client id>` (an API client,
//! however it proved itself: its key, Basic `id:key`, or a token the token endpoint
//! issued to it), `keypair:<keypair id>`, `jwt:<provider>:<subject>` (a provider's
//! `principal_claim`). Rules, revocation and limits know principals only by this
//! name, so another issuer's `sub=alice` is never the Basic user `alice`.

use std::cell::OnceCell;
use std::rc::Rc;

use crate::binding::Confirmation;
use crate::jwt::{Provider, ProviderKind};
use crate::pipeline::limits::LimitTable;
use crate::privileges::Privileges;
use crate::token_claims::TokenExtras;

/// How a principal proved itself (the `x-auth-method` value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// A Basic user.
    Basic,
    /// An API client, by its key (or `id:key`).
    ApiKey,
    /// A JWT's subject (or an introspected token's).
    Jwt,
    /// A token the client signed with its registered key.
    Keypair,
    /// The client certificate Envoy verified (`src/mtls.rs`).
    Mtls,
}

impl AuthMethod {
    /// The `x-auth-method` value.
    pub fn as_str(&self) -> &'static str {
        match self {
            AuthMethod::Basic => "basic",
            AuthMethod::ApiKey => "api-key",
            AuthMethod::Jwt => "jwt",
            AuthMethod::Keypair => "keypair",
            AuthMethod::Mtls => "mtls",
        }
    }
}

/// What revocation looks at in a token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenFacts {
    /// `jti`.
    pub jti: Option<String>,
    /// `iat`, Unix seconds.
    pub issued_at: Option<u64>,
    /// `<iss>/<sub>` of a JWT provider's token: its Istio request principal.
    pub request_principal: Option<String>,
    /// What the token is bound to (`cnf`): checked on every request, a remembered token's too.
    pub confirmation: Option<Confirmation>,
    /// The provider that verified it (whose `dpop` settings its proofs meet).
    pub provider: Option<crate::jwt::ProviderId>,
}

/// A principal's name, qualified by who vouches for it: `basic:alice`,
/// `api-key:reporting`, `keypair:engine-worker`, `jwt:corp:alice`. Built once when
/// the principal is verified (and remembered with it), as is, on first use, the key
/// its limits are counted under.
#[derive(Debug, Clone)]
pub struct QualifiedName {
    name: String,
    limit_key: OnceCell<u64>,
}

impl QualifiedName {
    fn new(name: String) -> QualifiedName {
        QualifiedName { name, limit_key: OnceCell::new() }
    }

    /// A Basic user, an API client or a keypair: names without `:` (the configuration's).
    pub fn configured(vouched_by: AuthMethod, id: &str) -> QualifiedName {
        QualifiedName::new(format!("{}:{id}", vouched_by.as_str()))
    }

    /// A JWT provider's principal: provider names have no `:`, so the subject is all that follows the second.
    pub fn of_provider(provider: &str, subject: &str) -> QualifiedName {
        QualifiedName::new(format!("jwt:{provider}:{subject}"))
    }

    /// The qualified name (`jwt:corp:alice`).
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The key of its limit counts: one per principal, whatever it proved itself with.
    pub fn limit_key(&self) -> u64 {
        *self.limit_key.get_or_init(|| LimitTable::key(&self.name))
    }
}

impl PartialEq for QualifiedName {
    fn eq(&self, other: &QualifiedName) -> bool {
        self.name == other.name
    }
}

impl Eq for QualifiedName {}

/// Why a configured principal name is refused (the configuration names the field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    /// No kind: `alice` (the name is said, to show how to write it).
    Bare(String),
    /// `jwt:` without a provider and a subject.
    NoProvider,
    /// `jwt:<name>:` where `<name>` is no provider's (the token endpoint's or a keypair's, say so).
    NotAProvider(&'static str),
    /// The name after the kind is no user name, client id, keypair id or provider name, or the subject is empty.
    Malformed,
}

impl std::fmt::Display for NameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NameError::Bare(name) => {
                write!(
                    f,
                    "names no kind of principal: write \"basic:{name}\" (a Basic user), \"api-key:{name}\" (an API \
                     client, by its key or its tokens from the token endpoint), \"keypair:{name}\" or \
                     \"jwt:<provider>:{name}\" (a JWT provider's principal)"
                )?;
                // Istio's `<iss>/<sub>` spelling has its own field.
                match name.contains('/') || name == "*" {
                    true => {
                        f.write_str("; a token's issuer/subject as Istio writes it goes in rules[].request_principals")
                    }
                    false => Ok(()),
                }
            }
            NameError::NoProvider => f.write_str("a JWT principal is written jwt:<provider>:<principal claim value>"),
            NameError::NotAProvider(why) => write!(f, "names no JWT provider{why}"),
            NameError::Malformed => f.write_str("is not a principal name"),
        }
    }
}

/// A user name, client id, keypair id or provider name: what may follow a kind. RFC
/// 7617: a user-id has no colon; surrounding spaces would make two spellings of one
/// principal upstream.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(':') && !name.chars().any(char::is_control) && name.trim() == name
}

impl QualifiedName {
    /// A principal as the configuration names it (rules, `not_before`), its `jwt:<name>:`
    /// checked against the configured `providers` when given (a fetched list names any).
    pub fn parse(text: &str, providers: Option<&[Provider]>) -> Result<QualifiedName, NameError> {
        let bare = || NameError::Bare(text.to_string());
        let (kind, rest) = text.split_once(':').ok_or_else(bare)?;
        let name = match kind {
            "basic" | "api-key" | "keypair" => rest,
            "jwt" => {
                let (provider, subject) = rest.split_once(':').ok_or(NameError::NoProvider)?;
                let issuer = providers.map(|all| all.iter().find(|p| p.name == provider).map(|p| p.kind));
                match issuer {
                    None | Some(Some(ProviderKind::IdentityProvider)) => {}
                    Some(Some(ProviderKind::TokenEndpoint)) => {
                        return Err(NameError::NotAProvider(": the token endpoint's tokens are api-key:<client id>"))
                    }
                    Some(Some(ProviderKind::Keypair { .. })) => {
                        return Err(NameError::NotAProvider(": a keypair's tokens are keypair:<keypair id>"))
                    }
                    Some(None) => return Err(NameError::NotAProvider(" in jwt.providers")),
                }
                if subject.is_empty() {
                    return Err(NameError::Malformed);
                }
                provider
            }
            // A certificate's name (a SPIFFE id has colons): all that follows the kind.
            "mtls" if !rest.is_empty() && !rest.chars().any(char::is_control) && rest.trim() == rest => {
                return Ok(QualifiedName::new(text.to_string()))
            }
            _ => return Err(bare()),
        };
        if !is_plain_name(name) {
            return Err(NameError::Malformed);
        }
        Ok(QualifiedName::new(text.to_string()))
    }

    /// Whether it names a Basic user (who has no tokens to revoke).
    pub fn is_basic(&self) -> bool {
        self.name.starts_with("basic:")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// Who a request is, once verified.
pub struct Principal {
    /// The user name, the API client id, or the JWT's principal claim (the `x-auth-principal` value).
    pub id: String,
    /// `id` named by who vouches for it: what rules, revocation and limits know it by.
    pub qualified: QualifiedName,
    /// How it proved itself.
    pub method: AuthMethod,
    /// The JWT provider that vouched for it.
    pub provider: Option<String>,
    /// Configured claim -> header mappings, in configuration order.
    pub claim_headers: Vec<(String, String)>,
    /// Scopes held: a token's `scope`/`scp`, or a user's or client's configured `scopes`.
    pub scopes: Vec<String>,
    /// Set for tokens.
    pub token: Option<TokenFacts>,
    /// What it may do; shared by every principal of one user, client or provider.
    pub privileges: Rc<Privileges>,
    /// An identity provider's token: the claims rules test, the payload handed on.
    pub extras: TokenExtras,
}

impl Principal {
    /// A principal of the configuration (a Basic user, an API client, a keypair), named by `method`.
    pub fn configured(id: &str, method: AuthMethod, privileges: &Rc<Privileges>) -> Principal {
        Principal {
            id: id.to_string(),
            qualified: QualifiedName::configured(method, id),
            method,
            provider: None,
            claim_headers: Vec::new(),
            scopes: privileges.scopes.clone(),
            token: None,
            privileges: Rc::clone(privileges),
            extras: TokenExtras::default(),
        }
    }

    /// A principal a JWT or introspection provider vouches for (`jwt:<provider>:<id>`).
    pub fn of_provider(
        provider: &str,
        id: String,
        claim_headers: Vec<(String, String)>,
        scopes: Vec<String>,
        token: TokenFacts,
        privileges: &Rc<Privileges>,
        extras: TokenExtras,
    ) -> Principal {
        Principal {
            qualified: QualifiedName::of_provider(provider, &id),
            id,
            method: AuthMethod::Jwt,
            provider: Some(provider.to_string()),
            claim_headers,
            scopes,
            token: Some(token),
            privileges: Rc::clone(privileges),
            extras,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_is_named_by_who_vouches_for_it() {
        let privileges = Rc::new(Privileges::default());
        let named = |method| Principal::configured("alice", method, &privileges).qualified;
        assert_eq!(named(AuthMethod::Basic).as_str(), "basic:alice");
        assert_eq!(named(AuthMethod::ApiKey).as_str(), "api-key:alice");
        assert_eq!(named(AuthMethod::Keypair).as_str(), "keypair:alice");
        assert_eq!(QualifiedName::of_provider("partners", "urn:x:alice").as_str(), "jwt:partners:urn:x:alice");
    }

    /// Names as a fetched list gives them (no providers to check against; `config/tests.rs` checks those).
    #[test]
    fn names_must_say_their_kind() {
        for good in ["basic:alice", "api-key:reporting", "keypair:engine", "jwt:corp:alice", "jwt:any:urn:x:1"] {
            assert_eq!(QualifiedName::parse(good, None).map(|name| name.as_str().to_string()).as_deref(), Ok(good));
        }
        for bare in ["alice", "user:alice"] {
            assert_eq!(QualifiedName::parse(bare, None), Err(NameError::Bare(bare.into())));
        }
        assert!(NameError::Bare("alice".into()).to_string().contains("\"basic:alice\""));
        assert!(!NameError::Bare("alice".into()).to_string().contains("request_principals"));
        let istio = NameError::Bare("https://id.example.com/alice".into()).to_string();
        assert!(istio.ends_with("as Istio writes it goes in rules[].request_principals"), "{istio}");
        assert_eq!(QualifiedName::parse("jwt:alice", None), Err(NameError::NoProvider));
        for bad in ["basic:", "basic:a:b", "api-key: x", "keypair:x\n", "jwt:corp:", "jwt::alice", "jwt: c:a"] {
            assert_eq!(QualifiedName::parse(bad, None), Err(NameError::Malformed), "{bad:?}");
        }
    }
}
