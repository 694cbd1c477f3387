//! Senders. Each profile is one folder here: everything that knows a sender's format, its
//! authentication, its configuration keys, its handshakes and its counters. The pipeline
//! (routing, query, rate limits, duplicate suppression, problem bodies, the filter stages)
//! reaches a sender only through [`Profile`], so adding one is its folder plus its line in
//! [`REGISTRY`] (docs/profiles/ADDING.md).
//!
//! A trait object rather than an enum: the stages make a handful of calls per request, an
//! indirect call each, which is nothing next to reading the body; every profile's code is
//! linked either way; and a trait keeps a new sender out of every `match` in the pipeline.

pub mod azure_event_grid;
pub mod azure_managed_app;
pub mod github;
pub mod md5_envelope;
pub mod shopify;
pub mod slack;
pub mod standard_webhooks;
pub mod stripe;

use crate::config::{Object, Secret, Upstream4xx};
use crate::event::Event;
use crate::media::Media;
use crate::metrics::Counter;
use crate::nonconforming::OnNonconforming;
use crate::problem::{Reason, Rejection};
use crate::profile::azure_managed_app::arm::config::ArmCheck;
use crate::upstream::{self, Told};
use serde::Deserialize;
use std::fmt;

/// Every sender the module knows: one line each.
pub const REGISTRY: &[Registration] = &[
    azure_managed_app::REGISTRATION,
    md5_envelope::REGISTRATION,
    standard_webhooks::REGISTRATION,
    github::REGISTRATION,
    slack::REGISTRATION,
    stripe::REGISTRATION,
    azure_event_grid::REGISTRATION,
    shopify::REGISTRATION,
];

/// How a profile is found and configured.
pub struct Registration {
    /// The `profile` value that selects it.
    pub name: &'static str,
    /// The endpoint keys it reads besides the common ones (an endpoint of another
    /// profile giving one is refused, naming the profiles that read it). Signed senders
    /// share the meaning of `tolerance_seconds` and `keep_signature`.
    pub keys: &'static [&'static str],
    /// Parses and validates the profile's keys of one endpoint.
    pub configure: fn(&Section) -> Result<Box<dyn Profile>, String>,
}

/// The registration named `name`.
pub fn find(name: &str) -> Option<&'static Registration> {
    REGISTRY.iter().find(|r| r.name == name)
}

/// A JSON sender's body: its text and the document as the event's `data`, or the
/// refusal every JSON profile gives.
pub fn json_document(body: &[u8]) -> Result<(&str, Box<serde_json::value::RawValue>), Rejection> {
    let text = std::str::from_utf8(body).map_err(|_| Rejection::new(Reason::Invalid, "the body is not UTF-8 JSON"))?;
    let data = serde_json::from_str(text).map_err(|_| Rejection::new(Reason::Invalid, "the body is not JSON"))?;
    Ok((text, data))
}

/// One endpoint's configuration, as a profile reads its own keys from it.
pub struct Section<'a> {
    /// This endpoint's object in the plugin configuration.
    pub object: &'a Object<'a>,
    /// `endpoints[i]`: stripped from parse errors, which the caller prefixes again.
    pub at: &'a str,
    /// The endpoint's name (shared-data keys are built from it).
    pub name: &'a str,
    /// The endpoint's secrets (`secret.values` and `secret.env`), already checked.
    pub secret: &'a Secret,
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

impl<'a> Section<'a> {
    /// The endpoint's member `key` as `T`, `None` when absent or `null`. Errors name the
    /// field relative to the endpoint (`allowed_rate: ...`).
    pub fn get<T: Deserialize<'a>>(&self, key: &str) -> Result<Option<T>, String> {
        self.object.get::<Option<T>>(key).map(Option::flatten).map_err(|e| self.relative(e))
    }

    /// The endpoint's member `key`, an object (`what`: see [`Object::read`]), read by
    /// `read`; `None` when absent or `null`. Errors as [`Section::get`]'s.
    pub fn object<T>(&self, key: &str, what: &'static str, read: impl FnOnce(&Object) -> Result<T, String>) -> Result<Option<T>, String> {
        let object = self.object.object(key, what, true).map_err(|e| self.relative(e))?;
        object.map(|o| read(&o).map_err(|e| self.relative(e))).transpose()
    }

    /// A configuration error without the endpoint's place, which the caller prefixes again.
    fn relative(&self, e: String) -> String {
        match e.strip_prefix(self.at).and_then(|e| e.strip_prefix('.')) {
            Some(relative) => relative.to_string(),
            None => e,
        }
    }
}

