//! Process ids: the crate's own [`Pid`] type, the calling process's id ([`getpid`]), and the
//! cached id that tells a forked child from its parent ([`current_pid`]).
#![allow(unsafe_code)]

use core::fmt;
use core::num::NonZeroI32;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr};

/// A process (or thread) id: a positive number. The crate's own type, so that no dependency's
/// version leaks into this API.
///
/// ```
/// use multiproc_sys::Pid;
///
/// let me = multiproc_sys::process::pid::getpid();
/// assert_eq!(me.as_raw(), std::process::id() as i32);
/// assert_eq!(Pid::from_raw(me.as_raw()), Some(me));
/// assert_eq!(Pid::from_raw(0), None);
/// assert_eq!(Pid::from_raw(-1), None); // a process group, not a process
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct Pid(NonZeroI32);

impl Pid {
    /// The process with id 1 (`init`).
    pub const INIT: Pid = match Pid::from_raw(1) {
        Some(pid) => pid,
        None => panic!("1 is positive"),
    };

    /// The process with id `raw`; `None` unless `raw > 0`.
    #[inline]
    #[must_use]
    pub const fn from_raw(raw: i32) -> Option<Pid> {
        if raw > 0 {
            match NonZeroI32::new(raw) {
                Some(n) => Some(Pid(n)),
                None => None,
            }
        } else {
            None
        }
    }

    /// The id as a number.
    #[inline]
    #[must_use]
    pub const fn as_raw(self) -> i32 {
        self.0.get()
    }

    /// The id as a non-zero number.
    #[inline]
    #[must_use]
    pub const fn as_raw_nonzero(self) -> NonZeroI32 {
        self.0
    }

    /// The same id as rustix's type, for the calls that take it.
    #[inline]
    pub(crate) fn to_rustix(self) -> rustix::process::Pid {
        rustix::process::Pid::from_raw(self.as_raw()).expect("a Pid is positive")
    }

    /// From rustix's type, as the calls return it.
    #[inline]
    pub(crate) fn from_rustix(pid: rustix::process::Pid) -> Pid {
        Pid(pid.as_raw_nonzero())
    }
}

impl fmt::Debug for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pid({})", self.0)
    }
}

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// `getpid()` — returns the calling process's id.
///
/// Async-signal-safe.
///
/// # References
/// - [POSIX]
/// - [Linux]
///
/// [POSIX]: https://pubs.opengroup.org/onlinepubs/9799919799/functions/getpid.html
/// [Linux]: https://man7.org/linux/man-pages/man2/getpid.2.html
#[inline]
#[must_use]
pub fn getpid() -> Pid {
    Pid::from_rustix(rustix::process::getpid())
}

/// The calling process's id, cached: the one fork detection of the crate.
///
/// The pid is kept in a private page mapped with `MADV_WIPEONFORK`, which the kernel zero-fills
/// in every child however it was made (libc `fork`, `_Fork`, `vfork`, a raw `clone`), so a child
/// never sees its parent's value: it finds zero, asks the kernel once, and caches its own. No
/// `pthread_atfork` handler is involved. Costs one atomic load after the first call; where the
/// kernel lacks `MADV_WIPEONFORK` (Linux < 4.14) it is a `getpid` system call every time.
///
/// Async-signal-safe once the page exists (the first call maps it: call it once before forking
/// from a multithreaded process, as the crate does).
#[must_use]
pub fn current_pid() -> Pid {
    use core::sync::atomic::Ordering::{Acquire, Relaxed, Release};
    let page = PID_PAGE.load(Acquire);
    // SAFETY: a non-null pointer is a page mapped read-write for the life of the process (never
    // unmapped; a child inherits it zero-filled) holding an `AtomicI32`, valid when zeroed.
    let word = match unsafe { page.as_ref() } {
        Some(word) => word,
        None => match map_pid_page() {
            Some(word) => word,
            None => return getpid(),
        },
    };
    if let Some(pid) = Pid::from_raw(word.load(Relaxed)) {
        return pid;
    }
    let pid = getpid();
    word.store(pid.as_raw_nonzero().get(), Release);
    pid
}

/// The page behind [`current_pid`]; null until first use.
static PID_PAGE: AtomicPtr<AtomicI32> = AtomicPtr::new(ptr::null_mut());

#[cold]
fn map_pid_page() -> Option<&'static AtomicI32> {
    use core::sync::atomic::Ordering::{Acquire, Release};
    static UNAVAILABLE: AtomicBool = AtomicBool::new(false);
    if UNAVAILABLE.load(Acquire) {
        return None;
    }
    let Ok(page) = crate::mem::mmap::WipeOnFork::new(1) else {
        UNAVAILABLE.store(true, Release);
        return None;
    };
    let ptr = page.as_ptr().cast::<AtomicI32>();
    match PID_PAGE.compare_exchange(ptr::null_mut(), ptr, Release, Acquire) {
        Ok(_) => {
            // Kept for the life of the process.
            core::mem::forget(page);
            // SAFETY: the page is mapped read-write, page-aligned and zero-filled, and now never
            // unmapped.
            Some(unsafe { &*ptr })
        }
        // Another thread mapped one first: ours is unmapped on drop.
        // SAFETY: as above, for the winner's page.
        Err(winner) => Some(unsafe { &*winner }),
    }
}
