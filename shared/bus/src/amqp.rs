//! RabbitMQ through lapin: persistent messages, publisher confirms awaited per message but
//! pipelined on a few shared channels, a supervisor that reconnects with backoff (a publish
//! during an outage fails at once with `Unavailable`), and the topology declared on every
//! (re)connect.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::publisher_confirm::Confirmation;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::{mpsc, watch};

use crate::message::{Acker, Delivery, Message, Outstanding, Props};
use crate::worker::{self, WorkerConn};
use crate::{BusError, Consumer, QueueSpec};
use bridge_contracts::topology::Topology;

/// How to reach RabbitMQ.
#[derive(Clone)]
pub struct AmqpOptions {
    pub url: String,
    pub confirm_timeout: Duration,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    pub publish_channels: usize,
    pub connection_name: String,
    /// Prefixed to the topology's queue names (isolates test runs sharing one broker).
    pub queue_prefix: String,
    /// Lets the topology's queues expire when unused (test runs; never in production).
    pub queue_expires: Option<Duration>,
    /// Quorum queues (production). Off: classic non-durable queues, which a test run can
    /// create by the dozen without paying for a Raft group each.
    pub quorum_queues: bool,
    /// [`AmqpBus::publish_from_worker`] publishes over a connection of the calling HTTP
    /// worker's own (plain `amqp://` only); off, it is [`AmqpBus::publish`].
    pub worker_connections: bool,
}

impl AmqpOptions {
    /// The wait before the next attempt after `failures` in a row: doubling from
    /// `reconnect_min`, at most `reconnect_max`.
    fn reconnect_backoff(&self, failures: u32) -> Duration {
        self.reconnect_min
            .saturating_mul(1 << failures.min(10))
            .min(self.reconnect_max)
    }
}

impl std::fmt::Debug for AmqpOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpOptions")
            .field("url", &"[REDACTED]")
            .field("confirm_timeout", &self.confirm_timeout)
            .finish()
    }
}

struct Live {
    generation: u64,
    connection: Connection,
    publishers: Vec<Channel>,
    next: AtomicUsize,
}

struct Inner {
    opts: AmqpOptions,
    topology: Topology,
    live: RwLock<Option<Arc<Live>>>,
    /// Bumped on every successful connect; consumers resubscribe on change.
    generation: watch::Sender<u64>,
    /// Set by lapin's error callback or a failed publish; wakes the supervisor.
    broken: tokio::sync::Notify,
    extra_queues: Mutex<Vec<QueueSpec>>,
    closing: watch::Sender<bool>,
    counter: AtomicU64,
    /// Whether worker connections are on and the URL allows them.
    worker_connections: bool,
    worker_publishes: AtomicU64,
}

thread_local! {
    /// Looked up once per worker thread (an HTTP worker starts after the process installed
    /// its metrics recorder), not in the recorder's registry on every publish.
    static WORKER_PUBLISHES: metrics::Counter = metrics::counter!("bus_worker_publishes_total");
}

/// A thread's worker connection to one bus.
struct WorkerSlot {
    bus: Weak<Inner>,
    state: Mutex<WorkerState>,
}

#[derive(Default)]
struct WorkerState {
    conn: Option<Arc<WorkerConn>>,
    /// An open is under way (in a task of the thread's runtime).
    opening: bool,
    /// Failed opens in a row (a connection that died young counts as one), and when the next
    /// may start: until then, and while an open is under way, the thread publishes over the
    /// shared connection.
    failures: u32,
    retry_at: Option<Instant>,
    /// When the current connection opened.
    opened_at: Option<Instant>,
}

/// A worker connection that dies sooner than this after opening (a channel error on every
/// publish, the broker closing it, no confirms) counts as a failed open: the next waits its
/// backoff instead of churning through handshakes.
const WORKER_MIN_LIFE: Duration = Duration::from_secs(30);

