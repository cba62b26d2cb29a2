//! The calling thread's kernel thread id, cached ([`current_tid`]): how the locks of this
//! module record and recognise their holder.
//!
//! # Unsafe in this file
//!
//! The private `MADV_WIPEONFORK` page behind the cache: mapping it, and reading the generation
//! word it holds.
#![allow(unsafe_code)]

use std::cell::Cell;
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering::Relaxed};

thread_local! {
    /// `(generation, tid)`: the calling thread's kernel thread id, valid while `generation`
    /// equals the process's [`fork_generation`] word (0 = not cached yet).
    static TID: Cell<(u32, u32)> = const { Cell::new((0, 0)) };
}

/// The process's generation word, in a private page mapped with `MADV_WIPEONFORK`; null until
/// first use, and left null (no caching) if the kernel refuses the advice (Linux < 4.14).
static GENERATION_PAGE: AtomicPtr<AtomicU32> = AtomicPtr::new(ptr::null_mut());
/// Set once mapping the page has failed, so we stop trying.
static GENERATION_UNAVAILABLE: AtomicU32 = AtomicU32::new(0);

/// The generation word: the kernel zeroes it in every child, however it was forked (libc
/// `fork`, `_Fork`, a raw `clone`), so a zero means "this process has not cached anything yet".
#[inline(always)]
fn generation_word() -> Option<&'static AtomicU32> {
    let p = GENERATION_PAGE.load(Relaxed);
    if !p.is_null() {
        // SAFETY: the page is mapped read-write for the life of the process (never unmapped;
        // a forked child inherits the mapping, zero-filled) and holds an `AtomicU32` at its
        // start, for which all-zero is a valid value.
        return Some(unsafe { &*p });
    }
    if GENERATION_UNAVAILABLE.load(Relaxed) != 0 {
        return None;
    }
    map_generation_page()
}

#[cold]
fn map_generation_page() -> Option<&'static AtomicU32> {
    use rustix::mm::{Advice, MapFlags, ProtFlags, madvise, mmap_anonymous, munmap};
    let len = multiproc_sys::mmap::page_size();
    // SAFETY: a fresh anonymous private mapping at an address the kernel chooses: it aliases
    // nothing.
    let page = match unsafe {
        mmap_anonymous(ptr::null_mut(), len, ProtFlags::READ | ProtFlags::WRITE, MapFlags::PRIVATE)
    } {
        Ok(p) => p,
        Err(_) => {
            GENERATION_UNAVAILABLE.store(1, Relaxed);
            return None;
        }
    };
    // SAFETY: `page` is the mapping made above, of `len` bytes, not shared with anyone yet.
    if unsafe { madvise(page, len, Advice::LinuxWipeOnFork) }.is_err() {
        // SAFETY: our own mapping, never handed out.
        let _ = unsafe { munmap(page, len) };
        GENERATION_UNAVAILABLE.store(1, Relaxed);
        return None;
    }
    let page = page.cast::<AtomicU32>();
    match GENERATION_PAGE.compare_exchange(ptr::null_mut(), page, Relaxed, Relaxed) {
        // SAFETY: as in `generation_word`: mapped for the life of the process, zero-filled.
        Ok(_) => Some(unsafe { &*page }),
        Err(winner) => {
            // Another thread mapped one first: use theirs, drop ours.
            // SAFETY: our own mapping, never handed out.
            let _ = unsafe { munmap(page.cast(), len) };
            // SAFETY: as above, for the winner's page.
            Some(unsafe { &*winner })
        }
    }
}

/// The calling thread's kernel thread id (`gettid()`), cached.
///
/// Thread ids are unique system-wide among live threads (within a PID namespace), so this
/// tells apart threads of one process *and* processes. The cache is a thread-local that is
/// trusted only while it carries the current value of the process's generation word; the
/// kernel wipes that word in every forked child (`MADV_WIPEONFORK`), and the child then stores
/// its own pid there, which differs from the parent's. So a child never mistakes itself for
/// the parent thread it was copied from. Costs a thread-local read and an atomic load; where
/// the kernel lacks `MADV_WIPEONFORK` it is a `gettid` system call every time.
#[inline(always)]
pub(crate) fn current_tid() -> u32 {
    let Some(word) = generation_word() else {
        return multiproc_sys::fork::gettid().as_raw_nonzero().get() as u32;
    };
    let generation = word.load(Relaxed);
    let (cached_gen, tid) = TID.get();
    if generation != 0 && cached_gen == generation {
        return tid;
    }
    refresh_tid(word)
}

#[cold]
fn refresh_tid(word: &AtomicU32) -> u32 {
    let mut generation = word.load(Relaxed);
    if generation == 0 {
        // First use in this process (or first since the fork that made it): the pid is
        // non-zero and differs from the parent's, whose cached entries the fork copied.
        let pid = multiproc_sys::fork::getpid().as_raw_nonzero().get() as u32;
        generation = match word.compare_exchange(0, pid, Relaxed, Relaxed) {
            Ok(_) => pid,
            Err(other) => other,
        };
    }
    let tid = multiproc_sys::fork::gettid().as_raw_nonzero().get() as u32;
    TID.set((generation, tid));
    tid
}
