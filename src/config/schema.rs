//! The plugin configuration as written: serde types mirroring the JSON, with
//! their defaults. Unknown fields are errors everywhere. Nothing here is
//! validated beyond types; `config` compiles these into the policy.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// A configuration struct with the privilege fields a user, API client or keypair
/// (`+ scopes;`) or a JWT provider (`;`: its tokens' scopes are their claims) has,
/// declared here once with their docs, after the struct's own fields; its
/// `privilege_fields` takes them out for `config::policy::privileges`.
macro_rules! privileged {
    ($(+ $scopes:ident)?; $(#[$meta:meta])* pub struct $name:ident { $($fields:tt)* }) => {
        $(#[$meta])*
        pub(crate) struct $name {
            $($fields)*
            /// Allowed HTTP methods, each by name (absent: all).
            pub methods: Option<Vec<String>>,
            /// Allowed path prefixes (absent: all).
            pub paths: Option<Vec<String>>,
            $(
                /// Scopes held.
                #[serde(default)]
                pub $scopes: Vec<String>,
            )?
            /// Networks (CIDR) it may come from (absent: any).
            pub trusted_networks: Option<Vec<String>>,
            /// Overrides `limits.requests_per_hour` (0: unlimited).
            pub requests_per_hour: Option<u64>,
            /// Overrides `limits.max_concurrent` (0: unlimited).
            pub max_concurrent: Option<u64>,
        }

        impl $name {
            /// The privilege fields, taken out (the struct's own fields stay).
            pub(crate) fn privilege_fields(&mut self) -> PrivilegeFields {
                PrivilegeFields {
                    methods: self.methods.take(),
                    paths: self.paths.take(),
                    scopes: privileged!(@scopes self $($scopes)?),
                    trusted_networks: self.trusted_networks.take(),
                    requests_per_hour: self.requests_per_hour.take(),
                    max_concurrent: self.max_concurrent.take(),
                }
            }
        }
    };
    (@scopes $self:ident) => { Vec::new() };
    (@scopes $self:ident $scopes:ident) => { std::mem::take(&mut $self.$scopes) };
}

/// The privilege fields users, clients, keypairs and providers share, as written.
pub(super) struct PrivilegeFields {
    pub methods: Option<Vec<String>>,
    pub paths: Option<Vec<String>>,
    pub scopes: Vec<String>,
    pub trusted_networks: Option<Vec<String>>,
    pub requests_per_hour: Option<u64>,
    pub max_concurrent: Option<u64>,
}

#[derive(Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, expecting = "the configuration object")]
pub(super) struct RawConfig {
    /// The JSON Schema this configuration follows, for editors (`wasm-authn.schema.json`); the filter ignores it.
    #[serde(rename = "$schema")]
    #[allow(dead_code)] // accepted so that editors can find the schema, never read
    pub schema: Option<String>,
    /// The realm of every `WWW-Authenticate` challenge.
    #[serde(default = "default_realm")]
    pub realm: String,
    /// Tolerance on `exp`, `nbf` and `iat`, in seconds (at most 600).
    #[serde(default = "default_clock_skew")]
    pub clock_skew_seconds: u64,
    /// Names of the upstream headers that carry the verified principal.
    #[serde(default)]
    pub principal_headers: RawPrincipalHeaders,
    /// Forward the verified credential upstream (false: it is removed); every other credential is removed either way.
    #[serde(default)]
    pub forward_credentials: bool,
    /// Method overrides (`X-HTTP-Method-Override`, `X-HTTP-Method`, `X-Method-Override`, the `_method` query parameter): `"remove"` them before the upstream, or `"judge"` the request as every method it names. A `_method` in a form body is not seen.
    #[serde(default = "default_method_overrides")]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "crate::method_override::MethodOverrides"))]
    pub method_overrides: String,
    /// Also hand the verified principal to Envoy as filter state (`wasm.wasm_authn.principal`, `.method`, `.provider`, `.claim.<header>`), for RBAC and access logs; one host call per value.
    #[serde(default)]
    pub filter_state: bool,
    /// false: shadow mode (Envoy RBAC's `shadow_rules`, Istio's `AUDIT`): every request is decided, a
    /// refusal counted (`shadow_denied.<reason>`), logged and set in filter state
    /// (`wasm.wasm_authn.shadow`), and the request continues without principal headers. A rule's own `enforce` overrides it.
    #[serde(default = "default_true")]
    pub enforce: bool,
    /// Rules that skip authentication (forged principal headers and credentials are still removed).
    #[serde(default)]
    pub bypass: Vec<RawBypassRule>,
    /// CORS preflights (OPTIONS with `Origin` and `Access-Control-Request-Method`) skip authentication.
    #[serde(default)]
    pub bypass_cors_preflight: bool,
    /// First match wins; checked after `bypass`.
    #[serde(default)]
    pub rules: Vec<RawRule>,
    /// Client networks (CIDR) allowed at all; outside them 403 before any credential is checked.
    pub trusted_networks: Option<Vec<String>>,
    /// Revoked token ids and principals, configured and fetched.
    pub revocation: Option<RawRevocation>,
    /// Server-wide defaults of the per-principal limits.
    pub limits: Option<RawLimits>,
    /// HTTP Basic users.
    pub basic: Option<RawBasic>,
    /// API keys: where they are read and the clients that hold them.
    pub api_keys: Option<RawApiKeys>,
    /// Clients that sign their own short-lived tokens with a registered key.
    #[serde(default)]
    pub keypairs: Vec<RawKeypair>,
    /// Bearer JWTs: the providers that issue them.
    pub jwt: Option<RawJwt>,
    /// Client certificates Envoy verified in the TLS handshake as principals (`mtls:<name>`).
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "Option<RawMtls>"))]
    pub mtls: Option<Value>,
    /// API clients exchange their key here for a JWT that expires (OAuth 2.0 client credentials).
    pub token_endpoint: Option<RawTokenEndpoint>,
    /// Verified credentials remembered per VM.
    pub cache: Option<RawCache>,
    /// Check RS256/384/512 and ES256 signatures with Envoy's BoringSSL when the host has it (ES384 needs it).
    #[serde(default = "default_true")]
    pub envoy_crypto: bool,
}

