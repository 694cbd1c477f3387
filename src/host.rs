//! The proxy-wasm glue: the only module that calls the host. It parses the configuration
//! once per VM and hands each HTTP stream to [`Guard`] over [`WasmHost`].
//!
//! Host calls go through `proxy_wasm::hostcalls` directly: the SDK's convenience methods
//! `unwrap()` host errors, and a trap would kill the VM for every later request.

use crate::arm::verify::Awaiting;
use crate::arm::{self, token, Answer, Call, Outbound};
use crate::config::{Config, Endpoint, HeaderMode};
use crate::filter::{Guard, Headers, HttpHost, HOLD_TIMEOUT_SECS};
use crate::held::{Held, MAX_HELD};
use crate::metrics::{Counter, ListenerCounter};
use crate::shared::{SharedStore, StoreError};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType, Status};
use std::cell::RefCell;
use std::rc::{Rc, Weak};
use std::time::{Duration, UNIX_EPOCH};

/// How often the root context checks held heads and whether a token needs refreshing.
const TICK: Duration = Duration::from_secs(1);
/// Largest answer body read from ARM or a token issuer.
const MAX_CALL_BODY: usize = 256 * 1024;

proxy_wasm::main! {{
    // Every level reaches Envoy, which filters by its own `wasm` component log level.
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        let streams = || Rc::new(RefCell::new(Held::new(MAX_HELD)));
        Box::new(Root { config: None, metrics: Rc::default(), held: streams(), refreshes: Vec::new(), waiting: streams(), routed: Held::new(MAX_HELD) })
    });
}}

/// A stream's flow, shared with the root's tick while its head is held.
type SharedGuard = Rc<RefCell<Guard<WasmHost>>>;
type WeakGuard = Weak<RefCell<Guard<WasmHost>>>;
type HeldStreams = Rc<RefCell<Held<WeakGuard>>>;

/// Envoy metric ids, defined once per VM: per endpoint (by index), its counters, and the
/// listener's own. A short scan beats hashing for two dozen entries.
#[derive(Default)]
struct Metrics {
    endpoints: Vec<Vec<(Counter, u32)>>,
    listener: Vec<(ListenerCounter, u32)>,
}

struct Root {
    config: Option<Rc<Config>>,
    metrics: Rc<Metrics>,
    held: HeldStreams,
    /// Token refreshes this worker started: (call id, endpoint index).
    refreshes: Vec<(u32, usize)>,
    /// Streams whose ARM check waits for a token another fetch brings.
    waiting: HeldStreams,
    /// Calls of those streams made from here, by call id: their answers come to the root.
    routed: Held<(u32, WeakGuard)>,
}

impl Root {
    fn host(&self) -> WasmHost {
        WasmHost { metrics: Rc::clone(&self.metrics) }
    }

    /// The endpoints with an ARM check, with their index.
    fn arm_checks(&self) -> impl Iterator<Item = (usize, &arm::config::ArmCheck)> {
        let endpoints = self.config.iter().flat_map(|c| c.endpoints.iter());
        endpoints.enumerate().filter_map(|(i, e)| Some((i, e.arm_check.as_ref()?)))
    }

    /// Answers the heads held longer than HOLD_TIMEOUT_SECS without a body callback.
    fn answer_expired_heads(&self) {
        let expired = self.held.borrow_mut().expired(now_nanos(), HOLD_TIMEOUT_SECS * 1_000_000_000);
        for (id, guard) in expired {
            let Some(guard) = guard.upgrade() else { continue };
            // The local reply goes to the stream's context, not the root's.
            if hostcalls::set_effective_context(id).is_ok() {
                if let Ok(mut guard) = guard.try_borrow_mut() {
                    guard.on_body_missing();
                }
            }
        }
    }

    /// Lets the checks waiting for another's token fetch look at the shared token again:
    /// when a fetch of this worker's root ends, and on every tick (for the fetches of
    /// other workers and of requests, which cannot reach these streams).
    fn wake_waiting(&mut self) {
        let waiting = self.waiting.try_borrow_mut().map(|mut w| w.take_all()).unwrap_or_default();
        for (id, guard) in waiting {
            self.on_stream(id, guard, Guard::on_token_ready);
        }
    }

