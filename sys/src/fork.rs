//! Creating child processes, and what a freshly forked child may call.
//!
//! [`fork`] is the only `unsafe` entry point: after it returns [`ForkOutcome::Child`] in a process
//! that had other threads, the child owns a copy of memory in which those threads' locks may be
//! held forever. Everything else in this module is safe and, except [`fork`] itself, usable in
//! such a child:
//!
//! - [`exit_now`] ends the child without running the parent's destructors, `atexit` handlers or
//!   stdio flushes;
//! - [`getpid`], [`getppid`], [`gettid`] identify the caller;
//! - [`set_parent_death_signal`] makes a child die with its parent, closing the race in which the
//!   parent died before the setting took effect;
//! - [`close_inherited`] drops a descriptor the child must not keep (Linux has no `O_CLOFORK`);
//! - [`thread_count`] tells a parent, before it forks, whether it has other threads (and so
//!   whether the child will be restricted to async-signal-safe calls).
//!
//! # Invariants kept by this module
//!
//! - No allocation, no locks: [`thread_count`] parses `/proc/self/status` through a buffer on the
//!   stack, with a close-on-exec descriptor that it closes before returning.
//! - `fork` goes through libc (not a raw `clone`), so the libc's `pthread_atfork` handlers run and
//!   its internal state (the allocator's locks, the cached thread id) is reset in the child.
#![allow(unsafe_code)]

use crate::errno::IntoErrno;
use crate::{Pid, Signal};
use rustix::fd::{OwnedFd, RawFd};
use rustix::fs::{Mode, OFlags};

use crate::cvt::{cvt, retry_eintr};
use crate::errno::{Errno, Result};

