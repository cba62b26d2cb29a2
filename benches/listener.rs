//! `cargo bench --bench listener`: the cases are in `workloads/listener.rs`. `cargo bench
//! --bench side_by_side` runs every bench file and ends with one merged table.
#![allow(unsafe_code, clippy::undocumented_unsafe_blocks)]

mod common;
#[path = "workloads/listener.rs"]
mod listener;

fn main() {
    listener::run();
}
