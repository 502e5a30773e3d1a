//! contact v3: shapes, pagination walks, limits, id types, scope filtering.

use std::collections::{HashMap, HashSet};

use feishu_emulator::ContactScope;
use serde_json::Value;

use crate::helpers::TestApp;

async fn get_ok(app: &TestApp, tok: &str, pq: &str) -> Value {
    let (s, v) = app.get(tok, pq).await;
    assert_eq!((s, v["code"].as_i64()), (200, Some(0)), "{pq}: {v}");
    assert_eq!(v["msg"], "success");
    v["data"].clone()
}

/// Walks a paginated list, returning all items.
async fn walk(app: &TestApp, tok: &str, path: &str, key: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let pq = match &token {
            Some(t) => format!("{path}{sep}page_size=50&page_token={t}"),
            None => format!("{path}{sep}page_size=50"),
        };
        let d = get_ok(app, tok, &pq).await;
        out.extend(d[key].as_array().cloned().unwrap_or_default());
        if d["has_more"] == true {
            token = Some(d["page_token"].as_str().unwrap().to_string());
        } else {
            assert!(d.get("page_token").is_none() || d["page_token"] == "");
            break;
        }
    }
    out
}

/// Full sync the way directory-sync does it: BFS over children, then members of each.
async fn full_walk(app: &TestApp, tok: &str) -> (Vec<String>, Vec<String>) {
    let mut depts = Vec::new();
    let mut queue = vec!["0".to_string()];
    while let Some(d) = queue.pop() {
        for item in walk(
            app,
            tok,
            &format!("/open-apis/contact/v3/departments/{d}/children"),
            "items",
        )
        .await
        {
            let id = item["open_department_id"].as_str().unwrap().to_string();
            depts.push(id.clone());
            queue.push(id);
        }
    }
    let mut users = Vec::new();
    for d in depts.iter().chain(std::iter::once(&"0".to_string())) {
        for u in walk(
            app,
            tok,
            &format!("/open-apis/contact/v3/users/find_by_department?department_id={d}"),
            "items",
        )
        .await
        {
            users.push(u["open_id"].as_str().unwrap().to_string());
        }
    }
    (depts, users)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walk_visits_every_department_and_membership_once() {
    let app = TestApp::generated(1500, 80, 42).await;
    let tok = app.tenant_token().await;
    let (depts, users) = full_walk(&app, &tok).await;
    let state = app.emu.snapshot();
    let t = &state.tenants[0];
    assert_eq!(depts.len(), t.departments.len());
    assert_eq!(
        depts.iter().collect::<HashSet<_>>().len(),
        depts.len(),
        "no department twice"
    );
    // Each user appears once per department membership.
    let memberships: usize = t
        .users
        .values()
        .filter(|u| !u.status.is_resigned)
        .map(|u| u.departments.len())
        .sum();
    assert_eq!(users.len(), memberships);
    let distinct: HashSet<_> = users.iter().collect();
    assert_eq!(distinct.len(), t.users.len());
    for u in &users {
        assert!(u.starts_with("ou_") && u.len() == 35);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_shapes_match_the_notes() {
    let app = TestApp::generated(200, 12, 3).await;
    let tok = app.tenant_token().await;
    let d = get_ok(
        &app,
        &tok,
        "/open-apis/contact/v3/departments/0/children?page_size=1",
    )
    .await;
    assert_eq!(d["has_more"], true);
    let dep = &d["items"][0];
    for k in [
        "name",
        "i18n_name",
        "parent_department_id",
        "department_id",
        "open_department_id",
        "order",
        "member_count",
        "primary_member_count",
        "status",
        "leaders",
    ] {
        assert!(dep.get(k).is_some(), "department lacks {k}: {dep}");
    }
    assert_eq!(dep["parent_department_id"], "0");
    assert!(dep["open_department_id"]
        .as_str()
        .unwrap()
        .starts_with("od-"));
    assert!(dep["order"].is_string());
    let odid = dep["open_department_id"].as_str().unwrap();
    let got = get_ok(
        &app,
        &tok,
        &format!("/open-apis/contact/v3/departments/{odid}"),
    )
    .await;
    assert_eq!(&got["department"], dep);
    // department_id_type=department_id: custom ids in and out.
    let custom = dep["department_id"].as_str().unwrap();
    let got = get_ok(
        &app,
        &tok,
        &format!("/open-apis/contact/v3/departments/{custom}?department_id_type=department_id"),
    )
    .await;
    assert_eq!(got["department"]["open_department_id"], odid);
    let users = get_ok(
        &app,
        &tok,
        &format!(
            "/open-apis/contact/v3/users/find_by_department?department_id={odid}&page_size=50"
        ),
    )
    .await;
    let u = &users["items"][0];
    for k in [
        "union_id",
        "user_id",
        "open_id",
        "name",
        "en_name",
        "email",
        "mobile",
        "gender",
        "avatar",
        "status",
        "department_ids",
        "city",
        "country",
        "join_time",
        "employee_no",
        "employee_type",
        "orders",
        "enterprise_email",
        "job_title",
        "is_tenant_manager",
    ] {
        assert!(u.get(k).is_some(), "user lacks {k}: {u}");
    }
    assert!(u["union_id"].as_str().unwrap().starts_with("on_"));
    for k in [
        "is_frozen",
        "is_resigned",
        "is_activated",
        "is_exited",
        "is_unjoin",
    ] {
        assert!(u["status"][k].is_boolean());
    }
    let open_id = u["open_id"].as_str().unwrap();
    let user_id = u["user_id"].as_str().unwrap();
    let g = get_ok(
        &app,
        &tok,
        &format!("/open-apis/contact/v3/users/{open_id}"),
    )
    .await;
    assert_eq!(&g["user"], u);
    let g = get_ok(
        &app,
        &tok,
        &format!("/open-apis/contact/v3/users/{user_id}?user_id_type=user_id"),
    )
    .await;
    assert_eq!(g["user"]["open_id"], open_id);
    let b = get_ok(
        &app,
        &tok,
        &format!("/open-apis/contact/v3/users/batch?user_ids={open_id}&user_ids={open_id}"),
    )
    .await;
    assert_eq!(b["items"].as_array().unwrap().len(), 2);
    let b = get_ok(
        &app,
        &tok,
        &format!("/open-apis/contact/v3/departments/batch?department_ids={odid}"),
    )
    .await;
    assert_eq!(b["items"][0]["open_department_id"], odid);
    let s = get_ok(&app, &tok, "/open-apis/contact/v3/scopes").await;
    assert_eq!(s["department_ids"].as_array().unwrap().len(), 12);
    assert!(s["user_ids"].is_array() && s["group_ids"].is_array());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_and_errors() {
    let app = TestApp::generated(100, 600, 5).await;
    let tok = app.tenant_token().await;
    let (s, v) = app
        .get(
            &tok,
            "/open-apis/contact/v3/departments/0/children?page_size=51",
        )
        .await;
    assert_eq!((s, v["code"].as_i64()), (400, Some(99992402)));
    let (s, v) = app
        .get(
            &tok,
            "/open-apis/contact/v3/departments/0/children?fetch_child=true",
        )
        .await;
    assert_eq!((s, v["code"].as_i64()), (400, Some(40162)), "{v}");
    let (s, v) = app
        .get(
            &tok,
            "/open-apis/contact/v3/departments/0/children?page_token=garbage",
        )
        .await;
    assert_eq!((s, v["code"].as_i64()), (400, Some(40012)));
    let ids: String = (0..51).map(|i| format!("user_ids=u{i:07}&")).collect();
    let (s, v) = app
        .get(
            &tok,
            &format!("/open-apis/contact/v3/users/batch?{ids}user_id_type=user_id"),
        )
        .await;
    assert_eq!((s, v["code"].as_i64()), (400, Some(99992402)));
    let (s, v) = app
        .get(&tok, "/open-apis/contact/v3/departments/od-doesnotexist")
        .await;
    assert_eq!((s, v["code"].as_i64()), (403, Some(40004)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parent_chain_and_fetch_child() {
    let app = TestApp::generated(50, 40, 9).await;
    let tok = app.tenant_token().await;
    let state = app.emu.snapshot();
    let t = &state.tenants[0];
    let deep = t
        .departments
        .values()
        .max_by_key(|d| {
            let mut n = 0;
            let mut cur = d.parent.clone();
            while cur != "0" {
                n += 1;
                cur = t.departments[&cur].parent.clone();
            }
            n
        })
        .unwrap();
    let chain = walk(
        &app,
        &tok,
        &format!(
            "/open-apis/contact/v3/departments/parent?department_id={}",
            deep.open_department_id
        ),
        "items",
    )
    .await;
    assert!(!chain.is_empty());
    assert_eq!(chain[0]["open_department_id"], deep.parent);
    assert_eq!(chain.last().unwrap()["parent_department_id"], "0");
    let all = walk(
        &app,
        &tok,
        "/open-apis/contact/v3/departments/0/children?fetch_child=true",
        "items",
    )
    .await;
    assert_eq!(all.len(), 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contact_scope_filters_everything() {
    let app = TestApp::generated(400, 30, 11).await;
    let state = app.emu.snapshot();
    let t = &state.tenants[0];
    let top: Vec<String> = t
        .departments
        .values()
        .filter(|d| d.parent == "0")
        .map(|d| d.open_department_id.clone())
        .collect();
    let chosen = top[0].clone();
    let outsider = t
        .users
        .values()
        .find(|u| u.departments.iter().all(|m| m.department != chosen))
        .unwrap()
        .user_id
        .clone();
    app.emu
        .set_contact_scope(
            feishu_emulator::demo::APP_ID,
            ContactScope {
                all: false,
                department_ids: vec![chosen.clone()],
                user_ids: vec![outsider.clone()],
            },
        )
        .unwrap();
    let tok = app.tenant_token().await;
    let (s, v) = app
        .get(&tok, "/open-apis/contact/v3/departments/0/children")
        .await;
    assert_eq!((s, v["code"].as_i64()), (403, Some(40004)));
    let scopes = get_ok(
        &app,
        &tok,
        "/open-apis/contact/v3/scopes?user_id_type=user_id",
    )
    .await;
    assert_eq!(scopes["department_ids"], serde_json::json!([chosen]));
    assert_eq!(scopes["user_ids"], serde_json::json!([outsider]));
    // Everything under the chosen department is visible, nothing else.
    let mut seen = HashMap::new();
    let mut queue = vec![chosen.clone()];
    seen.insert(chosen.clone(), ());
    while let Some(d) = queue.pop() {
        for item in walk(
            &app,
            &tok,
            &format!("/open-apis/contact/v3/departments/{d}/children"),
            "items",
        )
        .await
        {
            let id = item["open_department_id"].as_str().unwrap().to_string();
            seen.insert(id.clone(), ());
            queue.push(id);
        }
    }
    let other = top.iter().find(|d| **d != chosen).unwrap();
    let (s, v) = app
        .get(
            &tok,
            &format!("/open-apis/contact/v3/users/find_by_department?department_id={other}"),
        )
        .await;
    assert_eq!((s, v["code"].as_i64()), (403, Some(40004)));
    let (_, v) = app
        .get(
            &tok,
            &format!("/open-apis/contact/v3/users/{outsider}?user_id_type=user_id"),
        )
        .await;
    assert_eq!(v["code"], 0, "directly listed user is visible");
    let hidden = t
        .users
        .values()
        .find(|u| {
            u.user_id != outsider
                && u.departments
                    .iter()
                    .all(|m| !seen.contains_key(&m.department))
        })
        .unwrap();
    let (s, v) = app
        .get(
            &tok,
            &format!(
                "/open-apis/contact/v3/users/{}?user_id_type=user_id",
                hidden.user_id
            ),
        )
        .await;
    assert_eq!((s, v["code"].as_i64()), (403, Some(41050)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_get_id_by_email_and_mobile() {
    let app = TestApp::generated(30, 3, 12).await;
    let tok = app.tenant_token().await;
    let u = app.emu.snapshot().tenants[0].users["u0000007"].clone();
    let body =
        serde_json::json!({"emails": [u.email, "nobody@example.com"], "mobiles": [u.mobile]});
    let (s, v) = app
        .post(&tok, "/open-apis/contact/v3/users/batch_get_id", &body)
        .await;
    assert_eq!((s, v["code"].as_i64()), (200, Some(0)), "{v}");
    let list = v["data"]["user_list"].as_array().unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!(
        list[0]["user_id"],
        app.emu.open_id(feishu_emulator::demo::APP_ID, "u0000007")
    );
    assert!(list[1].get("user_id").is_none());
    assert_eq!(list[2]["mobile"], u.mobile.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_scopes_gate_user_fields() {
    let app = TestApp::generated(10, 2, 13).await;
    let scopes: Vec<String> = feishu_emulator::generate::default_scopes()
        .into_iter()
        .filter(|s| s != "contact:user.employee_id:readonly" && s != "contact:user.phone:readonly")
        .collect();
    app.emu
        .patch_app(
            feishu_emulator::demo::APP_ID,
            feishu_emulator::control::AppPatch {
                scopes: Some(scopes),
                ..Default::default()
            },
        )
        .unwrap();
    let tok = app.tenant_token().await;
    let open = app.emu.open_id(feishu_emulator::demo::APP_ID, "u0000001");
    let u = get_ok(&app, &tok, &format!("/open-apis/contact/v3/users/{open}")).await;
    assert!(u["user"].get("user_id").is_none());
    assert!(u["user"].get("mobile").is_none());
    assert!(u["user"]["email"].is_string());
}
