//! The core conformance suite against the real dockerd.

mod common;

libgo_core::conformance_tests!(common::conformance_setup);
