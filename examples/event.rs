//! Two processes wait for an `Event`: one with no timeout, one with a timeout shorter than the
//! time the main process takes to set it.
//!
//! Python: the tutorial's `wait_for_event(e)` / `wait_for_event_timeout(e, t)` program (from
//! PyMOTW): `e.wait()` and `e.wait(2)`, while the main process sleeps 3 seconds before
//! `e.set()`. Here the times are halved.
//! Run: `cargo run --example event`

use std::time::{Duration, Instant};

use multiproc::{Event, ProcessBuilder};

/// Python: `wait_for_event(e)`: blocks until the event is set.
fn wait_for_event(e: &Event, start: Instant) {
    println!("wait_for_event: starting");
    e.wait();
    println!(
        "wait_for_event: wait() returned after {:.1?}, e.is_set() -> {}",
        start.elapsed(),
        e.is_set()
    );
}

/// Python: `wait_for_event_timeout(e, t)`: gives up after `t`.
fn wait_for_event_timeout(e: &Event, t: Duration, start: Instant) {
    println!("wait_for_event_timeout: starting");
    let woken = e.wait_timeout(t);
    println!(
        "wait_for_event_timeout: wait({t:?}) returned {woken} after {:.1?}, e.is_set() -> {}",
        start.elapsed(),
        e.is_set()
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init(); // first: the fork server is made while the program is single-threaded
    let e = Event::new()?;
    let start = Instant::now();
    let w1 = {
        let e = e.clone();
        ProcessBuilder::new().name("block").spawn(move || wait_for_event(&e, start))?
    };
    let w2 = {
        let e = e.clone();
        ProcessBuilder::new()
            .name("nonblock")
            .spawn(move || wait_for_event_timeout(&e, Duration::from_secs(1), start))?
    };
    println!("main: waiting before calling Event.set()");
    std::thread::sleep(Duration::from_millis(1500));
    e.set();
    println!("main: event is set (after {:.1?})", start.elapsed());
    w1.join()?;
    w2.join()?;
    Ok(())
}
