//! The setup checklist: every value the operator pastes into Feishu's developer console for a
//! binding, the permission scopes the app needs, the events to subscribe, the bot capability.

use actix_web::HttpRequest;
use serde_json::{json, Value};

use crate::Inner;

/// The scopes the platform needs (the seed's list), with what each is for.
pub const SCOPES: &[(&str, &str, &str)] = &[
    (
        "contact:user.email:readonly",
        "获取用户邮箱信息",
        "read users' email",
    ),
    (
        "contact:user.phone:readonly",
        "获取用户手机号",
        "read users' mobile numbers",
    ),
    (
        "contact:user.employee_id:readonly",
        "获取用户 user ID",
        "read users' user ID",
    ),
    (
        "contact:contact.base:readonly",
        "获取通讯录基本信息",
        "read basic contact information",
    ),
    (
        "contact:department.organize:readonly",
        "获取通讯录部门组织架构信息",
        "read the department organisation",
    ),
    (
        "contact:contact:readonly_as_app",
        "以应用身份读取通讯录",
        "read contacts as the app",
    ),
    (
        "im:message:send_as_bot",
        "以应用的身份发消息",
        "send messages as the app",
    ),
    (
        "im:message:send_multi_users",
        "给多个用户批量发消息",
        "batch-send to users",
    ),
    (
        "im:message:send_multi_depts",
        "给一个或多个部门的成员批量发消息",
        "batch-send to departments",
    ),
    (
        "im:message",
        "获取与发送单聊、群组消息",
        "read and send single and group chat messages",
    ),
    (
        "im:message.p2p_msg:readonly",
        "读取用户发给机器人的单聊消息",
        "receive direct messages to the bot",
    ),
    (
        "im:message.group_at_msg:readonly",
        "获取群组中所有@机器人消息",
        "receive group messages that @-mention the bot",
    ),
    (
        "admin:app.admin:check",
        "校验用户是否为应用管理员",
        "check whether a user is an app admin",
    ),
];

/// The events to subscribe to (事件订阅).
pub const EVENTS: &[(&str, &str, &str)] = &[
    ("contact.user.created_v3", "员工入职", "user created"),
    ("contact.user.updated_v3", "员工信息被修改", "user updated"),
    ("contact.user.deleted_v3", "员工离职", "user deleted"),
    (
        "contact.department.created_v3",
        "部门新建",
        "department created",
    ),
    (
        "contact.department.updated_v3",
        "部门信息被修改",
        "department updated",
    ),
    (
        "contact.department.deleted_v3",
        "部门被删除",
        "department deleted",
    ),
    (
        "contact.scope.updated_v3",
        "通讯录权限范围变更",
        "contact scope changed",
    ),
    ("im.message.receive_v1", "接收消息", "message received"),
    (
        "im.chat.member.bot.added_v1",
        "机器人进群",
        "bot added to a group",
    ),
];

fn join(base: &str, path: &str) -> String {
    if path.starts_with('/') {
        format!("{base}{path}")
    } else {
        format!("{base}/{path}")
    }
}

pub fn checklist(inner: &Inner, req: &HttpRequest, app_id: &str) -> Value {
    let (base, configured) =
        bridge_runtime::server::public_base(inner.public_base_url.as_ref(), req);
    let item = |key: &str, zh: &str, en: &str, where_zh: &str, where_en: &str, value: String| json!({"key": key, "label": {"zh": zh, "en": en}, "where": {"zh": where_zh, "en": where_en}, "value": value});
    json!({
        "app_id": app_id,
        "base_url": base,
        "base_url_configured": configured,
        "warning": (!configured).then(|| json!({
            "zh": "未设置 public_base_url：以下地址取自本次请求的主机名，请确认飞书能访问它。",
            "en": "public_base_url is not set: these URLs use this request's host; make sure Feishu can reach it.",
        })),
        "urls": [
            item("event_request_url", "事件请求地址", "Event request URL",
                "开发配置 › 事件与回调 › 事件配置 › 请求地址", "Development › Events & callbacks › Event configuration › Request URL",
                join(&base, &format!("/feishu/{app_id}/events"))),
            item("card_callback_url", "卡片回调地址", "Card callback URL",
                "开发配置 › 事件与回调 › 回调配置 › 请求地址", "Development › Events & callbacks › Callback configuration › Request URL",
                join(&base, &format!("/feishu/{app_id}/callbacks"))),
            item("desktop_home", "网页应用桌面端主页", "Web app desktop home page",
                "应用能力 › 网页应用 › 桌面端主页", "Features › Web app › Desktop home page",
                join(&base, &inner.settings.desktop_home_path)),
            item("mobile_home", "网页应用移动端主页", "Web app mobile home page",
                "应用能力 › 网页应用 › 移动端主页", "Features › Web app › Mobile home page",
                join(&base, &inner.settings.mobile_home_path)),
            item("redirect_url", "重定向 URL", "Redirect URL",
                "开发配置 › 安全设置 › 重定向 URL", "Development › Security settings › Redirect URLs",
                join(&base, &format!("/auth/feishu/{app_id}/callback"))),
            item("admin_home", "管理后台主页", "Admin home page",
                "应用能力 › 网页应用 › 管理后台主页", "Features › Web app › Admin home page",
                join(&base, "/console")),
        ],
        "scopes": SCOPES.iter().map(|(s, zh, en)| json!({"scope": s, "label": {"zh": zh, "en": en}})).collect::<Vec<_>>(),
        "events": EVENTS.iter().map(|(e, zh, en)| json!({"event": e, "label": {"zh": zh, "en": en}})).collect::<Vec<_>>(),
        "bot": {
            "zh": "应用能力 › 添加应用能力 › 机器人：开启机器人能力，并创建版本、发布。",
            "en": "Features › Add features › Bot: enable the bot, then create and publish a version.",
        },
    })
}
