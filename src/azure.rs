//! The `azure_managed_app` profile: Azure managed application notifications
//! (format: `azure-managed-app-notifications.md` in the shared spec).
//!
//! A 400 is final (Azure retries only 404, 429 and 5xx), so this rejects only documents
//! that can never be a real notification, and accepts the spellings ARM itself treats as
//! equal: any case of eventType/provisioningState and of ID segment names, with or without
//! a leading `/`. Every such spelling of one notification gets the same event id.

use std::borrow::Cow;
use std::fmt::Display;

use serde::Serialize;
use serde_json::value::RawValue;

use crate::event::{name_based_id, Event, RateKeys};
use crate::resource_id::{Kind, ResourceId};
use crate::strict_json::{self, Walked};
use crate::problem::clip;
use crate::timestamp;

/// The only valid (eventType, provisioningState) pairs, in canonical spelling.
pub const PAIRS: [(&str, &str); 7] = [
    ("PUT", "Accepted"),
    ("PUT", "Succeeded"),
    ("PUT", "Failed"),
    ("PATCH", "Succeeded"),
    ("DELETE", "Deleting"),
    ("DELETE", "Deleted"),
    ("DELETE", "Failed"),
];

/// Prefix of every Azure event `type`; the rest is `{eventtype}.{state}` in lowercase.
pub const KIND_PREFIX: &str = "webhookguard.azure.managedapp.";

/// The index in [`PAIRS`] of an Azure event `type`, e.g. `...managedapp.put.succeeded`.
pub fn pair_of(kind: &str) -> Option<usize> {
    let (event_type, state) = kind.strip_prefix(KIND_PREFIX)?.split_once('.')?;
    PAIRS.iter().position(|(t, s)| t.eq_ignore_ascii_case(event_type) && s.eq_ignore_ascii_case(state))
}

const EVENT_TYPES: [&str; 3] = ["PUT", "PATCH", "DELETE"];
const STATES: [&str; 5] = ["Accepted", "Succeeded", "Failed", "Deleting", "Deleted"];

/// Deepest nesting accepted. serde_json enforces its recursion limit only when it builds
/// values, not for the raw value read here, so it is checked separately; 64 leaves room
/// for the two levels the CloudEvent adds under any backend's limit of 128.
const MAX_DEPTH: usize = 64;
const NEITHER: &str = "notification must carry either applicationDefinitionId (service catalog) or plan and billingDetails (Marketplace)";

/// The CloudEvent `data`: the notification's facts in canonical form, plus the original.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Data<'a> {
    event_type: &'static str,
    provisioning_state: &'static str,
    application_id: &'a str,
    subscription_id: &'a str,
    resource_group: &'a str,
    application_name: &'a str,
    event_time: &'a str,
    flavour: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    application_definition_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    plan: Option<Plan<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    billing: Option<Billing<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorInfo<'a>>,
    original: &'a RawValue,
}

#[derive(Serialize)]
struct Plan<'a> {
    publisher: Cow<'a, str>,
    product: Cow<'a, str>,
    name: Cow<'a, str>,
    version: Cow<'a, str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Billing<'a> {
    resource_usage_id: Cow<'a, str>,
}

#[derive(Serialize)]
struct ErrorInfo<'a> {
    code: Cow<'a, str>,
    message: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<Vec<Detail<'a>>>,
}

#[derive(Serialize)]
struct Detail<'a> {
    code: Cow<'a, str>,
    message: Cow<'a, str>,
}

enum Flavour<'a> {
    /// The canonical applicationDefinitionId.
    Catalog(String),
    Marketplace(Plan<'a>, Billing<'a>),
}

