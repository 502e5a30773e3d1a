//! Event ids a consumer has applied (idempotency across redeliveries and Feishu's duplicates).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "processed_events")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub consumer: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub event_id: String,
    pub processed_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// `ON CONFLICT (consumer, event_id) DO NOTHING`: recording an id already recorded is a no-op
/// (the insert's returned rows, where asked for, say which ids were new).
pub fn already_recorded() -> sea_orm::sea_query::OnConflict {
    sea_orm::sea_query::OnConflict::columns([Column::Consumer, Column::EventId])
        .do_nothing()
        .to_owned()
}
