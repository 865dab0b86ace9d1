//! `wasm-authn`: the filter's command-line companion, a native program built from
//! the same crate. It validates configurations with the filter's own code, makes the
//! hashes, API keys and JWKS a configuration holds, prints its JSON Schema and its
//! reference, and embeds it in Envoy's or Istio's YAML.
//!
//! Exit status: 0 done, 1 refused (what the filter would refuse: a configuration, a
//! key file, a password), 2 usage or I/O error. Errors are one line on stderr.

#[cfg(target_arch = "wasm32")]
compile_error!("the wasm-authn CLI is a native program: build the filter module with `--lib` (scripts/build-wasm.sh)");

use std::fs;
use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::process::{Command as Process, ExitCode, Stdio};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use clap::error::ErrorKind;
use clap::{Parser, Subcommand};
use serde_json::{json, Map, Value};

use wasm_authn::config::{json_schema, Config, MAX_CONFIG_BYTES};

// In a folder of their own: a file in src/bin/ would be a program of its own to cargo.
#[path = "wasm-authn/envoy.rs"]
mod envoy;
#[path = "wasm-authn/reference.rs"]
mod reference;
use wasm_authn::digest::sha256;
use wasm_authn::fleet_rules::Rules;
use wasm_authn::jwt::{Algorithm, KeySet};
use wasm_authn::password::{PasswordHash, MAX_BCRYPT_COST, MAX_SECRET_BYTES, MIN_BCRYPT_COST};

const DEFAULT_BCRYPT_COST: u32 = 10;
/// bcrypt reads only this many bytes of a password.
const BCRYPT_MAX_PASSWORD_BYTES: usize = 72;
const API_KEY_BYTES: usize = 32;

