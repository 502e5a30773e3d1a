//! The rate budget every notifier replica shares: Feishu's per-app tier of each messaging API
//! ("1000/min and 50/s") and its 5 QPS per recipient user or chat, as GCRA schedules (one
//! "theoretical arrival time" per key) kept in PostgreSQL. A send reserves the next slot of
//! each key it needs in one statement and waits until that slot comes, so replicas never
//! together exceed a limit, whatever their number, and nobody polls. The clock is the
//! database's (`now()`), so replicas' clock skew does not matter. On SQLite (`feishu-bridge
//! all`, one process by construction) the same schedules live in memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr, Statement, Value};
use tokio::time::Instant;

/// One window of a limit: `max` calls per `per`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub max: f64,
    pub per: Duration,
}

impl Window {
    /// Seconds between two calls at the sustained rate.
    fn interval(&self) -> f64 {
        self.per.as_secs_f64() / self.max
    }
}

/// Feishu's tier for im/v1 messages, reply, batch_send, progress and card update.
pub const API_WINDOWS: [Window; 2] = [
    Window {
        max: 1000.0,
        per: Duration::from_secs(60),
    },
    Window {
        max: 50.0,
        per: Duration::from_secs(1),
    },
];

/// 5 QPS to one user or one group (openapi.md §7.1).
pub const RECIPIENT_WINDOW: Window = Window {
    max: 5.0,
    per: Duration::from_secs(1),
};

#[derive(Clone)]
pub enum Budget {
    Postgres(DatabaseConnection),
    Local(Arc<Mutex<HashMap<String, Instant>>>),
}

/// The keys and windows one call needs, scaled.
pub struct Ask {
    keys: Vec<(String, Window)>,
}

impl Budget {
    pub fn new(db: &DatabaseConnection) -> Self {
        match db.get_database_backend() {
            DatabaseBackend::Postgres => Self::Postgres(db.clone()),
            _ => Self::Local(Arc::default()),
        }
    }

    /// What a call to `api` for `app_id` (to `recipient`, if it has one) needs. `scale`
    /// multiplies the limits (an emulator scaled the same way); `headroom` is the share of them
    /// handed out.
    pub fn ask(api: &str, app_id: &str, recipient: Option<&str>, scale: f64, headroom: f64) -> Ask {
        let f = scale * headroom;
        let scaled = |w: Window| Window {
            max: (w.max * f).max(1.0),
            per: w.per,
        };
        let mut keys: Vec<(String, Window)> = API_WINDOWS
            .iter()
            .map(|w| {
                (
                    format!("api:{app_id}:{api}:{}", w.per.as_millis()),
                    scaled(*w),
                )
            })
            .collect();
        if let Some(r) = recipient {
            keys.push((format!("rcpt:{r}"), scaled(RECIPIENT_WINDOW)));
        }
        // One order for everyone: concurrent reservations lock rows in the same order.
        keys.sort_by(|a, b| a.0.cmp(&b.0));
        Ask { keys }
    }

    /// Reserves a slot in every window of `ask` and waits until all of them come.
    pub async fn acquire(&self, ask: &Ask) -> Result<(), DbErr> {
        let wait = match self {
            Self::Postgres(db) => reserve_pg(db, ask).await?,
            Self::Local(m) => reserve_local(m, ask),
        };
        if !wait.is_zero() {
            metrics::histogram!("notifier_budget_wait_seconds").record(wait.as_secs_f64());
            tokio::time::sleep(wait).await;
        }
        Ok(())
    }
}

/// GCRA with reservation: a key's arrival time moves on by one interval per call; a call may go
/// once that time, less the burst tolerance, has come.
async fn reserve_pg(db: &DatabaseConnection, ask: &Ask) -> Result<Duration, DbErr> {
    let mut values = Vec::with_capacity(ask.keys.len() * 2);
    let mut rows = Vec::with_capacity(ask.keys.len());
    for (i, (key, w)) in ask.keys.iter().enumerate() {
        rows.push(format!(
            "(${}, now() + ${} * interval '1 second')",
            i * 2 + 1,
            i * 2 + 2
        ));
        values.push(Value::from(key.clone()));
        values.push(Value::from(w.interval()));
    }
    let sql = format!(
        "INSERT INTO rate_budget AS b (key, tat) VALUES {} \
         ON CONFLICT (key) DO UPDATE SET tat = GREATEST(b.tat, now()) + (EXCLUDED.tat - now()) \
         RETURNING key, EXTRACT(EPOCH FROM (b.tat - now()))::float8 AS ahead",
        rows.join(", ")
    );
    let got = db
        .query_all(Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            sql,
            values,
        ))
        .await?;
    let mut wait = 0.0f64;
    for row in got {
        let key: String = row.try_get("", "key")?;
        let ahead: f64 = row.try_get("", "ahead")?;
        if let Some((_, w)) = ask.keys.iter().find(|(k, _)| *k == key) {
            // `ahead` includes this call's own interval and may run up to the burst.
            wait = wait.max(ahead - w.max * w.interval());
        }
    }
    Ok(Duration::from_secs_f64(wait.max(0.0)))
}

fn reserve_local(m: &Mutex<HashMap<String, Instant>>, ask: &Ask) -> Duration {
    let Ok(mut tats) = m.lock() else {
        return Duration::ZERO;
    };
    let now = Instant::now();
    let mut wait = Duration::ZERO;
    for (key, w) in &ask.keys {
        let interval = Duration::from_secs_f64(w.interval());
        let tat = tats.get(key).copied().unwrap_or(now).max(now) + interval;
        tats.insert(key.clone(), tat);
        let burst = Duration::from_secs_f64(w.max * w.interval());
        wait = wait.max(tat.saturating_duration_since(now).saturating_sub(burst));
    }
    wait
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn local_budget_holds_five_per_second_per_recipient() {
        let b = Budget::Local(Arc::default());
        let start = Instant::now();
        for _ in 0..15 {
            let ask = Budget::ask("im.messages.create", "cli_a", Some("user:ou_1"), 1.0, 1.0);
            b.acquire(&ask).await.unwrap();
        }
        // A burst of 5, then 10 more at 5/s.
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(1990), "{took:?}");
        assert!(took < Duration::from_millis(2100), "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn distinct_recipients_share_only_the_app_tier() {
        let b = Budget::Local(Arc::default());
        let start = Instant::now();
        for i in 0..100 {
            let r = format!("user:ou_{i}");
            let ask = Budget::ask("im.messages.create", "cli_a", Some(&r), 1.0, 1.0);
            b.acquire(&ask).await.unwrap();
        }
        // 50 at once, then 50 more at 50/s.
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(990), "{took:?}");
        assert!(took < Duration::from_millis(1100), "{took:?}");
    }
}
