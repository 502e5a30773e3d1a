//! Publishing over a RabbitMQ connection owned by the calling thread.
//!
//! lapin runs every connection's I/O on a thread of its own: each publish hands its frames to
//! that thread, and each confirm comes back from it. For the ingress, whose HTTP workers each
//! run a single-threaded runtime, those two hops between threads (a futex wake each way, and
//! the I/O thread falling asleep between them) cost more CPU per event than the HTTP request,
//! the signature and the decryption together. Here each such worker thread has its own
//! connection instead: one channel in confirm mode whose reader and writer are tasks of the
//! worker's own runtime. A publish appends its frames to the connection's buffer, the writer
//! lets the runtime take in the requests that arrived meanwhile (one turn of its event loop)
//! and sends whatever accumulated in one write, and the reader settles the confirms
//! (`multiple` included) by delivery tag. Nothing crosses a thread.
//!
//! The frames are lapin's own: encoded and parsed by `amq-protocol`, the crate lapin is built
//! on. lapin keeps the rest: the topology, consumers, acks, and publishes from anywhere else.
//! The shared connection stays the judge of an outage (`publish` fails fast while it is
//! down), and a worker that cannot open its connection publishes over the shared one.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use amq_protocol::frame::{gen_frame, parse_frame, AMQPFrame, ProtocolVersion, WriteContext};
use amq_protocol::protocol::{basic, channel, confirm, connection, AMQPClass};
use amq_protocol::types::{AMQPValue, FieldTable, LongString, ShortString};
use amq_protocol::uri::AMQPUri;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch, Notify};

use crate::message::{Message, Props};
use crate::BusError;

/// The one channel a worker connection opens.
const CHANNEL: u16 = 1;
/// Frame header (type, channel, size) and end octet.
const FRAME_OVERHEAD: usize = 8;
const FRAME_END: u8 = 0xCE;
/// The largest frame we ask for (RabbitMQ's default).
const FRAME_MAX: u32 = 131_072;

/// Whether the caller runs on a single-threaded runtime (an HTTP worker's), the only place a
/// connection of the thread's own saves anything.
pub(crate) fn on_worker_thread() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread)
}

type Settle = oneshot::Sender<Result<(), BusError>>;

/// Publishes awaiting their confirm on one connection, at most: beyond it a publish fails at
/// once (the broker has stopped reading, say) instead of piling up.
const MAX_WAITING: usize = 16_384;

struct Waiting {
    tag: u64,
    since: Instant,
    settle: Settle,
}

struct Pending {
    /// Encoded frames not yet handed to the socket; only whole messages.
    out: Vec<u8>,
    /// The delivery tag of the last publish on the channel.
    last_tag: u64,
    /// Publishes awaiting their confirm, in tag order.
    waiting: VecDeque<Waiting>,
    /// Set while RabbitMQ blocks publishers (a memory or disk alarm): its reason.
    blocked: Option<String>,
}

/// One connection with one confirm-mode channel, driven by two tasks of the runtime that
/// opened it.
pub(crate) struct WorkerConn {
    pending: Mutex<Pending>,
    wake_writer: Notify,
    dead: AtomicBool,
    /// Wakes the reader when the connection fails elsewhere, so it stops waiting for data.
    died: Notify,
    frame_max: usize,
    /// A confirm older than this means the connection is stuck: it is dropped.
    confirm_timeout: Duration,
}