#[derive(Parser)]
#[command(
    name = "wasm-authn",
    version,
    about = "The wasm-authn filter's companion: check configurations, make hashes, API keys and JWKS, write \
             rate-limit engine rules",
    after_help = "Exit status: 0 done, 1 refused (a configuration, key or password the filter would refuse), \
                  2 usage or I/O error.\nRun `wasm-authn COMMAND --help` for each command's details.",
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a configuration with the filter's own code, as it does at load
    #[command(after_help = "Prints what the configuration holds when it is accepted (exit 0). When it is \
                            refused, prints the line the filter logs,\n`wasm-authn: configuration refused: \
                            <field path>: <what is wrong>`, on stderr (exit 1).\n`X_env` fields are read \
                            from this program's environment, as the filter reads Envoy's.\n\nExample:\n  \
                            wasm-authn check config.json\n  jq .config envoy-values.json | wasm-authn check -")]
    Check {
        /// The configuration (JSON, the plugin's `configuration` value), or `-` for standard input
        config: String,
    },
    /// Print the rate-limit engine's rules and Envoy's side for limits.scope "fleet"
    #[command(after_help = "From the configuration's hourly limits (limits.requests_per_hour and every \
                            principal's own requests_per_hour),\nprints, as YAML: the rules of \
                            envoyproxy/ratelimit (`domain`, `descriptors`), Kuadrant Limitador's limits.yaml, \
                            and\nEnvoy's rate-limit filter with the route's `rate_limits` action and \
                            `request_headers_to_remove`. Principals are\nqualified: basic:<user>, \
                            api-key:<client id>, keypair:<id>, jwt:<provider>:<subject>. Without --format, \
                            all three\n(YAML documents, `---` between them). Refused (exit 1) unless \
                            limits.scope is \"fleet\": the same limits are\nnever counted twice.\n\n\
                            Examples:\n  wasm-authn ratelimit-config config.json --format limitador > \
                            limits.yaml\n  wasm-authn ratelimit-config config.json --format envoy --domain \
                            api_gateway")]
    RatelimitConfig {
        /// The configuration (JSON, the plugin's `configuration` value), or `-` for standard input
        config: String,
        /// Only this one: `ratelimit` (envoyproxy/ratelimit), `limitador`, or `envoy`
        #[arg(long, value_enum)]
        format: Option<EngineFormat>,
        /// The rate-limit domain (Limitador's namespace); default: the configuration's
        /// limits.engine_domain (wasm_authn)
        #[arg(long)]
        domain: Option<String>,
        /// The Envoy cluster of the engine, in the `envoy` format
        #[arg(long, default_value = "ratelimit")]
        cluster: String,
    },
    /// Hash a password, read from standard input, for basic.users[].password_hash
    #[command(after_help = "The password is read from standard input, never from the command line: on a \
                            terminal it is asked for twice\nwithout echo (through `stty`); otherwise one line \
                            is read (its newline is not part of the password).\nPrints the password_hash \
                            value. bcrypt is salted and slow on purpose; sha256 is a plain digest, for\n\
                            passwords that are long random strings.\n\nExamples:\n  wasm-authn hash-password\n  \
                            printf '%s\\n' \"$PASSWORD\" | wasm-authn hash-password --cost 8\n  \
                            wasm-authn hash-password --sha256 < password.txt")]
    HashPassword {
        /// bcrypt (the default): `$2b$<cost>$...`
        #[arg(long, conflicts_with = "sha256")]
        bcrypt: bool,
        /// bcrypt cost, 4 to 12 (the filter refuses costlier hashes: one check at cost 10 takes ~75 ms
        /// of an Envoy worker, doubling with each step)
        #[arg(long, value_name = "N", conflicts_with = "sha256", default_value_t = DEFAULT_BCRYPT_COST)]
        cost: u32,
        /// SHA-256: `sha256:<hex>`
        #[arg(long)]
        sha256: bool,
    },
    /// Make a random API key and its api_keys.clients[] entry
    #[command(after_help = "The key is 32 bytes from the operating system's CSPRNG, base64url. Prints the \
                            key (the secret: hand it to\nthe client; it is not stored anywhere) and the entry \
                            for the configuration, which holds only its SHA-256.\nLines starting with `#` \
                            say which is which.\n\nExample:\n  wasm-authn new-api-key reporting")]
    NewApiKey {
        /// The client's id, its principal (no `:`, no surrounding spaces)
        client_id: String,
    },
    /// Make a JWKS for local_jwks from a PEM public key (RSA, EC P-256 or Ed25519)
    #[command(after_help = "Reads SubjectPublicKeyInfo PEM (`BEGIN PUBLIC KEY`), one or more blocks, and \
                            prints {\"keys\": [...]}\nwith one JWK for each, checked with the filter's own \
                            parser. Private keys are refused: give the public\nkey (`openssl pkey -in \
                            private.pem -pubout`). The kid defaults to the key's RFC 7638 thumbprint.\n\n\
                            Example:\n  wasm-authn jwks signing-key.pub.pem --kid 2026-01 --alg RS256")]
    Jwks {
        /// The PEM file, or `-` for standard input
        pem: String,
        /// The key id (`kid`) tokens name; default: the key's RFC 7638 thumbprint (one key only)
        #[arg(long)]
        kid: Option<String>,
        /// Bind the key to this algorithm only (RS256, RS384, RS512, PS256, PS384, PS512, ES256, EdDSA)
        #[arg(long)]
        alg: Option<String>,
    },
    /// Print the JSON Schema of the configuration (wasm-authn.schema.json), or its reference
    #[command(after_help = "The schema checks shapes and types (unknown fields, wrong types), for editors \
                            and CI; `wasm-authn check`\nruns everything the filter checks. With --markdown, \
                            the same schema as the configuration reference: every\nfield with its type, \
                            default and description.\n\nExamples:\n  \
                            wasm-authn schema > wasm-authn.schema.json\n  \
                            wasm-authn schema --markdown > docs/configuration-reference.md")]
    Schema {
        /// The reference in Markdown (docs/configuration-reference.md) instead of the JSON Schema
        #[arg(long)]
        markdown: bool,
    },
    /// Print Envoy's HTTP filter (or, with --istio, a WasmPlugin) with this configuration embedded
    #[command(after_help = "Checks the configuration as the filter does (refused: exit 1, naming the \
                            field; `X_env` fields are read\nfrom this program's environment, as `check` \
                            does), then prints it embedded, escaped for YAML:\n- Envoy: the \
                            envoy.filters.http.wasm item of the HTTP connection manager's http_filters \
                            (before the\n  router), the configuration as the JSON string Envoy hands the \
                            filter;\n- --istio: an extensions.istio.io/v1alpha1 WasmPlugin, the \
                            configuration as its pluginConfig.\nVariables named by `X_env` fields are \
                            passed to the VM (host_env_keys; Istio: vmConfig.env from HOST).\n\n\
                            Examples:\n  wasm-authn envoy config.json --module /etc/envoy/wasm_authn.wasm\n  \
                            wasm-authn envoy config.json --istio --url oci://registry.example.com/wasm-authn:0.1.0 \
                            --sha256 <make oci's WasmPlugin sha256>")]
    Envoy {
        /// The configuration (JSON, the plugin's `configuration` value), or `-` for standard input
        config: String,
        /// An Istio WasmPlugin instead of Envoy's filter
        #[arg(long)]
        istio: bool,
        /// Envoy: the module's path where Envoy runs
        #[arg(long, value_name = "PATH", default_value = "/etc/envoy/wasm_authn.wasm", conflicts_with = "istio")]
        module: String,
        /// Istio: where the proxy fetches the module (oci://, https:// or file://)
        #[arg(long, default_value = "oci://registry.example.com/wasm-authn:0.1.0", requires = "istio")]
        url: String,
        /// Istio: the digest to pin (for oci://, the "WasmPlugin sha256" `make oci` prints)
        #[arg(long, value_name = "HEX", requires = "istio")]
        sha256: Option<String>,
        /// Istio: the WasmPlugin's name
        #[arg(long, default_value = "wasm-authn", requires = "istio")]
        name: String,
        /// Istio: the WasmPlugin's namespace
        #[arg(long, requires = "istio")]
        namespace: Option<String>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum EngineFormat {
    /// envoyproxy/ratelimit's configuration file
    Ratelimit,
    /// Kuadrant Limitador's limits.yaml
    Limitador,
    /// Envoy's rate-limit filter and route settings
    Envoy,
}

/// Why a command failed: what the filter would refuse (exit 1), or a usage or I/O error (exit 2).
enum Failure {
    Refused(String),
    Usage(String),
}

type Outcome = Result<(), Failure>;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return clap_exit(&error),
    };
    let outcome = match cli.command {
        Command::Check { config } => check(&config),
        Command::RatelimitConfig { config, format, domain, cluster } => {
            ratelimit_config(&config, format, domain.as_deref(), &cluster)
        }
        Command::HashPassword { bcrypt: _, cost, sha256 } => hash_password(cost, sha256),
        Command::NewApiKey { client_id } => new_api_key(&client_id),
        Command::Jwks { pem, kid, alg } => jwks(&pem, kid, alg.as_deref()),
        Command::Schema { markdown } => schema(markdown),
        Command::Envoy { config, istio, module, url, sha256, name, namespace } => {
            let place = envoy::Placement {
                module: &module,
                url: &url,
                sha256: sha256.as_deref(),
                name: &name,
                namespace: namespace.as_deref(),
            };
            envoy_yaml(&config, istio, &place)
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Refused(message)) => {
            say(&message);
            ExitCode::from(1)
        }
        Err(Failure::Usage(message)) => {
            say(&message);
            ExitCode::from(2)
        }
    }
}

