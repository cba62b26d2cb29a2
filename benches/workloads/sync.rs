//! The synchronisation primitives against raw libc code written here and Python's
//! `multiprocessing`, in the same run (issue 4 §4):
//!
//! 1. uncontended acquire + release: `Lock` (guard and `acquire`/`release`) against a raw
//!    process-shared robust pthread mutex in a `MAP_SHARED` page (and, for reference, a robust
//!    error-checking one and a plain non-robust one) and Python's `Lock`; `RLock`, `Semaphore`,
//!    `Event` set/clear and an uncontended `Value` increment for information;
//! 2. two processes each incrementing a shared counter: `Value<u64>` (`*v.lock()? += 1`) against
//!    the raw robust mutex protecting a `u64` next to it, `RawValue::fetch_add` (atomic) and
//!    Python's `Value('q').get_lock()`;
//! 3. wake-up round trip between two processes: `Event` ping-pong and `Condition` ping-pong
//!    against a raw spin-then-futex ping-pong on two shared words, and Python's `Event`
//!    ping-pong.
//!
//! Targets: uncontended ≤ 1.3× the raw robust pthread mutex; contended counter ≥ 0.8× its
//! throughput; wake-up round trip ≤ 2× the raw spin-then-futex ping-pong.
//!
//! Children are forked with libc `fork` (they get `PR_SET_PDEATHSIG(SIGKILL)`), every wait is
//! bounded, and every child is reaped (killed first if it overstays). In sections 2 and 3 the
//! bench and its child are pinned to two different CPUs (see `Pinned`). Run with
//! `cargo bench --bench sync` (`MULTIPROC_BENCH_QUICK=1` for a rough, fast run;
//! `MULTIPROC_BENCH_SYNC_ONLY=2,3` for some sections only).
#![allow(unsafe_code, clippy::undocumented_unsafe_blocks)]

use std::hint::spin_loop;
use std::mem::size_of;
use std::ptr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::common::{Case, PY_REPORT, Stats, Table, compare, headline, python, quick, rounds};
use multiproc::sys::Errno;
use multiproc::sys::sync::futex::{futex_wait, futex_wake};
use multiproc::sys::time::Deadline;
use multiproc::{Condition, Event, Lock, RLock, RawValue, Semaphore, Value};

/// The bound on every wait of the bench, in either process.
const LIMIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Shared memory, raw mutexes, children (libc only)
// ---------------------------------------------------------------------------------------------

/// An anonymous `MAP_SHARED` mapping, zero-filled, unmapped on drop (in the process that made
/// it; forked children `_exit` without dropping).
struct Shm {
    ptr: *mut u8,
    len: usize,
}

impl Shm {
    fn new(len: usize) -> Shm {
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED, "mmap: {}", std::io::Error::last_os_error());
        Shm { ptr: p.cast(), len }
    }

    /// A reference to the `T` at `offset` (zero-filled memory: `T` must be valid as zeroes).
    fn at<T>(&self, offset: usize) -> &T {
        assert!(offset + size_of::<T>() <= self.len && offset.is_multiple_of(align_of::<T>()));
        unsafe { &*self.ptr.add(offset).cast::<T>() }
    }
}

