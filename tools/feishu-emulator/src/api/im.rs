//! im (openapi.md §7): `im/v1/messages` (every receive_id_type), reply, uuid idempotency,
//! size limits, 5 QPS per recipient (batch sends are in [`super::batch`]).

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::view::View;
use super::{gate, ok, rate_limit, Accepts, Caller, Query};
use crate::chat::p2p_chat_id;
use crate::emulator::Emulator;
use crate::error::ApiError;
use crate::ids;
use crate::limits::PER_RECIPIENT;
use crate::state::{Chat, InboxMessage, Tenant};

pub const SEND: &str = "im.messages.create";
pub const REPLY: &str = "im.messages.reply";
const RECIPIENT: &str = "im.recipient";

const UUID_WINDOW_MS: i64 = 60 * 60 * 1000;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/open-apis/im/v1/messages", web::post().to(send))
        .route(
            "/open-apis/im/v1/messages/{id}/reply",
            web::post().to(reply),
        );
}

#[derive(Deserialize)]
struct SendBody {
    #[serde(default)]
    receive_id: String,
    #[serde(default)]
    msg_type: String,
    #[serde(default)]
    content: Value,
    #[serde(default)]
    uuid: Option<String>,
    #[serde(default)]
    reply_in_thread: bool,
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::new(400, 230001, format!("invalid request body: {e}")))
}

/// Checks `msg_type` and the JSON-string `content` (shape and size).
fn check_content(msg_type: &str, content: &Value) -> Result<String, ApiError> {
    let Some(s) = content.as_str() else {
        return Err(ApiError::new(400, 230001, "content must be a JSON string"));
    };
    let v: Value = serde_json::from_str(s)
        .map_err(|_| ApiError::new(400, 230001, "content is not valid JSON"))?;
    let limit = match msg_type {
        "text" => 150 * 1024,
        _ => 30 * 1024,
    };
    if s.len() > limit {
        return Err(ApiError::new(
            400,
            230025,
            "The message content exceeds the length limit.",
        ));
    }
    let fine = match msg_type {
        "text" => v.get("text").is_some_and(Value::is_string),
        "image" => v.get("image_key").is_some_and(Value::is_string),
        "post" => v.as_object().is_some_and(|m| {
            !m.is_empty()
                && m.values()
                    .all(|l| l.get("content").is_some_and(Value::is_array))
        }),
        "interactive" => v.is_object(),
        "share_chat" => v.get("chat_id").is_some_and(Value::is_string),
        "share_user" => v.get("user_id").is_some_and(Value::is_string),
        "file" | "audio" | "sticker" => v.get("file_key").is_some_and(Value::is_string),
        "media" => v.get("file_key").is_some() && v.get("image_key").is_some(),
        "system" => v.is_object(),
        _ => {
            return Err(ApiError::new(
                400,
                230001,
                format!("invalid msg_type: {msg_type}"),
            ))
        }
    };
    if !fine {
        return Err(ApiError::new(
            400,
            230001,
            format!("content does not match msg_type {msg_type}"),
        ));
    }
    Ok(s.to_string())
}

/// Where a message goes: a chat, and the recipient user for p2p.
struct Target {
    chat_id: String,
    user_id: Option<String>,
}

