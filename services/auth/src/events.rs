//! `auth.events`: an audit record of every login and logout, and for subscribers outside this
//! system the news that a session's tokens stopped being valid.

use bridge_bus::{Described, Message, Props};
use bridge_contracts::topology::AUTH_EVENTS;
use bridge_contracts::v1::{AuthEvent, AuthEventKind};
use bridge_store::entity::auth_session;
use prost::Message as _;

use crate::sessions::Identity;
use crate::Inner;

async fn publish(inner: &Inner, ev: AuthEvent, word: &str) {
    let id = format!("{}:{}:{}", ev.session_id, word, ev.at_ms);
    let routing_key = format!("{}.auth.{word}", ev.app_id);
    let msg = Message {
        exchange: AUTH_EVENTS.to_string(),
        routing_key,
        body: bytes::Bytes::from(ev.encode_to_vec()),
        props: Props::protobuf(Described {
            id,
            type_name: AuthEvent::FULL_NAME.to_string(),
            timestamp_ms: ev.at_ms,
            source: format!("urn:feishu-bridge:auth:{}", ev.app_id),
            kind: format!("feishu_bridge.auth.{word}"),
            time_ms: ev.at_ms,
            subject: ev.subject.clone(),
            traceparent: bridge_runtime::telemetry::current_traceparent(),
        }),
    };
    // The session is already recorded (or revoked) in the database, which every service of
    // this system reads; the record here is the audit trail and the news for outside
    // subscribers, so a broker outage is logged and counted rather than failing the request.
    if let Err(e) = inner.bus.publish(&msg).await {
        metrics::counter!("auth_events_unpublished_total").increment(1);
        tracing::error!(error = %e, routing_key = %msg.routing_key, "cannot publish an auth event");
    }
}

pub async fn login(inner: &Inner, who: &Identity, session_id: &str, access_exp: i64) {
    let ev = AuthEvent {
        kind: AuthEventKind::Login as i32,
        app_id: who.app_id.clone(),
        tenant_key: who.tenant_key.clone(),
        session_id: session_id.to_string(),
        subject: who.open_id.clone(),
        open_id: who.open_id.clone(),
        union_id: who.union_id.clone().unwrap_or_default(),
        name: who.name.clone(),
        admin: who.admin,
        method: who.method.to_string(),
        at_ms: chrono::Utc::now().timestamp_millis(),
        access_expires_ms: access_exp * 1000,
    };
    publish(inner, ev, "login").await;
}

pub async fn logout(inner: &Inner, s: &auth_session::Model, reason: &str) {
    let ev = AuthEvent {
        kind: AuthEventKind::Logout as i32,
        app_id: s.app_id.clone(),
        tenant_key: s.tenant_key.clone(),
        session_id: s.id.clone(),
        subject: s.open_id.clone(),
        open_id: s.open_id.clone(),
        union_id: s.union_id.clone().unwrap_or_default(),
        name: s.name.clone(),
        admin: s.is_admin,
        method: reason.to_string(),
        at_ms: chrono::Utc::now().timestamp_millis(),
        access_expires_ms: s.access_expires_at.timestamp_millis(),
    };
    publish(inner, ev, "logout").await;
}
