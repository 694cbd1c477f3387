//! webhook-guard: an Envoy WebAssembly filter that authenticates, validates, rate-limits
//! and normalises inbound webhooks.
//!
//! Everything but `host` is plain Rust with no proxy-wasm calls and is unit-tested
//! natively; `host` is the thin layer that talks to Envoy.
//!
//! Module map, in the order a request meets them (docs/development.md has the rest of the
//! tree; tests/docs.rs checks that every module is listed here):
//!
//! - [`config`]: the plugin configuration, parsed and fully validated at configure time.
//! - [`json_path`]: where a parser stopped (member path, line, column) for config errors.
//! - [`route`]: the canonical form of a request path: which requests an endpoint guards.
//! - [`query`]: finding, decoding and removing the secret query parameter.
//! - [`auth`]: constant-time comparison against every configured secret.
//! - [`check`]: the head and body checks of a guarded request, in order.
//! - [`media`]: content-type classification into the syntaxes the profiles read.
//! - [`strict_json`]: strict JSON (no duplicate key, finite numbers, valid Unicode).
//! - [`profile`]: the senders, one folder each, behind the `Profile` trait.
//! - [`signing`]: what signed senders share: HMAC under every secret, constant time.
//! - [`form`]: strict `application/x-www-form-urlencoded` decoding.
//! - [`nonconforming`]: departures from a sender's documented table and what to do.
//! - [`timestamp`]: RFC 3339 date-times, parsed and normalised to UTC.
//! - [`event`]: the normalised event, its name-based id and its CloudEvent rendering.
//! - [`ratelimit`]: token buckets over shared data, one per endpoint or key slot.
//! - [`dedupe`]: duplicate suppression, marked only once the upstream took the event.
//! - [`global_limit`]: the fleet-wide limit asked of a rate limit service over gRPC.
//! - [`shared`]: the shared-data store as a trait, bounded CAS updates, slot keys.
//! - [`outbound`]: calls out through an Envoy cluster (the ARM check's).
//! - [`upstream`]: what the sender is told for the upstream's status, per profile.
//! - [`problem`]: rejection reasons and their `application/problem+json` bodies.
//! - [`metrics`]: the counters and histograms, and their stat names with labels.
//! - [`filter`]: the per-request flow over the `HttpHost` trait, one module per stage.
//! - [`held`]: the streams a root tracks: held heads, ARM checks waiting for a token.
//! - [`root`]: the root context's timers over the `RootHost` trait: held-head expiry,
//!   token refresh.
//! - `host`: the only proxy-wasm code, adapting Envoy's callbacks (wasm32 only).

pub mod auth;
pub mod check;
pub mod config;
pub mod dedupe;
pub mod event;
pub mod filter;
pub mod form;
pub mod global_limit;
pub mod held;
pub mod json_path;
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
