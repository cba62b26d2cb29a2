//! Cross-process behaviour of `Barrier`.
//!
//! Most children are forked with `common::fork_child` and do only async-signal-safe work:
//! atomics in shared memory and the barrier's own calls (a robust pthread mutex, futex system
//! calls, and reads of `/proc/<pid>/stat` into a stack buffer). The test whose action panics
//! uses `multiproc::Process`, whose children may allocate.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::{Exit, SharedPage, TEST_LIMIT, eventually, fork_child, watchdog};
use multiproc::{Barrier, BarrierError, Process};

/// Exit codes for a child's `wait` result.
fn code(r: Result<usize, BarrierError>) -> i32 {
    match r {
        Ok(i) => i as i32,
        Err(BarrierError::Broken) => 50,
        Err(BarrierError::Timeout) => 51,
        Err(_) => 52,
    }
}
const BROKEN: Exit = Exit::Code(50);

fn wait_for_waiters(b: &Barrier, n: usize) {
    assert!(
        eventually(Duration::from_secs(10), || b.n_waiting() == n),
        "expected {n} waiting, have {}",
        b.n_waiting()
    );
}

#[test]
fn generations_stay_in_lockstep_over_1000_rounds() {
    let _w = watchdog(TEST_LIMIT);
    const PARTIES: usize = 3;
    const ROUNDS: u32 = 1000;
    // Layout: [0] action runs, [4..16] each party's round, [64..] per-round index masks.
    let page = Arc::new(SharedPage::new(64 + 4 * ROUNDS as usize));
    let p = Arc::clone(&page);
    let barrier = Barrier::with_action(PARTIES, move || {
        // SAFETY: a zeroed atomic at offset 0.
        unsafe { p.get::<AtomicU32>(0) }.fetch_add(1, Ordering::SeqCst);
    })
    .unwrap();

    let run = |me: usize| -> i32 {
        // SAFETY: zeroed atomics at aligned offsets inside the page.
        let actions = unsafe { page.get::<AtomicU32>(0) };
        // SAFETY: as above (`i < PARTIES`, so the offset is below 16).
        let round = |i: usize| unsafe { page.get::<AtomicU32>(4 + 4 * i) };
        for r in 0..ROUNDS {
            round(me).store(r, Ordering::SeqCst);
            let index = match barrier.wait() {
                Ok(i) if i < PARTIES => i,
                _ => return 1,
            };
            // SAFETY: as above.
            unsafe { page.get::<AtomicU32>(64 + 4 * r as usize) }
                .fetch_or(1 << index, Ordering::SeqCst);
            // Everyone reached round r; nobody is beyond r + 1.
            for i in 0..PARTIES {
                let theirs = round(i).load(Ordering::SeqCst);
                if theirs < r || theirs > r + 1 {
                    return 2;
                }
            }
            // The action ran exactly once for each round so far, before this release.
            if actions.load(Ordering::SeqCst) != r + 1 {
                return 3;
            }
        }
        0
    };
    let children: Vec<_> = (1..PARTIES).map(|me| fork_child(|| run(me))).collect();
    assert_eq!(run(0), 0);
    for c in children {
        c.join_ok();
    }
    // SAFETY: as above.
    assert_eq!(unsafe { page.get::<AtomicU32>(0) }.load(Ordering::SeqCst), ROUNDS);
    for r in 0..ROUNDS as usize {
        // SAFETY: as above.
        let mask = unsafe { page.get::<AtomicU32>(64 + 4 * r) }.load(Ordering::SeqCst);
        assert_eq!(mask, 0b111, "round {r}: arrival indices are a permutation of 0..3");
    }
    assert!(!barrier.broken());
    assert_eq!(barrier.n_waiting(), 0);
}

#[test]
fn barrier_of_one_returns_zero_at_once_and_runs_the_action_each_time() {
    let runs = Arc::new(AtomicU32::new(0));
    let r = Arc::clone(&runs);
    let b = Barrier::with_action(1, move || {
        r.fetch_add(1, Ordering::SeqCst);
    })
    .unwrap();
    let start = Instant::now();
    for _ in 0..10 {
        assert_eq!(b.wait_timeout(Duration::ZERO).unwrap(), 0);
    }
    assert_eq!(b.wait().unwrap(), 0);
    assert!(start.elapsed() < Duration::from_secs(1));
    assert_eq!(runs.load(Ordering::SeqCst), 11);
    assert_eq!(b.parties(), 1);
    assert!(!b.broken());
}

#[test]
fn zero_parties_is_an_invalid_argument() {
    let e = Barrier::new(0).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    assert!(Barrier::builder(0).build().is_err());
}

