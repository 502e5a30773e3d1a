//! The JSON error body every service answers with: `{"code": ..., "msg": ...}`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

/// An error as a client sees it: HTTP status, a stable numeric code and a message.
/// Services map their own error enums into this in one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: u32,
    pub msg: String,
}

#[derive(Serialize)]
struct Body<'a> {
    code: u32,
    msg: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, code: u32, msg: impl Into<String>) -> Self {
        Self {
            status,
            code,
            msg: msg.into(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.status.as_u16(), self.code, self.msg)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status).json(Body {
            code: self.code,
            msg: &self.msg,
        })
    }
}

/// 405 with the JSON body, for `default_service` of resources.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, 40500, "method not allowed")
}

/// 404 with the JSON body, for the app's default service.
pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, 40404, "no such route")
}

impl actix_web::Responder for ApiError {
    type Body = actix_web::body::BoxBody;

    fn respond_to(self, _req: &actix_web::HttpRequest) -> HttpResponse {
        self.error_response()
    }
}
