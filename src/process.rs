//! `Process`: run a closure in a forked child — Python's `multiprocessing.Process`.
//!
//! ```
//! use multiproc::Process;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let p = Process::new(|| (1..=1000u64).sum::<u64>());
//! p.start()?;
//! assert_eq!(p.join(None)?, 500_500); // the child's return value, sent back to the parent
//! assert_eq!(p.exitcode(), Some(0));
//! # Ok(())
//! # }
//! ```
//!
//! # What happens in the child
//!
//! [`Process::start`] flushes the parent's stdout and stderr (or the child would print their
//! buffered text again) and holds their locks across the fork, so that the child, which
//! inherits them as held by its only thread, can print and flush even if another thread of the
//! parent was printing at that moment. It creates the anonymous file (a memfd) that will carry
//! the result back, and forks. The child then, before running your closure, does only
//! allocation-free, lock-free work: it resets the crate's per-process bookkeeping, closes the
//! descriptors of the parent's pools (their worker channels and control sockets: the child must
//! not be able to talk to the parent's workers), sets the parent-death signal and the CPU
//! affinity if asked. It runs the closure under
//! `catch_unwind`, writes the return value (or the panic message) to the file, flushes
//! stdout/stderr and ends with `_exit`: it never returns into the parent's `main` or test
//! harness, and never runs the parent's destructors or `atexit` handlers. The parent sleeps
//! only until the child's exit (on its pidfd, or in `waitpid`), then reads the file: writing
//! the value never blocks the child, whatever its size.
//!
//! # Exit codes, as in Python
//!
//! | how the child ended | [`exitcode`](Process::exitcode) | [`join`](Process::join) |
//! |---|---|---|
//! | the closure returned | `0` | `Ok(value)` |
//! | the closure panicked | `1` | [`JoinError::Panicked`] with the message |
//! | it called `std::process::exit(n)` | `n` | [`JoinError::Exited`] (or `NoResult` for 0) |
//! | killed by signal `N` | `-N` | [`JoinError::Signaled`] |
//!
//! # Forking a multithreaded process
//!
//! `fork` copies only the calling thread. A lock that another thread held at that moment stays
//! locked forever in the child, so the child must not touch it: with glibc the allocator is
//! safe, but stdout's lock, a `Mutex` of yours or a logger's may not be. The closure you give a
//! `Process` runs in such a child whenever your program has other threads (the test harness
//! does). [`ProcessBuilder::require_single_threaded`] turns that situation into an error;
//! [`thread_count`] tells you where you stand. `Pool` and `ProcessPoolExecutor` avoid the hazard
//! altogether by forking their workers from a single-threaded fork server.
//!
//! # Lifetime of children
//!
//! Every child is reaped: by `join`, by `is_alive`/`exitcode` once it has ended, or after its
//! handle is dropped. Dropping the handle of a running **daemon** child kills it; a running
//! non-daemon child is left running and reaped by a later `start`, [`active_children`] or drop.
//! Daemon children also get `PR_SET_PDEATHSIG(SIGKILL)`, so they die with their parent even if
//! the parent is SIGKILLed. Linux sends that signal when the *thread* that forked the child
//! exits: create long-lived daemon children from a long-lived thread.

#![allow(unsafe_code)] // fork and the child's entry, `waitid`, the child registry, `set_len`.

use std::any::Any;
use std::fmt;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, TryLockError};
use std::time::Duration;

use multiproc_sys::affinity::CpuSet;
use multiproc_sys::fork::{self as sysfork, ForkOutcome};
use multiproc_sys::time::Deadline;
use multiproc_sys::wait::{self, ExitStatus, Pidfd};
use multiproc_sys::{Errno, Pid, Signal, pipe as syspipe};

use crate::codec::{DecodeError, Encode, Message};

// ---------------------------------------------------------------------------------------------
// Errors

/// Why [`Process::start`] failed.
///
/// Python raises `AssertionError` for a misused `start` (and `OSError` when `fork` fails); here
/// `start` returns a `StartError`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use multiproc::{Process, StartError};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let p = Process::new(|| 7u8);
/// p.start()?;
/// // Python: AssertionError('cannot start a process twice')
/// match p.start() {
///     Err(StartError::AlreadyStarted) => {}
///     other => panic!("unexpected {other:?}"),
/// }
/// assert_eq!(p.join(Some(Duration::from_secs(10)))?, 7);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum StartError {
    /// `start` was already called on this object (Python: "cannot start a process twice").
    AlreadyStarted,
    /// A daemonic process may not create children (Python's rule, kept for fidelity).
    DaemonicParent,
    /// The handle was created in another process; only its creator may start it.
    NotCreator,
    /// Other threads exist and the builder asked for a single-threaded parent
    /// ([`ProcessBuilder::require_single_threaded`]).
    MultiThreaded {
        /// How many threads the process had.
        threads: usize,
    },
    /// `fork`, `memfd_create` or another system call failed.
    Os(io::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::AlreadyStarted => f.write_str("cannot start a process twice"),
            StartError::DaemonicParent => {
                f.write_str("daemonic processes are not allowed to have children")
            }
            StartError::NotCreator => f.write_str("a process can only be started by its creator"),
            StartError::MultiThreaded { threads } => write!(
                f,
                "refusing to fork: the process has {threads} threads and fork copies only one \
                 (locks held by the others would stay locked in the child)"
            ),
            StartError::Os(e) => write!(f, "cannot start process: {e}"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Os(e) => Some(e),
            _ => None,
        }
    }
}

impl From<Errno> for StartError {
    fn from(e: Errno) -> Self {
        StartError::Os(e.into())
    }
}

