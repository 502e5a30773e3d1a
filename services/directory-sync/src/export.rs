//! The canonical export of an app's directory: the same shape as the emulator's export
//! (tools/feishu-emulator/src/export.rs), so the two can be compared field by field.

use bridge_store::entity::{department, membership, user};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Export {
    pub app_id: String,
    pub departments: Vec<ExportDepartment>,
    pub users: Vec<ExportUser>,
    pub memberships: Vec<ExportMembership>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct I18n {
    #[serde(default)]
    pub zh_cn: String,
    #[serde(default)]
    pub en_us: String,
    #[serde(default)]
    pub ja_jp: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportDepartment {
    pub open_department_id: String,
    pub department_id: String,
    pub parent_department_id: String,
    pub name: String,
    pub i18n_name: I18n,
    pub order: i64,
    pub leader_user_id: Option<String>,
    pub chat_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub is_frozen: bool,
    pub is_resigned: bool,
    pub is_activated: bool,
    pub is_exited: bool,
    pub is_unjoin: bool,
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
    pub status: Status,
    /// Primary first, then by id.
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

fn s(v: Option<String>) -> String {
    v.unwrap_or_default()
}

pub async fn export(db: &DatabaseConnection, app_id: &str) -> Result<Export, sea_orm::DbErr> {
    let depts = department::Entity::find()
        .filter(department::Column::AppId.eq(app_id))
        .filter(department::Column::Deleted.eq(false))
        .filter(department::Column::Placeholder.eq(false))
        .order_by_asc(department::Column::OpenDepartmentId)
        .all(db)
        .await?;
    let users = user::Entity::find()
        .filter(user::Column::AppId.eq(app_id))
        .filter(user::Column::Deleted.eq(false))
        .order_by_asc(user::Column::OpenId)
        .all(db)
        .await?;
    let ms = membership::Entity::find()
        .filter(membership::Column::AppId.eq(app_id))
        .order_by_asc(membership::Column::OpenId)
        .order_by_asc(membership::Column::OpenDepartmentId)
        .all(db)
        .await?;
    let mut by_user: std::collections::HashMap<&str, Vec<&membership::Model>> =
        std::collections::HashMap::new();
    for m in &ms {
        by_user.entry(m.open_id.as_str()).or_default().push(m);
    }
    let live_users: std::collections::HashSet<String> =
        users.iter().map(|u| u.open_id.clone()).collect();
    let departments = depts
        .into_iter()
        .map(|d| ExportDepartment {
            open_department_id: d.open_department_id,
            department_id: s(d.department_id),
            parent_department_id: d.parent_id.unwrap_or_else(|| "0".into()),
            name: s(d.name),
            i18n_name: d
                .i18n_name
                .as_deref()
                .and_then(|j| serde_json::from_str(j).ok())
                .unwrap_or_default(),
            order: d.sort_order.unwrap_or(0),
            leader_user_id: d.leader_user_id.filter(|l| !l.is_empty()),
            chat_id: d.chat_id.filter(|c| !c.is_empty()),
        })
        .collect();
    let users = users
        .into_iter()
        .map(|u| {
            let mut places: Vec<&membership::Model> =
                by_user.get(u.open_id.as_str()).cloned().unwrap_or_default();
            places.sort_by(|a, b| {
                (!a.is_primary, &a.open_department_id).cmp(&(!b.is_primary, &b.open_department_id))
            });
            ExportUser {
                department_ids: places
                    .iter()
                    .map(|m| m.open_department_id.clone())
                    .collect(),
                union_id: s(u.union_id),
                user_id: s(u.user_id),
                name: s(u.name),
                en_name: s(u.en_name),
                nickname: s(u.nickname),
                email: s(u.email),
                enterprise_email: s(u.enterprise_email),
                mobile: s(u.mobile),
                gender: u.gender.unwrap_or(0),
                city: s(u.city),
                country: s(u.country),
                work_station: s(u.work_station),
                join_time: u.join_time.unwrap_or(0),
                employee_no: s(u.employee_no),
                employee_type: u.employee_type.unwrap_or(0),
                job_title: s(u.job_title),
                leader_user_id: u.leader_user_id.filter(|l| !l.is_empty()),
                is_tenant_manager: u.is_tenant_manager,
                status: Status {
                    is_frozen: u.is_frozen,
                    is_resigned: u.is_resigned,
                    is_activated: u.is_activated,
                    is_exited: u.is_exited,
                    is_unjoin: u.is_unjoin,
                },
                open_id: u.open_id,
            }
        })
        .collect();
    let memberships = ms
        .into_iter()
        .filter(|m| live_users.contains(&m.open_id))
        .map(|m| ExportMembership {
            open_id: m.open_id,
            open_department_id: m.open_department_id,
            user_order: m.user_order.unwrap_or(0),
            department_order: m.department_order.unwrap_or(0),
            is_primary: m.is_primary,
        })
        .collect();
    Ok(Export {
        app_id: app_id.to_string(),
        departments,
        users,
        memberships,
    })
}
