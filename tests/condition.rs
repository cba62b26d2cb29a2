//! `Condition`: the tutorial's two-stage program, notify counts, Python's misuse errors,
//! `wait_for`, full release of an `RLock` during a wait, and waiters or holders killed with
//! SIGKILL (none of which may block anyone else).

mod common;

use std::time::{Duration, Instant};

use common::{TEST_LIMIT, eventually, watchdog};
use multiproc::{
    AcquireError, Condition, Lock, NotifyError, Pid, Process, ProcessBuilder, RLock, RawValue,
    ReleaseError, Value, WaitError,
};

static_assertions::assert_impl_all!(Condition: Send, Sync, Clone);

/// Whether process `pid` is blocked inside a futex system call (read from /proc, which shows
/// the system call a sleeping task is in).
fn asleep_in_futex(pid: Pid) -> bool {
    let path = format!("/proc/{}/syscall", pid.as_raw_nonzero());
    let Ok(text) = std::fs::read_to_string(path) else { return false };
    text.split_whitespace().next().and_then(|n| n.parse::<libc::c_long>().ok())
        == Some(libc::SYS_futex)
}

/// A process that registers under the condition's lock, waits (no timeout) and counts itself
/// woken. Returns whether the wait returned `true`.
fn waiter(cond: &Condition, registered: &RawValue<u32>, woken: &RawValue<u32>) -> Process<bool> {
    let (cond, registered, woken) = (cond.clone(), registered.clone(), woken.clone());
    let p = Process::new(move || {
        let _g = cond.lock().expect("lock");
        registered.fetch_add(1);
        let r = cond.wait_timeout(TEST_LIMIT).expect("wait");
        woken.fetch_add(1);
        r
    });
    p.start().unwrap();
    p
}

#[test]
fn tutorial_stage_1_notify_all_wakes_the_stage_2_processes() {
    let _w = watchdog(TEST_LIMIT);
    let condition = Condition::new().unwrap();
    let registered = RawValue::new(0u32).unwrap();
    let stage_2: Vec<_> = (1..=2)
        .map(|i| {
            let (cond, registered) = (condition.clone(), registered.clone());
            let p = ProcessBuilder::new().name(format!("stage_2[{i}]")).target(move || -> bool {
                let _g = cond.lock().expect("lock");
                registered.fetch_add(1);
                cond.wait_timeout(TEST_LIMIT).expect("wait")
            });
            p.start().unwrap();
            p
        })
        .collect();
    // Python's tutorial sleeps a second per client; here: until both are waiting (they
    // registered under the lock, and `wait` releases it only after reading the sequence).
    assert!(eventually(TEST_LIMIT, || registered.load() == 2));
    let s1 = {
        let cond = condition.clone();
        ProcessBuilder::new().name("s1").target(move || {
            let _g = cond.lock().expect("lock");
            cond.notify_all().expect("notify_all");
        })
    };
    s1.start().unwrap();
    s1.join().unwrap();
    for c in &stage_2 {
        assert!(c.join().unwrap());
    }
}

#[test]
fn notify_1_wakes_exactly_one_of_two_sleeping_waiters() {
    let _w = watchdog(TEST_LIMIT);
    let cond = Condition::new().unwrap();
    let registered = RawValue::new(0u32).unwrap();
    let woken = RawValue::new(0u32).unwrap();
    let waiters = [waiter(&cond, &registered, &woken), waiter(&cond, &registered, &woken)];
    let pids = waiters.each_ref().map(|w| w.pid().unwrap());
    assert!(eventually(TEST_LIMIT, || registered.load() == 2
        && pids.iter().all(|&p| asleep_in_futex(p))));

    {
        let _g = cond.lock().unwrap();
        cond.notify(1).unwrap();
    }
    assert!(eventually(TEST_LIMIT, || woken.load() >= 1));
    // The other one stays asleep: give it time to (wrongly) wake.
    assert!(!eventually(Duration::from_millis(100), || woken.load() > 1));
    assert_eq!(woken.load(), 1);

    {
        let _g = cond.lock().unwrap();
        cond.notify(1).unwrap();
    }
    for w in &waiters {
        assert!(w.join().unwrap());
    }
    assert_eq!(woken.load(), 2);
}

#[test]
fn notify_all_and_notify_n_above_the_waiter_count_wake_everyone() {
    let _w = watchdog(TEST_LIMIT);
    let cond = Condition::with_lock(Lock::new().unwrap()).unwrap();
    let registered = RawValue::new(0u32).unwrap();
    let woken = RawValue::new(0u32).unwrap();
    let first: Vec<_> = (0..3).map(|_| waiter(&cond, &registered, &woken)).collect();
    assert!(eventually(TEST_LIMIT, || registered.load() == 3));
    {
        let _g = cond.lock().unwrap();
        cond.notify_all().unwrap();
    }
    for w in &first {
        assert!(w.join().unwrap());
    }

    let second: Vec<_> = (0..2).map(|_| waiter(&cond, &registered, &woken)).collect();
    assert!(eventually(TEST_LIMIT, || registered.load() == 5));
    {
        let _g = cond.lock().unwrap();
        cond.notify(10).unwrap();
    }
    for w in &second {
        assert!(w.join().unwrap());
    }
    // Sleepers minus woken = 0.
    assert_eq!(woken.load(), registered.load());
}