thread_local! {
    static WORKER_SLOTS: std::cell::RefCell<Vec<Arc<WorkerSlot>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// A RabbitMQ connection shared by the process's publishers and consumers.
#[derive(Clone)]
pub struct AmqpBus {
    inner: Arc<Inner>,
}

impl AmqpBus {
    /// Starts the connection supervisor. Waits up to `wait` for the first connection; if the
    /// broker is not there yet the bus still starts (and `/readyz` says so).
    pub async fn start(opts: AmqpOptions, topology: Topology, wait: Duration) -> Self {
        let (generation, _) = watch::channel(0);
        let (closing, _) = watch::channel(false);
        let bus = Self {
            inner: Arc::new(Inner {
                topology,
                live: RwLock::new(None),
                generation,
                broken: tokio::sync::Notify::new(),
                extra_queues: Mutex::new(Vec::new()),
                worker_connections: opts.worker_connections
                    && amqp_uri(&opts.url).is_ok_and(|u| u.scheme == lapin::uri::AMQPScheme::AMQP),
                opts,
                closing,
                counter: AtomicU64::new(0),
                worker_publishes: AtomicU64::new(0),
            }),
        };
        let mut gen = bus.inner.generation.subscribe();
        tokio::spawn(supervise(bus.clone()));
        let _ = tokio::time::timeout(wait, gen.wait_for(|g| *g > 0)).await;
        bus
    }

    fn live(&self) -> Option<Arc<Live>> {
        self.inner.live.read().ok().and_then(|l| l.clone())
    }

    fn mark_broken(&self, generation: u64) {
        if let Ok(mut l) = self.inner.live.write() {
            if l.as_ref().is_some_and(|live| live.generation == generation) {
                *l = None;
            }
        }
        self.inner.broken.notify_one();
    }

    pub fn ready(&self) -> Result<(), String> {
        match self.live() {
            Some(l) if l.connection.status().connected() => Ok(()),
            _ => Err("not connected to RabbitMQ".into()),
        }
    }

    pub async fn publish(&self, msg: &Message) -> Result<(), BusError> {
        let live = self
            .live()
            .ok_or_else(|| BusError::Unavailable("not connected to RabbitMQ".into()))?;
        let i = live.next.fetch_add(1, Ordering::Relaxed) % live.publishers.len();
        let channel = &live.publishers[i];
        let props = to_amqp_props(&msg.props);
        let confirm = channel
            .basic_publish(
                &msg.exchange,
                &msg.routing_key,
                BasicPublishOptions::default(),
                &msg.body,
                props,
            )
            .await
            .map_err(|e| {
                self.mark_broken(live.generation);
                BusError::Unavailable(e.to_string())
            })?;
        let timeout = self.inner.opts.confirm_timeout;
        match tokio::time::timeout(timeout, confirm).await {
            Err(_) => Err(BusError::ConfirmTimeout(timeout)),
            Ok(Err(e)) => {
                self.mark_broken(live.generation);
                Err(BusError::Unavailable(e.to_string()))
            }
            Ok(Ok(Confirmation::Ack(_))) => Ok(()),
            Ok(Ok(Confirmation::Nack(_))) => Err(BusError::Nacked),
            Ok(Ok(Confirmation::NotRequested)) => {
                Err(BusError::Broker("channel is not in confirm mode".into()))
            }
        }
    }

    /// Like [`AmqpBus::publish`], but from an HTTP worker (a thread running a single-threaded
    /// runtime) over that thread's own connection: no hop to lapin's I/O thread and back per
    /// message (see `worker.rs`). Elsewhere, with worker connections off, and while the
    /// thread's connection is opening (in the background, from the first publish) or cannot
    /// be opened, it is [`AmqpBus::publish`]. During an outage of
    /// the shared connection it fails fast, like `publish`.
    pub async fn publish_from_worker(&self, msg: &Message) -> Result<(), BusError> {
        if !self.inner.worker_connections || !worker::on_worker_thread() {
            return self.publish(msg).await;
        }
        if self.live().is_none() {
            return Err(BusError::Unavailable("not connected to RabbitMQ".into()));
        }
        match self.worker_conn() {
            Some(conn) => {
                WORKER_PUBLISHES.with(|c| c.increment(1));
                self.inner.worker_publishes.fetch_add(1, Ordering::Relaxed);
                conn.publish(msg, self.inner.opts.confirm_timeout).await
            }
            None => self.publish(msg).await,
        }
    }

    /// Whether the calling thread has an open connection of its own to this bus.
    pub fn has_worker_connection(&self) -> bool {
        let slot = self.worker_slot();
        let state = slot.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.conn.as_ref().is_some_and(|c| c.alive())
    }

    /// How many publishes went over worker connections (all threads) since the bus started.
    pub fn worker_publishes(&self) -> u64 {
        self.inner.worker_publishes.load(Ordering::Relaxed)
    }

    fn worker_slot(&self) -> Arc<WorkerSlot> {
        WORKER_SLOTS.with(|slots| {
            let mut slots = slots.borrow_mut();
            match slots
                .iter()
                .find(|s| std::ptr::eq(s.bus.as_ptr(), Arc::as_ptr(&self.inner)))
            {
                Some(s) => s.clone(),
                None => {
                    // Slots of buses gone are dropped when a new one is made, not per publish.
                    slots.retain(|s| s.bus.strong_count() > 0);
                    let s = Arc::new(WorkerSlot {
                        bus: Arc::downgrade(&self.inner),
                        state: Mutex::new(WorkerState::default()),
                    });
                    slots.push(s.clone());
                    s
                }
            }
        })
    }

    /// This thread's open connection to this bus. Without one, starts opening it in a task of
    /// the thread's runtime (unless an open is under way or backing off) and returns `None`:
    /// no request ever waits for a connection to open.
    fn worker_conn(&self) -> Option<Arc<WorkerConn>> {
        let slot = self.worker_slot();
        let mut state = slot.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(conn) = state.conn.as_ref().filter(|c| c.alive()) {
            return Some(conn.clone());
        }
        // The next open starts now, or after a backoff when the last connection died young.
        let mut delay = Duration::ZERO;
        if state.conn.take().is_some() {
            let lived = state.opened_at.take().map(|t| t.elapsed());
            if lived.is_some_and(|l| l < WORKER_MIN_LIFE) {
                state.failures = state.failures.saturating_add(1);
                delay = self.inner.opts.reconnect_backoff(state.failures);
                tracing::warn!(?lived, retry_in = ?delay, "a worker connection to RabbitMQ died young; publishing over the shared one meanwhile");
            } else {
                state.failures = 0;
            }
        }
        if state.opening || state.retry_at.is_some_and(|t| Instant::now() < t) {
            return None;
        }
        state.opening = true;
        drop(state);
        let opts = self.inner.opts.clone();
        let mut closing = self.inner.closing.subscribe();
        tokio::spawn(async move {
            if !delay.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = closing.wait_for(|c| *c) => return,
                }
            }
            let name = format!("{}-worker", opts.connection_name);
            let opened = worker::open(
                &opts.url,
                &name,
                closing,
                Duration::from_secs(5),
                opts.confirm_timeout,
            )
            .await;
            let mut state = slot.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.opening = false;
            match opened {
                Ok(conn) => {
                    metrics::counter!("bus_worker_connections_opened_total").increment(1);
                    state.retry_at = None;
                    state.opened_at = Some(Instant::now());
                    state.conn = Some(conn);
                }
                Err(e) => {
                    state.failures = state.failures.saturating_add(1);
                    let backoff = opts.reconnect_backoff(state.failures);
                    tracing::warn!(error = %e, retry_in = ?backoff, "cannot open a worker connection to RabbitMQ; publishing over the shared one meanwhile");
                    state.retry_at = Some(Instant::now() + backoff);
                }
            }
        });
        None
    }

    pub async fn declare_queue(&self, spec: &QueueSpec) -> Result<(), BusError> {
        if let Ok(mut q) = self.inner.extra_queues.lock() {
            if !q.iter().any(|s| s.name == spec.name) {
                q.push(spec.clone());
            }
        }
        let live = self
            .live()
            .ok_or_else(|| BusError::Unavailable("not connected to RabbitMQ".into()))?;
        let ch = live
            .connection
            .create_channel()
            .await
            .map_err(|e| BusError::Broker(e.to_string()))?;
        let r = declare_queue_on(&ch, spec).await;
        let _ = ch.close(200, "declared").await;
        r
    }

    pub async fn consume(&self, queue: &str, prefetch: u16) -> Result<Consumer, BusError> {
        let spec = self.spec_for(queue)?;
        let (tx, rx) = mpsc::channel(prefetch.max(1) as usize);
        let bus = self.clone();
        let tag = format!(
            "{}-{}",
            self.inner.opts.connection_name,
            self.inner.counter.fetch_add(1, Ordering::Relaxed)
        );
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let mut gen_rx = bus.inner.generation.subscribe();
            loop {
                let generation = *gen_rx.borrow_and_update();
                if let Some(live) = bus.live().filter(|l| l.generation == generation) {
                    match subscribe(&live, &spec, prefetch, &tag).await {
                        Ok((channel, mut stream)) => {
                            let outstanding = Arc::new(Outstanding::default());
                            let stopped = loop {
                                let item = tokio::select! {
                                    item = stream.next() => item,
                                    _ = &mut stop_rx => break true,
                                };
                                match item {
                                    Some(Ok(d)) => {
                                        let delivery =
                                            from_amqp(d, &spec, bus.clone(), &outstanding);
                                        tokio::select! {
                                            sent = tx.send(delivery) => if sent.is_err() { break true },
                                            _ = &mut stop_rx => break true,
                                        }
                                    }
                                    Some(Err(e)) => {
                                        tracing::warn!(queue = %spec.name, error = %e, "consumer stream failed");
                                        bus.mark_broken(live.generation);
                                        break false;
                                    }
                                    None => break false,
                                }
                            };
                            if stopped {
                                // Closing the channel hands unacked deliveries back to the queue.
                                let _ = channel.close(200, "consumer dropped").await;
                                return;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(queue = %spec.name, error = %e, "cannot consume");
                            bus.mark_broken(live.generation);
                        }
                    }
                }
                tokio::select! {
                    changed = gen_rx.changed() => if changed.is_err() { return },
                    _ = &mut stop_rx => return,
                }
            }
        });
        Ok(Consumer::new(rx, Some(stop_tx)))
    }

    /// The spec of a declared queue, or of a declared queue's dead-letter queue.
    fn spec_for(&self, queue: &str) -> Result<Arc<QueueSpec>, BusError> {
        let mut known = topology_specs(&self.inner.opts, &self.inner.topology);
        if let Ok(extra) = self.inner.extra_queues.lock() {
            known.extend(extra.iter().cloned());
        }
        let prefixed = format!("{}{queue}", self.inner.opts.queue_prefix);
        for spec in known {
            if spec.name == queue || spec.name == prefixed {
                return Ok(Arc::new(spec));
            }
            if spec.dead_letter_queue() == queue {
                return Ok(Arc::new(QueueSpec {
                    name: queue.to_string(),
                    bindings: Vec::new(),
                    durable: spec.durable,
                    retry_delays: Vec::new(),
                    expires: spec.expires,
                }));
            }
        }
        Err(BusError::UnknownQueue(queue.to_string()))
    }

    pub async fn close(&self) {
        self.inner.closing.send_replace(true);
        let live = self.inner.live.write().ok().and_then(|mut l| l.take());
        if let Some(live) = live {
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                live.connection.close(200, "shutting down"),
            )
            .await;
        }
    }
}

