//! Secret hygiene over every refusal path: whatever refuses a request, neither the
//! problem body the sender gets nor the log line holds the secret (right or wrong) or the
//! raw query it came in.

use super::mock::*;
use super::Guard;
use crate::config::Config;
use crate::shared::memory::MemoryStore;
use std::rc::Rc;

const SECRET: &str = "S3cr3tValue";
const WRONG: &str = "Wr0ngS3cret";
/// A query pair besides the secret: the raw query must not be echoed either.
const OTHER: &str = "rawq=Qu3ryMark";

fn config() -> Rc<Config> {
    let json = CONFIG.replace(r#""values":["k"]"#, &format!(r#""values":["{SECRET}"]"#)).replacen('{', r#"{"unguarded":"reject","#, 1);
    Rc::new(Config::parse(json.as_bytes(), |_| None).unwrap())
}

/// A request on `path` (`{s}` stands for the right secret) with `extra` headers, over
/// `store`, its head seen.
fn request(store: &Rc<MemoryStore>, method: &str, path: &str, extra: &[(&str, &str)]) -> (Rc<Mock>, Guard<Rc<Mock>>) {
    let path = path.replace("{s}", SECRET);
    let (mock, _) = guard_on(store, SECOND, method, &path, extra);
    let mut g = Guard::new(Rc::clone(&mock), config());
    g.on_request_headers(false);
    (mock, g)
}

/// `body` sent to `path` with the right secret.
fn sent(store: &Rc<MemoryStore>, path: &str, body: &str) -> (Rc<Mock>, Guard<Rc<Mock>>) {
    let (mock, mut g) = request(store, "POST", &format!("{path}?{OTHER}&sig={{s}}"), &[]);
    feed(&mock, &mut g, body.as_bytes());
    (mock, g)
}

fn with_answer(store: &Rc<MemoryStore>, path: &str, status: u16) -> Rc<Mock> {
    let (mock, mut g) = sent(store, path, DOC);
    *mock.status.borrow_mut() = Some(status);
    g.on_response_headers();
    mock
}

/// A refusal path: from a fresh store, the host of the refused request.
type Refusal = Box<dyn Fn(&Rc<MemoryStore>) -> Rc<Mock>>;

#[test]
fn no_refusal_tells_or_logs_the_secret_or_the_query() {
    let running = DOC.replace("Succeeded", "Running");
    let json = ("content-type", "application/json");
    let refusals: Vec<(&str, Refusal)> = vec![
        ("unauthorized", Box::new(|s| request(s, "POST", &format!("/az?{OTHER}"), &[]).0)),
        ("forbidden", Box::new(|s| request(s, "POST", &format!("/az?{OTHER}&sig={WRONG}"), &[]).0)),
        ("ambiguous_secret", Box::new(|s| request(s, "POST", &format!("/az?sig={{s}}&{OTHER}&SIG={WRONG}"), &[]).0)),
        ("method_not_allowed", Box::new(|s| request(s, "GET", &format!("/az?{OTHER}&sig={{s}}"), &[]).0)),
        ("too_large", Box::new(|s| request(s, "POST", &format!("/az?{OTHER}&sig={{s}}"), &[("content-length", "99999")]).0)),
        ("unsupported_media_type", Box::new(|s| request(s, "POST", &format!("/az?{OTHER}&sig={{s}}"), &[("content-type", "text/plain")]).0)),
        ("invalid", Box::new(|s| sent(s, "/az", "not json").0)),
        (
            "digest_mismatch",
            Box::new(move |s| {
                let (mock, mut g) = request(s, "POST", &format!("/store?{OTHER}&sig={{s}}"), &[json]);
                feed(&mock, &mut g, br#"{"payload":{"type":"purchase"},"md5":"00000000000000000000000000000000"}"#);
                mock
            }),
        ),
        (
            "rate_limited",
            Box::new(|s| {
                (0..2).for_each(|_| drop(request(s, "POST", "/limited?sig={s}", &[])));
                request(s, "POST", &format!("/limited?{OTHER}&sig={{s}}"), &[]).0
            }),
        ),
        (
            "in_flight",
            Box::new(|s| {
                let first = sent(s, "/once", DOC);
                let copy = sent(s, "/once", DOC).0;
                drop(first);
                copy
            }),
        ),
        ("upstream_rejected", Box::new(|s| with_answer(s, "/az", 404))),
        (
            "head_not_held",
            Box::new(|s| {
                let (mock, mut g) = request(s, "POST", &format!("/az?{OTHER}&sig={{s}}"), &[]);
                g.on_body_missing();
                mock
            }),
        ),
        ("ambiguous_path", Box::new(|s| request(s, "POST", &format!("/a%7A%2F?{OTHER}&sig={{s}}"), &[]).0)),
        ("not_found", Box::new(|s| request(s, "POST", &format!("/nowhere;sig={{s}}?{OTHER}&sig={{s}}"), &[]).0)),
        ("held", Box::new(move |s| sent(s, "/hold", &running).0)),
        (
            "nonconforming",
            Box::new({
                let running = DOC.replace("Succeeded", "Running");
                move |s| sent(s, "/reject", &running).0
            }),
        ),
        (
            "unverified",
            Box::new(|s| {
                let (mock, mut g) = sent(s, "/checked", DOC);
                for body in [r#"{"access_token":"tok","expires_in":"3600"}"#, r#"{"properties":{"provisioningState":"Accepted"}}"#] {
                    *mock.answer.borrow_mut() = crate::outbound::Answer { status: Some(200), retry_after: None, body: body.as_bytes().to_vec() };
                    let call = u32::try_from(mock.calls.borrow().len()).unwrap();
                    g.on_call_response(call, body.len());
                }
                mock
            }),
        ),
    ];
    for (slug, refuse) in &refusals {
        let mock = refuse(&Rc::new(MemoryStore::new()));
        let (status, body) = mock.sent.borrow().clone().unwrap_or_else(|| panic!("{slug}: not refused"));
        let body = String::from_utf8(body).unwrap();
        assert!(body.contains(&format!("urn:webhook-guard:problem:{slug}")), "{slug}: {status} {body}");
        let logs = mock.logs.borrow();
        assert!(!logs.is_empty(), "{slug}: no log line");
        for text in std::iter::once(&body).chain(logs.iter()) {
            for leak in [SECRET, WRONG, "Qu3ryMark", "rawq", "sig="] {
                assert!(!text.contains(leak), "{slug}: {leak:?} in {text:?}");
            }
        }
    }
    assert_eq!(refusals.len(), 17, "every reason a request can meet, but the filter's own internal_error");
}