/// Why [`Process::join`] did not produce the closure's return value.
///
/// Python's `join` returns `None` whatever happened (the caller then checks `exitcode`, which
/// is `None` after a timeout); here `join` returns the closure's value, or a `JoinError` that
/// says why there is none.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use multiproc::{JoinError, Process};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let p = Process::new(|| std::thread::sleep(Duration::from_secs(10)));
/// assert!(matches!(p.join(None), Err(JoinError::NotStarted)));
/// p.start()?;
/// // Python: p.join(0.01) returns with the child still running.
/// assert!(matches!(p.join(Some(Duration::from_millis(10))), Err(JoinError::Timeout)));
/// p.kill()?;
/// match p.join(Some(Duration::from_secs(10))) {
///     Err(JoinError::Signaled(signal)) => assert_eq!(signal, 9), // SIGKILL
///     other => panic!("unexpected {other:?}"),
/// }
/// assert_eq!(p.exitcode(), Some(-9)); // as in Python
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum JoinError {
    /// The timeout passed and the child is still running; `join` may be called again.
    Timeout,
    /// `join` was called before `start` (Python: "can only join a started process").
    NotStarted,
    /// The handle belongs to another process (Python: "can only join a child process").
    NotCreator,
    /// An earlier `join` already returned the child's value.
    ResultTaken,
    /// [`close`](Process::close) was called (Python: "process object is closed").
    Closed,
    /// The closure panicked (exit code 1); this is the panic message.
    Panicked(String),
    /// The child exited with this non-zero code without returning a value (for example
    /// through `std::process::exit`).
    Exited(i32),
    /// The child exited with code 0 but sent no value (it called `std::process::exit(0)`).
    NoResult,
    /// The child was killed by this signal (its exit code is `-signal`).
    Signaled(i32),
    /// The child failed before running the closure: setting its CPU affinity or its
    /// parent-death signal failed with this error.
    Setup(io::Error),
    /// The child's value arrived but could not be decoded.
    Decode(DecodeError),
    /// The child was reaped by someone else (`waitpid(-1)`, `SIGCHLD` ignored): it has exited,
    /// with an unknown status.
    StatusUnknown,
    /// A system call failed while waiting.
    Os(io::Error),
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinError::Timeout => f.write_str("timed out waiting for the process"),
            JoinError::NotStarted => f.write_str("can only join a started process"),
            JoinError::NotCreator => f.write_str("can only join a child process"),
            JoinError::ResultTaken => f.write_str("the process's result was already taken"),
            JoinError::Closed => f.write_str("process object is closed"),
            JoinError::Panicked(msg) => write!(f, "the process panicked: {msg}"),
            JoinError::Exited(code) => write!(f, "the process exited with code {code}"),
            JoinError::NoResult => f.write_str("the process exited with code 0 but sent no result"),
            JoinError::Signaled(sig) => write!(f, "the process was killed by signal {sig}"),
            JoinError::Setup(e) => write!(f, "the process failed to set up: {e}"),
            JoinError::Decode(e) => write!(f, "the process's result is corrupt: {e}"),
            JoinError::StatusUnknown => {
                f.write_str("the process was reaped elsewhere; its exit status is unknown")
            }
            JoinError::Os(e) => write!(f, "waiting for the process failed: {e}"),
        }
    }
}

impl std::error::Error for JoinError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            JoinError::Setup(e) | JoinError::Os(e) => Some(e),
            JoinError::Decode(e) => Some(e),
            _ => None,
        }
    }
}

impl From<Errno> for JoinError {
    fn from(e: Errno) -> Self {
        JoinError::Os(e.into())
    }
}

/// Misuse of a process handle (Python raises `ValueError`/`AssertionError` for these).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use multiproc::{Process, ProcessStateError};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut p = Process::new(|| std::thread::sleep(Duration::from_secs(10)));
/// assert_eq!(p.terminate(), Err(ProcessStateError::NotStarted));
/// p.start()?;
/// // Python: ValueError('Cannot close a process while it is still running. ...')
/// assert_eq!(p.close(), Err(ProcessStateError::StillRunning));
/// p.kill()?;
/// p.join(Some(Duration::from_secs(10))).unwrap_err(); // killed: no value
/// p.close()?;
/// // Python: ValueError('process object is closed')
/// assert_eq!(p.sentinel().err(), Some(ProcessStateError::Closed));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProcessStateError {
    /// The process was not started.
    NotStarted,
    /// The handle belongs to another process.
    NotCreator,
    /// The process is still running (Python: "Cannot close a process while it is still running").
    StillRunning,
    /// The handle was closed.
    Closed,
}

impl fmt::Display for ProcessStateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProcessStateError::NotStarted => "process not started",
            ProcessStateError::NotCreator => "can only use a process handle in its creator",
            ProcessStateError::StillRunning => {
                "cannot close a process while it is still running; join() or terminate() it first"
            }
            ProcessStateError::Closed => "process object is closed",
        })
    }
}

impl std::error::Error for ProcessStateError {}

// ---------------------------------------------------------------------------------------------
// Per-process bookkeeping (current_process, parent_process, active_children)

/// What a process knows about itself. Built by the parent on `start`'s stack just before
/// `fork`; the child adopts its copy with one atomic store, so nobody allocates or frees
/// anything for it around the fork (every page written between `fork` and the child's exit is
/// a copy-on-write fault, in both processes).
///
/// The references point into the `Process` being started and into the parent's own
/// `SelfInfo`: in the child, `start` never returns, so they stay valid for the life of the
/// process. The parent never publishes its copy.
struct SelfInfo {
    name: &'static str,
    /// Python's `_identity` as text: `"3"` for the third process the main process created,
    /// `"3:1"` for the first one that process created. Default names are `Process-<identity>`.
    identity: &'static str,
    daemon: bool,
    parent: (Pid, &'static str),
}

/// The per-process bookkeeping, kept together (one zero-initialised, cache-line-aligned
/// static) so that a child resets all of it by writing a single page.
#[repr(C, align(64))]
struct Globals {
    /// `null` in the main process; in a child, its [`SelfInfo`].
    self_info: AtomicPtr<SelfInfo>,
    /// Counter for default names (`Process-N`), one per process as in Python.
    name_counter: AtomicUsize,
    /// This process's id once known, `0` before (see [`my_pid`]).
    pid: AtomicI32,
    /// Spin lock guarding `registry` (an atomic word, not a `Mutex`, so a forked child can
    /// reset it without touching a lock another thread may hold).
    registry_lock: AtomicU32,
    /// Children started by this process and not yet reaped, for `active_children` and for
    /// reaping the children whose handles were dropped. `None` until the first `start`.
    registry: std::cell::UnsafeCell<Option<Vec<ChildEntry>>>,
}

// SAFETY: `registry` is only touched while `registry_lock` is held (see `with_registry`), or by
// a freshly forked child, which has a single thread; the other fields are atomics.
unsafe impl Sync for Globals {}

static GLOBALS: Globals = Globals {
    self_info: AtomicPtr::new(std::ptr::null_mut()),
    name_counter: AtomicUsize::new(0),
    pid: AtomicI32::new(0),
    registry_lock: AtomicU32::new(0),
    registry: std::cell::UnsafeCell::new(None),
};

#[derive(Clone)]
struct ChildEntry {
    pid: Pid,
    name: String,
    /// The handle was dropped: nobody else will reap this child.
    orphaned: bool,
}

fn with_registry<T>(f: impl FnOnce(&mut Vec<ChildEntry>) -> T) -> T {
    while GLOBALS
        .registry_lock
        .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        std::hint::spin_loop();
        std::thread::yield_now();
    }
    struct Unlock;
    impl Drop for Unlock {
        fn drop(&mut self) {
            GLOBALS.registry_lock.store(0, Ordering::Release);
        }
    }
    let _unlock = Unlock;
    // SAFETY: the lock is held, so this is the only reference to the registry.
    f(unsafe { &mut *GLOBALS.registry.get() }.get_or_insert_with(Vec::new))
}

