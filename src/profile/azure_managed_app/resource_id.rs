//! Azure Resource Manager IDs of managed applications and their definitions.
//!
//! ARM compares segment names case-insensitively and real IDs start with `/` while the
//! documentation's samples do not, so both are accepted, and one trailing `/`;
//! [`ResourceId::canonical`] gives one spelling for ids, subjects and rate-limit keys.

/// Longest accepted subscription, resource group or name (ARM's own limits are lower).
const MAX_VALUE_CHARS: usize = 256;

/// The `Microsoft.Solutions` resource type an ID must name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Application,
    ApplicationDefinition,
}

impl Kind {
    /// The resource type segment in ARM's canonical spelling.
    pub fn segment(self) -> &'static str {
        match self {
            Kind::Application => "applications",
            Kind::ApplicationDefinition => "applicationDefinitions",
        }
    }

    /// What an ID of this kind looks like, for error messages.
    pub fn describe(self) -> &'static str {
        match self {
            Kind::Application => "a managed application resource ID (subscriptions/{id}/resourceGroups/{rg}/providers/Microsoft.Solutions/applications/{name})",
            Kind::ApplicationDefinition => {
                "an application definition resource ID (subscriptions/{id}/resourceGroups/{rg}/providers/Microsoft.Solutions/applicationDefinitions/{name})"
            }
        }
    }
}

/// A parsed ID; the values borrow from the input, as given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceId<'a> {
    pub kind: Kind,
    pub subscription: &'a str,
    pub resource_group: &'a str,
    pub name: &'a str,
}

impl<'a> ResourceId<'a> {
    /// Parses `[/]subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Solutions/{kind}/{name}`.
    /// The subscription need not be a GUID: the documentation's samples use `<subId>`.
    /// The error describes the broken rule, without the field name.
    pub fn parse(s: &'a str, kind: Kind) -> Result<Self, String> {
        // One trailing `/` is tolerated, as ARM tolerates it in request paths.
        let s = s.strip_suffix('/').unwrap_or(s);
        let body = s.strip_prefix('/').unwrap_or(s);
        if let Some(id) = Self::canonical_spelling(body, kind) {
            return id;
        }
        if body.is_empty() {
            return Err("is empty".into());
        }
        let mut parts = segments(body);
        let mut seg = [""; 8];
        for slot in seg.iter_mut() {
            let part = parts.next().ok_or("has too few segments (expected 8)")?;
            if part.is_empty() {
                return Err("has an empty segment".into());
            }
            *slot = part;
        }
        if parts.next().is_some() {
            return Err("has too many segments (expected 8)".into());
        }
        let [subs, subscription, rgs, resource_group, providers, namespace, kind_seg, name] = seg;
        let literals = [
            (1, subs, "subscriptions"),
            (3, rgs, "resourceGroups"),
            (5, providers, "providers"),
            (6, namespace, "Microsoft.Solutions"),
            (7, kind_seg, kind.segment()),
        ];
        for (position, got, want) in literals {
            if !got.eq_ignore_ascii_case(want) {
                return Err(format!("segment {position} must be '{want}'"));
            }
        }
        Self::with_values(kind, subscription, resource_group, name)
    }

    /// The ID of these values, once each is checked.
    fn with_values(kind: Kind, subscription: &'a str, resource_group: &'a str, name: &'a str) -> Result<Self, String> {
        for (label, value) in [("subscription", subscription), ("resource group", resource_group), ("name", name)] {
            check_value(label, value)?;
        }
        Ok(ResourceId { kind, subscription, resource_group, name })
    }

    /// `body` (without its leading and trailing `/`) when it spells the segment names as
    /// ARM does, the usual case: three exact prefixes and two `/` found, instead of eight
    /// segments split and compared ignoring case. `None` for any other shape, which the
    /// general reading of [`ResourceId::parse`] judges; the values are checked alike.
    fn canonical_spelling(body: &'a str, kind: Kind) -> Option<Result<Self, String>> {
        let rest = body.strip_prefix("subscriptions/")?;
        let (subscription, rest) = rest.split_once('/')?;
        let rest = rest.strip_prefix("resourceGroups/")?;
        let (resource_group, rest) = rest.split_once('/')?;
        let name = rest.strip_prefix("providers/Microsoft.Solutions/")?.strip_prefix(kind.segment())?.strip_prefix('/')?;
        if subscription.is_empty() || resource_group.is_empty() || name.is_empty() || name.contains('/') {
            return None;
        }
        Some(Self::with_values(kind, subscription, resource_group, name))
    }

