//! The recording host every stage's tests run against: it answers from the request it
//! was given and records what the flow did (headers, body, local replies, counters, log
//! lines, outbound calls).

use super::{Guard, Headers, HttpHost};
use crate::config::Config;
use crate::metrics::{Counter, Histogram, ListenerCounter};
use crate::outbound::{self, GrpcOutbound, Outbound};
use crate::shared::memory::MemoryStore;
use crate::shared::{SharedStore, StoreError};
use proxy_wasm::types::Action;
use std::cell::{Cell, RefCell};
use std::rc::Rc;

pub(crate) const SECOND: u64 = 1_000_000_000;

pub(crate) const CONFIG: &str = r#"{"header_mode":"hold","endpoints":[
    {"name":"azure","path":"/az","profile":"azure_managed_app","secret":{"values":["k"]},"max_body_bytes":2000},
    {"name":"store","path":"/store","profile":"md5_envelope","secret":{"values":["k"]},"answer_ping":true},
    {"name":"limited","path":"/limited","profile":"azure_managed_app","secret":{"values":["k"]},"rate_limit":{"per_second":0.5,"burst":2}},
    {"name":"per-app","path":"/per-app","profile":"azure_managed_app","secret":{"values":["k"]},"rate_limit":{"per_second":1,"burst":1,"key":"application"}},
    {"name":"once","path":"/once","profile":"azure_managed_app","secret":{"values":["k"]},"dedupe_seconds":60},
    {"name":"shadow","path":"/shadow","profile":"azure_managed_app","secret":{"values":["k"]},"mode":"shadow"},
    {"name":"orig","path":"/orig","profile":"azure_managed_app","secret":{"values":["k"]},"forward":"original"},
    {"name":"hold","path":"/hold","profile":"azure_managed_app","secret":{"values":["k"]},"on_nonconforming":"hold","rate_limit":{"per_second":1,"burst":1,"key":"application"},"dedupe_seconds":60},
    {"name":"reject","path":"/reject","profile":"azure_managed_app","secret":{"values":["k"]},"on_nonconforming":"reject"},
    {"name":"checked","path":"/checked","profile":"azure_managed_app","secret":{"values":["k"]},"dedupe_seconds":60,
     "rate_limit":{"per_second":0.001,"burst":2,"key":"application"},"arm_check":{"arm_cluster":"arm","token_cluster":"imds","managed_identity":{}}}]}"#;
pub(crate) const DOC: &str = r#"{"eventType":"PUT","provisioningState":"Succeeded","eventTime":"2019-08-14T19:20:08Z",
    "applicationId":"subscriptions/s/resourceGroups/r/providers/Microsoft.Solutions/applications/a",
    "applicationDefinitionId":"subscriptions/s/resourceGroups/r/providers/Microsoft.Solutions/applicationDefinitions/d"}"#;

/// Records every host call; answers from the request it was given.
#[derive(Default)]
pub(crate) struct Mock {
    pub(crate) headers: RefCell<Vec<(String, Vec<u8>)>>,
    pub(crate) body: RefCell<Vec<u8>>,
    pub(crate) status: RefCell<Option<u16>>,
    pub(crate) code_details: RefCell<Option<String>>,
    pub(crate) sent: RefCell<Option<(u16, Vec<u8>)>>,
    pub(crate) logs: RefCell<Vec<String>>,
    pub(crate) counts: RefCell<Vec<(usize, Counter)>>,
    pub(crate) listener_counts: RefCell<Vec<ListenerCounter>>,
    pub(crate) records: RefCell<Vec<(usize, Histogram, u64)>>,
    pub(crate) store: Rc<MemoryStore>,
    pub(crate) now: Cell<u64>,
    pub(crate) sent_headers: RefCell<Vec<(String, String)>>,
    /// Dispatched calls: (cluster, `:path`).
    pub(crate) calls: RefCell<Vec<(String, String)>>,
    pub(crate) answer: RefCell<outbound::Answer>,
    /// Dispatched gRPC calls.
    pub(crate) grpc_calls: RefCell<Vec<GrpcCallMade>>,
    /// The answer message of the gRPC call being reported.
    pub(crate) grpc_body: RefCell<Vec<u8>>,
    /// gRPC calls cannot be sent (no such cluster).
    pub(crate) grpc_refused: Cell<bool>,
    pub(crate) resumed: Cell<bool>,
    /// Streams the root entered (`RootHost::enter`), in order.
    pub(crate) entered: RefCell<Vec<u32>>,
}

/// A gRPC call the flow dispatched.
#[derive(Debug, Clone)]
pub(crate) struct GrpcCallMade {
    pub(crate) cluster: String,
    pub(crate) service: String,
    pub(crate) method: String,
    pub(crate) message: Vec<u8>,
    pub(crate) timeout_ms: u64,
}

impl Mock {
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        let headers = self.headers.borrow();
        headers.iter().find(|(k, _)| k == name).map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
    pub(crate) fn sent_status(&self) -> Option<u16> {
        self.sent.borrow().as_ref().map(|s| s.0)
    }
}

impl SharedStore for Rc<Mock> {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        self.store.get(key)
    }
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        self.store.set(key, value, cas)
    }
}

