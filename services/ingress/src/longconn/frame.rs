//! Building and reading `pbbp2` frames (events.md §7.4-§7.8): the ping, the ack that echoes a
//! data frame, and what a received frame is.

use base64::Engine as _;
use bridge_contracts::pbbp2::{Frame, Header};
use serde_json::json;

pub const METHOD_CONTROL: i32 = 0;
pub const METHOD_DATA: i32 = 1;

/// What a received frame is.
#[derive(Debug, PartialEq, Eq)]
pub enum Kind {
    Pong,
    /// A server ping: nothing to answer.
    Ping,
    /// `type=event` or `type=card`: both are routed by the JSON's event type.
    Data,
    Other(String),
}

pub fn kind(f: &Frame) -> Kind {
    let t = f.header("type").unwrap_or_default();
    match (f.method, t) {
        (METHOD_CONTROL, "pong") => Kind::Pong,
        (METHOD_CONTROL, "ping") => Kind::Ping,
        (METHOD_DATA, "event" | "card") => Kind::Data,
        (m, t) => Kind::Other(format!("method {m} type {t}")),
    }
}

/// The client's heartbeat: `method=0`, `SeqID=0`, `LogID=0`, header `type=ping`, no payload.
pub fn ping(service: i32) -> Frame {
    Frame {
        seq_id: 0,
        log_id: 0,
        service,
        method: METHOD_CONTROL,
        headers: vec![Header {
            key: "type".into(),
            value: "ping".into(),
        }],
        ..Default::default()
    }
}

/// The acknowledgement: the same frame (ids, service, method, headers) plus `biz_rt`, with
/// the payload `{"code": <http status>}` and, for callbacks, `data` = base64 of the answer.
pub fn ack(received: &Frame, code: u16, data: Option<&[u8]>, biz_rt_ms: u128) -> Frame {
    let mut f = received.clone();
    f.headers.retain(|h| h.key != "biz_rt");
    f.headers.push(Header {
        key: "biz_rt".into(),
        value: biz_rt_ms.to_string(),
    });
    let payload = match data {
        Some(d) => json!({
            "code": code,
            "data": base64::engine::general_purpose::STANDARD.encode(d),
        }),
        None => json!({ "code": code }),
    };
    f.payload = Some(payload.to_string().into_bytes());
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    #[test]
    fn ping_encodes_as_the_official_sdks_do() {
        // events.md §10.6: node-sdk and Python encoding for service_id 33554678.
        let want = hex::decode("0800100018f681801020002a0c0a0474797065120470696e67").unwrap();
        assert_eq!(ping(33554678).encode_to_vec(), want);
    }

    #[test]
    fn go_encoding_with_empty_optionals_decodes_to_the_same_ping() {
        let mut bytes = ping(33554678).encode_to_vec();
        bytes.extend_from_slice(&[0x32, 0x00, 0x3a, 0x00, 0x4a, 0x00]);
        let f = Frame::decode(bytes.as_slice()).unwrap();
        assert_eq!(kind(&f), Kind::Ping);
        assert_eq!(f.service, 33554678);
    }

    #[test]
    fn ack_echoes_the_frame_with_biz_rt_and_code() {
        let got = Frame {
            seq_id: u64::MAX,
            log_id: 7,
            service: 3,
            method: METHOD_DATA,
            headers: vec![Header {
                key: "type".into(),
                value: "event".into(),
            }],
            payload: Some(b"{}".to_vec()),
            ..Default::default()
        };
        let a = ack(&got, 200, Some(b"{}"), 12);
        assert_eq!(
            (a.seq_id, a.log_id, a.service, a.method),
            (u64::MAX, 7, 3, 1)
        );
        assert_eq!(a.header("type"), Some("event"));
        assert_eq!(a.header("biz_rt"), Some("12"));
        let v: serde_json::Value = serde_json::from_slice(a.payload.as_deref().unwrap()).unwrap();
        assert_eq!(v, json!({"code": 200, "data": "e30="}));
        let plain = ack(&got, 500, None, 1);
        let v: serde_json::Value =
            serde_json::from_slice(plain.payload.as_deref().unwrap()).unwrap();
        assert_eq!(v, json!({"code": 500}));
    }
}
