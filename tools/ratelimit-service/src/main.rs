//! A rate limit service for webhook-guard's fleet tests: Envoy's
//! `envoy.service.ratelimit.v3.RateLimitService` over Kuadrant's limitador engine with its
//! Redis storage, so every Envoy replica draws from the same counters.
//!
//! Usage: `ratelimit-service LIMITS_FILE REDIS_URL [LISTEN_ADDR]` (default
//! `127.0.0.1:0`). It prints `listening on <addr>` once it accepts connections.
//!
//! The limits file is limitador's own format (a YAML list of limits); as in
//! limitador-server, the request's domain is the limits' namespace and its descriptors
//! are bound to CEL as the list `descriptors` (`descriptors[0].application`).

use std::collections::HashMap;
use std::process::ExitCode;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{
    rate_limit::Unit, Code, DescriptorStatus, RateLimit,
};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::{
    RateLimitService, RateLimitServiceServer,
};
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use envoy_types::pb::google::protobuf::Duration;
use limitador::counter::Counter;
use limitador::limit::{Context, Limit};
use limitador::storage::redis::AsyncRedisStorage;
use limitador::storage::AsyncStorage;
use limitador::{AsyncRateLimiter, AsyncRateLimiterBuilder};
use tonic::{Request, Response, Status};

struct Service {
    limiter: AsyncRateLimiter,
}

#[tonic::async_trait]
impl RateLimitService for Service {
    async fn should_rate_limit(
        &self,
        request: Request<RateLimitRequest>,
    ) -> Result<Response<RateLimitResponse>, Status> {
        let request = request.into_inner();
        let descriptors: Vec<HashMap<String, String>> = request
            .descriptors
            .iter()
            .map(|d| d.entries.iter().map(|e| (e.key.clone(), e.value.clone())).collect())
            .collect();
        let mut ctx = Context::default();
        ctx.list_binding("descriptors".to_string(), descriptors);
        // hits_addend is optional in the protocol: 0 means 1.
        let hits = u64::from(request.hits_addend.max(1));
        let result = self
            .limiter
            .check_rate_limited_and_update(&request.domain.as_str().into(), &ctx, hits)
            .await
            // Unavailable (not a verdict) lets Envoy apply its failure_mode_deny choice.
            .map_err(|e| Status::unavailable(format!("rate limit storage: {e}")))?;
        let code = if result.limited { Code::OverLimit } else { Code::Ok };
        Ok(Response::new(RateLimitResponse {
            overall_code: code.into(),
            statuses: statuses(request.descriptors.len(), code, &result.counters),
            ..Default::default()
        }))
    }
}

/// One status per descriptor, as Envoy expects, each carrying the most restrictive matched
/// counter: Envoy builds `x-ratelimit-limit/remaining/reset` (DRAFT_VERSION_03) and
/// `Retry-After` from `current_limit`, `limit_remaining` and `duration_until_reset`.
fn statuses(descriptors: usize, code: Code, counters: &[Counter]) -> Vec<DescriptorStatus> {
    let tightest = counters.iter().min_by_key(|c| c.remaining().unwrap_or(c.max_value()));
    let status = DescriptorStatus {
        code: code.into(),
        current_limit: tightest.map(|c| RateLimit {
            name: c.limit().name().unwrap_or_default().to_string(),
            requests_per_unit: u32::try_from(c.max_value()).unwrap_or(u32::MAX),
            unit: unit(c.window().as_secs()).into(),
        }),
        limit_remaining: tightest
            .and_then(Counter::remaining)
            .map_or(0, |r| u32::try_from(r).unwrap_or(u32::MAX)),
        duration_until_reset: tightest.and_then(Counter::expires_in).map(|d| Duration {
            // Whole seconds, rounded up: a client told 0 would retry into the same window.
            seconds: i64::try_from(d.as_secs() + u64::from(d.subsec_nanos() > 0)).unwrap_or(i64::MAX),
            nanos: 0,
        }),
        ..Default::default()
    };
    vec![status; descriptors]
}

/// The protocol names a window by unit; Envoy turns the unit back into `w=<seconds>`.
fn unit(seconds: u64) -> Unit {
    match seconds {
        1 => Unit::Second,
        60 => Unit::Minute,
        3600 => Unit::Hour,
        86_400 => Unit::Day,
        _ => Unit::Unknown,
    }
}

fn load_limits(path: &str) -> Result<Vec<Limit>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    serde_yaml::from_str(&text).map_err(|e| format!("{path}: {e}"))
}

