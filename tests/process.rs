//! Cross-process tests of `Process`, `ProcessBuilder` and the module functions
//! (`current_process`, `parent_process`, `active_children`): Python's behaviours for each method
//! (PYTHON_REFERENCE.md §1.1, §1.3, §1.15, P4, P10) and the tutorial scenarios.
//!
//! Every test takes the file-wide [`serial`] lock before its watchdog: a child forked by one
//! test inherits every fd the other tests have open at that moment, which would delay their
//! end-of-file (or deadlock two tests waiting on each other's children), and the zombie and fd
//! counts need a quiet process. Children are `multiproc::Process`es, so they may allocate
//! (glibc's malloc is fork-safe). No sleep is used for synchronisation: a child that must be
//! "busy" waits on a [`Gate`] (a raw pipe) or sleeps only to be killed.

mod common;

use std::collections::HashSet;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use multiproc::{
    CpuSet, JoinError, Pid, Process, ProcessBuilder, ProcessStateError, StartError,
    active_children, current_process, parent_process, pipe,
};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

static SERIAL: Mutex<()> = Mutex::new(());

/// Serialises the tests of this file (see the module docs). A failed test poisons the lock;
/// the others go on.
fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Holds a child until the parent opens it: the child blocks reading one byte from a pipe.
/// Raw libc, so a bug in the crate's own pipes cannot hide here.
struct Gate {
    rd: OwnedFd,
    wr: OwnedFd,
}

impl Gate {
    fn new() -> Gate {
        let mut fds = [0; 2];
        // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
        let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
        assert_eq!(r, 0, "pipe2: {}", std::io::Error::last_os_error());
        // SAFETY: pipe2 succeeded: both fds are open and owned by nobody else.
        unsafe { Gate { rd: OwnedFd::from_raw_fd(fds[0]), wr: OwnedFd::from_raw_fd(fds[1]) } }
    }

    /// The child side: blocks until [`open`](Gate::open) (or the parent's end is closed).
    fn waiter(&self) -> GateWaiter {
        GateWaiter(self.rd.as_raw_fd())
    }

    /// Lets every waiter through (one byte each; extra bytes are harmless).
    fn open(&self) {
        let bytes = [1u8; 16];
        // SAFETY: writing from a valid buffer to an fd we own.
        let n = unsafe { libc::write(self.wr.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
        assert_eq!(n, bytes.len() as isize);
    }
}

impl Drop for Gate {
    /// Never leave a child blocked when a test fails.
    fn drop(&mut self) {
        let bytes = [1u8; 16];
        // SAFETY: as in `open`.
        unsafe { libc::write(self.wr.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
    }
}

/// The child's view of a [`Gate`]: the raw read fd, inherited through `fork`.
#[derive(Clone, Copy)]
struct GateWaiter(i32);

impl GateWaiter {
    fn wait(self) {
        let mut b = [0u8; 1];
        loop {
            // SAFETY: reading into a valid one-byte buffer.
            let n = unsafe { libc::read(self.0, b.as_mut_ptr().cast(), 1) };
            if n >= 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                return;
            }
        }
    }
}

fn raw(pid: Pid) -> i32 {
    pid.as_raw_nonzero().get()
}

/// Pids of the children of `parent` that are zombies (state `Z` in `/proc/<pid>/stat`).
fn zombie_children_of(parent: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // "pid (comm) S ppid ...": comm may contain anything, so split after the last ')'.
        let Some(close) = stat.rfind(')') else { continue };
        let mut fields = stat[close + 1..].split_whitespace();
        let state = fields.next();
        let ppid = fields.next().and_then(|p| p.parse::<i32>().ok());
        if state == Some("Z") && ppid == Some(parent) {
            out.push(pid);
        }
    }
    out
}

fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn my_pid() -> i32 {
    std::process::id() as i32
}

/// Whether `pid` is an unreaped child of ours (running or zombie).
fn is_unreaped_child(pid: i32) -> bool {
    // SAFETY: siginfo_t is plain data; all-zero is valid.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-pointer; WNOWAIT leaves the child as it is.
    let r = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    r == 0
}

/// A pidfd for any process (not necessarily our child), to observe its death.
fn pidfd_of(pid: i32) -> OwnedFd {
    rustix::process::pidfd_open(
        rustix::process::Pid::from_raw(pid).unwrap(),
        rustix::process::PidfdFlags::empty(),
    )
    .expect("pidfd_open")
}

fn readable_within(fd: impl AsFd, limit: Duration) -> bool {
    let mut fds = [rustix::event::PollFd::new(&fd, rustix::event::PollFlags::IN)];
    let start = Instant::now();
    loop {
        let left = limit.saturating_sub(start.elapsed());
        let ts = rustix::time::Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: left.subsec_nanos() as i64,
        };
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(n) if n > 0 => return true,
            Ok(_) if start.elapsed() >= limit => return false,
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => panic!("poll: {e}"),
        }
    }
}

/// A process that gets `SIGKILL` when the test's thread ends (`PR_SET_PDEATHSIG` follows the
/// forking thread), so a failing test leaves no sleeping child behind.
fn doomed<R: multiproc::Message>(f: impl FnOnce() -> R + Send + 'static) -> Process<R> {
    ProcessBuilder::new().death_signal(Some(multiproc::Signal::KILL)).target(f)
}

