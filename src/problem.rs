//! Rejections and their RFC 9457 `application/problem+json` bodies.

use crate::event::push_string;

/// Defines [`Reason`] and [`Reason::ALL`] from one list, so the counters (one per
/// reason) cannot miss a reason added later.
macro_rules! reasons {
    ($($(#[$doc:meta])* $reason:ident,)*) => {
        /// Why a request was refused. Each reason has one status, one problem type and one
        /// metric; the table in docs/statuses.md lists them with what each sender does next.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Reason {
            $($(#[$doc])* $reason,)*
        }

        impl Reason {
            /// Every reason, in declaration order.
            pub const ALL: &'static [Reason] = &[$(Reason::$reason,)*];
        }
    };
}

reasons! {
    Unauthorized,
    Forbidden,
    AmbiguousSecret,
    Method,
    TooLarge,
    MediaType,
    Invalid,
    Digest,
    RateLimited,
    InFlight,
    UpstreamRejected,
    /// `hold` without `allow_on_headers_stop_iteration`: the body never reached the filter.
    NotHeld,
    /// The path has no single canonical form and could name a guarded endpoint.
    AmbiguousPath,
    /// No endpoint guards the path (`"unguarded": "reject"`).
    NotFound,
    /// A nonconforming notification held (`on_nonconforming: hold`).
    Held,
    /// A nonconforming notification refused (`on_nonconforming: reject`).
    Nonconforming,
    Unverified,
    /// The fleet's rate limit service gave no verdict (`global_rate_limit.on_error: hold`).
    RateLimitUnavailable,
    /// The filter could not build what it forwards: its own fault, so the sender retries.
    Internal,
}

impl Reason {
    pub fn status(self) -> u16 {
        match self {
            Reason::Unauthorized => 401,
            Reason::Forbidden => 403,
            Reason::AmbiguousSecret | Reason::Invalid | Reason::Digest | Reason::AmbiguousPath | Reason::Nonconforming => 400,
            Reason::NotFound => 404,
            Reason::Method => 405,
            Reason::TooLarge => 413,
            Reason::MediaType => 415,
            Reason::RateLimited | Reason::InFlight => 429,
            Reason::UpstreamRejected => 502,
            Reason::NotHeld | Reason::Held => 503,
            Reason::Unverified | Reason::RateLimitUnavailable => 503,
            Reason::Internal => 500,
        }
    }

    /// Stable machine-readable name: the problem type's suffix, the log and metric name.
    pub fn slug(self) -> &'static str {
        match self {
            Reason::Unauthorized => "unauthorized",
            Reason::Forbidden => "forbidden",
            Reason::AmbiguousSecret => "ambiguous_secret",
            Reason::Method => "method_not_allowed",
            Reason::TooLarge => "too_large",
            Reason::MediaType => "unsupported_media_type",
            Reason::Invalid => "invalid",
            Reason::Digest => "digest_mismatch",
            Reason::RateLimited => "rate_limited",
            Reason::InFlight => "in_flight",
            Reason::UpstreamRejected => "upstream_rejected",
            Reason::NotHeld => "head_not_held",
            Reason::AmbiguousPath => "ambiguous_path",
            Reason::NotFound => "not_found",
            Reason::Held => "held",
            Reason::Nonconforming => "nonconforming",
            Reason::Unverified => "unverified",
            Reason::RateLimitUnavailable => "rate_limit_unavailable",
            Reason::Internal => "internal_error",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Reason::Unauthorized => "Not authenticated",
            Reason::Forbidden => "Authentication failed",
            Reason::AmbiguousSecret => "Secret given more than once",
            Reason::Method => "Method not allowed",
            Reason::TooLarge => "Body too large",
            Reason::MediaType => "Unsupported media type",
            Reason::Invalid => "Invalid notification",
            Reason::Digest => "Payload digest mismatch",
            Reason::RateLimited => "Rate limited",
            Reason::InFlight => "Same event already in flight",
            Reason::UpstreamRejected => "Upstream rejected the event",
            Reason::NotHeld => "Gateway misconfigured",
            Reason::AmbiguousPath => "Ambiguous path",
            Reason::NotFound => "Not a webhook endpoint",
            Reason::Held => "Nonconforming notification held",
            Reason::Nonconforming => "Nonconforming notification",
            Reason::Unverified => "Not confirmed by Azure Resource Manager",
            Reason::RateLimitUnavailable => "Rate limit unavailable",
            Reason::Internal => "Internal error",
        }
    }
}

/// A refused request: the reason, a human detail that never contains a secret, and the
/// extra headers some statuses need.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub reason: Reason,
    pub detail: String,
    /// `Retry-After` seconds (429, 503).
    pub retry_after: Option<u64>,
    /// `Allow` header value (405).
    pub allow: Option<&'static str>,
    /// Further headers: the fleet limit's `x-ratelimit-*`.
    pub extra: Vec<(&'static str, String)>,
}

impl Rejection {
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Rejection { reason, detail: detail.into(), retry_after: None, allow: None, extra: Vec::new() }
    }

    pub fn status(&self) -> u16 {
        self.reason.status()
    }

    /// The `application/problem+json` body.
    pub fn body(&self) -> Vec<u8> {
        // Written straight into one buffer, byte for byte what serde_json writes for these
        // members in this order: a refusal is answered without its serializer.
        let (title, status) = (self.reason.title(), self.status().to_string());
        let mut out = String::with_capacity(96 + title.len() + self.detail.len());
        out.push_str("{\"type\":\"urn:webhook-guard:problem:");
        out.push_str(self.reason.slug());
        out.push_str("\",\"title\":");
        let written = push_string(&mut out, title).and_then(|()| {
            out.push_str(",\"status\":");
            out.push_str(&status);
            out.push_str(",\"detail\":");
            push_string(&mut out, &self.detail)
        });
        out.push('}');
        // Writing strings cannot fail; keep a valid body regardless.
        if written.is_err() {
            return b"{}".to_vec();
        }
        out.into_bytes()
    }

    /// Response headers: content type plus `Retry-After` / `Allow` where they apply.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = vec![("content-type", "application/problem+json".to_string())];
        if let Some(secs) = self.retry_after {
            headers.push(("retry-after", secs.to_string()));
        }
        if let Some(allow) = self.allow {
            headers.push(("allow", allow.to_string()));
        }
        headers.extend(self.extra.iter().cloned());
        headers
    }
}

