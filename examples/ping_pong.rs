//! Ping/Pong: two processes run the same function over a "global" counter, and each prints ten
//! lines: a forked child gets a *copy* of the parent's memory, so nothing is shared unless you
//! share it (with a `Value`, a `Queue`, a `Pipe`...).
//!
//! Python: the tutorial's `counter = 0` / `sub_task(string)` program.
//! Run: `cargo run --example ping_pong`

use std::sync::atomic::{AtomicU32, Ordering};

use multiproc::Process;

/// The "global" counter of the Python program.
static COUNTER: AtomicU32 = AtomicU32::new(0);

fn sub_task(word: &'static str) -> u32 {
    while COUNTER.load(Ordering::Relaxed) < 10 {
        print!("{word} ");
        COUNTER.fetch_add(1, Ordering::Relaxed);
    }
    COUNTER.load(Ordering::Relaxed)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init(); // first: the fork server is made while the program is single-threaded
    let ping = Process::new(|| sub_task("Ping"));
    let pong = Process::new(|| sub_task("Pong"));
    ping.start()?;
    pong.start()?;
    let (a, b) = (ping.join()?, pong.join()?);
    println!();
    println!("Ping's process counted to {a}, Pong's to {b}: each had its own copy of COUNTER.");
    println!("The parent's COUNTER is still {}.", COUNTER.load(Ordering::Relaxed));
    Ok(())
}
