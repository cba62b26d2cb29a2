//! Shared segments: `MAP_SHARED` both ways across fork, memfd sharing, length validation and
//! page rounding.
#![allow(unsafe_code, clippy::undocumented_unsafe_blocks)]

mod common;

use core::sync::atomic::{AtomicU32, Ordering};

use common::{TEST_LIMIT, eventually, fork_child, watchdog};
use multiproc_sys::Errno;
use multiproc_sys::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use multiproc_sys::mem::mmap::{Segment, page_size};
use static_assertions::assert_impl_all;

assert_impl_all!(Segment: Send, Sync);

/// The `AtomicU32` at byte `offset` of `seg`.
fn atomic_at(seg: &Segment, offset: usize) -> &AtomicU32 {
    assert!(offset + 4 <= seg.len() && offset % 4 == 0);
    // SAFETY (test): in bounds, aligned (segments are page-aligned), zero is a valid AtomicU32,
    // and every process touches these bytes only through atomics.
    unsafe { &*seg.as_ptr().add(offset).cast::<AtomicU32>() }
}

/// `fd` as rustix's own borrowed type (this crate's fd types are its own without `std`).
fn rx(fd: BorrowedFd<'_>) -> rustix::fd::BorrowedFd<'_> {
    unsafe { rustix::fd::BorrowedFd::borrow_raw(fd.as_raw_fd()) }
}

/// A descriptor rustix made, as this crate's owned type.
fn own(fd: rustix::fd::OwnedFd) -> OwnedFd {
    unsafe { OwnedFd::from_raw_fd(rustix::fd::IntoRawFd::into_raw_fd(fd)) }
}

fn dup(fd: BorrowedFd<'_>) -> OwnedFd {
    own(rustix::io::fcntl_dupfd_cloexec(rx(fd), 0).unwrap())
}

fn has_cloexec(fd: BorrowedFd<'_>) -> bool {
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) };
    assert!(flags >= 0);
    flags & libc::FD_CLOEXEC != 0
}

#[test]
fn page_size_is_a_power_of_two_and_cached() {
    let p = page_size();
    assert!(p >= 4096 && p.is_power_of_two());
    assert_eq!(page_size(), p);
    assert_eq!(p as libc::c_long, unsafe { libc::sysconf(libc::_SC_PAGESIZE) });
}

#[test]
fn lengths_round_up_to_whole_pages() {
    let p = page_size();
    for (asked, got) in [(1, p), (p - 1, p), (p, p), (p + 1, 2 * p), (10 * p + 3, 11 * p)] {
        let a = Segment::anonymous(asked).unwrap();
        assert_eq!(a.len(), got, "anonymous({asked})");
        assert!(!a.is_empty());
        assert_eq!(a.as_ptr() as usize % p, 0, "page-aligned");
        let m = Segment::memfd(c"round", asked).unwrap();
        assert_eq!(m.len(), got, "memfd({asked})");
        let size = rustix::fs::fstat(rx(m.fd().unwrap())).unwrap().st_size;
        assert_eq!(size as usize, got, "the memfd is as long as the segment");
    }
}

#[test]
fn zero_length_is_einval() {
    assert_eq!(Segment::anonymous(0).unwrap_err(), Errno::INVAL);
    assert_eq!(Segment::memfd(c"zero", 0).unwrap_err(), Errno::INVAL);
    let m = Segment::memfd(c"zero", 1).unwrap();
    assert_eq!(Segment::from_fd(dup(m.fd().unwrap()), 0).unwrap_err(), Errno::INVAL);
}

#[test]
fn huge_lengths_are_enomem_not_a_panic() {
    for len in [usize::MAX, usize::MAX - page_size() + 2, isize::MAX as usize, 1 << 62] {
        assert_eq!(Segment::anonymous(len).unwrap_err(), Errno::NOMEM, "anonymous({len})");
        assert!(Segment::memfd(c"huge", len).is_err(), "memfd({len})");
    }
}

#[test]
fn new_segments_are_zero_filled_and_writable() {
    for mut seg in
        [Segment::anonymous(3 * page_size()).unwrap(), Segment::memfd(c"z", 5000).unwrap()]
    {
        // SAFETY (test): this process only; no child has been forked from it.
        let bytes = unsafe { seg.as_mut_slice() };
        assert!(bytes.iter().all(|&b| b == 0));
        bytes.fill(0xa5);
        assert!(unsafe { seg.as_slice() }.iter().all(|&b| b == 0xa5));
    }
}

#[test]
fn memfd_is_close_on_exec_and_anonymous_has_no_fd() {
    let m = Segment::memfd(c"cloexec", 1).unwrap();
    assert!(has_cloexec(m.fd().unwrap()));
    assert!(Segment::anonymous(1).unwrap().fd().is_none());
}

/// A child's write is seen by the parent, and the parent's write made *after* the fork is seen
/// by the child: the pages are shared, not copied on write.
fn shared_both_ways_across_fork(seg: &Segment) {
    let _w = watchdog(TEST_LIMIT);
    let from_child = atomic_at(seg, 0);
    let from_parent = atomic_at(seg, seg.len() - 4); // the last page too
    // Child: atomics and `eventually` (nanosleep, clock_gettime) only.
    let child = fork_child(|| {
        from_child.store(1, Ordering::Release);
        if !eventually(TEST_LIMIT, || from_parent.load(Ordering::Acquire) == 2) {
            return 1;
        }
        from_child.store(3, Ordering::Release);
        0
    });
    assert!(eventually(TEST_LIMIT, || from_child.load(Ordering::Acquire) == 1), "child's write");
    from_parent.store(2, Ordering::Release);
    assert!(eventually(TEST_LIMIT, || from_child.load(Ordering::Acquire) == 3), "child saw ours");
    child.join_ok();
}

