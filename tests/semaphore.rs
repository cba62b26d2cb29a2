//! Cross-process behaviour of `Semaphore` and `BoundedSemaphore`.
//!
//! Children are forked with `common::fork_child` and do only async-signal-safe work: atomics
//! in shared memory and the semaphore's own calls (CAS loops and futex system calls).

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::{Exit, SharedPage, TEST_LIMIT, eventually, fork_child, watchdog};
use multiproc::sync::{AcquireError, ReleaseError};
use multiproc::{BoundedSemaphore, Semaphore};

/// The scheduler state letter of `pid` from `/proc/<pid>/stat` (`'S'` = asleep).
fn proc_state(pid: libc::pid_t) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let close = stat.rfind(')')?;
    stat[close + 2..].chars().next()
}

/// Waits until `pid` is asleep (after it announced it is about to block).
fn wait_until_asleep(pid: libc::pid_t) {
    assert!(
        eventually(Duration::from_secs(10), || proc_state(pid) == Some('S')),
        "child {pid} never went to sleep"
    );
}

#[test]
fn tutorial_semaphore_2_admits_at_most_two_of_five_processes() {
    let _w = watchdog(TEST_LIMIT);
    let sem = Semaphore::new(2).unwrap();
    let page = SharedPage::new(4096);
    // SAFETY: zeroed atomics at aligned, distinct offsets inside the page.
    let (inside, most, passes) =
        unsafe { (page.get::<AtomicU32>(0), page.get::<AtomicU32>(4), page.get::<AtomicU32>(8)) };
    const ROUNDS: u32 = 300;
    let children: Vec<_> = (0..5)
        .map(|_| {
            let sem = sem.clone();
            fork_child(move || {
                for _ in 0..ROUNDS {
                    let guard = match sem.guard() {
                        Ok(g) => g,
                        Err(_) => return 1,
                    };
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    for _ in 0..200 {
                        std::hint::spin_loop();
                    }
                    inside.fetch_sub(1, Ordering::SeqCst);
                    drop(guard);
                    passes.fetch_add(1, Ordering::SeqCst);
                }
                0
            })
        })
        .collect();
    for c in children {
        c.join_ok();
    }
    assert_eq!(passes.load(Ordering::SeqCst), 5 * ROUNDS, "every process got through every time");
    let most = most.load(Ordering::SeqCst);
    assert!((1..=2).contains(&most), "at most 2 inside at once, saw {most}");
    assert_eq!(sem.get_value(), 2);
}

#[test]
fn get_value_is_exact_across_processes() {
    let _w = watchdog(TEST_LIMIT);
    let sem = Semaphore::new(5).unwrap();
    assert_eq!(sem.get_value(), 5);
    sem.acquire().unwrap();
    assert_eq!(sem.get_value(), 4);
    let s = sem.clone();
    fork_child(move || {
        for _ in 0..3 {
            if !s.acquire_timeout(Duration::ZERO).unwrap_or(false) {
                return 1;
            }
        }
        if s.get_value() != 1 {
            return 2;
        }
        0
    })
    .join_ok();
    assert_eq!(sem.get_value(), 1);
    sem.release().unwrap();
    assert_eq!(sem.get_value(), 2);
}

#[test]
fn semaphore_release_above_initial_value_is_allowed() {
    let sem = Semaphore::new(2).unwrap();
    sem.release().unwrap();
    sem.release().unwrap();
    assert_eq!(sem.get_value(), 4);
    for _ in 0..4 {
        assert!(sem.acquire_timeout(Duration::ZERO).unwrap());
    }
    assert!(!sem.acquire_timeout(Duration::ZERO).unwrap());
    assert_eq!(sem.get_value(), 0);
}

#[test]
fn semaphore_release_at_u32_max_is_an_overflow_error() {
    let sem = Semaphore::new(u32::MAX - 1).unwrap();
    sem.release().unwrap();
    match sem.release() {
        Err(ReleaseError::Os(e)) => assert_eq!(e.raw_os_error(), Some(libc::EOVERFLOW)),
        other => panic!("expected EOVERFLOW, got {other:?}"),
    }
    assert_eq!(sem.get_value(), u32::MAX);
}

