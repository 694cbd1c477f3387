//! The `azure_managed_app` profile: Azure managed application notifications
//! (format: docs/profiles/azure_managed_app.md).
//!
//! A 400 is final (Azure retries only 404, 429 and 5xx), so this refuses only what can
//! never be a notification: a body that is not strict JSON, or an identifying field
//! (`eventType`, `applicationId`, `provisioningState`, `eventTime`) missing or unusable.
//! Anything else that departs from the documented table is accepted and reported as a
//! [`Finding`] (see `conformance`), for the endpoint's `on_nonconforming` to decide.
//! Spellings ARM itself treats as equal (any case of eventType/provisioningState and of ID
//! segment names, with or without a leading `/`, any offset of the same instant) get the
//! same event id, flagged or not.

use std::borrow::Cow;
use std::fmt::Display;

use serde_json::value::RawValue;

use super::conformance::Rule;
use super::resource_id::{Kind, ResourceId};
use crate::event::{name_based_id_of, Event, Json, Object, RateKeys};
use crate::problem::clip;
use crate::strict_json::{self, Walked};
use crate::timestamp;

/// The documented (eventType, provisioningState) pairs, in canonical spelling.
pub const PAIRS: [(&str, &str); 7] =
    [("PUT", "Accepted"), ("PUT", "Succeeded"), ("PUT", "Failed"), ("PATCH", "Succeeded"), ("DELETE", "Deleting"), ("DELETE", "Deleted"), ("DELETE", "Failed")];

/// Prefix of every Azure event `type`; the rest is `{eventtype}.{state}` (see [`type_name`]).
pub const KIND_PREFIX: &str = "webhookguard.azure.managedapp.";

/// The index in [`PAIRS`] of an Azure event `type`, e.g. `...managedapp.put.succeeded`.
pub fn pair_of(kind: &str) -> Option<usize> {
    let (event_type, state) = kind.strip_prefix(KIND_PREFIX)?.split_once('.')?;
    PAIRS.iter().position(|(t, s)| t.eq_ignore_ascii_case(event_type) && s.eq_ignore_ascii_case(state))
}

const EVENT_TYPES: [&str; 3] = ["PUT", "PATCH", "DELETE"];
/// The documented states first, then the rest of ARM's managed-application enum: those
/// are nonconforming but still get their canonical spelling.
const STATES: [&str; 9] = ["Accepted", "Succeeded", "Failed", "Deleting", "Deleted", "Canceled", "NotSpecified", "Running", "Updating"];
const DOCUMENTED_STATES: usize = 5;
/// Longest eventType or provisioningState accepted: ARM's values are short identifiers,
/// and these end up in the event type, a header.
const MAX_NAME_CHARS: usize = 64;

/// Deepest nesting accepted. serde_json enforces its recursion limit only when it builds
/// values, not for the raw value read here, so it is checked separately; 64 leaves room
/// for the two levels the CloudEvent adds under any backend's limit of 128.
const MAX_DEPTH: usize = 64;

/// The CloudEvent `data`: the notification's facts in canonical form, plus the original;
/// written in this order, without the members that are `None`.
struct Data<'a> {
    event_type: &'a str,
    provisioning_state: &'a str,
    application_id: &'a str,
    subscription_id: &'a str,
    resource_group: &'a str,
    application_name: &'a str,
    event_time: &'a str,
    flavour: &'static str,
    application_definition_id: Option<String>,
    plan: Option<Plan<'a>>,
    billing: Option<Billing<'a>>,
    error: Option<ErrorInfo<'a>>,
    original: &'a RawValue,
}

impl Data<'_> {
    fn write(&self) -> Result<Json, serde_json::Error> {
        // One buffer the members and the original fit in.
        let mut out = Object::with_capacity(512 + 2 * self.application_id.len() + self.original.get().len());
        out.string("eventType", self.event_type)?;
        out.string("provisioningState", self.provisioning_state)?;
        out.string("applicationId", self.application_id)?;
        out.string("subscriptionId", self.subscription_id)?;
        out.string("resourceGroup", self.resource_group)?;
        out.string("applicationName", self.application_name)?;
        out.string("eventTime", self.event_time)?;
        out.string("flavour", self.flavour)?;
        if let Some(id) = &self.application_definition_id {
            out.string("applicationDefinitionId", id)?;
        }
        if let Some(plan) = &self.plan {
            out.json("plan", &plan.write()?);
        }
        if let Some(billing) = &self.billing {
            out.json("billing", &billing.write()?);
        }
        if let Some(error) = &self.error {
            out.json("error", &error.write()?);
        }
        out.raw("original", self.original);
        Ok(out.end())
    }
}

struct Plan<'a> {
    publisher: Cow<'a, str>,
    product: Cow<'a, str>,
    name: Cow<'a, str>,
    version: Cow<'a, str>,
}

impl Plan<'_> {
    fn write(&self) -> Result<Json, serde_json::Error> {
        let mut out = Object::with_capacity(64);
        out.string("publisher", &self.publisher)?;
        out.string("product", &self.product)?;
        out.string("name", &self.name)?;
        out.string("version", &self.version)?;
        Ok(out.end())
    }
}

struct Billing<'a> {
    resource_usage_id: Cow<'a, str>,
}

impl Billing<'_> {
    fn write(&self) -> Result<Json, serde_json::Error> {
        let mut out = Object::with_capacity(64);
        out.string("resourceUsageId", &self.resource_usage_id)?;
        Ok(out.end())
    }
}

struct ErrorInfo<'a> {
    code: Cow<'a, str>,
    message: Cow<'a, str>,
    details: Option<Vec<Detail<'a>>>,
}

impl ErrorInfo<'_> {
    fn write(&self) -> Result<Json, serde_json::Error> {
        let mut out = Object::with_capacity(64);
        out.string("code", &self.code)?;
        out.string("message", &self.message)?;
        if let Some(details) = &self.details {
            let details = details.iter().map(Detail::write).collect::<Result<Vec<_>, _>>()?;
            out.array("details", &details);
        }
        Ok(out.end())
    }
}

struct Detail<'a> {
    code: Cow<'a, str>,
    message: Cow<'a, str>,
}

impl Detail<'_> {
    fn write(&self) -> Result<Json, serde_json::Error> {
        let mut out = Object::with_capacity(64);
        out.string("code", &self.code)?;
        out.string("message", &self.message)?;
        Ok(out.end())
    }
}

