//! The `wasm-authn` command-line companion, run as a program (the binary cargo builds
//! for these tests), its outputs read back with the filter's own code.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use wasm_authn::config::Config;
use wasm_authn::password::PasswordHash;

const SCHEMA_FILE: &str = "wasm-authn.schema.json";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(args: &[&str], stdin: &[u8]) -> Run {
    run_with_env(args, stdin, &[])
}

fn run_with_env(args: &[&str], stdin: &[u8], vars: &[(&str, &str)]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wasm-authn"))
        .args(args)
        .envs(vars.iter().copied())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command that refuses its arguments exits without reading: a broken pipe here is fine.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().expect("exited"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn repo_file(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

/// A configuration with one JWT provider whose keys are `jwks`.
fn config_with_jwks(jwks: &Value) -> Vec<u8> {
    json!({"jwt": {"providers": [{"name": "p", "issuer": "https://i", "local_jwks": jwks}]}}).to_string().into_bytes()
}

#[test]
fn the_checked_in_schema_is_up_to_date() {
    let r = run(&["schema"], b"");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let generated: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(generated["$schema"], "https://json-schema.org/draft/2020-12/schema");
    assert_eq!(generated["properties"]["$schema"]["type"], json!(["string", "null"]));
    assert!(
        repo_file(SCHEMA_FILE) == r.stdout,
        "{SCHEMA_FILE} is out of date with src/config/schema.rs: regenerate it with `make schema` \
         (cargo run --bin wasm-authn -- schema > {SCHEMA_FILE}) and commit it"
    );
}

// ---- check ----

#[test]
fn check_accepts_what_the_filter_accepts() {
    let guide = repo_file("docs/configuration.md");
    let start = guide.find("\n## Every field in one example").unwrap();
    let block = &guide[start..];
    let block = &block[block.find("```json\n").unwrap() + 8..];
    let example = &block[..block.find("```").unwrap()];
    let r = run(&["check", "-"], example.as_bytes());
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    assert!(r.stdout.starts_with("configuration accepted: 3 Basic users, 2 API clients (1 disabled)"), "{}", r.stdout);
    let r = run(&["check", "tests/keys/../../README.md"], b"");
    assert_eq!(r.code, 1, "a README is no configuration");
}

#[test]
fn check_refuses_with_the_filters_message() {
    for config in [
        r#"{"basic": {"users": [{"name": "a", "password_hash": "hunter2"}]}}"#,
        r#"{"realm": "api"}"#,
        r#"{"realms": "api", "basic": {}}"#,
        r#"{"basic": {"users": ["#,
        "",
    ] {
        let r = run(&["check", "-"], config.as_bytes());
        let expected = Config::from_json(config.as_bytes()).unwrap_err();
        assert_eq!(r.code, 1, "{config}");
        assert_eq!(r.stderr, format!("wasm-authn: configuration refused: {expected}\n"));
        assert_eq!(r.stdout, "");
        assert!(!r.stderr.contains("hunter2"));
    }
}

#[test]
fn check_reads_env_secrets_from_its_own_environment() {
    let config = br#"{"basic": {"users": [{"name": "a", "password_hash_env": "WASM_AUTHN_TEST_HASH"}]}}"#;
    let hash = "sha256:2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b";
    let r = run_with_env(&["check", "-"], config, &[("WASM_AUTHN_TEST_HASH", hash)]);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    let r = run(&["check", "-"], config);
    let expected = "wasm-authn: configuration refused: basic.users[0].password_hash_env: \
                    environment variable WASM_AUTHN_TEST_HASH is not set\n";
    assert_eq!((r.code, r.stderr.as_str()), (1, expected));
    let r = run_with_env(&["check", "-"], config, &[("WASM_AUTHN_TEST_HASH", "hunter2")]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("password_hash_env: unsupported hash format") && !r.stderr.contains("hunter2"));
}

#[test]
fn check_usage_and_io_errors_exit_2_with_one_line() {
    for args in [&["check"][..], &["check", "no/such/file.json"], &["check", "a", "b"], &["frobnicate"], &[]] {
        let r = run(args, b"");
        assert_eq!(r.code, 2, "{args:?}");
        if !args.is_empty() {
            assert_eq!(r.stderr.lines().count(), 1, "{args:?}: {}", r.stderr);
            assert!(r.stderr.starts_with("wasm-authn: "), "{}", r.stderr);
        }
    }
}

#[test]
fn every_command_has_help() {
    for command in ["check", "hash-password", "new-api-key", "jwks", "schema", "envoy", "ratelimit-config"] {
        let r = run(&[command, "--help"], b"");
        assert_eq!(r.code, 0);
        assert!(r.stdout.contains(&format!("Usage: wasm-authn {command}")), "{}", r.stdout);
        assert!(r.stdout.contains("Example"), "{command} --help shows an example");
    }
    let r = run(&["--help"], b"");
    assert!(r.stdout.contains("Exit status: 0 done, 1 refused"), "{}", r.stdout);
}

// ---- hash-password ----

#[test]
fn hash_password_sha256_reads_one_line() {
    for input in [&b"secret\n"[..], b"secret", b"secret\r\n"] {
        let r = run(&["hash-password", "--sha256"], input);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(r.stdout, "sha256:2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b\n");
    }
}

#[test]
fn hash_password_bcrypt_is_what_the_filter_verifies() {
    let r = run(&["hash-password", "--bcrypt", "--cost", "4"], b"bob:with:colons\n");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let hash = PasswordHash::parse(r.stdout.trim_end()).unwrap();
    assert_eq!(hash.bcrypt_cost(), Some(4));
    assert!(hash.verify(b"bob:with:colons"));
    assert!(!hash.verify(b"bob:with:colons\n"));
    // Salted: the same password hashes differently.
    assert_ne!(
        run(&["hash-password", "--cost", "4"], b"x").stdout,
        run(&["hash-password", "--cost", "4"], b"x").stdout
    );
}

#[test]
fn hash_password_default_is_bcrypt_cost_10() {
    let r = run(&["hash-password"], b"alice-S3cret!");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.starts_with("$2b$10$"), "{}", r.stdout);
    let config = json!({"basic": {"users": [{"name": "alice", "password_hash": r.stdout.trim_end()}]}});
    Config::from_json(config.to_string().as_bytes()).unwrap();
}

#[test]
fn hash_password_refusals() {
    let cost_13 = run(&["hash-password", "--cost", "13"], b"x");
    assert_eq!(cost_13.code, 2);
    assert!(cost_13.stderr.contains("between 4 and 12"), "{}", cost_13.stderr);
    assert_eq!(run(&["hash-password", "--cost", "3"], b"x").code, 2);
    assert_eq!(run(&["hash-password", "--sha256", "--bcrypt"], b"x").code, 2);
    assert_eq!(run(&["hash-password", "--sha256", "--cost", "5"], b"x").code, 2);
    assert_eq!(run(&["hash-password", "hunter2"], b"").code, 2, "never a password on the command line");
    for input in [&b""[..], b"\n", b"two\nlines\n", &[b'a'; 1025]] {
        let r = run(&["hash-password", "--sha256"], input);
        assert_eq!(r.code, 1, "{input:?}");
        assert_eq!(r.stdout, "");
    }
    let long = run(&["hash-password", "--cost", "4"], &[b'a'; 100]);
    assert_eq!(long.code, 0);
    assert!(long.stderr.contains("only the first 72 bytes"), "{}", long.stderr);
}

// ---- new-api-key ----

#[test]
fn new_api_key_prints_the_secret_and_its_entry() {
    let r = run(&["new-api-key", "reporting"], b"");
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", r.stdout);
    assert!(lines[0].starts_with('#') && lines[0].contains("the secret"), "{}", lines[0]);
    assert!(lines[2].starts_with('#') && lines[2].contains("api_keys.clients[]"), "{}", lines[2]);
    let key = lines[1];
    assert_eq!(URL_SAFE_NO_PAD.decode(key).unwrap().len(), 32);
    let entry: Value = serde_json::from_str(lines[3]).unwrap();
    assert_eq!(entry["id"], "reporting");
    let config = json!({"api_keys": {"clients": [entry]}});
    let config = Config::from_json(config.to_string().as_bytes()).unwrap();
    let hash = PasswordHash::parse(entry["key_hash"].as_str().unwrap()).unwrap();
    assert!(hash.verify(key.as_bytes()));
    assert_eq!(config.api_keys.clients.get(0).unwrap().id, "reporting");
    let other = run(&["new-api-key", "reporting"], b"");
    assert_ne!(other.stdout.lines().nth(1), Some(key), "random");
}

#[test]
fn new_api_key_refuses_an_id_the_filter_refuses() {
    for id in ["a:b", " padded", ""] {
        let r = run(&["new-api-key", id], b"");
        assert_eq!(r.code, 2, "{id:?}");
        assert!(r.stderr.contains("CLIENT_ID refused: must be non-empty, without ':'"), "{}", r.stderr);
        assert_eq!(r.stdout, "", "no key is printed");
    }
}

// ---- jwks ----

#[test]
fn jwks_of_each_key_type_is_accepted_by_the_filter() {
    let fixtures: Value = serde_json::from_str(&repo_file("tests/keys/public_jwks.json")).unwrap();
    for (pem, fixture, alg) in [
        ("rsa2048_public", "rsa2048", "RS256"),
        ("ec_p256_public", "ec_p256", "ES256"),
        ("ed25519_public", "ed25519", "EdDSA"),
    ] {
        let path = format!("tests/keys/{pem}.pem");
        let r = run(&["jwks", &path], b"");
        assert_eq!(r.code, 0, "{pem}: {}", r.stderr);
        let jwks: Value = serde_json::from_str(&r.stdout).unwrap();
        Config::from_json(&config_with_jwks(&jwks)).unwrap();
        let jwk = &jwks["keys"][0];
        assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
        for (member, value) in fixtures[fixture].as_object().unwrap() {
            assert_eq!(&jwk[member], value, "{pem}.{member}");
        }
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["kid"].as_str().unwrap().len(), 43, "the RFC 7638 thumbprint");
        assert!(jwk.get("alg").is_none());

        let r = run(&["jwks", "-", "--kid", "k-1", "--alg", alg], repo_file(&path).as_bytes());
        assert_eq!(r.code, 0, "{pem}: {}", r.stderr);
        let jwks: Value = serde_json::from_str(&r.stdout).unwrap();
        Config::from_json(&config_with_jwks(&jwks)).unwrap();
        assert_eq!((&jwks["keys"][0]["kid"], &jwks["keys"][0]["alg"]), (&json!("k-1"), &json!(alg)));
    }
}

#[test]
fn jwks_thumbprint_is_rfc_7638() {
    // RFC 7638 section 3.1's example key, as SubjectPublicKeyInfo PEM.
    let pem = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA0vx7agoebGcQSuuPiLJX
ZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tS
oc/BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ/2W+5JsGY4Hc5n9yBXArwl93lqt
7/RN5w6Cf0h4QyQ5v+65YGjQR0/FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0
zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt+bFTWhAI4vMQFh6WeZu0f
M4lFd2NcRwr3XPksINHaQ+G/xBniIqbw0Ls1jF44+csFCur+kEgU8awapJzKnqDK
gwIDAQAB
-----END PUBLIC KEY-----
";
    let r = run(&["jwks", "-"], pem.as_bytes());
    assert_eq!(r.code, 0, "{}", r.stderr);
    let jwks: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(jwks["keys"][0]["kid"], "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
}

#[test]
fn jwks_refuses_private_keys_and_keys_the_filter_refuses() {
    for private in ["rsa2048_private", "ec_p256_private", "ed25519_private"] {
        let path = format!("tests/keys/{private}.pem");
        let r = run(&["jwks", &path], b"");
        assert_eq!(r.code, 1, "{private}");
        assert_eq!(r.stdout, "");
        assert!(r.stderr.contains("holds a private key") && r.stderr.contains("-pubout"), "{}", r.stderr);
        let material = repo_file(&path).lines().nth(1).unwrap().to_string();
        assert!(!r.stderr.contains(&material), "never echoes key material");
    }
    let r = run(&["jwks", "tests/keys/ec_p521_public.pem"], b"");
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (1, "wasm-authn: tests/keys/ec_p521_public.pem: unsupported EC curve: P-256 and P-384 are supported\n")
    );
    let r = run(&["jwks", "tests/keys/ec_p384_public.pem"], b"");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("\"crv\": \"P-384\"") || r.stdout.contains("\"crv\":\"P-384\""), "{}", r.stdout);
    let certificate = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    assert!(run(&["jwks", "-"], certificate.as_bytes()).stderr.contains("certificates are not supported"));
    let r = run(&["jwks", "tests/keys/ec_p256_public.pem", "--alg", "RS256"], b"");
    assert_eq!((r.code, r.stderr.as_str()), (2, "wasm-authn: --alg RS256 cannot be used with EC keys\n"));
    assert_eq!(run(&["jwks", "tests/keys/ec_p256_public.pem", "--alg", "HS256"], b"").code, 2);
    assert_eq!(run(&["jwks", "tests/keys/missing.pem"], b"").code, 2);
}

