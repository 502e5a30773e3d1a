//! Integration tests: the emulator started in-process on port 0 and driven with reqwest.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod helpers;

mod auth;
mod contact;
