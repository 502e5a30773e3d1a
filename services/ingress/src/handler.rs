//! The request path: read (bounded), find the app, verify, decrypt, answer challenges, publish
//! with confirm, answer.

use actix_web::{web, HttpRequest, HttpResponse};
use bridge_bus::Bus;
use bridge_contracts::v1::Delivery;
use bridge_feishu::crypto::secret_eq;
use bridge_feishu::envelope::{self, Inbound};
use bridge_feishu::{Envelope, EventCipher};
use bridge_runtime::settings::IngressSettings;
use bridge_runtime::ApiError;
use bridge_store::{AppBinding, AppRegistry};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use secrecy::ExposeSecret;
use serde_json::json;

use crate::dedupe::{Claim, Dedupe};
use crate::error::IngressError;
use crate::publish::event_message;

pub struct State {
    pub settings: IngressSettings,
    pub apps: AppRegistry,
    pub bus: Bus,
    pub dedupe: Dedupe,
    pub activity: std::sync::Arc<crate::activity::Activity>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Event,
    Callback,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Event => "event",
            Kind::Callback => "callback",
        }
    }
}

/// Routes `/feishu/{app_id}/events` and `/feishu/{app_id}/callbacks` by splitting the path.
pub async fn dispatch(
    state: web::Data<State>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let mut parts = req.path().trim_start_matches('/').split('/');
    let (Some("feishu"), Some(app_id), Some(last), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bridge_runtime::error::not_found().await);
    };
    let kind = match last {
        "events" => Kind::Event,
        "callbacks" => Kind::Callback,
        _ => return Err(bridge_runtime::error::not_found().await),
    };
    if req.method() != actix_web::http::Method::POST {
        return Err(bridge_runtime::error::method_not_allowed().await);
    }
    let app_id = app_id.to_string();
    handle(state, app_id, req, payload, kind).await
}

async fn handle(
    state: web::Data<State>,
    app_id: String,
    req: HttpRequest,
    payload: web::Payload,
    kind: Kind,
) -> Result<HttpResponse, ApiError> {
    // A span only when traces are exported: otherwise nobody sees it, and it costs.
    let result = if bridge_runtime::telemetry::exporting() {
        let span = tracing::info_span!("feishu_webhook", app_id = %app_id, kind = kind.as_str());
        tracing::Instrument::instrument(process(&state, &app_id, &req, payload, kind), span).await
    } else {
        process(&state, &app_id, &req, payload, kind).await
    };
    let outcome = match &result {
        Ok(Answer::Challenge(_)) => "challenge",
        Ok(Answer::Published) => "published",
        Ok(Answer::Duplicate) => "duplicate",
        Err(e) => e.label(),
    };
    bridge_runtime::meter::count(
        "ingress_requests_total",
        &[("kind", kind.as_str()), ("outcome", outcome)],
        1,
    );
    match result {
        Ok(Answer::Challenge(c)) => Ok(HttpResponse::Ok().json(json!({ "challenge": c }))),
        Ok(Answer::Published | Answer::Duplicate) => Ok(HttpResponse::Ok()
            .content_type("application/json")
            .body(match kind {
                Kind::Event => r#"{"code":0,"msg":"success"}"#,
                Kind::Callback => "{}",
            })),
        Err(e) => {
            match &e {
                IngressError::Unavailable(cause) => {
                    tracing::warn!(app_id = %app_id, error = %cause, "event not persisted; answering 503")
                }
                other => tracing::info!(app_id = %app_id, error = %other, "request refused"),
            }
            Err(e.into())
        }
    }
}

pub(crate) enum Answer {
    Challenge(String),
    Published,
    Duplicate,
}

