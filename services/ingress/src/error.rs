//! Everything the ingress can refuse, mapped to HTTP in one place.

use actix_web::http::StatusCode;
use bridge_bus::BusError;
use bridge_feishu::{CryptoError, EnvelopeError};
use bridge_runtime::ApiError;

#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    #[error("body larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("cannot read the body: {0}")]
    Read(String),
    #[error("malformed body: {0}")]
    Malformed(#[from] EnvelopeError),
    #[error("cannot decrypt the body: {0}")]
    Undecryptable(#[from] CryptoError),
    #[error("decrypted body is not a JSON event: {0}")]
    DecryptedMalformed(EnvelopeError),
    #[error("the body is encrypted but no Encrypt Key is configured for this app")]
    NoEncryptKey,
    #[error("the event belongs to app {0}, not to this URL's app")]
    AppMismatch(String),
    #[error("missing X-Lark-Signature, X-Lark-Request-Timestamp or X-Lark-Request-Nonce")]
    MissingSignature,
    #[error("signature mismatch")]
    BadSignature,
    #[error("verification token mismatch")]
    BadToken,
    #[error("unknown app")]
    UnknownApp,
    #[error("app binding is disabled")]
    AppDisabled,
    #[error("event could not be persisted: {0}")]
    Unavailable(#[from] BusError),
}

impl IngressError {
    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "too_large",
            Self::Read(_) => "read",
            Self::Malformed(_) | Self::DecryptedMalformed(_) => "malformed",
            Self::Undecryptable(_) | Self::NoEncryptKey => "undecryptable",
            Self::AppMismatch(_) => "app_mismatch",
            Self::MissingSignature | Self::BadSignature => "bad_signature",
            Self::BadToken => "bad_token",
            Self::UnknownApp | Self::AppDisabled => "unknown_app",
            Self::Unavailable(_) => "unavailable",
        }
    }
}

impl From<IngressError> for ApiError {
    fn from(e: IngressError) -> Self {
        let (status, code) = match &e {
            IngressError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, 41300),
            IngressError::Read(_) => (StatusCode::BAD_REQUEST, 40004),
            IngressError::Malformed(_) => (StatusCode::BAD_REQUEST, 40000),
            IngressError::Undecryptable(_) => (StatusCode::BAD_REQUEST, 40001),
            IngressError::DecryptedMalformed(_) => (StatusCode::BAD_REQUEST, 40001),
            IngressError::NoEncryptKey => (StatusCode::BAD_REQUEST, 40002),
            IngressError::AppMismatch(_) => (StatusCode::BAD_REQUEST, 40003),
            IngressError::MissingSignature => (StatusCode::UNAUTHORIZED, 40100),
            IngressError::BadSignature => (StatusCode::UNAUTHORIZED, 40101),
            IngressError::BadToken => (StatusCode::UNAUTHORIZED, 40102),
            IngressError::UnknownApp => (StatusCode::NOT_FOUND, 40400),
            IngressError::AppDisabled => (StatusCode::NOT_FOUND, 40401),
            IngressError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, 50300),
        };
        ApiError::new(status, code, e.to_string())
    }
}