/// Help and version go to stdout (exit 0); a usage error is one line on stderr (exit 2).
fn clap_exit(error: &clap::Error) -> ExitCode {
    match error.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = error.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = error.print();
            ExitCode::from(2)
        }
        _ => {
            // clap's first paragraph, on one line: "unexpected argument '--x' found".
            let rendered = error.render().to_string();
            let first: Vec<&str> = rendered.lines().take_while(|line| !line.trim().is_empty()).map(str::trim).collect();
            let message = first.join(" ");
            say(&format!("{} (see --help)", message.trim_start_matches("error: ")));
            ExitCode::from(2)
        }
    }
}

/// One line on stderr, as the filter's own log lines start.
fn say(message: &str) {
    let _ = writeln!(io::stderr(), "wasm-authn: {message}");
}

/// Standard output. A reader that closed the pipe (`| head`) has what it wanted: not an
/// error, as for other Unix tools; any other failure to write is.
fn print(text: &str) -> Outcome {
    let mut stdout = io::stdout().lock();
    match writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => Err(Failure::Usage(format!("cannot write: {e}"))),
        _ => Ok(()),
    }
}

/// A file's bytes (`-`: standard input), at most `limit` + 1 of them.
fn read_input(name: &str, limit: usize) -> Result<Vec<u8>, Failure> {
    let mut bytes = Vec::new();
    let read = if name == "-" {
        io::stdin().lock().take(limit as u64 + 1).read_to_end(&mut bytes)
    } else {
        fs::File::open(name).and_then(|file| file.take(limit as u64 + 1).read_to_end(&mut bytes))
    };
    let shown = if name == "-" { "standard input" } else { name };
    read.map_err(|e| Failure::Usage(format!("cannot read {shown}: {e}")))?;
    Ok(bytes)
}

