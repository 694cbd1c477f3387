//! webhook-guard: an Envoy WebAssembly filter that authenticates, validates, rate-limits
//! and normalises inbound webhooks.
//!
//! Everything but `host` is plain Rust with no proxy-wasm calls and is unit-tested natively.

pub mod event;
pub mod media;
