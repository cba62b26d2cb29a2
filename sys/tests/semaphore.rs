//! `multiproc_sys::sync::semaphore`: a process-shared `sem_t` in a shared page passes permits
//! between processes, times out on the monotonic clock, and never admits more than its count.
//!
//! Children only use the semaphore (`sem_*`: atomics and futex syscalls on glibc and musl),
//! atomics in the `SharedPage`, the crate's futex wrappers and the monotonic clock, then
//! `_exit`: safe in a child forked from the multithreaded test harness.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::{SharedPage, TEST_LIMIT, eventually, fork_child, watchdog};
use multiproc_sys::Errno;
use multiproc_sys::sync::futex::{futex_wait, futex_wake_all};
use multiproc_sys::sync::semaphore::{RawSemaphore, SEM_VALUE_MAX};
use multiproc_sys::time::Deadline;

/// Where the semaphores go in the test page; the atomics start at [`ATOMICS`].
const SEM_SLOT: usize = 64;
const ATOMICS: usize = 2048;

/// A deadline far enough away that only a broken test reaches it (the watchdog fires later).
fn generous() -> Deadline {
    Deadline::after(Some(Duration::from_secs(20)))
}

/// Initialises semaphore number `index` of `page` with `value` and borrows it.
fn sem(page: &SharedPage, index: usize, value: u32) -> &RawSemaphore {
    let slot = try_init(page, index, value).expect("sem_init");
    // SAFETY: initialised just above, in shared memory that outlives the borrow; never moved.
    unsafe { &*slot }
}

/// `RawSemaphore::init` on slot `index` of `page`, returning the slot pointer.
fn try_init(
    page: &SharedPage,
    index: usize,
    value: u32,
) -> multiproc_sys::Result<*mut RawSemaphore> {
    assert!(std::mem::size_of::<RawSemaphore>() <= SEM_SLOT);
    // SAFETY: a `sem_t` is plain bytes, the slot fits in the page below `ATOMICS`, and `get`
    // checks the alignment. The bytes sit in an `UnsafeCell`, so writing through a pointer
    // derived from this shared reference is allowed.
    let slot: &RawSemaphore = unsafe { page.get(index * SEM_SLOT) };
    assert!((index + 1) * SEM_SLOT <= ATOMICS);
    let slot = std::ptr::from_ref(slot).cast_mut();
    // SAFETY: valid, aligned, `MAP_SHARED` memory that no one uses yet; children are forked
    // only after this returns.
    unsafe { RawSemaphore::init(slot, value) }?;
    Ok(slot)
}

/// Shared atomic number `index`, after the semaphores.
fn atomic(page: &SharedPage, index: usize) -> &AtomicU32 {
    // SAFETY: atomics are valid when zero; `get` checks bounds and alignment.
    unsafe { page.get(ATOMICS + 4 * index) }
}

#[test]
fn ping_pong_between_parent_and_child_for_1000_rounds() {
    let _w = watchdog(TEST_LIMIT);
    const ROUNDS: u32 = 1000;
    let page = SharedPage::new(4096);
    let ping = sem(&page, 0, 0);
    let pong = sem(&page, 1, 0);
    let turn = atomic(&page, 0);
    let child = fork_child(|| {
        for i in 0..ROUNDS {
            // Forever: exercises `sem_wait`; the parent's watchdog bounds the test.
            if ping.wait(Deadline::FOREVER).is_err() {
                return 1;
            }
            // Relaxed is enough: sem_post/sem_wait synchronise memory (POSIX 4.12).
            if turn.load(Ordering::Relaxed) != 2 * i + 1 {
                return 2;
            }
            turn.store(2 * i + 2, Ordering::Relaxed);
            if pong.post().is_err() {
                return 3;
            }
        }
        0
    });
    let deadline = generous();
    for i in 0..ROUNDS {
        assert_eq!(turn.load(Ordering::Relaxed), 2 * i);
        turn.store(2 * i + 1, Ordering::Relaxed);
        ping.post().unwrap();
        pong.wait(deadline).unwrap();
        assert_eq!(turn.load(Ordering::Relaxed), 2 * i + 2, "round {i}");
    }
    child.join_ok();
    assert_eq!(ping.value(), Ok(0));
    assert_eq!(pong.value(), Ok(0));
}

#[test]
fn timed_wait_in_the_parent_is_ended_by_a_post_from_a_child() {
    let _w = watchdog(TEST_LIMIT);
    let page = SharedPage::new(4096);
    let s = sem(&page, 0, 0);
    let child = fork_child(|| match s.post() {
        Ok(()) => 0,
        Err(_) => 1,
    });
    assert_eq!(s.wait(generous()), Ok(()));
    child.join_ok();
    assert_eq!(s.value(), Ok(0));
}

#[test]
fn try_wait_on_zero_is_false() {
    let page = SharedPage::new(4096);
    let s = sem(&page, 0, 0);
    assert_eq!(s.try_wait(), Ok(false));
    s.post().unwrap();
    assert_eq!(s.try_wait(), Ok(true));
    assert_eq!(s.try_wait(), Ok(false));
    assert_eq!(s.value(), Ok(0));
}

