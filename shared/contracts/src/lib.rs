//! The bus contracts: protobuf messages generated from proto/, and the names of exchanges,
//! queues and routing keys every service shares.

pub mod topology;

/// `feishu_bridge.v1` messages.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/feishu_bridge.v1.rs"));

    impl FeishuEvent {
        /// The message's full protobuf name, used as the AMQP `type` property.
        pub const FULL_NAME: &'static str = "feishu_bridge.v1.FeishuEvent";
    }

    impl OrgChange {
        pub const FULL_NAME: &'static str = "feishu_bridge.v1.OrgChange";
    }

    impl DirectoryCommand {
        pub const FULL_NAME: &'static str = "feishu_bridge.v1.DirectoryCommand";
    }

    impl AuthEvent {
        pub const FULL_NAME: &'static str = "feishu_bridge.v1.AuthEvent";
    }

    impl NotifyRequest {
        pub const FULL_NAME: &'static str = "feishu_bridge.v1.NotifyRequest";
    }

    impl DeliveryReport {
        pub const FULL_NAME: &'static str = "feishu_bridge.v1.DeliveryReport";
    }
}

/// Feishu's long-connection frame (`proto/lark/ws/pbbp2.proto`).
pub mod pbbp2 {
    #![allow(clippy::all, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/pbbp2.rs"));

    impl Frame {
        /// The value of header `key`, if present.
        pub fn header(&self, key: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|h| h.key == key)
                .map(|h| h.value.as_str())
        }
    }
}

/// The AMQP `content_type` of every protobuf body.
pub const PROTOBUF_CONTENT_TYPE: &str = "application/x-protobuf";
