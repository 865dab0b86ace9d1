//! Requirement trees (`require: {"all": [...]}` / `{"any": [...]}`, as `jwt_authn`'s
//! `requires_all` / `requires_any`): the credentials a rule needs together. A tree is
//! met by the kinds of the principals a request proved (every credential it carries
//! that the tree could use is verified first); the rule's principal is the first
//! `principal_from` kind among them, the others are reported in `x-auth-also-<method>`
//! headers and `wasm_authn.also.<method>` filter state.

use std::rc::Rc;

pub(crate) use crate::pipeline::route::{Kind, Requirement, Tree};
use crate::principal::Principal;

/// Deepest nesting of `all`/`any` (the root is depth 1).
pub(crate) const MAX_DEPTH: usize = 4;
/// Most entries in one `all`/`any`.
pub(crate) const MAX_WIDTH: usize = 8;

/// Where a request carries a credential of a kind: a request has at most one
/// credential in each, so an `all` needs its entries in different places.
/// A bit each, to take unions.
pub(crate) fn place_of(kind: &Kind) -> u8 {
    match kind {
        Kind::Basic => 1,
        Kind::Jwt { .. } | Kind::Keypair => 2,
        Kind::ApiKey => 4,
        Kind::Mtls => 8,
    }
}

/// Whether every principal `narrow` admits, `wide` admits too (`jwt` covers `jwt:corp`).
pub(crate) fn covers(wide: &Kind, narrow: &Kind) -> bool {
    wide == narrow || matches!((wide, narrow), (Kind::Jwt { provider: None }, Kind::Jwt { .. }))
}

impl Requirement {
    /// Whether these principals meet it.
    pub fn met_by(&self, principals: &[Rc<Principal>]) -> bool {
        self.met_where(&|kind| principals.iter().any(|principal| kind.admits(principal)))
    }

    /// Whether it is met when the entries `met` says are.
    pub fn met_where(&self, met: &dyn Fn(&Kind) -> bool) -> bool {
        match self {
            Requirement::Kind(kind) => met(kind),
            Requirement::All(entries) => entries.iter().all(|entry| entry.met_where(met)),
            Requirement::Any(entries) => entries.iter().any(|entry| entry.met_where(met)),
        }
    }

    /// The kinds still missing for it to be met: an unmet `all`'s missing entries, every kind of an unmet `any`.
    pub fn missing<'t>(&'t self, principals: &[Rc<Principal>], out: &mut Vec<&'t Kind>) {
        if self.met_by(principals) {
            return;
        }
        match self {
            Requirement::Kind(kind) => out.push(kind),
            Requirement::All(entries) | Requirement::Any(entries) => {
                entries.iter().for_each(|entry| entry.missing(principals, out));
            }
        }
    }

    /// Its kinds, in the order written.
    pub fn kinds<'t>(&'t self, out: &mut Vec<&'t Kind>) {
        match self {
            Requirement::Kind(kind) => out.push(kind),
            Requirement::All(entries) | Requirement::Any(entries) => entries.iter().for_each(|e| e.kinds(out)),
        }
    }

    /// The places its kinds are carried in.
    pub fn places(&self) -> u8 {
        let mut kinds = Vec::new();
        self.kinds(&mut kinds);
        kinds.into_iter().fold(0, |places, kind| places | place_of(kind))
    }
}

impl Tree {
    /// The rule's principal among the verified ones: the first `principal_from` kind's.
    pub fn principal_of(&self, principals: &[Rc<Principal>]) -> Option<usize> {
        self.principal_from.iter().find_map(|kind| principals.iter().position(|p| kind.admits(p)))
    }
}

/// A header or a filter state key, and its value.
pub(crate) type Pair = (String, String);

/// The header reporting a principal besides the rule's own: `x-auth-also-basic`, ....
/// Every request header starting so is the filter's (removed when a client sends it).
pub(crate) const ALSO_HEADER_PREFIX: &str = "x-auth-also-";
/// Filter state (with `filter_state`) of the same: `wasm_authn.also.basic` = its qualified name.
pub(crate) const STATE_ALSO_PREFIX: &str = "wasm_authn.also.";

/// Whether a request header is one of the `x-auth-also-*` headers, however spelled (`X_Auth_Also_Jwt`).
pub(crate) fn is_also_header(name: &str) -> bool {
    name.get(..ALSO_HEADER_PREFIX.len()).is_some_and(|start| {
        start
            .bytes()
            .zip(ALSO_HEADER_PREFIX.bytes())
            .all(|(a, b)| a.to_ascii_lowercase() == b || (a == b'_' && b == b'-'))
    })
}

/// The headers (into `set`) and filter state (into `state`, with `filter_state`) reporting the
/// principals besides the rule's own: one per method, as a request carries one credential in
/// each place and an `all` takes each from another place.
pub(crate) fn report_others(others: &[Rc<Principal>], filter_state: bool, set: &mut Vec<Pair>, state: &mut Vec<Pair>) {
    for other in others {
        let (method, name) = (other.method.as_str(), other.qualified.as_str());
        set.push((format!("{ALSO_HEADER_PREFIX}{method}"), name.to_string()));
        if filter_state {
            state.push((format!("{STATE_ALSO_PREFIX}{method}"), name.to_string()));
        }
    }
}

#[cfg(test)]
mod tests;
