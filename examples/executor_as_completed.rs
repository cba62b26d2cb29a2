//! Five calls submitted to a `ProcessPoolExecutor` come back through `as_completed` in the
//! order they finish, not the order they were submitted.
//!
//! Python: the tutorial's `return_after_5_secs(num)` program: `pool.submit(...)` five times,
//! then `for x in as_completed(futures): print(x.result())`. The tutorial uses a
//! `ThreadPoolExecutor(5)` and sleeps 1 to 5 seconds; here it is a `ProcessPoolExecutor(5)`
//! (same interface) and tenths of a second.
//! Run: `cargo run --example executor_as_completed`

use std::time::{Duration, Instant};

use multiproc::{ProcessPoolExecutor, as_completed};

/// Python: `sleep(randint(1, 5)); return "Return of {}".format(num)`.
fn return_after_a_while(num: u64) -> String {
    let tenths = (num * 3 + 2) % 5 + 1; // a shuffled 1..=5
    std::thread::sleep(Duration::from_millis(100 * tenths));
    format!("Return of {num} (slept {tenths}/10 s in process {})", std::process::id())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init(); // first: the fork server is made while the program is single-threaded
    let pool = ProcessPoolExecutor::new(5)?;
    let start = Instant::now();
    let futures =
        (0..5).map(|x| pool.submit(return_after_a_while, x)).collect::<Result<Vec<_>, _>>()?;
    println!("1: submitted 5 calls, in the order 0, 1, 2, 3, 4");
    for f in as_completed(&futures, None) {
        println!("  at {:.1} s: {}", start.elapsed().as_secs_f64(), f?.result()?);
    }
    println!("2: all done");
    pool.shutdown(true, false)?; // Python: the end of `with ProcessPoolExecutor() as pool:`
    Ok(())
}
