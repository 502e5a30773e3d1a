//! A department as directory-sync keeps it, per app; a tombstone when deleted.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "departments")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub app_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub open_department_id: String,
    pub department_id: Option<String>,
    /// Parent's open_department_id, "0" under the root.
    pub parent_id: Option<String>,
    pub name: Option<String>,
    /// JSON {"zh_cn":..,"en_us":..,"ja_jp":..}
    pub i18n_name: Option<String>,
    pub sort_order: Option<i64>,
    pub leader_user_id: Option<String>,
    /// JSON array of {"leaderType":..,"leaderID":..}
    pub leaders: Option<String>,
    pub chat_id: Option<String>,
    pub member_count: Option<i64>,
    pub deleted: bool,
    /// Known only as someone's department or parent; filled by its own event or a sync.
    pub placeholder: bool,
    /// The Feishu event create_time (ms) or sync snapshot time this row was built from.
    pub version: i64,
    pub updated_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