impl Drop for Shm {
    fn drop(&mut self) {
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum MutexKind {
    /// `PTHREAD_PROCESS_SHARED` + `PTHREAD_MUTEX_ROBUST`, default (normal) type: the baseline.
    Robust,
    /// The same with `PTHREAD_MUTEX_ERRORCHECK`, the attributes `multiproc::Lock` uses.
    RobustErrorCheck,
    /// `PTHREAD_PROCESS_SHARED` only.
    Plain,
}

/// A raw process-shared pthread mutex at the start of its own `MAP_SHARED` page, with a `u64`
/// right after it (`struct { pthread_mutex_t m; uint64_t n; }`, what C code would write).
struct RawMutex {
    shm: Shm,
}

impl RawMutex {
    fn new(kind: MutexKind) -> RawMutex {
        let shm = Shm::new(4096);
        unsafe {
            let mut attr = std::mem::MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
            assert_eq!(libc::pthread_mutexattr_init(attr.as_mut_ptr()), 0);
            let a = attr.as_mut_ptr();
            assert_eq!(libc::pthread_mutexattr_setpshared(a, libc::PTHREAD_PROCESS_SHARED), 0);
            if kind != MutexKind::Plain {
                assert_eq!(libc::pthread_mutexattr_setrobust(a, libc::PTHREAD_MUTEX_ROBUST), 0);
            }
            if kind == MutexKind::RobustErrorCheck {
                assert_eq!(libc::pthread_mutexattr_settype(a, libc::PTHREAD_MUTEX_ERRORCHECK), 0);
            }
            assert_eq!(libc::pthread_mutex_init(shm.ptr.cast(), a), 0);
            libc::pthread_mutexattr_destroy(a);
        }
        RawMutex { shm }
    }

    #[inline]
    fn raw(&self) -> *mut libc::pthread_mutex_t {
        self.shm.ptr.cast()
    }

    #[inline]
    fn lock(&self) {
        let r = unsafe { libc::pthread_mutex_lock(self.raw()) };
        if r != 0 {
            panic!("pthread_mutex_lock: {r}");
        }
    }

    #[inline]
    fn unlock(&self) {
        let r = unsafe { libc::pthread_mutex_unlock(self.raw()) };
        if r != 0 {
            panic!("pthread_mutex_unlock: {r}");
        }
    }

    /// `n` times: lock, increment the counter, unlock.
    fn increment(&self, n: u64) {
        for _ in 0..n {
            self.lock();
            unsafe { *self.counter() += 1 };
            self.unlock();
        }
    }

    /// The counter, read under the mutex.
    fn read_counter(&self) -> u64 {
        self.lock();
        let v = unsafe { *self.counter() };
        self.unlock();
        v
    }

    /// The `u64` after the mutex; only touched with the mutex held.
    #[inline]
    fn counter(&self) -> *mut u64 {
        unsafe { self.shm.ptr.add(size_of::<libc::pthread_mutex_t>().next_multiple_of(8)).cast() }
    }
}

/// The CPUs this process may run on.
fn allowed_cpus() -> Vec<usize> {
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) };
    assert_eq!(r, 0, "sched_getaffinity: {}", std::io::Error::last_os_error());
    (0..libc::CPU_SETSIZE as usize).filter(|&c| unsafe { libc::CPU_ISSET(c, &set) }).collect()
}

/// Restricts the calling process to `cpus`.
fn set_affinity(cpus: &[usize]) {
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus {
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    let r = unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) };
    assert_eq!(r, 0, "sched_setaffinity: {}", std::io::Error::last_os_error());
}

/// Pins the bench to one CPU and names another for its child, so that the two processes of a
/// contended or ping-pong case really run at the same time (otherwise the scheduler may put
/// both on one CPU, where spinning cannot help anyone); restores the affinity on drop. With
/// only one CPU there is no pinning. The Python scripts run unpinned: every wake-up of theirs
/// goes through the kernel, and pinned to CPUs that other jobs share they were ten times slower
/// (a woken process waits for its CPU instead of taking an idle one).
struct Pinned {
    saved: Vec<usize>,
    parent: Option<usize>,
    child: Option<usize>,
}

impl Pinned {
    fn new() -> Pinned {
        let saved = allowed_cpus();
        if saved.len() < 2 {
            return Pinned { saved, parent: None, child: None };
        }
        set_affinity(&saved[..1]);
        Pinned { parent: Some(saved[0]), child: Some(saved[1]), saved }
    }

    fn describe(&self) -> String {
        match (self.parent, self.child) {
            (Some(p), Some(c)) => format!("parent pinned to CPU {p}, child to CPU {c}"),
            _ => "one CPU: not pinned".to_string(),
        }
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        set_affinity(&self.saved);
    }
}

/// Forks a child that runs `f` and `_exit`s with its value (101 if it panicked), pinned to
/// `cpu` if given. The child dies with the bench (`PR_SET_PDEATHSIG(SIGKILL)`). The bench is
/// single-threaded when it forks.
fn fork_child(cpu: Option<usize>, f: impl FnOnce() -> i32) -> libc::pid_t {
    let parent = unsafe { libc::getpid() };
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if libc::getppid() != parent {
                libc::_exit(102);
            }
        }
        if let Some(cpu) = cpu {
            set_affinity(&[cpu]);
        }
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(101);
        unsafe { libc::_exit(code) };
    }
    pid
}

