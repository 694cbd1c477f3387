//! The `arm_check` block of an `azure_managed_app` endpoint, validated at configure time.

use crate::config::Object;
use crate::problem::clip;
use std::fmt;

/// Azure Resource Manager's current API version for `Microsoft.Solutions/applications`.
const DEFAULT_API_VERSION: &str = "2021-07-01";
const DEFAULT_ARM_AUTHORITY: &str = "management.azure.com";
const DEFAULT_LOGIN_AUTHORITY: &str = "login.microsoftonline.com";
const IMDS_AUTHORITY: &str = "169.254.169.254";
const DEFAULT_TIMEOUT_MS: u64 = 3000;
/// Azure waits about 30 s for an answer; the check must leave room for the upstream.
const MAX_TIMEOUT_MS: u64 = 20_000;
const DEFAULT_RETRY_AFTER: u64 = 30;
const MAX_RETRY_AFTER: u64 = 3600;

/// Confirming each notification against Azure Resource Manager.
#[derive(Debug)]
pub struct ArmCheck {
    /// Envoy cluster (TLS to management.azure.com) and the `:authority` sent to it.
    pub arm_cluster: String,
    pub arm_authority: String,
    /// Envoy cluster of the token issuer and the `:authority` sent to it.
    pub token_cluster: String,
    pub token_authority: String,
    pub api_version: String,
    /// Bound on each outbound call (token and ARM), in milliseconds.
    pub timeout_ms: u64,
    /// `Retry-After` of a held notification, in seconds.
    pub retry_after: u64,
    pub on_error: OnError,
    pub source: TokenSource,
    /// Shared-data keys of the endpoint's token and of its refresh lease, built once.
    pub token_key: String,
    pub lease_key: String,
}

/// What happens to a notification when the check cannot be made (ARM or the token issuer
/// failing, timing out or throttling, or ARM refusing our identity).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Answer 503 with `Retry-After`: Azure retries, nothing unconfirmed goes upstream.
    Hold,
    /// Forward it marked unverified (`x-webhook-verified: false`).
    Forward,
}

/// Where the bearer token for `https://management.azure.com/` comes from.
#[derive(Debug)]
pub enum TokenSource {
    /// Microsoft Entra ID's client credentials grant.
    ClientCredentials { tenant: String, client_id: String, secret: ClientSecret },
    /// The instance metadata service; `client_id` picks a user-assigned identity.
    ManagedIdentity { client_id: Option<String> },
}

/// The client secret, read from the environment at configure time. `Debug` never prints it.
pub struct ClientSecret(pub String);

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret(<redacted>)")
    }
}

/// The `arm_check` block as given (read by [`RawArmCheck::read`]).
pub struct RawArmCheck {
    arm_cluster: String,
    arm_authority: Option<String>,
    token_cluster: String,
    token_authority: Option<String>,
    api_version: Option<String>,
    timeout_ms: Option<u64>,
    retry_after_seconds: Option<u64>,
    on_error: Option<String>,
    client_credentials: Option<RawClientCredentials>,
    managed_identity: Option<RawManagedIdentity>,
}

const KEYS: [&str; 10] = [
    "arm_cluster",
    "arm_authority",
    "token_cluster",
    "token_authority",
    "api_version",
    "timeout_ms",
    "retry_after_seconds",
    "on_error",
    "client_credentials",
    "managed_identity",
];

impl RawArmCheck {
    /// The block's members, typed; errors worded as serde's derive gave them.
    pub fn read(o: &Object) -> Result<Self, String> {
        o.closed(&KEYS)?;
        let (arm_cluster, token_cluster) = (o.get::<String>("arm_cluster")?, o.get::<String>("token_cluster")?);
        let [arm_authority, token_authority, api_version, on_error] =
            ["arm_authority", "token_authority", "api_version", "on_error"].map(|key| o.get::<Option<String>>(key).map(Option::flatten));
        let [timeout_ms, retry_after_seconds] = ["timeout_ms", "retry_after_seconds"].map(|key| o.get::<Option<u64>>(key).map(Option::flatten));
        let client_credentials = o.object("client_credentials", "struct RawClientCredentials", true)?.map(|c| RawClientCredentials::read(&c)).transpose()?;
        let managed_identity = o.object("managed_identity", "struct RawManagedIdentity", true)?;
        let managed_identity = managed_identity.map(|m| m.closed(&["client_id"]).and(m.get::<Option<String>>("client_id"))).transpose()?;
        Ok(RawArmCheck {
            arm_cluster: arm_cluster.ok_or_else(|| o.missing("arm_cluster"))?,
            arm_authority: arm_authority?,
            token_cluster: token_cluster.ok_or_else(|| o.missing("token_cluster"))?,
            token_authority: token_authority?,
            api_version: api_version?,
            timeout_ms: timeout_ms?,
            retry_after_seconds: retry_after_seconds?,
            on_error: on_error?,
            client_credentials,
            managed_identity: managed_identity.map(|client_id| RawManagedIdentity { client_id: client_id.flatten() }),
        })
    }
}

