//! Integration tests: the emulator started in-process on port 0 and driven with reqwest.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod helpers;

mod application;
mod auth;
mod authen;
mod bench;
mod contact;
mod control;
mod events;
mod im;
mod limits;
mod longconn;
