//! `cargo bench --bench pool`: the cases are in `workloads/pool.rs`. `cargo bench --bench
//! side_by_side` runs every bench file and ends with one merged table.
#![allow(unsafe_code, clippy::undocumented_unsafe_blocks)]

mod common;
#[path = "workloads/pool.rs"]
mod pool;

fn main() {
    pool::run();
}
