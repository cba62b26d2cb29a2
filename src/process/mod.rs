//! `Process`: run a closure in a forked child — Python's `multiprocessing.Process`.
//!
//! ```
//! use multiproc::Process;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let p = Process::new(|| (1..=1000u64).sum::<u64>());
//! p.start()?;
//! assert_eq!(p.join()?, 500_500); // the child's return value, sent back to the parent
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
//!
//! Ctrl-C: a parent with the default `SIGINT` disposition ends at once, as if `SIGKILL`ed, so
//! `SIGINT` to the parent alone takes its daemon children with it and leaves non-daemon ones
//! running to their end (as Python's, whose parent would join them at exit); a terminal's
//! Ctrl-C reaches every process of the group. A child forked from a parent that installed a
//! `SIGINT` handler inherits the handler. See the crate docs' "Ctrl-C".
#![allow(unsafe_code)] // fork, and the closure's box around it (see `TargetFn`).

use std::fmt;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, TryLockError};
use std::time::Duration;

use multiproc_sys::affinity::CpuSet;
use multiproc_sys::io::poll::wait_readable;
use multiproc_sys::process::fork::{ForkOutcome, fork};
use multiproc_sys::process::pidfd::{Pidfd, pidfd_open};
use multiproc_sys::process::signal::kill;
use multiproc_sys::process::thread;
use multiproc_sys::process::wait::{ExitStatus, waitpid};
use multiproc_sys::time::Deadline;
use multiproc_sys::{Pid, Signal};

use crate::codec::Message;
use crate::start::launch::Launched;

mod builder;
mod child;
mod error;
mod launched;
mod registry;
mod report;

pub use builder::ProcessBuilder;
use child::{ChildSetup, child_main};
pub use error::{JoinError, ProcessStateError, StartError};
use launched::LaunchSpec;
use registry::is_running;
pub use registry::join_children_at_exit;
use registry::{
    ChildEntry, SelfInfo, ensure_exit_handler, for_this_child, my_pid, reap_orphans,
    reset_after_fork, self_info, with_registry,
};
pub use registry::{
    ParentProcess, ProcessInfo, active_children, current_process, parent_process, thread_count,
};
use report::{REPORT_BUF, decode_outcome, read_report, report_file, wait_child};

/// The closure, boxed. See [`TargetFn`] for why it is not a `Box<dyn FnOnce>`.
type Target<R> = Box<dyn TargetFn<R> + Send>;

/// A boxed closure that can be used up without freeing (or even writing to) its box: every
/// page written between `fork` and the child's exit is a copy-on-write fault, in the child as
/// in the parent, and `free` writes the allocator's metadata.
trait TargetFn<R> {
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

impl<R, F: FnOnce() -> R> TargetFn<R> for Option<F> {
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
/// match p.join() {
///     Err(JoinError::Panicked(msg)) => assert_eq!(msg, "bad input"),
///     other => panic!("unexpected {other:?}"),
/// }
/// assert_eq!(p.exitcode(), Some(1));
/// # Ok(())
/// # }
/// ```
#[must_use = "a process does nothing until `start` is called, and its result is lost unless it is joined"]
pub struct Process<R = ()> {
    name: String,
    /// See [`SelfInfo::identity`].
    identity: String,
    daemon: bool,
    affinity: Option<CpuSet>,
    death_signal: Option<Signal>,
    single_threaded: bool,
    /// Set for a function process started by `forkserver` or `spawn`.
    launch: Option<LaunchSpec>,
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
    /// `close` was called; the exit status is kept if it was known.
    Closed {
        status: Option<ExitStatus>,
    },
}

struct Running<R> {
    pid: Pid,
    /// For a child launched by `forkserver` or `spawn`: how to wait for it and signal it.
    launched: Option<Launched>,
    /// The file the child writes its report to (see [`report_file`]); read once it has ended.
    report: OwnedFd,
    /// Allocated before the fork, to read the report into.
    buf: Vec<u8>,
    /// The closure's box, its contents dropped (see [`TargetFn`]); freed once the child has ended.
    _spent: Option<Target<R>>,
}

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
        if let Some(spec) = &self.launch {
            return self.start_launched(spec);
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
            && let Some(threads) = thread::thread_count()
            && threads > 1
        {
            inner.target = Some(target);
            return Err(StartError::MultiThreaded { threads });
        }
        reap_orphans();
        let plan = crate::fork_safety::before_fork();

        // Everything the parent needs after the fork is allocated now: every page it writes
        // between `fork` and the child's exit is a copy-on-write fault.
        let entry = ChildEntry {
            pid: my_pid(),
            name: self.name.clone(),
            orphaned: false,
            daemon: self.daemon,
        };
        ensure_exit_handler();
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
        match unsafe { fork() } {
            Err(e) => {
                inner.target = Some(target);
                Err(e.into())
            }
            Ok(ForkOutcome::Child) => {
                crate::fork_safety::in_child(plan);
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
                if let Ok(pidfd) = pidfd_open(child) {
                    let _ = self.pidfd.set(pidfd);
                }
                self.pid.store(child.as_raw_nonzero().get(), Ordering::Release);
                with_registry(|c| c.push(ChildEntry { pid: child, ..entry }));
                let mut spent = target;
                spent.discard();
                inner.state = State::Running(Running {
                    pid: child,
                    launched: None,
                    report,
                    buf,
                    _spent: Some(spent),
                });
                drop(inner);
                drop((stdout, stderr));
                Ok(())
            }
        }
    }

