//! A request taken apart once at intake: the message in Feishu's content shapes (checked
//! against Feishu's size limits), the targets, and every reason to refuse it. Both intakes
//! (HTTP and the bus) go through [`parse`], so they refuse the same requests the same way.

use bridge_contracts::v1::{notify_request, NotifyRequest, Targets as PbTargets};
use bridge_feishu::api::im::{CARD_MAX_BYTES, TEXT_MAX_BYTES};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::templates::{TemplateError, Templates};

/// Longest idempotency key taken.
pub const MAX_KEY: usize = 200;
/// Most ids one request may name (departments count once each).
pub const MAX_TARGETS: usize = 10_000;

/// Why a request is refused. Each is final: resending the same request cannot succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("unknown app {0}")]
    UnknownApp(String),
    #[error("an idempotency key is required (at most {MAX_KEY} characters)")]
    BadKey,
    #[error("no target: give open_ids, user_ids, union_ids, emails, department_ids, chat_ids or reply_to_message_id")]
    NoTarget,
    #[error("too many targets: {0} (at most {MAX_TARGETS})")]
    TooManyTargets(usize),
    #[error("empty target id in {0}")]
    EmptyTarget(&'static str),
    #[error("no message: give exactly one of text, post, card or template")]
    NoMessage,
    #[error("text is empty")]
    EmptyText,
    #[error("{kind} content is {size} bytes, over Feishu's limit of {limit}")]
    TooLarge {
        kind: &'static str,
        size: usize,
        limit: usize,
    },
    #[error("malformed card JSON: {0}")]
    BadCard(String),
    #[error("malformed post JSON: {0}")]
    BadPost(String),
    #[error("{0}")]
    Template(#[from] TemplateError),
    #[error("idempotency key {0} was used before for a different message")]
    KeyReused(String),
    #[error("not a NotifyRequest: {0}")]
    Undecodable(String),
}

impl Rejection {
    /// A stable code for clients (HTTP body `code`, report `reason`).
    pub fn code(&self) -> u32 {
        match self {
            Self::UnknownApp(_) => 40401,
            Self::BadKey => 40001,
            Self::NoTarget => 40002,
            Self::TooManyTargets(_) => 40003,
            Self::EmptyTarget(_) => 40004,
            Self::NoMessage => 40005,
            Self::EmptyText => 40006,
            Self::TooLarge { .. } => 41301,
            Self::BadCard(_) => 40007,
            Self::BadPost(_) => 40008,
            Self::Template(TemplateError::Unknown(_)) => 40009,
            Self::Template(TemplateError::MissingVariable { .. }) => 40010,
            Self::Template(_) => 40011,
            Self::KeyReused(_) => 40901,
            Self::Undecodable(_) => 40012,
        }
    }
}

/// The targets of a request, each list without duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Targets {
    pub open_ids: Vec<String>,
    pub user_ids: Vec<String>,
    pub union_ids: Vec<String>,
    pub emails: Vec<String>,
    pub department_ids: Vec<String>,
    pub chat_ids: Vec<String>,
}

impl Targets {
    fn from_pb(t: Option<PbTargets>) -> Result<Self, Rejection> {
        let t = t.unwrap_or_default();
        Ok(Self {
            open_ids: clean("open_ids", t.open_ids)?,
            user_ids: clean("user_ids", t.user_ids)?,
            union_ids: clean("union_ids", t.union_ids)?,
            emails: clean("emails", t.emails)?,
            department_ids: clean("department_ids", t.department_ids)?,
            chat_ids: clean("chat_ids", t.chat_ids)?,
        })
    }

    pub fn to_pb(&self) -> PbTargets {
        PbTargets {
            open_ids: self.open_ids.clone(),
            user_ids: self.user_ids.clone(),
            union_ids: self.union_ids.clone(),
            emails: self.emails.clone(),
            department_ids: self.department_ids.clone(),
            chat_ids: self.chat_ids.clone(),
        }
    }