/// Validates one notification body. The error is the `detail` of a 400 problem: it names
/// the field and the rule it breaks.
pub fn validate(body: &[u8]) -> Result<Event, String> {
    if body.is_empty() {
        return Err("body is empty".into());
    }
    let text = std::str::from_utf8(body).map_err(|e| format!("body is not valid UTF-8: {e}"))?;
    // serde_json reads the syntax (its messages are the ones senders get) and yields the
    // original for `data`; everything else is one walk of `strict_json::walk` below.
    let original: &RawValue =
        serde_json::from_str(text).map_err(|e| format!("body is not valid JSON: {e}"))?;
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
        Walked::Unsure => {
            strict_json::check(text).map_err(|e| format!("body is not strict JSON: {e}"))?
        }
        Walked::TooDeep => return Err(format!("body nests deeper than {MAX_DEPTH} levels")),
    }

    let event_type = one_of("eventType", &EVENT_TYPES, event_type)?;
    let state = one_of("provisioningState", &STATES, state)?;
    if !PAIRS.contains(&(event_type, state)) {
        return Err(format!(
            "provisioningState '{state}' is not valid for eventType '{event_type}'"
        ));
    }
    let given = required("applicationId", application_id)?;
    let kind = Kind::Application;
    let app = ResourceId::parse(&given, kind)
        .map_err(|e| format!("applicationId must be {}: {e}", kind.describe()))?;
    let given = required("eventTime", event_time)?;
    let time =
        timestamp::parse_utc(&given).map_err(|e| format!("eventTime '{}' {e}", clip(&given)))?;
    // Azure sends `error` only with Failed. With another state it is not interpreted, so a
    // malformed one cannot cost an otherwise valid event; it still reaches the backend in
    // `original`.
    let error = match state {
        "Failed" => Some(error_info(error)?),
        _ => None,
    };
    let (flavour, application_definition_id, plan, billing) = match flavour(definition_id, plan, billing)? {
        Flavour::Catalog(id) => ("service_catalog", Some(id), None, None),
        Flavour::Marketplace(plan, billing) => ("marketplace", None, Some(plan), Some(billing)),
    };

    let application = app.canonical();
    // ASCII lowercase: ARM names are case-insensitive, and any backend can recompute it.
    let application_key = application.to_ascii_lowercase();
    let data = serde_json::value::to_raw_value(&Data {
        event_type,
        provisioning_state: state,
        application_id: &application,
        subscription_id: app.subscription,
        resource_group: app.resource_group,
        application_name: app.name,
        event_time: &time,
        flavour,
        application_definition_id,
        plan,
        billing,
        error,
        original,
    })
    .map_err(|e| format!("cannot serialise the event: {e}"))?;
    let name = [
        "azure_managed_app\n",
        &application_key,
        "\n",
        event_type,
        "\n",
        state,
        "\n",
        &time,
    ];
    let mut kind = [KIND_PREFIX, event_type, ".", state].concat();
    kind.make_ascii_lowercase(); // the prefix is lowercase already
    Ok(Event {
        id: name_based_id(&name.concat()),
        kind,
        subject: Some(application),
        time: Some(time),
        keys: RateKeys {
            application: Some(application_key),
            subscription: Some(app.subscription.to_ascii_lowercase()),
        },
        data,
    })
}

/// The members `names` of a nested JSON object, which the walk of the body has already
/// judged, as raw text (`null` as `None`).
fn object<'a, const N: usize>(
    field: &(impl Display + ?Sized),
    raw: &'a str,
    names: [&str; N],
) -> Result<[Option<&'a str>; N], String> {
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

/// Service catalog or Marketplace, from the members that tell them apart.
fn flavour<'a>(
    definition_id: Option<&'a str>,
    plan: Option<&'a str>,
    billing: Option<&'a str>,
) -> Result<Flavour<'a>, String> {
    match (definition_id, plan, billing) {
        (Some(raw), None, None) => {
            let given = required("applicationDefinitionId", Some(raw))?;
            let kind = Kind::ApplicationDefinition;
            let id = ResourceId::parse(&given, kind)
                .map_err(|e| format!("applicationDefinitionId must be {}: {e}", kind.describe()))?;
            Ok(Flavour::Catalog(id.canonical()))
        }
        (None, Some(plan), Some(billing)) => {
            let [publisher, product, name, version] =
                object("plan", plan, ["publisher", "product", "name", "version"])?;
            let [resource_usage_id] = object("billingDetails", billing, ["resourceUsageId"])?;
            Ok(Flavour::Marketplace(
                Plan {
                    publisher: required("plan.publisher", publisher)?,
                    product: required("plan.product", product)?,
                    name: required("plan.name", name)?,
                    version: required("plan.version", version)?,
                },
                Billing {
                    resource_usage_id: required(
                        "billingDetails.resourceUsageId",
                        resource_usage_id,
                    )?,
                },
            ))
        }
        (None, None, None) => Err(NEITHER.into()),
        (Some(_), _, _) => Err(format!("{NEITHER}, not both")),
        (None, Some(_), None) => {
            Err("billingDetails is required when plan is present (Marketplace)".into())
        }
        (None, None, Some(_)) => {
            Err("plan is required when billingDetails is present (Marketplace)".into())
        }
    }
}

