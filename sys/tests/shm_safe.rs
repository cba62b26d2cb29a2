//! `multiproc_sys::mem::shm_safe`: the `ShmSafe` contract (checked at compile time) and atomic
//! access to shared integers through `AtomicInteger`, across forked processes.
//!
//! Children only copy plain data into the shared page and do atomic operations on it:
//! async-signal-safe, no allocation.

mod common;

use std::cell::UnsafeCell;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

use multiproc_sys::affinity::CpuSet;
use multiproc_sys::mem::shm_safe::{AtomicInteger, AtomicOps, ShmSafe};
use static_assertions::{
    assert_eq_align, assert_eq_size, assert_impl_all, assert_not_impl_any, assert_type_eq_all,
};

/// A user type with padding (7 bytes after `tag`), made `ShmSafe` by hand.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
struct Sample {
    tag: u8,
    value: u64,
    ratio: f64,
    history: [i16; 3],
}

// SAFETY: `repr(C)`; all fields are integers, floats or integer arrays, so every bit pattern
// is a valid `Sample`; no pointers, no file descriptors. Padding is allowed by the contract.
unsafe impl ShmSafe for Sample {}

// What may go into shared memory.
assert_impl_all!(u8: ShmSafe);
assert_impl_all!(u64: ShmSafe, AtomicInteger);
assert_impl_all!(i128: ShmSafe);
assert_impl_all!(usize: ShmSafe, AtomicInteger);
assert_impl_all!(isize: ShmSafe, AtomicInteger);
assert_impl_all!(f32: ShmSafe);
assert_impl_all!([u64; 4]: ShmSafe);
assert_impl_all!([[f64; 2]; 0]: ShmSafe);
assert_impl_all!(Sample: ShmSafe);
assert_impl_all!([Sample; 2]: ShmSafe);
assert_impl_all!(CpuSet: ShmSafe);

