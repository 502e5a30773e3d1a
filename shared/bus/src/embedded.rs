//! The embedded bus for `feishu-bridge all`: RabbitMQ's topic routing and ack semantics inside
//! one process, kept durable in a table of the embedded (SQLite) database. A publish returns
//! only after the rows are committed; anything not acked is delivered again after a restart.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait, Value};
use tokio::sync::{mpsc, Notify};

use crate::message::{Acker, Delivery, Message, Props};
use crate::{BusError, Consumer, QueueSpec};
use bridge_contracts::topology::{topic_matches, Topology};

const POLL: Duration = Duration::from_millis(500);

#[derive(Default)]
struct QueueState {
    spec: Option<Arc<QueueSpec>>,
    /// Ids handed to a consumer and not yet acked, nacked or delayed.
    inflight: HashSet<i64>,
    notify: Arc<Notify>,
}

struct Inner {
    db: DatabaseConnection,
    queues: Mutex<HashMap<String, QueueState>>,
    closed: tokio::sync::watch::Sender<bool>,
}

/// The durable in-process bus.
#[derive(Clone)]
pub struct EmbeddedBus {
    inner: Arc<Inner>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn storage(e: impl std::fmt::Display) -> BusError {
    BusError::Storage(e.to_string())
}

impl EmbeddedBus {
    /// Creates the message table if needed and declares `topology`.
    pub async fn open(db: DatabaseConnection, topology: &Topology) -> Result<Self, BusError> {
        if db.get_database_backend() != DbBackend::Sqlite {
            return Err(BusError::Storage(
                "the embedded bus keeps its messages in the embedded SQLite database".into(),
            ));
        }
        db.execute_unprepared(
            "CREATE TABLE IF NOT EXISTS bus_messages (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                queue TEXT NOT NULL,
                exchange TEXT NOT NULL,
                routing_key TEXT NOT NULL,
                body BLOB NOT NULL,
                props TEXT NOT NULL,
                deliveries INTEGER NOT NULL DEFAULT 0,
                visible_at INTEGER NOT NULL,
                created_at INTEGER NOT NULL
            );
            CREATE INDEX IF NOT EXISTS bus_messages_queue ON bus_messages (queue, visible_at, id);",
        )
        .await
        .map_err(storage)?;
        let (closed, _) = tokio::sync::watch::channel(false);
        let bus = Self {
            inner: Arc::new(Inner {
                db,
                queues: Mutex::new(HashMap::new()),
                closed,
            }),
        };
        for q in topology.queues {
            bus.declare_queue(&QueueSpec::from(q)).await?;
        }
        Ok(bus)
    }

    pub async fn ready(&self) -> Result<(), String> {
        self.inner.db.ping().await.map_err(|e| e.to_string())
    }

    pub async fn declare_queue(&self, spec: &QueueSpec) -> Result<(), BusError> {
        let mut qs = self.inner.queues.lock().map_err(storage)?;
        let st = qs.entry(spec.name.clone()).or_default();
        st.spec = Some(Arc::new(spec.clone()));
        // The dead-letter queue is a plain queue that can be consumed (inspected) too.
        let dlq = spec.dead_letter_queue();
        let dst = qs.entry(dlq.clone()).or_default();
        if dst.spec.is_none() {
            dst.spec = Some(Arc::new(QueueSpec {
                name: dlq,
                bindings: Vec::new(),
                durable: spec.durable,
                retry_delays: Vec::new(),
                expires: spec.expires,
            }));
        }
        Ok(())
    }

