//! `ratelimit-server`: Kuadrant's Limitador behind Envoy's rate limit service
//! (`envoy.service.ratelimit.v3.RateLimitService`), counting in Redis, for the
//! fleet tests and benchmarks of wasm-authn.
//!
//!     ratelimit-server [--rls-ip IP] [--rls-port PORT] LIMITS_FILE redis REDIS_URL
//!
//! The command line is limitador-server's (the container image runs the same
//! arguments). LIMITS_FILE is Limitador's limits.yaml. A request maps as
//! limitador-server maps it: the domain is the namespace; the descriptors are the
//! CEL list `descriptors`, each a map of its entries (`descriptors[0].principal`);
//! `hits_addend` 0 counts as 1; an empty domain answers UNKNOWN; a storage error
//! answers the gRPC status UNAVAILABLE, which Envoy's `failure_mode_deny` decides
//! on. `--rls-port 0` binds a free port.
//!
//! One addition to limitador-server's mapping: a request whose every descriptor
//! carries its own `hits_addend` of 0 (the field envoyproxy/ratelimit reads as
//! "check only") is checked without being counted: OVER_LIMIT when one more hit would
//! be over the limit (Limitador's `is_rate_limited` with a delta of 1). wasm-authn asks
//! so whether a user name's password failures reached their limit (docs/operating.md). The first line on standard output is
//! `listening on IP:PORT`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::ExitCode;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::{
    RateLimitService, RateLimitServiceServer,
};
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use limitador::limit::{Context, Limit};
use limitador::storage::redis::AsyncRedisStorage;
use limitador::AsyncRateLimiter;
use tonic::{Request, Response, Status};

struct Arguments {
    ip: String,
    port: u16,
    limits_file: String,
    redis_url: String,
}

const USAGE: &str = "usage: ratelimit-server [--rls-ip IP] [--rls-port PORT] LIMITS_FILE redis REDIS_URL";

fn arguments() -> Result<Arguments, String> {
    let mut ip = "0.0.0.0".to_string();
    let mut port: u16 = 8081;
    let mut positional = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--rls-ip" => ip = args.next().ok_or("--rls-ip needs a value")?,
            "--rls-port" => {
                let value = args.next().ok_or("--rls-port needs a value")?;
                port = value.parse().map_err(|_| format!("--rls-port: not a port: {value}"))?;
            }
            "-h" | "--help" => return Err(USAGE.to_string()),
            _ if arg.starts_with('-') => return Err(format!("unknown option {arg}\n{USAGE}")),
            _ => positional.push(arg),
        }
    }
    match <[String; 3]>::try_from(positional) {
        Ok([limits_file, storage, redis_url]) if storage == "redis" => {
            Ok(Arguments { ip, port, limits_file, redis_url })
        }
        _ => Err(USAGE.to_string()),
    }
}

fn load_limits(path: &str) -> Result<Vec<Limit>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    serde_yaml::from_reader(file).map_err(|e| format!("{path}: not a Limitador limits file: {e}"))
}

struct Limitador {
    limiter: AsyncRateLimiter,
}

#[tonic::async_trait]
impl RateLimitService for Limitador {
    async fn should_rate_limit(
        &self,
        request: Request<RateLimitRequest>,
    ) -> Result<Response<RateLimitResponse>, Status> {
        let request = request.into_inner();
        if request.domain.is_empty() {
            return Ok(Response::new(answer(Code::Unknown)));
        }
        let namespace = request.domain.into();
        let check_only = !request.descriptors.is_empty()
            && request.descriptors.iter().all(|descriptor| descriptor.hits_addend.as_ref().is_some_and(|hits| hits.value == 0));
        let descriptors: Vec<HashMap<String, String>> = request
            .descriptors
            .into_iter()
            .map(|descriptor| descriptor.entries.into_iter().map(|entry| (entry.key, entry.value)).collect())
            .collect();
        let mut context = Context::default();
        context.list_binding("descriptors".to_string(), descriptors);
        let hits = u64::from(request.hits_addend.max(1));
        let result = if check_only {
            self.limiter.is_rate_limited(&namespace, &context, 1).await
        } else {
            self.limiter.check_rate_limited_and_update(&namespace, &context, hits).await
        };
        match result {
            Ok(result) if result.limited => Ok(Response::new(answer(Code::OverLimit))),
            Ok(_) => Ok(Response::new(answer(Code::Ok))),
            Err(error) => {
                eprintln!("ratelimit-server: storage error: {error}");
                Err(Status::unavailable("Service unavailable"))
            }
        }
    }
}

fn answer(code: Code) -> RateLimitResponse {
    RateLimitResponse { overall_code: code.into(), ..RateLimitResponse::default() }
}

async fn serve(arguments: Arguments) -> Result<(), String> {
    let limits = load_limits(&arguments.limits_file)?;
    let storage = AsyncRedisStorage::new(&arguments.redis_url)
        .await
        .map_err(|e| format!("cannot reach Redis at {}: {e}", arguments.redis_url))?;
    let limiter = AsyncRateLimiter::new_with_storage(Box::new(storage));
    limiter.configure_with(limits).await.map_err(|e| format!("cannot configure the limits: {e}"))?;
    let address: SocketAddr =
        format!("{}:{}", arguments.ip, arguments.port).parse().map_err(|e| format!("bad address: {e}"))?;
    let listener =
        tokio::net::TcpListener::bind(address).await.map_err(|e| format!("cannot listen on {address}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    println!("listening on {bound}");
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .add_service(RateLimitServiceServer::new(Limitador { limiter }))
        .serve_with_incoming_shutdown(incoming, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| format!("server failed: {e}"))
}

fn main() -> ExitCode {
    let arguments = match arguments() {
        Ok(arguments) => arguments,
        Err(message) => {
            eprintln!("ratelimit-server: {message}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("ratelimit-server: no runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(arguments)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("ratelimit-server: {message}");
            ExitCode::FAILURE
        }
    }
}
