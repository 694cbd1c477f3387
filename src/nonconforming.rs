//! Nonconforming notifications: authenticated, well-formed and identifiable, but departing
//! from the sender's documented table. A sender's profile reports each departure as a
//! [`Finding`] named by one of its rules; whoever holds the secret could send a perfectly
//! documented notification anyway, so such drift is not refused by default: the
//! endpoint's `on_nonconforming` setting decides whether the event is forwarded (flagged),
//! held (503, so the sender retries while the operator decides) or refused (400).

use crate::event::Event;
use crate::problem::{Reason, Rejection};

/// `Retry-After` of a held notification: Azure keeps retrying for about 10 hours; ten
/// minutes gives an operator time to act without stretching its schedule much.
pub const HOLD_RETRY_AFTER_SECS: u64 = 600;

/// One departure: the rule, and the values involved (the log line's detail).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub rule: &'static str,
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
    let slugs: Vec<&str> = findings.iter().map(|f| f.rule).collect();
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

    fn finding(rule: &'static str, detail: &str) -> Finding {
        Finding { rule, detail: detail.into() }
    }

    #[test]
    fn flags_join_the_rules_in_order() {
        assert_eq!(flags(&[]), None);
        let findings = [finding("pair_undocumented", "a"), finding("error_missing", "b")];
        assert_eq!(flags(&findings).as_deref(), Some("pair_undocumented,error_missing"));
    }

    #[test]
    fn each_setting_answers_as_documented() {
        let findings = [finding("state_undocumented", "provisioningState 'Running' is not documented")];
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
            data: RawValue::from_string("{}".into()).unwrap().into(),
            nonconforming: vec![finding("time_no_offset", "eventTime 'x' has no offset"), finding("error_missing", "m")],
        };
        assert_eq!(
            log_line("azure", OnNonconforming::Hold, &event),
            "webhook-guard: nonconforming endpoint=azure action=hold event_id=i rules=time_no_offset,error_missing detail=eventTime 'x' has no offset; m"
        );
    }
}