#[derive(Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub(super) struct RawPrincipalHeaders {
    /// Upstream header with the principal's bare id: the user name, the API client id, the keypair id or the JWT's `principal_claim`.
    #[serde(default = "default_principal_header")]
    pub principal: String,
    /// Upstream header saying how it was proven: `basic`, `api-key`, `jwt` or `keypair`.
    #[serde(default = "default_method_header")]
    pub method: String,
    /// Upstream header with the JWT provider's `name` (JWTs only).
    #[serde(default = "default_provider_header")]
    pub provider: String,
    /// Upstream header with the qualified principal (`basic:alice`, `api-key:reporting`,
    /// `keypair:engine`, `jwt:corp:alice`); absent: not sent.
    pub qualified: Option<String>,
}

impl Default for RawPrincipalHeaders {
    fn default() -> Self {
        RawPrincipalHeaders {
            principal: default_principal_header(),
            method: default_method_header(),
            provider: default_provider_header(),
            qualified: None,
        }
    }
}

#[derive(Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub(super) struct RawBypassRule {
    /// A normalized path, matched at segment boundaries on the normalized request path.
    pub path_prefix: Option<String>,
    /// An HTTP method name; a rule matches when all it sets match.
    pub method: Option<String>,
}

#[derive(Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    /// The conditions; all it sets must match (none: every request).
    #[serde(rename = "match", default)]
    pub matcher: RawMatch,
    /// `"any"`, `"none"`, `"optional"`, `"optional_or_failed"` (a credential that fails passes
    /// too, with no principal), a list of kinds (any of them: `"basic"`, `"api-key"`, `"jwt"`,
    /// `"jwt:<provider>"`, `"keypair"`), or a tree of them: `{"all": [...]}`, `{"any": [...]}`, nested.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(default = "default_require"))]
    pub require: Option<Value>,
    /// With a `require` tree: the kinds whose principal is the rule's, first present first (default: the
    /// tree's kinds in the order written); the others are reported in `x-auth-also-<method>`.
    pub principal_from: Option<Vec<String>>,
    /// When set, only JWT provider tokens whose `<iss>/<sub>` matches one (Istio's `requestPrincipals`:
    /// exact, `prefix*`, `*suffix`, or `*`), 403 otherwise.
    pub request_principals: Option<Vec<String>>,
    /// Overrides the configuration's `enforce` for this rule (false: shadow mode).
    pub enforce: Option<bool>,
    /// Scopes the caller must all hold (403 `insufficient_scope` otherwise).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// When set, only these principals (403 otherwise), named by who vouches for them:
    /// `basic:<user>`, `api-key:<client id>`, `keypair:<id>`, `jwt:<provider>:<principal claim>`.
    pub principals: Option<Vec<String>>,
    /// Conditions on the verified token's claims, all to be met (403 `claim_condition_failed`
    /// otherwise). Only an identity provider's tokens have claims: a rule with conditions
    /// refuses Basic users, API keys, keypairs and the token endpoint's tokens.
    // Read from the JSON value by `config::claims`: a serde type here cost the module 10 KB.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "Option<Vec<RawClaimCondition>>"))]
    pub claims: Option<Value>,
}

/// One condition on a claim: exactly one of `any_of`, `all_of` and `equals_header`
/// (the shape for the JSON Schema; `config::claims` reads it).
#[cfg(not(target_arch = "wasm32"))]
#[derive(schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // the schema's shape only
pub(super) struct RawClaimCondition {
    /// The claim, named as `claim_to_headers` names it (dotted names reach nested values).
    /// Its strings, booleans and numbers (an array: each of its elements) compare with
    /// values of the same JSON type (`1.0` is `1`; `"true"` is not `true`).
    pub claim: String,
    /// One of the claim's values (an array's elements) is one of these.
    pub any_of: Option<Vec<Value>>,
    /// Every one of these is among the claim's values.
    pub all_of: Option<Vec<Value>>,
    /// A request header (e.g. `x-tenant`) that must be sent exactly once with one of the
    /// claim's values; missing, repeated or also sent with underscores, the condition fails.
    pub equals_header: Option<String>,
}

