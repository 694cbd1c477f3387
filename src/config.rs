//! Plugin configuration: parsed into typed structs and fully validated at configure time,
//! so a bad configuration is refused with one message naming the field, never discovered
//! on a request.

use crate::global_limit::{self, GlobalRateLimit};
use crate::json_path;
use crate::problem::clip;
use crate::profile::azure_managed_app::arm::config::OnError;
use crate::profile::{self, Profile, Section};
use crate::ratelimit::{self, Limit};
use crate::route;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::fmt;

mod object;
pub use object::Object;

/// Largest accepted `max_body_bytes`. Envoy's own buffer limit
/// (`per_connection_buffer_limit_bytes`, 1 MiB by default) must be raised to match.
pub const MAX_BODY_LIMIT: u64 = 16 * 1024 * 1024;
const DEFAULT_MAX_BODY: u64 = 64 * 1024;
const MAX_ENDPOINTS: usize = 64;
const MAX_SECRET_BYTES: usize = 1024;
/// Azure retries for about 10 hours; a week covers any sender's retry schedule.
const MAX_DEDUPE_SECONDS: u64 = 7 * 24 * 3600;

#[derive(Debug)]
pub struct Config {
    pub endpoints: Vec<Endpoint>,
    /// Level of the one log line written per rejection (`None`: off).
    pub log_level: Option<log::Level>,
    /// Whether Envoy lets the filter hold a request's headers while it reads the body.
    pub header_mode: HeaderMode,
    /// What happens to a request that no endpoint guards.
    pub unguarded: Unguarded,
}

/// What happens to a request whose path no endpoint guards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unguarded {
    /// It passes through untouched.
    Pass,
    /// 404: for a listener that only serves webhooks.
    Reject,
}

/// Which endpoint, if any, a request path belongs to.
#[derive(Debug)]
pub enum Route<'a> {
    /// The path's canonical form is the endpoint's.
    Guarded(usize, &'a Endpoint),
    /// The path has no single canonical form and a lenient reading of it is the endpoint's.
    Ambiguous(usize, &'a Endpoint, route::Ambiguity),
    Unguarded,
}

/// Whether the request head can be held until the body is checked. Holding needs the
/// Wasm filter's `allow_on_headers_stop_iteration: true`, which Istio's `WasmPlugin` and
/// Envoy Gateway's `EnvoyExtensionPolicy` do not set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderMode {
    /// The head waits for the body's verdict (needs `allow_on_headers_stop_iteration`).
    Hold,
    /// The checked head goes on at once; the body is held and checked before it follows.
    Stream,
}

#[derive(Debug)]
pub struct Endpoint {
    pub name: String,
    pub path: String,
    /// The canonical form of `path` (see `route`): requests with this form are guarded.
    pub canonical: String,
    /// The sender: its own keys, checks and answers (src/profile/).
    pub profile: Box<dyn Profile>,
    pub secret: Secret,
    pub max_body_bytes: usize,
    pub forward: Forward,
    pub upstream_4xx: Upstream4xx,
    pub rate_limit: Option<RateLimit>,
    /// The fleet-wide limit asked of a rate limit service (src/global_limit/).
    pub global_rate_limit: Option<GlobalRateLimit>,
    pub mode: Mode,
    /// Window in which a copy of a delivered event is answered without forwarding.
    pub dedupe_seconds: Option<u64>,
    /// The CloudEvent `source` of this endpoint's events: `/webhook-guard/<name>`.
    pub source: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Refuse what fails a check.
    Enforce,
    /// Evaluate and report, but forward every request unchanged.
    Shadow,
}

/// A token bucket shared by every worker, per endpoint and key.
#[derive(Debug)]
pub struct RateLimit {
    pub limit: Limit,
    pub key: RateKey,
    pub on_contention: Contention,
    /// The shared-data key of the endpoint's global bucket, built once.
    pub global_slot: String,
}

/// What a bucket is keyed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateKey {
    /// One bucket for the endpoint, checked on the request head.
    Global,
    /// One bucket per applicationId, checked once the body is parsed.
    Application,
    /// One bucket per subscription ID, checked once the body is parsed.
    Subscription,
}

/// What to do when the shared bucket stays contended after every CAS retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contention {
    /// Answer 429: both senders retry it, so nothing is lost and the cap holds.
    Deny,
    /// Let the request through: the cap may be exceeded briefly.
    Allow,
}

/// What the upstream receives for an accepted notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forward {
    /// The body replaced by a structured-mode CloudEvent.
    CloudEvent,
    /// The body byte-for-byte; only headers are added.
    Original,
}

/// What the sender sees when the upstream answers 4xx (other than 429).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upstream4xx {
    /// Answer 502 so the sender retries: a backend bug never drops an event.
    Retry,
    /// Pass the upstream's answer through unchanged.
    Pass,
}

/// Accepted secrets. `Debug` never prints them.
pub struct Secret {
    pub param: String,
    pub values: Vec<Vec<u8>>,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret {{ param: {:?}, values: <{} redacted> }}", self.param, self.values.len())
    }
}

/// The top level's keys.
const TOP_KEYS: [&str; 4] = ["endpoints", "log_level", "header_mode", "unguarded"];

/// The keys every endpoint has, whatever its profile; a profile reads its own
/// ([`profile::Registration::keys`]) from the same object.
pub const COMMON_KEYS: [&str; 11] =
    ["name", "path", "profile", "secret", "max_body_bytes", "forward", "upstream_4xx", "rate_limit", "global_rate_limit", "mode", "dedupe_seconds"];

