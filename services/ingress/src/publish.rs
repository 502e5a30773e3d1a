//! Building the bus message for a verified event: a `FeishuEvent` protobuf with the
//! properties of DESIGN.md (message_id, type, traceparent, CloudEvents AMQP binding headers).

use bridge_bus::{Message, Props};
use bridge_contracts::topology::{feishu_event_key, FEISHU_EVENTS};
use bridge_contracts::v1::{Delivery, FeishuEvent};
use bridge_contracts::PROTOBUF_CONTENT_TYPE;
use bridge_feishu::Envelope;
use bytes::Bytes;
use prost::Message as _;

pub fn event_message(
    app_id: &str,
    env: &Envelope,
    payload: Vec<u8>,
    is_callback: bool,
    delivery: Delivery,
    received_at_ms: i64,
    traceparent: String,
) -> Message {
    let create_time_ms = env.create_time_ms();
    let event = FeishuEvent {
        event_id: env.event_id.clone(),
        event_type: env.event_type.clone(),
        app_id: app_id.to_string(),
        tenant_key: env.tenant_key.clone(),
        create_time: env.create_time.clone(),
        schema: env.schema.as_str().to_string(),
        delivery: delivery as i32,
        received_at_ms,
        payload,
        create_time_ms,
        is_callback,
    };
    let time_ms = if create_time_ms > 0 {
        create_time_ms
    } else {
        received_at_ms
    };
    let time = chrono::DateTime::from_timestamp_millis(time_ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let headers = vec![
        ("traceparent".to_string(), traceparent),
        ("cloudEvents:specversion".to_string(), "1.0".to_string()),
        ("cloudEvents:id".to_string(), env.event_id.clone()),
        (
            "cloudEvents:source".to_string(),
            format!("urn:feishu:app:{app_id}"),
        ),
        (
            "cloudEvents:type".to_string(),
            format!("feishu.{}", env.event_type),
        ),
        ("cloudEvents:time".to_string(), time),
        ("cloudEvents:subject".to_string(), env.tenant_key.clone()),
    ];
    Message {
        exchange: FEISHU_EVENTS.to_string(),
        routing_key: feishu_event_key(app_id, &env.event_type),
        body: Bytes::from(event.encode_to_vec()),
        props: Props {
            message_id: env.event_id.clone(),
            content_type: PROTOBUF_CONTENT_TYPE.to_string(),
            type_name: FeishuEvent::FULL_NAME.to_string(),
            timestamp_ms: received_at_ms,
            headers,
        },
    }
}
