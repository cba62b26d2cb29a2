//! A writer process puts 'A', 'B', 'C' into a `Queue`; a reader process takes them out.
//!
//! Python: the tutorial's `write(q)` / `read(q)` program with `Queue()`, `q.put(value)`,
//! `q.get(True)`, `pw.join()` and `pr.terminate()`.
//! Run: `cargo run --example queue_writer_reader`

use std::time::{Duration, Instant};

use multiproc::{GetError, Process, Queue};

/// Puts three letters into the queue, pausing a little between them (Python: `write(q)`).
fn write(q: Queue<char>) {
    println!("Process to write: {}", std::process::id());
    for (i, value) in ['A', 'B', 'C'].into_iter().enumerate() {
        println!("Put {value} to queue...");
        q.put(value).expect("put");
        // Python sleeps `random.random()` seconds; a fixed, shorter pause keeps this quick.
        std::thread::sleep(Duration::from_millis(100 + 97 * i as u64));
    }
}

/// Takes letters out of the queue until it is closed (Python: `read(q)`, a `while True` loop).
fn read(q: Queue<char>, start: Instant) -> usize {
    println!("Process to read: {}", std::process::id());
    let mut got = 0;
    loop {
        match q.get() {
            Ok(value) => {
                got += 1;
                println!("Get {value} from queue. ({:.0?} after the start)", start.elapsed());
            }
            Err(GetError::Closed) => return got, // closed and drained: nothing more will come
            Err(e) => panic!("get: {e}"),
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init(); // first: the fork server is made while the program is single-threaded
    let q: Queue<char> = Queue::new()?;
    let start = Instant::now();
    let pw = Process::new({
        let q = q.clone();
        move || write(q)
    });
    let pr = Process::new({
        let q = q.clone();
        move || read(q, start)
    });
    pw.start()?;
    pr.start()?;
    pw.join()?; // wait for the writer to finish

    // Python's reader loops forever, so the tutorial ends it with `pr.terminate()`, which may
    // kill it before it has printed the last letter. Closing the queue instead lets the reader
    // take what is left, then see `GetError::Closed` and return.
    q.close();
    let got = pr.join()?;
    println!("The reader got {got} letters and ended by itself (exit code {:?}).", pr.exitcode());
    Ok(())
}