/// The common keys (unknown keys are refused by [`strays`], which knows the profiles'
/// keys too).
struct RawEndpoint {
    name: String,
    path: String,
    profile: String,
    secret: RawSecret,
    max_body_bytes: Option<u64>,
    forward: Option<String>,
    upstream_4xx: Option<String>,
    rate_limit: Option<RawRateLimit>,
    global_rate_limit: Option<global_limit::Raw>,
    mode: Option<String>,
    dedupe_seconds: Option<u64>,
}

impl RawEndpoint {
    /// Type errors first, then missing keys, in the order serde's derive gave them.
    fn read(o: &Object) -> Result<Self, String> {
        let (name, path, profile) = (o.get("name")?, o.get("path")?, o.get("profile")?);
        let secret = o.object("secret", "struct RawSecret", false)?.map(|s| RawSecret::read(&s)).transpose()?;
        let (max_body_bytes, forward, upstream_4xx) = (o.get("max_body_bytes")?, o.get("forward")?, o.get("upstream_4xx")?);
        let rate_limit = o.object("rate_limit", "struct RawRateLimit", true)?.map(|r| RawRateLimit::read(&r)).transpose()?;
        let global_rate_limit = o.object("global_rate_limit", "struct Raw", true)?.map(|g| global_limit::Raw::read(&g)).transpose()?;
        let (mode, dedupe_seconds) = (o.get("mode")?, o.get("dedupe_seconds")?);
        Ok(RawEndpoint {
            name: name.ok_or_else(|| o.missing("name"))?,
            path: path.ok_or_else(|| o.missing("path"))?,
            profile: profile.ok_or_else(|| o.missing("profile"))?,
            secret: secret.ok_or_else(|| o.missing("secret"))?,
            max_body_bytes: max_body_bytes.flatten(),
            forward: forward.flatten(),
            upstream_4xx: upstream_4xx.flatten(),
            rate_limit,
            global_rate_limit,
            mode: mode.flatten(),
            dedupe_seconds: dedupe_seconds.flatten(),
        })
    }
}

struct RawRateLimit {
    per_second: f64,
    burst: u32,
    key: Option<String>,
    on_contention: Option<String>,
}

impl RawRateLimit {
    fn read(o: &Object) -> Result<Self, String> {
        o.closed(&["per_second", "burst", "key", "on_contention"])?;
        let (per_second, burst, key, on_contention) = (o.get("per_second")?, o.get("burst")?, o.get("key")?, o.get("on_contention")?);
        Ok(RawRateLimit {
            per_second: per_second.ok_or_else(|| o.missing("per_second"))?,
            burst: burst.ok_or_else(|| o.missing("burst"))?,
            key: key.flatten(),
            on_contention: on_contention.flatten(),
        })
    }
}

struct RawSecret {
    param: Option<String>,
    values: Vec<String>,
    env: Vec<String>,
    /// Variables that must be set but may be empty: a rotation's second slot.
    env_optional: Vec<String>,
}

impl RawSecret {
    fn read(o: &Object) -> Result<Self, String> {
        o.closed(&["param", "values", "env", "env_optional"])?;
        let param = o.get::<Option<String>>("param")?.flatten();
        Ok(RawSecret {
            param,
            values: o.get("values")?.unwrap_or_default(),
            env: o.get("env")?.unwrap_or_default(),
            env_optional: o.get("env_optional")?.unwrap_or_default(),
        })
    }
}

impl Config {
    /// Parses and validates `json`; `env` looks up the variables named in `secret.env`.
    /// The error names the endpoint and field and never contains a secret.
    pub fn parse(json: &[u8], env: impl Fn(&str) -> Option<String>) -> Result<Config, String> {
        // Text, not bytes: one serde_json reader for every parse in the module.
        let json = std::str::from_utf8(json).map_err(|e| format!("configuration: {e}"))?;
        let top = Object::read(json, json, "struct RawConfig")?;
        top.closed(&TOP_KEYS)?;
        let list: Vec<&RawValue> = top.get("endpoints")?.ok_or_else(|| top.missing("endpoints"))?;
        let [log_level, header_mode, unguarded] = ["log_level", "header_mode", "unguarded"].map(|key| top.get::<Option<String>>(key).map(Option::flatten));
        let (log_level, header_mode, unguarded) = (log_level?, header_mode?, unguarded?);
        if list.is_empty() || list.len() > MAX_ENDPOINTS {
            return Err(format!("endpoints: must list 1 to {MAX_ENDPOINTS} endpoints"));
        }
        let mut endpoints: Vec<Endpoint> = Vec::with_capacity(list.len());
        for (i, value) in list.iter().enumerate() {
            let at = format!("endpoints[{i}]");
            let object = Object::read(json, value.get(), "struct RawEndpoint")?;
            let raw = RawEndpoint::read(&object)?;
            let registration = profile::find(&raw.profile);
            strays(&object, registration)?;
            let endpoint = Endpoint::validate(&raw, registration, (&object, &at), &env).map_err(|e| format!("{at}.{e}"))?;
            if endpoints.iter().any(|e| e.name == endpoint.name) {
                return Err(format!("{at}.name: duplicate endpoint name '{}'", endpoint.name));
            }
            if let Some(other) = endpoints.iter().find(|e| e.canonical == endpoint.canonical) {
                return Err(format!("{at}.path: '{}' is the same path as '{}' to a backend", endpoint.path, other.path));
            }
            endpoints.push(endpoint);
        }
        let levels = [
            ("off", None),
            ("debug", Some(log::Level::Debug)),
            ("info", Some(log::Level::Info)),
            ("warn", Some(log::Level::Warn)),
            ("error", Some(log::Level::Error)),
        ];
        let log_level = pick("log_level", "level", log_level.as_deref().unwrap_or("info"), &levels)?;
        let header_modes = [("stream", HeaderMode::Stream), ("hold", HeaderMode::Hold)];
        let header_mode = pick("header_mode", "mode", header_mode.as_deref().unwrap_or("stream"), &header_modes)?;
        // Streamed, the head has gone before the check ends (too late for x-webhook-verified)
        // and the original body carries no CloudEvent attribute: unverified would look verified.
        let unmarked = |e: &Endpoint| e.forward == Forward::Original && e.profile.arm_check().is_some_and(|a| a.on_error == OnError::Forward);
        if let Some(i) = endpoints.iter().position(unmarked).filter(|_| header_mode == HeaderMode::Stream) {
            return Err(format!("endpoints[{i}].arm_check.on_error: \"forward\" with \"forward\": \"original\" and \"header_mode\": \"stream\" gives the backend no verified mark; use on_error \"hold\", forward \"cloudevent\" or header_mode \"hold\""));
        }
        let unguarded = pick("unguarded", "value", unguarded.as_deref().unwrap_or("pass"), &[("pass", Unguarded::Pass), ("reject", Unguarded::Reject)])?;
        Ok(Config { endpoints, log_level, header_mode, unguarded })
    }

