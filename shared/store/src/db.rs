//! Connecting to PostgreSQL or SQLite and running migrations.

use std::time::Duration;

pub use sea_orm::DatabaseConnection;
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DbBackend};
use sea_orm_migration::MigratorTrait;

use crate::migration::Migrator;

/// Connects to `url` (postgres://... or sqlite:...), and migrates when `migrate` is set.
pub async fn connect(
    url: &str,
    max_connections: u32,
    migrate: bool,
) -> anyhow::Result<DatabaseConnection> {
    let mut opts = ConnectOptions::new(url.to_string());
    // SQLite has one writer; with several pooled connections a reader upgrading to a writer
    // fails at once with "database is locked". One connection serialises them instead.
    let max_connections = if url.starts_with("sqlite:") {
        1
    } else {
        max_connections
    };
    opts.max_connections(max_connections)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(30))
        .sqlx_logging(false);
    let db = Database::connect(opts)
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to the database (database.url): {e}"))?;
    if db.get_database_backend() == DbBackend::Sqlite {
        db.execute_unprepared("PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON;")
            .await
            .map_err(|e| anyhow::anyhow!("sqlite pragmas: {e}"))?;
    }
    if migrate {
        run_migrations(&db)
            .await
            .map_err(|e| anyhow::anyhow!("database migration failed: {e}"))?;
    }
    Ok(db)
}

/// Key of the PostgreSQL advisory lock that serialises migrations ("fbmigrat").
const MIGRATION_LOCK: i64 = 0x6662_6d69_6772_6174;

/// Applies the pending migrations. On PostgreSQL, replicas starting together (each with
/// `database.auto_migrate`) take turns: each runs them in one transaction holding an
/// advisory lock, so the second finds them applied instead of creating the same types and
/// tables at the same moment (which fails one of them with a duplicate key).
pub async fn run_migrations(db: &DatabaseConnection) -> Result<(), sea_orm::DbErr> {
    if db.get_database_backend() != DbBackend::Postgres {
        return Migrator::up(db, None).await;
    }
    let txn = sea_orm::TransactionTrait::begin(db).await?;
    txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
        .await?;
    Migrator::up(&txn, None).await?;
    txn.commit().await
}

/// Whether the database answers (for `/readyz`).
pub async fn ping(db: &DatabaseConnection) -> Result<(), String> {
    db.ping().await.map_err(|e| e.to_string())
}