fn sleep_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

// ---------------------------------------------------------------------------------------------
// start / join
// ---------------------------------------------------------------------------------------------

#[test]
fn join_returns_the_typed_value() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    let p = Process::new(|| (1..=1000u64).sum::<u64>());
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), 500_500);
    assert_eq!(p.exitcode(), Some(0));

    let p = Process::new(|| (String::from("héllo"), vec![1u8, 2, 3], Some(-7i64)));
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), ("héllo".to_string(), vec![1, 2, 3], Some(-7)));

    let p = Process::new(|| -> Result<u8, String> { Err("nope".into()) });
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), Err("nope".to_string()));

    let p = Process::new(|| ());
    p.start().unwrap();
    p.join().unwrap();
}

#[test]
fn a_large_return_value_flows_through_the_result_pipe() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    // Far more than a pipe buffer: the child blocks writing until the parent drains.
    let p = Process::new(|| (0..4_000_000u32).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    p.start().unwrap();
    let v = p.join().unwrap();
    assert_eq!(v.len(), 4_000_000);
    assert!(v.iter().enumerate().all(|(i, &b)| b == (i as u32 % 251) as u8));
}

#[test]
fn start_twice_is_already_started() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    let p = Process::new(|| 1u8);
    p.start().unwrap();
    assert!(matches!(p.start(), Err(StartError::AlreadyStarted)));
    assert_eq!(p.join().unwrap(), 1);
    // Still refused after the child ended.
    assert!(matches!(p.start(), Err(StartError::AlreadyStarted)));
    assert_eq!(StartError::AlreadyStarted.to_string(), "cannot start a process twice");
}

#[test]
fn join_before_start_is_not_started() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    let p = Process::new(|| 1u8);
    assert!(matches!(p.join(), Err(JoinError::NotStarted)));
    assert!(matches!(p.join_timeout(Duration::ZERO), Err(JoinError::NotStarted)));
    assert!(!p.is_alive());
    assert_eq!(p.exitcode(), None);
    assert_eq!(p.pid(), None);
    assert_eq!(p.terminate(), Err(ProcessStateError::NotStarted));
    assert_eq!(p.kill(), Err(ProcessStateError::NotStarted));
    assert_eq!(p.sentinel().err(), Some(ProcessStateError::NotStarted));
    // It can still be started afterwards.
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), 1);
}

#[test]
fn join_zero_does_not_block_and_a_later_join_gets_the_value() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    let gate = Gate::new();
    let waiter = gate.waiter();
    let p = Process::new(move || {
        waiter.wait();
        42u32
    });
    p.start().unwrap();
    let t = Instant::now();
    for _ in 0..10 {
        assert!(matches!(p.join_timeout(Duration::ZERO), Err(JoinError::Timeout)));
    }
    assert!(t.elapsed() < Duration::from_secs(5), "join(Some(ZERO)) blocked: {:?}", t.elapsed());
    assert!(p.is_alive());
    assert_eq!(p.exitcode(), None);
    gate.open();
    assert_eq!(p.join().unwrap(), 42);
    assert!(!p.is_alive());
    // The value was handed out once; the exit code stays.
    assert!(matches!(p.join_timeout(Duration::ZERO), Err(JoinError::ResultTaken)));
    assert!(matches!(p.join(), Err(JoinError::ResultTaken)));
    assert_eq!(p.exitcode(), Some(0));
}

#[test]
fn join_timeout_is_never_early_and_a_later_join_works() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    let p = doomed(|| -> u8 { sleep_forever() });
    p.start().unwrap();
    for timeout in [Duration::from_millis(1), Duration::from_millis(50), Duration::from_millis(200)]
    {
        let t = Instant::now();
        assert!(matches!(p.join_timeout(timeout), Err(JoinError::Timeout)));
        let took = t.elapsed();
        assert!(took >= timeout, "join({timeout:?}) returned early, after {took:?}");
        assert!(took < timeout + Duration::from_secs(5), "join({timeout:?}) took {took:?}");
    }
    assert!(p.is_alive());
    p.kill().unwrap();
    assert!(matches!(p.join_timeout(Duration::from_secs(20)), Err(JoinError::Signaled(9))));
    assert_eq!(p.exitcode(), Some(-9));

    // And a child that ends while `join(timeout)` waits is seen at once.
    let gate = Gate::new();
    let waiter = gate.waiter();
    let p = Process::new(move || {
        waiter.wait();
        7u8
    });
    p.start().unwrap();
    assert!(matches!(p.join_timeout(Duration::from_millis(20)), Err(JoinError::Timeout)));
    gate.open();
    assert_eq!(p.join_timeout(Duration::from_secs(20)).unwrap(), 7);
}

#[test]
fn is_alive_before_during_and_after() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    let gate = Gate::new();
    let waiter = gate.waiter();
    let p = Process::new(move || waiter.wait());
    assert!(!p.is_alive());
    p.start().unwrap();
    assert!(p.is_alive());
    assert!(p.pid().is_some());
    gate.open();
    // `is_alive` reaps the child once it has ended (Python's `is_alive` does too).
    assert!(common::eventually(Duration::from_secs(20), || !p.is_alive()));
    assert!(!is_unreaped_child(raw(p.pid().unwrap())), "is_alive() left a zombie");
    assert_eq!(p.exitcode(), Some(0));
    // The value is still there for `join`.
    p.join().unwrap();
}