    /// Starts a function process by `forkserver` or `spawn`.
    fn start_launched(&self, spec: &LaunchSpec) -> Result<(), StartError> {
        let mut inner = self.lock();
        if inner.target.is_none() {
            return Err(StartError::AlreadyStarted);
        }
        let _ = io::stdout().flush();
        let report = report_file()?;
        let started = (|| -> io::Result<Launched> {
            let payload = launched::encode_spec(self, spec);
            launched::store_arguments(report.as_fd(), &spec.chunk)?;
            let fds = vec![report.try_clone()?];
            crate::start::launch(spec.method, launched::entry, &payload, fds)
        })();
        let launched = match started {
            Ok(l) => l,
            Err(e) => return Err(StartError::Launch(e)),
        };
        inner.target = None;
        if let Some(pidfd) = &launched.pidfd
            && let Ok(dup) = pidfd.as_fd().try_clone_to_owned()
        {
            let _ = self.pidfd.set(Pidfd::from_owned(dup));
        }
        self.pid.store(launched.pid.as_raw_nonzero().get(), Ordering::Release);
        if launched.status.is_none() {
            // A direct child (spawn): reaped like a forked one if its handle is dropped early.
            let entry = ChildEntry {
                pid: launched.pid,
                name: self.name.clone(),
                orphaned: false,
                daemon: self.daemon,
            };
            ensure_exit_handler();
            with_registry(|c| c.push(entry));
        }
        inner.state = State::Running(Running {
            pid: launched.pid,
            launched: Some(launched),
            report,
            buf: Vec::with_capacity(REPORT_BUF),
            _spent: None,
        });
        Ok(())
    }

    /// Waits for the child to end and returns the closure's value (Python: `join()`;
    /// [`join_timeout`](Self::join_timeout) takes a timeout).
    ///
    /// Once the child has ended, the first `join` returns its value or the reason there is none;
    /// later calls return [`JoinError::ResultTaken`] (check [`exitcode`](Self::exitcode)).
    ///
    /// Several threads may join the same process: one gets the value. A timed `join` (and
    /// [`is_alive`](Self::is_alive), [`exitcode`](Self::exitcode), [`sentinel`](Self::sentinel),
    /// [`terminate`](Self::terminate)) never waits behind another thread's `join()`.
    pub fn join(&self) -> Result<R, JoinError> {
        self.join_until(Deadline::FOREVER)
    }

    /// As [`join`](Self::join), waiting at most `timeout` (Python: `join(timeout)`;
    /// `Duration::ZERO` only checks).
    ///
    /// On [`JoinError::Timeout`] the child is still running and `join` can be called again.
    pub fn join_timeout(&self, timeout: Duration) -> Result<R, JoinError> {
        self.join_until(Deadline::after(Some(timeout)))
    }

    fn join_until(&self, deadline: Deadline) -> Result<R, JoinError> {
        if my_pid() != self.creator {
            return Err(JoinError::NotCreator);
        }
        let mut inner = match self.try_lock() {
            Some(inner) => inner,
            // Another thread holds the handle, typically blocked in its own `join`. Wait for
            // the child's end on the pidfd without the lock, so our timeout is honoured; once
            // the child has ended, the holder finishes promptly.
            None => {
                if let Some(pidfd) = self.pidfd.get()
                    && !wait_readable(pidfd.as_fd(), deadline)?
                {
                    return Err(JoinError::Timeout);
                }
                self.lock()
            }
        };
        match &mut inner.state {
            State::NotStarted => return Err(JoinError::NotStarted),
            State::Closed { .. } => return Err(JoinError::Closed),
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
                    !wait_readable(pidfd.as_fd(), Deadline::after(Some(Duration::ZERO)))
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
    /// success, `1` after a panic, `n` for `exit(n)`, `-N` for death by signal `N`. A code known
    /// when [`close`](Self::close) was called stays readable (Python raises `ValueError` after
    /// `close` instead; nothing known is forgotten here).
    pub fn exitcode(&self) -> Option<i32> {
        if my_pid() != self.creator {
            return None;
        }
        // If another thread holds the handle (a `join` in progress), the child has not been
        // reaped yet as far as this handle knows: no exit code yet.
        let mut inner = self.try_lock()?;
        self.poll_state(&mut inner);
        match &inner.state {
            State::Finished { status: Some(s), .. } | State::Closed { status: Some(s) } => {
                Some(s.exitcode())
            }
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
            Ok(Inner { state: State::Closed { .. }, .. }) => Err(ProcessStateError::Closed),
            Ok(Inner { state: State::Finished { .. }, .. }) => Ok(()),
            // We hold the lock, so nobody reaps the child while we signal it: its pid cannot
            // have been reused. ESRCH means it was reaped elsewhere: nothing to do.
            Ok(Inner { state: State::Running(run), .. }) => {
                let _ = match &run.launched {
                    Some(l) => l.signal(signal),
                    None => kill(run.pid, signal),
                };
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
                        let _ = kill(pid, signal);
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
            State::Closed { .. } => Err(ProcessStateError::Closed),
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
        let status = match inner.state {
            State::Finished { status, .. } | State::Closed { status } => status,
            _ => None,
        };
        inner.state = State::Closed { status };
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
        if let Some(l) = &run.launched
            && l.status.is_some()
        {
            // A child of the fork server: it reaps it. A daemon dies with its handle.
            if self.daemon && l.wait(Deadline::after(Some(Duration::ZERO))).ok().flatten().is_none()
            {
                let _ = l.signal(Signal::KILL);
            }
            return;
        }
        match waitpid(run.pid, false) {
            Ok(Some(_)) | Err(_) => {
                with_registry(|c| c.retain(|e| e.pid != run.pid));
            }
            Ok(None) if self.daemon => {
                let _ = kill(run.pid, Signal::KILL);
                let _ = waitpid(run.pid, true);
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
