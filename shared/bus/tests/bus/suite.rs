//! Behaviour every bus must have.

use std::time::Duration;

use bridge_bus::{Bus, Consumer, Delivery, Message, Props, QueueSpec};
use bytes::Bytes;

const EXCHANGE: &str = "feishu.events";

pub fn unique(prefix: &str) -> String {
    format!("test.{prefix}.{}", uuid::Uuid::new_v4().simple())
}

/// Binds `queue` to `feishu.events` with `<queue>.a.#` and `<queue>.*.only`.
pub async fn declare(bus: &Bus, queue: &str) {
    let a = format!("{queue}.a.#");
    let b = format!("{queue}.*.only");
    bus.declare_queue(&QueueSpec::transient(
        queue,
        &[(EXCHANGE, &a), (EXCHANGE, &b)],
    ))
    .await
    .unwrap();
}

pub fn msg(queue: &str, suffix: &str, id: &str) -> Message {
    Message {
        exchange: EXCHANGE.into(),
        routing_key: format!("{queue}.{suffix}"),
        body: Bytes::from(format!("body-{id}")),
        props: Props {
            message_id: id.into(),
            content_type: "application/x-protobuf".into(),
            type_name: "feishu_bridge.v1.FeishuEvent".into(),
            timestamp_ms: 1_700_000_000_000,
            headers: vec![(
                "traceparent".into(),
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
            )],
        },
    }
}

pub async fn next(c: &mut Consumer) -> Delivery {
    tokio::time::timeout(Duration::from_secs(10), c.next())
        .await
        .expect("a delivery within 10 s")
        .expect("consumer open")
}

/// Publishes a sentinel and asserts it is the next delivery: nothing else was queued.
async fn assert_only_sentinel_left(bus: &Bus, c: &mut Consumer, queue: &str) {
    bus.publish(&msg(queue, "a.sentinel", "sentinel"))
        .await
        .unwrap();
    let d = next(c).await;
    assert_eq!(d.props.message_id, "sentinel");
    d.ack().await.unwrap();
}

pub async fn routes_by_topic_pattern(bus: Bus) {
    let q = unique("routing");
    declare(&bus, &q).await;
    let mut c = bus.consume(&q, 10).await.unwrap();
    bus.publish(&msg(&q, "a", "hash-zero-words")).await.unwrap();
    bus.publish(&msg(&q, "a.b.c", "hash-many-words"))
        .await
        .unwrap();
    bus.publish(&msg(&q, "x.only", "star-one-word"))
        .await
        .unwrap();
    bus.publish(&msg(&q, "x.y.only", "star-two-words"))
        .await
        .unwrap(); // not routed
    bus.publish(&msg(&q, "b.c", "other")).await.unwrap(); // not routed
    let mut got = Vec::new();
    for _ in 0..3 {
        let d = next(&mut c).await;
        got.push(d.props.message_id.clone());
        d.ack().await.unwrap();
    }
    got.sort();
    assert_eq!(
        got,
        vec!["hash-many-words", "hash-zero-words", "star-one-word"]
    );
    assert_only_sentinel_left(&bus, &mut c, &q).await;
}

pub async fn requeue_redelivers(bus: Bus) {
    let q = unique("requeue");
    declare(&bus, &q).await;
    let mut c = bus.consume(&q, 1).await.unwrap();
    bus.publish(&msg(&q, "a", "m1")).await.unwrap();
    let d = next(&mut c).await;
    assert!(!d.redelivered);
    d.requeue().await.unwrap();
    let d = next(&mut c).await;
    assert_eq!(d.props.message_id, "m1");
    assert!(d.redelivered);
    d.ack().await.unwrap();
    assert_only_sentinel_left(&bus, &mut c, &q).await;
}

