//! Cross-process behaviour of `pthread::RobustMutex`: owner death (exit and SIGKILL), recovery
//! and the not-recoverable state, timeouts, `try_lock`, mutual exclusion, ownership checks.
//!
//! Children run under the multithreaded test harness. They only touch atomics, a volatile
//! counter and the mutex: `pthread_mutex_*` on a process-shared robust mutex is not on the POSIX
//! async-signal-safe list, but glibc's implementation is atomics plus `futex(2)` on the mutex
//! itself, takes no libc-internal lock and allocates nothing, and a forked child starts with an
//! empty robust list (see the `pthread` module docs). They never allocate or print.
#![allow(unsafe_code)]

mod common;

use std::cell::UnsafeCell;
use std::ptr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::{SharedPage, TEST_LIMIT, eventually, fork_child, watchdog};
use multiproc_sys::Errno;
use multiproc_sys::sync::pthread::{LockOutcome, RobustMutex};
use multiproc_sys::time::Deadline;

/// What the tests put in their shared page.
#[repr(C)]
struct Area {
    mutex: RobustMutex,
    /// Child -> parent: 1 once the child holds the mutex.
    held: AtomicU32,
    /// Child -> parent: 1 just before the child calls `lock`.
    about_to_lock: AtomicU32,
    /// A plain counter, only ever accessed under the mutex.
    counter: UnsafeCell<u64>,
}

/// A fresh page with an initialised mutex in it.
fn setup() -> SharedPage {
    let page = SharedPage::new(4096);
    // SAFETY: `Area` is valid all-zero (a zero `pthread_mutex_t` is plain bytes, atomics and
    // integers are zero), fits in the page and is aligned at offset 0.
    let area = unsafe { page.get::<Area>(0) };
    // SAFETY: the mutex's bytes are all inside an `UnsafeCell`, so writing through a pointer
    // derived from the shared reference is allowed; nobody else uses the page yet; the page is
    // `MAP_SHARED`, stays mapped for the whole test, and the mutex never moves.
    unsafe { RobustMutex::init(ptr::from_ref(&area.mutex).cast_mut()) }.unwrap();
    page
}

fn area(page: &SharedPage) -> &Area {
    // SAFETY: as in `setup`.
    unsafe { page.get::<Area>(0) }
}

/// Forks a child that locks the mutex, says so, and then waits to be killed.
fn spawn_holder(a: &Area) -> common::Child {
    let child = fork_child(|| {
        if a.mutex.lock(Deadline::FOREVER) != Ok(LockOutcome::Acquired) {
            return 1;
        }
        a.held.store(1, Ordering::Release);
        loop {
            // SAFETY: `pause` is async-signal-safe and has no preconditions.
            unsafe { libc::pause() };
        }
    });
    assert!(eventually(TEST_LIMIT, || a.held.load(Ordering::Acquire) == 1), "child never locked");
    child
}

/// Whether `pid` is in interruptible sleep (state `S` in `/proc/<pid>/stat`).
fn is_sleeping(pid: libc::pid_t) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The state follows the parenthesised command name, which may itself contain spaces.
    stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('S'))
}

/// Forks a child that locks the mutex and `_exit`s without unlocking it; waits for it.
fn child_dies_holding(a: &Area) {
    let child = fork_child(|| match a.mutex.lock(Deadline::FOREVER) {
        Ok(LockOutcome::Acquired) => 0,
        _ => 1,
    });
    child.join_ok();
}

#[test]
fn lock_after_the_owner_exited_reports_owner_died_and_recovers_100_times() {
    let _w = watchdog(TEST_LIMIT);
    let page = setup();
    let a = area(&page);
    for i in 0..100 {
        child_dies_holding(a);
        // Alternate the three ways of locking: all of them must see the dead owner.
        let outcome = match i % 3 {
            0 => a.mutex.lock(Deadline::FOREVER),
            1 => a.mutex.lock(Deadline::after(Some(Duration::from_secs(10)))),
            _ => a.mutex.try_lock().map(|o| o.expect("a dead owner's mutex is not busy")),
        };
        assert_eq!(outcome, Ok(LockOutcome::OwnerDied), "iteration {i}");
        a.mutex.consistent().unwrap();
        a.mutex.unlock().unwrap();
        assert_eq!(a.mutex.lock(Deadline::FOREVER), Ok(LockOutcome::Acquired), "iteration {i}");
        a.mutex.unlock().unwrap();
    }
}

