//! `ProcessPoolExecutor`, `Future`, `as_completed` and `wait`: results and errors, cancellation
//! until a worker starts a task (P18), `shutdown(cancel_futures)`, callbacks, worker death in
//! both modes, `max_tasks_per_child` with fork (gh-115634), and every future resolving.
//!
//! Gated tasks spin on a flag in a `SharedPage` created before the executor (so the workers,
//! forked from the executor's fork server, have it at the same address).
#![allow(unsafe_code, clippy::undocumented_unsafe_blocks)]

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{SharedPage, TEST_LIMIT, eventually, watchdog};
use multiproc::{
    Future, PoolError, ProcessPoolExecutor, ReturnWhen, as_completed, wait_futures as wait,
};

fn at<T>(addr: usize) -> &'static T {
    unsafe { &*(addr as *const T) }
}

/// Flags 0..N in a page: `flag(page, i)` is the address of flag `i`.
struct Flags {
    page: Arc<SharedPage>,
}

/// Opens every gate when dropped. Declared after the executor, it is dropped before it, so a
/// failing test never leaves the executor's drop waiting for a gated task.
struct Opener(Arc<SharedPage>);

impl Drop for Opener {
    fn drop(&mut self) {
        for i in 0..16 {
            (unsafe { self.0.get::<AtomicU32>(4 * i) }).store(1, Ordering::Release);
        }
    }
}

impl Flags {
    fn new() -> Flags {
        Flags { page: Arc::new(SharedPage::new(4096)) }
    }
    fn opener(&self) -> Opener {
        Opener(self.page.clone())
    }
    fn addr(&self, i: usize) -> usize {
        (unsafe { self.page.get::<AtomicU32>(4 * i) }) as *const AtomicU32 as usize
    }
    fn set(&self, i: usize) {
        at::<AtomicU32>(self.addr(i)).store(1, Ordering::Release);
    }
    fn get(&self, i: usize) -> u32 {
        at::<AtomicU32>(self.addr(i)).load(Ordering::Acquire)
    }
}

/// Marks flag `started` (if non-zero address), then waits for flag `gate`; returns `value`.
fn gated((started, gate, value): (usize, usize, u64)) -> u64 {
    if started != 0 {
        at::<AtomicU32>(started).store(1, Ordering::Release);
    }
    while at::<AtomicU32>(gate).load(Ordering::Acquire) == 0 {
        std::thread::sleep(Duration::from_micros(200));
    }
    value
}

fn square(x: u64) -> u64 {
    x * x
}

fn fail_if_odd(x: u64) -> u64 {
    assert!(x.is_multiple_of(2), "odd: {x}");
    x
}

fn my_pid(_: ()) -> i32 {
    std::process::id() as i32
}

