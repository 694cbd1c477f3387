//! The forward stage: what the upstream gets. The body becomes a CloudEvent (or stays as
//! sent), and while the head is held the headers derived from the body are set: the
//! event's id and type, nonconforming findings, the descriptors for Envoy's global rate
//! limit, and the ARM check's mark.

use super::{Guard, HttpHost, Stage};
use crate::config::{Endpoint, Forward};
use crate::event::Event;
use crate::metrics::Counter;
use crate::nonconforming;
use crate::problem::{Reason, Rejection};
use proxy_wasm::types::Action;

impl<H: HttpHost> Guard<H> {
    /// Sends `event` on. `verified`: the ARM check's mark, when it ran.
    pub(super) fn forward(&mut self, endpoint: &Endpoint, event: &Event, size: usize, verified: Option<bool>) -> Action {
        if endpoint.forward == Forward::CloudEvent {
            let Ok(cloudevent) = event.to_cloudevent_with(&endpoint.source, verified) else {
                return self.reject(endpoint, not_normalised());
            };
            self.host.set_request_body(size, &cloudevent);
            if !self.head_sent {
                self.host.set_request_header("content-length", Some(&cloudevent.len().to_string()));
            }
        }
        // Headers derived from the body need a held head (`hold`).
        if !self.head_sent {
            self.host.set_request_header("x-webhook-event-id", Some(&event.id));
            self.host.set_request_header("x-webhook-event-type", Some(&event.kind));
            if let Some(flags) = nonconforming::flags(&event.nonconforming) {
                self.host.set_request_header("x-webhook-nonconforming", Some(&flags));
            }
            // Trusted descriptors for Envoy's global rate limit filter placed after this one.
            for (name, value) in [("x-webhook-application", &event.keys.application), ("x-webhook-subscription", &event.keys.subscription)] {
                if let Some(value) = value {
                    self.host.set_request_header(name, Some(value));
                }
            }
            if let Some(verified) = verified {
                self.host.set_request_header("x-webhook-verified", Some(if verified { "true" } else { "false" }));
            }
        }
        if let Some(index) = self.matched {
            if let Some(counter) = endpoint.profile.event_counter(event) {
                self.host.count(index, counter);
            }
            self.host.count(index, Counter::Forwarded);
        }
        self.stage = Stage::Forwarded;
        Action::Continue
    }
}

/// The CloudEvent of a valid notification could not be written: the filter's fault, not
/// the sender's, so a status both senders retry (Azure drops an event on a 400).
fn not_normalised() -> Rejection {
    Rejection::new(Reason::Internal, "the notification could not be normalised; retry later")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::mock::*;

    #[test]
    fn valid_body_becomes_a_cloudevent_with_headers() {
        let (mock, mut g) = guard("POST", "/az?sig=k", &[]);
        g.on_request_headers(false);
        assert_eq!(feed(&mock, &mut g, DOC.as_bytes()), Action::Continue);
        let event: serde_json::Value = serde_json::from_slice(&mock.body.borrow()).unwrap();
        assert_eq!(event["type"], "webhookguard.azure.managedapp.put.succeeded");
        assert_eq!(mock.header("content-type").as_deref(), Some("application/cloudevents+json"));
        assert_eq!(mock.header("content-length"), Some(mock.body.borrow().len().to_string()));
        assert_eq!(mock.header("x-webhook-event-id").as_deref(), event["id"].as_str());
        assert_eq!(mock.header("x-webhook-profile").as_deref(), Some("azure_managed_app"));
        assert_eq!(mock.header("x-webhook-endpoint").as_deref(), Some("azure"));
        // The descriptors of Envoy's global rate limit: canonical and lowercase.
        let application = "/subscriptions/s/resourcegroups/r/providers/microsoft.solutions/applications/a";
        assert_eq!(mock.header("x-webhook-application").as_deref(), Some(application));
        assert_eq!(mock.header("x-webhook-subscription").as_deref(), Some("s"));
    }

    #[test]
    fn a_cloudevent_that_cannot_be_written_is_retried() {
        assert_eq!(not_normalised().status(), 500);
    }

    #[test]
    fn streamed_body_is_held_checked_and_rewritten_without_touching_the_sent_head() {
        let (mock, mut g) = streamed("POST", "/az?sig=k", &[]);
        g.on_request_headers(false);
        let head = mock.headers.borrow().clone();
        assert_eq!(g.on_request_body(10, false), Action::Pause, "the body waits for its verdict");
        assert_eq!(feed(&mock, &mut g, DOC.as_bytes()), Action::Continue);
        let event: serde_json::Value = serde_json::from_slice(&mock.body.borrow()).unwrap();
        assert_eq!(event["type"], "webhookguard.azure.managedapp.put.succeeded");
        assert_eq!(*mock.headers.borrow(), head, "no header can follow a head that has gone");
        assert!(mock.counts.borrow().contains(&(0, Counter::Forwarded)));
    }

    #[test]
    fn streamed_original_keeps_its_length_and_trailers_finish_the_body() {
        let (mock, mut g) = streamed("POST", "/orig?sig=k", &[("content-length", "300")]);
        assert_eq!(g.on_request_headers(false), Action::Continue);
        assert_eq!(mock.header("content-length").as_deref(), Some("300"), "the body is not replaced");
        *mock.body.borrow_mut() = DOC.as_bytes().to_vec();
        assert_eq!(g.on_request_body(DOC.len(), false), Action::Pause);
        assert_eq!(g.on_request_trailers(), Action::Continue);
        assert_eq!(*mock.body.borrow(), DOC.as_bytes());
        assert!(mock.counts.borrow().contains(&(6, Counter::Forwarded)));
    }
}