#[test]
fn lock_after_the_owner_was_sigkilled_reports_owner_died() {
    let _w = watchdog(TEST_LIMIT);
    let page = setup();
    let a = area(&page);
    let mut holder = spawn_holder(a);
    assert_eq!(a.mutex.try_lock(), Ok(None));
    holder.kill_and_reap();
    assert_eq!(a.mutex.lock(Deadline::FOREVER), Ok(LockOutcome::OwnerDied));
    a.mutex.consistent().unwrap();
    a.mutex.unlock().unwrap();
    assert_eq!(a.mutex.lock(Deadline::FOREVER), Ok(LockOutcome::Acquired));
    a.mutex.unlock().unwrap();
}

#[test]
fn a_locker_already_waiting_gets_owner_died_when_the_holder_is_sigkilled() {
    let _w = watchdog(TEST_LIMIT);
    let page = setup();
    let a = area(&page);
    let mut holder = spawn_holder(a);
    let waiter = fork_child(|| {
        a.about_to_lock.store(1, Ordering::Release);
        match a.mutex.lock(Deadline::FOREVER) {
            Ok(LockOutcome::OwnerDied) => match (a.mutex.consistent(), a.mutex.unlock()) {
                (Ok(()), Ok(())) => 0,
                _ => 2,
            },
            _ => 1,
        }
    });
    assert!(eventually(TEST_LIMIT, || a.about_to_lock.load(Ordering::Acquire) == 1));
    // Kill the holder once the waiter sleeps in the kernel (in the lock's futex wait).
    assert!(eventually(TEST_LIMIT, || is_sleeping(waiter.pid)), "waiter never blocked");
    holder.kill_and_reap();
    waiter.join_ok();
    assert_eq!(a.mutex.lock(Deadline::FOREVER), Ok(LockOutcome::Acquired));
    a.mutex.unlock().unwrap();
}

/// POSIX: if the holder that got `EOWNERDEAD` unlocks without `pthread_mutex_consistent`, the
/// mutex becomes permanently unusable (`ENOTRECOVERABLE`); only destroying (and initialising
/// it again) helps.
///
/// Also the regression test for glibc's `pthread_mutex_trylock`, which on a not-recoverable
/// robust mutex returns `ENOTRECOVERABLE` but keeps the lock word: the child's `lock` below
/// then blocked forever (see `RobustMutex::try_lock`).
#[test]
fn unlocking_after_owner_died_without_consistent_makes_the_mutex_not_recoverable() {
    let _w = watchdog(TEST_LIMIT);
    let page = setup();
    let a = area(&page);
    child_dies_holding(a);
    assert_eq!(a.mutex.lock(Deadline::FOREVER), Ok(LockOutcome::OwnerDied));
    a.mutex.unlock().unwrap(); // no consistent(): the state is now lost for good
    assert_eq!(a.mutex.lock(Deadline::FOREVER), Err(Errno::NOTRECOVERABLE));
    let soon = Deadline::after(Some(Duration::from_secs(5)));
    assert_eq!(a.mutex.lock(soon), Err(Errno::NOTRECOVERABLE));
    assert_eq!(a.mutex.try_lock(), Err(Errno::NOTRECOVERABLE));
    // Nothing to make consistent. musl checks the holder first, and a not-recoverable mutex
    // has none (see `RobustMutex::consistent`).
    let expected = if cfg!(target_env = "musl") { Errno::PERM } else { Errno::INVAL };
    assert_eq!(a.mutex.consistent(), Err(expected));
    // Other processes see the same state.
    let child = fork_child(|| match a.mutex.lock(Deadline::FOREVER) {
        Err(Errno::NOTRECOVERABLE) => 0,
        _ => 1,
    });
    child.join_ok();
    let raw = ptr::from_ref(&a.mutex).cast_mut();
    // SAFETY: initialised, and no other thread or process uses it any more.
    unsafe { RobustMutex::destroy(raw) }.unwrap();
    // SAFETY: destroyed just above; exclusive access, shared mapping, never moves.
    unsafe { RobustMutex::init(raw) }.unwrap();
    assert_eq!(a.mutex.lock(Deadline::FOREVER), Ok(LockOutcome::Acquired));
    a.mutex.unlock().unwrap();
}