async fn serve(limits: &str, redis_url: &str, listen: &str) -> Result<(), String> {
    let limits = load_limits(limits)?;
    let storage = AsyncRedisStorage::new(redis_url).await.map_err(|e| format!("redis {redis_url}: {e}"))?;
    let limiter = AsyncRateLimiterBuilder::new(AsyncStorage::with_counter_storage(Box::new(storage))).build();
    limiter.configure_with(limits).await.map_err(|e| format!("limits: {e}"))?;
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| format!("{listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!("listening on {addr}");
    tonic::transport::Server::builder()
        .add_service(RateLimitServiceServer::new(Service { limiter }))
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
        .await
        .map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(limits), Some(redis)) = (args.first(), args.get(1)) else {
        eprintln!("usage: ratelimit-service LIMITS_FILE REDIS_URL [LISTEN_ADDR]");
        return ExitCode::from(2);
    };
    let listen = args.get(2).map_or("127.0.0.1:0", String::as_str);
    match serve(limits, redis, listen).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ratelimit-service: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    //! The shipped fleet examples (examples/fleet/) against this engine and each other.
    use super::*;
    use limitador::RateLimiter;
    use serde::Deserialize;
    use std::path::PathBuf;

    fn fleet(file: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/fleet").join(file)
    }

    /// Every value of `key` anywhere in a YAML document.
    fn values_of(doc: &serde_yaml::Value, key: &str, out: &mut Vec<String>) {
        match doc {
            serde_yaml::Value::Mapping(map) => {
                for (k, v) in map {
                    match (k.as_str(), v.as_str()) {
                        (Some(k), Some(v)) if k == key => out.push(v.to_string()),
                        _ => values_of(v, key, out),
                    }
                }
            }
            serde_yaml::Value::Sequence(items) => items.iter().for_each(|v| values_of(v, key, out)),
            _ => {}
        }
    }

    /// The domain and descriptor keys Envoy's config sends.
    fn envoy_descriptors() -> (String, Vec<String>) {
        let text = std::fs::read_to_string(fleet("envoy.yaml")).unwrap();
        let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        let (mut domains, mut keys) = (vec![], vec![]);
        values_of(&doc, "domain", &mut domains);
        values_of(&doc, "descriptor_key", &mut keys);
        assert_eq!(domains.len(), 1, "{domains:?}");
        (domains.remove(0), keys)
    }

    /// Envoy's two descriptors for a notification about `application`.
    fn descriptors(application: &str) -> Context<'static> {
        let entry = |k: &str, v: &str| HashMap::from([("endpoint".to_string(), "azure".to_string()), (k.to_string(), v.to_string())]);
        let mut ctx = Context::default();
        ctx.list_binding("descriptors".to_string(), vec![entry("application", application), entry("subscription", "sub-1")]);
        ctx
    }

    #[test]
    fn the_limitador_example_limits_each_application_of_the_envoy_example() {
        let (domain, keys) = envoy_descriptors();
        assert_eq!(keys, ["endpoint", "application", "endpoint", "subscription"]);
        let limits = load_limits(fleet("ratelimit-service/limitador.yaml").to_str().unwrap()).unwrap();
        assert!(limits.iter().all(|l| l.namespace().as_ref() == domain));
        let limiter = RateLimiter::new(1000);
        limiter.configure_with(limits).unwrap();
        let ns = domain.as_str().into();
        let admitted = (0..100).filter(|_| !limiter.check_rate_limited_and_update(&ns, &descriptors("app-1"), 1).unwrap().limited).count();
        assert_eq!(admitted, 60);
        let other = limiter.check_rate_limited_and_update(&ns, &descriptors("app-2"), 1).unwrap();
        assert!(!other.limited);
        // Both limits matched: the answer names the tightest.
        let counters = other.counters;
        assert_eq!(counters.len(), 2);
        let status = &statuses(2, Code::Ok, &counters)[1];
        let limit = status.current_limit.as_ref().unwrap();
        assert_eq!((limit.requests_per_unit, limit.unit), (60, Unit::Minute.into()));
        assert_eq!(status.limit_remaining, 59);
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RatelimitConfig {
        domain: String,
        descriptors: Vec<Descriptor>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Descriptor {
        key: String,
        value: Option<String>,
        rate_limit: Option<Rate>,
        #[serde(default)]
        descriptors: Vec<Descriptor>,
    }

    #[derive(Deserialize, PartialEq, Debug)]
    #[serde(deny_unknown_fields)]
    struct Rate {
        unit: String,
        requests_per_unit: u64,
    }

    #[test]
    fn the_envoyproxy_ratelimit_example_sets_the_same_limits() {
        let (domain, _) = envoy_descriptors();
        let text = std::fs::read_to_string(fleet("ratelimit-service/envoyproxy-ratelimit.yaml")).unwrap();
        let config: RatelimitConfig = serde_yaml::from_str(&text).unwrap();
        assert_eq!(config.domain, domain);
        let [endpoint] = &config.descriptors[..] else { panic!("one endpoint") };
        assert_eq!((endpoint.key.as_str(), endpoint.value.as_deref()), ("endpoint", Some("azure")));
        let limits = load_limits(fleet("ratelimit-service/limitador.yaml").to_str().unwrap()).unwrap();
        for (key, name) in [("application", "per-application"), ("subscription", "per-subscription")] {
            let nested = endpoint.descriptors.iter().find(|d| d.key == key).unwrap();
            let limitador = limits.iter().find(|l| l.name() == Some(name)).unwrap();
            assert_eq!(limitador.seconds(), 60);
            let want = Rate { unit: "minute".into(), requests_per_unit: limitador.max_value() };
            assert_eq!(nested.rate_limit.as_ref(), Some(&want), "{key}");
            assert!(nested.value.is_none() && nested.descriptors.is_empty(), "one counter per {key} value");
        }
    }

    /// webhook-guard encodes `RateLimitRequest` and reads `RateLimitResponse` by hand
    /// (src/global_limit/proto.rs): the real definitions read what it writes, and it reads
    /// what they write, unknown fields included.
    #[test]
    fn the_modules_protobuf_encoding_matches_the_real_definitions() {
        use envoy_types::pb::envoy::config::core::v3::HeaderValue;
        use envoy_types::pb::envoy::extensions::common::ratelimit::v3::{rate_limit_descriptor::Entry, RateLimitDescriptor};
        use prost::Message;
        use webhook_guard::global_limit::proto;

        let value = "/subscriptions/9e1c/resourcegroups/rg/providers/microsoft.solutions/applications/été-".repeat(3);
        let descriptors = [vec![("endpoint", "azure"), ("application", value.as_str())], vec![("endpoint", "azure"), ("subscription", "")]];
        let ours = proto::encode_request("webhook-guard", &descriptors);
        let theirs = RateLimitRequest {
            domain: "webhook-guard".into(),
            descriptors: descriptors
                .iter()
                .map(|d| RateLimitDescriptor { entries: d.iter().map(|(k, v)| Entry { key: k.to_string(), value: v.to_string() }).collect(), ..Default::default() })
                .collect(),
            ..Default::default()
        };
        assert_eq!(RateLimitRequest::decode(ours.as_slice()).unwrap(), theirs);
        // Byte for byte, but for the empty value prost leaves out (proto3 default).
        let empty = proto::encode_request("webhook-guard", &[vec![("endpoint", "azure")]]);
        let theirs_empty = RateLimitRequest { domain: "webhook-guard".into(), descriptors: vec![RateLimitDescriptor { entries: vec![Entry { key: "endpoint".into(), value: "azure".into() }], ..Default::default() }], ..Default::default() };
        assert_eq!(empty, theirs_empty.encode_to_vec());

        let counters = |code: Code, remaining: u32, reset: i64| DescriptorStatus {
            code: code.into(),
            current_limit: Some(RateLimit { name: "per-application".into(), requests_per_unit: 5, unit: Unit::Minute.into() }),
            limit_remaining: remaining,
            duration_until_reset: Some(Duration { seconds: reset, nanos: 250_000_000 }),
            ..Default::default()
        };
        let response = RateLimitResponse {
            overall_code: Code::OverLimit.into(),
            statuses: vec![counters(Code::Ok, 3, 7), counters(Code::OverLimit, 0, 41)],
            response_headers_to_add: vec![HeaderValue { key: "x-a".into(), value: "b".into(), ..Default::default() }],
            raw_body: b"over".to_vec(),
            ..Default::default()
        };
        let read = proto::decode_response(&response.encode_to_vec()).unwrap();
        assert_eq!(read.code, proto::OVER_LIMIT);
        let want = |code, remaining, reset| proto::DescriptorStatus { code, limit: Some((5, 2)), remaining, reset_secs: Some(reset) };
        assert_eq!(read.statuses, [want(proto::OK, 3, 8), want(proto::OVER_LIMIT, 0, 42)]);
        let ok = RateLimitResponse { overall_code: Code::Ok.into(), ..Default::default() };
        assert_eq!(proto::decode_response(&ok.encode_to_vec()).unwrap().code, proto::OK);
    }

    #[test]
    fn windows_map_to_the_units_envoy_knows() {
        assert_eq!(unit(60), Unit::Minute);
        assert_eq!(unit(86_400), Unit::Day);
        assert_eq!(unit(2), Unit::Unknown);
    }
}
