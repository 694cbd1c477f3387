//! Nonconforming notifications: authenticated, well-formed and identifiable, but departing
//! from the sender's documented table (an undocumented state, a missing `error` block, a
//! Marketplace notification without `billingDetails`...).
//!
//! Azure drops a notification for good on a 400, and whoever holds the secret could send a
//! perfectly documented notification anyway, so such drift is not refused by default: the
//! profile reports each departure as a [`Finding`] named by a [`Rule`], and the endpoint's
//! `on_nonconforming` setting decides whether the event is forwarded (flagged), held
//! (503, so the sender retries for hours while the operator decides) or refused (400).

use crate::event::Event;
use crate::problem::{Reason, Rejection};

/// `Retry-After` of a held notification: Azure keeps retrying for about 10 hours; ten
/// minutes gives an operator time to act without stretching its schedule much.
pub const HOLD_RETRY_AFTER_SECS: u64 = 600;

/// A documented-table rule a notification breaks. Each has a short stable slug: the
/// `x-webhook-nonconforming` header value, the CloudEvent `nonconforming` attribute, the
/// counter `nonconforming.<slug>` and the log line all use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// `applicationDefinitionId` is not an application definition resource ID.
    DefinitionShape,
    /// `plan` is not an object of four non-empty strings.
    PlanShape,
    /// `billingDetails` is not an object with a non-empty string `resourceUsageId`.
    BillingShape,
    /// Neither or both of `applicationDefinitionId` (service catalog) and `plan`
    /// (Marketplace), or `billingDetails` with `applicationDefinitionId`.
    FlavourUnknown,
    /// `eventType` is not PUT, PATCH or DELETE.
    TypeUndocumented,
    /// `provisioningState` is not one of the five documented states.
    StateUndocumented,
    /// Both values documented, but not one of the seven documented pairs.
    PairUndocumented,
    /// `Failed` without `error`.
    ErrorMissing,
    /// `error` with a state other than `Failed`.
    ErrorUnexpected,
    /// `error` is not `{code, message, details?: [{code, message}]}` with string values.
    ErrorShape,
    /// `eventTime` without an offset: read as UTC.
    TimeNoOffset,
}

/// Every rule, in the order findings are reported.
pub const RULES: [Rule; 11] = [
    Rule::DefinitionShape,
    Rule::PlanShape,
    Rule::BillingShape,
    Rule::FlavourUnknown,
    Rule::TypeUndocumented,
    Rule::StateUndocumented,
    Rule::PairUndocumented,
    Rule::ErrorMissing,
    Rule::ErrorUnexpected,
    Rule::ErrorShape,
    Rule::TimeNoOffset,
];

impl Rule {
    pub fn slug(self) -> &'static str {
        match self {
            Rule::FlavourUnknown => "flavour_unknown",
            Rule::DefinitionShape => "definition_shape",
            Rule::PlanShape => "plan_shape",
            Rule::BillingShape => "billing_shape",
            Rule::TypeUndocumented => "type_undocumented",
            Rule::StateUndocumented => "state_undocumented",
            Rule::PairUndocumented => "pair_undocumented",
            Rule::ErrorMissing => "error_missing",
            Rule::ErrorShape => "error_shape",
            Rule::ErrorUnexpected => "error_unexpected",
            Rule::TimeNoOffset => "time_no_offset",
        }
    }
}

/// One departure: the rule, and the values involved (the log line's detail).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub rule: Rule,
    pub detail: String,
}

/// What an endpoint does with a nonconforming notification (`on_nonconforming`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnNonconforming {
    /// Forward it, flagged (the default: losing a real notification is the worst outcome).
    Forward,
    /// Answer 503 with `Retry-After`: the sender keeps it alive while the operator decides.
    Hold,
    /// Answer 400: the sender drops it.
    Reject,
}

impl OnNonconforming {
    pub fn name(self) -> &'static str {
        match self {
            OnNonconforming::Forward => "forward",
            OnNonconforming::Hold => "hold",
            OnNonconforming::Reject => "reject",
        }
    }
}

