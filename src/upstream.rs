//! What the sender is told for the upstream's status: one table per profile, by its
//! sender's retry rules. A 2xx is the only "taken"; any other status the sender would not
//! retry, or that could make it lose the event, becomes 502 `upstream_rejected` (counted
//! by why), whether the upstream answered after the body, early on a streamed head, or
//! Envoy answered for it (a reset or timeout is Envoy's 503/504, retried as it is).

use crate::config::Upstream4xx;

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

/// Why an upstream status was answered 502: the `reason` label of `upstream_mapped_total`.
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

/// The default table: a 2xx is delivered and passed as it is, anything else is
/// [`not_taken`]. A profile whose sender counts other statuses differently overrides
/// [`crate::profile::Profile::told`].
pub fn told(status: u16, upstream_4xx: Upstream4xx) -> Told {
    match status {
        200..=299 => Told::Delivered(status),
        _ => not_taken(status, upstream_4xx),
    }
}

/// A status that is not a 2xx: 429 and 5xx are retried by every sender as they are.
pub fn not_taken(status: u16, upstream_4xx: Upstream4xx) -> Told {
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
    use crate::config::Config;
    use crate::profile::Profile;

    /// Every registered profile, configured with defaults.
    fn profiles() -> Vec<Box<dyn Profile>> {
        let secret = r#"{"values":["whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"]}"#;
        let endpoints: Vec<String> = crate::profile::REGISTRY
            .iter()
            .enumerate()
            .map(|(i, r)| format!(r#"{{"name":"e{i}","path":"/e{i}","profile":"{}","secret":{secret}}}"#, r.name))
            .collect();
        let config = Config::parse(format!(r#"{{"endpoints":[{}]}}"#, endpoints.join(",")).as_bytes(), |_| None).unwrap();
        config.endpoints.into_iter().map(|e| e.profile).collect()
    }

    /// Whether each profile's sender retries `status` (its documented rules).
    fn retried(profile: &str, status: u16) -> bool {
        match profile {
            "azure_managed_app" => status == 404 || status == 429 || status >= 500,
            "md5_envelope" => status != 200,
            // Svix, Stripe and Shopify: anything but a 2xx (or no answer) is retried. Slack
            // retries anything but a 2xx within 3 s, three times (Events API). GitHub never
            // retries by itself: a non-2xx is recorded as a failed delivery, which is what
            // can be redelivered (docs/profiles/github.md).
            "standard_webhooks" | "stripe" | "shopify" | "slack" | "github" => !(200..300).contains(&status),
            "azure_event_grid" => !(200..=204).contains(&status) && !matches!(status, 400 | 401 | 403 | 413),
            other => panic!("no retry rule for {other}: add the sender's here"),
        }
    }

    #[test]
    fn only_a_2xx_is_success_and_every_other_answer_is_retried() {
        for profile in profiles() {
            for status in 0..=999 {
                let sent = match profile.told(status, Upstream4xx::Retry) {
                    Told::Delivered(sent) => {
                        assert!((200..300).contains(&status), "{} {status}", profile.name());
                        assert!(!retried(profile.name(), sent), "{} {status} is told {sent}, which it retries", profile.name());
                        continue;
                    }
                    Told::Passed => status,
                    Told::Mapped(_) => 502,
                };
                assert!(retried(profile.name(), sent), "{}: upstream {status} reaches the sender as {sent}", profile.name());
            }
        }
    }

    #[test]
    fn the_tables() {
        use Told::*;
        let profiles = profiles();
        let (azure, vendor) = (&profiles[0], &profiles[1]);
        for (status, on_azure, on_vendor) in [
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
            assert_eq!(azure.told(status, Upstream4xx::Retry), on_azure, "{status}");
            assert_eq!(vendor.told(status, Upstream4xx::Retry), on_vendor, "{status}");
        }
        // `pass` lets a 4xx through, never a 3xx.
        assert_eq!(azure.told(409, Upstream4xx::Pass), Passed);
        assert_eq!(azure.told(307, Upstream4xx::Pass), Mapped(super::Mapped::Redirect));
    }
}
