//! Publishing from an HTTP worker over the thread's own connection (`publish_from_worker`).
//! `#[tokio::test]` runs a single-threaded runtime, as an actix worker does.

use std::time::Duration;

use bridge_bus::{AmqpBus, Bus, BusError};
use bytes::Bytes;
use futures_util::future::join_all;
use lapin::options::{QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};

use crate::suite::{declare, msg, next, unique};

fn amqp_of(bus: &Bus) -> &AmqpBus {
    match bus {
        Bus::Amqp(b) => b,
        Bus::Embedded(_) => unreachable!("an AMQP bus"),
    }
}

/// Publishes once (over the shared connection: the thread's own opens in the background)
/// and waits until the thread has its connection.
async fn warm(bus: &Bus, queue: &str) {
    bus.publish_from_worker(&msg(queue, "warm", "warm"))
        .await
        .unwrap();
    until("the worker connection opens", || {
        amqp_of(bus).has_worker_connection()
    })
    .await;
}

#[tokio::test]
async fn concurrent_publishes_arrive_whole_with_their_properties() {
    let bus = crate::amqp_at(crate::AMQP_URL, false).await;
    let q = unique("worker");
    declare(&bus, &q).await;
    let mut c = bus.consume(&q, 100).await.unwrap();
    warm(&bus, &q).await;
    let before = amqp_of(&bus).worker_publishes();
    let mut msgs: Vec<_> = (0..300).map(|i| msg(&q, "a.x", &format!("w{i}"))).collect();
    // Larger than a frame (131 072 bytes): split into body frames and joined by the broker.
    let big: Vec<u8> = (0..400_000u32).map(|i| (i % 251) as u8).collect();
    msgs[7].body = Bytes::from(big.clone());
    let results = join_all(msgs.iter().map(|m| bus.publish_from_worker(m))).await;
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    assert_eq!(
        amqp_of(&bus).worker_publishes() - before,
        300,
        "every publish went over the thread's own connection"
    );
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..300 {
        let d = next(&mut c).await;
        if d.props.message_id == "w7" {
            assert_eq!(d.body.len(), big.len());
            assert!(d.body[..] == big[..], "the large body arrives intact");
        } else {
            assert_eq!(d.body, Bytes::from(format!("body-{}", d.props.message_id)));
        }
        assert_eq!(d.props.type_name, "feishu_bridge.v1.FeishuEvent");
        assert_eq!(d.props.timestamp_ms, 1_700_000_000_000);
        assert_eq!(
            d.props.header("traceparent"),
            msgs[0].props.header("traceparent")
        );
        seen.insert(d.props.message_id.clone());
        d.ack().await.unwrap();
    }
    assert_eq!(seen.len(), 300, "every message once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_a_worker_thread_the_shared_connection_publishes() {
    let bus = crate::amqp_at(crate::AMQP_URL, false).await;
    let q = unique("shared");
    declare(&bus, &q).await;
    let mut c = bus.consume(&q, 10).await.unwrap();
    bus.publish_from_worker(&msg(&q, "a.x", "s1"))
        .await
        .unwrap();
    bus.publish_from_worker(&msg(&q, "a.x", "s2"))
        .await
        .unwrap();
    assert_eq!(amqp_of(&bus).worker_publishes(), 0);
    assert!(!amqp_of(&bus).has_worker_connection());
    assert_eq!(next(&mut c).await.props.message_id, "s1");
    assert_eq!(next(&mut c).await.props.message_id, "s2");
}

#[tokio::test]
async fn a_channel_error_fails_the_publish_and_a_new_connection_follows() {
    let bus = crate::amqp_at(crate::AMQP_URL, false).await;
    let q = unique("chanerr");
    declare(&bus, &q).await;
    let mut c = bus.consume(&q, 10).await.unwrap();
    warm(&bus, &q).await;
    let mut wrong = msg(&q, "a.x", "lost");
    wrong.exchange = format!("no.such.exchange.{}", uuid::Uuid::new_v4().simple());
    match bus.publish_from_worker(&wrong).await {
        Err(BusError::Broker(why)) => assert!(why.contains("404"), "{why}"),
        other => panic!("expected the broker's channel error, got {other:?}"),
    }
    // The next publish is not lost while the thread reconnects (the shared connection
    // carries it), and the thread gets a connection again.
    bus.publish_from_worker(&msg(&q, "a.x", "after"))
        .await
        .unwrap();
    warm(&bus, &q).await;
    assert_eq!(next(&mut c).await.props.message_id, "after");
}

#[tokio::test]
async fn a_nack_fails_only_its_publish() {
    let bus = crate::amqp_at(crate::AMQP_URL, false).await;
    // A queue that holds one message and refuses the rest: the broker nacks the publish.
    let q = unique("full");
    let conn = lapin::Connection::connect(crate::AMQP_URL, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let mut args = FieldTable::default();
    args.insert("x-max-length".into(), AMQPValue::LongLongInt(1));
    args.insert(
        "x-overflow".into(),
        AMQPValue::LongString("reject-publish".into()),
    );
    args.insert("x-expires".into(), AMQPValue::LongLongInt(60_000));
    ch.queue_declare(&q, QueueDeclareOptions::default(), args)
        .await
        .unwrap();
    ch.queue_bind(
        &q,
        "feishu.events",
        &format!("{q}.full"),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    // The warm-up message is routed nowhere (no binding for `<q>.warm`).
    warm(&bus, &q).await;
    let before = amqp_of(&bus).worker_publishes();
    let kept = msg(&q, "full", "kept");
    let refused: Vec<_> = (0..3).map(|i| msg(&q, "full", &format!("r{i}"))).collect();
    bus.publish_from_worker(&kept).await.unwrap();
    let results = join_all(refused.iter().map(|m| bus.publish_from_worker(m))).await;
    for r in results {
        assert!(
            matches!(r, Err(BusError::Nacked)),
            "expected a nack, got {r:?}"
        );
    }
    assert_eq!(amqp_of(&bus).worker_publishes() - before, 4);
    // The connection is still good for the next publish.
    let other = unique("afternack");
    declare(&bus, &other).await;
    let mut c = bus.consume(&other, 10).await.unwrap();
    bus.publish_from_worker(&msg(&other, "a.x", "fine"))
        .await
        .unwrap();
    assert_eq!(next(&mut c).await.props.message_id, "fine");
    assert!(amqp_of(&bus).has_worker_connection());
    let _ = conn.close(200, "done").await;
}

#[tokio::test]
async fn a_connection_lost_midway_never_reports_an_unconfirmed_publish() {
    let Proxied {
        _direct,
        q,
        mut c,
        proxy,
        bus,
    } = proxied("cut", 1000).await;
    let before = amqp_of(&bus).worker_publishes();
    // Confirmed before the trouble: every one is reported published.
    let first: Vec<_> = (0..500).map(|i| msg(&q, "a.x", &format!("a{i}"))).collect();
    let results = join_all(first.iter().map(|m| bus.publish_from_worker(m))).await;
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    // Then the broker's answers stop reaching us (its confirms among them) while our
    // frames still reach it, and once it has taken some of the next publishes, both
    // connections (the thread's and the shared one) are cut.
    proxy.send_replace(Proxy::Hold);
    let second: Vec<_> = (0..1500)
        .map(|i| msg(&q, "a.x", &format!("b{i}")))
        .collect();
    let started = std::time::Instant::now();
    let publishes = join_all(second.iter().map(|m| bus.publish_from_worker(m)));
    let mut received = std::collections::BTreeSet::new();
    let cutter = async {
        while received
            .iter()
            .filter(|id: &&String| id.starts_with('b'))
            .count()
            < 20
        {
            let d = next(&mut c).await;
            received.insert(d.props.message_id.clone());
            d.ack().await.unwrap();
        }
        proxy.send_replace(Proxy::Cut);
    };
    let (results, ()) = tokio::join!(publishes, cutter);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "every publish answered within its confirm timeout"
    );
    assert_eq!(
        amqp_of(&bus).worker_publishes() - before,
        2000,
        "every publish went over the thread's own connection"
    );
    // The broker took some of them, but none was confirmed: none is reported published.
    assert_all_failed(&second, &results);
    // What the broker took: drain until it has been quiet for a second.
    while let Ok(Some(d)) = tokio::time::timeout(Duration::from_secs(1), c.next()).await {
        received.insert(d.props.message_id.clone());
        d.ack().await.unwrap();
    }
    for m in &first {
        assert!(
            received.contains(&m.props.message_id),
            "{} was reported published but never arrived",
            m.props.message_id
        );
    }
    until("the lost connection no longer counts as open", || {
        !amqp_of(&bus).has_worker_connection()
    })
    .await;
}

#[tokio::test]
async fn a_broker_that_stops_reading_fails_the_connection_within_the_confirm_timeout() {
    let Proxied {
        _direct,
        q,
        mut c,
        proxy,
        bus,
    } = proxied("stall", 100).await;
    // The peer is there but reads nothing (a broker host gone without a reset): the
    // publishes fill the socket's buffers and the writer's next write cannot finish.
    proxy.send_replace(Proxy::Stall);
    let big: Vec<u8> = (0..400_000u32).map(|i| (i % 249) as u8).collect();
    let stalled: Vec<_> = (0..64)
        .map(|i| {
            let mut m = msg(&q, "a.x", &format!("s{i}"));
            m.body = Bytes::from(big.clone());
            m
        })
        .collect();
    let results = join_all(stalled.iter().map(|m| bus.publish_from_worker(m))).await;
    assert_all_failed(&stalled, &results);
    // Dropped by its writer, not two heartbeat intervals (two minutes) later by its reader.
    until("the stalled connection is dropped", || {
        !amqp_of(&bus).has_worker_connection()
    })
    .await;
    // Once the broker reads again, the thread publishes and gets a connection again.
    proxy.send_replace(Proxy::Open);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while bus
        .publish_from_worker(&msg(&q, "a.x", "after"))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no publish after the stall"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    warm(&bus, &q).await;
    let mut ids = std::collections::BTreeSet::new();
    while !ids.contains("after") {
        let d = next(&mut c).await;
        ids.insert(d.props.message_id.clone());
        d.ack().await.unwrap();
    }
}

#[tokio::test]
async fn closing_the_bus_closes_the_worker_connection() {
    let bus = crate::amqp_at(crate::AMQP_URL, false).await;
    let q = unique("close");
    declare(&bus, &q).await;
    warm(&bus, &q).await;
    let amqp = amqp_of(&bus).clone();
    bus.close().await;
    until("the worker connection closes with the bus", || {
        !amqp.has_worker_connection()
    })
    .await;
}

/// A queue with a consumer over a direct bus, and a bus through a steerable proxy whose
/// thread has its worker connection.
struct Proxied {
    _direct: Bus,
    q: String,
    c: bridge_bus::Consumer,
    proxy: tokio::sync::watch::Sender<Proxy>,
    bus: Bus,
}

async fn proxied(name: &str, prefetch: u16) -> Proxied {
    let direct = crate::amqp_at(crate::AMQP_URL, false).await;
    let q = unique(name);
    declare(&direct, &q).await;
    let c = direct.consume(&q, prefetch).await.unwrap();
    let (addr, proxy) = proxy().await;
    let bus = crate::amqp_at(&format!("amqp://guest:guest@{addr}/%2f"), false).await;
    warm(&bus, &q).await;
    Proxied {
        _direct: direct,
        q,
        c,
        proxy,
        bus,
    }
}

/// None of `msgs` was reported published.
fn assert_all_failed(msgs: &[bridge_bus::Message], results: &[Result<(), BusError>]) {
    for (m, r) in msgs.iter().zip(results) {
        match r {
            Err(BusError::Unavailable(_) | BusError::ConfirmTimeout(_)) => {}
            other => panic!("{}: expected a failure, got {other:?}", m.props.message_id),
        }
    }
}

/// Waits until `check` holds, polling every 10 ms; fails with `what` after 10 s.
async fn until(what: &str, check: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Proxy {
    /// Both ways.
    Open,
    /// Client to broker only: what the broker sends waits.
    Hold,
    /// Every connection cut, new ones refused.
    Cut,
    /// Nothing read either way: the peers' buffers fill.
    Stall,
}

/// A TCP proxy to the local RabbitMQ, steered by the returned sender.
async fn proxy() -> (std::net::SocketAddr, tokio::sync::watch::Sender<Proxy>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (mode, _) = tokio::sync::watch::channel(Proxy::Open);
    let mode_rx = mode.subscribe();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            if *mode_rx.borrow() == Proxy::Cut {
                continue;
            }
            let mode = mode_rx.clone();
            tokio::spawn(async move {
                let Ok(upstream) = tokio::net::TcpStream::connect("127.0.0.1:5672").await else {
                    return;
                };
                let (client_r, client_w) = client.into_split();
                let (up_r, up_w) = upstream.into_split();
                tokio::join!(
                    pump(client_r, up_w, mode.clone(), false),
                    pump(up_r, client_w, mode, true)
                );
            });
        }
    });
    (addr, mode)
}

/// Copies `from` to `to` until either closes or the proxy cuts; `holdable` bytes wait
/// while the proxy holds (bytes read before the hold included).
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut mode: tokio::sync::watch::Receiver<Proxy>,
    holdable: bool,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match mode.wait_for(|m| *m != Proxy::Stall).await.map(|m| *m) {
            Ok(Proxy::Cut) | Err(_) => return,
            Ok(_) => {}
        }
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            _ = mode.wait_for(|m| *m == Proxy::Cut) => return,
        };
        let wanted =
            |m: &Proxy| *m == Proxy::Cut || !(*m == Proxy::Stall || holdable && *m == Proxy::Hold);
        match mode.wait_for(wanted).await.map(|m| *m) {
            Ok(Proxy::Cut) | Err(_) => return,
            Ok(_) => {}
        }
        tokio::select! {
            r = to.write_all(&buf[..n]) => if r.is_err() { return },
            _ = mode.wait_for(|m| *m == Proxy::Cut) => return,
        }
    }
}
