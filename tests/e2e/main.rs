//! End-to-end tests: the built module in a real Envoy, a recording upstream, real HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

mod arm;
mod auth;
mod azure;
mod azure_event_grid;
mod bypass;
mod command;
mod config;
mod dedupe;
mod failure_policy;
mod faults;
mod fleet;
mod fleet_stream;
mod github;
mod hostile;
mod monitoring;
mod nonconforming;
mod operability;
mod ratelimit;
mod redirects;
mod release;
mod scripts;
mod shopify;
mod signed;
mod slack;
mod smoke;
mod standard_webhooks;
mod stripe;
mod tls;
mod vendor;

pub const SECRET: &str = "s3cret-Value";
pub const OLD_SECRET: &str = "previous/secret+1";

/// A guarded Azure endpoint at `/api/resource`, head held (`hold`), with two secrets (rotation) plus `extra`
/// endpoint settings.
pub fn azure_plugin(extra: &str) -> String {
    format!(
        r#"{{"header_mode": "hold", "endpoints": [{{"name": "azure", "path": "/api/resource", "profile": "azure_managed_app",
  "secret": {{"values": ["{SECRET}", "{OLD_SECRET}"]}}, "max_body_bytes": 4096{extra}}}]}}"#
    )
}

/// The service catalog sample from the documentation, verbatim.
pub const CATALOG_SAMPLE: &str = include_str!("../../examples/requests/azure-service-catalog.json");

/// The Marketplace failure sample from the documentation, verbatim.
pub const MARKETPLACE_SAMPLE: &str = include_str!("../../examples/requests/azure-marketplace-failed.json");

pub fn target(query: &str) -> String {
    format!("/api/resource?{query}")
}
