//! The authorization service of the benchmark's `ext_authz` variants (benches/run.sh): the
//! design a platform team would build instead of an in-proxy filter. Envoy's `ext_authz`
//! HTTP filter sends it each request, head and whole body, and it runs webhook-guard's own
//! flow on it natively: the `Guard` the module runs, behind a host of its own, configured
//! by the same JSON. No answer from the guard is 200 (Envoy forwards the request); its
//! answer (a refusal's status, headers and problem body) is returned, and Envoy gives it to
//! the sender.
//!
//! What an authorization service cannot do, it does not: the request goes upstream as it
//! came (no CloudEvent, the head not cleaned), so every endpoint's `forward` is read as
//! `original`; a configuration that needs the upstream's answer (`dedupe_seconds`) or a call
//! out (`global_rate_limit`, the ARM check) is refused. Counters and log lines are dropped.
//!
//!     ext-authz-verifier ADDRESS CONFIG.json

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use std::cell::RefCell;
use std::collections::HashMap;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};
use webhook_guard::config::{Config, Forward};
use webhook_guard::filter::{Guard, Headers, HttpHost};
use webhook_guard::metrics::{Counter, Histogram, ListenerCounter};
use webhook_guard::outbound::{self, GrpcOutbound, Outbound};
use webhook_guard::shared::{SharedStore, StoreError};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ext-authz-verifier: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [address, path] = args.as_slice() else {
        return Err("usage: ext-authz-verifier ADDRESS CONFIG.json".into());
    };
    let json = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    let config = Rc::new(authorization_config(&json)?);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build().map_err(|e| e.to_string())?;
    tokio::task::LocalSet::new().block_on(&runtime, serve(address, config))
}

/// Every connection and every check on this one thread: the rate limit's buckets need no
/// lock, and the service takes one CPU at most, as Envoy's one worker does.
async fn serve(address: &str, config: Rc<Config>) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(address).await.map_err(|e| format!("{address}: {e}"))?;
    let store = Rc::new(Store::default());
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                eprintln!("ext-authz-verifier: accepting: {e}");
                continue;
            }
        };
        // Envoy waits for each answer: no delay for a small last segment.
        if let Err(e) = stream.set_nodelay(true) {
            eprintln!("ext-authz-verifier: TCP_NODELAY: {e}");
        }
        let (config, store) = (Rc::clone(&config), Rc::clone(&store));
        let service = hyper::service::service_fn(move |request| answer(Rc::clone(&config), Rc::clone(&store), request));
        tokio::task::spawn_local(async move {
            if let Err(e) = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(stream), service).await {
                eprintln!("ext-authz-verifier: connection: {e}");
            }
        });
    }
}

/// Envoy's check request (the client's head, the headers `ext_authz` passes on, and its
/// buffered body) answered: 200 or the guard's own answer.
async fn answer(config: Rc<Config>, store: Rc<Store>, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let (head, body) = request.into_parts();
    let body = body.collect().await?.to_bytes().to_vec();
    let target = head.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut headers = vec![(":method".to_string(), head.method.as_str().as_bytes().to_vec()), (":path".to_string(), target.as_bytes().to_vec())];
    headers.extend(head.headers.iter().map(|(name, value)| (name.as_str().to_string(), value.as_bytes().to_vec())));
    let reply = check(&config, Exchange { headers, body, store, reply: RefCell::new(None) });
    let reply = reply.unwrap_or(Reply { status: 200, headers: Vec::new(), body: Vec::new() });
    let mut response = Response::new(Full::new(Bytes::from(reply.body)));
    *response.status_mut() = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in &reply.headers {
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            response.headers_mut().append(name, value);
        }
    }
    Ok(response)
}

/// The module's configuration as an authorization service can apply it.
fn authorization_config(json: &[u8]) -> Result<Config, String> {
    let mut config = Config::parse(json, |name| std::env::var(name).ok())?;
    for endpoint in &mut config.endpoints {
        if endpoint.dedupe_seconds.is_some() || endpoint.global_rate_limit.is_some() || endpoint.profile.arm_check().is_some() {
            return Err(format!(
                "endpoint '{}': an authorization service neither sees the upstream's answer (dedupe_seconds) nor calls out \
                 (global_rate_limit, arm_check)",
                endpoint.name
            ));
        }
        endpoint.forward = Forward::Original;
    }
    Ok(config)
}

/// The guard's flow on one request, as the module runs it for a held head: the head,
/// then the whole body. `None`: nothing refused it.
fn check(config: &Rc<Config>, exchange: Exchange) -> Option<Reply> {
    let mut guard = Guard::new(&exchange, Rc::clone(config));
    let size = exchange.body.len();
    guard.on_request_headers(size == 0);
    guard.on_request_body(size, true);
    drop(guard);
    exchange.reply.into_inner()
}

/// The guard's own answer to the sender.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// One request under check, and the guard's answer once it gave one.
struct Exchange {
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    store: Rc<Store>,
    reply: RefCell<Option<Reply>>,
}

/// The process's shared data (the rate limit's buckets), with Envoy's CAS semantics.
#[derive(Default)]
struct Store(RefCell<HashMap<String, (Vec<u8>, u32)>>);

impl SharedStore for &Exchange {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match self.store.0.borrow().get(key) {
            Some((value, cas)) => (Some(value.clone()), Some(*cas)),
            None => (None, None),
        }
    }
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        let mut entries = self.store.0.borrow_mut();
        let next = match (entries.get(key), cas) {
            (Some((_, current)), Some(expected)) if *current != expected => return Err(StoreError::CasMismatch),
            (Some((_, current)), _) => current.wrapping_add(1).max(1),
            (None, _) => 1,
        };
        entries.insert(key.to_owned(), (value.to_vec(), next));
        Ok(())
    }
}

/// Never called: [`authorization_config`] refuses the endpoints that call out.
impl Outbound for &Exchange {
    fn dispatch(&self, _call: &outbound::Call<'_>) -> Option<u32> {
        None
    }
    fn answer(&self, _body_size: usize) -> outbound::Answer {
        outbound::Answer::default()
    }
}

impl GrpcOutbound for &Exchange {
    fn dispatch_grpc(&self, _call: &outbound::GrpcCall<'_>) -> Option<u32> {
        None
    }
    fn grpc_answer(&self, _size: usize) -> Vec<u8> {
        Vec::new()
    }
}

/// An authorization service answers; it changes nothing of the request, which goes
/// upstream as it came.
impl HttpHost for &Exchange {
    fn now_nanos(&self) -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }
    fn request_headers(&self) -> Headers {
        Headers::from_pairs(self.headers.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
    }
    fn set_request_header(&self, _name: &str, _value: Option<&str>) {}
    fn request_body(&self, size: usize) -> Option<Vec<u8>> {
        self.body.get(..size).map(<[u8]>::to_vec)
    }
    fn set_request_body(&self, _size: usize, _body: &[u8]) {}
    fn response_status(&self) -> Option<u16> {
        None
    }
    fn response_code_details(&self) -> Option<String> {
        None
    }
    fn set_response_status(&self, _status: u16) {}
    fn send_response(&self, status: u16, headers: &[(&str, &str)], body: &[u8]) {
        let headers = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        *self.reply.borrow_mut() = Some(Reply { status, headers, body: body.to_vec() });
    }
    fn count(&self, _endpoint: usize, _counter: Counter) {}
    fn record(&self, _endpoint: usize, _histogram: Histogram, _millis: u64) {}
    fn count_listener(&self, _counter: ListenerCounter) {}
    fn log(&self, _level: log::Level, _line: &str) {}
    fn resume_request(&self) {}
}
