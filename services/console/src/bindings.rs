//! The admin API: bindings (create, read, update, disable, delete; secrets write-only; every
//! change audited), the checklist, install runs, the audit trail and the app's status.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use bridge_runtime::ApiError;
use bridge_store::apps::BindingInput;
use bridge_store::entity::{app_activity, console_audit, console_install_run, sync_run};
use bridge_store::{AppBinding, Delivery, Domain};
use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::access::{admin, Actor};
use crate::{install, setup, Inner};

type Data = web::Data<Arc<Inner>>;

pub fn routes(cfg: &mut web::ServiceConfig, inner: Arc<Inner>) {
    let data = web::Data::new(inner);
    let json_cfg = web::JsonConfig::default()
        .limit(64 * 1024)
        .error_handler(|e, _| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                40040,
                format!("bad request body: {e}"),
            )
            .into()
        });
    // Resources, not a scope: other services have routes under the same prefix.
    let r = |path: &str| {
        web::resource(path)
            .app_data(data.clone())
            .app_data(json_cfg.clone())
    };
    cfg.service(
        r("/api/v1/apps")
            .route(web::get().to(list))
            .route(web::post().to(create)),
    )
    .service(
        r("/api/v1/apps/{app_id}")
            .route(web::get().to(read))
            .route(web::patch().to(update))
            .route(web::delete().to(delete)),
    )
    .service(r("/api/v1/apps/{app_id}/setup").route(web::get().to(checklist)))
    .service(
        r("/api/v1/apps/{app_id}/install")
            .route(web::post().to(install_start))
            .route(web::get().to(install_list)),
    )
    .service(r("/api/v1/apps/{app_id}/install/{run_id}").route(web::get().to(install_one)))
    .service(r("/api/v1/apps/{app_id}/audit").route(web::get().to(audit)));
}

fn db_err(e: impl std::fmt::Display) -> ApiError {
    tracing::warn!(error = %e, "console storage failed");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        50330,
        "database unavailable",
    )
}

fn secret_view(s: Option<&SecretString>) -> Value {
    match s.map(|s| s.expose_secret()).filter(|s| !s.is_empty()) {
        Some(v) => {
            let chars: Vec<char> = v.chars().collect();
            let last4: String = chars[chars.len().saturating_sub(4)..].iter().collect();
            json!({"set": true, "last4": last4})
        }
        None => json!({"set": false}),
    }
}

fn view(b: &AppBinding) -> Value {
    json!({
        "app_id": b.app_id,
        "team_name": b.team_name,
        "domain": b.domain.as_str(),
        "enabled": b.enabled,
        "qr_login_enabled": b.qr_login_enabled,
        "delivery": b.delivery.as_str(),
        "secrets": {
            "app_secret": secret_view(Some(&b.app_secret)),
            "encrypt_key": secret_view(b.encrypt_key.as_ref()),
            "verification_token": secret_view(Some(&b.verification_token)),
        },
        "updated_at": b.updated_at,
    })
}

fn not_found(app_id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        40440,
        format!("no binding for app {app_id}"),
    )
}

fn binding(inner: &Inner, app_id: &str) -> Result<Arc<AppBinding>, ApiError> {
    inner.apps.get(app_id).ok_or_else(|| not_found(app_id))
}

async fn record(
    inner: &Inner,
    actor: &Actor,
    action: &str,
    app_id: &str,
    changes: Value,
) -> Result<(), ApiError> {
    console_audit::ActiveModel {
        at: Set(Utc::now()),
        actor: Set(actor.0.clone()),
        action: Set(action.into()),
        app_id: Set(app_id.into()),
        changes: Set(changes.to_string()),
        ..Default::default()
    }
    .insert(&inner.db)
    .await
    .map_err(db_err)?;
    Ok(())
}

async fn list(inner: Data, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    admin(&inner, &req).await?;
    let items: Vec<Value> = inner.apps.all().iter().map(|b| view(b)).collect();
    Ok(HttpResponse::Ok().json(json!({ "items": items })))
}

