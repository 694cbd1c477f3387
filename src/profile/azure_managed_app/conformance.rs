//! The rules of Azure's documented notification table (an undocumented state, a missing
//! `error` block, a Marketplace notification without `billingDetails`...). A notification
//! breaking one is reported as a [`Finding`] named by its [`Rule`]; what the endpoint does
//! with it is `crate::nonconforming`'s.

use crate::nonconforming::Finding;

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

impl Rule {
    /// The finding of this rule with `detail` (the values involved).
    pub fn finding(self, detail: String) -> Finding {
        Finding { rule: self.slug(), detail }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_unique_short_and_metric_safe() {
        let slugs: std::collections::HashSet<&str> = RULES.iter().map(|r| r.slug()).collect();
        assert_eq!(slugs.len(), RULES.len());
        assert!(slugs.iter().all(|s| s.len() <= 20 && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')));
    }
}
