//! webhook-guard: an Envoy WebAssembly filter that authenticates, validates, rate-limits
//! and normalises inbound webhooks.
//!
//! Everything but `host` is plain Rust with no proxy-wasm calls and is unit-tested
//! natively; `host` is the thin layer that talks to Envoy.

pub mod arm;
pub mod auth;
pub mod azure;
pub mod check;
pub mod config;
pub mod conformance;
pub mod dedupe;
pub mod event;
pub mod json_path;
pub mod filter;
pub mod held;
pub mod media;
pub mod metrics;
pub mod problem;
pub mod query;
pub mod ratelimit;
pub mod route;
pub mod resource_id;
pub mod shared;
pub mod strict_json;
pub mod timestamp;
pub mod upstream;
pub mod vendor;

#[cfg(target_arch = "wasm32")]
mod host;
