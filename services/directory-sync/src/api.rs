//! The read API (service token required): departments, users, search, the canonical export,
//! and sync runs; plus starting a sync.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use bridge_runtime::{ApiError, Mount};
use bridge_store::entity::{department, membership, sync_run, user};
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::model;
use crate::sync::{self, SyncError, SyncOptions};
use crate::Inner;

type Data = web::Data<Arc<Inner>>;

pub fn mount(inner: Arc<Inner>) -> Mount {
    let data: Data = web::Data::new(inner);
    Arc::new(move |cfg: &mut web::ServiceConfig| {
        // Resources, not a scope on `/api/v1/apps/{app_id}`: a scope takes every path under
        // its prefix and would hide the console's and the notifier's routes there.
        let r = |path: &str| {
            web::resource(format!("/api/v1/apps/{{app_id}}{path}")).app_data(data.clone())
        };
        cfg.service(r("/departments").route(web::get().to(departments)))
            .service(r("/departments/{id}").route(web::get().to(department_one)))
            .service(r("/departments/{id}/children").route(web::get().to(children)))
            .service(r("/departments/{id}/members").route(web::get().to(members)))
            .service(r("/users").route(web::get().to(search_users)))
            .service(r("/users/{id}").route(web::get().to(user_one)))
            .service(r("/directory/export").route(web::get().to(export)))
            .service(r("/sync").route(web::post().to(start_sync)))
            .service(r("/sync/runs").route(web::get().to(runs)))
            .service(r("/sync/runs/{run_id}").route(web::get().to(run_one)));
    })
}

fn db_err(e: sea_orm::DbErr) -> ApiError {
    tracing::warn!(error = %e, "directory query failed");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        50301,
        "database unavailable",
    )
}

fn known_app(inner: &Inner, app_id: &str) -> Result<(), ApiError> {
    inner.apps.get(app_id).map(|_| ()).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            40400,
            format!("unknown app {app_id}"),
        )
    })
}

/// A service token, or a session of the app (see `bridge_session::Gate`).
async fn guard(inner: &Inner, req: &HttpRequest, app_id: &str) -> Result<(), ApiError> {
    inner.gate.caller(req).await?.require_app(app_id)?;
    known_app(inner, app_id)
}

/// A service token, or a session of an admin of the app.
async fn admin_guard(inner: &Inner, req: &HttpRequest, app_id: &str) -> Result<(), ApiError> {
    inner.gate.caller(req).await?.require_admin(app_id)?;
    known_app(inner, app_id)
}

/// An app's live, known departments (not tombstones, not placeholders), in display order.
fn visible_departments(app_id: &str) -> sea_orm::Select<department::Entity> {
    department::Entity::find()
        .filter(department::Column::AppId.eq(app_id))
        .filter(department::Column::Deleted.eq(false))
        .filter(department::Column::Placeholder.eq(false))
        .order_by_asc(department::Column::SortOrder)
        .order_by_asc(department::Column::OpenDepartmentId)
}

fn dept_json(d: &department::Model) -> Value {
    serde_json::to_value(model::department_pb_json(d)).unwrap_or_default()
}

async fn departments(
    inner: Data,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let app_id = path.into_inner();
    guard(&inner, &req, &app_id).await?;
    let rows = visible_departments(&app_id)
        .all(&inner.db)
        .await
        .map_err(db_err)?;
    // The tree: each department with its children, from the root "0".
    let mut by_parent: std::collections::HashMap<String, Vec<&department::Model>> =
        std::collections::HashMap::new();
    for d in &rows {
        by_parent
            .entry(d.parent_id.clone().unwrap_or_else(|| "0".into()))
            .or_default()
            .push(d);
    }
    fn node(
        d: &department::Model,
        by_parent: &std::collections::HashMap<String, Vec<&department::Model>>,
        depth: usize,
    ) -> Value {
        let mut v = dept_json(d);
        let kids: Vec<Value> = if depth > 64 {
            vec![]
        } else {
            by_parent
                .get(&d.open_department_id)
                .map(|k| k.iter().map(|c| node(c, by_parent, depth + 1)).collect())
                .unwrap_or_default()
        };
        v["children"] = Value::Array(kids);
        v
    }
    let ids: std::collections::HashSet<&str> =
        rows.iter().map(|d| d.open_department_id.as_str()).collect();
    // Top level: children of the root, and departments whose parent is not visible.
    let tops: Vec<Value> = rows
        .iter()
        .filter(|d| {
            d.parent_id
                .as_deref()
                .is_none_or(|p| p == "0" || !ids.contains(p))
        })
        .map(|d| node(d, &by_parent, 0))
        .collect();
    Ok(HttpResponse::Ok().json(json!({"app_id": app_id, "count": rows.len(), "tree": tops})))
}

