//! The same routing, acknowledgement, retry and dead-letter tests against RabbitMQ and the
//! embedded bus, plus the embedded bus's restart test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod suite;
mod worker;

use std::time::Duration;

use bridge_bus::{AmqpBus, AmqpOptions, Bus, EmbeddedBus};
use bridge_contracts::topology::topology;

pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// A bus declaring the whole topology as quorum queues, as in production, under a prefix of
/// its own; `delete_topology_queues(prefix)` removes them once the test is done.
pub async fn amqp() -> (Bus, String) {
    let prefix = format!("t{}.", uuid::Uuid::new_v4().simple());
    (amqp_prefixed(AMQP_URL, true, &prefix).await, prefix)
}

/// Deletes the topology's queues under `prefix` (main, retry and dead-letter queues). Left to
/// expire instead, a quorum queue bound to a shared exchange (`notify.requests`, say) goes
/// while the next test binary publishes there, and RabbitMQ 3.10 closes that publisher's
/// connection with INTERNAL_ERROR (a quorum queue deleted under a publish).
pub async fn delete_topology_queues(prefix: &str) {
    use lapin::options::QueueDeleteOptions;
    let conn = lapin::Connection::connect(AMQP_URL, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    for q in topology().queues {
        let mut spec = bridge_bus::QueueSpec::from(q);
        spec.name = format!("{prefix}{}", spec.name);
        for p in bridge_bus::queue_plan(&spec) {
            ch.queue_delete(&p.name, QueueDeleteOptions::default())
                .await
                .unwrap_or_else(|e| panic!("deleting {}: {e}", p.name));
        }
    }
    let _ = conn.close(200, "done").await;
}

/// A bus at `url`; `quorum` false declares the topology as classic queues (cheap for the
/// broker, for tests that only use queues of their own).
pub async fn amqp_at(url: &str, quorum: bool) -> Bus {
    amqp_prefixed(url, quorum, &format!("t{}.", uuid::Uuid::new_v4().simple())).await
}

pub async fn amqp_prefixed(url: &str, quorum: bool, prefix: &str) -> Bus {
    let opts = AmqpOptions {
        url: url.into(),
        confirm_timeout: Duration::from_secs(2),
        reconnect_min: Duration::from_millis(100),
        reconnect_max: Duration::from_secs(1),
        publish_channels: 2,
        connection_name: "bus-tests".into(),
        queue_prefix: prefix.into(),
        queue_expires: Some(Duration::from_secs(60)),
        quorum_queues: quorum,
        worker_connections: true,
    };
    let bus = AmqpBus::start(opts, topology(), Duration::from_secs(10)).await;
    assert!(
        bus.ready().is_ok(),
        "RabbitMQ at {AMQP_URL} must be running"
    );
    Bus::Amqp(bus)
}

pub async fn embedded_at(path: &std::path::Path) -> Bus {
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let db = sea_orm::Database::connect(url).await.unwrap();
    Bus::Embedded(EmbeddedBus::open(db, &topology()).await.unwrap())
}

macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn amqp() {
                let (bus, prefix) = super::amqp().await;
                super::suite::$name(bus).await;
                super::delete_topology_queues(&prefix).await;
            }
            #[tokio::test]
            async fn embedded() {
                let dir = tempfile::tempdir().unwrap();
                super::suite::$name(super::embedded_at(&dir.path().join("bus.sqlite")).await).await;
            }
        }
    };
}

both!(routes_by_topic_pattern);
both!(requeue_redelivers);
both!(unacked_messages_go_to_the_next_consumer);
both!(batch_ack_answers_only_its_own);
both!(retry_then_dead_letter);
both!(properties_survive);

#[tokio::test]
async fn embedded_restart_redelivers_what_was_not_acked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bus.sqlite");
    let q = suite::unique("restart");
    {
        let bus = embedded_at(&path).await;
        suite::declare(&bus, &q).await;
        for i in 0..3 {
            bus.publish(&suite::msg(&q, "a.x", &format!("m{i}")))
                .await
                .unwrap();
        }
        let mut c = bus.consume(&q, 10).await.unwrap();
        let first = suite::next(&mut c).await;
        assert_eq!(first.props.message_id, "m0");
        first.ack().await.unwrap();
        // m1 is taken but never acked; the process "crashes" here.
        let second = suite::next(&mut c).await;
        assert_eq!(second.props.message_id, "m1");
        std::mem::forget(second);
        bus.close().await;
    }
    let bus = embedded_at(&path).await;
    suite::declare(&bus, &q).await;
    let mut c = bus.consume(&q, 10).await.unwrap();
    let a = suite::next(&mut c).await;
    let b = suite::next(&mut c).await;
    assert_eq!(
        (a.props.message_id.as_str(), b.props.message_id.as_str()),
        ("m1", "m2")
    );
    assert!(a.redelivered, "m1 was delivered before the restart");
    a.ack().await.unwrap();
    b.ack().await.unwrap();
    if let Bus::Embedded(e) = &bus {
        assert_eq!(e.depth(&q).await.unwrap(), 0);
    }
}

