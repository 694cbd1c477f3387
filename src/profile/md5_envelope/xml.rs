//! The XML envelope
//! `<notification><payload>...</payload><md5>hex</md5></notification>`.
//!
//! Rules, strict on purpose (hostile or malformed XML gets a clear 400, never a crash):
//! - UTF-8 only; an optional UTF-8 byte-order mark; an optional XML declaration, first,
//!   naming UTF-8 (another encoding is accepted only when the body is pure ASCII);
//! - no DOCTYPE (so no entity definitions at all), no processing instruction; comments
//!   are ignored, CDATA sections are text;
//! - text is unescaped for the five predefined entities and numeric character references
//!   only; any other `&name;` is refused;
//! - the root is `notification`, holding `payload` and `md5` exactly once each (other
//!   children are allowed and ignored); text directly in it must be whitespace;
//! - `payload` becomes a JSON object, members in document order: each child
//!   `<k>text</k>` becomes `"k": "text"`, an element with children becomes a nested
//!   object (whitespace between children is ignored, other text beside children is
//!   refused), an element name repeated among its siblings is refused, `<k/>` is
//!   `"k": ""`; leaf text is kept exactly (no trimming);
//! - scalar types: XML has none, so leaf text that is an integer written the way JSON and
//!   `to_json` write it (`-?(0|[1-9][0-9]*)`, within 64 bits, so it round-trips exactly)
//!   becomes a JSON number; everything else stays a string (`007`, `1.5`, `true`, `1e3`).
//!   So `<epoch_timestamp>1466526410</epoch_timestamp>` is the number it is in JSON;
//!   `payload.type`, a string by definition, always stays one;
//! - `md5` is text only; whitespace around it is ignored;
//! - attributes are ignored but must be well-formed, at most 32 per element;
//! - at most 16 levels of nesting (`notification` is level 1) and 256 elements in all;
//! - nothing but whitespace and comments after `</notification>`.
//!
//! The md5 covers the bytes between `<payload>` and `</payload>` exactly as sent, or the
//! converted payload as compact JSON (see `vendor`).

use quick_xml::errors::{Error as XmlError, IllFormedError};
use quick_xml::events::{BytesStart, Event as XmlEvent};
use quick_xml::Reader;
use serde::{Serialize, Serializer};

use serde_json::value::RawValue;

use super::{build_event, check_type, invalid, quote, verify_md5, Rejected};
use crate::event::Event;

const MAX_DEPTH: usize = 16;
const MAX_ELEMENTS: usize = 256;
const MAX_ATTRIBUTES: usize = 32;

const ROOT: &str = "notification";

/// An element's content as it goes into the JSON payload: text, or its children by name
/// in document order.
enum Node {
    /// Leaf text, a number when it is an integer (see [`integer`]).
    Text(String),
    /// Leaf text that stays a string whatever it holds: `payload.type`, a string in JSON.
    Name(String),
    Object(Vec<(String, Node)>),
}

impl Node {
    /// The child named `name`.
    fn get(&self, name: &str) -> Option<&Node> {
        match self {
            Node::Object(children) => children.iter().find(|(k, _)| k == name).map(|(_, v)| v),
            Node::Text(_) | Node::Name(_) => None,
        }
    }
}

impl Serialize for Node {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Node::Text(text) => match integer(text) {
                Some(n) => serializer.serialize_i64(n),
                None => serializer.serialize_str(text),
            },
            Node::Name(text) => serializer.serialize_str(text),
            Node::Object(children) => serializer.collect_map(children.iter().map(|(k, v)| (k, v))),
        }
    }
}

/// The integer `text` is when it round-trips exactly: written back, it is `text` again
/// (so no `+`, no leading zero, no `-0`), within `i64`.
fn integer(text: &str) -> Option<i64> {
    text.parse().ok().filter(|n: &i64| n.to_string() == text)
}

/// An open element.
struct Frame {
    name: String,
    children: Vec<(String, Node)>,
    text: String,
}

impl Frame {
    fn new(name: String) -> Frame {
        Frame { name, children: Vec::new(), text: String::new() }
    }
}