/// The channel-specific members, each kept only when well-formed.
struct Flavour<'a> {
    name: &'static str,
    /// The canonical applicationDefinitionId.
    definition: Option<String>,
    plan: Option<Plan<'a>>,
    billing: Option<Billing<'a>>,
}

/// Validates one notification body. `Err` is the `detail` of a 400 problem: it names the
/// field and the rule it breaks. An accepted event lists its departures from the
/// documented table in `nonconforming`.
pub fn validate(body: &[u8]) -> Result<Event, String> {
    if body.is_empty() {
        return Err("body is empty".into());
    }
    let text = std::str::from_utf8(body).map_err(|e| format!("body is not valid UTF-8: {e}"))?;
    // serde_json reads the syntax (its messages are the ones senders get) and yields the
    // original for `data`; everything else is one walk of `strict_json::walk` below.
    let original: &RawValue = serde_json::from_str(text).map_err(|e| format!("body is not valid JSON: {e}"))?;
    // Checked here because the walk would also read members of a JSON array.
    if !original.get().starts_with('{') {
        return Err("body must be a JSON object".into());
    }
    // Unknown members are forwarded untouched, so they must be readable by strict parsers.
    // The walk reads the members and settles strictness in the common case; when it
    // cannot, `check` decides, with its exact message.
    // Members as raw JSON text (a missing member and `null` are both `None`), so that a
    // wrong JSON type gets a message naming the field. Unknown members are ignored here
    // and reach the backend in `data.original`.
    let names = ["eventType", "applicationId", "eventTime", "provisioningState", "error", "applicationDefinitionId", "plan", "billingDetails"];
    let (walked, [event_type, application_id, event_time, state, error, definition_id, plan, billing]) = members(text, names);
    match walked {
        Walked::Strict => {}
        Walked::Unsure => strict_json::check(text).map_err(|e| format!("body is not strict JSON: {e}"))?,
        Walked::TooDeep => return Err(format!("body nests deeper than {MAX_DEPTH} levels")),
    }

    let mut findings = Vec::new();
    let (event_type, type_documented) = name("eventType", &EVENT_TYPES, EVENT_TYPES.len(), event_type)?;
    let (state, state_documented) = name("provisioningState", &STATES, DOCUMENTED_STATES, state)?;
    let given = required("applicationId", application_id)?;
    let kind = Kind::Application;
    let app = ResourceId::parse(&given, kind).map_err(|e| format!("applicationId must be {}: {e}", kind.describe()))?;
    let given = required("eventTime", event_time)?;
    let time = timestamp::parse(&given).map_err(|e| format!("eventTime '{}' {e}", clip(&given)))?;

    // The identifying fields are usable: from here on, departures are findings, found in
    // the order of `conformance::RULES`.
    let mut found = |rule: Rule, detail| findings.push(rule.finding(detail));
    let flavour = flavour(definition_id, plan, billing, &mut found);
    if !type_documented {
        found(Rule::TypeUndocumented, format!("eventType '{}' is not one of PUT, PATCH, DELETE", clip(&event_type)));
    }
    if !state_documented {
        found(Rule::StateUndocumented, format!("provisioningState '{}' is not one of Accepted, Succeeded, Failed, Deleting, Deleted", clip(&state)));
    }
    if type_documented && state_documented && !PAIRS.iter().any(|(t, s)| *t == event_type && *s == state) {
        found(Rule::PairUndocumented, format!("provisioningState '{state}' is not documented for eventType '{event_type}'"));
    }
    let failed = state == "Failed";
    let error = match error {
        None if failed => {
            found(Rule::ErrorMissing, "provisioningState is Failed but error is missing".into());
            None
        }
        None => None,
        Some(raw) => {
            if !failed {
                found(Rule::ErrorUnexpected, format!("error is present with provisioningState '{}'", clip(&state)));
            }
            error_info(raw).map_err(|detail| found(Rule::ErrorShape, detail)).ok()
        }
    };
    if !time.has_offset {
        found(Rule::TimeNoOffset, format!("eventTime '{}' has no UTC offset; read as UTC", clip(&given)));
    }

    let application = app.canonical();
    // ASCII lowercase: ARM names are case-insensitive, and any backend can recompute it.
    let application_key = application.to_ascii_lowercase();
    let data = Data {
        event_type: &event_type,
        provisioning_state: &state,
        application_id: &application,
        subscription_id: app.subscription,
        resource_group: app.resource_group,
        application_name: app.name,
        event_time: &time.utc,
        flavour: flavour.name,
        application_definition_id: flavour.definition,
        plan: flavour.plan,
        billing: flavour.billing,
        error,
        original,
    }
    .write()
    .map_err(|e| format!("cannot serialise the event: {e}"))?;
    let name = ["azure_managed_app\n", &application_key, "\n", &event_type, "\n", &state, "\n", &time.utc];
    let mut kind = String::from(KIND_PREFIX);
    type_name(&event_type, &mut kind);
    kind.push('.');
    type_name(&state, &mut kind);
    Ok(Event {
        id: name_based_id_of(&name),
        kind,
        subject: Some(application),
        time: Some(time.utc),
        keys: RateKeys { application: Some(application_key), subscription: Some(app.subscription.to_ascii_lowercase()) },
        data,
        nonconforming: findings,
    })
}

/// Appends the event type name of an eventType or provisioningState: ASCII letters
/// lowercased, digits kept, every run of other characters written as one `_`. A value
/// that differs from a documented one by more than case gets a name no documented value
/// has (it holds a `_` or other letters).
pub fn type_name(value: &str, out: &mut String) {
    let mut gap = false;
    for c in value.chars() {
        if c.is_ascii_alphanumeric() {
            if gap {
                out.push('_');
                gap = false;
            }
            out.push(c.to_ascii_lowercase());
        } else {
            gap = true;
        }
    }
    if gap {
        out.push('_');
    }
}

/// The members `names` of a nested JSON object, which the walk of the body has already
/// judged, as raw text (`null` as `None`).
fn object<'a, const N: usize>(field: &(impl Display + ?Sized), raw: &'a str, names: [&str; N]) -> Result<[Option<&'a str>; N], String> {
    if !raw.starts_with('{') {
        return Err(format!("{field} must be an object"));
    }
    Ok(members(raw, names).1)
}

