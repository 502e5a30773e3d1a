//! How each app binding receives Feishu's events: `webhook`, `long_connection` or `both`.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AppBindings {
    Table,
    Delivery,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(AppBindings::Table)
                    .add_column(
                        ColumnDef::new(AppBindings::Delivery)
                            .string_len(16)
                            .not_null()
                            .default("webhook"),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(AppBindings::Table)
                    .drop_column(AppBindings::Delivery)
                    .to_owned(),
            )
            .await
    }
}
