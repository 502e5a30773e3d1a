//! A stand-in for the Feishu (Lark) Open Platform, for tests, the demo and benchmarks.
//!
//! It serves Feishu's Open API paths under `/open-apis/` with Feishu's envelopes, id formats,
//! pagination, errors and rate limits, pushes events to apps' request URLs, and offers a
//! control API under `/_emulator/` (and the same operations as Rust methods on [`Emulator`]).

pub mod api;
pub mod chat;
pub mod clock;
pub mod control;
pub mod emulator;
pub mod error;
pub mod export;
pub mod faults;
pub mod generate;
pub mod ids;
pub mod index;
pub mod limits;
pub mod mutate;
pub mod push;
pub mod runtime;
pub mod server;
pub mod state;
pub mod ws;

pub use emulator::Emulator;
pub use error::{ApiError, EmulatorError};
pub use export::Export;
pub use faults::{Fault, FaultKind};
pub use generate::{demo, GenerateSpec};
pub use mutate::{NewDepartment, NewUser, UserPatch};
pub use push::PushAttempt;
pub use server::RunningEmulator;
pub use state::{App, ContactScope, Department, Settings, State, Tenant, User};
pub use ws::{Subscription, WsSettings};
