//! A `Pool` of 4 worker processes runs 5 tasks: four start at once, the fifth waits for a free
//! worker. Then `map` over the same kind of pool.
//!
//! Python: the tutorial's `task(name)` program: `p = Pool(4)`, `p.apply_async(task,
//! args=(i,))` for `i` in 1..=5, `p.close()`, `p.join()`; and `pool.map(test, lists)`.
//! Run: `cargo run --example pool_map`

use std::time::{Duration, Instant, SystemTime};

use multiproc::Pool;

/// Python: `task(name)`: prints its pid, sleeps a random time (here under a second; the
/// tutorial's is under three), prints how long it took, and returns that time.
fn task(name: u32) -> Duration {
    println!("task {name} starts, in process {}", std::process::id());
    let start = Instant::now();
    let nanos =
        SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
    let random = (nanos ^ name.wrapping_mul(2_654_435_761)) % 1000; // a "random" 0..1000
    std::thread::sleep(Duration::from_millis(random.into()));
    let took = start.elapsed();
    println!("task {name} ends, took {:.2} s", took.as_secs_f64());
    took
}

fn square(x: u64) -> u64 {
    x * x
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init(); // first: the fork server is made while the program is single-threaded
    println!("main process: {}", std::process::id());
    println!("-----------------------------------");
    let p = Pool::new(4)?; // four worker processes
    let start = Instant::now();
    let results = (1..=5).map(|i| p.apply_async(task, i)).collect::<Result<Vec<_>, _>>()?;
    p.close()?; // no more tasks
    println!("waiting for the tasks...");
    p.join()?; // runs the submitted tasks to completion
    let busy: Duration = results.iter().map(|r| r.get()).sum::<Result<_, _>>()?;
    println!("-----------------------------------");
    println!(
        "all tasks done in {:.2} s ({:.2} s of sleeping spread over 4 workers); main process {}",
        start.elapsed().as_secs_f64(),
        busy.as_secs_f64(),
        std::process::id()
    );

    // Python: pool.map(f, iterable): the results in input order.
    let pool = Pool::new(4)?;
    println!("\nmap(square, 1..=10) = {:?}", pool.map(square, 1..=10u64)?);
    Ok(())
}