    pub fn len(&self) -> usize {
        self.open_ids.len()
            + self.user_ids.len()
            + self.union_ids.len()
            + self.emails.len()
            + self.department_ids.len()
            + self.chat_ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn clean(list: &'static str, ids: Vec<String>) -> Result<Vec<String>, Rejection> {
    let mut out: Vec<String> = Vec::with_capacity(ids.len());
    let mut seen = std::collections::HashSet::new();
    for id in ids {
        let id = id.trim().to_string();
        if id.is_empty() {
            return Err(Rejection::EmptyTarget(list));
        }
        if seen.insert(id.clone()) {
            out.push(id);
        }
    }
    Ok(out)
}

/// A message in Feishu's shapes: `msg_type` and the im/v1 content object.
#[derive(Debug, Clone, PartialEq)]
pub struct Content {
    pub msg_type: &'static str,
    pub content: Value,
}

impl Content {
    pub fn text(text: &str) -> Self {
        Self {
            msg_type: "text",
            content: json!({ "text": text }),
        }
    }

    pub fn card(card: Value) -> Self {
        Self {
            msg_type: "interactive",
            content: card,
        }
    }

    /// The JSON string `im/v1/messages` takes as `content`.
    pub fn as_string(&self) -> String {
        self.content.to_string()
    }

    /// batch_send's `content` and `card` fields (openapi.md §7.4).
    pub fn for_batch(&self) -> (Option<Value>, Option<Value>) {
        match self.msg_type {
            "post" => (Some(json!({ "post": self.content })), None),
            "interactive" => (None, Some(self.content.clone())),
            _ => (Some(self.content.clone()), None),
        }
    }

    /// Rebuilds a content from what was stored.
    pub fn stored(msg_type: &str, content: &str) -> Option<Self> {
        let msg_type = match msg_type {
            "text" => "text",
            "post" => "post",
            "interactive" => "interactive",
            _ => return None,
        };
        Some(Self {
            msg_type,
            content: serde_json::from_str(content).ok()?,
        })
    }

    fn checked(self) -> Result<Self, Rejection> {
        let size = self.as_string().len();
        let (kind, limit) = match self.msg_type {
            "text" => ("text", TEXT_MAX_BYTES),
            "post" => ("post", CARD_MAX_BYTES),
            _ => ("card", CARD_MAX_BYTES),
        };
        if size > limit {
            return Err(Rejection::TooLarge { kind, size, limit });
        }
        Ok(self)
    }
}

/// A post: `{"zh_cn": {"title": ..., "content": [[...], ...]}, ...}`, or that object wrapped
/// in `{"post": ...}` (batch_send's shape).
pub fn post(raw: &str) -> Result<Content, Rejection> {
    let v: Value = serde_json::from_str(raw).map_err(|e| Rejection::BadPost(e.to_string()))?;
    let v = match v.get("post") {
        Some(inner) if v.as_object().is_some_and(|m| m.len() == 1) => inner.clone(),
        _ => v,
    };
    let Some(locales) = v.as_object().filter(|m| !m.is_empty()) else {
        return Err(Rejection::BadPost(
            "expected an object of locales such as {\"zh_cn\": {...}}".into(),
        ));
    };
    for (locale, body) in locales {
        let paragraphs = body
            .get("content")
            .and_then(Value::as_array)
            .ok_or_else(|| Rejection::BadPost(format!("{locale}.content must be an array")))?;
        if !paragraphs.iter().all(|p| {
            p.as_array().is_some_and(|els| {
                els.iter()
                    .all(|e| e.get("tag").is_some_and(Value::is_string))
            })
        }) {
            return Err(Rejection::BadPost(format!(
                "{locale}.content must be an array of paragraphs, each an array of elements with a tag"
            )));
        }
    }
    Content {
        msg_type: "post",
        content: v,
    }
    .checked()
}

/// A card: raw card JSON (an object), or `{"type":"template","data":{"template_id":...}}`.
pub fn card(raw: &str) -> Result<Content, Rejection> {
    let v: Value = serde_json::from_str(raw).map_err(|e| Rejection::BadCard(e.to_string()))?;
    if !v.is_object() {
        return Err(Rejection::BadCard("a card is a JSON object".into()));
    }
    if v.get("type").and_then(Value::as_str) == Some("template")
        && v.pointer("/data/template_id")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
    {
        return Err(Rejection::BadCard(
            "a template card needs data.template_id".into(),
        ));
    }
    Content::card(v).checked()
}

pub fn text(t: &str) -> Result<Content, Rejection> {
    if t.trim().is_empty() {
        return Err(Rejection::EmptyText);
    }
    Content::text(t).checked()
}

/// A request that passed intake.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub app_id: String,
    pub idempotency_key: String,
    pub targets: Targets,
    pub content: Content,
    pub reply_to: Option<String>,
    pub requested_by: String,
}

impl Accepted {
    /// The notification's id: the same for the same app and key, whoever asks and however.
    pub fn notification_id(&self) -> String {
        notification_id(&self.app_id, &self.idempotency_key)
    }

    /// What makes two requests "the same message" (a reused key with another message is refused).
    pub fn request_hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.content.msg_type.as_bytes());
        h.update([0]);
        h.update(self.content.as_string().as_bytes());
        h.update([0]);
        h.update(
            serde_json::to_string(&self.targets)
                .unwrap_or_default()
                .as_bytes(),
        );
        h.update([0]);
        h.update(self.reply_to.as_deref().unwrap_or("").as_bytes());
        hex::encode(h.finalize())
    }
}

pub fn notification_id(app_id: &str, key: &str) -> String {
    let mut h = Sha256::new();
    h.update(app_id.as_bytes());
    h.update([0]);
    h.update(key.as_bytes());
    format!("ntf_{}", &hex::encode(h.finalize())[..32])
}

/// Feishu's `uuid` for one send: the same notification and recipient always give the same
/// value, so a resend within Feishu's hour is dropped by Feishu (≤ 50 characters).
pub fn send_uuid(notification_id: &str, kind: &str, target: &str) -> String {
    let mut h = Sha256::new();
    h.update(notification_id.as_bytes());
    h.update([0]);
    h.update(kind.as_bytes());
    h.update([0]);
    h.update(target.as_bytes());
    hex::encode(h.finalize())[..40].to_string()
}