/// All that a rule's `match` sets must match.
#[derive(Deserialize, Default)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub(super) struct RawMatch {
    /// A normalized path prefix, matched at segment boundaries.
    pub path_prefix: Option<String>,
    /// A normalized path, matched exactly (without the query).
    pub path: Option<String>,
    /// HTTP methods, by name.
    pub methods: Option<Vec<String>>,
    /// `:authority`, exact or `*.suffix`.
    pub host: Option<String>,
    /// The Envoy route's name (`xds.route_name`).
    pub route: Option<String>,
}

/// Server-wide defaults of the per-principal limits (0 or absent: unlimited).
#[derive(Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    /// Requests each principal may make in a sliding hour (0 or absent: unlimited).
    pub requests_per_hour: Option<u64>,
    /// Requests each principal may have in flight at once (0 or absent: unlimited).
    pub max_concurrent: Option<u64>,
    /// A bound on the principals counted (idlest forgotten first).
    #[serde(default = "default_max_tracked_principals")]
    pub max_tracked_principals: usize,
    /// Add the RateLimit-Policy and RateLimit fields to allowed responses too.
    #[serde(default)]
    pub expose_headers: bool,
    /// Who counts the requests per hour: `"envoy"` (this Envoy, exact across its workers) or `"fleet"` (the rate-limit engine every Envoy asks through Envoy's rate-limit filter; `wasm-authn ratelimit-config` writes its rules). Requests in flight are counted per Envoy either way.
    #[serde(default)]
    pub scope: RawLimitScope,
    /// With scope `"fleet"`: the rate-limit domain (Limitador's namespace) of the questions the filter asks the engine itself (through the Envoy cluster `ratelimit`, gRPC over HTTP/2) about one-time keypair tokens (`one_time`) and failed passwords (`basic.failure_limit`), which Envoy's rate-limit filter cannot see. `wasm-authn ratelimit-config` writes every rule in it.
    #[serde(default = "default_engine_domain")]
    pub engine_domain: String,
    /// With scope `"fleet"`, when the engine does not answer within 250 ms: `false` decides on this Envoy's own records alone (counted as `engine.failure_mode_allowed`), `true` answers 503 (as Envoy's rate-limit filter's `failure_mode_deny`). A refused password is refused either way.
    #[serde(default)]
    pub engine_failure_mode_deny: bool,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            requests_per_hour: None,
            max_concurrent: None,
            max_tracked_principals: default_max_tracked_principals(),
            expose_headers: false,
            scope: RawLimitScope::default(),
            engine_domain: default_engine_domain(),
            engine_failure_mode_deny: false,
        }
    }
}

/// `limits.scope`: `"envoy"` or `"fleet"`.
// Read from a string: serde's enum machinery would be the module's only copy of it
// (a few kilobytes).
// Serialize (native only) shows the default in the JSON Schema.
#[derive(Deserialize, Default)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema, serde::Serialize))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(extend("enum" = ["envoy", "fleet"])))]
#[serde(try_from = "String")]
#[cfg_attr(not(target_arch = "wasm32"), serde(rename_all = "lowercase"))]
pub(super) enum RawLimitScope {
    #[default]
    Envoy,
    Fleet,
}

impl TryFrom<String> for RawLimitScope {
    type Error = &'static str;

    fn try_from(word: String) -> Result<Self, Self::Error> {
        match word.as_str() {
            "envoy" => Ok(RawLimitScope::Envoy),
            "fleet" => Ok(RawLimitScope::Fleet),
            _ => Err("must be `envoy` or `fleet`"),
        }
    }
}

#[derive(Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub(super) struct RawRevocation {
    /// Token ids (`jti`) refused.
    #[serde(default)]
    pub jti: Vec<String>,
    /// Qualified principal (`jwt:<provider>:<subject>`, `api-key:<client id>`, `keypair:<id>`)
    /// -> Unix seconds: its tokens issued before are refused.
    #[serde(default)]
    pub not_before: BTreeMap<String, u64>,
    /// The same document, fetched through an Envoy cluster. Until its first fetch, a
    /// token waits for it (`wait_ms`), then gets 503, unless `allow_before_first_fetch`.
    pub remote: Option<RawRemote>,
    /// How long a token may wait for the remote list's first fetch before it gets 503 (at most 30000).
    #[serde(default = "default_wait_ms")]
    pub wait_ms: u64,
    /// Let tokens through unchecked by the remote list until its first fetch (after a
    /// restart while the endpoint is down, remotely revoked tokens then pass).
    #[serde(default)]
    pub allow_before_first_fetch: bool,
}

