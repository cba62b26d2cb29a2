//! Ten processes increment a shared counter: without a lock updates get lost, with the lock
//! the count is exact.
//!
//! Python: the tutorial's `func(val)` program (`val = Value('i', 0)`, ten processes doing
//! `val.value += 1` fifty times), then the same with `with lock: val.value += 1`.
//! `val.value += 1` is a read followed by a write, each under the value's lock but not
//! together, so two processes can read the same number and one increment is lost.
//! Run: `cargo run --release --example value_lock`

use std::hint::black_box;
use std::time::Instant;

use multiproc::{Event, Process, RawValue, Value};

const PROCESSES: u64 = 10;

/// Starts `PROCESSES` children running `body`, fires the start gun once all exist (so they
/// really run at the same time), and waits for them.
fn run_all(body: impl Fn() + Clone + Send + 'static) -> Result<(), Box<dyn std::error::Error>> {
    let gun = Event::new()?;
    let children: Vec<Process> = (0..PROCESSES)
        .map(|_| {
            let (gun, body) = (gun.clone(), body.clone());
            Process::new(move || {
                gun.wait();
                body();
            })
        })
        .collect();
    for c in &children {
        c.start()?;
    }
    gun.set();
    for c in &children {
        c.join()?;
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init(); // first: the fork server is made while the program is single-threaded
    // 1. No lock: a `RawValue` read with `load` and written with `store`, the two steps of
    //    Python's `val.value += 1`. Fifty increments per process finish long before the next
    //    process starts, so each process does many more to make the processes overlap.
    let increments = 200_000;
    let racy = RawValue::<u64>::new(0)?;
    let t = Instant::now();
    run_all({
        let racy = racy.clone();
        move || {
            for _ in 0..increments {
                let v = racy.load(); // read...
                racy.store(black_box(v) + 1); // ...write: another process may have written in between
            }
        }
    })?;
    let expected = PROCESSES * increments;
    let got = racy.load();
    println!("Without a lock: {PROCESSES} processes x {increments} increments of a RawValue");
    println!(
        "  expected {expected}, got {got}: {} updates lost ({:.0}%) in {:.0?}",
        expected - got,
        100.0 * (expected - got) as f64 / expected as f64,
        t.elapsed()
    );
    if got == expected {
        println!(
            "  (no update was lost this time: the processes did not overlap; with {} CPU(s) \
             they run one after the other)",
            multiproc::process_cpu_count()
        );
    }

    // 2. With the lock: Python's `with val.get_lock(): val.value += 1`. The guard keeps every
    //    other process out between the read and the write.
    let counter = Value::<u64>::new(0)?;
    run_all({
        let counter = counter.clone();
        move || {
            for _ in 0..50 {
                *counter.lock().expect("lock") += 1;
            }
        }
    })?;
    println!("With the lock: {PROCESSES} processes x 50 increments of a Value");
    println!("  expected {}, got {}", PROCESSES * 50, counter.load()?);

    // 3. The lock holds under the same contention that lost updates in 1.
    let counter = Value::<u64>::new(0)?;
    let t = Instant::now();
    run_all({
        let counter = counter.clone();
        move || {
            for _ in 0..increments {
                *counter.lock().expect("lock") += 1;
            }
        }
    })?;
    println!("With the lock: {PROCESSES} processes x {increments} increments of a Value");
    println!("  expected {expected}, got {} in {:.0?}", counter.load()?, t.elapsed());
    Ok(())
}