async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Bytes, IngressError> {
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(IngressError::TooLarge { limit });
    }
    let mut body = BytesMut::with_capacity(declared.unwrap_or(4096).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| IngressError::Read(e.to_string()))?;
        if body.len() + chunk.len() > limit {
            return Err(IngressError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// `Some(true)` valid, `Some(false)` present but wrong, `None` absent.
fn check_signature(req: &HttpRequest, cipher: &EventCipher, body: &[u8]) -> Option<bool> {
    let sig = header(req, "x-lark-signature")?;
    let ts = header(req, "x-lark-request-timestamp")?;
    let nonce = header(req, "x-lark-request-nonce")?;
    Some(cipher.verify_signature(ts, nonce, body, sig))
}

fn token_ok(app: &AppBinding, token: Option<&str>) -> bool {
    token.is_some_and(|t| secret_eq(t, app.verification_token.expose_secret()))
}

async fn process(
    state: &State,
    app_id: &str,
    req: &HttpRequest,
    payload: web::Payload,
    kind: Kind,
) -> Result<Answer, IngressError> {
    let body = read_body(req, payload, state.settings.max_body_bytes).await?;
    let app = state.apps.get(app_id).ok_or(IngressError::UnknownApp)?;
    if !app.enabled {
        return Err(IngressError::AppDisabled);
    }
    if kind == Kind::Callback {
        if let Some(card) = envelope::legacy_card(&body) {
            return legacy_card(state, app_id, &app, req, body, card).await;
        }
    }
    let cipher = app
        .encrypt_key
        .as_ref()
        .map(|k| EventCipher::new(k.expose_secret()));
    // Signature first when the app has an Encrypt Key and the headers are there; Feishu does
    // not sign the url_verification request, so a missing signature is judged after decryption.
    let signature = cipher.as_ref().and_then(|c| check_signature(req, c, &body));
    if signature == Some(false) {
        return Err(IngressError::BadSignature);
    }
    let (inbound, plaintext) = match envelope::parse(&body)? {
        Inbound::Encrypted(enc) => {
            let cipher = cipher.as_ref().ok_or(IngressError::NoEncryptKey)?;
            let plain = cipher.decrypt(&enc)?;
            let inbound = envelope::parse(&plain).map_err(IngressError::DecryptedMalformed)?;
            if matches!(inbound, Inbound::Encrypted(_)) {
                return Err(IngressError::DecryptedMalformed(
                    bridge_feishu::EnvelopeError::Unrecognised,
                ));
            }
            (inbound, plain)
        }
        other => (other, body.to_vec()),
    };
    let env: Envelope = match inbound {
        Inbound::Challenge { challenge, token } => {
            if !token_ok(&app, token.as_deref()) {
                return Err(IngressError::BadToken);
            }
            tracing::info!(app_id, "url_verification answered");
            return Ok(Answer::Challenge(challenge));
        }
        Inbound::Event(env) => env,
        // An `encrypt` wrapper inside the decrypted body: refused above, never reached.
        Inbound::Encrypted(_) => {
            return Err(IngressError::DecryptedMalformed(
                bridge_feishu::EnvelopeError::Unrecognised,
            ))
        }
    };
    if cipher.is_some() && signature.is_none() {
        return Err(IngressError::MissingSignature);
    }
    if !token_ok(&app, env.token.as_deref()) {
        return Err(IngressError::BadToken);
    }
    if let Some(other) = env
        .app_id
        .as_deref()
        .filter(|a| !a.is_empty() && *a != app_id)
    {
        return Err(IngressError::AppMismatch(other.to_string()));
    }
    publish_once(state, app_id, &env, plaintext, kind, Delivery::Webhook).await
}

/// A legacy message-card callback: signed with SHA-1 over the Verification Token (always,
/// whether or not the app has an Encrypt Key; it is never encrypted), and carrying no event
/// id. Its id is derived from the body, which Feishu's retry repeats byte for byte and which
/// differs between two clicks (each has its own card-update token).
async fn legacy_card(
    state: &State,
    app_id: &str,
    app: &AppBinding,
    req: &HttpRequest,
    body: Bytes,
    card: envelope::LegacyCard,
) -> Result<Answer, IngressError> {
    let (Some(sig), Some(ts), Some(nonce)) = (
        header(req, "x-lark-signature"),
        header(req, "x-lark-request-timestamp"),
        header(req, "x-lark-request-nonce"),
    ) else {
        return Err(IngressError::MissingSignature);
    };
    if !bridge_feishu::crypto::verify_legacy_card_signature(
        app.verification_token.expose_secret(),
        ts,
        nonce,
        &body,
        sig,
    ) {
        return Err(IngressError::BadSignature);
    }
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(&body);
    let env = Envelope {
        schema: bridge_feishu::envelope::Schema::V1,
        event_id: format!("card-v1-{}", hex::encode(&digest[..16])),
        event_type: envelope::LEGACY_CARD_EVENT_TYPE.to_string(),
        app_id: Some(app_id.to_string()),
        tenant_key: card.tenant_key,
        create_time: String::new(),
        token: None,
    };
    tracing::debug!(app_id, open_message_id = %card.open_message_id, "legacy card callback");
    publish_once(
        state,
        app_id,
        &env,
        body.to_vec(),
        Kind::Callback,
        Delivery::Webhook,
    )
    .await
}

/// Publishes `env` unless this instance already did (or is doing so), shared by the webhook
/// and the long connection so an app on both never publishes an event twice.
pub(crate) async fn publish_once(
    state: &State,
    app_id: &str,
    env: &Envelope,
    plaintext: Vec<u8>,
    kind: Kind,
    delivery: Delivery,
) -> Result<Answer, IngressError> {
    let guard = match state.dedupe.claim(app_id, &env.event_id) {
        Claim::Published => {
            tracing::debug!(app_id, event_id = %env.event_id, "duplicate answered without publishing");
            return Ok(Answer::Duplicate);
        }
        Claim::Wait(mut rx) => {
            let outcome =
                tokio::time::timeout(state.settings.publish_timeout, rx.wait_for(|o| o.is_some()))
                    .await;
            return match outcome {
                Ok(Ok(v)) if *v == Some(true) => Ok(Answer::Duplicate),
                _ => Err(IngressError::Unavailable(
                    bridge_bus::BusError::Unavailable(
                        "a concurrent copy of this event was not persisted".into(),
                    ),
                )),
            };
        }
        Claim::Publish(guard) => guard,
    };
    let received_at_ms = chrono::Utc::now().timestamp_millis();
    let msg = event_message(
        app_id,
        env,
        plaintext,
        kind == Kind::Callback,
        delivery,
        received_at_ms,
        bridge_runtime::telemetry::current_traceparent(),
    );
    let started = std::time::Instant::now();
    let result = tokio::time::timeout(
        state.settings.publish_timeout,
        state.bus.publish_from_worker(&msg),
    )
    .await
    .unwrap_or(Err(bridge_bus::BusError::ConfirmTimeout(
        state.settings.publish_timeout,
    )));
    // From the publish to the broker's confirm (or the failure): the broker's share of the
    // answer's latency.
    bridge_runtime::meter::record(
        "ingress_publish_duration_seconds",
        &[(
            "outcome",
            if result.is_ok() {
                "confirmed"
            } else {
                "failed"
            },
        )],
        started.elapsed().as_secs_f64(),
    );
    state.dedupe.finish(guard, result.is_ok());
    result?;
    state.activity.seen(app_id, &env.event_type);
    tracing::debug!(app_id, event_id = %env.event_id, event_type = %env.event_type, "event published");
    Ok(Answer::Published)
}
