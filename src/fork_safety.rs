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
//!    A pool worker also records where each of its panics happened (and, when it is clean and
//!    `RUST_BACKTRACE` is set, the backtrace) for
//!    [`PoolError::Panicked`](crate::pool::PoolError::Panicked); a tainted one records the
//!    location only, without a lock.
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

use std::cell::Cell;
use std::fmt::{self, Write as _};
use std::os::fd::AsFd;
use std::panic::{self, PanicHookInfo};
use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use multiproc_sys::io::stream::write_all;
use multiproc_sys::process::pid::getpid;
use multiproc_sys::process::thread::thread_count;

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
    let multithreaded = thread_count().is_none_or(|n| n > 1);
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
            thread_count().map_or_else(|| "several".to_owned(), |n| n.to_string())
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
                // No backtrace: capturing one takes the lock this process may have inherited
                // locked. (A clean pool worker records through its own hook, see
                // `record_panics`.)
                record_panic(info, false);
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
    let pid = getpid().as_raw_nonzero().get();
    let _ = writeln!(buf, "process {pid} {info}");
    if buf.len == buf.bytes.len() {
        buf.bytes[buf.len - 1] = b'\n';
    }
    let _ = write_all(std::io::stderr().as_fd(), &buf.bytes[..buf.len]);
}

// ---------------------------------------------------------------------------------------------
// Where a pool worker's panics happen (for `PoolError::Panicked`)

/// This process records its panics' locations (and backtraces) for [`take_panic_record`]: it is
/// a pool worker.
static RECORD: AtomicBool = AtomicBool::new(false);

/// What the panic hook saw of a panic: its message (to match it with the payload that
/// `catch_unwind` returns), its location, and the backtrace if one was captured.
pub(crate) struct PanicRecord {
    message: String,
    /// `file:line:column`.
    pub location: Option<String>,
    pub backtrace: Option<String>,
}

thread_local! {
    /// The last panic of this thread the hook recorded (a `Cell`: no borrow can fail in a hook).
    static LAST_PANIC: Cell<Option<PanicRecord>> = const { Cell::new(None) };
}

/// Makes this process (a pool worker, just forked) record where its panics happen.
///
/// In a process forked from a multithreaded one ("tainted"), the crate's hook records the
/// location and takes no lock. Otherwise a hook is added in front of whatever hook is in place
/// (so that one the program installed after the crate's still runs, and does not stop the
/// recording), and it records the backtrace too when [`Backtrace::capture`] captures one
/// (`RUST_BACKTRACE` or `RUST_LIB_BACKTRACE` set).
///
/// [`Backtrace::capture`]: std::backtrace::Backtrace::capture
pub(crate) fn record_panics() {
    RECORD.store(true, Ordering::Relaxed);
    if is_tainted() || std::thread::panicking() {
        return;
    }
    let previous = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        record_panic(info, true);
        previous(info);
    }));
}

/// Records `info` for this thread, if this process records its panics.
fn record_panic(info: &PanicHookInfo<'_>, with_backtrace: bool) {
    if !RECORD.load(Ordering::Relaxed) {
        return;
    }
    let location = info.location().map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()));
    let backtrace = if with_backtrace {
        let bt = std::backtrace::Backtrace::capture();
        (bt.status() == std::backtrace::BacktraceStatus::Captured)
            .then(|| without_hook_frames(&bt.to_string()))
    } else {
        None
    };
    let record = PanicRecord { message: panic_message(info.payload()), location, backtrace };
    // `try_with`: the thread may be tearing down its locals.
    let _ = LAST_PANIC.try_with(|last| last.set(Some(record)));
}

/// A backtrace's text from the frame that began the panic on (`rust_begin_unwind`, for
/// `panic!`), renumbered from 0: the frames of the hooks that captured it are dropped, as
/// std's default hook does. Unchanged if std's marker frame is not found.
fn without_hook_frames(text: &str) -> String {
    /// The frame number a line of the text starts, if it starts one (`"  12: name"`).
    fn frame_number(line: &str) -> Option<(usize, usize)> {
        let digits = line.trim_start();
        let end = digits.find(':')?;
        let n = digits[..end].parse().ok()?;
        Some((n, line.len() - digits.len() + end))
    }
    let lines: Vec<&str> = text.lines().collect();
    let Some(marker) = lines.iter().position(|l| l.contains("__rust_end_short_backtrace")) else {
        return text.to_owned();
    };
    let Some(first) = lines[marker + 1..].iter().find_map(|l| frame_number(l)).map(|f| f.0) else {
        return text.to_owned();
    };
    let mut out = String::with_capacity(text.len());
    let mut keep = false;
    for line in &lines[marker + 1..] {
        match frame_number(line) {
            Some((n, colon)) if n >= first => {
                keep = true;
                let _ = writeln!(out, "{:>4}{}", n - first, &line[colon..]);
            }
            _ if keep => {
                out.push_str(line);
                out.push('\n');
            }
            _ => {}
        }
    }
    out
}

/// Forgets this thread's recorded panic (a worker calls it before each task).
pub(crate) fn clear_panic_record() {
    let _ = LAST_PANIC.try_with(|last| last.set(None));
}

/// Takes this thread's recorded panic, if it is the one whose message `catch_unwind` just
/// returned (a panic resumed with `resume_unwind` does not call the hook: the record may be
/// an older panic's).
pub(crate) fn take_panic_record(message: &str) -> Option<PanicRecord> {
    LAST_PANIC.try_with(Cell::take).ok().flatten().filter(|r| r.message == message)
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

#[cfg(test)]
mod tests {
    use super::without_hook_frames;

    #[test]
    fn the_hooks_frames_are_dropped_from_a_backtrace() {
        let text = "   0: multiproc::fork_safety::record_panic\n             at ./src/fork_safety.rs:1:2\n   \
                    1: std::sys::backtrace::__rust_end_short_backtrace::<F, !>\n             at x.rs:1:1\n   \
                    2: __rustc::rust_begin_unwind\n             at p.rs:1:1\n   \
                    3: app::task\n             at ./src/main.rs:3:5\n  \
                    10: main\n";
        assert_eq!(
            without_hook_frames(text),
            "   0: __rustc::rust_begin_unwind\n             at p.rs:1:1\n   \
             1: app::task\n             at ./src/main.rs:3:5\n   8: main\n"
        );
        let plain = "   0: a\n   1: b\n";
        assert_eq!(without_hook_frames(plain), plain);
    }
}
