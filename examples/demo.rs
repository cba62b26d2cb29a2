//! The main demo: what multiproc gives you, in a few seconds.
//!
//! 1. The tutorials' headline program: the sum of 1..=100 000 000, first in one process, then
//!    split over 8 worker processes pinned to CPUs, released together by a start-gun `Event`,
//!    sending their partial sums and timings back through a `Queue`.
//! 2. A short tour: a shared `Value` with and without its lock, a lock whose holder is killed,
//!    a `Semaphore`, a `Barrier`, a `Pipe`, and exit codes as Python reports them.
//!
//! Run: `cargo run --release --example demo`

use std::hint::black_box;
use std::time::{Duration, Instant};

use multiproc::{
    AcquireError, Barrier, Event, JoinError, Lock, Process, ProcessBuilder, Queue, RawValue,
    Semaphore, Value, current_process, pipe, process_cpu_count,
};

const N: u64 = 100_000_000;
const WORKERS: u64 = 8;

/// Sums `lo..=hi` one number at a time (`black_box` keeps the compiler from using the closed
/// form, so this is the loop the tutorial times).
fn sum_range(lo: u64, hi: u64) -> u64 {
    let mut total = 0u64;
    for x in lo..=hi {
        total += black_box(x);
    }
    total
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    multiproc::init(); // first: the fork server is made while the program is single-threaded
    println!("multiproc demo: Python's multiprocessing, in Rust ({})\n", current_process().name);
    headline()?;
    tour()?;
    Ok(())
}

fn headline() -> Result<(), Box<dyn std::error::Error>> {
    let cpus = process_cpu_count();
    println!("1. Sum of 1..={N}");

    let start = Instant::now();
    let total = sum_range(1, N);
    let sequential = start.elapsed();
    println!("   one process:          {total} in {sequential:>9.2?}");

    // Python: Queue(), Event(), Process(target=task_handler, args=(..., cpu_id)), start().
    let results: Queue<(u64, u64, u64, Duration)> = Queue::new()?; // (worker, cpu, sum, time)
    let start_gun = Event::new()?;
    let chunk = N / WORKERS;
    let mut workers = Vec::new();
    for i in 0..WORKERS {
        let cpu = (i as usize) % cpus;
        let (results, start_gun) = (results.clone(), start_gun.clone());
        let lo = i * chunk + 1;
        let hi = if i == WORKERS - 1 { N } else { (i + 1) * chunk };
        let p = ProcessBuilder::new().name(format!("summer-{i}")).cpu(cpu).spawn(move || {
            start_gun.wait(); // every worker starts at the same moment
            let t = Instant::now();
            let sum = sum_range(lo, hi);
            let cpu_now = multiproc::sys::affinity::sched_getcpu().unwrap_or(cpu) as u64;
            results.put((i, cpu_now, sum, t.elapsed())).expect("queue put");
        })?;
        workers.push(p);
    }
    let start = Instant::now();
    start_gun.set();
    let mut total = 0u64;
    for _ in 0..WORKERS {
        let (i, cpu, sum, took) = results.get_timeout(Duration::from_secs(60))?;
        println!("   worker {i} on CPU {cpu}:     {sum:>16} in {took:>9.2?}");
        total += sum;
    }
    let parallel = start.elapsed();
    for w in &workers {
        w.join()?;
    }
    println!(
        "   {WORKERS} processes, {cpus} CPUs:  {total} in {parallel:>9.2?}  speed-up {:.2}x {}",
        sequential.as_secs_f64() / parallel.as_secs_f64(),
        if total == N * (N + 1) / 2 { "(correct)" } else { "(WRONG)" }
    );
    println!();
    Ok(())
}

