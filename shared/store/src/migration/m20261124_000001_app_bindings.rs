//! App bindings (secrets stored encrypted) and the master-key check value.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AppBindings {
    Table,
    AppId,
    AppSecret,
    EncryptKey,
    VerificationToken,
    TeamName,
    Domain,
    Enabled,
    QrLoginEnabled,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum KeyCheck {
    Table,
    Id,
    Verifier,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AppBindings::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(AppBindings::AppId)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(AppBindings::AppSecret).text().not_null())
                    .col(ColumnDef::new(AppBindings::EncryptKey).text().null())
                    .col(
                        ColumnDef::new(AppBindings::VerificationToken)
                            .text()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AppBindings::TeamName)
                            .string_len(200)
                            .not_null()
                            .default(""),
                    )
                    .col(
                        ColumnDef::new(AppBindings::Domain)
                            .string_len(16)
                            .not_null()
                            .default("feishu"),
                    )
                    .col(
                        ColumnDef::new(AppBindings::Enabled)
                            .boolean()
                            .not_null()
                            .default(true),
                    )
                    .col(
                        ColumnDef::new(AppBindings::QrLoginEnabled)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .col(
                        ColumnDef::new(AppBindings::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(AppBindings::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(KeyCheck::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(KeyCheck::Id)
                            .integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(KeyCheck::Verifier).text().not_null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(KeyCheck::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(AppBindings::Table).to_owned())
            .await
    }
}
