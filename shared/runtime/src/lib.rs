//! What every service shares at run time: typed layered settings, telemetry (JSON logs,
//! OpenTelemetry traces, Prometheus metrics), health and readiness, the HTTP server with
//! graceful shutdown, and the mapping of errors to HTTP answers.

pub mod error;
pub mod health;
pub mod meter;
pub mod server;
pub mod settings;
pub mod shutdown;
pub mod telemetry;

pub use error::ApiError;
pub use health::{Readiness, ReadinessCheck};
pub use server::{HttpServer, Mount};
pub use settings::Settings;
pub use shutdown::Shutdown;