#[derive(Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(extend("not" = {"required": ["htpasswd", "htpasswd_env"]})))]
#[serde(deny_unknown_fields)]
pub(super) struct RawBasic {
    /// Users with their stored password hashes.
    #[serde(default)]
    pub users: Vec<RawUser>,
    /// The text of an htpasswd file (`name:hash` lines, `#` comments).
    pub htpasswd: Option<String>,
    /// Instead of `htpasswd`: the environment variable of the Envoy process that holds it.
    pub htpasswd_env: Option<String>,
    /// Failed password checks allowed in a window, per user name and source and per user name; past them, 429.
    #[serde(default)]
    pub failure_limit: RawFailureLimit,
    /// The share of each worker's time (ms per second, 1-1000) bcrypt checks may take; past it, 503.
    #[serde(default = "default_time_budget")]
    pub slow_hash_budget_ms_per_second: u64,
    /// More users, fetched through an Envoy cluster and refreshed (a user added or removed
    /// there applies within `refresh_seconds`, no configuration push): a JSON document
    /// `{"users": [...], "htpasswd": "..."}` in the forms of `users` and `htpasswd` (`password_hash`, not
    /// `password_hash_env`), names apart from the configured ones. Until its first fetch, a name that is not configured waits for it (`timeout_ms` and a second more), then gets 503.
    /// `max_response_bytes` may be up to 33554432 here.
    pub remote: Option<RawRemote>,
}

privileged! {
    + scopes;
    #[derive(Deserialize)]
    #[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("oneOf" = one_of("password_hash"))))]
    #[serde(deny_unknown_fields)]
    pub struct RawUser {
        /// The user name (no `:`, no surrounding spaces).
        pub name: String,
        /// `sha256:<hex>`, htpasswd `{SHA}<base64>` or bcrypt `$2a$`/`$2b$`/`$2y$` (cost 4-12); never clear text.
        pub password_hash: Option<String>,
        /// Instead of `password_hash`: the environment variable of the Envoy process that holds it.
        pub password_hash_env: Option<String>,
    }
}

/// Failed password checks allowed in a window, Envoy-wide: per user name and source
/// address, and per user name from every source.
#[derive(Deserialize, PartialEq)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub(super) struct RawFailureLimit {
    /// Failures allowed per user name and source address in one window (at least 1); past it, that source gets 429.
    #[serde(default = "default_max_failures")]
    pub max_failures: u32,
    /// Failures allowed per user name from every source in one window (at least `max_failures`);
    /// past it, the name gets 429 from everywhere, its owner included, until the window ends.
    #[serde(default = "default_max_failures_per_name")]
    pub max_failures_per_name: u32,
    /// The window, in seconds (1-86400).
    #[serde(default = "default_failure_window")]
    pub window_seconds: u64,
}

impl Default for RawFailureLimit {
    fn default() -> Self {
        RawFailureLimit {
            max_failures: default_max_failures(),
            max_failures_per_name: default_max_failures_per_name(),
            window_seconds: default_failure_window(),
        }
    }
}

#[derive(Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(extend("not" = {"required": ["clients_lines", "clients_lines_env"]})))]
#[serde(deny_unknown_fields)]
pub(super) struct RawApiKeys {
    /// Headers that carry an API key, in order of precedence.
    #[serde(default = "default_api_key_headers")]
    pub headers: Vec<String>,
    /// A query parameter carrying an API key; off unless named (keys in URLs end up in logs).
    pub query_param: Option<String>,
    /// A field of an `application/x-www-form-urlencoded` body carrying an API key (CData
    /// Arc's `@authtoken`), read last; off unless named. The request is held until its body
    /// is read (at most 64 KiB); needs Envoy's `allow_on_headers_stop_iteration`.
    pub form_field: Option<String>,
    /// Cookies that carry an API key, read after the headers and the query parameter, in order of precedence.
    #[serde(default)]
    pub cookies: Vec<String>,
    /// Accept `client-id:api-key` as Basic credentials.
    #[serde(default = "default_true")]
    pub allow_basic: bool,
    /// The API clients: unique ids, each its own key (two holding one are refused).
    #[serde(default)]
    pub clients: Vec<RawApiClient>,
    /// More clients, compactly: the text of `id:sha256:<hex>` lines (`#` comments), as
    /// `basic.htpasswd` is for users; each takes the default privileges and limits.
    pub clients_lines: Option<String>,
    /// Instead of `clients_lines`: the environment variable of the Envoy process that holds it.
    pub clients_lines_env: Option<String>,
    /// More clients, fetched through an Envoy cluster and refreshed (a key added or removed
    /// there applies within `refresh_seconds`, no configuration push): a JSON document
    /// `{"clients": [...]}` of `clients[]` entries (`key_hash`, not `key_hash_env`), ids apart
    /// from the configured ones. Until its first fetch, a key that is not configured waits for it (`timeout_ms` and a second more), then gets 503.
    /// `max_response_bytes` may be up to 33554432 here.
    pub remote: Option<RawRemote>,
}

