//! sea-orm entities.

pub mod app_binding;
pub mod department;
pub mod key_check;
pub mod membership;
pub mod notification;
pub mod notification_batch;
pub mod notification_recipient;
pub mod outbox;
pub mod processed_event;
pub mod sync_run;
pub mod user;
