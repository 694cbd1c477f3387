//! The checks of one guarded request, in the order they run: authentication, method,
//! declared size and content type on the head; the profile's validation on the body.

use crate::config::{Endpoint, Profile};
use crate::event::Event;
use crate::media::Media;
use crate::problem::{clip, Reason, Rejection};
use crate::query::{self, Found};
use crate::{auth, azure, vendor};

/// The request head, as the checks need it.
pub struct Head<'a> {
    pub method: &'a str,
    pub query: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub content_length: Option<&'a str>,
    pub content_encoding: Option<&'a str>,
}

/// Checks everything the head can tell. Authentication runs first, so an unauthenticated
/// caller learns nothing about the endpoint (not even its methods).
pub fn head(endpoint: &Endpoint, head: &Head) -> Result<Media, Rejection> {
    authenticate(endpoint, head.query)?;
    let profile = endpoint.profile;
    if !profile.allows(head.method) {
        let mut rejection = Rejection::new(
            Reason::Method,
            format!("method {} is not allowed; use {}", clip(head.method), profile.allow()),
        );
        rejection.allow = Some(profile.allow());
        return Err(rejection);
    }
    let declared = head.content_length.and_then(|v| v.trim().parse::<u64>().ok());
    let limit = u64::try_from(endpoint.max_body_bytes).unwrap_or(u64::MAX);
    if declared.is_some_and(|len| len > limit) {
        return Err(Rejection::new(Reason::TooLarge, format!("the body is larger than {limit} bytes")));
    }
    // The filter never decodes a body (neither sender encodes one): an encoded body
    // could be neither validated nor forwarded as what it claims to be.
    if let Some(encoding) = head.content_encoding.filter(|e| !is_identity(e)) {
        return Err(Rejection::new(
            Reason::MediaType,
            format!("content encoding '{}' is not accepted; send the body unencoded", clip(encoding.trim())),
        ));
    }
    match Media::classify(head.content_type) {
        Some(media) if profile == Profile::Md5Envelope || media == Media::Json => Ok(media),
        _ => Err(Rejection::new(
            Reason::MediaType,
            format!("content type '{}' is not accepted; send {}", clip(head.content_type.unwrap_or("")), accepted(profile)),
        )),
    }
}

/// An absent encoding: empty, or only `identity` codings.
fn is_identity(encoding: &str) -> bool {
    encoding.split(',').all(|coding| coding.trim().is_empty() || coding.trim().eq_ignore_ascii_case("identity"))
}

fn authenticate(endpoint: &Endpoint, query: Option<&str>) -> Result<(), Rejection> {
    let param = &endpoint.secret.param;
    match query::find(query, param) {
        Found::Value(candidate) if auth::matches_any(&candidate, &endpoint.secret.values) => Ok(()),
        Found::Value(_) => Err(Rejection::new(
            Reason::Forbidden,
            format!("the '{param}' query parameter does not match a configured secret"),
        )),
        Found::Missing => Err(Rejection::new(
            Reason::Unauthorized,
            format!("the '{param}' query parameter is missing or empty"),
        )),
        Found::Repeated => Err(Rejection::new(
            Reason::AmbiguousSecret,
            format!("the '{param}' query parameter is given more than once"),
        )),
        Found::Malformed => Err(Rejection::new(
            Reason::Invalid,
            "the query string holds a malformed percent-escape".to_string(),
        )),
    }
}

/// Validates the complete body with the endpoint's profile.
pub fn body(endpoint: &Endpoint, media: Media, body: &[u8]) -> Result<Event, Rejection> {
    match endpoint.profile {
        Profile::AzureManagedApp => azure::validate(body).map_err(|detail| Rejection::new(Reason::Invalid, detail)),
        Profile::Md5Envelope => vendor::parse(media, body).map_err(|rejected| match rejected {
            vendor::Rejected::Invalid(detail) => Rejection::new(Reason::Invalid, detail),
            vendor::Rejected::Digest(detail) => Rejection::new(Reason::Digest, detail),
        }),
    }
}

fn accepted(profile: Profile) -> &'static str {
    match profile {
        Profile::AzureManagedApp => "application/json",
        Profile::Md5Envelope => "application/json, application/xml or application/x-www-form-urlencoded",
    }
}
