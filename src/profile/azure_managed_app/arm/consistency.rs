//! Is a notification consistent with what Azure Resource Manager says about the
//! application now? The table is documented in docs/arm-check.md ("The consistency table").
//!
//! A notification describes a moment; ARM describes now. Two things make them differ
//! legitimately: the state may have **moved on** (a `PUT/Accepted` notification while the
//! deployment already `Succeeded`; `DELETE/Deleted` while ARM answers 404), and ARM may
//! **lag** (a `PUT/Succeeded` notification while a GET still says `Accepted`). Moved on is
//! consistent; lagging is "not yet": the notification is held and Azure's retry asks again.
//! Anything else is inconsistent, and also held: only ARM could be wrong about it, and a
//! held notification is retried for hours, never dropped at once.

/// ARM's answer about the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arm<'a> {
    /// 200 with this `properties.provisioningState`.
    State(&'a str),
    /// 404: no such application (never created, or deleted).
    Absent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    Consistent,
    /// ARM has not caught up yet: ask again later.
    NotYet,
    Inconsistent,
}

/// Where a provisioning state sits in an application's life. ARM's set of states is open:
/// an unknown one is `None` and counts as "not yet" (held, asked again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Accepted, Running, Updating: a deployment or update in progress.
    Working,
    Succeeded,
    /// Failed, Canceled.
    Failed,
    Deleting,
    /// Deleted, or 404.
    Gone,
}

fn phase(arm: Arm<'_>) -> Option<Phase> {
    let Arm::State(state) = arm else {
        return Some(Phase::Gone);
    };
    let phases = [
        ("Accepted", Phase::Working),
        ("Running", Phase::Working),
        ("Updating", Phase::Working),
        ("Succeeded", Phase::Succeeded),
        ("Failed", Phase::Failed),
        ("Canceled", Phase::Failed),
        ("Deleting", Phase::Deleting),
        ("Deleted", Phase::Gone),
    ];
    phases.iter().find(|(name, _)| name.eq_ignore_ascii_case(state)).map(|(_, p)| *p)
}

/// The verdict for a notification `(event_type, state)` (canonical spelling, one of
/// `azure::PAIRS`) given ARM's answer.
pub fn judge(event_type: &str, state: &str, arm: Arm<'_>) -> Consistency {
    use Consistency::{Consistent, Inconsistent, NotYet};
    use Phase::{Deleting, Failed, Gone, Succeeded, Working};
    let Some(now) = phase(arm) else {
        return NotYet;
    };
    match (event_type, state, now) {
        // Provisioning started: anything after it is the state moving on; 404 may be lag.
        ("PUT", "Accepted", Gone) => NotYet,
        ("PUT", "Accepted", _) => Consistent,
        ("PUT", "Succeeded", Succeeded | Deleting) => Consistent,
        ("PUT", "Succeeded", Working) => NotYet,
        ("PUT", "Failed", Failed | Deleting) => Consistent,
        ("PUT", "Failed", Working) => NotYet,
        ("PATCH", "Succeeded", Succeeded | Deleting) => Consistent,
        ("PATCH", "Succeeded", Working) => NotYet,
        ("DELETE", "Deleting", Deleting | Gone) => Consistent,
        ("DELETE", "Deleting", _) => NotYet,
        ("DELETE", "Deleted", Gone) => Consistent,
        ("DELETE", "Deleted", Deleting) => NotYet,
        // A later delete attempt may have succeeded since.
        ("DELETE", "Failed", Failed | Gone) => Consistent,
        ("DELETE", "Failed", Deleting) => NotYet,
        _ => Inconsistent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Consistency::{Consistent as C, Inconsistent as I, NotYet as N};

    /// The documented table, row by row: ARM's answer across, the notification down.
    #[test]
    fn the_documented_table() {
        let arm = [
            Arm::State("Accepted"),
            Arm::State("Running"),
            Arm::State("Succeeded"),
            Arm::State("Failed"),
            Arm::State("Canceled"),
            Arm::State("Deleting"),
            Arm::State("Deleted"),
            Arm::Absent,
        ];
        let table = [
            ("PUT", "Accepted", [C, C, C, C, C, C, N, N]),
            ("PUT", "Succeeded", [N, N, C, I, I, C, I, I]),
            ("PUT", "Failed", [N, N, I, C, C, C, I, I]),
            ("PATCH", "Succeeded", [N, N, C, I, I, C, I, I]),
            ("DELETE", "Deleting", [N, N, N, N, N, C, C, C]),
            ("DELETE", "Deleted", [I, I, I, I, I, N, C, C]),
            ("DELETE", "Failed", [I, I, I, C, C, N, C, C]),
        ];
        for (event_type, state, row) in table {
            for (answer, want) in arm.iter().zip(row) {
                assert_eq!(judge(event_type, state, *answer), want, "{event_type}/{state} with ARM {answer:?}");
            }
        }
    }

    #[test]
    fn unknown_states_are_asked_again_and_case_is_ignored() {
        assert_eq!(judge("PUT", "Succeeded", Arm::State("NotSpecified")), N);
        assert_eq!(judge("DELETE", "Deleted", Arm::State("SomethingNew")), N);
        assert_eq!(judge("PUT", "Succeeded", Arm::State("succeeded")), C);
        assert_eq!(judge("PATCH", "Succeeded", Arm::State("Updating")), N);
    }
}