#[test]
fn timed_lock_on_a_mutex_held_by_a_child_times_out_no_earlier_than_asked() {
    let _w = watchdog(TEST_LIMIT);
    let page = setup();
    let a = area(&page);
    let _holder = spawn_holder(a);
    for ms in [0, 1, 50, 200] {
        let asked = Duration::from_millis(ms);
        let start = Instant::now();
        let deadline = Deadline::after(Some(asked));
        assert_eq!(a.mutex.lock(deadline), Err(Errno::TIMEDOUT), "{ms} ms");
        let took = start.elapsed();
        assert!(took >= asked, "timed out after {took:?}, asked {asked:?}");
        assert!(deadline.has_expired());
        assert!(took < asked + Duration::from_secs(5), "took {took:?}");
    }
}

#[test]
fn zero_deadline_lock_takes_a_free_mutex() {
    let _w = watchdog(TEST_LIMIT);
    let page = setup();
    let a = area(&page);
    let zero = Deadline::after(Some(Duration::ZERO));
    assert_eq!(a.mutex.lock(zero), Ok(LockOutcome::Acquired));
    a.mutex.unlock().unwrap();
}

#[test]
fn try_lock_returns_none_while_another_process_holds_it() {
    let _w = watchdog(TEST_LIMIT);
    let page = setup();
    let a = area(&page);
    let mut holder = spawn_holder(a);
    assert_eq!(a.mutex.try_lock(), Ok(None));
    assert_eq!(a.mutex.try_lock(), Ok(None));
    holder.kill_and_reap();
    assert_eq!(a.mutex.try_lock(), Ok(Some(LockOutcome::OwnerDied)));
    a.mutex.consistent().unwrap();
    a.mutex.unlock().unwrap();
    assert_eq!(a.mutex.try_lock(), Ok(Some(LockOutcome::Acquired)));
    a.mutex.unlock().unwrap();
}

#[test]
fn four_processes_incrementing_a_plain_counter_under_the_lock_total_exactly_40000() {
    const CHILDREN: u64 = 4;
    const INCREMENTS: u64 = 10_000;
    let _w = watchdog(TEST_LIMIT);
    let page = setup();
    let a = area(&page);
    let children: Vec<_> = (0..CHILDREN)
        .map(|_| {
            fork_child(|| {
                for _ in 0..INCREMENTS {
                    if a.mutex.lock(Deadline::FOREVER) != Ok(LockOutcome::Acquired) {
                        return 1;
                    }
                    // A non-atomic read-modify-write: only the mutex keeps updates from being
                    // lost. Volatile so the compiler keeps every access inside the lock.
                    // SAFETY: the counter is only accessed with the mutex held.
                    unsafe {
                        let v = ptr::read_volatile(a.counter.get());
                        ptr::write_volatile(a.counter.get(), v + 1);
                    }
                    if a.mutex.unlock().is_err() {
                        return 2;
                    }
                }
                0
            })
        })
        .collect();
    for child in children {
        child.join_ok();
    }
    assert_eq!(a.mutex.lock(Deadline::FOREVER), Ok(LockOutcome::Acquired));
    // SAFETY: the mutex is held and every child is gone.
    let total = unsafe { ptr::read_volatile(a.counter.get()) };
    a.mutex.unlock().unwrap();
    assert_eq!(total, CHILDREN * INCREMENTS);
}

