//! What the sender is told for the upstream's status: one table per profile, by its
//! sender's retry rules. A 2xx is the only "taken"; any other status the sender would not
//! retry, or that could make it lose the event, becomes 502 `upstream_rejected` (counted
//! by why), whether the upstream answered after the body, early on a streamed head, or
//! Envoy answered for it (a reset or timeout is Envoy's 503/504, retried as it is).

use crate::config::{Profile, Upstream4xx};

/// The sender's answer for one upstream status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Told {
    /// The upstream took the event: the sender sees this status.
    Delivered(u16),
    /// Not taken: the upstream's status goes to the sender as it is (one it retries, or a
    /// 4xx the operator chose to pass with `upstream_4xx: pass`).
    Passed,
    /// Not taken, and the status as it is could lose the event: answered 502.
    Mapped(Mapped),
}

/// Why an upstream status was answered 502: the suffix of `upstream_mapped.<why>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapped {
    /// A 3xx: Azure drops it; a client that follows it re-sends without the secret, or
    /// (301/302/303) as a GET without the body, whose 2xx would end the retries.
    Redirect,
    /// A 4xx other than 429, with `upstream_4xx: retry`.
    ClientError,
    /// A 2xx to a streamed head whose body was not delivered.
    Early,
    /// A 1xx as a final answer, or no valid status at all.
    Other,
}

impl Mapped {
    pub const ALL: [Mapped; 4] = [Mapped::Redirect, Mapped::ClientError, Mapped::Early, Mapped::Other];

    pub fn slug(self) -> &'static str {
        match self {
            Mapped::Redirect => "redirect",
            Mapped::ClientError => "client_error",
            Mapped::Early => "early_success",
            Mapped::Other => "other",
        }
    }
}

/// The table of `profile` (with the endpoint's `upstream_4xx`) for the upstream's final
/// `status`, once the body was delivered.
pub fn told(profile: Profile, status: u16, upstream_4xx: Upstream4xx) -> Told {
    match profile {
        Profile::AzureManagedApp => azure(status, upstream_4xx),
        Profile::Md5Envelope => md5_envelope(status, upstream_4xx),
    }
}

/// Azure retries 404, 429, 5xx and unreachable, and drops any other answer; a 2xx is
/// passed as it is. 404 is retried too, but like every 4xx it is a backend's refusal:
/// with `upstream_4xx: retry` it becomes 502 and is counted as one.
fn azure(status: u16, upstream_4xx: Upstream4xx) -> Told {
    match status {
        200..=299 => Told::Delivered(status),
        _ => not_taken(status, upstream_4xx),
    }
}

/// The vendor retries any non-200 and counts only 200 as delivered, so a 2xx becomes
/// 200. It would retry a 3xx, but its HTTP client may follow the redirect instead: the
/// 3xx becomes 502 as for Azure, and so does a 4xx with `upstream_4xx: retry`.
fn md5_envelope(status: u16, upstream_4xx: Upstream4xx) -> Told {
    match status {
        200..=299 => Told::Delivered(200),
        _ => not_taken(status, upstream_4xx),
    }
}

/// A status that is not a 2xx: 429 and 5xx are retried by every sender as they are.
fn not_taken(status: u16, upstream_4xx: Upstream4xx) -> Told {
    match status {
        429 | 500..=599 => Told::Passed,
        400..=499 if upstream_4xx == Upstream4xx::Pass => Told::Passed,
        400..=499 => Told::Mapped(Mapped::ClientError),
        300..=399 => Told::Mapped(Mapped::Redirect),
        _ => Told::Mapped(Mapped::Other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether each profile's sender retries `status` (the brief's rules).
    fn retried(profile: Profile, status: u16) -> bool {
        match profile {
            Profile::AzureManagedApp => status == 404 || status == 429 || status >= 500,
            Profile::Md5Envelope => status != 200,
        }
    }

    #[test]
    fn only_a_2xx_is_success_and_every_other_answer_is_retried() {
        for profile in [Profile::AzureManagedApp, Profile::Md5Envelope] {
            for status in 0..=999 {
                let sent = match told(profile, status, Upstream4xx::Retry) {
                    Told::Delivered(_) => {
                        assert!((200..300).contains(&status), "{profile:?} {status}");
                        continue;
                    }
                    Told::Passed => status,
                    Told::Mapped(_) => 502,
                };
                assert!(retried(profile, sent), "{profile:?}: upstream {status} reaches the sender as {sent}");
            }
        }
    }

    #[test]
    fn the_tables() {
        use Told::*;
        for (status, azure, vendor) in [
            (200, Delivered(200), Delivered(200)),
            (204, Delivered(204), Delivered(200)),
            (100, Mapped(super::Mapped::Other), Mapped(super::Mapped::Other)),
            (301, Mapped(super::Mapped::Redirect), Mapped(super::Mapped::Redirect)),
            (304, Mapped(super::Mapped::Redirect), Mapped(super::Mapped::Redirect)),
            (308, Mapped(super::Mapped::Redirect), Mapped(super::Mapped::Redirect)),
            (404, Mapped(super::Mapped::ClientError), Mapped(super::Mapped::ClientError)),
            (429, Passed, Passed),
            (503, Passed, Passed),
            (0, Mapped(super::Mapped::Other), Mapped(super::Mapped::Other)),
        ] {
            assert_eq!(told(Profile::AzureManagedApp, status, Upstream4xx::Retry), azure, "{status}");
            assert_eq!(told(Profile::Md5Envelope, status, Upstream4xx::Retry), vendor, "{status}");
        }
        // `pass` lets a 4xx through, never a 3xx.
        assert_eq!(told(Profile::AzureManagedApp, 409, Upstream4xx::Pass), Passed);
        assert_eq!(told(Profile::AzureManagedApp, 307, Upstream4xx::Pass), Mapped(super::Mapped::Redirect));
    }
}