#[cfg(test)]
impl RawArmCheck {
    /// The block alone as JSON text (the tests' form).
    pub fn parse(json: &str) -> Result<Self, String> {
        RawArmCheck::read(&Object::read(json, json, "struct RawArmCheck")?)
    }
}

struct RawClientCredentials {
    tenant: String,
    client_id: String,
    client_secret_env: String,
}

impl RawClientCredentials {
    fn read(o: &Object) -> Result<Self, String> {
        o.closed(&["tenant", "client_id", "client_secret_env"])?;
        let (tenant, client_id, client_secret_env) = (o.get("tenant")?, o.get("client_id")?, o.get("client_secret_env")?);
        Ok(RawClientCredentials {
            tenant: tenant.ok_or_else(|| o.missing("tenant"))?,
            client_id: client_id.ok_or_else(|| o.missing("client_id"))?,
            client_secret_env: client_secret_env.ok_or_else(|| o.missing("client_secret_env"))?,
        })
    }
}

struct RawManagedIdentity {
    client_id: Option<String>,
}

impl ArmCheck {
    /// Validates the block of endpoint `endpoint`; `env` reads the client secret's variable.
    /// Errors start with `arm_check.` and never contain the secret.
    pub fn validate(raw: RawArmCheck, endpoint: &str, env: &(impl Fn(&str) -> Option<String> + ?Sized)) -> Result<Self, String> {
        field("arm_cluster", name(&raw.arm_cluster))?;
        field("token_cluster", name(&raw.token_cluster))?;
        let api_version = raw.api_version.unwrap_or_else(|| DEFAULT_API_VERSION.into());
        let version_ok = (10..=24).contains(&api_version.len()) && api_version.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        field("api_version", check(version_ok, "must look like 2021-07-01"))?;
        let timeout_ms = raw.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
        field("timeout_ms", check((100..=MAX_TIMEOUT_MS).contains(&timeout_ms), "must be between 100 and 20000"))?;
        let retry_after = raw.retry_after_seconds.unwrap_or(DEFAULT_RETRY_AFTER);
        field("retry_after_seconds", check((1..=MAX_RETRY_AFTER).contains(&retry_after), "must be between 1 and 3600"))?;
        let on_error = match raw.on_error.as_deref().unwrap_or("hold") {
            "hold" => OnError::Hold,
            "forward" => OnError::Forward,
            other => return Err(format!("arm_check.on_error: unknown choice '{}' (expected hold or forward)", clip(other))),
        };
        let (source, default_authority) = match (raw.client_credentials, raw.managed_identity) {
            (Some(c), None) => (TokenSource::client_credentials(c, env)?, DEFAULT_LOGIN_AUTHORITY),
            (None, Some(m)) => {
                if let Some(id) = &m.client_id {
                    field("managed_identity.client_id", token(id))?;
                }
                (TokenSource::ManagedIdentity { client_id: m.client_id }, IMDS_AUTHORITY)
            }
            _ => return Err("arm_check: give exactly one token source: client_credentials or managed_identity".into()),
        };
        let arm_authority = raw.arm_authority.unwrap_or_else(|| DEFAULT_ARM_AUTHORITY.into());
        field("arm_authority", host(&arm_authority))?;
        let token_authority = raw.token_authority.unwrap_or_else(|| default_authority.into());
        field("token_authority", host(&token_authority))?;
        Ok(ArmCheck {
            arm_cluster: raw.arm_cluster,
            arm_authority,
            token_cluster: raw.token_cluster,
            token_authority,
            api_version,
            timeout_ms,
            retry_after,
            on_error,
            source,
            token_key: format!("wg.arm.{endpoint}.token"),
            lease_key: format!("wg.arm.{endpoint}.lease"),
        })
    }
}

impl TokenSource {
    fn client_credentials(raw: RawClientCredentials, env: &(impl Fn(&str) -> Option<String> + ?Sized)) -> Result<Self, String> {
        field("client_credentials.tenant", token(&raw.tenant))?;
        field("client_credentials.client_id", token(&raw.client_id))?;
        let var = clip(&raw.client_secret_env);
        let secret = env(&raw.client_secret_env)
            .map(|s| s.trim().to_string())
            .ok_or_else(|| format!("arm_check.client_credentials.client_secret_env: environment variable '{var}' is not set"))?;
        let secret_ok = !secret.is_empty() && secret.len() <= 1024 && !secret.bytes().any(|b| b.is_ascii_control());
        if !secret_ok {
            return Err(format!("arm_check.client_credentials.client_secret_env: '{var}' must hold 1-1024 characters without control characters"));
        }
        Ok(TokenSource::ClientCredentials { tenant: raw.tenant, client_id: raw.client_id, secret: ClientSecret(secret) })
    }
}

/// Prefixes a broken rule with the field's path.
fn field(name: &str, rule: Result<(), &'static str>) -> Result<(), String> {
    let dot = if name.is_empty() { "" } else { "." };
    rule.map_err(|rule| format!("arm_check{dot}{name}: {rule}"))
}

