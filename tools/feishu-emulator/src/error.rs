//! Errors as Feishu answers them: an HTTP status plus a `{code, msg}` body, mapped to HTTP in
//! one place. Also the error of the emulator's own Rust/control API.

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::{HttpResponse, ResponseError};
use serde_json::{json, Map, Value};

/// How an Open API error is rendered.
#[derive(Debug, Clone)]
pub enum Shape {
    /// `{"code", "msg"}` (plus `error` details when given).
    Envelope,
    /// Flat OAuth JSON: `{"code", "error", "error_description"}`.
    OAuth(&'static str),
    /// Close the connection without a complete response (fault injection).
    Drop,
}

/// An Open API failure.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status} code {code}: {msg}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: i64,
    pub msg: String,
    pub shape: Shape,
    pub headers: Vec<(&'static str, String)>,
    pub details: Option<Value>,
}

impl ApiError {
    pub fn new(status: u16, code: i64, msg: impl Into<String>) -> Self {
        Self {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            code,
            msg: msg.into(),
            shape: Shape::Envelope,
            headers: vec![],
            details: None,
        }
    }

    pub fn oauth(status: u16, code: i64, error: &'static str, description: &str) -> Self {
        let mut e = Self::new(status, code, description);
        e.shape = Shape::OAuth(error);
        e
    }

    pub fn dropped() -> Self {
        let mut e = Self::new(500, 0, "connection dropped");
        e.shape = Shape::Drop;
        e
    }

    /// 99992402 with a field violation, as the gateway reports schema validation failures.
    pub fn field(field: &str, value: &str, description: &str) -> Self {
        let mut e = Self::new(400, 99992402, "field validation failed");
        e.details = Some(json!({"field_violations": [
            {"field": field, "value": value, "description": description}
        ]}));
        e
    }

    pub fn rate_limited(limit: u32, reset_secs: u64) -> Self {
        let mut e = Self::new(429, 99991400, "request trigger frequency limit");
        e.headers = vec![
            ("x-ogw-ratelimit-limit", limit.to_string()),
            ("x-ogw-ratelimit-reset", reset_secs.to_string()),
        ];
        e
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }
}

/// A body that fails at once, so the server abandons the connection mid-response.
struct Broken;

impl MessageBody for Broken {
    type Error = std::io::Error;

    fn size(&self) -> BodySize {
        BodySize::Sized(1024)
    }

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Bytes, Self::Error>>> {
        std::task::Poll::Ready(Some(Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "fault injection: dropped connection",
        ))))
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse<BoxBody> {
        let mut b = HttpResponse::build(self.status);
        for (k, v) in &self.headers {
            b.insert_header((*k, v.as_str()));
        }
        b.insert_header(("X-Tt-Logid", crate::api::log_id()));
        match &self.shape {
            Shape::Envelope => {
                let mut m = Map::new();
                m.insert("code".into(), json!(self.code));
                m.insert("msg".into(), json!(self.msg));
                if let Some(d) = &self.details {
                    m.insert("error".into(), d.clone());
                }
                b.json(Value::Object(m))
            }
            Shape::OAuth(error) => b.json(json!({
                "code": self.code,
                "error": error,
                "error_description": self.msg,
            })),
            Shape::Drop => b.body(BoxBody::new(Broken)),
        }
    }
}

/// Failure of a control operation (Rust API or `/_emulator/`).
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("request url rejected: {0}")]
    UrlVerification(String),
}

impl ResponseError for EmulatorError {
    fn status_code(&self) -> StatusCode {
        match self {
            EmulatorError::NotFound(_) => StatusCode::NOT_FOUND,
            EmulatorError::Invalid(_) => StatusCode::BAD_REQUEST,
            EmulatorError::Conflict(_) => StatusCode::CONFLICT,
            EmulatorError::UrlVerification(_) => StatusCode::BAD_GATEWAY,
        }
    }

    fn error_response(&self) -> HttpResponse<BoxBody> {
        HttpResponse::build(self.status_code()).json(json!({"error": self.to_string()}))
    }
}
