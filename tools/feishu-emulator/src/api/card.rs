//! `POST /open-apis/interactive/v1/card/update` (events.md §6.3): the delayed update of a card
//! a user interacted with, by the callback's token — valid 30 minutes, two uses, for that card
//! only; the card at most 30 KB.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{gate, Accepts};
use crate::emulator::Emulator;
use crate::error::ApiError;

pub const CARD_UPDATE: &str = "interactive.card.update";

const CARD_MAX_BYTES: usize = 30 * 1024;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/open-apis/interactive/v1/card/update",
        web::post().to(update),
    );
}

#[derive(Deserialize)]
struct Body {
    #[serde(default)]
    token: String,
    #[serde(default)]
    card: Value,
}

async fn update(
    emu: web::Data<Emulator>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let caller = gate(&emu, &req, CARD_UPDATE, Accepts::Tenant).await?;
    let b: Body = serde_json::from_slice(&body)
        .map_err(|e| ApiError::field("body", "", &format!("invalid JSON: {e}")))?;
    if b.token.is_empty() {
        return Err(ApiError::field("token", "", "required"));
    }
    if !b.card.is_object() {
        return Err(ApiError::field("card", "", "must be a card object"));
    }
    let content = b.card.to_string();
    if content.len() > CARD_MAX_BYTES {
        return Err(ApiError::new(
            400,
            230025,
            "The card content exceeds the length limit.",
        ));
    }
    let now = emu.clock().now_ms();
    let message_id = {
        let mut rt = emu.rt();
        let t = rt
            .card_tokens
            .get_mut(&b.token)
            .filter(|t| t.app_id == caller.app_id && t.expires_ms > now && t.uses_left > 0)
            .ok_or_else(|| {
                // The documented limits (30 min, two uses, the interacted card only); the
                // error code itself is not in our notes.
                ApiError::field("token", &b.token, "invalid, expired or used up")
            })?;
        t.uses_left -= 1;
        t.message_id.clone()
    };
    let mut w = emu.write();
    let msg = w
        .state
        .tenants
        .get_mut(caller.tenant)
        .and_then(|t| t.inbox.iter_mut().find(|m| m.message_id == message_id))
        .ok_or_else(|| ApiError::new(400, 230001, "the card's message no longer exists"))?;
    msg.content = content;
    msg.update_count += 1;
    drop(w);
    Ok(HttpResponse::Ok()
        .insert_header(("X-Tt-Logid", super::log_id()))
        .json(json!({"code": 0, "msg": "ok"})))
}
