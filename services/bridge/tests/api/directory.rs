//! directory-sync against the emulator, real RabbitMQ and PostgreSQL (and SQLite): full sync,
//! every contact event, duplicates and disorder, failing and refused syncs, rate limits and
//! token expiry mid-sync, org-change events, and the read API.

use std::time::Duration;

use bridge_directory_sync::{DirectorySync, SyncOptions};
use feishu_bridge::Role;
use feishu_emulator::{
    Emulator, Fault, FaultKind, GenerateSpec, NewDepartment, NewUser, UserPatch,
};
use secrecy::SecretString;
use serde_json::Value;

use crate::helpers::{
    fresh_database, random_app_id, settings, until, Bridge, BridgeOptions, TestApp,
};

pub const TOKEN: &str = "test-service-token";

pub struct World {
    pub emu: Emulator,
    _running: feishu_emulator::RunningEmulator,
    pub bridge: Bridge,
    pub app: TestApp,
    pub settings: bridge_runtime::Settings,
}

pub struct WorldOptions {
    pub users: usize,
    pub departments: usize,
    pub sqlite: bool,
    pub duplicate_share: f64,
    pub reorder_share: f64,
    pub token_lifetime_secs: u64,
    /// The emulator's tiers (1.0 = Feishu's numbers).
    pub emulator_rate_scale: f64,
    /// The bridge client's tiers.
    pub client_rate_scale: f64,
    pub events: bool,
    /// Adjusts the bridge's settings before it starts.
    pub tweak: fn(&mut bridge_runtime::Settings),
}

impl Default for WorldOptions {
    fn default() -> Self {
        Self {
            users: 120,
            departments: 12,
            sqlite: false,
            duplicate_share: 0.0,
            reorder_share: 0.0,
            token_lifetime_secs: 7200,
            emulator_rate_scale: 50.0,
            client_rate_scale: 50.0,
            events: true,
            tweak: |_| {},
        }
    }
}

impl World {
    pub async fn new(o: WorldOptions) -> Self {
        let emu = Emulator::generate(GenerateSpec {
            users: o.users,
            departments: o.departments,
            seed: 7,
        });
        let mut s = emu.settings();
        // Feishu's retry ladder (15 s, 5 min, 1 h, 6 h) a hundred times faster: a receiver
        // that is down for a while (the restart test) still gets every event.
        s.event_time_factor = 0.01;
        s.duplicate_share = o.duplicate_share;
        s.reorder_share = o.reorder_share;
        s.token_lifetime_secs = o.token_lifetime_secs;
        s.token_reissue_below_secs = o.token_lifetime_secs / 4;
        s.rate_limit_scale = o.emulator_rate_scale;
        emu.set_settings(s).unwrap();
        // An app of this test's own, so tests sharing the broker never see each other's events.
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
        let db_url = if o.sqlite {
            let dir = std::env::temp_dir().join(format!("fb-{}", uuid::Uuid::new_v4().simple()));
            std::fs::create_dir_all(&dir).unwrap();
            format!("sqlite://{}?mode=rwc", dir.join("bridge.sqlite").display())
        } else {
            fresh_database().await
        };
        let mut provision = test_app.provision(true);
        provision.qr_login_enabled = true;
        let mut st = settings(
            BridgeOptions {
                apps: vec![provision],
                ..Default::default()
            },
            db_url.clone(),
        );
        st.feishu.base_url = Some(running.base_url().parse().unwrap());
        st.feishu.rate_scale = o.client_rate_scale;
        st.api.tokens = vec![SecretString::from(TOKEN.to_string())];
        st.directory.batch_size = 50;
        (o.tweak)(&mut st);
        let bridge = Bridge::start_with(st.clone(), Role::All).await;
        // Feishu's redirect list holds the bridge's login callback.
        let callback = bridge.url(&format!("/auth/feishu/{}/callback", app.app_id));
        emu.edit_app(&app.app_id, |a| a.redirect_urls = vec![callback])
            .unwrap();
        if o.events {
            emu.set_request_url(
                &app.app_id,
                &bridge.url(&format!("/feishu/{}/events", app.app_id)),
            )
            .await
            .unwrap();
        }
        Self {
            emu,
            _running: running,
            bridge,
            app: test_app,
            settings: st,
        }
    }