// ---- check ----

fn check(name: &str) -> Outcome {
    // One byte more than the filter takes, so that the filter's own size check speaks.
    let bytes = read_input(name, MAX_CONFIG_BYTES)?;
    let config = Config::from_json(&bytes).map_err(|e| Failure::Refused(format!("configuration refused: {e}")))?;
    let disabled = config.api_keys.clients.iter().filter(|client| client.disabled).count();
    let remote = config.jwt_providers.iter().filter(|provider| provider.fetch.is_some()).count();
    let introspecting = config.jwt_providers.iter().filter(|provider| provider.introspection.is_some()).count();
    // A configuration whose clients all come from the store would otherwise say "0 API clients".
    let store = if config.api_keys.remote.is_some() { " and a client store (api_keys.remote)" } else { "" };
    let user_store = if config.basic_store.is_some() { " and a user store (basic.remote)" } else { "" };
    print(&format!(
        "configuration accepted: {} Basic users{user_store}, {} API clients ({disabled} disabled){store}, {} JWT providers \
         ({remote} with remote keys, {introspecting} introspecting opaque tokens), {} route rules (bypass included)",
        config.basic_users.len(),
        config.api_keys.clients.len(),
        config.jwt_providers.len(),
        config.routes.rules.len(),
    ))
}

// ---- ratelimit-config ----

fn ratelimit_config(name: &str, format: Option<EngineFormat>, domain: Option<&str>, cluster: &str) -> Outcome {
    if domain.is_some_and(|domain| domain.is_empty() || domain.chars().any(char::is_control)) {
        return Err(Failure::Usage("--domain must be a non-empty name".into()));
    }
    let bytes = read_input(name, MAX_CONFIG_BYTES)?;
    let config = Config::from_json(&bytes).map_err(|e| Failure::Refused(format!("configuration refused: {e}")))?;
    let rules = Rules::of(&config).map_err(|e| Failure::Refused(format!("no engine rules: {e}")))?;
    let refused = |e: wasm_authn::fleet_rules::Refusal| Failure::Refused(format!("no engine rules: {e}"));
    let domain = &rules.domain_of(domain).map_err(refused)?;
    let text = match format {
        Some(EngineFormat::Ratelimit) => rules.envoy_ratelimit(domain).map_err(refused)?,
        Some(EngineFormat::Limitador) => rules.limitador(domain),
        Some(EngineFormat::Envoy) => rules.envoy(domain, cluster),
        None => {
            [rules.envoy_ratelimit(domain).map_err(refused)?, rules.limitador(domain), rules.envoy(domain, cluster)]
                .join("---\n")
        }
    };
    print(text.trim_end())
}

// ---- hash-password ----

fn hash_password(cost: u32, sha256_only: bool) -> Outcome {
    if !sha256_only && !(MIN_BCRYPT_COST..=MAX_BCRYPT_COST).contains(&cost) {
        return Err(Failure::Usage(format!(
            "--cost must be between {MIN_BCRYPT_COST} and {MAX_BCRYPT_COST} (the filter refuses costlier bcrypt hashes)"
        )));
    }
    let password = read_password()?;
    if password.is_empty() {
        return Err(Failure::Refused("empty password".into()));
    }
    if password.len() > MAX_SECRET_BYTES {
        return Err(Failure::Refused(format!("password longer than {MAX_SECRET_BYTES} bytes: the filter refuses it")));
    }
    let hash = if sha256_only {
        format!("sha256:{}", hex(&sha256(&password)))
    } else {
        if password.len() > BCRYPT_MAX_PASSWORD_BYTES {
            say(&format!("note: bcrypt reads only the first {BCRYPT_MAX_PASSWORD_BYTES} bytes of a password"));
        }
        bcrypt::hash(&password, cost).map_err(|e| Failure::Usage(format!("bcrypt failed: {e}")))?
    };
    // What the filter will parse; a hash that did not check out is never printed.
    match PasswordHash::parse(&hash) {
        Ok(parsed) if parsed.verify(&password) => print(&hash),
        _ => Err(Failure::Usage("internal error: the hash does not verify".into())),
    }
}