#[test]
fn jwks_of_several_blocks_is_one_jwk_each() {
    let pems = repo_file("tests/keys/rsa2048_public.pem") + &repo_file("tests/keys/ed25519_public.pem");
    let r = run(&["jwks", "-"], pems.as_bytes());
    assert_eq!(r.code, 0, "{}", r.stderr);
    let jwks: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
    Config::from_json(&config_with_jwks(&jwks)).unwrap();
    assert_eq!(run(&["jwks", "-", "--kid", "one"], pems.as_bytes()).code, 2, "one kid for two keys");
}

// ---- schema --markdown: the configuration reference ----

const REFERENCE_FILE: &str = "docs/configuration-reference.md";

/// The reference's rows: (field path, type, default, description).
fn reference_rows(markdown: &str) -> Vec<[String; 4]> {
    markdown
        .lines()
        .filter(|line| line.starts_with("| `"))
        .map(|line| {
            let cells: Vec<String> = line.trim_matches('|').split(" | ").map(|cell| cell.trim().to_string()).collect();
            assert_eq!(cells.len(), 4, "{line}");
            [cells[0].clone(), cells[1].clone(), cells[2].clone(), cells[3].clone()]
        })
        .collect()
}

#[test]
fn the_configuration_reference_is_up_to_date() {
    let r = run(&["schema", "--markdown"], b"");
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    assert!(
        repo_file(REFERENCE_FILE) == r.stdout,
        "{REFERENCE_FILE} is out of date with src/config/schema.rs: regenerate it with `make schema` \
         (cargo run --bin wasm-authn -- schema --markdown > {REFERENCE_FILE}) and commit it"
    );
}

