//! `init` called when the program already has threads (here: one started before it): no fork
//! server can be forked cleanly then, so the first `forkserver` start makes one by `spawn`, and
//! everything works as with an early `init`. Its own `main` (`harness = false`): the spawned
//! copies of this binary must reach `init` before anything else runs.

use std::sync::mpsc;
use std::time::Duration;

use multiproc::{Context, StartMethod};

fn square(x: u64) -> u64 {
    x * x
}

fn main() {
    // A thread that exists before `init`, as a logger's or a runtime's would.
    let (stop, stopped) = mpsc::channel::<()>();
    let busy = std::thread::spawn(
        move || while stopped.recv_timeout(Duration::from_millis(1)).is_err() {},
    );
    multiproc::init();

    // Watchdog: a deadlock fails in seconds instead of hanging CI.
    let (done, finished) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        if finished.recv_timeout(Duration::from_secs(60)).is_err() {
            eprintln!("late_init: still running after 60 s: deadlock; aborting");
            std::process::abort();
        }
    });

    assert!(multiproc::thread_count().unwrap() > 1);
    assert_eq!(multiproc::get_start_method(), StartMethod::Forkserver);
    let ctx = Context::new(StartMethod::Forkserver);
    let p = ctx.process(square, 6);
    p.start().expect("a fork server made by spawn starts the process");
    assert_eq!(p.join_timeout(Duration::from_secs(20)).unwrap(), 36);
    let pool = ctx.pool(2).unwrap();
    assert_eq!(pool.map(square, [1u64, 2, 3]).unwrap(), [1, 4, 9]);
    drop(pool);

    stop.send(()).unwrap();
    busy.join().unwrap();
    done.send(()).unwrap();
    println!("late_init: 2 passed, 0 failed");
}
