//! End-to-end tests: the built module in a real Envoy, a recording upstream, real HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

mod auth;
mod azure;
mod config;
mod faults;
mod hostile;
mod dedupe;
mod operability;
mod ratelimit;
mod vendor;

pub const SECRET: &str = "s3cret-Value";
pub const OLD_SECRET: &str = "previous/secret+1";

/// A guarded Azure endpoint at `/api/resource` with two secrets (rotation) plus `extra`
/// endpoint settings.
pub fn azure_plugin(extra: &str) -> String {
    format!(
        r#"{{"endpoints": [{{"name": "azure", "path": "/api/resource", "profile": "azure_managed_app",
  "secret": {{"values": ["{SECRET}", "{OLD_SECRET}"]}}, "max_body_bytes": 4096{extra}}}]}}"#
    )
}

/// The service catalog sample from the documentation, verbatim.
pub const CATALOG_SAMPLE: &str = r#"{
  "eventType": "PUT",
  "applicationId": "subscriptions/<subId>/resourceGroups/<rgName>/providers/Microsoft.Solutions/applications/<applicationName>",
  "eventTime": "2019-08-14T19:20:08.1707163Z",
  "provisioningState": "Succeeded",
  "applicationDefinitionId": "subscriptions/<subId>/resourceGroups/<rgName>/providers/Microsoft.Solutions/applicationDefinitions/<appDefName>"
}"#;

/// The Marketplace failure sample from the documentation, verbatim.
pub const MARKETPLACE_SAMPLE: &str = r#"{
  "eventType": "PUT",
  "applicationId": "subscriptions/<subId>/resourceGroups/<rgName>/providers/Microsoft.Solutions/applications/<applicationName>",
  "eventTime": "2019-08-14T19:20:08.1707163Z",
  "provisioningState": "Failed",
  "billingDetails": { "resourceUsageId": "<resourceUsageId>" },
  "plan": { "publisher": "publisherId", "product": "offer", "name": "skuName", "version": "1.0.1" },
  "error": {
    "code": "ErrorCode",
    "message": "error message",
    "details": [ { "code": "DetailedErrorCode", "message": "error message" } ]
  }
}"#;

pub fn target(query: &str) -> String {
    format!("/api/resource?{query}")
}