// ---------------------------------------------------------------------------------------------
// Exit codes as in Python
// ---------------------------------------------------------------------------------------------

#[test]
fn exitcode_is_1_on_panic_and_the_message_reaches_the_parent() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    let p = Process::new(|| -> u32 { panic!("bad input: {}", 17) });
    p.start().unwrap();
    match p.join() {
        Err(JoinError::Panicked(msg)) => assert_eq!(msg, "bad input: 17"),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(p.exitcode(), Some(1));

    let p = Process::new(|| -> u32 { panic!("static message") });
    p.start().unwrap();
    assert!(matches!(p.join(), Err(JoinError::Panicked(m)) if m == "static message"));

    let p = Process::new(|| -> u32 { std::panic::panic_any(42i32) });
    p.start().unwrap();
    assert!(matches!(p.join(), Err(JoinError::Panicked(_))));
    assert_eq!(p.exitcode(), Some(1));
}

#[test]
fn exitcode_is_n_for_process_exit() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    for (n, expected) in [(3, 3), (255, 255), (300, 44), (-1, 255)] {
        let p = Process::new(move || -> u8 { std::process::exit(n) });
        p.start().unwrap();
        assert!(matches!(p.join(), Err(JoinError::Exited(c)) if c == expected), "exit({n})");
        assert_eq!(p.exitcode(), Some(expected));
    }
    // exit(0) without a value: exit code 0, no result.
    let p = Process::new(|| -> u8 { std::process::exit(0) });
    p.start().unwrap();
    assert!(matches!(p.join(), Err(JoinError::NoResult)));
    assert_eq!(p.exitcode(), Some(0));
}

#[test]
fn exitcode_is_minus_15_on_terminate_and_minus_9_on_kill() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    let p = doomed(|| -> u8 { sleep_forever() });
    p.start().unwrap();
    p.terminate().unwrap();
    assert!(matches!(p.join(), Err(JoinError::Signaled(15))));
    assert_eq!(p.exitcode(), Some(-15));
    // No-op once the child has ended.
    assert_eq!(p.terminate(), Ok(()));
    assert_eq!(p.kill(), Ok(()));

    let p = doomed(|| -> u8 { sleep_forever() });
    p.start().unwrap();
    p.kill().unwrap();
    assert!(matches!(p.join(), Err(JoinError::Signaled(9))));
    assert_eq!(p.exitcode(), Some(-9));
    assert!(!p.is_alive());

    let p = doomed(|| -> u8 { sleep_forever() });
    p.start().unwrap();
    p.signal(multiproc::Signal::USR1).unwrap();
    assert!(matches!(p.join(), Err(JoinError::Signaled(s)) if s == libc::SIGUSR1));
    assert_eq!(p.exitcode(), Some(-libc::SIGUSR1));
}

#[test]
fn terminate_while_another_thread_joins() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    let p = Arc::new(doomed(|| -> u8 { sleep_forever() }));
    p.start().unwrap();
    let joiner = {
        let p = Arc::clone(&p);
        std::thread::spawn(move || p.join())
    };
    // Whether or not the joiner holds the handle's lock yet, terminate neither blocks nor fails.
    let t = Instant::now();
    p.terminate().unwrap();
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(matches!(joiner.join().unwrap(), Err(JoinError::Signaled(15))));
    assert_eq!(p.exitcode(), Some(-15));
    // The sentinel does not wait behind a join either.
    let _ = p.sentinel().unwrap();
}

#[test]
fn nothing_waits_behind_another_threads_join() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    let gate = Gate::new();
    let waiter = gate.waiter();
    let p = Process::new(move || {
        waiter.wait();
        3u8
    });
    p.start().unwrap();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let (tid_tx, tid_rx) = std::sync::mpsc::channel::<i32>();
    std::thread::scope(|scope| {
        let joiner = scope.spawn(|| {
            tid_tx.send(rustix::thread::gettid().as_raw_nonzero().get()).unwrap();
            p.join()
        });
        // Opens the gate when the checks are done, or after 10 s if a check blocked (so a
        // regression fails the asserts below instead of hanging).
        let gate = &gate;
        scope.spawn(move || {
            let _ = done_rx.recv_timeout(Duration::from_secs(10));
            gate.open();
        });
        // Wait until the joiner sleeps in the kernel (`waitpid` or `poll`, inside `join`, holding
        // the handle's lock).
        let tid = tid_rx.recv().unwrap();
        let in_poll = common::eventually(Duration::from_secs(10), || {
            std::fs::read_to_string(format!("/proc/self/task/{tid}/wchan"))
                .is_ok_and(|w| !w.contains("futex") && (w.contains("wait") || w.contains("poll")))
        });
        assert!(in_poll, "the joiner never blocked in join");
        for _ in 0..200 {
            let t = Instant::now();
            assert!(matches!(p.join_timeout(Duration::ZERO), Err(JoinError::Timeout)));
            assert!(p.is_alive());
            assert_eq!(p.exitcode(), None);
            let _ = p.sentinel().unwrap();
            assert!(t.elapsed() < Duration::from_secs(2), "blocked for {:?}", t.elapsed());
            std::thread::yield_now();
        }
        let t = Instant::now();
        assert!(matches!(p.join_timeout(Duration::from_millis(50)), Err(JoinError::Timeout)));
        assert!(t.elapsed() >= Duration::from_millis(50));
        assert!(t.elapsed() < Duration::from_secs(2), "join(50ms) took {:?}", t.elapsed());
        done_tx.send(()).unwrap();
        let mine = p.join();
        let theirs = joiner.join().unwrap();
        let (value, other) = if mine.is_ok() { (mine, theirs) } else { (theirs, mine) };
        assert_eq!(value.unwrap(), 3);
        assert!(matches!(other, Err(JoinError::ResultTaken)), "{other:?}");
    });
    assert_eq!(p.exitcode(), Some(0));
}

