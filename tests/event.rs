//! `Event`: the tutorial's start gun for 8 pinned processes, set/clear/is_set, timed waits
//! (false, never early), and a set/clear pulse that still wakes every waiter.

mod common;

use std::time::{Duration, Instant};

use common::{TEST_LIMIT, eventually, fork_child, watchdog};
use multiproc::{Event, Process, ProcessBuilder, RawValue, process_cpu_count};

static_assertions::assert_impl_all!(Event: Send, Sync, Clone);

/// Whether process `pid` is blocked inside a futex system call (read from /proc).
fn asleep_in_futex(pid: libc::pid_t) -> bool {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/syscall")) else { return false };
    text.split_whitespace().next().and_then(|n| n.parse::<libc::c_long>().ok())
        == Some(libc::SYS_futex)
}

#[test]
fn set_clear_and_is_set() {
    let e = Event::new().unwrap();
    assert!(!e.is_set());
    e.set();
    assert!(e.is_set());
    e.set();
    assert!(e.is_set());
    e.wait();
    assert!(e.wait_timeout(Duration::ZERO));
    e.clear();
    assert!(!e.is_set());
    e.clear();
    assert!(!e.is_set());
    assert!(!e.wait_timeout(Duration::ZERO));
    // Clones are the same event.
    let c = e.clone();
    c.set();
    assert!(e.is_set());
}

#[test]
fn a_timed_wait_returns_false_and_is_never_early() {
    let _w = watchdog(TEST_LIMIT);
    let e = Event::new().unwrap();
    for ms in [1u64, 10, 50] {
        let t = Duration::from_millis(ms);
        let start = Instant::now();
        assert!(!e.wait_timeout(t));
        assert!(start.elapsed() >= t, "wait({t:?}) returned after {:?}", start.elapsed());
    }
}

#[test]
fn start_gun_for_8_pinned_processes() {
    let _w = watchdog(TEST_LIMIT);
    // The tutorial pins worker i to CPU `i % cpus`; take the CPUs this process may use, so a
    // restricted affinity mask (taskset, containers) still works.
    let allowed: Vec<usize> =
        multiproc::sys::affinity::sched_getaffinity(None).unwrap().iter().collect();
    assert_eq!(allowed.len(), process_cpu_count());
    let start_event = Event::new().unwrap();
    let waiting = RawValue::new(0u32).unwrap();
    let fired = RawValue::new(0u32).unwrap();
    let workers: Vec<_> = (0..8u64)
        .map(|i| {
            let (start_event, waiting, fired) =
                (start_event.clone(), waiting.clone(), fired.clone());
            ProcessBuilder::new()
                .cpu(allowed[(i as usize) % allowed.len()])
                .spawn(move || {
                    waiting.fetch_add(1);
                    let ok = start_event.wait_timeout(Duration::from_secs(60));
                    // Nobody got through before the gun.
                    let gun_fired = fired.load() == 1;
                    let pinned = multiproc::sys::affinity::sched_getaffinity(None)
                        .is_ok_and(|set| set.count() == 1);
                    let n = 12_500u64;
                    let sum: u64 = (i * n + 1..=(i + 1) * n).sum();
                    (ok && gun_fired && pinned, sum)
                })
                .unwrap()
        })
        .collect();
    assert!(eventually(TEST_LIMIT, || waiting.load() == 8));
    assert!(workers.iter().all(|w| w.is_alive()));
    fired.store(1);
    start_event.set();
    let mut total = 0;
    for w in &workers {
        let (ok, sum) = w.join().unwrap();
        assert!(ok);
        total += sum;
    }
    assert_eq!(total, (1..=100_000u64).sum::<u64>());
}

#[test]
fn a_waiter_in_another_process_wakes_on_set() {
    let _w = watchdog(TEST_LIMIT);
    let e = Event::new().unwrap();
    let ready = RawValue::new(0u32).unwrap();
    let child = {
        let (e, ready) = (e.clone(), ready.clone());
        fork_child(move || {
            ready.store(1);
            if e.wait_timeout(TEST_LIMIT) { 0 } else { 1 }
        })
    };
    assert!(eventually(TEST_LIMIT, || ready.load() == 1));
    e.set();
    child.join_ok();
}

#[test]
fn a_set_then_clear_pulse_still_wakes_every_sleeping_waiter() {
    let _w = watchdog(TEST_LIMIT);
    let e = Event::new().unwrap();
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let e = e.clone();
            let p = Process::new(move || e.wait_timeout(TEST_LIMIT));
            p.start().unwrap();
            p
        })
        .collect();
    // Asleep in the kernel, so the pulse cannot simply be seen in passing.
    let pids: Vec<_> = waiters.iter().map(|w| w.pid().unwrap().as_raw_nonzero().get()).collect();
    assert!(eventually(TEST_LIMIT, || pids.iter().all(|&p| asleep_in_futex(p))));
    e.set();
    e.clear();
    for w in &waiters {
        assert!(w.join().unwrap());
    }
    assert!(!e.is_set());
}

#[test]
fn a_waiter_killed_while_waiting_blocks_nobody() {
    let _w = watchdog(TEST_LIMIT);
    let e = Event::new().unwrap();
    let mut victim = {
        let e = e.clone();
        fork_child(move || {
            e.wait();
            0
        })
    };
    assert!(eventually(TEST_LIMIT, || asleep_in_futex(victim.pid)));
    victim.kill_and_reap();
    let survivor = {
        let e = e.clone();
        fork_child(move || if e.wait_timeout(TEST_LIMIT) { 0 } else { 1 })
    };
    e.set();
    survivor.join_ok();
}
