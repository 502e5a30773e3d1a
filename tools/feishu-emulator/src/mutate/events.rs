//! The contact events of a mutation, per app, from the index before and after it.

use serde_json::{json, Map, Value};

use super::Events;
use crate::api::view::View;
use crate::emulator::World;
use crate::ids;
use crate::index::TenantIndex;
use crate::state::{Department, Tenant, User};

/// The user's visible department ids (for `old_object.department_ids`).
fn dept_ids(v: &View, u: &User) -> Value {
    json!(v
        .user_departments(u)
        .iter()
        .map(|m| m.department.clone())
        .collect::<Vec<_>>())
}

fn changed(before: &Value, after: &Value) -> Map<String, Value> {
    let mut out = Map::new();
    if let (Some(b), Some(a)) = (before.as_object(), after.as_object()) {
        for (k, bv) in b {
            if a.get(k) != Some(bv) {
                out.insert(k.clone(), bv.clone());
            }
        }
    }
    out
}

/// Splits changed fields into: everything else, `email`, `mobile` (empty parts dropped).
fn split_contact_changes(mut changed: Map<String, Value>) -> Vec<Map<String, Value>> {
    let mut parts = Vec::new();
    let email = changed.remove("email");
    let mobile = changed.remove("mobile");
    if !changed.is_empty() {
        parts.push(changed);
    }
    for (k, v) in [("email", email), ("mobile", mobile)] {
        if let Some(v) = v {
            let mut m = Map::new();
            m.insert(k.into(), v);
            parts.push(m);
        }
    }
    parts
}

/// Whether each app saw the user before a change (for [`user_events`]).
pub(crate) fn seen_by_apps(t: &Tenant, ix: &TenantIndex, u: Option<&User>) -> Vec<bool> {
    t.apps
        .iter()
        .map(|a| {
            u.is_some_and(|u| {
                !u.status.is_resigned && ix.scope.get(&a.app_id).is_some_and(|v| v.user(&u.user_id))
            })
        })
        .collect()
}

/// User events per app. A user mutation cannot change department visibility, so the same
/// index renders both sides; `seen_before` (per app, in order) says who saw the user before.
pub(crate) fn user_events(
    t: &Tenant,
    ix: &TenantIndex,
    before: Option<&User>,
    after: Option<&User>,
    seen_before: &[bool],
) -> Events {
    let mut out = Events::new();
    for (i, app) in t.apps.iter().enumerate() {
        if app.event_request_url.is_none() {
            continue;
        }
        let vb = View::new(t, ix, &app.app_id);
        let va = View::new(t, ix, &app.app_id);
        let seen_before = before.filter(|_| seen_before.get(i).copied().unwrap_or(false));
        let seen_after = after.filter(|u| !u.status.is_resigned && va.scope.user(&u.user_id));
        match (seen_before, seen_after) {
            (Some(b), Some(a)) => {
                let mut old_object = changed(&vb.user_event(b), &va.user_event(a));
                let (db, da) = (dept_ids(&vb, b), dept_ids(&va, a));
                if db != da {
                    old_object.insert("department_ids".into(), db);
                }
                // A mobile change and an email change each arrive as their own event.
                let object = va.user_event(a);
                for part in split_contact_changes(old_object) {
                    let ev = json!({"object": object, "old_object": part});
                    out.push((app.app_id.clone(), "contact.user.updated_v3", ev));
                }
            }
            (None, Some(a)) => {
                out.push((
                    app.app_id.clone(),
                    "contact.user.created_v3",
                    json!({"object": va.user_event(a)}),
                ));
            }
            (Some(b), None) => {
                let shown = after.unwrap_or(b);
                let ev = json!({
                    "object": vb.user_event(shown),
                    "old_object": {"department_ids": dept_ids(&vb, b), "open_id": ids::open_id(&app.app_id, &b.user_id)},
                });
                out.push((app.app_id.clone(), "contact.user.deleted_v3", ev));
            }
            (None, None) => {}
        }
    }
    out
}