/// The members `names` of the JSON object `raw` as raw text (`null` as `None`), and the
/// walk's verdict on the object's strictness.
fn members<'a, const N: usize>(raw: &'a str, names: [&str; N]) -> (Walked, [Option<&'a str>; N]) {
    let mut found = [None; N];
    let walked = strict_json::walk(raw, MAX_DEPTH, |key, value| {
        if let Some(slot) = names.iter().position(|n| *n == key).and_then(|i| found.get_mut(i)) {
            *slot = Some(value).filter(|v| *v != "null");
        }
    });
    (walked, found)
}

/// Service catalog (`applicationDefinitionId`) or Marketplace (`plan`; `billingDetails`
/// is optional), each member kept when well-formed and reported to `found` otherwise.
fn flavour<'a>(definition_id: Option<&'a str>, plan: Option<&'a str>, billing: Option<&'a str>, found: &mut impl FnMut(Rule, String)) -> Flavour<'a> {
    let kind = Kind::ApplicationDefinition;
    let definition = definition_id.and_then(|raw| {
        let parsed = required("applicationDefinitionId", Some(raw)).and_then(|given| {
            let id = ResourceId::parse(&given, kind).map_err(|e| format!("applicationDefinitionId must be {}: {e}", kind.describe()))?;
            Ok(id.canonical())
        });
        parsed.map_err(|detail| found(Rule::DefinitionShape, detail)).ok()
    });
    let parsed_plan = plan.and_then(|raw| {
        let parsed = object("plan", raw, ["publisher", "product", "name", "version"]).and_then(|[publisher, product, name, version]| {
            Ok(Plan {
                publisher: required("plan.publisher", publisher)?,
                product: required("plan.product", product)?,
                name: required("plan.name", name)?,
                version: required("plan.version", version)?,
            })
        });
        parsed.map_err(|detail| found(Rule::PlanShape, detail)).ok()
    });
    let parsed_billing = billing.and_then(|raw| {
        let parsed = object("billingDetails", raw, ["resourceUsageId"])
            .and_then(|[id]| Ok(Billing { resource_usage_id: required("billingDetails.resourceUsageId", id)? }));
        parsed.map_err(|detail| found(Rule::BillingShape, detail)).ok()
    });
    let name = match (definition_id.is_some(), plan.is_some(), billing.is_some()) {
        (true, false, false) => "service_catalog",
        (false, true, _) => "marketplace",
        (catalog, marketplace, _) => {
            let detail = match (catalog, marketplace) {
                (false, false) => "neither applicationDefinitionId (service catalog) nor plan (Marketplace) is present",
                (true, true) => "both applicationDefinitionId (service catalog) and plan (Marketplace) are present",
                _ => "billingDetails (Marketplace) is present with applicationDefinitionId (service catalog)",
            };
            found(Rule::FlavourUnknown, detail.into());
            "unknown"
        }
    };
    Flavour { name, definition, plan: parsed_plan, billing: parsed_billing }
}

/// A well-formed `error` block; `Err` names the member that breaks its documented shape.
fn error_info(raw: &str) -> Result<ErrorInfo<'_>, String> {
    let [code, message, details] = object("error", raw, ["code", "message", "details"])?;
    let code = required("error.code", code)?;
    let message = required("error.message", message)?;
    let details = match details {
        None => None,
        Some(list) if !list.starts_with('[') => return Err("error.details must be an array".into()),
        Some(list) => {
            let mut items = Vec::new();
            strict_json::walk(list, MAX_DEPTH, |_, item| items.push(item));
            let details = items.into_iter().enumerate().map(|(i, item)| {
                let [code, message] = object(&format_args!("error.details[{i}]"), item, ["code", "message"])?;
                Ok(Detail {
                    code: required(&format_args!("error.details[{i}].code"), code)?,
                    message: required(&format_args!("error.details[{i}].message"), message)?,
                })
            });
            Some(details.collect::<Result<_, String>>()?)
        }
    };
    Ok(ErrorInfo { code, message, details })
}

/// A non-empty string field, borrowed from the body unless it contains escapes; missing
/// and `null` both count as missing. `raw` is the value's JSON text, a slice of the body.
fn required<'a, F>(field: &F, raw: Option<&'a str>) -> Result<Cow<'a, str>, String>
where
    F: Display + ?Sized,
{
    let raw = raw.ok_or_else(|| format!("{field} is required"))?;
    let value = match raw.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        // memchr: a word at a time (wasm has no vectors for a fold to use).
        Some(s) if !s.as_bytes().contains(&b'\\') => Cow::Borrowed(s),
        Some(_) => Cow::Owned(serde_json::from_str::<String>(raw).map_err(|_| format!("{field} must be a string"))?),
        None => return Err(format!("{field} must be a string")),
    };
    if value.is_empty() {
        return Err(format!("{field} must not be empty"));
    }
    Ok(value)
}

