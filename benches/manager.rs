//! `cargo bench --bench manager`: the cases are in `workloads/manager.rs`. `cargo bench
//! --bench side_by_side` runs every bench file and ends with one merged table.
#![allow(unsafe_code, clippy::undocumented_unsafe_blocks)]

mod common;
#[path = "workloads/manager.rs"]
mod manager;

fn main() {
    manager::run();
}