/// A binding as the API takes it. Unknown fields are refused (a typo must not pass silently).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Input {
    app_id: Option<String>,
    app_secret: Option<String>,
    encrypt_key: Option<String>,
    verification_token: Option<String>,
    team_name: Option<String>,
    domain: Option<String>,
    enabled: Option<bool>,
    qr_login_enabled: Option<bool>,
    /// `webhook`, `long_connection` or `both`.
    delivery: Option<String>,
}

/// Checks an input; on create every required field must be there.
fn validate(i: &Input, creating: bool) -> Result<(), ApiError> {
    let mut problems = Vec::new();
    if creating {
        match i.app_id.as_deref() {
            None | Some("") => problems.push("app_id: required".to_string()),
            Some(a) if !bridge_runtime::settings::is_app_id(a) => problems.push(format!(
                "app_id: `{a}` is not an App ID (cli_ followed by 16 hex digits)"
            )),
            _ => {}
        }
    } else if i.app_id.is_some() {
        problems.push("app_id: cannot be changed; delete the binding and create another".into());
    }
    for (name, v) in [
        ("app_secret", &i.app_secret),
        ("verification_token", &i.verification_token),
    ] {
        match v.as_deref() {
            None if creating => problems.push(format!("{name}: required")),
            Some(s) if s.trim().is_empty() => problems.push(format!("{name}: must not be empty")),
            Some(s) if s.len() > 256 || s.trim() != s => {
                problems.push(format!("{name}: malformed (spaces or over 256 characters)"))
            }
            _ => {}
        }
    }
    if let Some(k) = i.encrypt_key.as_deref() {
        if k.len() > 256 || k.trim() != k {
            problems.push("encrypt_key: malformed (spaces or over 256 characters)".into());
        }
    }
    if let Some(t) = i.team_name.as_deref() {
        if t.chars().count() > 100 {
            problems.push("team_name: at most 100 characters".into());
        }
    }
    if let Some(d) = i.domain.as_deref() {
        if Domain::parse(d).is_none() {
            problems.push(format!("domain: `{d}` is neither `feishu` nor `lark`"));
        }
    }
    if let Some(d) = i.delivery.as_deref() {
        if Delivery::parse(d).is_none() {
            problems.push(format!(
                "delivery: `{d}` is not `webhook`, `long_connection` or `both`"
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            40041,
            problems.join("; "),
        ))
    }
}

/// What changed, for the audit trail: values of plain fields, "changed" for secrets.
fn changes(i: &Input) -> Value {
    let mut m = Map::new();
    for (k, v) in [
        ("app_secret", &i.app_secret),
        ("encrypt_key", &i.encrypt_key),
        ("verification_token", &i.verification_token),
    ] {
        if let Some(v) = v {
            m.insert(
                k.into(),
                json!(if v.is_empty() { "removed" } else { "changed" }),
            );
        }
    }
    if let Some(v) = &i.team_name {
        m.insert("team_name".into(), json!(v));
    }
    if let Some(v) = &i.domain {
        m.insert("domain".into(), json!(v));
    }
    if let Some(v) = i.enabled {
        m.insert("enabled".into(), json!(v));
    }
    if let Some(v) = i.qr_login_enabled {
        m.insert("qr_login_enabled".into(), json!(v));
    }
    if let Some(v) = &i.delivery {
        m.insert("delivery".into(), json!(v));
    }
    Value::Object(m)
}

fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_string())
}