#[test]
fn the_configuration_reference_describes_every_field_of_the_schema() {
    let rows = reference_rows(&run(&["schema", "--markdown"], b"").stdout);
    for [path, kind, default, description] in &rows {
        assert!(
            !description.is_empty(),
            "{path} has no description: give its field a doc comment in src/config/schema.rs"
        );
        assert!(!kind.is_empty() && !default.is_empty(), "{path}");
    }
    let paths: Vec<&str> = rows.iter().map(|row| row[0].trim_matches('`')).collect();
    for expected in [
        "realm",
        "filter_state",
        "basic.users[].password_hash",
        "jwt.providers[].remote_jwks.refresh_seconds",
        "limits.scope",
        "token_endpoint.signing_key_env",
        "revocation.remote.cluster",
        "rules[].match.host",
    ] {
        assert!(paths.contains(&expected), "{expected} missing from the reference");
    }
    // Every field of every object type of the schema is a row (by its last name).
    let schema: Value = serde_json::from_str(&repo_file(SCHEMA_FILE)).unwrap();
    let mut objects = vec![&schema];
    objects.extend(schema["$defs"].as_object().unwrap().values());
    for object in objects {
        for name in object.get("properties").and_then(Value::as_object).into_iter().flat_map(|p| p.keys()) {
            assert!(
                paths.iter().any(|path| path.rsplit('.').next() == Some(name.as_str())),
                "the schema's field {name} is missing from the reference"
            );
        }
    }
    // Defaults come from the same types the filter reads.
    let row = |path: &str| rows.iter().find(|row| row[0] == format!("`{path}`")).unwrap().clone();
    assert_eq!(row("bypass_cors_preflight")[2], "`false`");
    assert_eq!(row("filter_state")[2], "`false`");
    assert_eq!(row("basic.users[].name")[2], "required");
    assert_eq!(row("cache.max_entries")[2], "`4096`");
}