#[test]
fn a_timeout_breaks_the_barrier_for_everyone() {
    let _w = watchdog(TEST_LIMIT);
    let b = Barrier::new(3).unwrap();
    let bc = b.clone();
    let child = fork_child(move || code(bc.wait()));
    wait_for_waiters(&b, 1);
    let t = Duration::from_millis(100);
    let start = Instant::now();
    assert!(matches!(b.wait_timeout(t), Err(BarrierError::Timeout)));
    assert!(start.elapsed() >= t, "timed out early: {:?}", start.elapsed());
    assert_eq!(child.wait(Duration::from_secs(10)), BROKEN);
    assert!(b.broken());
    assert_eq!(b.n_waiting(), 0);
    // Later callers too, until reset.
    assert!(matches!(b.wait(), Err(BarrierError::Broken)));
    b.reset().unwrap();
    assert!(!b.broken());
}

#[test]
fn a_zero_timeout_breaks_the_barrier_at_once() {
    let b = Barrier::new(2).unwrap();
    let start = Instant::now();
    assert!(matches!(b.wait_timeout(Duration::ZERO), Err(BarrierError::Timeout)));
    assert!(start.elapsed() < Duration::from_secs(1));
    assert!(b.broken());
    assert!(matches!(b.wait_timeout(Duration::ZERO), Err(BarrierError::Broken)));
}

#[test]
fn the_default_timeout_applies_when_wait_gets_none() {
    let b = Barrier::builder(2).timeout(Duration::from_millis(30)).build().unwrap();
    assert_eq!(b.timeout(), Some(Duration::from_millis(30)));
    let start = Instant::now();
    assert!(matches!(b.wait(), Err(BarrierError::Timeout)));
    assert!(start.elapsed() >= Duration::from_millis(30));
    assert!(b.broken());
}

#[test]
fn abort_breaks_waiters_and_later_callers_until_reset() {
    let _w = watchdog(TEST_LIMIT);
    let b = Barrier::new(2).unwrap();
    let bc = b.clone();
    let child = fork_child(move || code(bc.wait()));
    wait_for_waiters(&b, 1);
    b.abort().unwrap();
    assert_eq!(child.wait(Duration::from_secs(10)), BROKEN);
    assert!(b.broken());
    assert!(matches!(b.wait(), Err(BarrierError::Broken)));

    b.reset().unwrap();
    assert!(!b.broken());
    let bc = b.clone();
    let child = fork_child(move || code(bc.wait_timeout(Duration::from_secs(20))));
    let mine = b.wait_timeout(Duration::from_secs(20)).unwrap();
    let Exit::Code(theirs) = child.wait(Duration::from_secs(10)) else { panic!("child killed") };
    let mut both = [mine as i32, theirs];
    both.sort();
    assert_eq!(both, [0, 1], "a fresh cycle after reset");
}

#[test]
fn reset_fails_the_waiters_and_leaves_an_empty_unbroken_barrier() {
    let _w = watchdog(TEST_LIMIT);
    let b = Barrier::new(3).unwrap();
    let children: Vec<_> = (0..2)
        .map(|_| {
            let bc = b.clone();
            fork_child(move || code(bc.wait()))
        })
        .collect();
    wait_for_waiters(&b, 2);
    b.reset().unwrap();
    for c in children {
        assert_eq!(c.wait(Duration::from_secs(10)), BROKEN);
    }
    assert!(!b.broken());
    assert_eq!(b.n_waiting(), 0);

    // Full cycles work again.
    for _ in 0..3 {
        let children: Vec<_> = (0..2)
            .map(|_| {
                let bc = b.clone();
                fork_child(move || code(bc.wait_timeout(Duration::from_secs(20))))
            })
            .collect();
        let mut seen = vec![b.wait_timeout(Duration::from_secs(20)).unwrap() as i32];
        for c in children {
            let Exit::Code(i) = c.wait(Duration::from_secs(10)) else { panic!("child killed") };
            seen.push(i);
        }
        seen.sort();
        assert_eq!(seen, [0, 1, 2]);
    }
}