#[test]
fn bounded_over_release_is_too_many_releases_and_keeps_the_value() {
    let sem = BoundedSemaphore::new(2).unwrap();
    assert_eq!(sem.max_value(), 2);
    assert!(matches!(sem.release(), Err(ReleaseError::TooManyReleases)));
    assert_eq!(sem.get_value(), 2);
    sem.acquire().unwrap();
    sem.release().unwrap();
    assert!(matches!(sem.release(), Err(ReleaseError::TooManyReleases)));
    assert_eq!(sem.get_value(), 2);
    assert_eq!(format!("{sem:?}"), "BoundedSemaphore { value: 2, max_value: 2 }");

    let zero = BoundedSemaphore::new(0).unwrap();
    assert!(matches!(zero.release(), Err(ReleaseError::TooManyReleases)));
    assert!(!zero.acquire_timeout(Duration::ZERO).unwrap());
}

#[test]
fn bounded_check_is_atomic_when_processes_release_at_once() {
    let _w = watchdog(TEST_LIMIT);
    for _ in 0..5 {
        let sem = BoundedSemaphore::new(4).unwrap();
        for _ in 0..4 {
            assert!(sem.acquire_timeout(Duration::ZERO).unwrap());
        }
        let page = SharedPage::new(4096);
        // SAFETY: zeroed atomics at aligned, distinct offsets inside the page.
        let (go, ok, too_many) = unsafe {
            (page.get::<AtomicU32>(0), page.get::<AtomicU32>(4), page.get::<AtomicU32>(8))
        };
        let children: Vec<_> = (0..8)
            .map(|_| {
                let sem = sem.clone();
                fork_child(move || {
                    while go.load(Ordering::Acquire) == 0 {
                        std::hint::spin_loop();
                    }
                    match sem.release() {
                        Ok(()) => ok.fetch_add(1, Ordering::SeqCst),
                        Err(ReleaseError::TooManyReleases) => {
                            too_many.fetch_add(1, Ordering::SeqCst)
                        }
                        Err(_) => return 1,
                    };
                    0
                })
            })
            .collect();
        go.store(1, Ordering::Release);
        for c in children {
            c.join_ok();
        }
        assert_eq!(ok.load(Ordering::SeqCst), 4);
        assert_eq!(too_many.load(Ordering::SeqCst), 4);
        assert_eq!(sem.get_value(), 4);
    }
}

#[test]
fn timed_acquire_never_returns_early() {
    let sem = Semaphore::new(0).unwrap();
    for ms in [1u64, 20, 60] {
        let t = Duration::from_millis(ms);
        let start = Instant::now();
        assert!(!sem.acquire_timeout(t).unwrap());
        assert!(start.elapsed() >= t, "timed out after {:?} < {t:?}", start.elapsed());
    }
    let bounded = BoundedSemaphore::new(1).unwrap();
    let _g = bounded.guard().unwrap();
    let start = Instant::now();
    assert!(matches!(bounded.guard_timeout(Duration::from_millis(30)), Err(AcquireError::Timeout)));
    assert!(start.elapsed() >= Duration::from_millis(30));
}

#[test]
fn zero_timeout_tries_once_without_waiting() {
    let sem = Semaphore::new(1).unwrap();
    let start = Instant::now();
    assert!(sem.acquire_timeout(Duration::ZERO).unwrap());
    assert!(!sem.acquire_timeout(Duration::ZERO).unwrap());
    assert!(matches!(sem.guard_timeout(Duration::ZERO), Err(AcquireError::Timeout)));
    assert!(start.elapsed() < Duration::from_secs(1), "a zero timeout must not wait");
    assert_eq!(sem.get_value(), 0);
}

