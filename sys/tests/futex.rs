//! `multiproc_sys::sync::futex`: shared futexes wake waiters in other processes, private ones do
//! not, and waits honour values and deadlines.
//!
//! Children only touch atomics in a `SharedPage`, call the crate's futex wrappers (raw
//! syscalls), read the monotonic clock and `_exit`: all async-signal-safe, as a child forked
//! from the multithreaded test harness requires.

mod common;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{SharedPage, TEST_LIMIT, eventually, fork_child, watchdog};
use multiproc_sys::Errno;
use multiproc_sys::sync::futex::{
    futex_wait, futex_wait_private, futex_wake, futex_wake_all, futex_wake_one, futex_wake_private,
};
use multiproc_sys::time::Deadline;

/// A deadline far enough away that only a broken test reaches it (the watchdog fires later).
fn generous() -> Deadline {
    Deadline::after(Some(Duration::from_secs(20)))
}

/// Shared atomics at fixed offsets of a page.
struct Words<'a> {
    word: &'a AtomicU32,
    flag: &'a AtomicU32,
    count: &'a AtomicU32,
    data: &'a AtomicU64,
}

fn words(page: &SharedPage) -> Words<'_> {
    // SAFETY: atomics are valid when zero, fit in the page, and the offsets are aligned.
    unsafe {
        Words { word: page.get(0), flag: page.get(4), count: page.get(8), data: page.get(16) }
    }
}

/// The scheduler state letter of a (single-threaded) child, from `/proc/<pid>/stat`.
fn proc_state(pid: libc::pid_t) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ...": comm may contain anything, so look after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.trim_start().chars().next()
}

#[test]
fn shared_wake_from_the_parent_reaches_a_child_waiting_on_a_shared_page() {
    let _w = watchdog(TEST_LIMIT);
    let page = SharedPage::new(4096);
    let w = words(&page);
    let child = fork_child(|| {
        let deadline = generous();
        while w.word.load(Ordering::Acquire) == 0 {
            match futex_wait(w.word, 0, deadline) {
                Ok(()) => {
                    w.count.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => return 1,
            }
        }
        // The parent's Release store of `word` published `data`.
        if w.data.load(Ordering::Relaxed) != 42 {
            return 2;
        }
        0
    });

    // A wake that finds a waiter proves the child is asleep on the shared key. The word is still
    // 0, so the child counts the wake-up and goes back to sleep.
    assert!(
        eventually(Duration::from_secs(10), || futex_wake_one(w.word).unwrap()),
        "the child never slept on the shared futex, or a shared wake did not reach it"
    );
    assert!(eventually(Duration::from_secs(10), || w.count.load(Ordering::Relaxed) >= 1));

    w.data.store(42, Ordering::Relaxed);
    w.word.store(1, Ordering::Release);
    futex_wake_all(w.word).unwrap();
    child.join_ok();
}

#[test]
fn shared_wake_from_a_child_reaches_the_parent_waiting_on_a_shared_page() {
    let _w = watchdog(TEST_LIMIT);
    let page = SharedPage::new(4096);
    let w = words(&page);
    let child = fork_child(|| {
        let deadline = generous();
        // Wake until a wake finds the parent asleep: proof that it crossed the processes.
        loop {
            match futex_wake_one(w.word) {
                Ok(true) => break,
                Ok(false) => {}
                Err(_) => return 1,
            }
            if deadline.has_expired() {
                return 2;
            }
            std::thread::yield_now();
        }
        w.flag.store(1, Ordering::Relaxed);
        w.data.store(7, Ordering::Relaxed);
        w.word.store(1, Ordering::Release);
        match futex_wake_all(w.word) {
            Ok(_) => 0,
            Err(_) => 3,
        }
    });

    let deadline = generous();
    let mut returns = 0;
    while w.word.load(Ordering::Acquire) == 0 {
        futex_wait(w.word, 0, deadline).expect("parent was never woken");
        returns += 1;
    }
    assert!(returns >= 1, "the parent never slept");
    assert_eq!(w.flag.load(Ordering::Relaxed), 1, "the child's wake never found the parent");
    assert_eq!(w.data.load(Ordering::Relaxed), 7);
    child.join_ok();
}

#[test]
fn wake_all_wakes_every_sleeping_child_and_zero_wakes_none() {
    let _w = watchdog(TEST_LIMIT);
    let page = SharedPage::new(4096);
    let w = words(&page);
    const CHILDREN: usize = 3;
    let children: Vec<_> = (0..CHILDREN)
        .map(|_| {
            fork_child(|| {
                let deadline = generous();
                w.count.fetch_add(1, Ordering::Release);
                // From here on the child's only blocking call is this futex wait.
                while w.word.load(Ordering::Acquire) == 0 {
                    if futex_wait(w.word, 0, deadline).is_err() {
                        return 1;
                    }
                }
                0
            })
        })
        .collect();

    let all_asleep = eventually(Duration::from_secs(10), || {
        w.count.load(Ordering::Acquire) == CHILDREN as u32
            && children.iter().all(|c| proc_state(c.pid) == Some('S'))
    });
    assert!(all_asleep, "the children never all went to sleep on the futex");

    // The kernel would wake one waiter for a count of 0; the wrapper wakes none.
    assert_eq!(futex_wake(w.word, 0), Ok(0));
    w.word.store(1, Ordering::Release);
    // The kernel would read u32::MAX as -1 and wake one; the wrapper means "all".
    assert_eq!(futex_wake(w.word, u32::MAX), Ok(CHILDREN));
    for child in children {
        child.join_ok();
    }
}

#[test]
fn private_wake_does_not_reach_a_waiter_in_another_process() {
    let _w = watchdog(TEST_LIMIT);
    let page = SharedPage::new(4096);
    let w = words(&page);
    const WAIT: Duration = Duration::from_millis(300);
    let child = fork_child(|| {
        let start = Instant::now();
        let deadline = Deadline::after(Some(WAIT));
        w.flag.store(1, Ordering::Release);
        let mut wakes = 0;
        let outcome = loop {
            match futex_wait_private(w.word, 0, deadline) {
                // Only a wake from this (single-threaded) process could end a private wait.
                Ok(()) => wakes += 1,
                Err(e) => break e,
            }
        };
        w.count.store(wakes, Ordering::Relaxed);
        w.data.store(1, Ordering::Release);
        if outcome != Errno::TIMEDOUT {
            return 1;
        }
        if start.elapsed() < WAIT {
            return 2;
        }
        0
    });

    assert!(eventually(Duration::from_secs(10), || w.flag.load(Ordering::Acquire) == 1));
    // Keep waking privately (the word never changes) for as long as the child waits.
    let mut found = 0;
    let mut calls = 0;
    loop {
        found += futex_wake_private(w.word, u32::MAX).unwrap();
        calls += 1;
        if w.data.load(Ordering::Acquire) == 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(1)); // pacing only
    }
    assert!(calls >= 1);
    assert_eq!(found, 0, "a private wake in the parent found a waiter");
    assert_eq!(w.count.load(Ordering::Relaxed), 0, "the child's private wait was woken");
    child.join_ok();
}

