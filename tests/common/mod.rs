//! Test support shared by the `tests/*.rs` files: a fork helper whose children cannot
//! outlive or hang the test, and a watchdog that fails a deadlocked test within seconds.
//!
//! It uses `libc` directly, not the crate under test, so a bug in `multiproc` cannot hide
//! itself by breaking its own harness.
//!
//! Children run under the default multithreaded test harness, so the closure given to
//! [`fork_child`] must do only async-signal-safe work: no allocation, no printing, no locks
//! taken by other threads (atomics and the crate's own allocation-free calls are fine).
#![allow(dead_code, unsafe_code, clippy::undocumented_unsafe_blocks)]

use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a test may run before the watchdog aborts the whole test binary.
pub const TEST_LIMIT: Duration = Duration::from_secs(30);

/// Aborts the process (failing the test run loudly, never hanging CI) if it is not dropped
/// within `limit`.
pub struct Watchdog {
    done: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Starts a [`Watchdog`] for the calling test.
pub fn watchdog(limit: Duration) -> Watchdog {
    let (tx, rx) = mpsc::channel::<()>();
    let name = std::thread::current().name().unwrap_or("<unnamed test>").to_owned();
    let thread = std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
            eprintln!("watchdog: test `{name}` still running after {limit:?}: deadlock; aborting");
            std::process::abort();
        }
    });
    Watchdog { done: Some(tx), thread: Some(thread) }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.done.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// `_exit(code)`.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

/// A forked child that the test must wait for.
#[derive(Debug)]
pub struct Child {
    pub pid: libc::pid_t,
    reaped: bool,
}

/// Forks; the child sets `PR_SET_PDEATHSIG(SIGKILL)` (so an aborted test leaves no orphan),
/// runs `f` and `_exit`s with its return value. A panic in `f` exits with 101.
///
/// `f` runs in a forked child of a multithreaded process: async-signal-safe work only.
pub fn fork_child(f: impl FnOnce() -> i32) -> Child {
    let parent = unsafe { libc::getpid() };
    // SAFETY: the child only calls async-signal-safe functions before running `f`, whose
    // contract (above) is the same, then `_exit`s without returning into the harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed: {}", std::io::Error::last_os_error());
    if pid == 0 {
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if libc::getppid() != parent {
                libc::_exit(102);
            }
        }
        // No panic hook is installed here: `set_hook` takes std's hook lock, which another
        // thread of the test process may hold (mid-panic) at the moment of the fork. A panic in
        // `f` (a failed assert) is caught and reported as exit code 101.
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(101);
        unsafe { libc::_exit(code) };
    }
    Child { pid, reaped: false }
}

impl Child {
    /// Waits for the child for at most `limit`; on timeout kills it, reaps it and panics.
    pub fn wait(mut self, limit: Duration) -> Exit {
        let start = Instant::now();
        loop {
            let mut status = 0;
            let r = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
            assert!(r >= 0, "waitpid: {}", std::io::Error::last_os_error());
            if r == self.pid {
                self.reaped = true;
                return if libc::WIFEXITED(status) {
                    Exit::Code(libc::WEXITSTATUS(status))
                } else {
                    Exit::Signal(libc::WTERMSIG(status))
                };
            }
            if start.elapsed() > limit {
                self.kill_and_reap();
                panic!("child {} did not exit within {limit:?}", self.pid);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Waits and asserts a clean `_exit(0)`.
    pub fn join_ok(self) {
        let pid = self.pid;
        assert_eq!(self.wait(TEST_LIMIT), Exit::Code(0), "child {pid} failed");
    }

    /// SIGKILLs and reaps the child.
    pub fn kill_and_reap(&mut self) {
        if !self.reaped {
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                let mut status = 0;
                libc::waitpid(self.pid, &mut status, 0);
            }
            self.reaped = true;
        }
    }
}

impl Drop for Child {
    /// A child the test forgot (or a panicking test) is killed and reaped: never a zombie.
    fn drop(&mut self) {
        self.kill_and_reap();
    }
}

/// Polls `cond` until it holds or `limit` passes; returns whether it held. For observing
/// another process's progress in shared memory (the watchdog still bounds the whole test).
pub fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    cond()
}

/// A page of `MAP_SHARED | MAP_ANONYMOUS` memory made with raw libc (independent of the crate's
/// own `Segment`), for tests that need shared scratch space. Unmapped on drop.
pub struct SharedPage {
    ptr: *mut u8,
    len: usize,
}

impl SharedPage {
    pub fn new(len: usize) -> Self {
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(ptr, libc::MAP_FAILED);
        SharedPage { ptr: ptr.cast(), len }
    }

    /// The page as a reference to `T` at `offset` (zero-initialised memory).
    ///
    /// # Safety
    /// `T` must be valid when all-zero, fit at `offset`, and `offset` must be aligned for `T`.
    pub unsafe fn get<T>(&self, offset: usize) -> &T {
        assert!(offset + std::mem::size_of::<T>() <= self.len);
        assert_eq!((self.ptr as usize + offset) % std::mem::align_of::<T>(), 0);
        unsafe { &*self.ptr.add(offset).cast::<T>() }
    }
}

impl Drop for SharedPage {
    fn drop(&mut self) {
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

// The page is plain shared memory: sharing references to atomics in it across threads is fine.
unsafe impl Send for SharedPage {}
unsafe impl Sync for SharedPage {}
