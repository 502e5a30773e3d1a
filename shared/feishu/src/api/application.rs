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
