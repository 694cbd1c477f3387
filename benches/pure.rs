//! Micro-benchmarks of the pure (host-free) code on the request path:
//! `cargo bench --bench pure` (ns per operation in criterion's `time:` line).
//!
//! The inputs are checked once at setup, so every benchmark measures the success path.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use md5::{Digest, Md5};
use webhook_guard::media::Media;
use webhook_guard::profile::azure_managed_app::notification as azure;
use webhook_guard::profile::md5_envelope as vendor;
use webhook_guard::ratelimit::{self, Acquire, Limit, State, MAX_CAS_ATTEMPTS};
use webhook_guard::shared::{SharedStore, StoreError};

/// The Marketplace failure sample of the public documentation
/// (`examples/requests/azure-marketplace-failed.json`).
const MARKETPLACE: &str = include_str!("../examples/requests/azure-marketplace-failed.json");

/// The service catalog success sample of the same documentation.
const SERVICE_CATALOG: &str = include_str!("../examples/requests/azure-service-catalog.json");

/// The `source` the filter gives an endpoint named `azure`.
const SOURCE: &str = "/webhook-guard/azure";

/// The vendor's ping payload (`md5-signed-vendor-webhooks.md`).
const PING: &str = r#"{"type":"ping","epoch_timestamp":1466526410}"#;

fn md5_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(value: &str) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => out.push(char::from(b)),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn bench_azure(c: &mut Criterion) {
    let mut g = c.benchmark_group("azure");
    for (name, body) in [("marketplace", MARKETPLACE), ("service_catalog", SERVICE_CATALOG)] {
        let body = body.as_bytes();
        let event = azure::validate(body).unwrap();
        assert!(!event.to_cloudevent(SOURCE).unwrap().is_empty());
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(format!("validate/{name}"), |b| b.iter(|| azure::validate(black_box(body)).unwrap()));
        g.bench_function(format!("validate+to_cloudevent/{name}"), |b| {
            b.iter(|| azure::validate(black_box(body)).unwrap().to_cloudevent(black_box(SOURCE)).unwrap())
        });
        g.bench_function(format!("to_cloudevent/{name}"), |b| b.iter(|| black_box(&event).to_cloudevent(SOURCE).unwrap()));
    }
    g.finish();
}

fn bench_vendor(c: &mut Criterion) {
    let md5 = md5_hex(PING.as_bytes());
    let json = format!(r#"{{"payload": {PING}, "md5": "{md5}"}}"#);
    // The digest covers the bytes between <payload> and </payload>.
    let inner = "<type>ping</type><epoch_timestamp>1466526410</epoch_timestamp>";
    let xml = format!("<notification><payload>{inner}</payload><md5>{}</md5></notification>", md5_hex(inner.as_bytes()));
    let form = format!("payload={}&md5={md5}", form_encode(PING));

    let mut g = c.benchmark_group("vendor");
    for (name, media, body) in [("json", Media::Json, json), ("xml", Media::Xml, xml), ("form", Media::Form, form)] {
        let event = vendor::parse(media, body.as_bytes()).unwrap_or_else(|e| panic!("{name}: {}", e.detail()));
        assert_eq!(event.kind, "webhookguard.vendor.ping", "{name}");
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(format!("parse/{name}_ping"), |b| b.iter(|| vendor::parse(media, black_box(body.as_bytes())).unwrap()));
    }
    g.finish();
}

/// A single-threaded store with Envoy's shared-data semantics (every write bumps the key's
/// CAS token, a stale token is refused, a missing key is always settable).
#[derive(Default)]
struct MemoryStore {
    entries: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    last_cas: Cell<u32>,
}

impl SharedStore for MemoryStore {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match self.entries.borrow().get(key) {
            Some((value, cas)) => (Some(value.clone()), Some(*cas)),
            None => (None, None),
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), StoreError> {
        let mut entries = self.entries.borrow_mut();
        let next = self.last_cas.get().wrapping_add(1).max(1);
        match entries.get_mut(key) {
            Some((_, current)) if cas.is_some_and(|c| c != *current) => Err(StoreError::CasMismatch),
            Some((stored, current)) => {
                stored.clear();
                stored.extend_from_slice(value);
                *current = next;
                self.last_cas.set(next);
                Ok(())
            }
            None => {
                entries.insert(key.to_owned(), (value.to_vec(), next));
                self.last_cas.set(next);
                Ok(())
            }
        }
    }
}

fn bench_ratelimit(c: &mut Criterion) {
    const T0: u64 = 1_700_000_000_000_000_000;
    let mut g = c.benchmark_group("ratelimit");

    // A limit that never trips (what benches/run.sh configures) and one that always refuses.
    let open = Limit::new(1_000_000.0, 1_000_000).unwrap();
    let tight = Limit::new(1.0, 1).unwrap();
    let half_full = State { tokens_micro: 500_000_000_000, updated_nanos: T0 };
    let (_, d) = ratelimit::take(&open, Some(half_full), T0 + 1_000);
    assert_eq!(d, ratelimit::Take::Allowed);
    g.bench_function("take/allowed", |b| b.iter(|| ratelimit::take(black_box(&open), black_box(Some(half_full)), black_box(T0 + 1_000))));
    let empty = State { tokens_micro: 0, updated_nanos: T0 };
    assert!(matches!(ratelimit::take(&tight, Some(empty), T0 + 1_000).1, ratelimit::Take::Limited { .. }));
    g.bench_function("take/limited", |b| b.iter(|| ratelimit::take(black_box(&tight), black_box(Some(empty)), black_box(T0 + 1_000))));

    // acquire: get + take + CAS set on an existing key, the clock moving 1 µs per request.
    let store = MemoryStore::default();
    let key = ratelimit::slot_key("azure", "", 1);
    assert_eq!(ratelimit::acquire(&store, &key, &open, T0, MAX_CAS_ATTEMPTS), Acquire::Allowed);
    let now = Cell::new(T0);
    g.bench_function("acquire/allowed", |b| {
        b.iter(|| {
            now.set(now.get() + 1_000);
            let outcome = ratelimit::acquire(&store, black_box(&key), &open, now.get(), MAX_CAS_ATTEMPTS);
            debug_assert_eq!(outcome, Acquire::Allowed);
            outcome
        })
    });
    // A refused request reads but does not write back.
    let store = MemoryStore::default();
    assert_eq!(ratelimit::acquire(&store, &key, &tight, T0, MAX_CAS_ATTEMPTS), Acquire::Allowed);
    assert!(matches!(ratelimit::acquire(&store, &key, &tight, T0, MAX_CAS_ATTEMPTS), Acquire::Limited { .. }));
    g.bench_function("acquire/limited", |b| b.iter(|| ratelimit::acquire(&store, black_box(&key), &tight, T0 + 1_000, MAX_CAS_ATTEMPTS)));
    g.bench_function("slot_key", |b| b.iter(|| ratelimit::slot_key(black_box("azure"), black_box("subscriptions/0000/resourcegroups/rg"), 1024)));
    g.finish();
}

fn config() -> Criterion {
    Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = pure;
    config = config();
    targets = bench_azure, bench_vendor, bench_ratelimit
}
criterion_main!(pure);
