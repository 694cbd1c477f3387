//! The proxy-wasm glue: the only module that calls the host. It parses the configuration
//! once per VM and hands each HTTP stream to [`Guard`] over [`WasmHost`].
//!
//! Host calls go through `proxy_wasm::hostcalls` directly: the SDK's convenience methods
//! `unwrap()` host errors, and a trap would kill the VM for every later request.

use crate::config::{Config, Endpoint};
use crate::filter::{Guard, Headers, HttpHost};
use crate::metrics::{Counter, Histogram, ListenerCounter};
use crate::outbound::{Answer, Call, GrpcCall, GrpcOutbound, Outbound};
use crate::root::{self, Flow, Root, RootHost, Streams};
use crate::shared::{SharedStore, StoreError};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType, Status};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

/// How often the root context checks held heads and whether a token needs refreshing.
const TICK: Duration = Duration::from_secs(1);
/// Largest answer body read from ARM, a token issuer or the rate limit service.
const MAX_CALL_BODY: usize = 256 * 1024;

proxy_wasm::main! {{
    // Every level reaches Envoy, which filters by its own `wasm` component log level.
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Worker { root: None }) });
}}

/// Envoy metric ids, defined once per VM: per endpoint (by index), its counters and
/// histograms, and the listener's own. A short scan beats hashing for two dozen entries.
#[derive(Default)]
struct Metrics {
    endpoints: Vec<Vec<(Counter, u32)>>,
    histograms: Vec<Vec<(Histogram, u32)>>,
    listener: Vec<(ListenerCounter, u32)>,
}

/// The root context: [`Root`] once configured.
struct Worker {
    root: Option<Root<WasmHost>>,
}

/// Defines every counter and histogram of every endpoint, and the listener's counters
/// (Envoy sums same-named metrics of all VMs).
fn define_metrics(config: &Config) -> Metrics {
    let counters = |endpoint: &Endpoint| Counter::of(endpoint).into_iter().filter_map(|c| define(MetricType::Counter, c, &c.name(endpoint))).collect();
    let histograms = |endpoint: &Endpoint| Histogram::of(endpoint).into_iter().filter_map(|h| define(MetricType::Histogram, h, &h.name(endpoint))).collect();
    Metrics {
        endpoints: config.endpoints.iter().map(counters).collect(),
        histograms: config.endpoints.iter().map(histograms).collect(),
        listener: ListenerCounter::ALL.into_iter().filter_map(|c| define(MetricType::Counter, c, &c.name())).collect(),
    }
}

/// The id of the metric `name`, paired with `metric`; `None` (logged) when Envoy refuses.
fn define<M>(kind: MetricType, metric: M, name: &str) -> Option<(M, u32)> {
    match hostcalls::define_metric(kind, name) {
        Ok(id) => Some((metric, id)),
        Err(e) => {
            failed(format_args!("defining metric {name}"), e);
            None
        }
    }
}

impl Context for Worker {
    fn on_http_call_response(&mut self, call: u32, _num_headers: usize, body_size: usize, _num_trailers: usize) {
        if let Some(root) = &mut self.root {
            root.on_call_response(call, body_size);
        }
    }
}

