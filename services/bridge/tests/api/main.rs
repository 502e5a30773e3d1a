//! Integration tests: the process started exactly as production starts it (in-process, on a
//! free port), against real PostgreSQL and RabbitMQ.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod auth;
mod browser;
mod console;
mod directory;
mod helpers;
mod ingress;
mod longconn;
mod notifier;
mod outage;
mod process;
mod store;