fn resolve_target(
    t: &Tenant,
    view: &View,
    id_type: &str,
    id: &str,
    app_id: &str,
) -> Result<Target, ApiError> {
    if id_type == "chat_id" {
        let chat = t
            .chats
            .get(id)
            .ok_or_else(|| ApiError::new(400, 230001, "invalid receive_id"))?;
        if !chat.bots.iter().any(|b| b == app_id) {
            return Err(ApiError::new(400, 230002, "Bot is not in the chat."));
        }
        return Ok(Target {
            chat_id: id.to_string(),
            user_id: None,
        });
    }
    let uid = match id_type {
        "open_id" => view.resolve_user(id, super::page::UserIdType::OpenId)?,
        "union_id" => view
            .ix
            .user_by_union
            .get(id)
            .cloned()
            .ok_or_else(|| ApiError::new(400, 230001, "invalid receive_id"))?,
        "user_id" => t
            .users
            .contains_key(id)
            .then(|| id.to_string())
            .ok_or_else(|| ApiError::new(400, 230001, "invalid receive_id"))?,
        "email" => view
            .ix
            .user_by_email
            .get(id)
            .cloned()
            .ok_or_else(|| ApiError::new(400, 230001, "invalid receive_id"))?,
        other => {
            return Err(ApiError::field(
                "receive_id_type",
                other,
                "must be open_id, union_id, user_id, email or chat_id",
            ))
        }
    };
    let user = t
        .users
        .get(&uid)
        .ok_or_else(|| ApiError::new(400, 230001, "invalid receive_id"))?;
    if user.status.is_resigned {
        return Err(ApiError::new(400, 230029, "The user has resigned."));
    }
    let avail = view.ix.availability.get(app_id);
    if !avail.is_some_and(|a| a.user(&uid)) {
        return Err(ApiError::new(
            400,
            230013,
            "Bot has NO availability to this user.",
        ));
    }
    Ok(Target {
        chat_id: p2p_chat_id(app_id, &uid),
        user_id: Some(uid),
    })
}

fn message_data(m: &InboxMessage, tenant_key: &str) -> Value {
    json!({
        "message_id": m.message_id,
        "root_id": m.root_id.clone().unwrap_or_default(),
        "parent_id": m.parent_id.clone().unwrap_or_default(),
        "thread_id": "",
        "msg_type": m.msg_type,
        "create_time": m.create_time.to_string(),
        "update_time": m.create_time.to_string(),
        "deleted": false,
        "updated": false,
        "chat_id": m.chat_id,
        "sender": {"id": m.app_id, "id_type": "app_id", "sender_type": "app", "tenant_key": tenant_key},
        "body": {"content": m.content},
        "mentions": [],
        "upper_message_id": "",
    })
}

/// Returns the cached answer for a uuid seen within the hour.
fn replayed(emu: &Emulator, app_id: &str, uuid: Option<&str>) -> Result<Option<Value>, ApiError> {
    let Some(u) = uuid else { return Ok(None) };
    if u.chars().count() > 50 {
        return Err(ApiError::field("uuid", u, "the max length is 50"));
    }
    let now = emu.clock().now_ms();
    Ok(emu
        .rt()
        .uuids
        .get(&(app_id.to_string(), u.to_string()))
        .filter(|(exp, _)| *exp > now)
        .map(|(_, v)| v.clone()))
}

fn remember(emu: &Emulator, app_id: &str, uuid: Option<&str>, data: &Value) {
    if let Some(u) = uuid {
        let exp = emu.clock().now_ms() + UUID_WINDOW_MS;
        emu.rt()
            .uuids
            .insert((app_id.to_string(), u.to_string()), (exp, data.clone()));
    }
}

fn recipient_limit(emu: &Emulator, key: &str) -> Result<(), ApiError> {
    rate_limit(emu, RECIPIENT, key, PER_RECIPIENT).map_err(|e| {
        let mut r = ApiError::new(400, 230020, "This operation triggers the frequency limit.");
        r.headers = e.headers;
        r
    })
}

/// Stores a bot message in the chat (creating the p2p chat if needed).
fn store(
    emu: &Emulator,
    caller: &Caller,
    target: &Target,
    msg: InboxMessage,
) -> Result<Value, ApiError> {
    let mut w = emu.write();
    let t = w
        .state
        .tenants
        .get_mut(caller.tenant)
        .ok_or_else(|| ApiError::new(400, 230001, "tenant not found"))?;
    if let Some(uid) = &target.user_id {
        t.chats
            .entry(target.chat_id.clone())
            .or_insert_with(|| Chat {
                chat_id: target.chat_id.clone(),
                name: String::new(),
                chat_type: "p2p".into(),
                members: vec![uid.clone()],
                bots: vec![caller.app_id.clone()],
            });
    }
    let data = message_data(&msg, &t.tenant_key);
    t.inbox.push(msg);
    Ok(data)
}

