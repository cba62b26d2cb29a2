//! Pools and executors behaving as a Python user expects (issue 16): an argument whose `Encode`
//! panics is an error, never an unwinding out of the pool's API, and leaves the pool as it was;
//! a task's panic carries its location and the worker's backtrace; futures are hashable and
//! `as_completed`/`wait` take any iterator of them; `worker_pids` is right from the start.
//!
//! `init_before_main!` makes the fork server before the test harness starts its threads, so
//! that `forkserver` pools have clean (single-threaded) workers.
#![allow(unsafe_code, clippy::undocumented_unsafe_blocks)]

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::{TEST_LIMIT, eventually, watchdog};
use multiproc::codec::{Decode, DecodeError, Decoder, Encode};
use multiproc::{
    Pid, Pool, PoolError, ProcessPoolExecutor, ReturnWhen, StartMethod, as_completed, wait_futures,
};

multiproc::init_before_main!();

const WAIT: Duration = Duration::from_secs(20);

fn square(x: u64) -> u64 {
    x * x
}

fn my_pid(_: ()) -> i32 {
    std::process::id() as i32
}

/// Encodes like a `u32`, except that encoding a multiple of 10 writes a few bytes and then
/// panics: if those bytes reached a worker, it would decode garbage.
#[derive(Debug, Clone, PartialEq)]
struct Fragile(u32);

impl Encode for Fragile {
    fn encode(&self, out: &mut Vec<u8>) {
        if self.0.is_multiple_of(10) {
            out.extend_from_slice(&[0xff; 5]);
            panic!("cannot encode {}", self.0);
        }
        self.0.encode(out);
    }
}

impl Decode for Fragile {
    fn decode(d: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Fragile(u32::decode(d)?))
    }
}

fn unwrap_fragile(f: Fragile) -> u32 {
    f.0
}

fn add_fragile(a: Fragile, b: u32) -> u32 {
    a.0 + b
}

/// The error of a call whose argument cannot be encoded.
fn assert_unencodable<T: std::fmt::Debug>(r: Result<T, PoolError>, what: &str) {
    match r {
        Err(PoolError::EncodeArgument(msg)) => assert_eq!(msg, "cannot encode 10", "{what}"),
        other => panic!("{what}: {other:?}"),
    }
}

/// The workers of `pool` that answer tasks, and a check that they are the pool's own.
fn answering(pool: &Pool) -> HashSet<i32> {
    (0..20).map(|_| pool.apply(my_pid, ()).unwrap()).collect()
}

#[test]
fn an_argument_that_cannot_be_encoded_fails_the_call_and_the_pool_goes_on() {
    let _w = watchdog(TEST_LIMIT);
    let pool = Pool::new(2).unwrap();
    let workers: HashSet<i32> =
        pool.worker_pids().iter().map(|p| p.as_raw_nonzero().get()).collect();
    assert_eq!(workers.len(), 2);
    let bad = || [Fragile(1), Fragile(10), Fragile(3)];
    for round in 0..3 {
        assert_unencodable(pool.apply(unwrap_fragile, Fragile(10)), "apply");
        assert_unencodable(pool.apply_async(unwrap_fragile, Fragile(10)), "apply_async");
        assert_unencodable(pool.map(unwrap_fragile, bad()), "map");
        assert_unencodable(pool.map_chunksize(unwrap_fragile, bad(), 2), "map_chunksize");
        assert_unencodable(pool.map_async(unwrap_fragile, bad(), Some(1)), "map_async");
        let pairs = || [(Fragile(1), 2u32), (Fragile(10), 2)];
        assert_unencodable(pool.starmap(add_fragile, pairs()), "starmap");
        assert_unencodable(pool.starmap_chunksize(add_fragile, pairs(), 1), "starmap_chunksize");
        assert_unencodable(pool.starmap_async(add_fragile, pairs(), None), "starmap_async");
        // Nothing half-written reached a worker: the same workers answer, every result is right.
        assert_eq!(pool.map(unwrap_fragile, [Fragile(1), Fragile(2)]).unwrap(), [1, 2]);
        assert_eq!(pool.apply(unwrap_fragile, Fragile(7)).unwrap(), 7, "round {round}");
        assert_eq!(pool.starmap(add_fragile, [(Fragile(4), 5)]).unwrap(), [9]);
        assert_eq!(pool.map_chunksize(square, 0..50, 7).unwrap()[49], 49 * 49);
    }
    assert!(answering(&pool).is_subset(&workers));
    let now: HashSet<i32> = pool.worker_pids().iter().map(|p| p.as_raw_nonzero().get()).collect();
    assert_eq!(now, workers, "no worker was lost or replaced");
    pool.close().unwrap();
    pool.join_timeout(WAIT).unwrap();
}

