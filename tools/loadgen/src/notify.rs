//! The notifier benchmark's load: `n` notification requests, each to one distinct user (by
//! tenant user_id), published to `notify.requests` with confirms, as fast as the broker takes
//! them. The notifier then works through them at Feishu's limits; the script measures that.

use bridge_contracts::v1::{notify_request, NotifyRequest, Targets};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::BasicProperties;
use prost::Message as _;

pub async fn requests(amqp: &str, app_id: &str, n: usize, first_user: usize) -> anyhow::Result<()> {
    let run = format!("nb{}", std::process::id());
    let conn = crate::connect(amqp).await?;
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    let key = format!("{app_id}.bench");
    let mut confirms = Vec::with_capacity(n);
    for i in 0..n {
        let req = NotifyRequest {
            app_id: app_id.to_string(),
            idempotency_key: format!("{run}-{i}"),
            targets: Some(Targets {
                user_ids: vec![format!("u{:07}", first_user + i)],
                ..Default::default()
            }),
            message: Some(notify_request::Message::Text(format!(
                "benchmark message {i} of {n}"
            ))),
            requested_by: "loadgen".into(),
            ..Default::default()
        };
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_message_id(format!("{run}-{i}").into())
            .with_content_type("application/x-protobuf".into())
            .with_type("feishu_bridge.v1.NotifyRequest".into());
        confirms.push(
            ch.basic_publish(
                "notify.requests",
                &key,
                BasicPublishOptions::default(),
                &req.encode_to_vec(),
                props,
            )
            .await?,
        );
    }
    for c in confirms {
        c.await?;
    }
    // The tool's output: one JSON line for the script.
    #[allow(clippy::print_stdout)]
    {
        println!("{{\"published\": {n}, \"run\": \"{run}\"}}");
    }
    Ok(())
}
