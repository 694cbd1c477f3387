//! The signed senders' schemes, computed here as each sender computes them (RustCrypto,
//! as the end-to-end tests do), independently of the module's code: a scenario's body can
//! change and keep a valid signature.

use crate::scenarios::Request;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The secrets the signed endpoints are configured with (scenarios.rs), as each sender shows them.
pub const GITHUB_SECRET: &str = "It's a Secret to Everybody";
pub const STRIPE_SECRET: &str = "whsec_pQ3sB7nVx2LkR9tYw4ZcE1uH6jM8aF0d";
pub const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
pub const SHOPIFY_SECRET: &str = "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";
pub const STANDARD_WEBHOOKS_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

/// HMAC-SHA256 of `parts` under `key` (HMAC takes a key of any length: never empty).
fn hmac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else { return Vec::new() };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The value of one of the request's own headers (empty when absent: the signature then fails).
fn header<'a>(request: &'a Request, name: &str) -> &'a str {
    request.headers.iter().find(|(n, _)| *n == name).map_or("", |(_, v)| v)
}

/// GitHub: `X-Hub-Signature-256: sha256=<hex HMAC of the body>`.
pub fn github(request: &Request) -> (&'static str, String) {
    ("x-hub-signature-256", format!("sha256={}", hex(&hmac(GITHUB_SECRET.as_bytes(), &[request.body]))))
}

/// Stripe: `Stripe-Signature: t=<t>,v1=<hex HMAC of "<t>." + body>`, keyed with the `whsec_` text.
pub fn stripe(request: &Request) -> (&'static str, String) {
    let t = crate::scenarios::SENT;
    ("stripe-signature", format!("t={t},v1={}", hex(&hmac(STRIPE_SECRET.as_bytes(), &[t.as_bytes(), b".", request.body]))))
}

/// Slack: `X-Slack-Signature: v0=<hex HMAC of "v0:<timestamp>:" + body>`.
pub fn slack(request: &Request) -> (&'static str, String) {
    let t = header(request, "x-slack-request-timestamp");
    ("x-slack-signature", format!("v0={}", hex(&hmac(SLACK_SECRET.as_bytes(), &[b"v0:", t.as_bytes(), b":", request.body]))))
}

/// Shopify: `X-Shopify-Hmac-Sha256: <base64 HMAC of the body>`.
pub fn shopify(request: &Request) -> (&'static str, String) {
    ("x-shopify-hmac-sha256", STANDARD.encode(hmac(SHOPIFY_SECRET.as_bytes(), &[request.body])))
}

/// Standard Webhooks: `webhook-signature: v1,<base64 HMAC of "<id>.<timestamp>." + body>`,
/// keyed with the base64-decoded `whsec_` secret.
pub fn standard_webhooks(request: &Request) -> (&'static str, String) {
    let encoded = STANDARD_WEBHOOKS_SECRET.trim_start_matches("whsec_");
    let key = STANDARD.decode(encoded).unwrap_or_default();
    let signed = [header(request, "webhook-id").as_bytes(), b".", header(request, "webhook-timestamp").as_bytes(), b".", request.body];
    ("webhook-signature", format!("v1,{}", STANDARD.encode(hmac(&key, &signed))))
}
