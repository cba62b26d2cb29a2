//! Test support shared by the `tests/*.rs` files: the same fork helper and watchdog as the
//! `multiproc-sys` tests (one file, used by both crates), built on `libc` directly so a bug in
//! the crate under test cannot hide itself by breaking its own harness.
#![allow(dead_code, unused_imports)]

#[path = "../../sys/tests/common/mod.rs"]
mod harness;
pub mod net;

pub use harness::*;