async fn subscribe(
    live: &Live,
    spec: &QueueSpec,
    prefetch: u16,
    tag: &str,
) -> Result<(Channel, lapin::Consumer), lapin::Error> {
    let ch = live.connection.create_channel().await?;
    ch.basic_qos(prefetch, BasicQosOptions::default()).await?;
    let consumer = ch
        .basic_consume(
            &spec.name,
            tag,
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok((ch, consumer))
}

async fn supervise(bus: AmqpBus) {
    let mut closing = bus.inner.closing.subscribe();
    let mut delay = bus.inner.opts.reconnect_min;
    let mut generation = 0u64;
    loop {
        if *closing.borrow() {
            return;
        }
        match connect(&bus, generation + 1).await {
            Ok(live) => {
                generation += 1;
                delay = bus.inner.opts.reconnect_min;
                if let Ok(mut l) = bus.inner.live.write() {
                    *l = Some(Arc::new(live));
                }
                bus.inner.generation.send_replace(generation);
                tracing::info!(generation, "connected to RabbitMQ");
                tokio::select! {
                    _ = bus.inner.broken.notified() => {}
                    _ = closing.wait_for(|c| *c) => return,
                }
                let old = bus.inner.live.write().ok().and_then(|mut l| l.take());
                if let Some(old) = old {
                    // The socket may be dead: never wait long for a CloseOk that cannot come.
                    let _ = tokio::time::timeout(
                        Duration::from_secs(1),
                        old.connection.close(320, "reconnecting"),
                    )
                    .await;
                }
                tracing::warn!("lost the RabbitMQ connection; reconnecting");
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?delay, "cannot connect to RabbitMQ");
                let jitter = Duration::from_millis(rand::random::<u64>() % 100);
                tokio::select! {
                    _ = tokio::time::sleep(delay + jitter) => {}
                    _ = closing.wait_for(|c| *c) => return,
                }
                delay = (delay * 2).min(bus.inner.opts.reconnect_max);
            }
        }
    }
}