impl Default for RawApiKeys {
    fn default() -> Self {
        RawApiKeys {
            headers: default_api_key_headers(),
            query_param: None,
            form_field: None,
            cookies: Vec::new(),
            allow_basic: default_true(),
            clients: Vec::new(),
            clients_lines: None,
            clients_lines_env: None,
            remote: None,
        }
    }
}

privileged! {
    + scopes;
    #[derive(Deserialize)]
    #[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("oneOf" = one_of("key_hash"))))]
    #[serde(deny_unknown_fields)]
    pub struct RawApiClient {
        /// The client id, its principal (no `:`, no surrounding spaces).
        pub id: String,
        /// `sha256:<hex>` of the key (`wasm-authn new-api-key` makes both).
        pub key_hash: Option<String>,
        /// Instead of `key_hash`: the environment variable of the Envoy process that holds it.
        pub key_hash_env: Option<String>,
        /// A disabled key is refused.
        #[serde(default)]
        pub disabled: bool,
    }
}

privileged! {
    + scopes;
    /// A client keypair: the client signs each token itself, with `iss` its PEM text or id.
    #[derive(Deserialize)]
    #[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
    #[serde(deny_unknown_fields)]
    pub struct RawKeypair {
        /// The principal its tokens prove.
        pub id: String,
        /// The public key, PEM (`BEGIN PUBLIC KEY`: RSA, EC P-256 or P-384, Ed25519).
        pub public_key: String,
        /// Algorithms accepted (default: those that fit the key).
        pub algorithms: Option<Vec<String>>,
        /// Longest accepted `exp - iat` (at most 3600).
        #[serde(default = "default_keypair_lifetime")]
        pub max_lifetime_seconds: u64,
        /// Each token (`jti` required) is accepted once, on every worker.
        #[serde(default)]
        pub one_time: bool,
        /// DPoP (RFC 9449): its tokens may be (`"allowed"`) or must be (`"required"`) bound to a key (`cnf.jkt`) and sent as `Authorization: DPoP` with a proof of it.
        #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "Option<RawDpopSetting>"))]
        pub dpop: Option<Value>,
    }
}

/// The token endpoint: it answers its two paths itself, and accepts the tokens it issues.
#[derive(Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(extend("oneOf" = one_of("signing_key"))))]
#[serde(deny_unknown_fields)]
pub(super) struct RawTokenEndpoint {
    /// The `x-auth-provider` value of its tokens.
    #[serde(default = "default_token_endpoint_name")]
    pub name: String,
    /// Where tokens are issued (POST), e.g. `/auth/token`.
    pub path: String,
    /// Where the public key is served as a JWKS (default `/.well-known/jwks.json`; none for an HS256 secret).
    pub jwks_path: Option<String>,
    /// The `iss` of its tokens.
    pub issuer: String,
    /// The `aud` of its tokens (and the audiences its tokens must carry).
    #[serde(default)]
    pub audiences: Vec<String>,
    /// How long its tokens live, in seconds (at most 86400).
    #[serde(default = "default_token_lifetime")]
    pub lifetime_seconds: u64,
    /// The private key: a JWK object (EC P-256, OKP Ed25519, RSA, or oct for HS256) or a PKCS#8 PEM string.
    pub signing_key: Option<Value>,
    /// Instead of `signing_key`: the environment variable of the Envoy process that holds it
    /// (the JWK as JSON text, or the PEM text).
    pub signing_key_env: Option<String>,
    /// The `kid` of its tokens (default: the key's RFC 7638 thumbprint).
    pub kid: Option<String>,
    /// The share of each worker's time (ms per second, 1-1000) signing tokens may take; past it, 503.
    #[serde(default = "default_time_budget")]
    pub signing_budget_ms_per_second: u64,
    /// DPoP (RFC 9449 5): a token request with a valid proof gets a token bound to its key (`token_type: DPoP`, `cnf.jkt`); `"required"`: only such requests get tokens, and its tokens are accepted only with a proof.
    #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "Option<RawDpopSetting>"))]
    pub dpop: Option<Value>,
}

#[derive(Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub(super) struct RawJwt {
    /// The JWT providers; tokens are matched to one by `iss`.
    #[serde(default)]
    pub providers: Vec<RawProvider>,
    /// How long a request may wait for a provider's remote keys before it gets 503 (at most 30000).
    #[serde(default = "default_wait_ms")]
    pub jwks_wait_ms: u64,
}

