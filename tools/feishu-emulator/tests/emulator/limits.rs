//! Rate limits (429 + 99991400 + headers at the tier's rate) and fault injection.

use feishu_emulator::{Fault, FaultKind};

use crate::helpers::TestApp;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_answers_429_with_headers_at_the_tier() {
    let app = TestApp::generated(20, 3, 1).await;
    let tok = app.tenant_token().await;
    // 50/s scaled by 0.2 = 10 per second.
    app.emu.set_rate_limit_scale(0.2).unwrap();
    let mut ok = 0;
    let mut limited = None;
    let start = std::time::Instant::now();
    for _ in 0..30 {
        let r = app
            .http
            .get(app.url("/open-apis/contact/v3/scopes"))
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap();
        if r.status() == 429 {
            let limit = r.headers()["x-ogw-ratelimit-limit"]
                .to_str()
                .unwrap()
                .to_string();
            let reset = r.headers()["x-ogw-ratelimit-reset"]
                .to_str()
                .unwrap()
                .to_string();
            let v: serde_json::Value = r.json().await.unwrap();
            assert_eq!(v["code"], 99991400);
            limited = Some((limit, reset));
        } else {
            assert_eq!(r.status(), 200);
            ok += 1;
        }
    }
    // A full bucket of 10, plus what refilled (10/s) while the loop ran.
    let refill = (start.elapsed().as_secs_f64() * 10.0).ceil() as usize;
    assert!(
        ok >= 10 && ok <= 10 + refill,
        "ok = {ok}, refill = {refill}"
    );
    let (limit, reset) = limited.unwrap();
    assert_eq!(limit, "10");
    assert_eq!(reset, "1");
    assert!(
        app.emu.set_rate_limit_scale(0.0).is_err(),
        "limits cannot be switched off"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_by_count_and_kind() {
    let app = TestApp::generated(20, 3, 1).await;
    let tok = app.tenant_token().await;
    app.emu.set_faults(vec![
        Fault {
            api: "contact.scopes".into(),
            kind: FaultKind::Status { status: 503 },
            count: Some(1),
            share: None,
        },
        Fault {
            api: "contact.users.get".into(),
            kind: FaultKind::RateLimit,
            count: Some(1),
            share: None,
        },
        Fault {
            api: "contact.departments.get".into(),
            kind: FaultKind::Drop,
            count: Some(1),
            share: None,
        },
        Fault {
            api: "contact.departments.children".into(),
            kind: FaultKind::Latency { ms: 300 },
            count: Some(1),
            share: None,
        },
    ]);
    let (s, _) = app.get(&tok, "/open-apis/contact/v3/scopes").await;
    assert_eq!(s, 503);
    let (s, _) = app.get(&tok, "/open-apis/contact/v3/scopes").await;
    assert_eq!(s, 200, "count exhausted");
    let (s, v) = app
        .get(
            &tok,
            "/open-apis/contact/v3/users/u0000001?user_id_type=user_id",
        )
        .await;
    assert_eq!((s, v["code"].as_i64()), (429, Some(99991400)));
    let r = app
        .http
        .get(app.url("/open-apis/contact/v3/departments/0"))
        .bearer_auth(&tok)
        .send()
        .await;
    let failed = match r {
        Err(_) => true,
        Ok(resp) => resp.bytes().await.is_err(),
    };
    assert!(failed, "connection dropped");
    let start = std::time::Instant::now();
    let (s, _) = app
        .get(&tok, "/open-apis/contact/v3/departments/0/children")
        .await;
    assert_eq!(s, 200);
    assert!(start.elapsed() >= std::time::Duration::from_millis(300));
    assert!(app.emu.faults().is_empty());
}
