//! Five processes arrive one after the other at a `Barrier(3)`: the first three meet and go on
//! together; the last two can never be three, and their timeout gets them out.
//!
//! Python: the tutorial's `bar = threading.Barrier(3)` program with five `run()` workers
//! (`bar.wait()`, then "three have arrived"), here with processes and
//! `multiprocessing.Barrier`. In Python the last two wait forever and the program never ends.
//! Run: `cargo run --example barrier`

use std::time::{Duration, Instant};

use multiproc::{Barrier, BarrierError, ProcessBuilder, current_process};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init(); // first: the fork server is made while the program is single-threaded
    let bar = Barrier::with_action(3, || {
        println!("  (action, run by the last to arrive: three are here)")
    })?;
    let start = Instant::now();
    let workers = (0..5u64)
        .map(|i| {
            let bar = bar.clone();
            ProcessBuilder::new().name(format!("worker-{i}")).spawn(move || {
                // Arrive in order, one every 100 ms, so the output reads the same every time.
                std::thread::sleep(Duration::from_millis(100 * i));
                let me = current_process().name;
                println!("{me} arrives ({} already waiting)", bar.n_waiting());
                match bar.wait_timeout(Duration::from_secs(1)) {
                    Ok(index) => println!(
                        "{me} goes on at {:.1?}: arrival index {index} in its group of three",
                        start.elapsed()
                    ),
                    Err(BarrierError::Timeout) => println!(
                        "{me} gets Timeout at {:.1?}: its 1 s passed, and it broke the barrier",
                        start.elapsed()
                    ),
                    Err(BarrierError::Broken) => println!(
                        "{me} gets Broken at {:.1?}: another party's timeout broke the barrier",
                        start.elapsed()
                    ),
                    Err(e) => println!("{me}: {e}"),
                }
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    for w in &workers {
        w.join()?;
    }
    println!("Without a timeout, as in the Python program, the last two would wait forever.");
    print!("broken() = {}", bar.broken());
    bar.reset()?;
    println!("; after reset(), broken() = {}", bar.broken());
    Ok(())
}
