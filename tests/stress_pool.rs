//! Stress suite for `Pool` and `ProcessPoolExecutor` (issue 19): hostile tasks (panic,
//! `_exit`, SIGKILL of themselves, abort, stack overflow, hang past `task_timeout`), external
//! SIGKILLs of workers (`worker_pids`), a killed fork server, and create/destroy cycles.
//!
//! Runs for a few seconds per test by default; set `MULTIPROC_STRESS_SECS` to run each test
//! that long (the long form, e.g. `MULTIPROC_STRESS_SECS=150 cargo test --release --test
//! stress_pool -- --nocapture`). Each test prints its figures.
//!
//! Checked: every task gets exactly one outcome (its callback runs once, `get` returns it), the
//! outcome is the one its kind must give (or `WorkerLost` by `SIGKILL` for at most one task per
//! external kill), the pool goes on, no fd is leaked (`/proc/self/fd` before and after), and no
//! process is left behind or a zombie (`/proc` children of the test).
//!
//! Finding (reported, tolerated here, counted in the figures): an external `SIGKILL` that hits
//! a worker still starting up (a fresh pool's, or a replacement) breaks the whole pool, even
//! without an initializer: every pending and later task fails with
//! `PoolError::InitializerFailed("worker N ended before it was ready (killed by signal 9)")`.
//! `PoolError::InitializerFailed`'s docs say so ("or died before it was ready"), but the
//! module docs promise that a worker killed by the OOM killer fails only its own task. Each
//! task still gets exactly one outcome, which is what this file checks; the ignored test
//! `a_worker_killed_while_starting_does_not_break_the_pool` reproduces the bug. The tests of this file
//! run one at a time (they count fds and children). Hostile panics are kept quiet; Rust's
//! "stack overflow" report of a hostile task on stderr is expected output.
#![allow(clippy::undocumented_unsafe_blocks, unsafe_code)]

mod common;
#[path = "common/stress.rs"]
mod stress;

use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use multiproc::{Pool, PoolError, ProcessPoolExecutor};
use stress::{Rng, children_of, my_pid, open_fds, stress_secs};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    quiet_hostile_panics();
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Keeps the hostile tasks' panics (hundreds per run) out of the test output; every other
/// panic goes to the hook in place. Installed after the crate's own fork-safe hook (which the
/// crate installs before its first fork), so that it runs in the workers too: it takes no lock
/// and allocates nothing for a hostile panic, and defers to the crate's hook otherwise.
fn quiet_hostile_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let p = multiproc::Process::new(|| ());
        p.start().unwrap();
        p.join_timeout(HANG).unwrap();
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<&str>() != Some(&"hostile task") {
                previous(info);
            }
        }));
    });
}

/// Every wait is bounded by this; reaching it counts as a hang.
const HANG: Duration = Duration::from_secs(30);
/// `task_timeout` of the pools here.
const TASK_TIMEOUT: Duration = Duration::from_millis(500);

const NORMAL: u32 = 0;
const PANIC: u32 = 1;
const EXIT: u32 = 2;
const KILL_SELF: u32 = 3;
const ABORT: u32 = 4;
const OVERFLOW: u32 = 5;
const HANG_TASK: u32 = 6;

#[inline(never)]
fn recurse(n: u64) -> u64 {
    let buf = [n; 64];
    std::hint::black_box(&buf);
    if n == u64::MAX { 0 } else { recurse(n + 1).wrapping_add(buf[7]) }
}

/// One task of kind `kind` on `x`.
fn task((kind, x): (u32, u64)) -> u64 {
    match kind {
        // A static message: the quiet hook below recognises it without allocating.
        PANIC => panic!("hostile task"),
        EXIT => unsafe { libc::_exit(40 + (x % 20) as i32) },
        KILL_SELF => {
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
            unreachable!("SIGKILL cannot be caught")
        }
        ABORT => std::process::abort(),
        OVERFLOW => recurse(x),
        HANG_TASK => loop {
            std::thread::sleep(Duration::from_millis(10));
        },
        _ => x.wrapping_mul(x),
    }
}