    /// The endpoint that guards `path` (query excluded), decided on canonical forms.
    pub fn route(&self, path: &[u8]) -> Route<'_> {
        // A configured path as such (what senders send) has that endpoint's canonical form,
        // by definition: found without decoding and reshaping it on every request.
        if let Some((i, e)) = self.endpoints.iter().enumerate().find(|(_, e)| e.path.as_bytes() == path) {
            return Route::Guarded(i, e);
        }
        let find = |form: &str| self.endpoints.iter().enumerate().find(|(_, e)| e.canonical == form);
        match route::canonical(path) {
            Ok(form) => match find(&form) {
                Some((i, e)) => Route::Guarded(i, e),
                // Where `;` is a character, `..` may remove another segment.
                None => {
                    let other = route::readings(path).iter().find_map(|form| find(form));
                    other.map_or(Route::Unguarded, |(i, e)| Route::Ambiguous(i, e, route::Ambiguity::Parameter))
                }
            },
            Err(why) => route::lenient(path).iter().find_map(|form| find(form)).map_or(Route::Unguarded, |(i, e)| Route::Ambiguous(i, e, why)),
        }
    }
}

/// The option named `value`; the error names `field`, quotes the value and lists the
/// options ("unknown {noun} 'x' (expected a, b or c)").
pub fn pick<T: Copy>(field: &str, noun: &str, value: &str, options: &[(&str, T)]) -> Result<T, String> {
    match options.iter().find(|(name, _)| *name == value) {
        Some((_, option)) => Ok(*option),
        None => Err(unknown(field, noun, value, &options.iter().map(|(name, _)| *name).collect::<Vec<_>>())),
    }
}

/// The error of [`pick`], apart so that its instances share one copy.
fn unknown(field: &str, noun: &str, value: &str, names: &[&str]) -> String {
    let expected = match names.split_last() {
        Some((last, [])) => (*last).to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    };
    format!("{field}: unknown {noun} '{}' (expected {expected})", clip(value))
}

/// Refuses a key that is neither common nor `registration`'s, at its place in the whole
/// configuration (a key of another profile is named as such), and a key given twice.
fn strays(object: &Object, registration: Option<&profile::Registration>) -> Result<(), String> {
    let own = |key: &str| COMMON_KEYS.contains(&key) || registration.is_none_or(|r| r.keys.contains(&key));
    let Some((stray, place)) = object.stray(own) else {
        return Ok(());
    };
    let key = match stray {
        Ok(key) => key,
        Err(key) => return Err(object::at(&place, &object::duplicate(key))),
    };
    // A key several signed senders read (`tolerance_seconds`) names them all.
    let owners: Vec<&str> = profile::REGISTRY.iter().filter(|r| r.keys.contains(&key)).map(|r| r.name).collect();
    let message = match owners.split_last() {
        Some((last, [])) => format!("only applies to the {last} profile"),
        Some((last, rest)) => format!("only applies to the {} and {last} profiles", rest.join(", ")),
        None => format!("unknown field `{}`", clip(key)),
    };
    Err(object::at(&place, &message))
}