/// How a sender proves a request is its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authentication {
    /// A secret in the query (`secret.param`), checked on the head before anything else.
    QuerySecret,
    /// A signature over the raw body and named request headers, checked once the body is
    /// complete; the head gets the cheap checks ([`Profile::check_signed_head`]).
    Signature,
}

/// The request headers a signed profile names ([`Profile::signed_headers`]), taken from
/// the head before it is cleaned: the values by the same index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignedHeaders(pub Vec<Option<Vec<u8>>>);

impl SignedHeaders {
    /// The value of the `i`th named header as text; `None` when absent or not UTF-8.
    pub fn text(&self, i: usize) -> Option<&str> {
        std::str::from_utf8(self.0.get(i)?.as_deref()?).ok()
    }

    /// The `i`th of `names`, trimmed; a missing, empty or non-UTF-8 one is 401.
    pub fn required<'a>(&'a self, i: usize, names: &[&str]) -> Result<&'a str, Rejection> {
        let value = self.text(i).map(str::trim).filter(|v| !v.is_empty());
        value.ok_or_else(|| Rejection::new(Reason::Unauthorized, format!("the {} header is missing", names.get(i).copied().unwrap_or_default())))
    }
}

/// A signed sender's headers ([`Profile::signed`]); its keys, tolerance and
/// `keep_signature` are a [`crate::signing::Signed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignatureHeaders {
    /// Every header the signature covers or the checks read (lowercase), captured from
    /// the head before it is cleaned, in this order (`SignedHeaders::text(i)`).
    pub headers: &'static [&'static str],
    /// Those removed before forwarding: the signature headers, unless the endpoint keeps
    /// them (`keep_signature`) for the backend to verify again.
    pub removed: &'static [&'static str],
}

impl SignatureHeaders {
    pub fn new(headers: &'static [&'static str], signatures: &'static [&'static str], keep_signature: bool) -> SignatureHeaders {
        SignatureHeaders { headers, removed: if keep_signature { &[] } else { signatures } }
    }
}

/// An answer the filter gives itself, once the request is authenticated and valid (a
/// sender's ping or handshake): the upstream is not called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalAnswer {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    /// The counter of this answer.
    pub counter: Counter,
}

/// Everything the pipeline asks of a sender, for one configured endpoint. Not a `Debug`
/// supertrait: that kept every profile's `fmt` in the module's vtables, though only the
/// tests print a profile (by its name, below, so no secret can show).
pub trait Profile {
    /// The registered name (`x-webhook-profile`).
    fn name(&self) -> &'static str;