/// Reaps `pid`, waiting at most [`LIMIT`] (then kills it); panics unless it exited with 0.
fn reap(pid: libc::pid_t) {
    let start = Instant::now();
    let mut status = 0;
    loop {
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            break;
        }
        assert!(r == 0, "waitpid: {}", std::io::Error::last_os_error());
        if start.elapsed() > LIMIT {
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            panic!("child {pid} did not finish within {LIMIT:?} (killed and reaped)");
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child {pid} failed (wait status {status:#x})"
    );
}

/// Spins (yielding the CPU) until `cond` holds; false after [`LIMIT`].
fn spin_until(mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > LIMIT {
            return false;
        }
        std::thread::yield_now();
    }
    true
}

/// A case of [`compare_timed`]: a name and an operation that returns its own time per
/// operation, in nanoseconds.
type TimedCase<'a> = (&'static str, Box<dyn FnMut() -> f64 + 'a>);

/// Like [`compare`], for operations that time themselves: each returns nanoseconds per
/// operation (so setup such as a fork stays out of the measurement). Interleaved, rotated, one
/// discarded warm-up round.
fn compare_timed(rounds: usize, cases: &mut [TimedCase<'_>]) -> Vec<Stats> {
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); cases.len()];
    for round in 0..=rounds {
        for k in 0..cases.len() {
            let i = (k + round) % cases.len();
            let ns = (cases[i].1)();
            if round > 0 {
                samples[i].push(ns);
            }
        }
    }
    samples.into_iter().map(Stats::from_samples).collect()
}

/// One PASS/MISS line of the final summary.
struct Verdict {
    line: String,
}

fn time_target(what: &str, ours: &Stats, base: &Stats, max: f64) -> Verdict {
    let r = ours.median / base.median;
    let v = if r <= max { "PASS" } else { "MISS" };
    Verdict { line: format!("{v}  {what}: {r:.2}× the time (target ≤ {max}×)") }
}

fn throughput_target(what: &str, ours: &Stats, base: &Stats, min: f64) -> Verdict {
    let r = base.median / ours.median;
    let v = if r >= min { "PASS" } else { "MISS" };
    Verdict { line: format!("{v}  {what}: {r:.2}× the throughput (target ≥ {min}×)") }
}

// ---------------------------------------------------------------------------------------------
// 1. Uncontended acquire + release
// ---------------------------------------------------------------------------------------------

const PY_UNCONTENDED: &str = r#"
import multiprocessing as mp, time
if __name__ == "__main__":
    kind = "KIND"
    if kind == "event":
        o = mp.Event()
        a, r = o.set, o.clear
    else:
        o = {"lock": mp.Lock, "rlock": mp.RLock, "sem": mp.Semaphore}[kind]()
        a, r = o.acquire, o.release
    for _ in range(20000):
        a(); r()
    samples = []
    for _ in range(ROUNDS):
        t = time.perf_counter_ns()
        for _ in range(ITERS):
            a(); r()
        samples.append((time.perf_counter_ns() - t) / ITERS)
    report(samples)
"#;