impl RootContext for Worker {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX).ok().flatten().unwrap_or_default();
        match Config::parse(&bytes, |name| std::env::var(name).ok()) {
            Ok(config) => {
                log::info!("webhook-guard: configured {} endpoint(s)", config.endpoints.len());
                let host = WasmHost { metrics: Rc::new(define_metrics(&config)), held_since: Cell::new(None) };
                let root = Root::new(host, Rc::new(config));
                // The tick is the safety net for a missing allow_on_headers_stop_iteration
                // and the ARM tokens' refresh.
                if root.start() {
                    if let Err(e) = hostcalls::set_tick_period(TICK) {
                        failed(format_args!("setting the tick period"), e);
                    }
                }
                self.root = Some(root);
                true
            }
            Err(e) => {
                log::error!("webhook-guard: invalid configuration: {e}");
                false
            }
        }
    }

    fn on_tick(&mut self) {
        if let Some(root) = &mut self.root {
            root.on_tick();
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let root = self.root.as_ref()?;
        let guard = Rc::new(RefCell::new(Guard::new(root.host().clone(), Rc::clone(root.config()))));
        Some(Box::new(Stream { id: context_id, guard, held: Rc::clone(&root.held), waiting: Rc::clone(&root.waiting) }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream {
    id: u32,
    guard: Flow<WasmHost>,
    held: Streams<WasmHost>,
    waiting: Streams<WasmHost>,
}

impl Stream {
    /// Runs `f` on the flow. Callbacks never nest, so the flow is always free; were it
    /// not, `busy` is returned rather than a trap (a request is then held, never let
    /// through unchecked).
    fn with(&self, busy: Action, f: impl FnOnce(&mut Guard<WasmHost>) -> Action) -> Action {
        self.guard.try_borrow_mut().map_or(busy, |mut guard| f(&mut guard))
    }

    /// Hands a check waiting for another's token fetch to the root, which wakes it.
    fn track_wait(&self) {
        root::track_wait(self.id, &self.guard, &self.waiting, now_nanos);
    }

    /// The head's body arrived (or the stream ended): the safety net lets it go.
    fn release(&self) {
        if let Ok(mut held) = self.held.try_borrow_mut() {
            held.release(self.id);
        }
    }
}

impl Context for Stream {
    /// The answer to a call of this stream's check; after ARM refused the token, the check
    /// may wait for another's token fetch.
    fn on_http_call_response(&mut self, call: u32, _num_headers: usize, body_size: usize, _num_trailers: usize) {
        if let Ok(mut guard) = self.guard.try_borrow_mut() {
            guard.on_call_response(call, body_size);
        }
        self.track_wait();
    }

    /// The rate limit service's answer (`status` 0) or the call's failure; an allowed
    /// notification's ARM check may then wait for another's token fetch.
    fn on_grpc_call_response(&mut self, call: u32, status: u32, size: usize) {
        if let Ok(mut guard) = self.guard.try_borrow_mut() {
            guard.on_grpc_response(call, status, size);
        }
        self.track_wait();
    }
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let action = self.with(Action::Pause, |guard| guard.on_request_headers(end_of_stream));
        root::track_head(self.id, &self.guard, &self.held, now_nanos);
        action
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        #[cfg(feature = "test-trap")]
        test_trap::on_body();
        self.release();
        let action = self.with(Action::Pause, |guard| guard.on_request_body(body_size, end_of_stream));
        self.track_wait();
        action
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        self.release();
        let action = self.with(Action::Pause, |guard| guard.on_request_trailers());
        self.track_wait();
        action
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.with(Action::Continue, |guard| guard.on_response_headers())
    }
}

/// The end of every stream. The build strips the module's other end-of-stream exports
/// (`proxy_on_log`, `proxy_on_done`; tools/wasm-exports.json) so that Envoy skips those
/// calls; `proxy_on_delete` drops the stream.
impl Drop for Stream {
    fn drop(&mut self) {
        self.release();
        if let Ok(mut waiting) = self.waiting.try_borrow_mut() {
            waiting.release(self.id);
        }
        if let Ok(mut guard) = self.guard.try_borrow_mut() {
            guard.on_done();
        }
    }
}

/// The failure-policy test's module only (`--features test-trap`, `make build-trap`; never
/// the release module): a request carrying [`test_trap::HEADER`] traps the VM when its
/// body arrives, with its head held, so the test sees what Envoy does with a dead VM.
#[cfg(feature = "test-trap")]
mod test_trap {
    use super::{hostcalls, MapType};

    pub const HEADER: &str = "x-test-trap";

    pub fn on_body() {
        if matches!(hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, HEADER), Ok(Some(_))) {
            std::process::abort();
        }
    }
}

/// The host clock, nanoseconds since the Unix epoch. Not inlined: it is read in a dozen
/// places of the flow, and one copy of it saves more bytes than the calls cost.
#[inline(never)]
fn now_nanos() -> u64 {
    let now = hostcalls::get_current_time().unwrap_or(UNIX_EPOCH);
    now.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[derive(Clone)]
struct WasmHost {
    metrics: Rc<Metrics>,
    /// When the stream's head reached a guarded path (its `received` count): the time to
    /// the first verdict counted is the request's [`Histogram::Held`] time. The host sees
    /// every verdict go by, wherever in the flow it is reached.
    held_since: Cell<Option<u64>>,
}

impl RootHost for WasmHost {
    fn enter(&self, id: u32) -> bool {
        hostcalls::set_effective_context(id).is_ok()
    }
}

impl SharedStore for WasmHost {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        hostcalls::get_shared_data(key).unwrap_or((None, None))
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        match hostcalls::set_shared_data(key, Some(value), cas) {
            Ok(()) => Ok(()),
            Err(Status::CasMismatch) => Err(StoreError::CasMismatch),
            Err(_) => Err(StoreError::Other),
        }
    }
}

impl Outbound for WasmHost {
    fn dispatch(&self, call: &Call<'_>) -> Option<u32> {
        let headers: Vec<(&str, &str)> = call.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let timeout = Duration::from_millis(call.timeout_ms);
        match hostcalls::dispatch_http_call(call.cluster, headers, call.body.as_deref(), vec![], timeout) {
            Ok(id) => Some(id),
            Err(e) => {
                failed(format_args!("calling cluster {}", call.cluster), e);
                None
            }
        }
    }

    fn answer(&self, body_size: usize) -> Answer {
        let header = |name: &str| {
            let value = hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, name).ok()??;
            String::from_utf8(value).ok()
        };
        let body = hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size.min(MAX_CALL_BODY)).ok().flatten();
        Answer { status: header(":status").and_then(|s| s.parse().ok()), retry_after: header("retry-after"), body: body.unwrap_or_default() }
    }
}

impl GrpcOutbound for WasmHost {
    fn dispatch_grpc(&self, call: &GrpcCall<'_>) -> Option<u32> {
        let timeout = Duration::from_millis(call.timeout_ms);
        // A cluster Envoy does not know is a ParseFailure here, not a trap.
        match hostcalls::dispatch_grpc_call(call.cluster, call.service, call.method, vec![], Some(call.message), timeout) {
            Ok(id) => Some(id),
            Err(e) => {
                failed(format_args!("calling cluster {}", call.cluster), e);
                None
            }
        }
    }