#[test]
fn two_threads_join_the_same_process() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    let gate = Gate::new();
    let waiter = gate.waiter();
    let p = Arc::new(Process::new(move || {
        waiter.wait();
        String::from("once")
    }));
    p.start().unwrap();
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let p = Arc::clone(&p);
            std::thread::spawn(move || p.join())
        })
        .collect();
    gate.open();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let values = results.iter().filter(|r| matches!(r, Ok(s) if s == "once")).count();
    let taken = results.iter().filter(|r| matches!(r, Err(JoinError::ResultTaken))).count();
    assert_eq!((values, taken), (1, 1), "{results:?}");
}

#[test]
fn a_child_reaped_elsewhere_reads_as_status_unknown() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    let p = Process::new(|| 5u8);
    p.start().unwrap();
    let pid = raw(p.pid().unwrap());
    // Someone else (a `waitpid` in user code) reaps the child first (P10).
    let mut status = 0;
    // SAFETY: waiting for our own child with a valid status pointer.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid);
    assert!(!p.is_alive(), "is_alive must not stay true for a child reaped elsewhere");
    assert!(matches!(p.join_timeout(Duration::from_secs(20)), Err(JoinError::StatusUnknown)));
    assert_eq!(p.exitcode(), None);
}

#[test]
fn join_in_another_process_is_not_creator() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    let inner = Process::new(|| 1u8);
    let outer = Process::new(move || {
        let start = matches!(inner.start(), Err(StartError::NotCreator));
        let join = matches!(inner.join_timeout(Duration::ZERO), Err(JoinError::NotCreator));
        let term = inner.terminate() == Err(ProcessStateError::NotCreator);
        (start, join, term, inner.is_alive(), inner.exitcode())
    });
    outer.start().unwrap();
    assert_eq!(outer.join().unwrap(), (true, true, true, false, None));
}

#[test]
fn a_child_forked_by_raw_libc_fork_is_not_the_creator() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    // The crate caches the pid; a plain `fork` (not `Process::start`) must not let the child
    // believe it is the parent. The raw child does only allocation-free calls.
    let p = Process::new(|| 1u8);
    assert!(!p.is_alive() && p.exitcode().is_none()); // the pid is cached by now
    let child = common::fork_child(|| {
        let refused = matches!(p.start(), Err(StartError::NotCreator));
        let join = matches!(p.join_timeout(Duration::ZERO), Err(JoinError::NotCreator));
        if refused && join { 0 } else { 1 }
    });
    child.join_ok();
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), 1);
}

// ---------------------------------------------------------------------------------------------
// Names, current_process, parent_process, active_children
// ---------------------------------------------------------------------------------------------

fn process_number(name: &str) -> usize {
    name.strip_prefix("Process-")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a default name: {name:?}"))
}

#[test]
fn names_default_to_process_n_and_nest_as_process_n_m() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    let a = Process::new(|| ());
    let b = Process::new(|| ());
    // Python numbers processes when they are created, one counter per creating process.
    let na = process_number(&a.name().expect("a name before start"));
    let nb = process_number(&b.name().expect("a name before start"));
    assert!(nb > na, "{na} then {nb}");
    a.start().unwrap();
    a.join().unwrap();
    assert_eq!(a.name().unwrap(), format!("Process-{na}"), "the name survives the join");
    drop(b);

    let named = ProcessBuilder::new().name("worker").target(|| current_process().name);
    assert_eq!(named.name().as_deref(), Some("worker"));
    named.start().unwrap();
    assert_eq!(named.join().unwrap(), "worker");

    let outer = Process::new(|| {
        let me = current_process().name;
        let c1 = Process::new(|| current_process().name);
        let c2 = Process::new(|| current_process().name);
        c1.start().unwrap();
        c2.start().unwrap();
        (me, c1.join().unwrap(), c2.join().unwrap(), c1.name(), c2.name())
    });
    let n = process_number(&outer.name().unwrap());
    outer.start().unwrap();
    let (me, c1, c2, c1_name, c2_name) = outer.join().unwrap();
    assert_eq!(me, format!("Process-{n}"));
    assert_eq!(c1, format!("Process-{n}:1"));
    assert_eq!(c2, format!("Process-{n}:2"));
    assert_eq!(c1_name.as_deref(), Some(c1.as_str()));
    assert_eq!(c2_name.as_deref(), Some(c2.as_str()));

    // A custom name does not change the numbering of the children (Python keeps an identity
    // tuple apart from the name).
    let outer = ProcessBuilder::new().name("boss").target(|| {
        let c = Process::new(|| current_process().name);
        c.start().unwrap();
        c.join().unwrap()
    });
    outer.start().unwrap();
    let child = outer.join().unwrap();
    assert!(child.starts_with("Process-") && child.ends_with(":1"), "{child}");
}

