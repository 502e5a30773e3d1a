//! The same routing, acknowledgement, retry and dead-letter tests against RabbitMQ and the
//! embedded bus, plus the embedded bus's restart test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod suite;
mod worker;

use std::time::Duration;

use bridge_bus::{AmqpBus, AmqpOptions, Bus, EmbeddedBus};
use bridge_contracts::topology::topology;

pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

pub async fn amqp() -> Bus {
    amqp_at(AMQP_URL, true).await
}

/// A bus at `url`; `quorum` false declares the topology as classic queues (cheap for the
/// broker, for tests that only use queues of their own).
pub async fn amqp_at(url: &str, quorum: bool) -> Bus {
    let opts = AmqpOptions {
        url: url.into(),
        confirm_timeout: Duration::from_secs(2),
        reconnect_min: Duration::from_millis(100),
        reconnect_max: Duration::from_secs(1),
        publish_channels: 2,
        connection_name: "bus-tests".into(),
        queue_prefix: format!("t{}.", uuid::Uuid::new_v4().simple()),
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
                super::suite::$name(super::amqp().await).await;
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