    fn grpc_answer(&self, size: usize) -> Vec<u8> {
        hostcalls::get_buffer(BufferType::GrpcReceiveBuffer, 0, size.min(MAX_CALL_BODY)).ok().flatten().unwrap_or_default()
    }
}

impl HttpHost for WasmHost {
    fn now_nanos(&self) -> u64 {
        now_nanos()
    }

    fn request_headers(&self) -> Headers {
        Headers::parse(request_header_map())
    }

    fn set_request_header(&self, name: &str, value: Option<&str>) {
        if let Err(status) = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value) {
            failed(format_args!("setting request header {name}"), status);
        }
    }

    fn request_body(&self, size: usize) -> Option<Vec<u8>> {
        hostcalls::get_buffer(BufferType::HttpRequestBody, 0, size).ok().flatten()
    }

    fn set_request_body(&self, size: usize, body: &[u8]) {
        if let Err(status) = hostcalls::set_buffer(BufferType::HttpRequestBody, 0, size, body) {
            failed(format_args!("replacing the request body"), status);
        }
    }

    fn response_status(&self) -> Option<u16> {
        let value = hostcalls::get_map_value_bytes(MapType::HttpResponseHeaders, ":status").ok()??;
        std::str::from_utf8(&value).ok()?.parse().ok()
    }

    fn response_code_details(&self) -> Option<String> {
        let value = hostcalls::get_property(vec!["response", "code_details"]).ok()??;
        String::from_utf8(value).ok()
    }

    fn set_response_status(&self, status: u16) {
        let status = status.to_string();
        if let Err(e) = hostcalls::set_map_value(MapType::HttpResponseHeaders, ":status", Some(&status)) {
            failed(format_args!("rewriting the response status"), e);
        }
    }

    fn send_response(&self, status: u16, headers: &[(&str, &str)], body: &[u8]) {
        if let Err(e) = hostcalls::send_http_response(u32::from(status), headers.to_vec(), Some(body)) {
            failed(format_args!("sending the local reply"), e);
        }
    }

    fn count(&self, endpoint: usize, counter: Counter) {
        increment(self.metrics.endpoints.get(endpoint).and_then(|m| m.iter().find(|(c, _)| *c == counter)).map(|(_, id)| *id));
        if counter == Counter::Received {
            self.held_since.set(Some(now_nanos()));
        } else if let (true, Some(since)) = (counter.is_verdict(), self.held_since.get()) {
            self.held_since.set(None);
            self.record(endpoint, Histogram::Held, now_nanos().saturating_sub(since) / 1_000_000);
        }
    }

    fn record(&self, endpoint: usize, histogram: Histogram, millis: u64) {
        let id = self.metrics.histograms.get(endpoint).and_then(|m| m.iter().find(|(h, _)| *h == histogram)).map(|(_, id)| *id);
        if let Some(id) = id {
            if let Err(e) = hostcalls::record_metric(id, millis) {
                failed(format_args!("recording a metric"), e);
            }
        }
    }

    fn count_listener(&self, counter: ListenerCounter) {
        increment(self.metrics.listener.iter().find(|(c, _)| *c == counter).map(|(_, id)| *id));
    }

    /// Not inlined: log's record building would be copied into each refusal's path.
    #[inline(never)]
    fn log(&self, level: log::Level, line: &str) {
        log::log!(level, "{line}");
    }

    fn resume_request(&self) {
        if let Err(e) = hostcalls::resume_http_request() {
            failed(format_args!("resuming the request"), e);
        }
    }
}

#[link(wasm_import_module = "env")]
extern "C" {
    /// The ABI call behind the SDK's `get_map_bytes`, whose reader copies every name and
    /// value; the status is read as a number (an unknown one is no `Status`).
    fn proxy_get_header_map_pairs(map_type: MapType, return_map_data: *mut *mut u8, return_map_size: *mut usize) -> u32;
}

/// The request's header map as the host serialised it, in the buffer the host filled.
fn request_header_map() -> Vec<u8> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: on success the host hands over `size` bytes it got from this module's
    // `proxy_on_memory_allocate`, a boxed slice of exactly that length: the same
    // ownership transfer the SDK's `get_map_bytes` makes.
    unsafe {
        if proxy_get_header_map_pairs(MapType::HttpRequestHeaders, &mut data, &mut size) != 0 || data.is_null() {
            return Vec::new();
        }
        Vec::from_raw_parts(data, size, size)
    }
}

/// A host call that failed, in Envoy's log: one out-of-line copy of the logging rather
/// than one inlined at each call.
#[cold]
#[inline(never)]
fn failed(what: std::fmt::Arguments, status: Status) {
    log::warn!("webhook-guard: {what} failed: {status:?}");
}

fn increment(metric: Option<u32>) {
    if let Some(id) = metric {
        if let Err(e) = hostcalls::increment_metric(id, 1) {
            failed(format_args!("incrementing a metric"), e);
        }
    }
}
