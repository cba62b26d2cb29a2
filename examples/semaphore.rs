//! Five processes share two places guarded by a `Semaphore(2)`: at most two are inside at once.
//!
//! Python: the tutorial's `go_wc(sem, user)` program: `sem = Semaphore(2)`, five processes
//! doing `sem.acquire()`, a random sleep, `sem.release()`.
//! Run: `cargo run --example semaphore`

use std::time::{Duration, Instant};

use multiproc::{Process, RawValue, Semaphore};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init(); // first: the fork server is made while the program is single-threaded
    let sem = Semaphore::new(2)?;
    let inside = RawValue::<u32>::new(0)?; // how many processes hold a permit right now
    let most = RawValue::<u32>::new(0)?; // the most there ever were
    let start = Instant::now(); // CLOCK_MONOTONIC: the same clock in every process

    let users: Vec<Process> = (0..5u64)
        .map(|i| {
            let (sem, inside, most) = (sem.clone(), inside.clone(), most.clone());
            Process::new(move || {
                let user = format!("user{i}");
                let permit = sem.guard().expect("acquire"); // Python: sem.acquire()
                let now = inside.fetch_add(1) + 1;
                most.fetch_max(now);
                println!("{:>4}ms  {user} is in ({now} inside)", start.elapsed().as_millis());
                // Python: time.sleep(random.randint(0, 3)), here 0..=3 tenths of a second.
                std::thread::sleep(Duration::from_millis((i * 7 + 3) % 4 * 100));
                inside.fetch_sub(1);
                println!("{:>4}ms  {user} OK, leaving", start.elapsed().as_millis());
                permit.release().expect("release"); // Python: sem.release()
            })
        })
        .collect();
    for u in &users {
        u.start()?;
    }
    for u in &users {
        u.join()?;
    }
    println!(
        "At most {} of the 5 processes were inside at once; value now {}.",
        most.load(),
        sem.get_value()
    );
    Ok(())
}
