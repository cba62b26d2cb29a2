//! Every workload of DESIGN.md §5 in one run: multiproc, the raw-syscall baseline written in the
//! bench, and Python's `multiprocessing` (when `python3` is on the PATH; a printed note and an
//! empty column when not). Each bench file prints its detailed tables as it goes; this ends with
//! one table of medians and ratios and writes it as a bar chart to
//! `target/side_by_side.svg`.
//!
//! Run with `cargo bench --bench side_by_side` (2–3 minutes on 2 quiet CPUs;
//! `MULTIPROC_BENCH_QUICK=1` for a rougher run in about 1 minute).
#![allow(unsafe_code, clippy::undocumented_unsafe_blocks)]

mod common;
#[path = "workloads/listener.rs"]
mod listener;
#[path = "workloads/manager.rs"]
mod manager;
#[path = "workloads/pipe.rs"]
mod pipe;
#[path = "workloads/pool.rs"]
mod pool;
#[path = "workloads/process.rs"]
mod process;
#[path = "workloads/queue.rs"]
mod queue;
#[path = "workloads/sync.rs"]
mod sync;

use std::path::PathBuf;
use std::time::Instant;

// `spawn` runs a fresh copy of this binary, which `init` turns into the child before `main`;
// `init` also makes the fork server.
multiproc::init_before_main!();

fn main() {
    // `init` made `forkserver` the default; the rows without a start method in their name
    // compare with Python's `fork`, as before.
    multiproc::set_start_method(multiproc::StartMethod::Fork, false).unwrap();
    let start = Instant::now();
    println!(
        "# multiproc side by side: {} CPUs, {}, {}",
        multiproc::cpu_count(),
        std::env::consts::ARCH,
        if common::quick() { "quick run (rough)" } else { "full run" }
    );
    // Pool first: its creation is timed while this process is small (fork cost grows with the
    // parent's memory, and the later files map large buffers).
    pool::run();
    process::run();
    pipe::run();
    listener::run();
    manager::run();
    sync::run();
    queue::run();

    let lines = common::headlines();
    common::print_side_by_side(&lines);
    // `target/` beside the workspace's Cargo.toml (cargo runs benches from the package root).
    let dir =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
    let svg = dir.join("side_by_side.svg");
    match common::write_svg(&lines, &svg) {
        Ok(()) => println!("chart: {}", svg.display()),
        Err(e) => println!("note: could not write {}: {e}", svg.display()),
    }
    println!("total time: {:.0} s", start.elapsed().as_secs_f64());
}