fn uncontended(verdicts: &mut Vec<Verdict>) {
    let rounds = rounds(30);
    let iters = 100_000;
    println!(
        "# 1. uncontended acquire + release ({rounds} rounds × {iters} per case, interleaved)"
    );

    let robust = RawMutex::new(MutexKind::Robust);
    let robust_ec = RawMutex::new(MutexKind::RobustErrorCheck);
    let plain = RawMutex::new(MutexKind::Plain);
    let lock = Lock::new().unwrap();
    let rlock = RLock::new().unwrap();
    let sem = Semaphore::new(1).unwrap();
    let event = Event::new().unwrap();
    let value = Value::new(0u64).unwrap();

    let mut cases = [
        Case::new("raw pshared robust pthread mutex", || {
            robust.lock();
            robust.unlock();
        }),
        Case::new("raw pshared robust errorcheck mutex", || {
            robust_ec.lock();
            robust_ec.unlock();
        }),
        Case::new("raw pshared non-robust mutex", || {
            plain.lock();
            plain.unlock();
        }),
        Case::new("multiproc Lock::lock (guard)", || match lock.lock() {
            Ok(g) => drop(g),
            Err(e) => panic!("lock: {e}"),
        }),
        Case::new("multiproc Lock::acquire/release", || {
            lock.acquire().unwrap();
            lock.release().unwrap();
        }),
        Case::new("multiproc RLock::lock (guard)", || match rlock.lock() {
            Ok(g) => drop(g),
            Err(e) => panic!("rlock: {e}"),
        }),
        Case::new("multiproc RLock::acquire/release", || {
            rlock.acquire().unwrap();
            rlock.release().unwrap();
        }),
        Case::new("multiproc Semaphore acquire/release", || {
            sem.acquire().unwrap();
            sem.release().unwrap();
        }),
        Case::new("multiproc Event set/clear", || {
            event.set();
            event.clear();
        }),
        Case::new("multiproc *Value<u64>.lock() += 1", || match value.lock() {
            Ok(mut g) => *g += 1,
            Err(e) => panic!("value: {e}"),
        }),
    ];
    let stats = compare(rounds, iters, &mut cases);
    let names: Vec<&str> = cases.iter().map(|c| c.name).collect();
    drop(cases);

    let py_rounds = rounds.min(10).to_string();
    let py = |kind: &str, what: &str| {
        let script = format!(
            "{PY_REPORT}\n{}",
            PY_UNCONTENDED
                .replace("KIND", kind)
                .replace("ROUNDS", &py_rounds)
                .replace("ITERS", "100000")
        );
        python(what, &script)
    };
    let py_rows = [
        ("Python Lock acquire/release", py("lock", "Lock")),
        ("Python RLock acquire/release", py("rlock", "RLock")),
        ("Python Semaphore acquire/release", py("sem", "Semaphore")),
        ("Python Event set/clear", py("event", "Event")),
    ];

    let table = Table::new("uncontended acquire + release", None);
    let base = ("raw robust", &stats[0]);
    for (name, s) in names.iter().zip(&stats) {
        table.row(name, s, Some(base));
    }
    for (name, s) in &py_rows {
        if let Some(s) = s {
            table.row(name, s, Some(base));
        }
    }
    if let Some(py_lock) = &py_rows[0].1 {
        table.row("  (Lock guard vs Python Lock)", &stats[3], Some(("Python", py_lock)));
    }
    headline(
        "Lock acquire + release, uncontended",
        &stats[3],
        Some(("robust pthread mutex", &stats[0])),
        py_rows[0].1.as_ref(),
    );
    verdicts.push(time_target(
        "uncontended Lock guard vs raw robust mutex",
        &stats[3],
        &stats[0],
        1.3,
    ));
    verdicts.push(time_target(
        "uncontended Lock::acquire/release vs raw robust mutex",
        &stats[4],
        &stats[0],
        1.3,
    ));
}

// ---------------------------------------------------------------------------------------------
// 2. Two processes incrementing a shared counter
// ---------------------------------------------------------------------------------------------

/// The start/finish handshake of one contended run, in its own shared page.
struct Ctl {
    shm: Shm,
}

impl Ctl {
    fn new() -> Ctl {
        Ctl { shm: Shm::new(4096) }
    }
    fn ready(&self) -> &AtomicU32 {
        self.shm.at(0)
    }
    fn go(&self) -> &AtomicU32 {
        self.shm.at(64)
    }
    fn done(&self) -> &AtomicU32 {
        self.shm.at(128)
    }
}

/// Runs `work(n)` in the parent and in a forked child at the same time and returns the
/// nanoseconds per increment (both processes' increments counted). Only the work is timed: from
/// the start signal (once the child is ready) until both have finished. `check` then verifies
/// the counter.
fn contended_run(
    ctl: &Ctl,
    cpu: Option<usize>,
    n: u64,
    work: &dyn Fn(u64),
    check: &dyn Fn() -> u64,
) -> f64 {
    let before = check();
    ctl.ready().store(0, Ordering::SeqCst);
    ctl.go().store(0, Ordering::SeqCst);
    ctl.done().store(0, Ordering::SeqCst);
    let pid = fork_child(cpu, || {
        ctl.ready().store(1, Ordering::SeqCst);
        if !spin_until(|| ctl.go().load(Ordering::SeqCst) != 0) {
            return 3;
        }
        work(n);
        ctl.done().store(1, Ordering::SeqCst);
        0
    });
    assert!(spin_until(|| ctl.ready().load(Ordering::SeqCst) != 0), "child never got ready");
    let start = Instant::now();
    ctl.go().store(1, Ordering::SeqCst);
    work(n);
    let finished = spin_until(|| ctl.done().load(Ordering::SeqCst) != 0);
    let elapsed = start.elapsed();
    reap(pid);
    assert!(finished, "child never finished");
    let after = check();
    assert_eq!(after.wrapping_sub(before), 2 * n, "lost increments");
    elapsed.as_nanos() as f64 / (2 * n) as f64
}