impl Endpoint {
    /// `(object, at)`: this endpoint's object and its place (`endpoints[i]`), for the
    /// profile's own keys.
    fn validate(
        raw: &RawEndpoint,
        registration: Option<&profile::Registration>,
        (object, at): (&Object, &str),
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let name_ok =
            !raw.name.is_empty() && raw.name.len() <= 64 && raw.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !name_ok {
            return Err("name: must be 1-64 characters of a-z, 0-9, '_' or '-'".into());
        }
        let path_ok = raw.path.starts_with('/')
            && raw.path.len() <= 1024
            && !raw.path.bytes().any(|b| matches!(b, b'?' | b'#') || b.is_ascii_whitespace() || b.is_ascii_control());
        if !path_ok {
            return Err("path: must start with '/' and hold no query, fragment or whitespace".into());
        }
        let canonical = route::canonical(raw.path.as_bytes()).map_err(|why| format!("path: {}", why.detail()))?;
        let Some(registration) = registration else {
            let names: Vec<&str> = profile::REGISTRY.iter().map(|r| r.name).collect();
            return Err(unknown("profile", "profile", &raw.profile, &names));
        };
        if raw.max_body_bytes.is_some_and(|n| n == 0 || n > MAX_BODY_LIMIT) {
            return Err(format!("max_body_bytes: must be between 1 and {MAX_BODY_LIMIT}"));
        }
        let forwards = [("cloudevent", Forward::CloudEvent), ("original", Forward::Original)];
        let forward = pick("forward", "value", raw.forward.as_deref().unwrap_or("cloudevent"), &forwards)?;
        let answers = [("retry", Upstream4xx::Retry), ("pass", Upstream4xx::Pass)];
        let upstream_4xx = pick("upstream_4xx", "value", raw.upstream_4xx.as_deref().unwrap_or("retry"), &answers)?;
        let modes = [("enforce", Mode::Enforce), ("shadow", Mode::Shadow)];
        let mode = pick("mode", "mode", raw.mode.as_deref().unwrap_or("enforce"), &modes)?;
        if raw.dedupe_seconds.is_some_and(|s| s == 0 || s > MAX_DEDUPE_SECONDS) {
            return Err(format!("dedupe_seconds: must be between 1 and {MAX_DEDUPE_SECONDS}"));
        }
        let secret = Secret::validate(&raw.secret, env)?;
        let profile = (registration.configure)(&Section { object, at, name: &raw.name, secret: &secret, env })?;
        let max_body = body_limit(profile.min_body_bytes(), raw.max_body_bytes)?;
        let rate_limit = raw.rate_limit.as_ref().map(|r| RateLimit::validate(r, profile.as_ref(), &raw.name)).transpose()?;
        let global_rate_limit = raw.global_rate_limit.as_ref().map(|g| GlobalRateLimit::validate(g, profile.as_ref())).transpose()?;
        // A replay the signature still accepts must meet the duplicate mark.
        let dedupe_seconds = match (profile.replay_window(), raw.dedupe_seconds) {
            (Some(window), Some(seconds)) if seconds < window => {
                return Err(format!(
                    "dedupe_seconds: must be at least {window} (the profile's replay window), so that a replayed delivery is answered as a duplicate"
                ));
            }
            (window, seconds) => seconds.or(window),
        };
        Ok(Endpoint {
            dedupe_seconds,
            mode,
            rate_limit,
            global_rate_limit,
            source: format!("/webhook-guard/{}", raw.name),
            name: raw.name.clone(),
            path: raw.path.clone(),
            canonical,
            profile,
            secret,
            max_body_bytes: usize::try_from(max_body).map_err(|_| "max_body_bytes: too large for this platform")?,
            forward,
            upstream_4xx,
        })
    }
}

/// The endpoint's `max_body_bytes`: as `given`, else the default, and never below the
/// largest delivery a sender that drops a 413 documents (`floor`), which is then the default.
fn body_limit(floor: Option<u64>, given: Option<u64>) -> Result<u64, String> {
    match (floor, given) {
        (Some(floor), Some(given)) if given < floor => {
            Err(format!("max_body_bytes: must be at least {floor}: the sender delivers bodies that large and does not retry a 413"))
        }
        (floor, given) => Ok(given.or(floor).unwrap_or(DEFAULT_MAX_BODY)),
    }
}

impl RateLimit {
    fn validate(raw: &RawRateLimit, profile: &dyn Profile, endpoint: &str) -> Result<Self, String> {
        let limit = Limit::new(raw.per_second, raw.burst)?;
        let keys = [("global", RateKey::Global), ("application", RateKey::Application), ("subscription", RateKey::Subscription)];
        let key = pick("rate_limit.key", "key", raw.key.as_deref().unwrap_or("global"), &keys)?;
        if key != RateKey::Global && !profile.has_rate_keys() {
            return Err(format!("rate_limit.key: the {} profile's events carry no application or subscription", profile.name()));
        }
        let contention = [("deny", Contention::Deny), ("allow", Contention::Allow)];
        let on_contention = pick("rate_limit.on_contention", "value", raw.on_contention.as_deref().unwrap_or("deny"), &contention)?;
        Ok(RateLimit { limit, key, on_contention, global_slot: ratelimit::slot_key(endpoint, "", 1) })
    }
}

impl Secret {
    fn validate(raw: &RawSecret, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, String> {
        let param = raw.param.clone().unwrap_or_else(|| "sig".to_string());
        let param_ok = !param.is_empty() && param.len() <= 64 && param.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'~'));
        if !param_ok {
            return Err("secret.param: must be 1-64 URL-safe characters (A-Z a-z 0-9 _ - . ~)".into());
        }
        let mut values = Vec::new();
        for (i, value) in raw.values.iter().cloned().enumerate() {
            values.push(check_secret(value).map_err(|rule| format!("secret.values[{i}]: {rule}"))?);
        }
        let optional = raw.env_optional.iter().map(|name| (name, "secret.env_optional"));
        for (name, field) in raw.env.iter().map(|name| (name, "secret.env")).chain(optional) {
            let value = env(name).ok_or_else(|| format!("{field}: environment variable '{}' is not set", clip(name)))?;
            // Empty is how an optional slot says "no second secret now"; unset stays an
            // error, so a misspelt name is still refused rather than turning into 403s.
            if field == "secret.env_optional" && value.trim().is_empty() {
                continue;
            }
            values.push(check_secret(value).map_err(|rule| format!("{field} '{}': {rule}", clip(name)))?);
        }
        if values.is_empty() {
            return Err("secret: no usable secret (give secret.values or secret.env)".into());
        }
        Ok(Secret { param, values })
    }
}

