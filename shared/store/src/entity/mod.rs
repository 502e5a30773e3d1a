//! sea-orm entities.

pub mod app_activity;
pub mod app_binding;
pub mod auth_login_state;
pub mod auth_refresh_token;
pub mod auth_session;
pub mod auth_signing_key;
pub mod console_audit;
pub mod console_install_run;
pub mod department;
pub mod key_check;
pub mod membership;
pub mod outbox;
pub mod processed_event;
pub mod sync_run;
pub mod user;