/// An eventType or provisioningState: a string of 1 to 64 characters, in the canonical
/// spelling when it is one of `options` (ignoring ASCII case), else as given; and whether
/// it is one of the first `documented` options.
fn name<'a>(field: &str, options: &[&'static str], documented: usize, raw: Option<&'a str>) -> Result<(Cow<'a, str>, bool), String> {
    let given = required(field, raw)?;
    if super::longer_than(&given, MAX_NAME_CHARS) {
        return Err(format!("{field} '{}' is longer than {MAX_NAME_CHARS} characters", clip(&given)));
    }
    Ok(match options.iter().enumerate().find(|(_, o)| o.eq_ignore_ascii_case(&given)) {
        Some((i, canonical)) => (Cow::Borrowed(*canonical), i < documented),
        None => (given, false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::name_based_id;
    use crate::nonconforming::Finding;
    use serde::Deserialize;
    use serde_json::{json, Value};

    // Verbatim from the documentation (and the spec), placeholders included.
    const CATALOG_SAMPLE: &str = include_str!("../../../examples/requests/azure-service-catalog.json");
    const MARKETPLACE_SAMPLE: &str = include_str!("../../../examples/requests/azure-marketplace-failed.json");

    const APP: &str = "/subscriptions/0B88DFDB-55B3-4FB0-B474-5B6DCBE6B2EF/resourceGroups/Shop-RG/providers/Microsoft.Solutions/applications/Shop";
    const DEF: &str = "/subscriptions/0B88DFDB-55B3-4FB0-B474-5B6DCBE6B2EF/resourceGroups/Defs/providers/Microsoft.Solutions/applicationDefinitions/ShopDef";
    const TIME: &str = "2019-08-14T19:20:08.1707163Z";
    const APP_MESSAGE: &str =
        "applicationId must be a managed application resource ID (subscriptions/{id}/resourceGroups/{rg}/providers/Microsoft.Solutions/applications/{name})";

    fn catalog(event_type: &str, state: &str) -> Value {
        let mut v = json!({"eventType": event_type, "applicationId": APP, "eventTime": TIME,
            "provisioningState": state, "applicationDefinitionId": DEF});
        if state == "Failed" {
            v["error"] = json!({"code": "C", "message": "M"});
        }
        v
    }

    fn marketplace(event_type: &str, state: &str) -> Value {
        let mut v = catalog(event_type, state);
        remove(&mut v, "applicationDefinitionId");
        v["plan"] = json!({"publisher": "p", "product": "o", "name": "s", "version": "1"});
        v["billingDetails"] = json!({"resourceUsageId": "u"});
        v
    }

    fn remove(v: &mut Value, key: &str) {
        v.as_object_mut().unwrap().remove(key);
    }

    fn check(v: &Value) -> Result<Event, String> {
        validate(v.to_string().as_bytes())
    }

    fn err(v: &Value) -> String {
        check(v).unwrap_err()
    }

    fn data(ev: &Event) -> Value {
        serde_json::from_str(ev.data.get()).unwrap()
    }

    /// The rules an accepted document breaks, as slugs.
    fn rules(v: &Value) -> Vec<&'static str> {
        check(v).unwrap().nonconforming.iter().map(|f| f.rule).collect()
    }

    #[test]
    fn catalog_sample_gives_the_exact_event() {
        let ev = validate(CATALOG_SAMPLE.as_bytes()).unwrap();
        let app = "/subscriptions/<subId>/resourceGroups/<rgName>/providers/Microsoft.Solutions/applications/<applicationName>";
        let want = format!(
            r#"{{"eventType":"PUT","provisioningState":"Succeeded","applicationId":"{app}","subscriptionId":"<subId>","resourceGroup":"<rgName>","applicationName":"<applicationName>","eventTime":"2019-08-14T19:20:08.1707163Z","flavour":"service_catalog","applicationDefinitionId":"/subscriptions/<subId>/resourceGroups/<rgName>/providers/Microsoft.Solutions/applicationDefinitions/<appDefName>","original":{}}}"#,
            CATALOG_SAMPLE.trim_end()
        );
        assert_eq!(ev.data.get(), want);
        let lower = app.to_ascii_lowercase();
        assert_eq!(ev.id, name_based_id(&format!("azure_managed_app\n{lower}\nPUT\nSucceeded\n2019-08-14T19:20:08.1707163Z")));
        // The documented id (docs/request-flow.md, "Event ids"), as a literal: the namespace and the name are pinned.
        assert_eq!(ev.id, "0be475e4-bdcc-326c-aeb7-e3138dd8b3ea");
        assert_eq!(ev.kind, "webhookguard.azure.managedapp.put.succeeded");
        assert_eq!(ev.subject.as_deref(), Some(app));
        assert_eq!(ev.time.as_deref(), Some(TIME));
        assert_eq!(ev.keys, RateKeys { application: Some(lower), subscription: Some("<subid>".into()) });
    }

    /// The bench's replay (benches/empty-filter, `replay-*`) forwards what webhook-guard
    /// forwards for this sample, without computing it: its body and headers are constants.
    #[test]
    fn the_bench_replay_forwards_the_catalog_samples_cloudevent() {
        let ev = validate(CATALOG_SAMPLE.as_bytes()).unwrap();
        let replayed = include_str!("../../../benches/empty-filter/src/cloudevent.json");
        let cloudevent = ev.to_cloudevent("/webhook-guard/azure").unwrap();
        assert_eq!(String::from_utf8(cloudevent).unwrap(), replayed, "benches/empty-filter/src/cloudevent.json is out of date");
        let filter = include_str!("../../../benches/empty-filter/src/lib.rs");
        let keys = (ev.keys.application.unwrap(), ev.keys.subscription.unwrap());
        for (name, value) in
            [("x-webhook-event-id", &ev.id), ("x-webhook-event-type", &ev.kind), ("x-webhook-application", &keys.0), ("x-webhook-subscription", &keys.1)]
        {
            assert!(filter.contains(&format!("(\"{name}\", \"{value}\")")), "benches/empty-filter/src/lib.rs: {name} is not {value}");
        }
    }

    #[test]
    fn marketplace_sample_gives_the_exact_event() {
        let ev = validate(MARKETPLACE_SAMPLE.as_bytes()).unwrap();
        let app = "/subscriptions/<subId>/resourceGroups/<rgName>/providers/Microsoft.Solutions/applications/<applicationName>";
        let want = format!(
            r#"{{"eventType":"PUT","provisioningState":"Failed","applicationId":"{app}","subscriptionId":"<subId>","resourceGroup":"<rgName>","applicationName":"<applicationName>","eventTime":"2019-08-14T19:20:08.1707163Z","flavour":"marketplace","plan":{{"publisher":"publisherId","product":"offer","name":"skuName","version":"1.0.1"}},"billing":{{"resourceUsageId":"<resourceUsageId>"}},"error":{{"code":"ErrorCode","message":"error message","details":[{{"code":"DetailedErrorCode","message":"error message"}}]}},"original":{}}}"#,
            MARKETPLACE_SAMPLE.trim_end()
        );
        assert_eq!(ev.data.get(), want);
        assert_eq!(ev.kind, "webhookguard.azure.managedapp.put.failed");
        assert_eq!(ev.subject.as_deref(), Some(app));
    }

    #[test]
    fn every_valid_pair_in_both_flavours() {
        for (event_type, state) in PAIRS {
            for (doc, flavour) in [(catalog(event_type, state), "service_catalog"), (marketplace(event_type, state), "marketplace")] {
                let ev = check(&doc).unwrap();
                assert_eq!(ev.nonconforming, vec![], "{doc}");
                let kind = format!("webhookguard.azure.managedapp.{}.{}", event_type.to_lowercase(), state.to_lowercase());
                assert_eq!(ev.kind, kind);
                let d = data(&ev);
                assert_eq!(d["eventType"], event_type);
                assert_eq!(d["provisioningState"], state);
                assert_eq!(d["flavour"], flavour);
                assert_eq!(d.get("error").is_some(), state == "Failed", "{kind}");
                let marketplace = flavour == "marketplace";
                assert_eq!(d.get("plan").is_some(), marketplace);
                assert_eq!(d.get("billing").is_some(), marketplace);
                assert_eq!(d.get("applicationDefinitionId").is_some(), !marketplace);
            }
        }
    }

    #[test]
    fn pairs_use_the_documented_names() {
        for (event_type, state) in PAIRS {
            assert!(EVENT_TYPES.contains(&event_type) && STATES[..DOCUMENTED_STATES].contains(&state));
        }
    }

    #[test]
    fn undocumented_pairs_are_forwarded_with_a_derived_type() {
        let mut flagged = 0;
        for event_type in EVENT_TYPES {
            for state in STATES[..DOCUMENTED_STATES].iter().filter(|s| !PAIRS.contains(&(event_type, **s))) {
                let ev = check(&catalog(event_type, state)).unwrap();
                let want = format!("provisioningState '{state}' is not documented for eventType '{event_type}'");
                assert_eq!(ev.nonconforming, vec![Finding { rule: Rule::PairUndocumented.slug(), detail: want }]);
                let kind = format!("{KIND_PREFIX}{}.{}", event_type.to_lowercase(), state.to_lowercase());
                assert_eq!(ev.kind, kind);
                flagged += 1;
            }
        }
        assert_eq!(flagged, 8);
        // PATCH/Failed: a failed update, with its error block; the case is canonicalised.
        let ev = check(&catalog("patch", "Failed")).unwrap();
        assert_eq!(ev.kind, "webhookguard.azure.managedapp.patch.failed");
        assert_eq!(data(&ev)["error"], json!({"code": "C", "message": "M"}));
        assert_eq!(rules(&catalog("patch", "Failed")), ["pair_undocumented"]);
    }

    #[test]
    fn undocumented_types_and_states_keep_their_values() {
        // ARM's other states get their canonical spelling; unknown values stay as given.
        for (state, canonical, name) in [
            ("RUNNING", "Running", "running"),
            ("notspecified", "NotSpecified", "notspecified"),
            ("Canceled", "Canceled", "canceled"),
            ("Provisioning", "Provisioning", "provisioning"),
            ("Not Specified!", "Not Specified!", "not_specified_"),
            ("é", "é", "_"),
        ] {
            let doc = catalog("PUT", state);
            let ev = check(&doc).unwrap();
            assert_eq!(rules(&doc), ["state_undocumented"], "{state}");
            assert_eq!(ev.kind, format!("{KIND_PREFIX}put.{name}"));
            assert_eq!(data(&ev)["provisioningState"], canonical);
            assert_eq!(ev.id, name_based_id(&format!("azure_managed_app\n{}\nPUT\n{canonical}\n{TIME}", APP.to_ascii_lowercase())));
        }
        let ev = check(&catalog("POST", "Succeeded")).unwrap();
        assert_eq!(ev.kind, format!("{KIND_PREFIX}post.succeeded"));
        assert_eq!(ev.nonconforming[0].detail, "eventType 'POST' is not one of PUT, PATCH, DELETE");
        // A value that is not a documented one never gets a documented type name.
        assert_eq!(check(&catalog(" PUT", "Succeeded")).unwrap().kind, format!("{KIND_PREFIX}_put.succeeded"));
        assert_eq!(rules(&catalog("Move", "Moving")), ["type_undocumented", "state_undocumented"]);
    }

    #[test]
    fn names_longer_than_64_characters_are_unusable() {
        let long = "X".repeat(65);
        assert_eq!(err(&catalog(&long, "Succeeded")), format!("eventType '{}…' is longer than 64 characters", "X".repeat(64)));
        let e = err(&catalog("PUT", &"é".repeat(65)));
        assert!(e.starts_with("provisioningState '") && e.ends_with("is longer than 64 characters"), "{e}");
        assert!(check(&catalog("PUT", &"é".repeat(64))).is_ok());
    }

    #[test]
    fn case_variants_are_forwarded_canonically() {
        let reference = check(&catalog("PUT", "Succeeded")).unwrap();
        for (event_type, state) in [("put", "succeeded"), ("Put", "SUCCEEDED"), ("pUt", "sUcCeEdEd")] {
            let ev = check(&catalog(event_type, state)).unwrap();
            assert_eq!(ev.id, reference.id);
            assert_eq!(ev.kind, "webhookguard.azure.managedapp.put.succeeded");
            assert_eq!(data(&ev)["eventType"], "PUT");
            assert_eq!(data(&ev)["provisioningState"], "Succeeded");
        }
        let ev = check(&catalog("delete", "DELETING")).unwrap();
        assert_eq!(ev.kind, "webhookguard.azure.managedapp.delete.deleting");
    }

    #[test]
    fn leading_slash_and_segment_case_are_optional() {
        let mut doc = catalog("PUT", "Succeeded");
        doc["applicationId"] = json!(APP.strip_prefix('/').unwrap());
        doc["applicationDefinitionId"] = json!(DEF.strip_prefix('/').unwrap().replace("resourceGroups", "RESOURCEGROUPS"));
        let ev = check(&doc).unwrap();
        assert_eq!(ev.subject.as_deref(), Some(APP));
        let d = data(&ev);
        assert_eq!(d["applicationId"], APP);
        assert_eq!(d["applicationDefinitionId"], DEF);
        assert_eq!(d["subscriptionId"], "0B88DFDB-55B3-4FB0-B474-5B6DCBE6B2EF");
        assert_eq!(d["resourceGroup"], "Shop-RG");
        assert_eq!(d["applicationName"], "Shop");
    }

    #[test]
    fn rate_keys_are_lowercase() {
        let ev = check(&catalog("PUT", "Succeeded")).unwrap();
        assert_eq!(ev.keys, RateKeys { application: Some(APP.to_ascii_lowercase()), subscription: Some("0b88dfdb-55b3-4fb0-b474-5b6dcbe6b2ef".into()) });
    }

    #[test]
    fn id_is_stable_across_equivalent_documents() {
        let reference = check(&catalog("PUT", "Succeeded")).unwrap().id;
        let compact = catalog("PUT", "Succeeded").to_string();
        let pretty = serde_json::to_string_pretty(&catalog("PUT", "Succeeded")).unwrap();
        let variants = [
            format!("\n\t {pretty} \r\n"),
            compact.replace("\"PUT\"", "\"put\"").replace("\"Succeeded\"", "\"SUCCEEDED\""),
            compact.replace("\"PUT\"", r#""\u0050UT""#),
            compact.replace(APP, APP.strip_prefix('/').unwrap()),
            compact.replace(APP, &APP.to_ascii_lowercase()),
            compact.replace(APP, &APP.replace("providers/Microsoft.Solutions", "PROVIDERS/microsoft.solutions")),
            compact.replace(APP, &APP.replace('/', r"\/")),
            compact.replace(TIME, "2019-08-14t19:20:08.1707163+00:00"),
            compact.replace('{', r#"{"unknown":[1,{"a":null}],"#),
            compact.replace(DEF, "/subscriptions/x/resourceGroups/y/providers/Microsoft.Solutions/applicationDefinitions/z"),
            r#"{"applicationDefinitionId":"DEF","provisioningState":"Succeeded","eventTime":"TIME","applicationId":"APP","eventType":"PUT"}"#
                .replace("DEF", DEF)
                .replace("TIME", TIME)
                .replace("APP", APP),
        ];
        for variant in &variants {
            assert_eq!(validate(variant.as_bytes()).unwrap().id, reference, "{variant}");
        }
        // Facts that make it a different notification change the id.
        let different = [compact.replace(TIME, "2019-08-14T19:20:08.170716Z"), compact.replace("Shop\"", "Shop2\""), compact.replace("0B88DFDB", "1B88DFDB")];
        for variant in &different {
            assert_ne!(validate(variant.as_bytes()).unwrap().id, reference, "{variant}");
        }
        assert_ne!(check(&catalog("PUT", "Accepted")).unwrap().id, reference);
        assert_ne!(check(&catalog("PATCH", "Succeeded")).unwrap().id, reference);
    }

    #[test]
    fn required_fields_are_named() {
        for field in ["eventType", "applicationId", "eventTime", "provisioningState"] {
            let mut doc = catalog("PUT", "Succeeded");
            remove(&mut doc, field);
            assert_eq!(err(&doc), format!("{field} is required"));
            doc[field] = Value::Null;
            assert_eq!(err(&doc), format!("{field} is required"));
            for wrong in [json!(1), json!(1.5), json!(true), json!({}), json!([]), json!(["PUT"])] {
                doc[field] = wrong;
                assert_eq!(err(&doc), format!("{field} must be a string"));
            }
            doc[field] = json!("");
            assert_eq!(err(&doc), format!("{field} must not be empty"));
        }
    }

    #[test]
    fn application_id_must_be_an_application() {
        let mut doc = catalog("PUT", "Succeeded");
        doc["applicationId"] = json!(DEF);
        assert_eq!(err(&doc), format!("{APP_MESSAGE}: segment 7 must be 'applications'"));
        for bad in [format!("{APP}//"), format!("{APP}?x=1"), "Shop".into(), format!("{APP}/extra")] {
            doc["applicationId"] = json!(bad);
            assert!(err(&doc).starts_with(APP_MESSAGE), "{bad}");
        }
        // One trailing slash and a lowercase provider namespace are the same application.
        let reference = check(&catalog("PUT", "Succeeded")).unwrap();
        doc["applicationId"] = json!(format!("{}/", APP.replace("Microsoft.Solutions", "microsoft.solutions")));
        let ev = check(&doc).unwrap();
        assert_eq!((ev.id, ev.subject), (reference.id, reference.subject));
    }

    #[test]
    fn event_time_is_validated_and_normalised() {
        let mut doc = catalog("PUT", "Succeeded");
        doc["eventTime"] = json!("14/08/2019");
        assert_eq!(err(&doc), "eventTime '14/08/2019' must be an ISO 8601 date-time such as 2019-08-14T19:20:08.1707163Z");
        doc["eventTime"] = json!("2019-02-29T00:00:00Z");
        assert_eq!(err(&doc), "eventTime '2019-02-29T00:00:00Z' is not a valid calendar date");
        doc["eventTime"] = json!("2019-08-14t19:20:08.17+00:00");
        let ev = check(&doc).unwrap();
        assert_eq!(ev.time.as_deref(), Some("2019-08-14T19:20:08.17Z"));
        assert_eq!(data(&ev)["eventTime"], "2019-08-14T19:20:08.17Z");
        assert_eq!(ev.nonconforming, vec![]);
        // Another offset is converted, conforming, with the id of the same instant in Z.
        let reference = check(&catalog("PUT", "Succeeded")).unwrap();
        doc["eventTime"] = json!("2019-08-14T21:20:08.1707163+02:00");
        let ev = check(&doc).unwrap();
        assert_eq!((ev.nonconforming.len(), &ev.id, ev.time.as_deref()), (0, &reference.id, Some(TIME)));
        // Without an offset: read as UTC and flagged, with the same id.
        doc["eventTime"] = json!("2019-08-14T19:20:08.1707163");
        let ev = check(&doc).unwrap();
        assert_eq!(ev.id, reference.id);
        assert_eq!(
            ev.nonconforming,
            vec![Finding { rule: Rule::TimeNoOffset.slug(), detail: "eventTime '2019-08-14T19:20:08.1707163' has no UTC offset; read as UTC".into() }]
        );
    }

    #[test]
    fn error_block_departures_are_findings() {
        let mut doc = marketplace("DELETE", "Failed");
        remove(&mut doc, "error");
        assert_eq!(rules(&doc), ["error_missing"]);
        assert!(data(&check(&doc).unwrap()).get("error").is_none());
        let cases = [
            (Value::Null, "error_missing", "provisioningState is Failed but error is missing"),
            (json!("boom"), "error_shape", "error must be an object"),
            (json!([{"code": "C", "message": "M"}]), "error_shape", "error must be an object"),
            (json!({"message": "M"}), "error_shape", "error.code is required"),
            (json!({"code": 7, "message": "M"}), "error_shape", "error.code must be a string"),
            (json!({"code": "", "message": "M"}), "error_shape", "error.code must not be empty"),
            (json!({"code": "C"}), "error_shape", "error.message is required"),
            (json!({"code": "C", "message": {}}), "error_shape", "error.message must be a string"),
            (json!({"code": "C", "message": "M", "details": "x"}), "error_shape", "error.details must be an array"),
            (json!({"code": "C", "message": "M", "details": {}}), "error_shape", "error.details must be an array"),
            (json!({"code": "C", "message": "M", "details": [1]}), "error_shape", "error.details[0] must be an object"),
            (json!({"code": "C", "message": "M", "details": [[]]}), "error_shape", "error.details[0] must be an object"),
            (
                json!({"code": "C", "message": "M", "details": [{"code": "a", "message": "b"}, {"message": "b"}]}),
                "error_shape",
                "error.details[1].code is required",
            ),
            (json!({"code": "C", "message": "M", "details": [{"code": "a", "message": false}]}), "error_shape", "error.details[0].message must be a string"),
        ];
        for (error, rule, detail) in cases {
            doc["error"] = error;
            let ev = check(&doc).unwrap();
            let found: Vec<(&str, &str)> = ev.nonconforming.iter().map(|f| (f.rule, f.detail.as_str())).collect();
            assert_eq!(found, [(rule, detail)], "{doc}");
            assert!(data(&ev).get("error").is_none());
        }
    }

    #[test]
    fn error_details_are_optional() {
        let mut doc = catalog("PUT", "Failed");
        doc["error"] = json!({"code": "C", "message": "M", "details": null, "target": "t"});
        let d = data(&check(&doc).unwrap());
        assert_eq!(d["error"], json!({"code": "C", "message": "M"}));
        doc["error"]["details"] = json!([]);
        let d = data(&check(&doc).unwrap());
        assert_eq!(d["error"], json!({"code": "C", "message": "M", "details": []}));
    }

    #[test]
    fn error_on_another_state_is_unexpected() {
        let mut doc = marketplace("PUT", "Succeeded");
        doc["error"] = json!({"code": "C", "message": "M"});
        let ev = check(&doc).unwrap();
        assert_eq!(
            ev.nonconforming,
            vec![Finding { rule: Rule::ErrorUnexpected.slug(), detail: "error is present with provisioningState 'Succeeded'".into() }]
        );
        assert_eq!(data(&ev)["error"], json!({"code": "C", "message": "M"}));
        doc["error"] = json!({"code": 1});
        assert_eq!(rules(&doc), ["error_unexpected", "error_shape"]);
        assert_eq!(data(&check(&doc).unwrap())["original"]["error"], json!({"code": 1}));
    }

    #[test]
    fn flavour_is_told_by_plan_or_application_definition_id() {
        // Marketplace by plan alone: billingDetails is optional (real traffic lacks it).
        let mut doc = marketplace("PUT", "Succeeded");
        remove(&mut doc, "billingDetails");
        let ev = check(&doc).unwrap();
        assert_eq!(ev.nonconforming, vec![]);
        let d = data(&ev);
        assert_eq!(d["flavour"], "marketplace");
        assert!(d.get("billing").is_none());

        let neither = "neither applicationDefinitionId (service catalog) nor plan (Marketplace) is present";
        let both = "both applicationDefinitionId (service catalog) and plan (Marketplace) are present";
        let billing_alone = "billingDetails (Marketplace) is present with applicationDefinitionId (service catalog)";
        let mut none = catalog("PUT", "Succeeded");
        remove(&mut none, "applicationDefinitionId");
        let mut nulls = none.clone();
        nulls["applicationDefinitionId"] = Value::Null;
        nulls["plan"] = Value::Null;
        let mut two = marketplace("PUT", "Succeeded");
        two["applicationDefinitionId"] = json!(DEF);
        let mut billing_only = marketplace("PUT", "Succeeded");
        remove(&mut billing_only, "plan");
        let mut catalog_billing = catalog("PUT", "Succeeded");
        catalog_billing["billingDetails"] = json!({"resourceUsageId": "u"});
        for (doc, detail) in [(none, neither), (nulls, neither), (two, both), (billing_only, neither), (catalog_billing, billing_alone)] {
            let ev = check(&doc).unwrap();
            assert_eq!(ev.nonconforming, vec![Finding { rule: Rule::FlavourUnknown.slug(), detail: detail.into() }], "{doc}");
            assert_eq!(data(&ev)["flavour"], "unknown");
        }
        // A null applicationDefinitionId is absent, not a second flavour.
        let mut doc = marketplace("PUT", "Succeeded");
        doc["applicationDefinitionId"] = Value::Null;
        assert_eq!(data(&check(&doc).unwrap())["flavour"], "marketplace");
    }

    #[test]
    fn application_definition_id_is_checked() {
        let mut doc = catalog("PUT", "Succeeded");
        doc["applicationDefinitionId"] = json!(APP);
        let ev = check(&doc).unwrap();
        assert_eq!(ev.nonconforming, vec![Finding { rule: Rule::DefinitionShape.slug(), detail: "applicationDefinitionId must be an application definition resource ID (subscriptions/{id}/resourceGroups/{rg}/providers/Microsoft.Solutions/applicationDefinitions/{name}): segment 7 must be 'applicationDefinitions'".into() }]);
        assert_eq!(data(&ev)["flavour"], "service_catalog");
        assert!(data(&ev).get("applicationDefinitionId").is_none());
        for (wrong, want) in [
            (json!(5), "applicationDefinitionId must be a string"),
            (json!({}), "applicationDefinitionId must be a string"),
            (json!(""), "applicationDefinitionId must not be empty"),
        ] {
            doc["applicationDefinitionId"] = wrong;
            assert_eq!(check(&doc).unwrap().nonconforming[0].detail, want);
        }
    }

    #[test]
    fn marketplace_fields_are_checked() {
        for wrong in [json!("p"), json!([]), json!(3), json!(true)] {
            let mut doc = marketplace("PUT", "Succeeded");
            doc["plan"] = wrong.clone();
            assert_eq!(check(&doc).unwrap().nonconforming[0].detail, "plan must be an object");
            let mut doc = marketplace("PUT", "Succeeded");
            doc["billingDetails"] = wrong;
            assert_eq!(check(&doc).unwrap().nonconforming[0].detail, "billingDetails must be an object");
        }
        let fields = [
            ("plan", "publisher", "plan_shape"),
            ("plan", "product", "plan_shape"),
            ("plan", "name", "plan_shape"),
            ("plan", "version", "plan_shape"),
            ("billingDetails", "resourceUsageId", "billing_shape"),
        ];
        for (object, field, rule) in fields {
            let name = format!("{object}.{field}");
            let mut doc = marketplace("PUT", "Succeeded");
            doc[object].as_object_mut().unwrap().remove(field);
            for (value, want) in [
                (None, "is required"),
                (Some(Value::Null), "is required"),
                (Some(json!(1)), "must be a string"),
                (Some(json!(["x"])), "must be a string"),
                (Some(json!({})), "must be a string"),
                (Some(json!("")), "must not be empty"),
            ] {
                if let Some(value) = value {
                    doc[object][field] = value;
                }
                let ev = check(&doc).unwrap();
                let found: Vec<(&str, &str)> = ev.nonconforming.iter().map(|f| (f.rule, f.detail.as_str())).collect();
                assert_eq!(found, [(rule, format!("{name} {want}").as_str())]);
                let d = data(&ev);
                assert_eq!(d["flavour"], "marketplace");
                assert!(d.get(if object == "plan" { "plan" } else { "billing" }).is_none());
            }
        }
    }

    #[test]
    fn escaped_strings_are_decoded() {
        let body = marketplace("PUT", "Succeeded").to_string().replace(r#""publisher":"p""#, r#""publisher":"a\"b\u00e9\n""#);
        let d = data(&validate(body.as_bytes()).unwrap());
        assert_eq!(d["plan"]["publisher"], "a\"bé\n");
    }

    #[test]
    fn strings_are_borrowed_unless_escaped() {
        assert!(matches!(required("f", Some(r#""plain""#)), Ok(Cow::Borrowed("plain"))));
        assert!(matches!(required("f", Some(r#""a\u0062""#)), Ok(Cow::Owned(s)) if s == "ab"));
    }

    #[test]
    fn body_must_be_one_json_object() {
        let cases: [(&[u8], &str); 11] = [
            (b"", "body is empty"),
            (b"   ", "body is not valid JSON: EOF while parsing a value"),
            (b"\xff{}", "body is not valid UTF-8"),
            (b"{\"eventType\":\"PUT\xc3\"}", "body is not valid UTF-8"),
            (b"{\"eventType\":", "body is not valid JSON"),
            (b"{'eventType':'PUT'}", "body is not valid JSON"),
            (b"{} {}", "body is not valid JSON: trailing characters"),
            (b"[\"PUT\"]", "body must be a JSON object"),
            (b"\"PUT\"", "body must be a JSON object"),
            (b"null", "body must be a JSON object"),
            (b"42", "body must be a JSON object"),
        ];
        for (body, want) in cases {
            let e = validate(body).unwrap_err();
            assert!(e.starts_with(want), "{body:?}: {e}");
        }
        assert_eq!(validate(b"{}").unwrap_err(), "eventType is required");
        // Every identifying field usable: never refused, whatever else is wrong.
        let minimal = format!(r#"{{"eventType":"X","provisioningState":"Y","applicationId":"{APP}","eventTime":"2019-08-14T19:20:08"}}"#);
        let found: Vec<&str> = validate(minimal.as_bytes()).unwrap().nonconforming.iter().map(|f| f.rule).collect();
        assert_eq!(found, [Rule::FlavourUnknown, Rule::TypeUndocumented, Rule::StateUndocumented, Rule::TimeNoOffset].map(Rule::slug));
        // Findings come in the order of `conformance::RULES`.
        let all = minimal.replacen('{', r#"{"applicationDefinitionId":1,"plan":"p","billingDetails":[],"error":7,"#, 1);
        let found: Vec<&str> = validate(all.as_bytes()).unwrap().nonconforming.iter().map(|f| f.rule).collect();
        let want: Vec<&str> = crate::profile::azure_managed_app::conformance::RULES
            .into_iter()
            .filter(|r| !matches!(r, Rule::PairUndocumented | Rule::ErrorMissing))
            .map(Rule::slug)
            .collect();
        assert_eq!(found, want);
    }

    #[test]
    fn deep_nesting_is_rejected_quickly() {
        let start = std::time::Instant::now();
        let open = "[".repeat(100_000);
        let close = "]".repeat(100_000);
        let bodies = [
            open.clone(),
            format!("{open}{close}"),
            format!("{{\"a\":{open}"),
            format!("{{\"a\":{open}{close}}}"),
            format!("{{\"a\":{}}}", "{\"b\":".repeat(50_000) + &"}".repeat(50_000)),
        ];
        for body in &bodies {
            assert!(validate(body.as_bytes()).is_err());
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(5));

        let nested = |depth: usize| {
            let mut doc = catalog("PUT", "Succeeded").to_string();
            let value = format!("{}\"]{{\"{}", "[".repeat(depth), "]".repeat(depth));
            doc.insert_str(1, &format!("\"deep\":{value},"));
            doc
        };
        let e = validate(nested(64).as_bytes()).unwrap_err();
        assert_eq!(e, "body nests deeper than 64 levels");
        assert!(validate(nested(63).as_bytes()).is_ok());
    }

    #[test]
    fn duplicate_keys_are_rejected() {
        let body = catalog("PUT", "Succeeded").to_string().replacen('{', r#"{"eventType":"DELETE","#, 1);
        let e = validate(body.as_bytes()).unwrap_err();
        assert!(e.starts_with("body is not strict JSON: duplicate key \"eventType\""), "{e}");
        let body = marketplace("PUT", "Succeeded").to_string().replace(r#""publisher":"p""#, r#""publisher":"p","publisher":"q""#);
        let e = validate(body.as_bytes()).unwrap_err();
        assert!(e.starts_with("body is not strict JSON: duplicate key \"publisher\""), "{e}");
    }

    #[test]
    fn unknown_members_must_be_strict_json_too() {
        // They are forwarded in `data.original`, so a strict backend must be able to read them.
        for extra in [r#""x": "\ud800""#, r#""x": 1e999999"#, r#""x": 1, "x": 2"#] {
            let body = catalog("PUT", "Succeeded").to_string().replacen('{', &format!("{{{extra},"), 1);
            let e = validate(body.as_bytes()).unwrap_err();
            assert!(e.starts_with("body is not strict JSON"), "{extra}: {e}");
        }
        let body = catalog("PUT", "Failed").to_string().replace(r#""code":"C""#, r#""code":"C","details":[{"code":"a","code":"b","message":"m"}]"#);
        let e = validate(body.as_bytes()).unwrap_err();
        assert!(e.starts_with("body is not strict JSON: duplicate key \"code\""), "{e}");
    }

    #[test]
    fn unknown_fields_reach_the_backend_verbatim() {
        let body = marketplace("PUT", "Succeeded")
            .to_string()
            .replacen('{', "  {\"future\": {\"x\": [1, 2.50, \"\\u00e9\"]}, \"n\": 1e3,\n", 1)
            .replace(r#""version":"1""#, r#""version":"1","tier":"gold""#)
            + "\n";
        let ev = validate(body.as_bytes()).unwrap();
        let only: OriginalOnly = serde_json::from_str(ev.data.get()).unwrap();
        assert_eq!(only.original.get(), body.trim());
        let d = data(&ev);
        assert!(d.get("future").is_none());
        assert_eq!(d["plan"], json!({"publisher": "p", "product": "o", "name": "s", "version": "1"}));
    }

    #[derive(Deserialize)]
    struct OriginalOnly<'a> {
        #[serde(borrow)]
        original: &'a RawValue,
    }
}
