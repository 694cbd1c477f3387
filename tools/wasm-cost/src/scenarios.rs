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
/// The signed senders' endpoints, each with its profile's defaults (forwarded as a
/// CloudEvent, duplicate suppression as the profile sets it). Their secrets are sign.rs's.
const STANDARD_WEBHOOKS: &str =
    r#"{"name": "sw", "path": "/hooks/sw", "profile": "standard_webhooks", "secret": {"values": ["whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"]}}"#;
const GITHUB: &str = r#"{"name": "gh", "path": "/hooks/github", "profile": "github", "secret": {"values": ["It's a Secret to Everybody"]}}"#;
const STRIPE: &str = r#"{"name": "stripe", "path": "/hooks/stripe", "profile": "stripe", "secret": {"values": ["whsec_pQ3sB7nVx2LkR9tYw4ZcE1uH6jM8aF0d"]}}"#;
const SLACK: &str = r#"{"name": "slack", "path": "/hooks/slack", "profile": "slack", "secret": {"values": ["8f742231b10e8888abcd99yyyzzz85a5"]}}"#;
const SHOPIFY: &str = r#"{"name": "shop", "path": "/hooks/shopify", "profile": "shopify", "secret": {"values": ["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"]}}"#;
/// The query secret under the common parameter (`sig`); no duplicate suppression by default.
const EVENT_GRID: &str = r#"{"name": "eg", "path": "/hooks/eg", "profile": "azure_event_grid", "secret": {"values": ["s3cret"]}}"#;

/// When the signed deliveries were sent, in Unix seconds: ten seconds before the host's
/// clock (main.rs `NOW_NANOS`, 2026-01-01T00:00:00Z), within every profile's tolerance.
pub const SENT: &str = "1767225590";

pub struct Request {
    pub method: &'static str,
    /// Path without the query: the secret is added unless `secret` is false.
    pub path: &'static str,
    pub secret: bool,
    pub content_type: &'static str,
    pub body: &'static [u8],
    /// The sender's own headers besides the content type (replacing the stub's of that name).
    pub headers: &'static [(&'static str, &'static str)],
    /// The signature header the sender computes over the request.
    pub sign: Option<Signer>,
}

/// A sender's signature scheme ([`crate::sign`]): the header it adds to a request.
pub type Signer = fn(&Request) -> (&'static str, String);

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
    Request { method: "POST", path: "/api/resource", secret, content_type: "application/json", body, headers: &[], sign: None }
}

/// A signed sender's POST (no query secret): its headers, signed by `sign`.
const fn signed(
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
    headers: &'static [(&'static str, &'static str)],
    sign: Signer,
) -> Request {
    Request { method: "POST", path, secret: false, content_type, body, headers, sign: Some(sign) }
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
            headers: &[],
            sign: None,
        },
        expect: CLOUDEVENT,
    },
    Scenario { name: "vendor_xml", header_mode: "stream", endpoint: VENDOR, before: &[VENDOR_FORM], request: VENDOR_XML, expect: CLOUDEVENT },
    Scenario { name: "vendor_form", header_mode: "stream", endpoint: VENDOR, before: &[VENDOR_XML], request: VENDOR_FORM, expect: CLOUDEVENT },
    // One accepted delivery per signed sender, after another of the same sender (another
    // delivery id: the profiles suppress duplicates by default, Event Grid excepted).
    signed_stream("signed_standard_webhooks_stream", STANDARD_WEBHOOKS, &[STANDARD_WEBHOOKS_WARM], STANDARD_WEBHOOKS_DELIVERY),
    signed_stream("signed_github_stream", GITHUB, &[GITHUB_WARM], GITHUB_DELIVERY),
    signed_stream("signed_stripe_stream", STRIPE, &[STRIPE_WARM], STRIPE_DELIVERY),
    signed_stream("signed_slack_stream", SLACK, &[SLACK_WARM], SLACK_DELIVERY),
    signed_stream("signed_shopify_stream", SHOPIFY, &[SHOPIFY_WARM], SHOPIFY_DELIVERY),
    signed_stream("signed_azure_event_grid_stream", EVENT_GRID, &[EVENT_GRID_WARM], EVENT_GRID_DELIVERY),
];

const fn signed_stream(name: &'static str, endpoint: &'static str, before: &'static [Request], request: Request) -> Scenario {
    Scenario { name, header_mode: "stream", endpoint, before, request, expect: CLOUDEVENT }
}

// The deliveries, shaped as each sender's (tests/e2e/<profile>.rs, docs/profiles/<profile>.md).
const SW_BODY: &[u8] = br#"{"type":"invoice.paid","timestamp":"2024-05-01T10:00:00Z","data":{"invoice":"in_1","amount":1200}}"#;
const STANDARD_WEBHOOKS_DELIVERY: Request = signed(
    "/hooks/sw",
    "application/json",
    SW_BODY,
    &[("webhook-id", "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"), ("webhook-timestamp", SENT)],
    crate::sign::standard_webhooks,
);
const STANDARD_WEBHOOKS_WARM: Request = signed(
    "/hooks/sw",
    "application/json",
    SW_BODY,
    &[("webhook-id", "msg_2KWPBgLlAfxdpx2AI54pPJ85f4V"), ("webhook-timestamp", SENT)],
    crate::sign::standard_webhooks,
);

const GITHUB_BODY: &[u8] =
    br#"{"action":"opened","issue":{"number":7,"title":"Bug"},"repository":{"full_name":"octo-org/hello-world"},"sender":{"login":"octocat"}}"#;