// What may not: invalid bit patterns, addresses, per-process handles, non-`Copy` cells.
assert_not_impl_any!(bool: ShmSafe);
assert_not_impl_any!(char: ShmSafe);
assert_not_impl_any!([char; 2]: ShmSafe);
assert_not_impl_any!(Option<u32>: ShmSafe);
assert_not_impl_any!(std::num::NonZeroU64: ShmSafe);
assert_not_impl_any!(std::cmp::Ordering: ShmSafe);
assert_not_impl_any!(std::time::Duration: ShmSafe);
assert_not_impl_any!((u8, u8): ShmSafe);
assert_not_impl_any!(&'static u64: ShmSafe);
assert_not_impl_any!(*const u64: ShmSafe);
assert_not_impl_any!(Box<u64>: ShmSafe);
assert_not_impl_any!(Vec<u8>: ShmSafe);
assert_not_impl_any!(String: ShmSafe);
assert_not_impl_any!(std::os::fd::OwnedFd: ShmSafe);
assert_not_impl_any!(std::sync::atomic::AtomicU64: ShmSafe);
assert_not_impl_any!(std::cell::Cell<u64>: ShmSafe);

// Atomic access: integers up to 64 bits only, each paired with its own-size atomic.
assert_not_impl_any!(u128: AtomicInteger);
assert_not_impl_any!(i128: AtomicInteger);
assert_not_impl_any!(f64: AtomicInteger);
assert_not_impl_any!([u32; 1]: AtomicInteger);
assert_type_eq_all!(<u64 as AtomicInteger>::Atomic, std::sync::atomic::AtomicU64);
assert_type_eq_all!(<i8 as AtomicInteger>::Atomic, std::sync::atomic::AtomicI8);
assert_type_eq_all!(<usize as AtomicInteger>::Atomic, std::sync::atomic::AtomicUsize);
assert_type_eq_all!(<std::sync::atomic::AtomicI32 as AtomicOps>::Value, i32);
assert_eq_size!(u64, <u64 as AtomicInteger>::Atomic);
assert_eq_size!(u16, <u16 as AtomicInteger>::Atomic);
assert_eq_align!(u32, <u32 as AtomicInteger>::Atomic);

/// A `T` cell at `offset` of `page`, as a raw pointer for the cross-process writes.
fn slot<T: ShmSafe>(page: &common::SharedPage, offset: usize) -> *mut T {
    // SAFETY: the page is zero-initialised; an all-zero `UnsafeCell<T>` is valid for every
    // type used here (integers, floats, arrays and structs of them); `get` checks the bounds
    // and the alignment.
    unsafe { page.get::<UnsafeCell<T>>(offset) }.get()
}

#[test]
fn an_array_written_by_a_child_is_read_by_the_parent() {
    let _w = common::watchdog(common::TEST_LIMIT);
    let page = common::SharedPage::new(4096);
    let array = slot::<[u64; 4]>(&page, 64);
    let sample = slot::<Sample>(&page, 128);
    let written = [1, u64::MAX, 0xdead_beef_cafe_f00d, 42];
    let sample_written =
        Sample { tag: 7, value: u64::MAX - 1, ratio: -0.5, history: [-1, 0, i16::MAX] };

    let child = common::fork_child(|| {
        // SAFETY: the slots are in the mapped page, aligned, and only this child touches them
        // until it exits (the parent reads after reaping it).
        unsafe {
            array.write_volatile(written);
            sample.write_volatile(sample_written);
        }
        0
    });
    child.join_ok();

    // SAFETY: the child that wrote the slots has been reaped; nobody else writes them.
    let (got, got_sample) = unsafe { (array.read_volatile(), sample.read_volatile()) };
    assert_eq!(got, written);
    assert_eq!(got_sample, sample_written);
}

#[test]
fn bytes_left_by_a_peer_that_died_mid_write_still_read_as_valid_values() {
    let _w = common::watchdog(common::TEST_LIMIT);
    let page = common::SharedPage::new(4096);
    let bytes = slot::<[u8; 2048]>(&page, 0);

    // The "peer" writes garbage byte by byte and is killed by its own SIGKILL halfway.
    let child = common::fork_child(|| {
        for i in 0..2048usize {
            if i == 1500 {
                // SAFETY: raise(SIGKILL) is async-signal-safe and never returns.
                unsafe { libc::raise(libc::SIGKILL) };
            }
            // SAFETY: in bounds of the 2048-byte slot; only this child writes it.
            unsafe { bytes.cast::<u8>().add(i).write_volatile((i as u8).wrapping_mul(151) ^ 0xA5) };
        }
        1
    });
    assert_eq!(child.wait(common::TEST_LIMIT), common::Exit::Signal(libc::SIGKILL));

    // Every ShmSafe view of the torn bytes is a valid value (that is the contract): floats
    // that are NaN, integers of any value, a CpuSet of random CPUs.
    // SAFETY: the writer is dead and reaped; the slot is 2048 bytes at offset 0, aligned for
    // every type read here.
    let (floats, ints, set) = unsafe {
        (
            bytes.cast::<[f64; 256]>().read_volatile(),
            bytes.cast::<[i32; 512]>().read_volatile(),
            bytes.cast::<CpuSet>().read_volatile(),
        )
    };
    let expected = |i: usize| {
        if i < 1500 { (i as u8).wrapping_mul(151) ^ 0xA5 } else { 0 }
    };
    assert_eq!(floats[3].to_ne_bytes(), std::array::from_fn(|k| expected(24 + k)));
    assert_eq!(ints[10].to_ne_bytes(), std::array::from_fn(|k| expected(40 + k)));
    assert_eq!(ints[511], 0, "bytes past the crash point were never written");
    let bits: usize = (0..1024).map(|i| expected(i).count_ones() as usize).sum();
    assert_eq!(set.count(), bits);
}

/// Two children each add `one` to a shared `T` `per_child` times through
/// [`AtomicInteger::atomic_from_ptr`], starting together; returns the final value.
fn two_children_fetch_add<T: AtomicInteger>(one: T, per_child: usize) -> T {
    let _w = common::watchdog(common::TEST_LIMIT);
    let page = common::SharedPage::new(4096);
    // SAFETY: zero is a valid AtomicU32; offset 0 is aligned and in the page.
    let start = unsafe { page.get::<AtomicU32>(0) };
    // Offset 64 is aligned for every atomic type (at most 8-aligned).
    let counter = slot::<T>(&page, 64);
    // SAFETY: `counter` is in the page, which outlives every use below (children are reaped
    // before `page` drops), aligned to 64, and only ever accessed atomically from now on.
    let atomic = unsafe { T::atomic_from_ptr(counter) };

    let work = || {
        while start.load(Acquire) == 0 {
            std::hint::spin_loop();
        }
        for _ in 0..per_child {
            atomic.fetch_add(one, Relaxed);
        }
        0
    };
    let a = common::fork_child(work);
    let b = common::fork_child(work);
    start.store(1, Release);
    a.join_ok();
    b.join_ok();
    atomic.load(Relaxed)
}

#[test]
fn atomic_fetch_add_from_two_children_is_exact() {
    assert_eq!(two_children_fetch_add(1u64, 100_000), 200_000);
    assert_eq!(two_children_fetch_add(1u32, 100_000), 200_000);
    assert_eq!(two_children_fetch_add(1usize, 100_000), 200_000);
    assert_eq!(two_children_fetch_add(-1i64, 100_000), -200_000);
}

#[test]
fn atomic_fetch_add_wraps_on_small_integers() {
    assert_eq!(two_children_fetch_add(1u8, 100_000), (200_000 % 256) as u8);
    assert_eq!(two_children_fetch_add(1i16, 100_000), (200_000 % 65_536) as i16);
}

#[test]
fn the_atomic_view_shares_memory_with_the_plain_integer() {
    let mut n = 5u32;
    {
        // SAFETY: `&mut n` is aligned for AtomicU32 (same alignment as u32 on every target),
        // valid for the block, and accessed only through `a` inside it.
        let a = unsafe { u32::atomic_from_ptr(&mut n) };
        assert_eq!(a.swap(9, Relaxed), 5);
        assert_eq!(a.compare_exchange(9, 10, Relaxed, Relaxed), Ok(9));
        assert_eq!(a.compare_exchange(9, 11, Relaxed, Relaxed), Err(10));
        assert_eq!(a.fetch_sub(3, Relaxed), 10);
        assert_eq!(a.fetch_or(0b1000, Relaxed), 7);
        assert_eq!(a.fetch_and(0b1100, Relaxed), 15);
        assert_eq!(a.fetch_xor(0b0100, Relaxed), 12);
        assert_eq!(a.fetch_max(20, Relaxed), 8);
        assert_eq!(a.fetch_min(3, Relaxed), 20);
        a.store(u32::MAX, Relaxed);
        assert_eq!(a.fetch_add(2, Relaxed), u32::MAX);
    }
    assert_eq!(n, 1, "wrapped, and visible through the plain integer");
}