    /// Routes to every declared queue whose bindings match, writing one row per queue in one
    /// transaction. The default exchange ("") routes to the queue named by the key.
    pub async fn publish(&self, msg: &Message) -> Result<(), BusError> {
        let targets: Vec<(String, Arc<Notify>)> = {
            let qs = self.inner.queues.lock().map_err(storage)?;
            qs.iter()
                .filter(|(name, st)| {
                    if msg.exchange.is_empty() {
                        return **name == msg.routing_key;
                    }
                    st.spec.as_ref().is_some_and(|s| {
                        s.bindings
                            .iter()
                            .any(|(e, p)| *e == msg.exchange && topic_matches(p, &msg.routing_key))
                    })
                })
                .map(|(name, st)| (name.clone(), st.notify.clone()))
                .collect()
        };
        if targets.is_empty() {
            return Ok(());
        }
        let props = encode_props(&msg.props);
        let now = now_ms();
        let txn = self.inner.db.begin().await.map_err(storage)?;
        for (queue, _) in &targets {
            txn.execute(Statement::from_sql_and_values(
                DbBackend::Sqlite,
                "INSERT INTO bus_messages (queue, exchange, routing_key, body, props, visible_at, created_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    queue.clone().into(),
                    msg.exchange.clone().into(),
                    msg.routing_key.clone().into(),
                    Value::Bytes(Some(Box::new(msg.body.to_vec()))),
                    props.clone().into(),
                    now.into(),
                    now.into(),
                ],
            ))
            .await
            .map_err(storage)?;
        }
        txn.commit().await.map_err(storage)?;
        for (_, n) in targets {
            n.notify_waiters();
            n.notify_one();
        }
        Ok(())
    }

    pub async fn consume(&self, queue: &str, prefetch: u16) -> Result<Consumer, BusError> {
        let (spec, notify) = {
            let qs = self.inner.queues.lock().map_err(storage)?;
            let st = qs
                .get(queue)
                .ok_or_else(|| BusError::UnknownQueue(queue.to_string()))?;
            let spec = st
                .spec
                .clone()
                .ok_or_else(|| BusError::UnknownQueue(queue.to_string()))?;
            (spec, st.notify.clone())
        };
        let (tx, rx) = mpsc::channel(prefetch.max(1) as usize);
        let bus = self.clone();
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let mut closed = bus.inner.closed.subscribe();
            loop {
                if *closed.borrow() || tx.is_closed() {
                    return;
                }
                let wake = notify.notified();
                let room = tx.capacity();
                let mut next_visible = None;
                if room > 0 {
                    match bus.take(&spec, room).await {
                        Ok((batch, nv)) => {
                            next_visible = nv;
                            let got = batch.len();
                            for d in batch {
                                if tx.send(d).await.is_err() {
                                    return;
                                }
                            }
                            if got > 0 {
                                continue;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(queue = %spec.name, error = %e, "embedded bus read failed")
                        }
                    }
                }
                let wait = next_visible
                    .map(|at: i64| Duration::from_millis((at - now_ms()).clamp(1, 500) as u64))
                    .unwrap_or(POLL);
                tokio::select! {
                    _ = wake => {}
                    _ = tokio::time::sleep(wait) => {}
                    _ = closed.wait_for(|c| *c) => return,
                    _ = &mut stop_rx => return,
                }
            }
        });
        Ok(Consumer::new(rx, Some(stop_tx)))
    }

    /// Takes up to `room` visible, not in-flight messages; also returns when the next delayed
    /// message becomes visible.
    async fn take(
        &self,
        spec: &Arc<QueueSpec>,
        room: usize,
    ) -> Result<(Vec<Delivery>, Option<i64>), BusError> {
        let inflight: Vec<i64> = {
            let qs = self.inner.queues.lock().map_err(storage)?;
            qs.get(&spec.name)
                .map(|s| s.inflight.iter().copied().collect())
                .unwrap_or_default()
        };
        let now = now_ms();
        let rows = self
            .inner
            .db
            .query_all(Statement::from_sql_and_values(
                DbBackend::Sqlite,
                "SELECT id, exchange, routing_key, body, props, deliveries FROM bus_messages
                 WHERE queue = ? AND visible_at <= ? ORDER BY id LIMIT ?",
                [
                    spec.name.clone().into(),
                    now.into(),
                    ((room + inflight.len()) as i64).into(),
                ],
            ))
            .await
            .map_err(storage)?;
        let mut out = Vec::new();
        let mut ids = Vec::new();
        {
            let mut qs = self.inner.queues.lock().map_err(storage)?;
            let st = qs.entry(spec.name.clone()).or_default();
            for row in rows {
                if out.len() >= room {
                    break;
                }
                let id: i64 = row.try_get("", "id").map_err(storage)?;
                if !st.inflight.insert(id) {
                    continue;
                }
                let body: Vec<u8> = row.try_get("", "body").map_err(storage)?;
                let props: String = row.try_get("", "props").map_err(storage)?;
                let deliveries: i64 = row.try_get("", "deliveries").map_err(storage)?;
                ids.push(id);
                out.push(Delivery {
                    queue: spec.name.clone(),
                    exchange: row.try_get("", "exchange").map_err(storage)?,
                    routing_key: row.try_get("", "routing_key").map_err(storage)?,
                    body: Bytes::from(body),
                    props: decode_props(&props),
                    redelivered: deliveries > 0,
                    acker: Some(Acker::Embedded {
                        id,
                        bus: self.clone(),
                    }),
                    spec: spec.clone(),
                });
            }
        }
        if !ids.is_empty() {
            let list = ids
                .iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(",");
            self.inner
                .db
                .execute_unprepared(&format!(
                    "UPDATE bus_messages SET deliveries = deliveries + 1 WHERE id IN ({list})"
                ))
                .await
                .map_err(storage)?;
        }
        let next_visible = if out.is_empty() {
            let row = self
                .inner
                .db
                .query_one(Statement::from_sql_and_values(
                    DbBackend::Sqlite,
                    "SELECT MIN(visible_at) AS at FROM bus_messages WHERE queue = ? AND visible_at > ?",
                    [spec.name.clone().into(), now.into()],
                ))
                .await
                .map_err(storage)?;
            row.and_then(|r| r.try_get::<Option<i64>>("", "at").ok().flatten())
        } else {
            None
        };
        Ok((out, next_visible))
    }

    pub(crate) fn forget(&self, queue: &str, id: i64) {
        if let Ok(mut qs) = self.inner.queues.lock() {
            if let Some(st) = qs.get_mut(queue) {
                st.inflight.remove(&id);
                st.notify.notify_one();
            }
        }
    }

    pub(crate) async fn ack(&self, queue: &str, id: i64) -> Result<(), BusError> {
        self.ack_many(queue, &[id]).await
    }

    /// Acks several deliveries of one queue in one statement.
    pub(crate) async fn ack_many(&self, queue: &str, ids: &[i64]) -> Result<(), BusError> {
        let mut r = Ok(());
        // Within SQLite's limit on bound parameters.
        for chunk in ids.chunks(500) {
            let marks = vec!["?"; chunk.len()].join(", ");
            let sql = format!("DELETE FROM bus_messages WHERE id IN ({marks})");
            let values = chunk.iter().map(|id| (*id).into());
            if let Err(e) = self
                .inner
                .db
                .execute(Statement::from_sql_and_values(
                    DbBackend::Sqlite,
                    sql,
                    values,
                ))
                .await
            {
                r = Err(storage(e));
                break;
            }
        }
        for id in ids {
            self.forget(queue, *id);
        }
        r
    }

    pub(crate) async fn release(&self, queue: &str, id: i64) -> Result<(), BusError> {
        self.forget(queue, id);
        Ok(())
    }

    pub(crate) async fn delay(
        &self,
        queue: &str,
        id: i64,
        props: &Props,
        by: Duration,
    ) -> Result<(), BusError> {
        let r = self
            .inner
            .db
            .execute(Statement::from_sql_and_values(
                DbBackend::Sqlite,
                "UPDATE bus_messages SET visible_at = ?, props = ? WHERE id = ?",
                [
                    (now_ms() + by.as_millis() as i64).into(),
                    encode_props(props).into(),
                    id.into(),
                ],
            ))
            .await
            .map_err(storage);
        self.forget(queue, id);
        r.map(|_| ())
    }

    pub(crate) async fn move_to(
        &self,
        queue: &str,
        id: i64,
        to: &str,
        props: &Props,
    ) -> Result<(), BusError> {
        let r = self
            .inner
            .db
            .execute(Statement::from_sql_and_values(
                DbBackend::Sqlite,
                "UPDATE bus_messages SET queue = ?, props = ?, deliveries = 0, visible_at = ? WHERE id = ?",
                [to.to_string().into(), encode_props(props).into(), now_ms().into(), id.into()],
            ))
            .await
            .map_err(storage);
        self.forget(queue, id);
        if let Ok(qs) = self.inner.queues.lock() {
            if let Some(st) = qs.get(to) {
                st.notify.notify_one();
            }
        }
        r.map(|_| ())
    }

    /// Messages waiting in `queue` (delivered or not), for tests and metrics.
    pub async fn depth(&self, queue: &str) -> Result<i64, BusError> {
        let row = self
            .inner
            .db
            .query_one(Statement::from_sql_and_values(
                DbBackend::Sqlite,
                "SELECT COUNT(*) AS n FROM bus_messages WHERE queue = ?",
                [queue.to_string().into()],
            ))
            .await
            .map_err(storage)?;
        Ok(row
            .and_then(|r| r.try_get::<i64>("", "n").ok())
            .unwrap_or(0))
    }

    pub async fn close(&self) {
        self.inner.closed.send_replace(true);
    }
}

fn encode_props(p: &Props) -> String {
    serde_json::json!({
        "message_id": p.message_id,
        "content_type": p.content_type,
        "type": p.type_name,
        "timestamp_ms": p.timestamp_ms,
        "headers": p.headers,
    })
    .to_string()
}

fn decode_props(s: &str) -> Props {
    let v: serde_json::Value = serde_json::from_str(s).unwrap_or_default();
    let text = |k: &str| {
        v.get(k)
            .and_then(|x| x.as_str())
            .unwrap_or_default()
            .to_string()
    };
    Props {
        message_id: text("message_id"),
        content_type: text("content_type"),
        type_name: text("type"),
        timestamp_ms: v.get("timestamp_ms").and_then(|x| x.as_i64()).unwrap_or(0),
        headers: v
            .get("headers")
            .and_then(|h| serde_json::from_value(h.clone()).ok())
            .unwrap_or_default(),
    }
}
