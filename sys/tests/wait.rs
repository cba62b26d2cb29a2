//! `multiproc_sys::process::{wait, pidfd}`: reaping and decoding, `ECHILD`, pidfds, and timed
//! waits with and without a pidfd, each across a real fork.
//!
//! Every child does only async-signal-safe work: loads and stores on shared atomics,
//! `nanosleep`, `pause` and `_exit`.
#![allow(unsafe_code, clippy::undocumented_unsafe_blocks)]

mod common;

use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::time::{Duration, Instant};

use common::{Child, SharedPage, TEST_LIMIT, fork_child, watchdog};
use multiproc_sys::fd::AsRawFd;
use multiproc_sys::io::poll::{PollFd, PollFlags, poll};
use multiproc_sys::process::pidfd::{Pidfd, is_pidfd_available, pidfd_open};
use multiproc_sys::process::signal::kill;
use multiproc_sys::process::wait::{ExitStatus, peek_exit, wait_deadline, waitpid};
use multiproc_sys::time::Deadline;
use multiproc_sys::{Errno, Pid, Signal};

fn pid_of(child: &Child) -> Pid {
    Pid::from_raw(child.pid).expect("a child's pid is positive")
}

/// The child was reaped through the crate under test: its harness handle must not signal or
/// wait for that pid again (the id may already belong to another process).
fn reaped(child: Child) {
    std::mem::forget(child);
}

/// In a child: sleeps in 100 µs steps until `flag` is nonzero. Async-signal-safe.
fn wait_for_flag(flag: &AtomicU32) {
    let step = rustix::time::Timespec { tv_sec: 0, tv_nsec: 100_000 };
    while flag.load(SeqCst) == 0 {
        let _ = rustix::thread::nanosleep(&step);
    }
}

/// In a child: blocks until a signal kills it. Async-signal-safe.
fn pause_forever() -> ! {
    loop {
        unsafe { libc::pause() };
    }
}

/// `poll` on one pidfd: whether it is readable within `timeout`.
fn pidfd_readable(pidfd: &Pidfd, timeout: Duration) -> bool {
    let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
    let n = poll(&mut fds, Deadline::after(Some(timeout))).expect("poll");
    n == 1 && fds[0].revents().contains(PollFlags::IN)
}

#[test]
fn a_blocking_waitpid_returns_the_exit_code() {
    let _w = watchdog(TEST_LIMIT);
    let child = fork_child(|| 3);
    let status = waitpid(pid_of(&child), true).expect("waitpid");
    reaped(child);
    let status = status.expect("a blocking wait returns a status");
    assert_eq!(status, ExitStatus::Exited(3));
    assert_eq!(status.exitcode(), 3);
    assert!(!status.success());
    assert_eq!(status.to_string(), "exit code 3");
    assert!(ExitStatus::Exited(0).success());
}

#[test]
fn death_by_sigkill_decodes_as_signaled_9_with_exitcode_minus_9() {
    let _w = watchdog(TEST_LIMIT);
    let child = fork_child(|| pause_forever());
    kill(pid_of(&child), Signal::KILL).expect("kill");
    let status = waitpid(pid_of(&child), true).expect("waitpid");
    reaped(child);
    let status = status.expect("a blocking wait returns a status");
    assert_eq!(status, ExitStatus::Signaled(libc::SIGKILL));
    assert_eq!(status.exitcode(), -9);
    assert!(!status.success());
    assert_eq!(status.to_string(), "killed by signal 9 (SIGKILL)");
}

#[test]
fn non_blocking_waitpid_returns_none_while_the_child_runs() {
    let _w = watchdog(TEST_LIMIT);
    let page = SharedPage::new(4096);
    let go: &AtomicU32 = unsafe { page.get(0) };
    let child = fork_child(|| {
        wait_for_flag(go);
        0
    });
    let pid = pid_of(&child);
    // The child cannot exit before `go` is set.
    assert_eq!(waitpid(pid, false), Ok(None));
    assert_eq!(waitpid(pid, false), Ok(None));
    go.store(1, SeqCst);
    let status = waitpid(pid, true);
    reaped(child);
    assert_eq!(status, Ok(Some(ExitStatus::Exited(0))));
}

