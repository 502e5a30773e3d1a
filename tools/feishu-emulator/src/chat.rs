//! Users acting in chats (the control API's simulation side): a user messages the bot, a
//! user @-mentions it in a group, a user clicks a card button; plus the inbox.

use serde_json::{json, Value};

use crate::emulator::Emulator;
use crate::error::EmulatorError;
use crate::ids;
use crate::state::{Chat, InboxMessage};

/// The p2p chat id between a user and an app's bot (stable).
pub fn p2p_chat_id(app_id: &str, user_id: &str) -> String {
    let open = ids::open_id(app_id, &format!("p2p:{user_id}"));
    format!("oc_{}", &open[3..])
}

/// The bot's own open_id, as mentions show it.
pub fn bot_open_id(app_id: &str) -> String {
    ids::open_id(app_id, &format!("bot:{app_id}"))
}

impl Emulator {
    /// Every message sent so far (by bots and by simulated users), in order.
    pub fn inbox(&self) -> Vec<InboxMessage> {
        let w = self.read();
        w.state
            .tenants
            .iter()
            .flat_map(|t| t.inbox.iter().cloned())
            .collect()
    }

    /// A user sends `text` to the app's bot in their p2p chat (im.message.receive_v1).
    pub fn user_messages_bot(
        &self,
        app_id: &str,
        user_id: &str,
        text: &str,
    ) -> Result<String, EmulatorError> {
        let chat_id = p2p_chat_id(app_id, user_id);
        self.user_says(
            app_id,
            user_id,
            &chat_id,
            "p2p",
            json!({"text": text}),
            vec![],
        )
    }

    /// A user @-mentions the app's bot in a group chat the bot is in.
    pub fn user_mentions_bot(
        &self,
        app_id: &str,
        chat_id: &str,
        user_id: &str,
        text: &str,
    ) -> Result<String, EmulatorError> {
        let (app_name, tenant_key) = {
            let w = self.read();
            let t = w
                .state
                .tenants
                .iter()
                .find(|t| t.app(app_id).is_some())
                .ok_or_else(|| EmulatorError::NotFound(format!("app {app_id}")))?;
            let chat = t
                .chats
                .get(chat_id)
                .ok_or_else(|| EmulatorError::NotFound(format!("chat {chat_id}")))?;
            if !chat.bots.iter().any(|b| b == app_id) {
                return Err(EmulatorError::Invalid("the bot is not in this chat".into()));
            }
            (
                t.app(app_id)
                    .map(|a| a.app_name.clone())
                    .unwrap_or_default(),
                t.tenant_key.clone(),
            )
        };
        let mentions = vec![json!({
            "key": "@_user_1",
            "id": {"union_id": "", "user_id": "", "open_id": bot_open_id(app_id)},
            "mentioned_type": "bot",
            "name": app_name,
            "tenant_key": tenant_key,
        })];
        self.user_says(
            app_id,
            user_id,
            chat_id,
            "group",
            json!({"text": format!("@_user_1 {text}")}),
            mentions,
        )
    }

    fn user_says(
        &self,
        app_id: &str,
        user_id: &str,
        chat_id: &str,
        chat_type: &str,
        content: Value,
        mentions: Vec<Value>,
    ) -> Result<String, EmulatorError> {
        let now = self.clock().now_ms();
        let message_id = ids::message_id(&mut rand::thread_rng());
        let event = {
            let mut w = self.write();
            let t = w
                .state
                .tenants
                .iter_mut()
                .find(|t| t.app(app_id).is_some())
                .ok_or_else(|| EmulatorError::NotFound(format!("app {app_id}")))?;
            if !t.users.contains_key(user_id) {
                return Err(EmulatorError::NotFound(format!("user {user_id}")));
            }
            if chat_type == "p2p" && !t.chats.contains_key(chat_id) {
                t.chats.insert(
                    chat_id.to_string(),
                    Chat {
                        chat_id: chat_id.to_string(),
                        name: String::new(),
                        chat_type: "p2p".into(),
                        members: vec![user_id.to_string()],
                        bots: vec![app_id.to_string()],
                    },
                );
            }
            t.inbox.push(InboxMessage {
                message_id: message_id.clone(),
                app_id: app_id.to_string(),
                chat_id: chat_id.to_string(),
                recipient_user_id: None,
                msg_type: "text".into(),
                content: content.to_string(),
                root_id: None,
                parent_id: None,
                uuid: None,
                create_time: now,
                batch_id: None,
                sender_user_id: Some(user_id.to_string()),
                update_count: 0,
            });
            json!({
                "sender": {
                    "sender_id": {
                        "union_id": t.union_id(user_id),
                        "user_id": user_id,
                        "open_id": ids::open_id(app_id, user_id),
                    },
                    "sender_type": "user",
                    "tenant_key": t.tenant_key,
                },
                "message": {
                    "message_id": message_id,
                    "create_time": now.to_string(),
                    "update_time": now.to_string(),
                    "chat_id": chat_id,
                    "chat_type": chat_type,
                    "message_type": "text",
                    "content": content.to_string(),
                    "mentions": mentions,
                },
            })
        };
        self.emit(app_id, "im.message.receive_v1", event);
        Ok(message_id)
    }

