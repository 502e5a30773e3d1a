//! `message/v4/batch_send` (openapi.md §7.4): departments expanded to all members of their
//! subtrees, invalid ids reported, errors as HTTP 200 + code; and `get_progress` (§7.5).

use std::collections::BTreeSet;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{gate, ok, Accepts};
use crate::chat::p2p_chat_id;
use crate::emulator::Emulator;
use crate::error::ApiError;
use crate::ids;
use crate::state::{Batch, InboxMessage};

pub const BATCH_SEND: &str = "message.batch_send";
pub const BATCH_PROGRESS: &str = "im.batch_messages.get_progress";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/open-apis/message/v4/batch_send/",
        web::post().to(batch_send),
    )
    .route(
        "/open-apis/message/v4/batch_send",
        web::post().to(batch_send),
    )
    .route(
        "/open-apis/im/v1/batch_messages/{id}/get_progress",
        web::get().to(progress),
    );
}

#[derive(Deserialize)]
struct BatchBody {
    #[serde(default)]
    msg_type: String,
    #[serde(default)]
    content: Option<Value>,
    #[serde(default)]
    card: Option<Value>,
    #[serde(default)]
    open_ids: Vec<String>,
    #[serde(default)]
    user_ids: Vec<String>,
    #[serde(default)]
    union_ids: Vec<String>,
    #[serde(default)]
    department_ids: Vec<String>,
}

/// batch_send errors are HTTP 200 with a code (openapi.md §7.4).
fn batch_err(code: i64, msg: &str) -> ApiError {
    ApiError::new(200, code, msg)
}

async fn batch_send(
    emu: web::Data<Emulator>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let caller = gate(&emu, &req, BATCH_SEND, Accepts::Tenant).await?;
    let b: BatchBody =
        serde_json::from_slice(&body).map_err(|_| batch_err(10003, "invalid parameter"))?;
    let lists = [&b.open_ids, &b.user_ids, &b.union_ids, &b.department_ids];
    if lists.iter().all(|l| l.is_empty()) || lists.iter().any(|l| l.len() > 200) {
        return Err(batch_err(10003, "invalid parameter"));
    }
    let payload = match (b.msg_type.as_str(), &b.content, &b.card) {
        ("interactive", _, Some(card)) => card.clone(),
        ("text", Some(c), _) if c.get("text").is_some() => c.clone(),
        ("image", Some(c), _) if c.get("image_key").is_some() => c.clone(),
        ("post", Some(c), _) if c.get("post").is_some() => c.clone(),
        ("share_chat", Some(c), _) if c.get("share_chat_id").is_some() => c.clone(),
        _ => return Err(batch_err(10003, "invalid parameter")),
    };
    let now = emu.clock().now_ms();
    let batch_id = ids::batch_message_id(&mut rand::thread_rng());
    let mut w = emu.write();
    let world = &mut *w;
    let t = world
        .state
        .tenants
        .get_mut(caller.tenant)
        .ok_or_else(|| batch_err(11210, "app not installed"))?;
    let ix = world
        .index
        .get(caller.tenant)
        .ok_or_else(|| batch_err(11210, "app not installed"))?;
    if !t.app(&caller.app_id).is_some_and(|a| a.bot_enabled) {
        return Err(batch_err(11205, "bot not enabled"));
    }
    let mut users: BTreeSet<String> = BTreeSet::new();
    let (mut bad_open, mut bad_user, mut bad_union, mut bad_dept) =
        (vec![], vec![], vec![], vec![]);
    for id in &b.open_ids {
        match ix.user_by_open.get(id) {
            Some((app, uid)) if *app == caller.app_id => {
                users.insert(uid.clone());
            }
            _ => bad_open.push(id.clone()),
        }
    }
    for id in &b.user_ids {
        if t.users.contains_key(id) {
            users.insert(id.clone());
        } else {
            bad_user.push(id.clone());
        }
    }
    for id in &b.union_ids {
        match ix.user_by_union.get(id) {
            Some(uid) => {
                users.insert(uid.clone());
            }
            None => bad_union.push(id.clone()),
        }
    }
    for id in &b.department_ids {
        let odid = if t.departments.contains_key(id) {
            Some(id.clone())
        } else {
            ix.dept_by_custom.get(id).cloned()
        };
        match odid {
            Some(d) => {
                for dep in std::iter::once(d.clone()).chain(ix.descendants(&d)) {
                    users.extend(ix.members.get(&dep).into_iter().flatten().cloned());
                }
            }
            None => bad_dept.push(id.clone()),
        }
    }
    let avail = ix.availability.get(&caller.app_id);
    let content = payload.to_string();
    let mut success = 0u64;
    for uid in &users {
        let reachable = t.users.get(uid).is_some_and(|u| !u.status.is_resigned)
            && avail.is_some_and(|a| a.user(uid));
        if !reachable {
            continue;
        }
        success += 1;
        t.inbox.push(InboxMessage {
            message_id: ids::message_id(&mut rand::thread_rng()),
            app_id: caller.app_id.clone(),
            chat_id: p2p_chat_id(&caller.app_id, uid),
            recipient_user_id: Some(uid.clone()),
            msg_type: b.msg_type.clone(),
            content: content.clone(),
            root_id: None,
            parent_id: None,
            uuid: None,
            create_time: now,
            batch_id: Some(batch_id.clone()),
            sender_user_id: None,
            update_count: 0,
        });
    }
    t.batches.insert(
        batch_id.clone(),
        Batch {
            batch_id: batch_id.clone(),
            app_id: caller.app_id.clone(),
            valid_user_ids_count: users.len() as u64,
            success_user_ids_count: success,
            create_time: now,
        },
    );
    drop(w);
    Ok(ok(json!({
        "message_id": batch_id,
        "invalid_department_ids": bad_dept,
        "invalid_open_ids": bad_open,
        "invalid_user_ids": bad_user,
        "invalid_union_ids": bad_union,
    })))
}

async fn progress(
    emu: web::Data<Emulator>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let caller = gate(&emu, &req, BATCH_PROGRESS, Accepts::Tenant).await?;
    let w = emu.read();
    let b = w
        .state
        .tenants
        .get(caller.tenant)
        .and_then(|t| t.batches.get(path.as_str()))
        .filter(|b| b.app_id == caller.app_id)
        .cloned()
        .ok_or_else(|| ApiError::new(400, 230001, "invalid batch_message_id"))?;
    let scheduled =
        emu.clock().now_ms() >= b.create_time + w.state.settings.batch_schedule_ms as i64;
    drop(w);
    // Until the job is scheduled Feishu reports zeros (openapi.md §7.5).
    let (valid, success) = if scheduled {
        (b.valid_user_ids_count, b.success_user_ids_count)
    } else {
        (0, 0)
    };
    Ok(ok(json!({
        "batch_message_send_progress": {
            "valid_user_ids_count": valid,
            "success_user_ids_count": success,
            "read_user_ids_count": 0,
        },
        "batch_message_recall_progress": {"recall": false, "recall_count": 0},
    })))
}
