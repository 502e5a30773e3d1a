//! App bindings: the Feishu apps this deployment serves. Secrets are sealed under the master
//! key in the database; the registry keeps the decrypted bindings in memory and reloads them
//! when the table changes, so a binding edited elsewhere is noticed within `refresh`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use sea_orm::{ActiveModelTrait, DatabaseConnection, EntityTrait, QuerySelect, Set};
use secrecy::{ExposeSecret, SecretString};

use crate::entity::app_binding;
use crate::secrets::{MasterKey, SecretError};

/// Which Feishu the app lives on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    /// open.feishu.cn
    Feishu,
    /// open.larksuite.com
    Lark,
}

impl Domain {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "feishu" => Some(Self::Feishu),
            "lark" => Some(Self::Lark),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Feishu => "feishu",
            Self::Lark => "lark",
        }
    }
}

/// How Feishu delivers the app's events to us: pushed to the webhook, over the long
/// connection (WebSocket) the ingress dials, or both (during a switch-over).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Delivery {
    #[default]
    Webhook,
    LongConnection,
    Both,
}

impl Delivery {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "webhook" => Some(Self::Webhook),
            "long_connection" => Some(Self::LongConnection),
            "both" => Some(Self::Both),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::LongConnection => "long_connection",
            Self::Both => "both",
        }
    }

    /// Whether the ingress keeps a long connection for the app.
    pub fn long_connection(self) -> bool {
        matches!(self, Self::LongConnection | Self::Both)
    }
}

/// A binding with its secrets decrypted. `Debug` redacts the secrets.
#[derive(Debug, Clone)]
pub struct AppBinding {
    pub app_id: String,
    pub app_secret: SecretString,
    pub encrypt_key: Option<SecretString>,
    pub verification_token: SecretString,
    pub team_name: String,
    pub domain: Domain,
    pub enabled: bool,
    pub qr_login_enabled: bool,
    pub delivery: Delivery,
    pub updated_at: DateTime<Utc>,
}

/// What creating or replacing a binding takes.
#[derive(Debug, Clone)]
pub struct BindingInput {
    pub app_id: String,
    pub app_secret: SecretString,
    pub encrypt_key: Option<SecretString>,
    pub verification_token: SecretString,
    pub team_name: String,
    pub domain: Domain,
    pub enabled: bool,
    pub qr_login_enabled: bool,
    pub delivery: Delivery,
}

fn ctx(column: &str, app_id: &str) -> String {
    format!("app_bindings.{column}:{app_id}")
}

fn decode(key: &MasterKey, m: app_binding::Model) -> Result<AppBinding, SecretError> {
    let encrypt_key = match &m.encrypt_key {
        Some(s) => Some(key.open(s, &ctx("encrypt_key", &m.app_id))?),
        None => None,
    };
    Ok(AppBinding {
        app_secret: key.open(&m.app_secret, &ctx("app_secret", &m.app_id))?,
        verification_token: key
            .open(&m.verification_token, &ctx("verification_token", &m.app_id))?,
        encrypt_key,
        domain: Domain::parse(&m.domain).unwrap_or(Domain::Feishu),
        team_name: m.team_name,
        enabled: m.enabled,
        qr_login_enabled: m.qr_login_enabled,
        delivery: Delivery::parse(&m.delivery).unwrap_or_default(),
        updated_at: m.updated_at,
        app_id: m.app_id,
    })
}

type Snapshot = HashMap<String, Arc<AppBinding>>;
/// (app_id, updated_at) of every row: what changes when any binding does.
type Fingerprint = Vec<(String, DateTime<Utc>)>;

/// The cached lookup of bindings.
#[derive(Clone)]
pub struct AppRegistry {
    db: DatabaseConnection,
    key: MasterKey,
    current: Arc<ArcSwap<Snapshot>>,
    fingerprint: Arc<tokio::sync::Mutex<Fingerprint>>,
}

impl AppRegistry {
    /// Loads every binding (a wrong master key fails here, clearly).
    pub async fn load(db: DatabaseConnection, key: MasterKey) -> Result<Self, SecretError> {
        let this = Self {
            db,
            key,
            current: Arc::new(ArcSwap::from_pointee(HashMap::new())),
            fingerprint: Arc::new(tokio::sync::Mutex::new(Vec::new())),
        };
        this.reload().await?;
        Ok(this)
    }

    /// The database the bindings live in (shared with the services' own tables).
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// The binding for `app_id`, if any (enabled or not).
    pub fn get(&self, app_id: &str) -> Option<Arc<AppBinding>> {
        self.current.load().get(app_id).cloned()
    }

