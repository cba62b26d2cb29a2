//! `Lock`: cross-process mutual exclusion, Python's acquire/release behaviour, timeouts, and
//! recovery from a holder killed with SIGKILL.
//!
//! Children made with `common::fork_child` only use the lock and atomics (async-signal-safe in
//! practice: pthread calls on a process-shared mutex, a thread-local read, raw syscalls).

mod common;

use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::time::{Duration, Instant};

use common::{Exit, SharedPage, TEST_LIMIT, eventually, fork_child, watchdog};
use multiproc::{AcquireError, Lock, LockGuard, Process, RawValue, ReleaseError};

static_assertions::assert_impl_all!(Lock: Send, Sync, Clone);
static_assertions::assert_not_impl_any!(LockGuard<'static>: Send, Sync);

/// A shared flag page: word 0 = "child holds the lock", word 1 = "child may go on".
fn flags() -> SharedPage {
    SharedPage::new(4096)
}

fn word(page: &SharedPage, i: usize) -> &AtomicU32 {
    // SAFETY: zeroed shared memory, 4-aligned offsets inside the page.
    unsafe { page.get::<AtomicU32>(i * 4) }
}

/// Forks a child that takes `lock`, raises word 0, waits for word 1, then releases and exits.
fn holder_child(lock: &Lock, page: &SharedPage) -> common::Child {
    let (lock, held, go) = (lock.clone(), word(page, 0), word(page, 1));
    let child = fork_child(move || {
        let Ok(_guard) = lock.lock() else { return 10 };
        held.store(1, SeqCst);
        while go.load(SeqCst) == 0 {
            std::hint::spin_loop();
            // SAFETY: sched_yield has no preconditions.
            unsafe { libc::sched_yield() };
        }
        0
    });
    assert!(eventually(TEST_LIMIT, || held.load(SeqCst) == 1), "child never took the lock");
    child
}

#[test]
fn guard_and_python_acquire_release_lock_and_unlock() {
    let lock = Lock::new().unwrap();
    {
        let _g = lock.lock().unwrap();
    }
    {
        let _g = lock.try_lock().unwrap();
    }
    {
        let _g = lock.lock_timeout(Duration::from_millis(10)).unwrap();
    }
    lock.acquire().unwrap();
    lock.release().unwrap();
    assert!(lock.acquire_timeout(Duration::ZERO).unwrap());
    lock.release().unwrap();
    let _g = lock.lock().unwrap();
}

#[test]
fn release_of_an_unheld_lock_is_not_held() {
    let lock = Lock::new().unwrap();
    assert!(matches!(lock.release(), Err(ReleaseError::NotHeld)));
    lock.acquire().unwrap();
    lock.release().unwrap();
    assert!(matches!(lock.release(), Err(ReleaseError::NotHeld)));
}

#[test]
fn release_refuses_a_lock_held_through_a_guard() {
    let lock = Lock::new().unwrap();
    let g = lock.lock().unwrap();
    assert!(matches!(lock.release(), Err(ReleaseError::NotOwner)));
    drop(g);
    // Released by the guard, exactly once.
    assert!(matches!(lock.release(), Err(ReleaseError::NotHeld)));
    let _g = lock.try_lock().unwrap();
}

#[test]
fn relock_by_the_holder_without_a_timeout_is_would_deadlock_not_a_hang() {
    let _w = watchdog(TEST_LIMIT);
    let lock = Lock::new().unwrap();
    let _g = lock.lock().unwrap();
    assert!(matches!(lock.lock(), Err(AcquireError::WouldDeadlock)));
    assert!(matches!(lock.lock(), Err(AcquireError::WouldDeadlock)));
    assert!(matches!(lock.acquire(), Err(AcquireError::WouldDeadlock)));
    // A timeout too long to end is no timeout.
    assert!(matches!(lock.acquire_timeout(Duration::MAX), Err(AcquireError::WouldDeadlock)));
}

/// Python 3.11: `l = Lock(); l.acquire(); l.acquire(timeout=0.2)` returns `False` after 0.2 s,
/// and `l.acquire(False)` returns `False` at once.
#[test]
fn a_bounded_relock_by_the_holder_fails_after_its_timeout_as_in_python() {
    let _w = watchdog(TEST_LIMIT);
    let lock = Lock::new().unwrap();
    for held_by_guard in [true, false] {
        let guard = if held_by_guard {
            Some(lock.lock().unwrap())
        } else {
            lock.acquire().unwrap();
            None
        };
        // Non-blocking: at once.
        assert!(!lock.acquire_timeout(Duration::ZERO).unwrap());
        assert!(matches!(lock.try_lock(), Err(AcquireError::Timeout)));
        assert!(matches!(lock.lock_timeout(Duration::ZERO), Err(AcquireError::Timeout)));
        // Timed: the whole timeout, never less.
        let t = Duration::from_millis(200);
        let start = Instant::now();
        assert!(!lock.acquire_timeout(t).unwrap());
        let waited = start.elapsed();
        assert!(waited >= t, "acquire({t:?}) by the holder returned after {waited:?}");
        let t = Duration::from_millis(30);
        let start = Instant::now();
        assert!(matches!(lock.lock_timeout(t), Err(AcquireError::Timeout)));
        assert!(start.elapsed() >= t, "lock_timeout returned after {:?}", start.elapsed());
        // Still held, exactly once.
        match guard {
            Some(g) => drop(g),
            None => lock.release().unwrap(),
        }
        assert!(matches!(lock.release(), Err(ReleaseError::NotHeld)));
    }
    // Free again: a bounded acquire succeeds at once.
    assert!(lock.acquire_timeout(Duration::from_secs(5)).unwrap());
    lock.release().unwrap();
}

/// The holder's timed acquire waits, and another thread waiting for the lock at the same time
/// is unaffected: it gets the lock as soon as the holder releases it.
#[test]
fn a_timed_relock_by_the_holder_does_not_disturb_other_waiters() {
    let _w = watchdog(TEST_LIMIT);
    let lock = Lock::new().unwrap();
    lock.acquire().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let other = {
        let lock = lock.clone();
        std::thread::spawn(move || {
            tx.send(()).unwrap();
            let got = lock.acquire_timeout(Duration::from_secs(20)).unwrap();
            lock.release().unwrap();
            got
        })
    };
    rx.recv().unwrap();
    assert!(!lock.acquire_timeout(Duration::from_millis(20)).unwrap());
    lock.release().unwrap();
    assert!(other.join().unwrap());
}

#[test]
fn release_by_another_thread_is_not_owner() {
    let lock = Lock::new().unwrap();
    lock.acquire().unwrap();
    let other = lock.clone();
    let r = std::thread::spawn(move || other.release()).join().unwrap();
    assert!(matches!(r, Err(ReleaseError::NotOwner)), "{r:?}");
    lock.release().unwrap();
}

#[test]
fn release_by_another_process_is_not_owner_and_a_forked_child_does_not_hold_its_parents_lock() {
    let _w = watchdog(TEST_LIMIT);
    let lock = Lock::new().unwrap();
    lock.acquire().unwrap();
    // The child is a copy of this very thread: same memory, same thread-local cache.
    let child = Process::new({
        let lock = lock.clone();
        move || {
            let release = match lock.release() {
                Err(ReleaseError::NotOwner) => 0,
                _ => 1,
            };
            let try_lock = match lock.try_lock() {
                Err(AcquireError::Timeout) => 0,
                _ => 2,
            };
            release + try_lock
        }
    });
    child.start().unwrap();
    assert_eq!(child.join().unwrap(), 0);
    lock.release().unwrap();
}

#[test]
fn try_lock_and_zero_timeout_on_a_busy_lock_time_out_at_once() {
    let _w = watchdog(TEST_LIMIT);
    let lock = Lock::new().unwrap();
    let page = flags();
    let child = holder_child(&lock, &page);

    let start = Instant::now();
    assert!(matches!(lock.try_lock(), Err(AcquireError::Timeout)));
    assert!(matches!(lock.lock_timeout(Duration::ZERO), Err(AcquireError::Timeout)));
    assert!(!lock.acquire_timeout(Duration::ZERO).unwrap());
    assert!(start.elapsed() < Duration::from_secs(1), "a try must not wait");

    word(&page, 1).store(1, SeqCst);
    child.join_ok();
    let _g = lock.try_lock().unwrap();
}

#[test]
fn timed_acquire_of_a_busy_lock_is_never_early() {
    let _w = watchdog(TEST_LIMIT);
    let lock = Lock::new().unwrap();
    let page = flags();
    let child = holder_child(&lock, &page);

    for ms in [1u64, 20, 60] {
        let t = Duration::from_millis(ms);
        let start = Instant::now();
        assert!(matches!(lock.lock_timeout(t), Err(AcquireError::Timeout)));
        assert!(start.elapsed() >= t, "lock_timeout({t:?}) returned after {:?}", start.elapsed());
        let start = Instant::now();
        assert!(!lock.acquire_timeout(t).unwrap());
        assert!(start.elapsed() >= t, "acquire({t:?}) returned after {:?}", start.elapsed());
    }

    word(&page, 1).store(1, SeqCst);
    child.join_ok();
}

#[test]
fn a_timed_acquire_gets_the_lock_when_the_holder_releases_it() {
    let _w = watchdog(TEST_LIMIT);
    let lock = Lock::new().unwrap();
    let page = flags();
    let child = holder_child(&lock, &page);
    let go = word(&page, 1);
    std::thread::scope(|s| {
        s.spawn(|| go.store(1, SeqCst));
        drop(lock.lock_timeout(TEST_LIMIT).unwrap());
    });
    child.join_ok();
}

#[test]
fn processes_exclude_each_other() {
    let _w = watchdog(TEST_LIMIT);
    const PROCS: u64 = 4;
    const ROUNDS: u64 = 2_000;
    let lock = Lock::new().unwrap();
    // A non-atomic read-modify-write (load, then store) that only the lock keeps exact.
    let counter = RawValue::new(0u64).unwrap();
    let inside = RawValue::new(0u32).unwrap();
    let children: Vec<_> = (0..PROCS)
        .map(|_| {
            let (lock, counter, inside) = (lock.clone(), counter.clone(), inside.clone());
            fork_child(move || {
                for _ in 0..ROUNDS {
                    let Ok(_g) = lock.lock() else { return 10 };
                    if inside.fetch_add(1) != 0 {
                        return 11;
                    }
                    let v = counter.load();
                    std::hint::spin_loop();
                    counter.store(v + 1);
                    inside.fetch_sub(1);
                }
                0
            })
        })
        .collect();
    for c in children {
        c.join_ok();
    }
    assert_eq!(counter.load(), PROCS * ROUNDS);
}

#[test]
fn a_holder_killed_mid_critical_section_gives_owner_died_then_the_lock_works_100_times() {
    let _w = watchdog(TEST_LIMIT);
    let lock = Lock::new().unwrap();
    let page = flags();
    let held = word(&page, 0);
    for round in 0..100 {
        held.store(0, SeqCst);
        let mut child = {
            let lock = lock.clone();
            fork_child(move || {
                let Ok(_g) = lock.lock() else { return 10 };
                held.store(1, SeqCst);
                loop {
                    // SAFETY: pause has no preconditions; the child is killed while here.
                    unsafe { libc::pause() };
                }
            })
        };
        assert!(eventually(TEST_LIMIT, || held.load(SeqCst) == 1), "round {round}");
        child.kill_and_reap();
        match lock.lock() {
            Err(AcquireError::OwnerDied(g)) => drop(g),
            other => panic!("round {round}: expected OwnerDied, got {other:?}"),
        }
        // Made consistent: normal from now on.
        drop(lock.lock().unwrap());
        lock.acquire().unwrap();
        lock.release().unwrap();
    }
}

#[test]
fn a_killed_holder_wakes_a_process_already_waiting_for_the_lock() {
    let _w = watchdog(TEST_LIMIT);
    let lock = Lock::new().unwrap();
    let page = flags();
    let held = word(&page, 0);
    let mut holder = {
        let lock = lock.clone();
        fork_child(move || {
            let Ok(_g) = lock.lock() else { return 10 };
            held.store(1, SeqCst);
            loop {
                // SAFETY: pause has no preconditions.
                unsafe { libc::pause() };
            }
        })
    };
    assert!(eventually(TEST_LIMIT, || held.load(SeqCst) == 1));
    let waiter = {
        let lock = lock.clone();
        fork_child(move || match lock.lock() {
            Err(AcquireError::OwnerDied(_g)) => 0,
            Ok(_) => 1,
            Err(_) => 2,
        })
    };
    holder.kill_and_reap();
    assert_eq!(waiter.wait(TEST_LIMIT), Exit::Code(0));
    drop(lock.try_lock().unwrap());
}

#[test]
fn a_thread_that_exits_holding_the_lock_is_a_dead_owner() {
    let lock = Lock::new().unwrap();
    let other = lock.clone();
    std::thread::spawn(move || other.acquire().unwrap()).join().unwrap();
    assert!(matches!(lock.try_lock(), Err(AcquireError::OwnerDied(_))));
    drop(lock.try_lock().unwrap());
}