fn check_secret(value: String) -> Result<Vec<u8>, &'static str> {
    let value = value.trim().to_string();
    if value.is_empty() {
        return Err("secret is empty");
    }
    if value.len() > MAX_SECRET_BYTES {
        return Err("secret is longer than 1024 bytes");
    }
    if value.bytes().any(|b| b.is_ascii_control()) {
        return Err("secret contains control characters");
    }
    Ok(value.into_bytes())
}

/// Deserializes `part` (`json` itself or a slice of it). An error names the full path of
/// the member (`endpoints[1].secret.values`) and the line and column counted in the whole
/// plugin configuration, which a reader looks up there, not in the YAML file embedding it.
pub fn deserialize<'a, T: Deserialize<'a>>(json: &str, part: &'a str) -> Result<T, String> {
    serde_json::from_str(part).map_err(|e| placed(json, part, &e))
}

/// The message of [`deserialize`]'s error `e`: apart, so that its instances share one copy.
fn placed(json: &str, part: &str, e: &serde_json::Error) -> String {
    let message = redact(&e.to_string());
    let Some(message) = message.strip_suffix(&format!(" at line {} column {}", e.line(), e.column())) else {
        return format!("configuration: {message}");
    };
    let start = (part.as_ptr() as usize).saturating_sub(json.as_ptr() as usize);
    object::at(&json_path::place(json, start + json_path::offset(part, e.line(), e.column())), message)
}