    /// Runs `f` on stream `id`'s flow as that stream (its local reply and resume go to
    /// it), then tracks what its check waits for: a call made here answers to the root.
    fn on_stream(&mut self, id: u32, guard: WeakGuard, f: impl FnOnce(&mut Guard<WasmHost>)) {
        let Some(flow) = guard.upgrade() else { return };
        if hostcalls::set_effective_context(id).is_err() {
            return;
        }
        let Ok(mut flow) = flow.try_borrow_mut() else { return };
        f(&mut flow);
        match flow.verify_awaiting() {
            Some(Awaiting::SharedToken) => {
                if let Ok(mut waiting) = self.waiting.try_borrow_mut() {
                    waiting.hold(id, now_nanos(), guard);
                }
            }
            Some(Awaiting::Call(call)) => self.routed.hold(call, now_nanos(), (id, guard)),
            None => {}
        }
    }

    /// Stores (or not) the token of a refresh this root started.
    fn refreshed(&self, index: usize, body_size: usize) {
        let host = self.host();
        let Some((check, endpoint)) = self.config.as_ref().and_then(|c| c.endpoints.get(index)).and_then(|e| Some((e.arm_check.as_ref()?, e))) else {
            return;
        };
        let result = token::receive(&host, check, host.now_nanos(), &host.answer(body_size));
        token_fetched(&host, endpoint, index, result.map(|_| ()));
    }

    /// Refreshes each ARM token ahead of its expiry; the lease lets one worker do it.
    fn refresh_tokens(&mut self) {
        let host = self.host();
        let now = host.now_nanos();
        let mut started = Vec::new();
        for (index, check) in self.arm_checks() {
            match token::refresh(&host, check, now) {
                Some(Ok(call)) => started.push((call, index)),
                Some(Err(failure)) => {
                    let endpoint = self.config.as_ref().and_then(|c| c.endpoints.get(index));
                    if let Some(endpoint) = endpoint {
                        token_fetched(&host, endpoint, index, Err(failure));
                    }
                }
                None => {}
            }
        }
        self.refreshes.extend(started);
    }
}

/// Counts and logs the end of a token fetch the root started (never the token).
fn token_fetched(host: &WasmHost, endpoint: &Endpoint, index: usize, result: Result<(), token::Failure>) {
    match result {
        Ok(()) => host.count(index, Counter::Arm(arm::Outcome::TokenFetched)),
        Err(failure) => {
            host.count(index, Counter::Arm(arm::Outcome::TokenFailed));
            log::warn!("webhook-guard: arm token refresh failed endpoint={}: {failure}", endpoint.name);
        }
    }
}

/// Defines every counter of every endpoint and of the listener (Envoy sums same-named
/// counters of all VMs).
fn define_metrics(config: &Config) -> Metrics {
    let endpoint_metrics = |endpoint: &Endpoint| Counter::of(endpoint).into_iter().filter_map(|c| define(c, &c.name(endpoint))).collect();
    Metrics {
        endpoints: config.endpoints.iter().map(endpoint_metrics).collect(),
        listener: ListenerCounter::ALL.into_iter().filter_map(|c| define(c, c.name())).collect(),
    }
}

/// The id of the counter `name`, paired with `counter`; `None` (logged) when Envoy refuses.
fn define<C>(counter: C, name: &str) -> Option<(C, u32)> {
    match hostcalls::define_metric(MetricType::Counter, name) {
        Ok(id) => Some((counter, id)),
        Err(e) => {
            log::warn!("webhook-guard: defining metric {name} failed: {e:?}");
            None
        }
    }
}

impl Context for Root {
    fn on_http_call_response(&mut self, call: u32, _num_headers: usize, body_size: usize, _num_trailers: usize) {
        if let Some(at) = self.refreshes.iter().position(|(id, _)| *id == call) {
            let (_, index) = self.refreshes.swap_remove(at);
            self.refreshed(index, body_size);
        } else if let Some((id, guard)) = self.routed.take(call) {
            self.on_stream(id, guard, |flow| flow.on_call_response(call, body_size));
        }
        self.wake_waiting();
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        match Config::parse(&bytes, |name| std::env::var(name).ok()) {
            Ok(config) => {
                log::info!("webhook-guard: configured {} endpoint(s)", config.endpoints.len());
                self.metrics = Rc::new(define_metrics(&config));
                // The tick is the safety net for a missing allow_on_headers_stop_iteration
                // and the ARM tokens' refresh.
                let holds = config.header_mode == HeaderMode::Hold;
                self.config = Some(Rc::new(config));
                let host = self.host();
                let mut checks = self.arm_checks().peekable();
                let checks_arm = checks.peek().is_some();
                checks.for_each(|(_, check)| token::init(&host, check));
                if holds || checks_arm {
                    if let Err(e) = hostcalls::set_tick_period(TICK) {
                        log::warn!("webhook-guard: setting the tick period failed: {e:?}");
                    }
                }
                true
            }
            Err(e) => {
                log::error!("webhook-guard: invalid configuration: {e}");
                false
            }
        }
    }