#[test]
fn current_and_parent_process_in_main_and_in_child() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    let me = current_process();
    assert_eq!(me.name, "MainProcess");
    assert_eq!(raw(me.pid), my_pid());
    assert!(!me.daemon);
    assert!(parent_process().is_none());

    let p = ProcessBuilder::new().name("kid").target(|| {
        let me = current_process();
        let parent = parent_process().expect("a parent in the child");
        let alive = parent.is_alive();
        (
            me.name,
            raw(me.pid),
            me.daemon,
            std::process::id() as i32,
            parent.name,
            raw(parent.pid),
            alive,
        )
    });
    p.start().unwrap();
    let pid = raw(p.pid().unwrap());
    let (name, cpid, daemon, os_pid, pname, ppid, palive) = p.join().unwrap();
    assert_eq!(name, "kid");
    assert_eq!(cpid, pid);
    assert_eq!(os_pid, pid);
    assert!(!daemon);
    assert_eq!(pname, "MainProcess");
    assert_eq!(ppid, my_pid());
    assert!(palive);

    let p = ProcessBuilder::new().daemon(true).target(|| current_process().daemon);
    assert!(p.daemon());
    p.start().unwrap();
    assert!(p.join().unwrap());
}

#[test]
fn parent_process_is_not_alive_after_the_parent_dies() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    // Intermediate -> grandchild; the grandchild reports through a pipe before and after its
    // parent died.
    let (report_rx, report_tx) = pipe(false).unwrap();
    let gate = Gate::new();
    let waiter = gate.waiter();
    let middle = doomed(move || -> u8 {
        let grandchild = Process::new(move || {
            let parent = parent_process().unwrap();
            report_tx.send(&(raw(parent.pid), parent.is_alive())).unwrap();
            waiter.wait(); // until the middle process is dead
            while parent.is_alive() {
                std::thread::sleep(Duration::from_millis(1));
            }
            report_tx.send(&parent.is_alive()).unwrap();
        });
        grandchild.start().unwrap();
        sleep_forever()
    });
    middle.start().unwrap();
    let (ppid, before): (i32, bool) = report_rx.recv().unwrap();
    assert_eq!(ppid, raw(middle.pid().unwrap()));
    assert!(before);
    middle.kill().unwrap();
    assert!(matches!(middle.join(), Err(JoinError::Signaled(9))));
    gate.open();
    let after: bool = report_rx.recv().unwrap();
    assert!(!after);
}

#[test]
fn active_children_lists_live_children_and_reaps_the_dropped_ones() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    let gate = Gate::new();
    let waiter = gate.waiter();
    let a = Process::new(move || waiter.wait());
    let b = ProcessBuilder::new().name("bee").target(move || waiter.wait());
    a.start().unwrap();
    b.start().unwrap();
    let (pa, pb) = (a.pid().unwrap(), b.pid().unwrap());
    let live: Vec<(Pid, String)> = active_children();
    assert!(live.contains(&(pa, a.name().unwrap())), "{live:?}");
    assert!(live.contains(&(pb, "bee".to_string())), "{live:?}");

    gate.open();
    a.join().unwrap();
    let live = active_children();
    assert!(!live.iter().any(|(p, _)| *p == pa), "{live:?}");

    // Drop b's handle, possibly while it still runs: the registry reaps it later.
    drop(b);
    assert!(common::eventually(Duration::from_secs(20), || {
        !active_children().iter().any(|(p, _)| *p == pb) && !is_unreaped_child(raw(pb))
    }));
    assert!(zombie_children_of(my_pid()).is_empty());

    // In a child, the list starts empty (siblings are not its children).
    let sibling_gate = Gate::new();
    let sw = sibling_gate.waiter();
    let sibling = Process::new(move || sw.wait());
    sibling.start().unwrap();
    let p = Process::new(|| active_children().len());
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), 0);
    sibling_gate.open();
    sibling.join().unwrap();
}

// ---------------------------------------------------------------------------------------------
// Daemons
// ---------------------------------------------------------------------------------------------

#[test]
fn a_daemon_cannot_start_children() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    let p = ProcessBuilder::new().daemon(true).target(|| {
        let child = Process::new(|| 1u8);
        let inherited = child.daemon();
        let refused = matches!(child.start(), Err(StartError::DaemonicParent));
        (refused, inherited)
    });
    p.start().unwrap();
    // Python: "daemonic processes are not allowed to have children"; `daemon=None` inherits.
    assert_eq!(p.join().unwrap(), (true, true));
    assert_eq!(
        StartError::DaemonicParent.to_string(),
        "daemonic processes are not allowed to have children"
    );
}

