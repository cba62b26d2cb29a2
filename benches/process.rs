//! `cargo bench --bench process`: the cases are in `workloads/process.rs`. `cargo bench --bench
//! side_by_side` runs every bench file and ends with one merged table.
#![allow(unsafe_code, clippy::undocumented_unsafe_blocks)]

mod common;
#[path = "workloads/process.rs"]
mod process;

fn main() {
    process::run();
}
