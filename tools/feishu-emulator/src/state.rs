//! The emulator's persistent world: tenants, apps, the organisation, chats and the inbox.
//!
//! Everything here is plain serde data so a state can be saved to and loaded from a JSON
//! file. Per-app identifiers (`open_id`) and the tenant-wide `union_id` are derived from the
//! stored `user_id` (see [`crate::ids`]), so they are stable across save/load and never stored.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids;

/// The whole emulated platform.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct State {
    pub tenants: Vec<Tenant>,
    #[serde(default)]
    pub settings: Settings,
}

/// Knobs that tests and benchmarks turn; all have Feishu's values by default.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Lifetime of tenant/app access tokens in seconds (Feishu: 7200).
    pub token_lifetime_secs: u64,
    /// A token is reissued when less than this many seconds remain (Feishu: 1800).
    pub token_reissue_below_secs: u64,
    /// Multiplies the event retry ladder (15 s, 5 min, 1 h, 6 h); 0.001 in tests.
    pub event_time_factor: f64,
    /// Share (0..=1) of event deliveries that are sent twice.
    pub duplicate_share: f64,
    /// Share (0..=1) of event deliveries that are held back briefly so later ones overtake.
    pub reorder_share: f64,
    /// Multiplies every rate-limit tier (1.0 = Feishu's numbers). Must be > 0.
    pub rate_limit_scale: f64,
    /// Seed of the RNG used for duplicates/reordering/fault shares.
    pub seed: u64,
    /// A batch_send job counts as scheduled (its progress non-zero) this long after the call
    /// (Feishu processes batches asynchronously; 0 = at once).
    pub batch_schedule_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            token_lifetime_secs: 7200,
            token_reissue_below_secs: 1800,
            event_time_factor: 1.0,
            duplicate_share: 0.0,
            reorder_share: 0.0,
            rate_limit_scale: 1.0,
            seed: 0,
            batch_schedule_ms: 0,
        }
    }
}

/// One Feishu tenant (企业) with its self-built apps and organisation.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Tenant {
    pub tenant_key: String,
    pub name: String,
    pub apps: Vec<App>,
    /// Keyed by `open_department_id`; the virtual root `"0"` is not stored.
    pub departments: BTreeMap<String, Department>,
    /// Keyed by the tenant-wide `user_id`.
    pub users: BTreeMap<String, User>,
    #[serde(default)]
    pub chats: BTreeMap<String, Chat>,
    #[serde(default)]
    pub inbox: Vec<InboxMessage>,
    #[serde(default)]
    pub batches: BTreeMap<String, Batch>,
}

/// A self-built app (企业自建应用) as configured in the developer console.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct App {
    pub app_id: String,
    pub app_secret: String,
    pub app_name: String,
    /// Events are encrypted and signed when set.
    pub encrypt_key: Option<String>,
    pub verification_token: String,
    /// Where events are pushed; set only after a url_verification answered.
    pub event_request_url: Option<String>,
    /// Where card callbacks (`card.action.trigger`) are sent.
    pub callback_url: Option<String>,
    /// The redirect URL allow-list (安全设置 › 重定向 URL).
    pub redirect_urls: Vec<String>,
    /// 通讯录权限范围: what contact APIs and events show.
    pub contact_scope: ContactScope,
    /// 可用范围: who can use the app and receive bot messages.
    pub availability: ContactScope,
    /// `user_id`s of the tenant admins allowed to manage this app (`is_user_admin`).
    pub admins: Vec<String>,
    pub bot_enabled: bool,
    /// API scopes granted to the app (shown by the application v6 API).
    pub scopes: Vec<String>,
    pub creator_id: Option<String>,
}

/// A contact scope or availability range.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactScope {
    /// 全部成员 (all members).
    pub all: bool,
    /// `open_department_id`s whose whole subtree is included.
    #[serde(default)]
    pub department_ids: Vec<String>,
    /// `user_id`s included individually.
    #[serde(default)]
    pub user_ids: Vec<String>,
}

impl ContactScope {
    pub fn all() -> Self {
        Self {
            all: true,
            ..Self::default()
        }
    }
}

/// i18n names of a department.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct I18nName {
    #[serde(default)]
    pub zh_cn: String,
    #[serde(default)]
    pub en_us: String,
    #[serde(default)]
    pub ja_jp: String,
}

/// A department leader (`leaderType` 1 main, 2 deputy).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leader {
    pub leader_type: i32,
    /// Tenant `user_id` of the leader.
    pub user_id: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Department {
    pub open_department_id: String,
    /// The custom department id.
    pub department_id: String,
    pub name: String,
    #[serde(default)]
    pub i18n_name: I18nName,
    /// `open_department_id` of the parent, `"0"` under the root.
    pub parent: String,
    pub order: i64,
    #[serde(default)]
    pub leaders: Vec<Leader>,
    pub chat_id: Option<String>,
}

impl Department {
    /// Tenant `user_id` of the main leader.
    pub fn leader_user_id(&self) -> Option<&str> {
        self.leaders
            .iter()
            .find(|l| l.leader_type == 1)
            .map(|l| l.user_id.as_str())
    }
}