#[test]
fn waitpid_reports_echild_for_a_process_that_is_not_our_child() {
    let _w = watchdog(TEST_LIMIT);
    let parent =
        multiproc_sys::process::parent::getppid().expect("the test runner is in our namespace");
    assert_eq!(waitpid(parent, false), Err(Errno::CHILD));
    assert_eq!(waitpid(parent, true), Err(Errno::CHILD));
    assert_eq!(waitpid(Pid::INIT, true), Err(Errno::CHILD));
    assert_eq!(
        wait_deadline(parent, None, Deadline::after(Some(Duration::from_secs(1)))),
        Err(Errno::CHILD)
    );

    // A child we already reaped is no longer ours: "exited, status unknown".
    let child = fork_child(|| 0);
    let pid = pid_of(&child);
    assert_eq!(waitpid(pid, true), Ok(Some(ExitStatus::Exited(0))));
    reaped(child);
    assert_eq!(waitpid(pid, false), Err(Errno::CHILD));
}

#[test]
fn a_pidfd_becomes_readable_when_the_child_exits_and_not_before() {
    let _w = watchdog(TEST_LIMIT);
    if !is_pidfd_available() {
        eprintln!("SKIPPED: this kernel has no pidfd_open (Linux < 5.3)");
        return;
    }
    let page = SharedPage::new(4096);
    let go: &AtomicU32 = unsafe { page.get(0) };
    let child = fork_child(|| {
        wait_for_flag(go);
        5
    });
    let pid = pid_of(&child);
    let pidfd = pidfd_open(pid).expect("pidfd_open");
    assert!(!pidfd_readable(&pidfd, Duration::ZERO), "readable while the child runs");
    assert!(!pidfd_readable(&pidfd, Duration::from_millis(20)), "readable while the child runs");
    go.store(1, SeqCst);
    assert!(pidfd_readable(&pidfd, TEST_LIMIT), "not readable after the child exited");
    // Readable means reapable at once.
    let status = waitpid(pid, false);
    reaped(child);
    assert_eq!(status, Ok(Some(ExitStatus::Exited(5))));
}

#[test]
fn a_pidfd_is_close_on_exec() {
    let _w = watchdog(TEST_LIMIT);
    if !is_pidfd_available() {
        eprintln!("SKIPPED: this kernel has no pidfd_open (Linux < 5.3)");
        return;
    }
    let child = fork_child(|| pause_forever());
    let pidfd = pidfd_open(pid_of(&child)).expect("pidfd_open");
    let flags = unsafe { libc::fcntl(pidfd.as_raw_fd(), libc::F_GETFD) };
    assert!(flags >= 0, "fcntl: {}", std::io::Error::last_os_error());
    assert_ne!(flags & libc::FD_CLOEXEC, 0, "pidfd without FD_CLOEXEC");
    drop(child); // kills and reaps
}

#[test]
fn pidfd_send_signal_reaches_the_child_and_fails_after_it_is_reaped() {
    let _w = watchdog(TEST_LIMIT);
    if !is_pidfd_available() {
        eprintln!("SKIPPED: this kernel has no pidfd_open (Linux < 5.3)");
        return;
    }
    let child = fork_child(|| pause_forever());
    let pid = pid_of(&child);
    let pidfd = pidfd_open(pid).expect("pidfd_open");
    pidfd.send_signal(Signal::TERM).expect("pidfd_send_signal");
    let status = waitpid(pid, true);
    reaped(child);
    assert_eq!(status, Ok(Some(ExitStatus::Signaled(libc::SIGTERM))));
    assert_eq!(pidfd.send_signal(Signal::TERM), Err(Errno::SRCH));
}

/// A child blocked forever: `wait_deadline` gives up no earlier than asked and leaves it running
/// and unreaped; once killed, it is reaped with its status.
fn times_out_no_earlier_than_asked(use_pidfd: bool) {
    let _w = watchdog(TEST_LIMIT);
    let child = fork_child(|| pause_forever());
    let pid = pid_of(&child);
    let pidfd = use_pidfd.then(|| pidfd_open(pid).expect("pidfd_open"));

    // A zero deadline checks once.
    assert_eq!(wait_deadline(pid, pidfd.as_ref(), Deadline::after(Some(Duration::ZERO))), Ok(None));

    let asked = Duration::from_millis(150);
    let start = Instant::now();
    let result = wait_deadline(pid, pidfd.as_ref(), Deadline::after(Some(asked)));
    let waited = start.elapsed();
    assert_eq!(result, Ok(None));
    assert!(waited >= asked, "timed out after {waited:?}, asked {asked:?}");
    assert!(waited < TEST_LIMIT / 3, "timed out only after {waited:?}, asked {asked:?}");

    // Not reaped: still ours, still running.
    assert_eq!(waitpid(pid, false), Ok(None));

    kill(pid, Signal::KILL).expect("kill");
    let result = wait_deadline(pid, pidfd.as_ref(), Deadline::after(Some(TEST_LIMIT)));
    reaped(child);
    assert_eq!(result, Ok(Some(ExitStatus::Signaled(libc::SIGKILL))));
}

