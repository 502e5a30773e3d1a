//! Building the bus message for a verified event: a `FeishuEvent` protobuf with the
//! properties of DESIGN.md (message_id, type, traceparent, CloudEvents AMQP binding headers).

use bridge_bus::{Described, Message, Props};
use bridge_contracts::topology::{feishu_event_key, FEISHU_EVENTS};
use bridge_contracts::v1::{Delivery, FeishuEvent};
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
    Message {
        exchange: FEISHU_EVENTS.to_string(),
        routing_key: feishu_event_key(app_id, &env.event_type),
        body: Bytes::from(event.encode_to_vec()),
        props: Props::protobuf(Described {
            id: env.event_id.clone(),
            type_name: FeishuEvent::FULL_NAME.to_string(),
            timestamp_ms: received_at_ms,
            source: format!("urn:feishu:app:{app_id}"),
            kind: format!("feishu.{}", env.event_type),
            time_ms,
            subject: env.tenant_key.clone(),
            traceparent,
        }),
    }
}
