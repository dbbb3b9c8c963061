//! # libgo-http
//!
//! The LibGo REST server: one HTTP API for KVM virtual machines and Docker containers, over
//! the [`libgo_core::LibGo`] facade (the server never talks to an engine directly).
//!
//! - JSON under `/api/v1/…`; JWT from `POST /login` (`Authorization: Bearer`) or `X-API-Key`;
//!   roles `admin`, `operator`, `viewer`, decided from the route before the body is read.
//! - Every error is `{"status", "code", "message"}`, with `"field"` when it is about one
//!   field of the request; lists are `{items, count, page,
//!   pageSize}`.
//! - Long work (pull, build, push, export, batches) runs as tasks: `202` + `Location`.
//! - WebSockets for events, stats, consoles and VNC; Prometheus at `/metrics`; OpenAPI at
//!   `/openapi.json` and Swagger UI at `/swagger/index.html`.
//! - Users, API keys, tasks and the audit log live in SQLite (or PostgreSQL) through sqlx.
//!
//! Layers: [`db`] stores; [`accounts`] (roles, scopes, passwords, keys), [`users`] (users,
//! sessions, API keys, the audit log) and [`tasks`] are services that know no HTTP and
//! answer [`libgo_core::Error`]; [`routes`], [`auth`] and
//! [`error`] turn requests into calls and errors into `{status, code, message}`; [`metrics`]
//! renders from the health, the facade and the store it is handed, not the server state.
//!
//! The `libgo-server` binary wraps this library (`libgo-server serve`). Embedding it:
//!
//! ```no_run
//! use std::sync::Arc;
//! use libgo_http::{Config, Server};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let mut config = Config::default();
//! config.data_dir = "/tmp/libgo-demo".into();
//! let libgo = Arc::new(libgo_core::LibGo::new());
//! let server = Server::new(config, libgo).await?;
//! server.attach_backends(libgo_http::backends::from_config(&server.state().config)?);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! server.serve(listener, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod accounts;
pub mod addresses;
pub mod alerts;
pub mod auth;
pub mod backends;
pub mod config;
pub mod db;
pub mod error;
pub mod events;
pub mod extract;
pub mod history;
pub mod hosts_sync;
pub mod metrics;
pub mod middleware;
pub mod openapi;
pub mod ratelimit;
pub mod routes;
pub mod server;
pub mod spool;
pub mod state;
pub mod tasks;
pub mod tenancy;
pub mod users;
pub mod web;
pub mod webhooks;

pub use config::Config;
pub use error::{ApiError, ErrorBody};
pub use server::{BackendSpec, Server, StartError, build_router, openapi};
pub use state::AppState;