#[test]
fn unlock_by_a_non_owner_is_eperm_and_leaves_the_mutex_locked() {
    let _w = watchdog(TEST_LIMIT);
    let page = setup();
    let a = area(&page);
    // Nobody holds it.
    assert_eq!(a.mutex.unlock(), Err(Errno::PERM));
    // Another process holds it.
    let mut holder = spawn_holder(a);
    assert_eq!(a.mutex.unlock(), Err(Errno::PERM));
    assert_eq!(a.mutex.try_lock(), Ok(None), "a refused unlock must not release it");
    holder.kill_and_reap();
    assert_eq!(a.mutex.lock(Deadline::FOREVER), Ok(LockOutcome::OwnerDied));
    a.mutex.consistent().unwrap();
    // Another thread of the same process does not own it either.
    let mutex = &a.mutex;
    std::thread::scope(|s| {
        s.spawn(|| assert_eq!(mutex.unlock(), Err(Errno::PERM))).join().unwrap();
    });
    a.mutex.unlock().unwrap();
    // A child forked while the parent holds it does not inherit ownership.
    assert_eq!(a.mutex.lock(Deadline::FOREVER), Ok(LockOutcome::Acquired));
    let child = fork_child(|| match a.mutex.unlock() {
        Err(Errno::PERM) => 0,
        _ => 1,
    });
    child.join_ok();
    a.mutex.unlock().unwrap();
}

#[test]
fn relocking_by_the_owner_is_edeadlk_not_a_deadlock() {
    let _w = watchdog(TEST_LIMIT);
    let page = setup();
    let a = area(&page);
    assert_eq!(a.mutex.lock(Deadline::FOREVER), Ok(LockOutcome::Acquired));
    assert_eq!(a.mutex.lock(Deadline::FOREVER), Err(Errno::DEADLK));
    let soon = Deadline::after(Some(Duration::from_secs(5)));
    assert_eq!(a.mutex.lock(soon), Err(Errno::DEADLK));
    // glibc's trylock says EDEADLK, musl's calls the caller's own mutex busy.
    let expected = if cfg!(target_env = "musl") { Ok(None) } else { Err(Errno::DEADLK) };
    assert_eq!(a.mutex.try_lock(), expected);
    a.mutex.unlock().unwrap();
    assert_eq!(a.mutex.unlock(), Err(Errno::PERM));
}

#[test]
fn consistent_on_a_mutex_whose_owner_did_not_die_is_einval() {
    let _w = watchdog(TEST_LIMIT);
    let page = setup();
    let a = area(&page);
    assert_eq!(a.mutex.consistent(), Err(Errno::INVAL));
    assert_eq!(a.mutex.lock(Deadline::FOREVER), Ok(LockOutcome::Acquired));
    assert_eq!(a.mutex.consistent(), Err(Errno::INVAL));
    a.mutex.unlock().unwrap();
}

/// `consistent()` by a thread that does not hold the recovered mutex: musl refuses it
/// (`EPERM`); glibc does not check the holder and makes the mutex consistent (the documented
/// logic error it does not catch), after which the holder's own call finds nothing to do.
#[test]
fn consistent_from_a_thread_that_does_not_hold_the_mutex() {
    let _w = watchdog(TEST_LIMIT);
    let page = setup();
    let a = area(&page);
    child_dies_holding(a);
    assert_eq!(a.mutex.lock(Deadline::FOREVER), Ok(LockOutcome::OwnerDied));
    let mutex = &a.mutex;
    let other = std::thread::scope(|s| s.spawn(|| mutex.consistent()).join().unwrap());
    if cfg!(target_env = "musl") {
        assert_eq!(other, Err(Errno::PERM));
        a.mutex.consistent().unwrap();
    } else {
        assert_eq!(other, Ok(()));
        assert_eq!(a.mutex.consistent(), Err(Errno::INVAL));
    }
    a.mutex.unlock().unwrap();
    assert_eq!(a.mutex.lock(Deadline::FOREVER), Ok(LockOutcome::Acquired));
    a.mutex.unlock().unwrap();
}

