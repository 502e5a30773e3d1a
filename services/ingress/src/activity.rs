//! "Events are arriving": the last event accepted per app and how many, kept in memory on the
//! request path and written to `app_activity` every couple of seconds (the console shows it).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bridge_runtime::Shutdown;
use bridge_store::entity::app_activity;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{DatabaseConnection, EntityTrait, Set};

/// Since the last write: when the last event came, its type, how many came.
type Seen = (DateTime<Utc>, String, i64);

#[derive(Default)]
pub struct Activity {
    pending: Mutex<HashMap<String, Seen>>,
}

impl Activity {
    /// Notes an accepted event (cheap: one uncontended lock and a map entry).
    pub fn seen(&self, app_id: &str, event_type: &str) {
        let now = Utc::now();
        if let Ok(mut m) = self.pending.lock() {
            // Allocates only for an app's first event since the last write.
            match m.get_mut(app_id) {
                Some(e) => {
                    e.0 = now;
                    if e.1 != event_type {
                        e.1 = event_type.to_string();
                    }
                    e.2 += 1;
                }
                None => {
                    m.insert(app_id.to_string(), (now, event_type.to_string(), 1));
                }
            }
        }
    }

    async fn flush(&self, db: &DatabaseConnection) {
        let batch: Vec<_> = match self.pending.lock() {
            Ok(mut m) => m.drain().collect(),
            Err(_) => return,
        };
        for (app_id, (at, ty, n)) in batch {
            let row = app_activity::ActiveModel {
                app_id: Set(app_id.clone()),
                last_event_at: Set(at),
                last_event_type: Set(ty),
                events: Set(n),
            };
            let r = app_activity::Entity::insert(row)
                .on_conflict(
                    OnConflict::column(app_activity::Column::AppId)
                        .update_columns([
                            app_activity::Column::LastEventAt,
                            app_activity::Column::LastEventType,
                        ])
                        .value(
                            app_activity::Column::Events,
                            Expr::cust("app_activity.events + excluded.events"),
                        )
                        .to_owned(),
                )
                .exec(db)
                .await;
            if let Err(e) = r {
                tracing::debug!(error = %e, %app_id, "cannot record event activity");
            }
        }
    }

    /// Writes what was seen every `every`, and once more at shutdown.
    pub async fn run(
        self: std::sync::Arc<Self>,
        db: DatabaseConnection,
        every: Duration,
        shutdown: Shutdown,
    ) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.wait() => {
                    self.flush(&db).await;
                    return;
                }
                _ = tick.tick() => self.flush(&db).await,
            }
        }
    }
}
