//! Department mutations: create, rename, move, delete.

use super::events::{department_events, subtree_events};
use super::NewDepartment;
use crate::emulator::Emulator;
use crate::error::EmulatorError;
use crate::ids;
use crate::state::{Department, I18nName, Tenant};

impl Emulator {
    fn change_department(
        &self,
        odid: Option<&str>,
        f: impl FnOnce(&mut Tenant, Option<Department>) -> Result<Option<Department>, EmulatorError>,
    ) -> Result<Option<Department>, EmulatorError> {
        let mut w = self.write();
        let ti = odid
            .and_then(|d| {
                w.state
                    .tenants
                    .iter()
                    .position(|t| t.departments.contains_key(d))
            })
            .unwrap_or(0);
        let t = w
            .state
            .tenants
            .get_mut(ti)
            .ok_or_else(|| EmulatorError::NotFound("tenant".into()))?;
        let before = odid.and_then(|d| t.departments.get(d).cloned());
        let after = f(t, before.clone())?;
        match (&before, &after) {
            (_, Some(d)) => {
                t.departments
                    .insert(d.open_department_id.clone(), d.clone());
            }
            (Some(b), None) => {
                t.departments.remove(&b.open_department_id);
            }
            (None, None) => {}
        }
        let old = w.reindex(ti);
        let t = &w.state.tenants[ti];
        let new = &w.index[ti];
        let mut events = department_events(t, &old, new, before.as_ref(), after.as_ref());
        let skip = after
            .as_ref()
            .or(before.as_ref())
            .map(|d| d.open_department_id.clone());
        events.extend(subtree_events(t, &old, new, skip.as_deref()));
        drop(w);
        self.dispatch(events);
        Ok(after)
    }

    /// Creates a department (contact.department.created_v3).
    pub fn create_department(&self, new: NewDepartment) -> Result<Department, EmulatorError> {
        let d = self.change_department(None, |t, _| {
            if new.parent != "0" && !t.departments.contains_key(&new.parent) {
                return Err(EmulatorError::NotFound(format!("parent {}", new.parent)));
            }
            let siblings = t
                .departments
                .values()
                .filter(|d| d.parent == new.parent)
                .count();
            if siblings >= 1000 {
                return Err(EmulatorError::Invalid(
                    "at most 1000 direct children (43013)".into(),
                ));
            }
            let odid = ids::open_department_id(&mut rand::thread_rng());
            let department_id = new
                .department_id
                .clone()
                .unwrap_or_else(|| odid[3..15].to_string());
            if t.departments
                .values()
                .any(|d| d.department_id == department_id)
            {
                return Err(EmulatorError::Conflict(format!(
                    "department_id {department_id} exists"
                )));
            }
            let leaders = match &new.leader_user_id {
                Some(l) if t.users.contains_key(l) => vec![crate::state::Leader {
                    leader_type: 1,
                    user_id: l.clone(),
                }],
                Some(l) => return Err(EmulatorError::NotFound(format!("user {l}"))),
                None => vec![],
            };
            Ok(Some(Department {
                open_department_id: odid,
                department_id,
                name: new.name.clone(),
                i18n_name: new.i18n_name.clone().unwrap_or_else(|| I18nName {
                    zh_cn: new.name.clone(),
                    en_us: new.name.clone(),
                    ja_jp: new.name.clone(),
                }),
                parent: new.parent.clone(),
                order: new.order.unwrap_or(siblings as i64 * 1000),
                leaders,
                chat_id: None,
            }))
        })?;
        d.ok_or_else(|| EmulatorError::Invalid("not created".into()))
    }

    fn edit_department(
        &self,
        odid: &str,
        f: impl FnOnce(&Tenant, &mut Department) -> Result<(), EmulatorError>,
    ) -> Result<Department, EmulatorError> {
        let d = self.change_department(Some(odid), |t, before| {
            let mut d =
                before.ok_or_else(|| EmulatorError::NotFound(format!("department {odid}")))?;
            f(t, &mut d)?;
            Ok(Some(d))
        })?;
        d.ok_or_else(|| EmulatorError::NotFound(format!("department {odid}")))
    }

    /// Renames a department (contact.department.updated_v3).
    pub fn rename_department(&self, odid: &str, name: &str) -> Result<Department, EmulatorError> {
        self.edit_department(odid, |_, d| {
            d.name = name.to_string();
            d.i18n_name.zh_cn = name.to_string();
            d.i18n_name.en_us = name.to_string();
            Ok(())
        })
    }

    /// Moves a department under another parent (contact.department.updated_v3).
    pub fn move_department(&self, odid: &str, parent: &str) -> Result<Department, EmulatorError> {
        self.edit_department(odid, |t, d| {
            if parent != "0" && !t.departments.contains_key(parent) {
                return Err(EmulatorError::NotFound(format!("department {parent}")));
            }
            let mut cur = parent.to_string();
            while cur != "0" {
                if cur == odid {
                    return Err(EmulatorError::Invalid(
                        "cannot move a department under itself".into(),
                    ));
                }
                cur = t
                    .departments
                    .get(&cur)
                    .map_or("0".into(), |x| x.parent.clone());
            }
            d.parent = parent.to_string();
            Ok(())
        })
    }

    /// Deletes an empty department (contact.department.deleted_v3).
    pub fn delete_department(&self, odid: &str) -> Result<(), EmulatorError> {
        self.change_department(Some(odid), |t, before| {
            before.ok_or_else(|| EmulatorError::NotFound(format!("department {odid}")))?;
            if t.departments.values().any(|d| d.parent == odid) {
                return Err(EmulatorError::Conflict(
                    "department has sub-departments".into(),
                ));
            }
            if t.users.values().any(|u| {
                !u.status.is_resigned && u.departments.iter().any(|m| m.department == odid)
            }) {
                return Err(EmulatorError::Conflict("department has members".into()));
            }
            Ok(None)
        })?;
        Ok(())
    }
}