fn error_info(raw: Option<&str>) -> Result<ErrorInfo<'_>, String> {
    let raw = raw.ok_or("error is required when provisioningState is Failed")?;
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
                let [code, message] =
                    object(&format_args!("error.details[{i}]"), item, ["code", "message"])?;
                Ok(Detail {
                    code: required(&format_args!("error.details[{i}].code"), code)?,
                    message: required(&format_args!("error.details[{i}].message"), message)?,
                })
            });
            Some(details.collect::<Result<_, String>>()?)
        }
    };
    Ok(ErrorInfo {
        code,
        message,
        details,
    })
}

/// A non-empty string field, borrowed from the body unless it contains escapes; missing
/// and `null` both count as missing. `raw` is the value's JSON text, a slice of the body.
fn required<'a, F>(field: &F, raw: Option<&'a str>) -> Result<Cow<'a, str>, String>
where
    F: Display + ?Sized,
{
    let raw = raw.ok_or_else(|| format!("{field} is required"))?;
    let value = match raw.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        // A fold rather than `contains`: the compiler vectorises it, and these are short.
        Some(s) if !s.bytes().fold(false, |found, b| found | (b == b'\\')) => Cow::Borrowed(s),
        Some(_) => Cow::Owned(
            serde_json::from_str::<String>(raw).map_err(|_| format!("{field} must be a string"))?,
        ),
        None => return Err(format!("{field} must be a string")),
    };
    if value.is_empty() {
        return Err(format!("{field} must not be empty"));
    }
    Ok(value)
}

