//! Why the filter answered a request itself: one enum, the single list of the
//! `denied.<reason>` counter labels (the README's metrics table lists them all).

/// Declares the enum, its `ALL` list and its labels from one table, so they cannot drift apart.
macro_rules! reasons {
    ($($(#[$doc:meta])* $variant:ident => $label:literal,)*) => {
        /// Every reason a request is refused.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Reason {
            $($(#[$doc])* $variant,)*
        }

        impl Reason {
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
    JwtUnknownKey => "jwt_unknown_key",
    JwtBadSignature => "jwt_bad_signature",
    JwtExpired => "jwt_expired",
    JwtNotYetValid => "jwt_not_yet_valid",
    JwtAudience => "jwt_audience",
    JwtNoExpiration => "jwt_no_expiration",
    JwtLifetime => "jwt_lifetime",
    JwtNoPrincipal => "jwt_no_principal",
    JwtBadPrincipal => "jwt_bad_principal",
    /// A credential of a kind the route does not accept.
    CredentialNotAccepted => "credential_not_accepted",
    TokenRevoked => "token_revoked",
    /// The client address is outside the trusted networks (the configuration's or the principal's).
    NetworkNotTrusted => "network_not_trusted",
    MethodNotAllowed => "method_not_allowed",
    PathNotAllowed => "path_not_allowed",
    PrincipalNotAllowed => "principal_not_allowed",
    InsufficientScope => "insufficient_scope",
    /// Over the principal's requests per hour.
    RateLimited => "rate_limited",
    /// Over the principal's requests in flight.
    ConcurrencyLimited => "concurrency_limited",
    /// The shared counts could not be updated (other workers kept winning): fail closed.
    LimitsUnavailable => "limits_unavailable",
    /// Remote signing keys not fetched (yet), or not fetchable now.
    JwksUnavailable => "jwks_unavailable",
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
    fn the_readme_lists_every_reason() {
        let readme = include_str!("../README.md");
        for reason in Reason::ALL {
            assert!(readme.contains(&format!("`{}`", reason.label())), "README misses `{}`", reason.label());
        }
    }
}
