//! The bot's own conversation, from `notifier.bot-events`: `help` / `帮助` (sent to the bot,
//! or @-mentioning it in a group) gets a card explaining the bot, a group the bot joins gets a
//! greeting, and a click on a notifier card (a button whose value has a `notifier` object)
//! updates that card through the delayed-update API with the callback's token. Every other
//! message is left alone: platform services read `feishu.events` themselves. Messages are
//! deduplicated by `message_id` (Feishu's advice), bot joins and clicks by event id.

use std::sync::Arc;
use std::time::Duration;

use bridge_bus::Delivery;
use bridge_contracts::topology::Q_NOTIFIER_BOT_EVENTS;
use bridge_contracts::v1::FeishuEvent;
use bridge_feishu::api::im::{self, ReceiveIdType};
use bridge_runtime::Shutdown;
use bridge_store::entity::{notification, notification_recipient as rcpt, processed_event};
use chrono::Utc;
use prost::Message as _;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, Set};
use serde_json::{json, Value};

use crate::budget::Budget;
use crate::consumer::subscribe;
use crate::deliver::{classify, Failure};
use crate::message::{send_uuid, Content};
use crate::Inner;

/// The consumer name processed ids are recorded under.
pub const CONSUMER: &str = "notifier-bot";

/// The delayed update must come after Feishu got the callback's answer (events.md §6.3);
/// the ingress answers right after publishing, so this much after receipt is safely later.
const AFTER_CALLBACK: Duration = Duration::from_millis(500);

pub async fn run(inner: Arc<Inner>, stop: Shutdown) {
    let Some(mut consumer) = subscribe(&inner, Q_NOTIFIER_BOT_EVENTS, 16, &stop).await else {
        return;
    };
    loop {
        let d = tokio::select! {
            d = consumer.next() => d,
            _ = stop.wait() => return,
        };
        let Some(d) = d else { return };
        let inner = inner.clone();
        tokio::spawn(async move { handle(&inner, d).await });
    }
}

/// What to do with one event.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Help {
        message_id: String,
    },
    Greet {
        chat_id: String,
    },
    UpdateCard {
        token: String,
        open_message_id: String,
        value: Value,
        operator: String,
    },
    Ignore,
}