#[test]
fn a_lazy_map_fails_only_the_items_that_cannot_be_encoded() {
    let _w = watchdog(TEST_LIMIT);
    let pool = Pool::new(2).unwrap();
    let workers = pool.worker_pids();
    // Items 0, 10, 20, ... panic in `Encode`; chunks of 3 and 4 put them first, in the middle
    // and last in a chunk.
    for chunksize in [1, 3, 4] {
        let got: Vec<_> =
            pool.imap(unwrap_fragile, (0..35).map(Fragile), chunksize).unwrap().collect();
        assert_eq!(got.len(), 35, "chunksize {chunksize}");
        for (i, r) in got.into_iter().enumerate() {
            match r {
                Ok(v) => assert_eq!(v as usize, i),
                Err(PoolError::EncodeArgument(m)) if i % 10 == 0 => {
                    assert_eq!(m, format!("cannot encode {i}"))
                }
                other => panic!("chunksize {chunksize}, item {i}: {other:?}"),
            }
        }
        let mut ok = Vec::new();
        let mut failed = 0;
        for r in pool.imap_unordered(unwrap_fragile, (0..35).map(Fragile), chunksize).unwrap() {
            match r {
                Ok(v) => ok.push(v),
                Err(PoolError::EncodeArgument(_)) => failed += 1,
                Err(e) => panic!("{e}"),
            }
        }
        ok.sort_unstable();
        assert_eq!(ok, (0..35).filter(|i| i % 10 != 0).collect::<Vec<_>>());
        assert_eq!(failed, 4);
    }
    assert_eq!(pool.worker_pids(), workers, "no worker was lost or replaced");

    let ex = ProcessPoolExecutor::new(2).unwrap();
    let workers = ex.worker_pids();
    assert_unencodable(ex.submit(unwrap_fragile, Fragile(10)), "submit");
    let got: Vec<_> =
        ex.map(unwrap_fragile, (5..25).map(Fragile), 3, Some(WAIT)).unwrap().collect();
    for (i, r) in (5..25).zip(got) {
        match r {
            Ok(v) => assert_eq!(v, i),
            Err(PoolError::EncodeArgument(_)) if i % 10 == 0 => {}
            other => panic!("item {i}: {other:?}"),
        }
    }
    assert_eq!(ex.submit(unwrap_fragile, Fragile(9)).unwrap().result_timeout(WAIT).unwrap(), 9);
    assert_eq!(ex.worker_pids(), workers);
}

fn fragile_result(x: u32) -> Fragile {
    Fragile(x)
}

#[test]
fn a_result_that_cannot_be_encoded_fails_only_its_future() {
    let _w = watchdog(TEST_LIMIT);
    let ex = ProcessPoolExecutor::new(1).unwrap();
    let pid = ex.submit(my_pid, ()).unwrap().result_timeout(WAIT).unwrap();
    let fs: Vec<_> = (8..13).map(|x| ex.submit(fragile_result, x).unwrap()).collect();
    for (x, f) in (8..13).zip(&fs) {
        match f.result_timeout(WAIT) {
            Ok(v) => assert_eq!(v, Fragile(x)),
            Err(PoolError::Encode(m)) if x == 10 => assert_eq!(m, "cannot encode 10"),
            other => panic!("{x}: {other:?}"),
        }
    }
    // In chunks: only the item fails.
    let got: Vec<_> = ex.map(fragile_result, 0..25, 4, Some(WAIT)).unwrap().collect();
    for (x, r) in (0..25).zip(got) {
        assert_eq!(r.is_err(), x % 10 == 0, "{x}: {r:?}");
    }
    assert_eq!(
        ex.submit(my_pid, ()).unwrap().result_timeout(WAIT).unwrap(),
        pid,
        "the worker survived"
    );
}

// ---------------------------------------------------------------------------------------------
// Panics: location and backtrace

/// The line of `boom`'s `panic!` (column 5, as rustfmt indents it).
const BOOM_LINE: u32 = line!() + 2;
fn boom(x: u32) -> u32 {
    panic!("boom {x}")
}

/// Whether std captures a backtrace in this environment (which the workers inherit).
fn backtraces_on() -> bool {
    let on = |v: std::ffi::OsString| v != "0";
    match std::env::var_os("RUST_LIB_BACKTRACE") {
        Some(v) => on(v),
        None => std::env::var_os("RUST_BACKTRACE").is_some_and(on),
    }
}

