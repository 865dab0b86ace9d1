//! Cost against the size of the configuration (issue 18): N = 10, 10,000 and 100,000
//! API clients and Basic users (a valid credential repeated, valid credentials cycling
//! through all N, unknown ones), the time to load them, and 1,000 route rules against
//! none. Prints Markdown tables, nanoseconds (load: milliseconds). Every call goes
//! through `Verifier::authenticate` with the bench's cache (4,096 entries, as `make
//! bench` configures), so cycling populations larger than the cache miss it.

use std::time::Instant;

use serde_json::json;

use wasm_authn::config::Config;
use wasm_authn::path::normalize;
use wasm_authn::pipeline::authenticate::Verifier;
use wasm_authn::pipeline::credential::{self, Credential};
use wasm_authn::request::RequestFacts;
use wasm_authn::{header_map, plugin::Plugin};

use crate::{sha256_hex, Host, NOW_MS, NO_SOURCE};

const SIZES: [usize; 3] = [10, 10_000, 100_000];
/// Unknown credentials per size, each used once (more than the timed calls).
const UNKNOWN: usize = 20_000;

/// Nanoseconds per call: batches sized to ~10 ms (a scan of 100,000 clients takes
/// milliseconds a call), one to warm up, the median of 7.
fn time<T>(mut f: impl FnMut() -> T) -> f64 {
    let start = Instant::now();
    for _ in 0..3 {
        std::hint::black_box(f());
    }
    let estimate = start.elapsed().as_nanos() as f64 / 3.0;
    let batch = ((10_000_000.0 / estimate.max(1.0)) as usize).clamp(1, 2000);
    let mut samples: Vec<f64> = (0..8)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..batch {
                std::hint::black_box(f());
            }
            start.elapsed().as_nanos() as f64 / batch as f64
        })
        .skip(1)
        .collect();
    samples.sort_by(|a, b| a.total_cmp(b));
    samples[samples.len() / 2]
}

/// Milliseconds to compile a configuration; None when it is refused.
fn load(text: &str) -> (Option<f64>, Option<Config>) {
    let start = Instant::now();
    match Config::from_json(text.as_bytes()) {
        Ok(config) => (Some(start.elapsed().as_secs_f64() * 1000.0), Some(config)),
        Err(error) => {
            eprintln!("scale: refused ({} bytes): {error}", text.len());
            (None, None)
        }
    }
}

fn ms(value: Option<f64>) -> String {
    value.map_or("refused".into(), |ms| format!("{ms:.0}"))
}

/// Cycling through `credentials`: one `authenticate` per call, the next credential each time
/// (a fresh host: the failures other rows counted are not in its shared data).
fn cycling(config: &Config, credentials: &[Credential]) -> f64 {
    let host = Host::default();
    let host = &host;
    let mut verifier = Verifier::new(config);
    let mut next = 0;
    time(|| {
        next = (next + 1) % credentials.len();
        credentials.get(next).map(|credential| {
            verifier
                .authenticate(config, &wasm_authn::fetched::Fetched::new(config), credential, NO_SOURCE, host, NOW_MS)
                .is_ok()
        })
    })
}

fn api_key(key: String) -> Credential {
    Credential::ApiKey { key, source: credential::ApiKeySource::Header("x-api-key".into()) }
}

fn basic(user: String, password: String) -> Credential {
    Credential::Basic { user, password }
}