#[test]
fn destroy_leaks_a_held_mutex_and_destroys_a_free_one() {
    let _w = watchdog(TEST_LIMIT);
    let page = setup();
    let a = area(&page);
    let raw = ptr::from_ref(&a.mutex).cast_mut();
    let mut holder = spawn_holder(a);
    // SAFETY: initialised; the only other user (the holder) does not touch it again.
    assert_eq!(unsafe { RobustMutex::destroy(raw) }, Err(Errno::BUSY));
    holder.kill_and_reap();
    // Left untouched: still a working robust mutex.
    assert_eq!(a.mutex.lock(Deadline::FOREVER), Ok(LockOutcome::OwnerDied));
    a.mutex.consistent().unwrap();
    // Held by the caller itself: leaked too.
    // SAFETY: as above; nobody else uses it.
    assert_eq!(unsafe { RobustMutex::destroy(raw) }, Err(Errno::BUSY));
    a.mutex.unlock().unwrap();
    // SAFETY: as above.
    assert_eq!(unsafe { RobustMutex::destroy(raw) }, Ok(()));
}

/// glibc's lock word: `__data.__lock`, the first `int` of `pthread_mutex_t`.
#[cfg(target_env = "gnu")]
fn glibc_lock_word(a: &Area) -> &AtomicU32 {
    // SAFETY: the mutex's bytes live in an `UnsafeCell` in the shared page; glibc's lock word is
    // an aligned `int` at offset 0 that glibc itself only accesses atomically.
    unsafe { &*ptr::from_ref(&a.mutex).cast::<AtomicU32>() }
}

/// Issue 19, item 6: an unlock (or the kernel's cleanup of a dead holder) wakes one sleeper;
/// when that sleeper is killed before it takes the mutex, the wake-up is gone. Here the holder
/// frees the lock word without waking anybody, exactly the state that leaves. The sleeper
/// must notice within its retry slice, not at the end of its timeout.
#[test]
#[cfg(target_env = "gnu")]
fn a_sleeper_whose_wake_up_was_lost_still_takes_the_freed_mutex_promptly() {
    let _w = watchdog(TEST_LIMIT);
    let page = setup();
    let a = area(&page);
    let holder = fork_child(|| {
        if a.mutex.lock(Deadline::FOREVER) != Ok(LockOutcome::Acquired) {
            return 1;
        }
        a.held.store(1, Ordering::Release);
        while a.about_to_lock.load(Ordering::Acquire) == 0 {
            std::hint::spin_loop();
        }
        // Free the word with no wake-up (the waker's wake-up went to a waiter since killed),
        // then exit: the kernel's robust-list walk finds the word not ours and leaves it.
        glibc_lock_word(a).store(0, Ordering::Release);
        0
    });
    assert!(eventually(TEST_LIMIT, || a.held.load(Ordering::Acquire) == 1));
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    // `Area` is not `Sync` (its plain counter); the thread touches only the mutex.
    let addr = ptr::from_ref(a) as usize;
    let waiter = std::thread::spawn(move || {
        // SAFETY: the page outlives the thread (joined below); only the mutex is used.
        let a = unsafe { &*(addr as *const Area) };
        // SAFETY: `gettid` has no preconditions.
        let tid = unsafe { libc::gettid() };
        tid_tx.send(tid).unwrap();
        let r = a.mutex.lock(Deadline::after(Some(Duration::from_secs(5))));
        let at = Instant::now();
        if r.is_ok() {
            a.mutex.unlock().unwrap();
        }
        (r, at)
    });
    let tid = tid_rx.recv().unwrap();
    // Asleep in the kernel on the lock word (which then carries FUTEX_WAITERS).
    assert!(eventually(TEST_LIMIT, || {
        let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
        let sleeping =
            stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('S'));
        sleeping && glibc_lock_word(a).load(Ordering::Acquire) & 0x8000_0000 != 0
    }));
    let go = Instant::now();
    a.about_to_lock.store(1, Ordering::Release);
    assert_eq!(holder.wait(TEST_LIMIT), common::Exit::Code(0));
    let (r, at) = waiter.join().unwrap();
    assert_eq!(r, Ok(LockOutcome::Acquired));
    let waited = at.duration_since(go);
    assert!(waited < Duration::from_secs(1), "the sleeper took {waited:?} to notice");
}
