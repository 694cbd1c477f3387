//! The outbound requests of the check: the ARM GET and the two token requests.

use super::config::{ArmCheck, TokenSource};
use super::Call;

/// The resource whose token ARM accepts (IMDS `resource`, Entra ID `scope` + `/.default`).
const ARM_RESOURCE: &str = "https://management.azure.com/";

/// `GET {applicationId}?api-version=…` with the bearer token. `None` when the ID holds a
/// `.` or `..` segment, which no ARM name can be and a proxy would resolve.
pub fn application<'a>(check: &'a ArmCheck, application_id: &str, token: &str) -> Option<Call<'a>> {
    if application_id.split('/').any(|s| s == "." || s == "..") {
        return None;
    }
    let path = format!("{}?api-version={}", encode(application_id, |b| b == b'/' || b == b'(' || b == b')'), check.api_version);
    let headers = vec![
        (":method", "GET".to_string()),
        (":path", path),
        (":authority", check.arm_authority.clone()),
        ("authorization", format!("Bearer {token}")),
        ("accept", "application/json".to_string()),
    ];
    Some(Call { cluster: &check.arm_cluster, headers, body: None, timeout_ms: check.timeout_ms })
}

/// The token request of the endpoint's source: Entra ID's client credentials POST or the
/// instance metadata service's GET (which requires `Metadata: true`).
pub fn token(check: &ArmCheck) -> Call<'_> {
    let (method, path, body) = match &check.source {
        TokenSource::ClientCredentials { tenant, client_id, secret } => {
            let form = format!(
                "grant_type=client_credentials&client_id={}&client_secret={}&scope={}",
                encode(client_id, |_| false),
                encode(&secret.0, |_| false),
                encode(&format!("{ARM_RESOURCE}.default"), |_| false)
            );
            ("POST", format!("/{tenant}/oauth2/v2.0/token"), Some(form.into_bytes()))
        }
        TokenSource::ManagedIdentity { client_id } => {
            let mut path = format!("/metadata/identity/oauth2/token?api-version=2018-02-01&resource={}", encode(ARM_RESOURCE, |_| false));
            if let Some(id) = client_id {
                path.push_str("&client_id=");
                path.push_str(&encode(id, |_| false));
            }
            ("GET", path, None)
        }
    };
    let mut headers =
        vec![(":method", method.to_string()), (":path", path), (":authority", check.token_authority.clone()), ("accept", "application/json".to_string())];
    if body.is_some() {
        headers.push(("content-type", "application/x-www-form-urlencoded".to_string()));
    } else {
        headers.push(("metadata", "true".to_string()));
    }
    Call { cluster: &check.token_cluster, headers, body, timeout_ms: check.timeout_ms }
}

/// Percent-encodes every byte but RFC 3986's unreserved ones and those `keep` allows.
fn encode(value: &str, keep: impl Fn(u8) -> bool) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') || keep(b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::azure_managed_app::arm::config::RawArmCheck;

    fn check(source: &str) -> ArmCheck {
        let json = format!(r#"{{"arm_cluster":"arm","token_cluster":"login",{source}}}"#);
        let env = |_: &str| Some("a&b=c d+é".to_string());
        ArmCheck::validate(RawArmCheck::parse(&json).unwrap(), "azure", &env).unwrap()
    }

    fn header<'a>(call: &'a Call<'_>, name: &str) -> Option<&'a str> {
        call.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }

    const CLIENT: &str = r#""client_credentials":{"tenant":"t-1","client_id":"c-1","client_secret_env":"S"}"#;

    #[test]
    fn the_arm_get() {
        let c = check(CLIENT);
        let app = "/subscriptions/s-1/resourceGroups/rg (x)/providers/Microsoft.Solutions/applications/a?b#c";
        let call = application(&c, app, "tok").unwrap();
        assert_eq!(call.cluster, "arm");
        assert_eq!(header(&call, ":method"), Some("GET"));
        assert_eq!(
            header(&call, ":path"),
            Some("/subscriptions/s-1/resourceGroups/rg%20(x)/providers/Microsoft.Solutions/applications/a%3Fb%23c?api-version=2021-07-01")
        );
        assert_eq!(header(&call, ":authority"), Some("management.azure.com"));
        assert_eq!(header(&call, "authorization"), Some("Bearer tok"));
        assert!(call.body.is_none());
        assert!(application(&c, "/subscriptions/../x", "tok").is_none());
    }

    #[test]
    fn the_client_credentials_post() {
        let c = check(CLIENT);
        let call = token(&c);
        assert_eq!((call.cluster, header(&call, ":method"), header(&call, ":path")), ("login", Some("POST"), Some("/t-1/oauth2/v2.0/token")));
        assert_eq!(header(&call, ":authority"), Some("login.microsoftonline.com"));
        assert_eq!(header(&call, "content-type"), Some("application/x-www-form-urlencoded"));
        let body = String::from_utf8(call.body.unwrap()).unwrap();
        assert_eq!(
            body,
            "grant_type=client_credentials&client_id=c-1&client_secret=a%26b%3Dc%20d%2B%C3%A9&scope=https%3A%2F%2Fmanagement.azure.com%2F.default"
        );
    }

    #[test]
    fn the_metadata_get() {
        let c = check(r#""managed_identity":{"client_id":"u-1"}"#);
        let call = token(&c);
        assert_eq!(header(&call, ":method"), Some("GET"));
        assert_eq!(
            header(&call, ":path"),
            Some("/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fmanagement.azure.com%2F&client_id=u-1")
        );
        assert_eq!((header(&call, ":authority"), header(&call, "metadata")), (Some("169.254.169.254"), Some("true")));
        assert!(call.body.is_none());
    }
}
