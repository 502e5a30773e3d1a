//! The canonical export: the organisation as one app sees it (filtered by its contact
//! scope), in a fixed shape that directory-sync's own export is compared with.
//!
//! Shape (compact JSON, keys in exactly this order, arrays sorted as stated):
//!
//! ```text
//! {
//!   "app_id": "cli_…",
//!   "tenant_key": "…",
//!   "departments": [            // visible departments, sorted by open_department_id
//!     {"open_department_id": "od-…", "department_id": "D000001",
//!      "parent_department_id": "od-…" | "0",      // open id of the parent, "0" under root
//!      "name": "…", "i18n_name": {"zh_cn": "…", "en_us": "…", "ja_jp": "…"},
//!      "order": 17,                               // integer
//!      "leader_user_id": "ou_…" | null,           // open_id of the main leader
//!      "chat_id": "oc_…" | null}
//!   ],
//!   "users": [                  // visible, not resigned, sorted by open_id
//!     {"open_id": "ou_…", "union_id": "on_…", "user_id": "u0000001",
//!      "name": "…", "en_name": "…", "nickname": "…", "email": "…",
//!      "enterprise_email": "…", "mobile": "…", "gender": 1,
//!      "city": "…", "country": "…", "work_station": "…", "join_time": 1600000000,
//!      "employee_no": "…", "employee_type": 1, "job_title": "…",
//!      "leader_user_id": "ou_…" | null, "is_tenant_manager": false,
//!      "status": {"is_frozen": false, "is_resigned": false, "is_activated": true,
//!                 "is_exited": false, "is_unjoin": false},
//!      "department_ids": ["od-…", …]}             // visible departments, primary first;
//!   ],                                            // "0" for direct members of the root
//!   "memberships": [            // one per (user, visible department), sorted by
//!     {"open_id": "ou_…", "open_department_id": "od-…" | "0",   // (open_id, open_department_id)
//!      "user_order": 0, "department_order": 0, "is_primary": true}
//!   ]
//! }
//! ```
//!
//! Member counts are left out on purpose: they change without any event, so a receiver
//! cannot keep them exact. `user_id`, `email` and `mobile` are `""` when the app lacks the
//! field scope for them (as the API then omits them).

use serde::{Deserialize, Serialize};

use crate::api::view::View;
use crate::emulator::Emulator;
use crate::error::EmulatorError;
use crate::ids;
use crate::state::{I18nName, UserStatus};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Export {
    pub app_id: String,
    pub tenant_key: String,
    pub departments: Vec<ExportDepartment>,
    pub users: Vec<ExportUser>,
    pub memberships: Vec<ExportMembership>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportDepartment {
    pub open_department_id: String,
    pub department_id: String,
    pub parent_department_id: String,
    pub name: String,
    pub i18n_name: I18nName,
    pub order: i64,
    pub leader_user_id: Option<String>,
    pub chat_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportUser {
    pub open_id: String,
    pub union_id: String,
    pub user_id: String,
    pub name: String,
    pub en_name: String,
    pub nickname: String,
    pub email: String,
    pub enterprise_email: String,
    pub mobile: String,
    pub gender: i32,
    pub city: String,
    pub country: String,
    pub work_station: String,
    pub join_time: i64,
    pub employee_no: String,
    pub employee_type: i32,
    pub job_title: String,
    pub leader_user_id: Option<String>,
    pub is_tenant_manager: bool,
    pub status: UserStatus,
    pub department_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportMembership {
    pub open_id: String,
    pub open_department_id: String,
    pub user_order: i64,
    pub department_order: i64,
    pub is_primary: bool,
}

impl Export {
    /// Compact JSON in the documented key order.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl Emulator {
    /// The canonical export of what `app_id` sees.
    pub fn export(&self, app_id: &str) -> Result<Export, EmulatorError> {
        let w = self.read();
        let ti = w
            .state
            .tenant_of_app(app_id)
            .ok_or_else(|| EmulatorError::NotFound(format!("app {app_id}")))?;
        let (t, ix) = w
            .tenant(ti)
            .ok_or_else(|| EmulatorError::NotFound("tenant".into()))?;
        let v = View::new(t, ix, app_id);
        let open = |uid: &str| ids::open_id(app_id, uid);
        let app = t
            .app(app_id)
            .ok_or_else(|| EmulatorError::NotFound(format!("app {app_id}")))?;
        let has = |scope: &str| app.scopes.iter().any(|s| s == scope);
        let gate = |granted: bool, v: &str| {
            if granted {
                v.to_string()
            } else {
                String::new()
            }
        };
        let (see_uid, see_email, see_mobile) = (
            has("contact:user.employee_id:readonly"),
            has("contact:user.email:readonly"),
            has("contact:user.phone:readonly"),
        );
        let mut departments: Vec<ExportDepartment> = t
            .departments
            .values()
            .filter(|d| v.scope.department(&d.open_department_id))
            .map(|d| ExportDepartment {
                open_department_id: d.open_department_id.clone(),
                department_id: d.department_id.clone(),
                parent_department_id: d.parent.clone(),
                name: d.name.clone(),
                i18n_name: d.i18n_name.clone(),
                order: d.order,
                leader_user_id: d.leader_user_id().map(open),
                chat_id: d.chat_id.clone(),
            })
            .collect();
        departments.sort_by(|a, b| a.open_department_id.cmp(&b.open_department_id));
        let mut users = Vec::new();
        let mut memberships = Vec::new();
        for u in t.users.values() {
            if u.status.is_resigned || !v.scope.user(&u.user_id) {
                continue;
            }
            let oid = open(&u.user_id);
            let deps = v.user_departments(u);
            for (i, m) in deps.iter().enumerate() {
                memberships.push(ExportMembership {
                    open_id: oid.clone(),
                    open_department_id: m.department.clone(),
                    user_order: m.user_order,
                    department_order: m.department_order,
                    is_primary: i == 0,
                });
            }
            users.push(ExportUser {
                open_id: oid,
                union_id: t.union_id(&u.user_id),
                user_id: gate(see_uid, &u.user_id),
                name: u.name.clone(),
                en_name: u.en_name.clone(),
                nickname: u.nickname.clone(),
                email: gate(see_email, &u.email),
                enterprise_email: u.enterprise_email.clone(),
                mobile: gate(see_mobile, &u.mobile),
                gender: u.gender,
                city: u.city.clone(),
                country: u.country.clone(),
                work_station: u.work_station.clone(),
                join_time: u.join_time,
                employee_no: u.employee_no.clone(),
                employee_type: u.employee_type,
                job_title: u.job_title.clone(),
                leader_user_id: u.leader_user_id.as_deref().map(open),
                is_tenant_manager: u.is_tenant_manager,
                status: u.status.clone(),
                department_ids: deps.iter().map(|m| m.department.clone()).collect(),
            });
        }
        users.sort_by(|a, b| a.open_id.cmp(&b.open_id));
        memberships.sort_by(|a, b| {
            (a.open_id.as_str(), a.open_department_id.as_str())
                .cmp(&(b.open_id.as_str(), b.open_department_id.as_str()))
        });
        Ok(Export {
            app_id: app_id.to_string(),
            tenant_key: t.tenant_key.clone(),
            departments,
            users,
            memberships,
        })
    }
}
