//! Start methods (`fork`, `forkserver`, `spawn`): Python's API semantics, function processes and
//! pools under each method, and the fork-safety promise: with other threads panicking and
//! holding locks, `forkserver` and `spawn` children never hang.
//!
//! `init_before_main!` makes the fork server before the test harness starts its threads, and
//! lets `spawn`ed copies of this binary take over before the harness runs.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{TEST_LIMIT, watchdog};
use multiproc::{
    Context, ContextError, JoinError, PoolError, StartMethod, get_all_start_methods, get_context,
    get_start_method,
};

multiproc::init_before_main!();

const METHODS: [StartMethod; 3] = [StartMethod::Fork, StartMethod::Forkserver, StartMethod::Spawn];
const WAIT: Duration = Duration::from_secs(20);

fn square(x: u64) -> u64 {
    x * x
}

fn fails(x: u32) -> u32 {
    if x % 2 == 1 {
        panic!("odd input {x}");
    }
    x / 2
}

/// [`fails`], for children of a clean process only: it goes through std's default hook (which
/// takes its backtrace lock) without the seconds that symbolising a debug build's backtrace
/// costs under `RUST_BACKTRACE=1` (the style is read once, at the first panic of a process).
fn fails_fast(x: u32) -> u32 {
    // SAFETY: the children of the fork server and of spawn run this on their only thread.
    unsafe { std::env::set_var("RUST_BACKTRACE", "0") };
    fails(x)
}

fn whoami(_: ()) -> (u32, u32) {
    (
        std::process::id(),
        multiproc::sys::process::parent::getppid().map_or(0, |p| p.as_raw_nonzero().get() as u32),
    )
}

fn threads(_: ()) -> usize {
    multiproc::thread_count().unwrap_or(0)
}

#[test]
fn python_names_and_errors() {
    assert_eq!(StartMethod::Forkserver.to_string(), "forkserver");
    assert_eq!("spawn".parse::<StartMethod>(), Ok(StartMethod::Spawn));
    let err = get_context("bogus").unwrap_err();
    assert_eq!(err, ContextError::UnknownMethod("bogus".into()));
    assert_eq!(err.to_string(), "cannot find context for \"bogus\"");
    // init ran before main: the default is forkserver, listed first, as in Python 3.14.
    assert_eq!(get_start_method(), StartMethod::Forkserver);
    let all = get_all_start_methods();
    assert_eq!(all[0], StartMethod::Forkserver);
    assert_eq!(all.len(), 3);
    assert_eq!(Context::default().start_method(), get_start_method());
    for m in METHODS {
        assert_eq!(get_context(m.name()).unwrap().start_method(), m);
    }
}

#[test]
fn function_processes_return_values_under_every_method() {
    let _w = watchdog(TEST_LIMIT);
    for m in METHODS {
        let ctx = Context::new(m);
        let p = ctx.process(square, 12);
        p.start().unwrap_or_else(|e| panic!("{m}: {e}"));
        assert_eq!(p.join_timeout(WAIT).unwrap(), 144, "{m}");
        assert_eq!(p.exitcode(), Some(0), "{m}");

        let p = ctx.process(fails, 3);
        p.start().unwrap();
        match p.join_timeout(WAIT) {
            Err(JoinError::Panicked(msg)) => assert_eq!(msg, "odd input 3", "{m}"),
            other => panic!("{m}: {other:?}"),
        }
        assert_eq!(p.exitcode(), Some(1), "{m}");
        assert!(matches!(p.start(), Err(multiproc::StartError::AlreadyStarted)));
    }
}

#[test]
fn children_come_from_where_the_method_says() {
    let _w = watchdog(TEST_LIMIT);
    let me = std::process::id();
    for m in METHODS {
        let p = Context::new(m).process(whoami, ());
        p.start().unwrap();
        let (pid, ppid) = p.join_timeout(WAIT).unwrap();
        assert_eq!(pid, p.pid().unwrap().as_raw_nonzero().get() as u32, "{m}");
        match m {
            // The fork server is this process's child, and the process its child.
            StartMethod::Forkserver => assert_ne!(ppid, me, "{m}"),
            _ => assert_eq!(ppid, me, "{m}"),
        }
        // Clean children start with one thread whatever this process has.
        let p = Context::new(m).process(threads, ());
        p.start().unwrap();
        assert_eq!(p.join_timeout(WAIT).unwrap(), 1, "{m}");
    }
}

/// A child forked from this process (start method `fork`) does not hold this process's fork
/// server (the crate closes its request socket there) and makes its own on first use.
#[test]
fn a_forked_child_uses_a_fork_server_of_its_own() {
    let _w = watchdog(TEST_LIMIT);
    let child = multiproc::Process::new(|| -> u64 {
        let p = Context::new(StartMethod::Forkserver).process(square, 4);
        p.start().unwrap();
        p.join_timeout(Duration::from_secs(10)).unwrap()
    });
    child.start().unwrap();
    assert_eq!(child.join_timeout(WAIT).unwrap(), 16);
}