async fn create(
    inner: Data,
    req: HttpRequest,
    body: web::Json<Input>,
) -> Result<HttpResponse, ApiError> {
    let actor = admin(&inner, &req).await?;
    let i = body.into_inner();
    validate(&i, true)?;
    let app_id = i.app_id.clone().unwrap_or_default();
    if inner.apps.get(&app_id).is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            40940,
            format!("a binding for app {app_id} already exists; change it instead"),
        ));
    }
    let input = BindingInput {
        app_id: app_id.clone(),
        app_secret: secret(i.app_secret.as_deref().unwrap_or_default()),
        encrypt_key: i
            .encrypt_key
            .as_deref()
            .filter(|k| !k.is_empty())
            .map(secret),
        verification_token: secret(i.verification_token.as_deref().unwrap_or_default()),
        team_name: i.team_name.clone().unwrap_or_default(),
        domain: i
            .domain
            .as_deref()
            .and_then(Domain::parse)
            .unwrap_or(Domain::Feishu),
        enabled: i.enabled.unwrap_or(true),
        qr_login_enabled: i.qr_login_enabled.unwrap_or(false),
        delivery: i
            .delivery
            .as_deref()
            .and_then(Delivery::parse)
            .unwrap_or_default(),
    };
    inner.apps.upsert(&input).await.map_err(db_err)?;
    record(&inner, &actor, "create", &app_id, changes(&i)).await?;
    tracing::info!(app_id = %app_id, actor = %actor.0, "binding created");
    Ok(HttpResponse::Created().json(view(&*binding(&inner, &app_id)?)))
}

async fn read(
    inner: Data,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    admin(&inner, &req).await?;
    let app_id = path.into_inner();
    let b = binding(&inner, &app_id)?;
    let mut v = view(&b);
    let activity = app_activity::Entity::find_by_id(app_id.clone())
        .one(&inner.db)
        .await
        .map_err(db_err)?;
    v["activity"] = match activity {
        Some(a) => {
            json!({"last_event_at": a.last_event_at, "last_event_type": a.last_event_type, "events": a.events})
        }
        None => Value::Null,
    };
    let last_sync = sync_run::Entity::find()
        .filter(sync_run::Column::AppId.eq(app_id.as_str()))
        .order_by_desc(sync_run::Column::StartedAt)
        .one(&inner.db)
        .await
        .map_err(db_err)?;
    v["last_sync"] = match last_sync {
        Some(r) => {
            json!({"run_id": r.id, "status": r.status, "trigger": r.trigger, "started_at": r.started_at, "finished_at": r.finished_at,
            "counts": r.counts.as_deref().and_then(|c| serde_json::from_str::<Value>(c).ok()), "error": r.error})
        }
        None => Value::Null,
    };
    Ok(HttpResponse::Ok().json(v))
}

async fn update(
    inner: Data,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Json<Input>,
) -> Result<HttpResponse, ApiError> {
    let actor = admin(&inner, &req).await?;
    let app_id = path.into_inner();
    let b = binding(&inner, &app_id)?;
    let i = body.into_inner();
    validate(&i, false)?;
    let keep = |new: &Option<String>, old: &SecretString| match new.as_deref() {
        Some(v) if !v.is_empty() => secret(v),
        _ => old.clone(),
    };
    let input = BindingInput {
        app_id: app_id.clone(),
        app_secret: keep(&i.app_secret, &b.app_secret),
        encrypt_key: match i.encrypt_key.as_deref() {
            Some("") => None,
            Some(k) => Some(secret(k)),
            None => b.encrypt_key.clone(),
        },
        verification_token: keep(&i.verification_token, &b.verification_token),
        team_name: i.team_name.clone().unwrap_or_else(|| b.team_name.clone()),
        domain: i
            .domain
            .as_deref()
            .and_then(Domain::parse)
            .unwrap_or(b.domain),
        enabled: i.enabled.unwrap_or(b.enabled),
        qr_login_enabled: i.qr_login_enabled.unwrap_or(b.qr_login_enabled),
        delivery: i
            .delivery
            .as_deref()
            .and_then(Delivery::parse)
            .unwrap_or(b.delivery),
    };
    let changed = inner.apps.upsert(&input).await.map_err(db_err)?;
    if changed {
        record(&inner, &actor, "update", &app_id, changes(&i)).await?;
        tracing::info!(app_id = %app_id, actor = %actor.0, "binding changed");
    }
    Ok(HttpResponse::Ok().json(view(&*binding(&inner, &app_id)?)))
}

async fn delete(
    inner: Data,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let actor = admin(&inner, &req).await?;
    let app_id = path.into_inner();
    binding(&inner, &app_id)?;
    inner.apps.delete(&app_id).await.map_err(db_err)?;
    record(&inner, &actor, "delete", &app_id, json!({})).await?;
    tracing::info!(app_id = %app_id, actor = %actor.0, "binding deleted");
    Ok(HttpResponse::NoContent().finish())
}