    /// Stops the bridge and starts it again on the same database and queues; Feishu is told
    /// the new address (events pushed meanwhile fail and come back on Feishu's retry ladder).
    pub async fn restart(&mut self) {
        let fresh = Bridge::start_with(self.settings.clone(), Role::All).await;
        let old = std::mem::replace(&mut self.bridge, fresh);
        old.stop().await;
        self.emu
            .set_request_url(
                &self.app.app_id,
                &self
                    .bridge
                    .url(&format!("/feishu/{}/events", self.app.app_id)),
            )
            .await
            .unwrap();
    }

    pub fn ds(&self) -> DirectorySync {
        self.bridge.directory.clone().unwrap()
    }

    pub async fn sync(&self) -> Result<String, bridge_directory_sync::SyncError> {
        self.ds()
            .sync(
                &self.app.app_id,
                SyncOptions {
                    trigger: "api".into(),
                    ..Default::default()
                },
            )
            .await
    }

    /// Both exports, normalised the same way (department_ids after the primary sorted).
    pub async fn exports(&self) -> (Value, Value) {
        let ours = serde_json::to_value(self.ds().export(&self.app.app_id).await.unwrap()).unwrap();
        let theirs = serde_json::to_value(self.emu.export(&self.app.app_id).unwrap()).unwrap();
        (normalise(ours), normalise(theirs))
    }

