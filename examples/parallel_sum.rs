//! The sum of 1..=100 000 000, first in one process, then split over 8 worker processes, each
//! pinned to a CPU and started together by an `Event`, sending its partial sum and timing back
//! through a `Queue`.
//!
//! Python: the tutorial's `task_handler(curr_list, result_queue, start_event, cpu_id)` program
//! (`psutil.Process().cpu_affinity([cpu_id])`, `start_event.wait()`, `result_queue.put((total,
//! start_time, end_time, cpu_id))`). The main demo (`cargo run --release --example demo`) opens
//! with the same computation.
//! Run: `cargo run --release --example parallel_sum`

use std::hint::black_box;
use std::time::{Duration, Instant};

use multiproc::sys::affinity::{sched_getaffinity, sched_getcpu};
use multiproc::{Event, ProcessBuilder, Queue};

const N: u64 = 100_000_000;
const PROCESSES: u64 = 8;

/// Sums `lo..=hi` one number at a time (`black_box` keeps the compiler from replacing the loop
/// with the closed form `n(n+1)/2`).
fn sum_range(lo: u64, hi: u64) -> u64 {
    let mut total = 0u64;
    for x in lo..=hi {
        total += black_box(x);
    }
    total
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init(); // first: the fork server is made while the program is single-threaded
    let t = Instant::now();
    let total = sum_range(1, N);
    let sequential = t.elapsed();
    println!("One process: {total} in {:.3} s\n", sequential.as_secs_f64());

    // The CPUs this program may run on (Python: psutil.cpu_count()); worker i gets the
    // (i mod count)-th of them.
    let cpus: Vec<usize> = sched_getaffinity(None)?.iter().collect();
    // (partial sum, CPU it ran on, time it took)
    let result_queue: Queue<(u64, u64, Duration)> = Queue::new()?;
    let start_event = Event::new()?;
    let chunk = N / PROCESSES;
    let mut processes = Vec::new();
    for i in 0..PROCESSES {
        let cpu_id = cpus[i as usize % cpus.len()];
        let (result_queue, start_event) = (result_queue.clone(), start_event.clone());
        let (lo, hi) = (i * chunk + 1, if i == PROCESSES - 1 { N } else { (i + 1) * chunk });
        // Python: psutil.Process().cpu_affinity([cpu_id]) in the child; here the builder pins
        // the child before the closure runs.
        let p = ProcessBuilder::new().cpu(cpu_id).spawn(move || {
            start_event.wait(); // wait for the start signal from the main process
            let start_time = Instant::now();
            let subtotal = sum_range(lo, hi);
            let took = start_time.elapsed();
            let ran_on = sched_getcpu().unwrap_or(cpu_id) as u64;
            result_queue.put((subtotal, ran_on, took)).expect("put");
        })?;
        processes.push(p);
    }

    let start = Instant::now();
    start_event.set(); // every worker starts now
    for p in &processes {
        p.join()?;
    }
    let mut total = 0;
    for _ in 0..PROCESSES {
        let (subtotal, cpu_id, took) = result_queue.get_timeout(Duration::from_secs(10))?;
        total += subtotal;
        println!("Process on CPU {cpu_id} took: {:.3} seconds", took.as_secs_f64());
    }
    let parallel = start.elapsed();
    if PROCESSES as usize > cpus.len() {
        println!(
            "({PROCESSES} processes on {} CPUs: each one's time includes waiting for its turn)",
            cpus.len()
        );
    }
    println!("{total} {}", if total == N * (N + 1) / 2 { "(correct)" } else { "(WRONG)" });
    println!(
        "Total execution time: {:.3} s with {PROCESSES} processes on {} CPU(s), {:.2}x the speed of one process",
        parallel.as_secs_f64(),
        cpus.len(),
        sequential.as_secs_f64() / parallel.as_secs_f64()
    );
    Ok(())
}
