//! The control API over HTTP, state save/load, canonical export.

use feishu_emulator::{demo, ContactScope, Emulator, State};
use serde_json::{json, Value};

use crate::helpers::TestApp;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_routes_mutate_and_export() {
    let app = TestApp::generated(30, 4, 7).await;
    let c = &app.http;
    let dept: Value = c
        .post(app.url("/_emulator/departments"))
        .json(&json!({"name": "Ops", "parent": "0"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let odid = dept["open_department_id"].as_str().unwrap().to_string();
    let r = c
        .post(app.url("/_emulator/users"))
        .json(&json!({"user_id": "ctl1", "name": "Ctl One", "department_ids": [odid]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .patch(app.url("/_emulator/users/ctl1"))
        .json(&json!({"job_title": "SRE"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .post(app.url("/_emulator/users/ctl1/freeze"))
        .json(&json!({"frozen": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .patch(app.url(&format!("/_emulator/departments/{odid}")))
        .json(&json!({"name": "Operations"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .delete(app.url("/_emulator/users/nobody"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let export: Value = c
        .get(app.url(&format!("/_emulator/apps/{}/export", demo::APP_ID)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let me = export["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["user_id"] == "ctl1")
        .unwrap();
    assert_eq!(me["job_title"], "SRE");
    assert_eq!(me["status"]["is_frozen"], true);
    assert_eq!(me["department_ids"], json!([odid]));
    let d = export["departments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["open_department_id"] == odid.as_str())
        .unwrap();
    assert_eq!(d["name"], "Operations");
    // Sorted as documented.
    let ids: Vec<&str> = export["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["open_id"].as_str().unwrap())
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);
    let r = c
        .put(app.url("/_emulator/limits"))
        .json(&json!({"rate_limit_scale": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = c
        .put(app.url("/_emulator/faults"))
        .json(&json!([{"api": "*", "type": "latency", "ms": 1, "count": 1}]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let inbox = c.get(app.url("/_emulator/inbox")).send().await.unwrap();
    assert_eq!(inbox.status(), 200);
    let log = c.get(app.url("/_emulator/push_log")).send().await.unwrap();
    assert_eq!(log.status(), 200);
    let r = c
        .post(app.url("/_emulator/generate"))
        .json(&json!({"users": 5, "departments": 1, "seed": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(app.emu.snapshot().tenants[0].users.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_matches_an_api_walk_and_respects_scope() {
    let app = TestApp::generated(300, 20, 8).await;
    let full = app.emu.export(demo::APP_ID).unwrap();
    assert_eq!(full.departments.len(), 20);
    assert_eq!(full.users.len(), 300);
    let top = full
        .departments
        .iter()
        .find(|d| d.parent_department_id == "0")
        .unwrap()
        .open_department_id
        .clone();
    app.emu
        .set_contact_scope(
            demo::APP_ID,
            ContactScope {
                all: false,
                department_ids: vec![top.clone()],
                user_ids: vec![],
            },
        )
        .unwrap();
    let part = app.emu.export(demo::APP_ID).unwrap();
    assert!(part.departments.len() < 20 && !part.departments.is_empty());
    assert!(part.users.len() < 300);
    for m in &part.memberships {
        assert!(part
            .departments
            .iter()
            .any(|d| d.open_department_id == m.open_department_id));
    }
    // The API walk through find_by_department sees exactly the exported users.
    let tok = app.tenant_token().await;
    let mut seen = std::collections::BTreeSet::new();
    for d in &part.departments {
        let mut token = String::new();
        loop {
            let (_, v) = app.get(&tok, &format!("/open-apis/contact/v3/users/find_by_department?department_id={}&page_size=50&page_token={token}", d.open_department_id)).await;
            for u in v["data"]["items"].as_array().unwrap() {
                seen.insert(u["open_id"].as_str().unwrap().to_string());
            }
            if v["data"]["has_more"] != true {
                break;
            }
            token = v["data"]["page_token"].as_str().unwrap().to_string();
        }
    }
    let exported: std::collections::BTreeSet<String> =
        part.users.iter().map(|u| u.open_id.clone()).collect();
    assert_eq!(seen, exported);
}

#[test]
fn state_round_trips_through_a_file() {
    let emu = Emulator::generate(feishu_emulator::GenerateSpec {
        users: 50,
        departments: 5,
        seed: 3,
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    emu.save(&path).unwrap();
    let loaded = State::load(&path).unwrap();
    let again = Emulator::new(loaded);
    assert_eq!(
        emu.export(demo::APP_ID).unwrap(),
        again.export(demo::APP_ID).unwrap()
    );
}

#[test]
fn incremental_index_updates_equal_a_rebuild() {
    use feishu_emulator::{NewUser, UserPatch};
    let emu = Emulator::generate(feishu_emulator::GenerateSpec {
        users: 300,
        departments: 25,
        seed: 21,
    });
    let s = emu.snapshot();
    let t = &s.tenants[0];
    let tops: Vec<String> = t
        .departments
        .values()
        .filter(|d| d.parent == "0")
        .map(|d| d.open_department_id.clone())
        .collect();
    let any: Vec<String> = t.departments.keys().cloned().collect();
    emu.set_contact_scope(
        demo::APP_ID,
        ContactScope {
            all: false,
            department_ids: vec![tops[0].clone()],
            user_ids: vec!["u0000003".into()],
        },
    )
    .unwrap();
    emu.set_availability(
        demo::APP_ID,
        ContactScope {
            all: false,
            department_ids: vec![tops[1].clone()],
            user_ids: vec![],
        },
    )
    .unwrap();
    emu.create_user(NewUser {
        user_id: Some("n1".into()),
        fields: UserPatch {
            name: Some("N".into()),
            email: Some("n1@x".into()),
            department_ids: Some(vec![any[3].clone(), tops[0].clone()]),
            ..UserPatch::default()
        },
    })
    .unwrap();
    emu.move_user("u0000010", vec![tops[0].clone(), any[7].clone()])
        .unwrap();
    emu.move_user("u0000003", vec![any[9].clone()]).unwrap();
    emu.update_user(
        "u0000011",
        UserPatch {
            email: Some("changed@x".into()),
            mobile: Some("+1".into()),
            ..UserPatch::default()
        },
    )
    .unwrap();
    emu.freeze_user("u0000012", true).unwrap();
    emu.resign_user("u0000013").unwrap();
    emu.delete_user("u0000014").unwrap();
    emu.delete_user("n1").unwrap();
    let rebuilt = Emulator::new(emu.snapshot());
    assert_eq!(emu.index_fingerprint(), rebuilt.index_fingerprint());
    assert_eq!(
        emu.export(demo::APP_ID).unwrap(),
        rebuilt.export(demo::APP_ID).unwrap()
    );
}