privileged! {
    ;
    /// A JWT provider; its methods, paths, networks and limits apply to each of its tokens
    /// (each principal of its tokens has its own limits).
    #[derive(Deserialize)]
    #[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
    #[serde(deny_unknown_fields)]
    pub struct RawProvider {
        /// The provider's name (the `x-auth-provider` value, metric names).
        pub name: String,
        /// Tokens are matched to their provider by `iss`; one provider per issuer. Required
        /// but with `introspection`, whose answers must then carry it as `iss`.
        pub issuer: Option<String>,
        /// Empty: any audience is accepted.
        #[serde(default)]
        pub audiences: Vec<String>,
        /// A JWKS object `{"keys": [...]}`, parsed (strictly) when compiled.
        #[cfg_attr(not(target_arch = "wasm32"), schemars(schema_with = "super::jwks_schema::jwks", default))]
        pub local_jwks: Option<Value>,
        /// SubjectPublicKeyInfo PEM blocks (`BEGIN PUBLIC KEY`); they match tokens with any `kid`.
        pub local_pem: Option<String>,
        /// A JWKS the filter fetches itself through an Envoy cluster (`path` required).
        pub remote_jwks: Option<RawRemote>,
        /// An OpenID Connect discovery document whose `jwks_uri` the filter fetches.
        pub discovery: Option<RawRemote>,
        /// Opaque tokens: an OAuth 2.0 token introspection endpoint (RFC 7662) vouches for
        /// them, asked through an Envoy cluster (instead of keys).
        pub introspection: Option<RawIntrospection>,
        /// Refuse tokens without `exp` (default true; with `introspection`, false).
        pub require_expiration: Option<bool>,
        /// Longest accepted `exp - iat` (or `exp - now` without `iat`).
        pub max_lifetime_seconds: Option<u64>,
        /// Dotted path allowed ("realm.user").
        #[serde(default = "default_principal_claim")]
        pub principal_claim: String,
        /// Claims copied to upstream headers.
        #[serde(default)]
        pub claim_to_headers: Vec<RawClaimToHeader>,
        /// Forward its verified tokens upstream (or not), whatever `forward_credentials` says.
        pub forward: Option<bool>,
        /// An upstream header that gets the verified token's payload, base64url as in the token
        /// (`jwt_authn`'s `forward_payload_header`); the filter owns it: a client's copy is removed.
        /// Not with `introspection`.
        pub forward_payload_header: Option<String>,
        /// The verified token's payload, as JSON, in Envoy filter state `wasm.wasm_authn.payload`
        /// (for access logs and later filters). Not with `introspection`.
        #[serde(default)]
        pub payload_in_filter_state: bool,
        /// Refuse tokens not bound to a client certificate (`cnf["x5t#S256"]`, RFC 8705 3). A bound token is always checked against the connection's certificate, with or without this.
        #[serde(default)]
        pub require_certificate_binding: bool,
        /// DPoP (RFC 9449), `"allowed"`, `"required"` or `{"mode", "max_age_seconds", "algorithms"}`: tokens bound to a key (`cnf.jkt`), sent as `Authorization: DPoP` with a proof of that key; `"required"`: only those. Not with `introspection` or `require_certificate_binding`.
        #[cfg_attr(not(target_arch = "wasm32"), schemars(with = "Option<RawDpopSetting>"))]
        pub dpop: Option<Value>,
        /// Headers that carry its tokens. With any `from_*` set, the provider reads its tokens
        /// only there, not in `Authorization: Bearer`.
        #[serde(default)]
        pub from_headers: Vec<RawTokenHeader>,
        /// Query parameters that carry its tokens (opt-in: URLs end up in logs); removed from
        /// `:path` before the request goes upstream.
        #[serde(default)]
        pub from_params: Vec<String>,
        /// Cookies that carry its tokens; removed from `Cookie` before the request goes upstream.
        #[serde(default)]
        pub from_cookies: Vec<String>,
    }
}

/// A document fetched through an Envoy cluster: `remote_jwks` (`path` required) or
/// `discovery` (`path` defaults to the well-known one; `jwks_cluster` only here).
#[derive(Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub(super) struct RawRemote {
    /// The Envoy cluster to fetch through.
    pub cluster: String,
    /// The `:authority` of the request.
    pub authority: String,
    /// The path to fetch: required, but with `discovery` (`/.well-known/openid-configuration` by default).
    pub path: Option<String>,
    /// Discovery only: an Envoy cluster for a `jwks_uri` on another host.
    pub jwks_cluster: Option<String>,
    /// Refresh interval, in seconds (1-86400).
    #[serde(default = "default_refresh_seconds")]
    pub refresh_seconds: u64,
    /// Timeout of one fetch, in milliseconds (100-60000).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// JWKS only: at most one refetch per interval for tokens with an unknown `kid` (1-3600).
    #[cfg_attr(not(target_arch = "wasm32"), schemars(default = "default_min_refetch_seconds"))]
    pub min_refetch_seconds: Option<u64>,
    /// Larger responses are refused (1024-1048576; `api_keys.remote`: up to 33554432).
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
}

