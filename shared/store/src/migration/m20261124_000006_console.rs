//! console: the audit trail of binding changes, install runs with their steps, and the last
//! event the ingress received per app ("events are arriving").

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ConsoleAudit {
    Table,
    Id,
    At,
    Actor,
    Action,
    AppId,
    Changes,
}

#[derive(DeriveIden)]
enum ConsoleInstallRuns {
    Table,
    Id,
    AppId,
    Actor,
    StartedAt,
    FinishedAt,
    Status,
    Steps,
    SyncRunId,
}

#[derive(DeriveIden)]
enum AppActivity {
    Table,
    AppId,
    LastEventAt,
    LastEventType,
    Events,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(ConsoleAudit::Table)
                .if_not_exists()
                .col(
                    ColumnDef::new(ConsoleAudit::Id)
                        .big_integer()
                        .not_null()
                        .auto_increment()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(ConsoleAudit::At)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(ConsoleAudit::Actor)
                        .string_len(200)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(ConsoleAudit::Action)
                        .string_len(32)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(ConsoleAudit::AppId)
                        .string_len(64)
                        .not_null(),
                )
                .col(ColumnDef::new(ConsoleAudit::Changes).text().not_null())
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .if_not_exists()
                .name("console_audit_app")
                .table(ConsoleAudit::Table)
                .col(ConsoleAudit::AppId)
                .col(ConsoleAudit::Id)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(ConsoleInstallRuns::Table)
                .if_not_exists()
                .col(
                    ColumnDef::new(ConsoleInstallRuns::Id)
                        .string_len(64)
                        .not_null()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(ConsoleInstallRuns::AppId)
                        .string_len(64)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(ConsoleInstallRuns::Actor)
                        .string_len(200)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(ConsoleInstallRuns::StartedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(ConsoleInstallRuns::FinishedAt)
                        .timestamp_with_time_zone()
                        .null(),
                )
                .col(
                    ColumnDef::new(ConsoleInstallRuns::Status)
                        .string_len(16)
                        .not_null(),
                )
                .col(ColumnDef::new(ConsoleInstallRuns::Steps).text().not_null())
                .col(
                    ColumnDef::new(ConsoleInstallRuns::SyncRunId)
                        .string_len(64)
                        .null(),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .if_not_exists()
                .name("console_install_runs_app")
                .table(ConsoleInstallRuns::Table)
                .col(ConsoleInstallRuns::AppId)
                .col(ConsoleInstallRuns::StartedAt)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(AppActivity::Table)
                .if_not_exists()
                .col(
                    ColumnDef::new(AppActivity::AppId)
                        .string_len(64)
                        .not_null()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(AppActivity::LastEventAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(AppActivity::LastEventType)
                        .string_len(128)
                        .not_null(),
                )
                .col(ColumnDef::new(AppActivity::Events).big_integer().not_null())
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            AppActivity::Table.into_iden(),
            ConsoleInstallRuns::Table.into_iden(),
            ConsoleAudit::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(t).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
