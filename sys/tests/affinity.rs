//! `multiproc_sys::affinity`: the 8192-CPU `CpuSet`, `sched_{set,get}affinity` through the raw
//! syscalls, `sched_getcpu`, and the two CPU counts.
//!
//! Affinity is only ever changed in forked children (the test harness's own threads keep their
//! masks). Children call only raw syscalls, `sched_getcpu`, `sched_yield` and atomics:
//! async-signal-safe, no allocation.

mod common;

use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering::{Acquire, Release};

use multiproc_sys::affinity::{
    CpuSet, MAX_CPUS, cpu_count, process_cpu_count, sched_getaffinity, sched_getcpu,
    sched_setaffinity,
};
use multiproc_sys::{Errno, Pid};

/// The CPUs the test thread may use; children pick from these.
fn allowed() -> CpuSet {
    let set = sched_getaffinity(None).expect("sched_getaffinity(self)");
    assert!(!set.is_empty());
    set
}

/// Child side of a handshake: raise `flag` to 1, then wait until the parent raises `go`.
/// `sched_yield` is async-signal-safe; a parent that dies or panics kills the child
/// (PDEATHSIG, `Child::drop`).
fn child_handshake(ready: &AtomicU32, go: &AtomicU32) {
    ready.store(1, Release);
    while go.load(Acquire) == 0 {
        std::thread::yield_now();
    }
}

#[test]
fn cpu_set_round_trips_set_unset_count_and_iter_beyond_1024_cpus() {
    let mut set = CpuSet::new();
    assert!(set.is_empty());
    assert_eq!(set.count(), 0);
    assert_eq!(set.first(), None);

    for cpu in [3, 0, 5000, 1024, 1023, MAX_CPUS - 1, 64, 63] {
        set.set(cpu).unwrap();
    }
    set.set(5000).unwrap(); // setting twice is a no-op
    assert_eq!(set.count(), 8);
    assert!(set.iter().eq([0, 3, 63, 64, 1023, 1024, 5000, MAX_CPUS - 1]));
    assert!(set.is_set(5000) && set.is_set(1024) && !set.is_set(4999) && !set.is_set(1));
    assert_eq!(set.first(), Some(0));
    assert_eq!(set.last(), Some(MAX_CPUS - 1));

    set.unset(5000);
    set.unset(7); // not in the set: nothing happens
    assert!(!set.is_set(5000));
    assert_eq!(set.count(), 7);
    assert_eq!((&set).into_iter().count(), 7);

    let copy = set;
    assert_eq!(copy, set);
    set.clear();
    assert!(set.is_empty());
    assert_ne!(copy, set);
    assert_eq!(set, CpuSet::default());
}

#[test]
fn cpus_at_or_beyond_max_cpus_are_an_error_never_a_panic() {
    let mut set = CpuSet::from_cpus(&[1]).unwrap();
    assert_eq!(set.set(MAX_CPUS), Err(Errno::INVAL));
    assert_eq!(set.set(usize::MAX), Err(Errno::INVAL));
    assert_eq!(set, CpuSet::from_cpus(&[1]).unwrap(), "a failed set changes nothing");
    assert!(!set.is_set(MAX_CPUS) && !set.is_set(usize::MAX));
    set.unset(usize::MAX);
    assert_eq!(set.count(), 1);
    assert_eq!(CpuSet::from_cpus(&[0, MAX_CPUS]), Err(Errno::INVAL));
    assert!(CpuSet::from_cpus(&[MAX_CPUS - 1]).is_ok());
}

#[test]
fn debug_prints_compact_ranges() {
    let show = |cpus: &[usize]| format!("{:?}", CpuSet::from_cpus(cpus).unwrap());
    assert_eq!(show(&[]), "{}");
    assert_eq!(show(&[5]), "{5}");
    assert_eq!(show(&[0, 1, 2, 3, 7]), "{0-3,7}");
    assert_eq!(show(&[0, 2, 4]), "{0,2,4}");
    assert_eq!(show(&[62, 63, 64, 65, 5000]), "{62-65,5000}");
    assert_eq!(format!("{:?}", CpuSet::full()), "{0-8191}");
    assert_eq!(CpuSet::full().count(), MAX_CPUS);
}

#[test]
fn own_affinity_is_non_empty_and_holds_the_current_cpu() {
    let set = allowed();
    let cpu = sched_getcpu().unwrap();
    // The thread may migrate between the two calls, but only within its mask.
    assert!(set.is_set(cpu), "running on cpu {cpu}, outside the allowed set {set:?}");
    assert_eq!(sched_getaffinity(None).unwrap(), set, "no test changes the harness's mask");
}

#[test]
fn process_cpu_count_is_at_least_one_and_at_most_cpu_count() {
    let n = cpu_count();
    let p = process_cpu_count();
    assert!(n >= 1);
    assert!(p >= 1);
    assert!(p <= n, "process_cpu_count {p} > cpu_count {n}");
    assert_eq!(p, allowed().count());
}

