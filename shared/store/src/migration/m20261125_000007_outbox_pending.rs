//! A partial index over the outbox rows not yet published, in id order: the relay's query.
//! With only the (published_at, id) index, the planner came to prefer walking the primary key
//! and filtering, which reads every published row still in the table on each poll.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Outbox {
    Table,
    Id,
    PublishedAt,
}

const NAME: &str = "outbox_pending";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name(NAME)
                    .table(Outbox::Table)
                    .col(Outbox::Id)
                    .and_where(Expr::col(Outbox::PublishedAt).is_null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name(NAME).table(Outbox::Table).to_owned())
            .await
    }
}
