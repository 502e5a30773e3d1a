//! The application APIs (openapi.md §6): is this user an admin of the app.

use serde::Deserialize;

use super::{AppCredentials, FeishuClient, FeishuError, DEFAULT_TIER};

#[derive(Deserialize)]
struct IsAdmin {
    #[serde(default)]
    is_app_admin: bool,
}

impl FeishuClient {
    /// `application/v3/is_user_admin`: whether the user (by open_id) administers the app in
    /// the tenant's admin console. Needs `admin:app.admin:check` or `:readonly`.
    pub async fn is_user_admin(
        &self,
        app: &AppCredentials,
        open_id: &str,
    ) -> Result<bool, FeishuError> {
        let r: IsAdmin = self
            .get(
                app,
                "application.is_user_admin",
                DEFAULT_TIER,
                "/open-apis/application/v3/is_user_admin",
                &[("open_id", open_id.to_string())],
            )
            .await?;
        Ok(r.is_app_admin)
    }
}

/// `application/v6/applications/:app_id` (what the install check reads of it).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AppInfo {
    #[serde(default)]
    pub app_id: String,
    #[serde(default)]
    pub app_name: String,
    #[serde(default)]
    pub redirect_urls: Vec<String>,
    #[serde(default)]
    pub scopes: Vec<AppScope>,
    #[serde(default)]
    pub online_version_id: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct AppScope {
    pub scope: String,
}

#[derive(Deserialize)]
struct AppEnvelope {
    app: AppInfo,
}

/// The contact range in force (`contacts_range_configuration`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ContactsRange {
    /// `all` or `some`.
    #[serde(default)]
    pub contacts_scope_type: String,
    #[serde(default)]
    pub visible_list: VisibleList,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct VisibleList {
    #[serde(default, alias = "user_ids")]
    pub open_ids: Vec<String>,
    #[serde(default)]
    pub department_ids: Vec<String>,
    #[serde(default)]
    pub group_ids: Vec<String>,
}

#[derive(Deserialize)]
struct RangeEnvelope {
    #[serde(default)]
    contacts_range: ContactsRange,
}

/// `bot/v3/info`: the bot of the app (answered only when the bot capability is on).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BotInfo {
    /// 2 = enabled in the tenant (0 waiting for install, 1 stopped, 3/4 waiting for enable...).
    #[serde(default)]
    pub activate_status: i64,
    #[serde(default)]
    pub app_name: String,
    #[serde(default)]
    pub open_id: String,
}

#[derive(Deserialize)]
struct BotEnvelope {
    bot: BotInfo,
}

impl FeishuClient {
    /// The app's own record: granted scopes, redirect URLs, published version.
    pub async fn app_info(&self, app: &AppCredentials) -> Result<AppInfo, FeishuError> {
        let path = format!("/open-apis/application/v6/applications/{}", app.app_id);
        let r: AppEnvelope = self
            .get(
                app,
                "application.applications.get",
                DEFAULT_TIER,
                &path,
                &[("lang", "zh_cn".to_string())],
            )
            .await?;
        Ok(r.app)
    }

    /// The contact range in force (first page: enough to tell "all" from a list).
    pub async fn contacts_range(&self, app: &AppCredentials) -> Result<ContactsRange, FeishuError> {
        let path = format!(
            "/open-apis/application/v6/applications/{}/contacts_range_configuration",
            app.app_id
        );
        let r: RangeEnvelope = self
            .get(
                app,
                "application.contacts_range_configuration",
                DEFAULT_TIER,
                &path,
                &[("page_size", "100".to_string())],
            )
            .await?;
        Ok(r.contacts_range)
    }

    /// The app's bot; an error when the bot capability is off.
    pub async fn bot_info(&self, app: &AppCredentials) -> Result<BotInfo, FeishuError> {
        let r: BotEnvelope = self
            .call::<(), BotEnvelope>(
                app,
                "bot.info",
                DEFAULT_TIER,
                (super::Auth::Tenant, super::Shape::Flat),
                reqwest::Method::GET,
                "/open-apis/bot/v3/info",
                &[],
                None,
            )
            .await?;
        Ok(r.bot)
    }
}
