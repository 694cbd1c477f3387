//! The floor any proxy-wasm body filter pays: a VM, an HTTP context per stream, and the
//! body buffered until end of stream. It inspects nothing. Its plugin configuration is
//! the header mode, as webhook-guard's: `hold` (the default) pauses the header callback
//! too (held by `allow_on_headers_stop_iteration`), `stream` lets the head go on at once.
//!
//! `replay-hold` and `replay-stream` add the floor under webhook-guard's accepted path: the
//! host calls webhook-guard makes, in its order and with its values, for the bench's valid
//! notification forwarded as a CloudEvent (`make cost`'s `azure_cloudevent_hold` and
//! `_stream`; the rate limit's calls are checks, left out), and the same rewritten request
//! upstream ([`HEAD`], [`EVENT`], [`CLOUDEVENT`]), with no checking or parsing: the header
//! map read once, three counters and a histogram value, the clock read as often, the body
//! read and replaced, `:status` read on the response. Any request is answered so.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType, Status};
use std::time::UNIX_EPOCH;

/// The CloudEvent webhook-guard forwards for `examples/requests/azure-service-catalog.json`
/// on an endpoint named `azure` (`azure_managed_app`).
const CLOUDEVENT: &[u8] = include_bytes!("cloudevent.json");
/// What webhook-guard writes on the head of that notification, in its order (`None`: removed).
const HEAD: [(&str, Option<&str>); 6] = [
    (":path", Some("/api/resource")),
    ("content-type", None),
    ("content-length", None),
    ("content-type", Some("application/cloudevents+json")),
    ("x-webhook-profile", Some("azure_managed_app")),
    ("x-webhook-endpoint", Some("azure")),
];
/// What it writes once the body is checked, while the head is held (hold), after `content-length`.
const EVENT: [(&str, &str); 4] = [
    ("x-webhook-event-id", "0be475e4-bdcc-326c-aeb7-e3138dd8b3ea"),
    ("x-webhook-event-type", "webhookguard.azure.managedapp.put.succeeded"),
    ("x-webhook-application", "/subscriptions/<subid>/resourcegroups/<rgname>/providers/microsoft.solutions/applications/<applicationname>"),
    ("x-webhook-subscription", "<subid>"),
];

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { stream: false, replay: None }) });
}}

/// The replay's metric ids: webhook-guard's counters of an accepted notification
/// (received, its event type, forwarded) and its held-time histogram.
#[derive(Clone, Copy)]
struct Metrics {
    received: u32,
    event: u32,
    forwarded: u32,
    held: u32,
}

impl Metrics {
    fn define() -> Result<Metrics, Status> {
        let counter = |name| hostcalls::define_metric(MetricType::Counter, name);
        Ok(Metrics {
            received: counter("empty_filter.replay.requests_total")?,
            event: counter("empty_filter.replay.events_total")?,
            forwarded: counter("empty_filter.replay.forwarded_total")?,
            held: hostcalls::define_metric(MetricType::Histogram, "empty_filter.replay.held_milliseconds")?,
        })
    }
}

struct Root {
    stream: bool,
    replay: Option<Metrics>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let configuration = self.get_plugin_configuration().unwrap_or_default();
        let (replay, mode) = match configuration.strip_prefix(b"replay-") {
            Some(mode) => (true, mode),
            None => (false, &configuration[..]),
        };
        self.stream = mode == b"stream";
        self.replay = None;
        if replay {
            match Metrics::define() {
                Ok(metrics) => self.replay = Some(metrics),
                Err(e) => {
                    log::error!("empty-filter: defining the replay's metrics failed: {e:?}");
                    return false;
                }
            }
        }
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream { stream: self.stream, replay: self.replay, received: 0 }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream {
    stream: bool,
    replay: Option<Metrics>,
    /// When the head arrived (replay), for the held time.
    received: u64,
}

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if let Some(metrics) = self.replay {
            drop(request_header_map());
            warn("incrementing a counter", hostcalls::increment_metric(metrics.received, 1));
            self.received = now_nanos();
            for (name, value) in HEAD {
                set_header(name, value);
            }
            if !self.stream {
                // webhook-guard's safety net for a held head notes when it was held.
                now_nanos();
            }
        }
        if end_of_stream || self.stream {
            Action::Continue
        } else {
            Action::Pause
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            return Action::Pause;
        }
        if let Some(metrics) = self.replay {
            drop(hostcalls::get_buffer(BufferType::HttpRequestBody, 0, body_size));
            warn("replacing the body", hostcalls::set_buffer(BufferType::HttpRequestBody, 0, body_size, CLOUDEVENT));
            if !self.stream {
                set_header("content-length", Some(&CLOUDEVENT.len().to_string()));
                for (name, value) in EVENT {
                    set_header(name, Some(value));
                }
            }
            for id in [metrics.event, metrics.forwarded] {
                warn("incrementing a counter", hostcalls::increment_metric(id, 1));
            }
            let held = now_nanos().saturating_sub(self.received) / 1_000_000;
            warn("recording the held time", hostcalls::record_metric(metrics.held, held));
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if self.replay.is_some() {
            drop(hostcalls::get_map_value_bytes(MapType::HttpResponseHeaders, ":status"));
        }
        Action::Continue
    }
}

fn set_header(name: &str, value: Option<&str>) {
    warn("writing a request header", hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value));
}

/// Logs a failed host call: the replay would no longer be webhook-guard's floor.
fn warn(what: &str, result: Result<(), Status>) {
    if let Err(e) = result {
        log::warn!("empty-filter: {what} failed: {e:?}");
    }
}

/// The host clock, nanoseconds since the Unix epoch.
fn now_nanos() -> u64 {
    let now = hostcalls::get_current_time().unwrap_or(UNIX_EPOCH);
    now.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_pairs(map_type: MapType, return_map_data: *mut *mut u8, return_map_size: *mut usize) -> u32;
}

/// The request's header map as the host serialised it, unread: webhook-guard's one read
/// of the map (its `request_header_map`), without the SDK reader's copy of every header.
fn request_header_map() -> Vec<u8> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: on success the host hands over `size` bytes it got from this module's
    // `proxy_on_memory_allocate`, a boxed slice of exactly that length, as in the SDK's
    // `get_map_bytes`.
    unsafe {
        if proxy_get_header_map_pairs(MapType::HttpRequestHeaders, &mut data, &mut size) != 0 || data.is_null() {
            return Vec::new();
        }
        Vec::from_raw_parts(data, size, size)
    }
}
