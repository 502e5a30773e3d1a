//! How one app sees the organisation: id translation by `user_id_type`/`department_id_type`,
//! contact-scope checks, and the department/user objects of openapi.md §4.4 and the event
//! objects of events.md §4.2–4.3.

use serde_json::{json, Value};

use super::page::{DeptIdType, UserIdType};
use crate::emulator::lock;
use crate::error::ApiError;
use crate::ids;
use crate::index::{TenantIndex, Visible};
use crate::state::{Department, Tenant, User};

pub struct View<'a> {
    pub t: &'a Tenant,
    pub ix: &'a TenantIndex,
    pub app_id: &'a str,
    pub ut: UserIdType,
    pub dt: DeptIdType,
    pub scope: &'a Visible,
}

static EMPTY: std::sync::OnceLock<Visible> = std::sync::OnceLock::new();

impl<'a> View<'a> {
    pub fn new(t: &'a Tenant, ix: &'a TenantIndex, app_id: &'a str) -> Self {
        let scope = ix
            .scope
            .get(app_id)
            .unwrap_or_else(|| EMPTY.get_or_init(Visible::default));
        Self {
            t,
            ix,
            app_id,
            ut: UserIdType::OpenId,
            dt: DeptIdType::Open,
            scope,
        }
    }

    pub fn with_types(mut self, ut: UserIdType, dt: DeptIdType) -> Self {
        self.ut = ut;
        self.dt = dt;
        self
    }

    pub fn user_out(&self, user_id: &str) -> String {
        match self.ut {
            UserIdType::OpenId => ids::open_id(self.app_id, user_id),
            UserIdType::UnionId => self.t.union_id(user_id),
            UserIdType::UserId => user_id.to_string(),
        }
    }

    pub fn dept_out(&self, odid: &str) -> String {
        match self.dt {
            DeptIdType::Open => odid.to_string(),
            DeptIdType::Custom => self
                .t
                .departments
                .get(odid)
                .map_or_else(|| odid.to_string(), |d| d.department_id.clone()),
        }
    }

    /// A user id given by the caller, as a tenant `user_id` (existence only, not scope).
    pub fn resolve_user(&self, id: &str, ut: UserIdType) -> Result<String, ApiError> {
        let found = match ut {
            UserIdType::OpenId => match self.ix.user_by_open.get(id) {
                Some((app, uid)) if app == self.app_id => Some(uid.clone()),
                Some(_) => {
                    return Err(ApiError::new(400, 99992361, "open_id cross app"));
                }
                None => {
                    return Err(ApiError::new(400, 99992351, "the open_id does not exist"));
                }
            },
            UserIdType::UnionId => self.ix.user_by_union.get(id).cloned(),
            UserIdType::UserId => self.t.users.contains_key(id).then(|| id.to_string()),
        };
        found.ok_or_else(|| ApiError::new(400, 41050, "no user authority error"))
    }

    /// A visible user id, or 41050.
    pub fn visible_user(&self, id: &str, ut: UserIdType) -> Result<String, ApiError> {
        let uid = self.resolve_user(id, ut)?;
        if self.scope.user(&uid) {
            Ok(uid)
        } else {
            Err(ApiError::new(403, 41050, "no user authority error"))
        }
    }

    /// A department id given by the caller, as an `open_department_id` ("0" = root).
    pub fn resolve_dept(&self, id: &str, dt: DeptIdType) -> Option<String> {
        if id == "0" {
            return Some("0".into());
        }
        match dt {
            DeptIdType::Open => self.t.departments.contains_key(id).then(|| id.to_string()),
            DeptIdType::Custom => self.ix.dept_by_custom.get(id).cloned(),
        }
    }

    /// A visible department, or 40004 (HTTP 403).
    pub fn visible_dept(&self, id: &str, dt: DeptIdType) -> Result<String, ApiError> {
        match self.resolve_dept(id, dt) {
            Some(odid) if self.scope.department(&odid) => Ok(odid),
            _ => Err(ApiError::new(403, 40004, "no dept authority error")),
        }
    }

    /// The root department "0" as the department API shows it.
    pub fn root(&self) -> Value {
        let active = self
            .t
            .users
            .values()
            .filter(|u| !u.status.is_resigned)
            .count();
        json!({
            "name": self.t.name,
            "i18n_name": {"zh_cn": self.t.name, "en_us": self.t.name, "ja_jp": self.t.name},
            "parent_department_id": "",
            "department_id": "0",
            "open_department_id": "0",
            "order": "0",
            "unit_ids": [],
            "member_count": active,
            "primary_member_count": active,
            "status": {"is_deleted": false},
            "leaders": [],
            "group_chat_employee_types": [],
            "department_hrbps": [],
        })
    }

    /// The department object of the contact API.
    pub fn department(&self, d: &Department) -> Value {
        let (count, primary) = self
            .ix
            .counts
            .get(&d.open_department_id)
            .copied()
            .unwrap_or((0, 0));
        let mut v = json!({
            "name": d.name,
            "i18n_name": d.i18n_name,
            "parent_department_id": self.dept_out(&d.parent),
            "department_id": d.department_id,
            "open_department_id": d.open_department_id,
            "order": d.order.to_string(),
            "unit_ids": [],
            "member_count": count,
            "primary_member_count": primary,
            "status": {"is_deleted": false},
            "leaders": d.leaders.iter().map(|l| json!({
                "leaderType": l.leader_type, "leaderID": self.user_out(&l.user_id)
            })).collect::<Vec<_>>(),
            "group_chat_employee_types": [],
            "department_hrbps": [],
        });
        if let Some(l) = d.leader_user_id() {
            v["leader_user_id"] = json!(self.user_out(l));
        }
        if let Some(c) = &d.chat_id {
            v["chat_id"] = json!(c);
        }
        v
    }

