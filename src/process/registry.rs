//! Per-process bookkeeping: what a process knows about itself (`current_process`,
//! `parent_process`) and the registry of its children (`active_children`, reaping children whose
//! handles were dropped).
#![allow(unsafe_code)] // the registry's spin-locked cell, and `SelfInfo` lifetimes.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU32, AtomicUsize, Ordering};

use multiproc_sys::Pid;
use multiproc_sys::process::exit::at_exit;
use multiproc_sys::process::parent::getppid;
use multiproc_sys::process::pid::{current_pid, getpid};
use multiproc_sys::process::signal::kill;
use multiproc_sys::process::thread;
use multiproc_sys::process::wait::{peek_exit, waitpid};

/// What a process knows about itself. Built by the parent on `start`'s stack just before
/// `fork`; the child adopts its copy with one atomic store, so nobody allocates or frees
/// anything for it around the fork (every page written between `fork` and the child's exit is
/// a copy-on-write fault, in both processes).
///
/// The references point into the `Process` being started and into the parent's own
/// `SelfInfo`: in the child, `start` never returns, so they stay valid for the life of the
/// process. The parent never publishes its copy.
pub(super) struct SelfInfo {
    pub(super) name: &'static str,
    /// Python's `_identity` as text: `"3"` for the third process the main process created,
    /// `"3:1"` for the first one that process created. Default names are `Process-<identity>`.
    pub(super) identity: &'static str,
    pub(super) daemon: bool,
    pub(super) parent: (Pid, &'static str),
}

/// The per-process bookkeeping, kept together (one zero-initialised, cache-line-aligned
/// static) so that a child resets all of it by writing a single page.
#[repr(C, align(64))]
pub(super) struct Globals {
    /// `null` in the main process; in a child, its [`SelfInfo`].
    pub(super) self_info: AtomicPtr<SelfInfo>,
    /// Counter for default names (`Process-N`), one per process as in Python.
    pub(super) name_counter: AtomicUsize,
    /// Spin lock guarding `registry` (an atomic word, not a `Mutex`, so a forked child can
    /// reset it without touching a lock another thread may hold).
    pub(super) registry_lock: AtomicU32,
    /// Children started by this process and not yet reaped, for `active_children` and for
    /// reaping the children whose handles were dropped. `None` until the first `start`.
    pub(super) registry: std::cell::UnsafeCell<Option<Vec<ChildEntry>>>,
}

// SAFETY: `registry` is only touched while `registry_lock` is held (see `with_registry`), or by
// a freshly forked child, which has a single thread; the other fields are atomics.
unsafe impl Sync for Globals {}

pub(super) static GLOBALS: Globals = Globals {
    self_info: AtomicPtr::new(std::ptr::null_mut()),
    name_counter: AtomicUsize::new(0),
    registry_lock: AtomicU32::new(0),
    registry: std::cell::UnsafeCell::new(None),
};

#[derive(Clone)]
pub(super) struct ChildEntry {
    pub(super) pid: Pid,
    pub(super) name: String,
    /// The handle was dropped: nobody else will reap this child.
    pub(super) orphaned: bool,
    /// Terminated (not joined) when the program exits.
    pub(super) daemon: bool,
}

/// Whether the program's exit joins its children (see [`join_children_at_exit`]).
static JOIN_AT_EXIT: AtomicBool = AtomicBool::new(true);
/// The process that registered the exit handler (0: none yet).
static EXIT_HANDLER_OWNER: AtomicI32 = AtomicI32::new(0);

/// Chooses what happens to the children still running when the program exits normally
/// (returns from `main`, or calls `std::process::exit`): with `true` (the default, as in Python)
/// daemon children are terminated (`SIGTERM`, then reaped) and the others are joined, so no
/// child outlives the program by surprise; with `false` they are left running, as orphans.
///
/// Python does this in its `atexit` handler. Children of the fork server (the `forkserver`
/// start method) are not the program's own children: a daemon among them dies with its parent
/// (the fork server dies with the program), and the others run on.
///
/// ```
/// multiproc::process::join_children_at_exit(false); // a launcher: its children outlive it
/// ```
pub fn join_children_at_exit(on: bool) {
    JOIN_AT_EXIT.store(on, Ordering::Relaxed);
}

/// Registers the exit handler once per process (the first time a child is recorded).
pub(super) fn ensure_exit_handler() {
    let me = my_pid().as_raw_nonzero().get();
    if EXIT_HANDLER_OWNER.swap(me, Ordering::Relaxed) != me {
        let _ = at_exit(join_children_on_exit);
    }
}

/// The exit handler: terminates daemon children, then joins the others (see
/// [`join_children_at_exit`]). Runs only in the process that registered it.
extern "C" fn join_children_on_exit() {
    if !JOIN_AT_EXIT.load(Ordering::Relaxed)
        || EXIT_HANDLER_OWNER.load(Ordering::Relaxed) != getpid().as_raw_nonzero().get()
    {
        return;
    }
    let children: Vec<(Pid, bool)> =
        with_registry(|c| c.drain(..).map(|e| (e.pid, e.daemon)).collect());
    for &(pid, daemon) in &children {
        if daemon {
            let _ = kill(pid, multiproc_sys::Signal::TERM);
        }
    }
    for &(pid, _) in &children {
        let _ = waitpid(pid, true);
    }
}

pub(super) fn with_registry<T>(f: impl FnOnce(&mut Vec<ChildEntry>) -> T) -> T {
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
pub(super) fn reap_orphans() {
    with_registry(|children| {
        children.retain(|c| {
            if !c.orphaned {
                return true;
            }
            !matches!(waitpid(c.pid, false), Ok(Some(_)) | Err(_))
        });
    });
}

/// Runs in the child right after `fork`: allocation-free and lock-free.
pub(super) fn reset_after_fork(info: &SelfInfo) {
    // The child has no children yet. The old registry may be mid-update by a thread that no
    // longer exists here: forget it (leak its buffer) rather than touch it.
    // SAFETY: the child is single-threaded; nothing else references the registry.
    unsafe { std::ptr::write(GLOBALS.registry.get(), None) };
    GLOBALS.registry_lock.store(0, Ordering::Release);
    GLOBALS.name_counter.store(0, Ordering::Relaxed);
    GLOBALS.self_info.store(std::ptr::from_ref(info).cast_mut(), Ordering::Release);
}

/// The calling process's id, cached: `getpid` is a system call, and every method checks that
/// it runs in the handle's creator. The crate's one fork detection ([`current_pid`]) keeps it
/// right in every forked child.
pub(super) fn my_pid() -> Pid {
    current_pid()
}

pub(super) fn self_info() -> Option<&'static SelfInfo> {
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
pub(super) unsafe fn for_this_child(s: &str) -> &'static str {
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
/// assert_eq!(p.join_timeout(Duration::from_secs(10))?, "worker");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    /// The process's name: `"MainProcess"` for the main process, otherwise its
    /// [`Process::name`](super::Process::name).
    pub name: String,
    /// Its process id.
    pub pid: Pid,
    /// Whether it was started as a daemon.
    pub daemon: bool,
}

/// The calling process — Python's `multiprocessing.current_process()`.
///
/// In the main process the name is `"MainProcess"`; in a child started by [`Process::start`](super::Process::start) it
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
/// let (name, pid, alive) = p.join_timeout(Duration::from_secs(10))?;
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
        getppid() == Some(self.pid)
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
pub(super) fn is_running(pid: Pid) -> bool {
    matches!(peek_exit(pid), Ok(None))
}

/// The number of threads in the calling process, or `None` if `/proc` is unavailable. Above 1,
/// a forked child inherits locks that may stay locked forever (see the [module docs](super)).
pub fn thread_count() -> Option<usize> {
    thread::thread_count()
}
