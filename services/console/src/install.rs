//! "安装飞书初始化" (install / initialise): check the credentials, the granted scopes, the
//! contact range and the bot, then start the full sync and follow it. Every step is recorded
//! with its state and, when it fails, what to do in Feishu's console, in Chinese and English.
//! Running it again after fixing something is the seed's "confirm the initialisation result".

use std::collections::HashSet;
use std::time::Duration;

use bridge_bus::{Message, Props};
use bridge_contracts::topology::DIRECTORY_COMMANDS;
use bridge_contracts::v1::{directory_command, DirectoryCommand, FullSync};
use bridge_contracts::PROTOBUF_CONTENT_TYPE;
use bridge_feishu::api::FeishuError;
use bridge_store::entity::{console_install_run, sync_run};
use chrono::Utc;
use prost::Message as _;
use sea_orm::{ActiveModelTrait, EntityTrait, Set};
use serde::Serialize;
use serde_json::{json, Value};

use crate::setup::SCOPES;
use crate::Inner;

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub name: &'static str,
    /// `pending`, `running`, `ok`, `failed`, `skipped`.
    pub state: &'static str,
    pub detail: Value,
}

fn say(zh: impl Into<String>, en: impl Into<String>) -> Value {
    json!({"zh": zh.into(), "en": en.into()})
}

const STEPS: &[&str] = &["credentials", "scopes", "contact_range", "bot", "sync"];

/// Starts a run; returns its id at once.
pub async fn start(
    inner: std::sync::Arc<Inner>,
    app_id: String,
    actor: String,
) -> Result<String, sea_orm::DbErr> {
    let id = uuid::Uuid::new_v4().to_string();
    let steps: Vec<Step> = STEPS
        .iter()
        .map(|n| Step {
            name: n,
            state: "pending",
            detail: Value::Null,
        })
        .collect();
    console_install_run::ActiveModel {
        id: Set(id.clone()),
        app_id: Set(app_id.clone()),
        actor: Set(actor),
        started_at: Set(Utc::now()),
        finished_at: Set(None),
        status: Set("running".into()),
        steps: Set(serde_json::to_string(&steps).unwrap_or_default()),
        sync_run_id: Set(None),
    }
    .insert(&inner.db)
    .await?;
    let run = id.clone();
    tokio::spawn(async move {
        let mut r = Run {
            inner,
            id: run,
            app_id,
            steps,
            sync_run_id: None,
        };
        let ok = r.execute().await;
        r.save(Some(if ok { "succeeded" } else { "failed" })).await;
    });
    Ok(id)
}

struct Run {
    inner: std::sync::Arc<Inner>,
    id: String,
    app_id: String,
    steps: Vec<Step>,
    sync_run_id: Option<String>,
}

fn feishu_detail(e: &FeishuError) -> Value {
    say(
        format!("飞书返回错误：{e}"),
        format!("Feishu answered: {e}"),
    )
}

impl Run {
    async fn save(&self, finished: Option<&str>) {
        let am = console_install_run::ActiveModel {
            id: Set(self.id.clone()),
            steps: Set(serde_json::to_string(&self.steps).unwrap_or_default()),
            sync_run_id: Set(self.sync_run_id.clone()),
            status: Set(finished.unwrap_or("running").to_string()),
            finished_at: Set(finished.map(|_| Utc::now())),
            ..Default::default()
        };
        if let Err(e) = am.update(&self.inner.db).await {
            tracing::warn!(error = %e, run = %self.id, "cannot record an install step");
        }
    }

    async fn set(&mut self, i: usize, state: &'static str, detail: Value) {
        self.steps[i].state = state;
        self.steps[i].detail = detail;
        self.save(None).await;
    }