/// `ack_all` answers exactly the deliveries it is given: a run from the oldest outstanding
/// delivery (one frame over AMQP), and a run with an older delivery still held, which must
/// stay unanswered and come back once its consumer is gone.
pub async fn batch_ack_answers_only_its_own(bus: Bus) {
    let q = unique("batch");
    declare(&bus, &q).await;
    for i in 1..=6 {
        bus.publish(&msg(&q, "a", &format!("m{i}"))).await.unwrap();
    }
    let mut c = bus.consume(&q, 10).await.unwrap();
    let mut got = std::collections::BTreeMap::new();
    for _ in 0..6 {
        let d = next(&mut c).await;
        got.insert(d.props.message_id.clone(), d);
    }
    let mut take = |id: &str| got.remove(id).expect("delivered");
    bridge_bus::ack_all(vec![take("m1"), take("m2")])
        .await
        .unwrap();
    let held = take("m3");
    bridge_bus::ack_all(vec![take("m5"), take("m4")])
        .await
        .unwrap();
    bridge_bus::ack_all(vec![take("m6")]).await.unwrap();
    drop(held);
    drop(c);
    let mut c2 = bus.consume(&q, 10).await.unwrap();
    let d = next(&mut c2).await;
    assert_eq!(
        d.props.message_id, "m3",
        "only the held delivery comes back"
    );
    bridge_bus::ack_all(vec![d]).await.unwrap();
    assert_only_sentinel_left(&bus, &mut c2, &q).await;
}

pub async fn unacked_messages_go_to_the_next_consumer(bus: Bus) {
    let q = unique("handover");
    declare(&bus, &q).await;
    bus.publish(&msg(&q, "a", "m1")).await.unwrap();
    {
        let mut c1 = bus.consume(&q, 1).await.unwrap();
        let d = next(&mut c1).await;
        assert_eq!(d.props.message_id, "m1");
        d.requeue().await.unwrap();
        drop(c1);
    }
    let mut c2 = bus.consume(&q, 1).await.unwrap();
    let d = next(&mut c2).await;
    assert_eq!(d.props.message_id, "m1");
    d.ack().await.unwrap();
    assert_only_sentinel_left(&bus, &mut c2, &q).await;
}

pub async fn retry_then_dead_letter(bus: Bus) {
    let q = unique("retry");
    declare(&bus, &q).await;
    let spec = QueueSpec::transient(&q, &[]);
    let mut c = bus.consume(&q, 5).await.unwrap();
    bus.publish(&msg(&q, "a.x", "m1")).await.unwrap();
    // Two retry tiers (200 ms, 400 ms), then the dead-letter queue.
    for attempt in 0..3 {
        let d = next(&mut c).await;
        assert_eq!(d.props.message_id, "m1");
        assert_eq!(d.props.retry_count(), attempt);
        assert_eq!(
            d.routing_key,
            format!("{q}.a.x"),
            "original key kept through retries"
        );
        let dead = d.retry_later("still failing").await.unwrap();
        assert_eq!(dead, attempt == 2);
    }
    let mut dlq = bus.consume(&spec.dead_letter_queue(), 1).await.unwrap();
    let d = next(&mut dlq).await;
    assert_eq!(d.props.message_id, "m1");
    assert_eq!(
        d.props.header("x-bridge-dead-reason"),
        Some("still failing")
    );
    assert_eq!(d.body, Bytes::from("body-m1"));
    d.ack().await.unwrap();
    assert_only_sentinel_left(&bus, &mut c, &q).await;
}

pub async fn properties_survive(bus: Bus) {
    let q = unique("props");
    declare(&bus, &q).await;
    let mut c = bus.consume(&q, 1).await.unwrap();
    let m = msg(&q, "a", "m1");
    bus.publish(&m).await.unwrap();
    let d = next(&mut c).await;
    assert_eq!(d.body, m.body);
    assert_eq!(d.props.message_id, "m1");
    assert_eq!(d.props.content_type, "application/x-protobuf");
    assert_eq!(d.props.type_name, "feishu_bridge.v1.FeishuEvent");
    assert_eq!(d.props.timestamp_ms, 1_700_000_000_000);
    assert_eq!(d.props.header("traceparent"), m.props.header("traceparent"));
    assert_eq!(d.exchange, EXCHANGE);
    d.ack().await.unwrap();
}
