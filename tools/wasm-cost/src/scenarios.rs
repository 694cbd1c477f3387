//! The measured scenarios: one row each. A row names its endpoint configuration and
//! header mode, the requests sent first without being measured (they warm the VM, draw
//! the rate limit's token or mark an event delivered), the measured request, and what the
//! sender and the upstream must see, so a figure always measures what its name says.
//! A new profile adds its endpoint and a row (and `make budget` records its figures).

/// The secret every endpoint accepts.
const SECRET_QUERY: &str = "?sig=s3cret";

const AZURE_CLOUDEVENT: &str =
    r#"{"name": "azure", "path": "/api/resource", "profile": "azure_managed_app", "secret": {"values": ["s3cret"]}, "forward": "cloudevent"}"#;
const AZURE_ORIGINAL: &str =
    r#"{"name": "azure", "path": "/api/resource", "profile": "azure_managed_app", "secret": {"values": ["s3cret"]}, "forward": "original"}"#;
/// The configuration reference's example endpoint (docs/configuration.md): a global rate limit and duplicate suppression.
const AZURE_PRODUCTION: &str = r#"{"name": "azure", "path": "/api/resource", "profile": "azure_managed_app", "secret": {"values": ["s3cret"]},
    "rate_limit": {"per_second": 1000000, "burst": 1000000, "key": "global"}, "dedupe_seconds": 43200}"#;
/// One token, refilled after a thousand seconds: the second request is over the limit.
const AZURE_ONE_TOKEN: &str = r#"{"name": "azure", "path": "/api/resource", "profile": "azure_managed_app", "secret": {"values": ["s3cret"]},
    "rate_limit": {"per_second": 0.001, "burst": 1, "key": "global"}}"#;
const VENDOR: &str = r#"{"name": "store", "path": "/hooks/store", "profile": "md5_envelope", "secret": {"values": ["s3cret"]}}"#;

pub struct Request {
    pub method: &'static str,
    /// Path without the query: the secret is added unless `secret` is false.
    pub path: &'static str,
    pub secret: bool,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

/// What the sender and the upstream see.
pub enum Expect {
    /// Forwarded: the upstream got a body starting with this, the sender its 200.
    Upstream(&'static str),
    /// Answered by the filter with this status; nothing reached the upstream.
    Local(u16),
}

pub struct Scenario {
    pub name: &'static str,
    pub header_mode: &'static str,
    pub endpoint: &'static str,
    pub before: &'static [Request],
    pub request: Request,
    pub expect: Expect,
}

impl Scenario {
    pub fn configuration(&self) -> String {
        format!(r#"{{"header_mode": "{}", "endpoints": [{}]}}"#, self.header_mode, self.endpoint)
    }
}

impl Request {
    pub fn target(&self) -> String {
        if self.secret {
            format!("{}{SECRET_QUERY}", self.path)
        } else {
            self.path.to_string()
        }
    }
}

const CATALOG: &[u8] = include_bytes!("../../../examples/requests/azure-service-catalog.json");
const MARKETPLACE: &[u8] = include_bytes!("../../../examples/requests/azure-marketplace-failed.json");

const fn azure(body: &'static [u8], secret: bool) -> Request {
    Request { method: "POST", path: "/api/resource", secret, content_type: "application/json", body }
}

/// Another notification first: the measured one meets a warm VM, never a duplicate.
const WARM: &[Request] = &[azure(MARKETPLACE, true)];
const CLOUDEVENT: Expect = Expect::Upstream(r#"{"specversion":"1.0""#);
const ORIGINAL: Expect = Expect::Upstream("{\n  \"eventType\"");

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "azure_cloudevent_hold",
        header_mode: "hold",
        endpoint: AZURE_CLOUDEVENT,
        before: WARM,
        request: azure(CATALOG, true),
        expect: CLOUDEVENT,
    },
    Scenario {
        name: "azure_cloudevent_stream",
        header_mode: "stream",
        endpoint: AZURE_CLOUDEVENT,
        before: WARM,
        request: azure(CATALOG, true),
        expect: CLOUDEVENT,
    },
    Scenario { name: "azure_original_hold", header_mode: "hold", endpoint: AZURE_ORIGINAL, before: WARM, request: azure(CATALOG, true), expect: ORIGINAL },
    Scenario { name: "azure_original_stream", header_mode: "stream", endpoint: AZURE_ORIGINAL, before: WARM, request: azure(CATALOG, true), expect: ORIGINAL },
    Scenario {
        name: "azure_production_stream",
        header_mode: "stream",
        endpoint: AZURE_PRODUCTION,
        before: WARM,
        request: azure(CATALOG, true),
        expect: CLOUDEVENT,
    },
    Scenario {
        name: "refused_head_no_secret",
        header_mode: "stream",
        endpoint: AZURE_CLOUDEVENT,
        before: WARM,
        request: azure(CATALOG, false),
        expect: Expect::Local(401),
    },
    Scenario {
        name: "refused_body_invalid_hold",
        header_mode: "hold",
        endpoint: AZURE_CLOUDEVENT,
        before: WARM,
        request: azure(br#"{"eventType": "PUT"}"#, true),
        expect: Expect::Local(400),
    },
    Scenario {
        name: "refused_body_invalid_stream",
        header_mode: "stream",
        endpoint: AZURE_CLOUDEVENT,
        before: WARM,
        request: azure(br#"{"eventType": "PUT"}"#, true),
        expect: Expect::Local(400),
    },
    Scenario {
        name: "duplicate",
        header_mode: "stream",
        endpoint: AZURE_PRODUCTION,
        before: &[azure(CATALOG, true)],
        request: azure(CATALOG, true),
        expect: Expect::Local(200),
    },
    Scenario {
        name: "rate_limited",
        header_mode: "stream",
        endpoint: AZURE_ONE_TOKEN,
        before: &[azure(CATALOG, true)],
        request: azure(CATALOG, true),
        expect: Expect::Local(429),
    },
    Scenario {
        name: "vendor_json",
        header_mode: "stream",
        endpoint: VENDOR,
        before: &[VENDOR_XML],
        request: Request {
            method: "POST",
            path: "/hooks/store",
            secret: true,
            content_type: "application/json",
            body: include_bytes!("../../../examples/requests/vendor-ping.json"),
        },
        expect: CLOUDEVENT,
    },
    Scenario { name: "vendor_xml", header_mode: "stream", endpoint: VENDOR, before: &[VENDOR_FORM], request: VENDOR_XML, expect: CLOUDEVENT },
    Scenario { name: "vendor_form", header_mode: "stream", endpoint: VENDOR, before: &[VENDOR_XML], request: VENDOR_FORM, expect: CLOUDEVENT },
];

const VENDOR_XML: Request = Request {
    method: "PUT",
    path: "/hooks/store",
    secret: true,
    content_type: "application/xml",
    body: include_bytes!("../../../examples/requests/vendor-purchase.xml"),
};
const VENDOR_FORM: Request = Request {
    method: "POST",
    path: "/hooks/store",
    secret: true,
    content_type: "application/x-www-form-urlencoded",
    body: include_bytes!("../../../examples/requests/vendor-cancellation.form"),
};