impl Outbound for Rc<Mock> {
    fn dispatch(&self, call: &outbound::Call<'_>) -> Option<u32> {
        let path = call.headers.iter().find(|(k, _)| *k == ":path").map(|(_, v)| v.clone()).unwrap_or_default();
        let mut calls = self.calls.borrow_mut();
        calls.push((call.cluster.to_string(), path));
        u32::try_from(calls.len()).ok()
    }
    fn answer(&self, _body_size: usize) -> outbound::Answer {
        self.answer.borrow().clone()
    }
}

impl GrpcOutbound for Rc<Mock> {
    fn dispatch_grpc(&self, call: &outbound::GrpcCall<'_>) -> Option<u32> {
        if self.grpc_refused.get() {
            return None;
        }
        let mut calls = self.grpc_calls.borrow_mut();
        calls.push(GrpcCallMade {
            cluster: call.cluster.into(),
            service: call.service.into(),
            method: call.method.into(),
            message: call.message.to_vec(),
            timeout_ms: call.timeout_ms,
        });
        u32::try_from(calls.len()).ok()
    }
    fn grpc_answer(&self, size: usize) -> Vec<u8> {
        self.grpc_body.borrow().get(..size).map(<[u8]>::to_vec).unwrap_or_default()
    }
}

impl HttpHost for Rc<Mock> {
    fn now_nanos(&self) -> u64 {
        self.now.get()
    }
    fn request_headers(&self) -> Headers {
        Headers::from_pairs(self.headers.borrow().iter().map(|(k, v)| (k.as_str(), v.as_slice())))
    }
    fn set_request_header(&self, name: &str, value: Option<&str>) {
        let mut headers = self.headers.borrow_mut();
        headers.retain(|(k, _)| k != name);
        if let Some(v) = value {
            headers.push((name.to_string(), v.as_bytes().to_vec()));
        }
    }
    fn request_body(&self, size: usize) -> Option<Vec<u8>> {
        self.body.borrow().get(..size).map(<[u8]>::to_vec)
    }
    fn set_request_body(&self, _size: usize, body: &[u8]) {
        *self.body.borrow_mut() = body.to_vec();
    }
    fn response_status(&self) -> Option<u16> {
        *self.status.borrow()
    }
    fn response_code_details(&self) -> Option<String> {
        self.code_details.borrow().clone()
    }
    fn set_response_status(&self, status: u16) {
        *self.status.borrow_mut() = Some(status);
    }
    fn send_response(&self, status: u16, headers: &[(&str, &str)], body: &[u8]) {
        *self.sent.borrow_mut() = Some((status, body.to_vec()));
        *self.sent_headers.borrow_mut() = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    }
    fn count(&self, endpoint: usize, counter: Counter) {
        self.counts.borrow_mut().push((endpoint, counter));
    }
    fn record(&self, endpoint: usize, histogram: Histogram, millis: u64) {
        self.records.borrow_mut().push((endpoint, histogram, millis));
    }
    fn count_listener(&self, counter: ListenerCounter) {
        self.listener_counts.borrow_mut().push(counter);
    }
    fn log(&self, _level: log::Level, line: &str) {
        self.logs.borrow_mut().push(line.to_string());
    }
    fn resume_request(&self) {
        self.resumed.set(true);
    }
}

impl crate::root::RootHost for Rc<Mock> {
    fn enter(&self, id: u32) -> bool {
        self.entered.borrow_mut().push(id);
        true
    }
}

pub(crate) fn guard(method: &str, path: &str, extra: &[(&str, &str)]) -> (Rc<Mock>, Guard<Rc<Mock>>) {
    guard_on(&Rc::new(MemoryStore::new()), 0, method, path, extra)
}

/// A stream whose host shares `store` (the workers' shared data) and reads `now`.
pub(crate) fn guard_on(store: &Rc<MemoryStore>, now: u64, method: &str, path: &str, extra: &[(&str, &str)]) -> (Rc<Mock>, Guard<Rc<Mock>>) {
    guard_with(CONFIG, store, now, method, path, extra)
}

/// As [`guard_on`], with the head streamed (`"header_mode": "stream"`).
pub(crate) fn streamed_on(store: &Rc<MemoryStore>, method: &str, path: &str, extra: &[(&str, &str)]) -> (Rc<Mock>, Guard<Rc<Mock>>) {
    let config = CONFIG.replacen(r#""header_mode":"hold""#, r#""header_mode":"stream""#, 1);
    guard_with(&config, store, SECOND, method, path, extra)
}

pub(crate) fn streamed(method: &str, path: &str, extra: &[(&str, &str)]) -> (Rc<Mock>, Guard<Rc<Mock>>) {
    streamed_on(&Rc::new(MemoryStore::new()), method, path, extra)
}

fn guard_with(config: &str, store: &Rc<MemoryStore>, now: u64, method: &str, path: &str, extra: &[(&str, &str)]) -> (Rc<Mock>, Guard<Rc<Mock>>) {
    let config = Rc::new(Config::parse(config.as_bytes(), |_| None).unwrap());
    let mock = Rc::new(Mock { store: Rc::clone(store), now: Cell::new(now), ..Mock::default() });
    let mut headers = vec![(":method".to_string(), method.as_bytes().to_vec()), (":path".to_string(), path.as_bytes().to_vec())];
    headers.extend(extra.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())));
    *mock.headers.borrow_mut() = headers;
    (Rc::clone(&mock), Guard::new(mock, config))
}

pub(crate) fn feed(mock: &Mock, guard: &mut Guard<Rc<Mock>>, body: &[u8]) -> Action {
    *mock.body.borrow_mut() = body.to_vec();
    guard.on_request_body(body.len(), true)
}
