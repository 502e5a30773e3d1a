//! contact v3 (openapi.md §4.3): departments get/children/parent/batch, users
//! get/find_by_department/batch, scopes — all filtered by the app's contact scope.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};

use super::page::{self, DeptIdType};
use super::view::View;
use super::{gate, ok, Accepts, Query};
use crate::emulator::Emulator;
use crate::error::ApiError;

pub const DEPT_GET: &str = "contact.departments.get";
pub const DEPT_CHILDREN: &str = "contact.departments.children";
pub const DEPT_PARENT: &str = "contact.departments.parent";
pub const DEPT_BATCH: &str = "contact.departments.batch";
pub const USER_GET: &str = "contact.users.get";
pub const USER_FIND: &str = "contact.users.find_by_department";
pub const USER_BATCH: &str = "contact.users.batch";
pub const SCOPES: &str = "contact.scopes";
pub const USER_BATCH_GET_ID: &str = "contact.users.batch_get_id";

/// Departments with more descendants than this refuse `fetch_child=true`.
const RECURSION_LIMIT: usize = 500;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/open-apis/contact/v3/scopes", web::get().to(scopes))
        .route(
            "/open-apis/contact/v3/users/batch_get_id",
            web::post().to(user_batch_get_id),
        )
        .route(
            "/open-apis/contact/v3/departments/batch",
            web::get().to(dept_batch),
        )
        .route(
            "/open-apis/contact/v3/departments/parent",
            web::get().to(dept_parent),
        )
        .route(
            "/open-apis/contact/v3/departments/{id}/children",
            web::get().to(dept_children),
        )
        .route(
            "/open-apis/contact/v3/departments/{id}",
            web::get().to(dept_get),
        )
        .route(
            "/open-apis/contact/v3/users/find_by_department",
            web::get().to(user_find),
        )
        .route(
            "/open-apis/contact/v3/users/batch",
            web::get().to(user_batch),
        )
        .route("/open-apis/contact/v3/users/{id}", web::get().to(user_get));
}

/// Runs `f` with the caller's view under the world's read lock.
async fn with_view(
    emu: &Emulator,
    req: &HttpRequest,
    api: &str,
    f: impl FnOnce(&View, &Query) -> Result<Value, ApiError>,
) -> Result<HttpResponse, ApiError> {
    let caller = gate(emu, req, api, Accepts::Tenant).await?;
    let q = Query::parse(req);
    let ut = page::user_id_type(&q)?;
    let dt = page::dept_id_type(&q)?;
    let w = emu.read();
    let (t, ix) = w
        .tenant(caller.tenant)
        .ok_or_else(|| ApiError::new(400, 42008, "tenant id is invalid"))?;
    let view = View::new(t, ix, &caller.app_id).with_types(ut, dt);
    let data = f(&view, &q)?;
    drop(w);
    Ok(ok(data))
}

