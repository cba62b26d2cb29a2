//! What the crate does around every `fork` it makes, so that its own code in the child never
//! waits on a lock another thread of the parent held at that moment.
//!
//! `fork` copies only the calling thread. A lock held by another thread stays locked forever in
//! the child. The crate's own child code avoids std's stdout/stderr locks by holding them across
//! the fork (see [`Process::start`](crate::Process::start)); what remains is the **panic path**:
//! std's default panic hook takes a process-wide backtrace lock (and, with `RUST_BACKTRACE` set,
//! walks the stack under it). A child forked while another thread was inside that hook (a
//! panicking test, say) would block forever on its first panic.
//!
//! So before it forks, the crate:
//!
//! 1. installs, once, a panic hook that wraps the one in place. In the parent, and in a child
//!    forked from a single-threaded process (or from the crate's fork server, which is
//!    single-threaded by construction), it calls the wrapped hook: nothing changes. In a child
//!    forked from a multithreaded process, it writes `process <pid> panicked at <where>:
//!    <message>` to file descriptor 2 with one `write` from a buffer on the stack, and takes no
//!    lock (no backtrace: capturing one needs the lock);
//! 2. counts the threads ([`thread_count`](crate::thread_count)) and, the first time it forks a
//!    multithreaded process under the `fork` start method, warns once on stderr, as Python 3.12
//!    does. [`set_fork_warning`]`(false)` or `MULTIPROC_FORK_WARNING=0` silences it.
//!
//! Unwinding itself (the `catch_unwind` around a child's closure or task) finds frame tables
//! with glibc's lock-free `_dl_find_object` (glibc 2.35 and later, with GCC 12's unwinder); older
//! libcs walk the loaded objects under the dynamic loader's lock, which a thread of the parent
//! may hold while it unwinds: there, only `forkserver` and `spawn` are safe from that lock.
//!
//! A hook installed by the program *after* the crate's replaces it: the program's hook then runs
//! in every child, and must itself be fork-safe. The safe way for a multithreaded program is the
//! `forkserver` or `spawn` start method (see [`context`](crate::context)): their children come
//! from a single-threaded process, and panic and print as usual.

use std::fmt::{self, Write as _};
use std::os::fd::AsFd;
use std::panic::{self, PanicHookInfo};
use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use multiproc_sys::fork as sysfork;

/// This process is not a child the crate forked from a multithreaded process: panics go to the
/// program's hook.
const CLEAN: u8 = 0;
/// This process was forked by the crate from a multithreaded process: panics are reported
/// without locks.
const TAINTED: u8 = 1;

static MODE: AtomicU8 = AtomicU8::new(CLEAN);
static WARN: AtomicBool = AtomicBool::new(true);
static WARNED: AtomicBool = AtomicBool::new(false);

/// What the parent learnt before a fork, for the child to act on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ForkPlan {
    /// The parent had other threads (or the count was unknown).
    multithreaded: bool,
}

/// Turns the one-time warning about `fork` in a multithreaded process on or off (it is on,
/// unless the environment variable `MULTIPROC_FORK_WARNING` is `0` when the first such fork
/// happens).
///
/// Python 3.12 warns in the same situation (`DeprecationWarning: This process is multi-threaded,
/// use of fork() may lead to deadlocks in the child`). The warning is printed at most once per
/// process, by the `fork` start method only: `forkserver` and `spawn` never fork a
/// multithreaded process.
///
/// ```
/// multiproc::set_fork_warning(false); // this program knows what its threads hold
/// ```
pub fn set_fork_warning(on: bool) {
    WARN.store(on, Ordering::Relaxed);
}

/// Called by the parent just before the crate forks a child from this (possibly multithreaded)
/// process with the `fork` start method: installs the hook and warns once if other threads run.
pub(crate) fn before_fork() -> ForkPlan {
    install_hook();
    let multithreaded = sysfork::thread_count().is_none_or(|n| n > 1);
    if multithreaded
        && WARN.load(Ordering::Relaxed)
        && !WARNED.swap(true, Ordering::Relaxed)
        && std::env::var_os("MULTIPROC_FORK_WARNING").is_none_or(|v| v != "0")
    {
        eprintln!(
            "multiproc: warning: forking a process that has {} threads (start method 'fork'); \
             the child may deadlock on a lock another thread held. Use the 'forkserver' or \
             'spawn' start method (multiproc::get_context), or silence this with \
             multiproc::set_fork_warning(false) or MULTIPROC_FORK_WARNING=0.",
            sysfork::thread_count().map_or_else(|| "several".to_owned(), |n| n.to_string())
        );
    }
    ForkPlan { multithreaded }
}

/// Called by a single-threaded process that forks (the fork servers): installs the hook, so
/// that the children inherit it. No warning, and the children stay clean.
pub(crate) fn before_clean_fork() -> ForkPlan {
    install_hook();
    ForkPlan { multithreaded: false }
}

/// Called in the child right after the fork: one atomic store, allocation- and lock-free.
pub(crate) fn in_child(plan: ForkPlan) {
    if plan.multithreaded {
        MODE.store(TAINTED, Ordering::Relaxed);
    }
}

/// Whether this process was forked by the crate from a multithreaded process (and so must not
/// fork pool workers, nor take std's locks on its panic path).
pub(crate) fn is_tainted() -> bool {
    MODE.load(Ordering::Relaxed) == TAINTED
}

/// Installs the wrapping hook, once per process image. Skipped on a panicking thread, where std
/// forbids changing the hook (the child then panics through the program's hook).
fn install_hook() {
    static INSTALL: Once = Once::new();
    if std::thread::panicking() {
        return;
    }
    INSTALL.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if is_tainted() {
                report_without_locks(info);
            } else {
                previous(info);
            }
        }));
    });
}

/// Writes `process <pid> panicked at <location>:\n<message>` to fd 2 from a stack buffer.
fn report_without_locks(info: &PanicHookInfo<'_>) {
    let mut buf = StackText { bytes: [0; 1024], len: 0 };
    let pid = sysfork::getpid().as_raw_nonzero().get();
    let _ = writeln!(buf, "process {pid} {info}");
    if buf.len == buf.bytes.len() {
        buf.bytes[buf.len - 1] = b'\n';
    }
    let _ = multiproc_sys::pipe::write_all(std::io::stderr().as_fd(), &buf.bytes[..buf.len]);
}

/// A fixed buffer that keeps what fits and drops the rest.
struct StackText {
    bytes: [u8; 1024],
    len: usize,
}

impl fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(self.bytes.len() - self.len);
        self.bytes[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// The text of a panic payload (`&str` or `String`, as `panic!` makes them).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_owned()
    }
}