    async fn execute(&mut self) -> bool {
        let Some(creds) = self.inner.credentials(&self.app_id) else {
            self.set(
                0,
                "failed",
                say(
                    "绑定不存在或已停用：先在控制台启用绑定。",
                    "The binding is missing or disabled: enable it in the console first.",
                ),
            )
            .await;
            return self.skip_rest(1).await;
        };
        // 1. Credentials.
        self.set(0, "running", Value::Null).await;
        match self.inner.client.tenant_token(&creds).await {
            Ok(_) => {
                self.set(
                    0,
                    "ok",
                    say(
                        "App ID 与 App Secret 正确。",
                        "App ID and App Secret are correct.",
                    ),
                )
                .await
            }
            Err(FeishuError::Credentials { code, .. }) => {
                self.set(0, "failed", json!({
                    "zh": format!("App ID 或 App Secret 不正确（飞书错误码 {code}）：在开发者后台 › 凭证与基础信息 复制正确的值，并确认应用已启用。"),
                    "en": format!("App ID or App Secret is wrong (Feishu code {code}): copy them again from Developer console › Credentials & basic info, and check the app is enabled."),
                    "code": code,
                })).await;
                return self.skip_rest(1).await;
            }
            Err(e) => {
                self.set(0, "failed", feishu_detail(&e)).await;
                return self.skip_rest(1).await;
            }
        }
        let mut all_ok = true;
        // 2. Scopes.
        self.set(1, "running", Value::Null).await;
        match self.inner.client.app_info(&creds).await {
            Ok(info) => {
                let granted: HashSet<&str> = info.scopes.iter().map(|s| s.scope.as_str()).collect();
                let missing: Vec<Value> = SCOPES
                    .iter()
                    .filter(|(s, _, _)| !granted.contains(s))
                    .map(|(s, zh, en)| json!({"scope": s, "zh": zh, "en": en}))
                    .collect();
                if missing.is_empty() {
                    self.set(
                        1,
                        "ok",
                        say(
                            "所需权限均已开通。",
                            "Every scope the platform needs is granted.",
                        ),
                    )
                    .await;
                } else {
                    all_ok = false;
                    let names: Vec<String> = missing
                        .iter()
                        .filter_map(|m| m["scope"].as_str().map(String::from))
                        .collect();
                    self.set(1, "failed", json!({
                        "zh": format!("缺少权限：{}。在开发者后台 › 权限管理 开通它们，然后创建版本并发布。", names.join("、")),
                        "en": format!("Missing scopes: {}. Enable them in Developer console › Permissions & scopes, then create and publish a version.", names.join(", ")),
                        "missing": missing,
                    })).await;
                }
            }
            Err(e) => {
                all_ok = false;
                self.set(1, "failed", feishu_detail(&e)).await;
            }
        }
        // 3. Contact range.
        self.set(2, "running", Value::Null).await;
        match self.inner.client.contacts_range(&creds).await {
            Ok(r) => {
                let v = &r.visible_list;
                let empty = r.contacts_scope_type != "all"
                    && v.open_ids.is_empty()
                    && v.department_ids.is_empty()
                    && v.group_ids.is_empty();
                if empty {
                    all_ok = false;
                    self.set(2, "failed", say(
                        "通讯录权限范围为空：在开发者后台 › 权限管理 › 通讯录权限范围 选择要同步的部门或成员，然后发布版本。",
                        "The contact range is empty: choose the departments or members to sync in Developer console › Permissions & scopes › Contacts range, then publish a version.",
                    )).await;
                } else if r.contacts_scope_type == "all" {
                    self.set(
                        2,
                        "ok",
                        say("通讯录权限范围：全部成员。", "Contact range: all members."),
                    )
                    .await;
                } else {
                    let (d, u) = (v.department_ids.len(), v.open_ids.len());
                    self.set(
                        2,
                        "ok",
                        say(
                            format!("通讯录权限范围：{d} 个部门、{u} 名成员。"),
                            format!("Contact range: {d} departments and {u} members."),
                        ),
                    )
                    .await;
                }
            }
            Err(e) => {
                all_ok = false;
                self.set(2, "failed", feishu_detail(&e)).await;
            }
        }
        // 4. Bot.
        self.set(3, "running", Value::Null).await;
        match self.inner.client.bot_info(&creds).await {
            Ok(b) if b.activate_status == 2 => {
                self.set(3, "ok", say("机器人已启用。", "The bot is enabled."))
                    .await;
            }
            Ok(b) => {
                all_ok = false;
                self.set(3, "failed", json!({
                    "zh": format!("机器人未启用（状态 {}）：发布包含机器人能力的版本，并请管理员审核通过。", b.activate_status),
                    "en": format!("The bot is not active (status {}): publish a version with the bot feature and have an admin approve it.", b.activate_status),
                })).await;
            }
            Err(e) => {
                all_ok = false;
                let mut d = say(
                    "机器人能力未开启：在开发者后台 › 应用能力 › 机器人 开启，然后创建版本并发布。",
                    "The bot feature is off: enable it in Developer console › Features › Bot, then create and publish a version.",
                );
                d["feishu"] = json!(e.to_string());
                self.set(3, "failed", d).await;
            }
        }
        if !all_ok {
            self.set(
                4,
                "skipped",
                say(
                    "先修正上面的问题，再重新初始化。",
                    "Fix the steps above, then run the initialisation again.",
                ),
            )
            .await;
            return false;
        }
        // 5. The full sync, through directory-sync's command queue.
        self.set(4, "running", Value::Null).await;
        let run_id = uuid::Uuid::new_v4().to_string();
        self.sync_run_id = Some(run_id.clone());
        let cmd = DirectoryCommand {
            app_id: self.app_id.clone(),
            command: Some(directory_command::Command::FullSync(FullSync {
                trigger: "install".into(),
                force: false,
                run_id: run_id.clone(),
            })),
        };
        let msg = Message {
            exchange: DIRECTORY_COMMANDS.into(),
            routing_key: self.app_id.clone(),
            body: bytes::Bytes::from(cmd.encode_to_vec()),
            props: Props {
                message_id: format!("install:{}", self.id),
                content_type: PROTOBUF_CONTENT_TYPE.into(),
                type_name: DirectoryCommand::FULL_NAME.into(),
                timestamp_ms: Utc::now().timestamp_millis(),
                headers: vec![(
                    "traceparent".into(),
                    bridge_runtime::telemetry::current_traceparent(),
                )],
            },
        };
        if let Err(e) = self.inner.bus.publish(&msg).await {
            self.set(
                4,
                "failed",
                say(
                    format!("无法发送同步命令：{e}"),
                    format!("Cannot send the sync command: {e}"),
                ),
            )
            .await;
            return false;
        }
        self.save(None).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3600);
        loop {
            match sync_run::Entity::find_by_id(run_id.clone())
                .one(&self.inner.db)
                .await
            {
                Ok(Some(r)) if r.status != "running" => {
                    let counts = r
                        .counts
                        .as_deref()
                        .and_then(|c| serde_json::from_str::<Value>(c).ok());
                    if r.status == "succeeded" {
                        let mut d = say("组织架构已同步。", "The organisation is synced.");
                        d["counts"] = counts.unwrap_or(Value::Null);
                        self.set(4, "ok", d).await;
                        return true;
                    }
                    let err = r.error.unwrap_or_default();
                    let mut d = say(
                        format!("同步失败（{}）：{err}", r.status),
                        format!("The sync {}: {err}", r.status),
                    );
                    d["counts"] = counts.unwrap_or(Value::Null);
                    self.set(4, "failed", d).await;
                    return false;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot read the sync run"),
            }
            if tokio::time::Instant::now() > deadline {
                self.set(
                    4,
                    "failed",
                    say(
                        "同步在一小时内没有结束；查看同步记录。",
                        "The sync did not finish within an hour; see the sync history.",
                    ),
                )
                .await;
                return false;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn skip_rest(&mut self, from: usize) -> bool {
        for i in from..self.steps.len() {
            self.steps[i].state = "skipped";
        }
        self.save(None).await;
        false
    }
}

pub fn run_json(r: &console_install_run::Model) -> Value {
    json!({
        "run_id": r.id,
        "app_id": r.app_id,
        "actor": r.actor,
        "status": r.status,
        "started_at": r.started_at,
        "finished_at": r.finished_at,
        "sync_run_id": r.sync_run_id,
        "steps": serde_json::from_str::<Value>(&r.steps).unwrap_or(Value::Null),
    })
}