#[test]
fn pools_and_executors_under_every_method() {
    let _w = watchdog(TEST_LIMIT);
    for m in METHODS {
        let ctx = Context::new(m);
        let pool = ctx.pool(2).unwrap();
        assert_eq!(pool.map(square, 1..=5u64).unwrap(), [1, 4, 9, 16, 25], "{m}");
        let r = pool.map(fails, [0u32, 1]);
        assert!(
            matches!(r, Err(PoolError::Panicked(ref p)) if p.message() == "odd input 1"),
            "{m}: {r:?}"
        );
        pool.close().unwrap();
        pool.join_timeout(WAIT).unwrap();

        let ex = ctx.executor(1).unwrap();
        assert_eq!(ex.submit(square, 9).unwrap().result_timeout(WAIT).unwrap(), 81, "{m}");
        ex.shutdown(true, false).unwrap();
    }
}

#[test]
fn closures_need_fork_when_a_method_is_explicit() {
    let mut b = Context::new(StartMethod::Spawn).pool_builder().processes(1);
    let _task = b.register(|x: u32| x + 1);
    assert!(matches!(b.build(), Err(PoolError::InvalidArgument(_))));
    // Under the default method a pool with closures is forked, and works.
    let offset = 7u32;
    let mut b = multiproc::Pool::builder().processes(1);
    let add = b.register(move |x: u32| x + offset);
    let pool = b.build().unwrap();
    assert_eq!(pool.apply(add, 1).unwrap(), 8);
}

#[test]
fn spawn_from_eight_busy_threads() {
    let _w = watchdog(TEST_LIMIT);
    let stop = Arc::new(AtomicBool::new(false));
    let lock = Arc::new(Mutex::new(Vec::<u64>::new()));
    let busy: Vec<_> = (0..8)
        .map(|i| {
            let (stop, lock) = (stop.clone(), lock.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let mut v = lock.lock().unwrap();
                    v.push(i);
                    v.truncate(64);
                    print!("");
                    eprint!("");
                }
            })
        })
        .collect();
    assert!(multiproc::thread_count().unwrap() >= 9);
    let ctx = Context::new(StartMethod::Spawn);
    let kids: Vec<_> = (0..8u64).map(|i| ctx.process(square, i)).collect();
    for k in &kids {
        k.start().unwrap();
    }
    let got: Vec<u64> = kids.iter().map(|k| k.join_timeout(WAIT).unwrap()).collect();
    assert_eq!(got, (0..8u64).map(square).collect::<Vec<_>>());
    stop.store(true, Ordering::Relaxed);
    for t in busy {
        t.join().unwrap();
    }
}

/// One thread panics nonstop and another holds and releases a `Mutex` and prints in a loop,
/// while this one makes pools whose tasks panic: every wait is bounded, no task may hang.
fn hammer(method: StartMethod, rounds: usize) {
    let stop = Arc::new(AtomicBool::new(false));
    let lock = Arc::new(Mutex::new(0u64));
    let mut noise = Vec::new();
    {
        let stop = stop.clone();
        noise.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let _ = std::panic::catch_unwind(|| panic!("background panic"));
            }
        }));
    }
    for _ in 0..4 {
        let (stop, lock) = (stop.clone(), lock.clone());
        noise.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                *lock.lock().unwrap() += 1;
                eprint!("");
            }
        }));
    }
    let ctx = Context::new(method);
    // A fork child must not take the environment lock: another thread may hold it.
    let work: fn(u32) -> u32 = if method == StartMethod::Fork { fails } else { fails_fast };
    let mut stuck = 0;
    for _ in 0..rounds {
        let pool = ctx.pool(1).unwrap();
        match pool.map_async(work, [1u32, 2], None).unwrap().get_timeout(Duration::from_secs(5)) {
            Err(PoolError::Panicked(_)) => {}
            Err(PoolError::Timeout) => stuck += 1,
            other => panic!("{method}: {other:?}"),
        }
        pool.terminate().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for t in noise {
        t.join().unwrap();
    }
    assert_eq!(stuck, 0, "{method}: {stuck} of {rounds} rounds stuck");
}

#[test]
fn forkserver_pools_never_hang_beside_panicking_threads() {
    let _w = watchdog(Duration::from_secs(120));
    hammer(StartMethod::Forkserver, 200);
}

#[test]
fn spawn_pools_never_hang_beside_panicking_threads() {
    let _w = watchdog(Duration::from_secs(120));
    hammer(StartMethod::Spawn, 200);
}

/// `fork` from this multithreaded process: the crate's own child code (the pool server, the
/// worker, the panic report) takes no lock another thread may hold.
#[test]
fn fork_pools_never_hang_beside_panicking_threads() {
    let _w = watchdog(Duration::from_secs(120));
    hammer(StartMethod::Fork, 200);
}
