//! Benchmarks (ignored by default; run in release):
//! `cargo test -p feishu-emulator --release -- --ignored bench --nocapture --test-threads 1`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use feishu_emulator::{demo, Emulator, GenerateSpec};
use serde_json::json;

use crate::helpers::TestApp;

#[test]
#[ignore]
fn bench_generate_100k_users() {
    let start = Instant::now();
    let emu = Emulator::generate(GenerateSpec {
        users: 100_000,
        departments: 5_000,
        seed: 1,
    });
    let took = start.elapsed();
    let s = emu.snapshot();
    assert_eq!(s.tenants[0].users.len(), 100_000);
    assert_eq!(s.tenants[0].departments.len(), 5_000);
    let export_start = Instant::now();
    let e = emu.export(demo::APP_ID).unwrap();
    let export_took = export_start.elapsed();
    let m = Instant::now();
    emu.update_user(
        "u0000001",
        feishu_emulator::UserPatch {
            city: Some("Dali".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let user_mutation = m.elapsed();
    let d = s.tenants[0].departments.keys().next().unwrap().clone();
    let m = Instant::now();
    emu.rename_department(&d, "Renamed").unwrap();
    println!(
        "generate 100k users / 5k departments (with indexes): {took:.2?}; export {} users: {export_took:.2?}; user mutation: {user_mutation:.2?}; department mutation (full reindex): {:.2?}",
        e.users.len(),
        m.elapsed()
    );
}

/// Runs `workers` concurrent loops of `call` for `secs`, returning requests/s.
async fn hammer<F, Fut>(workers: usize, secs: u64, call: F) -> f64
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let done = Arc::new(AtomicU64::new(0));
    let call = Arc::new(call);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (done, call) = (done.clone(), call.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = w as u64;
            while Instant::now() < deadline {
                assert!(call(i).await);
                done.fetch_add(1, Ordering::Relaxed);
                i += workers as u64;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / secs as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_serving_rate() {
    let app = TestApp::with(Emulator::generate(GenerateSpec {
        users: 100_000,
        departments: 5_000,
        seed: 1,
    }))
    .await;
    app.emu.set_rate_limit_scale(1_000_000.0).unwrap();
    let tok = app.tenant_token().await;
    let depts: Arc<Vec<String>> = Arc::new(
        app.emu.snapshot().tenants[0]
            .departments
            .keys()
            .cloned()
            .collect(),
    );
    let base = app.server.base_url();
    let http = app.http.clone();
    let (b, t, d, h) = (base.clone(), tok.clone(), depts.clone(), http.clone());
    let find = hammer(16, 5, move |i| {
        let url = format!(
            "{b}/open-apis/contact/v3/users/find_by_department?department_id={}&page_size=50",
            d[i as usize % d.len()]
        );
        let (h, t) = (h.clone(), t.clone());
        async move {
            h.get(url)
                .bearer_auth(t)
                .send()
                .await
                .map(|r| r.status() == 200)
                .unwrap_or(false)
        }
    })
    .await;
    let (b, t, h) = (base.clone(), tok.clone(), http.clone());
    let user_get = hammer(16, 5, move |i| {
        let url = format!(
            "{b}/open-apis/contact/v3/users/u{:07}?user_id_type=user_id",
            i % 100_000
        );
        let (h, t) = (h.clone(), t.clone());
        async move {
            h.get(url)
                .bearer_auth(t)
                .send()
                .await
                .map(|r| r.status() == 200)
                .unwrap_or(false)
        }
    })
    .await;
    let (b, t, h) = (base.clone(), tok.clone(), http.clone());
    let send = hammer(16, 5, move |i| {
        let url = format!("{b}/open-apis/im/v1/messages?receive_id_type=user_id");
        let body = json!({"receive_id": format!("u{:07}", i % 100_000), "msg_type": "text", "content": json!({"text": "bench"}).to_string()});
        let (h, t) = (h.clone(), t.clone());
        async move { match h.post(url).bearer_auth(t).json(&body).send().await { Ok(r) if r.status() == 200 => r.bytes().await.is_ok(), _ => false } }
    })
    .await;
    println!("find_by_department (page_size 50): {find:.0} req/s");
    println!("users/:id: {user_get:.0} req/s");
    println!("im/v1/messages: {send:.0} req/s");
}