async fn send(
    emu: web::Data<Emulator>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let caller = gate(&emu, &req, SEND, Accepts::Tenant).await?;
    let q = Query::parse(&req);
    let id_type = q
        .get("receive_id_type")
        .ok_or_else(|| ApiError::field("receive_id_type", "", "required"))?
        .to_string();
    let b: SendBody = parse(&body)?;
    if b.receive_id.is_empty() {
        return Err(ApiError::field("receive_id", "", "required"));
    }
    let content = check_content(&b.msg_type, &b.content)?;
    if let Some(data) = replayed(&emu, &caller.app_id, b.uuid.as_deref())? {
        return Ok(ok(data));
    }
    let target = {
        let w = emu.read();
        let (t, ix) = w
            .tenant(caller.tenant)
            .ok_or_else(|| ApiError::new(400, 230001, "tenant"))?;
        if !t.app(&caller.app_id).is_some_and(|a| a.bot_enabled) {
            return Err(ApiError::new(400, 230006, "Bot ability is not activated."));
        }
        let view = View::new(t, ix, &caller.app_id);
        resolve_target(t, &view, &id_type, &b.receive_id, &caller.app_id)?
    };
    recipient_limit(&emu, &target.chat_id)?;
    let msg = InboxMessage {
        message_id: ids::message_id(&mut rand::thread_rng()),
        app_id: caller.app_id.clone(),
        chat_id: target.chat_id.clone(),
        recipient_user_id: target.user_id.clone(),
        msg_type: b.msg_type.clone(),
        content,
        root_id: None,
        parent_id: None,
        uuid: b.uuid.clone(),
        create_time: emu.clock().now_ms(),
        batch_id: None,
        sender_user_id: None,
        update_count: 0,
    };
    let data = store(&emu, &caller, &target, msg)?;
    remember(&emu, &caller.app_id, b.uuid.as_deref(), &data);
    Ok(ok(data))
}

async fn reply(
    emu: web::Data<Emulator>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let caller = gate(&emu, &req, REPLY, Accepts::Tenant).await?;
    let b: SendBody = parse(&body)?;
    let content = check_content(&b.msg_type, &b.content)?;
    if let Some(data) = replayed(&emu, &caller.app_id, b.uuid.as_deref())? {
        return Ok(ok(data));
    }
    let parent = {
        let w = emu.read();
        let t = w
            .state
            .tenants
            .get(caller.tenant)
            .ok_or_else(|| ApiError::new(400, 230001, "tenant"))?;
        let m = t
            .inbox
            .iter()
            .find(|m| m.message_id == *path)
            .cloned()
            .ok_or_else(|| ApiError::new(400, 230001, "invalid message_id"))?;
        let in_chat = t
            .chats
            .get(&m.chat_id)
            .is_some_and(|c| c.bots.contains(&caller.app_id));
        if !in_chat {
            return Err(ApiError::new(400, 230002, "Bot is not in the chat."));
        }
        m
    };
    recipient_limit(&emu, &parent.chat_id)?;
    let target = Target {
        chat_id: parent.chat_id.clone(),
        user_id: None,
    };
    let msg = InboxMessage {
        message_id: ids::message_id(&mut rand::thread_rng()),
        app_id: caller.app_id.clone(),
        chat_id: parent.chat_id.clone(),
        recipient_user_id: parent
            .recipient_user_id
            .clone()
            .or(parent.sender_user_id.clone()),
        msg_type: b.msg_type.clone(),
        content,
        root_id: Some(parent.root_id.clone().unwrap_or(parent.message_id.clone())),
        parent_id: Some(parent.message_id.clone()),
        uuid: b.uuid.clone(),
        create_time: emu.clock().now_ms(),
        batch_id: None,
        sender_user_id: None,
        update_count: 0,
    };
    let _ = b.reply_in_thread;
    let data = store(&emu, &caller, &target, msg)?;
    remember(&emu, &caller.app_id, b.uuid.as_deref(), &data);
    Ok(ok(data))
}