#[test]
fn a_daemon_child_dies_with_its_sigkilled_parent() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    let (rx, tx) = pipe(false).unwrap();
    let middle = Process::new(move || -> u8 {
        let daemon = ProcessBuilder::new().daemon(true).target(|| -> u8 { sleep_forever() });
        let plain = Process::new(|| -> u8 { sleep_forever() });
        daemon.start().unwrap();
        plain.start().unwrap();
        tx.send(&(raw(daemon.pid().unwrap()), raw(plain.pid().unwrap()))).unwrap();
        sleep_forever()
    });
    middle.start().unwrap();
    let (daemon_pid, plain_pid): (i32, i32) = rx.recv().unwrap();
    // Both grandchildren are alive (the middle process has not reaped them): pin them with
    // pidfds before the middle process dies, so pid reuse cannot fool the test.
    let daemon_fd = pidfd_of(daemon_pid);
    let plain_fd = pidfd_of(plain_pid);
    assert!(!readable_within(&daemon_fd, Duration::ZERO));
    middle.kill().unwrap();
    assert!(matches!(middle.join(), Err(JoinError::Signaled(9))));
    assert!(
        readable_within(&daemon_fd, Duration::from_secs(20)),
        "the daemon grandchild outlived its SIGKILLed parent"
    );
    // A non-daemon child is orphaned, not killed (Python's behaviour; no death signal by
    // default). Kill it ourselves.
    assert!(!readable_within(&plain_fd, Duration::from_millis(50)));
    rustix::process::pidfd_send_signal(&plain_fd, rustix::process::Signal::KILL).unwrap();
    assert!(readable_within(&plain_fd, Duration::from_secs(20)));
}

#[test]
fn an_explicit_death_signal_applies_to_a_non_daemon() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    let (rx, tx) = pipe(false).unwrap();
    let middle = Process::new(move || -> u8 {
        let child = ProcessBuilder::new()
            .death_signal(Some(multiproc::Signal::TERM))
            .target(|| -> u8 { sleep_forever() });
        child.start().unwrap();
        tx.send(&raw(child.pid().unwrap())).unwrap();
        sleep_forever()
    });
    middle.start().unwrap();
    let pid: i32 = rx.recv().unwrap();
    let fd = pidfd_of(pid);
    middle.kill().unwrap();
    let _ = middle.join();
    assert!(readable_within(&fd, Duration::from_secs(20)));
}

#[test]
fn dropping_a_running_daemon_handle_kills_and_reaps_it() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    let p = ProcessBuilder::new().daemon(true).target(|| -> u8 { sleep_forever() });
    p.start().unwrap();
    let pid = raw(p.pid().unwrap());
    let fd = pidfd_of(pid);
    drop(p);
    assert!(readable_within(&fd, Duration::from_secs(20)));
    assert!(!is_unreaped_child(pid), "the dropped daemon was left a zombie");
}

// ---------------------------------------------------------------------------------------------
// close, sentinel
// ---------------------------------------------------------------------------------------------

#[test]
fn close_while_running_is_still_running() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    let gate = Gate::new();
    let waiter = gate.waiter();
    let mut p = Process::new(move || {
        waiter.wait();
        9u8
    });
    p.close().unwrap(); // allowed before start (Python too)
    assert!(p.start().is_err(), "a closed process cannot be started");

    let mut p = Process::new(move || {
        waiter.wait();
        9u8
    });
    p.start().unwrap();
    assert_eq!(p.close(), Err(ProcessStateError::StillRunning));
    assert!(p.is_alive(), "a refused close must leave the process usable");
    gate.open();
    assert_eq!(p.join().unwrap(), 9);
    p.close().unwrap();
    p.close().unwrap(); // twice is fine
    assert!(matches!(p.join(), Err(JoinError::Closed)));
    assert_eq!(p.sentinel().err(), Some(ProcessStateError::Closed));
    assert_eq!(p.terminate(), Err(ProcessStateError::Closed));
    assert!(!p.is_alive());
    assert!(p.name().is_some(), "name still works after close");
}

#[test]
fn the_sentinel_becomes_readable_when_the_child_ends() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    let gate = Gate::new();
    let waiter = gate.waiter();
    let p = Process::new(move || waiter.wait());
    p.start().unwrap();
    let sentinel = p.sentinel().unwrap();
    assert!(!readable_within(sentinel, Duration::ZERO));
    assert!(!readable_within(sentinel, Duration::from_millis(20)));
    gate.open();
    assert!(readable_within(sentinel, Duration::from_secs(20)));
    // With `wait` too, mixed with a connection that has nothing to read.
    let (a, _b) = pipe(true).unwrap();
    let ready =
        multiproc::wait(&[&a as &dyn AsFd, &sentinel], Some(Duration::from_secs(20))).unwrap();
    assert_eq!(ready, vec![1]);
    p.join().unwrap();
    // Still valid (and readable) after the join, until close.
    assert!(readable_within(p.sentinel().unwrap(), Duration::ZERO));
}

// ---------------------------------------------------------------------------------------------
// CPU affinity and setup failures
// ---------------------------------------------------------------------------------------------

