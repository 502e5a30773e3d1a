//! The directory-sync benchmark: contact events applied per second, next to the database's raw
//! single-row upsert transaction rate at the same number of connections.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bridge_contracts::v1::{Delivery, FeishuEvent};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::BasicProperties;
use prost::Message as _;
use sea_orm::{ConnectionTrait, Database, Statement};

/// A `contact.user.updated_v3` for a user not seen before, with `orders` so no API lookup is
/// needed: the pure apply path (row, membership, processed id, outbox).
fn event(app_id: &str, i: usize, department: &str, run: &str) -> Vec<u8> {
    let payload = serde_json::json!({
        "schema": "2.0",
        "header": {"event_id": format!("{run}-{i}"), "event_type": "contact.user.updated_v3",
                   "create_time": "1700000000123", "token": "t", "app_id": app_id, "tenant_key": "t"},
        "event": {
            "object": {
                "open_id": format!("ou_{run}{i:012}"), "union_id": format!("on_{run}{i:012}"),
                "user_id": format!("u{i}"), "name": format!("用户{i}"), "en_name": "User",
                "email": format!("u{i}@example.com"), "mobile": "+8613800000000", "gender": 1,
                "status": {"is_frozen": false, "is_resigned": false, "is_activated": true, "is_exited": false, "is_unjoin": false},
                "orders": [{"department_id": department, "user_order": 0, "department_order": 0, "is_primary_dept": true}],
                "job_title": "Engineer", "city": "Hangzhou", "country": "CN", "join_time": 1615381702,
                "employee_no": format!("E{i}"), "employee_type": 1
            },
            "old_object": {"job_title": "Intern"}
        }
    });
    FeishuEvent {
        event_id: format!("{run}-{i}"),
        event_type: "contact.user.updated_v3".into(),
        app_id: app_id.into(),
        tenant_key: "t".into(),
        create_time: "1700000000123".into(),
        schema: "2.0".into(),
        delivery: Delivery::Webhook as i32,
        received_at_ms: 1_700_000_000_200,
        payload: payload.to_string().into_bytes(),
        create_time_ms: 1_700_000_000_123,
        is_callback: false,
    }
    .encode_to_vec()
}

async fn count(db: &sea_orm::DatabaseConnection, run: &str) -> anyhow::Result<i64> {
    let row = db
        .query_one(Statement::from_string(
            db.get_database_backend(),
            // A range on the primary key (consumer, event_id): an index-only count, so the
            // polling costs the database next to nothing.
            format!(
                "SELECT COUNT(*) AS n FROM processed_events WHERE consumer = 'directory-sync' AND event_id >= '{run}-' AND event_id < '{run}.'"
            ),
        ))
        .await?
        .context("count")?;
    Ok(row.try_get("", "n")?)
}

pub async fn contact_events(
    amqp: &str,
    db: &str,
    app_id: &str,
    n: usize,
    department: &str,
) -> anyhow::Result<()> {
    let run = format!("b{}", std::process::id());
    let bodies: Vec<Vec<u8>> = (0..n).map(|i| event(app_id, i, department, &run)).collect();
    let db = Database::connect(db).await.context("bridge database")?;
    let conn = crate::connect(amqp).await?;
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    let key = format!("{app_id}.contact.user.updated_v3");
    let cpu0 = crate::cpu_ticks();
    let started = Instant::now();
    let mut confirms = Vec::with_capacity(n);
    for (i, b) in bodies.iter().enumerate() {
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_message_id(format!("{run}-{i}").into())
            .with_content_type("application/x-protobuf".into());
        confirms.push(
            ch.basic_publish(
                "feishu.events",
                &key,
                BasicPublishOptions::default(),
                b,
                props,
            )
            .await?,
        );
    }
    for c in confirms {
        c.await?;
    }
    let published = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let done = count(&db, &run).await? as usize;
        if done >= n {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {done} of {n} events applied in 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed();
    #[allow(clippy::print_stdout)]
    {
        println!(
            "{}",
            serde_json::json!({
                "label": "contact-events", "requests": n, "errors": 0,
                "seconds": (elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
                "per_second": (n as f64 / elapsed.as_secs_f64()).round(),
                "publish_seconds": (published.as_secs_f64() * 1000.0).round() / 1000.0,
                "p50_ms": 0, "p99_ms": 0,
                "cpu_s": crate::cpu_seconds_since(cpu0),
            })
        );
    }
    let _ = conn.close(200, "done").await;
    Ok(())
}

pub async fn pg_upsert(url: &str, connections: usize, n: usize) -> anyhow::Result<()> {
    let mut opts = sea_orm::ConnectOptions::new(url.to_string());
    opts.max_connections(connections as u32).sqlx_logging(false);
    let db = Database::connect(opts).await?;
    db.execute_unprepared(
        "DROP TABLE IF EXISTS bench_upsert; CREATE TABLE bench_upsert (id TEXT PRIMARY KEY, payload TEXT NOT NULL, version BIGINT NOT NULL)",
    )
    .await?;
    let next = Arc::new(AtomicUsize::new(0));
    let cpu0 = crate::cpu_ticks();
    let started = Instant::now();
    let workers = (0..connections).map(|_| {
        let (db, next) = (db.clone(), next.clone());
        tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let t = Instant::now();
                let sql = Statement::from_sql_and_values(
                    sea_orm::DbBackend::Postgres,
                    "INSERT INTO bench_upsert (id, payload, version) VALUES ($1, $2, $3)
                     ON CONFLICT (id) DO UPDATE SET payload = EXCLUDED.payload, version = EXCLUDED.version
                     WHERE bench_upsert.version < EXCLUDED.version",
                    [format!("ou_{i:012}").into(), format!("{{\"name\":\"user {i}\"}}").into(), (i as i64).into()],
                );
                // One transaction per row, committed durably (autocommit).
                if db.execute(sql).await.is_err() {
                    break;
                }
                lat.push(t.elapsed());
            }
            lat
        })
    });
    let mut lat = Vec::new();
    for w in futures_util::future::join_all(workers).await {
        lat.extend(w?);
    }
    crate::report("pg-upsert", n, n - lat.len(), started.elapsed(), lat, cpu0);
    db.execute_unprepared("DROP TABLE IF EXISTS bench_upsert")
        .await?;
    Ok(())
}