// ---- envoy ----

/// The JSON under `value: |` in the printed filter block.
fn embedded_json(yaml: &str) -> Value {
    let start = yaml.find("        value: |\n").expect("a value block") + "        value: |\n".len();
    let text: String = yaml[start..]
        .lines()
        .take_while(|line| line.starts_with("          "))
        .map(|line| format!("{}\n", &line[10..]))
        .collect();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn envoy_embeds_the_configuration_it_checked() {
    // Written in an order of its own, with what YAML and JSON must escape.
    let config = r##"{
      "$schema": "./wasm-authn.schema.json",
      "realm": "d\u00e9mo",
      "bypass": [{"path_prefix": "/healthz"}],
      "basic": {"htpasswd": "# \"quoted\" \\ | é 😀 \t\ncarol:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=\n"}
    }"##;
    let r = run(&["envoy", "-", "--module", "/srv/wasm authn.wasm"], config.as_bytes());
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    assert!(r.stdout.contains("- name: envoy.filters.http.wasm\n"), "{}", r.stdout);
    assert!(r.stdout.contains("filename: \"/srv/wasm authn.wasm\"\n"), "{}", r.stdout);
    assert!(r.stdout.contains("allow_on_headers_stop_iteration: true"));
    assert!(!r.stdout.contains("environment_variables"), "no _env field, no variables");
    assert!(r.stdout.is_ascii(), "everything else is escaped");
    let mut expected: Value = serde_json::from_str(config).unwrap();
    expected.as_object_mut().unwrap().remove("$schema");
    assert_eq!(embedded_json(&r.stdout), expected);
    // The members keep the order they were written in.
    let realm = r.stdout.find("\"realm\"").unwrap();
    assert!(realm < r.stdout.find("\"bypass\"").unwrap() && r.stdout.find("\"bypass\"") < r.stdout.find("\"basic\""));
    // What Envoy hands the filter loads as the file did.
    assert!(Config::from_json(embedded_json(&r.stdout).to_string().as_bytes()).is_ok());
}