/// The rules `findings` break, comma-separated (`pair_undocumented,error_missing`), or
/// `None` for a conforming notification.
pub fn flags(findings: &[Finding]) -> Option<String> {
    let slugs: Vec<&str> = findings.iter().map(|f| f.rule.slug()).collect();
    (!slugs.is_empty()).then(|| slugs.join(","))
}

/// The one `warn` line logged per nonconforming notification: the endpoint, what was done,
/// the event id, the rules and the values involved. Values come from the body only, never
/// from the query, so the secret cannot appear.
pub fn log_line(endpoint: &str, on: OnNonconforming, event: &Event) -> String {
    let details: Vec<&str> = event.nonconforming.iter().map(|f| f.detail.as_str()).collect();
    format!(
        "webhook-guard: nonconforming endpoint={endpoint} action={} event_id={} rules={} detail={}",
        on.name(),
        event.id,
        flags(&event.nonconforming).unwrap_or_default(),
        details.join("; ")
    )
}

/// The answer `on` gives a notification breaking `findings`: `None` to forward it.
pub fn refusal(on: OnNonconforming, findings: &[Finding]) -> Option<Rejection> {
    let rules = flags(findings)?;
    match on {
        OnNonconforming::Forward => None,
        OnNonconforming::Hold => {
            let detail = format!("nonconforming notification held ({rules}); retry later");
            let mut rejection = Rejection::new(Reason::Held, detail);
            rejection.retry_after = Some(HOLD_RETRY_AFTER_SECS);
            Some(rejection)
        }
        OnNonconforming::Reject => {
            let details: Vec<&str> = findings.iter().map(|f| f.detail.as_str()).collect();
            Some(Rejection::new(Reason::Nonconforming, format!("{rules}: {}", details.join("; "))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::RateKeys;
    use serde_json::value::RawValue;

    fn finding(rule: Rule, detail: &str) -> Finding {
        Finding { rule, detail: detail.into() }
    }

    #[test]
    fn slugs_are_unique_short_and_metric_safe() {
        let slugs: std::collections::HashSet<&str> = RULES.iter().map(|r| r.slug()).collect();
        assert_eq!(slugs.len(), RULES.len());
        assert!(slugs.iter().all(|s| s.len() <= 20 && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')));
    }

    #[test]
    fn flags_join_the_rules_in_order() {
        assert_eq!(flags(&[]), None);
        let findings = [finding(Rule::PairUndocumented, "a"), finding(Rule::ErrorMissing, "b")];
        assert_eq!(flags(&findings).as_deref(), Some("pair_undocumented,error_missing"));
    }

    #[test]
    fn each_setting_answers_as_documented() {
        let findings = [finding(Rule::StateUndocumented, "provisioningState 'Running' is not documented")];
        assert_eq!(refusal(OnNonconforming::Forward, &findings), None);
        assert_eq!(refusal(OnNonconforming::Hold, &[]), None);
        let held = refusal(OnNonconforming::Hold, &findings).unwrap();
        assert_eq!((held.status(), held.retry_after), (503, Some(HOLD_RETRY_AFTER_SECS)));
        assert!(held.detail.contains("state_undocumented"), "{}", held.detail);
        let refused = refusal(OnNonconforming::Reject, &findings).unwrap();
        assert_eq!(refused.status(), 400);
        assert_eq!(refused.detail, "state_undocumented: provisioningState 'Running' is not documented");
    }

    #[test]
    fn log_line_names_rules_values_and_action() {
        let event = Event {
            id: "i".into(),
            kind: "k".into(),
            subject: None,
            time: None,
            keys: RateKeys::default(),
            data: RawValue::from_string("{}".into()).unwrap(),
            nonconforming: vec![finding(Rule::TimeNoOffset, "eventTime 'x' has no offset"), finding(Rule::ErrorMissing, "m")],
        };
        assert_eq!(
            log_line("azure", OnNonconforming::Hold, &event),
            "webhook-guard: nonconforming endpoint=azure action=hold event_id=i rules=time_no_offset,error_missing detail=eventTime 'x' has no offset; m"
        );
    }
}
