//! # libgo-core
//!
//! One API for virtual machines and containers. This crate knows no engine: it holds the
//! types, the traits a backend implements ([`Compute`], [`Images`], [`Networks`],
//! [`Volumes`], bundled as [`Backend`]), the [`Error`] type, validation of specs, and the
//! [`LibGo`] facade that routes calls across named backends.
//!
//! Backends live in their own crates: `libgo-docker` (Docker, through bollard) and
//! `libgo-kvm` (libvirt); with the `memory` feature, [`memory::MemoryBackend`] keeps everything
//! in a map, for fast tests of code above the traits. With the `conformance` feature, the `conformance` module holds the test
//! suite every backend runs against its real engine.
//!
//! ```no_run
//! use std::sync::Arc;
//! use libgo_core::{DeleteOptions, InstanceSpec, LibGo, StopOptions};
//!
//! # async fn demo(docker: Arc<dyn libgo_core::Backend>) -> libgo_core::Result<()> {
//! let libgo = LibGo::new();
//! libgo.register(docker)?;
//! let mut spec = InstanceSpec::container("hello", "busybox:latest");
//! spec.command = vec!["sleep".into(), "60".into()];
//! let hello = libgo.create(&spec).await?;
//! libgo.start(&hello.id).await?;
//! libgo.stop("hello", StopOptions::default()).await?;
//! libgo.delete("hello", DeleteOptions::default()).await?;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod addresses;
mod backend;
mod error;
mod facade;
mod facade_failover;
mod facade_hosts;
pub mod hosts;
mod inventory;
mod types;
pub mod validate;

#[cfg(feature = "conformance")]
pub mod conformance;
#[cfg(feature = "memory")]
pub mod memory;

pub use addresses::{
    AddressAssignment, AddressNetwork, AddressPool, AddressPoolSpec, AddressRange, AddressRequest,
};
pub use backend::{
    Backend, BoxStream, ChangeCursor, Changes, Compute, ConsoleSession, ExecControl, ExecSession,
    Images, Networks, Volumes,
};
pub use error::{Error, ErrorKind, Result};
pub use facade::{LibGo, paginate, paginate_from_end};
pub use hosts::{
    ComputePool, ComputePoolSpec, EvacuateAction, EvacuateRequest, Host, HostMembership,
    HostResources, LOCAL_HOST, MigrateRequest, MigrationKind, MigrationReport, MigrationSpec,
    PoolStatus, ResourceUsage,
};
pub use types::*;
