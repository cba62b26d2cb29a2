//! `cargo bench --bench pool`: the cases are in `workloads/pool.rs`. `cargo bench --bench
//! side_by_side` runs every bench file and ends with one merged table.
#![allow(unsafe_code, clippy::undocumented_unsafe_blocks)]

mod common;
#[path = "workloads/pool.rs"]
mod pool;

// `spawn` runs a fresh copy of this binary, which `init` turns into the child before `main`;
// `init` also makes the fork server.
multiproc::init_before_main!();

fn main() {
    // `init` made `forkserver` the default; the existing rows compare with Python's `fork`.
    multiproc::set_start_method(multiproc::StartMethod::Fork, false).unwrap();
    pool::run();
}