impl WorkerConn {
    pub(crate) fn alive(&self) -> bool {
        !self.dead.load(Ordering::Acquire)
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        // Nothing panics while holding the lock; if something did, the state is still whole
        // messages and tags in order.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Publishes `msg` and waits for its confirm, at most `timeout`.
    pub(crate) async fn publish(&self, msg: &Message, timeout: Duration) -> Result<(), BusError> {
        // Encoded before taking the lock, appended whole: a failure leaves nothing behind.
        let frames = encode_publish(msg, self.frame_max)?;
        let (tx, rx) = oneshot::channel();
        {
            let mut p = self.lock();
            if !self.alive() {
                return Err(BusError::Unavailable("worker connection closed".into()));
            }
            if let Some(reason) = &p.blocked {
                return Err(BusError::Unavailable(format!(
                    "RabbitMQ blocks publishers: {reason}"
                )));
            }
            if p.waiting.len() >= MAX_WAITING {
                return Err(BusError::Unavailable(format!(
                    "{MAX_WAITING} publishes await RabbitMQ's confirm on this connection"
                )));
            }
            p.out.extend_from_slice(&frames);
            p.last_tag += 1;
            let tag = p.last_tag;
            p.waiting.push_back(Waiting {
                tag,
                since: Instant::now(),
                settle: tx,
            });
        }
        self.wake_writer.notify_one();
        match tokio::time::timeout(timeout, rx).await {
            Err(_) => Err(BusError::ConfirmTimeout(timeout)),
            Ok(Err(_)) => Err(BusError::Unavailable(
                "worker connection closed before the confirm".into(),
            )),
            Ok(Ok(result)) => result,
        }
    }

    /// Marks the connection dead, answers every waiting publish with `why`, and leaves only
    /// `farewell` (close frames) for the writer to send before it stops.
    fn fail_with(&self, why: impl Fn() -> BusError, farewell: &[u8]) {
        let waiting = {
            let mut p = self.lock();
            self.dead.store(true, Ordering::Release);
            p.out.clear();
            p.out.extend_from_slice(farewell);
            std::mem::take(&mut p.waiting)
        };
        for w in waiting {
            let _ = w.settle.send(Err(why()));
        }
        self.wake_writer.notify_one();
        self.died.notify_one();
    }

    fn fail(&self, why: impl Fn() -> BusError) {
        self.fail_with(why, &[]);
    }

    /// How long the oldest publish has waited for its confirm.
    fn oldest_wait(&self) -> Option<Duration> {
        self.lock().waiting.front().map(|w| w.since.elapsed())
    }

    /// Settles the confirms a broker's ack or nack covers.
    fn settle(&self, tag: u64, multiple: bool, ok: bool) {
        let settled: Vec<Settle> = {
            let mut p = self.lock();
            if multiple {
                let n = p.waiting.partition_point(|w| w.tag <= tag);
                p.waiting.drain(..n).map(|w| w.settle).collect()
            } else {
                match p.waiting.binary_search_by_key(&tag, |w| w.tag) {
                    Ok(i) => p.waiting.remove(i).map(|w| w.settle).into_iter().collect(),
                    Err(_) => Vec::new(),
                }
            }
        };
        for tx in settled {
            let _ = tx.send(if ok { Ok(()) } else { Err(BusError::Nacked) });
        }
    }
}

/// Marks the connection dead when its reader task ends, however it ends (a runtime shutting
/// down drops its tasks).
struct DeadOnDrop(Arc<WorkerConn>);

impl Drop for DeadOnDrop {
    fn drop(&mut self) {
        if self.0.alive() {
            self.0
                .fail(|| BusError::Unavailable("worker connection closed".into()));
        }
    }
}

fn encode(out: &mut Vec<u8>, frame: &AMQPFrame) -> Result<(), BusError> {
    let buf = std::mem::take(out);
    match gen_frame(frame)(WriteContext::from(buf)) {
        Ok(ctx) => {
            *out = ctx.write;
            Ok(())
        }
        Err(e) => Err(BusError::Broker(format!(
            "cannot encode an AMQP frame: {e:?}"
        ))),
    }
}

fn encoded(frame: &AMQPFrame) -> Result<Vec<u8>, BusError> {
    let mut out = Vec::with_capacity(256);
    encode(&mut out, frame)?;
    Ok(out)
}

fn method(channel: u16, class: AMQPClass) -> AMQPFrame {
    AMQPFrame::Method(channel, class)
}

fn short(what: &str, s: &str) -> Result<ShortString, BusError> {
    // The codec would cut a longer one to its length modulo 256: a malformed frame.
    if s.len() > 255 {
        return Err(BusError::Broker(format!(
            "{what} longer than 255 bytes: {s:.40}..."
        )));
    }
    Ok(ShortString::from(s))
}

/// A whole message: publish method, content header, body frames.
fn encode_publish(msg: &Message, frame_max: usize) -> Result<Vec<u8>, BusError> {
    let mut out = Vec::with_capacity(msg.body.len() + 1024);
    encode(
        &mut out,
        &method(
            CHANNEL,
            AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
                exchange: short("exchange name", &msg.exchange)?,
                routing_key: short("routing key", &msg.routing_key)?,
                mandatory: false,
                immediate: false,
            })),
        ),
    )?;
    for (k, _) in &msg.props.headers {
        short("header name", k)?;
    }
    for (what, v) in [
        ("message id", &msg.props.message_id),
        ("content type", &msg.props.content_type),
        ("type", &msg.props.type_name),
    ] {
        short(what, v)?;
    }
    let header_at = out.len();
    put_content_header(&mut out, CHANNEL, msg.body.len() as u64, &msg.props);
    // The broker closes the connection on a frame over its maximum: refused here instead.
    if out.len() - header_at > frame_max {
        return Err(BusError::Broker(format!(
            "the message's properties take {} bytes, over the broker's frame maximum of {frame_max}",
            out.len() - header_at
        )));
    }
    // Body frames are type, channel, size, the bytes and the end octet: written in place
    // rather than through a copy of each chunk.
    for chunk in msg.body.chunks(frame_max - FRAME_OVERHEAD) {
        out.push(3);
        out.extend_from_slice(&CHANNEL.to_be_bytes());
        out.extend_from_slice(&(chunk.len() as u32).to_be_bytes());
        out.extend_from_slice(chunk);
        out.push(FRAME_END);
    }
    Ok(out)
}

