//! Classifying a request's `content-type` into the payload syntaxes the profiles read.

/// A payload syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Media {
    Json,
    Xml,
    Form,
}

impl Media {
    /// The syntax of a `content-type` value; parameters (`; charset=utf-8`) are ignored
    /// and a missing header is read as JSON. `None` means unsupported.
    pub fn classify(content_type: Option<&str>) -> Option<Media> {
        let Some(value) = content_type else {
            return Some(Media::Json);
        };
        let essence = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        let (kind, sub) = essence.split_once('/')?;
        match (kind, sub) {
            ("application", "json") => Some(Media::Json),
            ("application", s) if s.ends_with("+json") && s.len() > 5 => Some(Media::Json),
            ("application" | "text", "xml") => Some(Media::Xml),
            ("application", s) if s.ends_with("+xml") && s.len() > 4 => Some(Media::Xml),
            ("application", "x-www-form-urlencoded") => Some(Media::Form),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_content_types() {
        let cases = [
            (None, Some(Media::Json)),
            (Some("application/json"), Some(Media::Json)),
            (Some("Application/JSON; charset=utf-8"), Some(Media::Json)),
            (Some("application/cloudevents+json"), Some(Media::Json)),
            (Some("application/+json"), None),
            (Some("text/xml; charset=UTF-8"), Some(Media::Xml)),
            (Some("application/xml"), Some(Media::Xml)),
            (Some("application/atom+xml"), Some(Media::Xml)),
            (Some("application/x-www-form-urlencoded"), Some(Media::Form)),
            (Some("multipart/form-data; boundary=x"), None),
            (Some("text/plain"), None),
            (Some(""), None),
            (Some("json"), None),
        ];
        for (ct, want) in cases {
            assert_eq!(Media::classify(ct), want, "{ct:?}");
        }
    }
}