const PY_CONTENDED: &str = r#"
import multiprocessing as mp, time
def work(v, n):
    for _ in range(n):
        with v.get_lock():
            v.value += 1
def child(v, n, ready, go, done):
    ready.set()
    if not go.wait(30):
        return
    work(v, n)
    done.set()
if __name__ == "__main__":
    mp.set_start_method("fork")
    v = mp.Value("q", 0)
    work(v, 2000)
    samples = []
    for _ in range(ROUNDS):
        ready, go, done = mp.Event(), mp.Event(), mp.Event()
        before = v.value
        p = mp.Process(target=child, args=(v, NPER, ready, go, done))
        p.start()
        assert ready.wait(30)
        t = time.perf_counter_ns()
        go.set()
        work(v, NPER)
        assert done.wait(60)
        samples.append((time.perf_counter_ns() - t) / (2 * NPER))
        p.join(30)
        assert v.value - before == 2 * NPER
    report(samples)
"#;

fn contended(verdicts: &mut Vec<Verdict>) {
    let rounds = rounds(20);
    let n: u64 = if quick() { 200_000 } else { 500_000 };
    let pin = Pinned::new();
    let cpu = pin.child;
    println!();
    println!(
        "# 2. two processes × {n} increments of a shared u64 ({rounds} rounds per case, \
         interleaved; {})",
        pin.describe()
    );
    let ctl = Ctl::new();

    let robust = RawMutex::new(MutexKind::Robust);
    let plain = RawMutex::new(MutexKind::Plain);
    let value = Value::new(0u64).unwrap();
    let raw_value = RawValue::new(0u64).unwrap();
    let lock = Lock::new().unwrap();
    let lock_counter = Shm::new(4096);

    let robust_work = |n| robust.increment(n);
    let robust_check = || robust.read_counter();
    let plain_work = |n| plain.increment(n);
    let plain_check = || plain.read_counter();
    let lock_word: &AtomicU64 = lock_counter.at(0);

    let mut cases: [TimedCase<'_>; 5] = [
        (
            "raw robust pthread mutex + u64 beside it",
            Box::new(|| contended_run(&ctl, cpu, n, &robust_work, &robust_check)),
        ),
        (
            "raw non-robust pthread mutex + u64",
            Box::new(|| contended_run(&ctl, cpu, n, &plain_work, &plain_check)),
        ),
        (
            "multiproc *Value<u64>.lock() += 1",
            Box::new(|| {
                contended_run(
                    &ctl,
                    cpu,
                    n,
                    &|n| {
                        for _ in 0..n {
                            match value.lock() {
                                Ok(mut g) => *g += 1,
                                Err(e) => panic!("value: {e}"),
                            }
                        }
                    },
                    &|| value.load().unwrap(),
                )
            }),
        ),
        (
            "multiproc Lock guard + u64 (own page)",
            Box::new(|| {
                contended_run(
                    &ctl,
                    cpu,
                    n,
                    &|n| {
                        for _ in 0..n {
                            match lock.lock() {
                                Ok(g) => {
                                    // Under the lock: a plain read-modify-write would do; the
                                    // relaxed atomic only keeps the bench free of `unsafe`.
                                    let v = lock_word.load(Ordering::Relaxed);
                                    lock_word.store(v + 1, Ordering::Relaxed);
                                    drop(g);
                                }
                                Err(e) => panic!("lock: {e}"),
                            }
                        }
                    },
                    &|| lock_word.load(Ordering::SeqCst),
                )
            }),
        ),
        (
            "multiproc RawValue::fetch_add (atomic)",
            Box::new(|| {
                contended_run(
                    &ctl,
                    cpu,
                    n,
                    &|n| {
                        for _ in 0..n {
                            raw_value.fetch_add(1);
                        }
                    },
                    &|| raw_value.load(),
                )
            }),
        ),
    ];
    let stats = compare_timed(rounds, &mut cases);
    let names: Vec<&str> = cases.iter().map(|c| c.0).collect();
    drop(cases);

    let py_n = if quick() { 10_000 } else { 50_000 };
    let script = format!(
        "{PY_REPORT}\n{}",
        PY_CONTENDED
            .replace("ROUNDS", &rounds.min(5).to_string())
            .replace("NPER", &py_n.to_string())
    );
    drop(pin);
    let py = python("Value.get_lock() counter", &script);

    let table = Table::new("contended counter, time per increment (2 processes)", None);
    let base = ("raw robust", &stats[0]);
    for (name, s) in names.iter().zip(&stats) {
        table.row(name, s, Some(base));
    }
    if let Some(py) = &py {
        let label = format!("Python Value('q').get_lock() ({py_n}/process, unpinned)");
        table.row(&label, py, Some(base));
        table.row("  (Value vs Python)", &stats[2], Some(("Python", py)));
    }
    headline(
        "Value += 1 under its lock, 2 processes contending",
        &stats[2],
        Some(("robust pthread mutex", &stats[0])),
        py.as_ref(),
    );
    verdicts.push(throughput_target(
        "contended Value<u64> counter vs raw robust mutex",
        &stats[2],
        &stats[0],
        0.8,
    ));
}