/// Basic's property flags (AMQP 0-9-1 §4.2.6.1: the first property is the highest bit).
const CONTENT_TYPE: u16 = 1 << 15;
const HEADERS: u16 = 1 << 13;
const DELIVERY_MODE: u16 = 1 << 12;
const MESSAGE_ID: u16 = 1 << 7;
const TIMESTAMP: u16 = 1 << 6;
const TYPE: u16 = 1 << 5;

/// The content header frame of a persistent message with `props`, the very bytes
/// `amq-protocol` encodes for [`crate::amqp::to_amqp_props`] (its table is a sorted map), but
/// written in place: through the codec's property and table types it cost a tenth of the
/// ingress's CPU per event. Names and values were checked to fit their short strings.
fn put_content_header(out: &mut Vec<u8>, channel: u16, body_size: u64, props: &Props) {
    fn short(out: &mut Vec<u8>, s: &str) {
        out.push(s.len() as u8);
        out.extend_from_slice(s.as_bytes());
    }
    out.push(2);
    out.extend_from_slice(&channel.to_be_bytes());
    let size_at = out.len();
    out.extend_from_slice(&[0; 4]);
    let start = out.len();
    out.extend_from_slice(&60u16.to_be_bytes()); // class basic
    out.extend_from_slice(&0u16.to_be_bytes()); // weight
    out.extend_from_slice(&body_size.to_be_bytes());
    let mut flags = HEADERS | DELIVERY_MODE;
    for (set, flag) in [
        (!props.content_type.is_empty(), CONTENT_TYPE),
        (!props.message_id.is_empty(), MESSAGE_ID),
        (props.timestamp_ms > 0, TIMESTAMP),
        (!props.type_name.is_empty(), TYPE),
    ] {
        if set {
            flags |= flag;
        }
    }
    out.extend_from_slice(&flags.to_be_bytes());
    if flags & CONTENT_TYPE != 0 {
        short(out, &props.content_type);
    }
    // The table, in key order; a repeated key keeps its last value, as a map would.
    let mut headers: Vec<&(String, String)> = props.headers.iter().collect();
    headers.sort_by(|a, b| a.0.cmp(&b.0));
    let table_at = out.len();
    out.extend_from_slice(&[0; 4]);
    for (i, (k, v)) in headers.iter().map(|h| (&h.0, &h.1)).enumerate() {
        if headers.get(i + 1).is_some_and(|next| next.0 == *k) {
            continue;
        }
        short(out, k);
        out.push(b'S');
        out.extend_from_slice(&(v.len() as u32).to_be_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    let table_len = (out.len() - table_at - 4) as u32;
    out[table_at..table_at + 4].copy_from_slice(&table_len.to_be_bytes());
    out.push(2); // delivery mode: persistent
    if flags & MESSAGE_ID != 0 {
        short(out, &props.message_id);
    }
    if flags & TIMESTAMP != 0 {
        out.extend_from_slice(&((props.timestamp_ms / 1000) as u64).to_be_bytes());
    }
    if flags & TYPE != 0 {
        short(out, &props.type_name);
    }
    let size = (out.len() - start) as u32;
    out[size_at..size_at + 4].copy_from_slice(&size.to_be_bytes());
    out.push(FRAME_END);
}

/// Reads the next whole frame from `rd` (handshake), buffering in `buf`.
async fn read_frame(rd: &mut OwnedReadHalf, buf: &mut Vec<u8>) -> Result<AMQPFrame, BusError> {
    loop {
        let mut at = 0;
        let frame = take_frame(buf, &mut at, FRAME_MAX as usize)?;
        buf.drain(..at);
        if let Some(frame) = frame {
            return Ok(frame);
        }
        let n = rd
            .read_buf(buf)
            .await
            .map_err(|e| BusError::Unavailable(format!("reading from RabbitMQ: {e}")))?;
        if n == 0 {
            return Err(BusError::Unavailable(
                "RabbitMQ closed the connection".into(),
            ));
        }
    }
}

/// The whole frame at `buf[*at..]`, moving `at` past it; `None` while it is incomplete.
fn take_frame(buf: &[u8], at: &mut usize, frame_max: usize) -> Result<Option<AMQPFrame>, BusError> {
    let rest = &buf[*at..];
    if rest.first() == Some(&b'A') {
        return Err(BusError::Broker(
            "RabbitMQ refused the protocol version (it wants another AMQP)".into(),
        ));
    }
    if rest.len() < 7 {
        return Ok(None);
    }
    let size = u32::from_be_bytes([rest[3], rest[4], rest[5], rest[6]]) as usize;
    if size > frame_max {
        return Err(BusError::Broker(format!(
            "RabbitMQ sent a frame of {size} bytes, over the negotiated {frame_max}"
        )));
    }
    let total = 7 + size + 1;
    if rest.len() < total {
        return Ok(None);
    }
    let frame = match parse_frame(&rest[..total]) {
        Ok((_, frame)) => frame,
        Err(e) => {
            return Err(BusError::Broker(format!(
                "unparseable frame from RabbitMQ: {e:?}"
            )))
        }
    };
    *at += total;
    Ok(Some(frame))
}

async fn send(wr: &mut OwnedWriteHalf, frame: &AMQPFrame) -> Result<(), BusError> {
    let out = encoded(frame)?;
    wr.write_all(&out)
        .await
        .map_err(|e| BusError::Unavailable(format!("writing to RabbitMQ: {e}")))
}

fn refused(c: &connection::Close) -> BusError {
    BusError::Unavailable(format!(
        "RabbitMQ closed the connection: {} {}",
        c.reply_code,
        c.reply_text.as_str()
    ))
}

/// Reads frames until `want` returns a value; a connection close is an error.
async fn expect<T>(
    rd: &mut OwnedReadHalf,
    buf: &mut Vec<u8>,
    what: &str,
    want: impl Fn(AMQPClass) -> Option<T>,
) -> Result<T, BusError> {
    loop {
        match read_frame(rd, buf).await? {
            AMQPFrame::Method(_, AMQPClass::Connection(connection::AMQPMethod::Close(c))) => {
                return Err(refused(&c))
            }
            AMQPFrame::Method(_, AMQPClass::Channel(channel::AMQPMethod::Close(c))) => {
                return Err(BusError::Broker(format!(
                    "RabbitMQ closed the channel: {} {}",
                    c.reply_code,
                    c.reply_text.as_str()
                )))
            }
            AMQPFrame::Method(_, class) => {
                if let Some(t) = want(class) {
                    return Ok(t);
                }
            }
            AMQPFrame::Heartbeat(_) => {}
            other => {
                return Err(BusError::Broker(format!(
                    "unexpected frame while waiting for {what}: {other:?}"
                )))
            }
        }
    }
}

/// What the handshake settled.
struct Tuned {
    frame_max: usize,
    heartbeat: Duration,
}

async fn handshake(
    rd: &mut OwnedReadHalf,
    wr: &mut OwnedWriteHalf,
    buf: &mut Vec<u8>,
    uri: &AMQPUri,
    name: &str,
) -> Result<Tuned, BusError> {
    send(
        wr,
        &AMQPFrame::ProtocolHeader(ProtocolVersion::amqp_0_9_1()),
    )
    .await?;
    let start = expect(rd, buf, "connection.start", |c| match c {
        AMQPClass::Connection(connection::AMQPMethod::Start(s)) => Some(s),
        _ => None,
    })
    .await?;
    if !String::from_utf8_lossy(start.mechanisms.as_bytes())
        .split(' ')
        .any(|m| m == "PLAIN")
    {
        return Err(BusError::Broker(
            "RabbitMQ does not offer the PLAIN mechanism".into(),
        ));
    }
    let mut capabilities = FieldTable::default();
    capabilities.insert("publisher_confirms".into(), AMQPValue::Boolean(true));
    // A memory or disk alarm then arrives as connection.blocked (publishes fail fast) rather
    // than as a socket the broker silently stopped reading.
    capabilities.insert("connection.blocked".into(), AMQPValue::Boolean(true));
    capabilities.insert(
        "authentication_failure_close".into(),
        AMQPValue::Boolean(true),
    );
    let mut client = FieldTable::default();
    client.insert(
        "product".into(),
        AMQPValue::LongString("feishu-bridge".into()),
    );
    client.insert("connection_name".into(), AMQPValue::LongString(name.into()));
    client.insert("capabilities".into(), AMQPValue::FieldTable(capabilities));
    let user = &uri.authority.userinfo;
    let response = format!("\0{}\0{}", user.username, user.password);
    send(
        wr,
        &method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::StartOk(connection::StartOk {
                client_properties: client,
                mechanism: "PLAIN".into(),
                response: LongString::from(response),
                locale: "en_US".into(),
            })),
        ),
    )
    .await?;
    let tune = expect(rd, buf, "connection.tune", |c| match c {
        AMQPClass::Connection(connection::AMQPMethod::Tune(t)) => Some(t),
        _ => None,
    })
    .await?;
    let ours = uri.query.frame_max.unwrap_or(FRAME_MAX);
    // As lapin negotiates: the smaller of both sides (0 on one side defers to the other),
    // and never a frame too small for a method.
    let frame_max = match (ours, tune.frame_max) {
        (0, 0) => FRAME_MAX,
        (0, theirs) => theirs,
        (ours, 0) => ours,
        (ours, theirs) => ours.min(theirs),
    }
    .max(4096);
    let heartbeat = match (uri.query.heartbeat.unwrap_or(0), tune.heartbeat) {
        (0, theirs) => theirs,
        (ours, 0) => ours,
        (ours, theirs) => ours.min(theirs),
    };
    send(
        wr,
        &method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::TuneOk(connection::TuneOk {
                channel_max: 1,
                frame_max,
                heartbeat,
            })),
        ),
    )
    .await?;
    // Each of these is answered by its -ok before the next goes out.
    type IsAnswer = fn(&AMQPClass) -> bool;
    let steps: [(AMQPFrame, &str, IsAnswer); 3] = [
        (
            method(
                0,
                AMQPClass::Connection(connection::AMQPMethod::Open(connection::Open {
                    virtual_host: uri.vhost.as_str().into(),
                })),
            ),
            "connection.open-ok",
            |c| matches!(c, AMQPClass::Connection(connection::AMQPMethod::OpenOk(_))),
        ),
        (
            method(
                CHANNEL,
                AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
            ),
            "channel.open-ok",
            |c| matches!(c, AMQPClass::Channel(channel::AMQPMethod::OpenOk(_))),
        ),
        (
            method(
                CHANNEL,
                AMQPClass::Confirm(confirm::AMQPMethod::Select(confirm::Select {
                    nowait: false,
                })),
            ),
            "confirm.select-ok",
            |c| matches!(c, AMQPClass::Confirm(confirm::AMQPMethod::SelectOk(_))),
        ),
    ];
    for (request, answer, is_answer) in &steps {
        send(wr, request).await?;
        expect(rd, buf, answer, |c| is_answer(&c).then_some(())).await?;
    }
    Ok(Tuned {
        frame_max: frame_max as usize,
        heartbeat: Duration::from_secs(u64::from(heartbeat)),
    })
}

