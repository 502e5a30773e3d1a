//! application (openapi.md §6, §8): `is_user_admin`, app info with scopes, and
//! `contacts_range_configuration`.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};

use super::page::{self, UserIdType};
use super::view::View;
use super::{gate, ok, Accepts, Query};
use crate::emulator::Emulator;
use crate::error::ApiError;

pub const IS_ADMIN: &str = "application.is_user_admin";
pub const APP_GET: &str = "application.applications.get";
pub const CONTACTS_RANGE: &str = "application.contacts_range_configuration";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/open-apis/application/v3/is_user_admin",
        web::get().to(is_user_admin),
    )
    .route(
        "/open-apis/application/v6/applications/{app_id}/contacts_range_configuration",
        web::get().to(contacts_range),
    )
    .route(
        "/open-apis/application/v6/applications/{app_id}",
        web::get().to(app_get),
    );
}

async fn is_user_admin(
    emu: web::Data<Emulator>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let caller = gate(&emu, &req, IS_ADMIN, Accepts::Tenant).await?;
    let q = Query::parse(&req);
    let w = emu.read();
    let (t, ix) = w
        .tenant(caller.tenant)
        .ok_or_else(|| ApiError::new(400, 99991663, "tenant"))?;
    let view = View::new(t, ix, &caller.app_id);
    let uid = match (q.get("open_id"), q.get("employee_id")) {
        (Some(o), _) => view.resolve_user(o, UserIdType::OpenId)?,
        (None, Some(e)) => view.resolve_user(e, UserIdType::UserId)?,
        (None, None) => {
            return Err(ApiError::field(
                "open_id",
                "",
                "open_id or employee_id is required",
            ))
        }
    };
    let is_admin = t
        .app(&caller.app_id)
        .is_some_and(|a| a.admins.contains(&uid));
    drop(w);
    Ok(ok(json!({"is_app_admin": is_admin})))
}

/// `app_id` in the path: the caller's own id or `me`.
fn own_app(caller_app: &str, path_app: &str) -> Result<(), ApiError> {
    if path_app == "me" || path_app == caller_app {
        Ok(())
    } else {
        Err(ApiError::new(
            400,
            99991672,
            "Access denied. The app has not applied for the required API scope.",
        ))
    }
}

async fn app_get(
    emu: web::Data<Emulator>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let caller = gate(&emu, &req, APP_GET, Accepts::Tenant).await?;
    own_app(&caller.app_id, &path)?;
    let q = Query::parse(&req);
    let lang = q
        .get("lang")
        .ok_or_else(|| ApiError::field("lang", "", "required"))?;
    if !["zh_cn", "en_us", "ja_jp"].contains(&lang) {
        return Err(ApiError::field(
            "lang",
            lang,
            "must be zh_cn, en_us or ja_jp",
        ));
    }
    let app = emu
        .app(&caller.app_id)
        .ok_or_else(|| ApiError::new(400, 99991663, "app"))?;
    let creator = app
        .creator_id
        .as_deref()
        .map(|u| crate::ids::open_id(&app.app_id, u))
        .unwrap_or_default();
    let data = json!({"app": {
        "app_id": app.app_id,
        "creator_id": creator,
        "status": 1,
        "scene_type": 0,
        "payment_type": 0,
        "redirect_urls": app.redirect_urls,
        "online_version_id": "oav_emulator",
        "unaudit_version_id": "",
        "app_name": app.app_name,
        "avatar_url": "",
        "description": "",
        "scopes": app.scopes.iter().map(|s| json!({
            "scope": s, "description": s, "level": 1, "token_types": ["tenant", "user"]
        })).collect::<Vec<_>>(),
        "back_home_url": "",
        "i18n": [{"i18n_key": lang, "name": app.app_name, "description": ""}],
        "primary_language": lang,
        "common_categories": [],
        "owner": {"type": 0, "owner_id": creator, "name": "", "help_desk": "", "email": "", "phone": ""},
        "mobile_default_ability": "bot",
        "pc_default_ability": "bot",
    }});
    Ok(ok(data))
}

async fn contacts_range(
    emu: web::Data<Emulator>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let caller = gate(&emu, &req, CONTACTS_RANGE, Accepts::Tenant).await?;
    own_app(&caller.app_id, &path)?;
    let q = Query::parse(&req);
    let ut = page::user_id_type(&q)?;
    let dt = page::dept_id_type(&q)?;
    let (size, offset) = page::params(&q, 50, 100)?;
    let w = emu.read();
    let (t, ix) = w
        .tenant(caller.tenant)
        .ok_or_else(|| ApiError::new(400, 99991663, "tenant"))?;
    let app = t
        .app(&caller.app_id)
        .ok_or_else(|| ApiError::new(400, 99991663, "app"))?;
    let view = View::new(t, ix, &caller.app_id).with_types(ut, dt);
    let mut items: Vec<(bool, String)> = app
        .contact_scope
        .user_ids
        .iter()
        .map(|u| (true, view.user_out(u)))
        .collect();
    items.extend(
        app.contact_scope
            .department_ids
            .iter()
            .map(|d| (false, view.dept_out(d))),
    );
    let mut data = Map::new();
    let page = page::slice(&items, size, offset, &mut data);
    let users: Vec<String> = page.iter().filter(|i| i.0).map(|i| i.1.clone()).collect();
    let depts: Vec<String> = page.iter().filter(|i| !i.0).map(|i| i.1.clone()).collect();
    data.insert(
        "contacts_range".into(),
        json!({
            "contacts_scope_type": if app.contact_scope.all { "all" } else { "some" },
            "visible_list": {"open_ids": users, "department_ids": depts, "group_ids": []},
        }),
    );
    drop(w);
    Ok(ok(Value::Object(data)))
}