/// Checks a request and renders its message. `known_app` says whether the app is bound and
/// enabled here.
pub fn parse(
    req: NotifyRequest,
    fallback_key: &str,
    templates: &Templates,
    known_app: impl Fn(&str) -> bool,
) -> Result<Accepted, Rejection> {
    let app_id = req.app_id.trim().to_string();
    if app_id.is_empty() || !known_app(&app_id) {
        return Err(Rejection::UnknownApp(app_id));
    }
    let key = if req.idempotency_key.trim().is_empty() {
        fallback_key.trim().to_string()
    } else {
        req.idempotency_key.trim().to_string()
    };
    if key.is_empty() || key.chars().count() > MAX_KEY {
        return Err(Rejection::BadKey);
    }
    let targets = Targets::from_pb(req.targets)?;
    let reply_to = Some(req.reply_to_message_id.trim().to_string()).filter(|s| !s.is_empty());
    if targets.is_empty() && reply_to.is_none() {
        return Err(Rejection::NoTarget);
    }
    if targets.len() > MAX_TARGETS {
        return Err(Rejection::TooManyTargets(targets.len()));
    }
    let content = match req.message {
        None => return Err(Rejection::NoMessage),
        Some(notify_request::Message::Text(t)) => text(&t)?,
        Some(notify_request::Message::PostJson(p)) => post(&p)?,
        Some(notify_request::Message::CardJson(c)) => card(&c)?,
        Some(notify_request::Message::Template(t)) => {
            let vars: Value = if t.variables_json.trim().is_empty() {
                json!({})
            } else {
                serde_json::from_str(&t.variables_json).map_err(|e| {
                    TemplateError::BadVariables(format!("variables_json is not JSON: {e}"))
                })?
            };
            templates.render(&t.name, &vars)?
        }
    };
    Ok(Accepted {
        app_id,
        idempotency_key: key,
        targets,
        content,
        reply_to,
        requested_by: req.requested_by,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(message: Option<notify_request::Message>) -> NotifyRequest {
        NotifyRequest {
            app_id: "cli_a".into(),
            idempotency_key: "k1".into(),
            targets: Some(PbTargets {
                open_ids: vec!["ou_1".into(), "ou_1".into()],
                ..Default::default()
            }),
            message,
            ..Default::default()
        }
    }

    fn check(r: NotifyRequest) -> Result<Accepted, Rejection> {
        parse(r, "", &Templates::empty(), |a| a == "cli_a")
    }

    #[test]
    fn accepts_text_and_dedupes_targets() {
        let a = check(req(Some(notify_request::Message::Text("hi".into())))).unwrap();
        assert_eq!(a.targets.open_ids, vec!["ou_1".to_string()]);
        assert_eq!(a.content.as_string(), r#"{"text":"hi"}"#);
        assert_eq!(a.notification_id(), notification_id("cli_a", "k1"));
    }

    #[test]
    fn refuses_each_bad_request_with_its_reason() {
        let mut r = req(Some(notify_request::Message::Text("hi".into())));
        r.app_id = "cli_b".into();
        assert_eq!(check(r).unwrap_err(), Rejection::UnknownApp("cli_b".into()));
        let mut r = req(Some(notify_request::Message::Text("hi".into())));
        r.targets = None;
        assert_eq!(check(r).unwrap_err(), Rejection::NoTarget);
        assert_eq!(check(req(None)).unwrap_err(), Rejection::NoMessage);
        let big = "x".repeat(TEXT_MAX_BYTES);
        assert!(matches!(
            check(req(Some(notify_request::Message::Text(big)))).unwrap_err(),
            Rejection::TooLarge { kind: "text", .. }
        ));
        assert!(matches!(
            check(req(Some(notify_request::Message::CardJson(
                "{\"a\":".into()
            ))))
            .unwrap_err(),
            Rejection::BadCard(_)
        ));
        assert!(matches!(
            check(req(Some(notify_request::Message::PostJson("[1]".into())))).unwrap_err(),
            Rejection::BadPost(_)
        ));
        let mut r = req(Some(notify_request::Message::Text("hi".into())));
        r.idempotency_key = String::new();
        assert_eq!(check(r).unwrap_err(), Rejection::BadKey);
    }

    #[test]
    fn batch_shapes_follow_feishu() {
        let p = post(r#"{"zh_cn":{"title":"T","content":[[{"tag":"text","text":"a"}]]}}"#).unwrap();
        let (c, as_card) = p.for_batch();
        assert!(as_card.is_none());
        assert_eq!(c.unwrap()["post"]["zh_cn"]["title"], "T");
        let c = card(r#"{"schema":"2.0","body":{"elements":[]}}"#).unwrap();
        assert_eq!(c.for_batch().1.unwrap()["schema"], "2.0");
    }

    #[test]
    fn uuids_are_stable_and_short() {
        let a = send_uuid("ntf_1", "open_id", "ou_1");
        assert_eq!(a, send_uuid("ntf_1", "open_id", "ou_1"));
        assert_ne!(a, send_uuid("ntf_1", "open_id", "ou_2"));
        assert!(a.len() <= bridge_feishu::api::im::UUID_MAX);
    }
}