/// Reaps dropped children that have ended, and forgets entries whose handles have reaped them.
fn reap_orphans() {
    with_registry(|children| {
        children.retain(|c| {
            if !c.orphaned {
                return true;
            }
            !matches!(wait::waitpid(c.pid, false), Ok(Some(_)) | Err(_))
        });
    });
}

/// Runs in the child right after `fork`: allocation-free and lock-free.
fn reset_after_fork(info: &SelfInfo) {
    // The child has no children yet. The old registry may be mid-update by a thread that no
    // longer exists here: forget it (leak its buffer) rather than touch it.
    // SAFETY: the child is single-threaded; nothing else references the registry.
    unsafe { std::ptr::write(GLOBALS.registry.get(), None) };
    GLOBALS.registry_lock.store(0, Ordering::Release);
    GLOBALS.name_counter.store(0, Ordering::Relaxed);
    GLOBALS.self_info.store(std::ptr::from_ref(info).cast_mut(), Ordering::Release);
}

/// The calling process's id, cached: `getpid` is a system call, and every method checks that
/// it runs in the handle's creator.
///
/// The cache is cleared in every forked child by a `pthread_atfork` child handler (registered
/// before the first caching), so a child forked by anyone through libc's `fork` re-reads it.
fn my_pid() -> Pid {
    let cached = GLOBALS.pid.load(Ordering::Relaxed);
    if cached > 0
        && let Some(pid) = Pid::from_raw(cached)
    {
        return pid;
    }
    static ATFORK: std::sync::Once = std::sync::Once::new();
    ATFORK.call_once(|| {
        extern "C" fn forget_pid() {
            GLOBALS.pid.store(0, Ordering::Relaxed);
        }
        // SAFETY: registers a handler that only does an atomic store (async-signal-safe, as
        // a handler running in a freshly forked child must be). If registration fails (ENOMEM)
        // nothing is cached below.
        let ok = unsafe { libc::pthread_atfork(None, None, Some(forget_pid)) } == 0;
        if !ok {
            GLOBALS.pid.store(-1, Ordering::Relaxed);
        }
    });
    let pid = sysfork::getpid();
    // -1 marks "cannot cache" (registration failed): keep asking the kernel.
    let _ = GLOBALS.pid.compare_exchange(
        0,
        pid.as_raw_nonzero().get(),
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    pid
}

fn self_info() -> Option<&'static SelfInfo> {
    let p = GLOBALS.self_info.load(Ordering::Acquire);
    // SAFETY: a non-null pointer was stored by `reset_after_fork` in this (child) process and
    // points into the frame of a `start` call that never returns here (see `SelfInfo`).
    unsafe { p.as_ref() }
}

/// Extends the lifetime of `s` for a [`SelfInfo`].
///
/// # Safety
/// - The result must only be used while `s` stays alive and unmoved: in a forked child inside
///   a `start` call that never returns (see [`SelfInfo`]).
unsafe fn for_this_child(s: &str) -> &'static str {
    // SAFETY: the caller guarantees `s` outlives every use of the result.
    unsafe { &*std::ptr::from_ref(s) }
}

/// Facts about the calling process, returned by [`current_process`].
///
/// Python's `current_process()` returns the `Process` object itself; here it is a snapshot of
/// the same facts: its `name`, `pid` and `daemon` flag.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use multiproc::{ProcessBuilder, current_process};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let me = current_process();
/// assert_eq!(me.name, "MainProcess");
/// assert_eq!(me.pid.as_raw_nonzero().get(), std::process::id() as i32);
/// assert!(!me.daemon);
///
/// let p = ProcessBuilder::new().name("worker").spawn(|| current_process().name)?;
/// assert_eq!(p.join(Some(Duration::from_secs(10)))?, "worker");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    /// The process's name: `"MainProcess"` for the main process, otherwise its
    /// [`Process::name`].
    pub name: String,
    /// Its process id.
    pub pid: Pid,
    /// Whether it was started as a daemon.
    pub daemon: bool,
}

/// The calling process — Python's `multiprocessing.current_process()`.
///
/// In the main process the name is `"MainProcess"`; in a child started by [`Process::start`] it
/// is the child's name.
///
/// ```
/// assert_eq!(multiproc::current_process().name, "MainProcess");
/// ```
pub fn current_process() -> ProcessInfo {
    match self_info() {
        None => ProcessInfo { name: "MainProcess".into(), pid: my_pid(), daemon: false },
        Some(i) => ProcessInfo { name: i.name.to_owned(), pid: my_pid(), daemon: i.daemon },
    }
}

/// The process that started the caller, or `None` in the main process — Python's
/// `multiprocessing.parent_process()`.
///
/// Check whether it is still alive with [`ParentProcess::is_alive`].
pub fn parent_process() -> Option<ParentProcess> {
    self_info().map(|i| ParentProcess { pid: i.parent.0, name: i.parent.1.to_owned() })
}

/// The parent of the calling process (see [`parent_process`]) — the handle Python's
/// `multiprocessing.parent_process()` returns, with its `pid`, `name` and `is_alive()` (but no
/// `join`: a process cannot wait for its parent).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use multiproc::{Process, parent_process};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// assert!(parent_process().is_none()); // in the main process
/// let p = Process::new(|| {
///     let parent = parent_process().expect("a child has a parent");
///     (parent.name.clone(), parent.pid.as_raw_nonzero().get(), parent.is_alive())
/// });
/// p.start()?;
/// let (name, pid, alive) = p.join(Some(Duration::from_secs(10)))?;
/// assert_eq!((name.as_str(), pid, alive), ("MainProcess", std::process::id() as i32, true));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentProcess {
    /// The parent's process id.
    pub pid: Pid,
    /// The parent's name.
    pub name: String,
}

