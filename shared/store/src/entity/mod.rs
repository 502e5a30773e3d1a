//! sea-orm entities.

pub mod app_binding;
pub mod key_check;
