//! The notifier against the emulator, real RabbitMQ and PostgreSQL: every target and message
//! kind, idempotency, a 10,000-user department batch, rate limits, unreachable recipients,
//! Feishu outages, bad requests, and the bot's own answers and card updates.

use std::collections::HashMap;
use std::time::Duration;

use bridge_contracts::v1::{
    notify_request, DeliveryReport, DeliveryStatus, NotifyRequest, Targets, Template,
};
use bridge_directory_sync::SyncOptions;
use feishu_bridge::Role;
use feishu_emulator::state::InboxMessage;
use feishu_emulator::{ContactScope, Emulator, Fault, FaultKind, GenerateSpec};
use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicPublishOptions};
use lapin::types::{AMQPValue, FieldTable};
use prost::Message as _;
use secrecy::SecretString;
use serde_json::{json, Value};

use crate::helpers::{
    fresh_database, random_app_id, settings, Bridge, BridgeOptions, BusQueue, TestApp, AMQP_URL,
};

const TOKEN: &str = "notifier-test-token";

struct Opts {
    users: usize,
    departments: usize,
    /// The emulator's and the bridge client's tiers (1.0 = Feishu's numbers).
    rate_scale: f64,
    batch_schedule_ms: u64,
    /// `all` on SQLite and the embedded bus (as `make demo` runs).
    embedded: bool,
}

impl Default for Opts {
    fn default() -> Self {
        Self {
            users: 40,
            departments: 4,
            rate_scale: 20.0,
            batch_schedule_ms: 0,
            embedded: false,
        }
    }
}

struct World {
    emu: Emulator,
    _running: feishu_emulator::RunningEmulator,
    bridge: Bridge,
    app: TestApp,
    settings: bridge_runtime::Settings,
    results: BusQueue,
    reports: HashMap<String, DeliveryReport>,
    _amqp: lapin::Connection,
    channel: lapin::Channel,
    _templates: tempfile::TempDir,
}

const APPROVAL_CARD: &str = r#"{"schema":"2.0","config":{"update_multi":true},
 "header":{"title":{"tag":"plain_text","content":{{ title }}}},
 "body":{"elements":[
   {"tag":"markdown","content":{{ "Form " ~ form ~ " waits for you." }}},
   {"tag":"button","text":{"tag":"plain_text","content":"Approve"},
    "value":{"notifier":{"done":"Approved"}}}]}}"#;

impl World {
    async fn new(o: Opts) -> Self {
        let emu = Emulator::generate(GenerateSpec {
            users: o.users,
            departments: o.departments,
            seed: 11,
        });
        let mut s = emu.settings();
        s.event_time_factor = 0.01;
        s.rate_limit_scale = o.rate_scale;
        s.batch_schedule_ms = o.batch_schedule_ms;
        emu.set_settings(s).unwrap();
        let mut app = feishu_emulator::generate::demo_app();
        app.app_id = random_app_id();
        emu.add_app(app.clone()).unwrap();
        let running = emu.start("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let test_app = TestApp {
            app_id: app.app_id.clone(),
            app_secret: app.app_secret.clone(),
            encrypt_key: app.encrypt_key.clone(),
            verification_token: app.verification_token.clone(),
        };
        let templates = tempfile::tempdir().unwrap();
        std::fs::write(
            templates.path().join("welcome.text.j2"),
            "Welcome {{ name }}, your account {{ account }} is ready.",
        )
        .unwrap();
        std::fs::write(
            templates.path().join("approval.card.json.j2"),
            APPROVAL_CARD,
        )
        .unwrap();
        let db_url = if o.embedded {
            let dir = std::env::temp_dir().join(format!("fbn-{}", uuid::Uuid::new_v4().simple()));
            std::fs::create_dir_all(&dir).unwrap();
            format!("sqlite://{}?mode=rwc", dir.join("bridge.sqlite").display())
        } else {
            fresh_database().await
        };
        let mut st = settings(
            BridgeOptions {
                apps: vec![test_app.provision(true)],
                broker_url: if o.embedded {
                    "embedded".into()
                } else {
                    AMQP_URL.into()
                },
                ..Default::default()
            },
            db_url,
        );
        st.feishu.base_url = Some(running.base_url().parse().unwrap());
        st.feishu.rate_scale = o.rate_scale;
        st.api.tokens = vec![SecretString::from(TOKEN.to_string())];
        st.notifier.templates_dir = Some(templates.path().to_path_buf());
        st.notifier.poll_interval = Duration::from_millis(100);
        st.notifier.batch_threshold = 5;
        let bridge = Bridge::start_with(st.clone(), Role::All).await;
        emu.set_request_url(
            &app.app_id,
            &bridge.url(&format!("/feishu/{}/events", app.app_id)),
        )
        .await
        .unwrap();
        let results = BusQueue::bind("notify.results", &format!("{}.#", app.app_id)).await;
        let amqp = lapin::Connection::connect(
            AMQP_URL,
            lapin::ConnectionProperties::default()
                .with_executor(tokio_executor_trait::Tokio::current())
                .with_reactor(tokio_reactor_trait::Tokio),
        )
        .await
        .unwrap();
        let channel = amqp.create_channel().await.unwrap();
        channel
            .confirm_select(lapin::options::ConfirmSelectOptions::default())
            .await
            .unwrap();
        Self {
            emu,
            _running: running,
            bridge,
            app: test_app,
            settings: st,
            results,
            reports: HashMap::new(),
            _amqp: amqp,
            channel,
            _templates: templates,
        }
    }