    /// Waits until the directory equals what the emulator shows the app.
    pub async fn wait_equal(&self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let (ours, theirs) = self.exports().await;
            if ours == theirs {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                assert_eq!(
                    diff(&ours, &theirs),
                    Vec::<String>::new(),
                    "directory differs from the emulator"
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn tenant(&self) -> feishu_emulator::Tenant {
        self.emu.snapshot().tenants.into_iter().next().unwrap()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.bridge
            .http
            .get(
                self.bridge
                    .url(&format!("/api/v1/apps/{}{path}", self.app.app_id)),
            )
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
    }
}

/// Drops fields only one side has, sorts secondary department ids.
fn normalise(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("tenant_key");
    }
    if let Some(users) = v.get_mut("users").and_then(|u| u.as_array_mut()) {
        for u in users {
            if let Some(ids) = u.get_mut("department_ids").and_then(|d| d.as_array_mut()) {
                if ids.len() > 1 {
                    ids[1..].sort_by(|a, b| a.as_str().cmp(&b.as_str()));
                }
            }
        }
    }
    v
}

/// A readable difference, entity by entity.
fn diff(ours: &Value, theirs: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for (kind, key) in [
        ("departments", "open_department_id"),
        ("users", "open_id"),
        ("memberships", "open_id"),
    ] {
        let a = ours[kind].as_array().cloned().unwrap_or_default();
        let b = theirs[kind].as_array().cloned().unwrap_or_default();
        for x in &b {
            if !a.contains(x) {
                let twin = a.iter().find(|y| {
                    y[key] == x[key]
                        && (kind != "memberships"
                            || y["open_department_id"] == x["open_department_id"])
                });
                out.push(format!(
                    "{kind}: emulator has {x}\n   we have {}",
                    twin.map(|t| t.to_string()).unwrap_or("nothing".into())
                ));
            }
        }
        for y in &a {
            if !b.iter().any(|x| {
                x[key] == y[key]
                    && (kind != "memberships" || x["open_department_id"] == y["open_department_id"])
            }) {
                out.push(format!("{kind}: we have extra {y}"));
            }
        }
        if out.len() > 20 {
            break;
        }
    }
    out
}

/// Applies `n` random mutations; errors the emulator gives for impossible ones (a cycle, a
/// department that is not empty) are part of the game.
fn random_mutations(w: &World, rng: &mut rand::rngs::StdRng, n: usize) {
    use rand::Rng;
    for _ in 0..n {
        let t = w.tenant();
        let users: Vec<String> = t
            .users
            .iter()
            .filter(|(_, u)| !u.status.is_resigned)
            .map(|(k, _)| k.clone())
            .collect();
        let depts: Vec<String> = t.departments.keys().cloned().collect();
        let pick =
            |rng: &mut rand::rngs::StdRng, v: &Vec<String>| v[rng.gen_range(0..v.len())].clone();
        let dept_or_root = |rng: &mut rand::rngs::StdRng| {
            if rng.gen_bool(0.2) {
                "0".to_string()
            } else {
                pick(rng, &depts)
            }
        };
        let _ = match rng.gen_range(0..12) {
            0 | 1 => w
                .emu
                .create_user(NewUser {
                    user_id: None,
                    fields: UserPatch {
                        name: Some(format!("新人{}", rng.gen::<u16>())),
                        department_ids: Some(vec![dept_or_root(rng)]),
                        ..Default::default()
                    },
                })
                .map(|_| ()),
            2 | 3 => w
                .emu
                .update_user(
                    &pick(rng, &users),
                    UserPatch {
                        name: Some(format!("名字{}", rng.gen::<u16>())),
                        email: Some(format!("u{}@example.com", rng.gen::<u32>())),
                        ..Default::default()
                    },
                )
                .map(|_| ()),
            4 => w
                .emu
                .update_user(
                    &pick(rng, &users),
                    UserPatch {
                        job_title: Some(format!("Title {}", rng.gen::<u8>())),
                        ..Default::default()
                    },
                )
                .map(|_| ()),
            5 => {
                let (a, b) = (dept_or_root(rng), pick(rng, &depts));
                let ds = if a == b { vec![a] } else { vec![a, b] };
                w.emu.move_user(&pick(rng, &users), ds).map(|_| ())
            }
            6 => w
                .emu
                .freeze_user(&pick(rng, &users), rng.gen_bool(0.5))
                .map(|_| ()),
            7 => w.emu.resign_user(&pick(rng, &users)).map(|_| ()),
            8 => w.emu.delete_user(&pick(rng, &users)),
            9 => w
                .emu
                .create_department(NewDepartment {
                    name: format!("部门{}", rng.gen::<u16>()),
                    parent: dept_or_root(rng),
                    ..Default::default()
                })
                .map(|_| ()),
            10 => w
                .emu
                .rename_department(&pick(rng, &depts), &format!("改名{}", rng.gen::<u16>()))
                .map(|_| ()),
            _ => {
                if rng.gen_bool(0.5) {
                    w.emu
                        .move_department(&pick(rng, &depts), &dept_or_root(rng))
                        .map(|_| ())
                } else {
                    w.emu.delete_department(&pick(rng, &depts))
                }
            }
        };
    }
}

fn some_department(t: &feishu_emulator::Tenant, skip: usize) -> String {
    t.departments.keys().nth(skip).cloned().unwrap()
}

#[tokio::test]
async fn full_sync_equals_the_emulator_and_records_the_run() {
    let w = World::new(WorldOptions {
        events: false,
        ..Default::default()
    })
    .await;
    let run_id = w.sync().await.unwrap();
    w.wait_equal(Duration::from_secs(1)).await;
    let (ours, _) = w.exports().await;
    assert_eq!(ours["users"].as_array().unwrap().len(), 120);
    let r: Value = w
        .get(&format!("/sync/runs/{run_id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["status"], "succeeded", "{r}");
    assert_eq!(r["counts"]["users_seen"], 120);
    assert_eq!(r["counts"]["users"]["created"], 120);
    // A second sync changes nothing.
    let run2 = w.sync().await.unwrap();
    let r: Value = w
        .get(&format!("/sync/runs/{run2}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["counts"]["users"]["created"], 0, "{r}");
    assert_eq!(r["counts"]["users"]["updated"], 0, "{r}");
    w.bridge.stop().await;
}

#[tokio::test]
async fn full_sync_on_sqlite_equals_the_emulator() {
    let w = World::new(WorldOptions {
        sqlite: true,
        events: false,
        ..Default::default()
    })
    .await;
    w.sync().await.unwrap();
    w.wait_equal(Duration::from_secs(1)).await;
    w.bridge.stop().await;
}

#[tokio::test]
async fn every_contact_event_keeps_the_directory_exact() {
    let w = World::new(WorldOptions::default()).await;
    w.sync().await.unwrap();
    let t = w.tenant();
    let d1 = some_department(&t, 0);
    let d2 = some_department(&t, 1);
    let users: Vec<String> = t.users.keys().cloned().collect();

    // Departments: create, rename, move, delete.
    let nd = w
        .emu
        .create_department(NewDepartment {
            name: "新部门 New".into(),
            parent: d1.clone(),
            ..Default::default()
        })
        .unwrap();
    let nd_id = nd.open_department_id.clone();
    w.emu.rename_department(&nd_id, "改名 Renamed").unwrap();
    w.emu.move_department(&nd_id, &d2).unwrap();
    // Users: create, update, move between departments, freeze, resign, delete.
    let nu = w
        .emu
        .create_user(NewUser {
            user_id: None,
            fields: UserPatch {
                name: Some("李四".into()),
                email: Some("lisi@example.com".into()),
                department_ids: Some(vec![nd_id.clone(), d1.clone()]),
                ..Default::default()
            },
        })
        .unwrap();
    w.emu
        .update_user(
            &users[0],
            UserPatch {
                name: Some("王五".into()),
                job_title: Some("Lead".into()),
                ..Default::default()
            },
        )
        .unwrap();
    w.emu
        .update_user(
            &users[0],
            UserPatch {
                mobile: Some("+8613900000000".into()),
                ..Default::default()
            },
        )
        .unwrap();
    w.emu.move_user(&users[1], vec![d2.clone()]).unwrap();
    w.emu.freeze_user(&users[2], true).unwrap();
    w.emu.resign_user(&users[3]).unwrap();
    w.emu.delete_user(&users[4]).unwrap();
    w.emu.move_user(&nu.user_id, vec![d1.clone()]).unwrap();
    w.wait_equal(Duration::from_secs(30)).await;
    // An emptied department can go.
    w.emu.delete_department(&nd_id).unwrap();
    w.wait_equal(Duration::from_secs(30)).await;
    w.bridge.stop().await;
}

#[tokio::test]
async fn random_mutations_with_duplicates_disorder_a_sync_and_a_restart_end_exact() {
    use rand::SeedableRng;
    let mut w = World::new(WorldOptions {
        users: 80,
        departments: 10,
        duplicate_share: 0.3,
        reorder_share: 0.3,
        ..Default::default()
    })
    .await;
    w.sync().await.unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    random_mutations(&w, &mut rng, 100);
    // A reconcile while events keep coming: the snapshot must not undo newer events.
    let ds = w.ds();
    let app_id = w.app.app_id.clone();
    // Forced: a hundred random mutations may well remove more than the guard's share.
    let concurrent = tokio::spawn(async move {
        ds.sync(
            &app_id,
            SyncOptions {
                trigger: "api".into(),
                force: true,
                run_id: None,
            },
        )
        .await
    });
    random_mutations(&w, &mut rng, 100);
    concurrent.await.unwrap().unwrap();
    // The consumer goes away mid-stream and comes back.
    w.restart().await;
    random_mutations(&w, &mut rng, 100);
    w.wait_equal(Duration::from_secs(90)).await;
    w.bridge.stop().await;
}

#[tokio::test]
async fn org_changes_are_published_once_each_in_commit_order() {
    let w = World::new(WorldOptions {
        users: 30,
        departments: 4,
        ..Default::default()
    })
    .await;
    let mut q = crate::helpers::BusQueue::bind("org.changes", &format!("{}.#", w.app.app_id)).await;
    w.sync().await.unwrap();
    let t = w.tenant();
    let u = t.users.keys().next().cloned().unwrap();
    w.emu
        .update_user(
            &u,
            UserPatch {
                name: Some("改 Changed".into()),
                ..Default::default()
            },
        )
        .unwrap();
    w.emu.delete_user(t.users.keys().nth(1).unwrap()).unwrap();
    w.wait_equal(Duration::from_secs(30)).await;
    let committed = crate::helpers::count_rows(
        &w.settings,
        &format!(
            "SELECT COUNT(*) AS n FROM outbox WHERE app_id = '{}'",
            w.app.app_id
        ),
    )
    .await;
    assert!(
        committed > 30 + 30 + 4,
        "a sync of 30 users writes users, memberships and departments: {committed}"
    );
    let mut ids = std::collections::HashSet::new();
    let mut last_seq: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
    let mut keys = Vec::new();
    while (ids.len() as i64) < committed {
        let m = q.next().await;
        let change =
            <bridge_contracts::v1::OrgChange as prost::Message>::decode(m.body.as_slice()).unwrap();
        assert_eq!(change.app_id, w.app.app_id);
        let entity = m
            .headers
            .get("cloudEvents:subject")
            .cloned()
            .unwrap_or_default();
        let prev = last_seq.insert(entity.clone(), change.sequence);
        assert!(
            prev.is_none_or(|p| p < change.sequence),
            "{entity}: out of order"
        );
        ids.insert(m.message_id);
        keys.push(m.routing_key);
    }
    assert_eq!(ids.len() as i64, committed);
    let app = &w.app.app_id;
    assert!(keys.contains(&format!("{app}.user.created")));
    assert!(keys.contains(&format!("{app}.user.updated")));
    assert!(keys.contains(&format!("{app}.user.deleted")));
    assert!(keys.contains(&format!("{app}.department.created")));
    assert!(keys.contains(&format!("{app}.membership.deleted")));
    w.bridge.stop().await;
}

#[tokio::test]
async fn late_duplicate_and_reversed_events_never_win() {
    let w = World::new(WorldOptions {
        users: 10,
        departments: 2,
        events: false,
        ..Default::default()
    })
    .await;
    w.sync().await.unwrap();
    let (before, _) = w.exports().await;
    let victim = before["users"][0].clone();
    let open_id = victim["open_id"].as_str().unwrap().to_string();
    let post = |id: &str, kind: &str, t: i64, object: Value| {
        let body = serde_json::json!({
            "schema": "2.0",
            "header": {"event_id": id, "event_type": kind, "create_time": (t * 1000).to_string(), "token": w.app.verification_token, "app_id": w.app.app_id, "tenant_key": "t"},
            "event": {"object": object, "old_object": {"name": "x"}},
        });
        let bridge = &w.bridge;
        let app = &w.app;
        async move {
            assert_eq!(
                bridge.post_event(app, &body.to_string()).await.status(),
                200
            )
        }
    };
    let now = chrono::Utc::now().timestamp_millis() / 1000 * 1000;
    // Newest first: a rename at +20 s, then an older rename at +10 s, which must not win.
    post(
        "e-new",
        "contact.user.updated_v3",
        now + 20_000,
        serde_json::json!({"open_id": open_id, "name": "Newest"}),
    )
    .await;
    post(
        "e-old",
        "contact.user.updated_v3",
        now + 10_000,
        serde_json::json!({"open_id": open_id, "name": "Older"}),
    )
    .await;
    // The same event again, hours later in Feishu's terms.
    post(
        "e-new",
        "contact.user.updated_v3",
        now + 20_000,
        serde_json::json!({"open_id": open_id, "name": "Newest"}),
    )
    .await;
    wait_for_user(&w, &open_id, |u| u["name"] == "Newest").await;
    // Deleted at +30 s; a late update from +25 s cannot bring the user back.
    post(
        "e-del",
        "contact.user.deleted_v3",
        now + 30_000,
        serde_json::json!({"open_id": open_id}),
    )
    .await;
    post(
        "e-late",
        "contact.user.updated_v3",
        now + 25_000,
        serde_json::json!({"open_id": open_id, "name": "Zombie"}),
    )
    .await;
    let sentinel_name = "Sentinel";
    let other = before["users"][1]["open_id"].as_str().unwrap().to_string();
    post(
        "e-sentinel",
        "contact.user.updated_v3",
        now + 40_000,
        serde_json::json!({"open_id": other, "name": sentinel_name}),
    )
    .await;
    wait_for_user(&w, &other, |u| u["name"] == sentinel_name).await;
    let r = w.get(&format!("/users/{open_id}")).await;
    assert_eq!(r.status(), 404, "a late update resurrected a deleted user");
    w.bridge.stop().await;
}

async fn wait_for_user(w: &World, open_id: &str, ok: impl Fn(&Value) -> bool) {
    let what = format!("user {open_id} reaching the expected state");
    until(&what, Duration::from_secs(20), || async {
        let r = w.get(&format!("/users/{open_id}")).await;
        r.status() == 200 && ok(&r.json::<Value>().await.unwrap())
    })
    .await;
}

#[tokio::test]
async fn scope_shrink_and_growth_follow_the_emulator() {
    let w = World::new(WorldOptions::default()).await;
    w.sync().await.unwrap();
    let t = w.tenant();
    let first = t
        .departments
        .values()
        .find(|d| d.parent == "0")
        .unwrap()
        .open_department_id
        .clone();
    let one_user = t.users.keys().next().cloned().unwrap();
    w.emu
        .set_contact_scope(
            &w.app.app_id,
            feishu_emulator::ContactScope {
                department_ids: vec![first],
                user_ids: vec![one_user],
                ..Default::default()
            },
        )
        .unwrap();
    w.wait_equal(Duration::from_secs(30)).await;
    w.emu
        .set_contact_scope(
            &w.app.app_id,
            feishu_emulator::ContactScope {
                all: true,
                ..Default::default()
            },
        )
        .unwrap();
    w.wait_equal(Duration::from_secs(30)).await;
    w.bridge.stop().await;
}

#[tokio::test]
async fn a_failing_sync_deletes_nothing_and_says_why() {
    let w = World::new(WorldOptions {
        events: false,
        ..Default::default()
    })
    .await;
    w.sync().await.unwrap();
    let (before, _) = w.exports().await;
    // Users leave without events reaching us, and Feishu fails during the next walk.
    let users: Vec<String> = w.tenant().users.keys().take(5).cloned().collect();
    for u in &users {
        w.emu.delete_user(u).unwrap();
    }
    w.emu.set_faults(vec![Fault {
        api: "contact.users.find_by_department".into(),
        kind: FaultKind::Status { status: 500 },
        count: None,
        share: None,
    }]);
    let err = w.sync().await.unwrap_err().to_string();
    assert!(err.contains("nothing was deleted"), "{err}");
    let (after, _) = w.exports().await;
    assert_eq!(before, after, "a failed walk changed the directory");
    let runs: Value = w.get("/sync/runs").await.json().await.unwrap();
    assert_eq!(runs["items"][0]["status"], "failed");
    assert!(
        runs["items"][0]["error"]
            .as_str()
            .unwrap()
            .contains("find_by_department"),
        "{runs}"
    );
    // Once Feishu answers again, the reconcile removes them.
    w.emu.set_faults(vec![]);
    w.sync().await.unwrap();
    w.wait_equal(Duration::from_secs(1)).await;
    w.bridge.stop().await;
}

#[tokio::test]
async fn mass_deletion_is_refused_unless_forced() {
    let w = World::new(WorldOptions {
        users: 50,
        departments: 5,
        events: false,
        ..Default::default()
    })
    .await;
    w.sync().await.unwrap();
    let users: Vec<String> = w.tenant().users.keys().take(15).cloned().collect();
    for u in &users {
        w.emu.delete_user(u).unwrap();
    }
    let err = w.sync().await.unwrap_err().to_string();
    assert!(err.contains("would delete 15 of 50 users"), "{err}");
    let (ours, _) = w.exports().await;
    assert_eq!(ours["users"].as_array().unwrap().len(), 50);
    w.ds()
        .sync(
            &w.app.app_id,
            SyncOptions {
                trigger: "api".into(),
                force: true,
                run_id: None,
            },
        )
        .await
        .unwrap();
    w.wait_equal(Duration::from_secs(1)).await;
    w.bridge.stop().await;
}

#[tokio::test]
async fn rate_limits_and_token_expiry_mid_sync_are_survived() {
    // The emulator allows a tenth of Feishu's rate while our client believes it may go ten
    // times faster: the walk meets 99991400 and must wait out x-ogw-ratelimit-reset. Tokens
    // live 3 s, so the walk renews them, and one call is told its token expired.
    let w = World::new(WorldOptions {
        users: 300,
        departments: 40,
        events: false,
        token_lifetime_secs: 3,
        emulator_rate_scale: 0.5,
        client_rate_scale: 5.0,
        ..Default::default()
    })
    .await;
    w.sync().await.unwrap();
    w.wait_equal(Duration::from_secs(1)).await;
    w.bridge.stop().await;
}

#[tokio::test]
async fn read_api_needs_a_token_and_finds_people() {
    let w = World::new(WorldOptions {
        events: false,
        ..Default::default()
    })
    .await;
    w.sync().await.unwrap();
    let url = w
        .bridge
        .url(&format!("/api/v1/apps/{}/users", w.app.app_id));
    let r = w.bridge.http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = w
        .bridge
        .http
        .get(&url)
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let (ours, _) = w.exports().await;
    let u = &ours["users"][0];
    for id in ["open_id", "union_id", "user_id", "email"] {
        let got: Value = w
            .get(&format!("/users/{}", u[id].as_str().unwrap()))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(got["open_id"], u["open_id"], "by {id}");
    }
    let name = u["name"].as_str().unwrap();
    let found: Value = w
        .get(&format!("/users?q={}", urlencode(name)))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        found["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["open_id"] == u["open_id"]),
        "{found}"
    );
    // Members of a department, paginated.
    let dept = u["department_ids"][0].as_str().unwrap().to_string();
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page: Value = w
            .get(&format!(
                "/departments/{dept}/members?page_size=2&page_token={token}"
            ))
            .await
            .json()
            .await
            .unwrap();
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x["open_id"].as_str().unwrap().to_string()),
        );
        if page["has_more"] != true {
            break;
        }
        token = page["page_token"].as_str().unwrap().to_string();
    }
    let expected = ours["memberships"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["open_department_id"] == dept.as_str())
        .count();
    assert_eq!(seen.len(), expected);
    let tree: Value = w.get("/departments").await.json().await.unwrap();
    assert_eq!(
        tree["count"].as_u64().unwrap() as usize,
        ours["departments"].as_array().unwrap().len()
    );
    let r = w
        .bridge
        .http
        .get(w.bridge.url("/api/v1/apps/cli_ffffffffffffffff/users"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    w.bridge.stop().await;
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn full_sync_of_twenty_thousand_users_equals_the_emulator() {
    let w = World::new(WorldOptions {
        users: 20_000,
        departments: 1_000,
        events: false,
        emulator_rate_scale: 20.0,
        client_rate_scale: 20.0,
        ..Default::default()
    })
    .await;
    let started = std::time::Instant::now();
    w.sync().await.unwrap();
    eprintln!("full sync of 20,000 users took {:?}", started.elapsed());
    w.wait_equal(Duration::from_secs(1)).await;
    w.bridge.stop().await;
}