    fn on_tick(&mut self) {
        self.answer_expired_heads();
        self.refresh_tokens();
        self.wake_waiting();
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let config = Rc::clone(self.config.as_ref()?);
        let guard = Rc::new(RefCell::new(Guard::new(self.host(), config)));
        Some(Box::new(Stream { id: context_id, guard, held: Rc::clone(&self.held), waiting: Rc::clone(&self.waiting) }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream {
    id: u32,
    guard: SharedGuard,
    held: HeldStreams,
    waiting: HeldStreams,
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
        if self.guard.try_borrow().is_ok_and(|guard| guard.verify_awaiting() == Some(Awaiting::SharedToken)) {
            if let Ok(mut waiting) = self.waiting.try_borrow_mut() {
                waiting.hold(self.id, now_nanos(), Rc::downgrade(&self.guard));
            }
        }
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
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let action = self.with(Action::Pause, |guard| guard.on_request_headers(end_of_stream));
        if self.guard.try_borrow().is_ok_and(|guard| guard.holds_head()) {
            if let Ok(mut held) = self.held.try_borrow_mut() {
                held.hold(self.id, now_nanos(), Rc::downgrade(&self.guard));
            }
        }
        action
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
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

/// The host clock, nanoseconds since the Unix epoch.
fn now_nanos() -> u64 {
    let now = hostcalls::get_current_time().unwrap_or(UNIX_EPOCH);
    now.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

struct WasmHost {
    metrics: Rc<Metrics>,
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
                log::warn!("webhook-guard: calling cluster {} failed: {e:?}", call.cluster);
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

impl HttpHost for WasmHost {
    fn now_nanos(&self) -> u64 {
        now_nanos()
    }

    fn request_headers(&self) -> Headers {
        Headers::parse(request_header_map())
    }

    fn set_request_header(&self, name: &str, value: Option<&str>) {
        if let Err(status) = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value) {
            log::warn!("webhook-guard: setting request header {name} failed: {status:?}");
        }
    }

    fn request_body(&self, size: usize) -> Option<Vec<u8>> {
        hostcalls::get_buffer(BufferType::HttpRequestBody, 0, size).ok().flatten()
    }

    fn set_request_body(&self, size: usize, body: &[u8]) {
        if let Err(status) = hostcalls::set_buffer(BufferType::HttpRequestBody, 0, size, body) {
            log::warn!("webhook-guard: replacing the request body failed: {status:?}");
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
            log::warn!("webhook-guard: rewriting the response status failed: {e:?}");
        }
    }

    fn send_response(&self, status: u16, headers: &[(&str, &str)], body: &[u8]) {
        if let Err(e) = hostcalls::send_http_response(u32::from(status), headers.to_vec(), Some(body)) {
            log::warn!("webhook-guard: sending the local reply failed: {e:?}");
        }
    }

    fn count(&self, endpoint: usize, counter: Counter) {
        increment(self.metrics.endpoints.get(endpoint).and_then(|m| m.iter().find(|(c, _)| *c == counter)).map(|(_, id)| *id));
    }

    fn count_listener(&self, counter: ListenerCounter) {
        increment(self.metrics.listener.iter().find(|(c, _)| *c == counter).map(|(_, id)| *id));
    }

    fn log(&self, level: log::Level, line: &str) {
        log::log!(level, "{line}");
    }

    fn resume_request(&self) {
        if let Err(e) = hostcalls::resume_http_request() {
            log::warn!("webhook-guard: resuming the request failed: {e:?}");
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

fn increment(metric: Option<u32>) {
    if let Some(id) = metric {
        if let Err(e) = hostcalls::increment_metric(id, 1) {
            log::warn!("webhook-guard: incrementing a metric failed: {e:?}");
        }
    }
}