#[test]
fn anonymous_segment_is_shared_both_ways_across_fork() {
    shared_both_ways_across_fork(&Segment::anonymous(2 * page_size()).unwrap());
}

#[test]
fn memfd_segment_is_shared_both_ways_across_fork() {
    shared_both_ways_across_fork(&Segment::memfd(c"fork", 2 * page_size()).unwrap());
}

#[test]
fn a_memfd_mapped_twice_shares_its_memory() {
    let a = Segment::memfd(c"twice", 3 * page_size()).unwrap();
    let b = Segment::from_fd(dup(a.fd().unwrap()), a.len()).unwrap();
    assert_ne!(a.as_ptr(), b.as_ptr(), "two distinct mappings");
    assert_eq!(b.len(), a.len());
    let off = page_size() + 8;
    atomic_at(&a, off).store(41, Ordering::Release);
    assert_eq!(atomic_at(&b, off).load(Ordering::Acquire), 41);
    atomic_at(&b, off).store(42, Ordering::Release);
    assert_eq!(atomic_at(&a, off).load(Ordering::Acquire), 42);
    // The memory outlives the first mapping and its fd while another mapping holds it.
    drop(a);
    assert_eq!(atomic_at(&b, off).load(Ordering::Acquire), 42);
    // A mapping of just a prefix sees the same bytes too.
    let c = Segment::from_fd(dup(b.fd().unwrap()), 1).unwrap();
    assert_eq!(c.len(), page_size());
    atomic_at(&c, 0).store(7, Ordering::Release);
    assert_eq!(atomic_at(&b, 0).load(Ordering::Acquire), 7);
}

#[test]
fn a_memfd_mapped_again_in_a_child_shares_with_the_parent() {
    let _w = watchdog(TEST_LIMIT);
    let seg = Segment::memfd(c"child-map", 64).unwrap();
    let fd = seg.fd().unwrap();
    let len = seg.len();
    // Child: maps the memfd afresh (raw syscalls, no allocation) and writes through it.
    let child = fork_child(|| {
        let Ok(dup) = rustix::io::fcntl_dupfd_cloexec(rx(fd), 0) else {
            return 1;
        };
        let Ok(mine) = Segment::from_fd(own(dup), len) else {
            return 2;
        };
        atomic_at(&mine, 16).store(99, Ordering::Release);
        0
    });
    child.join_ok();
    assert_eq!(atomic_at(&seg, 16).load(Ordering::Acquire), 99);
}

#[test]
fn from_fd_rejects_a_length_beyond_the_file() {
    let p = page_size();
    let m = Segment::memfd(c"short", 2 * p).unwrap();
    assert_eq!(Segment::from_fd(dup(m.fd().unwrap()), 2 * p + 1).unwrap_err(), Errno::INVAL);
    assert_eq!(Segment::from_fd(dup(m.fd().unwrap()), usize::MAX).unwrap_err(), Errno::NOMEM);

    // A file whose size is not page-aligned: up to its size is fine (rounded up), not beyond.
    let flags = rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING;
    let fd = own(rustix::fs::memfd_create(c"odd", flags).unwrap());
    rustix::fs::ftruncate(rx(fd.as_fd()), (p + 100) as u64).unwrap();
    // Not sealed against shrinking yet: refused, since a peer could truncate it under us.
    assert_eq!(Segment::from_fd(dup(fd.as_fd()), p).unwrap_err(), Errno::PERM);
    rustix::fs::fcntl_add_seals(rx(fd.as_fd()), rustix::fs::SealFlags::SHRINK).unwrap();
    let whole = Segment::from_fd(dup(fd.as_fd()), p + 100).unwrap();
    assert_eq!(whole.len(), 2 * p);
    assert_eq!(Segment::from_fd(dup(fd.as_fd()), p + 101).unwrap_err(), Errno::INVAL);

    // Not a regular file: its size reads as zero.
    let (r, _w) = multiproc_sys::io::pipe::pipe().unwrap();
    assert_eq!(Segment::from_fd(r, 1).unwrap_err(), Errno::INVAL);
}

#[test]
fn a_wipe_on_fork_mapping_reads_zero_in_a_child_and_keeps_its_data_in_the_parent() {
    use multiproc_sys::mem::mmap::WipeOnFork;
    let _w = watchdog(TEST_LIMIT);
    let page = WipeOnFork::new(100).unwrap();
    assert_eq!(page.len(), page_size());
    let word = unsafe { &*page.as_ptr().cast::<AtomicU32>() };
    assert_eq!(word.load(Ordering::SeqCst), 0);
    word.store(0xdead_beef, Ordering::SeqCst);
    // The child only reads an atomic and exits (async-signal-safe).
    let child = fork_child(|| i32::from(word.load(Ordering::SeqCst) != 0));
    child.join_ok();
    assert_eq!(word.load(Ordering::SeqCst), 0xdead_beef);
    assert_eq!(WipeOnFork::new(0).unwrap_err(), Errno::INVAL);
}