/// Where the reader is relative to the root element.
#[derive(PartialEq, Eq)]
enum Phase {
    Prolog,
    Root,
    Epilog,
}

/// What the envelope yields once well-formed.
struct Envelope<'a> {
    /// The payload element's content, and its raw bytes on the wire.
    payload: Option<(Node, &'a str)>,
    md5: Option<String>,
}

pub(super) fn parse(body: &[u8]) -> Result<Event, Rejected> {
    let text = std::str::from_utf8(body).map_err(|_| invalid("XML body is not valid UTF-8"))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let envelope = read_envelope(text)?;
    let (payload, raw) = envelope.payload.ok_or_else(|| invalid("notification has no payload element"))?;
    let converted = serde_json::to_string(&payload).map_err(|_| invalid("payload could not be converted to JSON"))?;
    let md5 = verify_md5(envelope.md5.as_deref(), raw.as_bytes(), Some(&converted))?;

    if !matches!(payload, Node::Object(_)) {
        return Err(invalid("payload must contain child elements"));
    }
    let kind = match payload.get("type") {
        None => return Err(invalid("payload.type is missing")),
        Some(Node::Text(s) | Node::Name(s)) => s.as_str(),
        Some(Node::Object(_)) => return Err(invalid("payload.type must be text, not child elements")),
    };
    check_type(kind)?;
    let epoch = match payload.get("epoch_timestamp") {
        None => None,
        Some(Node::Text(s) | Node::Name(s)) => Some(parse_i64(s).ok_or_else(|| invalid("payload.epoch_timestamp must be an integer number of Unix seconds"))?),
        Some(Node::Object(_)) => return Err(invalid("payload.epoch_timestamp must be an integer number of Unix seconds")),
    };
    let converted = RawValue::from_string(converted).map_err(|_| invalid("payload could not be converted to JSON"))?;
    build_event(kind, &md5, epoch, &converted)
}

/// An optional `-` then ASCII digits, fitting in an `i64`.
fn parse_i64(s: &str) -> Option<i64> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn is_xml_space(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

fn position(reader: &Reader<&[u8]>) -> usize {
    usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX)
}

/// `payload.a.b` for messages: the open elements below `notification`.
fn path(stack: &[Frame], leaf: Option<&str>) -> String {
    let names: Vec<&str> = stack.iter().skip(1).map(|f| f.name.as_str()).chain(leaf).collect();
    quote(&names.join("."))
}

