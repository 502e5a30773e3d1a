//! Parsing of what Feishu POSTs: an `{"encrypt": ...}` wrapper, a url_verification challenge,
//! or a schema 2.0 / 1.0 event envelope (events.md §2.6, §3).

use serde::Deserialize;

/// Why a body is not a Feishu request we understand.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("body is not a JSON object: {0}")]
    Json(String),
    #[error("body is neither an event envelope (schema 2.0 or 1.0) nor a url_verification")]
    Unrecognised,
    #[error("event envelope lacks {0}")]
    Missing(&'static str),
    #[error("event envelope's {0} is longer than {MAX_FIELD_BYTES} bytes")]
    TooLong(&'static str),
}

/// The longest event id, event type, app id, tenant key or create time accepted. Feishu's are
/// 10 to 64 bytes; they travel in AMQP short strings (255 bytes, the routing key
/// `<app_id>.<event_type>` included), so a longer one could never be published.
pub const MAX_FIELD_BYTES: usize = 120;

/// Envelope schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    V2,
    V1,
}

impl Schema {
    pub fn as_str(self) -> &'static str {
        match self {
            Schema::V2 => "2.0",
            Schema::V1 => "1.0",
        }
    }
}

/// The fields of an event envelope the ingress needs; the event itself is left untouched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub schema: Schema,
    pub event_id: String,
    pub event_type: String,
    pub app_id: Option<String>,
    pub tenant_key: String,
    /// header.create_time (v2) or ts (v1), as sent.
    pub create_time: String,
    /// The Verification Token carried by the envelope (header.token or token).
    pub token: Option<String>,
}

impl Envelope {
    /// create_time in milliseconds since the epoch. Feishu sends milliseconds (13 digits) or
    /// microseconds (16 digits) in v2 headers and seconds with a fraction in v1 `ts`.
    pub fn create_time_ms(&self) -> i64 {
        parse_time_ms(&self.create_time)
    }
}

/// Parses a Feishu timestamp into milliseconds; 0 when absent or unparsable.
pub fn parse_time_ms(s: &str) -> i64 {
    let s = s.trim();
    if s.contains('.') {
        return s
            .parse::<f64>()
            .map(|secs| (secs * 1000.0) as i64)
            .unwrap_or(0);
    }
    match s.parse::<i64>() {
        Ok(v) if s.len() >= 16 => v / 1000,
        Ok(v) if s.len() <= 10 => v * 1000,
        Ok(v) => v,
        Err(_) => 0,
    }
}

/// One parsed body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// `{"encrypt": "..."}`: decrypt and parse again.
    Encrypted(String),
    /// A url_verification request.
    Challenge {
        challenge: String,
        token: Option<String>,
    },
    /// An event or new-style callback envelope.
    Event(Envelope),
}

#[derive(Deserialize)]
struct Raw {
    encrypt: Option<String>,
    schema: Option<String>,
    header: Option<RawHeader>,
    #[serde(rename = "type")]
    kind: Option<String>,
    challenge: Option<String>,
    token: Option<String>,
    uuid: Option<String>,
    ts: Option<String>,
    event: Option<RawEvent>,
}

#[derive(Deserialize)]
struct RawHeader {
    event_id: Option<String>,
    event_type: Option<String>,
    create_time: Option<String>,
    token: Option<String>,
    app_id: Option<String>,
    tenant_key: Option<String>,
}

#[derive(Deserialize)]
struct RawEvent {
    #[serde(rename = "type")]
    kind: Option<String>,
    app_id: Option<String>,
    tenant_key: Option<String>,
}

/// Classifies a (decrypted or plain) body.
pub fn parse(body: &[u8]) -> Result<Inbound, EnvelopeError> {
    parse_unbounded(body).and_then(bounded)
}