fn tour() -> Result<(), Box<dyn std::error::Error>> {
    println!("2. A short tour");

    // Value without the lock: `v.value += 1` is a read and a write, so updates get lost.
    let racy = RawValue::<u64>::new(0)?;
    let gate = Event::new()?;
    let children = (0..10)
        .map(|_| {
            let (racy, gate) = (racy.clone(), gate.clone());
            Process::new(move || {
                gate.wait();
                for _ in 0..50_000 {
                    let v = racy.load(); // read ...
                    std::hint::spin_loop();
                    racy.store(v + 1); // ... then write: another process may have written between
                }
            })
        })
        .collect::<Vec<_>>();
    for c in &children {
        c.start()?;
    }
    gate.set();
    for c in &children {
        c.join()?;
    }
    println!(
        "   10 x 50 000 unlocked increments of a RawValue: {} (updates were lost)",
        racy.load()
    );

    // Value with its lock: Python's `with v.get_lock(): v.value += 1`.
    let counter = Value::<u64>::new(0)?;
    let children = (0..10)
        .map(|_| {
            let counter = counter.clone();
            Process::new(move || {
                for _ in 0..50 {
                    *counter.lock().expect("lock") += 1;
                }
            })
        })
        .collect::<Vec<_>>();
    for c in &children {
        c.start()?;
    }
    for c in &children {
        c.join()?;
    }
    println!("   10 x 50 locked increments of a Value:         {}", counter.load()?);

    // A robust lock: the holder is SIGKILLed, and the next acquirer is told, not hung.
    let lock = Lock::new()?;
    let held = Event::new()?;
    let holder = {
        let (lock, held) = (lock.clone(), held.clone());
        Process::new(move || {
            let _guard = lock.lock().expect("lock");
            held.set();
            std::thread::sleep(Duration::from_secs(60)); // killed long before this ends
        })
    };
    holder.start()?;
    held.wait();
    holder.kill()?;
    let _ = holder.join();
    match lock.lock_timeout(Duration::from_secs(5)) {
        Err(AcquireError::OwnerDied(_guard)) => {
            println!(
                "   Lock holder killed (exit code {:?}): next acquire reports OwnerDied, lock still works",
                holder.exitcode()
            )
        }
        Ok(_) => println!("   Lock acquired (unexpected: the holder's death went unnoticed)"),
        Err(e) => println!("   Lock: {e}"),
    }

    // Semaphore(2): at most two of five processes inside at once.
    let sem = Semaphore::new(2)?;
    let inside = RawValue::<u32>::new(0)?;
    let most = RawValue::<u32>::new(0)?;
    let children = (0..5)
        .map(|_| {
            let (sem, inside, most) = (sem.clone(), inside.clone(), most.clone());
            Process::new(move || {
                let _permit = sem.guard().expect("acquire");
                let now = inside.fetch_add(1) + 1;
                most.fetch_max(now);
                std::thread::sleep(Duration::from_millis(20));
                inside.fetch_sub(1);
            })
        })
        .collect::<Vec<_>>();
    for c in &children {
        c.start()?;
    }
    for c in &children {
        c.join()?;
    }
    println!("   Semaphore(2), 5 processes: at most {} inside at once", most.load());

    // Barrier(3): three processes meet, each gets its arrival index.
    let barrier = Barrier::new(3)?;
    let children = (0..3)
        .map(|_| {
            let barrier = barrier.clone();
            Process::new(move || barrier.wait().expect("barrier") as u64)
        })
        .collect::<Vec<_>>();
    for c in &children {
        c.start()?;
    }
    let mut indices = children.iter().map(|c| c.join()).collect::<Result<Vec<_>, _>>()?;
    indices.sort();
    println!("   Barrier(3): arrival indices {indices:?}");

    // Pipe: a greeting and a reply.
    let (here, there) = pipe(true)?;
    let child = Process::new(move || {
        let name: String = there.recv().expect("recv");
        there.send(&format!("hello, {name}!")).expect("send");
    });
    child.start()?;
    here.send("parent")?;
    let reply: String = here.recv()?;
    child.join()?;
    println!("   Pipe: sent \"parent\", child replied {reply:?}");

    // Exit codes, as Python reports them: 1 after a panic (with its message), -9 after SIGKILL.
    // Said first: the child's own panic report (and backtrace) comes next, on stderr.
    println!("   next, a child that panics on purpose; its panic report follows:");
    std::io::Write::flush(&mut std::io::stdout())?;
    let panicker = Process::new(|| -> u32 { panic!("something went wrong in the child") });
    panicker.start()?;
    if let Err(JoinError::Panicked(msg)) = panicker.join() {
        println!("   a panicking child: exit code {:?}, message {msg:?}", panicker.exitcode());
    }
    let sleeper = Process::new(|| std::thread::sleep(Duration::from_secs(60)));
    sleeper.start()?;
    sleeper.kill()?;
    let _ = sleeper.join();
    println!("   a killed child: exit code {:?}", sleeper.exitcode());
    Ok(())
}
