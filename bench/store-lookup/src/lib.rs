//! Issue 18.3's two designs of a client store, and nothing else: a request's
//! `x-api-key` is hashed (SHA-256) and its client looked up
//!
//! - `map:<N>`: in a map each worker's VM builds (what `api_keys.remote` does:
//!   every VM parses the document into its own map);
//! - `shared:<N>`: in Envoy's shared data, one entry per client written once per
//!   Envoy (the first VM to configure writes them), read per request and decoded.
//!
//! The N clients are `key-<i>` -> `client-<i>` with a privileges record of about the
//! size wasm-authn keeps (methods, paths, scopes, limits). Found: the request
//! continues with `x-auth-principal`; not found: 401.

use std::collections::HashMap;
use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use sha2::{Digest, Sha256};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { store: None }) });
}}

/// A client as the filter would keep it: its id and privileges.
#[derive(Clone)]
struct Client {
    id: String,
    methods: Vec<String>,
    paths: Vec<String>,
    scopes: Vec<String>,
    requests_per_hour: u64,
}

impl Client {
    fn of(i: usize) -> Client {
        Client {
            id: format!("client-{i}"),
            methods: vec!["GET".into(), "POST".into()],
            paths: vec!["/api/".into()],
            scopes: vec!["orders:read".into(), "orders:write".into()],
            requests_per_hour: 1000,
        }
    }

    /// `id|methods|paths|scopes|limit`, lists comma-separated: what a shared-data entry holds.
    fn encode(&self) -> Vec<u8> {
        format!(
            "{}|{}|{}|{}|{}",
            self.id,
            self.methods.join(","),
            self.paths.join(","),
            self.scopes.join(","),
            self.requests_per_hour
        )
        .into_bytes()
    }

    fn decode(bytes: &[u8]) -> Option<Client> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut fields = text.split('|');
        let list = |field: Option<&str>| -> Option<Vec<String>> {
            Some(field?.split(',').filter(|s| !s.is_empty()).map(String::from).collect())
        };
        Some(Client {
            id: fields.next()?.to_string(),
            methods: list(fields.next())?,
            paths: list(fields.next())?,
            scopes: list(fields.next())?,
            requests_per_hour: fields.next()?.parse().ok()?,
        })
    }
}

fn digest(key: &[u8]) -> [u8; 32] {
    Sha256::digest(key).into()
}

fn shared_key(digest: &[u8; 32]) -> String {
    let mut key = String::with_capacity(2 + 64);
    key.push_str("c/");
    for b in digest {
        key.push_str(&format!("{b:02x}"));
    }
    key
}

enum Store {
    Map(HashMap<[u8; 32], Rc<Client>>),
    Shared,
}

struct Root {
    store: Option<Rc<Store>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let configuration = self.get_plugin_configuration().unwrap_or_default();
        let text = String::from_utf8_lossy(&configuration);
        let text = text.trim_matches('"');
        let Some((mode, n)) = text.split_once(':') else { return false };
        let Ok(n) = n.parse::<usize>() else { return false };
        let store = match mode {
            "map" => {
                Store::Map((0..n).map(|i| (digest(format!("key-{i}").as_bytes()), Rc::new(Client::of(i)))).collect())
            }
            "shared" => {
                // One VM writes the entries; the others find the marker (compare-and-swap on create).
                let marker = format!("written/{n}");
                if hostcalls::set_shared_data(&marker, Some(b"1"), Some(0)).is_ok() {
                    for i in 0..n {
                        let key = shared_key(&digest(format!("key-{i}").as_bytes()));
                        let _ = hostcalls::set_shared_data(&key, Some(&Client::of(i).encode()), None);
                    }
                }
                Store::Shared
            }
            _ => return false,
        };
        self.store = Some(Rc::new(store));
        true
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Lookup { store: self.store.clone()? }))
    }
}

struct Lookup {
    store: Rc<Store>,
}

impl Context for Lookup {}

impl HttpContext for Lookup {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let key = self.get_http_request_header("x-api-key").unwrap_or_default();
        let digest = digest(key.as_bytes());
        let client = match self.store.as_ref() {
            Store::Map(map) => map.get(&digest).cloned(),
            Store::Shared => match hostcalls::get_shared_data(&shared_key(&digest)) {
                Ok((Some(bytes), _)) => Client::decode(&bytes).map(Rc::new),
                _ => None,
            },
        };
        match client {
            Some(client) => {
                self.set_http_request_header("x-auth-principal", Some(&client.id));
                Action::Continue
            }
            None => {
                self.send_http_response(401, vec![], None);
                Action::Pause
            }
        }
    }
}