    /// A user clicks a button with `value` on a card message the app sent; the callback
    /// (card.action.trigger) is delivered synchronously and its answer returned.
    pub async fn click_card(
        &self,
        app_id: &str,
        user_id: &str,
        message_id: &str,
        value: Value,
    ) -> Result<Value, EmulatorError> {
        let token = format!("c-{}", ids::random_hex(&mut rand::thread_rng(), 40));
        let event = {
            let w = self.read();
            let t = w
                .state
                .tenants
                .iter()
                .find(|t| t.app(app_id).is_some())
                .ok_or_else(|| EmulatorError::NotFound(format!("app {app_id}")))?;
            let msg = t
                .inbox
                .iter()
                .find(|m| m.message_id == message_id && m.app_id == app_id)
                .ok_or_else(|| EmulatorError::NotFound(format!("message {message_id}")))?;
            if !t.users.contains_key(user_id) {
                return Err(EmulatorError::NotFound(format!("user {user_id}")));
            }
            json!({
                "operator": {
                    "tenant_key": t.tenant_key,
                    "user_id": user_id,
                    "open_id": ids::open_id(app_id, user_id),
                    "union_id": t.union_id(user_id),
                },
                "token": token,
                "action": {"value": value, "tag": "button", "timezone": "Asia/Shanghai", "name": "button"},
                "host": "im_message",
                "context": {"open_message_id": message_id, "open_chat_id": msg.chat_id},
            })
        };
        // The token allows two delayed updates of this card within 30 minutes (events.md §6.2).
        let expires_ms = self.clock().now_ms() + 30 * 60 * 1000;
        self.rt().card_tokens.insert(
            token,
            crate::runtime::CardToken {
                app_id: app_id.to_string(),
                message_id: message_id.to_string(),
                expires_ms,
                uses_left: 2,
            },
        );
        self.send_callback(app_id, "card.action.trigger", event)
            .await
    }
}

impl Emulator {
    /// A user adds the app's bot to group chat `chat_id` (created with `name` if it does not
    /// exist; the user becomes a member): `im.chat.member.bot.added_v1`.
    pub fn add_bot_to_chat(
        &self,
        app_id: &str,
        chat_id: &str,
        operator_user_id: &str,
        name: &str,
    ) -> Result<(), EmulatorError> {
        let event = {
            let mut w = self.write();
            let t = w
                .state
                .tenants
                .iter_mut()
                .find(|t| t.app(app_id).is_some())
                .ok_or_else(|| EmulatorError::NotFound(format!("app {app_id}")))?;
            if !t.users.contains_key(operator_user_id) {
                return Err(EmulatorError::NotFound(format!("user {operator_user_id}")));
            }
            let chat = t.chats.entry(chat_id.to_string()).or_insert_with(|| Chat {
                chat_id: chat_id.to_string(),
                name: name.to_string(),
                chat_type: "group".into(),
                members: vec![],
                bots: vec![],
            });
            if chat.chat_type != "group" {
                return Err(EmulatorError::Invalid(
                    "a bot is added to group chats only".into(),
                ));
            }
            if !chat.members.iter().any(|m| m == operator_user_id) {
                chat.members.push(operator_user_id.to_string());
            }
            if !chat.bots.iter().any(|b| b == app_id) {
                chat.bots.push(app_id.to_string());
            }
            let chat_name = chat.name.clone();
            json!({
                "chat_id": chat_id,
                "operator_id": {
                    "union_id": t.union_id(operator_user_id),
                    "user_id": operator_user_id,
                    "open_id": ids::open_id(app_id, operator_user_id),
                },
                "external": false,
                "operator_tenant_key": t.tenant_key,
                "name": chat_name,
                "i18n_names": {"zh_cn": chat_name, "en_us": chat_name, "ja_jp": ""},
            })
        };
        self.emit(app_id, "im.chat.member.bot.added_v1", event);
        Ok(())
    }
}