// ---------------------------------------------------------------------------------------------
// 3. Wake-up round trip
// ---------------------------------------------------------------------------------------------

/// A one-slot mailbox for the raw ping-pong: 0 empty, 1 full, 2 empty with a sleeper.
struct RawFlag<'a>(&'a AtomicU32);

/// Spin iterations before sleeping, as glibc's adaptive mutex and `multiproc` use.
const RAW_SPIN: u32 = 100;

impl RawFlag<'_> {
    #[inline]
    fn post(&self) {
        if self.0.swap(1, Ordering::Release) == 2 {
            futex_wake(self.0, 1).unwrap();
        }
    }

    /// Waits for the flag and empties it; false after [`LIMIT`].
    #[inline]
    fn take(&self) -> bool {
        for _ in 0..RAW_SPIN {
            if self.0.load(Ordering::Acquire) == 1 {
                self.0.store(0, Ordering::Relaxed);
                return true;
            }
            spin_loop();
        }
        let deadline = Deadline::after(Some(LIMIT));
        loop {
            match self.0.compare_exchange(0, 2, Ordering::Acquire, Ordering::Acquire) {
                Ok(_) | Err(2) => match futex_wait(self.0, 2, deadline) {
                    Ok(()) => {}
                    Err(Errno::TIMEDOUT) => return false,
                    Err(e) => panic!("futex_wait: {e}"),
                },
                Err(_) => {
                    self.0.store(0, Ordering::Relaxed);
                    return true;
                }
            }
        }
    }
}

const PY_PING_PONG: &str = r#"
import multiprocessing as mp, time
def child(a, b, stop):
    while a.wait(30):
        a.clear()
        if stop.is_set():
            break
        b.set()
if __name__ == "__main__":
    mp.set_start_method("fork")
    a, b, stop = mp.Event(), mp.Event(), mp.Event()
    p = mp.Process(target=child, args=(a, b, stop))
    p.start()
    def rt():
        a.set()
        assert b.wait(30)
        b.clear()
    for _ in range(500):
        rt()
    samples = []
    for _ in range(ROUNDS):
        t = time.perf_counter_ns()
        for _ in range(ITERS):
            rt()
        samples.append((time.perf_counter_ns() - t) / ITERS)
    stop.set()
    a.set()
    p.join(30)
    report(samples)
"#;