#[tokio::test]
async fn amqp_publish_to_unreachable_broker_fails_fast() {
    let opts = AmqpOptions {
        url: "amqp://guest:guest@127.0.0.1:1/%2f".into(),
        confirm_timeout: Duration::from_secs(2),
        reconnect_min: Duration::from_millis(100),
        reconnect_max: Duration::from_secs(1),
        publish_channels: 1,
        connection_name: "bus-tests-down".into(),
        queue_prefix: String::new(),
        queue_expires: None,
        quorum_queues: true,
        worker_connections: true,
    };
    let bus = Bus::Amqp(AmqpBus::start(opts, topology(), Duration::from_millis(200)).await);
    assert!(bus.ready().await.is_err());
    let started = std::time::Instant::now();
    let err = bus
        .publish(&suite::msg("nowhere", "a.b", "m"))
        .await
        .unwrap_err();
    assert!(matches!(err, bridge_bus::BusError::Unavailable(_)), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "fails fast instead of hanging"
    );
}

/// What the services declare is on the broker as the topology says: quorum queues, retry
/// queues whose TTL dead-letters back to their queue, and a dead-letter queue each. RabbitMQ
/// accepts a redeclaration only with equivalent arguments, and refuses any other.
#[tokio::test]
async fn the_topology_is_on_the_broker_with_its_arguments() {
    use lapin::options::QueueDeclareOptions;
    use lapin::types::{AMQPValue, FieldTable, LongString};
    let prefix = format!("t{}.", uuid::Uuid::new_v4().simple());
    let bus = amqp_prefixed(AMQP_URL, true, &prefix).await;
    let conn = lapin::Connection::connect(AMQP_URL, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let table = |pairs: &[(&str, AMQPValue)]| {
        let mut t = FieldTable::default();
        for (k, v) in pairs {
            t.insert((*k).into(), v.clone());
        }
        t
    };
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let mut declared = 0;
    for q in topology().queues {
        let mut spec = bridge_bus::QueueSpec::from(q);
        spec.name = format!("{prefix}{}", spec.name);
        spec.expires = Some(Duration::from_secs(60));
        let plan = bridge_bus::queue_plan(&spec);
        assert_eq!(plan.len(), q.retry_delays.len() + 2);
        for p in &plan {
            assert!(
                p.arguments.iter().any(|(k, v)| *k == "x-queue-type"
                    && *v == AMQPValue::LongString(LongString::from("quorum"))),
                "{} is a quorum queue",
                p.name
            );
            let ch = conn.create_channel().await.unwrap();
            ch.queue_declare(&p.name, durable, table(&p.arguments))
                .await
                .unwrap_or_else(|e| panic!("{} differs on the broker: {e}", p.name));
            declared += 1;
        }
        // Anything else is refused: the main queue as a classic queue, a retry tier with
        // another delay.
        let ch = conn.create_channel().await.unwrap();
        let mut classic = plan[0].arguments.clone();
        classic.retain(|(k, _)| *k != "x-queue-type");
        classic.push(("x-queue-type", AMQPValue::LongString("classic".into())));
        let e = ch
            .queue_declare(&plan[0].name, durable, table(&classic))
            .await
            .expect_err("the queue on the broker is a quorum queue");
        assert!(e.to_string().contains("PRECONDITION_FAILED"), "{e}");
        let ch = conn.create_channel().await.unwrap();
        let mut ttl = plan[1].arguments.clone();
        for (k, v) in ttl.iter_mut() {
            if *k == "x-message-ttl" {
                *v = AMQPValue::LongLongInt(1);
            }
        }
        let e = ch
            .queue_declare(&plan[1].name, durable, table(&ttl))
            .await
            .expect_err("the retry queue holds its own delay");
        assert!(e.to_string().contains("PRECONDITION_FAILED"), "{e}");
    }
    assert!(declared >= 4 * 6);
    let _ = conn.close(200, "done").await;
    bus.close().await;
    delete_topology_queues(&prefix).await;
}