#[test]
fn submit_and_result() {
    let _w = watchdog(TEST_LIMIT);
    let ex = ProcessPoolExecutor::new(2).unwrap();
    for round in 0..10u64 {
        let fs: Vec<Future<u64>> =
            (0..20).map(|i| ex.submit(square, round * 100 + i).unwrap()).collect();
        for (i, f) in fs.iter().enumerate() {
            let x = round * 100 + i as u64;
            assert_eq!(f.result_timeout(Duration::from_secs(10)).unwrap(), x * x);
            assert_eq!(f.result_timeout(Duration::ZERO).unwrap(), x * x, "again");
            assert!(f.done() && !f.running() && !f.cancelled());
            assert!(f.exception().unwrap().is_none());
        }
    }
    let f = ex.submit(fail_if_odd, 3).unwrap();
    match f.exception().unwrap() {
        Some(PoolError::Panicked(p)) => assert_eq!(p.message(), "odd: 3"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(f.result(), Err(PoolError::Panicked(_))));
    let g = f.clone();
    drop(f);
    assert!(g.done());
    ex.shutdown(true, false).unwrap();
    assert!(matches!(ex.submit(square, 1), Err(PoolError::Shutdown)));
    assert_eq!(PoolError::Shutdown.to_string(), "cannot schedule new futures after shutdown");
}

#[test]
fn a_result_wait_times_out_and_the_future_stays_pending() {
    let _w = watchdog(TEST_LIMIT);
    let flags = Flags::new();
    let ex = ProcessPoolExecutor::new(1).unwrap();
    let _open = flags.opener();
    let f = ex.submit(gated, (0, flags.addr(0), 7)).unwrap();
    let t = Instant::now();
    assert!(matches!(f.result_timeout(Duration::from_millis(50)), Err(PoolError::Timeout)));
    assert!(t.elapsed() >= Duration::from_millis(50));
    assert!(matches!(f.exception_timeout(Duration::ZERO), Err(PoolError::Timeout)));
    flags.set(0);
    assert_eq!(f.result().unwrap(), 7);
}

#[test]
fn cancel_works_until_a_worker_starts_the_task() {
    let _w = watchdog(TEST_LIMIT);
    for _ in 0..10 {
        let flags = Flags::new();
        let ex = ProcessPoolExecutor::new(1).unwrap();
        let _open = flags.opener();
        // The first task holds the only worker; the others are sent (pipelined) or queued.
        let first = ex.submit(gated, (flags.addr(1), flags.addr(0), 1)).unwrap();
        let rest: Vec<_> =
            (2..6).map(|v| ex.submit(gated, (0, flags.addr(0), v)).unwrap()).collect();
        assert!(eventually(Duration::from_secs(10), || first.running()));
        // running() became true when the worker claimed the task, just before running it.
        assert!(eventually(Duration::from_secs(10), || flags.get(1) == 1));
        assert!(!first.cancel(), "a running task cannot be cancelled");
        // P18: not running, cancellable, whether or not it was already sent to the worker.
        for f in &rest {
            assert!(!f.running());
        }
        assert!(rest[0].cancel() && rest[2].cancel());
        assert!(rest[0].cancelled() && rest[0].done());
        assert!(rest[0].cancel(), "cancelling twice still says cancelled");
        assert!(matches!(rest[0].result(), Err(PoolError::Cancelled)));
        assert!(matches!(rest[0].exception(), Err(PoolError::Cancelled)));
        flags.set(0);
        assert_eq!(first.result().unwrap(), 1);
        assert_eq!(rest[1].result().unwrap(), 3);
        assert_eq!(rest[3].result().unwrap(), 5);
        assert!(matches!(rest[2].result(), Err(PoolError::Cancelled)));
        assert!(!rest[1].cancel() && !rest[1].cancelled());
    }
}

#[test]
fn shutdown_with_cancel_futures_cancels_what_has_not_started() {
    let _w = watchdog(TEST_LIMIT);
    for _ in 0..10 {
        let flags = Flags::new();
        let ex = ProcessPoolExecutor::new(1).unwrap();
        let _open = flags.opener();
        let fs: Vec<_> = (0..5)
            .map(|v| {
                ex.submit(gated, (if v == 0 { flags.addr(1) } else { 0 }, flags.addr(0), v))
                    .unwrap()
            })
            .collect();
        assert!(eventually(Duration::from_secs(10), || fs[0].running()));
        ex.shutdown(false, true).unwrap();
        // Python leaves two uncancelled (the running one and one in its call queue); here only
        // the running one is.
        let cancelled: Vec<bool> = fs.iter().map(Future::cancelled).collect();
        assert_eq!(cancelled, [false, true, true, true, true]);
        flags.set(0);
        assert_eq!(fs[0].result().unwrap(), 0);
        ex.shutdown(true, false).unwrap();
        assert!(ex.worker_pids().is_empty());
    }
}

#[test]
fn done_callbacks_run_in_order_and_at_once_when_done() {
    let _w = watchdog(TEST_LIMIT);
    let flags = Flags::new();
    let flags2 = Flags::new();
    let ex = ProcessPoolExecutor::new(1).unwrap();
    let _open = flags.opener();
    let _open2 = flags2.opener();
    let log = Arc::new(Mutex::new(Vec::new()));
    let f = ex.submit(gated, (0, flags.addr(0), 11)).unwrap();
    for i in 0..3 {
        let log = log.clone();
        f.add_done_callback(move |fut: &Future<u64>| {
            log.lock().unwrap().push((i, fut.result_timeout(Duration::ZERO).unwrap()));
        });
    }
    assert!(log.lock().unwrap().is_empty());
    flags.set(0);
    f.result().unwrap();
    assert_eq!(*log.lock().unwrap(), [(0, 11), (1, 11), (2, 11)]);
    let l2 = log.clone();
    f.add_done_callback(move |_| l2.lock().unwrap().push((3, 0)));
    assert_eq!(log.lock().unwrap().len(), 4, "ran immediately");
    // A panicking callback does not poison anything.
    let g = ex.submit(square, 2).unwrap();
    g.add_done_callback(|_| panic!("callback panics"));
    assert_eq!(g.result().unwrap(), 4);
    // A cancelled future runs its callbacks too.
    let busy = ex.submit(gated, (flags2.addr(1), flags2.addr(0), 0)).unwrap();
    assert!(eventually(Duration::from_secs(10), || busy.running()));
    let h = ex.submit(gated, (0, flags2.addr(0), 0)).unwrap();
    let seen = Arc::new(AtomicU32::new(0));
    let s = seen.clone();
    h.add_done_callback(move |fut| s.store(if fut.cancelled() { 1 } else { 2 }, Ordering::SeqCst));
    assert!(h.cancel(), "the only worker is busy: h has not started");
    assert_eq!(seen.load(Ordering::SeqCst), 1, "the callback ran, seeing a cancelled future");
    flags2.set(0);
    assert_eq!(busy.result().unwrap(), 0);
}

#[test]
fn as_completed_yields_finished_ones_first_then_in_completion_order() {
    let _w = watchdog(TEST_LIMIT);
    for _ in 0..10 {
        let flags = Flags::new();
        let ex = ProcessPoolExecutor::new(3).unwrap();
        let _open = flags.opener();
        let done0 = ex.submit(square, 3).unwrap();
        done0.result().unwrap();
        let a = ex.submit(gated, (0, flags.addr(0), 100)).unwrap();
        let b = ex.submit(gated, (0, flags.addr(1), 200)).unwrap();
        let fs = vec![a.clone(), done0.clone(), b.clone(), done0.clone()];
        let mut it = as_completed(&fs, Some(Duration::from_secs(10)));
        // Already finished first (and duplicates once).
        assert_eq!(it.next().unwrap().unwrap().result().unwrap(), 9);
        flags.set(1);
        assert_eq!(it.next().unwrap().unwrap().result().unwrap(), 200);
        flags.set(0);
        assert_eq!(it.next().unwrap().unwrap().result().unwrap(), 100);
        assert!(it.next().is_none());
    }
    // Timeout: "N (of M) futures unfinished".
    let flags = Flags::new();
    let ex = ProcessPoolExecutor::new(2).unwrap();
    let _open = flags.opener();
    let fs: Vec<_> = vec![
        ex.submit(square, 2).unwrap(),
        ex.submit(gated, (0, flags.addr(0), 1)).unwrap(),
        ex.submit(gated, (0, flags.addr(0), 2)).unwrap(),
    ];
    fs[0].result().unwrap();
    let t = Instant::now();
    let got: Vec<_> = as_completed(&fs, Some(Duration::from_millis(100))).collect();
    assert!(t.elapsed() >= Duration::from_millis(100));
    assert_eq!(got.len(), 2);
    assert!(got[0].is_ok());
    match &got[1] {
        Err(e @ PoolError::Unfinished { unfinished: 2, total: 3 }) => {
            assert_eq!(e.to_string(), "2 (of 3) futures unfinished")
        }
        other => panic!("{other:?}"),
    }
    flags.set(0);
}

#[test]
fn wait_behaves_like_concurrent_futures_wait() {
    let _w = watchdog(TEST_LIMIT);
    for _ in 0..10 {
        let flags = Flags::new();
        let ex = ProcessPoolExecutor::new(3).unwrap();
        let _open = flags.opener();
        let slow = ex.submit(gated, (0, flags.addr(0), 1)).unwrap();
        let quick = ex.submit(square, 4).unwrap();
        let fails = ex.submit(fail_if_odd, 5).unwrap();
        let fs = vec![slow.clone(), quick.clone(), fails.clone(), quick.clone()];

        let r = wait(&fs, Some(Duration::from_secs(10)), ReturnWhen::FirstCompleted).unwrap();
        assert!(!r.done.is_empty() && r.done.len() + r.not_done.len() == 3);
        assert!(r.not_done.iter().any(|f| !f.done()));

        let r = wait(&fs, Some(Duration::from_secs(10)), ReturnWhen::FirstException).unwrap();
        assert!(r.done.iter().any(|f| matches!(f.exception_timeout(Duration::ZERO), Ok(Some(_)))));
        assert!(r.not_done.iter().any(|f| !f.done()), "the gated one is not done");
        assert!(r.not_done.len() <= 2);

        let t = Instant::now();
        let r = wait(&fs, Some(Duration::from_millis(50)), ReturnWhen::AllCompleted).unwrap();
        assert!(t.elapsed() >= Duration::from_millis(50));
        assert_eq!((r.done.len(), r.not_done.len()), (2, 1), "a timeout returns the partial sets");

        flags.set(0);
        let r = wait(&fs, None, ReturnWhen::AllCompleted).unwrap();
        assert_eq!((r.done.len(), r.not_done.len()), (3, 0));
        // FIRST_EXCEPTION with no exception acts as ALL_COMPLETED; cancelled is not an exception.
        let ok: Vec<_> = (0..3).map(|i| ex.submit(square, i).unwrap()).collect();
        let r = wait(&ok, None, ReturnWhen::FirstException).unwrap();
        assert_eq!(r.done.len(), 3);
    }
}

#[test]
fn map_is_ordered_lazy_and_times_out_from_the_call() {
    let _w = watchdog(TEST_LIMIT);
    let flags = Flags::new();
    let ex = ProcessPoolExecutor::new(2).unwrap();
    let _open = flags.opener();
    for cs in [1, 5, 100] {
        let got: Vec<u64> = ex.map(square, 0..300, cs, None).unwrap().map(Result::unwrap).collect();
        assert_eq!(got, (0..300u64).map(|x| x * x).collect::<Vec<_>>());
    }
    let first: Vec<u64> =
        ex.map(square, 0u64.., 1, None).unwrap().take(5).map(Result::unwrap).collect();
    assert_eq!(first, [0, 1, 4, 9, 16]);
    let items: Vec<_> = ex.map(fail_if_odd, 0..4, 1, None).unwrap().collect();
    assert!(items[0].is_ok() && items[1].is_err() && items[2].is_ok() && items[3].is_err());
    assert!(matches!(
        ex.map(square, 0..1, 0, None),
        Err(PoolError::InvalidArgument("chunksize must be >= 1."))
    ));
    let t = Instant::now();
    let mut it = ex
        .map(
            gated,
            vec![(0, flags.addr(1), 1), (0, flags.addr(0), 2)],
            1,
            Some(Duration::from_millis(80)),
        )
        .unwrap();
    flags.set(1);
    assert_eq!(it.next().unwrap().unwrap(), 1);
    assert!(matches!(it.next(), Some(Err(PoolError::Timeout))));
    assert!(t.elapsed() >= Duration::from_millis(80));
    assert!(it.next().is_none(), "the iteration ends after a timeout");
    flags.set(0);
}

#[test]
fn max_tasks_per_child_works_with_fork() {
    let _w = watchdog(TEST_LIMIT);
    // gh-115634: one worker, max_tasks_per_child = 2, ten tasks.
    for _ in 0..10 {
        let ex =
            ProcessPoolExecutor::builder().max_workers(1).max_tasks_per_child(2).build().unwrap();
        let fs: Vec<_> = (0..10).map(|_| ex.submit(my_pid, ()).unwrap()).collect();
        let pids: Vec<i32> =
            fs.iter().map(|f| f.result_timeout(Duration::from_secs(10)).unwrap()).collect();
        assert_eq!(pids.iter().collect::<HashSet<_>>().len(), 5, "{pids:?}");
        for pair in pids.chunks(2) {
            assert_eq!(pair[0], pair[1]);
        }
    }
    assert!(matches!(
        ProcessPoolExecutor::builder().max_tasks_per_child(0).build(),
        Err(PoolError::InvalidArgument("max_tasks_per_child must be >= 1"))
    ));
    assert!(matches!(
        ProcessPoolExecutor::new(0),
        Err(PoolError::InvalidArgument("max_workers must be greater than 0"))
    ));
}

fn publish_pid_and_spin(addr: usize) -> u64 {
    at::<AtomicI32>(addr).store(std::process::id() as i32, Ordering::SeqCst);
    loop {
        std::thread::sleep(Duration::from_micros(100));
    }
}

#[test]
fn a_dead_worker_fails_only_its_future_by_default() {
    let _w = watchdog(Duration::from_secs(60));
    let page = SharedPage::new(4096);
    let addr = (unsafe { page.get::<AtomicI32>(0) }) as *const AtomicI32 as usize;
    let slot = at::<AtomicI32>(addr);
    let ex = ProcessPoolExecutor::new(2).unwrap();
    for round in 0..30u64 {
        slot.store(0, Ordering::SeqCst);
        let victim = ex.submit(publish_pid_and_spin, addr).unwrap();
        let others: Vec<_> = (0..6).map(|i| ex.submit(square, round + i).unwrap()).collect();
        assert!(eventually(Duration::from_secs(10), || {
            let _ = victim.done();
            slot.load(Ordering::SeqCst) != 0
        }));
        let pid = slot.load(Ordering::SeqCst);
        unsafe { libc::kill(pid, libc::SIGKILL) };
        match victim.result_timeout(Duration::from_secs(10)) {
            Err(PoolError::WorkerLost { pid: p, exitcode: Some(-9) }) => {
                assert_eq!(p.as_raw_nonzero().get(), pid)
            }
            other => panic!("{other:?}"),
        }
        for (i, f) in others.iter().enumerate() {
            let x = round + i as u64;
            assert_eq!(f.result_timeout(Duration::from_secs(10)).unwrap(), x * x);
        }
    }
}

#[test]
fn break_on_worker_death_gives_python_broken_process_pool() {
    let _w = watchdog(TEST_LIMIT);
    for _ in 0..10 {
        let page = SharedPage::new(4096);
        let flags = Flags::new();
        let addr = (unsafe { page.get::<AtomicI32>(0) }) as *const AtomicI32 as usize;
        let ex = ProcessPoolExecutor::builder()
            .max_workers(2)
            .break_on_worker_death(true)
            .build()
            .unwrap();
        let _open = flags.opener();
        let victim = ex.submit(publish_pid_and_spin, addr).unwrap();
        let pending: Vec<_> =
            (0..4).map(|v| ex.submit(gated, (0, flags.addr(0), v)).unwrap()).collect();
        assert!(eventually(Duration::from_secs(10), || {
            let _ = victim.done();
            at::<AtomicI32>(addr).load(Ordering::SeqCst) != 0
        }));
        unsafe { libc::kill(at::<AtomicI32>(addr).load(Ordering::SeqCst), libc::SIGKILL) };
        match victim.result_timeout(Duration::from_secs(10)) {
            Err(PoolError::BrokenPool(msg)) => {
                assert!(msg.contains("terminated abruptly"), "{msg}")
            }
            other => panic!("{other:?}"),
        }
        // Every future resolves: the pending ones fail too, and later submits are refused.
        for f in &pending {
            assert!(matches!(
                f.result_timeout(Duration::from_secs(10)),
                Err(PoolError::BrokenPool(_))
            ));
        }
        match ex.submit(square, 1) {
            Err(PoolError::BrokenPool(msg)) => assert_eq!(
                msg,
                "A child process terminated abruptly, the process pool is not usable anymore"
            ),
            other => panic!("{other:?}"),
        }
        flags.set(0);
        ex.shutdown(true, false).unwrap();
    }
}

/// Python 3.14's `terminate_workers`: running and pending futures fail at once, the workers
/// are gone, and later submissions are refused.
#[test]
fn terminate_workers_fails_running_futures_and_stops_the_workers() {
    let _w = watchdog(TEST_LIMIT);
    let page = SharedPage::new(4096);
    let addr = (unsafe { page.get::<AtomicI32>(0) }) as *const AtomicI32 as usize;
    let ex = ProcessPoolExecutor::new(1).unwrap();
    let running = ex.submit(publish_pid_and_spin, addr).unwrap();
    let pending = ex.submit(square, 3).unwrap();
    assert!(eventually(TEST_LIMIT, || {
        let _ = running.done();
        at::<AtomicI32>(addr).load(Ordering::SeqCst) != 0
    }));
    let worker = at::<AtomicI32>(addr).load(Ordering::SeqCst);
    let start = Instant::now();
    ex.terminate_workers().unwrap();
    assert!(start.elapsed() < Duration::from_secs(10), "took {:?}", start.elapsed());
    assert!(matches!(running.result_timeout(Duration::ZERO), Err(PoolError::Terminated)));
    assert!(matches!(pending.result_timeout(Duration::ZERO), Err(PoolError::Terminated)));
    // The worker was reaped: its pid no longer names a process (or a recycled one, not ours).
    let stat = std::fs::read_to_string(format!("/proc/{worker}/stat")).unwrap_or_default();
    assert!(!stat.contains("executor"), "worker {worker} is still there: {stat}");
    assert!(ex.worker_pids().is_empty());
    assert!(ex.submit(square, 4).is_err());
    ex.terminate_workers().unwrap(); // again: nothing to do
}

#[test]
fn a_failing_initializer_breaks_the_executor() {
    let _w = watchdog(TEST_LIMIT);
    let ex = ProcessPoolExecutor::builder()
        .max_workers(2)
        .initializer(|| Err::<(), _>("bad config"))
        .build()
        .unwrap();
    let f = ex.submit(square, 1).unwrap();
    assert!(
        matches!(f.result_timeout(Duration::from_secs(10)), Err(PoolError::InitializerFailed(m)) if m == "bad config")
    );
    assert!(matches!(ex.submit(square, 1), Err(PoolError::InitializerFailed(_))));
}

#[test]
fn dropping_the_executor_waits_for_its_futures() {
    let _w = watchdog(TEST_LIMIT);
    for _ in 0..10 {
        let fs: Vec<Future<u64>>;
        {
            let ex = ProcessPoolExecutor::new(2).unwrap();
            fs = (0..50).map(|i| ex.submit(square, i).unwrap()).collect();
        }
        for (i, f) in fs.iter().enumerate() {
            assert!(f.done());
            assert_eq!(f.result_timeout(Duration::ZERO).unwrap(), (i * i) as u64);
        }
    }
}

#[test]
fn futures_from_two_executors_can_be_waited_on_together() {
    let _w = watchdog(TEST_LIMIT);
    let a = ProcessPoolExecutor::new(1).unwrap();
    let b = ProcessPoolExecutor::new(1).unwrap();
    let fs = vec![a.submit(square, 2).unwrap(), b.submit(square, 3).unwrap()];
    let r = wait(&fs, Some(Duration::from_secs(10)), ReturnWhen::AllCompleted).unwrap();
    assert_eq!(r.done.len(), 2);
    let sum: u64 = as_completed(&fs, None).map(|f| f.unwrap().result().unwrap()).sum();
    assert_eq!(sum, 13);
}

#[test]
fn tutorial_as_completed() {
    let _w = watchdog(TEST_LIMIT);
    // The tutorial's ThreadPoolExecutor(5) example, with processes: five calls, printed as they
    // complete.
    fn return_after(num: u32) -> String {
        std::thread::sleep(Duration::from_millis(u64::from(5 - num) * 10));
        format!("Return of {num}")
    }
    let ex = ProcessPoolExecutor::new(5).unwrap();
    let fs: Vec<_> = (0..5).map(|x| ex.submit(return_after, x).unwrap()).collect();
    let mut got: Vec<String> =
        as_completed(&fs, None).map(|f| f.unwrap().result().unwrap()).collect();
    got.sort();
    assert_eq!(got, (0..5).map(|x| format!("Return of {x}")).collect::<Vec<_>>());
}
