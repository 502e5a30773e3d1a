//! User login (openapi.md §5): the authorization code (with PKCE) exchanged at
//! `authen/v2/oauth/token`, and the user's identity from `authen/v1/user_info`.

use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::{AppCredentials, Auth, FeishuClient, FeishuError, Shape, DEFAULT_TIER, SPECIAL_TIER};

/// What the token endpoint answers (flat, not inside `data`).
#[derive(Debug, Clone, Deserialize)]
pub struct UserToken {
    pub access_token: String,
    #[serde(default)]
    pub expires_in: i64,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub scope: String,
    #[serde(default)]
    pub token_type: String,
}

/// `authen/v1/user_info`: who the user access token belongs to. Key a login on `open_id`
/// (or `union_id`) and `tenant_key`; email and mobile are unverified (§5.6).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct UserInfo {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub en_name: String,
    #[serde(default)]
    pub avatar_url: String,
    pub open_id: String,
    #[serde(default)]
    pub union_id: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub enterprise_email: Option<String>,
    #[serde(default)]
    pub tenant_key: String,
}

#[derive(Serialize)]
struct CodeGrant<'a> {
    grant_type: &'static str,
    client_id: &'a str,
    client_secret: &'a str,
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    redirect_uri: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code_verifier: Option<&'a str>,
}

/// Token-endpoint codes that mean "this code cannot be used": not found, expired, used,
/// another app's (§5.3). The login has to start again.
pub const CODE_REFUSED: &[i64] = &[20003, 20004, 20024, 20065];
/// PKCE verification failed.
pub const PKCE_FAILED: i64 = 20049;
/// The user may not use the app, or the user's status does not allow it.
pub const USER_REFUSED: &[i64] = &[20008, 20010, 20066];

impl FeishuClient {
    /// Exchanges an authorization code for a user access token. `redirect_uri` must be the
    /// one the authorize URL carried, `code_verifier` the PKCE verifier of the login.
    pub async fn exchange_code(
        &self,
        app: &AppCredentials,
        code: &str,
        redirect_uri: Option<&str>,
        code_verifier: Option<&str>,
    ) -> Result<UserToken, FeishuError> {
        use secrecy::ExposeSecret;
        let body = CodeGrant {
            grant_type: "authorization_code",
            client_id: &app.app_id,
            client_secret: app.app_secret.expose_secret(),
            code,
            redirect_uri,
            code_verifier,
        };
        self.call(
            app,
            "authen.v2.oauth.token",
            DEFAULT_TIER,
            (Auth::Anonymous, Shape::Flat, super::Repeat::Safe),
            Method::POST,
            "/open-apis/authen/v2/oauth/token",
            &[],
            Some(&body),
        )
        .await
    }

    /// The identity behind a user access token.
    pub async fn user_info(
        &self,
        app: &AppCredentials,
        user_access_token: &str,
    ) -> Result<UserInfo, FeishuError> {
        self.call::<(), UserInfo>(
            app,
            "authen.v1.user_info",
            SPECIAL_TIER,
            (
                Auth::User(user_access_token),
                Shape::Data,
                super::Repeat::Safe,
            ),
            Method::GET,
            "/open-apis/authen/v1/user_info",
            &[],
            None,
        )
        .await
    }
}
