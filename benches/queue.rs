//! `cargo bench --bench queue`: the cases are in `workloads/queue.rs`. `cargo bench --bench
//! side_by_side` runs every bench file and ends with one merged table.
#![allow(unsafe_code, clippy::undocumented_unsafe_blocks)]

mod common;
#[path = "workloads/queue.rs"]
mod queue;

fn main() {
    queue::run();
}