/// A random task kind: mostly normal, about 10 % hostile (hangs only with a task timeout;
/// stack overflows, which Rust reports on stderr, rare).
fn pick(rng: &mut Rng, hangs: bool) -> u32 {
    match rng.below(1000) {
        0..=29 => PANIC,
        30..=49 => EXIT,
        50..=69 => KILL_SELF,
        70..=89 => ABORT,
        90..=91 => OVERFLOW,
        92..=101 if hangs => HANG_TASK,
        _ => NORMAL,
    }
}

#[derive(Default, Debug)]
struct Tally {
    tasks: u64,
    ok: u64,
    panicked: u64,
    lost: u64,
    timeouts: u64,
    collateral: u64,
    wrong: u64,
    hangs: u64,
    ext_kills: u64,
    /// Tasks failed because an external kill hit a worker still starting, which breaks the
    /// whole pool (documented under `PoolError::InitializerFailed`).
    broken_by_startup_kill: u64,
    pools_broken: u64,
}

/// Whether `r` is the error of a pool broken by a worker killed (SIGKILL) before it was ready.
fn startup_kill(r: &Result<u64, PoolError>) -> bool {
    matches!(r, Err(PoolError::InitializerFailed(m))
        if m.contains("ended before it was ready") && m.contains("signal 9"))
}

/// Checks one outcome against the kind of its task.
fn judge(t: &mut Tally, kind: u32, x: u64, r: &Result<u64, PoolError>) {
    let by_sigkill = matches!(r, Err(PoolError::WorkerLost { exitcode: Some(-9), .. }));
    let right = match (kind, r) {
        (NORMAL, Ok(v)) => *v == x.wrapping_mul(x),
        (PANIC, Err(PoolError::Panicked(p))) => p.message() == "hostile task",
        (EXIT, Err(PoolError::WorkerLost { exitcode, .. })) => {
            *exitcode == Some(40 + (x % 20) as i32)
        }
        (KILL_SELF, _) => by_sigkill,
        (ABORT, Err(PoolError::WorkerLost { exitcode, .. })) => *exitcode == Some(-6),
        // Rust's guard-page handler reports and aborts; without it, SIGSEGV.
        (OVERFLOW, Err(PoolError::WorkerLost { exitcode, .. })) => {
            matches!(exitcode, Some(-6) | Some(-11))
        }
        (HANG_TASK, Err(PoolError::TaskTimeout { timeout, .. })) => *timeout == TASK_TIMEOUT,
        _ => false,
    };
    match r {
        Ok(_) => t.ok += 1,
        Err(PoolError::Panicked(_)) => t.panicked += 1,
        Err(PoolError::WorkerLost { .. }) => t.lost += 1,
        Err(PoolError::TaskTimeout { .. }) => t.timeouts += 1,
        Err(PoolError::Timeout) => t.hangs += 1,
        Err(_) => {}
    }
    if !right {
        if startup_kill(r) {
            t.broken_by_startup_kill += 1;
        } else if by_sigkill {
            // An external kill hit the worker running it.
            t.collateral += 1;
        } else {
            t.wrong += 1;
            eprintln!("task kind {kind} x {x}: unexpected outcome {r:?}");
        }
    }
}

/// No zombie among our children, and the same children as `before`.
fn check_processes(before: &[(i32, char)], what: &str) {
    let ok = common::eventually(Duration::from_secs(10), || children_of(my_pid()) == before);
    let now = children_of(my_pid());
    assert!(ok, "{what}: children {now:?}, before {before:?}");
    assert!(now.iter().all(|&(_, s)| s != 'Z'), "{what}: zombies {now:?}");
}