/// A parser error without the string values serde quotes in it ("invalid type: string
/// \"...\""), which could be a secret.
fn redact(message: &str) -> String {
    let mut out = String::new();
    for (i, part) in message.split('"').enumerate() {
        out.push_str(if i % 2 == 0 { part } else { "\"…\"" });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse(json: &str) -> Result<Config, String> {
        Config::parse(json.as_bytes(), no_env)
    }

    const MINIMAL: &str = r#"{"endpoints":[{"name":"azure","path":"/api/resource","profile":"azure_managed_app","secret":{"values":["s3cret"]}}]}"#;

    #[test]
    fn a_sender_that_drops_a_413_raises_the_body_limit_and_refuses_a_smaller_one() {
        assert_eq!(body_limit(None, None), Ok(DEFAULT_MAX_BODY));
        assert_eq!(body_limit(None, Some(10)), Ok(10));
        assert_eq!(body_limit(Some(2_000_000), None), Ok(2_000_000));
        assert_eq!(body_limit(Some(2_000_000), Some(3_000_000)), Ok(3_000_000));
        assert_eq!(body_limit(Some(2_000_000), Some(2_000_000)), Ok(2_000_000));
        let err = body_limit(Some(2_000_000), Some(1_999_999)).unwrap_err();
        assert!(err.starts_with("max_body_bytes: must be at least 2000000"), "{err}");
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse(MINIMAL).unwrap();
        let e = &c.endpoints[0];
        assert_eq!(e.secret.param, "sig");
        assert_eq!(e.secret.values, vec![b"s3cret".to_vec()]);
        assert_eq!(e.max_body_bytes, 65536);
        assert_eq!(e.forward, Forward::CloudEvent);
        assert_eq!(e.upstream_4xx, Upstream4xx::Retry);
        assert_eq!(c.unguarded, Unguarded::Pass);
        assert_eq!(e.canonical, "/api/resource");
        assert!(matches!(c.route(b"/api/resource"), Route::Guarded(0, _)));
        assert!(matches!(c.route(b"/API/resource/"), Route::Guarded(0, _)));
        assert!(matches!(c.route(b"/api%2Fresource"), Route::Ambiguous(0, _, route::Ambiguity::Separator)));
        // Tomcat reads `/api`, Go `/api/resource`: refused, not let through.
        assert!(matches!(c.route(b"/api/resource/;x=1/.."), Route::Ambiguous(0, _, route::Ambiguity::Parameter)));
        // Tomcat cuts `;` from `api;` and decodes `%3Bx` to a segment `..` removes.
        assert!(matches!(c.route(b"/api;/resource/%3Bx/.."), Route::Ambiguous(0, _, route::Ambiguity::Parameter)));
        assert!(matches!(c.route(b"/api/x/..;/resource"), Route::Guarded(0, _)));
        assert!(matches!(c.route(b"/api/resources"), Route::Unguarded));
        assert!(matches!(c.route(b"/api/resources%2F"), Route::Unguarded));
        assert_eq!(e.profile.on_nonconforming(), crate::nonconforming::OnNonconforming::Forward);
    }

    #[test]
    fn secrets_from_values_and_environment() {
        let json = r#"{"endpoints":[{"name":"a","path":"/a","profile":"md5_envelope",
            "secret":{"param":"key","values":["one"],"env":["WEBHOOK_SIG"]}}]}"#;
        let c = Config::parse(json.as_bytes(), |k| (k == "WEBHOOK_SIG").then(|| "two\n".into())).unwrap();
        assert_eq!(c.endpoints[0].secret.values, vec![b"one".to_vec(), b"two".to_vec()]);
        assert_eq!(c.endpoints[0].secret.param, "key");
    }

    #[test]
    fn an_optional_environment_secret_may_be_empty_but_not_unset() {
        let json = r#"{"endpoints":[{"name":"a","path":"/a","profile":"azure_managed_app",
            "secret":{"env":["SIG"],"env_optional":["SIG_NEXT"]}}]}"#;
        let with = |next: Option<&str>| {
            let next = next.map(String::from);
            Config::parse(json.as_bytes(), move |k| if k == "SIG" { Some("one".into()) } else { next.clone() })
        };
        assert_eq!(with(Some("")).unwrap().endpoints[0].secret.values, vec![b"one".to_vec()]);
        assert_eq!(with(Some("two")).unwrap().endpoints[0].secret.values, vec![b"one".to_vec(), b"two".to_vec()]);
        let err = with(None).unwrap_err();
        assert_eq!(err, "endpoints[0].secret.env_optional: environment variable 'SIG_NEXT' is not set");
        // An optional slot alone is no secret at all.
        let only = r#"{"endpoints":[{"name":"a","path":"/a","profile":"azure_managed_app","secret":{"env_optional":["SIG_NEXT"]}}]}"#;
        let err = Config::parse(only.as_bytes(), |_| Some(String::new())).unwrap_err();
        assert!(err.starts_with("endpoints[0].secret: no usable secret"), "{err}");
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (r#"{"endpoints":[]}"#, "endpoints:"),
            (r#"{"endpoints":[],"extra":1}"#, "unknown field `extra`"),
            (
                r#"{"endpoints":[{"name":"a","path":"/a","profile":"azure_managed_app","secret":{"values":["s"]},"max_body":1}]}"#,
                "endpoints[0].max_body: unknown field `max_body`",
            ),
            (r#"{"endpoints":[{"name":"a","path":"/a","profile":"nope","secret":{"values":["s"]}}]}"#, "endpoints[0].profile: unknown profile 'nope'"),
            (r#"{"endpoints":[{"name":"a","path":"/a","profile":"azure_managed_app","secret":{}}]}"#, "endpoints[0].secret: no usable secret"),
            (
                r#"{"endpoints":[{"name":"a","path":"/a","profile":"azure_managed_app","secret":{"values":["  "]}}]}"#,
                "endpoints[0].secret.values[0]: secret is empty",
            ),
            (
                r#"{"endpoints":[{"name":"a","path":"/a","profile":"azure_managed_app","secret":{"env":["MISSING"]}}]}"#,
                "endpoints[0].secret.env: environment variable 'MISSING' is not set",
            ),
            (
                r#"{"endpoints":[{"name":"a","path":"/a","profile":"azure_managed_app","secret":{"values":["s"],"oops":1}}]}"#,
                "endpoints[0].secret.oops: unknown field `oops`",
            ),
            (
                r#"{"endpoints":[{"name":"a","path":"/a","profile":"azure_managed_app","secret":{"values":["s"]},"max_body_bytes":0}]}"#,
                "endpoints[0].max_body_bytes",
            ),
            (
                r#"{"endpoints":[{"name":"a","path":"/a","profile":"azure_managed_app","secret":{"values":["s"]},"max_body_bytes":99999999999}]}"#,
                "endpoints[0].max_body_bytes",
            ),
            (
                r#"{"endpoints":[{"name":"a","path":"/a","profile":"azure_managed_app","secret":{"values":["s"]}},{"name":"a","path":"/b","profile":"azure_managed_app","secret":{"values":["s"]}}]}"#,
                "endpoints[1].name: duplicate",
            ),
            (
                r#"{"endpoints":[{"name":"a","path":"/a","profile":"azure_managed_app","secret":{"values":["s"]}},{"name":"b","path":"/a","profile":"azure_managed_app","secret":{"values":["s"]}}]}"#,
                "endpoints[1].path: '/a' is the same path as '/a'",
            ),
            (
                r#"{"endpoints":[{"name":"a","path":"/a","profile":"azure_managed_app","secret":{"values":["s"]}},{"name":"b","path":"/A/","profile":"azure_managed_app","secret":{"values":["s"]}}]}"#,
                "endpoints[1].path: '/A/' is the same path as '/a'",
            ),
            (
                r#"{"endpoints":[{"name":"a","path":"/a%2Fb","profile":"azure_managed_app","secret":{"values":["s"]}}]}"#,
                "endpoints[0].path: the path holds a '\\' or an encoded '/'",
            ),
            (
                r#"{"unguarded":"drop","endpoints":[{"name":"a","path":"/a","profile":"azure_managed_app","secret":{"values":["s"]}}]}"#,
                "unguarded: unknown value 'drop' (expected pass or reject)",
            ),
            (r#"{"endpoints":[{"name":"A b","path":"/a","profile":"azure_managed_app","secret":{"values":["s"]}}]}"#, "endpoints[0].name"),
            (r#"{"endpoints":[{"name":"a","path":"a?x","profile":"azure_managed_app","secret":{"values":["s"]}}]}"#, "endpoints[0].path"),
            (r#"{"endpoints":[{"name":"a","path":"/a","profile":"azure_managed_app","secret":{"param":"s&g","values":["s"]}}]}"#, "endpoints[0].secret.param"),
            (r#"{"endpoints":[{"name":"a","path":"/a","profile":"azure_managed_app","secret":{"values":["s"]},"forward":"x"}]}"#, "endpoints[0].forward"),
            (
                r#"{"endpoints":[{"name":"a","path":"/a","profile":"azure_managed_app","secret":{"values":["s"]},"upstream_4xx":"x"}]}"#,
                "endpoints[0].upstream_4xx",
            ),
            (
                r#"{"endpoints":[{"name":"a","path":"/a","profile":"azure_managed_app","secret":{"values":["s"]},"answer_ping":true}]}"#,
                "endpoints[0].answer_ping",
            ),
            (
                r#"{"endpoints":[{"name":"a","path":"/a","profile":"azure_managed_app","secret":{"values":["s"]},"on_nonconforming":"drop"}]}"#,
                "endpoints[0].on_nonconforming: unknown value 'drop' (expected forward, hold or reject)",
            ),
            (
                r#"{"endpoints":[{"name":"a","path":"/a","profile":"md5_envelope","secret":{"values":["s"]},"on_nonconforming":"hold"}]}"#,
                "endpoints[0].on_nonconforming: only applies to the azure_managed_app profile",
            ),
            (
                r#"{"endpoints":[{"name":"a","path":"/a","profile":"md5_envelope","secret":{"values":["s"]},"arm_check":{}}]}"#,
                "endpoints[0].arm_check: only applies to the azure_managed_app profile",
            ),
            (
                r#"{"endpoints":[{"name":"a","path":"/a","profile":"azure_managed_app","secret":{"values":["s"]},"arm_check":{"arm_cluster":"a","token_cluster":"t","managed_identity":{},"timeout_ms":"x"}}]}"#,
                "endpoints[0].arm_check.timeout_ms: invalid type",
            ),
            (
                r#"{"endpoints":[{"name":"a","path":"/a","profile":"azure_managed_app","secret":{"values":["s"]},"rate_limit":{"per_second":0,"burst":1}}]}"#,
                "endpoints[0].rate_limit.per_second",
            ),
            (
                r#"{"endpoints":[{"name":"a","path":"/a","profile":"azure_managed_app","secret":{"values":["s"]},"rate_limit":{"per_second":1,"burst":0}}]}"#,
                "endpoints[0].rate_limit.burst",
            ),
            (
                r#"{"endpoints":[{"name":"a","path":"/a","profile":"azure_managed_app","secret":{"values":["s"]},"rate_limit":{"per_second":1,"burst":1,"key":"ip"}}]}"#,
                "endpoints[0].rate_limit.key",
            ),
            (
                r#"{"endpoints":[{"name":"a","path":"/a","profile":"md5_envelope","secret":{"values":["s"]},"rate_limit":{"per_second":1,"burst":1,"key":"application"}}]}"#,
                "endpoints[0].rate_limit.key",
            ),
            (
                r#"{"endpoints":[{"name":"a","path":"/a","profile":"azure_managed_app","secret":{"values":["s"]},"rate_limit":{"per_second":1,"burst":1,"on_contention":"maybe"}}]}"#,
                "endpoints[0].rate_limit.on_contention",
            ),
            (
                r#"{"endpoints":[{"name":"a","path":"/a","profile":"azure_managed_app","secret":{"values":["s"]},"rate_limit":{"per_second":1,"burst":1,"per_minute":3}}]}"#,
                "unknown field `per_minute`",
            ),
            ("not json", "configuration:"),
            (
                r#"{"endpoints":[{"name":"a","path":"/a","profile":"azure_managed_app","secret":{"values":["s"]},"dedupe_seconds":0}]}"#,
                "endpoints[0].dedupe_seconds",
            ),
            (r#"{"endpoints":[{"name":"a","path":"/a","profile":"azure_managed_app","secret":{"values":["s"]},"mode":"watch"}]}"#, "endpoints[0].mode"),
            (r#"{"log_level":"loud","endpoints":[{"name":"a","path":"/a","profile":"azure_managed_app","secret":{"values":["s"]}}]}"#, "log_level"),
        ];
        for (json, want) in cases {
            let err = parse(json).unwrap_err();
            assert!(err.contains(want), "{json}\n  gave: {err}\n  want: {want}");
        }
    }

    #[test]
    fn errors_name_the_full_path_and_the_configurations_line() {
        let json = "{\n  \"endpoints\": [\n    {\"name\": \"a\", \"path\": \"/a\", \"profile\": \"md5_envelope\", \"secret\": {\"values\": [\"s\"]}},\n    {\"name\": \"b\", \"path\": \"/b\", \"profile\": \"md5_envelope\",\n     \"secret\": {\"values\": \"s\"}}\n  ]\n}";
        let err = parse(json).unwrap_err();
        assert_eq!(err, "endpoints[1].secret.values: invalid type: string \"…\", expected a sequence at line 5 column 29 of the plugin configuration");
        let err = parse(&json.replace("\"path\": \"/a\"", "\"path\": \"/a\", \"colour\": 1")).unwrap_err();
        assert!(err.starts_with("endpoints[0].colour: unknown field `colour`"), "{err}");
        assert!(err.ends_with("at line 3 column 40 of the plugin configuration"), "{err}");
        let err = parse("{\"log_level\": 3, \"endpoints\": []}").unwrap_err();
        assert_eq!(err, "log_level: invalid type: integer `3`, expected a string at line 1 column 15 of the plugin configuration");
        let err = parse("{\"endpoints\": [}").unwrap_err();
        assert_eq!(err, "endpoints: expected value at line 1 column 16 of the plugin configuration");
    }

    #[test]
    fn missing_repeated_and_unknown_keys_are_named_as_serdes_derive_did() {
        let endpoint = |members: &str| format!("{{\"endpoints\": [{{\"name\": \"a\", \"path\": \"/a\", {members}}}]}}");
        let cases = [
            (
                "{\"endpoints\": [{\"path\": \"/a\", \"profile\": \"md5_envelope\",\n  \"secret\": {\"values\": [\"s\"]}}]}".to_string(),
                "endpoints[0]: missing field `name` at line 2 column 30",
            ),
            (
                endpoint(r#""name": "b", "profile": "md5_envelope", "secret": {"values": ["s"]}"#),
                "endpoints[0].name: duplicate field `name` at line 1 column 49",
            ),
            (
                endpoint(r#""profile": "md5_envelope", "answer_ping": true, "answer_ping": true, "secret": {"values": ["s"]}"#),
                "endpoints[0].answer_ping: duplicate field `answer_ping` at line 1 column 104",
            ),
            (
                endpoint(r#""profile": "md5_envelope", "secret": {"values": ["s"], "zz": 1}"#),
                "endpoints[0].secret.zz: unknown field `zz`, expected one of `param`, `values`, `env`, `env_optional` at line 1 column 102",
            ),
            (
                endpoint(r#""profile": "md5_envelope", "secret": {"values": ["s"]}, "rate_limit": {"burst": 1}"#),
                "endpoints[0].rate_limit: missing field `per_second` at line 1 column 125",
            ),
            (
                endpoint(
                    r#""profile": "azure_managed_app", "secret": {"values": ["s"]}, "arm_check": {"arm_cluster": "a", "token_cluster": "t", "managed_identity": {"id": 1}}"#,
                ),
                "endpoints[0].arm_check.managed_identity.id: unknown field `id`, expected `client_id` at line 1 column 185",
            ),
            // An object's members given as an array (serde's sequence form of a struct) is refused.
            (
                endpoint(r#""profile": "md5_envelope", "secret": ["s"]"#),
                "endpoints[0].secret: invalid type: sequence, expected struct RawSecret at line 1 column 80",
            ),
        ];
        for (json, want) in cases {
            assert_eq!(parse(&json).unwrap_err(), format!("{want} of the plugin configuration"), "{json}");
        }
    }

    #[test]
    fn errors_never_contain_a_secret() {
        let json = r#"{"endpoints":[{"name":"a","path":"/a","profile":"nope","secret":{"values":["TOPSECRET"]}}]}"#;
        assert!(!parse(json).unwrap_err().contains("TOPSECRET"));
        let json = r#"{"endpoints":[{"name":"a","path":"/a","profile":"azure_managed_app","secret":{"values":["TOPSECRET\u0001"]}}]}"#;
        assert!(!parse(json).unwrap_err().contains("TOPSECRET"));
        let json = r#"{"endpoints":[{"name":"a","path":"/a","profile":"azure_managed_app","secret":{"values":"TOPSECRET"}}]}"#;
        let err = parse(json).unwrap_err();
        assert!(err.contains("endpoints[0].secret.values: invalid type") && !err.contains("TOPSECRET"), "{err}");
        let c = parse(MINIMAL).unwrap();
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn an_unknown_choice_lists_the_options() {
        let err = parse(&MINIMAL.replacen('{', r#"{"log_level":"loud","#, 1)).unwrap_err();
        assert_eq!(err, "log_level: unknown level 'loud' (expected off, debug, info, warn or error)");
        let err = parse(&MINIMAL.replace(r#""secret""#, r#""mode":"watch","secret""#)).unwrap_err();
        assert_eq!(err, "endpoints[0].mode: unknown mode 'watch' (expected enforce or shadow)");
    }

    #[test]
    fn non_utf8_is_refused() {
        let err = Config::parse(b"{\"endpoints\":[],\"log_level\":\"a\xff\"}", no_env).unwrap_err();
        assert!(err.starts_with("configuration: invalid utf-8"), "{err}");
    }

    #[test]
    fn rate_limit_defaults() {
        let json = MINIMAL.replace(r#""secret""#, r#""rate_limit":{"per_second":0.5,"burst":3},"secret""#);
        let c = parse(&json).unwrap();
        let r = c.endpoints[0].rate_limit.as_ref().unwrap();
        assert_eq!((r.key, r.on_contention, r.limit.burst()), (RateKey::Global, Contention::Deny, 3));
        assert!(parse(MINIMAL).unwrap().endpoints[0].rate_limit.is_none());
    }

    #[test]
    fn profile_methods() {
        let json = r#"{"endpoints":[{"name":"a","path":"/a","profile":"azure_managed_app","secret":{"values":["s"]}},{"name":"b","path":"/b","profile":"md5_envelope","secret":{"values":["s"]}}]}"#;
        let c = parse(json).unwrap();
        let (azure, md5) = (&c.endpoints[0].profile, &c.endpoints[1].profile);
        assert!(azure.allows("POST") && !azure.allows("PUT"));
        assert!(md5.allows("PUT") && !md5.allows("GET"));
    }

    #[test]
    fn an_unmarked_unverified_forward_is_refused_only_when_streamed() {
        let config = |header_mode: &str, forward: &str, on_error: &str| {
            parse(&format!(
                r#"{{"header_mode":"{header_mode}","endpoints":[{{"name":"a","path":"/a","profile":"azure_managed_app","secret":{{"values":["s"]}},"forward":"{forward}",
                  "arm_check":{{"arm_cluster":"arm","token_cluster":"imds","managed_identity":{{}},"on_error":"{on_error}"}}}}]}}"#
            ))
        };
        let err = config("stream", "original", "forward").unwrap_err();
        assert!(err.starts_with("endpoints[0].arm_check.on_error: \"forward\" with \"forward\": \"original\" and \"header_mode\": \"stream\""), "{err}");
        for (header_mode, forward, on_error) in [("hold", "original", "forward"), ("stream", "cloudevent", "forward"), ("stream", "original", "hold")] {
            assert!(config(header_mode, forward, on_error).is_ok(), "{header_mode} {forward} {on_error}");
        }
    }
}
