//! `multiproc_sys::process`: fork's two arms, `_exit`, process ids, the parent-death signal and
//! the thread count, each observed across a real fork.
//!
//! Every child does only async-signal-safe work: stores to shared atomics, raw system calls
//! (`getpid`, `prctl`, `open`/`read`/`close`, `nanosleep`) and `_exit`.
#![allow(unsafe_code, clippy::undocumented_unsafe_blocks)]

mod common;

use std::sync::atomic::{AtomicI32, Ordering::SeqCst};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::{Exit, SharedPage, TEST_LIMIT, eventually, fork_child, watchdog};
use multiproc_sys::process::exit::exit_now;
use multiproc_sys::process::fork::{ForkOutcome, fork};
use multiproc_sys::process::parent::{clear_parent_death_signal, getppid, set_parent_death_signal};
use multiproc_sys::process::pid::getpid;
use multiproc_sys::process::signal::kill;
use multiproc_sys::process::thread::{gettid, thread_count};
use multiproc_sys::process::wait::{ExitStatus, waitpid};
use multiproc_sys::time::Deadline;
use multiproc_sys::{Errno, Pid, Signal};

/// Sleeps in 5 ms steps until `limit` has passed. Async-signal-safe (`clock_gettime`,
/// `nanosleep`): how a test child "blocks" without ever outliving the test by much.
fn idle_for(limit: Duration) {
    let deadline = Deadline::after(Some(limit));
    let step = rustix::time::Timespec { tv_sec: 0, tv_nsec: 5_000_000 };
    while !deadline.has_expired() {
        let _ = rustix::thread::nanosleep(&step);
    }
}

fn raw(pid: Pid) -> i32 {
    pid.as_raw()
}

#[test]
fn fork_returns_both_arms_and_the_exit_code_reaches_waitpid() {
    let _w = watchdog(TEST_LIMIT);
    let page = SharedPage::new(4096);
    let child_pid: &AtomicI32 = unsafe { page.get(0) };
    let child_ppid: &AtomicI32 = unsafe { page.get(4) };
    let child_tid: &AtomicI32 = unsafe { page.get(8) };
    let parent = getpid();

    // SAFETY: the child only stores to shared atomics, makes raw id system calls and `_exit`s.
    match unsafe { fork() }.expect("fork") {
        ForkOutcome::Child => {
            child_pid.store(raw(getpid()), SeqCst);
            child_ppid.store(getppid().map_or(0, raw), SeqCst);
            child_tid.store(raw(gettid()), SeqCst);
            exit_now(42);
        }
        ForkOutcome::Parent { child } => {
            assert_ne!(child, parent);
            let status = waitpid(child, true).expect("waitpid");
            assert_eq!(status, Some(ExitStatus::Exited(42)));
            assert_eq!(child_pid.load(SeqCst), raw(child), "the parent arm got the child's pid");
            assert_eq!(child_ppid.load(SeqCst), raw(parent), "the child sees us as its parent");
            assert_eq!(child_tid.load(SeqCst), raw(child), "a forked child is its main thread");
        }
    }
}

#[test]
fn exit_now_runs_no_destructors() {
    let _w = watchdog(TEST_LIMIT);
    let page = SharedPage::new(4096);
    let dropped: &AtomicI32 = unsafe { page.get(0) };

    struct SetOnDrop<'a>(&'a AtomicI32);
    impl Drop for SetOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(1, SeqCst);
        }
    }

    // SAFETY: the child makes a value whose Drop is an atomic store, then `_exit`s.
    match unsafe { fork() }.expect("fork") {
        ForkOutcome::Child => {
            let _guard = SetOnDrop(dropped);
            exit_now(3);
        }
        ForkOutcome::Parent { child } => {
            assert_eq!(waitpid(child, true), Ok(Some(ExitStatus::Exited(3))));
            assert_eq!(dropped.load(SeqCst), 0, "exit_now ran a destructor");
        }
    }
}

