//! Integration tests: the process started exactly as production starts it (in-process, on a
//! free port), against real PostgreSQL and RabbitMQ.

mod helpers;
mod ingress;
mod outage;
mod process;
mod store;