pub(crate) fn department_events(
    t: &Tenant,
    old: &TenantIndex,
    new: &TenantIndex,
    before: Option<&Department>,
    after: Option<&Department>,
) -> Events {
    let mut out = Events::new();
    for app in t.apps.iter().filter(|a| a.event_request_url.is_some()) {
        let vb = View::new(t, old, &app.app_id);
        let va = View::new(t, new, &app.app_id);
        let sb = before.filter(|d| vb.scope.department(&d.open_department_id));
        let sa = after.filter(|d| va.scope.department(&d.open_department_id));
        match (sb, sa) {
            (Some(b), Some(a)) => {
                let old_object = changed(
                    &vb.department_event(b, false),
                    &va.department_event(a, false),
                );
                if !old_object.is_empty() {
                    let ev =
                        json!({"object": va.department_event(a, false), "old_object": old_object});
                    out.push((app.app_id.clone(), "contact.department.updated_v3", ev));
                }
            }
            (None, Some(a)) => {
                let ev = json!({"object": va.department_event(a, false)});
                out.push((app.app_id.clone(), "contact.department.created_v3", ev));
            }
            (Some(b), None) => {
                let ev = json!({
                    "object": vb.department_event(b, true),
                    "old_object": {"status": {"is_deleted": false}, "open_department_id": b.open_department_id},
                });
                out.push((app.app_id.clone(), "contact.department.deleted_v3", ev));
            }
            (None, None) => {}
        }
    }
    out
}

/// When a department moves, its subtree may enter or leave a partial contact scope: the
/// departments and users whose visibility changed get `created`/`deleted` for that app.
pub(crate) fn subtree_events(
    t: &Tenant,
    old: &TenantIndex,
    new: &TenantIndex,
    skip: Option<&str>,
) -> Events {
    let mut out = Events::new();
    for app in t
        .apps
        .iter()
        .filter(|a| a.event_request_url.is_some() && !a.contact_scope.all)
    {
        let vb = View::new(t, old, &app.app_id);
        let va = View::new(t, new, &app.app_id);
        for d in t.departments.values() {
            if Some(d.open_department_id.as_str()) == skip {
                continue;
            }
            let (b, a) = (
                vb.scope.department(&d.open_department_id),
                va.scope.department(&d.open_department_id),
            );
            if a && !b {
                out.push((
                    app.app_id.clone(),
                    "contact.department.created_v3",
                    json!({"object": va.department_event(d, false)}),
                ));
            } else if b && !a {
                out.push((app.app_id.clone(), "contact.department.deleted_v3", json!({
                    "object": vb.department_event(d, true),
                    "old_object": {"status": {"is_deleted": false}, "open_department_id": d.open_department_id},
                })));
            }
        }
        for u in t.users.values().filter(|u| !u.status.is_resigned) {
            let (b, a) = (vb.scope.user(&u.user_id), va.scope.user(&u.user_id));
            if a && !b {
                out.push((
                    app.app_id.clone(),
                    "contact.user.created_v3",
                    json!({"object": va.user_event(u)}),
                ));
            } else if b && !a {
                out.push((app.app_id.clone(), "contact.user.deleted_v3", json!({
                    "object": vb.user_event(u),
                    "old_object": {"department_ids": dept_ids(&vb, u), "open_id": ids::open_id(&app.app_id, &u.user_id)},
                })));
            }
        }
    }
    out
}

pub(crate) fn finish_user(
    w: &mut World,
    ti: usize,
    before: Option<&User>,
    after: Option<&User>,
    seen_before: &[bool],
) -> Events {
    let World { state, index } = w;
    let (Some(t), Some(ix)) = (state.tenants.get(ti), index.get_mut(ti)) else {
        return Events::new();
    };
    ix.user_changed(t, before, after);
    user_events(t, ix, before, after, seen_before)
}

/// `added`/`removed` of contact.scope.updated_v3: departments and users whose visibility
/// changed, as department/user API objects (events.md §4.4).
pub(crate) fn scope_event(t: &Tenant, old: &TenantIndex, new: &TenantIndex, app_id: &str) -> Value {
    let vb = View::new(t, old, app_id);
    let va = View::new(t, new, app_id);
    let mut added = (Vec::new(), Vec::new());
    let mut removed = (Vec::new(), Vec::new());
    for d in t.departments.values() {
        match (
            vb.scope.department(&d.open_department_id),
            va.scope.department(&d.open_department_id),
        ) {
            (false, true) => added.0.push(va.department(d)),
            (true, false) => removed.0.push(vb.department(d)),
            _ => {}
        }
    }
    for u in t.users.values().filter(|u| !u.status.is_resigned) {
        match (vb.scope.user(&u.user_id), va.scope.user(&u.user_id)) {
            (false, true) => added.1.push(va.user(u)),
            (true, false) => removed.1.push(vb.user(u)),
            _ => {}
        }
    }
    json!({
        "added": {"departments": added.0, "users": added.1, "user_groups": []},
        "removed": {"departments": removed.0, "users": removed.1, "user_groups": []},
    })
}