    /// `/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Solutions/{kind}/{name}`
    /// with canonical segment names and the values as given.
    pub fn canonical(&self) -> String {
        // concat sizes the string once; format! grows it piece by piece.
        ["/subscriptions/", self.subscription, "/resourceGroups/", self.resource_group, "/providers/Microsoft.Solutions/", self.kind.segment(), "/", self.name]
            .concat()
    }
}

/// `s` split at every `/`, like `s.split('/')`, which calls memchr once per segment: slow
/// on segments this short.
fn segments(s: &str) -> impl Iterator<Item = &str> {
    let mut start = 0;
    let slashes = s.bytes().enumerate().filter(|(_, b)| *b == b'/').map(|(i, _)| i);
    slashes.chain(std::iter::once(s.len())).map(move |end| {
        let part = s.get(start..end).unwrap_or_default();
        start = end + 1;
        part
    })
}

/// Rejects what would make the ID ambiguous once it is put in a URL or a log line.
fn check_value(label: &str, value: &str) -> Result<(), String> {
    if super::longer_than(value, MAX_VALUE_CHARS) {
        return Err(format!("{label} is longer than {MAX_VALUE_CHARS} characters"));
    }
    // Printable ASCII but for '?' and '#' (the usual case) passes in one pass over the bytes.
    if !value.bytes().any(|b| b <= b' ' || b >= 0x7f || b == b'?' || b == b'#') {
        return Ok(());
    }
    // ASCII is checked byte by byte, without decoding characters.
    let refused = if value.is_ascii() {
        value.bytes().any(|b| b <= b' ' || b == 0x7f || b == b'?' || b == b'#')
    } else {
        value.chars().any(|c| c.is_control() || c.is_whitespace() || c == '?' || c == '#')
    };
    if refused {
        return Err(format!("{label} contains whitespace, a control character, '?' or '#'"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Solutions/applications/app";

    #[test]
    fn parses_both_kinds_with_and_without_leading_slash() {
        let trailing = format!("{APP}/");
        for input in [APP, APP.strip_prefix('/').unwrap(), &trailing, &trailing[1..]] {
            let id = ResourceId::parse(input, Kind::Application).unwrap();
            assert_eq!(id, ResourceId { kind: Kind::Application, subscription: "s", resource_group: "rg", name: "app" });
            assert_eq!(id.canonical(), APP);
        }
        let def = "subscriptions/<subId>/resourceGroups/<rgName>/providers/Microsoft.Solutions/applicationDefinitions/<appDefName>";
        let id = ResourceId::parse(def, Kind::ApplicationDefinition).unwrap();
        assert_eq!(id.subscription, "<subId>");
        assert_eq!(id.resource_group, "<rgName>");
        assert_eq!(id.name, "<appDefName>");
        assert_eq!(id.canonical(), format!("/{def}"));
    }

    #[test]
    fn segment_names_are_case_insensitive_and_values_kept() {
        let input = "SUBSCRIPTIONS/0b88dfdb-55b3-4fb0-b474-5b6dcbe6b2ef/resourcegroups/My-RG/PROVIDERS/microsoft.solutions/APPLICATIONS/Mixed.Name_1(x)";
        let id = ResourceId::parse(input, Kind::Application).unwrap();
        assert_eq!(
            id.canonical(),
            "/subscriptions/0b88dfdb-55b3-4fb0-b474-5b6dcbe6b2ef/resourceGroups/My-RG/providers/Microsoft.Solutions/applications/Mixed.Name_1(x)"
        );
        let def = "/subscriptions/s/resourcegroups/rg/providers/Microsoft.Solutions/APPLICATIONDEFINITIONS/d";
        assert_eq!(
            ResourceId::parse(def, Kind::ApplicationDefinition).unwrap().canonical(),
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Solutions/applicationDefinitions/d"
        );
    }

    #[test]
    fn accepts_unicode_names_and_256_characters() {
        let long = "é".repeat(256);
        let input = format!("/subscriptions/s/resourceGroups/grüße/providers/Microsoft.Solutions/applications/{long}");
        let id = ResourceId::parse(&input, Kind::Application).unwrap();
        assert_eq!(id.resource_group, "grüße");
        assert_eq!(id.name, long);
    }

    #[test]
    fn rejects_with_the_broken_rule() {
        let long = "a".repeat(257);
        let p = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Solutions/applications";
        let cases = [
            (String::new(), "is empty"),
            ("subscriptions".into(), "too few segments"),
            ("/".into(), "is empty"),
            (format!("{APP}//"), "has too many segments"),
            (format!("/{APP}"), "empty segment"),
            (APP.replace("/rg/", "//"), "empty segment"),
            (p.into(), "too few segments"),
            (format!("{APP}/x"), "too many segments"),
            (APP.replace("subscriptions", "subscription"), "segment 1 must be 'subscriptions'"),
            (APP.replace("resourceGroups", "resourceGroup"), "segment 3 must be 'resourceGroups'"),
            (APP.replace("providers", "provider"), "segment 5 must be 'providers'"),
            (APP.replace("Microsoft.Solutions", "Microsoft.Web"), "segment 6 must be 'Microsoft.Solutions'"),
            (APP.replace("applications", "applicationDefinitions"), "segment 7 must be 'applications'"),
            (APP.replace("/s/", &format!("/{long}/")), "subscription is longer than 256"),
            (APP.replace("/rg/", &format!("/{long}/")), "resource group is longer than 256"),
            (format!("{p}/{long}"), "name is longer than 256"),
            (APP.replace("/s/", "/a b/"), "subscription contains whitespace"),
            (APP.replace("/rg/", "/r\tg/"), "resource group contains whitespace"),
            (format!("{p}/a?b=c"), "name contains"),
            (format!("{p}/a#b"), "name contains"),
            (format!("{p}/a\u{0}"), "name contains"),
            (format!("{p}/a\u{85}"), "name contains"),
            (format!("{p}/a\u{3000}"), "name contains"),
        ];
        for (input, want) in cases {
            let err = ResourceId::parse(&input, Kind::Application).unwrap_err();
            assert!(err.contains(want), "{input:?}: {err}");
        }
        let err = ResourceId::parse(APP, Kind::ApplicationDefinition).unwrap_err();
        assert_eq!(err, "segment 7 must be 'applicationDefinitions'");
    }

    /// `input` reads as it does with `Subscriptions`, a spelling only the general reading takes.
    fn assert_read_alike(input: &str, kind: Kind) {
        let spelled = input.replacen("subscriptions/", "Subscriptions/", 1);
        assert!(ResourceId::canonical_spelling(spelled.trim_matches('/'), kind).is_none());
        let owned = |id: ResourceId| (id.kind, id.subscription.to_string(), id.resource_group.to_string(), id.name.to_string());
        assert_eq!(ResourceId::parse(input, kind).map(owned), ResourceId::parse(&spelled, kind).map(owned), "{input}");
    }

    #[test]
    fn a_value_of_one_refused_character_is_refused() {
        // Alone, so that the printable-ASCII shortcut cannot pass it on another byte's account.
        // And next to a non-ASCII character, which the general check reads by characters.
        for value in [" ", "\t", "\u{7f}", "?", "#", "\u{85}", "\u{3000}", "é ", "é\t", "é?", "é#"] {
            assert!(check_value("name", value).is_err(), "{value:?}");
        }
        for value in ["a", "~", "é", "grüße"] {
            assert_eq!(check_value("name", value), Ok(()), "{value:?}");
        }
    }

    #[test]
    fn the_canonical_spelling_reads_as_any_other() {
        let long = "a".repeat(257);
        let p = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Solutions/applications";
        let inputs = [
            APP.to_string(),
            format!("{APP}/"),
            APP[1..].to_string(),
            format!("{APP}/x"),
            format!("{APP}//"),
            format!("/{APP}"),
            APP.replace("/rg/", "//"),
            APP.replace("/s/", "//"),
            format!("{p}/"),
            p.to_string(),
            APP.replace("/s/", &format!("/{long}/")),
            format!("{p}/{long}"),
            APP.replace("/rg/", "/r\tg/"),
            format!("{p}/a?b"),
            format!("{p}/é\u{3000}"),
            format!("{p}/grüße"),
        ];
        for input in &inputs {
            for kind in [Kind::Application, Kind::ApplicationDefinition] {
                assert_read_alike(input, kind);
            }
        }
    }

    #[test]
    fn segments_split_like_split() {
        for s in ["", "/", "a", "a/b", "/a//b/", "é/ü/", "subscriptions/x/resourceGroups/y"] {
            assert_eq!(segments(s).collect::<Vec<_>>(), s.split('/').collect::<Vec<_>>(), "{s}");
        }
    }
}