/// Kills one random worker of `pids` (if any) with SIGKILL.
fn kill_a_worker(rng: &mut Rng, pids: Vec<multiproc::Pid>) -> bool {
    if pids.is_empty() {
        return false;
    }
    let pid = pids[rng.below(pids.len() as u64) as usize].as_raw_nonzero().get();
    unsafe { libc::kill(pid, libc::SIGKILL) == 0 }
}

#[test]
fn pool_survives_hostile_tasks_and_worker_kills_with_one_outcome_each() {
    let _s = serial();
    let secs = stress_secs(3);
    let _w = common::watchdog(Duration::from_secs(secs + 120));
    let fds_before = open_fds();
    let kids_before = children_of(my_pid());
    let mut rng = Rng::new(0x9001);
    let mut t = Tally::default();
    let mut pools = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) || pools == 0 {
        // A fresh pool every round: create/destroy cycles too.
        pools += 1;
        let pool = Pool::builder().processes(3).task_timeout(TASK_TIMEOUT).build().unwrap();
        let n = 60;
        let calls: Arc<Vec<AtomicU32>> = Arc::new((0..n).map(|_| AtomicU32::new(0)).collect());
        let mut rs = Vec::new();
        for i in 0..n {
            let kind = pick(&mut rng, true);
            let x = rng.below(1 << 20);
            let r = pool.apply_async(task, (kind, x)).unwrap();
            let (c1, c2) = (calls.clone(), calls.clone());
            r.on_success(move |_| {
                c1[i].fetch_add(1, SeqCst);
            });
            r.on_error(move |_| {
                c2[i].fetch_add(1, SeqCst);
            });
            rs.push((kind, x, r));
            if rng.below(30) == 0 && kill_a_worker(&mut rng, pool.worker_pids()) {
                t.ext_kills += 1;
            }
        }
        let mut broken = false;
        for (kind, x, r) in &rs {
            if rng.below(20) == 0 && kill_a_worker(&mut rng, pool.worker_pids()) {
                t.ext_kills += 1;
            }
            let out = r.get_timeout(HANG);
            t.tasks += 1;
            judge(&mut t, *kind, *x, &out);
            broken |= startup_kill(&out);
            // Asked again: the same outcome (not a second one).
            let again = r.get_timeout(Duration::ZERO);
            assert_eq!(format!("{out:?}"), format!("{again:?}"), "a second, different outcome");
        }
        if broken {
            t.pools_broken += 1;
        } else {
            // The pool goes on after all that.
            let v = pool.map(|x: u64| x + 1, 0..50u64);
            if !v.as_ref().is_err_and(|e| startup_kill(&Err(e.clone()))) {
                assert_eq!(v.unwrap(), (1..51).collect::<Vec<_>>());
            }
        }
        pool.close().unwrap();
        pool.join_timeout(HANG).unwrap();
        // Each callback ran exactly once.
        for (i, c) in calls.iter().enumerate() {
            assert_eq!(c.load(SeqCst), 1, "task {i}: {} callbacks", c.load(SeqCst));
        }
        drop(rs);
        drop(pool);
    }
    check_processes(&kids_before, "after the pools");
    let fds_after = open_fds();
    println!(
        "stress_pool Pool, {secs} s: pools {pools}, tasks {} (ok {}, panicked {}, worker lost {}, \
         task timeouts {}), external worker kills {}, tasks lost to them {}, pools broken by a kill \
         of a starting worker {} ({} tasks), wrong outcomes {}, hangs {}, fds {fds_before} -> \
         {fds_after}, zombies 0",
        t.tasks,
        t.ok,
        t.panicked,
        t.lost,
        t.timeouts,
        t.ext_kills,
        t.collateral,
        t.pools_broken,
        t.broken_by_startup_kill,
        t.wrong,
        t.hangs,
    );
    assert!(t.pools_broken <= t.ext_kills, "pools broken without kills");
    assert_eq!(t.wrong, 0, "wrong outcomes");
    assert_eq!(t.hangs, 0, "results not in within {HANG:?}");
    assert!(t.collateral <= t.ext_kills, "{} tasks lost to {} kills", t.collateral, t.ext_kills);
    assert!(t.ok > 0 && t.panicked > 0 && t.lost > 0);
    // A leak is a descriptor more; the test harness may close one of its own meanwhile.
    assert!(fds_after <= fds_before, "fd leak: {fds_before} -> {fds_after}");
}