fn panic_of<T: std::fmt::Debug>(r: Result<T, PoolError>) -> multiproc::RemotePanic {
    match r {
        Err(PoolError::Panicked(p)) => p,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_panic_carries_its_location_and_the_workers_backtrace() {
    let _w = watchdog(TEST_LIMIT);
    let here = format!("{}:{BOOM_LINE}:5", file!());
    // Clean workers (forked by the fork server made before main): location and, if enabled,
    // the backtrace.
    let pool = Pool::builder().processes(1).start_method(StartMethod::Forkserver).build().unwrap();
    for x in 0..3 {
        let p = panic_of(pool.apply(boom, x));
        assert_eq!(p.message(), format!("boom {x}"));
        assert_eq!(p.location(), Some(here.as_str()));
        assert_eq!(p.to_string(), format!("panicked at {here}: boom {x}"));
        let e = PoolError::Panicked(p.clone());
        assert_eq!(e.to_string(), format!("the task panicked at {here}: boom {x}"));
        match p.backtrace() {
            Some(bt) => {
                assert!(backtraces_on(), "a backtrace without RUST_BACKTRACE");
                assert!(bt.contains("boom"), "{bt}");
                assert!(format!("{e:#}").ends_with(bt), "the alternate form adds it");
            }
            None => {
                assert!(!backtraces_on(), "RUST_BACKTRACE is set: a backtrace was expected");
                assert_eq!(format!("{e:#}"), e.to_string());
            }
        }
    }
    // Errors compare and clone whole.
    let p = panic_of(pool.apply(boom, 1));
    assert_eq!(p, p.clone());
    assert_ne!(p, panic_of(pool.apply(boom, 2)));
    // The executor and a map with chunks report the same.
    let ex = ProcessPoolExecutor::builder()
        .max_workers(1)
        .start_method(StartMethod::Forkserver)
        .build()
        .unwrap();
    let p = panic_of(ex.submit(boom, 4).unwrap().result_timeout(WAIT));
    assert_eq!(p.location(), Some(here.as_str()));
    let p = panic_of(pool.map_chunksize(boom, [5, 6], 2));
    assert_eq!((p.message(), p.location()), ("boom 5", Some(here.as_str())));
}

#[test]
fn a_worker_forked_from_a_multithreaded_parent_reports_the_location_without_a_backtrace() {
    let _w = watchdog(TEST_LIMIT);
    // Another thread runs while the pool's processes are forked (the watchdog's would do, but
    // make sure): the workers are "tainted" and must not take std's backtrace lock.
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let other = std::thread::spawn(move || rx.recv());
    multiproc::set_fork_warning(false);
    let pool = Pool::builder().processes(2).start_method(StartMethod::Fork).build().unwrap();
    drop(tx);
    let _ = other.join();
    let here = format!("{}:{BOOM_LINE}:5", file!());
    for x in 0..10 {
        let p = panic_of(pool.apply(boom, x));
        assert_eq!((p.message(), p.location()), (format!("boom {x}").as_str(), Some(&*here)));
        assert_eq!(p.backtrace(), None);
    }
    // A panic that `resume_unwind` rethrows with another payload has no location it can be
    // sure of.
    let p = panic_of(pool.apply(
        |x: u32| -> u32 {
            let caught = std::panic::catch_unwind(|| boom(x)).unwrap_err();
            drop(caught);
            std::panic::resume_unwind(Box::new(format!("rethrown {x}")))
        },
        3,
    ));
    assert_eq!((p.message(), p.location()), ("rethrown 3", None));
    assert_eq!(p.to_string(), "panicked: rethrown 3");
}

// ---------------------------------------------------------------------------------------------
// Futures as keys; as_completed and wait over any iterator

#[test]
#[allow(clippy::mutable_key_type)] // a false positive: the hash is the call's identity
fn futures_key_a_map_and_as_completed_takes_any_iterator() {
    let _w = watchdog(TEST_LIMIT);
    let ex = ProcessPoolExecutor::new(2).unwrap();
    // Python: futures = {ex.submit(square, n): n for n in range(8)}
    let futures: HashMap<_, u64> = (0..8).map(|n| (ex.submit(square, n).unwrap(), n)).collect();
    assert_eq!(futures.len(), 8, "distinct calls are distinct keys");
    let mut seen = HashSet::new();
    for f in as_completed(futures.keys(), Some(WAIT)) {
        let f = f.unwrap();
        let n = futures[f];
        assert_eq!(f.result().unwrap(), n * n);
        assert!(seen.insert(n));
    }
    assert_eq!(seen.len(), 8);
    // Identity: a clone is the same future, another call is not, even with the same input.
    let a = ex.submit(square, 3).unwrap();
    let b = ex.submit(square, 3).unwrap();
    assert_eq!(a, a.clone());
    assert_ne!(a, b);
    let set: HashSet<_> = [a.clone(), a.clone(), b.clone()].into_iter().collect();
    assert_eq!(set.len(), 2);
    // wait and as_completed over a set, a filter, a chain with duplicates.
    let r = wait_futures(&set, Some(WAIT), ReturnWhen::AllCompleted).unwrap();
    assert_eq!((r.done.len(), r.not_done.len()), (2, 0));
    let r = wait_futures(
        futures.keys().filter(|f| futures[*f] % 2 == 0),
        Some(WAIT),
        ReturnWhen::AllCompleted,
    )
    .unwrap();
    assert_eq!(r.done.len(), 4);
    let twice: Vec<_> = as_completed([&a, &b, &a], Some(WAIT)).collect();
    assert_eq!(twice.len(), 2, "a future given twice comes once");
    // Futures of two executors in one map.
    let other = ProcessPoolExecutor::new(1).unwrap();
    let c = other.submit(square, 3).unwrap();
    assert_ne!(a, c);
    let both: HashMap<_, &str> =
        [(a.clone(), "first"), (c.clone(), "second")].into_iter().collect();
    assert_eq!(both[&c], "second");
    assert_eq!(as_completed(both.keys(), Some(WAIT)).filter(Result::is_ok).count(), 2);
}

// ---------------------------------------------------------------------------------------------
// worker_pids

/// The parent of `pid`, from `/proc`.
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

fn raw(pids: &[Pid]) -> Vec<i32> {
    pids.iter().map(|p| p.as_raw_nonzero().get()).collect()
}

#[test]
fn worker_pids_are_right_from_the_start_and_follow_replacements() {
    let _w = watchdog(TEST_LIMIT);
    for method in [StartMethod::Fork, StartMethod::Forkserver] {
        for round in 0..5 {
            let pool = Pool::builder().processes(3).start_method(method).build().unwrap();
            // Nobody waited on the pool yet.
            let pids = raw(&pool.worker_pids());
            assert_eq!(pids.len(), 3, "{method} round {round}: {pids:?}");
            let server = pool.server_pid().as_raw_nonzero().get();
            for &pid in &pids {
                assert_eq!(parent_of(pid), Some(server), "{pid} is a worker of this pool");
            }
            // The tasks run in exactly those processes.
            let ran: HashSet<i32> =
                pool.map_chunksize(my_pid, vec![(); 60], 1).unwrap().into_iter().collect();
            assert!(ran.iter().all(|p| pids.contains(p)), "{ran:?} not in {pids:?}");
            // A killed worker is replaced, and worker_pids alone notices (no other call waits).
            let victim = pids[round % 3];
            assert_eq!(unsafe { libc::kill(victim, libc::SIGKILL) }, 0);
            assert!(eventually(Duration::from_secs(10), || {
                let now = raw(&pool.worker_pids());
                now.len() == 3 && !now.contains(&victim)
            }));
            let now = raw(&pool.worker_pids());
            for &pid in &now {
                assert_eq!(parent_of(pid), Some(server));
            }
            assert_eq!(now.iter().filter(|p| pids.contains(p)).count(), 2);
            pool.close().unwrap();
            pool.join_timeout(WAIT).unwrap();
            assert!(pool.worker_pids().is_empty());
        }
    }
    // An executor, and workers recycled after each task.
    let ex = ProcessPoolExecutor::builder().max_workers(2).max_tasks_per_child(1).build().unwrap();
    let first = raw(&ex.worker_pids());
    assert_eq!(first.len(), 2);
    let ran = ex.submit(my_pid, ()).unwrap().result_timeout(WAIT).unwrap();
    assert!(first.contains(&ran));
    assert!(eventually(Duration::from_secs(10), || {
        let now = raw(&ex.worker_pids());
        now.len() == 2 && !now.contains(&ran)
    }));
}

#[test]
fn a_process_whose_argument_cannot_be_encoded_fails_in_join_not_in_the_caller() {
    let _w = watchdog(TEST_LIMIT);
    for method in [StartMethod::Fork, StartMethod::Spawn] {
        let p =
            multiproc::ProcessBuilder::new().start_method(method).call(unwrap_fragile, Fragile(10));
        p.start().unwrap();
        match p.join_timeout(WAIT) {
            Err(multiproc::JoinError::Panicked(msg)) => {
                assert!(msg.contains("cannot encode 10"), "{method:?}: {msg}")
            }
            other => panic!("{method:?}: {other:?}"),
        }
        // The same call with an argument that encodes runs.
        let p =
            multiproc::ProcessBuilder::new().start_method(method).call(unwrap_fragile, Fragile(7));
        p.start().unwrap();
        assert_eq!(p.join_timeout(WAIT).unwrap(), 7, "{method:?}");
    }
}