fn wake_up(verdicts: &mut Vec<Verdict>) {
    let rounds = rounds(60);
    let iters = 500;
    println!();
    let pin = Pinned::new();
    let cpu = pin.child;
    println!(
        "# 3. wake-up round trip between two processes ({rounds} rounds × {iters}, interleaved; {})",
        pin.describe()
    );
    let stop = Shm::new(4096);
    let stop_word: &AtomicU32 = stop.at(0);

    // Raw: two mailboxes on separate cache lines.
    let words = Shm::new(4096);
    let (ping, pong) = (RawFlag(words.at(0)), RawFlag(words.at(64)));
    let raw_pid = fork_child(cpu, || {
        loop {
            if !ping.take() {
                return 3;
            }
            if stop_word.load(Ordering::SeqCst) != 0 {
                return 0;
            }
            pong.post();
        }
    });

    // Event ping-pong.
    let (ea, eb) = (Event::new().unwrap(), Event::new().unwrap());
    let event_pid = fork_child(cpu, || {
        loop {
            if !ea.wait_timeout(LIMIT) {
                return 3;
            }
            ea.clear();
            if stop_word.load(Ordering::SeqCst) != 0 {
                return 0;
            }
            eb.set();
        }
    });

    // Condition ping-pong: `turn` 1 = the parent's ping, 2 = the child's pong, 3 = stop.
    let cond = Condition::with_lock(Lock::new().unwrap()).unwrap();
    let turn = RawValue::new(0u32).unwrap();
    let cond_pid = fork_child(cpu, || {
        let _g = cond.lock().unwrap();
        loop {
            match turn.load() {
                1 => {
                    turn.store(2);
                    cond.notify(1).unwrap();
                }
                3 => return 0,
                _ => {
                    if !cond.wait_timeout(LIMIT).unwrap() {
                        return 3;
                    }
                }
            }
        }
    });

    let mut cases = [
        Case::new("raw spin-then-futex ping-pong", || {
            ping.post();
            assert!(pong.take(), "raw ping-pong: no answer");
        }),
        Case::new("multiproc Event ping-pong", || {
            ea.set();
            assert!(eb.wait_timeout(LIMIT), "Event ping-pong: no answer");
            eb.clear();
        }),
        Case::new("multiproc Condition ping-pong", || {
            let _g = cond.lock().unwrap();
            turn.store(1);
            cond.notify(1).unwrap();
            while turn.load() != 2 {
                assert!(cond.wait_timeout(LIMIT).unwrap(), "Condition ping-pong: no answer");
            }
        }),
    ];
    let stats = compare(rounds, iters, &mut cases);
    let names: Vec<&str> = cases.iter().map(|c| c.name).collect();
    drop(cases);

    // Stop and reap the children.
    stop_word.store(1, Ordering::SeqCst);
    ping.post();
    ea.set();
    {
        let _g = cond.lock().unwrap();
        turn.store(3);
        cond.notify_all().unwrap();
    }
    reap(raw_pid);
    reap(event_pid);
    reap(cond_pid);

    let script = format!(
        "{PY_REPORT}\n{}",
        PY_PING_PONG.replace("ROUNDS", &rounds.min(10).to_string()).replace("ITERS", "2000")
    );
    drop(pin);
    let py = python("Event ping-pong", &script);

    let table = Table::new("wake-up round trip", None);
    let base = ("raw spin+futex", &stats[0]);
    for (name, s) in names.iter().zip(&stats) {
        table.row(name, s, Some(base));
    }
    if let Some(py) = &py {
        table.row("Python Event ping-pong (unpinned)", py, Some(base));
        table.row("  (Event vs Python)", &stats[1], Some(("Python", py)));
    }
    headline(
        "Event set → wait round trip",
        &stats[1],
        Some(("spin-then-futex ping-pong", &stats[0])),
        py.as_ref(),
    );
    verdicts.push(time_target(
        "Event round trip vs raw spin-then-futex",
        &stats[1],
        &stats[0],
        2.0,
    ));
    verdicts.push(time_target(
        "Condition round trip vs raw spin-then-futex",
        &stats[2],
        &stats[0],
        2.0,
    ));
}

/// Runs every case of this file and prints its tables.
pub fn run() {
    // `MULTIPROC_BENCH_SYNC_ONLY=2,3` runs only those sections (for investigating one target).
    let only = std::env::var("MULTIPROC_BENCH_SYNC_ONLY").unwrap_or_default();
    let run = |n: &str| only.is_empty() || only.split(',').any(|s| s.trim() == n);
    let mut verdicts = Vec::new();
    if run("1") {
        uncontended(&mut verdicts);
    }
    if run("2") {
        contended(&mut verdicts);
    }
    if run("3") {
        wake_up(&mut verdicts);
    }
    println!();
    println!("## targets (issue 4 §4)");
    for v in &verdicts {
        println!("{}", v.line);
    }
}