#[test]
fn timed_wait_times_out_no_earlier_than_asked() {
    let _w = watchdog(TEST_LIMIT);
    let page = SharedPage::new(4096);
    let s = sem(&page, 0, 0);
    let asked = Duration::from_millis(100);
    let start = Instant::now();
    let deadline = Deadline::after(Some(asked));
    assert_eq!(s.wait(deadline), Err(Errno::TIMEDOUT));
    let took = start.elapsed();
    assert!(took >= asked, "timed out after {took:?}, asked {asked:?}");
    assert!(deadline.has_expired());
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(s.value(), Ok(0));
}

#[test]
fn wait_with_an_expired_deadline_tries_once() {
    let _w = watchdog(TEST_LIMIT);
    let page = SharedPage::new(4096);
    let s = sem(&page, 0, 0);
    let start = Instant::now();
    let zero = Deadline::after(Some(Duration::ZERO));
    assert_eq!(s.wait(zero), Err(Errno::TIMEDOUT));
    s.post().unwrap();
    assert_eq!(s.wait(zero), Ok(()));
    assert_eq!(s.wait(zero), Err(Errno::TIMEDOUT));
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn value_tracks_posts_and_waits() {
    let page = SharedPage::new(4096);
    let s = sem(&page, 0, 2);
    assert_eq!(s.value(), Ok(2));
    for expected in 3..=5 {
        s.post().unwrap();
        assert_eq!(s.value(), Ok(expected));
    }
    assert_eq!(s.try_wait(), Ok(true));
    assert_eq!(s.value(), Ok(4));
    s.wait(Deadline::FOREVER).unwrap();
    assert_eq!(s.value(), Ok(3));
    // SAFETY: nobody else uses the semaphore; it is not used after this.
    unsafe { RawSemaphore::destroy(std::ptr::from_ref(s).cast_mut()) };
}

#[test]
fn init_with_a_value_above_sem_value_max_is_einval() {
    let page = SharedPage::new(4096);
    assert_eq!(try_init(&page, 0, SEM_VALUE_MAX + 1).err(), Some(Errno::INVAL));
    assert_eq!(try_init(&page, 0, u32::MAX).err(), Some(Errno::INVAL));
}

#[test]
fn post_at_sem_value_max_is_eoverflow_and_changes_nothing() {
    let page = SharedPage::new(4096);
    let s = sem(&page, 0, SEM_VALUE_MAX);
    assert_eq!(s.value(), Ok(SEM_VALUE_MAX));
    assert_eq!(s.post(), Err(Errno::OVERFLOW));
    assert_eq!(s.value(), Ok(SEM_VALUE_MAX));
    assert_eq!(s.try_wait(), Ok(true));
    assert_eq!(s.post(), Ok(()));
}

#[test]
fn semaphore_of_two_admits_at_most_two_of_five_children() {
    let _w = watchdog(TEST_LIMIT);
    const CHILDREN: u32 = 5;
    const ROUNDS: u32 = 200;
    let page = SharedPage::new(4096);
    let s = sem(&page, 0, 2);
    let inside = atomic(&page, 0);
    let max_inside = atomic(&page, 1);
    let entries = atomic(&page, 2);
    let go = atomic(&page, 3);
    let children: Vec<_> = (0..CHILDREN)
        .map(|_| {
            fork_child(|| {
                let deadline = generous();
                for round in 0..ROUNDS {
                    if s.wait(deadline).is_err() {
                        return 1;
                    }
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    max_inside.fetch_max(now, Ordering::SeqCst);
                    entries.fetch_add(1, Ordering::Relaxed);
                    if round == 0 {
                        // Hold the permit until the parent has seen who got in.
                        while go.load(Ordering::Acquire) == 0 {
                            if futex_wait(go, 0, deadline).is_err() {
                                return 2;
                            }
                        }
                    } else {
                        std::thread::yield_now();
                    }
                    inside.fetch_sub(1, Ordering::SeqCst);
                    if s.post().is_err() {
                        return 3;
                    }
                }
                0
            })
        })
        .collect();

    // Two children get in and hold their permits; the other three must stay out.
    assert!(
        eventually(Duration::from_secs(10), || inside.load(Ordering::SeqCst) == 2),
        "two children never got in at once"
    );
    assert_eq!(s.value(), Ok(0));
    assert_eq!(max_inside.load(Ordering::SeqCst), 2);

    go.store(1, Ordering::Release);
    futex_wake_all(go).unwrap();
    for child in children {
        child.join_ok();
    }
    assert_eq!(max_inside.load(Ordering::SeqCst), 2, "more than two children were inside");
    assert_eq!(inside.load(Ordering::SeqCst), 0);
    assert_eq!(entries.load(Ordering::Relaxed), CHILDREN * ROUNDS);
    assert_eq!(s.value(), Ok(2));
}