pub fn run() {
    println!();
    println!("### Cost against the number of API clients and users (ns per authenticate; load in ms)");
    println!();
    println!("| N | API key: valid, repeated | valid, cycling through N | unknown | load N clients (`clients[]`) | load N clients (`clients_lines`) | Basic {{sha256}}: valid, repeated | valid, cycling | unknown user | load N users (`htpasswd`) |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for n in SIZES {
        let hashes: Vec<String> = (0..n).map(|i| format!("sha256:{}", sha256_hex(&format!("key-{i}")))).collect();
        let objects: Vec<serde_json::Value> =
            (0..n).map(|i| json!({"id": format!("client-{i}"), "key_hash": hashes[i]})).collect();
        let (load_objects, config) =
            load(&json!({"api_keys": {"headers": ["x-api-key"], "clients": objects}}).to_string());
        let lines: String = (0..n).map(|i| format!("client-{i}:{}\n", hashes[i])).collect();
        let (load_lines, _) =
            load(&json!({"api_keys": {"headers": ["x-api-key"], "clients_lines": lines}}).to_string());
        let (repeated, cycled, unknown) = match &config {
            Some(config) => {
                let one = [api_key("key-0".into())];
                let valid: Vec<Credential> = (0..n).map(|i| api_key(format!("key-{i}"))).collect();
                let strangers: Vec<Credential> = (0..UNKNOWN).map(|i| api_key(format!("unknown-{i}"))).collect();
                (
                    format!("{:.0}", cycling(config, &one)),
                    format!("{:.0}", cycling(config, &valid)),
                    format!("{:.0}", cycling(config, &strangers)),
                )
            }
            None => ("refused".into(), "refused".into(), "refused".into()),
        };
        let htpasswd: String = (0..n).map(|i| format!("user-{i}:{}\n", hashes[i])).collect();
        let (load_users, users) = load(&json!({"basic": {"htpasswd": htpasswd}}).to_string());
        let (user_repeated, user_cycled, user_unknown) = match &users {
            Some(config) => {
                let one = [basic("user-0".into(), "key-0".into())];
                let valid: Vec<Credential> = (0..n).map(|i| basic(format!("user-{i}"), format!("key-{i}"))).collect();
                let strangers: Vec<Credential> =
                    (0..UNKNOWN).map(|i| basic(format!("nobody-{i}"), "key-0".into())).collect();
                (
                    format!("{:.0}", cycling(config, &one)),
                    format!("{:.0}", cycling(config, &valid)),
                    format!("{:.0}", cycling(config, &strangers)),
                )
            }
            None => ("refused".into(), "refused".into(), "refused".into()),
        };
        println!(
            "| {n} | {repeated} | {cycled} | {unknown} | {} | {} | {user_repeated} | {user_cycled} | {user_unknown} | {} |",
            ms(load_objects),
            ms(load_lines),
            ms(load_users)
        );
    }
    rules();
}

/// Rule selection and the whole request with no rules and with 1,000: one per service
/// (`/service-i`, the first segment tells them apart), and 1,000 under one prefix
/// (`/api/v1/resource-i`, the third does).
fn rules() {
    let key = "rules-bench-key";
    let client = json!([{"id": "client", "key_hash": format!("sha256:{}", sha256_hex(key))}]);
    let config_with = |rules: Vec<serde_json::Value>| {
        Config::from_json(
            json!({"api_keys": {"headers": ["x-api-key"], "clients": client}, "rules": rules}).to_string().as_bytes(),
        )
    };
    let services: Vec<serde_json::Value> =
        (0..1000).map(|i| json!({"match": {"path_prefix": format!("/service-{i}")}, "require": ["api-key"]})).collect();
    let resources: Vec<serde_json::Value> = (0..1000)
        .map(|i| json!({"match": {"path_prefix": format!("/api/v1/resource-{i}")}, "require": ["api-key"]}))
        .collect();
    let cases = [
        ("no rules", Vec::new(), "/orders/12345"),
        ("1,000 rules `/service-i`, the last matches", services.clone(), "/service-999/orders/12345"),
        ("1,000 rules `/service-i`, none matches", services, "/orders/12345"),
        ("1,000 rules `/api/v1/resource-i`, the last matches", resources.clone(), "/api/v1/resource-999/12345"),
        ("1,000 rules `/api/v1/resource-i`, none matches", resources, "/api/v1/orders/12345"),
    ];
    println!();
    println!("| route rules | select the rule (ns) | the whole request (ns) |");
    println!("|---|---:|---:|");
    for (label, rules, path) in cases {
        let Ok(config) = config_with(rules) else {
            println!("| {label} | refused | refused |");
            continue;
        };
        let pairs = [(":authority", "api.example.com"), (":path", path), (":method", "GET"), ("x-api-key", key)];
        let bytes = header_map::encode(&pairs);
        let headers = header_map::decode(&bytes).unwrap_or_default();
        let request = RequestFacts::from_headers(&headers);
        let select = time(|| config.routes.select(&request, &normalize(request.path)).scopes.len());
        let mut plugin = Plugin::new(config);
        let mut host = Host::default();
        let mut context = 0u32;
        let whole = time(|| {
            context = context.wrapping_add(1);
            let headers = header_map::decode(&bytes).unwrap_or_default();
            let request = RequestFacts::from_headers(&headers);
            let step = plugin.on_request_headers(&mut host, context, &request, NOW_MS);
            plugin.on_stream_end(&mut host, context);
            matches!(step, wasm_authn::pipeline::stream::Step::Continue(_))
        });
        println!("| {label} | {select:.0} | {whole:.0} |");
    }
}