    async fn sync_directory(&self) {
        self.bridge
            .directory
            .clone()
            .unwrap()
            .sync(
                &self.app.app_id,
                SyncOptions {
                    trigger: "api".into(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
    }

    fn tenant(&self) -> feishu_emulator::Tenant {
        self.emu.snapshot().tenants.into_iter().next().unwrap()
    }

    /// The n-th generated user's tenant user_id.
    fn uid(n: usize) -> String {
        format!("u{n:07}")
    }

    fn open_id(&self, uid: &str) -> String {
        self.emu.open_id(&self.app.app_id, uid)
    }

    fn request(
        &self,
        key: &str,
        targets: Targets,
        message: notify_request::Message,
    ) -> NotifyRequest {
        NotifyRequest {
            app_id: self.app.app_id.clone(),
            idempotency_key: key.to_string(),
            targets: Some(targets),
            message: Some(message),
            requested_by: "tests".into(),
            ..Default::default()
        }
    }

    /// Publishes a request to `notify.requests`, confirmed.
    async fn publish(&self, req: &NotifyRequest) {
        let props = lapin::BasicProperties::default()
            .with_delivery_mode(2)
            .with_message_id(req.idempotency_key.clone().into())
            .with_content_type("application/x-protobuf".into())
            .with_type("feishu_bridge.v1.NotifyRequest".into());
        self.channel
            .basic_publish(
                "notify.requests",
                &format!("{}.test", self.app.app_id),
                BasicPublishOptions::default(),
                &req.encode_to_vec(),
                props,
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }

    async fn post(&self, body: Value) -> reqwest::Response {
        self.bridge
            .http
            .post(
                self.bridge
                    .url(&format!("/api/v1/apps/{}/messages", self.app.app_id)),
            )
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    async fn status(&self, id: &str) -> Value {
        self.bridge
            .http
            .get(self.bridge.url(&format!("/api/v1/messages/{id}")))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The delivery report of the request with idempotency key `key` (reports come in any
    /// order; those of other keys are kept for later).
    async fn report(&mut self, key: &str) -> DeliveryReport {
        loop {
            if let Some(r) = self.reports.remove(key) {
                return r;
            }
            let m = self.results.next().await;
            assert_eq!(
                m.props.kind().as_ref().unwrap().as_str(),
                "feishu_bridge.v1.DeliveryReport"
            );
            let r = DeliveryReport::decode(m.body.as_slice()).unwrap();
            self.reports.insert(r.idempotency_key.clone(), r);
        }
    }

    /// Messages the test app's bot sent.
    fn sent(&self) -> Vec<InboxMessage> {
        self.emu
            .inbox()
            .into_iter()
            .filter(|m| m.app_id == self.app.app_id && m.sender_user_id.is_none())
            .collect()
    }

    fn sent_to(&self, uid: &str) -> Vec<InboxMessage> {
        self.sent()
            .into_iter()
            .filter(|m| m.recipient_user_id.as_deref() == Some(uid))
            .collect()
    }

    /// Waits until `f` holds, failing after `within` with `what`.
    async fn wait(&self, what: &str, within: Duration, f: impl Fn(&Self) -> bool) {
        let deadline = tokio::time::Instant::now() + within;
        while !f(self) {
            assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The reasons the requests with `keys` were dead-lettered for (requests of other tests'
    /// apps, which every bridge on the broker sees, are skipped).
    async fn dead_letters(&self, keys: &[&str]) -> HashMap<String, String> {
        let queue = format!(
            "{}notifier.requests.dead",
            self.settings.broker.queue_prefix
        );
        let ch = self._amqp.create_channel().await.unwrap();
        let mut consumer = ch
            .basic_consume(
                &queue,
                "test-dlq",
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        let mut out = HashMap::new();
        while out.len() < keys.len() {
            let d = tokio::time::timeout(Duration::from_secs(20), consumer.next())
                .await
                .expect("a dead letter within 20 s")
                .unwrap()
                .unwrap();
            d.acker.ack(BasicAckOptions::default()).await.unwrap();
            let reason = d
                .properties
                .headers()
                .as_ref()
                .and_then(|h| h.inner().get("x-bridge-dead-reason").cloned())
                .and_then(|v| match v {
                    AMQPValue::LongString(s) => {
                        Some(String::from_utf8_lossy(s.as_bytes()).into_owned())
                    }
                    _ => None,
                })
                .unwrap_or_default();
            let key = NotifyRequest::decode(d.data.as_slice())
                .map(|r| r.idempotency_key)
                .unwrap_or_default();
            if keys.contains(&key.as_str()) {
                out.insert(key, reason);
            }
        }
        out
    }
}

fn text(t: &str) -> notify_request::Message {
    notify_request::Message::Text(t.into())
}

fn to_users(open_ids: Vec<String>) -> Targets {
    Targets {
        open_ids,
        ..Default::default()
    }
}

fn content(m: &InboxMessage) -> Value {
    serde_json::from_str(&m.content).unwrap()
}

#[tokio::test]
async fn every_target_and_message_kind_lands_in_the_inbox() {
    let mut w = World::new(Opts::default()).await;
    w.sync_directory().await;
    let t = w.tenant();
    let (u1, u2, u3, u4) = (World::uid(1), World::uid(2), World::uid(3), World::uid(4));
    let email = t.users[&u4].email.clone();
    assert!(!email.is_empty());
    w.emu
        .add_bot_to_chat(&w.app.app_id, "oc_notifier_test_chat_0001", &u1, "Ops")
        .unwrap();
    // Every id kind, one text each (single sends).
    let targets = Targets {
        open_ids: vec![w.open_id(&u1)],
        user_ids: vec![u2.clone()],
        union_ids: vec![t.union_id(&u3)],
        emails: vec![email],
        chat_ids: vec!["oc_notifier_test_chat_0001".into()],
        ..Default::default()
    };
    w.publish(&w.request("kinds-text", targets, text("hello from the platform")))
        .await;
    let r = w.report("kinds-text").await;
    assert_eq!(r.status, DeliveryStatus::Delivered as i32, "{r:?}");
    assert_eq!((r.recipients, r.sent, r.failed), (5, 5, 0));
    for uid in [&u1, &u2, &u3, &u4] {
        let got = w.sent_to(uid);
        assert_eq!(got.len(), 1, "{uid}: {got:?}");
        assert_eq!(got[0].msg_type, "text");
        assert_eq!(content(&got[0])["text"], "hello from the platform");
        assert!(got[0].uuid.is_some(), "single sends carry a uuid");
    }
    let in_chat: Vec<_> = w
        .sent()
        .into_iter()
        .filter(|m| m.chat_id == "oc_notifier_test_chat_0001")
        .filter(|m| content(m)["text"] == "hello from the platform")
        .collect();
    assert_eq!(in_chat.len(), 1);

    // Post, card and both templates to one user.
    let ou5 = w.open_id(&World::uid(5));
    let post = json!({"zh_cn": {"title": "Weekly", "content": [[{"tag": "text", "text": "numbers are up"}]]}});
    let card =
        json!({"schema": "2.0", "body": {"elements": [{"tag": "markdown", "content": "a card"}]}});
    let messages = [
        (
            "kinds-post",
            notify_request::Message::PostJson(post.to_string()),
        ),
        (
            "kinds-card",
            notify_request::Message::CardJson(card.to_string()),
        ),
        (
            "kinds-tmpl-text",
            notify_request::Message::Template(Template {
                name: "welcome".into(),
                variables_json: json!({"name": "张三", "account": "zs01"}).to_string(),
            }),
        ),
        (
            "kinds-tmpl-card",
            notify_request::Message::Template(Template {
                name: "approval".into(),
                variables_json: json!({"title": "Leave \"request\"", "form": "F-7"}).to_string(),
            }),
        ),
    ];
    for (key, m) in messages.clone() {
        w.publish(&w.request(key, to_users(vec![ou5.clone()]), m))
            .await;
    }
    for (key, _) in &messages {
        let r = w.report(key).await;
        assert_eq!(r.status, DeliveryStatus::Delivered as i32, "{key}: {r:?}");
    }
    let got = w.sent_to(&World::uid(5));
    assert_eq!(got.len(), 4);
    let by_type = |ty: &str| -> Vec<Value> {
        got.iter()
            .filter(|m| m.msg_type == ty)
            .map(content)
            .collect()
    };
    assert_eq!(by_type("post"), vec![post]);
    let texts = by_type("text");
    assert_eq!(
        texts[0]["text"],
        "Welcome 张三, your account zs01 is ready."
    );
    let cards = by_type("interactive");
    assert_eq!(cards.len(), 2);
    assert!(cards.contains(&card));
    assert!(cards
        .iter()
        .any(|c| c["header"]["title"]["content"] == "Leave \"request\""
            && c["body"]["elements"][0]["content"] == "Form F-7 waits for you."));

    // A department (batch_send, members from the directory) and a reply.
    let dept = t
        .departments
        .values()
        .find(|d| d.parent == "0")
        .unwrap()
        .open_department_id
        .clone();
    let members: Vec<String> = t
        .users
        .values()
        .filter(|u| {
            u.departments.iter().any(|m| {
                m.department == dept
                    || t.departments
                        .get(&m.department)
                        .is_some_and(|d| d.parent == dept)
            })
        })
        .map(|u| u.user_id.clone())
        .collect();
    let before: HashMap<String, usize> = members
        .iter()
        .map(|u| (u.clone(), w.sent_to(u).len()))
        .collect();
    let targets = Targets {
        department_ids: vec![dept],
        ..Default::default()
    };
    w.publish(&w.request("kinds-dept", targets, text("all hands at 3")))
        .await;
    let r = w.report("kinds-dept").await;
    assert_eq!(r.status, DeliveryStatus::Delivered as i32, "{r:?}");
    assert_eq!(r.batch_message_ids.len(), 1);
    assert!(r.recipients as usize >= members.len() && !members.is_empty());
    for u in &members {
        let got = w.sent_to(u);
        assert_eq!(got.len(), before[u] + 1, "{u}");
        let last = got.last().unwrap();
        assert_eq!(
            last.batch_id.as_deref(),
            Some(r.batch_message_ids[0].as_str())
        );
        assert_eq!(content(last)["text"], "all hands at 3");
    }
    let asked = w
        .emu
        .user_messages_bot(&w.app.app_id, &World::uid(6), "when is the meeting?")
        .unwrap();
    let mut req = w.request("kinds-reply", Targets::default(), text("at 3 pm"));
    req.reply_to_message_id = asked.clone();
    w.publish(&req).await;
    let r = w.report("kinds-reply").await;
    assert_eq!(r.status, DeliveryStatus::Delivered as i32, "{r:?}");
    let reply: Vec<_> = w
        .sent()
        .into_iter()
        .filter(|m| m.parent_id.as_deref() == Some(asked.as_str()))
        .collect();
    assert_eq!(reply.len(), 1);
    assert_eq!(content(&reply[0])["text"], "at 3 pm");
}

#[tokio::test]
async fn a_repeated_or_redelivered_request_sends_nothing_twice() {
    let mut w = World::new(Opts::default()).await;
    let users: Vec<String> = (1..=3).map(|i| w.open_id(&World::uid(i))).collect();
    let req = w.request("once-only", to_users(users.clone()), text("exactly once"));
    w.publish(&req).await;
    let first = w.report("once-only").await;
    assert_eq!(first.sent, 3);
    // The same request again on the bus, and over HTTP with the same key.
    w.publish(&req).await;
    let resp = w
        .post(json!({"idempotency_key": "once-only", "targets": {"open_ids": users}, "text": "exactly once"}))
        .await;
    assert_eq!(resp.status(), 202);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["notification_id"], first.notification_id.as_str());
    // A sentinel request goes through the same queue after them: once it is reported, the
    // repeats were handled.
    w.publish(&w.request(
        "sentinel",
        to_users(vec![w.open_id(&World::uid(9))]),
        text("s"),
    ))
    .await;
    w.report("sentinel").await;
    for i in 1..=3 {
        assert_eq!(w.sent_to(&World::uid(i)).len(), 1, "user {i}");
    }
    // Same key, another message: refused.
    let resp = w
        .post(json!({"idempotency_key": "once-only", "targets": {"open_ids": [w.open_id(&World::uid(1))]}, "text": "other"}))
        .await;
    assert_eq!(resp.status(), 409);
}

#[tokio::test]
async fn a_ten_thousand_user_department_is_chunked_and_followed() {
    let mut w = World::new(Opts {
        users: 10_000,
        departments: 1,
        rate_scale: 50.0,
        batch_schedule_ms: 300,
        ..Default::default()
    })
    .await;
    w.sync_directory().await;
    let dept = w.tenant().departments.keys().next().unwrap().clone();
    let resp = w
        .post(json!({"idempotency_key": "big", "targets": {"department_ids": [dept]}, "text": "to everyone"}))
        .await;
    assert_eq!(resp.status(), 202);
    let id = resp.json::<Value>().await.unwrap()["notification_id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = w.report("big").await;
    assert_eq!(
        r.status,
        DeliveryStatus::Delivered as i32,
        "{:?}",
        r.failures.first()
    );
    assert_eq!((r.recipients, r.sent, r.failed), (10_000, 10_000, 0));
    assert_eq!(r.batch_message_ids.len(), 50, "10,000 ids in chunks of 200");
    let sent = w.sent();
    assert_eq!(sent.len(), 10_000);
    let mut per_batch: HashMap<String, usize> = HashMap::new();
    for m in &sent {
        *per_batch.entry(m.batch_id.clone().unwrap()).or_default() += 1;
    }
    assert_eq!(per_batch.len(), 50);
    assert!(per_batch.values().all(|n| *n == 200));
    let s = w.status(&id).await;
    assert_eq!(s["status"], "finished");
    let batches = s["batches"].as_array().unwrap();
    assert_eq!(batches.len(), 50);
    for b in batches {
        assert_eq!(b["status"], "done");
        assert_eq!(
            b["valid_user_ids_count"], 200,
            "progress followed until scheduled"
        );
        assert_eq!(b["success_user_ids_count"], 200);
    }
}

/// Publishes twelve messages to user 1 and checks each arrived exactly once; returns the keys.
async fn twelve_to_one_user(w: &mut World, prefix: &str) -> Vec<String> {
    let one = w.open_id(&World::uid(1));
    let keys: Vec<String> = (0..12).map(|i| format!("{prefix}-{i}")).collect();
    for (i, k) in keys.iter().enumerate() {
        w.publish(&w.request(
            k,
            to_users(vec![one.clone()]),
            text(&format!("message {i}")),
        ))
        .await;
    }
    for k in &keys {
        let r = w.report(k).await;
        assert_eq!(r.status, DeliveryStatus::Delivered as i32, "{k}: {r:?}");
    }
    let mut texts: Vec<String> = w
        .sent_to(&World::uid(1))
        .iter()
        .map(|m| content(m)["text"].as_str().unwrap().to_string())
        .collect();
    texts.sort();
    let mut want: Vec<String> = (0..12).map(|i| format!("message {i}")).collect();
    want.sort();
    assert_eq!(texts, want, "every message once, none lost, none doubled");
    keys
}

#[tokio::test]
async fn under_forced_rate_limits_it_slows_down_and_loses_nothing() {
    // Feishu's real tiers (5 QPS to one user), and 99991400 forced on a third of the sends.
    let mut w = World::new(Opts {
        rate_scale: 1.0,
        ..Default::default()
    })
    .await;
    w.emu.set_faults(vec![Fault {
        api: "im.messages.create".into(),
        kind: FaultKind::RateLimit,
        count: Some(6),
        share: Some(0.3),
    }]);
    twelve_to_one_user(&mut w, "forced").await;
    assert!(
        w.emu.faults().is_empty() || w.emu.faults()[0].count < Some(6),
        "some sends were refused with 99991400, waited out and retried"
    );
}

#[tokio::test]
async fn replicas_share_one_rate_budget() {
    // Two notifier replicas on one database, Feishu's real 5 QPS per user: together they
    // never run into the per-recipient limit (a 230020 would send a request through a retry).
    let mut w = World::new(Opts {
        rate_scale: 1.0,
        ..Default::default()
    })
    .await;
    let second = Bridge::start_with(w.settings.clone(), Role::Notifier).await;
    let keys = twelve_to_one_user(&mut w, "shared").await;
    for k in &keys {
        let id = bridge_notifier::message::notification_id(&w.app.app_id, k);
        let s = w.status(&id).await;
        assert_eq!(s["items"][0]["status"], "sent", "{k}: {s}");
        assert_eq!(
            s["items"][0]["attempts"], 1,
            "sent at the first attempt: {k}: {s}"
        );
    }
    second.stop().await;
}

#[tokio::test]
async fn an_unreachable_recipient_is_reported_failed_while_others_get_it() {
    let mut w = World::new(Opts::default()).await;
    // The bot is not available to user 2; it is in no chat "oc_nowhere".
    let available: Vec<String> = (0..40).filter(|i| *i != 2).map(World::uid).collect();
    w.emu
        .set_availability(
            &w.app.app_id,
            ContactScope {
                all: false,
                department_ids: vec![],
                user_ids: available,
            },
        )
        .unwrap();
    let targets = Targets {
        open_ids: vec![
            w.open_id(&World::uid(1)),
            w.open_id(&World::uid(2)),
            w.open_id(&World::uid(3)),
        ],
        chat_ids: vec!["oc_nowhere".into()],
        ..Default::default()
    };
    w.publish(&w.request("partial", targets, text("some of you")))
        .await;
    let r = w.report("partial").await;
    assert_eq!(r.status, DeliveryStatus::Partial as i32);
    assert_eq!((r.sent, r.failed), (2, 2));
    let unreachable = r.failures.iter().find(|f| f.kind == "open_id").unwrap();
    assert_eq!(unreachable.id, w.open_id(&World::uid(2)));
    assert_eq!(unreachable.code, 230013, "bot not available to the user");
    assert!(r.failures.iter().any(|f| f.kind == "chat_id"));
    assert_eq!(w.sent_to(&World::uid(1)).len(), 1);
    assert_eq!(w.sent_to(&World::uid(3)).len(), 1);
    assert!(w.sent_to(&World::uid(2)).is_empty());
    let s = w.status(&r.notification_id).await;
    let failed: Vec<&Value> = s["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["status"] == "failed")
        .collect();
    assert_eq!(failed.len(), 2);
    assert!(
        failed.iter().all(|f| f["attempts"] == 1),
        "permanent errors are not retried"
    );
}

#[tokio::test]
async fn feishu_failing_for_a_while_then_recovering_delivers_once() {
    let mut w = World::new(Opts::default()).await;
    // Five 503s exhaust the client's attempts (the request goes through the retry queue),
    // two more are absorbed by the next attempt.
    w.emu.set_faults(vec![Fault {
        api: "im.messages.create".into(),
        kind: FaultKind::Status { status: 503 },
        count: Some(7),
        share: None,
    }]);
    w.publish(&w.request(
        "outage",
        to_users(vec![w.open_id(&World::uid(1))]),
        text("after the outage"),
    ))
    .await;
    let r = w.report("outage").await;
    assert_eq!(r.status, DeliveryStatus::Delivered as i32, "{r:?}");
    assert!(w.emu.faults().is_empty(), "every injected 503 was met");
    assert_eq!(w.sent_to(&World::uid(1)).len(), 1);
    let s = w.status(&r.notification_id).await;
    assert_eq!(s["items"][0]["attempts"], 2, "sent on the second delivery");
}

#[tokio::test]
async fn a_batch_feishu_may_have_taken_is_not_sent_again() {
    let mut w = World::new(Opts::default()).await;
    let users: Vec<String> = (1..=30).map(|i| w.open_id(&World::uid(i))).collect();
    // A 503 means Feishu's gateway did not take it: the chunk is retried and sent once.
    w.emu.set_faults(vec![Fault {
        api: "message.batch_send".into(),
        kind: FaultKind::Status { status: 503 },
        count: Some(1),
        share: None,
    }]);
    w.publish(&w.request("batch-503", to_users(users.clone()), text("after a 503")))
        .await;
    let r = w.report("batch-503").await;
    assert_eq!((r.sent, r.failed), (30, 0), "{r:?}");
    assert!(w.emu.faults().is_empty());
    assert_eq!(w.sent_to(&World::uid(7)).len(), 1);
    // A 500 leaves the outcome unknown: batch_send has no uuid, so the chunk is reported failed
    // rather than sent a second time.
    w.emu.set_faults(vec![Fault {
        api: "message.batch_send".into(),
        kind: FaultKind::Status { status: 500 },
        count: Some(1),
        share: None,
    }]);
    w.publish(&w.request("batch-500", to_users(users), text("after a 500")))
        .await;
    let r = w.report("batch-500").await;
    assert_eq!((r.sent, r.failed), (0, 30), "{r:?}");
    assert!(
        r.failures.iter().any(|f| f.msg.contains("outcome unknown")),
        "{:?}",
        r.failures.first()
    );
    assert_eq!(w.sent_to(&World::uid(7)).len(), 1, "nothing sent twice");
}

#[tokio::test]
async fn every_bad_request_is_rejected_with_its_reason() {
    let w = World::new(Opts::default()).await;
    let ou = w.open_id(&World::uid(1));
    // HTTP: a clear status and message each.
    let cases = [
        (json!({"text": "x"}), 400, "no target"),
        (json!({"targets": {"open_ids": [ou]}}), 400, "no message"),
        (
            json!({"targets": {"open_ids": [ou]}, "text": "x".repeat(160 * 1024)}),
            413,
            "over Feishu's limit",
        ),
        (
            json!({"targets": {"open_ids": [ou]}, "card": "{\"schema\": "}),
            400,
            "malformed card JSON",
        ),
        (
            json!({"targets": {"open_ids": [ou]}, "template": {"name": "nope"}}),
            400,
            "unknown template nope",
        ),
        (
            json!({"targets": {"open_ids": [ou]}, "template": {"name": "welcome", "variables": {"name": "x"}}}),
            400,
            "missing variable account",
        ),
        (
            json!({"targets": {"open_ids": [ou]}, "text": "x", "card": {}}),
            400,
            "exactly one",
        ),
    ];
    for (body, status, msg) in cases {
        let r = w.post(body.clone()).await;
        assert_eq!(r.status().as_u16(), status, "{body}");
        let b: Value = r.json().await.unwrap();
        assert!(
            b["msg"].as_str().unwrap().contains(msg),
            "{b} should say {msg}"
        );
    }
    let r = w
        .bridge
        .http
        .post(w.bridge.url("/api/v1/apps/cli_0000000000000000/messages"))
        .bearer_auth(TOKEN)
        .json(&json!({"targets": {"open_ids": [ou]}, "text": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = w
        .bridge
        .http
        .post(
            w.bridge
                .url(&format!("/api/v1/apps/{}/messages", w.app.app_id)),
        )
        .json(&json!({"targets": {"open_ids": [ou]}, "text": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // The bus: dead-lettered with the reason, at once (no retries).
    let mut unknown_app = w.request("bad-app", to_users(vec![ou.clone()]), text("x"));
    unknown_app.app_id = "cli_0000000000000000".into();
    let bad = [
        w.request("bad-target", Targets::default(), text("x")),
        unknown_app,
        w.request(
            "bad-size",
            to_users(vec![ou.clone()]),
            text(&"x".repeat(160 * 1024)),
        ),
        w.request(
            "bad-card",
            to_users(vec![ou.clone()]),
            notify_request::Message::CardJson("[".into()),
        ),
        w.request(
            "bad-template",
            to_users(vec![ou.clone()]),
            notify_request::Message::Template(Template {
                name: "welcome".into(),
                variables_json: "{}".into(),
            }),
        ),
    ];
    for b in &bad {
        w.publish(b).await;
    }
    let dead = w
        .dead_letters(&[
            "bad-target",
            "bad-app",
            "bad-size",
            "bad-card",
            "bad-template",
        ])
        .await;
    assert!(dead["bad-target"].contains("no target"), "{dead:?}");
    assert!(dead["bad-app"].contains("unknown app"), "{dead:?}");
    assert!(dead["bad-size"].contains("over Feishu's limit"), "{dead:?}");
    assert!(dead["bad-card"].contains("malformed card JSON"), "{dead:?}");
    assert!(
        dead["bad-template"].contains("missing variable"),
        "{dead:?}"
    );
    assert!(w.sent().is_empty(), "nothing was sent");
}

#[tokio::test]
async fn the_bot_answers_help_greets_groups_and_updates_its_cards() {
    let mut w = World::new(Opts::default()).await;
    let u = World::uid(1);
    let chatter = w
        .emu
        .user_messages_bot(&w.app.app_id, &u, "hello bot")
        .unwrap();
    let asked = w.emu.user_messages_bot(&w.app.app_id, &u, "help").unwrap();
    w.wait("the help reply", Duration::from_secs(15), |w| {
        w.sent()
            .iter()
            .any(|m| m.parent_id.as_deref() == Some(asked.as_str()))
    })
    .await;
    let reply = w
        .sent()
        .into_iter()
        .find(|m| m.parent_id.as_deref() == Some(asked.as_str()))
        .unwrap();
    assert_eq!(reply.msg_type, "interactive");
    assert_eq!(
        content(&reply)["header"]["title"]["content"],
        "What this bot does"
    );
    assert!(
        w.sent()
            .iter()
            .all(|m| m.parent_id.as_deref() != Some(chatter.as_str())),
        "other messages are left alone"
    );
    // 帮助 in a group, with an @-mention, after the bot was added (and greeted the group).
    w.emu
        .add_bot_to_chat(&w.app.app_id, "oc_notifier_bot_group_0001", &u, "Team")
        .unwrap();
    w.wait("the greeting", Duration::from_secs(15), |w| {
        w.sent().iter().any(|m| {
            m.chat_id == "oc_notifier_bot_group_0001"
                && content(m)["text"]
                    .as_str()
                    .is_some_and(|t| t.starts_with("Hello!"))
        })
    })
    .await;
    let asked_cn = w
        .emu
        .user_mentions_bot(&w.app.app_id, "oc_notifier_bot_group_0001", &u, "帮助")
        .unwrap();
    w.wait("the 帮助 reply", Duration::from_secs(15), |w| {
        w.sent()
            .iter()
            .any(|m| m.parent_id.as_deref() == Some(asked_cn.as_str()))
    })
    .await;

    // A click on the help card's button: the card is updated with the callback's token.
    w.emu
        .click_card(
            &w.app.app_id,
            &u,
            &reply.message_id,
            json!({"notifier": {"done": "Glad to help."}}),
        )
        .await
        .unwrap();
    w.wait("the help card update", Duration::from_secs(15), |w| {
        w.sent()
            .iter()
            .any(|m| m.message_id == reply.message_id && m.update_count == 1)
    })
    .await;
    let updated = w
        .sent()
        .into_iter()
        .find(|m| m.message_id == reply.message_id)
        .unwrap();
    let els = content(&updated)["body"]["elements"]
        .as_array()
        .unwrap()
        .clone();
    assert!(els.iter().all(|e| e["tag"] != "button"));
    assert!(els.last().unwrap()["content"]
        .as_str()
        .unwrap()
        .starts_with("Glad to help."));

    // A notifier card from a template: the click settles it, keeping its content.
    let req = w.request(
        "card-click",
        to_users(vec![w.open_id(&u)]),
        notify_request::Message::Template(Template {
            name: "approval".into(),
            variables_json: json!({"title": "Leave", "form": "F-9"}).to_string(),
        }),
    );
    w.publish(&req).await;
    w.report("card-click").await;
    let card_msg = w
        .sent_to(&u)
        .into_iter()
        .find(|m| content(m)["header"]["title"]["content"] == "Leave")
        .unwrap();
    w.emu
        .click_card(
            &w.app.app_id,
            &u,
            &card_msg.message_id,
            json!({"notifier": {"done": "Approved"}}),
        )
        .await
        .unwrap();
    w.wait("the approval card update", Duration::from_secs(15), |w| {
        w.sent()
            .iter()
            .any(|m| m.message_id == card_msg.message_id && m.update_count == 1)
    })
    .await;
    let updated = w
        .sent()
        .into_iter()
        .find(|m| m.message_id == card_msg.message_id)
        .unwrap();
    let c = content(&updated);
    assert_eq!(c["header"]["title"]["content"], "Leave");
    let els = c["body"]["elements"].as_array().unwrap();
    assert_eq!(els[0]["content"], "Form F-9 waits for you.");
    assert!(els.iter().all(|e| e["tag"] != "button"));
    assert!(els.last().unwrap()["content"]
        .as_str()
        .unwrap()
        .starts_with("Approved"));
    // Every help message got one answer, however often Feishu pushed it.
    assert_eq!(
        w.sent()
            .iter()
            .filter(|m| m.parent_id.as_deref() == Some(asked.as_str()))
            .count(),
        1
    );
}

#[tokio::test]
async fn works_in_one_process_on_sqlite_and_the_embedded_bus() {
    let w = World::new(Opts {
        embedded: true,
        ..Default::default()
    })
    .await;
    w.sync_directory().await;
    let dept = w.tenant().departments.keys().next().unwrap().clone();
    let r = w
        .post(json!({"idempotency_key": "embedded", "targets": {"open_ids": [w.open_id(&World::uid(1))], "department_ids": [dept]}, "text": "from sqlite"}))
        .await;
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["notification_id"]
        .as_str()
        .unwrap()
        .to_string();
    crate::helpers::until(
        "the notification finishes",
        Duration::from_secs(20),
        || async { w.status(&id).await["status"] == "finished" },
    )
    .await;
    let s = w.status(&id).await;
    assert_eq!(s["outcome"], "delivered", "{s}");
    assert!(s["sent"].as_i64().unwrap() >= 2);
    assert_eq!(w.sent_to(&World::uid(1)).len(), 1);
}

#[tokio::test]
async fn a_department_the_directory_does_not_know_goes_to_feishu_by_its_id() {
    // No directory sync: the notifier cannot expand the department, Feishu does.
    let mut w = World::new(Opts::default()).await;
    let t = w.tenant();
    let dept = t
        .departments
        .values()
        .find(|d| d.parent == "0")
        .unwrap()
        .open_department_id
        .clone();
    let mut subtree = vec![dept.clone()];
    let mut i = 0;
    while i < subtree.len() {
        let parent = subtree[i].clone();
        subtree.extend(
            t.departments
                .values()
                .filter(|d| d.parent == parent)
                .map(|d| d.open_department_id.clone()),
        );
        i += 1;
    }
    let members: Vec<String> = t
        .users
        .values()
        .filter(|u| {
            u.departments
                .iter()
                .any(|m| subtree.contains(&m.department))
        })
        .map(|u| u.user_id.clone())
        .collect();
    assert!(!members.is_empty());
    let targets = Targets {
        department_ids: vec![dept],
        ..Default::default()
    };
    w.publish(&w.request("unknown-dept", targets, text("by department id")))
        .await;
    let r = w.report("unknown-dept").await;
    assert_eq!(r.status, DeliveryStatus::Delivered as i32, "{r:?}");
    assert_eq!(
        (r.recipients, r.sent),
        (1, 1),
        "the department is one recipient"
    );
    assert_eq!(r.batch_message_ids.len(), 1);
    for u in &members {
        let got = w.sent_to(u);
        assert_eq!(got.len(), 1, "{u}");
        assert_eq!(
            got[0].batch_id.as_deref(),
            Some(r.batch_message_ids[0].as_str())
        );
    }
    assert_eq!(w.sent().len(), members.len());
}
