//! A headless Chromium driven over WebDriver (Debian's chromium and chromium-driver).

use std::process::Stdio;
use std::time::Duration;

pub struct Driver {
    child: std::process::Child,
    port: u16,
    profile: tempfile::TempDir,
}

impl Driver {
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is not installed: `make test` installs Debian's chromium and chromium-driver");
        let status = format!("http://127.0.0.1:{port}/status");
        crate::helpers::until("chromedriver is ready", Duration::from_secs(20), || async {
            match reqwest::get(&status).await {
                Ok(r) => {
                    r.json::<serde_json::Value>().await.unwrap_or_default()["value"]["ready"]
                        == true
                }
                Err(_) => false,
            }
        })
        .await;
        Self {
            child,
            port,
            profile: tempfile::tempdir().unwrap(),
        }
    }

    pub async fn client(&self) -> fantoccini::Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage",
                    format!("--user-data-dir={}", self.profile.path().display()),
                ]
            }),
        );
        // WebDriver on loopback: plain HTTP, no TLS stack needed.
        fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a Chromium session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // A test that failed before closing its session leaves Chromium running under
        // chromedriver; its processes are the ones using this driver's profile.
        let _ = std::process::Command::new("pkill")
            .args([
                "-f",
                &format!("--user-data-dir={}", self.profile.path().display()),
            ])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