async fn find_department(
    inner: &Inner,
    app_id: &str,
    id: &str,
) -> Result<department::Model, ApiError> {
    department::Entity::find()
        .filter(department::Column::AppId.eq(app_id))
        .filter(
            Condition::any()
                .add(department::Column::OpenDepartmentId.eq(id))
                .add(department::Column::DepartmentId.eq(id)),
        )
        .filter(department::Column::Deleted.eq(false))
        .one(&inner.db)
        .await
        .map_err(db_err)?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, 40410, format!("no department {id}")))
}

async fn department_one(
    inner: Data,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (app_id, id) = path.into_inner();
    guard(&inner, &req, &app_id).await?;
    let d = find_department(&inner, &app_id, &id).await?;
    Ok(HttpResponse::Ok().json(dept_json(&d)))
}

async fn children(
    inner: Data,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (app_id, id) = path.into_inner();
    guard(&inner, &req, &app_id).await?;
    let parent = if id == "0" {
        "0".to_string()
    } else {
        find_department(&inner, &app_id, &id)
            .await?
            .open_department_id
    };
    let rows = visible_departments(&app_id)
        .filter(department::Column::ParentId.eq(parent))
        .all(&inner.db)
        .await
        .map_err(db_err)?;
    Ok(HttpResponse::Ok().json(json!({"items": rows.iter().map(dept_json).collect::<Vec<_>>()})))
}

#[derive(Deserialize)]
struct PageQuery {
    page_size: Option<u64>,
    page_token: Option<String>,
    q: Option<String>,
}

fn page_size(q: &PageQuery) -> u64 {
    q.page_size.unwrap_or(50).clamp(1, 500)
}

async fn user_json(inner: &Inner, u: &user::Model) -> Result<Value, ApiError> {
    let places = membership::Entity::find()
        .filter(membership::Column::AppId.eq(&u.app_id))
        .filter(membership::Column::OpenId.eq(&u.open_id))
        .all(&inner.db)
        .await
        .map_err(db_err)?;
    Ok(model::user_json(u, &places))
}

async fn members(
    inner: Data,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let (app_id, id) = path.into_inner();
    guard(&inner, &req, &app_id).await?;
    let dept = if id == "0" {
        "0".to_string()
    } else {
        find_department(&inner, &app_id, &id)
            .await?
            .open_department_id
    };
    let size = page_size(&q);
    let mut query = membership::Entity::find()
        .filter(membership::Column::AppId.eq(&app_id))
        .filter(membership::Column::OpenDepartmentId.eq(&dept))
        .order_by_asc(membership::Column::OpenId)
        .limit(size + 1);
    if let Some(t) = q.page_token.as_deref().filter(|t| !t.is_empty()) {
        query = query.filter(membership::Column::OpenId.gt(t));
    }
    let mut ms = query.all(&inner.db).await.map_err(db_err)?;
    let has_more = ms.len() as u64 > size;
    ms.truncate(size as usize);
    let ids: Vec<String> = ms.iter().map(|m| m.open_id.clone()).collect();
    let users = user::Entity::find()
        .filter(user::Column::AppId.eq(&app_id))
        .filter(user::Column::OpenId.is_in(ids.clone()))
        .filter(user::Column::Deleted.eq(false))
        .order_by_asc(user::Column::OpenId)
        .all(&inner.db)
        .await
        .map_err(db_err)?;
    let mut items = Vec::with_capacity(users.len());
    for u in &users {
        items.push(user_json(&inner, u).await?);
    }
    Ok(HttpResponse::Ok().json(json!({
        "items": items,
        "has_more": has_more,
        "page_token": if has_more { ids.last().cloned() } else { None },
    })))
}

async fn user_one(
    inner: Data,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (app_id, id) = path.into_inner();
    guard(&inner, &req, &app_id).await?;
    let u = user::Entity::find()
        .filter(user::Column::AppId.eq(&app_id))
        .filter(user::Column::Deleted.eq(false))
        .filter(
            Condition::any()
                .add(user::Column::OpenId.eq(&id))
                .add(user::Column::UnionId.eq(&id))
                .add(user::Column::UserId.eq(&id))
                .add(user::Column::Email.eq(&id)),
        )
        .one(&inner.db)
        .await
        .map_err(db_err)?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, 40411, format!("no user {id}")))?;
    Ok(HttpResponse::Ok().json(user_json(&inner, &u).await?))
}

