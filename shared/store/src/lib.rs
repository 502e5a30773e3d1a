//! Persistence: the database connection, sea-orm migrations (PostgreSQL and SQLite), secret
//! encryption at rest, and the app bindings with a cached lookup that notices changes.

pub mod apps;
pub mod db;
pub mod entity;
pub mod lease;
pub mod migration;
pub mod secrets;

pub use apps::{AppBinding, AppRegistry, Delivery, Domain};
pub use db::connect;
pub use secrets::{MasterKey, SecretError};
