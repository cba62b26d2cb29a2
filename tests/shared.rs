//! `Value`, `Array`, `RawValue`, `RawArray`: the tutorials' programs (10 processes × 50 locked
//! increments; a Value and an Array modified by a child), slices and iteration, atomics, and a
//! holder killed in the middle of an update.

mod common;

use std::time::{Duration, Instant};

use common::{SharedPage, TEST_LIMIT, eventually, fork_child, watchdog};
use multiproc::sys::mem::shm_safe::ShmSafe;
use multiproc::{
    AcquireError, Array, ArrayGuard, Lock, Process, RawArray, RawValue, ReleaseError, Value,
    ValueGuard, WaitError,
};

static_assertions::assert_impl_all!(Value<u64>: Send, Sync, Clone);
static_assertions::assert_impl_all!(Array<f64>: Send, Sync, Clone);
static_assertions::assert_impl_all!(RawValue<u8>: Send, Sync, Clone);
static_assertions::assert_impl_all!(RawArray<i64>: Send, Sync, Clone);
static_assertions::assert_not_impl_any!(ValueGuard<'static, u64>: Send, Sync);
static_assertions::assert_not_impl_any!(ArrayGuard<'static, u64>: Send, Sync);

/// Runs `n` processes of `f(i)` and joins them all.
fn run_all<F>(n: usize, f: impl Fn(usize) -> F)
where
    F: FnOnce() + Send + 'static,
{
    let procs: Vec<_> = (0..n).map(|i| Process::new(f(i))).collect();
    for p in &procs {
        p.start().unwrap();
    }
    for p in &procs {
        p.join().unwrap();
    }
}

#[test]
fn tutorial_10_processes_50_locked_increments_each_make_500() {
    let _w = watchdog(TEST_LIMIT);
    // `with val.get_lock(): val.value += 1`
    let val = Value::new(0i32).unwrap();
    run_all(10, |_| {
        let val = val.clone();
        move || {
            for _ in 0..50 {
                *val.lock().expect("lock") += 1;
            }
        }
    });
    assert_eq!(val.load().unwrap(), 500);

    // The tutorial's corrected program: a separate `Lock` around `val.value += 1`.
    let val = Value::new(0i32).unwrap();
    let lock = Lock::new().unwrap();
    run_all(10, |_| {
        let (val, lock) = (val.clone(), lock.clone());
        move || {
            for _ in 0..50 {
                let _g = lock.lock().expect("lock");
                let v = val.load().expect("load");
                val.store(v + 1).expect("store");
            }
        }
    });
    assert_eq!(val.load().unwrap(), 500);
}

#[test]
fn the_same_500_with_fetch_add_on_a_raw_value() {
    let _w = watchdog(TEST_LIMIT);
    let val = RawValue::new(0i32).unwrap();
    run_all(10, |_| {
        let val = val.clone();
        move || {
            for _ in 0..50 {
                val.fetch_add(1);
            }
        }
    });
    assert_eq!(val.load(), 500);
}

#[test]
#[allow(clippy::approx_constant)] // the tutorial's literal 3.14, not an approximation of PI
fn tutorial_value_and_array_modified_by_a_child_are_seen_by_the_parent() {
    let _w = watchdog(TEST_LIMIT);
    // num = Value('d', 0.0); arr = Array('i', range(10))
    let num = Value::new(0.0f64).unwrap();
    let arr = Array::from_slice(&(0..10).collect::<Vec<i32>>()).unwrap();
    // def f(n, a): n.value = 3.14; a[0] = 5
    let p = {
        let (n, a) = (num.clone(), arr.clone());
        Process::new(move || {
            n.store(3.14).expect("store");
            a.lock().expect("lock")[0] = 5;
        })
    };
    p.start().unwrap();
    p.join().unwrap();
    // print(num.value); print(arr[:])
    assert_eq!(num.load().unwrap(), 3.14);
    assert_eq!(arr.to_vec().unwrap(), [5, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
}

#[test]
fn array_indexing_slices_and_iteration_through_the_guard() {
    let arr = Array::<u32>::new(6).unwrap();
    assert_eq!(arr.len(), 6);
    assert!(!arr.is_empty());
    assert_eq!(arr.to_vec().unwrap(), [0; 6]);
    {
        let mut a = arr.lock().unwrap();
        for (i, x) in a.iter_mut().enumerate() {
            *x = (i as u32) * 10;
        }
        assert_eq!(a[0], 0);
        assert_eq!(a[5], 50);
        assert_eq!(a[a.len() - 1], 50); // Python's a[-1]
        assert_eq!(a.get(6), None);
        assert_eq!(&a[1..4], &[10, 20, 30]);
        let evens: Vec<u32> = a.iter().step_by(2).copied().collect(); // a[::2]
        assert_eq!(evens, [0, 20, 40]);
        a[2..4].copy_from_slice(&[7, 8]); // slice assignment
        a.reverse();
        assert_eq!(a.iter().sum::<u32>(), 10 + 7 + 8 + 40 + 50);
        assert_eq!(&*a, &[50, 40, 8, 7, 10, 0]);
    }
    // Seen through another handle.
    let other = arr.clone();
    assert_eq!(other.to_vec().unwrap(), [50, 40, 8, 7, 10, 0]);

    let empty = Array::<f64>::from_slice(&[]).unwrap();
    assert!(empty.is_empty());
    assert_eq!(empty.lock().unwrap().len(), 0);
}

#[test]
fn an_array_of_a_user_struct() {
    #[repr(C)]
    #[derive(Clone, Copy, Debug, PartialEq)]
    struct Point {
        x: f32,
        y: f32,
        tag: [u8; 4],
    }
    // SAFETY: repr(C), float and byte fields: every bit pattern is a valid `Point`.
    unsafe impl ShmSafe for Point {}

    let _w = watchdog(TEST_LIMIT);
    let pts = Array::<Point>::new(3).unwrap();
    let p = {
        let pts = pts.clone();
        Process::new(move || {
            let mut g = pts.lock().expect("lock");
            for (i, p) in g.iter_mut().enumerate() {
                *p = Point { x: i as f32, y: -(i as f32), tag: *b"abc\0" };
            }
        })
    };
    p.start().unwrap();
    p.join().unwrap();
    assert_eq!(pts.lock().unwrap()[2], Point { x: 2.0, y: -2.0, tag: *b"abc\0" });
}

#[test]
fn value_guard_derefs_and_store_load_round_trip() {
    let v = Value::new([1u16, 2, 3]).unwrap();
    {
        let mut g = v.lock().unwrap();
        g[1] = 20;
        assert_eq!(*g, [1, 20, 3]);
    }
    v.store([4, 5, 6]).unwrap();
    assert_eq!(v.load().unwrap(), [4, 5, 6]);
    let g = v.try_lock().unwrap();
    assert!(matches!(v.lock(), Err(AcquireError::WouldDeadlock)));
    assert!(matches!(v.try_lock(), Err(AcquireError::Timeout)));
    let start = Instant::now();
    assert!(matches!(v.lock_timeout(Duration::from_millis(5)), Err(AcquireError::Timeout)));
    assert!(start.elapsed() >= Duration::from_millis(5));
    drop(g);
    assert_eq!(*v.lock_timeout(Duration::ZERO).unwrap(), [4, 5, 6]);
}

#[test]
fn a_shared_lock_protects_several_objects() {
    let lock = Lock::new().unwrap();
    let a = Value::with_lock(1u8, lock.clone()).unwrap();
    let b = Array::<u8>::with_lock(2, lock.clone()).unwrap();
    let c = Array::from_slice_with_lock(&[9u8], lock.clone()).unwrap();
    let g = a.lock().unwrap();
    // One lock: holding it through `a` excludes `b`, `c` and the lock itself.
    assert!(matches!(b.lock(), Err(AcquireError::WouldDeadlock)));
    assert!(matches!(c.try_lock(), Err(AcquireError::Timeout)));
    assert!(matches!(a.get_lock().lock(), Err(AcquireError::WouldDeadlock)));
    assert!(matches!(a.get_lock().try_lock(), Err(AcquireError::Timeout)));
    // The data guard cannot be released from under it.
    assert!(matches!(lock.release(), Err(ReleaseError::NotOwner)));
    drop(g);
    assert_eq!(c.to_vec().unwrap(), [9]);
}

#[test]
fn a_value_lock_held_elsewhere_times_out() {
    let _w = watchdog(TEST_LIMIT);
    let v = Value::new(5u64).unwrap();
    let page = SharedPage::new(4096);
    // SAFETY: zeroed shared memory, aligned offsets.
    let (held, go) = unsafe {
        (page.get::<std::sync::atomic::AtomicU32>(0), page.get::<std::sync::atomic::AtomicU32>(4))
    };
    let child = {
        let v = v.clone();
        fork_child(move || {
            let Ok(mut g) = v.lock() else { return 10 };
            *g = 6;
            held.store(1, std::sync::atomic::Ordering::SeqCst);
            while go.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                // SAFETY: no preconditions.
                unsafe { libc::sched_yield() };
            }
            0
        })
    };
    assert!(eventually(TEST_LIMIT, || held.load(std::sync::atomic::Ordering::SeqCst) == 1));
    assert!(matches!(v.try_lock(), Err(AcquireError::Timeout)));
    let t = Duration::from_millis(20);
    let start = std::time::Instant::now();
    assert!(matches!(v.lock_timeout(t), Err(AcquireError::Timeout)));
    assert!(start.elapsed() >= t);
    go.store(1, std::sync::atomic::Ordering::SeqCst);
    child.join_ok();
    assert_eq!(v.load().unwrap(), 6);
}

#[test]
fn a_holder_killed_mid_update_leaves_the_value_recoverable_100_times() {
    let _w = watchdog(TEST_LIMIT);
    // Invariant: both halves equal. The child breaks it, then dies before restoring it.
    let pair = Value::new([0u64; 2]).unwrap();
    let midway = RawValue::new(0u32).unwrap();
    for round in 0..100u64 {
        midway.store(0);
        let mut child = {
            let (pair, midway) = (pair.clone(), midway.clone());
            fork_child(move || {
                let Ok(mut g) = pair.lock() else { return 10 };
                g[0] += 1;
                midway.store(1);
                loop {
                    // SAFETY: no preconditions; killed here, before `g[1] += 1`.
                    unsafe { libc::pause() };
                }
            })
        };
        assert!(eventually(TEST_LIMIT, || midway.load() == 1), "round {round}");
        child.kill_and_reap();
        match pair.lock() {
            Err(AcquireError::OwnerDied(mut g)) => {
                assert_eq!(*g, [round + 1, round], "round {round}: half-updated");
                g[1] = g[0]; // repair
            }
            other => panic!("round {round}: expected OwnerDied, got {:?}", other.map(|g| *g)),
        }
        assert_eq!(pair.load().unwrap(), [round + 1; 2]);
    }
}

#[test]
fn load_after_a_dead_holder_returns_the_value_inside_owner_died() {
    let _w = watchdog(TEST_LIMIT);
    let v = Value::new(1i16).unwrap();
    let child = {
        let v = v.clone();
        fork_child(move || {
            let Ok(mut g) = v.lock() else { return 10 };
            *g = -7;
            std::mem::forget(g);
            0 // exits holding the lock
        })
    };
    child.join_ok();
    assert!(matches!(v.load(), Err(AcquireError::OwnerDied(-7))));
    assert_eq!(v.load().unwrap(), -7);
}

#[test]
fn a_condition_may_share_a_values_lock_but_not_wait_under_its_guard() {
    let lock = Lock::new().unwrap();
    let v = Value::with_lock(0u32, lock.clone()).unwrap();
    let cond = multiproc::Condition::with_lock(lock).unwrap();
    {
        let _g = v.lock().unwrap();
        assert!(matches!(cond.wait_timeout(Duration::ZERO), Err(WaitError::LockedForData)));
    }
    let _g = cond.lock().unwrap();
    assert!(!cond.wait_timeout(Duration::ZERO).unwrap());
}

#[test]
fn raw_array_element_atomics_across_processes() {
    let _w = watchdog(TEST_LIMIT);
    let counts = RawArray::<u64>::new(8).unwrap();
    assert_eq!(counts.len(), 8);
    run_all(4, |_| {
        let counts = counts.clone();
        move || {
            for _ in 0..100 {
                for slot in 0..8 {
                    counts.fetch_add(slot, 1);
                }
            }
        }
    });
    assert_eq!(counts.fetch_sub(1, 0), 400);
    assert_eq!(counts.to_vec(), [400; 8]);
    assert_eq!(counts.swap(0, 1), 400);
    assert_eq!(counts.compare_exchange(0, 1, 2), Ok(1));
    assert_eq!(counts.compare_exchange(0, 1, 3), Err(2));
    counts.store(7, 70);
    assert_eq!(counts.load(7), 70);
    counts.atomic(6).store(60, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(counts.load(6), 60);

    let init = RawArray::from_slice(&[3i8, -4]).unwrap();
    assert_eq!(init.to_vec(), [3, -4]);
}

#[test]
fn raw_value_atomic_operations() {
    let v = RawValue::new(10u32).unwrap();
    assert_eq!(v.fetch_add(5), 10);
    assert_eq!(v.fetch_sub(3), 15);
    assert_eq!(v.swap(1), 12);
    assert_eq!(v.compare_exchange(1, 2), Ok(1));
    assert_eq!(v.compare_exchange(1, 3), Err(2));
    assert_eq!(v.fetch_or(0b100), 2);
    assert_eq!(v.fetch_and(0b110), 0b110);
    assert_eq!(v.fetch_xor(0b010), 0b110);
    assert_eq!(v.fetch_max(9), 0b100);
    assert_eq!(v.fetch_min(3), 9);
    assert_eq!(v.load(), 3);
    v.store(u32::MAX);
    assert_eq!(v.fetch_add(1), u32::MAX); // wraps
    assert_eq!(v.load(), 0);
}

#[test]
fn raw_float_value_and_array_under_the_unsafe_contract() {
    let _w = watchdog(TEST_LIMIT);
    let v = RawValue::new(0.0f64).unwrap();
    let a = RawArray::<f32>::from_slice(&[1.0, 2.0]).unwrap();
    // SAFETY: no child runs yet: nobody else accesses `v` or `a`.
    unsafe {
        v.write(1.5);
        a.write(1, 2.5);
    }
    let p = {
        let (v, a) = (v.clone(), a.clone());
        Process::new(move || {
            // SAFETY: the parent does not touch `v` or `a` until it has joined this process.
            unsafe {
                let x = v.read();
                v.write(x * 2.0);
                a.as_mut_slice()[0] = a.read(1) * 2.0;
            }
        })
    };
    p.start().unwrap();
    p.join().unwrap();
    // SAFETY: the child has exited.
    unsafe {
        assert_eq!(v.read(), 3.0);
        assert_eq!(a.as_slice(), &[5.0, 2.5]);
        assert_eq!(*v.as_ptr(), 3.0);
    }
}