/// `status` of a user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserStatus {
    pub is_frozen: bool,
    pub is_resigned: bool,
    pub is_activated: bool,
    pub is_exited: bool,
    pub is_unjoin: bool,
}

impl Default for UserStatus {
    fn default() -> Self {
        Self {
            is_frozen: false,
            is_resigned: false,
            is_activated: true,
            is_exited: false,
            is_unjoin: false,
        }
    }
}

/// A user's place in one department (`orders[]` in the user object).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    /// `open_department_id`, or `"0"` for a direct member of the root.
    pub department: String,
    pub user_order: i64,
    pub department_order: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub user_id: String,
    pub name: String,
    #[serde(default)]
    pub en_name: String,
    #[serde(default)]
    pub nickname: String,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub enterprise_email: String,
    #[serde(default)]
    pub mobile: String,
    #[serde(default = "yes")]
    pub mobile_visible: bool,
    /// 0 secret, 1 male, 2 female, 3 other.
    #[serde(default)]
    pub gender: i32,
    #[serde(default)]
    pub avatar_key: String,
    #[serde(default)]
    pub city: String,
    #[serde(default)]
    pub country: String,
    #[serde(default)]
    pub work_station: String,
    /// Unix seconds.
    #[serde(default)]
    pub join_time: i64,
    #[serde(default)]
    pub is_tenant_manager: bool,
    #[serde(default)]
    pub employee_no: String,
    /// 1 full-time, 2 intern, 3 outsourced, 4 labour, 5 consultant.
    #[serde(default = "one")]
    pub employee_type: i32,
    #[serde(default)]
    pub job_title: String,
    /// Tenant `user_id` of the direct manager.
    #[serde(default)]
    pub leader_user_id: Option<String>,
    /// The first entry is the primary department.
    pub departments: Vec<Membership>,
    #[serde(default)]
    pub status: UserStatus,
    #[serde(default)]
    pub job_level_id: String,
    #[serde(default)]
    pub job_family_id: String,
}

fn yes() -> bool {
    true
}

fn one() -> i32 {
    1
}

/// A group chat (or a user's p2p chat with a bot).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chat {
    pub chat_id: String,
    pub name: String,
    /// `p2p` or `group`.
    pub chat_type: String,
    /// Tenant `user_id`s of the members.
    pub members: Vec<String>,
    /// App ids of the bots in the chat.
    pub bots: Vec<String>,
}

/// A message the emulator accepted, as the recipient would see it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InboxMessage {
    pub message_id: String,
    pub app_id: String,
    /// `chat_id` of the conversation the message landed in.
    pub chat_id: String,
    /// Tenant `user_id` of the recipient for p2p messages.
    pub recipient_user_id: Option<String>,
    pub msg_type: String,
    /// The JSON string as sent.
    pub content: String,
    pub root_id: Option<String>,
    pub parent_id: Option<String>,
    pub uuid: Option<String>,
    /// ms since the epoch.
    pub create_time: i64,
    /// Set for messages from `message/v4/batch_send`.
    pub batch_id: Option<String>,
    /// Tenant `user_id` of a user who sent it (to a bot); `None` when the app's bot sent it.
    #[serde(default)]
    pub sender_user_id: Option<String>,
    /// How often the card was updated since it was sent (delayed updates).
    #[serde(default)]
    pub update_count: u32,
}

/// A `message/v4/batch_send` job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    pub batch_id: String,
    pub app_id: String,
    pub valid_user_ids_count: u64,
    pub success_user_ids_count: u64,
    pub create_time: i64,
}

impl Tenant {
    pub fn app(&self, app_id: &str) -> Option<&App> {
        self.apps.iter().find(|a| a.app_id == app_id)
    }

    pub fn app_mut(&mut self, app_id: &str) -> Option<&mut App> {
        self.apps.iter_mut().find(|a| a.app_id == app_id)
    }

    /// The `union_id` of a user of this tenant.
    pub fn union_id(&self, user_id: &str) -> String {
        ids::union_id(&self.tenant_key, user_id)
    }
}

impl State {
    /// Finds the tenant owning an app.
    pub fn tenant_of_app(&self, app_id: &str) -> Option<usize> {
        self.tenants.iter().position(|t| t.app(app_id).is_some())
    }

    pub fn to_json(&self) -> anyhow::Result<String> {
        Ok(serde_json::to_string(self)?)
    }

    pub fn from_json(s: &str) -> anyhow::Result<Self> {
        Ok(serde_json::from_str(s)?)
    }

    pub fn load(path: &std::path::Path) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let s = std::fs::read_to_string(path)
            .with_context(|| format!("reading state {}", path.display()))?;
        Self::from_json(&s).with_context(|| format!("parsing state {}", path.display()))
    }

    pub fn save(&self, path: &std::path::Path) -> anyhow::Result<()> {
        use anyhow::Context as _;
        std::fs::write(path, self.to_json()?)
            .with_context(|| format!("writing state {}", path.display()))
    }
}
