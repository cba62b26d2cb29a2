//! `Pool`: results and ordering, errors, crash recovery (a worker killed mid-task fails exactly
//! that task), worker recycling, broken initializers, bounded terminate, task timeouts, and no
//! process left behind.
//!
//! Tasks reach shared state through a `SharedPage` created before the pool (every worker is a
//! fork of the process as it was when the pool was built, so the page is mapped at the same
//! address there); they receive its address as their argument.
#![allow(unsafe_code, clippy::undocumented_unsafe_blocks)]

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use common::{SharedPage, TEST_LIMIT, eventually, watchdog};
use multiproc::{Pid, Pool, PoolError, Process};

/// Tests that check "no process is left" take this exclusively; every other test shares it.
static EXCLUSIVE: RwLock<()> = RwLock::new(());

fn shared() -> std::sync::RwLockReadGuard<'static, ()> {
    EXCLUSIVE.read().unwrap_or_else(|e| e.into_inner())
}

/// A reference to a `T` at address `addr` (a `SharedPage` offset the test passed along).
fn at<T>(addr: usize) -> &'static T {
    unsafe { &*(addr as *const T) }
}

fn page_addr<T>(page: &SharedPage, offset: usize) -> usize {
    (unsafe { page.get::<T>(offset) }) as *const T as usize
}

fn square(x: u64) -> u64 {
    x * x
}

fn my_pid(_: ()) -> i32 {
    std::process::id() as i32
}