#[test]
fn notify_with_nobody_waiting_is_a_no_op() {
    let cond = Condition::new().unwrap();
    let _g = cond.lock().unwrap();
    cond.notify(1).unwrap();
    cond.notify(5).unwrap();
    cond.notify(0).unwrap();
    cond.notify_all().unwrap();
}

#[test]
fn wait_and_notify_without_the_lock_are_errors() {
    let cond = Condition::new().unwrap();
    assert!(matches!(cond.wait(), Err(WaitError::NotOwner)));
    assert!(matches!(cond.wait_for(|| true), Err(WaitError::NotOwner)));
    assert!(matches!(cond.notify(1), Err(NotifyError::NotOwner)));
    assert!(matches!(cond.notify_all(), Err(NotifyError::NotOwner)));
    assert_eq!(WaitError::NotOwner.to_string(), "must acquire() condition before using wait()");
    assert_eq!(NotifyError::NotOwner.to_string(), "lock is not owned");

    // Held by another thread is not held by this one.
    let _g = cond.lock().unwrap();
    let other = cond.clone();
    let (wait, notify) = std::thread::spawn(move || {
        (
            matches!(other.wait_timeout(Duration::ZERO), Err(WaitError::NotOwner)),
            matches!(other.notify(1), Err(NotifyError::NotOwner)),
        )
    })
    .join()
    .unwrap();
    assert!(wait && notify);
}

#[test]
fn acquire_and_release_delegate_to_the_lock() {
    let rlock = RLock::new().unwrap();
    let cond = Condition::with_lock(rlock.clone()).unwrap();
    cond.acquire().unwrap();
    assert!(cond.acquire_timeout(Duration::ZERO).unwrap());
    assert!(!cond.wait_timeout(Duration::ZERO).unwrap());
    cond.release().unwrap();
    rlock.release().unwrap(); // the same lock
    assert!(matches!(cond.release(), Err(ReleaseError::NotHeld)));

    let lock = Lock::new().unwrap();
    let cond = Condition::with_lock(lock.clone()).unwrap();
    let _g = cond.lock().unwrap();
    assert!(matches!(lock.lock(), Err(AcquireError::WouldDeadlock)));
    assert!(matches!(cond.lock(), Err(AcquireError::WouldDeadlock)));
    assert!(matches!(cond.acquire(), Err(AcquireError::WouldDeadlock)));
    // Bounded: as Python's `Condition(Lock())`, a timeout (after the whole timeout).
    assert!(matches!(lock.try_lock(), Err(AcquireError::Timeout)));
    assert!(matches!(cond.try_lock(), Err(AcquireError::Timeout)));
    assert!(!cond.acquire_timeout(Duration::ZERO).unwrap());
    let t = Duration::from_millis(30);
    let start = Instant::now();
    assert!(!cond.acquire_timeout(t).unwrap());
    assert!(start.elapsed() >= t, "returned after {:?}", start.elapsed());
    let start = Instant::now();
    assert!(matches!(cond.lock_timeout(t), Err(AcquireError::Timeout)));
    assert!(start.elapsed() >= t, "returned after {:?}", start.elapsed());
}

#[test]
fn a_timed_wait_returns_false_and_is_never_early() {
    let _w = watchdog(TEST_LIMIT);
    for cond in [Condition::new().unwrap(), Condition::with_lock(Lock::new().unwrap()).unwrap()] {
        let _g = cond.lock().unwrap();
        assert!(!cond.wait_timeout(Duration::ZERO).unwrap());
        for ms in [1u64, 30] {
            let t = Duration::from_millis(ms);
            let start = Instant::now();
            assert!(!cond.wait_timeout(t).unwrap());
            assert!(start.elapsed() >= t, "wait({t:?}) returned after {:?}", start.elapsed());
        }
    }
}

#[test]
fn wait_for_checks_first_and_returns_the_last_predicate_value_after_the_timeout() {
    let _w = watchdog(TEST_LIMIT);
    let cond = Condition::new().unwrap();
    let _g = cond.lock().unwrap();

    let mut calls = 0;
    assert!(
        cond.wait_for_timeout(
            || {
                calls += 1;
                true
            },
            Duration::ZERO
        )
        .unwrap()
    );
    assert_eq!(calls, 1);

    let mut calls = 0;
    let t = Duration::from_millis(40);
    let start = Instant::now();
    assert!(
        !cond
            .wait_for_timeout(
                || {
                    calls += 1;
                    false
                },
                t
            )
            .unwrap()
    );
    assert!(start.elapsed() >= t);
    assert!(calls >= 2, "checked before and after waiting");
}