fn read_envelope(text: &str) -> Result<Envelope<'_>, Rejected> {
    let mut reader = Reader::from_str(text);
    {
        let config = reader.config_mut();
        config.check_end_names = true;
        config.trim_markup_names_in_closing_tags = true;
        config.expand_empty_elements = false;
        config.allow_unmatched_ends = false;
        config.allow_dangling_amp = false;
        config.trim_text(false);
    }
    let mut phase = Phase::Prolog;
    let mut stack: Vec<Frame> = Vec::new();
    let mut elements = 0usize;
    let mut first = true;
    let mut payload_start: Option<usize> = None;
    let mut envelope = Envelope { payload: None, md5: None };

    loop {
        let before = position(&reader);
        let event = reader.read_event().map_err(|e| syntax(&e, &reader))?;
        let was_first = first;
        first = false;
        let is_empty = matches!(event, XmlEvent::Empty(_));
        match event {
            XmlEvent::Eof => {
                return match stack.last() {
                    Some(open) => Err(invalid(format!("malformed XML: element <{}> is not closed", quote(&open.name)))),
                    None if phase == Phase::Epilog => Ok(envelope),
                    None => Err(invalid("XML body has no root element")),
                };
            }
            XmlEvent::Decl(decl) => {
                if !was_first {
                    return Err(invalid("malformed XML: the XML declaration must come first"));
                }
                let version_ok = decl.version().is_ok_and(|v| v.strip_prefix("1.").is_some_and(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit())));
                if !version_ok {
                    return Err(invalid("malformed XML declaration"));
                }
                match decl.encoding() {
                    None => {}
                    Some(Ok(enc)) => {
                        let enc = enc.to_ascii_lowercase();
                        if enc != "utf-8" && enc != "utf8" && !text.is_ascii() {
                            return Err(invalid(format!("XML declares encoding {}: only UTF-8 is accepted", quote(&enc))));
                        }
                    }
                    Some(Err(_)) => return Err(invalid("malformed XML declaration")),
                }
            }
            XmlEvent::DocType(_) => {
                return Err(invalid("XML with a DOCTYPE is not accepted"));
            }
            XmlEvent::PI(_) => {
                return Err(invalid("XML processing instructions are not accepted"));
            }
            XmlEvent::Comment(_) => {}
            XmlEvent::Start(start) | XmlEvent::Empty(start) => {
                let name = element_name(&start)?;
                elements += 1;
                if elements > MAX_ELEMENTS {
                    return Err(invalid(format!("XML has more than {MAX_ELEMENTS} elements")));
                }
                match phase {
                    Phase::Epilog => {
                        return Err(invalid(format!("malformed XML: content after </{ROOT}>")));
                    }
                    Phase::Prolog if name != ROOT => {
                        return Err(invalid(format!("root element must be <{ROOT}>, not <{}>", quote(&name))));
                    }
                    Phase::Prolog | Phase::Root => {}
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(invalid(format!("XML nests elements more than {MAX_DEPTH} deep (at {})", path(&stack, Some(&name)))));
                }
                check_attributes(&start, &name)?;
                if phase == Phase::Prolog {
                    // <notification/> is well-formed, and lacks payload and md5.
                    phase = if is_empty { Phase::Epilog } else { Phase::Root };
                    if !is_empty {
                        stack.push(Frame::new(name));
                    }
                } else if is_empty {
                    close(&mut stack, &mut envelope, Frame::new(name), Some(""))?;
                } else {
                    if stack.len() == 1 && name == "payload" {
                        payload_start = Some(position(&reader));
                    }
                    stack.push(Frame::new(name));
                }
            }
            XmlEvent::End(_) => {
                // quick-xml has already checked that the name matches the open element.
                let Some(frame) = stack.pop() else {
                    return Err(invalid("malformed XML: unexpected closing tag"));
                };
                if stack.is_empty() {
                    phase = Phase::Epilog;
                    let Frame { text: t, .. } = frame;
                    if !is_xml_space(&t) {
                        return Err(invalid(format!("{ROOT} must contain elements only, not text")));
                    }
                    continue;
                }
                let raw = if stack.len() == 1 && frame.name == "payload" {
                    let start = payload_start.take().unwrap_or(before);
                    let closing = text.get(before..).unwrap_or("");
                    if !closing.starts_with("</") {
                        return Err(invalid("malformed XML: cannot locate </payload>"));
                    }
                    Some(text.get(start..before).ok_or_else(|| invalid("malformed XML: cannot locate the payload's content"))?)
                } else {
                    None
                };
                close(&mut stack, &mut envelope, frame, raw)?;
            }
            XmlEvent::Text(t) => {
                let content = t.xml10_content();
                match stack.last_mut() {
                    Some(frame) => frame.text.push_str(&content),
                    None if is_xml_space(&content) => {}
                    None => return Err(invalid(format!("malformed XML: text outside <{ROOT}>"))),
                }
            }
            XmlEvent::CData(c) => {
                let content = c.xml10_content();
                match stack.last_mut() {
                    Some(frame) => frame.text.push_str(&content),
                    None => return Err(invalid(format!("malformed XML: CDATA outside <{ROOT}>"))),
                }
            }
            XmlEvent::GeneralRef(r) => {
                let c = resolve_reference(&r)?;
                match stack.last_mut() {
                    Some(frame) => frame.text.push(c),
                    None => return Err(invalid(format!("malformed XML: text outside <{ROOT}>"))),
                }
            }
        }
    }
}

