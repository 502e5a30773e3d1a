//! Messaging as the bot (openapi.md §7): send (`im/v1/messages`), reply, `message/v4/batch_send`,
//! batch progress, and the card delayed update (events.md §6.3).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{AppCredentials, FeishuClient, FeishuError, DEFAULT_TIER};

/// API names (for limits, metrics and errors).
pub const SEND: &str = "im.messages.create";
pub const REPLY: &str = "im.messages.reply";
pub const BATCH_SEND: &str = "message.batch_send";
pub const BATCH_PROGRESS: &str = "im.batch_messages.get_progress";
pub const CARD_UPDATE: &str = "interactive.card.update";

/// Most ids in one list of a batch_send (openapi.md §7.4).
pub const BATCH_MAX_IDS: usize = 200;
/// Longest `uuid` Feishu takes; a uuid sends at most once within an hour.
pub const UUID_MAX: usize = 50;
/// Size limits of the serialised `content` (openapi.md §7.1).
pub const TEXT_MAX_BYTES: usize = 150 * 1024;
pub const CARD_MAX_BYTES: usize = 30 * 1024;

/// Codes that are final for one recipient: retrying cannot help (openapi.md §7.1, §3.2).
pub const PERMANENT_RECIPIENT_CODES: &[i64] = &[
    230001, // invalid parameter, incl. a receive_id that does not exist
    230002, // bot not in the chat
    230006, // bot ability not activated
    230013, // bot has no availability to this user
    230015, 230017, 230018, 230019, 230022, 230025, 230027, 230028, 230029, // user resigned
    230034, // receive_id invalid
    230035, 230038, 230053, // user stopped the bot from messaging
    230099, // card content failed
    232009, // chat dissolved
    99992351, 99992361, // open_id does not exist / belongs to another app
    99992402, // parameter validation failed
    10002, 10003, 11101, 11203, 11204, 11205, 11207, 11210, 11227, 11246, 11312,
];

/// Codes that mean "too fast, later will do" besides 99991400 (which the client waits out).
pub const RATE_CODES: &[i64] = &[230020, 11232, 11233, 11247, 230049];

/// Receive id kinds of `im/v1/messages`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiveIdType {
    OpenId,
    UnionId,
    UserId,
    Email,
    ChatId,
}

impl ReceiveIdType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OpenId => "open_id",
            Self::UnionId => "union_id",
            Self::UserId => "user_id",
            Self::Email => "email",
            Self::ChatId => "chat_id",
        }
    }
}

#[derive(Debug, Serialize)]
struct SendBody<'a> {
    receive_id: &'a str,
    msg_type: &'a str,
    content: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    uuid: Option<&'a str>,
}

#[derive(Debug, Serialize)]
struct ReplyBody<'a> {
    msg_type: &'a str,
    content: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    uuid: Option<&'a str>,
    reply_in_thread: bool,
}

/// What Feishu returns for a sent message (the fields used here).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SentMessage {
    #[serde(default)]
    pub message_id: String,
    #[serde(default)]
    pub chat_id: String,
}

/// A batch_send request: `content` for text/post/share_chat, `card` for interactive, as JSON
/// objects (not strings, unlike `im/v1/messages`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct BatchSend {
    pub msg_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub card: Option<Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub open_ids: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub user_ids: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub union_ids: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub department_ids: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct BatchSent {
    #[serde(default)]
    pub message_id: String,
    #[serde(default)]
    pub invalid_department_ids: Vec<String>,
    #[serde(default)]
    pub invalid_open_ids: Vec<String>,
    #[serde(default)]
    pub invalid_user_ids: Vec<String>,
    #[serde(default)]
    pub invalid_union_ids: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct SendProgress {
    #[serde(default)]
    pub valid_user_ids_count: i64,
    #[serde(default)]
    pub success_user_ids_count: i64,
    #[serde(default)]
    pub read_user_ids_count: i64,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct BatchProgress {
    #[serde(default)]
    pub batch_message_send_progress: SendProgress,
}

#[derive(Debug, Deserialize)]
struct Empty {}

#[derive(Debug, Serialize)]
struct CardUpdate<'a> {
    token: &'a str,
    card: &'a Value,
}

impl FeishuClient {
    /// `POST /open-apis/im/v1/messages`: `content` is the JSON *string* of the message.
    pub async fn send_message(
        &self,
        app: &AppCredentials,
        id_type: ReceiveIdType,
        receive_id: &str,
        msg_type: &str,
        content: &str,
        uuid: Option<&str>,
    ) -> Result<SentMessage, FeishuError> {
        let body = SendBody {
            receive_id,
            msg_type,
            content,
            uuid,
        };
        self.post(
            app,
            SEND,
            DEFAULT_TIER,
            "/open-apis/im/v1/messages",
            &[("receive_id_type", id_type.as_str().to_string())],
            &body,
        )
        .await
    }

    /// `POST /open-apis/im/v1/messages/:message_id/reply`.
    pub async fn reply_message(
        &self,
        app: &AppCredentials,
        message_id: &str,
        msg_type: &str,
        content: &str,
        uuid: Option<&str>,
    ) -> Result<SentMessage, FeishuError> {
        let body = ReplyBody {
            msg_type,
            content,
            uuid,
            reply_in_thread: false,
        };
        let path = format!("/open-apis/im/v1/messages/{message_id}/reply");
        self.post(app, REPLY, DEFAULT_TIER, &path, &[], &body).await
    }

    /// `POST /open-apis/message/v4/batch_send/` (each id list at most 200).
    pub async fn batch_send(
        &self,
        app: &AppCredentials,
        req: &BatchSend,
    ) -> Result<BatchSent, FeishuError> {
        self.post(
            app,
            BATCH_SEND,
            DEFAULT_TIER,
            "/open-apis/message/v4/batch_send/",
            &[],
            req,
        )
        .await
    }

    /// `GET /open-apis/im/v1/batch_messages/:id/get_progress`.
    pub async fn batch_progress(
        &self,
        app: &AppCredentials,
        batch_message_id: &str,
    ) -> Result<BatchProgress, FeishuError> {
        let path = format!("/open-apis/im/v1/batch_messages/{batch_message_id}/get_progress");
        self.get(app, BATCH_PROGRESS, DEFAULT_TIER, &path, &[])
            .await
    }

    /// `POST /open-apis/interactive/v1/card/update`: the delayed update of the card a user
    /// interacted with, with the callback's token (30 min, two uses), after the callback was
    /// answered.
    pub async fn update_card(
        &self,
        app: &AppCredentials,
        token: &str,
        card: &Value,
    ) -> Result<(), FeishuError> {
        let _: Empty = self
            .post(
                app,
                CARD_UPDATE,
                DEFAULT_TIER,
                "/open-apis/interactive/v1/card/update",
                &[],
                &CardUpdate { token, card },
            )
            .await?;
        Ok(())
    }
}