#[test]
fn exit_codes_keep_only_the_low_eight_bits() {
    let _w = watchdog(TEST_LIMIT);
    // SAFETY: the child only `_exit`s.
    match unsafe { fork() }.expect("fork") {
        ForkOutcome::Child => exit_now(256 + 7),
        ForkOutcome::Parent { child } => {
            assert_eq!(waitpid(child, true), Ok(Some(ExitStatus::Exited(7))));
        }
    }
}

#[test]
fn set_parent_death_signal_reports_srch_for_a_wrong_parent() {
    let _w = watchdog(TEST_LIMIT);
    let parent = getpid();
    let child = fork_child(move || {
        // Our own pid is certainly not our parent.
        if set_parent_death_signal(Signal::KILL, getpid()) != Err(Errno::SRCH) {
            return 1;
        }
        // The right parent is accepted, and the setting reads back.
        if set_parent_death_signal(Signal::USR1, parent).is_err() {
            return 2;
        }
        if rustix::process::parent_process_death_signal().map(|s| s.map(|s| s.as_raw()))
            != Ok(Some(Signal::USR1.as_raw()))
        {
            return 3;
        }
        if clear_parent_death_signal().is_err() {
            return 4;
        }
        if rustix::process::parent_process_death_signal() != Ok(None) {
            return 5;
        }
        0
    });
    child.join_ok();
}

