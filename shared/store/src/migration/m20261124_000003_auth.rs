//! auth: token signing keys (private halves sealed), sessions with their refresh tokens
//! (stored hashed), and the OAuth login states of browsers in the middle of a login.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum AuthSigningKeys {
    Table,
    Kid,
    Algorithm,
    PrivateKey,
    PublicJwk,
    CreatedAt,
    RetiredAt,
}

#[derive(DeriveIden)]
enum AuthSessions {
    Table,
    Id,
    AppId,
    TenantKey,
    OpenId,
    UnionId,
    Name,
    IsAdmin,
    Method,
    CreatedAt,
    RefreshedAt,
    ExpiresAt,
    AccessExpiresAt,
    RevokedAt,
    RevokeReason,
}

#[derive(DeriveIden)]
enum AuthRefreshTokens {
    Table,
    TokenHash,
    SessionId,
    CreatedAt,
    ExpiresAt,
    UsedAt,
}

#[derive(DeriveIden)]
enum AuthLoginStates {
    Table,
    State,
    AppId,
    CodeVerifier,
    Redirect,
    CreatedAt,
    ExpiresAt,
    UsedAt,
}

fn ts(c: impl IntoIden) -> ColumnDef {
    ColumnDef::new(c)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

fn ts_null(c: impl IntoIden) -> ColumnDef {
    ColumnDef::new(c)
        .timestamp_with_time_zone()
        .null()
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(AuthSigningKeys::Table)
                .if_not_exists()
                .col(
                    ColumnDef::new(AuthSigningKeys::Kid)
                        .string_len(64)
                        .not_null()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(AuthSigningKeys::Algorithm)
                        .string_len(16)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(AuthSigningKeys::PrivateKey)
                        .text()
                        .not_null(),
                )
                .col(ColumnDef::new(AuthSigningKeys::PublicJwk).text().not_null())
                .col(ts(AuthSigningKeys::CreatedAt))
                .col(ts_null(AuthSigningKeys::RetiredAt))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(AuthSessions::Table)
                .if_not_exists()
                .col(
                    ColumnDef::new(AuthSessions::Id)
                        .string_len(64)
                        .not_null()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(AuthSessions::AppId)
                        .string_len(64)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(AuthSessions::TenantKey)
                        .string_len(128)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(AuthSessions::OpenId)
                        .string_len(128)
                        .not_null(),
                )
                .col(ColumnDef::new(AuthSessions::UnionId).string_len(128).null())
                .col(ColumnDef::new(AuthSessions::Name).text().not_null())
                .col(ColumnDef::new(AuthSessions::IsAdmin).boolean().not_null())
                .col(
                    ColumnDef::new(AuthSessions::Method)
                        .string_len(16)
                        .not_null(),
                )
                .col(ts(AuthSessions::CreatedAt))
                .col(ts(AuthSessions::RefreshedAt))
                .col(ts(AuthSessions::ExpiresAt))
                .col(ts(AuthSessions::AccessExpiresAt))
                .col(ts_null(AuthSessions::RevokedAt))
                .col(
                    ColumnDef::new(AuthSessions::RevokeReason)
                        .string_len(32)
                        .null(),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .if_not_exists()
                .name("auth_sessions_revoked")
                .table(AuthSessions::Table)
                .col(AuthSessions::RevokedAt)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .if_not_exists()
                .name("auth_sessions_user")
                .table(AuthSessions::Table)
                .col(AuthSessions::AppId)
                .col(AuthSessions::OpenId)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(AuthRefreshTokens::Table)
                .if_not_exists()
                .col(
                    ColumnDef::new(AuthRefreshTokens::TokenHash)
                        .string_len(64)
                        .not_null()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(AuthRefreshTokens::SessionId)
                        .string_len(64)
                        .not_null(),
                )
                .col(ts(AuthRefreshTokens::CreatedAt))
                .col(ts(AuthRefreshTokens::ExpiresAt))
                .col(ts_null(AuthRefreshTokens::UsedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .if_not_exists()
                .name("auth_refresh_tokens_session")
                .table(AuthRefreshTokens::Table)
                .col(AuthRefreshTokens::SessionId)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(AuthLoginStates::Table)
                .if_not_exists()
                .col(
                    ColumnDef::new(AuthLoginStates::State)
                        .string_len(64)
                        .not_null()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(AuthLoginStates::AppId)
                        .string_len(64)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(AuthLoginStates::CodeVerifier)
                        .text()
                        .not_null(),
                )
                .col(ColumnDef::new(AuthLoginStates::Redirect).text().not_null())
                .col(ts(AuthLoginStates::CreatedAt))
                .col(ts(AuthLoginStates::ExpiresAt))
                .col(ts_null(AuthLoginStates::UsedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .if_not_exists()
                .name("auth_login_states_expires")
                .table(AuthLoginStates::Table)
                .col(AuthLoginStates::ExpiresAt)
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            AuthLoginStates::Table.into_iden(),
            AuthRefreshTokens::Table.into_iden(),
            AuthSessions::Table.into_iden(),
            AuthSigningKeys::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(t).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