fn parse_unbounded(body: &[u8]) -> Result<Inbound, EnvelopeError> {
    let raw: Raw = serde_json::from_slice(body).map_err(|e| EnvelopeError::Json(e.to_string()))?;
    if let Some(enc) = raw.encrypt {
        return Ok(Inbound::Encrypted(enc));
    }
    if raw.kind.as_deref() == Some("url_verification") {
        let challenge = raw.challenge.ok_or(EnvelopeError::Missing("challenge"))?;
        return Ok(Inbound::Challenge {
            challenge,
            token: raw.token,
        });
    }
    let nonempty = |s: Option<String>| s.filter(|s| !s.is_empty());
    if nonempty(raw.schema).is_some() {
        let h = raw.header.ok_or(EnvelopeError::Missing("header"))?;
        return Ok(Inbound::Event(Envelope {
            schema: Schema::V2,
            event_id: nonempty(h.event_id).ok_or(EnvelopeError::Missing("header.event_id"))?,
            event_type: nonempty(h.event_type)
                .ok_or(EnvelopeError::Missing("header.event_type"))?,
            app_id: h.app_id,
            tenant_key: h.tenant_key.unwrap_or_default(),
            create_time: h.create_time.unwrap_or_default(),
            token: h.token,
        }));
    }
    if let Some(uuid) = nonempty(raw.uuid) {
        let ev = raw.event.ok_or(EnvelopeError::Missing("event"))?;
        return Ok(Inbound::Event(Envelope {
            schema: Schema::V1,
            event_id: uuid,
            event_type: nonempty(ev.kind).ok_or(EnvelopeError::Missing("event.type"))?,
            app_id: ev.app_id,
            tenant_key: ev.tenant_key.unwrap_or_default(),
            create_time: raw.ts.unwrap_or_default(),
            token: raw.token,
        }));
    }
    Err(EnvelopeError::Unrecognised)
}

/// `parse`, with every identifier bounded by [`MAX_FIELD_BYTES`].
fn bounded(inbound: Inbound) -> Result<Inbound, EnvelopeError> {
    if let Inbound::Event(e) = &inbound {
        for (field, v) in [
            ("event id", e.event_id.as_str()),
            ("event type", &e.event_type),
            ("app id", e.app_id.as_deref().unwrap_or_default()),
            ("tenant key", &e.tenant_key),
            ("create time", &e.create_time),
        ] {
            if v.len() > MAX_FIELD_BYTES {
                return Err(EnvelopeError::TooLong(field));
            }
        }
    }
    Ok(inbound)
}

/// A legacy message-card callback (`card.action.trigger_v1`, events.md §6.1): a flat,
/// never encrypted body with `open_message_id` and `action`, signed with SHA-1 over the
/// Verification Token; its top-level `token` is the card-update token, not the
/// Verification Token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyCard {
    pub tenant_key: String,
    pub open_message_id: String,
}

/// The event type a legacy card callback is published under.
pub const LEGACY_CARD_EVENT_TYPE: &str = "card.action.trigger_v1";