/// A child that exits while `wait_deadline` sleeps: its status comes back, well before the
/// deadline.
fn returns_the_status_when_the_child_exits(use_pidfd: bool, deadline: fn() -> Deadline) {
    let _w = watchdog(TEST_LIMIT);
    let page = SharedPage::new(4096);
    let go: &AtomicU32 = unsafe { page.get(0) };
    let child = fork_child(|| {
        wait_for_flag(go);
        // Not synchronisation: it only makes the parent likely to be asleep in the wait when
        // the exit happens. The test is correct either way.
        let _ =
            rustix::thread::nanosleep(&rustix::time::Timespec { tv_sec: 0, tv_nsec: 20_000_000 });
        7
    });
    let pid = pid_of(&child);
    let pidfd = use_pidfd.then(|| pidfd_open(pid).expect("pidfd_open"));
    go.store(1, SeqCst);
    let start = Instant::now();
    let result = wait_deadline(pid, pidfd.as_ref(), deadline());
    let waited = start.elapsed();
    reaped(child);
    assert_eq!(result, Ok(Some(ExitStatus::Exited(7))));
    assert!(waited < TEST_LIMIT / 3, "noticed the exit only after {waited:?}");
}

fn long_deadline() -> Deadline {
    Deadline::after(Some(TEST_LIMIT))
}

fn no_deadline() -> Deadline {
    Deadline::FOREVER
}

#[test]
fn wait_deadline_on_a_pidfd_times_out_no_earlier_than_asked() {
    if !is_pidfd_available() {
        eprintln!("SKIPPED: this kernel has no pidfd_open (Linux < 5.3)");
        return;
    }
    times_out_no_earlier_than_asked(true);
}

#[test]
fn wait_deadline_without_a_pidfd_times_out_no_earlier_than_asked() {
    times_out_no_earlier_than_asked(false);
}

#[test]
fn wait_deadline_on_a_pidfd_returns_the_status_when_the_child_exits() {
    if !is_pidfd_available() {
        eprintln!("SKIPPED: this kernel has no pidfd_open (Linux < 5.3)");
        return;
    }
    returns_the_status_when_the_child_exits(true, long_deadline);
    returns_the_status_when_the_child_exits(true, no_deadline);
}

#[test]
fn wait_deadline_without_a_pidfd_returns_the_status_when_the_child_exits() {
    returns_the_status_when_the_child_exits(false, long_deadline);
    returns_the_status_when_the_child_exits(false, no_deadline);
}

#[test]
fn a_zero_deadline_reaps_a_child_that_already_exited() {
    let _w = watchdog(TEST_LIMIT);
    if !is_pidfd_available() {
        eprintln!("SKIPPED: this kernel has no pidfd_open (Linux < 5.3)");
        return;
    }
    let child = fork_child(|| 4);
    let pid = pid_of(&child);
    let pidfd = pidfd_open(pid).expect("pidfd_open");
    // Observe the exit without reaping, then ask with a zero deadline, with and without the pidfd.
    assert!(pidfd_readable(&pidfd, TEST_LIMIT), "not readable after the child exited");
    let result = wait_deadline(pid, None, Deadline::after(Some(Duration::ZERO)));
    reaped(child);
    assert_eq!(result, Ok(Some(ExitStatus::Exited(4))));

    let child = fork_child(|| 6);
    let pid = pid_of(&child);
    let pidfd = pidfd_open(pid).expect("pidfd_open");
    assert!(pidfd_readable(&pidfd, TEST_LIMIT), "not readable after the child exited");
    let result = wait_deadline(pid, Some(&pidfd), Deadline::after(Some(Duration::ZERO)));
    reaped(child);
    assert_eq!(result, Ok(Some(ExitStatus::Exited(6))));
}

#[test]
fn peek_exit_reports_without_reaping() {
    let _w = common::watchdog(common::TEST_LIMIT);
    // The child exits at once with code 7; poll until peek sees it, then waitpid still can.
    let child = common::fork_child(|| 7);
    let pid = Pid::from_raw(child.pid).unwrap();
    assert!(common::eventually(Duration::from_secs(10), || matches!(
        peek_exit(pid),
        Ok(Some(ExitStatus::Exited(7)))
    )));
    // Still waitable: peek did not reap it.
    assert_eq!(peek_exit(pid), Ok(Some(ExitStatus::Exited(7))));
    assert_eq!(child.wait(Duration::from_secs(10)), common::Exit::Code(7));
}