/// A token introspection endpoint (RFC 7662), asked through an Envoy cluster.
#[derive(Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[cfg_attr(not(target_arch = "wasm32"), schemars(extend("not" = {"required": ["client_secret", "client_secret_env"]})))]
#[serde(deny_unknown_fields)]
pub(super) struct RawIntrospection {
    /// The Envoy cluster of the endpoint.
    pub cluster: String,
    /// The `:authority` of the call.
    pub authority: String,
    /// The endpoint's path, e.g. `/oauth2/introspect`.
    pub path: String,
    /// Timeout of one call, in milliseconds (100-60000); a request waits as long, then gets 503.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// How the filter authenticates to the endpoint: `basic` (RFC 6749 2.3.1), `post`
    /// (`client_id` and `client_secret` in the form) or `bearer` (the secret as a bearer token).
    #[serde(default = "default_introspection_auth")]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("enum" = ["basic", "post", "bearer"])))]
    pub auth: String,
    /// The filter's client id at the endpoint (`basic` and `post`).
    pub client_id: Option<String>,
    /// Its secret (or, with `bearer`, the bearer token).
    pub client_secret: Option<String>,
    /// Instead of `client_secret`: the environment variable of the Envoy process that holds it.
    pub client_secret_env: Option<String>,
    /// `token_type_hint` sent with each token (empty: none).
    #[serde(default = "default_token_type_hint")]
    pub token_type_hint: String,
    /// Larger answers are a failure (1024-1048576).
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
    /// How long an active answer is reused, Envoy-wide (never past the token's `exp`): the
    /// longest a token revoked at the endpoint still passes (1-86400).
    #[serde(default = "default_introspection_ttl")]
    pub cache_ttl_seconds: u64,
    /// How long an inactive answer is reused (1-86400).
    #[serde(default = "default_negative_cache_seconds")]
    pub negative_cache_seconds: u64,
    /// Answers remembered at most, Envoy-wide (16-1000000).
    #[serde(default = "default_introspection_entries")]
    pub max_cached_tokens: usize,
    /// Which tokens it asks about: `opaque` (those that are not a JWS) or `all` (every
    /// token its places carry, but a JWS whose `iss` names a provider with keys).
    #[serde(default = "default_introspected_tokens")]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(extend("enum" = ["opaque", "all"])))]
    pub tokens: String,
}

/// A header that carries a provider's tokens (`from_headers`, as in Envoy's `jwt_authn`).
#[derive(Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub(super) struct RawTokenHeader {
    /// The header name, e.g. `x-goog-iap-jwt-assertion`.
    pub name: String,
    /// What the value starts with before the token, e.g. `"Bearer "` or `"Token "` (compared
    /// without case); absent: the whole value is the token.
    pub value_prefix: Option<String>,
}

#[derive(Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub(super) struct RawClaimToHeader {
    /// The claim (dotted paths reach nested values; an array becomes a comma-separated value).
    pub claim: String,
    /// The upstream header; not one of `principal_headers`.
    pub header: String,
}

#[derive(Deserialize)]
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub(super) struct RawCache {
    /// Verified credentials remembered per VM (0 turns the cache off).
    #[serde(default = "default_cache_entries")]
    pub max_entries: usize,
    /// How long one is remembered, in seconds (never past a token's `exp`).
    #[serde(default = "default_cache_ttl")]
    pub ttl_seconds: u64,
}

impl Default for RawCache {
    fn default() -> Self {
        RawCache { max_entries: default_cache_entries(), ttl_seconds: default_cache_ttl() }
    }
}

pub(super) fn default_realm() -> String {
    "api".into()
}
fn default_method_overrides() -> String {
    "remove".into()
}
fn default_clock_skew() -> u64 {
    60
}
fn default_principal_header() -> String {
    "x-auth-principal".into()
}
fn default_method_header() -> String {
    "x-auth-method".into()
}
fn default_provider_header() -> String {
    "x-auth-provider".into()
}
fn default_api_key_headers() -> Vec<String> {
    vec!["x-api-key".into()]
}
fn default_true() -> bool {
    true
}
/// How long a request may be held for something fetched (keys, the revocation list), by default and at most.
pub(super) fn default_wait_ms() -> u64 {
    2000
}
pub(super) const MAX_WAIT_MS: u64 = 30_000;
fn default_cache_entries() -> usize {
    4096
}
fn default_cache_ttl() -> u64 {
    300
}
/// A rule's `require` when absent.
pub(super) fn default_require() -> Value {
    Value::from("any")
}
fn default_principal_claim() -> String {
    "sub".to_string()
}
fn default_refresh_seconds() -> u64 {
    300
}
fn default_timeout_ms() -> u64 {
    2000
}
pub(super) fn default_min_refetch_seconds() -> u64 {
    30
}
fn default_introspection_auth() -> String {
    "basic".into()
}
fn default_token_type_hint() -> String {
    "access_token".into()
}
fn default_introspection_ttl() -> u64 {
    60
}
fn default_negative_cache_seconds() -> u64 {
    10
}
fn default_introspection_entries() -> usize {
    10_000
}
fn default_introspected_tokens() -> String {
    "opaque".into()
}
fn default_max_response_bytes() -> usize {
    64 * 1024
}
pub(super) fn default_discovery_path() -> String {
    "/.well-known/openid-configuration".to_string()
}
pub(super) fn default_max_failures() -> u32 {
    10
}
pub(super) fn default_max_failures_per_name() -> u32 {
    100
}
pub(super) fn default_failure_window() -> u64 {
    60
}
fn default_keypair_lifetime() -> u64 {
    60
}
fn default_engine_domain() -> String {
    "wasm_authn".to_string()
}
fn default_max_tracked_principals() -> usize {
    10_000
}
/// The share of a worker's time (ms per second) blocking work (bcrypt, signing) may take.
pub(super) fn default_time_budget() -> u64 {
    250
}

