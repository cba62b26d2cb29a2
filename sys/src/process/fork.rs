//! Creating a child process: [`fork`], the only `unsafe` entry point of [`process`](super).
//!
//! After it returns [`ForkOutcome::Child`] in a process that had other threads, the child owns a
//! copy of memory in which those threads' locks may be held forever: it may then call only
//! async-signal-safe functions until it ends. The rest of [`process`](super) is safe, and says
//! which items such a child may call (most of them):
//!
//! - [`exit_now`](super::exit::exit_now) ends the child without running the parent's
//!   destructors, `atexit` handlers or stdio flushes;
//! - [`getpid`](super::pid::getpid), [`getppid`](super::parent::getppid) and
//!   [`gettid`](super::thread::gettid) identify the caller;
//! - [`set_parent_death_signal`](super::parent::set_parent_death_signal) makes a child die with
//!   its parent, closing the race in which the parent died before the setting took effect;
//! - [`close_inherited`](crate::io::fd::close_inherited) drops a descriptor the child must not
//!   keep (Linux has no `O_CLOFORK`);
//! - [`thread_count`](super::thread::thread_count) tells a parent, before it forks, whether it
//!   has other threads (and so whether the child will be restricted to async-signal-safe calls).
//!
//! # Invariants kept by this module
//!
//! - `fork` goes through libc (not a raw `clone`), so the libc's `pthread_atfork` handlers run and
//!   its internal state (the allocator's locks, the cached thread id) is reset in the child.
#![allow(unsafe_code)]

use crate::Pid;
use crate::cvt::cvt;
use crate::errno::Result;

/// What [`fork`] returned, in the process that sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ForkOutcome {
    /// This is the parent; `child` is the new process's id.
    Parent {
        /// The id of the child just created. It stays valid (not reused) until the parent reaps
        /// the child with [`waitpid`](super::wait::waitpid).
        child: Pid,
    },
    /// This is the new child process.
    Child,
}

/// `fork()` — creates a child process that is a copy of the caller.
///
/// Returns [`ForkOutcome::Parent`] with the child's id in the parent and [`ForkOutcome::Child`]
/// in the child. Only the calling thread exists in the child. Both processes share the open file
/// descriptions (offsets, locks) of every inherited descriptor.
///
/// Flush buffered output (Rust's `stdout` is line-buffered, a `BufWriter` holds more) before
/// forking, or both processes may write it. The child owns a copy of every value the parent
/// owned: dropping one whose `Drop` acts outside the process (deletes a file, sends a message)
/// does it twice, so a child should end with [`exit_now`](super::exit::exit_now) rather than
/// return or unwind.
///
/// The call goes through libc's `fork` so the libc's `pthread_atfork` handlers run and its own
/// state is consistent in the child. It is **not** async-signal-safe (POSIX.1-2024 removed
/// `fork` from that list for this reason), but glibc and musl reset their internal locks in the
/// child, so a child made by `fork` may itself call `fork` (a fork server does exactly this).
///
/// # Examples
///
/// ```
/// use multiproc_sys::process::exit::exit_now;
/// use multiproc_sys::process::fork::{ForkOutcome, fork};
/// use multiproc_sys::process::wait::{ExitStatus, waitpid};
///
/// # fn main() -> multiproc_sys::Result<()> {
/// // SAFETY: the child only calls `_exit`, which is async-signal-safe.
/// match unsafe { fork()? } {
///     ForkOutcome::Child => exit_now(7),
///     ForkOutcome::Parent { child } => {
///         assert_eq!(waitpid(child, true)?, Some(ExitStatus::Exited(7)));
///     }
/// }
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// - [`Errno::AGAIN`](crate::Errno::AGAIN): a process or thread limit (`RLIMIT_NPROC`,
///   `pid_max`, the cgroup's `pids.max`) was reached.
/// - [`Errno::NOMEM`](crate::Errno::NOMEM): the kernel could not allocate the child's structures.
///
/// # Safety
///
/// If the calling process has other threads (see
/// [`thread_count`](super::thread::thread_count)), then in the child:
///
/// - until it calls `execve` or [`exit_now`](super::exit::exit_now), the child may call only
///   async-signal-safe functions: no allocation, no `println!`, no `std::sync` locks, no panic
///   (its hook allocates and takes locks);
/// - every lock that another thread held at the time of the fork (a `Mutex`, an `RwLock`, a
///   `OnceLock` being initialised, a lock inside a library) stays locked forever in the child:
///   the child must not try to take it, and must not rely on data that such a lock protected
///   being consistent.
///
/// In a single-threaded process the child may do anything the parent could.
///
/// # References
/// - [POSIX]
/// - [Linux]
///
/// [POSIX]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/fork.html
/// [Linux]: https://man7.org/linux/man-pages/man2/fork.2.html
#[inline]
pub unsafe fn fork() -> Result<ForkOutcome> {
    // SAFETY: `fork` has no memory-safety preconditions of its own; the obligations about what
    // the child does afterwards are this function's `# Safety` contract, passed to the caller.
    let ret = cvt(unsafe { libc::fork() })?;
    match Pid::from_raw(ret) {
        None => Ok(ForkOutcome::Child),
        Some(child) => Ok(ForkOutcome::Parent { child }),
    }
}