/// Closes `frame` (whose parent is on top of `stack`) and files its value.
fn close<'a>(stack: &mut [Frame], envelope: &mut Envelope<'a>, frame: Frame, raw_payload: Option<&'a str>) -> Result<(), Rejected> {
    let depth = stack.len();
    let here = path(stack, Some(&frame.name));
    let Frame { name, children, text } = frame;
    let value = if children.is_empty() && depth == 2 && name == "type" {
        Node::Name(text)
    } else if children.is_empty() {
        Node::Text(text)
    } else if is_xml_space(&text) {
        Node::Object(children)
    } else {
        return Err(invalid(format!("{here} mixes text with child elements")));
    };
    if depth == 1 {
        // A child of <notification>.
        match name.as_str() {
            "payload" => {
                if envelope.payload.is_some() {
                    return Err(invalid("notification has more than one payload element"));
                }
                envelope.payload = Some((value, raw_payload.unwrap_or("")));
            }
            "md5" => {
                if envelope.md5.is_some() {
                    return Err(invalid("notification has more than one md5 element"));
                }
                let Node::Text(s) = value else {
                    return Err(Rejected::Digest("md5 must be text of 32 hexadecimal digits".into()));
                };
                let trimmed = s.trim_matches(|c| matches!(c, ' ' | '\t' | '\r' | '\n'));
                envelope.md5 = Some(trimmed.to_string());
            }
            _ => {}
        }
        return Ok(());
    }
    let Some(parent) = stack.last_mut() else {
        return Ok(());
    };
    if parent.children.iter().any(|(k, _)| *k == name) {
        return Err(invalid(format!("{here} is repeated (each element name may appear once per parent)")));
    }
    parent.children.push((name, value));
    Ok(())
}

fn element_name(start: &BytesStart<'_>) -> Result<String, Rejected> {
    let name = start.name();
    let name: &str = name.as_ref();
    let mut chars = name.chars();
    let starts_well = chars.next().is_some_and(|c| c.is_alphabetic() || c == '_' || c == ':');
    if !starts_well || !chars.all(|c| c.is_alphanumeric() || matches!(c, '_' | ':' | '-' | '.' | '\u{b7}')) {
        return Err(invalid(format!("malformed XML: <{}> is not a valid element name", quote(name))));
    }
    Ok(name.to_string())
}

/// Attributes are ignored, but must be well-formed and at most `MAX_ATTRIBUTES`.
fn check_attributes(start: &BytesStart<'_>, name: &str) -> Result<(), Rejected> {
    for (i, attr) in start.attributes().enumerate() {
        if i >= MAX_ATTRIBUTES {
            return Err(invalid(format!("element <{}> has more than {MAX_ATTRIBUTES} attributes", quote(name))));
        }
        if attr.is_err() {
            return Err(invalid(format!("malformed XML: bad attribute on <{}>", quote(name))));
        }
    }
    Ok(())
}

/// `&lt;` and the other four predefined entities, and character references.
fn resolve_reference(r: &quick_xml::events::BytesRef<'_>) -> Result<char, Rejected> {
    if r.is_char_ref() {
        let c = match r.resolve_char_ref() {
            Ok(Some(c)) => c,
            _ => return Err(invalid("malformed XML: bad character reference")),
        };
        let legal = matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{fffe}' && c != '\u{ffff}');
        if !legal {
            return Err(invalid("malformed XML: character reference to a character XML forbids"));
        }
        return Ok(c);
    }
    let name: &str = r;
    match name {
        "lt" => Ok('<'),
        "gt" => Ok('>'),
        "amp" => Ok('&'),
        "apos" => Ok('\''),
        "quot" => Ok('"'),
        other => Err(invalid(format!("XML entity &{}; is not accepted (only the 5 predefined ones)", quote(other)))),
    }
}

