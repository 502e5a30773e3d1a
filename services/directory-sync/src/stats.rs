//! Keeps PostgreSQL's planner statistics current while the directory grows fast. A burst of
//! contact events (or a first sync) can multiply the users and memberships tables within
//! seconds, long before autovacuum's next analyze (it wakes once a minute); with statistics
//! from an almost empty table the planner reads every row of the app for each batch's lookup,
//! and the event rate falls as the table grows (BENCHMARKS.md). So directory-sync analyzes
//! the tables itself once enough has changed since the last time. The processed-event ids and
//! the outbox grow with every event as well, and are analyzed with them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend};

/// Analyze again after this many applied events, or as many as the users and memberships
/// tables held at the last analyze if more: between two analyzes the planner scales its row
/// estimates with the tables' size on disk, so statistics only need refreshing when the
/// tables have doubled, and analyzing every few thousand events cost a big table dearly.
const MIN_CHANGES: u64 = 2_000;

#[derive(Debug)]
pub struct Stats {
    pending: AtomicU64,
    threshold: AtomicU64,
    running: AtomicBool,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            pending: AtomicU64::new(0),
            threshold: AtomicU64::new(MIN_CHANGES),
            running: AtomicBool::new(false),
        }
    }
}

impl Stats {
    /// Counts `n` applied changes; starts an analyze in the background when enough piled up.
    pub fn note(self: &Arc<Self>, db: &DatabaseConnection, n: u64) {
        let pending = self.pending.fetch_add(n, Ordering::Relaxed) + n;
        if pending >= self.threshold.load(Ordering::Relaxed) {
            self.start(db);
        }
    }

    /// Analyzes now (after a full sync), unless one is running.
    pub fn start(self: &Arc<Self>, db: &DatabaseConnection) {
        if db.get_database_backend() != DbBackend::Postgres
            || self.running.swap(true, Ordering::AcqRel)
        {
            return;
        }
        self.pending.store(0, Ordering::Relaxed);
        let (stats, db) = (self.clone(), db.clone());
        tokio::spawn(async move {
            match db
                .execute_unprepared(
                    "ANALYZE users, memberships, departments, processed_events, outbox",
                )
                .await
            {
                Ok(_) => {
                    let rows: Option<f64> = db
                        .query_one(sea_orm::Statement::from_string(
                            DbBackend::Postgres,
                            "SELECT SUM(reltuples)::float8 AS n FROM pg_class WHERE relname IN ('users', 'memberships')",
                        ))
                        .await
                        .ok()
                        .flatten()
                        .and_then(|r| r.try_get::<f64>("", "n").ok());
                    let rows = rows.map(|r| r.max(0.0) as u64).unwrap_or(0);
                    stats
                        .threshold
                        .store(rows.max(MIN_CHANGES), Ordering::Relaxed);
                    tracing::debug!(rows, "directory tables analyzed");
                }
                Err(e) => tracing::warn!(error = %e, "cannot analyze the directory tables"),
            }
            stats.running.store(false, Ordering::Release);
        });
    }
}
