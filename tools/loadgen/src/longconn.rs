//! The long-connection benchmark's Feishu: an in-process emulator serving endpoint discovery
//! and the WebSocket; once the bridge is connected (and `--go-file` exists), it pushes
//! `events` contact events over the one connection with `concurrency` awaiting their acks,
//! and reports events/s and ack latency like `webhook`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use feishu_emulator::{Emulator, GenerateSpec, Subscription};

pub struct Args {
    pub listen: String,
    pub app_id: String,
    pub app_secret: String,
    pub token: String,
    pub encrypt_key: String,
    pub events: usize,
    pub concurrency: usize,
    pub go_file: Option<String>,
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let emu = Emulator::generate(GenerateSpec {
        users: 1,
        departments: 1,
        seed: 1,
    });
    let mut app = feishu_emulator::generate::demo_app();
    app.app_id = a.app_id.clone();
    app.app_secret = a.app_secret.clone();
    app.verification_token = a.token.clone();
    app.encrypt_key = Some(a.encrypt_key.clone());
    emu.add_app(app).context("adding the app")?;
    emu.set_subscription(&a.app_id, Subscription::LongConnection);
    let _running = emu
        .start(a.listen.parse().context("--listen")?)
        .await
        .context("starting the emulator")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while emu.connections(&a.app_id) == 0
        || a.go_file
            .as_ref()
            .is_some_and(|f| !std::path::Path::new(f).exists())
    {
        anyhow::ensure!(Instant::now() < deadline, "no long connection within 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..a.events)
            .map(|i| crate::event_json(&a.app_id, &a.token, i).into_bytes())
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let cpu0 = crate::cpu_ticks();
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..a.concurrency {
        let (emu, bodies, next, app_id) =
            (emu.clone(), bodies.clone(), next.clone(), a.app_id.clone());
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0usize;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { break };
                let t = Instant::now();
                match emu.push_over_long_connection(&app_id, body).await {
                    Ok(200) => lat.push(t.elapsed()),
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut lat = Vec::with_capacity(a.events);
    let mut errors = 0;
    for w in workers {
        let (l, e) = w.await.context("worker")?;
        lat.extend(l);
        errors += e;
    }
    crate::report(
        "long_connection",
        a.events,
        errors,
        started.elapsed(),
        lat,
        cpu0,
    );
    Ok(())
}