#[test]
fn cpu_affinity_is_applied_in_the_child() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    let allowed = multiproc::sys::affinity::sched_getaffinity(None).unwrap();
    let cpu = allowed.last().unwrap();
    let read_back = || -> Vec<usize> {
        multiproc::sys::affinity::sched_getaffinity(None).unwrap().iter().collect()
    };
    let p = ProcessBuilder::new().cpu(cpu).target(read_back);
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), vec![cpu]);

    let first = allowed.first().unwrap();
    let set = CpuSet::from_cpus(&[first, cpu]).unwrap();
    let p = ProcessBuilder::new().cpu_affinity(set).target(read_back);
    p.start().unwrap();
    let mut want = vec![first, cpu];
    want.dedup();
    assert_eq!(p.join().unwrap(), want);

    // The parent's own mask is untouched.
    assert_eq!(multiproc::sys::affinity::sched_getaffinity(None).unwrap(), allowed);
}

#[test]
fn a_setup_failure_is_join_error_setup() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    for cpu in [multiproc::cpu_count() + 64, multiproc::sys::affinity::MAX_CPUS + 5, usize::MAX] {
        let p = ProcessBuilder::new().cpu(cpu).target(|| 1u8);
        p.start().unwrap();
        match p.join() {
            Err(JoinError::Setup(e)) => assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{e}"),
            other => panic!("cpu {cpu}: unexpected {other:?}"),
        }
        assert_eq!(p.exitcode(), Some(1));
    }
}

#[test]
fn require_single_threaded_refuses_a_multithreaded_parent() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    // The test harness (and the watchdog) are other threads.
    let p = ProcessBuilder::new().require_single_threaded(true).target(|| 1u8);
    assert!(matches!(p.start(), Err(StartError::MultiThreaded { threads }) if threads > 1));
    assert!(p.pid().is_none());
    // In a single-threaded child it works.
    let outer = Process::new(|| {
        let p = ProcessBuilder::new().require_single_threaded(true).target(|| 2u8);
        p.start().map_err(|e| e.to_string())?;
        p.join().map_err(|e| e.to_string())
    });
    outer.start().unwrap();
    assert_eq!(outer.join().unwrap(), Ok(2));
}

// ---------------------------------------------------------------------------------------------
// Output, fork hygiene
// ---------------------------------------------------------------------------------------------

#[test]
fn the_child_does_not_repeat_buffered_output_and_flushes_its_own() {
    use std::io::Write;
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    // In a child process whose stdout is a pipe (libtest's capture only sees `print!`, so
    // write to `io::stdout()` directly).
    let (rx, tx) = pipe(false).unwrap();
    let writer = Process::new(move || {
        // SAFETY: dup2 onto fd 1 of this (child) process.
        let r = unsafe { libc::dup2(tx.as_raw_fd(), 1) };
        assert_eq!(r, 1);
        drop(tx);
        let mut out = std::io::stdout();
        out.write_all(b"parent-buffered ").unwrap(); // no newline: stays in the buffer
        let child = Process::new(|| {
            std::io::stdout().write_all(b"child-unflushed").unwrap();
        });
        child.start().unwrap();
        child.join().unwrap();
        out.write_all(b" parent-done\n").unwrap();
        out.flush().unwrap();
    });
    writer.start().unwrap();
    writer.join().unwrap();
    let mut text = Vec::new();
    let fd = rx.as_raw_fd();
    loop {
        let mut chunk = [0u8; 256];
        // SAFETY: reading into a valid buffer; the writers are all gone, so this ends at EOF.
        let n = unsafe { libc::read(fd, chunk.as_mut_ptr().cast(), chunk.len()) };
        assert!(n >= 0);
        if n == 0 {
            break;
        }
        text.extend_from_slice(&chunk[..n as usize]);
    }
    assert_eq!(String::from_utf8_lossy(&text), "parent-buffered child-unflushed parent-done\n");
}

#[test]
fn children_never_hang_on_a_stdout_lock_another_thread_held_at_fork() {
    use std::io::Write;
    use std::sync::atomic::AtomicBool;
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    // Another thread takes stdout's lock over and over (P4: fork copies only the calling
    // thread, so a lock held elsewhere at the fork stays held in the child forever). Every
    // child flushes stdout on its way out, and this one prints too.
    let stop = Arc::new(AtomicBool::new(false));
    let hammer = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(b"");
                let t = Instant::now();
                while t.elapsed() < Duration::from_micros(50) {
                    std::hint::spin_loop();
                }
                drop(out);
                std::thread::yield_now();
            }
        })
    };
    for i in 0..200u32 {
        // A daemon: if the test fails, dropping the handle kills the hung child.
        let p = ProcessBuilder::new().daemon(true).target(move || {
            let _ = std::io::stdout().write_all(b"");
            let _ = std::io::stderr().write_all(b"");
            i
        });
        p.start().unwrap();
        assert_eq!(p.join_timeout(Duration::from_secs(10)).unwrap(), i, "child {i} hung");
    }
    stop.store(true, Ordering::Relaxed);
    hammer.join().unwrap();
}

