//! The facts of one request that the decision reads.

use std::borrow::Cow;
use std::net::IpAddr;

use crate::peer::{Peer, PeerCertificate};

/// A request header, name and value, borrowed from the host's buffer when it is
/// UTF-8 (it nearly always is; decoding allocates nothing then), lossily decoded otherwise.
pub type Header<'a> = (Cow<'a, str>, Cow<'a, str>);

/// Header names are lowercase, as Envoy gives them; values as read (lossily decoded).
#[derive(Clone, Copy)]
pub struct RequestFacts<'a> {
    /// `:method`.
    pub method: &'a str,
    /// `:path`, query string included.
    pub path: &'a str,
    /// `:authority` (the `Host`).
    pub authority: &'a str,
    /// Every request header, as Envoy gave them.
    pub headers: &'a [Header<'a>],
    /// The Envoy route that matched (`xds.route_name`), read only when a rule needs it.
    pub route_name: Option<&'a str>,
    /// The client address (`source.address`), read only when a decision needs it.
    pub source: Source<'a>,
    /// The client certificate Envoy verified (`connection.*`), read only when a decision needs it.
    pub peer: Peer<'a>,
    /// The body, when it is known before the decision: empty when the headers ended
    /// the request, or the form read for an API key (`api_keys.form_field`).
    pub body: Option<&'a str>,
}

/// The client address: a host call, made only when a decision needs it (networks are
/// configured, or Basic failures are counted per source).
#[derive(Clone, Copy)]
pub enum Source<'a> {
    /// Known (None: the host did not give it, or no configuration needs it).
    Known(Option<IpAddr>),
    /// Read from the host when first asked (the reader remembers it).
    Lazy(&'a dyn Fn() -> Option<IpAddr>),
}

impl Source<'_> {
    /// The address, read (once) if it is read lazily; None: unknown.
    pub fn get(self) -> Option<IpAddr> {
        match self {
            Source::Known(source) => source,
            Source::Lazy(read) => read(),
        }
    }
}

impl<'a> RequestFacts<'a> {
    /// The request as the headers give it (`:method`, `:path`, `:authority`).
    pub fn from_headers(headers: &'a [Header<'a>]) -> RequestFacts<'a> {
        let pseudo = |name: &str| headers.iter().find(|(n, _)| n == name).map_or("", |(_, v)| v.as_ref());
        RequestFacts {
            method: pseudo(":method"),
            path: pseudo(":path"),
            authority: pseudo(":authority"),
            headers,
            route_name: None,
            source: Source::Known(None),
            peer: Peer::Known(None),
            body: None,
        }
    }

    /// A request with this method and path (and `:authority` from the headers, if there).
    pub fn new(method: &'a str, path: &'a str, headers: &'a [Header<'a>]) -> RequestFacts<'a> {
        RequestFacts { method, path, ..RequestFacts::from_headers(headers) }
    }

    /// Every value of a header.
    pub fn header_values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s str> + 's {
        self.headers.iter().filter(move |(n, _)| n == name).map(|(_, v)| v.as_ref())
    }

    /// A header's value when it is given once at most; `Err` when it is given more often.
    pub fn single_header<'s>(&'s self, name: &'s str) -> Result<Option<&'s str>, RepeatedHeader> {
        let mut values = self.header_values(name);
        let first = values.next();
        match values.next() {
            Some(_) => Err(RepeatedHeader),
            None => Ok(first),
        }
    }
}

/// A header the request gives more than once, where one value is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepeatedHeader;

/// A request held while its body is read: what it was decided on, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldRequest {
    headers: Vec<Header<'static>>,
    route_name: Option<String>,
    source: Option<IpAddr>,
    peer: Option<PeerCertificate>,
}

impl HeldRequest {
    /// A copy of the request (its source read now: the host's answer is not kept past this callback).
    pub fn of(request: &RequestFacts) -> HeldRequest {
        let owned = |text: &Cow<str>| Cow::Owned(text.to_string());
        HeldRequest {
            headers: request.headers.iter().map(|(name, value)| (owned(name), owned(value))).collect(),
            route_name: request.route_name.map(String::from),
            source: request.source.get(),
            peer: request.peer.get().cloned(),
        }
    }

    /// The request again, with the form its body holds.
    pub fn with_body<'a>(&'a self, form: &'a str) -> RequestFacts<'a> {
        let mut request = RequestFacts::from_headers(&self.headers);
        request.route_name = self.route_name.as_deref();
        request.source = Source::Known(self.source);
        request.peer = Peer::Known(self.peer.as_ref());
        request.body = Some(form);
        request
    }
}

/// Whether header `name` (lowercase) reads as `header` once underscores are dashes:
/// CGI, WSGI and PHP read `X_Auth_Principal` as `x-auth-principal`.
pub fn is_underscore_spelling_of(name: &str, header: &str) -> bool {
    name.len() == header.len() && name.bytes().zip(header.bytes()).all(|(n, h)| n == h || (n == b'_' && h == b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn underscore_spellings_are_the_same_header() {
        assert!(is_underscore_spelling_of("x_auth_principal", "x-auth-principal"));
        assert!(is_underscore_spelling_of("x-auth_principal", "x-auth-principal"));
        assert!(!is_underscore_spelling_of("x_auth_principals", "x-auth-principal"));
        assert!(!is_underscore_spelling_of("x-auth-principal", "x_auth_principal"));
    }
}