#[test]
fn guard_releases_on_drop_and_explicit_release_reports() {
    let sem = Semaphore::new(1).unwrap();
    {
        let g = sem.guard_timeout(Duration::from_secs(1)).unwrap();
        assert_eq!(sem.get_value(), 0);
        assert_eq!(format!("{g:?}"), "SemaphoreGuard { value: 0 }");
    }
    assert_eq!(sem.get_value(), 1);
    let g = sem.guard().unwrap();
    g.release().unwrap();
    assert_eq!(sem.get_value(), 1);
    assert_eq!(format!("{sem:?}"), "Semaphore { value: 1 }");

    // A bounded guard whose permit someone else already gave back: the drop ignores the error,
    // the explicit release shows it.
    let b = BoundedSemaphore::new(1).unwrap();
    let g = b.guard().unwrap();
    b.release().unwrap();
    assert!(matches!(g.release(), Err(ReleaseError::TooManyReleases)));
    assert_eq!(b.get_value(), 1);
}

#[test]
fn release_in_one_process_wakes_a_waiter_in_another() {
    let _w = watchdog(TEST_LIMIT);
    let sem = Semaphore::new(0).unwrap();
    let page = SharedPage::new(4096);
    // SAFETY: a zeroed atomic at offset 0.
    let ready = unsafe { page.get::<AtomicU32>(0) };
    let s = sem.clone();
    let child = fork_child(move || {
        ready.store(1, Ordering::Release);
        match s.acquire() {
            Ok(()) => 0,
            _ => 1,
        }
    });
    assert!(eventually(Duration::from_secs(10), || ready.load(Ordering::Acquire) == 1));
    wait_until_asleep(child.pid);
    sem.release().unwrap();
    assert_eq!(child.wait(Duration::from_secs(10)), Exit::Code(0));
    assert_eq!(sem.get_value(), 0);
}

#[test]
fn ping_pong_between_processes_loses_no_wake_up() {
    let _w = watchdog(TEST_LIMIT);
    let ping = Semaphore::new(0).unwrap();
    let pong = Semaphore::new(0).unwrap();
    const ROUNDS: u32 = 5_000;
    let (pi, po) = (ping.clone(), pong.clone());
    let child = fork_child(move || {
        for _ in 0..ROUNDS {
            if pi.acquire().is_err() || po.release().is_err() {
                return 1;
            }
        }
        0
    });
    for _ in 0..ROUNDS {
        ping.release().unwrap();
        pong.acquire().unwrap();
    }
    child.join_ok();
    assert_eq!((ping.get_value(), pong.get_value()), (0, 0));
}

#[test]
fn a_waiter_killed_while_blocked_does_not_prevent_others_from_acquiring() {
    let _w = watchdog(TEST_LIMIT);
    let sem = Semaphore::new(0).unwrap();
    let page = SharedPage::new(4096);
    // SAFETY: zeroed atomics at aligned, distinct offsets inside the page.
    let (ready_k, ready_w) = unsafe { (page.get::<AtomicU32>(0), page.get::<AtomicU32>(4)) };

    let s = sem.clone();
    let mut victim = fork_child(move || {
        ready_k.store(1, Ordering::Release);
        let _ = s.acquire();
        0
    });
    let s = sem.clone();
    let survivor = fork_child(move || {
        ready_w.store(1, Ordering::Release);
        match s.acquire_timeout(Duration::from_secs(20)) {
            Ok(true) => 0,
            Ok(false) => 3,
            Err(_) => 1,
        }
    });
    assert!(eventually(Duration::from_secs(10), || {
        ready_k.load(Ordering::Acquire) == 1 && ready_w.load(Ordering::Acquire) == 1
    }));
    wait_until_asleep(victim.pid);
    wait_until_asleep(survivor.pid);

    victim.kill_and_reap();
    sem.release().unwrap();
    assert_eq!(survivor.wait(Duration::from_secs(10)), Exit::Code(0));
    assert_eq!(sem.get_value(), 0);

    // And the semaphore keeps working in this process.
    sem.release().unwrap();
    assert!(sem.acquire_timeout(Duration::ZERO).unwrap());
    assert!(!sem.acquire_timeout(Duration::from_millis(5)).unwrap());
}
