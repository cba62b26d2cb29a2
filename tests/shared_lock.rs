//! The lock of `Value` and `Array`: an `RLock` by default, as in Python (`with v.get_lock():`
//! around `v.value += 1` works), a `Lock` or an `RLock` given as Python's `lock=`, and the one
//! Rust rule on top: one guard of the data (`&mut`) at a time, in the holding thread too.

mod common;

use std::time::{Duration, Instant};

use common::{TEST_LIMIT, fork_child, watchdog};
use multiproc::{
    AcquireError, Array, Condition, Lock, Process, RLock, ReleaseError, Value, WaitError,
};

/// Asserts that a bounded call took at least `t`.
fn at_least<R>(t: Duration, f: impl FnOnce() -> R) -> R {
    let start = Instant::now();
    let r = f();
    let took = start.elapsed();
    assert!(took >= t, "returned after {took:?}, before its timeout {t:?}");
    r
}

/// Python: `with v.get_lock(): with v.get_lock(): v.value += 1` (the lock is an RLock).
#[test]
fn the_default_lock_is_an_rlock_and_the_value_is_usable_while_it_is_held() {
    let _w = watchdog(TEST_LIMIT);
    let v = Value::new(0i32).unwrap();
    let lock: &RLock = v.get_lock();
    lock.acquire().unwrap();
    assert!(lock.acquire_timeout(Duration::ZERO).unwrap());
    {
        let _nested = lock.lock().unwrap();
        v.store(v.load().unwrap() + 1).unwrap();
        *v.lock().unwrap() += 1;
        *v.try_lock().unwrap() += 1;
        *v.lock_timeout(Duration::from_secs(5)).unwrap() += 1;
    }
    // Another thread waits meanwhile.
    let other = v.clone();
    let r = std::thread::spawn(move || other.try_lock().map(|_| ()).map_err(|e| e.without_guard()))
        .join()
        .unwrap();
    assert!(matches!(r, Err(AcquireError::Timeout)), "{r:?}");
    lock.release().unwrap();
    lock.release().unwrap();
    assert!(matches!(lock.release(), Err(ReleaseError::NotHeld)));
    assert_eq!(v.load().unwrap(), 4);
}

#[test]
fn one_guard_of_the_data_at_a_time_even_in_the_holding_thread() {
    let _w = watchdog(TEST_LIMIT);
    let v = Value::new([1u8, 2]).unwrap();
    let mut g = v.lock().unwrap();
    g[0] = 10;
    // A second `&mut` to the same data: refused as a relock of a held `Lock` is.
    assert!(matches!(v.lock(), Err(AcquireError::WouldDeadlock)));
    assert!(matches!(v.lock(), Err(AcquireError::WouldDeadlock)));
    assert!(matches!(v.load(), Err(AcquireError::WouldDeadlock)));
    assert!(matches!(v.store([0, 0]), Err(AcquireError::WouldDeadlock)));
    assert!(matches!(v.try_lock(), Err(AcquireError::Timeout)));
    let t = Duration::from_millis(30);
    assert!(matches!(at_least(t, || v.lock_timeout(t)), Err(AcquireError::Timeout)));
    // The lock itself still nests, and its Python-style levels are released as usual.
    v.get_lock().acquire().unwrap();
    assert!(v.get_lock().acquire_timeout(t).unwrap());
    v.get_lock().release().unwrap();
    v.get_lock().release().unwrap();
    // The guard's level cannot be released from under it.
    assert!(matches!(v.get_lock().release(), Err(ReleaseError::NotOwner)));
    g[1] = 20;
    drop(g);
    assert_eq!(v.load().unwrap(), [10, 20]);
    // Fully released: another thread gets it at once.
    let other = v.clone();
    assert_eq!(std::thread::spawn(move || *other.try_lock().unwrap()).join().unwrap(), [10, 20]);
}

#[test]
fn a_guard_taken_inside_python_style_levels_keeps_the_lock_after_they_are_released() {
    let _w = watchdog(TEST_LIMIT);
    let arr = Array::<u32>::new(3).unwrap();
    arr.get_lock().acquire().unwrap();
    let mut g = arr.lock().unwrap();
    arr.get_lock().release().unwrap(); // the acquire's level; the guard's stays
    assert!(matches!(arr.get_lock().release(), Err(ReleaseError::NotOwner)));
    // Still held: another process cannot take it.
    let child = {
        let arr = arr.clone();
        fork_child(move || match arr.try_lock() {
            Err(AcquireError::Timeout) => 0,
            _ => 1,
        })
    };
    child.join_ok();
    g[2] = 7;
    drop(g);
    assert_eq!(arr.to_vec().unwrap(), [0, 0, 7]);
    assert!(matches!(arr.get_lock().release(), Err(ReleaseError::NotHeld)));
}

