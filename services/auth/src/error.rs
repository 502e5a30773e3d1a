//! Why a login or a session request was refused, shown as a page to a browser and as JSON to
//! an API client.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use bridge_runtime::ApiError;

#[derive(Debug, Clone)]
pub struct Refusal {
    pub status: StatusCode,
    pub code: u32,
    pub title: &'static str,
    pub detail: String,
}

impl Refusal {
    pub fn new(
        status: StatusCode,
        code: u32,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code,
            title,
            detail: detail.into(),
        }
    }

    pub fn unavailable(what: &str, e: impl std::fmt::Display) -> Self {
        tracing::warn!(error = %e, "{what} failed");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            50320,
            "Login is unavailable",
            format!("{what} is unavailable right now; try again in a moment"),
        )
    }

    pub fn page(&self) -> HttpResponse {
        crate::page::error_page(self)
    }

    pub fn json(&self) -> ApiError {
        ApiError::new(
            self.status,
            self.code,
            format!("{}: {}", self.title, self.detail),
        )
    }
}

impl From<sea_orm::DbErr> for Refusal {
    fn from(e: sea_orm::DbErr) -> Self {
        Self::unavailable("the database", e)
    }
}
