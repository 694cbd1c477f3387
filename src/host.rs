//! The proxy-wasm glue: the only module that calls the host. It parses the configuration
//! once per VM and hands each HTTP stream to [`Guard`] over [`WasmHost`].
//!
//! Host calls go through `proxy_wasm::hostcalls` directly: the SDK's convenience methods
//! `unwrap()` host errors, and a trap would kill the VM for every later request.

use crate::config::{Config, Endpoint};
use crate::filter::{Guard, HttpHost};
use crate::metrics::Counter;
use crate::shared::{SharedStore, StoreError};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType, Status};
use std::rc::Rc;
use std::time::UNIX_EPOCH;

proxy_wasm::main! {{
    // Every level reaches Envoy, which filters by its own `wasm` component log level.
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { config: None, metrics: Rc::default() }) });
}}

/// Envoy metric ids, defined once per VM: per endpoint (by index), its counters. A short
/// scan beats hashing for two dozen entries.
type Metrics = Vec<Vec<(Counter, u32)>>;

struct Root {
    config: Option<Rc<Config>>,
    metrics: Rc<Metrics>,
}

/// Defines every counter of every endpoint (Envoy sums same-named counters of all VMs).
fn define_metrics(config: &Config) -> Metrics {
    let define = |endpoint: &Endpoint, counter: Counter| match hostcalls::define_metric(MetricType::Counter, &counter.name(endpoint)) {
        Ok(id) => Some((counter, id)),
        Err(e) => {
            log::warn!("webhook-guard: defining metric {} failed: {e:?}", counter.name(endpoint));
            None
        }
    };
    let endpoint_metrics = |endpoint: &Endpoint| Counter::all(endpoint.profile).into_iter().filter_map(|c| define(endpoint, c)).collect();
    config.endpoints.iter().map(endpoint_metrics).collect()
}

impl Context for Root {}

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
                self.config = Some(Rc::new(config));
                true
            }
            Err(e) => {
                log::error!("webhook-guard: invalid configuration: {e}");
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let config = Rc::clone(self.config.as_ref()?);
        let host = WasmHost { metrics: Rc::clone(&self.metrics) };
        Some(Box::new(Stream(Guard::new(host, config))))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream(Guard<WasmHost>);

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.0.on_request_headers(end_of_stream)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.0.on_request_body(body_size, end_of_stream)
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        self.0.on_request_trailers()
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.0.on_response_headers()
    }
}

/// The end of every stream. The build strips the module's other end-of-stream exports
/// (`proxy_on_log`, `proxy_on_done`; tools/wasm-exports.json) so that Envoy skips those
/// calls; `proxy_on_delete` drops the stream.
impl Drop for Stream {
    fn drop(&mut self) {
        self.0.on_done();
    }
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

impl HttpHost for WasmHost {
    fn now_nanos(&self) -> u64 {
        let now = hostcalls::get_current_time().unwrap_or(UNIX_EPOCH);
        now.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }

    fn request_headers(&self) -> Vec<(String, Vec<u8>)> {
        hostcalls::get_map_bytes(MapType::HttpRequestHeaders).unwrap_or_default()
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
        let id = self.metrics.get(endpoint).and_then(|m| m.iter().find(|(c, _)| *c == counter)).map(|(_, id)| id);
        if let Some(id) = id {
            if let Err(e) = hostcalls::increment_metric(*id, 1) {
                log::warn!("webhook-guard: incrementing a metric failed: {e:?}");
            }
        }
    }

    fn log(&self, level: log::Level, line: &str) {
        log::log!(level, "{line}");
    }
}