/// Like [`with_view`] for list answers assembled from cached user JSON: `f` returns
/// `has_more`, the next page token and the rendered items.
async fn with_view_raw(
    emu: &Emulator,
    req: &HttpRequest,
    api: &str,
    f: impl FnOnce(&View, &Query) -> Result<(Option<String>, Vec<std::sync::Arc<str>>), ApiError>,
) -> Result<HttpResponse, ApiError> {
    let caller = gate(emu, req, api, Accepts::Tenant).await?;
    let q = Query::parse(req);
    let ut = page::user_id_type(&q)?;
    let dt = page::dept_id_type(&q)?;
    let w = emu.read();
    let (t, ix) = w
        .tenant(caller.tenant)
        .ok_or_else(|| ApiError::new(400, 42008, "tenant id is invalid"))?;
    let view = View::new(t, ix, &caller.app_id).with_types(ut, dt);
    let (next, items) = f(&view, &q)?;
    drop(w);
    let mut body = String::with_capacity(items.iter().map(|i| i.len() + 1).sum::<usize>() + 128);
    body.push_str(r#"{"code":0,"msg":"success","data":{"#);
    match next {
        Some(tok) => {
            body.push_str(r#""has_more":true,"page_token":"#);
            body.push_str(&Value::String(tok).to_string());
        }
        None => body.push_str(r#""has_more":false"#),
    }
    body.push_str(r#","items":["#);
    for (i, it) in items.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(it);
    }
    body.push_str("]}}");
    Ok(HttpResponse::Ok()
        .insert_header(("X-Tt-Logid", super::log_id()))
        .content_type("application/json")
        .body(body))
}

fn dept_value(v: &View, odid: &str) -> Option<Value> {
    if odid == "0" {
        return Some(v.root());
    }
    v.t.departments.get(odid).map(|d| v.department(d))
}

async fn dept_get(
    emu: web::Data<Emulator>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    with_view(&emu, &req, DEPT_GET, |v, _| {
        let odid = v.visible_dept(&id, v.dt)?;
        let d = dept_value(v, &odid)
            .ok_or_else(|| ApiError::new(403, 40004, "no dept authority error"))?;
        Ok(json!({"department": d}))
    })
    .await
}

async fn dept_children(
    emu: web::Data<Emulator>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    with_view(&emu, &req, DEPT_CHILDREN, |v, q| {
        let fetch_child = q.bool("fetch_child")?;
        let (size, offset) = page::params(q, 10, 50)?;
        let odid = v.visible_dept(&id, v.dt)?;
        let ids: Vec<String> = if fetch_child {
            let all = v.ix.descendants(&odid);
            if all.len() > RECURSION_LIMIT {
                return Err(ApiError::new(400, 40162, "big dept forbid recursion"));
            }
            all
        } else {
            v.ix.children.get(&odid).cloned().unwrap_or_default()
        };
        let mut data = Map::new();
        let items: Vec<Value> = page::slice(&ids, size, offset, &mut data)
            .iter()
            .filter_map(|d| v.t.departments.get(d).map(|d| v.department(d)))
            .collect();
        data.insert("items".into(), Value::Array(items));
        Ok(Value::Object(data))
    })
    .await
}

async fn dept_parent(emu: web::Data<Emulator>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    with_view(&emu, &req, DEPT_PARENT, |v, q| {
        let (size, offset) = page::params(q, 20, 50)?;
        let id = q
            .get("department_id")
            .ok_or_else(|| ApiError::field("department_id", "", "required"))?;
        let odid = v.visible_dept(id, v.dt)?;
        // Child -> parent, without the root, stopping at the highest visible department.
        let mut chain = Vec::new();
        let mut cur = v.t.departments.get(&odid).map(|d| d.parent.clone());
        while let Some(p) = cur {
            if p == "0" || !v.scope.department(&p) {
                break;
            }
            cur = v.t.departments.get(&p).map(|d| d.parent.clone());
            chain.push(p);
        }
        let mut data = Map::new();
        let items: Vec<Value> = page::slice(&chain, size, offset, &mut data)
            .iter()
            .filter_map(|d| v.t.departments.get(d).map(|d| v.department(d)))
            .collect();
        data.insert("items".into(), Value::Array(items));
        Ok(Value::Object(data))
    })
    .await
}

fn check_batch(name: &str, ids: &[String]) -> Result<(), ApiError> {
    if ids.is_empty() {
        return Err(ApiError::field(name, "", "required"));
    }
    if ids.len() > 50 {
        return Err(ApiError::field(
            name,
            &ids.len().to_string(),
            "the max length is 50",
        ));
    }
    Ok(())
}

async fn dept_batch(emu: web::Data<Emulator>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    with_view(&emu, &req, DEPT_BATCH, |v, q| {
        let ids = q.all("department_ids");
        check_batch("department_ids", &ids)?;
        let mut items = Vec::new();
        for id in &ids {
            let odid = v.visible_dept(id, v.dt)?;
            if let Some(d) = dept_value(v, &odid) {
                items.push(d);
            }
        }
        Ok(json!({"items": items}))
    })
    .await
}

async fn user_get(
    emu: web::Data<Emulator>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    with_view(&emu, &req, USER_GET, |v, _| {
        let uid = v.visible_user(&id, v.ut)?;
        let u =
            v.t.users
                .get(&uid)
                .ok_or_else(|| ApiError::new(400, 41050, "no user authority error"))?;
        Ok(json!({"user": v.user(u)}))
    })
    .await
}

async fn user_batch(emu: web::Data<Emulator>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    with_view(&emu, &req, USER_BATCH, |v, q| {
        let ids = q.all("user_ids");
        check_batch("user_ids", &ids)?;
        let mut items = Vec::new();
        for id in &ids {
            let uid = v.visible_user(id, v.ut)?;
            if let Some(u) = v.t.users.get(&uid) {
                items.push(v.user(u));
            }
        }
        Ok(json!({"items": items}))
    })
    .await
}

async fn user_find(emu: web::Data<Emulator>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    with_view_raw(&emu, &req, USER_FIND, |v, q| {
        let (size, offset) = page::params(q, 10, 50)?;
        let id = q
            .get("department_id")
            .ok_or_else(|| ApiError::field("department_id", "", "required"))?;
        let odid = v.visible_dept(id, v.dt)?;
        let members = v.ix.members.get(&odid).map(Vec::as_slice).unwrap_or(&[]);
        let mut data = Map::new();
        let items = page::slice(members, size, offset, &mut data)
            .iter()
            .filter_map(|u| v.t.users.get(u).map(|u| v.user_raw(u)))
            .collect();
        let next = data
            .get("page_token")
            .and_then(Value::as_str)
            .map(String::from);
        Ok((next, items))
    })
    .await
}

/// What `scopes` lists: users, then departments, then groups (openapi.md §4.3).
enum ScopeItem {
    User(String),
    Dept(String),
}

async fn scopes(emu: web::Data<Emulator>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    with_view(&emu, &req, SCOPES, |v, q| {
        let (size, offset) = page::params(q, 50, 100)?;
        let app =
            v.t.app(v.app_id)
                .ok_or_else(|| ApiError::new(400, 99991663, "app not found"))?;
        let mut items = Vec::new();
        if app.contact_scope.all {
            for u in v.ix.members.get("0").into_iter().flatten() {
                items.push(ScopeItem::User(u.clone()));
            }
            for d in v.ix.children.get("0").into_iter().flatten() {
                items.push(ScopeItem::Dept(d.clone()));
            }
        } else {
            for u in &app.contact_scope.user_ids {
                items.push(ScopeItem::User(u.clone()));
            }
            for d in &app.contact_scope.department_ids {
                items.push(ScopeItem::Dept(d.clone()));
            }
        }
        let mut data = Map::new();
        let mut users = Vec::new();
        let mut depts = Vec::new();
        for it in page::slice(&items, size, offset, &mut data) {
            match it {
                ScopeItem::User(u) => users.push(v.user_out(&u)),
                ScopeItem::Dept(d) => depts.push(match v.dt {
                    DeptIdType::Open => d,
                    DeptIdType::Custom => v.dept_out(&d),
                }),
            }
        }
        data.insert("user_ids".into(), json!(users));
        data.insert("department_ids".into(), json!(depts));
        data.insert("group_ids".into(), json!([]));
        Ok(Value::Object(data))
    })
    .await
}

impl Clone for ScopeItem {
    fn clone(&self) -> Self {
        match self {
            ScopeItem::User(u) => ScopeItem::User(u.clone()),
            ScopeItem::Dept(d) => ScopeItem::Dept(d.clone()),
        }
    }
}

#[derive(serde::Deserialize)]
struct BatchGetId {
    #[serde(default)]
    emails: Vec<String>,
    #[serde(default)]
    mobiles: Vec<String>,
    #[serde(default)]
    include_resigned: bool,
}

/// `POST users/batch_get_id`: ids by email or mobile (≤ 50 each); unknown or invisible
/// ones come back without `user_id`.
async fn user_batch_get_id(
    emu: web::Data<Emulator>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let b: BatchGetId =
        serde_json::from_slice(&body).map_err(|e| ApiError::field("body", "", &e.to_string()))?;
    if b.emails.len() > 50 {
        return Err(ApiError::field(
            "emails",
            &b.emails.len().to_string(),
            "the max length is 50",
        ));
    }
    if b.mobiles.len() > 50 {
        return Err(ApiError::field(
            "mobiles",
            &b.mobiles.len().to_string(),
            "the max length is 50",
        ));
    }
    with_view(&emu, &req, USER_BATCH_GET_ID, |v, _| {
        let mut list = Vec::new();
        let lookups = b
            .emails
            .iter()
            .map(|e| ("email", e, v.ix.user_by_email.get(e)))
            .chain(
                b.mobiles
                    .iter()
                    .map(|m| ("mobile", m, v.ix.user_by_mobile.get(m))),
            );
        for (kind, key, found) in lookups {
            let mut item = json!({ kind: key });
            let user = found
                .and_then(|uid| v.t.users.get(uid))
                .filter(|u| v.scope.user(&u.user_id) || (b.include_resigned && v.scope.all))
                .filter(|u| b.include_resigned || !u.status.is_resigned);
            if let Some(u) = user {
                item["user_id"] = json!(v.user_out(&u.user_id));
                item["status"] = json!(u.status);
            }
            list.push(item);
        }
        Ok(json!({"user_list": list}))
    })
    .await
}