#[test]
fn wait_for_timeout_covers_the_whole_call_despite_wakeups() {
    let _w = watchdog(TEST_LIMIT);
    let cond = Condition::new().unwrap();
    let stop = RawValue::new(0u32).unwrap();
    let notifier = {
        let (cond, stop) = (cond.clone(), stop.clone());
        Process::new(move || {
            let mut n = 0u32;
            while stop.load() == 0 {
                let _g = cond.lock().expect("lock");
                cond.notify_all().expect("notify");
                n += 1;
            }
            n
        })
    };
    notifier.start().unwrap();
    let t = Duration::from_millis(150);
    let start = Instant::now();
    let mut checks = 0u32;
    {
        let _g = cond.lock().unwrap();
        assert!(
            !cond
                .wait_for_timeout(
                    || {
                        checks += 1;
                        false
                    },
                    t
                )
                .unwrap()
        );
    }
    let elapsed = start.elapsed();
    stop.store(1);
    assert!(notifier.join().unwrap() > 0);
    assert!(elapsed >= t);
    assert!(elapsed < Duration::from_secs(10), "the timeout restarted on each wake-up");
}

#[test]
fn wait_releases_an_rlock_fully_and_restores_its_depth() {
    let _w = watchdog(TEST_LIMIT);
    let cond = Condition::new().unwrap(); // an RLock
    let registered = RawValue::new(0u32).unwrap();
    let waiter = {
        let (cond, registered) = (cond.clone(), registered.clone());
        Process::new(move || {
            cond.acquire().expect("acquire");
            let _g = cond.lock().expect("lock"); // depth 2
            registered.store(1);
            let woken = cond.wait_timeout(TEST_LIMIT).expect("wait");
            // Depth 2 again: the acquire()d level, then the guard's.
            cond.release().expect("release");
            let third = matches!(cond.release(), Err(ReleaseError::NotOwner));
            (woken, third)
        })
    };
    waiter.start().unwrap();
    assert!(eventually(TEST_LIMIT, || registered.load() == 1));
    {
        // Another process takes the lock while the waiter was nested two deep.
        let _g = cond.lock_timeout(TEST_LIMIT).unwrap();
        cond.notify(1).unwrap();
    }
    assert_eq!(waiter.join().unwrap(), (true, true));
}

#[test]
fn a_waiter_killed_inside_wait_blocks_no_later_notify_or_wait() {
    let _w = watchdog(TEST_LIMIT);
    let cond = Condition::new().unwrap();
    let registered = RawValue::new(0u32).unwrap();
    let woken = RawValue::new(0u32).unwrap();
    for round in 0..5 {
        let victim = waiter(&cond, &registered, &woken);
        let pid = victim.pid().unwrap();
        assert!(eventually(TEST_LIMIT, || asleep_in_futex(pid)), "round {round}");
        victim.kill().unwrap();
        assert!(victim.join().is_err());

        let survivor = waiter(&cond, &registered, &woken);
        let pid = survivor.pid().unwrap();
        assert!(eventually(TEST_LIMIT, || asleep_in_futex(pid)), "round {round}");
        {
            let _g = cond.lock().unwrap();
            cond.notify_all().unwrap();
            // Timed waits still honour their timeout.
            let t = Duration::from_millis(5);
            let start = Instant::now();
            assert!(!cond.wait_timeout(t).unwrap());
            assert!(start.elapsed() >= t);
        }
        assert!(survivor.join().unwrap(), "round {round}");
    }
    assert_eq!(woken.load(), 5);
}

#[test]
fn a_holder_killed_while_a_waiter_sleeps_hands_the_waiter_owner_died() {
    let _w = watchdog(TEST_LIMIT);
    let cond = Condition::new().unwrap();
    let registered = RawValue::new(0u32).unwrap();
    let holding = RawValue::new(0u32).unwrap();
    let waiter = {
        let (cond, registered) = (cond.clone(), registered.clone());
        Process::new(move || {
            let _g = cond.lock().expect("lock");
            registered.store(1);
            let r = matches!(cond.wait(), Err(WaitError::OwnerDied));
            // The lock is held again and works.
            cond.notify_all().expect("held after OwnerDied");
            r
        })
    };
    waiter.start().unwrap();
    assert!(eventually(TEST_LIMIT, || registered.load() == 1));
    let holder = {
        let (cond, holding) = (cond.clone(), holding.clone());
        Process::new(move || -> () {
            let g = cond.lock().expect("lock");
            cond.notify_all().expect("notify");
            holding.store(1);
            std::mem::forget(g);
            loop {
                std::thread::park();
            }
        })
    };
    holder.start().unwrap();
    assert!(eventually(TEST_LIMIT, || holding.load() == 1));
    holder.kill().unwrap();
    assert!(waiter.join().unwrap());
    let _ = holder.join();
    drop(cond.lock().unwrap());
}

#[test]
fn waiting_on_a_lock_held_by_a_value_guard_is_refused() {
    let lock = Lock::new().unwrap();
    let cond = Condition::with_lock(lock.clone()).unwrap();
    let value = Value::with_lock(7u32, lock).unwrap();
    let g = value.lock().unwrap();
    assert!(matches!(cond.wait_timeout(Duration::ZERO), Err(WaitError::LockedForData)));
    // Notify is fine: it releases nothing.
    cond.notify_all().unwrap();
    assert_eq!(*g, 7);
}