/// GitHub's headers but the delivery's guid; the legacy SHA-1 signature is sent and not checked.
macro_rules! github_headers {
    ($guid:literal) => {
        &[
            ("user-agent", "GitHub-Hookshot/044aadd"),
            ("x-github-delivery", $guid),
            ("x-github-event", "issues"),
            ("x-github-hook-id", "42"),
            ("x-hub-signature", "sha1=0000000000000000000000000000000000000000"),
        ]
    };
}
const GITHUB_DELIVERY: Request =
    signed("/hooks/github", "application/json", GITHUB_BODY, github_headers!("72d3162e-cc78-11e3-81ab-4c9367dc0958"), crate::sign::github);
const GITHUB_WARM: Request =
    signed("/hooks/github", "application/json", GITHUB_BODY, github_headers!("72d3162e-cc78-11e3-81ab-4c9367dc0957"), crate::sign::github);

/// Stripe's event, its id in the body (the duplicate key).
macro_rules! stripe_event {
    ($id:literal) => {
        concat!(
            r#"{"id":""#,
            $id,
            r#"","object":"event","api_version":"2024-06-20","created":1714557600,"type":"invoice.paid","livemode":false,"data":{"object":{"id":"in_1","object":"invoice","amount_paid":1200}}}"#
        )
        .as_bytes()
    };
}
const STRIPE_DELIVERY: Request =
    signed("/hooks/stripe", "application/json; charset=utf-8", stripe_event!("evt_1PBcdeF2eZvKYlo2C0ffee01"), &[], crate::sign::stripe);
const STRIPE_WARM: Request =
    signed("/hooks/stripe", "application/json; charset=utf-8", stripe_event!("evt_1PBcdeF2eZvKYlo2C0ffee00"), &[], crate::sign::stripe);

/// Slack's Events API callback, its `event_id` in the body (the duplicate key).
macro_rules! slack_event {
    ($id:literal) => {
        concat!(
            r#"{"token":"x","team_id":"T0001","api_app_id":"A0001","type":"event_callback","event":{"type":"app_mention","user":"U1","text":"<@U0LAN0Z89> hi","channel":"C1"},"event_id":""#,
            $id,
            r#"","event_time":1714557600}"#
        )
        .as_bytes()
    };
}
const SLACK_HEADERS: &[(&str, &str)] = &[("user-agent", "Slackbot 1.0 (+https://api.slack.com/robots)"), ("x-slack-request-timestamp", SENT)];
const SLACK_DELIVERY: Request = signed("/hooks/slack", "application/json", slack_event!("Ev0PV52K21"), SLACK_HEADERS, crate::sign::slack);
const SLACK_WARM: Request = signed("/hooks/slack", "application/json", slack_event!("Ev0PV52K20"), SLACK_HEADERS, crate::sign::slack);

const SHOPIFY_BODY: &[u8] =
    br##"{"id":820982911946154508,"email":"jon@example.com","name":"#9999","created_at":"2024-05-01T10:00:00-04:00","total_price":"12.00"}"##;
/// Shopify's headers but the webhook id (the duplicate key).
macro_rules! shopify_headers {
    ($webhook_id:literal) => {
        &[
            ("x-shopify-topic", "orders/create"),
            ("x-shopify-shop-domain", "example.myshopify.com"),
            ("x-shopify-webhook-id", $webhook_id),
            ("x-shopify-event-id", "98880550-7158-44d4-b7cd-2c97c8a091b5"),
            ("x-shopify-triggered-at", "2024-05-01T14:00:00.123456789Z"),
            ("x-shopify-api-version", "2024-04"),
        ]
    };
}
const SHOPIFY_DELIVERY: Request =
    signed("/hooks/shopify", "application/json", SHOPIFY_BODY, shopify_headers!("b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"), crate::sign::shopify);
const SHOPIFY_WARM: Request =
    signed("/hooks/shopify", "application/json", SHOPIFY_BODY, shopify_headers!("b54557e4-bdd9-4b37-8a5f-bf7d70bcd042"), crate::sign::shopify);

/// Event Grid authenticates by the query secret and signs nothing. Its deliveries: Azure's
/// sample events, in the Event Grid schema and (the one before) the CloudEvents schema.
const EVENT_GRID_HEADERS: &[(&str, &str)] = &[("aeg-event-type", "Notification"), ("aeg-delivery-count", "0")];
const EVENT_GRID_DELIVERY: Request = Request {
    method: "POST",
    path: "/hooks/eg",
    secret: true,
    content_type: "application/json",
    body: include_bytes!("../../../src/profile/azure_event_grid/samples/blob_created.json"),
    headers: EVENT_GRID_HEADERS,
    sign: None,
};
const EVENT_GRID_WARM: Request = Request {
    content_type: "application/cloudevents+json; charset=utf-8",
    body: include_bytes!("../../../src/profile/azure_event_grid/samples/cloudevent_blob_created.json"),
    ..EVENT_GRID_DELIVERY
};

const VENDOR_XML: Request = Request {
    method: "PUT",
    path: "/hooks/store",
    secret: true,
    content_type: "application/xml",
    body: include_bytes!("../../../examples/requests/vendor-purchase.xml"),
    headers: &[],
    sign: None,
};
const VENDOR_FORM: Request = Request {
    method: "POST",
    path: "/hooks/store",
    secret: true,
    content_type: "application/x-www-form-urlencoded",
    body: include_bytes!("../../../examples/requests/vendor-cancellation.form"),
    headers: &[],
    sign: None,
};
