//! `cargo bench --bench process`: the cases are in `workloads/process.rs`. `cargo bench --bench
//! side_by_side` runs every bench file and ends with one merged table.
#![allow(unsafe_code, clippy::undocumented_unsafe_blocks)]

mod common;
#[path = "workloads/process.rs"]
mod process;

// `spawn` runs a fresh copy of this binary, which `init` turns into the child before `main`;
// `init` also makes the fork server.
multiproc::init_before_main!();

fn main() {
    // `init` made `forkserver` the default; the existing rows compare with Python's `fork`.
    multiproc::set_start_method(multiproc::StartMethod::Fork, false).unwrap();
    process::run();
}