async fn connect(bus: &AmqpBus, generation: u64) -> Result<Live, BusError> {
    let opts = &bus.inner.opts;
    let props = ConnectionProperties::default()
        .with_connection_name(LongString::from(opts.connection_name.clone()))
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio);
    let uri = amqp_uri(&opts.url).map_err(BusError::Unavailable)?;
    let connection =
        tokio::time::timeout(Duration::from_secs(5), Connection::connect_uri(uri, props))
            .await
            .map_err(|_| BusError::Unavailable("connect timed out".into()))?
            .map_err(|e| BusError::Unavailable(e.to_string()))?;
    let weak = bus.clone();
    connection.on_error(move |e| {
        tracing::warn!(error = %e, "RabbitMQ connection error");
        weak.mark_broken(generation);
    });
    let ch = connection
        .create_channel()
        .await
        .map_err(|e| BusError::Broker(e.to_string()))?;
    declare_topology_on(
        &ch,
        &bus.inner.topology,
        &topology_specs(opts, &bus.inner.topology),
    )
    .await?;
    let extra: Vec<QueueSpec> = bus
        .inner
        .extra_queues
        .lock()
        .map(|q| q.clone())
        .unwrap_or_default();
    for spec in &extra {
        declare_queue_on(&ch, spec).await?;
    }
    let _ = ch.close(200, "declared").await;
    let mut publishers = Vec::with_capacity(opts.publish_channels);
    for _ in 0..opts.publish_channels {
        let ch = connection
            .create_channel()
            .await
            .map_err(|e| BusError::Broker(e.to_string()))?;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| BusError::Broker(e.to_string()))?;
        publishers.push(ch);
    }
    Ok(Live {
        generation,
        connection,
        publishers,
        next: AtomicUsize::new(0),
    })
}