#[test]
fn a_party_killed_inside_wait_breaks_the_barrier_promptly() {
    let _w = watchdog(TEST_LIMIT);
    for reap in [false, true] {
        let b = Barrier::new(3).unwrap();
        let bc = b.clone();
        let mut victim = fork_child(move || code(bc.wait()));
        wait_for_waiters(&b, 1);
        let bc = b.clone();
        let survivor = fork_child(move || code(bc.wait()));
        wait_for_waiters(&b, 2);

        let start = Instant::now();
        if reap {
            victim.kill_and_reap();
        } else {
            // Left as a zombie until the end of the iteration: dead all the same.
            // SAFETY: plain kill(2) of our own child.
            assert_eq!(unsafe { libc::kill(victim.pid, libc::SIGKILL) }, 0);
        }
        assert_eq!(survivor.wait(Duration::from_secs(10)), BROKEN);
        let took = start.elapsed();
        eprintln!("killed party noticed after {took:?}");
        assert!(took < Duration::from_secs(3), "broken only after {took:?}");
        assert!(b.broken());
        assert!(matches!(b.wait(), Err(BarrierError::Broken)));
        drop(victim);

        // Reset makes it usable again, without the dead party.
        b.reset().unwrap();
        let bc = b.clone();
        let c1 = fork_child(move || code(bc.wait_timeout(Duration::from_secs(20))));
        let bc = b.clone();
        let c2 = fork_child(move || code(bc.wait_timeout(Duration::from_secs(20))));
        let mine = b.wait_timeout(Duration::from_secs(20)).unwrap();
        assert!(mine < 3);
        for c in [c1, c2] {
            assert!(matches!(c.wait(Duration::from_secs(10)), Exit::Code(0..=2)));
        }
    }
}

#[test]
fn a_panicking_action_breaks_the_barrier_and_panics_only_in_its_party() {
    let _w = watchdog(TEST_LIMIT);
    let b = Barrier::with_action(3, || panic!("action failed")).unwrap();
    // 0: Ok, 1: Broken, 2: the action's panic, 3: anything else.
    let party = |b: Barrier| -> u8 {
        match catch_unwind(AssertUnwindSafe(|| b.wait_timeout(Duration::from_secs(20)))) {
            Ok(Ok(_)) => 0,
            Ok(Err(BarrierError::Broken)) => 1,
            Err(_) => 2,
            Ok(Err(_)) => 3,
        }
    };
    let procs: Vec<Process<u8>> = (0..2)
        .map(|_| {
            let bc = b.clone();
            Process::new(move || party(bc))
        })
        .collect();
    for p in &procs {
        p.start().unwrap();
    }
    let mut outcomes = vec![party(b.clone())];
    for p in &procs {
        outcomes.push(p.join_timeout(Duration::from_secs(20)).unwrap());
    }
    outcomes.sort();
    assert_eq!(outcomes, [1, 1, 2], "one party panics, the others see a broken barrier");
    assert!(b.broken());
}

#[test]
fn n_waiting_counts_the_parties_of_the_current_cycle() {
    let _w = watchdog(TEST_LIMIT);
    let b = Barrier::new(3).unwrap();
    assert_eq!(b.n_waiting(), 0);
    let bc = b.clone();
    let c1 = fork_child(move || code(bc.wait_timeout(Duration::from_secs(20))));
    wait_for_waiters(&b, 1);
    let bc = b.clone();
    let c2 = fork_child(move || code(bc.wait_timeout(Duration::from_secs(20))));
    wait_for_waiters(&b, 2);
    assert_eq!(b.wait().unwrap(), 2, "the last to arrive gets parties - 1");
    assert_eq!(c1.wait(Duration::from_secs(10)), Exit::Code(0));
    assert_eq!(c2.wait(Duration::from_secs(10)), Exit::Code(1));
    assert!(eventually(Duration::from_secs(10), || b.n_waiting() == 0));
    assert!(format!("{b:?}").starts_with("Barrier { parties: 3"));
}

#[test]
fn a_party_that_dies_running_the_action_breaks_the_barrier() {
    let _w = watchdog(TEST_LIMIT);
    // The action ends whichever process runs it: the last to arrive, here the third child.
    // SAFETY: `_exit` is async-signal-safe and ends the process at once.
    let b = Barrier::with_action(3, || unsafe { libc::_exit(7) }).unwrap();
    let waiters: Vec<_> = (1..=2)
        .map(|n| {
            let bc = b.clone();
            let c = fork_child(move || code(bc.wait()));
            wait_for_waiters(&b, n);
            c
        })
        .collect();
    let bc = b.clone();
    let last = fork_child(move || code(bc.wait()));
    assert_eq!(last.wait(Duration::from_secs(10)), Exit::Code(7));
    for c in waiters {
        assert_eq!(c.wait(Duration::from_secs(10)), BROKEN);
    }
    assert!(b.broken());
}

#[test]
fn threads_of_one_process_can_be_parties_too() {
    let _w = watchdog(TEST_LIMIT);
    let runs = Arc::new(AtomicU32::new(0));
    let r = Arc::clone(&runs);
    let b = Barrier::with_action(4, move || {
        r.fetch_add(1, Ordering::SeqCst);
    })
    .unwrap();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let b = b.clone();
            std::thread::spawn(move || {
                let mut sum = 0;
                for _ in 0..200 {
                    sum += b.wait_timeout(Duration::from_secs(20)).unwrap();
                }
                sum
            })
        })
        .collect();
    let total: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(total, 200 * (1 + 2 + 3));
    assert_eq!(runs.load(Ordering::SeqCst), 200);
}
