//! Two "downloads" run one after the other, then in two processes at once.
//!
//! Python: `Process(target=download_task, args=(filename,))`, `start()`, `join()`.
//! Run: `cargo run --example downloads`

use std::time::{Duration, Instant};

use multiproc::Process;

/// Pretends to download a file: sleeps for a pseudo-random time and returns it.
fn download_task(filename: &str, seed: u64) -> Duration {
    println!("[pid {}] downloading {filename}...", std::process::id());
    let took = Duration::from_millis(300 + (seed * 7919) % 400);
    std::thread::sleep(took);
    println!("[pid {}] {filename} done in {took:.2?}", std::process::id());
    took
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init(); // first: the fork server is made while the program is single-threaded
    let files: [&'static str; 2] = ["Python-from-beginner-to-hospital.pdf", "Peking-Hot.avi"];

    let start = Instant::now();
    for (i, f) in files.iter().enumerate() {
        download_task(f, i as u64);
    }
    let sequential = start.elapsed();
    println!("sequential: {sequential:.2?}\n");

    let start = Instant::now();
    let procs: Vec<Process<Duration>> = files
        .iter()
        .enumerate()
        .map(|(i, &f)| Process::new(move || download_task(f, i as u64)))
        .collect();
    for p in &procs {
        p.start()?;
    }
    for p in &procs {
        p.join()?; // each child's Duration comes back through join
    }
    let parallel = start.elapsed();
    println!(
        "in two processes: {parallel:.2?} ({:.1}x faster)",
        sequential.as_secs_f64() / parallel.as_secs_f64()
    );
    Ok(())
}