    /// The user's departments the app can see, primary first.
    pub fn user_departments<'u>(&self, u: &'u User) -> Vec<&'u crate::state::Membership> {
        u.departments
            .iter()
            .filter(|m| self.scope.department(&m.department))
            .collect()
    }

    fn avatar(u: &User) -> Value {
        let base = format!(
            "https://s1-imfile.feishucdn.com/static-resource/v1/{}~?image_size=",
            u.avatar_key
        );
        json!({
            "avatar_72": format!("{base}72x72&cut_type=&quality=&format=png&sticker_format=.webp"),
            "avatar_240": format!("{base}240x240&cut_type=&quality=&format=png&sticker_format=.webp"),
            "avatar_640": format!("{base}640x640&cut_type=&quality=&format=png&sticker_format=.webp"),
            "avatar_origin": format!("{base}noop&cut_type=&quality=&format=png&sticker_format=.webp"),
        })
    }

    /// The user object of the contact API (openapi.md §4.4).
    pub fn user(&self, u: &User) -> Value {
        let deps = self.user_departments(u);
        let mut v = json!({
            "union_id": self.t.union_id(&u.user_id),
            "user_id": u.user_id,
            "open_id": ids::open_id(self.app_id, &u.user_id),
            "name": u.name,
            "en_name": u.en_name,
            "nickname": u.nickname,
            "email": u.email,
            "mobile": u.mobile,
            "mobile_visible": u.mobile_visible,
            "gender": u.gender,
            "avatar_key": u.avatar_key,
            "avatar": Self::avatar(u),
            "status": u.status,
            "department_ids": deps.iter().map(|m| self.dept_out(&m.department)).collect::<Vec<_>>(),
            "city": u.city,
            "country": u.country,
            "work_station": u.work_station,
            "join_time": u.join_time,
            "is_tenant_manager": u.is_tenant_manager,
            "employee_no": u.employee_no,
            "employee_type": u.employee_type,
            "orders": deps.iter().enumerate().map(|(i, m)| json!({
                "department_id": self.dept_out(&m.department),
                "user_order": m.user_order,
                "department_order": m.department_order,
                "is_primary_dept": i == 0,
            })).collect::<Vec<_>>(),
            "custom_attrs": [],
            "enterprise_email": u.enterprise_email,
            "job_title": u.job_title,
            "is_frozen": u.status.is_frozen,
            "geo": "cn",
            "job_level_id": u.job_level_id,
            "job_family_id": u.job_family_id,
            "dotted_line_leader_user_ids": [],
        });
        if let Some(l) = &u.leader_user_id {
            v["leader_user_id"] = json!(self.user_out(l));
        }
        self.gate_fields(&mut v);
        v
    }

    /// Drops the fields whose field scope the app lacks (openapi.md §4.2): `user_id` needs
    /// `contact:user.employee_id:readonly`, `email` `contact:user.email:readonly`, `mobile`
    /// `contact:user.phone:readonly`.
    fn gate_fields(&self, v: &mut Value) {
        let Some(app) = self.t.app(self.app_id) else {
            return;
        };
        let Some(m) = v.as_object_mut() else { return };
        for (field, scope) in [
            ("user_id", "contact:user.employee_id:readonly"),
            ("email", "contact:user.email:readonly"),
            ("mobile", "contact:user.phone:readonly"),
        ] {
            if !app.scopes.iter().any(|s| s == scope) {
                m.remove(field);
            }
        }
    }

    /// The user object as compact JSON, cached until the next mutation.
    pub fn user_raw(&self, u: &User) -> std::sync::Arc<str> {
        let key = (
            self.app_id.to_string(),
            self.ut as u8,
            self.dt as u8,
            u.user_id.clone(),
        );
        if let Some(hit) = lock(&self.ix.rendered).get(&key) {
            return hit.clone();
        }
        let raw: std::sync::Arc<str> = self.user(u).to_string().into();
        let mut cache = lock(&self.ix.rendered);
        if cache.len() >= 250_000 {
            cache.clear();
        }
        cache.insert(key, raw.clone());
        raw
    }

    /// The `user_event` object of contact user events (events.md §4.2). `department_ids`
    /// is documented as never filled in `object`, so it is left out.
    pub fn user_event(&self, u: &User) -> Value {
        let mut v = self.user(u);
        if let Some(m) = v.as_object_mut() {
            for k in [
                "department_ids",
                "is_tenant_manager",
                "mobile_visible",
                "is_frozen",
                "geo",
                "avatar_key",
            ] {
                m.remove(k);
            }
        }
        v
    }

    /// The `department_event` object of department events (events.md §4.3).
    pub fn department_event(&self, d: &Department, deleted: bool) -> Value {
        let mut v = json!({
            "name": d.name,
            "parent_department_id": self.dept_out(&d.parent),
            "department_id": d.department_id,
            "open_department_id": d.open_department_id,
            "order": d.order,
            "status": {"is_deleted": deleted},
            "leaders": d.leaders.iter().map(|l| json!({
                "leaderType": l.leader_type, "leaderID": self.user_out(&l.user_id)
            })).collect::<Vec<_>>(),
        });
        if let Some(l) = d.leader_user_id() {
            v["leader_user_id"] = json!(self.user_out(l));
        }
        if let Some(c) = &d.chat_id {
            v["chat_id"] = json!(c);
        }
        v
    }
}