/// Parses an AMQP URL as lapin does, but keeps an IP address as the host: amq-protocol's
/// parser takes the host from the URL's domain, which an IP literal does not have, and so
/// turned `amqp://10.0.0.5/` into a connection to `localhost`.
pub(crate) fn amqp_uri(url: &str) -> Result<lapin::uri::AMQPUri, String> {
    let mut uri: lapin::uri::AMQPUri = url.parse()?;
    match url::Url::parse(url).map_err(|e| e.to_string())?.host() {
        Some(url::Host::Ipv4(ip)) => uri.authority.host = ip.to_string(),
        Some(url::Host::Ipv6(ip)) => uri.authority.host = format!("[{ip}]"),
        _ => {}
    }
    Ok(uri)
}

/// The topology's queues as this process names them.
fn topology_specs(opts: &AmqpOptions, topology: &Topology) -> Vec<QueueSpec> {
    topology
        .queues
        .iter()
        .map(|q| {
            let mut s = QueueSpec::from(q);
            s.name = format!("{}{}", opts.queue_prefix, s.name);
            s.expires = opts.queue_expires;
            s.durable = opts.quorum_queues;
            s
        })
        .collect()
}

async fn declare_topology_on(
    ch: &Channel,
    topology: &Topology,
    queues: &[QueueSpec],
) -> Result<(), BusError> {
    for ex in topology.exchanges {
        ch.exchange_declare(
            ex.name,
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| BusError::Broker(format!("declare exchange {}: {e}", ex.name)))?;
    }
    for q in queues {
        declare_queue_on(ch, q).await?;
    }
    Ok(())
}

fn args(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert(ShortString::from(k.to_string()), v.clone());
    }
    t
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.to_string()))
}