#[test]
fn executor_survives_hostile_tasks_and_worker_kills_with_one_outcome_each() {
    let _s = serial();
    let secs = stress_secs(3);
    let _w = common::watchdog(Duration::from_secs(secs + 120));
    let fds_before = open_fds();
    let kids_before = children_of(my_pid());
    let mut rng = Rng::new(0xe8ec);
    let mut t = Tally::default();
    let mut executors = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) || executors == 0 {
        executors += 1;
        let ex = ProcessPoolExecutor::new(3).unwrap();
        let n = 60;
        let calls: Arc<Vec<AtomicU32>> = Arc::new((0..n).map(|_| AtomicU32::new(0)).collect());
        let mut fs = Vec::new();
        for i in 0..n {
            // No task timeout in an executor: no hanging tasks.
            let kind = pick(&mut rng, false);
            let x = rng.below(1 << 20);
            let f = ex.submit(task, (kind, x)).unwrap();
            let c = calls.clone();
            f.add_done_callback(move |_| {
                c[i].fetch_add(1, SeqCst);
            });
            fs.push((kind, x, f));
            if rng.below(30) == 0 && kill_a_worker(&mut rng, ex.worker_pids()) {
                t.ext_kills += 1;
            }
        }
        let mut broken = false;
        for (kind, x, f) in &fs {
            if rng.below(20) == 0 && kill_a_worker(&mut rng, ex.worker_pids()) {
                t.ext_kills += 1;
            }
            let out = f.result_timeout(HANG);
            t.tasks += 1;
            judge(&mut t, *kind, *x, &out);
            broken |= startup_kill(&out);
            assert!(f.done());
        }
        t.pools_broken += u64::from(broken);
        ex.shutdown(true, false).unwrap();
        for (i, c) in calls.iter().enumerate() {
            assert_eq!(c.load(SeqCst), 1, "future {i}: {} callbacks", c.load(SeqCst));
        }
        drop(fs);
        drop(ex);
    }
    check_processes(&kids_before, "after the executors");
    let fds_after = open_fds();
    println!(
        "stress_pool ProcessPoolExecutor, {secs} s: executors {executors}, tasks {} (ok {}, \
         panicked {}, worker lost {}), external worker kills {}, tasks lost to them {}, executors broken by \
         a kill of a starting worker {} ({} tasks), wrong outcomes {}, hangs {}, fds \
         {fds_before} -> {fds_after}, zombies 0",
        t.tasks,
        t.ok,
        t.panicked,
        t.lost,
        t.ext_kills,
        t.collateral,
        t.pools_broken,
        t.broken_by_startup_kill,
        t.wrong,
        t.hangs,
    );
    assert!(t.pools_broken <= t.ext_kills, "pools broken without kills");
    assert_eq!(t.wrong, 0, "wrong outcomes");
    assert_eq!(t.hangs, 0, "results not in within {HANG:?}");
    assert!(t.collateral <= t.ext_kills, "{} tasks lost to {} kills", t.collateral, t.ext_kills);
    assert!(t.ok > 0 && t.panicked > 0 && t.lost > 0);
    // A leak is a descriptor more; the test harness may close one of its own meanwhile.
    assert!(fds_after <= fds_before, "fd leak: {fds_before} -> {fds_after}");
}

fn slow(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(5));
    x
}

