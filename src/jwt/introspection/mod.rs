//! Opaque tokens: OAuth 2.0 token introspection (RFC 7662) through an Envoy
//! cluster. A provider with `introspection` asks its endpoint about the tokens it
//! reads (those that are not a JWS, or every one), and judges an active answer as
//! a JWT's claims are judged (`exp`, `nbf`, `iat`, `iss`, `aud`, the principal,
//! scopes, claim headers). Answers are shared by every worker (`store`), and one
//! call answers every request with the same token, on any worker.
//!
//! It fails closed without ever refusing a token that may be valid: no answer, a
//! status other than 200, a body that is not a JSON object or too large is
//! `introspection_failed` (503 with `Retry-After`), never a pass, never a 401.

pub mod endpoint;
mod judge;
mod store;
mod verdict;

pub use endpoint::{form_encode, ClientAuth, Introspection, FAILURE_HOLD_MS};
pub use judge::refusal_message;
pub use store::{AnswerStore, Claim, INTROSPECTION_KEY};
pub use verdict::{Answer, Verdict};

#[cfg(test)]
mod tests;
