//! auth benchmarks: whole logins per second through the bridge against the emulator, next to
//! the same Feishu round trips made directly (the baseline); and access-token verifications
//! per second with `bridge_session::Verifier`, next to the bare Ed25519 signature check.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use bridge_session::{Claims, KeySource, Verifier, VerifierOptions};
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use ring::signature::{Ed25519KeyPair, KeyPair as _, UnparsedPublicKey, ED25519};
use serde_json::Value;

fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(256)
        .build()?)
}

fn location(r: &reqwest::Response) -> anyhow::Result<String> {
    Ok(r.headers()
        .get(LOCATION)
        .with_context(|| format!("no Location in a {} answer", r.status()))?
        .to_str()?
        .to_string())
}

fn cookies(r: &reqwest::Response) -> String {
    r.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .collect::<Vec<_>>()
        .join("; ")
}

/// One login through the bridge: login page, Feishu's authorize page, the callback.
async fn bridge_login(
    http: &reqwest::Client,
    bridge: &str,
    app_id: &str,
    user: &str,
) -> anyhow::Result<()> {
    let page = http
        .get(format!("{bridge}/auth/feishu/{app_id}/login?redirect=/"))
        .send()
        .await?;
    if !page.status().is_success() {
        bail!("login page: {}", page.status());
    }
    let jar = cookies(&page);
    let html = page.text().await?;
    let at = html
        .find("id=\"feishu-login\" href=\"")
        .context("no login link")?
        + 24;
    let end = at + html[at..].find('"').context("no login link end")?;
    let authorize = html[at..end].replace("&amp;", "&");
    let approved = http
        .get(format!("{authorize}&emulator_user={user}"))
        .send()
        .await?;
    let callback = location(&approved)?;
    let done = http.get(callback).header(COOKIE, jar).send().await?;
    if done.status() != reqwest::StatusCode::SEE_OTHER || !cookies(&done).contains("fb_session=") {
        bail!(
            "callback: {} {}",
            done.status(),
            done.text().await.unwrap_or_default()
        );
    }
    Ok(())
}

/// The Feishu side of a login made directly: authorize (PKCE), token, user_info, is_user_admin.
async fn direct_login(
    http: &reqwest::Client,
    emu: &str,
    app_id: &str,
    secret: &str,
    tenant_token: &str,
    redirect: &str,
    user: &str,
) -> anyhow::Result<()> {
    let verifier = format!("{:0>64}", rand_hex());
    let challenge = B64URL.encode(<sha2::Sha256 as sha2::Digest>::digest(verifier.as_bytes()));
    let mut u = url::Url::parse(&format!("{emu}/open-apis/authen/v1/authorize"))?;
    u.query_pairs_mut()
        .append_pair("client_id", app_id)
        .append_pair("response_type", "code")
        .append_pair("redirect_uri", redirect)
        .append_pair("state", "s")
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("emulator_user", user);
    let r = http.get(u).send().await?;
    let code = url::Url::parse(&location(&r)?)?
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .context("no code")?;
    let t: Value = http
        .post(format!("{emu}/open-apis/authen/v2/oauth/token"))
        .json(&serde_json::json!({"grant_type": "authorization_code", "client_id": app_id,
            "client_secret": secret, "code": code, "redirect_uri": redirect, "code_verifier": verifier}))
        .send()
        .await?
        .json()
        .await?;
    let uat = t["access_token"].as_str().context("no access_token")?;
    let info: Value = http
        .get(format!("{emu}/open-apis/authen/v1/user_info"))
        .bearer_auth(uat)
        .send()
        .await?
        .json()
        .await?;
    let open_id = info["data"]["open_id"].as_str().context("no open_id")?;
    let admin: Value = http
        .get(format!(
            "{emu}/open-apis/application/v3/is_user_admin?open_id={open_id}"
        ))
        .bearer_auth(tenant_token)
        .send()
        .await?
        .json()
        .await?;
    if admin["code"] != 0 {
        bail!("is_user_admin: {admin}");
    }
    Ok(())
}