#[test]
fn wait_with_a_value_that_differs_returns_at_once() {
    let _w = watchdog(TEST_LIMIT);
    let page = SharedPage::new(4096);
    let w = words(&page);
    w.word.store(5, Ordering::Relaxed);
    let start = Instant::now();
    assert_eq!(futex_wait(w.word, 4, Deadline::FOREVER), Ok(()));
    assert_eq!(futex_wait_private(w.word, 4, Deadline::FOREVER), Ok(()));
    // Expired deadline, different value: the value check wins, as for a blocking wait.
    assert_eq!(futex_wait(w.word, 4, Deadline::after(Some(Duration::ZERO))), Ok(()));
    assert!(start.elapsed() < Duration::from_secs(5));
}

/// The signature shared by `futex_wait` and `futex_wait_private`.
type WaitFn = fn(&AtomicU32, u32, Deadline) -> multiproc_sys::Result<()>;

#[test]
fn wait_times_out_no_earlier_than_asked() {
    let _w = watchdog(TEST_LIMIT);
    let page = SharedPage::new(4096);
    let w = words(&page);
    let waits: [(&str, WaitFn); 2] = [("shared", futex_wait), ("private", futex_wait_private)];
    for (name, wait) in waits {
        let asked = Duration::from_millis(100);
        let start = Instant::now();
        let deadline = Deadline::after(Some(asked));
        // Loop like a real caller: a spurious wake-up would return Ok early.
        let outcome = loop {
            match wait(w.word, 0, deadline) {
                Ok(()) => continue,
                Err(e) => break e,
            }
        };
        let took = start.elapsed();
        assert_eq!(outcome, Errno::TIMEDOUT, "{name}");
        assert!(took >= asked, "{name} wait timed out after {took:?}, asked {asked:?}");
        assert!(deadline.has_expired(), "{name}");
        assert!(took < Duration::from_secs(10), "{name} wait took {took:?}");
    }
}

#[test]
fn wait_with_an_expired_deadline_times_out_without_sleeping() {
    let _w = watchdog(TEST_LIMIT);
    let word = AtomicU32::new(0);
    let start = Instant::now();
    let zero = Deadline::after(Some(Duration::ZERO));
    assert_eq!(futex_wait(&word, 0, zero), Err(Errno::TIMEDOUT));
    assert_eq!(futex_wait_private(&word, 0, zero), Err(Errno::TIMEDOUT));
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn wake_on_a_word_nobody_waits_on_wakes_nobody() {
    let page = SharedPage::new(4096);
    let w = words(&page);
    assert_eq!(futex_wake(w.word, 1), Ok(0));
    assert_eq!(futex_wake(w.word, 0), Ok(0));
    assert_eq!(futex_wake_one(w.word), Ok(false));
    assert_eq!(futex_wake_all(w.word), Ok(0));
    assert_eq!(futex_wake_private(w.word, u32::MAX), Ok(0));
    let local = AtomicU32::new(0);
    assert_eq!(futex_wake_all(&local), Ok(0));
    assert_eq!(futex_wake_private(&local, 1), Ok(0));
}