/// `Some` when `body` is a legacy card callback.
pub fn legacy_card(body: &[u8]) -> Option<LegacyCard> {
    #[derive(Deserialize)]
    struct Flat {
        schema: Option<serde::de::IgnoredAny>,
        encrypt: Option<serde::de::IgnoredAny>,
        #[serde(rename = "type")]
        kind: Option<String>,
        open_message_id: Option<String>,
        action: Option<serde::de::IgnoredAny>,
        tenant_key: Option<String>,
    }
    let f: Flat = serde_json::from_slice(body).ok()?;
    if f.schema.is_some() || f.encrypt.is_some() || f.kind.is_some() || f.action.is_none() {
        return None;
    }
    let tenant_key = f.tenant_key.unwrap_or_default();
    // A tenant key no AMQP header could carry makes it no card callback of Feishu's.
    if tenant_key.len() > MAX_FIELD_BYTES {
        return None;
    }
    Some(LegacyCard {
        open_message_id: f.open_message_id.filter(|m| !m.is_empty())?,
        tenant_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_event() {
        let body = br#"{"schema":"2.0","header":{"event_id":"e1","event_type":"contact.user.created_v3","create_time":"1608725989000","token":"t","app_id":"cli_a","tenant_key":"tk"},"event":{"object":{"open_id":"ou_1"}}}"#;
        let Inbound::Event(e) = parse(body).unwrap() else {
            panic!()
        };
        assert_eq!(e.schema, Schema::V2);
        assert_eq!(e.event_id, "e1");
        assert_eq!(e.event_type, "contact.user.created_v3");
        assert_eq!(e.app_id.as_deref(), Some("cli_a"));
        assert_eq!(e.token.as_deref(), Some("t"));
        assert_eq!(e.create_time_ms(), 1608725989000);
    }

    #[test]
    fn identifiers_too_long_for_an_amqp_header_are_refused() {
        let long = "x".repeat(MAX_FIELD_BYTES + 1);
        for (field, body) in [
            (
                "event id",
                format!(r#"{{"schema":"2.0","header":{{"event_id":"{long}","event_type":"t"}}}}"#),
            ),
            (
                "event type",
                format!(r#"{{"schema":"2.0","header":{{"event_id":"e","event_type":"{long}"}}}}"#),
            ),
            (
                "tenant key",
                format!(
                    r#"{{"schema":"2.0","header":{{"event_id":"e","event_type":"t","tenant_key":"{long}"}}}}"#
                ),
            ),
            (
                "app id",
                format!(r#"{{"uuid":"u","event":{{"type":"t","app_id":"{long}"}}}}"#),
            ),
            (
                "create time",
                format!(r#"{{"uuid":"u","ts":"{long}","event":{{"type":"t"}}}}"#),
            ),
        ] {
            assert_eq!(
                parse(body.as_bytes()),
                Err(EnvelopeError::TooLong(field)),
                "{field}"
            );
        }
        let at_limit = "x".repeat(MAX_FIELD_BYTES);
        let body =
            format!(r#"{{"schema":"2.0","header":{{"event_id":"{at_limit}","event_type":"t"}}}}"#);
        assert!(matches!(parse(body.as_bytes()), Ok(Inbound::Event(_))));
        let card = format!(r#"{{"open_message_id":"om_1","tenant_key":"{long}","action":{{}}}}"#);
        assert_eq!(legacy_card(card.as_bytes()), None);
    }

    #[test]
    fn legacy_card_callbacks_are_told_apart() {
        let flat = br#"{"open_id":"ou_1","user_id":"u1","open_message_id":"om_1","tenant_key":"tk","token":"c-123","action":{"value":{"k":"v"},"tag":"button"}}"#;
        assert_eq!(
            legacy_card(flat),
            Some(LegacyCard {
                tenant_key: "tk".into(),
                open_message_id: "om_1".into()
            })
        );
        for other in [
            &br#"{"schema":"2.0","header":{},"event":{"action":{}},"open_message_id":"om_1"}"#[..],
            br#"{"encrypt":"abc"}"#,
            br#"{"challenge":"c","token":"t","type":"url_verification"}"#,
            br#"{"open_message_id":"om_1"}"#,
            br#"{"action":{},"open_message_id":""}"#,
            b"not json",
        ] {
            assert_eq!(
                legacy_card(other),
                None,
                "{}",
                String::from_utf8_lossy(other)
            );
        }
    }

    #[test]
    fn v1_event() {
        let body = br#"{"ts":"1502199207.7171419","uuid":"bc44","token":"t","type":"event_callback","event":{"type":"user_add","app_id":"cli_a","tenant_key":"tk"}}"#;
        let Inbound::Event(e) = parse(body).unwrap() else {
            panic!()
        };
        assert_eq!(e.schema, Schema::V1);
        assert_eq!(e.event_id, "bc44");
        assert_eq!(e.event_type, "user_add");
        assert_eq!(e.create_time_ms(), 1502199207717);
    }

    #[test]
    fn challenge_and_encrypt() {
        let c = parse(br#"{"challenge":"ajls","type":"url_verification","token":"t"}"#).unwrap();
        assert_eq!(
            c,
            Inbound::Challenge {
                challenge: "ajls".into(),
                token: Some("t".into())
            }
        );
        assert_eq!(
            parse(br#"{"encrypt":"abc"}"#).unwrap(),
            Inbound::Encrypted("abc".into())
        );
    }

    #[test]
    fn rejects_what_it_does_not_know() {
        assert_eq!(parse(b"{}"), Err(EnvelopeError::Unrecognised));
        assert!(matches!(parse(b"not json"), Err(EnvelopeError::Json(_))));
        assert!(matches!(parse(b"[1]"), Err(EnvelopeError::Json(_))));
        assert_eq!(
            parse(br#"{"schema":"2.0","header":{"event_type":"x"}}"#),
            Err(EnvelopeError::Missing("header.event_id"))
        );
    }

    #[test]
    fn time_units() {
        assert_eq!(parse_time_ms("1603977298000000"), 1603977298000);
        assert_eq!(parse_time_ms("1608725989000"), 1608725989000);
        assert_eq!(parse_time_ms("1700000000"), 1700000000000);
        assert_eq!(parse_time_ms(""), 0);
    }
}
