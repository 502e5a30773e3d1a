//! Messages and deliveries, the same for both buses.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::{BusError, QueueSpec};

/// Message properties carried across the bus.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Props {
    pub message_id: String,
    pub content_type: String,
    /// The message's full protobuf name (AMQP `type`).
    pub type_name: String,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// String headers (traceparent, CloudEvents attributes, retry count).
    pub headers: Vec<(String, String)>,
}

/// What a published protobuf message says about itself: DESIGN's bus contract (AMQP properties
/// and the CloudEvents AMQP binding headers), the same for every publisher.
#[derive(Debug, Clone)]
pub struct Described {
    /// `message_id` and `cloudEvents:id`: subscribers dedupe by it.
    pub id: String,
    /// The protobuf message's full name (AMQP `type`).
    pub type_name: String,
    /// AMQP `timestamp` (ms).
    pub timestamp_ms: i64,
    pub source: String,
    pub kind: String,
    /// `cloudEvents:time` (ms).
    pub time_ms: i64,
    pub subject: String,
    pub traceparent: String,
}

impl Props {
    /// The properties of a protobuf message described by `d`.
    pub fn protobuf(d: Described) -> Self {
        let time = chrono::DateTime::from_timestamp_millis(d.time_ms)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        Self {
            headers: vec![
                ("traceparent".to_string(), d.traceparent),
                ("cloudEvents:specversion".to_string(), "1.0".to_string()),
                ("cloudEvents:id".to_string(), d.id.clone()),
                ("cloudEvents:source".to_string(), d.source),
                ("cloudEvents:type".to_string(), d.kind),
                ("cloudEvents:time".to_string(), time),
                ("cloudEvents:subject".to_string(), d.subject),
            ],
            message_id: d.id,
            content_type: bridge_contracts::PROTOBUF_CONTENT_TYPE.to_string(),
            type_name: d.type_name,
            timestamp_ms: d.timestamp_ms,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn set_header(&mut self, name: &str, value: String) {
        match self.headers.iter_mut().find(|(k, _)| k == name) {
            Some(h) => h.1 = value,
            None => self.headers.push((name.to_string(), value)),
        }
    }

    /// How many times the message went through a retry queue.
    pub fn retry_count(&self) -> usize {
        self.header(RETRY_HEADER)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

pub(crate) const RETRY_HEADER: &str = "x-bridge-retries";
pub(crate) const DEAD_REASON_HEADER: &str = "x-bridge-dead-reason";

/// A message to publish.
#[derive(Debug, Clone)]
pub struct Message {
    pub exchange: String,
    pub routing_key: String,
    pub body: Bytes,
    pub props: Props,
}

pub(crate) enum Acker {
    Amqp {
        acker: lapin::acker::Acker,
        bus: crate::AmqpBus,
        tag: u64,
        outstanding: Arc<Outstanding>,
    },
    Embedded {
        id: i64,
        bus: crate::EmbeddedBus,
    },
}

/// A message received from a queue. Ack only after its effect is durable.
pub struct Delivery {
    pub queue: String,
    pub exchange: String,
    pub routing_key: String,
    pub body: Bytes,
    pub props: Props,
    /// The broker delivered it before (to this or another consumer) without an ack.
    pub redelivered: bool,
    pub(crate) acker: Option<Acker>,
    pub(crate) spec: Arc<QueueSpec>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("queue", &self.queue)
            .field("routing_key", &self.routing_key)
            .field("message_id", &self.props.message_id)
            .field("redelivered", &self.redelivered)
            .finish()
    }
}

impl Drop for Delivery {
    /// A delivery dropped without an answer goes back to its queue (RabbitMQ does the same
    /// when the consumer's channel closes).
    fn drop(&mut self) {
        if let Some(Acker::Embedded { id, bus }) = self.acker.take() {
            bus.forget(&self.queue, id);
        }
    }
}

/// The delivery tags of one consumer channel not answered yet. An ack with AMQP's `multiple`
/// flag answers every delivery up to its tag, so [`ack_all`] uses it only when nothing below
/// the batch's highest tag is still outstanding outside the batch (a delivery being retried,
/// dead-lettered or requeued stays here until its own answer went out).
#[derive(Debug, Default)]
pub(crate) struct Outstanding(Mutex<BTreeSet<u64>>);

impl Outstanding {
    pub(crate) fn add(&self, tag: u64) {
        if let Ok(mut set) = self.0.lock() {
            set.insert(tag);
        }
    }

    fn settle(&self, tags: impl IntoIterator<Item = u64>) {
        if let Ok(mut set) = self.0.lock() {
            for t in tags {
                set.remove(&t);
            }
        }
    }

    /// Whether every outstanding tag up to the highest of `tags` (sorted) is one of `tags`.
    fn covered_by(&self, tags: &[u64]) -> bool {
        let Some(&max) = tags.last() else {
            return true;
        };
        self.0
            .lock()
            .map(|set| set.range(..=max).all(|t| tags.binary_search(t).is_ok()))
            .unwrap_or(false)
    }
}

/// Answers one AMQP delivery (ack, or nack with requeue) and, once the answer went out, takes
/// its tag off the outstanding set. A failed answer leaves the tag: RabbitMQ hands the delivery
/// back when the channel closes, and no batch ack may answer it meanwhile.
async fn answer(
    acker: &lapin::acker::Acker,
    tag: u64,
    outstanding: &Outstanding,
    requeue: bool,
) -> Result<(), BusError> {
    let sent = if requeue {
        acker
            .nack(lapin::options::BasicNackOptions {
                requeue: true,
                multiple: false,
            })
            .await
    } else {
        acker.ack(lapin::options::BasicAckOptions::default()).await
    };
    sent.map_err(|e| BusError::Broker(e.to_string()))?;
    outstanding.settle([tag]);
    Ok(())
}

/// One consumer channel's deliveries in a batch ack: tag and acker.
type AckRun = Vec<(u64, lapin::acker::Acker)>;

/// Acks deliveries together, once their effect is durable: one frame for a consumer's run of
/// deliveries over RabbitMQ (`multiple`) when no other delivery of that consumer is waiting
/// below them, one statement on the embedded bus; one by one otherwise. Fails with the first
/// error after trying them all.
pub async fn ack_all(deliveries: Vec<Delivery>) -> Result<(), BusError> {
    let mut amqp: Vec<(Arc<Outstanding>, AckRun)> = Vec::new();
    let mut embedded: Vec<(crate::EmbeddedBus, String, Vec<i64>)> = Vec::new();
    for mut d in deliveries {
        match d.take_acker()? {
            Acker::Amqp {
                acker,
                tag,
                outstanding,
                ..
            } => match amqp.iter_mut().find(|(o, _)| Arc::ptr_eq(o, &outstanding)) {
                Some((_, run)) => run.push((tag, acker)),
                None => amqp.push((outstanding, vec![(tag, acker)])),
            },
            Acker::Embedded { id, bus } => {
                match embedded.iter_mut().find(|(_, q, _)| *q == d.queue) {
                    Some((_, _, ids)) => ids.push(id),
                    None => embedded.push((bus, d.queue.clone(), vec![id])),
                }
            }
        }
    }
    let mut first_error = None;
    for (outstanding, mut run) in amqp {
        run.sort_by_key(|(tag, _)| *tag);
        let tags: Vec<u64> = run.iter().map(|(tag, _)| *tag).collect();
        let result = match run.last() {
            Some((_, acker)) if outstanding.covered_by(&tags) => {
                let sent = acker
                    .ack(lapin::options::BasicAckOptions { multiple: true })
                    .await
                    .map_err(|e| BusError::Broker(e.to_string()));
                if sent.is_ok() {
                    outstanding.settle(tags);
                }
                sent
            }
            _ => futures_util::future::join_all(
                run.iter()
                    .map(|(tag, acker)| answer(acker, *tag, &outstanding, false)),
            )
            .await
            .into_iter()
            .collect(),
        };
        if let Err(e) = result {
            first_error.get_or_insert(e);
        }
    }
    for (bus, queue, ids) in embedded {
        if let Err(e) = bus.ack_many(&queue, &ids).await {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

impl Delivery {
    fn take_acker(&mut self) -> Result<Acker, BusError> {
        self.acker
            .take()
            .ok_or_else(|| BusError::Broker("delivery already answered".into()))
    }

    /// The message is handled: remove it for good.
    pub async fn ack(mut self) -> Result<(), BusError> {
        match self.take_acker()? {
            Acker::Amqp {
                acker,
                tag,
                outstanding,
                ..
            } => answer(&acker, tag, &outstanding, false).await,
            Acker::Embedded { id, bus } => bus.ack(&self.queue, id).await,
        }
    }

    /// Give it back now, for this or another consumer.
    pub async fn requeue(mut self) -> Result<(), BusError> {
        match self.take_acker()? {
            Acker::Amqp {
                acker,
                tag,
                outstanding,
                ..
            } => answer(&acker, tag, &outstanding, true).await,
            Acker::Embedded { id, bus } => bus.release(&self.queue, id).await,
        }
    }

    /// A transient failure: deliver again after the next retry tier's delay, or move to the
    /// dead-letter queue when the tiers are used up. Returns whether it was dead-lettered.
    pub async fn retry_later(mut self, reason: &str) -> Result<bool, BusError> {
        let tier = self.props.retry_count();
        if tier >= self.spec.retry_delays.len() {
            self.dead_letter(reason).await?;
            return Ok(true);
        }
        let mut props = self.props.clone();
        props.set_header(RETRY_HEADER, (tier + 1).to_string());
        match self.take_acker()? {
            Acker::Amqp {
                acker,
                bus,
                tag,
                outstanding,
            } => {
                let msg = self.copy_to(self.spec.retry_queue(tier), props);
                // After a failed publish the delivery stays unanswered and outstanding.
                bus.publish(&msg).await?;
                answer(&acker, tag, &outstanding, false).await?;
            }
            Acker::Embedded { id, bus } => {
                bus.delay(&self.queue, id, &props, self.spec.retry_delays[tier])
                    .await?;
            }
        }
        Ok(false)
    }

    /// A permanent failure: move to the queue's dead-letter queue with the reason.
    pub async fn dead_letter(mut self, reason: &str) -> Result<(), BusError> {
        let mut props = self.props.clone();
        props.set_header(DEAD_REASON_HEADER, reason.to_string());
        let dlq = self.spec.dead_letter_queue();
        match self.take_acker()? {
            Acker::Amqp {
                acker,
                bus,
                tag,
                outstanding,
            } => {
                bus.publish(&self.copy_to(dlq, props)).await?;
                answer(&acker, tag, &outstanding, false).await
            }
            Acker::Embedded { id, bus } => bus.move_to(&self.queue, id, &dlq, &props).await,
        }
    }
}

impl Delivery {
    /// This message with `props`, bound for `queue` through the default exchange; the
    /// original exchange and key are kept in headers (the first time it is sent on).
    fn copy_to(&self, queue: String, mut props: Props) -> Message {
        if props.header("x-bridge-exchange").is_none() {
            props.set_header("x-bridge-exchange", self.exchange.clone());
            props.set_header("x-bridge-routing-key", self.routing_key.clone());
        }
        Message {
            exchange: String::new(),
            routing_key: queue,
            body: self.body.clone(),
            props,
        }
    }
}