/// A sender's or operator's value quoted in a message, at most 64 characters.
pub fn clip(value: &str) -> String {
    echo(value, 64)
}

/// A sender's or operator's value quoted in a message: at most `max` characters, control
/// characters shown as `?`, and `…` marking a cut.
pub fn echo(value: &str, max: usize) -> String {
    let mut chars = value.chars();
    let mut out: String = chars.by_ref().take(max).map(|c| if c.is_control() { '?' } else { c }).collect();
    if chars.next().is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_is_bounded_and_printable() {
        assert_eq!(echo("a\nb", 10), "a?b");
        assert_eq!(echo(&"x".repeat(100), 40).chars().count(), 41);
        assert_eq!(echo("short", 40), "short");
    }

    #[test]
    fn body_is_what_serde_json_writes() {
        #[derive(serde::Serialize)]
        struct Problem<'a> {
            #[serde(rename = "type")]
            kind: String,
            title: &'a str,
            status: u16,
            detail: &'a str,
        }
        for reason in [Reason::Forbidden, Reason::RateLimited, Reason::Invalid, Reason::Internal] {
            for detail in ["plain", "quote \" back\\slash\ncontrol\u{1} é", ""] {
                let r = Rejection::new(reason, detail);
                let kind = format!("urn:webhook-guard:problem:{}", reason.slug());
                let expected = Problem { kind, title: reason.title(), status: r.status(), detail };
                assert_eq!(r.body(), serde_json::to_vec(&expected).unwrap(), "{detail}");
            }
        }
    }

    #[test]
    fn body_is_rfc_9457() {
        let r = Rejection::new(Reason::Forbidden, "the secret does not match");
        let v: serde_json::Value = serde_json::from_slice(&r.body()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "urn:webhook-guard:problem:forbidden",
                "title": "Authentication failed", "status": 403, "detail": "the secret does not match"})
        );
        assert_eq!(r.headers(), vec![("content-type", "application/problem+json".into())]);
    }

    #[test]
    fn retry_after_and_allow_headers() {
        let mut r = Rejection::new(Reason::RateLimited, "x");
        r.retry_after = Some(3);
        r.allow = Some("POST");
        assert_eq!(r.status(), 429);
        assert!(r.headers().contains(&("retry-after", "3".into())));
        assert!(r.headers().contains(&("allow", "POST".into())));
    }
}
