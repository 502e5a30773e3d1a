//! The message bus: publish (confirmed) and consume (ack after the effect is durable), over
//! RabbitMQ (lapin) in production or the durable embedded bus inside `feishu-bridge all`.
//! Both declare the topology of `bridge_contracts::topology` and give the same routing,
//! acknowledgement, retry and dead-letter semantics.

mod amqp;
mod embedded;
mod message;
mod worker;

use std::time::Duration;

pub use amqp::{definitions, queue_plan, AmqpBus, AmqpOptions, QueuePlan};
pub use embedded::EmbeddedBus;
pub use message::{ack_all, Delivery, Described, Message, Props};

use bridge_contracts::topology::{Queue, Topology};

/// Why a publish or consume failed.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    #[error("broker did not confirm within {0:?}")]
    ConfirmTimeout(Duration),
    #[error("broker refused the message (nack)")]
    Nacked,
    #[error("broker error: {0}")]
    Broker(String),
    #[error("embedded bus storage: {0}")]
    Storage(String),
    #[error("unknown queue {0}")]
    UnknownQueue(String),
}

/// A queue to declare: a consumer queue of the topology, or a test queue.
#[derive(Debug, Clone)]
pub struct QueueSpec {
    pub name: String,
    /// (exchange, topic pattern)
    pub bindings: Vec<(String, String)>,
    /// Quorum queue with retry tiers and a dead-letter queue (production queues); otherwise a
    /// classic queue that expires when unused
    /// (tests, benchmarks).
    pub durable: bool,
    pub retry_delays: Vec<Duration>,
    /// Delete the queue (and its retry and dead-letter queues) after this long unused.
    pub expires: Option<Duration>,
}

impl QueueSpec {
    /// A throwaway queue (expires after 10 unused minutes on RabbitMQ) bound with the given patterns.
    pub fn transient(name: impl Into<String>, bindings: &[(&str, &str)]) -> Self {
        Self {
            name: name.into(),
            bindings: bindings
                .iter()
                .map(|(e, p)| (e.to_string(), p.to_string()))
                .collect(),
            durable: false,
            retry_delays: vec![Duration::from_millis(200), Duration::from_millis(400)],
            expires: Some(Duration::from_secs(600)),
        }
    }

    pub fn retry_queue(&self, tier: usize) -> String {
        format!("{}.retry.{}", self.name, tier + 1)
    }

    pub fn dead_letter_queue(&self) -> String {
        format!("{}.dead", self.name)
    }
}

impl From<&Queue> for QueueSpec {
    fn from(q: &Queue) -> Self {
        Self {
            name: q.name.to_string(),
            bindings: q
                .bindings
                .iter()
                .map(|b| (b.exchange.to_string(), b.pattern.to_string()))
                .collect(),
            durable: true,
            retry_delays: q.retry_delays.to_vec(),
            expires: None,
        }
    }
}

/// The bus a service uses.
#[derive(Clone)]
pub enum Bus {
    Amqp(AmqpBus),
    Embedded(EmbeddedBus),
}

impl Bus {
    /// Publishes and waits for the broker's confirm (RabbitMQ) or the commit (embedded).
    pub async fn publish(&self, msg: &Message) -> Result<(), BusError> {
        match self {
            Bus::Amqp(b) => b.publish(msg).await,
            Bus::Embedded(b) => b.publish(msg).await,
        }
    }

    /// Like [`Bus::publish`], from an HTTP worker's request: on RabbitMQ over the worker
    /// thread's own connection ([`AmqpBus::publish_from_worker`]).
    pub async fn publish_from_worker(&self, msg: &Message) -> Result<(), BusError> {
        match self {
            Bus::Amqp(b) => b.publish_from_worker(msg).await,
            Bus::Embedded(b) => b.publish(msg).await,
        }
    }

    /// Like [`Bus::publish`], taking the message (for futures that must own it).
    pub async fn publish_owned(&self, msg: Message) -> Result<(), BusError> {
        self.publish(&msg).await
    }

    /// Declares the whole topology (idempotent).
    pub async fn declare_topology(&self, topology: &Topology) -> Result<(), BusError> {
        for q in topology.queues {
            self.declare_queue(&QueueSpec::from(q)).await?;
        }
        Ok(())
    }

    /// Declares one queue, its bindings, retry queues and dead-letter queue.
    pub async fn declare_queue(&self, spec: &QueueSpec) -> Result<(), BusError> {
        match self {
            Bus::Amqp(b) => b.declare_queue(spec).await,
            Bus::Embedded(b) => b.declare_queue(spec).await,
        }
    }

    /// Starts consuming `queue`, at most `prefetch` deliveries unacked at once.
    pub async fn consume(&self, queue: &str, prefetch: u16) -> Result<Consumer, BusError> {
        match self {
            Bus::Amqp(b) => b.consume(queue, prefetch).await,
            Bus::Embedded(b) => b.consume(queue, prefetch).await,
        }
    }

    /// Whether the bus can take messages now (for `/readyz`).
    pub async fn ready(&self) -> Result<(), String> {
        match self {
            Bus::Amqp(b) => b.ready(),
            Bus::Embedded(b) => b.ready().await,
        }
    }

    /// Stops: waits for outstanding confirms (they are awaited by their publishers) and
    /// closes the connection.
    pub async fn close(&self) {
        match self {
            Bus::Amqp(b) => b.close().await,
            Bus::Embedded(b) => b.close().await,
        }
    }
}

/// A stream of deliveries from one queue.
pub struct Consumer {
    rx: tokio::sync::mpsc::Receiver<Delivery>,
    /// Dropping it stops the feeding task (which closes its channel on RabbitMQ).
    _stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Consumer {
    pub(crate) fn new(
        rx: tokio::sync::mpsc::Receiver<Delivery>,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> Self {
        Self { rx, _stop: stop }
    }

    /// The next delivery; None once the bus closed.
    pub async fn next(&mut self) -> Option<Delivery> {
        self.rx.recv().await
    }

    /// A delivery that is already waiting, without waiting for one.
    pub fn try_next(&mut self) -> Option<Delivery> {
        self.rx.try_recv().ok()
    }
}