#[test]
fn envoy_passes_the_variables_env_fields_name() {
    let hash = "sha256:2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b";
    let config = json!({"basic": {"users": [{"name": "alice", "password_hash_env": "ALICE_HASH"}]}}).to_string();
    let r = run_with_env(&["envoy", "-"], config.as_bytes(), &[("ALICE_HASH", hash)]);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    assert!(
        r.stdout.contains("environment_variables:\n          host_env_keys:\n          - \"ALICE_HASH\"\n"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains(hash), "the value stays in the environment");
    let r = run_with_env(&["envoy", "-", "--istio"], config.as_bytes(), &[("ALICE_HASH", hash)]);
    assert!(
        r.stdout.contains("  vmConfig:\n    env:\n    - name: \"ALICE_HASH\"\n      valueFrom: HOST\n"),
        "{}",
        r.stdout
    );
}

#[test]
fn envoy_refuses_an_invalid_configuration_naming_the_field() {
    let config = r#"{"basic": {"users": [{"name": "bob", "password_hash": "hunter2"}]}}"#;
    for args in [&["envoy", "-"][..], &["envoy", "-", "--istio"]] {
        let r = run(args, config.as_bytes());
        assert_eq!(r.code, 1);
        assert_eq!(r.stdout, "");
        assert!(
            r.stderr.starts_with(
                "wasm-authn: configuration refused: basic.users[0].password_hash: unsupported hash format"
            ),
            "{}",
            r.stderr
        );
        assert!(!r.stderr.contains("hunter2"));
    }
    let r = run(
        &["envoy", "-"],
        br#"{"basic": {"users": [{"name": "alice", "password_hash_env": "UNSET_IN_THIS_TEST"}]}}"#,
    );
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("basic.users[0].password_hash_env: environment variable UNSET_IN_THIS_TEST is not set"),
        "{}",
        r.stderr
    );
}

#[test]
fn envoy_istio_prints_a_wasmplugin() {
    let config = json!({
        "realm": "api",
        "jwt": {"providers": [{"name": "p", "issuer": "https://i", "local_jwks": {"keys": [{
            "kty": "EC", "crv": "P-256",
            "x": "S1girUZOIM7_kImgnEZIBoEVwe8GL6tspQuP1Gim26g", "y": "9lP4gV-78XxToEXjh4HmiNpkoKDf8GW81wWSMnFGodc"}]}}]},
    });
    let sha = "a".repeat(64);
    let args =
        ["envoy", "-", "--istio", "--url", "oci://r.example/wasm-authn:1", "--sha256", &sha, "--namespace", "shop"];
    let r = run(&args, config.to_string().as_bytes());
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    for line in [
        "apiVersion: extensions.istio.io/v1alpha1\n",
        "kind: WasmPlugin\n",
        "  namespace: \"shop\"\n",
        "  url: \"oci://r.example/wasm-authn:1\"\n",
        &format!("  sha256: \"{sha}\"\n"),
        "  phase: AUTHN\n",
        "  pluginConfig:\n    jwt:\n      providers:\n      - issuer: \"https://i\"\n        local_jwks:\n",
        "    realm: \"api\"\n",
        // YAML 1.1 readers (Kubernetes') take a plain y for true.
        "            \"y\": \"9lP4gV-78XxToEXjh4HmiNpkoKDf8GW81wWSMnFGodc\"\n",
    ] {
        assert!(r.stdout.contains(line), "{line:?} missing from\n{}", r.stdout);
    }
    let r = run(&["envoy", "-", "--istio", "--sha256", "sha256:abc"], config.to_string().as_bytes());
    assert_eq!(r.code, 2, "{}", r.stderr);
    let r = run(&["envoy", "-", "--url", "oci://x"], config.to_string().as_bytes());
    assert_eq!(r.code, 2, "--url is Istio's");
}