/// Opens a worker connection on the current runtime. Its tasks stop when the connection
/// fails or `closing` turns true (the connection is then closed politely).
pub(crate) async fn open(
    url: &str,
    name: &str,
    closing: watch::Receiver<bool>,
    within: Duration,
    confirm_timeout: Duration,
) -> Result<Arc<WorkerConn>, BusError> {
    let uri = crate::amqp::amqp_uri(url).map_err(BusError::Unavailable)?;
    let opened = tokio::time::timeout(within, async {
        let addr = format!("{}:{}", uri.authority.host, uri.authority.port);
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| BusError::Unavailable(format!("cannot connect to RabbitMQ: {e}")))?;
        stream
            .set_nodelay(true)
            .map_err(|e| BusError::Unavailable(e.to_string()))?;
        let (mut rd, mut wr) = stream.into_split();
        let mut buf = Vec::with_capacity(16 * 1024);
        let tuned = handshake(&mut rd, &mut wr, &mut buf, &uri, name).await?;
        Ok::<_, BusError>((rd, wr, buf, tuned))
    })
    .await
    .map_err(|_| BusError::Unavailable("RabbitMQ handshake timed out".into()))??;
    let (rd, wr, buf, tuned) = opened;
    let conn = Arc::new(WorkerConn {
        pending: Mutex::new(Pending {
            out: Vec::with_capacity(16 * 1024),
            last_tag: 0,
            waiting: VecDeque::new(),
            blocked: None,
        }),
        wake_writer: Notify::new(),
        dead: AtomicBool::new(false),
        died: Notify::new(),
        frame_max: tuned.frame_max,
        confirm_timeout,
    });
    // Anything written counts as activity for the broker, so the writer sends a heartbeat
    // only after a quiet half-interval; the reader gives up after two silent intervals.
    let last_write = Arc::new(AtomicU64::new(0));
    let epoch = Instant::now();
    tokio::spawn(write_loop(
        conn.clone(),
        wr,
        tuned.heartbeat,
        last_write,
        epoch,
        closing.clone(),
    ));
    tokio::spawn(read_loop(
        DeadOnDrop(conn.clone()),
        rd,
        buf,
        tuned.heartbeat,
        closing,
    ));
    tracing::debug!(name, frame_max = tuned.frame_max, heartbeat = ?tuned.heartbeat, "worker connection to RabbitMQ open");
    Ok(conn)
}