#[test]
fn setting_an_empty_set_is_einval() {
    // Fails before changing anything, so it is safe in the harness's own thread.
    assert_eq!(sched_setaffinity(None, &CpuSet::new()), Err(Errno::INVAL));
    // A set of CPUs that do not exist is empty once the kernel drops them.
    let ghosts = CpuSet::from_cpus(&[MAX_CPUS - 1]).unwrap();
    if cpu_count() < MAX_CPUS - 1 {
        assert_eq!(sched_setaffinity(None, &ghosts), Err(Errno::INVAL));
    }
}

#[test]
fn getaffinity_of_a_nonexistent_pid_is_esrch() {
    // PID_MAX_LIMIT is 2^22: no process can have this id.
    let nobody = Pid::from_raw(i32::MAX).unwrap();
    assert_eq!(sched_getaffinity(Some(nobody)), Err(Errno::SRCH));
    assert_eq!(sched_setaffinity(Some(nobody), &allowed()), Err(Errno::SRCH));
}

#[test]
fn child_pinned_to_one_cpu_reads_it_back_runs_there_and_the_parent_sees_it() {
    let _w = common::watchdog(common::TEST_LIMIT);
    let parent_set = allowed();
    // The highest allowed CPU: not the default CPU 0 where possible.
    let cpu = parent_set.last().unwrap();
    let pinned = CpuSet::from_cpus(&[cpu]).unwrap();

    let page = common::SharedPage::new(4096);
    // SAFETY: zero is a valid AtomicU32; offsets are aligned and inside the page.
    let (ready, go) = unsafe { (page.get::<AtomicU32>(0), page.get::<AtomicU32>(4)) };

    let child = common::fork_child(|| {
        if sched_setaffinity(None, &pinned).is_err() {
            return 2;
        }
        match sched_getaffinity(None) {
            Ok(set) if set == pinned => {}
            _ => return 3,
        }
        // The kernel migrates the thread before sched_setaffinity returns: every reading
        // from now on is the pinned CPU.
        for _ in 0..1000 {
            if sched_getcpu() != Ok(cpu) {
                return 4;
            }
            std::thread::yield_now();
        }
        child_handshake(ready, go);
        // Still pinned after the parent looked.
        if sched_getaffinity(None) != Ok(pinned) {
            return 5;
        }
        0
    });

    assert!(
        common::eventually(common::TEST_LIMIT, || ready.load(Acquire) == 1),
        "child never got ready"
    );
    let child_pid = Pid::from_raw(child.pid).unwrap();
    let seen = sched_getaffinity(Some(child_pid)).unwrap();
    go.store(1, Release);
    child.join_ok();
    assert_eq!(seen, pinned, "parent reads the child's mask as {seen:?}, expected {pinned:?}");
    // The parent's own mask is untouched.
    assert_eq!(sched_getaffinity(None).unwrap(), parent_set);
}

#[test]
fn parent_pins_a_child_by_pid_and_the_child_runs_there() {
    let _w = common::watchdog(common::TEST_LIMIT);
    let cpu = allowed().first().unwrap();
    let pinned = CpuSet::from_cpus(&[cpu]).unwrap();

    let page = common::SharedPage::new(4096);
    // SAFETY: zero is a valid AtomicU32; offsets are aligned and inside the page.
    let (ready, go) = unsafe { (page.get::<AtomicU32>(0), page.get::<AtomicU32>(4)) };

    let child = common::fork_child(|| {
        child_handshake(ready, go);
        // The parent's sched_setaffinity completed (it migrated us) before it raised `go`.
        if sched_getaffinity(None) != Ok(pinned) {
            return 2;
        }
        if sched_getcpu() != Ok(cpu) {
            return 3;
        }
        0
    });

    assert!(
        common::eventually(common::TEST_LIMIT, || ready.load(Acquire) == 1),
        "child never got ready"
    );
    let child_pid = Pid::from_raw(child.pid).unwrap();
    sched_setaffinity(Some(child_pid), &pinned).unwrap();
    assert_eq!(sched_getaffinity(Some(child_pid)).unwrap(), pinned);
    go.store(1, Release);
    child.join_ok();
}

#[test]
fn a_mask_with_cpus_past_1024_is_accepted_and_trimmed_to_existing_cpus() {
    let _w = common::watchdog(common::TEST_LIMIT);
    let parent_set = allowed();
    let cpu = parent_set.last().unwrap();
    if cpu_count() > 5000 {
        eprintln!("skipped: this machine has CPU 5000");
        return;
    }

    let child = common::fork_child(|| {
        // libc's cpu_set_t cannot even express CPU 5000 or 8191.
        let mut wide = CpuSet::from_cpus(&[cpu]).unwrap();
        if wide.set(5000).is_err() || wide.set(MAX_CPUS - 1).is_err() {
            return 2;
        }
        if sched_setaffinity(None, &wide).is_err() {
            return 3;
        }
        match sched_getaffinity(None) {
            Ok(set) if set.iter().eq([cpu]) => {}
            _ => return 4,
        }
        // The full set means "anything allowed": at least everything the parent may use.
        if sched_setaffinity(None, &CpuSet::full()).is_err() {
            return 5;
        }
        match sched_getaffinity(None) {
            Ok(set) if parent_set.iter().all(|c| set.is_set(c)) && set.last() < Some(5000) => 0,
            _ => 6,
        }
    });
    child.join_ok();
}
