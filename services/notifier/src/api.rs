//! The HTTP API: `POST /api/v1/apps/{app_id}/messages` takes the same request as the bus (JSON)
//! and answers 202 with the notification id once it is recorded and queued;
//! `GET /api/v1/messages/{id}` shows where it stands, recipient by recipient.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use bridge_bus::{Message, Props};
use bridge_contracts::topology::NOTIFY_REQUESTS;
use bridge_contracts::v1::{notify_request, NotifyRequest, Template};
use bridge_contracts::PROTOBUF_CONTENT_TYPE;
use bridge_runtime::{ApiError, Mount};
use bridge_store::entity::{notification_batch as batch, notification_recipient as rcpt};
use bytes::Bytes;
use prost::Message as _;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::message::{self, Rejection, Targets};
use crate::records::{self, AcceptError, ACCEPTED};
use crate::Inner;

type Data = web::Data<Arc<Inner>>;

/// Largest request body taken (Feishu's own limit on a text is 150 KB).
const MAX_BODY: usize = 512 * 1024;

pub fn mount(inner: Arc<Inner>) -> Mount {
    let data: Data = web::Data::new(inner);
    Arc::new(move |cfg: &mut web::ServiceConfig| {
        cfg.service(
            web::resource("/api/v1/apps/{app_id}/messages")
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(MAX_BODY))
                .route(web::post().to(send)),
        )
        .service(
            web::resource("/api/v1/messages/{id}")
                .app_data(data.clone())
                .route(web::get().to(status)),
        );
    })
}

/// Who called: a service token, or a session from auth (see `bridge_session::Gate`). The one
/// place callers are authenticated.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    who: bridge_session::Caller,
}

async fn authorize(inner: &Inner, req: &HttpRequest) -> Result<Caller, ApiError> {
    let who = inner.gate.caller(req).await?;
    let name = match &who {
        bridge_session::Caller::Service => "service".to_string(),
        bridge_session::Caller::Session(c) => format!("{} <{}@{}>", c.name, c.open_id, c.app_id),
    };
    Ok(Caller { name, who })
}

fn rejected(r: &Rejection) -> ApiError {
    let status = match r {
        Rejection::UnknownApp(_) => StatusCode::NOT_FOUND,
        Rejection::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        Rejection::KeyReused(_) => StatusCode::CONFLICT,
        Rejection::BadKey
        | Rejection::NoTarget
        | Rejection::TooManyTargets(_)
        | Rejection::EmptyTarget(_)
        | Rejection::NoMessage
        | Rejection::EmptyText
        | Rejection::BadCard(_)
        | Rejection::BadPost(_)
        | Rejection::Template(_)
        | Rejection::Undecodable(_) => StatusCode::BAD_REQUEST,
    };
    ApiError::new(status, r.code(), r.to_string())
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> ApiError {
    tracing::warn!(error = %e, "{what} unavailable");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        50301,
        format!("{what} unavailable; try again with the same idempotency key"),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateBody {
    name: String,
    #[serde(default)]
    variables: Option<Value>,
}

/// The JSON request: the `NotifyRequest` fields, with post and card as JSON values.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendBody {
    #[serde(default)]
    idempotency_key: Option<String>,
    #[serde(default)]
    targets: Option<Targets>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    post: Option<Value>,
    #[serde(default)]
    card: Option<Value>,
    #[serde(default)]
    template: Option<TemplateBody>,
    #[serde(default)]
    reply_to_message_id: Option<String>,
    #[serde(default)]
    requested_by: Option<String>,
}

/// A JSON string stays the string (already serialised JSON); anything else is serialised.
fn json_text(v: Value) -> String {
    match v {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

fn to_request(
    app_id: &str,
    key: String,
    b: SendBody,
    caller: &Caller,
) -> Result<NotifyRequest, ApiError> {
    let mut messages = Vec::new();
    if let Some(t) = b.text {
        messages.push(notify_request::Message::Text(t));
    }
    if let Some(p) = b.post {
        messages.push(notify_request::Message::PostJson(json_text(p)));
    }
    if let Some(c) = b.card {
        messages.push(notify_request::Message::CardJson(json_text(c)));
    }
    if let Some(t) = b.template {
        messages.push(notify_request::Message::Template(Template {
            name: t.name,
            variables_json: t.variables.map(|v| v.to_string()).unwrap_or_default(),
        }));
    }
    if messages.len() > 1 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            40005,
            "give exactly one of text, post, card or template",
        ));
    }
    Ok(NotifyRequest {
        app_id: app_id.to_string(),
        idempotency_key: key,
        targets: b.targets.map(|t| t.to_pb()),
        message: messages.pop(),
        reply_to_message_id: b.reply_to_message_id.unwrap_or_default(),
        requested_by: b.requested_by.unwrap_or_else(|| caller.name.clone()),
    })
}