/// The password from standard input: asked twice without echo on a terminal, else one line.
fn read_password() -> Result<Vec<u8>, Failure> {
    let stdin = io::stdin();
    if !stdin.is_terminal() {
        let mut bytes = read_input("-", MAX_SECRET_BYTES + 2)?;
        if bytes.ends_with(b"\n") {
            bytes.pop();
            if bytes.ends_with(b"\r") {
                bytes.pop();
            }
        }
        if bytes.contains(&b'\n') {
            return Err(Failure::Refused("the password must be one line".into()));
        }
        return Ok(bytes);
    }
    let first = prompt_hidden("Password: ")?;
    let second = prompt_hidden("Retype password: ")?;
    if first != second {
        return Err(Failure::Refused("the passwords differ".into()));
    }
    Ok(first)
}

fn prompt_hidden(prompt: &str) -> Result<Vec<u8>, Failure> {
    let _ = write!(io::stderr(), "{prompt}");
    let hidden = stty("-echo");
    if !hidden {
        let _ = write!(io::stderr(), "(stty failed: the password is echoed) ");
    }
    let mut line = Vec::new();
    let read = io::stdin().lock().read_until(b'\n', &mut line);
    if hidden {
        stty("echo");
        let _ = writeln!(io::stderr());
    }
    read.map_err(|e| Failure::Usage(format!("cannot read the password: {e}")))?;
    if !line.ends_with(b"\n") {
        return Err(Failure::Usage("no password given (end of input)".into()));
    }
    line.pop();
    if line.ends_with(b"\r") {
        line.pop();
    }
    Ok(line)
}