fn rand_hex() -> String {
    let mut b = [0u8; 24];
    rand::Rng::fill(&mut rand::thread_rng(), &mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub struct LoginArgs {
    pub bridge: Option<String>,
    pub emulator: String,
    pub app_id: String,
    pub app_secret: String,
    pub users: Vec<String>,
    pub concurrency: usize,
    pub seconds: u64,
}

/// Closed-loop logins for `seconds`; prints logins/s (the line the bench script reads).
#[allow(clippy::print_stdout)]
pub async fn logins(a: LoginArgs) -> anyhow::Result<()> {
    let http = client()?;
    let tenant_token = {
        let v: Value = http
            .post(format!(
                "{}/open-apis/auth/v3/tenant_access_token/internal",
                a.emulator
            ))
            .json(&serde_json::json!({"app_id": a.app_id, "app_secret": a.app_secret}))
            .send()
            .await?
            .json()
            .await?;
        v["tenant_access_token"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let redirect = match &a.bridge {
        Some(b) => format!("{b}/auth/feishu/{}/callback", a.app_id),
        None => format!("{}/callback", a.emulator),
    };
    let done = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let users = Arc::new(a.users);
    let deadline = Instant::now() + Duration::from_secs(a.seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..a.concurrency {
        let (http, done, failed, users) =
            (http.clone(), done.clone(), failed.clone(), users.clone());
        let (bridge, emu, app_id, secret, tt, redirect) = (
            a.bridge.clone(),
            a.emulator.clone(),
            a.app_id.clone(),
            a.app_secret.clone(),
            tenant_token.clone(),
            redirect.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut i = w;
            while Instant::now() < deadline {
                let user = &users[i % users.len()];
                i += 17;
                let r = match &bridge {
                    Some(b) => bridge_login(&http, b, &app_id, user).await,
                    None => direct_login(&http, &emu, &app_id, &secret, &tt, &redirect, user).await,
                };
                match r {
                    Ok(()) => done.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        if failed.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("login failed: {e:#}");
                        }
                        0
                    }
                };
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let secs = started.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    println!(
        "{{\"mode\":\"{}\",\"logins\":{n},\"failed\":{},\"seconds\":{secs:.2},\"per_sec\":{:.1}}}",
        if a.bridge.is_some() {
            "bridge"
        } else {
            "direct"
        },
        failed.load(Ordering::Relaxed),
        n as f64 / secs
    );
    Ok(())
}

/// Verifications per second on `threads` threads: the shared helper on a real access token,
/// and the bare Ed25519 check of the same signature.
#[allow(clippy::print_stdout)]
pub async fn jwt_verify(seconds: u64, threads: usize) -> anyhow::Result<()> {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| anyhow::anyhow!("keygen"))?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| anyhow::anyhow!("key"))?;
    let public = pair.public_key().as_ref().to_vec();
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_value(serde_json::json!({"keys": [{
        "kty": "OKP", "crv": "Ed25519", "x": B64URL.encode(&public), "kid": "bench", "alg": "EdDSA", "use": "sig"}]}))?;
    let now = chrono_now();
    let claims = Claims {
        iss: "feishu-bridge".into(),
        aud: bridge_session::AUDIENCE.into(),
        sub: "ou_0123456789abcdef0123456789abcdef".into(),
        sid: "0123456789abcdef0123456789abcdef".into(),
        app_id: "cli_a5f2c9e3d8b04f17".into(),
        tenant_key: "2ed263bf32cf1651".into(),
        open_id: "ou_0123456789abcdef0123456789abcdef".into(),
        union_id: Some("on_0123456789abcdef0123456789abcdef".into()),
        name: "张三 Zhang San".into(),
        admin: false,
        iat: now,
        exp: now + 3600,
        jti: "bench".into(),
    };
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some("bench".into());
    let token = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_ed_der(pkcs8.as_ref()),
    )?;
    let verifier = Verifier::new(KeySource::Static(jwks), VerifierOptions::default());
    verifier.verify(&token).await?;
    let (signing_input, sig) = token.rsplit_once('.').context("token shape")?;
    let sig = B64URL.decode(sig)?;

    let helper = run_threads(threads, seconds, {
        let (v, t) = (verifier.clone(), token.clone());
        move || {
            let rt = tokio::runtime::Builder::new_current_thread().build().ok();
            let (v, t) = (v.clone(), t.clone());
            move || {
                rt.as_ref()
                    .map(|rt| rt.block_on(v.verify(&t)).is_ok())
                    .unwrap_or(false)
            }
        }
    });
    let raw = run_threads(threads, seconds, {
        let (input, sig, public) = (signing_input.to_string(), sig.clone(), public.clone());
        move || {
            let (input, sig, public) = (input.clone(), sig.clone(), public.clone());
            move || {
                UnparsedPublicKey::new(&ED25519, &public)
                    .verify(input.as_bytes(), &sig)
                    .is_ok()
            }
        }
    });
    println!(
        "{{\"threads\":{threads},\"helper_per_sec\":{helper:.0},\"raw_ed25519_per_sec\":{raw:.0},\"ratio\":{:.3}}}",
        helper / raw
    );
    Ok(())
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// Runs `make()`'s closure in a loop on `threads` threads for `seconds`; returns calls/s.
fn run_threads<M, F>(threads: usize, seconds: u64, make: M) -> f64
where
    M: Fn() -> F + Send + Sync + 'static,
    F: FnMut() -> bool,
{
    let make = Arc::new(make);
    let count = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (make, count) = (make.clone(), count.clone());
            std::thread::spawn(move || {
                let mut f = make();
                let mut n = 0;
                while Instant::now() < deadline {
                    for _ in 0..64 {
                        if f() {
                            n += 1;
                        }
                    }
                }
                count.fetch_add(n, Ordering::Relaxed);
            })
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
    count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}