fn connection_close(code: u16, text: &str) -> Vec<u8> {
    encoded(&method(
        0,
        AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
            reply_code: code,
            reply_text: text.into(),
            class_id: 0,
            method_id: 0,
        })),
    ))
    .unwrap_or_default()
}

async fn write_loop(
    conn: Arc<WorkerConn>,
    mut wr: OwnedWriteHalf,
    heartbeat: Duration,
    last_write: Arc<AtomicU64>,
    epoch: Instant,
    mut closing: watch::Receiver<bool>,
) {
    let mut spare = Vec::with_capacity(16 * 1024);
    let beat = if heartbeat.is_zero() {
        Duration::from_secs(3600)
    } else {
        heartbeat / 2
    };
    // Wakes at least this often when idle, to send heartbeats and to notice a stuck confirm.
    let tick = beat
        .min(conn.confirm_timeout / 2)
        .max(Duration::from_millis(100));
    loop {
        let woke = tokio::select! {
            _ = conn.wake_writer.notified() => Some(true),
            _ = tokio::time::sleep(tick) => Some(false),
            _ = closing.wait_for(|c| *c) => None,
        };
        let Some(woke) = woke else {
            let _ = write_within(
                &mut wr,
                &connection_close(200, "shutting down"),
                Duration::from_secs(1),
            )
            .await;
            return;
        };
        if woke {
            // Let the runtime poll its sockets once more before writing: the requests that
            // arrived meanwhile add their publishes to this write. Fewer, larger writes cost
            // this thread and the broker less per message (about a tenth of the ingress's
            // CPU under load, BENCHMARKS.md) for a delay of one turn of the event loop.
            tokio::task::yield_now().await;
        }
        if conn.alive() {
            if let Some(age) = conn.oldest_wait().filter(|a| *a > conn.confirm_timeout) {
                // The broker has not confirmed for longer than any publish waits: the
                // connection is stuck (a peer gone without a reset, say). Its publishes fail
                // and the next ones get a new connection.
                tracing::warn!(
                    ?age,
                    "no confirm from RabbitMQ on a worker connection; dropping it"
                );
                conn.fail_with(
                    || BusError::Unavailable(format!("RabbitMQ sent no confirm for {age:?}")),
                    &connection_close(320, "no confirm"),
                );
            }
        }
        let mut out = std::mem::replace(&mut conn.lock().out, std::mem::take(&mut spare));
        let since =
            (epoch.elapsed().as_millis() as u64).saturating_sub(last_write.load(Ordering::Relaxed));
        if out.is_empty()
            && !woke
            && !heartbeat.is_zero()
            && since >= beat.as_millis() as u64
            && conn.alive()
        {
            out.extend_from_slice(&[8, 0, 0, 0, 0, 0, 0, FRAME_END]);
        }
        if !out.is_empty() {
            if let Err(why) = write_within(&mut wr, &out, conn.confirm_timeout).await {
                conn.fail(|| BusError::Unavailable(why.clone()));
                return;
            }
            last_write.store(epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        }
        out.clear();
        spare = out;
        if !conn.alive() {
            // The connection failed (maybe during that write): its farewell, if still
            // unsent, goes now.
            let farewell = std::mem::take(&mut conn.lock().out);
            if !farewell.is_empty() {
                let _ = write_within(&mut wr, &farewell, Duration::from_secs(1)).await;
            }
            return;
        }
    }
}

/// Writes all of `bytes`, or says why not: an error, or a socket that took nothing for
/// `limit` (a broker gone without a reset fills the send buffer; the writer must not sit
/// there while publishes keep queueing behind it).
async fn write_within(
    wr: &mut OwnedWriteHalf,
    bytes: &[u8],
    limit: Duration,
) -> Result<(), String> {
    match tokio::time::timeout(limit, wr.write_all(bytes)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("writing to RabbitMQ: {e}")),
        Err(_) => Err(format!("RabbitMQ took no data for {limit:?}")),
    }
}