async fn checklist(
    inner: Data,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    admin(&inner, &req).await?;
    let app_id = path.into_inner();
    binding(&inner, &app_id)?;
    Ok(HttpResponse::Ok().json(setup::checklist(&inner, &req, &app_id)))
}

async fn install_start(
    inner: Data,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let actor = admin(&inner, &req).await?;
    let app_id = path.into_inner();
    binding(&inner, &app_id)?;
    let id = install::start(inner.get_ref().clone(), app_id.clone(), actor.0.clone())
        .await
        .map_err(db_err)?;
    record(&inner, &actor, "install", &app_id, json!({"run_id": id})).await?;
    Ok(HttpResponse::Accepted().json(json!({"run_id": id, "status": "running"})))
}

async fn install_list(
    inner: Data,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    admin(&inner, &req).await?;
    let app_id = path.into_inner();
    let rows = console_install_run::Entity::find()
        .filter(console_install_run::Column::AppId.eq(app_id.as_str()))
        .order_by_desc(console_install_run::Column::StartedAt)
        .limit(20)
        .all(&inner.db)
        .await
        .map_err(db_err)?;
    Ok(HttpResponse::Ok()
        .json(json!({"items": rows.iter().map(install::run_json).collect::<Vec<_>>()})))
}

async fn install_one(
    inner: Data,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    admin(&inner, &req).await?;
    let (app_id, run_id) = path.into_inner();
    let r = console_install_run::Entity::find_by_id(run_id.clone())
        .filter(console_install_run::Column::AppId.eq(app_id.as_str()))
        .one(&inner.db)
        .await
        .map_err(db_err)?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                40441,
                format!("no install run {run_id} for app {app_id}"),
            )
        })?;
    Ok(HttpResponse::Ok().json(install::run_json(&r)))
}

async fn audit(
    inner: Data,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    admin(&inner, &req).await?;
    let app_id = path.into_inner();
    let rows = console_audit::Entity::find()
        .filter(console_audit::Column::AppId.eq(app_id.as_str()))
        .order_by_desc(console_audit::Column::Id)
        .limit(100)
        .all(&inner.db)
        .await
        .map_err(db_err)?;
    let items: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({"at": r.at, "actor": r.actor, "action": r.action,
            "changes": serde_json::from_str::<Value>(&r.changes).unwrap_or(Value::Null)})
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "items": items })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_every_problem() {
        let e = validate(
            &Input {
                app_id: Some("cli_XYZ".into()),
                ..Default::default()
            },
            true,
        )
        .unwrap_err();
        assert!(
            e.msg.contains("app_id")
                && e.msg.contains("app_secret: required")
                && e.msg.contains("verification_token: required"),
            "{}",
            e.msg
        );
        let ok = Input {
            app_id: Some("cli_0123456789abcdef".into()),
            app_secret: Some("s".into()),
            verification_token: Some("v".into()),
            ..Default::default()
        };
        assert!(validate(&ok, true).is_ok());
        let e = validate(
            &Input {
                app_id: Some("cli_0123456789abcdef".into()),
                ..Default::default()
            },
            false,
        )
        .unwrap_err();
        assert!(e.msg.contains("cannot be changed"));
        let e = validate(
            &Input {
                domain: Some("google".into()),
                app_secret: Some(" ".into()),
                ..Default::default()
            },
            false,
        )
        .unwrap_err();
        assert!(
            e.msg.contains("domain") && e.msg.contains("app_secret"),
            "{}",
            e.msg
        );
    }

    #[test]
    fn secrets_show_only_their_last_four() {
        assert_eq!(
            secret_view(Some(&secret("abcdefgh"))),
            json!({"set": true, "last4": "efgh"})
        );
        assert_eq!(
            secret_view(Some(&secret("ab"))),
            json!({"set": true, "last4": "ab"})
        );
        assert_eq!(secret_view(None), json!({"set": false}));
    }
}
