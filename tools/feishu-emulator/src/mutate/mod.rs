//! Organisation mutations (the Rust side of the control API) and the contact events each
//! produces per app (events.md §4): created/updated/deleted for users and departments with
//! `object` and `old_object` (only changed fields), and `contact.scope.updated_v3`.
//!
//! Visibility decides the event per app: visible before and after -> `updated`; only after
//! -> `created`; only before -> `deleted` (what Feishu sends when an entity leaves the
//! contact scope is not documented; this is the emulator's choice).

mod departments;
mod events;
mod users;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::emulator::Emulator;
use crate::error::EmulatorError;
use crate::state::{ContactScope, I18nName, Membership, Tenant, User};
use events::scope_event;

/// Fields to change on a user; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct UserPatch {
    pub name: Option<String>,
    pub en_name: Option<String>,
    pub nickname: Option<String>,
    pub email: Option<String>,
    pub enterprise_email: Option<String>,
    pub mobile: Option<String>,
    pub gender: Option<i32>,
    pub city: Option<String>,
    pub country: Option<String>,
    pub work_station: Option<String>,
    pub job_title: Option<String>,
    pub employee_no: Option<String>,
    pub employee_type: Option<i32>,
    pub join_time: Option<i64>,
    pub is_tenant_manager: Option<bool>,
    /// Tenant `user_id` of the manager; empty string clears it.
    pub leader_user_id: Option<String>,
    /// `open_department_id`s (or "0"), primary first.
    pub department_ids: Option<Vec<String>>,
}

/// A user to create: `user_id` (generated when absent), `name` and `department_ids` are
/// required in practice; everything else defaults.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NewUser {
    pub user_id: Option<String>,
    #[serde(flatten)]
    pub fields: UserPatch,
}

/// A department to create.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NewDepartment {
    pub name: String,
    /// `open_department_id` of the parent, `"0"` for the root.
    pub parent: String,
    pub department_id: Option<String>,
    pub order: Option<i64>,
    pub i18n_name: Option<I18nName>,
    /// Tenant `user_id` of the main leader.
    pub leader_user_id: Option<String>,
}

pub(crate) type Events = Vec<(String, &'static str, Value)>;

pub(crate) fn apply_patch(t: &Tenant, u: &mut User, p: UserPatch) -> Result<(), EmulatorError> {
    macro_rules! set {
        ($($f:ident),*) => { $( if let Some(v) = p.$f { u.$f = v; } )* };
    }
    set!(
        name,
        en_name,
        nickname,
        email,
        enterprise_email,
        mobile,
        gender,
        city,
        country,
        work_station,
        job_title,
        employee_no,
        employee_type,
        join_time,
        is_tenant_manager
    );
    if let Some(l) = p.leader_user_id {
        if l.is_empty() {
            u.leader_user_id = None;
        } else if t.users.contains_key(&l) {
            u.leader_user_id = Some(l);
        } else {
            return Err(EmulatorError::NotFound(format!("leader user {l}")));
        }
    }
    if let Some(ds) = p.department_ids {
        if ds.is_empty() {
            return Err(EmulatorError::Invalid(
                "a user needs at least one department".into(),
            ));
        }
        if ds.len() > 50 {
            return Err(EmulatorError::Invalid(
                "at most 50 departments per user (40142)".into(),
            ));
        }
        let mut ms: Vec<Membership> = Vec::new();
        for (i, d) in ds.into_iter().enumerate() {
            if d != "0" && !t.departments.contains_key(&d) {
                return Err(EmulatorError::NotFound(format!("department {d}")));
            }
            let old = u.departments.iter().find(|m| m.department == d);
            ms.push(Membership {
                user_order: old.map_or(0, |m| m.user_order),
                department_order: i as i64,
                department: d,
            });
        }
        u.departments = ms;
    }
    Ok(())
}

impl Emulator {
    pub(crate) fn dispatch(&self, events: Events) {
        for (app, ty, ev) in events {
            self.emit(&app, ty, ev);
        }
    }

    /// Changes an app's contact scope (contact.scope.updated_v3 with `added`/`removed`).
    pub fn set_contact_scope(
        &self,
        app_id: &str,
        scope: ContactScope,
    ) -> Result<(), EmulatorError> {
        let mut w = self.write();
        let ti = w
            .state
            .tenant_of_app(app_id)
            .ok_or_else(|| EmulatorError::NotFound(format!("app {app_id}")))?;
        {
            let t = &w.state.tenants[ti];
            for d in &scope.department_ids {
                if !t.departments.contains_key(d) {
                    return Err(EmulatorError::NotFound(format!("department {d}")));
                }
            }
            for u in &scope.user_ids {
                if !t.users.contains_key(u) {
                    return Err(EmulatorError::NotFound(format!("user {u}")));
                }
            }
        }
        if let Some(a) = w.state.tenants[ti].app_mut(app_id) {
            a.contact_scope = scope;
        }
        let old = w.reindex(ti);
        let t = &w.state.tenants[ti];
        let has_url = t.app(app_id).is_some_and(|a| a.event_request_url.is_some());
        let ev = has_url.then(|| scope_event(t, &old, &w.index[ti], app_id));
        drop(w);
        if let Some(ev) = ev {
            self.emit(app_id, "contact.scope.updated_v3", ev);
        }
        Ok(())
    }

    /// Changes an app's availability (who can use it and receive bot messages).
    pub fn set_availability(&self, app_id: &str, scope: ContactScope) -> Result<(), EmulatorError> {
        self.edit_app(app_id, |a| a.availability = scope)
    }

    /// Edits an app's configuration directly (redirect URLs, admins, bot, keys...).
    pub fn edit_app(
        &self,
        app_id: &str,
        f: impl FnOnce(&mut crate::state::App),
    ) -> Result<(), EmulatorError> {
        let mut w = self.write();
        let ti = w
            .state
            .tenant_of_app(app_id)
            .ok_or_else(|| EmulatorError::NotFound(format!("app {app_id}")))?;
        if let Some(a) = w.state.tenants[ti].app_mut(app_id) {
            f(a);
        }
        w.reindex(ti);
        Ok(())
    }

    /// Adds an app to the first tenant (for tests with several apps).
    pub fn add_app(&self, app: crate::state::App) -> Result<(), EmulatorError> {
        let mut w = self.write();
        if w.state.tenant_of_app(&app.app_id).is_some() {
            return Err(EmulatorError::Conflict(format!(
                "app {} exists",
                app.app_id
            )));
        }
        let t = w
            .state
            .tenants
            .get_mut(0)
            .ok_or_else(|| EmulatorError::NotFound("tenant".into()))?;
        t.apps.push(app);
        w.reindex(0);
        Ok(())
    }
}