async fn read_loop(
    guard: DeadOnDrop,
    mut rd: OwnedReadHalf,
    mut buf: Vec<u8>,
    heartbeat: Duration,
    mut closing: watch::Receiver<bool>,
) {
    let conn = &guard.0;
    // The broker sends a heartbeat every half interval when it has nothing else to say.
    let silence = if heartbeat.is_zero() {
        Duration::from_secs(24 * 3600)
    } else {
        heartbeat * 2
    };
    // Set once the connection is being closed (by us or the broker): then only the broker's
    // answer or its end of the stream is awaited, briefly.
    let mut closing_seen = false;
    loop {
        let mut at = 0;
        loop {
            let frame = match take_frame(&buf, &mut at, conn.frame_max) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "worker connection to RabbitMQ dropped");
                    let why = e.to_string();
                    conn.fail_with(
                        || BusError::Unavailable(why.clone()),
                        &connection_close(501, "frame error"),
                    );
                    return;
                }
            };
            match frame {
                AMQPFrame::Method(_, AMQPClass::Basic(basic::AMQPMethod::Ack(a))) => {
                    conn.settle(a.delivery_tag, a.multiple, true)
                }
                AMQPFrame::Method(_, AMQPClass::Basic(basic::AMQPMethod::Nack(n))) => {
                    conn.settle(n.delivery_tag, n.multiple, false)
                }
                AMQPFrame::Method(_, AMQPClass::Connection(connection::AMQPMethod::Blocked(b))) => {
                    tracing::warn!(reason = %b.reason.as_str(), "RabbitMQ blocks publishers");
                    conn.lock().blocked = Some(b.reason.as_str().to_string());
                }
                AMQPFrame::Method(
                    _,
                    AMQPClass::Connection(connection::AMQPMethod::Unblocked(_)),
                ) => {
                    tracing::info!("RabbitMQ unblocked publishers");
                    conn.lock().blocked = None;
                }
                AMQPFrame::Method(_, AMQPClass::Connection(connection::AMQPMethod::CloseOk(_))) => {
                    return
                }
                AMQPFrame::Method(_, AMQPClass::Connection(connection::AMQPMethod::Close(c))) => {
                    tracing::warn!(code = c.reply_code, reason = %c.reply_text.as_str(), "RabbitMQ closed a worker connection");
                    let text = format!("{} {}", c.reply_code, c.reply_text.as_str());
                    let close_ok = encoded(&method(
                        0,
                        AMQPClass::Connection(connection::AMQPMethod::CloseOk(
                            connection::CloseOk {},
                        )),
                    ))
                    .unwrap_or_default();
                    conn.fail_with(
                        || BusError::Unavailable(format!("RabbitMQ closed the connection: {text}")),
                        &close_ok,
                    );
                    return;
                }
                AMQPFrame::Method(_, AMQPClass::Channel(channel::AMQPMethod::Close(c))) => {
                    // A channel error (an exchange that does not exist, say). The broker may
                    // have taken some of the waiting publishes before it: they fail all the
                    // same (a retry may publish one twice; consumers dedupe), and the next
                    // publish gets a new connection.
                    tracing::warn!(code = c.reply_code, reason = %c.reply_text.as_str(), "RabbitMQ closed a worker channel");
                    let text = format!("{} {}", c.reply_code, c.reply_text.as_str());
                    let mut farewell = encoded(&method(
                        CHANNEL,
                        AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})),
                    ))
                    .unwrap_or_default();
                    farewell.extend_from_slice(&connection_close(200, "channel closed"));
                    conn.fail_with(
                        || BusError::Broker(format!("RabbitMQ closed the channel: {text}")),
                        &farewell,
                    );
                    closing_seen = true;
                }
                _ => {}
            }
        }
        buf.drain(..at);
        let wait = if closing_seen {
            Duration::from_secs(1)
        } else {
            silence
        };
        let read = tokio::select! {
            r = tokio::time::timeout(wait, rd.read_buf(&mut buf)) => r,
            _ = closing.wait_for(|c| *c), if !closing_seen => {
                // The writer sends connection.close.
                closing_seen = true;
                continue;
            }
            _ = conn.died.notified(), if !closing_seen => {
                // Failed elsewhere (a stuck confirm, a write error): the broker's answer to
                // the writer's farewell, or the end of the stream, is awaited briefly.
                closing_seen = true;
                continue;
            }
        };
        match read {
            Ok(Ok(n)) if n > 0 => {}
            _ if closing_seen => return,
            Ok(Ok(_)) => {
                tracing::warn!("RabbitMQ closed a worker connection");
                return;
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "worker connection to RabbitMQ failed");
                return;
            }
            Err(_) => {
                tracing::warn!(
                    ?silence,
                    "no heartbeat from RabbitMQ on a worker connection"
                );
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Props;
    use bytes::Bytes;

    fn message(body: Vec<u8>) -> Message {
        Message {
            exchange: "feishu.events".into(),
            routing_key: "cli_x.contact.user.updated_v3".into(),
            body: Bytes::from(body),
            props: Props {
                message_id: "ev-1".into(),
                content_type: "application/x-protobuf".into(),
                type_name: "feishu_bridge.v1.FeishuEvent".into(),
                timestamp_ms: 1_700_000_000_000,
                headers: vec![("traceparent".into(), "00-ab-cd-01".into())],
            },
        }
    }

    #[test]
    fn properties_over_the_frame_maximum_are_refused_before_the_broker_sees_them() {
        let mut m = message(b"body".to_vec());
        m.props
            .headers
            .push(("cloudEvents:subject".into(), "t".repeat(5000)));
        match encode_publish(&m, 4096) {
            Err(BusError::Broker(why)) => assert!(why.contains("frame maximum of 4096"), "{why}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert!(encode_publish(&m, 131_072).is_ok(), "fits a larger frame");
    }

    #[test]
    fn a_message_encodes_as_method_header_and_body_frames_lapin_can_parse() {
        let body: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        let bytes = encode_publish(&message(body.clone()), 131_072).unwrap();
        let mut at = 0;
        let mut frames = Vec::new();
        while let Some(f) = take_frame(&bytes, &mut at, 131_072).unwrap() {
            frames.push(f);
        }
        assert_eq!(at, bytes.len(), "nothing left over");
        match &frames[0] {
            AMQPFrame::Method(1, AMQPClass::Basic(basic::AMQPMethod::Publish(p))) => {
                assert_eq!(p.exchange.as_str(), "feishu.events");
                assert_eq!(p.routing_key.as_str(), "cli_x.contact.user.updated_v3");
            }
            other => panic!("first a publish method, got {other:?}"),
        }
        match &frames[1] {
            AMQPFrame::Header(1, 60, h) => {
                assert_eq!(h.body_size, body.len() as u64);
                assert_eq!(
                    h.properties.message_id().as_ref().map(|s| s.as_str()),
                    Some("ev-1")
                );
                assert_eq!(*h.properties.delivery_mode(), Some(2));
            }
            other => panic!("then a content header, got {other:?}"),
        }
        let mut joined = Vec::new();
        for f in &frames[2..] {
            match f {
                AMQPFrame::Body(1, chunk) => {
                    assert!(chunk.len() <= 131_072 - FRAME_OVERHEAD);
                    joined.extend_from_slice(chunk);
                }
                other => panic!("then body frames, got {other:?}"),
            }
        }
        assert_eq!(frames.len(), 2 + 3, "300,000 bytes in frames of 131,064");
        assert!(joined == body, "the body frames carry the body");
    }

    #[test]
    fn the_content_header_is_the_bytes_amq_protocol_writes() {
        let full = message(b"x".to_vec()).props;
        let mut many = full.clone();
        // Out of order, one repeated (the last value counts, as in a map), one empty value.
        many.headers = vec![
            ("x-retry".into(), "2".into()),
            ("cloudEvents:id".into(), "first".into()),
            ("traceparent".into(), "00-ab-cd-01".into()),
            ("cloudEvents:id".into(), "ev-1".into()),
            ("empty".into(), String::new()),
        ];
        let bare = Props {
            message_id: String::new(),
            content_type: String::new(),
            type_name: String::new(),
            timestamp_ms: 0,
            headers: Vec::new(),
        };
        for (props, body_size) in [(full, 1_234u64), (many, 0), (bare, 300_000)] {
            let mut ours = Vec::new();
            put_content_header(&mut ours, CHANNEL, body_size, &props);
            let theirs = encoded(&AMQPFrame::Header(
                CHANNEL,
                60,
                Box::new(amq_protocol::frame::AMQPContentHeader {
                    class_id: 60,
                    body_size,
                    properties: crate::amqp::to_amqp_props(&props),
                }),
            ))
            .unwrap();
            assert_eq!(ours, theirs, "{:?}", props.headers);
        }
    }

    #[test]
    fn names_over_255_bytes_are_refused_not_cut() {
        let mut m = message(b"x".to_vec());
        m.routing_key = "k".repeat(256);
        assert!(matches!(
            encode_publish(&m, 131_072),
            Err(BusError::Broker(_))
        ));
        let mut m = message(b"x".to_vec());
        m.props.headers.push(("h".repeat(300), "v".into()));
        assert!(matches!(
            encode_publish(&m, 131_072),
            Err(BusError::Broker(_))
        ));
    }

    #[test]
    fn an_oversized_frame_from_the_broker_is_an_error() {
        let mut frame = vec![1, 0, 0];
        frame.extend_from_slice(&(200_000u32).to_be_bytes());
        let mut at = 0;
        assert!(take_frame(&frame, &mut at, 131_072).is_err());
        assert_eq!(at, 0);
    }
}