fn default_token_endpoint_name() -> String {
    "token-endpoint".into()
}

fn default_token_lifetime() -> u64 {
    3600
}

/// A secret field is given inline or as `<field>_env`, exactly one of them (the schema's `oneOf`).
#[cfg(not(target_arch = "wasm32"))]
fn one_of(field: &str) -> Value {
    serde_json::json!([{"required": [field]}, {"required": [format!("{field}_env")]}])
}

/// The schema of the `mtls` section, which `config/mtls.rs` reads by hand (native only).
#[cfg(not(target_arch = "wasm32"))]
#[derive(schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // read as JSON by config/mtls.rs; this is its schema
pub(super) struct RawMtls {
    /// Where the principal's name is read in the certificate Envoy verified: `"uri_san"` (the first URI SAN, such as a SPIFFE id), `"dns_san"` (the first DNS SAN) or `"subject_cn"` (the subject's common name).
    #[serde(default = "default_name_from")]
    pub principal_from: String,
    /// Certificate names admitted, each with its privileges (absent, as `allow_prefixes`: any certificate the listener verified).
    #[serde(default)]
    pub principals: Vec<RawMtlsPrincipal>,
    /// Names starting with one of these are admitted too, with the default privileges (end a prefix with `/`: `spiffe://example.org/ns/prod/`).
    #[serde(default)]
    pub allow_prefixes: Vec<String>,
}

#[cfg(not(target_arch = "wasm32"))]
fn default_name_from() -> String {
    "uri_san".into()
}

#[cfg(not(target_arch = "wasm32"))]
#[derive(schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // as RawMtls
pub(super) struct RawMtlsPrincipal {
    /// The certificate's name, as `principal_from` reads it (`spiffe://example.org/ns/prod/sa/billing`).
    pub name: String,
    /// Allowed HTTP methods, each by name (absent: all).
    pub methods: Option<Vec<String>>,
    /// Allowed path prefixes (absent: all).
    pub paths: Option<Vec<String>>,
    /// Scopes held.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Networks (CIDR) it may come from (absent: any).
    pub trusted_networks: Option<Vec<String>>,
    /// Overrides `limits.requests_per_hour` (0: unlimited).
    pub requests_per_hour: Option<u64>,
    /// Overrides `limits.max_concurrent` (0: unlimited).
    pub max_concurrent: Option<u64>,
}

/// The schema of `dpop` (a provider's, a keypair's, the token endpoint's), which
/// `config/dpop.rs` reads by hand (native only).
#[cfg(not(target_arch = "wasm32"))]
#[derive(schemars::JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)] // as RawMtls
pub(super) enum RawDpopSetting {
    /// The mode alone, with the defaults.
    Mode(RawDpopMode),
    /// The mode and its limits.
    Settings(RawDpop),
}

/// `"allowed"`: DPoP-bound tokens with their proof, and unbound tokens as Bearer; `"required"`: only DPoP-bound tokens, with their proof.
#[cfg(not(target_arch = "wasm32"))]
#[derive(schemars::JsonSchema, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // as RawMtls
pub(super) enum RawDpopMode {
    /// DPoP-bound tokens with their proof, and unbound tokens as Bearer.
    Allowed,
    /// Only DPoP-bound tokens, with their proof.
    Required,
}

/// DPoP settings.
#[cfg(not(target_arch = "wasm32"))]
#[derive(schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // as RawMtls
pub(super) struct RawDpop {
    /// `"allowed"` or `"required"`.
    #[serde(default = "default_dpop_mode")]
    pub mode: Option<RawDpopMode>,
    /// How old a proof (its `iat`) may be, in seconds (1-300; `clock_skew_seconds` is added); its `jti` is remembered as long, on every worker.
    #[serde(default = "default_dpop_max_age")]
    pub max_age_seconds: Option<u64>,
    /// The algorithms a proof may be signed with (asymmetric only).
    #[serde(default = "default_dpop_algorithms")]
    pub algorithms: Option<Vec<String>>,
}

// The defaults `config/dpop.rs` applies, for the schema to show (null is taken as unset).
#[cfg(not(target_arch = "wasm32"))]
fn default_dpop_mode() -> Option<RawDpopMode> {
    Some(RawDpopMode::Allowed)
}

#[cfg(not(target_arch = "wasm32"))]
fn default_dpop_max_age() -> Option<u64> {
    Some(super::dpop::DEFAULT_MAX_AGE_SECONDS)
}

#[cfg(not(target_arch = "wasm32"))]
fn default_dpop_algorithms() -> Option<Vec<String>> {
    Some(super::dpop::DEFAULT_ALGORITHMS.split(' ').map(String::from).collect())
}
