//! Contact v3: the visible organisation (openapi.md §4). Models keep every field Feishu may
//! send; fields appear only when the app holds the matching field scope, so all are optional.

use serde::{Deserialize, Serialize};

use super::{AppCredentials, FeishuClient, FeishuError, Page, DEFAULT_TIER, SPECIAL_TIER};

/// Page size limits (openapi.md §4.3).
pub const MAX_PAGE: u32 = 50;
pub const MAX_SCOPES_PAGE: u32 = 100;
pub const MAX_BATCH: usize = 50;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct I18nName {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zh_cn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub en_us: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ja_jp: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepartmentStatus {
    #[serde(default)]
    pub is_deleted: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepartmentLeader {
    #[serde(default, rename = "leaderType")]
    pub leader_type: Option<i64>,
    #[serde(default, rename = "leaderID")]
    pub leader_id: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Department {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub i18n_name: Option<I18nName>,
    #[serde(default)]
    pub parent_department_id: Option<String>,
    #[serde(default)]
    pub department_id: Option<String>,
    #[serde(default)]
    pub open_department_id: Option<String>,
    #[serde(default)]
    pub leader_user_id: Option<String>,
    #[serde(default)]
    pub chat_id: Option<String>,
    /// A string in the department API, an integer in department events.
    #[serde(default, deserialize_with = "int_or_string")]
    pub order: Option<i64>,
    #[serde(default)]
    pub member_count: Option<i64>,
    #[serde(default)]
    pub primary_member_count: Option<i64>,
    #[serde(default)]
    pub status: Option<DepartmentStatus>,
    #[serde(default)]
    pub leaders: Option<Vec<DepartmentLeader>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserStatus {
    #[serde(default)]
    pub is_frozen: bool,
    #[serde(default)]
    pub is_resigned: bool,
    #[serde(default)]
    pub is_activated: bool,
    #[serde(default)]
    pub is_exited: bool,
    #[serde(default)]
    pub is_unjoin: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Avatar {
    #[serde(default)]
    pub avatar_72: Option<String>,
    #[serde(default)]
    pub avatar_240: Option<String>,
    #[serde(default)]
    pub avatar_640: Option<String>,
    #[serde(default)]
    pub avatar_origin: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserOrder {
    #[serde(default)]
    pub department_id: Option<String>,
    #[serde(default)]
    pub user_order: Option<i64>,
    #[serde(default)]
    pub department_order: Option<i64>,
    #[serde(default)]
    pub is_primary_dept: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct User {
    #[serde(default)]
    pub open_id: Option<String>,
    #[serde(default)]
    pub union_id: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub en_name: Option<String>,
    #[serde(default)]
    pub nickname: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub enterprise_email: Option<String>,
    #[serde(default)]
    pub mobile: Option<String>,
    #[serde(default)]
    pub mobile_visible: Option<bool>,
    #[serde(default)]
    pub gender: Option<i64>,
    #[serde(default)]
    pub avatar: Option<Avatar>,
    #[serde(default)]
    pub status: Option<UserStatus>,
    #[serde(default)]
    pub department_ids: Option<Vec<String>>,
    #[serde(default)]
    pub leader_user_id: Option<String>,
    #[serde(default)]
    pub city: Option<String>,
    #[serde(default)]
    pub country: Option<String>,
    #[serde(default)]
    pub work_station: Option<String>,
    #[serde(default)]
    pub join_time: Option<i64>,
    #[serde(default)]
    pub is_tenant_manager: Option<bool>,
    #[serde(default)]
    pub employee_no: Option<String>,
    #[serde(default)]
    pub employee_type: Option<i64>,
    #[serde(default)]
    pub orders: Option<Vec<UserOrder>>,
    #[serde(default)]
    pub custom_attrs: Option<serde_json::Value>,
    #[serde(default)]
    pub job_title: Option<String>,
}

/// `GET /contact/v3/scopes`: what the app's contact scope lists directly.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Scopes {
    #[serde(default)]
    pub department_ids: Vec<String>,
    #[serde(default)]
    pub user_ids: Vec<String>,
    #[serde(default)]
    pub group_ids: Vec<String>,
    #[serde(default)]
    pub has_more: bool,
    #[serde(default)]
    pub page_token: Option<String>,
}

#[derive(Deserialize)]
struct OneDepartment {
    department: Department,
}

#[derive(Deserialize)]
struct OneUser {
    user: User,
}

fn paging(page_size: u32, page_token: Option<&str>) -> Vec<(&'static str, String)> {
    let mut q = vec![("page_size", page_size.to_string())];
    if let Some(t) = page_token.filter(|t| !t.is_empty()) {
        q.push(("page_token", t.to_string()));
    }
    q
}

const IDS: [(&str, &str); 2] = [
    ("department_id_type", "open_department_id"),
    ("user_id_type", "open_id"),
];

fn with_ids(mut q: Vec<(&'static str, String)>) -> Vec<(&'static str, String)> {
    q.extend(IDS.iter().map(|(k, v)| (*k, v.to_string())));
    q
}

impl FeishuClient {
    /// One page of the contact scope (open ids).
    pub async fn contact_scopes(
        &self,
        app: &AppCredentials,
        page_token: Option<&str>,
    ) -> Result<Scopes, FeishuError> {
        self.get(
            app,
            "contact.scopes",
            DEFAULT_TIER,
            "/open-apis/contact/v3/scopes",
            &with_ids(paging(MAX_SCOPES_PAGE, page_token)),
        )
        .await
    }

    /// One page of a department's children; all descendants with `fetch_child` (refused with
    /// 40162/43010 for departments with more than 500 sub-departments).
    pub async fn department_children(
        &self,
        app: &AppCredentials,
        department_id: &str,
        fetch_child: bool,
        page_token: Option<&str>,
    ) -> Result<Page<Department>, FeishuError> {
        let mut q = with_ids(paging(MAX_PAGE, page_token));
        q.push(("fetch_child", fetch_child.to_string()));
        let path = format!(
            "/open-apis/contact/v3/departments/{}/children",
            enc(department_id)
        );
        self.get(app, "contact.departments.children", DEFAULT_TIER, &path, &q)
            .await
    }

    pub async fn department(
        &self,
        app: &AppCredentials,
        department_id: &str,
    ) -> Result<Department, FeishuError> {
        let path = format!("/open-apis/contact/v3/departments/{}", enc(department_id));
        let one: OneDepartment = self
            .get(
                app,
                "contact.departments.get",
                SPECIAL_TIER,
                &path,
                &with_ids(vec![]),
            )
            .await?;
        Ok(one.department)
    }

    /// Up to 50 departments by open_department_id.
    pub async fn departments_batch(
        &self,
        app: &AppCredentials,
        ids: &[String],
    ) -> Result<Vec<Department>, FeishuError> {
        let mut q = with_ids(vec![]);
        q.extend(
            ids.iter()
                .take(MAX_BATCH)
                .map(|id| ("department_ids", id.clone())),
        );
        let page: Page<Department> = self
            .get(
                app,
                "contact.departments.batch",
                DEFAULT_TIER,
                "/open-apis/contact/v3/departments/batch",
                &q,
            )
            .await?;
        Ok(page.items)
    }

    /// One page of a department's direct members (`0` = the root).
    pub async fn users_by_department(
        &self,
        app: &AppCredentials,
        department_id: &str,
        page_token: Option<&str>,
    ) -> Result<Page<User>, FeishuError> {
        let mut q = with_ids(paging(MAX_PAGE, page_token));
        q.push(("department_id", department_id.to_string()));
        self.get(
            app,
            "contact.users.find_by_department",
            DEFAULT_TIER,
            "/open-apis/contact/v3/users/find_by_department",
            &q,
        )
        .await
    }

    pub async fn user(&self, app: &AppCredentials, open_id: &str) -> Result<User, FeishuError> {
        let path = format!("/open-apis/contact/v3/users/{}", enc(open_id));
        let one: OneUser = self
            .get(
                app,
                "contact.users.get",
                DEFAULT_TIER,
                &path,
                &with_ids(vec![]),
            )
            .await?;
        Ok(one.user)
    }

    /// Up to 50 users by open_id.
    pub async fn users_batch(
        &self,
        app: &AppCredentials,
        ids: &[String],
    ) -> Result<Vec<User>, FeishuError> {
        let mut q = with_ids(vec![]);
        q.extend(
            ids.iter()
                .take(MAX_BATCH)
                .map(|id| ("user_ids", id.clone())),
        );
        let page: Page<User> = self
            .get(
                app,
                "contact.users.batch",
                DEFAULT_TIER,
                "/open-apis/contact/v3/users/batch",
                &q,
            )
            .await?;
        Ok(page.items)
    }
}

fn int_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flex {
        Int(i64),
        Text(String),
    }
    Ok(match Option::<Flex>::deserialize(d)? {
        Some(Flex::Int(i)) => Some(i),
        Some(Flex::Text(s)) => s.trim().parse().ok(),
        None => None,
    })
}

/// Percent-encodes a path segment.
fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
