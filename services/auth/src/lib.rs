//! auth: logs people in with Feishu (the QR code on the login page, or a code from inside the
//! Feishu client), checks them against the synced directory, and issues sessions: a short
//! EdDSA access token (JWT) every service verifies offline against `/.well-known/jwks.json`,
//! and an opaque refresh token stored hashed, rotated on use, whose reuse revokes the session.
//! Logins and logouts are published to `auth.events`.

mod api;
mod error;
mod events;
pub mod keys;
mod login;
mod page;
mod sessions;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use bridge_bus::Bus;
use bridge_feishu::api::{AppCredentials, FeishuClient};
use bridge_runtime::settings::AuthSettings;
use bridge_runtime::{Mount, Shutdown};
use bridge_session::Verifier;
use bridge_store::{AppRegistry, Domain, MasterKey};
use sea_orm::DatabaseConnection;
use tokio::task::JoinHandle;
use url::Url;

pub use sessions::Issued;

/// What auth needs from the process.
pub struct Deps {
    pub db: DatabaseConnection,
    pub bus: Bus,
    pub apps: AppRegistry,
    pub client: FeishuClient,
    pub master_key: MasterKey,
    pub settings: AuthSettings,
    /// `feishu.base_url` (the emulator), which also stands in for the accounts host and CDN.
    pub feishu_base: Option<Url>,
    /// `public_base_url`: the callback URL registered in Feishu's redirect list.
    pub public_base_url: Option<Url>,
    /// The process's session verifier (revocations made here take effect in it at once).
    pub verifier: Verifier,
}

pub(crate) struct Inner {
    pub db: DatabaseConnection,
    pub bus: Bus,
    pub apps: AppRegistry,
    pub client: FeishuClient,
    pub master_key: MasterKey,
    pub settings: AuthSettings,
    pub feishu_base: Option<Url>,
    pub public_base_url: Option<Url>,
    pub verifier: Verifier,
    pub signing: RwLock<keys::SigningKey>,
    /// HMAC key of the login-state cookies.
    pub cookie_key: [u8; 32],
}

/// The auth service. Cheap to clone.
#[derive(Clone)]
pub struct Auth {
    inner: Arc<Inner>,
}

impl Inner {
    pub fn credentials(&self, app_id: &str) -> Option<AppCredentials> {
        bridge_directory_sync::credentials(&self.apps, self.feishu_base.as_ref(), app_id)
    }

    /// Feishu's accounts host for the app (the authorize page).
    pub fn authorize_base(&self, domain: Domain) -> String {
        let base = match (&self.settings.authorize_base, &self.feishu_base, domain) {
            (Some(u), _, _) | (None, Some(u), _) => u.as_str().to_string(),
            (None, None, Domain::Feishu) => "https://accounts.feishu.cn".into(),
            (None, None, Domain::Lark) => "https://accounts.larksuite.com".into(),
        };
        base.trim_end_matches('/').to_string()
    }

    /// The QR-login SDK script for the app's platform.
    pub fn qr_sdk_url(&self, domain: Domain) -> String {
        const PATH: &str = "/obj/feishu-static/lark/passport/qrcode/LarkSSOSDKWebQRCode-1.0.3.js";
        match (&self.settings.qr_sdk_url, &self.feishu_base, domain) {
            (Some(u), _, _) => u.to_string(),
            (None, Some(u), _) => format!("{}{PATH}", u.as_str().trim_end_matches('/')),
            (None, None, Domain::Feishu) => format!("https://lf-package-cn.feishucdn.com{PATH}"),
            (None, None, Domain::Lark) => "https://lf-package-va.larksuitecdn.com/obj/lark-static-us/lark/passport/qrcode/LarkSSOSDKWebQRCode-1.0.3.js".into(),
        }
    }

    pub fn cookie_secure(&self) -> bool {
        self.settings.cookie_secure.unwrap_or_else(|| {
            self.public_base_url
                .as_ref()
                .is_some_and(|u| u.scheme() == "https")
        })
    }

    pub fn signing_key(&self) -> keys::SigningKey {
        match self.signing.read() {
            Ok(k) => k.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// How long retired keys stay published: every token they signed has expired by then.
    pub fn key_grace(&self) -> Duration {
        self.settings.access_ttl + Duration::from_secs(5 * 60)
    }
}

impl Auth {
    /// Loads (or creates) the signing key.
    pub async fn new(d: Deps) -> anyhow::Result<Self> {
        let signing = keys::ensure(&d.db, &d.master_key).await?;
        let cookie_key = d.master_key.derive("auth login-state cookie");
        Ok(Self {
            inner: Arc::new(Inner {
                db: d.db,
                bus: d.bus,
                apps: d.apps,
                client: d.client,
                master_key: d.master_key,
                settings: d.settings,
                feishu_base: d.feishu_base,
                public_base_url: d.public_base_url,
                verifier: d.verifier,
                signing: RwLock::new(signing),
                cookie_key,
            }),
        })
    }

    /// Mounts `/auth/...` and `/.well-known/jwks.json`.
    pub fn mount(&self) -> Mount {
        api::mount(self.inner.clone())
    }

    /// Picks up a rotated signing key, and deletes finished login states and used refresh
    /// tokens of ended sessions.
    pub fn start(&self, shutdown: Shutdown) -> Vec<JoinHandle<()>> {
        let inner = self.inner.clone();
        vec![tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut n = 0u64;
            loop {
                tokio::select! {
                    _ = shutdown.wait() => return,
                    _ = tick.tick() => {}
                }
                match keys::active(&inner.db, &inner.master_key).await {
                    Ok(Some(k)) => {
                        if let Ok(mut s) = inner.signing.write() {
                            if s.kid != k.kid {
                                tracing::info!(kid = %k.kid, "signing with the rotated key");
                                *s = k;
                            }
                        }
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot reload the signing key"),
                }
                n += 1;
                if n % 60 == 1 {
                    if let Err(e) = sessions::purge(&inner).await {
                        tracing::warn!(error = %e, "cannot purge old login states");
                    }
                }
            }
        })]
    }

    /// Picks up a rotated key now (tests; the background task does it every 10 s).
    pub async fn reload_key(&self) -> anyhow::Result<()> {
        if let Some(k) = keys::active(&self.inner.db, &self.inner.master_key).await? {
            if let Ok(mut s) = self.inner.signing.write() {
                *s = k;
            }
        }
        Ok(())
    }
}

/// `feishu-bridge rotate-signing-key`: a new key signs from now on; the previous ones stay
/// published until the tokens they signed expired, then are deleted.
pub async fn rotate_signing_key(
    db: &DatabaseConnection,
    mk: &MasterKey,
    settings: &AuthSettings,
) -> anyhow::Result<String> {
    keys::rotate(db, mk, settings.access_ttl + Duration::from_secs(5 * 60)).await
}
