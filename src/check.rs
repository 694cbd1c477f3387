//! The checks of one guarded request, in the order they run: authentication, method,
//! declared size and content type on the head; the profile's validation on the body.

use crate::auth;
use crate::config::Endpoint;
use crate::event::Event;
use crate::media::Media;
use crate::problem::{clip, Reason, Rejection};
use crate::profile::{Authentication, LocalAnswer, SignedHeaders};
use crate::query::{self, Found};

/// The request head, as the checks need it.
pub struct Head<'a> {
    pub method: &'a str,
    pub query: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub content_length: Option<&'a str>,
    pub content_encoding: Option<&'a str>,
}

/// What an accepted head leads to.
#[derive(Debug, PartialEq)]
pub enum Next {
    /// The body, of this syntax, is read and validated.
    Body(Media),
    /// A bodiless handshake the filter answers itself ([`crate::profile::Profile::head_answer`]).
    Answer(LocalAnswer),
}

/// Checks everything the head can tell. Authentication runs first, so an unauthenticated
/// caller learns nothing about the endpoint (not even its methods); for a signed sender
/// that is its cheap part (headers present and well formed, timestamp within tolerance),
/// as the signature covers the body. Only then may the profile answer a handshake.
pub fn head(endpoint: &Endpoint, head: &Head, signed: &SignedHeaders, now_secs: u64) -> Result<Next, Rejection> {
    let profile = endpoint.profile.as_ref();
    match profile.authentication() {
        Authentication::QuerySecret => {
            authenticate(endpoint, head.query)?;
            if let Some(answer) = profile.head_answer(head.method, signed) {
                return Ok(Next::Answer(answer));
            }
        }
        Authentication::Signature => profile.check_signed_head(signed, now_secs)?,
    }
    if !profile.allows(head.method) {
        let mut rejection = Rejection::new(Reason::Method, format!("method {} is not allowed; use {}", clip(head.method), profile.allow()));
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
        return Err(Rejection::new(Reason::MediaType, format!("content encoding '{}' is not accepted; send the body unencoded", clip(encoding.trim()))));
    }
    match Media::classify(head.content_type) {
        Some(media) if profile.accepts(media) => Ok(Next::Body(media)),
        _ => Err(Rejection::new(
            Reason::MediaType,
            format!("content type '{}' is not accepted; send {}", clip(head.content_type.unwrap_or("")), profile.accepted()),
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
        Found::Value(_) => Err(Rejection::new(Reason::Forbidden, format!("the '{param}' query parameter does not match a configured secret"))),
        Found::Missing => Err(Rejection::new(Reason::Unauthorized, format!("the '{param}' query parameter is missing or empty"))),
        Found::Repeated => Err(Rejection::new(Reason::AmbiguousSecret, format!("the '{param}' query parameter is given more than once"))),
        Found::Malformed => Err(Rejection::new(Reason::Invalid, "the query string holds a malformed percent-escape".to_string())),
    }
}

/// Authenticates a signed body, then validates it with the endpoint's profile.
pub fn body(endpoint: &Endpoint, media: Media, body: &[u8], signed: &SignedHeaders, now_secs: u64) -> Result<Event, Rejection> {
    let profile = endpoint.profile.as_ref();
    if profile.authentication() == Authentication::Signature {
        profile.verify_signature(signed, body, now_secs)?;
    }
    profile.validate(media, body, signed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn endpoints() -> Config {
        let json = r#"{"endpoints":[
            {"name":"azure","path":"/az","profile":"azure_managed_app","secret":{"values":["k"]},"max_body_bytes":100},
            {"name":"store","path":"/store","profile":"md5_envelope","secret":{"values":["k"]},"max_body_bytes":100}]}"#;
        Config::parse(json.as_bytes(), |_| None).unwrap()
    }

    fn checked(endpoint: &Endpoint, content_type: Option<&str>, content_length: Option<&str>) -> Result<Media, Rejection> {
        let request = Head { method: "POST", query: Some("sig=k"), content_type, content_length, content_encoding: None };
        match head(endpoint, &request, &crate::profile::SignedHeaders::default(), 0)? {
            Next::Body(media) => Ok(media),
            Next::Answer(answer) => panic!("no handshake here: {answer:?}"),
        }
    }

    #[test]
    fn a_declared_length_of_exactly_the_limit_is_accepted() {
        let config = endpoints();
        let azure = &config.endpoints[0];
        assert_eq!(checked(azure, None, Some("100")), Ok(Media::Json));
        let refused = checked(azure, None, Some("101")).unwrap_err();
        assert_eq!((refused.reason, refused.detail.as_str()), (Reason::TooLarge, "the body is larger than 100 bytes"));
    }

    #[test]
    fn each_profile_accepts_its_own_media_types_and_names_them_when_refusing() {
        let config = endpoints();
        let (azure, store) = (&config.endpoints[0], &config.endpoints[1]);
        assert_eq!(checked(azure, Some("application/json"), None), Ok(Media::Json));
        for (content_type, media) in [("application/json", Media::Json), ("text/xml", Media::Xml), ("application/x-www-form-urlencoded", Media::Form)] {
            assert_eq!(checked(store, Some(content_type), None), Ok(media), "{content_type}");
        }
        let refused = checked(azure, Some("application/xml"), None).unwrap_err();
        assert_eq!(refused.reason, Reason::MediaType);
        assert_eq!(refused.detail, "content type 'application/xml' is not accepted; send application/json");
        let refused = checked(store, Some("text/plain"), None).unwrap_err();
        assert_eq!(refused.detail, "content type 'text/plain' is not accepted; send application/json, application/xml or application/x-www-form-urlencoded");
    }

    #[test]
    fn a_signed_body_is_verified_before_it_is_validated() {
        use crate::profile::github::signature::sign;
        use crate::signing::Key;
        let json = r#"{"endpoints":[{"name":"gh","path":"/gh","profile":"github","secret":{"values":["k"]}}]}"#;
        let config = Config::parse(json.as_bytes(), |_| None).unwrap();
        let github = &config.endpoints[0];
        let payload = br#"{"zen":"Keep it logically awesome."}"#;
        let signed =
            |signature: String| SignedHeaders(["72d3162e-cc78-11e3-81ab-4c9367dc0958".into(), "ping".into(), signature].map(|v| Some(v.into_bytes())).to_vec());
        assert!(body(github, Media::Json, payload, &signed(sign(&Key::new(b"k".to_vec()), payload)), 0).is_ok());
        // A well-formed body under another secret's signature never reaches validation.
        let forged = body(github, Media::Json, payload, &signed(sign(&Key::new(b"other".to_vec()), payload)), 0).unwrap_err();
        assert_eq!(forged.reason, Reason::Forbidden);
    }
}