#[test]
fn a_killed_fork_server_resolves_every_pending_task() {
    // The fork server is SIGKILLed with work pending: every task still gets exactly one
    // outcome (its value, or a broken-pool / lost-worker error), nothing hangs, nothing leaks.
    let _s = serial();
    let secs = stress_secs(2);
    let _w = common::watchdog(Duration::from_secs(secs + 120));
    let fds_before = open_fds();
    let kids_before = children_of(my_pid());
    let (mut rounds, mut done, mut broken, mut lost) = (0u64, 0u64, 0u64, 0u64);
    let mut rng = Rng::new(0x5e7e);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) || rounds == 0 {
        rounds += 1;
        let pool = Pool::new(2).unwrap();
        let rs: Vec<_> = (0..100u64).map(|i| pool.apply_async(slow, i).unwrap()).collect();
        // The server dies after a random number of results are in (often none).
        let kill_at = rng.below(40) as usize;
        for (i, r) in rs.iter().enumerate().take(kill_at) {
            assert_eq!(r.get_timeout(HANG).unwrap(), i as u64);
        }
        let server = pool.server_pid().as_raw_nonzero().get();
        assert_eq!(unsafe { libc::kill(server, libc::SIGKILL) }, 0);
        for (i, r) in rs.iter().enumerate() {
            match r.get_timeout(HANG) {
                Ok(v) => {
                    assert_eq!(v, i as u64);
                    done += 1;
                }
                Err(e) if e.is_broken() => broken += 1,
                Err(PoolError::WorkerLost { .. }) => lost += 1,
                Err(e) => panic!("task {i}: {e:?}"),
            }
        }
        // Broken for good: new work is refused, clearly.
        let e = pool.apply_async(slow, 1).and_then(|r| r.get_timeout(HANG));
        assert!(matches!(&e, Err(e) if e.is_broken()), "{e:?}");
        drop(rs);
        drop(pool);
    }
    check_processes(&kids_before, "after the killed servers");
    let fds_after = open_fds();
    println!(
        "stress_pool killed fork server, {secs} s: rounds {rounds}, tasks done {done}, broken \
         {broken}, worker lost {lost}, fds {fds_before} -> {fds_after}, zombies 0"
    );
    assert_eq!(done + broken + lost, rounds * 100);
    assert!(broken > 0);
    // A leak is a descriptor more; the test harness may close one of its own meanwhile.
    assert!(fds_after <= fds_before, "fd leak: {fds_before} -> {fds_after}");
}

fn square(x: u64) -> u64 {
    x * x
}

/// A worker killed by an outside `SIGKILL` (the OOM killer, an operator) before it has told the
/// pool it is ready is replaced, like one killed later: the pool (which has no initializer)
/// stays usable. It used to break the whole pool with `InitializerFailed("worker N ended before
/// it was ready ...")`, in about one executor in eight of the stress runs above.
#[test]
fn a_worker_killed_while_starting_does_not_break_the_pool() {
    let _s = serial();
    let _w = common::watchdog(Duration::from_secs(120));
    for round in 0..50 {
        let pool = Pool::new(2).unwrap();
        let first = pool.apply_async(square, 1).unwrap();
        // Drive the pool until its workers exist, then kill them at once.
        let mut pids = Vec::new();
        let start = Instant::now();
        while pids.is_empty() && start.elapsed() < Duration::from_secs(10) {
            let _ = first.ready();
            pids = pool.worker_pids();
        }
        assert!(!pids.is_empty(), "no worker within 10 s");
        for p in &pids {
            assert_eq!(unsafe { libc::kill(p.as_raw_nonzero().get(), libc::SIGKILL) }, 0);
        }
        // The first task may be lost with its worker; later work must run.
        let _ = first.get_timeout(HANG);
        let r = pool.apply_async(square, 3).and_then(|r| r.get_timeout(HANG));
        assert!(matches!(r, Ok(9)), "round {round}: {r:?}");
    }
}