/// Changes the terminal's mode with `stty` (on the inherited terminal), true when it did.
fn stty(mode: &str) -> bool {
    Process::new("stty")
        .arg(mode)
        .stdin(Stdio::inherit())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---- new-api-key ----

fn new_api_key(client_id: &str) -> Outcome {
    let mut secret = [0u8; API_KEY_BYTES];
    getrandom::fill(&mut secret).map_err(|e| Failure::Usage(format!("no randomness from the OS: {e}")))?;
    let key = URL_SAFE_NO_PAD.encode(secret);
    let entry = json!({"id": client_id, "key_hash": format!("sha256:{}", hex(&sha256(key.as_bytes())))});
    // The filter's own checks of the id (and of the entry as a whole).
    let config = json!({"api_keys": {"clients": [entry]}});
    if let Err(e) = Config::from_json(config.to_string().as_bytes()) {
        let message = e.message;
        return Err(Failure::Usage(format!("CLIENT_ID refused: {message}")));
    }
    let entry_line = format!(
        "{{\"id\": {}, \"key_hash\": {}}}",
        serde_json::to_string(client_id).map_err(|e| Failure::Usage(e.to_string()))?,
        entry["key_hash"]
    );
    print(&format!(
        "# the API key of {client_id:?}: the secret, hand it to the client (it is not stored anywhere)\n{key}\n\
         # its api_keys.clients[] entry for the configuration (only the key's SHA-256)\n{entry_line}"
    ))
}

// ---- jwks ----

/// The order members are printed in (the rest of each JWK follows).
const JWK_ORDER: &[&str] = &["kty", "use", "alg", "kid", "crv", "n", "e", "x", "y"];

fn jwks(name: &str, kid: Option<String>, alg: Option<&str>) -> Outcome {
    let bytes = read_input(name, MAX_CONFIG_BYTES)?;
    let shown = if name == "-" { "standard input" } else { name };
    let text = String::from_utf8(bytes).map_err(|_| Failure::Refused(format!("{shown}: not a PEM text file")))?;
    if text.contains("PRIVATE KEY") {
        return Err(Failure::Refused(format!(
            "{shown} holds a private key, which never belongs in a configuration: give its public key \
             (openssl pkey -in PRIVATE.pem -pubout -out PUBLIC.pem)"
        )));
    }
    let alg = match alg {
        None => None,
        Some(name) => {
            Some(Algorithm::from_name(name).filter(|alg| !alg.name().starts_with("HS")).ok_or_else(|| {
                Failure::Usage(format!(
                    "--alg: {name:?} is not one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, EdDSA"
                ))
            })?)
        }
    };
    // The filter's own PEM reader: the key sizes, curves and encodings it accepts.
    let set = KeySet::from_pem(&text, None)
        .map_err(|e| Failure::Refused(format!("{}: {}", e.path_under(shown), e.message)))?;
    if kid.is_some() && set.len() > 1 {
        return Err(Failure::Usage(format!("--kid names one key, and {shown} holds {}", set.len())));
    }
    let mut lines = Vec::with_capacity(set.len());
    for key in set.keys() {
        let Some(mut jwk) = key.public_jwk() else {
            return Err(Failure::Usage("internal error: not a public key".into()));
        };
        if let Some(alg) = alg {
            if !key.allows(alg) {
                let kty = jwk.get("kty").and_then(Value::as_str).unwrap_or("this");
                return Err(Failure::Usage(format!("--alg {} cannot be used with {kty} keys", alg.name())));
            }
            jwk.insert("alg".into(), alg.name().into());
        }
        let kid = kid.clone().unwrap_or_else(|| wasm_authn::jwt::thumbprint(&jwk));
        jwk.insert("kid".into(), kid.into());
        jwk.insert("use".into(), "sig".into());
        lines.push(jwk_line(&jwk));
    }
    let output = format!("{{\"keys\": [\n  {}\n]}}", lines.join(",\n  "));
    // Printed only once the filter has read it back as a local_jwks.
    let parsed: Value = serde_json::from_str(&output).map_err(|e| Failure::Usage(format!("internal error: {e}")))?;
    KeySet::from_jwks(&parsed)
        .map_err(|e| Failure::Usage(format!("internal error: {}: {}", e.path_under("local_jwks"), e.message)))?;
    print(&output)
}

/// One JWK on one line, its members in the usual order.
fn jwk_line(jwk: &Map<String, Value>) -> String {
    let rank = |name: &str| JWK_ORDER.iter().position(|known| *known == name).unwrap_or(JWK_ORDER.len());
    let mut pairs: Vec<(&String, &Value)> = jwk.iter().collect();
    pairs.sort_by_key(|(name, _)| rank(name));
    let members: Vec<String> =
        pairs.iter().map(|(name, value)| format!("{}: {value}", Value::from(name.as_str()))).collect();
    format!("{{{}}}", members.join(", "))
}

// ---- schema ----

fn schema(markdown: bool) -> Outcome {
    let schema = json_schema();
    if markdown {
        return print(reference::markdown(&schema).trim_end());
    }
    let text = serde_json::to_string_pretty(&schema).map_err(|e| Failure::Usage(e.to_string()))?;
    print(&text)
}

// ---- envoy ----

fn envoy_yaml(name: &str, istio: bool, place: &envoy::Placement) -> Outcome {
    if let Some(sha256) = place.sha256 {
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(Failure::Usage("--sha256 must be 64 lowercase hex digits, without `sha256:`".into()));
        }
    }
    let bytes = read_input(name, MAX_CONFIG_BYTES)?;
    Config::from_json(&bytes).map_err(|e| Failure::Refused(format!("configuration refused: {e}")))?;
    let mut config: envoy::Node =
        serde_json::from_slice(&bytes).map_err(|e| Failure::Usage(format!("internal error: {e}")))?;
    // An editor's schema reference means nothing inside Envoy's configuration.
    if let envoy::Node::Object(members) = &mut config {
        members.retain(|(field, _)| field != "$schema");
    }
    let text = if istio { envoy::istio_wasmplugin(&config, place) } else { envoy::envoy_filter(&config, place) };
    print(text.trim_end())
}
