//! Contact events (events.md §4) turned into operations on the directory.

use bridge_contracts::v1::FeishuEvent;
use bridge_feishu::api::contact::{Department as FDept, User as FUser};
use prost::Message as _;
use serde::Deserialize;

use crate::model::{self, Place};

/// What one contact event asks for.
#[derive(Debug)]
pub enum Op {
    UpsertUser {
        user: Box<FUser>,
        places: Option<Vec<Place>>,
        needs_fetch: bool,
    },
    DeleteUser(String),
    UpsertDepartment {
        department: Box<FDept>,
        needs_fetch: bool,
    },
    DeleteDepartment(String),
    Scope(Box<ScopeChange>),
    /// The stored data may be stale in ways no event describes: reconcile.
    Reconcile,
    /// Nothing stored depends on it (e.g. employee-type option renamed).
    Ignore,
}

#[derive(Debug, Default, Deserialize)]
pub struct ScopePart {
    #[serde(default)]
    pub departments: Vec<FDept>,
    #[serde(default)]
    pub users: Vec<FUser>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ScopeChange {
    #[serde(default)]
    pub added: ScopePart,
    #[serde(default)]
    pub removed: ScopePart,
}

/// One decoded contact event.
#[derive(Debug)]
pub struct ContactEvent {
    pub event_id: String,
    pub app_id: String,
    pub event_type: String,
    /// The event's create_time in ms: the version of what it describes.
    pub version: i64,
    pub op: Op,
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    event: serde_json::Value,
}

#[derive(Deserialize)]
struct ObjectEvent<T> {
    object: Option<T>,
    #[serde(default)]
    old_object: serde_json::Value,
}

fn object<T: for<'de> Deserialize<'de>>(
    event: serde_json::Value,
) -> Result<(T, serde_json::Value), String> {
    let e: ObjectEvent<T> =
        serde_json::from_value(event).map_err(|e| format!("event body: {e}"))?;
    Ok((e.object.ok_or("event lacks `object`")?, e.old_object))
}

/// Decodes a `FeishuEvent` from the bus into an operation. Errors are permanent: the message
/// can never be applied.
pub fn decode(body: &[u8]) -> Result<ContactEvent, String> {
    let fe = FeishuEvent::decode(body).map_err(|e| format!("not a FeishuEvent: {e}"))?;
    let env: Envelope =
        serde_json::from_slice(&fe.payload).map_err(|e| format!("payload is not JSON: {e}"))?;
    let event = env.event;
    let op = match fe.event_type.as_str() {
        "contact.user.created_v3" | "contact.user.updated_v3" => {
            let (user, old): (FUser, _) = object(event)?;
            if user.open_id.as_deref().unwrap_or_default().is_empty() {
                return Err("user event without open_id".into());
            }
            let places = model::places(&user);
            // Feishu documents `object.department_ids` as never filled, so departments come
            // from `orders` or, failing that, from the contact API.
            let departments_changed = fe.event_type.ends_with("created_v3")
                || old.get("department_ids").is_some()
                || old.get("orders").is_some();
            let needs_fetch = places.is_none() && departments_changed;
            Op::UpsertUser {
                user: Box::new(user),
                places,
                needs_fetch,
            }
        }
        "contact.user.deleted_v3" => {
            let (user, old): (FUser, serde_json::Value) = object(event)?;
            let open_id = user
                .open_id
                .or_else(|| {
                    old.get("open_id")
                        .and_then(|v| v.as_str())
                        .map(str::to_string)
                })
                .filter(|s| !s.is_empty())
                .ok_or("user deletion without open_id")?;
            Op::DeleteUser(open_id)
        }
        "contact.department.created_v3" | "contact.department.updated_v3" => {
            let (d, _): (FDept, _) = object(event)?;
            if d.open_department_id
                .as_deref()
                .unwrap_or_default()
                .is_empty()
            {
                return Err("department event without open_department_id".into());
            }
            // Events carry no i18n_name; the API has it.
            Op::UpsertDepartment {
                department: Box::new(d),
                needs_fetch: true,
            }
        }
        "contact.department.deleted_v3" => {
            let (d, old): (FDept, serde_json::Value) = object(event)?;
            let id = d
                .open_department_id
                .or_else(|| {
                    old.get("open_department_id")
                        .and_then(|v| v.as_str())
                        .map(str::to_string)
                })
                .filter(|s| !s.is_empty())
                .ok_or("department deletion without open_department_id")?;
            Op::DeleteDepartment(id)
        }
        "contact.scope.updated_v3" => {
            let s: ScopeChange =
                serde_json::from_value(event).map_err(|e| format!("scope event: {e}"))?;
            Op::Scope(Box::new(s))
        }
        "contact.custom_attr_event.updated_v3" => Op::Reconcile,
        t if t.starts_with("contact.employee_type_enum.") => Op::Ignore,
        _ => Op::Ignore,
    };
    let version = if fe.create_time_ms > 0 {
        fe.create_time_ms
    } else {
        fe.received_at_ms
    };
    Ok(ContactEvent {
        event_id: fe.event_id,
        app_id: fe.app_id,
        event_type: fe.event_type,
        version,
        op,
    })
}
