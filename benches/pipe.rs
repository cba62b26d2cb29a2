//! `cargo bench --bench pipe`: the cases are in `workloads/pipe.rs`. `cargo bench --bench
//! side_by_side` runs every bench file and ends with one merged table.
#![allow(unsafe_code, clippy::undocumented_unsafe_blocks)]

mod common;
#[path = "workloads/pipe.rs"]
mod pipe;

fn main() {
    pipe::run();
}