#[test]
fn many_start_join_cycles_leave_no_zombies_and_no_fds() {
    let _s = serial();
    let _w = common::watchdog(Duration::from_secs(120));
    let before = fd_count();
    for i in 0..1000u32 {
        let p = Process::new(move || i);
        p.start().unwrap();
        assert_eq!(p.join().unwrap(), i);
    }
    // Dropped handles (finished or not) and `is_alive` reaping too.
    for i in 0..200u32 {
        let p = Process::new(move || i);
        p.start().unwrap();
        if i % 2 == 0 {
            while p.is_alive() {
                std::thread::yield_now();
            }
        }
        drop(p);
    }
    assert!(common::eventually(Duration::from_secs(20), || active_children().is_empty()));
    assert_eq!(fd_count(), before, "fds leaked");
    // A dropped child that ends after the check above is a zombie until something reaps the
    // orphans: `active_children` does (as Python's does), so call it while waiting.
    assert!(
        common::eventually(Duration::from_secs(20), || {
            let _ = active_children();
            zombie_children_of(my_pid()).is_empty()
        }),
        "zombies: {:?}",
        zombie_children_of(my_pid())
    );
}

// ---------------------------------------------------------------------------------------------
// Tutorial scenarios (the seeds' example programs)
// ---------------------------------------------------------------------------------------------

/// A plain global, as in the tutorial's `counter = 0`.
static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn sub_task(word: &'static str) -> (String, usize) {
    let mut printed = String::new();
    while COUNTER.load(Ordering::Relaxed) < 10 {
        print!("{word}");
        printed.push_str(word);
        COUNTER.fetch_add(1, Ordering::Relaxed);
    }
    (printed, COUNTER.load(Ordering::Relaxed))
}

#[test]
fn tutorial_ping_pong_children_do_not_share_a_global() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    let ping = Process::new(|| sub_task("Ping"));
    let pong = Process::new(|| sub_task("Pong"));
    ping.start().unwrap();
    pong.start().unwrap();
    // "Ping and Pong were each printed 10 times. Why?": each child has its own copy.
    assert_eq!(ping.join().unwrap(), ("Ping".repeat(10), 10));
    assert_eq!(pong.join().unwrap(), ("Pong".repeat(10), 10));
    assert_eq!(COUNTER.load(Ordering::Relaxed), 0, "the parent's global changed");
}

#[test]
fn tutorial_hello_with_an_argument_runs_in_another_pid() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    fn hello(name: String) -> (String, u32) {
        (format!("Hello {name}"), std::process::id())
    }
    let name = String::from("shiyanlou");
    let p = Process::new(move || hello(name));
    p.start().unwrap();
    let (greeting, pid) = p.join().unwrap();
    assert_eq!(greeting, "Hello shiyanlou");
    assert_ne!(pid, std::process::id());
    assert_eq!(pid as i32, raw(p.pid().unwrap()));

    // Five at once, started in a loop then joined in a loop.
    let procs: Vec<_> = (0..5).map(|i| Process::new(move || (i, std::process::id()))).collect();
    for p in &procs {
        p.start().unwrap();
    }
    let mut pids = HashSet::new();
    for (i, p) in procs.iter().enumerate() {
        let (j, pid) = p.join().unwrap();
        assert_eq!(i, j);
        pids.insert(pid);
    }
    assert_eq!(pids.len(), 5);
}

#[test]
fn tutorial_parent_and_child_exchange_greetings_over_a_pipe() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    let (parent_conn, child_conn) = pipe(true).unwrap();
    let p = Process::new(move || {
        child_conn.send("吃了吗").unwrap();
        let reply: String = child_conn.recv().unwrap();
        reply
    });
    p.start().unwrap();
    let greeting: String = parent_conn.recv().unwrap();
    assert_eq!(greeting, "吃了吗");
    parent_conn.send("嗯").unwrap();
    assert_eq!(p.join().unwrap(), "嗯");
    // The child is gone and held the only other end: EOF.
    assert!(matches!(parent_conn.recv::<String>(), Err(multiproc::ConnectionError::Eof)));
}

#[test]
fn tutorial_two_children_talk_through_a_shared_pipe() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    // conn1, conn2 = Pipe(); Process(target=send).start(); Process(target=recv).start()
    let (conn1, conn2) = pipe(true).unwrap();
    let sender = Process::new(move || conn1.send("hello shiyanlou").unwrap());
    let receiver = Process::new(move || conn2.recv::<String>().unwrap());
    sender.start().unwrap();
    receiver.start().unwrap();
    sender.join().unwrap();
    assert_eq!(receiver.join().unwrap(), "hello shiyanlou");
}

/// Python: after `close()`, `exitcode` raises "process object is closed". Here the code known at
/// `close` stays readable, `is_alive` is false, and `join` says the handle is closed.
#[test]
fn close_keeps_the_known_exit_code() {
    let _s = serial();
    let _w = common::watchdog(common::TEST_LIMIT);
    let mut p = multiproc::Process::new(|| -> u8 { std::process::exit(7) });
    p.start().unwrap();
    assert!(matches!(p.join(), Err(multiproc::JoinError::Exited(7))));
    p.close().unwrap();
    assert_eq!(p.exitcode(), Some(7));
    assert!(!p.is_alive());
    assert!(matches!(p.join(), Err(multiproc::JoinError::Closed)));
    p.close().unwrap(); // again: still fine, still known
    assert_eq!(p.exitcode(), Some(7));
}