/// The canonical spelling of a required string among `options`, ignoring ASCII case.
fn one_of(
    field: &str,
    options: &[&'static str],
    raw: Option<&str>,
) -> Result<&'static str, String> {
    let given = required(field, raw)?;
    options
        .iter()
        .copied()
        .find(|o| o.eq_ignore_ascii_case(&given))
        .ok_or_else(|| {
            let list = options.join(", ");
            format!("{field} '{}' is not one of {list}", clip(&given))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::{json, Value};

    // Verbatim from the documentation (and the spec), placeholders included.
    const CATALOG_SAMPLE: &str = include_str!("../examples/requests/azure-service-catalog.json");
    const MARKETPLACE_SAMPLE: &str = include_str!("../examples/requests/azure-marketplace-failed.json");

    const APP: &str = "/subscriptions/0B88DFDB-55B3-4FB0-B474-5B6DCBE6B2EF/resourceGroups/Shop-RG/providers/Microsoft.Solutions/applications/Shop";
    const DEF: &str = "/subscriptions/0B88DFDB-55B3-4FB0-B474-5B6DCBE6B2EF/resourceGroups/Defs/providers/Microsoft.Solutions/applicationDefinitions/ShopDef";
    const TIME: &str = "2019-08-14T19:20:08.1707163Z";
    const APP_MESSAGE: &str = "applicationId must be a managed application resource ID (subscriptions/{id}/resourceGroups/{rg}/providers/Microsoft.Solutions/applications/{name})";

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

    #[test]
    fn catalog_sample_gives_the_exact_event() {
        let ev = validate(CATALOG_SAMPLE.as_bytes()).unwrap();
        let app = "/subscriptions/<subId>/resourceGroups/<rgName>/providers/Microsoft.Solutions/applications/<applicationName>";
        let want = format!(
            r#"{{"eventType":"PUT","provisioningState":"Succeeded","applicationId":"{app}","subscriptionId":"<subId>","resourceGroup":"<rgName>","applicationName":"<applicationName>","eventTime":"2019-08-14T19:20:08.1707163Z","flavour":"service_catalog","applicationDefinitionId":"/subscriptions/<subId>/resourceGroups/<rgName>/providers/Microsoft.Solutions/applicationDefinitions/<appDefName>","original":{}}}"#, CATALOG_SAMPLE.trim_end()
        );
        assert_eq!(ev.data.get(), want);
        let lower = app.to_ascii_lowercase();
        assert_eq!(
            ev.id,
            name_based_id(&format!(
                "azure_managed_app\n{lower}\nPUT\nSucceeded\n2019-08-14T19:20:08.1707163Z"
            ))
        );
        assert_eq!(ev.kind, "webhookguard.azure.managedapp.put.succeeded");
        assert_eq!(ev.subject.as_deref(), Some(app));
        assert_eq!(ev.time.as_deref(), Some(TIME));
        assert_eq!(
            ev.keys,
            RateKeys {
                application: Some(lower),
                subscription: Some("<subid>".into())
            }
        );
    }

    #[test]
    fn marketplace_sample_gives_the_exact_event() {
        let ev = validate(MARKETPLACE_SAMPLE.as_bytes()).unwrap();
        let app = "/subscriptions/<subId>/resourceGroups/<rgName>/providers/Microsoft.Solutions/applications/<applicationName>";
        let want = format!(
            r#"{{"eventType":"PUT","provisioningState":"Failed","applicationId":"{app}","subscriptionId":"<subId>","resourceGroup":"<rgName>","applicationName":"<applicationName>","eventTime":"2019-08-14T19:20:08.1707163Z","flavour":"marketplace","plan":{{"publisher":"publisherId","product":"offer","name":"skuName","version":"1.0.1"}},"billing":{{"resourceUsageId":"<resourceUsageId>"}},"error":{{"code":"ErrorCode","message":"error message","details":[{{"code":"DetailedErrorCode","message":"error message"}}]}},"original":{}}}"#, MARKETPLACE_SAMPLE.trim_end()
        );
        assert_eq!(ev.data.get(), want);
        assert_eq!(ev.kind, "webhookguard.azure.managedapp.put.failed");
        assert_eq!(ev.subject.as_deref(), Some(app));
    }

    #[test]
    fn every_valid_pair_in_both_flavours() {
        for (event_type, state) in PAIRS {
            for (doc, flavour) in [
                (catalog(event_type, state), "service_catalog"),
                (marketplace(event_type, state), "marketplace"),
            ] {
                let ev = check(&doc).unwrap();
                let kind = format!(
                    "webhookguard.azure.managedapp.{}.{}",
                    event_type.to_lowercase(),
                    state.to_lowercase()
                );
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
    fn pairs_use_the_known_names() {
        for (event_type, state) in PAIRS {
            assert!(EVENT_TYPES.contains(&event_type) && STATES.contains(&state));
        }
    }

    #[test]
    fn mismatched_pairs_are_rejected_by_name() {
        let mut rejected = 0;
        for event_type in EVENT_TYPES {
            for state in STATES
                .into_iter()
                .filter(|s| !PAIRS.contains(&(event_type, *s)))
            {
                let want = format!(
                    "provisioningState '{state}' is not valid for eventType '{event_type}'"
                );
                assert_eq!(err(&catalog(event_type, state)), want);
                rejected += 1;
            }
        }
        assert_eq!(rejected, 8);
        assert_eq!(
            err(&catalog("patch", "deleted")),
            "provisioningState 'Deleted' is not valid for eventType 'PATCH'"
        );
    }

    #[test]
    fn unknown_event_types_and_states_are_named() {
        assert_eq!(
            err(&catalog("POST", "Succeeded")),
            "eventType 'POST' is not one of PUT, PATCH, DELETE"
        );
        assert_eq!(
            err(&catalog(" PUT", "Succeeded")),
            "eventType ' PUT' is not one of PUT, PATCH, DELETE"
        );
        assert_eq!(
            err(&catalog("PUT", "Created")),
            "provisioningState 'Created' is not one of Accepted, Succeeded, Failed, Deleting, Deleted"
        );
        let long = "X".repeat(100);
        let e = err(&catalog(&long, "Succeeded"));
        assert_eq!(
            e,
            format!(
                "eventType '{}…' is not one of PUT, PATCH, DELETE",
                "X".repeat(64)
            )
        );
        let e = err(&catalog("PUT", &"é".repeat(64)));
        assert!(e.contains(&format!("'{}'", "é".repeat(64))), "{e}");
    }

    #[test]
    fn case_variants_are_forwarded_canonically() {
        let reference = check(&catalog("PUT", "Succeeded")).unwrap();
        for (event_type, state) in [
            ("put", "succeeded"),
            ("Put", "SUCCEEDED"),
            ("pUt", "sUcCeEdEd"),
        ] {
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
        doc["applicationDefinitionId"] = json!(DEF
            .strip_prefix('/')
            .unwrap()
            .replace("resourceGroups", "RESOURCEGROUPS"));
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
        assert_eq!(
            ev.keys,
            RateKeys {
                application: Some(APP.to_ascii_lowercase()),
                subscription: Some("0b88dfdb-55b3-4fb0-b474-5b6dcbe6b2ef".into()),
            }
        );
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
                .replace("DEF", DEF).replace("TIME", TIME).replace("APP", APP),
        ];
        for variant in &variants {
            assert_eq!(
                validate(variant.as_bytes()).unwrap().id,
                reference,
                "{variant}"
            );
        }
        // Facts that make it a different notification change the id.
        let different = [
            compact.replace(TIME, "2019-08-14T19:20:08.170716Z"),
            compact.replace("Shop\"", "Shop2\""),
            compact.replace("0B88DFDB", "1B88DFDB"),
        ];
        for variant in &different {
            assert_ne!(
                validate(variant.as_bytes()).unwrap().id,
                reference,
                "{variant}"
            );
        }
        assert_ne!(check(&catalog("PUT", "Accepted")).unwrap().id, reference);
        assert_ne!(check(&catalog("PATCH", "Succeeded")).unwrap().id, reference);
    }

    #[test]
    fn required_fields_are_named() {
        for field in [
            "eventType",
            "applicationId",
            "eventTime",
            "provisioningState",
        ] {
            let mut doc = catalog("PUT", "Succeeded");
            remove(&mut doc, field);
            assert_eq!(err(&doc), format!("{field} is required"));
            doc[field] = Value::Null;
            assert_eq!(err(&doc), format!("{field} is required"));
            for wrong in [
                json!(1),
                json!(1.5),
                json!(true),
                json!({}),
                json!([]),
                json!(["PUT"]),
            ] {
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
        assert_eq!(
            err(&doc),
            format!("{APP_MESSAGE}: segment 7 must be 'applications'")
        );
        for bad in [
            format!("{APP}/"),
            format!("{APP}?x=1"),
            "Shop".into(),
            format!("{APP}/extra"),
        ] {
            doc["applicationId"] = json!(bad);
            assert!(err(&doc).starts_with(APP_MESSAGE), "{bad}");
        }
    }

    #[test]
    fn event_time_is_validated_and_normalised() {
        let mut doc = catalog("PUT", "Succeeded");
        doc["eventTime"] = json!("2019-08-14T19:20:08+01:00");
        assert_eq!(
            err(&doc),
            "eventTime '2019-08-14T19:20:08+01:00' must be in UTC (Z or +00:00)"
        );
        doc["eventTime"] = json!("14/08/2019");
        assert_eq!(
            err(&doc),
            "eventTime '14/08/2019' must be an ISO 8601 UTC timestamp such as 2019-08-14T19:20:08.1707163Z"
        );
        doc["eventTime"] = json!("2019-02-29T00:00:00Z");
        assert_eq!(
            err(&doc),
            "eventTime '2019-02-29T00:00:00Z' is not a valid calendar date"
        );
        doc["eventTime"] = json!("2019-08-14t19:20:08.17+00:00");
        let ev = check(&doc).unwrap();
        assert_eq!(ev.time.as_deref(), Some("2019-08-14T19:20:08.17Z"));
        assert_eq!(data(&ev)["eventTime"], "2019-08-14T19:20:08.17Z");
    }

    #[test]
    fn failed_requires_a_well_formed_error() {
        let mut doc = marketplace("DELETE", "Failed");
        remove(&mut doc, "error");
        assert_eq!(
            err(&doc),
            "error is required when provisioningState is Failed"
        );
        let cases = [
            (
                Value::Null,
                "error is required when provisioningState is Failed",
            ),
            (json!("boom"), "error must be an object"),
            (
                json!([{"code": "C", "message": "M"}]),
                "error must be an object",
            ),
            (json!(1), "error must be an object"),
            (json!({"message": "M"}), "error.code is required"),
            (
                json!({"code": 7, "message": "M"}),
                "error.code must be a string",
            ),
            (
                json!({"code": "", "message": "M"}),
                "error.code must not be empty",
            ),
            (json!({"code": "C"}), "error.message is required"),
            (
                json!({"code": "C", "message": {}}),
                "error.message must be a string",
            ),
            (
                json!({"code": "C", "message": "M", "details": "x"}),
                "error.details must be an array",
            ),
            (
                json!({"code": "C", "message": "M", "details": {}}),
                "error.details must be an array",
            ),
            (
                json!({"code": "C", "message": "M", "details": [1]}),
                "error.details[0] must be an object",
            ),
            (
                json!({"code": "C", "message": "M", "details": [[]]}),
                "error.details[0] must be an object",
            ),
            (
                json!({"code": "C", "message": "M", "details": [{"code": "a", "message": "b"}, {"message": "b"}]}),
                "error.details[1].code is required",
            ),
            (
                json!({"code": "C", "message": "M", "details": [{"code": "a", "message": false}]}),
                "error.details[0].message must be a string",
            ),
        ];
        for (error, want) in cases {
            doc["error"] = error;
            assert_eq!(err(&doc), want, "{doc}");
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
        assert_eq!(
            d["error"],
            json!({"code": "C", "message": "M", "details": []})
        );
    }

    #[test]
    fn error_is_ignored_unless_failed() {
        let mut doc = marketplace("PUT", "Succeeded");
        doc["error"] = json!({"code": 1});
        let body = doc.to_string();
        let ev = validate(body.as_bytes()).unwrap();
        let d = data(&ev);
        assert!(d.get("error").is_none());
        assert_eq!(d["original"]["error"], json!({"code": 1}));
    }

    #[test]
    fn exactly_one_flavour() {
        let mut doc = catalog("PUT", "Succeeded");
        remove(&mut doc, "applicationDefinitionId");
        assert_eq!(err(&doc), NEITHER);
        doc["applicationDefinitionId"] = Value::Null;
        doc["plan"] = Value::Null;
        assert_eq!(err(&doc), NEITHER);

        let both = format!("{NEITHER}, not both");
        let mut doc = marketplace("PUT", "Succeeded");
        doc["applicationDefinitionId"] = json!(DEF);
        assert_eq!(err(&doc), both);
        remove(&mut doc, "billingDetails");
        assert_eq!(err(&doc), both);

        let mut doc = marketplace("PUT", "Succeeded");
        remove(&mut doc, "billingDetails");
        assert_eq!(
            err(&doc),
            "billingDetails is required when plan is present (Marketplace)"
        );
        let mut doc = marketplace("PUT", "Succeeded");
        doc["plan"] = Value::Null;
        assert_eq!(
            err(&doc),
            "plan is required when billingDetails is present (Marketplace)"
        );

        // A null applicationDefinitionId is absent, not a second flavour.
        let mut doc = marketplace("PUT", "Succeeded");
        doc["applicationDefinitionId"] = Value::Null;
        assert_eq!(data(&check(&doc).unwrap())["flavour"], "marketplace");
    }

    #[test]
    fn application_definition_id_is_checked() {
        let mut doc = catalog("PUT", "Succeeded");
        doc["applicationDefinitionId"] = json!(APP);
        assert_eq!(
            err(&doc),
            "applicationDefinitionId must be an application definition resource ID (subscriptions/{id}/resourceGroups/{rg}/providers/Microsoft.Solutions/applicationDefinitions/{name}): segment 7 must be 'applicationDefinitions'"
        );
        for (wrong, want) in [
            (json!(5), "applicationDefinitionId must be a string"),
            (json!({}), "applicationDefinitionId must be a string"),
            (json!(""), "applicationDefinitionId must not be empty"),
        ] {
            doc["applicationDefinitionId"] = wrong;
            assert_eq!(err(&doc), want);
        }
    }

    #[test]
    fn marketplace_fields_are_checked() {
        for wrong in [json!("p"), json!([]), json!(3), json!(true)] {
            let mut doc = marketplace("PUT", "Succeeded");
            doc["plan"] = wrong.clone();
            assert_eq!(err(&doc), "plan must be an object");
            let mut doc = marketplace("PUT", "Succeeded");
            doc["billingDetails"] = wrong;
            assert_eq!(err(&doc), "billingDetails must be an object");
        }
        let fields = [
            ("plan", "publisher"),
            ("plan", "product"),
            ("plan", "name"),
            ("plan", "version"),
            ("billingDetails", "resourceUsageId"),
        ];
        for (object, field) in fields {
            let name = format!("{object}.{field}");
            let mut doc = marketplace("PUT", "Succeeded");
            doc[object].as_object_mut().unwrap().remove(field);
            assert_eq!(err(&doc), format!("{name} is required"));
            for (value, want) in [
                (Value::Null, "is required"),
                (json!(1), "must be a string"),
                (json!(["x"]), "must be a string"),
                (json!({}), "must be a string"),
                (json!(""), "must not be empty"),
            ] {
                doc[object][field] = value;
                assert_eq!(err(&doc), format!("{name} {want}"));
            }
        }
    }

    #[test]
    fn escaped_strings_are_decoded() {
        let body = marketplace("PUT", "Succeeded")
            .to_string()
            .replace(r#""publisher":"p""#, r#""publisher":"a\"b\u00e9\n""#);
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
            format!(
                "{{\"a\":{}}}",
                "{\"b\":".repeat(50_000) + &"}".repeat(50_000)
            ),
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
        let body =
            catalog("PUT", "Succeeded")
                .to_string()
                .replacen('{', r#"{"eventType":"DELETE","#, 1);
        let e = validate(body.as_bytes()).unwrap_err();
        assert!(e.starts_with("body is not strict JSON: duplicate key \"eventType\""), "{e}");
        let body = marketplace("PUT", "Succeeded")
            .to_string()
            .replace(r#""publisher":"p""#, r#""publisher":"p","publisher":"q""#);
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
        let body = catalog("PUT", "Failed").to_string().replace(
            r#""code":"C""#,
            r#""code":"C","details":[{"code":"a","code":"b","message":"m"}]"#,
        );
        let e = validate(body.as_bytes()).unwrap_err();
        assert!(e.starts_with("body is not strict JSON: duplicate key \"code\""), "{e}");
    }

    #[test]
    fn unknown_fields_reach_the_backend_verbatim() {
        let body = marketplace("PUT", "Succeeded")
            .to_string()
            .replacen(
                '{',
                "  {\"future\": {\"x\": [1, 2.50, \"\\u00e9\"]}, \"n\": 1e3,\n",
                1,
            )
            .replace(r#""version":"1""#, r#""version":"1","tier":"gold""#)
            + "\n";
        let ev = validate(body.as_bytes()).unwrap();
        let only: OriginalOnly = serde_json::from_str(ev.data.get()).unwrap();
        assert_eq!(only.original.get(), body.trim());
        let d = data(&ev);
        assert!(d.get("future").is_none());
        assert_eq!(
            d["plan"],
            json!({"publisher": "p", "product": "o", "name": "s", "version": "1"})
        );
    }

    #[derive(Deserialize)]
    struct OriginalOnly<'a> {
        #[serde(borrow)]
        original: &'a RawValue,
    }
}