async fn search_users(
    inner: Data,
    req: HttpRequest,
    path: web::Path<String>,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let app_id = path.into_inner();
    guard(&inner, &req, &app_id).await?;
    let size = page_size(&q);
    let mut query = user::Entity::find()
        .filter(user::Column::AppId.eq(&app_id))
        .filter(user::Column::Deleted.eq(false))
        .order_by_asc(user::Column::OpenId)
        .limit(size + 1);
    if let Some(term) = q.q.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        let like = format!("%{}%", term.replace('%', "\\%").replace('_', "\\_"));
        query = query.filter(
            Condition::any()
                .add(user::Column::Name.like(&like))
                .add(user::Column::EnName.like(&like))
                .add(user::Column::Email.like(&like))
                .add(user::Column::EnterpriseEmail.like(&like))
                .add(user::Column::Mobile.like(&like)),
        );
    }
    if let Some(t) = q.page_token.as_deref().filter(|t| !t.is_empty()) {
        query = query.filter(user::Column::OpenId.gt(t));
    }
    let mut rows = query.all(&inner.db).await.map_err(db_err)?;
    let has_more = rows.len() as u64 > size;
    rows.truncate(size as usize);
    let mut items = Vec::with_capacity(rows.len());
    for u in &rows {
        items.push(user_json(&inner, u).await?);
    }
    Ok(HttpResponse::Ok().json(json!({
        "items": items,
        "has_more": has_more,
        "page_token": if has_more { rows.last().map(|u| u.open_id.clone()) } else { None },
    })))
}

async fn export(
    inner: Data,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let app_id = path.into_inner();
    guard(&inner, &req, &app_id).await?;
    let e = crate::export::export(&inner.db, &app_id)
        .await
        .map_err(db_err)?;
    Ok(HttpResponse::Ok().json(e))
}

#[derive(Deserialize, Default)]
struct SyncBody {
    #[serde(default)]
    force: bool,
    #[serde(default)]
    wait: bool,
}

async fn start_sync(
    inner: Data,
    req: HttpRequest,
    path: web::Path<String>,
    body: Option<web::Json<SyncBody>>,
) -> Result<HttpResponse, ApiError> {
    let app_id = path.into_inner();
    admin_guard(&inner, &req, &app_id).await?;
    let body = body.map(|b| b.into_inner()).unwrap_or_default();
    let run_id = uuid::Uuid::new_v4().to_string();
    let opts = SyncOptions {
        trigger: "api".into(),
        force: body.force,
        run_id: Some(run_id.clone()),
    };
    if body.wait {
        return match sync::run(&inner, &app_id, opts).await {
            Ok(id) => Ok(HttpResponse::Ok().json(json!({"run_id": id, "status": "succeeded"}))),
            Err(SyncError::AlreadyRunning(_)) => Err(ApiError::new(
                StatusCode::CONFLICT,
                40900,
                "a sync of this app is already running",
            )),
            Err(SyncError::UnknownApp(a)) => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                40400,
                format!("app {a} is not bound or disabled"),
            )),
            Err(e) => Ok(HttpResponse::Ok()
                .json(json!({"run_id": run_id, "status": "failed", "error": e.to_string()}))),
        };
    }
    if inner
        .running
        .lock()
        .map(|r| r.contains(&app_id))
        .unwrap_or(false)
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            40900,
            "a sync of this app is already running",
        ));
    }
    sync::spawn(inner.get_ref().clone(), app_id, opts);
    Ok(HttpResponse::Accepted().json(json!({"run_id": run_id})))
}

fn run_json(r: &sync_run::Model) -> Value {
    json!({
        "run_id": r.id,
        "app_id": r.app_id,
        "kind": r.kind,
        "trigger": r.trigger,
        "status": r.status,
        "started_at": r.started_at,
        "finished_at": r.finished_at,
        "counts": r.counts.as_deref().and_then(|c| serde_json::from_str::<Value>(c).ok()),
        "error": r.error,
    })
}

async fn runs(
    inner: Data,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let app_id = path.into_inner();
    guard(&inner, &req, &app_id).await?;
    let rows = sync_run::Entity::find()
        .filter(sync_run::Column::AppId.eq(&app_id))
        .order_by_desc(sync_run::Column::StartedAt)
        .limit(50)
        .all(&inner.db)
        .await
        .map_err(db_err)?;
    Ok(HttpResponse::Ok().json(json!({"items": rows.iter().map(run_json).collect::<Vec<_>>()})))
}

async fn run_one(
    inner: Data,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (app_id, run_id) = path.into_inner();
    guard(&inner, &req, &app_id).await?;
    let r = sync_run::Entity::find_by_id(run_id.clone())
        .filter(sync_run::Column::AppId.eq(&app_id))
        .one(&inner.db)
        .await
        .map_err(db_err)?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                40412,
                format!("no sync run {run_id}"),
            )
        })?;
    Ok(HttpResponse::Ok().json(run_json(&r)))
}