fn check(ok: bool, rule: &'static str) -> Result<(), &'static str> {
    if ok {
        Ok(())
    } else {
        Err(rule)
    }
}

/// An Envoy cluster name.
fn name(value: &str) -> Result<(), &'static str> {
    let ok = value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
    check(!value.is_empty() && value.len() <= 128 && ok, "must be 1-128 of A-Z a-z 0-9 _ - . :")
}

/// A host, optionally with a port.
fn host(value: &str) -> Result<(), &'static str> {
    let ok = value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':'));
    check(!value.is_empty() && value.len() <= 255 && ok, "must be a host name, optionally with :port")
}

/// A tenant (GUID or domain) or client id: it goes into a URL path or form value as is.
fn token(value: &str) -> Result<(), &'static str> {
    let ok = value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'));
    check(!value.is_empty() && value.len() <= 128 && ok, "must be 1-128 of A-Z a-z 0-9 - .")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str, env: impl Fn(&str) -> Option<String>) -> Result<ArmCheck, String> {
        let raw = RawArmCheck::parse(json)?;
        ArmCheck::validate(raw, "azure", &env)
    }

    fn secret(name: &str) -> Option<String> {
        (name == "ARM_SECRET").then(|| "Sup3r~Secret.value\n".to_string())
    }

    const CLIENT: &str = r#"{"arm_cluster":"arm","token_cluster":"login","client_credentials":{"tenant":"contoso.onmicrosoft.com","client_id":"00000000-0000-0000-0000-000000000001","client_secret_env":"ARM_SECRET"}}"#;

    #[test]
    fn client_credentials_with_defaults() {
        let c = parse(CLIENT, secret).unwrap();
        assert_eq!((c.arm_authority.as_str(), c.token_authority.as_str()), ("management.azure.com", "login.microsoftonline.com"));
        assert_eq!((c.api_version.as_str(), c.timeout_ms, c.retry_after, c.on_error), ("2021-07-01", 3000, 30, OnError::Hold));
        assert_eq!((c.token_key.as_str(), c.lease_key.as_str()), ("wg.arm.azure.token", "wg.arm.azure.lease"));
        let TokenSource::ClientCredentials { secret, .. } = &c.source else { panic!("{c:?}") };
        assert_eq!(secret.0, "Sup3r~Secret.value", "trimmed");
        assert!(!format!("{c:?}").contains("Sup3r"), "Debug redacts the secret");
    }

    #[test]
    fn managed_identity_defaults_to_the_metadata_endpoint() {
        let c = parse(r#"{"arm_cluster":"arm","token_cluster":"imds","managed_identity":{},"on_error":"forward","timeout_ms":500}"#, |_| None).unwrap();
        assert_eq!(c.token_authority, "169.254.169.254");
        assert!(matches!(c.source, TokenSource::ManagedIdentity { client_id: None }));
        assert_eq!((c.on_error, c.timeout_ms), (OnError::Forward, 500));
    }

    /// CLIENT with `extra` members.
    fn with(extra: &str) -> String {
        format!("{}{extra}}}", CLIENT.strip_suffix('}').unwrap())
    }

    #[test]
    fn errors_name_the_field_and_never_the_secret() {
        let cases = [
            (CLIENT.replace(r#""arm_cluster":"arm""#, r#""arm_cluster":"a b""#), "arm_check.arm_cluster"),
            (CLIENT.replace(r#""token_cluster":"login""#, r#""token_cluster":"""#), "arm_check.token_cluster"),
            (CLIENT.replace("ARM_SECRET", "MISSING"), "client_secret_env: environment variable 'MISSING' is not set"),
            (CLIENT.replace("contoso.onmicrosoft.com", "a/b"), "arm_check.client_credentials.tenant"),
            (with(r#","timeout_ms":50"#), "arm_check.timeout_ms"),
            (with(r#","retry_after_seconds":0"#), "arm_check.retry_after_seconds"),
            (with(r#","api_version":"2021-07-01?x=1""#), "arm_check.api_version"),
            (with(r#","on_error":"pass""#), "arm_check.on_error: unknown choice 'pass'"),
            (with(r#","arm_authority":"evil/path""#), "arm_check.arm_authority"),
            (CLIENT.replace(r#""client_credentials""#, r#""managed_identity":{},"client_credentials""#), "exactly one token source"),
            (r#"{"arm_cluster":"arm","token_cluster":"t"}"#.to_string(), "exactly one token source"),
        ];
        for (json, want) in cases {
            let err = parse(&json, secret).unwrap_err();
            assert!(err.contains(want), "{json}\n  gave: {err}\n  want: {want}");
            assert!(!err.contains("Sup3r"));
        }
        let bad_secret = |_: &str| Some("Sup3r\u{1}".to_string());
        let err = parse(CLIENT, bad_secret).unwrap_err();
        assert!(err.contains("control characters") && !err.contains("Sup3r"), "{err}");
    }
}
