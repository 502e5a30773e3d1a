//! The schema, as ordered migrations that run on PostgreSQL and SQLite.

use sea_orm_migration::prelude::*;

mod m20261124_000001_app_bindings;
mod m20261124_000002_directory;
mod m20261124_000003_auth;
mod m20261124_000004_notifier;
mod m20261124_000005_delivery_mode;
mod m20261124_000006_console;
mod m20261125_000007_outbox_pending;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261124_000001_app_bindings::Migration),
            Box::new(m20261124_000002_directory::Migration),
            Box::new(m20261124_000003_auth::Migration),
            Box::new(m20261124_000004_notifier::Migration),
            Box::new(m20261124_000005_delivery_mode::Migration),
            Box::new(m20261124_000006_console::Migration),
            Box::new(m20261125_000007_outbox_pending::Migration),
        ]
    }
}