/// `/proc/<pid>/stat`: the state letter and the start time (field 22), or `None` if the process
/// has no entry any more.
fn proc_state_and_start(pid: i32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain anything: split after it.
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    // Field 3 (state) is fields[0], so field 22 (starttime) is fields[19].
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

/// Whether the process that was `pid`, started at `start`, has died: no such process, a zombie
/// or dead entry, or the id now belongs to a newer process.
fn is_gone(pid: i32, start: u64) -> bool {
    if unsafe { libc::kill(pid, 0) } == -1
        && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
    {
        return true;
    }
    match proc_state_and_start(pid) {
        None => true,
        Some((state, started)) => state == 'Z' || state == 'X' || started != start,
    }
}

#[test]
fn a_daemon_grandchild_with_pdeathsig_dies_when_its_parent_is_sigkilled() {
    let _w = watchdog(TEST_LIMIT);
    let page = SharedPage::new(4096);
    let b_pid: &AtomicI32 = unsafe { page.get(0) };
    // 0: not yet; 1: B set its death signal; 2: set_parent_death_signal failed; 3: fork failed.
    let b_state: &AtomicI32 = unsafe { page.get(4) };

    // A: forks B, then idles until it is SIGKILLed.
    let a = fork_child(|| {
        let a = getpid();
        // SAFETY: A is a child made by libc's fork (its libc locks were reset), and B only makes
        // raw system calls, stores to shared atomics, sleeps and `_exit`s.
        match unsafe { fork() } {
            Err(_) => {
                b_state.store(3, SeqCst);
                1
            }
            Ok(ForkOutcome::Child) => {
                let ok = set_parent_death_signal(Signal::KILL, a).is_ok();
                b_pid.store(raw(getpid()), SeqCst);
                b_state.store(if ok { 1 } else { 2 }, SeqCst);
                // Wait for the death signal; bounded, so a broken PDEATHSIG leaks no process
                // for longer than the test may run.
                idle_for(TEST_LIMIT);
                exit_now(0)
            }
            Ok(ForkOutcome::Parent { .. }) => {
                idle_for(TEST_LIMIT);
                0
            }
        }
    });

    assert!(eventually(TEST_LIMIT / 2, || b_state.load(SeqCst) != 0), "B never started");
    assert_eq!(b_state.load(SeqCst), 1, "B could not set its parent-death signal");
    let b = b_pid.load(SeqCst);
    let (_, b_start) = proc_state_and_start(b).expect("B has a /proc entry while it runs");
    assert!(!is_gone(b, b_start), "B died before its parent");

    kill(Pid::from_raw(a.pid).unwrap(), Signal::KILL).expect("kill A");
    assert_eq!(a.wait(TEST_LIMIT), Exit::Signal(libc::SIGKILL));

    // B was reparented (to init or a subreaper), so we cannot wait for it: watch it vanish or
    // turn into a zombie instead.
    assert!(
        eventually(Duration::from_secs(10), || is_gone(b, b_start)),
        "B ({b}) survived its parent's death: {:?}",
        proc_state_and_start(b)
    );
}

#[test]
fn thread_count_sees_spawned_threads() {
    let before = thread_count().expect("/proc/self/status is readable");
    assert!(before >= 1);

    const EXTRA: usize = 4;
    let start = Arc::new(Barrier::new(EXTRA + 1));
    let end = Arc::new(Barrier::new(EXTRA + 1));
    let threads: Vec<_> = (0..EXTRA)
        .map(|_| {
            let (start, end) = (Arc::clone(&start), Arc::clone(&end));
            std::thread::spawn(move || {
                start.wait();
                end.wait();
            })
        })
        .collect();
    start.wait();
    // Other tests' threads come and go, but ours are all parked here, plus the calling thread.
    let during = thread_count().expect("/proc/self/status is readable");
    end.wait();
    for t in threads {
        t.join().unwrap();
    }
    assert!(during > EXTRA, "{during} threads counted with {EXTRA} parked plus this one");
}

#[test]
fn a_forked_child_of_a_multithreaded_process_has_one_thread() {
    let _w = watchdog(TEST_LIMIT);
    // The watchdog is a second thread, at least.
    assert!(thread_count().expect("/proc/self/status is readable") >= 2);
    let child = fork_child(|| match thread_count() {
        Some(1) => 0,
        Some(_) => 1,
        None => 2,
    });
    child.join_ok();
}

#[test]
fn close_inherited_closes_the_childs_copy_only() {
    let _w = common::watchdog(common::TEST_LIMIT);
    let (r, w) = multiproc_sys::io::pipe::pipe().unwrap();
    let raw = multiproc_sys::fd::AsRawFd::as_raw_fd(&w);
    // In the child: close the write end, then check it is gone there (async-signal-safe calls).
    let child = common::fork_child(|| {
        unsafe { multiproc_sys::io::fd::close_inherited(raw) };
        i32::from(unsafe { libc::fcntl(raw, libc::F_GETFD) } != -1)
    });
    child.join_ok();
    // The parent's copy is still open: writing works, and the reader sees the byte.
    multiproc_sys::io::stream::write_all(multiproc_sys::fd::AsFd::as_fd(&w), b"x").unwrap();
    let mut buf = [0u8; 1];
    assert_eq!(
        multiproc_sys::io::stream::read(multiproc_sys::fd::AsFd::as_fd(&r), &mut buf).unwrap(),
        1
    );
    // Closing a number that is not open is harmless.
    unsafe { multiproc_sys::io::fd::close_inherited(-1) };
}

/// `current_pid`, the crate's one fork detection: cached in the parent, right (not the parent's)
/// in a child made by libc's `fork` and in one made by a raw `clone` that runs no atfork handler.
#[test]
fn current_pid_is_right_in_every_kind_of_child() {
    let _w = watchdog(TEST_LIMIT);
    let me = multiproc_sys::process::pid::current_pid();
    assert_eq!(me, getpid());
    assert_eq!(multiproc_sys::process::pid::current_pid(), me);
    let parent = me.as_raw_nonzero().get();
    let child = fork_child(move || {
        let mine = multiproc_sys::process::pid::current_pid();
        i32::from(mine.as_raw_nonzero().get() == parent || mine != getpid())
    });
    assert_eq!(child.wait(TEST_LIMIT), Exit::Code(0));
    // A raw clone(SIGCHLD): no libc fork handlers run in it.
    // SAFETY: the child only makes raw system calls and `_exit`s; it shares nothing (a copy of
    // the address space, as fork makes).
    let pid = unsafe { libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_long, 0, 0, 0, 0) };
    if pid == 0 {
        let mine = multiproc_sys::process::pid::current_pid().as_raw_nonzero().get();
        // SAFETY: a raw system call.
        let real = unsafe { libc::syscall(libc::SYS_getpid) } as i32;
        exit_now(i32::from(mine == parent || mine != real));
    }
    assert!(pid > 0);
    let pid = Pid::from_raw(pid as i32).unwrap();
    assert_eq!(waitpid(pid, true).unwrap(), Some(ExitStatus::Exited(0)));
}
