//! `RLock`: recursion, ownership (Python's "attempt to release recursive lock not owned by
//! thread"), timeouts, and recovery from an owner killed with SIGKILL at depth 3.
//!
//! Children made with `common::fork_child` only use the lock and atomics.

mod common;

use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::time::{Duration, Instant};

use common::{Exit, SharedPage, TEST_LIMIT, eventually, fork_child, watchdog};
use multiproc::{AcquireError, Process, RLock, RLockGuard, RawValue, ReleaseError};

static_assertions::assert_impl_all!(RLock: Send, Sync, Clone);
static_assertions::assert_not_impl_any!(RLockGuard<'static>: Send, Sync);

fn word(page: &SharedPage, i: usize) -> &AtomicU32 {
    // SAFETY: zeroed shared memory, 4-aligned offsets inside the page.
    unsafe { page.get::<AtomicU32>(i * 4) }
}

/// Whether another process can take `rlock` right now (it releases it again at once).
fn free_for_another_process(rlock: &RLock) -> bool {
    let rlock = rlock.clone();
    let child = fork_child(move || match rlock.try_lock() {
        Ok(_g) => 0,
        Err(AcquireError::Timeout) => 1,
        Err(_) => 2,
    });
    match child.wait(TEST_LIMIT) {
        Exit::Code(0) => true,
        Exit::Code(1) => false,
        other => panic!("probe child: {other:?}"),
    }
}

#[test]
fn recursion_needs_one_release_per_acquire() {
    let _w = watchdog(TEST_LIMIT);
    let rlock = RLock::new().unwrap();
    rlock.acquire().unwrap();
    rlock.acquire().unwrap();
    assert!(rlock.acquire_timeout(Duration::ZERO).unwrap());
    rlock.release().unwrap();
    rlock.release().unwrap();
    assert!(!free_for_another_process(&rlock), "still held at depth 1");
    rlock.release().unwrap();
    assert!(free_for_another_process(&rlock));
    assert!(matches!(rlock.release(), Err(ReleaseError::NotHeld)));
}

#[test]
fn guards_nest_and_mix_with_acquire_release() {
    let _w = watchdog(TEST_LIMIT);
    let rlock = RLock::new().unwrap();
    let g1 = rlock.lock().unwrap();
    let g2 = rlock.try_lock().unwrap();
    // Levels held by guards are not `release`'s to give back.
    assert!(matches!(rlock.release(), Err(ReleaseError::NotOwner)));
    rlock.acquire().unwrap();
    drop(g1);
    drop(g2);
    assert!(!free_for_another_process(&rlock), "the acquire()d level is still held");
    rlock.release().unwrap();
    assert!(free_for_another_process(&rlock));
}

#[test]
fn release_by_another_thread_is_not_owner() {
    let rlock = RLock::new().unwrap();
    rlock.acquire().unwrap();
    let other = rlock.clone();
    let (release, acquire) =
        std::thread::spawn(move || (other.release(), other.acquire_timeout(Duration::ZERO)))
            .join()
            .unwrap();
    assert!(matches!(release, Err(ReleaseError::NotOwner)), "{release:?}");
    assert!(matches!(acquire, Ok(false)), "{acquire:?}");
    rlock.release().unwrap();
}

#[test]
fn release_by_another_process_is_not_owner_and_a_forked_child_owns_nothing() {
    let _w = watchdog(TEST_LIMIT);
    let rlock = RLock::new().unwrap();
    rlock.acquire().unwrap();
    rlock.acquire().unwrap();
    // The child is a copy of the owning thread (same thread-local cache, same `owner` word).
    let child = Process::new({
        let rlock = rlock.clone();
        move || {
            let release = matches!(rlock.release(), Err(ReleaseError::NotOwner));
            let acquire = matches!(rlock.acquire_timeout(Duration::ZERO), Ok(false));
            let try_lock = matches!(rlock.try_lock(), Err(AcquireError::Timeout));
            (release, acquire, try_lock)
        }
    });
    child.start().unwrap();
    assert_eq!(child.join().unwrap(), (true, true, true));
    rlock.release().unwrap();
    rlock.release().unwrap();
    assert!(free_for_another_process(&rlock));
}

#[test]
fn timed_acquire_of_an_rlock_held_elsewhere_is_never_early() {
    let _w = watchdog(TEST_LIMIT);
    let rlock = RLock::new().unwrap();
    let page = SharedPage::new(4096);
    let (held, go) = (word(&page, 0), word(&page, 1));
    let child = {
        let rlock = rlock.clone();
        fork_child(move || {
            let Ok(_a) = rlock.lock() else { return 10 };
            let Ok(_b) = rlock.lock() else { return 11 };
            held.store(1, SeqCst);
            while go.load(SeqCst) == 0 {
                // SAFETY: no preconditions.
                unsafe { libc::sched_yield() };
            }
            0
        })
    };
    assert!(eventually(TEST_LIMIT, || held.load(SeqCst) == 1));
    let start = Instant::now();
    assert!(matches!(rlock.try_lock(), Err(AcquireError::Timeout)));
    assert!(!rlock.acquire_timeout(Duration::ZERO).unwrap());
    assert!(start.elapsed() < Duration::from_secs(1), "a try must not wait");
    for ms in [1u64, 30] {
        let t = Duration::from_millis(ms);
        let start = Instant::now();
        assert!(matches!(rlock.lock_timeout(t), Err(AcquireError::Timeout)));
        assert!(start.elapsed() >= t);
        let start = Instant::now();
        assert!(!rlock.acquire_timeout(t).unwrap());
        assert!(start.elapsed() >= t);
    }
    go.store(1, SeqCst);
    child.join_ok();
    let _g = rlock.try_lock().unwrap();
}

#[test]
fn processes_exclude_each_other_at_any_depth() {
    let _w = watchdog(TEST_LIMIT);
    const PROCS: u64 = 4;
    const ROUNDS: u64 = 1_000;
    let rlock = RLock::new().unwrap();
    let counter = RawValue::new(0u64).unwrap();
    let children: Vec<_> = (0..PROCS)
        .map(|_| {
            let (rlock, counter) = (rlock.clone(), counter.clone());
            fork_child(move || {
                for _ in 0..ROUNDS {
                    let Ok(_a) = rlock.lock() else { return 10 };
                    let Ok(_b) = rlock.lock() else { return 11 };
                    let v = counter.load();
                    std::hint::spin_loop();
                    counter.store(v + 1);
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
fn an_owner_killed_at_depth_3_gives_owner_died_at_depth_1_then_the_lock_works_100_times() {
    let _w = watchdog(TEST_LIMIT);
    let rlock = RLock::new().unwrap();
    let page = SharedPage::new(4096);
    let held = word(&page, 0);
    for round in 0..100 {
        held.store(0, SeqCst);
        let mut child = {
            let rlock = rlock.clone();
            fork_child(move || {
                for _ in 0..3 {
                    if rlock.acquire().is_err() {
                        return 10;
                    }
                }
                held.store(1, SeqCst);
                loop {
                    // SAFETY: no preconditions; the child is killed while here.
                    unsafe { libc::pause() };
                }
            })
        };
        assert!(eventually(TEST_LIMIT, || held.load(SeqCst) == 1), "round {round}");
        child.kill_and_reap();
        match rlock.acquire() {
            Err(AcquireError::OwnerDied(())) => {}
            other => panic!("round {round}: expected OwnerDied, got {other:?}"),
        }
        // Depth 1, not 3 + 1: one release frees it.
        rlock.release().unwrap();
        assert!(matches!(rlock.release(), Err(ReleaseError::NotHeld)));
        let g = rlock.lock().unwrap();
        drop(g);
        if round % 25 == 0 {
            assert!(free_for_another_process(&rlock), "round {round}");
        }
    }
}

#[test]
fn an_owner_killed_while_another_process_waits_hands_it_owner_died() {
    let _w = watchdog(TEST_LIMIT);
    let rlock = RLock::new().unwrap();
    let page = SharedPage::new(4096);
    let held = word(&page, 0);
    let mut owner = {
        let rlock = rlock.clone();
        fork_child(move || {
            let (Ok(_a), Ok(_b)) = (rlock.lock(), rlock.lock()) else { return 10 };
            held.store(1, SeqCst);
            loop {
                // SAFETY: no preconditions.
                unsafe { libc::pause() };
            }
        })
    };
    assert!(eventually(TEST_LIMIT, || held.load(SeqCst) == 1));
    let waiter = {
        let rlock = rlock.clone();
        fork_child(move || match rlock.lock() {
            Err(AcquireError::OwnerDied(g)) => {
                drop(g);
                // Depth was reset to 1: the guard's drop freed it.
                match rlock.release() {
                    Err(ReleaseError::NotHeld) => 0,
                    _ => 3,
                }
            }
            Ok(_) => 1,
            Err(_) => 2,
        })
    };
    owner.kill_and_reap();
    assert_eq!(waiter.wait(TEST_LIMIT), Exit::Code(0));
    assert!(free_for_another_process(&rlock));
}