async fn send(
    inner: Data,
    req: HttpRequest,
    path: web::Path<String>,
    body: Bytes,
) -> Result<HttpResponse, ApiError> {
    let caller = authorize(&inner, &req).await?;
    let app_id = path.into_inner();
    caller.who.require_app(&app_id)?;
    if !inner.known_app(&app_id) {
        return Err(rejected(&Rejection::UnknownApp(app_id)));
    }
    let b: SendBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            40000,
            format!("malformed request body: {e}"),
        )
    })?;
    let header_key = req
        .headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let key = b
        .idempotency_key
        .clone()
        .or(header_key)
        .unwrap_or_else(|| format!("http-{}", uuid::Uuid::new_v4().simple()));
    let pb = to_request(&app_id, key.clone(), b, &caller)?;
    let accepted = message::parse(pb.clone(), "", &inner.templates, |a| inner.known_app(a))
        .map_err(|r| rejected(&r))?;
    let n = match records::accept(&inner.db, &accepted).await {
        Ok(n) => n,
        Err(AcceptError::Rejected(r)) => return Err(rejected(&r)),
        Err(AcceptError::Db(e)) => return Err(unavailable("database", e)),
    };
    if n.status == ACCEPTED {
        let msg = Message {
            exchange: NOTIFY_REQUESTS.to_string(),
            routing_key: format!("{app_id}.http"),
            body: Bytes::from(pb.encode_to_vec()),
            props: Props {
                message_id: accepted.idempotency_key.clone(),
                content_type: PROTOBUF_CONTENT_TYPE.to_string(),
                type_name: NotifyRequest::FULL_NAME.to_string(),
                timestamp_ms: chrono::Utc::now().timestamp_millis(),
                headers: vec![(
                    "traceparent".to_string(),
                    bridge_runtime::telemetry::current_traceparent(),
                )],
            },
        };
        inner
            .bus
            .publish(&msg)
            .await
            .map_err(|e| unavailable("broker", e))?;
    }
    Ok(HttpResponse::Accepted().json(json!({
        "notification_id": n.id,
        "idempotency_key": n.idempotency_key,
        "status": n.status,
    })))
}

#[derive(Deserialize)]
struct StatusQuery {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    limit: Option<u64>,
    #[serde(default)]
    offset: Option<u64>,
}

async fn status(
    inner: Data,
    req: HttpRequest,
    path: web::Path<String>,
    q: web::Query<StatusQuery>,
) -> Result<HttpResponse, ApiError> {
    let caller = authorize(&inner, &req).await?;
    let id = path.into_inner();
    let n = records::get(&inner.db, &id)
        .await
        .map_err(|e| unavailable("database", e))?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                40402,
                format!("no notification {id}"),
            )
        })?;
    caller.who.require_app(&n.app_id)?;
    let t = records::tally(&inner.db, &id)
        .await
        .map_err(|e| unavailable("database", e))?;
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000);
    let mut find = rcpt::Entity::find().filter(rcpt::Column::NotificationId.eq(id.clone()));
    if let Some(s) = &q.status {
        find = find.filter(rcpt::Column::Status.eq(s.clone()));
    }
    let items: Vec<Value> = find
        .order_by_asc(rcpt::Column::Id)
        .offset(q.offset.unwrap_or(0))
        .limit(limit)
        .all(&inner.db)
        .await
        .map_err(|e| unavailable("database", e))?
        .into_iter()
        .map(|r| {
            json!({
                "kind": r.kind,
                "id": r.target,
                "via": r.via,
                "status": r.status,
                "message_id": r.message_id,
                "code": r.code,
                "msg": r.msg,
                "attempts": r.attempts,
                "updated_at": r.updated_at.to_rfc3339(),
            })
        })
        .collect();
    let batches: Vec<Value> = batch::Entity::find()
        .filter(batch::Column::NotificationId.eq(id.clone()))
        .order_by_asc(batch::Column::Chunk)
        .all(&inner.db)
        .await
        .map_err(|e| unavailable("database", e))?
        .into_iter()
        .map(|b| {
            json!({
                "chunk": b.chunk,
                "batch_message_id": b.batch_message_id,
                "status": b.status,
                "valid_user_ids_count": b.valid_count,
                "success_user_ids_count": b.success_count,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "notification_id": n.id,
        "app_id": n.app_id,
        "idempotency_key": n.idempotency_key,
        "requested_by": n.requested_by,
        "msg_type": n.msg_type,
        "status": n.status,
        "outcome": n.outcome,
        "recipients": t.total(),
        "queued": t.queued,
        "sent": t.sent,
        "failed": t.failed,
        "created_at": n.created_at.to_rfc3339(),
        "finished_at": n.finished_at.map(|f| f.to_rfc3339()),
        "reported": n.reported_at.is_some(),
        "batches": batches,
        "items": items,
    })))
}