#[test]
fn objects_sharing_an_rlock_nest_it_but_have_one_data_guard_at_a_time() {
    let _w = watchdog(TEST_LIMIT);
    let lock = RLock::new().unwrap();
    let a = Value::with_lock(1u8, lock.clone()).unwrap();
    let b = Array::<u8>::with_lock(2, lock.clone()).unwrap();
    let c = Array::from_slice_with_lock(&[9u8], lock.clone()).unwrap();
    {
        let _outer = lock.lock().unwrap();
        // Python: `with lock: a.value = ...; b[0] = ...` — one access at a time.
        a.store(3).unwrap();
        b.lock().unwrap()[0] = 4;
        assert_eq!(c.to_vec().unwrap(), [9]);
        let g = a.lock().unwrap();
        assert!(matches!(b.lock(), Err(AcquireError::WouldDeadlock)));
        assert!(matches!(c.try_lock(), Err(AcquireError::Timeout)));
        let _inner = lock.lock().unwrap(); // the lock itself still nests
        drop(g);
        assert_eq!(b.to_vec().unwrap(), [4, 0]);
    }
    assert_eq!(a.load().unwrap(), 3);
    assert!(matches!(lock.release(), Err(ReleaseError::NotHeld)));
}

/// Python's `lock=Lock()`: the holder of the lock cannot use the value (Python hangs; here
/// `WouldDeadlock`, or a timeout after a bounded call's timeout).
#[test]
fn a_plain_lock_given_as_lock_is_not_reentrant() {
    let _w = watchdog(TEST_LIMIT);
    let v = Value::with_lock(5u64, Lock::new().unwrap()).unwrap();
    let lock: &Lock = v.get_lock();
    lock.acquire().unwrap();
    assert!(matches!(v.load(), Err(AcquireError::WouldDeadlock)));
    assert!(matches!(v.try_lock(), Err(AcquireError::Timeout)));
    let t = Duration::from_millis(20);
    assert!(matches!(at_least(t, || v.lock_timeout(t)), Err(AcquireError::Timeout)));
    assert!(!at_least(t, || lock.acquire_timeout(t)).unwrap());
    lock.release().unwrap();
    let g = v.lock().unwrap();
    assert!(matches!(lock.release(), Err(ReleaseError::NotOwner)));
    assert!(matches!(lock.lock(), Err(AcquireError::WouldDeadlock)));
    drop(g);
    assert_eq!(v.load().unwrap(), 5);
}

#[test]
fn a_condition_on_a_values_rlock_waits_unless_a_data_guard_lives() {
    let _w = watchdog(TEST_LIMIT);
    let v = Value::new(0u32).unwrap();
    let cond = Condition::with_lock(v.get_lock().clone()).unwrap();
    let _c = cond.lock().unwrap();
    {
        let _g = v.lock().unwrap();
        assert!(matches!(cond.wait_timeout(Duration::ZERO), Err(WaitError::LockedForData)));
    }
    // Without a data guard, waiting releases every level and takes them back.
    v.get_lock().acquire().unwrap();
    assert!(!cond.wait_timeout(Duration::from_millis(1)).unwrap());
    v.store(1).unwrap();
    v.get_lock().release().unwrap();
    // A waiter in another process, woken by a `Value` update made under the condition.
    let waiter = {
        let (v, cond) = (v.clone(), cond.clone());
        Process::new(move || {
            let _c = cond.lock().expect("lock");
            cond.wait_for_timeout(|| v.load().expect("load") == 2, Duration::from_secs(20))
                .expect("wait")
        })
    };
    drop(_c);
    waiter.start().unwrap();
    {
        let _c = cond.lock().unwrap();
        v.store(2).unwrap();
        cond.notify_all().unwrap();
    }
    assert!(waiter.join_timeout(TEST_LIMIT).unwrap());
}

#[test]
fn a_holder_that_dies_under_a_data_guard_leaves_the_rlock_clean() {
    let _w = watchdog(TEST_LIMIT);
    let v = Value::new(1i64).unwrap();
    let child = {
        let v = v.clone();
        fork_child(move || {
            v.get_lock().acquire().unwrap();
            let Ok(mut g) = v.lock() else { return 10 };
            *g = -1;
            std::mem::forget(g);
            0 // exits holding two levels, one of them a data level
        })
    };
    child.join_ok();
    match v.lock() {
        Err(AcquireError::OwnerDied(mut g)) => {
            assert_eq!(*g, -1);
            *g = 2;
            // Depth 1, one data level: a second one is refused, nesting is not.
            assert!(matches!(v.load(), Err(AcquireError::WouldDeadlock)));
            v.get_lock().acquire().unwrap();
            v.get_lock().release().unwrap();
        }
        other => panic!("expected OwnerDied, got {:?}", other.map(|g| *g)),
    }
    assert!(matches!(v.get_lock().release(), Err(ReleaseError::NotHeld)));
    assert_eq!(v.load().unwrap(), 2);
}

/// The Python tutorial's idiom, literally: `with val.get_lock(): val.value += 1`, 10 processes
/// × 50 increments.
#[test]
fn python_style_get_lock_increments_across_processes_make_500() {
    let _w = watchdog(TEST_LIMIT);
    let val = Value::new(0i32).unwrap();
    let procs: Vec<_> = (0..10)
        .map(|_| {
            let val = val.clone();
            Process::new(move || {
                for _ in 0..50 {
                    let lock = val.get_lock();
                    lock.acquire().expect("acquire");
                    val.store(val.load().expect("load") + 1).expect("store");
                    lock.release().expect("release");
                }
            })
        })
        .collect();
    for p in &procs {
        p.start().unwrap();
    }
    for p in &procs {
        p.join_timeout(TEST_LIMIT).unwrap();
    }
    assert_eq!(val.load().unwrap(), 500);
}
