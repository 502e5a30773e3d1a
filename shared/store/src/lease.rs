//! Cross-replica leases on PostgreSQL (session advisory locks on a connection of their own,
//! released by closing it, so a crashed holder never leaks one). On SQLite, which only the
//! single `all` process uses, every lease is granted and in-process guards do the rest.

use sea_orm::sqlx::{self, Connection as _};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend};

/// Held while a lease is held; dropping it releases the lease.
pub struct Lease {
    _conn: Option<sqlx::PgConnection>,
}

/// Lock classes.
pub const SYNC: i32 = 1;
pub const OUTBOX: i32 = 2;
/// One of an app's long-connection slots (Feishu allows 50 connections per app).
pub const LONG_CONNECTION: i32 = 3;

/// A stable 32-bit key for a name.
pub fn key(name: &str) -> i32 {
    // FNV-1a, folded to i32.
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h as i32
}

/// Tries to take the lease (`class`, `key`) without waiting.
pub async fn try_lease(
    db: &DatabaseConnection,
    class: i32,
    key: i32,
) -> Result<Option<Lease>, String> {
    if db.get_database_backend() != DbBackend::Postgres {
        return Ok(Some(Lease { _conn: None }));
    }
    let pool = db.get_postgres_connection_pool();
    let mut conn = pool.acquire().await.map_err(|e| e.to_string())?.detach();
    let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
        .bind(class)
        .bind(key)
        .fetch_one(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    if got {
        Ok(Some(Lease { _conn: Some(conn) }))
    } else {
        let _ = conn.close().await;
        Ok(None)
    }
}

impl Lease {
    /// Whether the lease's connection still answers (a lost connection lost the lock).
    pub async fn alive(&mut self) -> bool {
        match &mut self._conn {
            Some(c) => c.ping().await.is_ok(),
            None => true,
        }
    }
}