    pub fn all(&self) -> Vec<Arc<AppBinding>> {
        let mut v: Vec<_> = self.current.load().values().cloned().collect();
        v.sort_by(|a, b| a.app_id.cmp(&b.app_id));
        v
    }

    /// Reloads when the table changed since the last load; returns whether it did.
    pub async fn refresh(&self) -> Result<bool, SecretError> {
        let mut fp = self.fingerprint.lock().await;
        let now = self.read_fingerprint().await?;
        if *fp == now {
            return Ok(false);
        }
        let models = app_binding::Entity::find().all(&self.db).await?;
        let mut map = HashMap::with_capacity(models.len());
        for m in models {
            let b = decode(&self.key, m)?;
            map.insert(b.app_id.clone(), Arc::new(b));
        }
        self.current.store(Arc::new(map));
        *fp = now;
        Ok(true)
    }

    async fn reload(&self) -> Result<(), SecretError> {
        self.fingerprint.lock().await.clear();
        self.refresh().await.map(|_| ())
    }

    async fn read_fingerprint(&self) -> Result<Fingerprint, SecretError> {
        let mut rows: Fingerprint = app_binding::Entity::find()
            .select_only()
            .column(app_binding::Column::AppId)
            .column(app_binding::Column::UpdatedAt)
            .into_tuple()
            .all(&self.db)
            .await?;
        rows.sort();
        Ok(rows)
    }

    /// Polls for changes every `every` until `stop` resolves.
    pub fn spawn_refresher(
        &self,
        every: Duration,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            tokio::pin!(stop);
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = &mut stop => break,
                    _ = tick.tick() => {
                        match this.refresh().await {
                            Ok(true) => tracing::info!(apps = this.current.load().len(), "app bindings reloaded"),
                            Ok(false) => {}
                            Err(e) => tracing::warn!(error = %e, "app bindings refresh failed"),
                        }
                    }
                }
            }
        })
    }

    /// Creates or replaces a binding, then reloads. Returns whether anything changed.
    pub async fn upsert(&self, input: &BindingInput) -> Result<bool, SecretError> {
        let existing = app_binding::Entity::find_by_id(input.app_id.clone())
            .one(&self.db)
            .await?;
        let now = Utc::now();
        if let Some(m) = &existing {
            let old = decode(&self.key, m.clone())?;
            let same = old.app_secret.expose_secret() == input.app_secret.expose_secret()
                && old
                    .encrypt_key
                    .as_ref()
                    .map(|s| s.expose_secret().to_string())
                    == input
                        .encrypt_key
                        .as_ref()
                        .map(|s| s.expose_secret().to_string())
                && old.verification_token.expose_secret()
                    == input.verification_token.expose_secret()
                && old.team_name == input.team_name
                && old.domain == input.domain
                && old.enabled == input.enabled
                && old.qr_login_enabled == input.qr_login_enabled
                && old.delivery == input.delivery;
            if same {
                return Ok(false);
            }
        }
        let id = &input.app_id;
        let am = app_binding::ActiveModel {
            app_id: Set(id.clone()),
            app_secret: Set(self
                .key
                .seal(input.app_secret.expose_secret(), &ctx("app_secret", id))),
            encrypt_key: Set(input
                .encrypt_key
                .as_ref()
                .filter(|k| !k.expose_secret().is_empty())
                .map(|k| self.key.seal(k.expose_secret(), &ctx("encrypt_key", id)))),
            verification_token: Set(self.key.seal(
                input.verification_token.expose_secret(),
                &ctx("verification_token", id),
            )),
            team_name: Set(input.team_name.clone()),
            domain: Set(input.domain.as_str().to_string()),
            enabled: Set(input.enabled),
            qr_login_enabled: Set(input.qr_login_enabled),
            delivery: Set(input.delivery.as_str().to_string()),
            created_at: Set(existing.as_ref().map(|m| m.created_at).unwrap_or(now)),
            updated_at: Set(now),
        };
        if existing.is_some() {
            am.update(&self.db).await?;
        } else {
            am.insert(&self.db).await?;
        }
        self.refresh().await?;
        Ok(true)
    }

    /// Removes a binding, then reloads.
    pub async fn delete(&self, app_id: &str) -> Result<bool, SecretError> {
        let r = app_binding::Entity::delete_by_id(app_id.to_string())
            .exec(&self.db)
            .await?;
        self.refresh().await?;
        Ok(r.rows_affected > 0)
    }
}
