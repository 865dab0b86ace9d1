//! Why the filter answered a request itself: one enum, the single list of the
//! `denied.<reason>` counter labels (docs/operating.md, "Metrics", lists them all).

/// Declares the enum, its `ALL` list and its labels from one table, so they cannot drift apart.
macro_rules! reasons {
    ($($(#[$doc:meta])* $variant:ident => $label:literal,)*) => {
        /// Every reason the filter answers a request itself (refusals, and the token endpoint's answers).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Reason {
            $($(#[$doc])* #[doc = concat!("Counted as `denied.", $label, "`.")] $variant,)*
        }

        impl Reason {
            /// Every reason, in declaration order.
            pub const ALL: &'static [Reason] = &[$(Reason::$variant,)*];

            /// The metric label (`denied.<label>`), stable across releases.
            pub fn label(self) -> &'static str {
                match self {
                    $(Reason::$variant => $label,)*
                }
            }
        }
    };
}

reasons! {
    MissingCredential => "missing_credential",
    CredentialTooLarge => "credential_too_large",
    CredentialAmbiguous => "credential_ambiguous",
    BasicMalformed => "basic_malformed",
    BasicInvalid => "basic_invalid",
    /// Too many failed password checks for this user name (Envoy-wide).
    BasicThrottled => "basic_throttled",
    /// This worker spent its budget for slow password hashes.
    PasswordChecksBusy => "password_checks_busy",
    ApiKeyMalformed => "api_key_malformed",
    ApiKeyInvalid => "api_key_invalid",
    ApiKeyDisabled => "api_key_disabled",
    JwtNotConfigured => "jwt_not_configured",
    JwtTooLarge => "jwt_too_large",
    JwtMalformed => "jwt_malformed",
    JwtAlgorithm => "jwt_algorithm",
    JwtUnknownIssuer => "jwt_unknown_issuer",
    /// A provider's token sent where that provider does not read tokens (its `from_*`, or `Authorization: Bearer`).
    JwtWrongLocation => "jwt_wrong_location",
    JwtUnknownKey => "jwt_unknown_key",
    JwtBadSignature => "jwt_bad_signature",
    JwtExpired => "jwt_expired",
    JwtNotYetValid => "jwt_not_yet_valid",
    JwtAudience => "jwt_audience",
    JwtNoExpiration => "jwt_no_expiration",
    JwtLifetime => "jwt_lifetime",
    JwtNoPrincipal => "jwt_no_principal",
    JwtBadPrincipal => "jwt_bad_principal",
    /// A one-time keypair token without `jti`.
    JwtNoJti => "jwt_no_jti",
    /// A one-time keypair token used again.
    TokenReplayed => "token_replayed",
    /// The record of one-time tokens is full of unexpired ones: none may be forgotten.
    ReplayCacheFull => "replay_cache_full",
    /// A credential of a kind the route does not accept.
    CredentialNotAccepted => "credential_not_accepted",
    TokenRevoked => "token_revoked",
    /// A token whose `cnf` binds it in a way the filter cannot check.
    TokenBindingUnknown => "token_binding_unknown",
    /// A certificate-bound token (`cnf["x5t#S256"]`) on a connection without that client certificate.
    TokenCertificateMismatch => "token_certificate_mismatch",
    /// A token not bound to a client certificate, from a provider with `require_certificate_binding`.
    TokenNotBound => "token_not_bound",
    /// A DPoP-bound token without a valid proof of its key.
    DpopProofInvalid => "dpop_proof_invalid",
    /// A verified client certificate whose name `mtls.principals` and `mtls.allow_prefixes` do not list.
    MtlsNotAllowed => "mtls_not_allowed",
    /// The client address is outside the trusted networks (the configuration's or the principal's).
    NetworkNotTrusted => "network_not_trusted",
    /// A path with a dot segment with parameters (`..;`), where a rule or a privilege reads paths.
    AmbiguousPath => "ambiguous_path",
    /// A method override that falls under another rule than the request's own method, or too many (`method_overrides: "judge"`).
    MethodOverrideRefused => "method_override_refused",
    MethodNotAllowed => "method_not_allowed",
    PathNotAllowed => "path_not_allowed",
    PrincipalNotAllowed => "principal_not_allowed",
    InsufficientScope => "insufficient_scope",
    /// A condition of the rule's `claims` not met (or a principal without claims).
    ClaimConditionFailed => "claim_condition_failed",
    /// Over the principal's requests per hour.
    RateLimited => "rate_limited",
    /// Over the principal's requests in flight.
    ConcurrencyLimited => "concurrency_limited",
    /// The shared counts could not be updated (other workers kept winning), or the fleet's
    /// rate-limit engine did not answer and `limits.engine_failure_mode_deny` is true: fail closed.
    LimitsUnavailable => "limits_unavailable",
    /// Remote signing keys not fetched (yet), or not fetchable now.
    JwksUnavailable => "jwks_unavailable",
    /// The remote revocation list was never fetched: a token it may revoke waits, then 503.
    RevocationUnavailable => "revocation_unavailable",
    /// `api_keys.remote` was not fetched within a held request's wait: a key that is not configured may be in it (503).
    ApiClientsUnavailable => "api_clients_unavailable",
    /// `basic.remote` was not fetched within a held request's wait: a user who is not configured may be in it (503).
    BasicUsersUnavailable => "basic_users_unavailable",
    /// The introspection endpoint says the opaque token is not active (or did not say it is).
    IntrospectionInactive => "introspection_inactive",
    /// The introspection endpoint could not be asked, or did not answer usably (the token may be fine).
    IntrospectionFailed => "introspection_failed",
    /// The token endpoint issued a token (counted as `token_issued`, not denied).
    TokenIssued => "token_issued",
    /// The token endpoint's JWKS was served (counted as `jwks_served`).
    JwksServed => "jwks_served",
    /// The token endpoint takes POST, its JWKS GET.
    TokenMethodNotAllowed => "token_method_not_allowed",
    /// A token request body over 8192 bytes.
    TokenBodyTooLarge => "token_body_too_large",
    /// A token request body that did not arrive within 10 s.
    TokenBodyTimeout => "token_body_timeout",
    /// RFC 6749 `invalid_request`: a malformed token request.
    TokenInvalidRequest => "token_invalid_request",
    /// RFC 6749 `invalid_client`: no client, a wrong key, a disabled client.
    TokenInvalidClient => "token_invalid_client",
    TokenUnsupportedGrantType => "token_unsupported_grant_type",
    /// A requested scope the client does not hold.
    TokenInvalidScope => "token_invalid_scope",
    TokenSigningFailed => "token_signing_failed",
    /// This worker spent its budget for signing tokens.
    TokenSigningBusy => "token_signing_busy",
    /// A form body read for an API key (`api_keys.form_field`): over 64 KiB (413), not
    /// UTF-8 (400), or not there within 10 s (408).
    FormTooLarge => "form_too_large",
    FormMalformed => "form_malformed",
    FormTimeout => "form_timeout",
    NotConfigured => "not_configured",
    /// The host could not give the request or the time.
    HostError => "host_error",
}

impl Reason {
    /// The counter a refusal increments.
    pub fn metric(self) -> String {
        format!("denied.{}", self.label())
    }
}

#[cfg(test)]
mod tests {
    use super::Reason;

    #[test]
    fn labels_are_unique_metric_safe_and_all_listed() {
        let mut labels: Vec<&str> = Reason::ALL.iter().map(|r| r.label()).collect();
        assert!(labels.iter().all(|l| l.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')));
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), Reason::ALL.len());
    }

    #[test]
    fn the_operating_guide_lists_every_reason() {
        let guide = include_str!("../docs/operating.md");
        let metrics = &guide[guide.find("\n## Metrics").expect("a Metrics section")..];
        for reason in Reason::ALL {
            let label = reason.label();
            assert!(metrics.contains(&format!("`{label}`")), "docs/operating.md, Metrics, misses `{label}`");
        }
    }
}
