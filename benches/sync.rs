//! `cargo bench --bench sync`: the cases are in `workloads/sync.rs`. `cargo bench --bench
//! side_by_side` runs every bench file and ends with one merged table.
#![allow(unsafe_code, clippy::undocumented_unsafe_blocks)]

mod common;
#[path = "workloads/sync.rs"]
mod sync;

fn main() {
    sync::run();
}
