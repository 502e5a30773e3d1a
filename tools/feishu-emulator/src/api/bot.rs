//! bot (openapi.md §8 "Bot enabled"): `GET /open-apis/bot/v3/info`. The answer carries `bot`
//! beside `code`, not inside `data`. Feishu answers only when the app's bot capability is on;
//! the code for an app without a bot is not documented: the emulator answers 11205 ("bot not
//! enabled", the code sending gives in that case).

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::{gate, Accepts};
use crate::emulator::Emulator;
use crate::error::ApiError;

pub const BOT_INFO: &str = "bot.info";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/open-apis/bot/v3/info", web::get().to(bot_info));
}

async fn bot_info(emu: web::Data<Emulator>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let caller = gate(&emu, &req, BOT_INFO, Accepts::Tenant).await?;
    let app = emu
        .app(&caller.app_id)
        .ok_or_else(|| ApiError::new(400, 99991663, "app"))?;
    if !app.bot_enabled {
        return Err(ApiError::new(400, 11205, "bot not enabled"));
    }
    Ok(HttpResponse::Ok().json(json!({
        "code": 0,
        "msg": "ok",
        "bot": {
            "activate_status": 2,
            "app_name": app.app_name,
            "avatar_url": "",
            "ip_white_list": [],
            "open_id": crate::ids::open_id(&app.app_id, "bot"),
        }
    })))
}