/// What [`fork`] returned, in the process that sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ForkOutcome {
    /// This is the parent; `child` is the new process's id.
    Parent {
        /// The id of the child just created. It stays valid (not reused) until the parent reaps
        /// the child with [`waitpid`](crate::wait::waitpid).
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
/// does it twice, so a child should end with [`exit_now`] rather than return or unwind.
///
/// The call goes through libc's `fork` so the libc's `pthread_atfork` handlers run and its own
/// state is consistent in the child. It is **not** async-signal-safe (POSIX.1-2024 removed
/// `fork` from that list for this reason), but glibc and musl reset their internal locks in the
/// child, so a child made by `fork` may itself call `fork` (a fork server does exactly this).
///
/// # Examples
///
/// ```
/// use multiproc_sys::fork::{ForkOutcome, exit_now, fork};
/// use multiproc_sys::wait::{ExitStatus, waitpid};
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
/// - [`Errno::AGAIN`]: a process or thread limit (`RLIMIT_NPROC`, `pid_max`, the cgroup's
///   `pids.max`) was reached.
/// - [`Errno::NOMEM`]: the kernel could not allocate the child's structures.
///
/// # Safety
///
/// If the calling process has other threads (see [`thread_count`]), then in the child:
///
/// - until it calls `execve` or [`exit_now`], the child may call only async-signal-safe
///   functions: no allocation, no `println!`, no `std::sync` locks, no panic (its hook
///   allocates and takes locks);
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

/// `_exit(code)` — ends the calling process at once.
///
/// Runs no `atexit` handlers, no destructors and no stdio flushes: this is how a forked child
/// ends without repeating the parent's cleanup. Open descriptors are closed by the kernel, the
/// parent receives `SIGCHLD`, and [`waitpid`](crate::wait::waitpid) reports
/// [`ExitStatus::Exited`](crate::wait::ExitStatus::Exited) with `code & 0xff`.
///
/// Async-signal-safe.
///
/// # References
/// - [POSIX]
/// - [Linux]
///
/// [POSIX]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/_exit.html
/// [Linux]: https://man7.org/linux/man-pages/man2/_exit.2.html
#[doc(alias = "_exit")]
#[inline]
pub fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` accepts any status and never returns; ending the process without running
    // destructors is memory-safe (leaking is safe).
    unsafe { libc::_exit(code) }
}

/// `close(fd)` — closes a descriptor the calling process inherited and must not keep,
/// ignoring errors.
///
/// Meant for a freshly forked child that drops, before running anything else, descriptors its
/// parent registered as its own (Linux has no `O_CLOFORK`). An error changes nothing worth
/// reporting: `EBADF` means the descriptor was not open, and on Linux the descriptor is
/// released even when `close` reports `EINTR` or `EIO`, so it is never retried (a retry could
/// close a descriptor another thread just opened under the same number).
///
/// Async-signal-safe.
///
/// # Safety
/// - Nothing in the calling process may use or close `fd` afterwards under the belief that it
///   still refers to the same open file: the number may be reused by the next `open`.
///
/// # References
/// - [POSIX]
/// - [Linux]
///
/// [POSIX]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/close.html
/// [Linux]: https://man7.org/linux/man-pages/man2/close.2.html
#[doc(alias = "close")]
#[inline]
pub unsafe fn close_inherited(fd: RawFd) {
    // SAFETY: closing a descriptor number is memory-safe; that nothing else relies on the
    // number afterwards is this function's contract, passed to the caller.
    let _ = unsafe { libc::close(fd) };
}

/// `getpid()` — returns the calling process's id.
///
/// Async-signal-safe.
///
/// # References
/// - [POSIX]
/// - [Linux]
///
/// [POSIX]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/getpid.html
/// [Linux]: https://man7.org/linux/man-pages/man2/getpid.2.html
#[inline]
#[must_use]
pub fn getpid() -> Pid {
    Pid::from_rustix(rustix::process::getpid())
}

/// The calling process's id, cached: the one fork detection of the crate.
///
/// The pid is kept in a private page mapped with `MADV_WIPEONFORK`, which the kernel zero-fills
/// in every child however it was made (libc `fork`, `_Fork`, `vfork`, a raw `clone`), so a child
/// never sees its parent's value: it finds zero, asks the kernel once, and caches its own. No
/// `pthread_atfork` handler is involved. Costs one atomic load after the first call; where the
/// kernel lacks `MADV_WIPEONFORK` (Linux < 4.14) it is a `getpid` system call every time.
///
/// Async-signal-safe once the page exists (the first call maps it: call it once before forking
/// from a multithreaded process, as the crate does).
#[must_use]
pub fn current_pid() -> Pid {
    use core::sync::atomic::Ordering::{Acquire, Relaxed, Release};
    let page = PID_PAGE.load(Acquire);
    // SAFETY: a non-null pointer is a page mapped read-write for the life of the process (never
    // unmapped; a child inherits it zero-filled) holding an `AtomicI32`, valid when zeroed.
    let word = match unsafe { page.as_ref() } {
        Some(word) => word,
        None => match map_pid_page() {
            Some(word) => word,
            None => return getpid(),
        },
    };
    if let Some(pid) = Pid::from_raw(word.load(Relaxed)) {
        return pid;
    }
    let pid = getpid();
    word.store(pid.as_raw_nonzero().get(), Release);
    pid
}

/// The page behind [`current_pid`]; null until first use.
static PID_PAGE: core::sync::atomic::AtomicPtr<core::sync::atomic::AtomicI32> =
    core::sync::atomic::AtomicPtr::new(core::ptr::null_mut());

#[cold]
fn map_pid_page() -> Option<&'static core::sync::atomic::AtomicI32> {
    use core::sync::atomic::Ordering::{Acquire, Release};
    static UNAVAILABLE: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
    if UNAVAILABLE.load(Acquire) {
        return None;
    }
    let Ok(page) = crate::mmap::WipeOnFork::new(1) else {
        UNAVAILABLE.store(true, Release);
        return None;
    };
    let ptr = page.as_ptr().cast::<core::sync::atomic::AtomicI32>();
    match PID_PAGE.compare_exchange(core::ptr::null_mut(), ptr, Release, Acquire) {
        Ok(_) => {
            // Kept for the life of the process.
            core::mem::forget(page);
            // SAFETY: the page is mapped read-write, page-aligned and zero-filled, and now never
            // unmapped.
            Some(unsafe { &*ptr })
        }
        // Another thread mapped one first: ours is unmapped on drop.
        // SAFETY: as above, for the winner's page.
        Err(winner) => Some(unsafe { &*winner }),
    }
}

/// `getppid()` — returns the parent process's id.
///
/// `None` when the parent is outside the caller's PID namespace (the kernel reports 0), as for
/// the init process of a container. A process whose parent died has been reparented: this then
/// returns the new parent (init or the nearest `PR_SET_CHILD_SUBREAPER` ancestor), which is how
/// [`set_parent_death_signal`] detects that it came too late.
///
/// Async-signal-safe.
///
/// # References
/// - [POSIX]
/// - [Linux]
///
/// [POSIX]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/getppid.html
/// [Linux]: https://man7.org/linux/man-pages/man2/getppid.2.html
#[inline]
#[must_use]
pub fn getppid() -> Option<Pid> {
    rustix::process::getppid().map(Pid::from_rustix)
}

/// `gettid()` — returns the calling thread's id.
///
/// Equal to [`getpid`] in the main thread (and so in a freshly forked child). Linux-specific.
///
/// Async-signal-safe.
///
/// # References
/// - [Linux]
///
/// [Linux]: https://man7.org/linux/man-pages/man2/gettid.2.html
#[inline]
#[must_use]
pub fn gettid() -> Pid {
    Pid::from_rustix(rustix::thread::gettid())
}

/// `prctl(PR_SET_PDEATHSIG, signal)` — asks the kernel to send `signal` to the caller when its
/// parent dies, then checks that the parent is still `expected_parent`.
///
/// Called in a child right after [`fork`], with `expected_parent` the parent's id captured
/// *before* the fork (the parent's [`getpid`]). The check closes the race in which the parent
/// died between `fork` and this call: the setting would then never fire, because the child has
/// already been reparented. That case returns [`Errno::SRCH`] and the caller should exit.
///
/// **Linux semantics:** the signal is sent when the *thread* that forked the child exits, not
/// only when the whole parent process does. A child forked from a short-lived worker thread of a
/// long-lived process is killed when that thread ends. Fork from a thread that outlives the
/// child (the main thread, or a dedicated fork-server process) when this matters.
///
/// The setting is cleared in children forked by the caller, and by an `execve` of a set-user-ID
/// or set-group-ID program; it survives other `execve`s. After an `Err(SRCH)` it stays in place
/// (the signal would go to nobody: the original parent is already gone).
///
/// Async-signal-safe (raw system calls only).
///
/// # Errors
///
/// - [`Errno::SRCH`]: the parent is no longer `expected_parent` (it died, or a wrong id was
///   given).
/// - [`Errno::INVAL`]: `signal` is not a valid signal number.
///
/// # References
/// - [Linux `prctl(2)`]
///
/// [Linux `prctl(2)`]: https://man7.org/linux/man-pages/man2/PR_SET_PDEATHSIG.2const.html
#[doc(alias = "PR_SET_PDEATHSIG")]
pub fn set_parent_death_signal(signal: Signal, expected_parent: Pid) -> Result<()> {
    rustix::process::set_parent_process_death_signal(Some(signal.to_rustix())).errno()?;
    if getppid() == Some(expected_parent) { Ok(()) } else { Err(Errno::SRCH) }
}

/// `prctl(PR_SET_PDEATHSIG, 0)` — stops the kernel from signalling the caller when its parent
/// dies.
///
/// Async-signal-safe (raw system calls only).
///
/// # Errors
///
/// None expected; the kernel's error is returned as is.
///
/// # References
/// - [Linux `prctl(2)`]
///
/// [Linux `prctl(2)`]: https://man7.org/linux/man-pages/man2/PR_SET_PDEATHSIG.2const.html
#[doc(alias = "PR_SET_PDEATHSIG")]
pub fn clear_parent_death_signal() -> Result<()> {
    rustix::process::set_parent_process_death_signal(None).errno()
}

/// `open("/proc/self/status")` + `read` — returns the number of threads in the calling process,
/// or `None` if it cannot be read (no `/proc`, descriptor limit reached).
///
/// Call it before [`fork`]: anything above 1 means the child will be restricted to
/// async-signal-safe calls. It is a snapshot: another thread may start or end right after.
///
/// Parses the `Threads:` line through a buffer on the stack; the close-on-exec descriptor it
/// opens is closed before it returns. Async-signal-safe (`open`, `read` and `close` only).
///
/// # References
/// - [Linux `proc_pid_status(5)`]
///
/// [Linux `proc_pid_status(5)`]: https://man7.org/linux/man-pages/man5/proc_pid_status.5.html
#[must_use]
pub fn thread_count() -> Option<usize> {
    let fd: OwnedFd = retry_eintr(|| {
        rustix::fs::open(
            c"/proc/self/status",
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY,
            Mode::empty(),
        )
        .errno()
    })
    .ok()?;
    let mut scanner = ThreadsScanner::new();
    let mut buf = [0u8; 256];
    loop {
        let n = retry_eintr(|| rustix::io::read(&fd, &mut buf[..]).errno()).ok()?;
        if n == 0 {
            return scanner.finish();
        }
        if let Some(count) = scanner.feed(&buf[..n]) {
            return Some(count);
        }
    }
}

/// Finds the `Threads:` line in `/proc/<pid>/status` text fed in arbitrary chunks.
///
/// Keeps at most [`ThreadsScanner::LINE`] bytes of the current line; longer lines (such as a
/// long `Groups:` list) are marked truncated and skipped.
struct ThreadsScanner {
    line: [u8; Self::LINE],
    len: usize,
    truncated: bool,
}

impl ThreadsScanner {
    /// Longest line kept: `Threads:` plus a tab and the 20 digits of `u64::MAX` fit.
    const LINE: usize = 40;

    const fn new() -> Self {
        ThreadsScanner { line: [0; Self::LINE], len: 0, truncated: false }
    }

    /// Feeds the next chunk; returns the count once the `Threads:` line is complete.
    fn feed(&mut self, chunk: &[u8]) -> Option<usize> {
        for &b in chunk {
            if b == b'\n' {
                if let Some(count) = self.end_line() {
                    return Some(count);
                }
            } else if self.len < Self::LINE {
                self.line[self.len] = b;
                self.len += 1;
            } else {
                self.truncated = true;
            }
        }
        None
    }

    /// At end of input: the last line may lack its newline.
    fn finish(&mut self) -> Option<usize> {
        self.end_line()
    }

    fn end_line(&mut self) -> Option<usize> {
        let found = if self.truncated { None } else { parse_threads_line(&self.line[..self.len]) };
        self.len = 0;
        self.truncated = false;
        found
    }
}

/// `"Threads:\t12"` -> `Some(12)`; any other line -> `None`.
fn parse_threads_line(line: &[u8]) -> Option<usize> {
    let value = line.strip_prefix(b"Threads:")?.trim_ascii();
    if value.is_empty() {
        return None;
    }
    let mut n: usize = 0;
    for &d in value {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(usize::from(d - b'0'))?;
    }
    Some(n)
}

/// `atexit(handler)` — runs `handler` when the process ends through `exit` (returning from
/// `main`, or `std::process::exit`), after handlers registered later. Never on `_exit`
/// ([`exit_now`]) or death by a signal, so a forked child that ends with [`exit_now`] does not
/// run the handlers it inherited.
///
/// # Errors
/// [`Errno::NOMEM`] if the handler table is full.
///
/// # References
/// - [POSIX]
///
/// [POSIX]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/atexit.html
pub fn at_exit(handler: extern "C" fn()) -> Result<()> {
    // SAFETY: `handler` is a valid `extern "C" fn()` for the life of the program (a function
    // item); `atexit` only stores it.
    if unsafe { libc::atexit(handler) } == 0 { Ok(()) } else { Err(Errno::NOMEM) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &[u8] = b"Name:\tcargo\nUmask:\t0022\nState:\tS (sleeping)\n\
        Groups:\t4 24 27 30 46 100 118 1000 1001 1002 1003 1004 1005 1006 1007 1008 1009 1010\n\
        VmRSS:\t  1234 kB\nThreads:\t17\nSigQ:\t0/63382\n";

    fn scan_in_chunks(text: &[u8], chunk: usize) -> Option<usize> {
        let mut s = ThreadsScanner::new();
        for part in text.chunks(chunk) {
            if let Some(n) = s.feed(part) {
                return Some(n);
            }
        }
        s.finish()
    }

    #[test]
    fn threads_line_is_found_whatever_the_chunking() {
        for chunk in 1..=STATUS.len() {
            assert_eq!(scan_in_chunks(STATUS, chunk), Some(17), "chunk size {chunk}");
        }
    }

    #[test]
    fn last_line_without_newline_counts() {
        assert_eq!(scan_in_chunks(b"Name:\tx\nThreads:\t3", 4), Some(3));
    }

    #[test]
    fn bad_or_missing_values_give_none() {
        assert_eq!(scan_in_chunks(b"Name:\tx\n", 3), None);
        assert_eq!(scan_in_chunks(b"Threads:\t\n", 3), None);
        assert_eq!(scan_in_chunks(b"Threads:\t1x\n", 3), None);
        assert_eq!(scan_in_chunks(b"Threads:\t99999999999999999999999999\n", 3), None);
        // A long line that merely starts like the key is skipped, not misparsed.
        assert_eq!(scan_in_chunks(b"Threads:\t1                                     9\n", 5), None);
        // "Threads" inside another line does not count.
        assert_eq!(scan_in_chunks(b"Name:\tThreads:\t4\n", 5), None);
    }
}
