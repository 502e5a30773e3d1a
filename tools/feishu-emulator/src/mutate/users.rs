//! User mutations: create, update, move, freeze, resign, delete.

use super::events::{finish_user, seen_by_apps};
use super::{apply_patch, NewUser, UserPatch};
use crate::emulator::Emulator;
use crate::error::EmulatorError;
use crate::ids;
use crate::state::{Membership, Tenant, User, UserStatus};

impl Emulator {
    /// Applies a change to a user of the first tenant holding `user_id` (or tenant 0 when
    /// creating), then emits the per-app events.
    fn change_user(
        &self,
        user_id: &str,
        f: impl FnOnce(&Tenant, Option<User>) -> Result<Option<User>, EmulatorError>,
    ) -> Result<Option<User>, EmulatorError> {
        let mut w = self.write();
        let ti = w
            .state
            .tenants
            .iter()
            .position(|t| t.users.contains_key(user_id))
            .unwrap_or(0);
        let t = w
            .state
            .tenants
            .get(ti)
            .ok_or_else(|| EmulatorError::NotFound("tenant".into()))?;
        let before = t.users.get(user_id).cloned();
        let seen_before = w
            .index
            .get(ti)
            .map(|ix| seen_by_apps(t, ix, before.as_ref()))
            .unwrap_or_default();
        let after = f(t, before.clone())?;
        let t = &mut w.state.tenants[ti];
        match &after {
            Some(u) => {
                t.users.insert(u.user_id.clone(), u.clone());
            }
            None => {
                t.users.remove(user_id);
            }
        }
        let events = finish_user(&mut w, ti, before.as_ref(), after.as_ref(), &seen_before);
        drop(w);
        self.dispatch(events);
        Ok(after)
    }

    /// Creates a user (contact.user.created_v3).
    pub fn create_user(&self, new: NewUser) -> Result<User, EmulatorError> {
        let uid = new
            .user_id
            .clone()
            .unwrap_or_else(|| format!("u{}", ids::random_hex(&mut rand::thread_rng(), 8)));
        let created = self.change_user(&uid, |t, before| {
            if before.is_some() {
                return Err(EmulatorError::Conflict(format!("user {uid} exists")));
            }
            let mut u = User {
                user_id: uid.clone(),
                name: String::new(),
                en_name: String::new(),
                nickname: String::new(),
                email: String::new(),
                enterprise_email: String::new(),
                mobile: String::new(),
                mobile_visible: true,
                gender: 0,
                avatar_key: format!("v2_{}", ids::random_hex(&mut rand::thread_rng(), 24)),
                city: String::new(),
                country: String::new(),
                work_station: String::new(),
                join_time: chrono::Utc::now().timestamp(),
                is_tenant_manager: false,
                employee_no: String::new(),
                employee_type: 1,
                job_title: String::new(),
                leader_user_id: None,
                departments: vec![Membership {
                    department: "0".into(),
                    user_order: 0,
                    department_order: 0,
                }],
                status: UserStatus::default(),
                job_level_id: String::new(),
                job_family_id: String::new(),
            };
            apply_patch(t, &mut u, new.fields)?;
            if u.name.is_empty() {
                return Err(EmulatorError::Invalid("name is required".into()));
            }
            Ok(Some(u))
        })?;
        created.ok_or_else(|| EmulatorError::Invalid("not created".into()))
    }

    fn edit_user(
        &self,
        user_id: &str,
        f: impl FnOnce(&Tenant, &mut User) -> Result<(), EmulatorError>,
    ) -> Result<User, EmulatorError> {
        let after = self.change_user(user_id, |t, before| {
            let mut u = before.ok_or_else(|| EmulatorError::NotFound(format!("user {user_id}")))?;
            f(t, &mut u)?;
            Ok(Some(u))
        })?;
        after.ok_or_else(|| EmulatorError::NotFound(format!("user {user_id}")))
    }

    /// Changes user fields (contact.user.updated_v3).
    pub fn update_user(&self, user_id: &str, patch: UserPatch) -> Result<User, EmulatorError> {
        self.edit_user(user_id, |t, u| apply_patch(t, u, patch))
    }

    /// Moves a user to other departments (primary first).
    pub fn move_user(
        &self,
        user_id: &str,
        department_ids: Vec<String>,
    ) -> Result<User, EmulatorError> {
        self.update_user(
            user_id,
            UserPatch {
                department_ids: Some(department_ids),
                ..UserPatch::default()
            },
        )
    }

    /// Freezes or unfreezes a user (updated with `status.is_frozen`).
    pub fn freeze_user(&self, user_id: &str, frozen: bool) -> Result<User, EmulatorError> {
        self.edit_user(user_id, |_, u| {
            u.status.is_frozen = frozen;
            Ok(())
        })
    }

    /// Marks a user resigned (contact.user.deleted_v3); the record stays, with
    /// `status.is_resigned`, and leaves every listing.
    pub fn resign_user(&self, user_id: &str) -> Result<User, EmulatorError> {
        self.edit_user(user_id, |_, u| {
            u.status.is_resigned = true;
            u.status.is_activated = false;
            Ok(())
        })
    }

    /// Removes a user entirely (contact.user.deleted_v3).
    pub fn delete_user(&self, user_id: &str) -> Result<(), EmulatorError> {
        self.change_user(user_id, |_, before| {
            before.ok_or_else(|| EmulatorError::NotFound(format!("user {user_id}")))?;
            Ok(None)
        })?;
        Ok(())
    }
}