    /// The `Allow` header value: the methods the sender uses.
    fn allow(&self) -> &'static str {
        "POST"
    }

    /// Whether `method` is one of [`Profile::allow`]'s.
    fn allows(&self, method: &str) -> bool {
        // A char separator: a string one adds a substring-search iterator (1 KB) here.
        self.allow().split(',').any(|m| m.trim_ascii() == method)
    }

    /// Whether a body of syntax `media` is read.
    fn accepts(&self, media: Media) -> bool {
        media == Media::Json
    }

    /// The accepted content types, for the 415's detail (from [`Profile::accepts`]).
    fn accepted(&self) -> &'static str {
        match (self.accepts(Media::Xml), self.accepts(Media::Form)) {
            (true, true) => "application/json, application/xml or application/x-www-form-urlencoded",
            (true, false) => "application/json or application/xml",
            (false, true) => "application/json or application/x-www-form-urlencoded",
            (false, false) => "application/json",
        }
    }

    /// A signed sender's headers; `None` (the default) for a query-secret sender.
    fn signed(&self) -> Option<SignatureHeaders> {
        None
    }

    /// A signature ([`Profile::signed`]) or the query secret.
    fn authentication(&self) -> Authentication {
        if self.signed().is_some() {
            Authentication::Signature
        } else {
            Authentication::QuerySecret
        }
    }

    /// The request headers a signature covers or needs, read from the head.
    fn signed_headers(&self) -> &'static [&'static str] {
        self.signed().map_or(&[], |s| s.headers)
    }

    /// Of [`Profile::signed_headers`], those removed before forwarding.
    fn removed_headers(&self) -> &'static [&'static str] {
        self.signed().map_or(&[], |s| s.removed)
    }

    /// The head's cheap checks of a signed request: the headers present and well formed,
    /// the timestamp within tolerance of `now_secs` (the host clock).
    fn check_signed_head(&self, _headers: &SignedHeaders, _now_secs: u64) -> Result<(), Rejection> {
        Ok(())
    }

    /// The signature over the raw `body` and `headers`, checked against every secret.
    fn verify_signature(&self, _headers: &SignedHeaders, _body: &[u8], _now_secs: u64) -> Result<(), Rejection> {
        Ok(())
    }

    /// Validates an authenticated body into the normalised event, whose `id` is the
    /// duplicate-suppression key (for a signed sender: from its message id).
    fn validate(&self, media: Media, body: &[u8], headers: &SignedHeaders) -> Result<Event, Rejection>;

    /// What the endpoint does with an event carrying findings (`on_nonconforming`).
    fn on_nonconforming(&self) -> OnNonconforming {
        OnNonconforming::Forward
    }

    /// The answer to a ping or handshake, given by the filter (only after authentication).
    fn local_answer(&self, _event: &Event) -> Option<LocalAnswer> {
        None
    }

    /// The answer to a handshake that has no body (CloudEvents' abuse-protection
    /// `OPTIONS`), given by the filter on the head of a request authenticated by its query
    /// secret, before the method is checked: `headers` are [`Profile::signed_headers`]'s.
    /// Never asked of a signed profile, whose signature covers a body.
    fn head_answer(&self, _method: &str, _headers: &SignedHeaders) -> Option<LocalAnswer> {
        None
    }

    /// What the sender is told for the upstream's final `status`, by its retry rules
    /// (src/upstream.rs): by default a 2xx is delivered as it is and anything the sender
    /// would not retry becomes 502.
    fn told(&self, status: u16, upstream_4xx: Upstream4xx) -> Told {
        upstream::told(status, upstream_4xx)
    }

    /// Whether its events carry the per-application and per-subscription rate-limit keys.
    fn has_rate_keys(&self) -> bool {
        false
    }

    /// Azure's confirmation of each notification with Resource Manager (`arm_check`).
    fn arm_check(&self) -> Option<&ArmCheck> {
        None
    }

    /// The seconds within which a replay of a signed delivery is accepted by the
    /// signature: duplicate suppression must cover at least this.
    fn replay_window(&self) -> Option<u64> {
        None
    }

    /// The largest delivery its sender documents, when the sender drops a 413: the
    /// endpoint's `max_body_bytes` defaults to it and may not be smaller.
    fn min_body_bytes(&self) -> Option<u64> {
        None
    }

    /// The profile's own counters, besides the pipeline's.
    fn counters(&self) -> Vec<Counter> {
        Vec::new()
    }

    /// The profile's counter of a forwarded `event` (e.g. per event type).
    fn event_counter(&self, _event: &Event) -> Option<Counter> {
        None
    }
}

impl fmt::Debug for dyn Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn a_profile_prints_as_its_name_alone() {
        for r in REGISTRY {
            // The secret in each profile's own form.
            let secret = match r.name {
                "standard_webhooks" => "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
                "stripe" => "whsec_pQ3sB7nVx2LkR9tYw4ZcE1uH6jM8aF0d",
                _ => "s3cret",
            };
            let json = format!(r#"{{"endpoints":[{{"name":"e","path":"/e","profile":"{}","secret":{{"values":["{secret}"]}}}}]}}"#, r.name);
            let profile = crate::config::Config::parse(json.as_bytes(), |_| None).unwrap().endpoints.remove(0).profile;
            assert_eq!(format!("{profile:?}"), r.name);
        }
    }

    #[test]
    fn names_are_unique_and_keys_are_not_common() {
        let names: HashSet<&str> = REGISTRY.iter().map(|r| r.name).collect();
        assert_eq!(names.len(), REGISTRY.len());
        for r in REGISTRY {
            assert_eq!(r.keys.iter().collect::<HashSet<_>>().len(), r.keys.len(), "{}: a key listed twice", r.name);
            assert!(r.keys.iter().all(|k| !crate::config::COMMON_KEYS.contains(k)), "{}", r.name);
        }
    }
}