impl ParentProcess {
    /// Whether the parent is still running: our parent pid is still this process (when a
    /// parent dies, its children are re-parented to a subreaper or init).
    pub fn is_alive(&self) -> bool {
        sysfork::getppid() == Some(self.pid)
    }
}

/// The live children of the calling process — Python's `multiprocessing.active_children()`.
///
/// Like Python's, it reaps the children that have finished and whose handles were dropped.
/// Returns each live child's pid and name.
pub fn active_children() -> Vec<(Pid, String)> {
    reap_orphans();
    with_registry(|children| {
        children.iter().filter(|c| is_running(c.pid)).map(|c| (c.pid, c.name.clone())).collect()
    })
}

/// Whether `pid` (our child) is still running, without reaping it.
fn is_running(pid: Pid) -> bool {
    let mut info: libc::siginfo_t = unsafe_zeroed_siginfo();
    // SAFETY: `info` is a valid, writable siginfo_t; WNOWAIT leaves the child waitable.
    let r = unsafe {
        libc::waitid(
            libc::P_PID,
            pid.as_raw_nonzero().get() as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    // SAFETY: waitid filled `info` (or left it zeroed, which reads as pid 0 = still running).
    r == 0 && unsafe { info.si_pid() } == 0
}

fn unsafe_zeroed_siginfo() -> libc::siginfo_t {
    // SAFETY: siginfo_t is a plain C struct for which all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

/// The number of threads in the calling process, or `None` if `/proc` is unavailable. Above 1,
/// a forked child inherits locks that may stay locked forever (see the [module docs](self)).
pub fn thread_count() -> Option<usize> {
    sysfork::thread_count()
}

// ---------------------------------------------------------------------------------------------
// Builder

/// Options for a [`Process`]: name, daemon flag, CPU affinity, parent-death signal.
///
/// Python has no builder: `name` and `daemon` are the keyword arguments of
/// `Process(target, name=..., daemon=...)`; the CPU affinity, the parent-death signal and the
/// single-threaded check have no Python counterpart.
///
/// ```
/// use multiproc::ProcessBuilder;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let p = ProcessBuilder::new().name("adder").daemon(true).spawn(|| 2 + 2)?;
/// assert_eq!(p.join(None)?, 4);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct ProcessBuilder {
    name: Option<String>,
    daemon: Option<bool>,
    affinity: Option<CpuSet>,
    death_signal: Option<Option<Signal>>,
    single_threaded: bool,
}

impl ProcessBuilder {
    /// Default options: name `Process-N`, daemon flag inherited from the calling process (as in
    /// Python), no affinity change, parent-death signal `SIGKILL` for daemons and none otherwise.
    pub fn new() -> Self {
        Self::default()
    }

    /// The process's name. The default is `Process-N`, numbered when the process object is
    /// created (one counter per creating process, as in Python); the `M`-th process created by
    /// `Process-N` is `Process-N:M` (a custom name does not change this numbering).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Whether the process is a daemon: it is killed when its handle is dropped or its parent
    /// dies, and it may not start children of its own.
    pub fn daemon(mut self, daemon: bool) -> Self {
        self.daemon = Some(daemon);
        self
    }

    /// Runs the child on these CPUs only (`sched_setaffinity` before the closure starts).
    pub fn cpu_affinity(mut self, cpus: CpuSet) -> Self {
        self.affinity = Some(cpus);
        self
    }

    /// Pins the child to one CPU.
    pub fn cpu(self, cpu: usize) -> Self {
        let mut set = CpuSet::new();
        // An out-of-range CPU leaves the set empty, which sched_setaffinity rejects (EINVAL):
        // the error reaches `join` as `JoinError::Setup`.
        let _ = set.set(cpu);
        self.cpu_affinity(set)
    }

    /// The signal the child gets when its parent dies (`PR_SET_PDEATHSIG`), or `None` for no
    /// signal. Default: `SIGKILL` for daemons, none otherwise.
    pub fn death_signal(mut self, signal: Option<Signal>) -> Self {
        self.death_signal = Some(signal);
        self
    }

    /// Makes [`Process::start`] fail with [`StartError::MultiThreaded`] instead of forking a
    /// process that has other threads.
    pub fn require_single_threaded(mut self, yes: bool) -> Self {
        self.single_threaded = yes;
        self
    }

    /// Creates the (not yet started) process that will run `target`.
    pub fn target<R, F>(self, target: F) -> Process<R>
    where
        R: Message,
        F: FnOnce() -> R + Send + 'static,
    {
        let daemon = self.daemon.unwrap_or_else(|| self_info().is_some_and(|i| i.daemon));
        // Python numbers a process when the object is created, not when it starts.
        let n = GLOBALS.name_counter.fetch_add(1, Ordering::Relaxed) + 1;
        let identity = match self_info() {
            None => n.to_string(),
            Some(me) => format!("{}:{n}", me.identity),
        };
        let name = self.name.unwrap_or_else(|| format!("Process-{identity}"));
        Process {
            name,
            identity,
            daemon,
            affinity: self.affinity,
            death_signal: self.death_signal.unwrap_or(if daemon {
                Some(Signal::KILL)
            } else {
                None
            }),
            single_threaded: self.single_threaded,
            creator: my_pid(),
            pid: AtomicI32::new(0),
            pidfd: OnceLock::new(),
            inner: Mutex::new(Inner {
                target: Some(Box::new(Some(target))),
                state: State::NotStarted,
            }),
        }
    }

    /// Creates the process and starts it.
    pub fn spawn<R, F>(self, target: F) -> Result<Process<R>, StartError>
    where
        R: Message,
        F: FnOnce() -> R + Send + 'static,
    {
        let p = self.target(target);
        p.start()?;
        Ok(p)
    }
}

// ---------------------------------------------------------------------------------------------
// Process

/// The closure, boxed. See [`Job`] for why it is not a `Box<dyn FnOnce>`.
type Target<R> = Box<dyn Job<R> + Send>;

/// A boxed closure that can be used up without freeing (or even writing to) its box: every
/// page written between `fork` and the child's exit is a copy-on-write fault, in the child as
/// in the parent, and `free` writes the allocator's metadata.
trait Job<R> {
    /// In the parent after `fork`: drops the captured values (closing, say, the child's end of
    /// a pipe) and keeps the box; writes nothing if they need no drop.
    fn discard(&mut self);

    /// In the child: moves the closure out (a bitwise read, nothing written) and runs it.
    /// `None` if it was discarded.
    ///
    /// # Safety
    /// - The box must never be used or dropped afterwards (the child `_exit`s without dropping
    ///   it), since its contents were moved out without being marked so.
    unsafe fn run_in_child(&mut self) -> Option<R>;
}

impl<R, F: FnOnce() -> R> Job<R> for Option<F> {
    fn discard(&mut self) {
        if std::mem::needs_drop::<F>() {
            *self = None;
        }
    }

    unsafe fn run_in_child(&mut self) -> Option<R> {
        // SAFETY: a bitwise move out of `*self`; the caller never uses or drops `*self` again,
        // so the closure is not dropped twice.
        let job = unsafe { std::ptr::read(self) };
        job.map(|f| f())
    }
}

/// A closure running in a forked child process — Python's `multiprocessing.Process`.
///
/// `R` is what the closure returns; [`join`](Process::join) hands it back to the parent
/// (Python's `join` returns `None`; here the child's value comes back, encoded with
/// [`Message`]). See the [module docs](self) for what happens in the child.
///
/// ```
/// use multiproc::{JoinError, Process};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let p = Process::new(|| -> u32 { panic!("bad input") });
/// p.start()?;
/// match p.join(None) {
///     Err(JoinError::Panicked(msg)) => assert_eq!(msg, "bad input"),
///     other => panic!("unexpected {other:?}"),
/// }
/// assert_eq!(p.exitcode(), Some(1));
/// # Ok(())
/// # }
/// ```
pub struct Process<R = ()> {
    name: String,
    /// See [`SelfInfo::identity`].
    identity: String,
    daemon: bool,
    affinity: Option<CpuSet>,
    death_signal: Option<Signal>,
    single_threaded: bool,
    creator: Pid,
    /// The child's pid once started (0 before), readable without the lock so `terminate` and
    /// `kill` never wait behind a `join`.
    pid: AtomicI32,
    /// The child's pidfd (its `sentinel`), set once by `start` and kept until the handle is
    /// dropped or closed, so a borrowed sentinel stays valid while other threads join.
    pidfd: OnceLock<Pidfd>,
    inner: Mutex<Inner<R>>,
}

struct Inner<R> {
    target: Option<Target<R>>,
    state: State<R>,
}

enum State<R> {
    NotStarted,
    Running(Running<R>),
    /// Ended and reaped. `status` is `None` if someone else reaped it.
    Finished {
        status: Option<ExitStatus>,
        outcome: Option<Result<R, JoinError>>,
    },
    Closed,
}

struct Running<R> {
    pid: Pid,
    /// The file the child writes its report to (see [`report_file`]); read once it has ended.
    report: OwnedFd,
    /// Allocated before the fork, to read the report into.
    buf: Vec<u8>,
    /// The closure's box, its contents dropped (see [`Job`]); freed once the child has ended.
    _spent: Target<R>,
}

/// Capacity of the report buffer allocated before the fork: enough for small values.
const REPORT_BUF: usize = 256;

/// Tags of the child's report: the first byte of the report file.
const TAG_VALUE: u8 = 0;
const TAG_PANIC: u8 = 1;
const TAG_SETUP: u8 = 2;
/// Writing the report failed (followed by the errno); the value is lost.
const TAG_LOST: u8 = 3;

impl<R: Message> Process<R> {
    /// A process that will run `target`, with default options (see [`ProcessBuilder`]).
    pub fn new<F>(target: F) -> Self
    where
        F: FnOnce() -> R + Send + 'static,
    {
        ProcessBuilder::new().target(target)
    }

    /// Starts the child: flushes stdout/stderr, forks, and runs the closure in the child.
    ///
    /// At most once per object, and only in the process that created it. Also reaps finished
    /// children whose handles were dropped.
    pub fn start(&self) -> Result<(), StartError> {
        if my_pid() != self.creator {
            return Err(StartError::NotCreator);
        }
        if self_info().is_some_and(|i| i.daemon) {
            return Err(StartError::DaemonicParent);
        }
        // Flush stdout and stderr and keep their locks across the fork (taken before the
        // handle's own lock, always in this order). The child would otherwise print the
        // parent's buffered text again; and it inherits the locks as held by its one thread, so
        // its prints and its final flush never wait for a lock that another thread of the
        // parent held at the moment of the fork (std's stdio locks are reentrant).
        let mut stdout = io::stdout().lock();
        let mut stderr = io::stderr().lock();
        let _ = stdout.flush();
        let _ = stderr.flush();
        let mut inner = self.lock();
        let Some(target) = inner.target.take() else {
            return Err(StartError::AlreadyStarted);
        };
        if self.single_threaded
            && let Some(threads) = sysfork::thread_count()
            && threads > 1
        {
            inner.target = Some(target);
            return Err(StartError::MultiThreaded { threads });
        }
        reap_orphans();

        // Everything the parent needs after the fork is allocated now: every page it writes
        // between `fork` and the child's exit is a copy-on-write fault.
        let entry = ChildEntry { pid: my_pid(), name: self.name.clone(), orphaned: false };
        with_registry(|c| c.reserve(1));
        // The report buffer: the child encodes its value into its copy, the parent reads the
        // report into its own.
        let buf: Vec<u8> = Vec::with_capacity(REPORT_BUF);
        let parent = my_pid();
        // SAFETY: published only in the child, where this call never returns (see SelfInfo).
        let info = unsafe {
            SelfInfo {
                name: for_this_child(&self.name),
                identity: for_this_child(&self.identity),
                daemon: self.daemon,
                parent: (parent, self_info().map_or("MainProcess", |i| i.name)),
            }
        };
        let report = match report_file() {
            Ok(fd) => fd,
            Err(e) => {
                inner.target = Some(target);
                return Err(e.into());
            }
        };

        // SAFETY: the child branch below does only async-signal-safe, allocation-free work
        // (atomic stores, close, prctl, sched_setaffinity) before the user's closure, and ends in
        // `child_main`, which never returns.
        match unsafe { sysfork::fork() } {
            Err(e) => {
                inner.target = Some(target);
                Err(e.into())
            }
            Ok(ForkOutcome::Child) => {
                reset_after_fork(&info);
                // The parent's pool channels: the child has no business with them (issue 19).
                crate::fd_registry::close_inherited();
                let setup = ChildSetup {
                    parent,
                    death_signal: self.death_signal,
                    affinity: self.affinity.as_ref(),
                };
                child_main(target, report, buf, stdout, setup)
            }
            Ok(ForkOutcome::Parent { child }) => {
                if let Ok(pidfd) = wait::pidfd_open(child) {
                    let _ = self.pidfd.set(pidfd);
                }
                self.pid.store(child.as_raw_nonzero().get(), Ordering::Release);
                with_registry(|c| c.push(ChildEntry { pid: child, ..entry }));
                let mut spent = target;
                spent.discard();
                inner.state = State::Running(Running { pid: child, report, buf, _spent: spent });
                drop(inner);
                drop((stdout, stderr));
                Ok(())
            }
        }
    }

    /// Waits for the child to end (at most `timeout`; `None` waits forever, `Some(ZERO)` only
    /// checks) and returns the closure's value.
    ///
    /// On [`JoinError::Timeout`] the child is still running and `join` can be called again.
    /// Once the child has ended, the first `join` returns its value or the reason there is none;
    /// later calls return [`JoinError::ResultTaken`] (check [`exitcode`](Self::exitcode)).
    ///
    /// Several threads may join the same process: one gets the value. A timed `join` (and
    /// [`is_alive`](Self::is_alive), [`exitcode`](Self::exitcode), [`sentinel`](Self::sentinel),
    /// [`terminate`](Self::terminate)) never waits behind another thread's `join(None)`.
    pub fn join(&self, timeout: Option<Duration>) -> Result<R, JoinError> {
        if my_pid() != self.creator {
            return Err(JoinError::NotCreator);
        }
        let deadline = Deadline::after(timeout);
        let mut inner = match self.try_lock() {
            Some(inner) => inner,
            // Another thread holds the handle, typically blocked in its own `join`. Wait for
            // the child's end on the pidfd without the lock, so our timeout is honoured; once
            // the child has ended, the holder finishes promptly.
            None => {
                if let Some(pidfd) = self.pidfd.get()
                    && !syspipe::wait_readable(pidfd.as_fd(), deadline)?
                {
                    return Err(JoinError::Timeout);
                }
                self.lock()
            }
        };
        match &mut inner.state {
            State::NotStarted => return Err(JoinError::NotStarted),
            State::Closed => return Err(JoinError::Closed),
            State::Finished { outcome, .. } => {
                return outcome.take().unwrap_or(Err(JoinError::ResultTaken));
            }
            State::Running(run) => match wait_child(run, self.pidfd.get(), deadline) {
                Ok(None) => return Err(JoinError::Timeout),
                Ok(Some(status)) => self.finish(&mut inner, status),
                Err(e) => return Err(e.into()),
            },
        }
        match &mut inner.state {
            State::Finished { outcome, .. } => {
                outcome.take().unwrap_or(Err(JoinError::ResultTaken))
            }
            _ => unreachable!("finish() leaves the state Finished"),
        }
    }

    /// Moves a running child that has ended to `Finished`, decoding its report.
    fn finish(&self, inner: &mut Inner<R>, status: Option<ExitStatus>) {
        let State::Running(run) = std::mem::replace(&mut inner.state, State::NotStarted) else {
            return;
        };
        with_registry(|c| c.retain(|e| e.pid != run.pid));
        let report = read_report(run.report.as_fd(), run.buf);
        let outcome = decode_outcome::<R>(status, &report);
        inner.state = State::Finished { status, outcome: Some(outcome) };
    }

    /// Whether the child is running: false before `start` and once it has ended (in which case
    /// it is reaped now, as Python's `is_alive` does).
    pub fn is_alive(&self) -> bool {
        if my_pid() != self.creator {
            return false;
        }
        match self.try_lock() {
            Some(mut inner) => {
                self.poll_state(&mut inner);
                matches!(inner.state, State::Running(_))
            }
            // Another thread holds the handle (a `join` waiting for the child): it has been
            // started and not closed. Answer without waiting for that thread.
            None => match (self.pidfd.get(), self.pid()) {
                (Some(pidfd), _) => {
                    !syspipe::wait_readable(pidfd.as_fd(), Deadline::after(Some(Duration::ZERO)))
                        .unwrap_or(false)
                }
                (None, Some(pid)) => is_running(pid),
                (None, None) => false,
            },
        }
    }

    /// Reaps the child without blocking if it has ended.
    fn poll_state(&self, inner: &mut Inner<R>) {
        if let State::Running(run) = &mut inner.state
            && let Ok(Some(status)) =
                wait_child(run, self.pidfd.get(), Deadline::after(Some(Duration::ZERO)))
        {
            self.finish(inner, status);
        }
    }

    /// The exit code: `None` before the child has ended (or if its status is unknown), `0` on
    /// success, `1` after a panic, `n` for `exit(n)`, `-N` for death by signal `N`.
    pub fn exitcode(&self) -> Option<i32> {
        if my_pid() != self.creator {
            return None;
        }
        // If another thread holds the handle (a `join` in progress), the child has not been
        // reaped yet as far as this handle knows: no exit code yet.
        let mut inner = self.try_lock()?;
        self.poll_state(&mut inner);
        match &inner.state {
            State::Finished { status: Some(s), .. } => Some(s.exitcode()),
            _ => None,
        }
    }

    /// The child's pid, once started (Python's `pid`/`ident`).
    pub fn pid(&self) -> Option<Pid> {
        Pid::from_raw(self.pid.load(Ordering::Acquire))
    }

    /// The process's name (Python's `name`): the one given to [`ProcessBuilder::name`], or
    /// `Process-N` (see there). Always `Some`; it stays available after `join` and `close`.
    pub fn name(&self) -> Option<String> {
        Some(self.name.clone())
    }

    /// Whether this is a daemon process.
    pub fn daemon(&self) -> bool {
        self.daemon
    }

    /// Sends `SIGTERM` (Python's `terminate`). A no-op once the child has ended.
    pub fn terminate(&self) -> Result<(), ProcessStateError> {
        self.signal(Signal::TERM)
    }

    /// Sends `SIGKILL` (Python's `kill`). A no-op once the child has ended.
    pub fn kill(&self) -> Result<(), ProcessStateError> {
        self.signal(Signal::KILL)
    }

    /// Sends `signal` to the running child. A no-op once the child has ended.
    pub fn signal(&self, signal: Signal) -> Result<(), ProcessStateError> {
        if my_pid() != self.creator {
            return Err(ProcessStateError::NotCreator);
        }
        let inner = self.inner.try_lock();
        match inner.as_deref() {
            Ok(Inner { state: State::NotStarted, .. }) => Err(ProcessStateError::NotStarted),
            Ok(Inner { state: State::Closed, .. }) => Err(ProcessStateError::Closed),
            Ok(Inner { state: State::Finished { .. }, .. }) => Ok(()),
            // We hold the lock, so nobody reaps the child while we signal it: its pid cannot
            // have been reused. ESRCH means it was reaped elsewhere: nothing to do.
            Ok(Inner { state: State::Running(run), .. }) => {
                let _ = wait::kill(run.pid, signal);
                Ok(())
            }
            // Another thread holds the lock (typically a `join`), and may reap the child at any
            // moment: signal through the pidfd, which never reaches a process that reused the
            // pid. Without a pidfd (Linux < 5.3) fall back to the pid.
            Err(_) => {
                match (self.pidfd.get(), self.pid()) {
                    (Some(pidfd), _) => {
                        let _ = pidfd.send_signal(signal);
                    }
                    (None, Some(pid)) => {
                        let _ = wait::kill(pid, signal);
                    }
                    (None, None) => {}
                }
                Ok(())
            }
        }
    }

    /// A file descriptor that becomes readable when the child ends (Python's `sentinel`): a
    /// pidfd. Use it with [`wait`](crate::wait) or your own `poll`/`epoll` loop.
    ///
    /// # Errors
    /// [`ProcessStateError::NotStarted`] before `start` (or where the kernel has no pidfd,
    /// Linux < 5.3), [`ProcessStateError::Closed`] after [`close`](Self::close).
    pub fn sentinel(&self) -> Result<BorrowedFd<'_>, ProcessStateError> {
        // Without the lock: a thread blocked in `join` must not delay this. `close` (which
        // takes `&mut self`) is the only thing that removes the pidfd.
        if let Some(pidfd) = self.pidfd.get() {
            return Ok(pidfd.as_fd());
        }
        match self.lock().state {
            State::Closed => Err(ProcessStateError::Closed),
            _ => Err(ProcessStateError::NotStarted),
        }
    }

    /// Releases the handle's resources (Python's `close`): the sentinel. Allowed before start
    /// and after the child has ended, and more than once; an error while it runs.
    pub fn close(&mut self) -> Result<(), ProcessStateError> {
        let inner = self.inner.get_mut().unwrap_or_else(|e| e.into_inner());
        if let State::Running(run) = &mut inner.state
            && let Ok(Some(status)) =
                wait_child(run, self.pidfd.get(), Deadline::after(Some(Duration::ZERO)))
        {
            let State::Running(run) = std::mem::replace(&mut inner.state, State::NotStarted) else {
                unreachable!()
            };
            with_registry(|c| c.retain(|e| e.pid != run.pid));
            inner.state = State::Finished { status, outcome: None };
        }
        if let State::Running(_) = inner.state {
            return Err(ProcessStateError::StillRunning);
        }
        inner.state = State::Closed;
        inner.target = None;
        self.pidfd = OnceLock::new();
        Ok(())
    }

    /// The handle's lock if it is free (a poisoned lock counts as free, see [`lock`]).
    ///
    /// [`lock`]: Self::lock
    fn try_lock(&self) -> Option<MutexGuard<'_, Inner<R>>> {
        match self.inner.try_lock() {
            Ok(guard) => Some(guard),
            Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner<R>> {
        // A panic while the lock was held cannot leave `Inner` inconsistent in a way that
        // matters here (every transition is a single assignment): use it anyway.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Process {
    /// Options for a process (the closure's return type is chosen by `spawn`/`target`): `Process::builder().name("w").daemon(true).spawn(f)`.
    pub fn builder() -> ProcessBuilder {
        ProcessBuilder::new()
    }
}

impl<R> fmt::Debug for Process<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process")
            .field("name", &self.name)
            .field("pid", &Pid::from_raw(self.pid.load(Ordering::Relaxed)))
            .field("daemon", &self.daemon)
            .finish_non_exhaustive()
    }
}

impl<R> Drop for Process<R> {
    fn drop(&mut self) {
        if my_pid() != self.creator {
            return; // a copy inherited by a child: the child is not ours to reap
        }
        let inner = self.inner.get_mut().unwrap_or_else(|e| e.into_inner());
        let State::Running(run) = &inner.state else { return };
        match wait::waitpid(run.pid, false) {
            Ok(Some(_)) | Err(_) => {
                with_registry(|c| c.retain(|e| e.pid != run.pid));
            }
            Ok(None) if self.daemon => {
                let _ = wait::kill(run.pid, Signal::KILL);
                let _ = wait::waitpid(run.pid, true);
                with_registry(|c| c.retain(|e| e.pid != run.pid));
            }
            Ok(None) => with_registry(|c| {
                if let Some(e) = c.iter_mut().find(|e| e.pid == run.pid) {
                    e.orphaned = true;
                }
            }),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Parent side: waiting and decoding

/// Waits until the child ends or the deadline passes, and reaps it. Returns `Ok(None)` on
/// timeout; `Ok(Some(None))` if the child was reaped elsewhere.
///
/// Only the child's exit is waited for (the pidfd, or a blocking `waitpid` without a
/// deadline): the child writes its report to a file and never blocks on it, so the parent
/// sleeps once, like a plain `waitpid`. (Waking the parent for the report and then again for
/// the exit costs a context switch and, typically, a CPU migration per child.)
fn wait_child<R>(
    run: &Running<R>,
    pidfd: Option<&Pidfd>,
    deadline: Deadline,
) -> Result<Option<Option<ExitStatus>>, Errno> {
    let status = if deadline.is_forever() {
        wait::waitpid(run.pid, true)
    } else {
        wait::wait_deadline(run.pid, pidfd, deadline)
    };
    match status {
        Ok(Some(status)) => Ok(Some(Some(status))),
        Ok(None) => Ok(None),
        Err(Errno::CHILD) => Ok(Some(None)),
        Err(e) => Err(e),
    }
}

/// Creates the file a child writes its report (return value, panic message or setup error)
/// to: an anonymous, close-on-exec memfd, or an unnamed `O_TMPFILE` where `memfd_create` is
/// not available. Unlike a pipe, it never makes the child block or wake the parent, whatever
/// the size of the value; it vanishes with its last descriptor.
fn report_file() -> Result<OwnedFd, Errno> {
    use rustix::fs::{MemfdFlags, Mode, OFlags};
    rustix::fs::memfd_create(c"multiproc-result", MemfdFlags::CLOEXEC).or_else(|e| {
        [c"/dev/shm", c"/tmp"]
            .into_iter()
            .find_map(|dir| {
                rustix::fs::open(
                    dir,
                    OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
                    Mode::RUSR | Mode::WUSR,
                )
                .ok()
            })
            .ok_or(e)
    })
}

/// Reads the report of a child that has ended (an unreadable file reads as empty: "no
/// result"). A large report's pages are released at once, even if a grandchild still holds a
/// copy of the descriptor.
fn read_report(fd: BorrowedFd<'_>, mut buf: Vec<u8>) -> Vec<u8> {
    buf.clear();
    loop {
        if buf.len() == buf.capacity() {
            let size = rustix::fs::fstat(fd).map_or(0, |st| st.st_size as usize);
            buf.reserve(size.saturating_sub(buf.len()).max(buf.len()));
        }
        let (len, want) = (buf.len(), buf.capacity() - buf.len());
        match rustix::io::pread(fd, buf.spare_capacity_mut(), len as u64) {
            Ok((init, _)) => {
                let n = init.len();
                // SAFETY: `pread` initialised the first `n` bytes of the spare capacity.
                unsafe { buf.set_len(buf.len() + n) };
                // A short read of a regular file is its end.
                if n < want {
                    break;
                }
            }
            Err(Errno::INTR) => {}
            Err(_) => break,
        }
    }
    if buf.len() > 64 * 1024 {
        let _ = rustix::fs::ftruncate(fd, 0);
    }
    buf
}

fn decode_outcome<R: Message>(status: Option<ExitStatus>, buf: &[u8]) -> Result<R, JoinError> {
    let Some(status) = status else { return Err(JoinError::StatusUnknown) };
    if let ExitStatus::Signaled(sig) = status {
        return Err(JoinError::Signaled(sig));
    }
    let code = status.exitcode();
    match buf.split_first() {
        Some((&TAG_VALUE, payload)) if code == 0 => {
            crate::codec::from_bytes::<R>(payload).map_err(JoinError::Decode)
        }
        Some((&TAG_PANIC, payload)) => Err(JoinError::Panicked(
            crate::codec::from_bytes::<String>(payload).unwrap_or_else(|e| format!("<{e}>")),
        )),
        Some((&TAG_SETUP, payload)) if payload.len() == 4 => {
            let errno = i32::from_le_bytes(payload.try_into().unwrap_or([0; 4]));
            Err(JoinError::Setup(io::Error::from_raw_os_error(errno)))
        }
        Some((&TAG_LOST, payload)) if payload.len() == 4 => {
            let errno = i32::from_le_bytes(payload.try_into().unwrap_or([0; 4]));
            Err(JoinError::Os(io::Error::from_raw_os_error(errno)))
        }
        _ if code == 0 => Err(JoinError::NoResult),
        _ => Err(JoinError::Exited(code)),
    }
}

// ---------------------------------------------------------------------------------------------
// Child side

/// The child's life after `fork`: set up, run the closure, report, `_exit`. Never returns.
/// What the child sets up before running the closure.
struct ChildSetup<'a> {
    parent: Pid,
    death_signal: Option<Signal>,
    affinity: Option<&'a CpuSet>,
}

fn child_main<R: Message>(
    mut target: Target<R>,
    report: OwnedFd,
    mut out: Vec<u8>,
    mut stdout: io::StdoutLock<'static>,
    ChildSetup { parent, death_signal, affinity }: ChildSetup<'_>,
) -> ! {
    let setup = (|| {
        if let Some(sig) = death_signal {
            sysfork::set_parent_death_signal(sig, parent)?;
        }
        if let Some(set) = affinity {
            multiproc_sys::affinity::sched_setaffinity(None, set)?;
        }
        Ok::<(), Errno>(())
    })();
    if let Err(e) = setup {
        write_error_report(report.as_fd(), TAG_SETUP, e);
        sysfork::exit_now(1);
    }

    // `out` was allocated by the parent: a small value is encoded without touching the
    // allocator. Nothing here is freed: the process ends with `_exit`.
    // SAFETY: `target` is forgotten below, never used or dropped again.
    let code = match catch_unwind(AssertUnwindSafe(|| unsafe { target.run_in_child() })) {
        Ok(Some(value)) => {
            out.push(TAG_VALUE);
            value.encode(&mut out);
            0
        }
        // The target already ran (cannot happen: `start` takes it once). No value.
        Ok(None) => 0,
        Err(payload) => {
            out.push(TAG_PANIC);
            panic_message(&*payload).encode(&mut out);
            std::mem::forget(payload);
            1
        }
    };
    std::mem::forget(target);
    let code = match write_report(report.as_fd(), &out) {
        Ok(()) => code,
        Err(e) => {
            write_error_report(report.as_fd(), TAG_LOST, e);
            1
        }
    };
    // Through the lock inherited from `start` (stderr is unbuffered: nothing to flush). The
    // lock is never released: the process ends here.
    let _ = stdout.flush();
    std::mem::forget(stdout);
    sysfork::exit_now(code)
}

/// Writes the whole report at the start of the report file.
fn write_report(fd: BorrowedFd<'_>, bytes: &[u8]) -> Result<(), Errno> {
    let mut done = 0;
    while done < bytes.len() {
        match rustix::io::pwrite(fd, &bytes[done..], done as u64) {
            Ok(0) => return Err(Errno::IO),
            Ok(n) => done += n,
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Replaces the report with `tag` and an errno (allocation-free).
fn write_error_report(fd: BorrowedFd<'_>, tag: u8, e: Errno) {
    let mut msg = [tag, 0, 0, 0, 0];
    msg[1..].copy_from_slice(&e.raw_os_error().to_le_bytes());
    let _ = rustix::fs::ftruncate(fd, 0);
    let _ = write_report(fd, &msg);
}

/// The text of a panic payload (`&str` or `String`, as `panic!` makes them).
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_owned()
    }
}