/// Spins until the flag at `addr` is non-zero (a "busy" task, released by the test).
fn wait_for_flag(addr: usize) {
    let flag: &AtomicU32 = at(addr);
    while flag.load(Ordering::Acquire) == 0 {
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// `(pid, start, end)` of a task, to check concurrency.
fn timed_task(addr: usize) -> (i32, u64) {
    let running: &AtomicU32 = at(addr);
    let max: &AtomicU32 = at(addr + 4);
    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
    max.fetch_max(now, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(30));
    running.fetch_sub(1, Ordering::SeqCst);
    (std::process::id() as i32, now as u64)
}

#[test]
fn tutorial_pool_of_four_runs_five_tasks() {
    let _x = shared();
    let _w = watchdog(TEST_LIMIT);
    // Python: p = Pool(4); for i in 1..=5: p.apply_async(task, (i,)); p.close(); p.join()
    let page = SharedPage::new(4096);
    let addr = page_addr::<AtomicU32>(&page, 0);
    let pool = Pool::new(4).unwrap();
    let results: Vec<_> = (1..=5).map(|_| pool.apply_async(timed_task, addr).unwrap()).collect();
    pool.close().unwrap();
    pool.join_timeout(Duration::from_secs(20)).unwrap();
    let mut pids = HashSet::new();
    for r in &results {
        assert!(r.ready());
        let (pid, _) = r.get_timeout(Duration::ZERO).unwrap();
        pids.insert(pid);
    }
    assert!(pids.len() <= 4, "more than 4 workers: {pids:?}");
    assert!(!pids.contains(&(std::process::id() as i32)));
    let max: &AtomicU32 = at(addr + 4);
    assert!(max.load(Ordering::SeqCst) <= 4);
    assert!(max.load(Ordering::SeqCst) >= 2, "the tasks never ran in parallel");
}

#[test]
fn map_returns_results_in_order_at_every_chunksize() {
    let _x = shared();
    let _w = watchdog(TEST_LIMIT);
    let pool = Pool::new(3).unwrap();
    let want: Vec<u64> = (0..2000u64).map(|x| x * x).collect();
    assert_eq!(pool.map(square, 0..2000).unwrap(), want);
    for cs in [1, 2, 7, 100, 1999, 2000, 5000] {
        assert_eq!(pool.map_chunksize(square, 0..2000, cs).unwrap(), want, "chunksize {cs}");
    }
    assert_eq!(pool.map(square, Vec::new()).unwrap(), Vec::<u64>::new());
    assert_eq!(pool.map(|x: u64| x + 1, 0..3).unwrap(), [1, 2, 3]);
    let f: fn(u64) -> u64 = square;
    assert_eq!(pool.map(f, 0..4).unwrap(), [0, 1, 4, 9]);
    assert!(matches!(pool.map_chunksize(square, 0..3, 0), Err(PoolError::InvalidArgument(_))));
    let r =
        pool.map_async(|s: String| s.len(), ["a", "bb", "ccc"].map(String::from), Some(2)).unwrap();
    assert_eq!(r.get().unwrap(), [1, 2, 3]);
    assert_eq!(r.get().unwrap(), [1, 2, 3], "a result can be fetched again");
    assert_eq!(pool.apply(|v: Vec<i32>| v.iter().sum::<i32>(), vec![1, -2, 30]).unwrap(), 29);
}

#[test]
fn starmap_spreads_tuples() {
    let _x = shared();
    let _w = watchdog(TEST_LIMIT);
    fn add(a: u64, b: u64) -> u64 {
        a + b
    }
    let pool = Pool::new(2).unwrap();
    let pairs: Vec<(u64, u64)> = (0..500).map(|i| (i, 2 * i)).collect();
    assert_eq!(
        pool.starmap(add, pairs.clone()).unwrap(),
        (0..500).map(|i| 3 * i).collect::<Vec<_>>()
    );
    assert_eq!(
        pool.starmap_chunksize(
            |a: u8, b: String, c: bool| format!("{a}{b}{c}"),
            [(1, "x".to_string(), true)],
            1
        )
        .unwrap(),
        ["1xtrue"]
    );
    let r = pool.starmap_async(|a: i32| a * 2, [(4,), (5,)], None).unwrap();
    assert_eq!(r.get().unwrap(), [8, 10]);
}

#[test]
fn imap_is_ordered_and_imap_unordered_returns_everything() {
    let _x = shared();
    let _w = watchdog(TEST_LIMIT);
    let pool = Pool::new(3).unwrap();
    for cs in [1, 3, 64] {
        let got: Vec<u64> = pool.imap(square, 0..1000, cs).unwrap().map(Result::unwrap).collect();
        assert_eq!(got, (0..1000u64).map(|x| x * x).collect::<Vec<_>>(), "chunksize {cs}");
        let mut got: Vec<u64> =
            pool.imap_unordered(square, 0..1000, cs).unwrap().map(Result::unwrap).collect();
        got.sort_unstable();
        assert_eq!(got, (0..1000u64).map(|x| x * x).collect::<Vec<_>>(), "chunksize {cs}");
    }
    assert!(pool.imap(square, 0..1, 0).is_err());
    assert_eq!(pool.imap(square, Vec::new(), 1).unwrap().count(), 0);
}

#[test]
fn imap_over_an_endless_iterator_is_lazy() {
    let _x = shared();
    let _w = watchdog(TEST_LIMIT);
    let pool = Pool::new(2).unwrap();
    for _ in 0..10 {
        let pulled = Arc::new(AtomicU64::new(0));
        let p = pulled.clone();
        let input = (0u64..).inspect(move |_| {
            p.fetch_add(1, Ordering::Relaxed);
        });
        let first: Vec<u64> =
            pool.imap(|x: u64| x * 3, input, 1).unwrap().take(10).map(Result::unwrap).collect();
        assert_eq!(first, (0..10).map(|x| x * 3).collect::<Vec<_>>());
        // Bounded read-ahead: about 2 × processes chunks beyond what was consumed.
        assert!(
            pulled.load(Ordering::Relaxed) <= 10 + 2 * 2 + 1,
            "read {} items",
            pulled.load(Ordering::Relaxed)
        );
    }
    // Unordered too, with chunks.
    let n =
        pool.imap_unordered(|x: u64| x, 0u64.., 4).unwrap().take(25).filter(Result::is_ok).count();
    assert_eq!(n, 25);
}

fn fails_on_odd(x: u32) -> u32 {
    if x % 2 == 1 {
        panic!("odd input {x}");
    }
    x
}

#[test]
fn task_errors_reach_the_caller_with_their_message() {
    let _x = shared();
    let _w = watchdog(TEST_LIMIT);
    let pool = Pool::new(2).unwrap();
    let pids_before = pool.apply(my_pid, ()).unwrap();
    match pool.apply(fails_on_odd, 7) {
        Err(PoolError::Panicked(p)) => assert_eq!(p.message(), "odd input 7"),
        other => panic!("{other:?}"),
    }
    // map: the first failing item in input order, after everything finished.
    match pool.map_chunksize(fails_on_odd, [0, 2, 5, 3, 4], 1) {
        Err(PoolError::Panicked(p)) => assert_eq!(p.message(), "odd input 5"),
        other => panic!("{other:?}"),
    }
    match pool.map_chunksize(fails_on_odd, [0, 2, 5, 3, 4], 3) {
        Err(PoolError::Panicked(p)) => assert_eq!(p.message(), "odd input 5"),
        other => panic!("{other:?}"),
    }
    // imap: the error at its position, and iteration goes on.
    let items: Vec<Result<u32, PoolError>> = pool.imap(fails_on_odd, 0..6, 2).unwrap().collect();
    assert_eq!(items.len(), 6);
    for (i, item) in items.iter().enumerate() {
        match item {
            Ok(v) => assert_eq!(*v as usize, i),
            Err(PoolError::Panicked(p)) => assert_eq!(p.message(), format!("odd input {i}")),
            Err(e) => panic!("{e}"),
        }
        assert_eq!(item.is_err(), i % 2 == 1);
    }
    // Error callbacks.
    let seen = Arc::new(Mutex::new(None));
    let s = seen.clone();
    let r = pool.apply_async(fails_on_odd, 9).unwrap();
    r.on_error(move |e| *s.lock().unwrap() = Some(e.to_string()));
    r.on_success(|_| panic!("not a success"));
    assert!(r.get().is_err());
    assert!(!r.successful().unwrap());
    let seen = seen.lock().unwrap().clone().unwrap();
    // "the task panicked at tests/pool.rs:LINE:COL: odd input 9"
    assert!(seen.starts_with("the task panicked at tests/pool.rs:"), "{seen}");
    assert!(seen.ends_with(": odd input 9"), "{seen}");
    // The worker survived every panic.
    let pids: HashSet<i32> = (0..20).map(|_| pool.apply(my_pid, ()).unwrap()).collect();
    assert!(pids.contains(&pids_before) || pool.processes() == 2);
    assert!(pool.worker_pids().len() == 2);
}

/// A result type whose encoding panics (Python: an unpicklable result).
#[derive(Debug)]
struct Unencodable;

impl multiproc::codec::Encode for Unencodable {
    fn encode(&self, _out: &mut Vec<u8>) {
        panic!("cannot encode this");
    }
}

impl multiproc::codec::Decode for Unencodable {
    fn decode(
        _: &mut multiproc::codec::Decoder<'_>,
    ) -> Result<Self, multiproc::codec::DecodeError> {
        Ok(Unencodable)
    }
}

/// Encodes like a `u32`, except that encoding 3 panics.
#[derive(Debug, PartialEq)]
struct NoThree(u32);

impl multiproc::codec::Encode for NoThree {
    fn encode(&self, out: &mut Vec<u8>) {
        if self.0 == 3 {
            panic!("cannot encode three");
        }
        self.0.encode(out);
    }
}

impl multiproc::codec::Decode for NoThree {
    fn decode(
        d: &mut multiproc::codec::Decoder<'_>,
    ) -> Result<Self, multiproc::codec::DecodeError> {
        Ok(NoThree(u32::decode(d)?))
    }
}

#[test]
fn failures_inside_one_chunk_fail_only_their_items() {
    let _x = shared();
    let _w = watchdog(TEST_LIMIT);
    let pool = Pool::new(1).unwrap();
    // One chunk of 7: panics in `f` at 1, 3, 5 (first, middle and last but one), the rest ok.
    let items: Vec<_> = pool.imap(fails_on_odd, 0..7, 7).unwrap().collect();
    assert_eq!(items.len(), 7);
    for (i, item) in items.iter().enumerate() {
        match item {
            Ok(v) => assert_eq!((*v as usize, i % 2), (i, 0)),
            Err(PoolError::Panicked(p)) => assert_eq!(p.message(), format!("odd input {i}")),
            Err(e) => panic!("item {i}: {e}"),
        }
    }
    // A panic while encoding one result (item 3), then a panic in `f` right after it (item 4):
    // each fails alone, and the partial bytes of item 3 do not leak into item 5's result.
    let f = |x: u32| {
        if x == 4 {
            panic!("four");
        }
        NoThree(x)
    };
    let items: Vec<_> = pool.imap(f, 0..7, 7).unwrap().collect();
    for (i, item) in items.iter().enumerate() {
        match (i, item) {
            (3, Err(PoolError::Encode(msg))) => assert_eq!(msg, "cannot encode three"),
            (4, Err(PoolError::Panicked(p))) => assert_eq!(p.message(), "four"),
            (_, Ok(v)) => assert_eq!(v, &NoThree(i as u32)),
            (_, other) => panic!("item {i}: {other:?}"),
        }
    }
}

#[test]
fn a_result_that_cannot_be_encoded_fails_only_its_task() {
    let _x = shared();
    let _w = watchdog(TEST_LIMIT);
    let pool = Pool::new(1).unwrap();
    let pid = pool.apply(my_pid, ()).unwrap();
    match pool.apply(|_: ()| Unencodable, ()) {
        Err(PoolError::Encode(msg)) => assert_eq!(msg, "cannot encode this"),
        other => panic!("{other:?}"),
    }
    assert_eq!(pool.apply(my_pid, ()).unwrap(), pid, "the worker was not lost");
    assert_eq!(pool.apply(square, 3).unwrap(), 9);
}

/// Publishes its pid at `addr`, then spins forever (until killed).
fn victim(addr: usize) -> u32 {
    let slot: &AtomicI32 = at(addr);
    slot.store(std::process::id() as i32, Ordering::SeqCst);
    loop {
        std::hint::spin_loop();
        std::thread::sleep(Duration::from_micros(100));
    }
}

#[test]
fn a_worker_killed_mid_task_fails_exactly_that_task_100_times() {
    let _x = shared();
    let _w = watchdog(Duration::from_secs(120));
    let page = SharedPage::new(4096);
    let addr = page_addr::<AtomicI32>(&page, 0);
    let slot: &AtomicI32 = at(addr);
    let pool = Pool::new(2).unwrap();
    let mut killed = HashSet::new();
    for round in 0..100u64 {
        slot.store(0, Ordering::SeqCst);
        let before: Vec<_> =
            (0..4).map(|i| pool.apply_async(square, round * 10 + i).unwrap()).collect();
        let v = pool.apply_async(victim, addr).unwrap();
        let after: Vec<_> =
            (4..8).map(|i| pool.apply_async(square, round * 10 + i).unwrap()).collect();
        // Drive the pool until the victim runs (its results are collected meanwhile).
        assert!(eventually(Duration::from_secs(10), || {
            let _ = v.ready();
            slot.load(Ordering::SeqCst) != 0
        }));
        let pid = slot.load(Ordering::SeqCst);
        assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
        match v.get_timeout(Duration::from_secs(10)) {
            Err(PoolError::WorkerLost { pid: p, exitcode }) => {
                assert_eq!(p.as_raw_nonzero().get(), pid);
                assert_eq!(exitcode, Some(-9));
            }
            other => panic!("round {round}: {other:?}"),
        }
        for (i, r) in before.iter().chain(&after).enumerate() {
            let x = round * 10 + i as u64;
            assert_eq!(
                r.get_timeout(Duration::from_secs(10)).unwrap(),
                x * x,
                "round {round} task {i}"
            );
        }
        assert!(killed.insert(pid), "pid {pid} killed twice");
    }
    // The pool is still whole.
    assert_eq!(pool.map(square, 0..100).unwrap().len(), 100);
    let err = PoolError::WorkerLost { pid: Pid::from_raw(42).unwrap(), exitcode: Some(-9) };
    assert_eq!(
        err.to_string(),
        "worker 42 died while running the task: killed by signal 9 (SIGKILL)"
    );
}

#[test]
fn max_tasks_per_child_recycles_workers() {
    let _x = shared();
    let _w = watchdog(TEST_LIMIT);
    for _ in 0..10 {
        let pool = Pool::builder().processes(2).max_tasks_per_child(3).build().unwrap();
        let pids: Vec<i32> = pool.map_chunksize(my_pid, vec![(); 30], 1).unwrap();
        let mut count = std::collections::HashMap::new();
        for p in &pids {
            *count.entry(*p).or_insert(0) += 1;
        }
        assert!(count.values().all(|&n| n <= 3), "{count:?}");
        assert!(count.len() >= 10, "{count:?}");
    }
    // gh-115634: one worker, two tasks each, ten tasks.
    for _ in 0..10 {
        let pool = Pool::builder().processes(1).max_tasks_per_child(2).build().unwrap();
        let rs: Vec<_> = (0..10).map(|_| pool.apply_async(my_pid, ()).unwrap()).collect();
        let pids: Vec<i32> =
            rs.iter().map(|r| r.get_timeout(Duration::from_secs(10)).unwrap()).collect();
        assert_eq!(pids.iter().collect::<HashSet<_>>().len(), 5);
        pool.close().unwrap();
        pool.join_timeout(Duration::from_secs(10)).unwrap();
    }
    assert!(matches!(
        Pool::builder().max_tasks_per_child(0).build(),
        Err(PoolError::InvalidArgument("maxtasksperchild must be a positive int or None"))
    ));
    assert!(matches!(
        Pool::new(0),
        Err(PoolError::InvalidArgument("Number of processes must be at least 1"))
    ));
}

/// Children of `ppid` according to `/proc` (excluding threads).
fn children_of(ppid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // Fields after the command (which may contain spaces): state, ppid, ...
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { continue };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(1).and_then(|p| p.parse::<i32>().ok()) == Some(ppid) {
            out.push(pid);
        }
    }
    out
}

/// Start time (clock ticks since boot) of `pid`, if it exists.
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[test]
fn a_failing_initializer_breaks_the_pool_promptly() {
    let _x = shared();
    let _w = watchdog(TEST_LIMIT);
    for round in 0..10 {
        let t = Instant::now();
        let pool = if round % 2 == 0 {
            Pool::builder()
                .processes(2)
                .initializer(|| Err::<(), _>("no database"))
                .build()
                .unwrap()
        } else {
            Pool::builder()
                .processes(2)
                .initializer(|| -> () { panic!("init exploded") })
                .build()
                .unwrap()
        };
        let r = pool.apply_async(square, 2).unwrap();
        let e = r.get_timeout(Duration::from_secs(10)).unwrap_err();
        match &e {
            PoolError::InitializerFailed(msg) if round % 2 == 0 => assert_eq!(msg, "no database"),
            PoolError::InitializerFailed(msg) => {
                assert_eq!(msg, "the initializer panicked: init exploded")
            }
            other => panic!("{other:?}"),
        }
        assert!(e.is_broken());
        assert!(t.elapsed() < Duration::from_secs(5));
        // Later submissions fail the same way, and nothing is restarted.
        assert!(matches!(pool.apply(square, 3), Err(PoolError::InitializerFailed(_))));
        let server = pool.server_pid().as_raw_nonzero().get();
        assert!(eventually(Duration::from_secs(5), || {
            let _ = pool.apply_async(square, 1);
            children_of(server).is_empty()
        }));
        std::thread::sleep(Duration::from_millis(20));
        assert!(children_of(server).is_empty(), "a worker was restarted");
        pool.close().unwrap();
        pool.join_timeout(Duration::from_secs(5)).unwrap();
    }
}

fn endless(addr: usize) -> u32 {
    let running: &AtomicU32 = at(addr);
    running.fetch_add(1, Ordering::SeqCst);
    loop {
        std::hint::spin_loop();
    }
}

fn endless_ignoring_sigterm(addr: usize) -> u32 {
    unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
    endless(addr)
}

#[test]
fn terminate_is_bounded_even_with_endless_tasks() {
    let _x = shared();
    let _w = watchdog(Duration::from_secs(60));
    for round in 0..10 {
        let page = SharedPage::new(4096);
        let addr = page_addr::<AtomicU32>(&page, 0);
        let running: &AtomicU32 = at(addr);
        let grace = Duration::from_millis(100);
        let pool = Pool::builder().processes(2).terminate_grace(grace).build().unwrap();
        let f = if round % 2 == 0 { endless } else { endless_ignoring_sigterm };
        let rs: Vec<_> = (0..6).map(|_| pool.apply_async(f, addr).unwrap()).collect();
        assert!(eventually(Duration::from_secs(10), || {
            let _ = rs[0].ready();
            running.load(Ordering::SeqCst) == 2
        }));
        let workers = pool.worker_pids();
        let t = Instant::now();
        pool.terminate().unwrap();
        let took = t.elapsed();
        assert!(took < grace + Duration::from_secs(2), "terminate took {took:?}");
        if round % 2 == 1 {
            assert!(took >= grace, "SIGTERM is ignored: SIGKILL comes after the grace period");
        }
        for r in &rs {
            assert!(matches!(r.get_timeout(Duration::ZERO), Err(PoolError::Terminated)));
        }
        for w in workers {
            let pid = w.as_raw_nonzero().get();
            assert!(
                unsafe { libc::kill(pid, 0) } != 0 || start_time(pid).is_none(),
                "worker {pid} survived"
            );
        }
        assert!(matches!(pool.apply_async(square, 1), Err(PoolError::NotRunning)));
        pool.terminate().unwrap(); // idempotent
        pool.join_timeout(Duration::ZERO).unwrap();
    }
}

#[test]
fn a_task_past_its_timeout_is_killed_and_the_pool_goes_on() {
    let _x = shared();
    let _w = watchdog(TEST_LIMIT);
    let page = SharedPage::new(4096);
    let addr = page_addr::<AtomicU32>(&page, 0);
    let timeout = Duration::from_millis(200);
    let pool = Pool::builder().processes(2).task_timeout(timeout).build().unwrap();
    for _ in 0..3 {
        let t = Instant::now();
        let stuck = pool.apply_async(endless, addr).unwrap();
        let quick: Vec<_> = (0..10).map(|i| pool.apply_async(square, i).unwrap()).collect();
        match stuck.get_timeout(Duration::from_secs(10)) {
            Err(PoolError::TaskTimeout { timeout: t2, .. }) => assert_eq!(t2, timeout),
            other => panic!("{other:?}"),
        }
        assert!(t.elapsed() >= timeout);
        for (i, q) in quick.iter().enumerate() {
            assert_eq!(q.get_timeout(Duration::from_secs(10)).unwrap(), (i * i) as u64);
        }
    }
    assert_eq!(pool.map(square, 0..10).unwrap().len(), 10);
}

#[test]
fn close_join_and_misuse_follow_python() {
    let _x = shared();
    let _w = watchdog(TEST_LIMIT);
    for _ in 0..10 {
        let pool = Pool::new(2).unwrap();
        assert!(matches!(pool.join(), Err(PoolError::InvalidState("Pool is still running"))));
        let r = pool.map_async(square, 0..100, Some(3)).unwrap();
        pool.close().unwrap();
        assert!(matches!(pool.apply(square, 1), Err(PoolError::NotRunning)));
        assert_eq!(PoolError::NotRunning.to_string(), "Pool not running");
        pool.join_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(r.get_timeout(Duration::ZERO).unwrap().len(), 100);
        assert!(pool.worker_pids().is_empty());
        pool.close().unwrap();
        pool.join().unwrap();
    }
}

#[test]
fn many_threads_can_share_a_pool_and_callbacks_may_terminate_it() {
    let _x = shared();
    let _w = watchdog(TEST_LIMIT);
    let pool = Arc::new(Pool::new(2).unwrap());
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let pool = pool.clone();
            std::thread::spawn(move || {
                for round in 0..20 {
                    let base = t * 1000 + round * 10;
                    let got = pool.map_chunksize(square, base..base + 10, 2).unwrap();
                    assert_eq!(got, (base..base + 10).map(|x| x * x).collect::<Vec<_>>());
                    let r = pool.apply_async(square, base).unwrap();
                    assert_eq!(r.get().unwrap(), base * base);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // P9: terminate from a callback.
    let pool2 = Arc::new(Pool::new(2).unwrap());
    let p = pool2.clone();
    let r = pool2.apply_async(square, 5).unwrap();
    let done = Arc::new(AtomicU32::new(0));
    let d = done.clone();
    r.on_success(move |v| {
        assert_eq!(v, 25);
        p.terminate().unwrap();
        d.store(1, Ordering::SeqCst);
    });
    assert_eq!(r.get().unwrap(), 25);
    assert!(eventually(Duration::from_secs(5), || done.load(Ordering::SeqCst) == 1));
    assert!(matches!(pool2.apply(square, 1), Err(PoolError::NotRunning)));
}

#[test]
fn registered_closures_are_inherited_by_the_workers() {
    let _x = shared();
    let _w = watchdog(TEST_LIMIT);
    let table: Vec<u64> = (0..10_000).map(|i| i * 7).collect();
    let mut b = Pool::builder().processes(2);
    let lookup = b.register(move |i: usize| table[i]);
    let greet = b.register(|name: String| format!("hello {name}"));
    let pool = b.build().unwrap();
    assert_eq!(pool.map(lookup, [0, 1, 9999]).unwrap(), [0, 7, 69993]);
    assert_eq!(pool.apply(greet, "pool".to_string()).unwrap(), "hello pool");
    let other = Pool::new(1).unwrap();
    assert!(matches!(other.apply(greet, "x".into()), Err(PoolError::InvalidArgument(_))));
    // A closure that captures data does not compile (see the compile-fail doctests of `Work`),
    // except one capturing a single reference: it has a `fn` pointer's layout, and is refused
    // when called.
    static K: u64 = 3;
    let k: &'static u64 = &K;
    match pool.apply(move |x: u64| x + *k, 1) {
        Err(PoolError::InvalidArgument(msg)) => assert!(msg.contains("partial"), "{msg}"),
        other => panic!("{other:?}"),
    }
    let f: fn(u64) -> u64 = square; // a real `fn` pointer of the same layout is accepted
    assert_eq!(pool.apply(f, 4).unwrap(), 16);
}

#[test]
fn workers_are_pinned_to_the_cpus_given() {
    let _x = shared();
    let _w = watchdog(TEST_LIMIT);
    let cpus = multiproc::sys::affinity::sched_getaffinity(None).unwrap();
    let first = cpus.first().unwrap();
    let pool = Pool::builder().processes(2).cpus([first]).build().unwrap();
    let got = pool
        .map_chunksize(
            |_: ()| {
                multiproc::sys::affinity::sched_getaffinity(None)
                    .unwrap()
                    .iter()
                    .collect::<Vec<_>>()
            },
            vec![(); 8],
            1,
        )
        .unwrap();
    assert!(got.iter().all(|c| c == &[first]), "{got:?}");
    let bad = Pool::builder().processes(1).cpus([100_000]).build().unwrap();
    match bad.apply(square, 1) {
        Err(PoolError::InitializerFailed(msg)) => {
            assert!(msg.contains("cannot pin worker 0 to CPU 100000"), "{msg}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_pool_is_only_usable_by_its_creator() {
    let _x = shared();
    let _w = watchdog(TEST_LIMIT);
    let pool = Arc::new(Pool::new(1).unwrap());
    let p = pool.clone();
    let child = Process::new(move || match p.apply(square, 2) {
        Err(PoolError::InvalidState(_)) => 1u8,
        _ => 0u8,
    });
    child.start().unwrap();
    assert_eq!(child.join_timeout(Duration::from_secs(10)).unwrap(), 1);
    // The child's drop of its copy did not terminate ours.
    assert_eq!(pool.apply(square, 3).unwrap(), 9);
}

#[test]
fn no_process_is_left_after_a_pool_is_dropped() {
    let _x = EXCLUSIVE.write().unwrap_or_else(|e| e.into_inner());
    let _w = watchdog(Duration::from_secs(60));
    let me = std::process::id() as i32;
    for round in 0..10 {
        let before = children_of(me);
        let pool = Pool::new(3).unwrap();
        assert_eq!(pool.map_chunksize(square, 0..40, 1).unwrap().len(), 40);
        let server = pool.server_pid().as_raw_nonzero().get();
        assert!(children_of(me).contains(&server));
        // Recycled workers are replaced asynchronously: wait for the three.
        assert!(eventually(Duration::from_secs(10), || {
            let _ = pool.apply_async(square, 1).map(|r| r.ready());
            pool.worker_pids().len() == 3
        }));
        let workers: Vec<(i32, Option<u64>)> = pool
            .worker_pids()
            .iter()
            .map(|p| (p.as_raw_nonzero().get(), start_time(p.as_raw_nonzero().get())))
            .collect();
        assert_eq!(workers.len(), 3);
        for (pid, _) in &workers {
            assert!(children_of(server).contains(pid));
        }
        if round % 2 == 0 {
            drop(pool);
        } else {
            pool.close().unwrap();
            pool.join_timeout(Duration::from_secs(10)).unwrap();
            drop(pool);
        }
        // The server was reaped (not a zombie, not running), its workers are gone.
        assert!(start_time(server).is_none() || !children_of(me).contains(&server));
        assert_eq!(children_of(me), before, "round {round}");
        assert!(children_of(server).is_empty());
        for (pid, start) in workers {
            assert!(
                start_time(pid).is_none() || start_time(pid) != start,
                "worker {pid} is still there"
            );
        }
    }
}

#[test]
fn workers_die_when_the_parent_is_killed() {
    let _x = EXCLUSIVE.write().unwrap_or_else(|e| e.into_inner());
    let _w = watchdog(TEST_LIMIT);
    let page = SharedPage::new(4096);
    let pids_at = page_addr::<AtomicI32>(&page, 0);
    // A child process owns a pool, publishes its server's and workers' pids, then is killed.
    let owner = multiproc::ProcessBuilder::new().daemon(true).target(move || -> () {
        let pool = Pool::new(2).unwrap();
        while pool.worker_pids().len() < 2 {
            let _ = pool.map(square, 0..10);
        }
        let slots: &[AtomicI32; 3] = at(pids_at);
        slots[0].store(pool.server_pid().as_raw_nonzero().get(), Ordering::SeqCst);
        for (i, w) in pool.worker_pids().iter().enumerate().take(2) {
            slots[1 + i].store(w.as_raw_nonzero().get(), Ordering::SeqCst);
        }
        loop {
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    owner.start().unwrap();
    let slots: &[AtomicI32; 3] = at(pids_at);
    assert!(eventually(Duration::from_secs(10), || slots
        .iter()
        .all(|s| s.load(Ordering::SeqCst) != 0)));
    let pids: Vec<i32> = slots.iter().map(|s| s.load(Ordering::SeqCst)).collect();
    let starts: Vec<Option<u64>> = pids.iter().map(|&p| start_time(p)).collect();
    owner.kill().unwrap();
    let _ = owner.join_timeout(Duration::from_secs(10));
    // The server sees its parent die and kills its workers; they are reaped (by init or a
    // subreaper), never left running.
    assert!(eventually(Duration::from_secs(10), || {
        pids.iter()
            .zip(&starts)
            .all(|(&p, s)| start_time(p).is_none() || start_time(p) != *s || is_zombie(p))
    }));
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, r)| r.trim_start().starts_with('Z')))
        .unwrap_or(false)
}

#[test]
fn handles_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Pool>();
    send_sync::<multiproc::AsyncResult<Vec<u64>>>();
    send_sync::<PoolError>();
    fn send<T: Send>() {}
    send::<multiproc::IMap<std::ops::Range<u64>, u64>>();
}

#[test]
fn flag_gated_tasks_run_concurrently() {
    let _x = shared();
    let _w = watchdog(TEST_LIMIT);
    let page = SharedPage::new(4096);
    let flag = page_addr::<AtomicU32>(&page, 0);
    let pool = Pool::new(2).unwrap();
    let gated: Vec<_> =
        (0..2).map(|_| pool.apply_async(|a: usize| wait_for_flag(a), flag).unwrap()).collect();
    assert!(!gated[0].wait_timeout(Duration::from_millis(50)));
    assert!(matches!(gated[0].get_timeout(Duration::ZERO), Err(PoolError::Timeout)));
    assert!(matches!(gated[0].successful(), Err(PoolError::InvalidState(_))));
    at::<AtomicU32>(flag).store(1, Ordering::Release);
    for g in &gated {
        g.get_timeout(Duration::from_secs(10)).unwrap();
        assert!(g.successful().unwrap());
    }
}
