//! Producer/consumer with a `JoinableQueue`: the consumer calls `task_done` for each item, and
//! the producer's `join` returns once every item it put has been processed.
//!
//! Python: the tutorial's `consumer(q)` (a daemon process looping on `q.get()` and
//! `q.task_done()`) and `producer(seq, q)` (puts five products, then `q.join()`).
//! Run: `cargo run --example joinable_queue`

use std::time::{Duration, Instant};

use multiproc::{JoinableQueue, ProcessBuilder};

/// Python: `while True: res = q.get(); print(...); q.task_done()`.
fn consumer(q: JoinableQueue<String>) {
    loop {
        let res = q.get().expect("get");
        println!("  consumer got {res}");
        std::thread::sleep(Duration::from_millis(50)); // processing takes a moment
        q.task_done().expect("task_done");
    }
}

/// Python: puts each item, then `q.join()` waits until the consumer has marked all of them done.
fn producer(seq: impl Iterator<Item = String>, q: &JoinableQueue<String>) {
    for item in seq {
        std::thread::sleep(Duration::from_millis(100)); // Python: time.sleep(1)
        println!("producer made {item}");
        q.put(item).expect("put");
    }
    let t = Instant::now();
    q.join().expect("join");
    println!(
        "producer: join() returned after {:.0?}: all items processed ({} unfinished)",
        t.elapsed(),
        q.unfinished_tasks()
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init(); // first: the fork server is made while the program is single-threaded
    let q: JoinableQueue<String> = JoinableQueue::new()?;
    let seq = (0..5).map(|i| format!("product {i}"));

    // A daemon, as in Python: it loops forever, and dies with the main process.
    let c = {
        let q = q.clone();
        ProcessBuilder::new().name("consumer").daemon(true).spawn(move || consumer(q))?
    };
    producer(seq, &q);
    println!("main: done; the consumer is still waiting in get(): alive = {}", c.is_alive());
    // Python terminates daemon children at exit; dropping `c` would kill it too. Explicitly:
    c.terminate()?;
    let _ = c.join(); // Err(Signaled): it had no value to return
    println!("main: terminated the daemon consumer (exit code {:?})", c.exitcode());
    Ok(())
}