/// One queue of a [`QueueSpec`] as RabbitMQ holds it: its name and `x-` arguments.
pub struct QueuePlan {
    pub name: String,
    pub durable: bool,
    pub arguments: Vec<(&'static str, AMQPValue)>,
}

/// The queues a spec declares (the queue, its retry tiers, its dead-letter queue) with their
/// arguments: what [`AmqpBus`] declares and what `feishu-bridge rabbitmq-definitions` writes.
pub fn queue_plan(spec: &QueueSpec) -> Vec<QueuePlan> {
    // Durable queues are quorum queues. Others are classic and, like any queue given an
    // expiry, vanish once unused that long. None is auto-delete: a consumer that goes away
    // must leave its unacked messages to the next one.
    let base = |mut pairs: Vec<(&'static str, AMQPValue)>| {
        if let Some(e) = spec.expires {
            pairs.push(("x-expires", AMQPValue::LongLongInt(e.as_millis() as i64)));
        }
        if spec.durable {
            pairs.push(("x-queue-type", text("quorum")));
        }
        pairs
    };
    let plan = |name: String, arguments| QueuePlan {
        name,
        durable: spec.durable,
        arguments,
    };
    let mut out = vec![plan(spec.name.clone(), base(vec![]))];
    for (tier, delay) in spec.retry_delays.iter().enumerate() {
        let mut pairs = vec![
            (
                "x-message-ttl",
                AMQPValue::LongLongInt(delay.as_millis() as i64),
            ),
            ("x-dead-letter-exchange", text("")),
            ("x-dead-letter-routing-key", text(&spec.name)),
        ];
        if spec.durable {
            pairs.push(("x-dead-letter-strategy", text("at-least-once")));
            pairs.push(("x-overflow", text("reject-publish")));
        }
        out.push(plan(spec.retry_queue(tier), base(pairs)));
    }
    out.push(plan(spec.dead_letter_queue(), base(vec![])));
    out
}

/// The topology as a RabbitMQ definitions document's `exchanges`, `queues` and `bindings`
/// (for `load_definitions`), on virtual host `vhost`.
pub fn definitions(topology: &Topology, vhost: &str) -> serde_json::Value {
    use serde_json::{json, Value};
    let value = |v: &AMQPValue| match v {
        AMQPValue::LongLongInt(i) => json!(i),
        AMQPValue::LongString(s) => json!(String::from_utf8_lossy(s.as_bytes())),
        other => json!(format!("{other:?}")),
    };
    let exchanges: Vec<Value> = topology
        .exchanges
        .iter()
        .map(|e| {
            json!({"name": e.name, "vhost": vhost, "type": "topic", "durable": true,
                   "auto_delete": false, "internal": false, "arguments": {}})
        })
        .collect();
    let mut queues = Vec::new();
    let mut bindings = Vec::new();
    for q in topology.queues {
        let spec = QueueSpec::from(q);
        for p in queue_plan(&spec) {
            let args: serde_json::Map<String, Value> = p
                .arguments
                .iter()
                .map(|(k, v)| (k.to_string(), value(v)))
                .collect();
            queues.push(json!({"name": p.name, "vhost": vhost, "durable": p.durable,
                               "auto_delete": false, "arguments": args}));
        }
        for (exchange, pattern) in &spec.bindings {
            bindings.push(
                json!({"source": exchange, "vhost": vhost, "destination": spec.name,
                                 "destination_type": "queue", "routing_key": pattern,
                                 "arguments": {}}),
            );
        }
    }
    json!({"exchanges": exchanges, "queues": queues, "bindings": bindings})
}

async fn declare_queue_on(ch: &Channel, spec: &QueueSpec) -> Result<(), BusError> {
    let err = |what: String| move |e: lapin::Error| BusError::Broker(format!("{what}: {e}"));
    for (exchange, _) in &spec.bindings {
        ch.exchange_declare(
            exchange,
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(err(format!("declare exchange {exchange}")))?;
    }
    let mut plans = queue_plan(spec).into_iter();
    async fn declare(ch: &Channel, p: QueuePlan) -> Result<(), BusError> {
        let opts = QueueDeclareOptions {
            durable: p.durable,
            ..Default::default()
        };
        ch.queue_declare(&p.name, opts, args(&p.arguments))
            .await
            .map(drop)
            .map_err(|e| BusError::Broker(format!("declare queue {}: {e}", p.name)))
    }
    // The consumer queue first, then its bindings, then the retry and dead-letter queues.
    if let Some(main) = plans.next() {
        declare(ch, main).await?;
    }
    for (exchange, pattern) in &spec.bindings {
        ch.queue_bind(
            &spec.name,
            exchange,
            pattern,
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(err(format!("bind {} to {exchange} ({pattern})", spec.name)))?;
    }
    for p in plans {
        declare(ch, p).await?;
    }
    Ok(())
}

pub(crate) fn to_amqp_props(p: &Props) -> BasicProperties {
    let mut headers = FieldTable::default();
    for (k, v) in &p.headers {
        headers.insert(ShortString::from(k.clone()), text(v));
    }
    let mut props = BasicProperties::default()
        .with_delivery_mode(2)
        .with_headers(headers);
    if !p.message_id.is_empty() {
        props = props.with_message_id(ShortString::from(p.message_id.clone()));
    }
    if !p.content_type.is_empty() {
        props = props.with_content_type(ShortString::from(p.content_type.clone()));
    }
    if !p.type_name.is_empty() {
        props = props.with_type(ShortString::from(p.type_name.clone()));
    }
    if p.timestamp_ms > 0 {
        props = props.with_timestamp((p.timestamp_ms / 1000) as u64);
    }
    props
}

fn header_text(v: &AMQPValue) -> Option<String> {
    match v {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        AMQPValue::LongLongInt(i) => Some(i.to_string()),
        AMQPValue::LongInt(i) => Some(i.to_string()),
        AMQPValue::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

fn from_amqp_props(p: &BasicProperties) -> Props {
    let mut headers: Vec<(String, String)> = Vec::new();
    if let Some(h) = p.headers() {
        let map: &std::collections::BTreeMap<ShortString, AMQPValue> = h.inner();
        for (k, v) in map {
            if let Some(t) = header_text(v) {
                headers.push((k.as_str().to_string(), t));
            }
        }
    }
    Props {
        message_id: p
            .message_id()
            .as_ref()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        content_type: p
            .content_type()
            .as_ref()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        type_name: p
            .kind()
            .as_ref()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        timestamp_ms: p.timestamp().map(|t| t as i64 * 1000).unwrap_or(0),
        headers,
    }
}

fn from_amqp(
    d: lapin::message::Delivery,
    spec: &Arc<QueueSpec>,
    bus: AmqpBus,
    outstanding: &Arc<Outstanding>,
) -> Delivery {
    outstanding.add(d.delivery_tag);
    let props = from_amqp_props(&d.properties);
    let exchange = props
        .header("x-bridge-exchange")
        .map(str::to_string)
        .unwrap_or_else(|| d.exchange.as_str().to_string());
    let routing_key = props
        .header("x-bridge-routing-key")
        .map(str::to_string)
        .unwrap_or_else(|| d.routing_key.as_str().to_string());
    Delivery {
        queue: spec.name.clone(),
        exchange,
        routing_key,
        body: bytes::Bytes::from(d.data),
        props,
        redelivered: d.redelivered,
        acker: Some(Acker::Amqp {
            acker: d.acker,
            bus,
            tag: d.delivery_tag,
            outstanding: outstanding.clone(),
        }),
        spec: spec.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::amqp_uri;

    #[test]
    fn an_ip_address_stays_the_host() {
        let u = amqp_uri("amqp://bridge:s3cret@10.1.2.3:5673/prod").unwrap();
        assert_eq!(
            (
                u.authority.host.as_str(),
                u.authority.port,
                u.vhost.as_str()
            ),
            ("10.1.2.3", 5673, "prod")
        );
        assert_eq!(u.authority.userinfo.username, "bridge");
        assert_eq!(u.authority.userinfo.password, "s3cret");
        let u = amqp_uri("amqp://[fd00::7]:5672/%2f").unwrap();
        assert_eq!(
            (u.authority.host.as_str(), u.vhost.as_str()),
            ("[fd00::7]", "/")
        );
        let u = amqp_uri("amqps://rabbit.internal/%2f?heartbeat=10").unwrap();
        assert_eq!(
            (
                u.authority.host.as_str(),
                u.authority.port,
                u.query.heartbeat
            ),
            ("rabbit.internal", 5671, Some(10))
        );
        assert!(amqp_uri("http://rabbit/").is_err());
    }
}
