//! webhook-guard: an Envoy WebAssembly filter that authenticates, validates, rate-limits
//! and normalises inbound webhooks.
//!
//! Everything but `host` is plain Rust with no proxy-wasm calls and is unit-tested
//! natively; `host` is the thin layer that talks to Envoy.

pub mod auth;
pub mod check;
pub mod config;
pub mod dedupe;
pub mod event;
pub mod json_path;
pub mod filter;
pub mod global_limit;
pub mod held;
pub mod media;
pub mod metrics;
pub mod nonconforming;
pub mod outbound;
pub mod problem;
pub mod profile;
pub mod query;
pub mod ratelimit;
pub mod root;
pub mod route;
pub mod shared;
pub mod signing;
pub mod strict_json;
pub mod timestamp;
pub mod upstream;

#[cfg(target_arch = "wasm32")]
mod host;
