//! One full sync or reconcile: what started it, how it went, what it changed.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sync_runs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub app_id: String,
    /// `full` or `reconcile`.
    pub kind: String,
    /// `install`, `api`, `schedule`, `scope_change`.
    pub trigger: String,
    /// `running`, `succeeded`, `failed`, `refused`.
    pub status: String,
    pub started_at: ChronoDateTimeUtc,
    pub finished_at: Option<ChronoDateTimeUtc>,
    /// JSON counts: departments/users/memberships seen, created, updated, deleted; api calls.
    pub counts: Option<String>,
    pub error: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