/// A short `detail` for a quick-xml error, without parser internals.
fn syntax(e: &XmlError, reader: &Reader<&[u8]>) -> Rejected {
    let at = reader.error_position();
    match e {
        XmlError::IllFormed(IllFormedError::MismatchedEndTag { expected, found }) => {
            invalid(format!("malformed XML: <{}> is closed by </{}>", quote(expected), quote(found)))
        }
        XmlError::IllFormed(IllFormedError::UnmatchedEndTag(name)) => invalid(format!("malformed XML: </{}> closes no open element", quote(name))),
        XmlError::IllFormed(IllFormedError::MissingEndTag(name)) => invalid(format!("malformed XML: element <{}> is not closed", quote(name))),
        XmlError::IllFormed(IllFormedError::UnclosedReference) => invalid(format!("malformed XML: unterminated '&' reference at byte {at}")),
        XmlError::IllFormed(IllFormedError::MissingDeclVersion(_) | IllFormedError::UnknownVersion) => invalid("malformed XML declaration"),
        XmlError::IllFormed(IllFormedError::MissingDoctypeName) => invalid("XML with a DOCTYPE is not accepted"),
        XmlError::Syntax(s) => invalid(format!("malformed XML at byte {at}: {s}")),
        XmlError::InvalidAttr(_) => invalid(format!("malformed XML: bad attribute at byte {at}")),
        XmlError::Encoding(_) => invalid("XML body is not valid UTF-8"),
        XmlError::Escape(_) => invalid(format!("malformed XML: bad reference at byte {at}")),
        _ => invalid(format!("malformed XML at byte {at}")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{assert_ping_data, md5_hex, refusal_detail};
    use super::*;
    use serde_json::Value;
    use std::time::{Duration, Instant};

    const PING: &str = "<type>ping</type><epoch_timestamp>1466526410</epoch_timestamp>";

    fn doc(payload: &str, md5: &str) -> String {
        format!("<notification><payload>{payload}</payload><md5>{md5}</md5></notification>")
    }

    fn signed(payload: &str) -> String {
        doc(payload, &md5_hex(payload.as_bytes()))
    }

    fn invalid_detail(body: &str) -> String {
        refusal_detail(parse, body, false)
    }

    fn digest_detail(body: &str) -> String {
        refusal_detail(parse, body, true)
    }

    #[test]
    fn spec_ping_is_accepted() {
        let md5 = md5_hex(PING.as_bytes());
        let ev = parse(signed(PING).as_bytes()).unwrap();
        assert_eq!(ev.kind, "webhookguard.vendor.ping");
        assert_eq!(ev.id, crate::event::name_based_id(&format!("md5_envelope\nping\n{md5}")));
        assert_eq!(ev.subject, None);
        assert_eq!(ev.time, crate::timestamp::rfc3339_from_unix(1_466_526_410));
        assert!(ev.time.is_some());
    }

    #[test]
    fn exact_data_output() {
        assert_ping_data(&parse(signed(PING).as_bytes()).unwrap(), PING);
    }

    #[test]
    fn retries_of_a_notification_get_the_same_id() {
        // Ids depend on type and md5 only, so a retry of the same bytes keeps its id.
        let ev = parse(signed(PING).as_bytes()).unwrap();
        let again = parse(signed(PING).as_bytes()).unwrap();
        assert_eq!(ev.id, again.id);
    }

    #[test]
    fn purchase_with_nested_elements_is_accepted() {
        let p = "\n  <type>SKU_Purchase</type>\n  <sku>\n    <id>gold</id>\n    <qty>3</qty>\n  </sku>\n  <empty/>\n  <note>a &lt;b&gt; &amp; &quot;c&quot; &apos;d&apos; &#233;&#x4E2D;</note>\n  <raw><![CDATA[<not> & markup]]></raw>\n";
        let ev = parse(signed(p).as_bytes()).unwrap();
        assert_eq!(ev.kind, "webhookguard.vendor.sku_purchase");
        assert_eq!(ev.time, None);
        let data: Value = serde_json::from_str(ev.data.get()).unwrap();
        assert_eq!(data["payloadType"], "SKU_Purchase");
        assert_eq!(
            data["payload"],
            serde_json::json!({
                "type": "SKU_Purchase",
                "sku": {"id": "gold", "qty": 3},
                "empty": "",
                "note": "a <b> & \"c\" 'd' é中",
                "raw": "<not> & markup",
            })
        );
        assert!(data.get("epochTimestamp").is_none());
    }

    #[test]
    fn declaration_bom_comments_and_attributes_are_accepted() {
        let p = "<!-- c --><type kind=\"x\">ping</type>";
        let body = format!(
            "\u{feff}<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- hello -->\n<notification xmlns=\"urn:x\" v='1'>\n <payload a=\"1\">{p}</payload>\n <md5>\n  {}\n </md5>\n <extra><x>ignored</x></extra>\n</notification>\n<!-- bye -->\n",
            md5_hex(p.as_bytes())
        );
        let ev = parse(body.as_bytes()).unwrap();
        assert_eq!(ev.kind, "webhookguard.vendor.ping");
        // ASCII body declared as ISO-8859-1: the bytes read the same.
        let body = format!("<?xml version='1.0' encoding='ISO-8859-1'?>{}", signed(PING));
        parse(body.as_bytes()).unwrap();
        let body = format!("<?xml version='1.0' encoding='ISO-8859-1'?>{}", signed("<type>ping</type><n>é</n>"));
        assert!(invalid_detail(&body).contains("only UTF-8"));
    }

    #[test]
    fn uppercase_md5_is_accepted_and_lowercased() {
        let md5 = md5_hex(PING.as_bytes());
        let ev = parse(doc(PING, &md5.to_ascii_uppercase()).as_bytes()).unwrap();
        let data: Value = serde_json::from_str(ev.data.get()).unwrap();
        assert_eq!(data["md5"], md5.as_str());
        assert_eq!(ev.id, parse(signed(PING).as_bytes()).unwrap().id);
    }

    #[test]
    fn wrong_missing_or_malformed_md5_is_a_digest_rejection() {
        let d = digest_detail(&doc(PING, &md5_hex(b"other")));
        assert_eq!(d, "md5 does not match the payload");
        let body = format!("<notification><payload>{PING}</payload></notification>");
        assert_eq!(digest_detail(&body), "md5 is missing");
        digest_detail(&doc(PING, ""));
        digest_detail(&doc(PING, "0123"));
        digest_detail(&doc(PING, "<a>0123</a>"));
        digest_detail(&doc(PING, &"g".repeat(32)));
    }

    #[test]
    fn digest_covers_the_payload_bytes_exactly_as_sent() {
        let p = "\r\n  <type>ping</type> <!-- x -->\n\t<epoch_timestamp>1466526410</epoch_timestamp>\n  <n>&amp;&#65;<![CDATA[]]></n>  ";
        parse(signed(p).as_bytes()).unwrap();
        // Any normalisation (unescaping, trimming, line ends) would give another digest.
        let normalised = "<type>ping</type><epoch_timestamp>1466526410</epoch_timestamp><n>&amp;A</n>";
        digest_detail(&doc(p, &md5_hex(normalised.as_bytes())));
        digest_detail(&doc(p, &md5_hex(p.trim().as_bytes())));
    }

    #[test]
    fn vendor_sample_with_mismatched_tag_is_invalid_with_a_clear_message() {
        let body = "<notification><payload><type>ping</type><epoch_timestamp>1466526410</timestamp></payload><md5>d41d8cd98f00b204e9800998ecf8427e</md5></notification>";
        assert_eq!(invalid_detail(body), "malformed XML: <epoch_timestamp> is closed by </timestamp>");
    }

    #[test]
    fn unclosed_tags_are_invalid() {
        for body in [
            "<notification><payload><type>ping</type>",
            "<notification><payload><type>ping</type></payload>",
            "<notification>",
            "<notification><payload><type>ping",
            "<notification><payload><type",
            "<notification><payload><type a=\"x",
            "<notification><!-- ",
            "<notification><![CDATA[",
        ] {
            let d = invalid_detail(body);
            assert!(d.starts_with("malformed XML"), "{body}: {d}");
        }
        let d = invalid_detail("<notification><payload><type>ping</type>");
        assert!(d.contains("not closed"), "{d}");
    }

    #[test]
    fn doctype_with_entities_is_rejected_fast() {
        let mut dtd = String::from("<!DOCTYPE lolz [<!ENTITY lol \"lol\">");
        dtd.push_str("<!ENTITY lol1 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">");
        for i in 2..10 {
            dtd.push_str(&format!("<!ENTITY lol{i} \"{}\">", format!("&lol{};", i - 1).repeat(10)));
        }
        dtd.push_str("]>");
        let body = format!("<?xml version=\"1.0\"?>{dtd}{}", signed("<type>&lol9;</type>"));
        let t = Instant::now();
        assert_eq!(invalid_detail(&body), "XML with a DOCTYPE is not accepted");
        assert!(t.elapsed() < Duration::from_secs(1));
        // Without a DOCTYPE, undefined entities are refused, not expanded.
        let d = invalid_detail(&signed("<type>&lol9;</type>"));
        assert!(d.contains("&lol9;"), "{d}");
        // External entities cannot be declared either.
        let body = format!("<!DOCTYPE n [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>{}", signed("<type>&x;</type>"));
        invalid_detail(&body);
    }

    #[test]
    fn too_many_attributes_are_rejected() {
        let attrs: String = (0..10_000).map(|i| format!(" a{i}=\"v\"")).collect();
        let body = signed(&format!("<type{attrs}>ping</type>"));
        let t = Instant::now();
        let d = invalid_detail(&body);
        assert!(d.contains("more than 32 attributes"), "{d}");
        assert!(t.elapsed() < Duration::from_secs(1));
        let attrs: String = (0..32).map(|i| format!(" a{i}=\"v\"")).collect();
        parse(signed(&format!("<type{attrs}>ping</type>")).as_bytes()).unwrap();
        invalid_detail(&signed("<type a=\"1\" a=\"2\">ping</type>"));
        invalid_detail(&signed("<type a>ping</type>"));
    }

    #[test]
    fn deep_nesting_and_many_elements_are_rejected() {
        // notification(1) > payload(2) > 14 levels = 16: accepted; one more: refused.
        let nest = |n: usize| {
            let open: String = (0..n).map(|i| format!("<l{i}>")).collect();
            let close: String = (0..n).rev().map(|i| format!("</l{i}>")).collect();
            format!("<type>ping</type>{open}x{close}")
        };
        parse(signed(&nest(14)).as_bytes()).unwrap();
        assert!(invalid_detail(&signed(&nest(15))).contains("more than 16 deep"));
        let deep = signed(&nest(100_000));
        let t = Instant::now();
        invalid_detail(&deep);
        assert!(t.elapsed() < Duration::from_secs(1));
        let many: String = (0..300).map(|i| format!("<e{i}/>")).collect();
        assert!(invalid_detail(&signed(&format!("<type>ping</type>{many}"))).contains("256"));
    }

    #[test]
    fn structure_rules() {
        let cases = [
            (signed("<type>ping</type><type>x</type>"), "payload.type is repeated"),
            (signed("<type>ping</type><a><b/><b/></a>"), "payload.a.b is repeated"),
            (signed("<type>ping</type><a>text<b/></a>"), "payload.a mixes text"),
            (format!("{}<x/>", signed(PING)), "content after"),
            (format!("{} junk", signed(PING)), "text outside"),
            (format!("junk{}", signed(PING)), "text outside"),
            (format!("<?pi x?>{}", signed(PING)), "processing instructions"),
            (signed("<?pi x?><type>ping</type>"), "processing instructions"),
            (format!(" <?xml version=\"1.0\"?>{}", signed(PING)), "must come first"),
            ("<root/>".to_string(), "root element must be <notification>"),
            ("<notification/>".to_string(), "no payload"),
            ("".to_string(), "no root element"),
            ("<notification><md5>x</md5></notification>".to_string(), "no payload"),
            (
                format!(
                    "<notification>{}<payload>{PING}</payload><md5>{}</md5></notification>",
                    "<payload><type>ping</type></payload>",
                    md5_hex(PING.as_bytes())
                ),
                "more than one payload",
            ),
            (
                format!("<notification>hello<payload>{PING}</payload><md5>{}</md5></notification>", md5_hex(PING.as_bytes())),
                "notification must contain elements only",
            ),
            (signed("<type>&#0;</type>"), "bad character reference"),
            (signed("<type>&#1;</type>"), "forbids"),
            (signed("<type>a & b</type>"), "malformed XML"),
            (signed("<type>ping</type><</x>"), "not a valid element name"),
            (signed("<type>ping</type><1a/>"), "not a valid element name"),
            (signed("<type>ping</type><a;b/>"), "not a valid element name"),
            (format!("<?xml version=\"2.0\"?>{}", signed(PING)), "malformed XML declaration"),
            (format!("<?xml?>{}", signed(PING)), "malformed XML declaration"),
        ];
        for (body, want) in cases {
            let d = invalid_detail(&body);
            assert!(d.contains(want), "{body}: {d}");
        }
        let md5 = md5_hex(PING.as_bytes());
        let body = format!("<notification><payload>{PING}</payload><md5>{md5}</md5><md5>{md5}</md5></notification>");
        assert!(invalid_detail(&body).contains("more than one md5"));
        assert!(matches!(parse(b"<notification>\xff</notification>"), Err(Rejected::Invalid(_))));
    }

    #[test]
    fn payload_must_have_child_elements() {
        assert_eq!(invalid_detail(&signed("ping")), "payload must contain child elements");
        assert_eq!(invalid_detail(&signed("")), "payload must contain child elements");
        let body = format!("<notification><payload/><md5>{}</md5></notification>", md5_hex(b""));
        assert_eq!(invalid_detail(&body), "payload must contain child elements");
    }

    #[test]
    fn type_must_be_valid_text() {
        assert_eq!(invalid_detail(&signed("<epoch_timestamp>1</epoch_timestamp>")), "payload.type is missing");
        assert!(invalid_detail(&signed("<type><a>ping</a></type>")).starts_with("payload.type must be text"));
        for p in ["<type/>", "<type> ping</type>", "<type>a/b</type>"] {
            assert!(invalid_detail(&signed(p)).starts_with("payload.type"), "{p}");
        }
    }

    #[test]
    fn epoch_timestamp_must_be_an_integer() {
        for v in ["1466526410.0", "", " 1", "+1", "-", "1e9", "abc", "99999999999999999999", "<a>1</a>"] {
            let p = format!("<type>ping</type><epoch_timestamp>{v}</epoch_timestamp>");
            assert!(invalid_detail(&signed(&p)).starts_with("payload.epoch_timestamp"), "{v}");
        }
        let p = "<type>ping</type><epoch_timestamp>-1</epoch_timestamp>";
        let ev = parse(signed(p).as_bytes()).unwrap();
        assert_eq!(ev.time, crate::timestamp::rfc3339_from_unix(-1));
    }

    #[test]
    fn digest_may_cover_the_payload_as_compact_json() {
        let p = "\n  <type>purchase</type>\n  <epoch_timestamp>1466526410</epoch_timestamp>\n  <note>a &lt; b</note>\n";
        let json = r#"{"type":"purchase","epoch_timestamp":1466526410,"note":"a < b"}"#;
        let rails = json.replace('<', "\\u003c");
        for basis in [p, json, &rails] {
            let ev = parse(doc(p, &md5_hex(basis.as_bytes())).as_bytes()).unwrap();
            assert!(ev.data.get().ends_with(&format!(r#""payload":{json}}}"#)), "{}", ev.data.get());
        }
        digest_detail(&doc(p, &md5_hex(p.trim().as_bytes())));
    }

    #[test]
    fn only_integers_that_round_trip_become_numbers() {
        for (text, want) in [("0", Some(0)), ("-12", Some(-12)), ("9223372036854775807", Some(i64::MAX))] {
            assert_eq!(integer(text), want, "{text}");
        }
        for text in ["", "-", "-0", "007", "+1", "1.0", "1e3", " 1", "true", "9223372036854775808", "１"] {
            assert_eq!(integer(text), None, "{text}");
        }
        let ev = parse(signed("<type>42</type><n>42</n>").as_bytes()).unwrap();
        assert!(ev.data.get().ends_with(r#""payload":{"type":"42","n":42}}"#), "{}", ev.data.get());
    }
}