/// The bot's words, without @-mention placeholders, lower-cased.
fn words(content: &str) -> String {
    let text = serde_json::from_str::<Value>(content)
        .ok()
        .and_then(|v| v.get("text").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_default();
    text.split_whitespace()
        .filter(|w| !w.starts_with("@_user_") && !w.starts_with("@_all"))
        .collect::<Vec<_>>()
        .join(" ")
        .trim_start_matches('/')
        .to_lowercase()
}

/// Decides from the event type and payload (the decrypted envelope).
pub fn decide(event_type: &str, payload: &Value) -> Action {
    let ev = &payload["event"];
    match event_type {
        "im.message.receive_v1" => {
            if ev.pointer("/sender/sender_type").and_then(Value::as_str) != Some("user") {
                return Action::Ignore;
            }
            let m = &ev["message"];
            if m["message_type"].as_str() != Some("text") {
                return Action::Ignore;
            }
            let w = words(m["content"].as_str().unwrap_or_default());
            match (w.as_str(), m["message_id"].as_str()) {
                ("help" | "帮助", Some(id)) => Action::Help {
                    message_id: id.to_string(),
                },
                _ => Action::Ignore,
            }
        }
        "im.chat.member.bot.added_v1" => match ev["chat_id"].as_str() {
            Some(c) => Action::Greet {
                chat_id: c.to_string(),
            },
            None => Action::Ignore,
        },
        "card.action.trigger" => {
            let value = &ev["action"]["value"];
            let ours = value.get("notifier").is_some_and(Value::is_object);
            match (
                ours,
                ev["token"].as_str(),
                ev.pointer("/context/open_message_id")
                    .and_then(Value::as_str),
            ) {
                (true, Some(token), Some(mid)) => Action::UpdateCard {
                    token: token.to_string(),
                    open_message_id: mid.to_string(),
                    value: value["notifier"].clone(),
                    operator: ev
                        .pointer("/operator/open_id")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                },
                _ => Action::Ignore,
            }
        }
        _ => Action::Ignore,
    }
}

/// The help card (card JSON 2.0).
pub fn help_card() -> Value {
    json!({
        "schema": "2.0",
        "config": {"update_multi": true},
        "header": {
            "title": {"tag": "plain_text", "content": "What this bot does"},
            "template": "blue",
        },
        "body": {"elements": [
            {"tag": "markdown", "content": "I deliver the platform's notifications: approvals, reminders and reports from the apps you use, to you, your department or your groups."},
            {"tag": "markdown", "content": "I do not read your messages: conversations with me go to the platform services that asked to hear them. Write **help** (or **帮助**) to see this card again."},
            {"tag": "button", "text": {"tag": "plain_text", "content": "Got it"}, "type": "primary",
             "value": {"notifier": {"done": "Glad to help."}}},
        ]},
    })
}

pub fn greeting() -> Content {
    Content::text("Hello! I post the platform's notifications in this group. Mention me with \"help\" to learn more.")
}

/// The card after a click: the card as sent, its buttons replaced by a note of what was done.
pub fn settled_card(original: Option<&Value>, done: &str) -> Value {
    let note_v2 = json!({"tag": "markdown", "content": done});
    let note_v1 = json!({"tag": "div", "text": {"tag": "lark_md", "content": done}});
    fn strip(elements: &mut Vec<Value>) {
        elements.retain(|e| !matches!(e["tag"].as_str(), Some("button" | "action")));
        for e in elements.iter_mut() {
            for key in ["elements", "columns"] {
                if let Some(inner) = e.get_mut(key).and_then(Value::as_array_mut) {
                    strip(inner);
                }
            }
        }
    }
    let mut card = original
        .cloned()
        .unwrap_or_else(|| json!({"schema": "2.0", "body": {"elements": []}}));
    if let Some(els) = card
        .pointer_mut("/body/elements")
        .and_then(Value::as_array_mut)
    {
        strip(els);
        els.push(note_v2);
    } else if let Some(els) = card.get_mut("elements").and_then(Value::as_array_mut) {
        strip(els);
        els.push(note_v1);
    } else {
        card = json!({"schema": "2.0", "body": {"elements": [note_v2]}});
    }
    card
}

async fn seen(inner: &Inner, id: &str) -> Result<bool, sea_orm::DbErr> {
    Ok(
        processed_event::Entity::find_by_id((CONSUMER.to_string(), id.to_string()))
            .one(&inner.db)
            .await?
            .is_some(),
    )
}

async fn remember(inner: &Inner, id: &str) -> Result<(), sea_orm::DbErr> {
    processed_event::Entity::insert(processed_event::ActiveModel {
        consumer: Set(CONSUMER.to_string()),
        event_id: Set(id.to_string()),
        processed_at: Set(Utc::now()),
    })
    .on_conflict(processed_event::already_recorded())
    .exec_without_returning(&inner.db)
    .await?;
    Ok(())
}

async fn handle(inner: &Inner, d: Delivery) {
    let ev = match FeishuEvent::decode(d.body.as_ref()) {
        Ok(e) => e,
        Err(e) => {
            let _ = d.dead_letter(&format!("not a FeishuEvent: {e}")).await;
            return;
        }
    };
    let payload: Value = serde_json::from_slice(&ev.payload).unwrap_or(Value::Null);
    let action = decide(&ev.event_type, &payload);
    let dedupe_id = match &action {
        Action::Ignore => {
            let _ = d.ack().await;
            return;
        }
        Action::Help { message_id } => format!("msg:{message_id}"),
        _ => format!("event:{}", ev.event_id),
    };
    if !inner.known_app(&ev.app_id) {
        let _ = d.ack().await;
        return;
    }
    match seen(inner, &dedupe_id).await {
        Ok(true) => {
            let _ = d.ack().await;
            return;
        }
        Ok(false) => {}
        Err(e) => {
            let _ = d.retry_later(&format!("database: {e}")).await;
            return;
        }
    }
    match act(inner, &ev, action, &dedupe_id).await {
        Ok(()) => {
            if let Err(e) = remember(inner, &dedupe_id).await {
                tracing::warn!(error = %e, "could not record the handled event; a redelivery is deduplicated by Feishu's uuid");
            }
            let _ = d.ack().await;
        }
        Err(reason) => match d.retry_later(&reason).await {
            Ok(true) => tracing::error!(reason, "bot event dead-lettered after its retries"),
            Ok(false) => tracing::info!(reason, "bot event retried later"),
            Err(e) => tracing::warn!(error = %e, "could not schedule a retry"),
        },
    }
}

/// Does it; `Err(reason)` for a transient failure.
async fn act(
    inner: &Inner,
    ev: &FeishuEvent,
    action: Action,
    dedupe_id: &str,
) -> Result<(), String> {
    let Some(creds) = inner.credentials(&ev.app_id) else {
        return Ok(());
    };
    let scale = inner.rate_scale;
    let headroom = inner.settings.rate_headroom;
    let uuid = send_uuid(CONSUMER, "bot", dedupe_id);
    let result = match action {
        Action::Ignore => return Ok(()),
        Action::Help { message_id } => {
            let ask = Budget::ask(
                im::REPLY,
                &ev.app_id,
                Some(&format!("msg:{message_id}")),
                scale,
                headroom,
            );
            inner
                .budget
                .acquire(&ask)
                .await
                .map_err(|e| e.to_string())?;
            let card = Content::card(help_card());
            inner
                .client
                .reply_message(
                    &creds,
                    &message_id,
                    card.msg_type,
                    &card.as_string(),
                    Some(&uuid),
                )
                .await
                .map(|_| ())
        }
        Action::Greet { chat_id } => {
            let ask = Budget::ask(
                im::SEND,
                &ev.app_id,
                Some(&format!("chat:{chat_id}")),
                scale,
                headroom,
            );
            inner
                .budget
                .acquire(&ask)
                .await
                .map_err(|e| e.to_string())?;
            let g = greeting();
            inner
                .client
                .send_message(
                    &creds,
                    ReceiveIdType::ChatId,
                    &chat_id,
                    g.msg_type,
                    &g.as_string(),
                    Some(&uuid),
                )
                .await
                .map(|_| ())
        }
        Action::UpdateCard {
            token,
            open_message_id,
            value,
            operator,
        } => {
            let done = value["done"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| "Done.".to_string());
            let done = if operator.is_empty() {
                done
            } else {
                format!("{done} (<at id={operator}></at>)")
            };
            let original = original_card(inner, &open_message_id).await;
            let card = value
                .get("card")
                .filter(|c| c.is_object())
                .cloned()
                .unwrap_or_else(|| settled_card(original.as_ref(), &done));
            let wait = (ev.received_at_ms + AFTER_CALLBACK.as_millis() as i64)
                - Utc::now().timestamp_millis();
            if wait > 0 {
                tokio::time::sleep(Duration::from_millis(wait as u64)).await;
            }
            let ask = Budget::ask(im::CARD_UPDATE, &ev.app_id, None, scale, headroom);
            inner
                .budget
                .acquire(&ask)
                .await
                .map_err(|e| e.to_string())?;
            inner.client.update_card(&creds, &token, &card).await
        }
    };
    match result {
        Ok(()) => Ok(()),
        Err(e) => match classify(&e) {
            Failure::Permanent { code, msg } => {
                tracing::warn!(app_id = %ev.app_id, event_type = %ev.event_type, code, msg, "bot answer refused by feishu; not retried");
                Ok(())
            }
            Failure::Transient { .. } => Err(e.to_string()),
        },
    }
}

/// The card the notifier sent as `message_id`, if it did.
async fn original_card(inner: &Inner, message_id: &str) -> Option<Value> {
    let r = rcpt::Entity::find()
        .filter(rcpt::Column::MessageId.eq(message_id))
        .one(&inner.db)
        .await
        .ok()??;
    let n = notification::Entity::find_by_id(r.notification_id)
        .one(&inner.db)
        .await
        .ok()??;
    if n.msg_type != "interactive" {
        return None;
    }
    serde_json::from_str(&n.content).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(text: &str, sender: &str) -> Value {
        json!({"event": {
            "sender": {"sender_type": sender},
            "message": {"message_id": "om_1", "message_type": "text",
                        "content": json!({"text": text}).to_string()}}})
    }

    #[test]
    fn help_in_both_languages_and_nothing_else() {
        let help = Action::Help {
            message_id: "om_1".into(),
        };
        assert_eq!(decide("im.message.receive_v1", &msg("help", "user")), help);
        assert_eq!(
            decide("im.message.receive_v1", &msg("@_user_1 帮助", "user")),
            help
        );
        assert_eq!(
            decide("im.message.receive_v1", &msg(" HELP ", "user")),
            help
        );
        assert_eq!(
            decide("im.message.receive_v1", &msg("help me", "user")),
            Action::Ignore
        );
        assert_eq!(
            decide("im.message.receive_v1", &msg("help", "bot")),
            Action::Ignore
        );
        assert_eq!(
            decide("im.message.message_read_v1", &msg("help", "user")),
            Action::Ignore
        );
    }

    #[test]
    fn only_notifier_cards_are_updated() {
        let click = |value: Value| {
            json!({"event": {"token": "c-1", "action": {"value": value},
                   "operator": {"open_id": "ou_1"},
                   "context": {"open_message_id": "om_9"}}})
        };
        assert!(matches!(
            decide(
                "card.action.trigger",
                &click(json!({"notifier": {"done": "ok"}}))
            ),
            Action::UpdateCard { .. }
        ));
        assert_eq!(
            decide("card.action.trigger", &click(json!({"other": 1}))),
            Action::Ignore
        );
    }

    #[test]
    fn settled_card_drops_buttons_and_notes_the_action() {
        let c = settled_card(Some(&help_card()), "Approved");
        let els = c["body"]["elements"].as_array().unwrap();
        assert!(els.iter().all(|e| e["tag"] != "button"));
        assert_eq!(els.last().unwrap()["content"], "Approved");
        let v1 = json!({"elements": [{"tag": "action", "actions": []}, {"tag": "div"}]});
        let c = settled_card(Some(&v1), "Done");
        assert_eq!(c["elements"].as_array().unwrap().len(), 2);
    }
}
