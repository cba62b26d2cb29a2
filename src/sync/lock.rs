//! [`Lock`]: a process-shared, robust, non-recursive lock — Python's `multiprocessing.Lock`.
//!
//! Also home of two helpers the other primitives of this module share: the calling thread's
//! cached kernel thread id ([`current_tid`]) and the [`Patience`] of an acquire.
//!
//! # Unsafe in this file
//!
//! Three fenced spots: initialising the mutex in place in its fresh segment ([`Lock::new`]),
//! the private `MADV_WIPEONFORK` page behind [`current_tid`]'s cache, and the direct
//! `pthread_mutex_trylock` of [`try_lock_quiet`] (with its `ENOTRECOVERABLE` repair).
//! Everything else goes through the safe [`RobustMutex`] methods and atomics.
#![allow(unsafe_code)]

use std::cell::Cell;
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::mem::{align_of, size_of};
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering::Relaxed};
use std::time::Duration;

use multiproc_sys::Errno;
use multiproc_sys::pthread::{LockOutcome, RobustMutex};
use multiproc_sys::time::Deadline;
use static_assertions::const_assert_eq;

use super::{AcquireError, ReleaseError};
use crate::shm::ShmBox;

// ---------------------------------------------------------------------------------------------
// Thread identity

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

// ---------------------------------------------------------------------------------------------
// Patience

/// How long an acquire may wait.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Patience {
    /// One attempt, no waiting and no clock read.
    Try,
    /// Until this deadline ([`Deadline::FOREVER`] for no limit).
    Until(Deadline),
}

impl Patience {
    /// Python's timeout convention: `None` forever, `Some(ZERO)` one try.
    #[inline]
    pub(crate) fn from_timeout(timeout: Option<Duration>) -> Patience {
        match timeout {
            Some(Duration::ZERO) => Patience::Try,
            t => Patience::Until(Deadline::after(t)),
        }
    }
}

/// How a contended acquire spins before it goes to sleep in the kernel: `polls` looks at the
/// lock, each after `gap` `pause` instructions (`spin_loop`).
///
/// Each poll is a load of the holder word, and a `pthread_mutex_trylock` only when that looks
/// free (test and test-and-set). A critical section held by a process running on another CPU
/// is then waited out without the two system calls (sleep and wake) of a blocking lock.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Spin {
    polls: u32,
    gap: u32,
}

impl Spin {
    /// For an ordinary contended acquire: a few polls, far apart (about 4 µs in all on a CPU
    /// whose `pause` takes 35 ns).
    ///
    /// Every poll pulls the lock's cache line away from the holder, which then waits for it
    /// back on its next lock or unlock. A waiter polling at every `pause` (as glibc's adaptive
    /// mutex does) slows a holder that takes the lock again and again so much that two
    /// processes incrementing a shared counter got about half the throughput of a plain robust
    /// mutex (whose waiter sleeps at once); polls 32 `pause`s apart disturb the holder rarely
    /// and still catch many releases without a system call: in `benches/sync.rs` (two
    /// processes pinned to two CPUs) that is on a par with the plain robust mutex, and twice
    /// the throughput of polling at every `pause`.
    pub(crate) const ACQUIRE: Spin = Spin { polls: 4, gap: 32 };

    /// For a `Condition` waiter taking its lock back: the holder is then usually the notifier,
    /// about to release the lock, so polling at every `pause` hands it over fastest.
    pub(crate) const RELOCK: Spin = Spin { polls: 128, gap: 1 };
}

/// The spin phase of a contended acquire: polls `holder` (0 when the lock looks free) and
/// tries the mutex when it looks free, as [`Spin::ACQUIRE`] says. `Ok(None)`: still busy.
#[inline]
pub(crate) fn spin_try_lock(
    mutex: &RobustMutex,
    holder: &AtomicU32,
) -> Result<Option<LockOutcome>, Errno> {
    spin_try_lock_with(mutex, holder, Spin::ACQUIRE)
}

/// [`spin_try_lock`] with another [`Spin`].
#[inline]
pub(crate) fn spin_try_lock_with(
    mutex: &RobustMutex,
    holder: &AtomicU32,
    spin: Spin,
) -> Result<Option<LockOutcome>, Errno> {
    for _ in 0..spin.polls {
        for _ in 0..spin.gap {
            std::hint::spin_loop();
        }
        if looks_locked(mutex, holder) {
            continue;
        }
        if let Some(outcome) = try_lock_quiet(mutex)? {
            return Ok(Some(outcome));
        }
    }
    Ok(None)
}

/// Whether the mutex looks held, for the "test" of test and test-and-set: a hint only (the
/// `trylock` that follows decides).
///
/// On glibc this reads the mutex's lock word (see [`lock_word`]), which turns free exactly
/// when the holder's unlock is done: a spinner then tries exactly when a `trylock` can
/// succeed, instead of on the `holder` word, which is cleared a little *before* the unlock,
/// so that a spinner would try, fail, and take the cache line away from the unlocking
/// holder, several times per hand-over. A holder that died leaves its thread id out of the
/// word (the kernel sets "owner died" instead), so the mutex then looks free and the
/// `trylock` reports it. Elsewhere it reads `holder`.
#[inline]
fn looks_locked(mutex: &RobustMutex, holder: &AtomicU32) -> bool {
    #[cfg(multiproc_glibc)]
    {
        let _ = holder;
        lock_word(mutex).load(Relaxed) & TID_MASK != 0
    }
    #[cfg(not(multiproc_glibc))]
    {
        let _ = mutex;
        holder.load(Relaxed) != 0
    }
}

/// The owner's thread id in a robust futex word (the kernel's `FUTEX_TID_MASK`).
#[cfg(multiproc_glibc)]
const TID_MASK: u32 = 0x3fff_ffff;

/// glibc's lock word of a robust mutex: the `int` at offset 0 of `pthread_mutex_t`
/// (`__data.__lock`, fixed by glibc's ABI: static initialisers write it), in the robust futex
/// format the kernel defines (`FUTEX_TID_MASK` owner, bit 30 "owner died", bit 31 "waiters").
/// glibc and the kernel access it atomically; we only read it, except in
/// [`release_unrecoverable`].
#[cfg(multiproc_glibc)]
#[inline]
fn lock_word(mutex: &RobustMutex) -> &AtomicU32 {
    let raw = ptr::from_ref(mutex).cast::<u32>().cast_mut();
    // SAFETY: `RobustMutex` is a `repr(C)` wrapper of one `UnsafeCell<pthread_mutex_t>`
    // (same size and alignment, asserted by the sys layer), so its first four bytes are
    // glibc's `int __lock`, aligned for an `AtomicU32`, inside an `UnsafeCell`, and live as
    // long as the borrow of `mutex`; every access to that word (glibc's, the kernel's, ours)
    // is atomic.
    unsafe { AtomicU32::from_ptr(raw) }
}

/// One attempt at `mutex` that leaves no trace when the mutex is busy: `pthread_mutex_trylock`.
///
/// [`RobustMutex::try_lock`] is, on glibc, `pthread_mutex_clocklock` with an expired deadline.
/// On a busy mutex that makes a `futex` system call, and sets the futex's "waiters" bit, so
/// the holder's next unlock makes a wake-up system call as well. That is fine for one try, but
/// a contended acquire, a spin loop or a `Condition` waiter taking its lock back would pay two
/// system calls per failed attempt (and slow the holder down). `pthread_mutex_trylock` fails
/// with a plain compare-and-swap instead.
///
/// The sys layer avoids `pthread_mutex_trylock` because glibc's leaves a mutex that is *not
/// recoverable* owned by the caller (its docs explain how). A mutex becomes not recoverable
/// only when a holder that got `EOWNERDEAD` unlocks it without `pthread_mutex_consistent`. The
/// mutexes of [`Lock`] and `RLock` never do: every acquire path makes the mutex consistent
/// before anything else (`took`), and a holder killed before that leaves it "owner died" again
/// (the kernel's robust list), not unrecoverable. Only a peer scribbling over the shared
/// segment could; if `pthread_mutex_trylock` ever reports `ENOTRECOVERABLE` all the same,
/// [`release_unrecoverable`] gives the lock word back the way glibc's own unlock would, so
/// the other processes keep getting the error instead of hanging.
///
/// Elsewhere (musl) [`RobustMutex::try_lock`] already is `pthread_mutex_trylock`.
#[inline]
pub(crate) fn try_lock_quiet(mutex: &RobustMutex) -> Result<Option<LockOutcome>, Errno> {
    #[cfg(multiproc_glibc)]
    {
        let raw = ptr::from_ref(mutex).cast::<libc::pthread_mutex_t>().cast_mut();
        // SAFETY: `RobustMutex` is a `repr(C)` wrapper of exactly one `UnsafeCell` holding the
        // `pthread_mutex_t` (same size and alignment, asserted by the sys layer), initialised
        // in place and never moved (its type invariant), so `raw` points to a live, initialised
        // mutex; the `UnsafeCell` makes libc's writes through a pointer derived from `&` sound.
        match unsafe { libc::pthread_mutex_trylock(raw) } {
            0 => Ok(Some(LockOutcome::Acquired)),
            libc::EBUSY => Ok(None),
            libc::EOWNERDEAD => Ok(Some(LockOutcome::OwnerDied)),
            libc::ENOTRECOVERABLE => {
                release_unrecoverable(mutex);
                Err(Errno::NOTRECOVERABLE)
            }
            e => Err(Errno::from_raw_os_error(e)),
        }
    }
    #[cfg(not(multiproc_glibc))]
    {
        mutex.try_lock()
    }
}

/// After glibc's `pthread_mutex_trylock` returned `ENOTRECOVERABLE` (see [`try_lock_quiet`]):
/// if the lock word still names the calling thread, clears it and wakes its sleepers, as
/// glibc's unlock of a robust mutex does (`pthread_mutex_unlock` itself must not be called:
/// the mutex is not on this thread's robust list, and removing it would follow stale links).
/// See [`lock_word`] for the word.
#[cfg(multiproc_glibc)]
#[cold]
fn release_unrecoverable(mutex: &RobustMutex) {
    const WAITERS: u32 = 0x8000_0000;
    let word = lock_word(mutex);
    let me = current_tid();
    let mut old = word.load(Relaxed);
    while old & TID_MASK == me {
        match word.compare_exchange(old, 0, std::sync::atomic::Ordering::Release, Relaxed) {
            Ok(_) => {
                if old & WAITERS != 0 {
                    let _ = multiproc_sys::futex::futex_wake_all(word);
                }
                return;
            }
            Err(now) => old = now,
        }
    }
}

/// Maps an OS error to the acquire error type.
pub(crate) fn os<G>(e: Errno) -> AcquireError<G> {
    AcquireError::Os(e.into())
}

// ---------------------------------------------------------------------------------------------
// Lock

/// How the current holder holds a [`Lock`] (the `mode` word).
pub(crate) mod mode {
    /// Through a [`LockGuard`](super::LockGuard) (or a `Condition`'s guard).
    pub const GUARD: u32 = 0;
    /// Through [`Lock::acquire`](super::Lock::acquire): [`Lock::release`](super::Lock::release)
    /// may release it.
    pub const RAW: u32 = 1;
    /// Through the guard of a `Value` or `Array` that hands out `&mut` to shared data: nothing
    /// but that guard may release it (not `release`, not a `Condition` wait).
    pub const DATA: u32 = 2;
}

/// The shared state of a [`Lock`].
///
/// | field | meaning | written by |
/// |---|---|---|
/// | `mutex` | robust, process-shared, error-checking pthread mutex | libc |
/// | `holder` | kernel thread id of the holder, 0 when free | the holder, while holding `mutex` |
/// | `mode` | how the holder holds it ([`mode`]) | the holder, while holding `mutex` |
///
/// `holder` and `mode` are hints for error reports and `Condition`'s ownership check; the
/// mutex alone decides who holds the lock. A holder that dies leaves its thread id in
/// `holder` until the next acquirer overwrites it.
#[repr(C)]
pub(crate) struct LockState {
    mutex: RobustMutex,
    holder: AtomicU32,
    mode: AtomicU32,
}

const_assert_eq!(size_of::<LockState>(), size_of::<libc::pthread_mutex_t>() + 8);
const_assert_eq!(align_of::<LockState>(), align_of::<libc::pthread_mutex_t>());

/// A lock shared between processes — Python's `multiprocessing.Lock`.
///
/// Create it before starting the processes that use it; every clone of the handle, in this
/// process or in a child forked after it was created, is the same lock. Use the RAII guard of
/// [`lock`](Self::lock) (like `with lock:`), or Python's [`acquire`](Self::acquire) /
/// [`release`](Self::release) pair.
///
/// ```
/// use multiproc::{AcquireError, Lock, Process};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let lock = Lock::new()?;
/// let child = {
///     let lock = lock.clone();
///     Process::new(move || {
///         let _guard = lock.lock().expect("lock");
///         // ... only one process at a time runs here ...
///     })
/// };
/// child.start()?;
/// {
///     let _guard = match lock.lock() {
///         Ok(guard) => guard,
///         // A holder died mid-update: we hold the lock; check the shared data here.
///         Err(AcquireError::OwnerDied(guard)) => guard,
///         // The error holds a borrowing guard type: drop it to return it.
///         Err(e) => return Err(e.without_guard().into()),
///     };
///     // ... critical section ...
/// } // released here
/// child.join(None)?;
///
/// // Python style:
/// assert!(lock.acquire(None)?);
/// lock.release()?;
/// # Ok(())
/// # }
/// ```
///
/// A robust, process-shared pthread mutex in a shared segment. An uncontended lock and unlock
/// is one `pthread_mutex_trylock` and one `pthread_mutex_unlock` (no system call, no clock
/// read); a contended acquire spins briefly, then sleeps in the kernel. Timeouts run on
/// `CLOCK_MONOTONIC` (`pthread_mutex_clocklock`).
///
/// # When a process dies
///
/// If the holder dies, even by `SIGKILL`, the kernel releases the lock and the next acquirer
/// gets [`AcquireError::OwnerDied`] with the guard inside: it holds the lock, should check the
/// data the lock protects (the dead holder may have left it half-updated), and the lock then
/// keeps working normally. Nobody ever hangs on a dead holder. (Python's `Lock` stays locked
/// forever in that case.)
///
/// # Differences from Python
///
/// - **The lock has an owner.** Python's `Lock` is a semaphore that any process or thread may
///   release. Here only the thread that acquired it may release it: a release by another
///   thread or process is [`ReleaseError::NotOwner`]. That is the price of holder-death
///   detection (robust mutexes record their owner). For an ownerless lock, one process taking
///   and another releasing, use [`Semaphore::new(1)`](crate::Semaphore::new).
/// - Acquiring the lock again from the thread that holds it is
///   [`AcquireError::WouldDeadlock`] (Python hangs forever).
/// - A lock held through a guard is released by dropping the guard: [`release`](Self::release)
///   refuses it ([`ReleaseError::NotOwner`]).
#[derive(Clone)]
pub struct Lock {
    state: ShmBox<LockState>,
}

/// The guard of a held [`Lock`]; dropping it releases the lock — the body of Python's
/// `with lock:`.
///
/// Not `Send`: the lock belongs to the thread that acquired it. If its thread or process dies
/// while holding it, the kernel releases the lock and the next acquirer is told
/// ([`AcquireError::OwnerDied`]).
///
/// ```
/// # use multiproc::Lock;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let lock = Lock::new()?;
/// let guard = lock.lock().expect("lock"); // with lock:
/// assert!(lock.try_lock().is_err()); //         (held)
/// drop(guard); //                               end of the with block
/// assert!(lock.try_lock().is_ok());
/// # Ok(())
/// # }
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard<'a> {
    lock: &'a Lock,
    _not_send: PhantomData<*const ()>,
}

/// What an acquire got: the lock, either cleanly or from a holder that died.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Got {
    Clean,
    OwnerDied,
}

impl Got {
    /// `Ok(value)` for a clean acquire, `Err(OwnerDied(value))` otherwise.
    #[inline]
    pub(crate) fn wrap<G>(self, value: G) -> Result<G, AcquireError<G>> {
        match self {
            Got::Clean => Ok(value),
            Got::OwnerDied => Err(AcquireError::OwnerDied(value)),
        }
    }
}

impl Lock {
    /// A new, unlocked lock in its own shared segment.
    ///
    /// # Errors
    /// Mapping the segment failed, or the kernel has no robust futexes (`ENOTSUP`).
    pub fn new() -> io::Result<Lock> {
        // SAFETY: `init` initialises the mutex in place in the fresh, zeroed, exclusively owned
        // segment (which never moves); `holder` and `mode` are atomics for which zero is valid
        // (free, `GUARD`). `LockState` is used only through shared references and process-
        // shared objects, and needs no `Drop`.
        let state = unsafe {
            ShmBox::new(0, |p: *mut LockState| {
                RobustMutex::init(&raw mut (*p).mutex).map_err(io::Error::from)
            })?
        };
        Ok(Lock { state })
    }

    #[inline]
    fn st(&self) -> &LockState {
        self.state.get()
    }

    /// Acquires the lock, waiting as long as it takes; the guard releases it.
    ///
    /// # Errors
    /// - [`AcquireError::OwnerDied`]: acquired (the guard is inside), but the previous holder
    ///   died holding it.
    /// - [`AcquireError::WouldDeadlock`]: the calling thread holds the lock already.
    /// - [`AcquireError::Os`]: an unexpected error from the mutex.
    #[inline]
    pub fn lock(&self) -> Result<LockGuard<'_>, AcquireError<LockGuard<'_>>> {
        self.lock_with(Patience::Until(Deadline::FOREVER))
    }

    /// Acquires the lock if it is free, without waiting.
    ///
    /// # Errors
    /// [`AcquireError::Timeout`] if another thread or process holds it; otherwise as
    /// [`lock`](Self::lock).
    #[inline]
    pub fn try_lock(&self) -> Result<LockGuard<'_>, AcquireError<LockGuard<'_>>> {
        self.lock_with(Patience::Try)
    }

    /// Acquires the lock, waiting at most `timeout` (`None`: forever; `Some(ZERO)`: one try).
    ///
    /// # Errors
    /// [`AcquireError::Timeout`] once the timeout has really passed (never early); otherwise as
    /// [`lock`](Self::lock).
    #[inline]
    pub fn lock_timeout(
        &self,
        timeout: Option<Duration>,
    ) -> Result<LockGuard<'_>, AcquireError<LockGuard<'_>>> {
        self.lock_with(Patience::from_timeout(timeout))
    }

    #[inline]
    fn lock_with(&self, patience: Patience) -> Result<LockGuard<'_>, AcquireError<LockGuard<'_>>> {
        match self.acquire_mode(patience, mode::GUARD) {
            Ok(got) => got.wrap(self.guard()),
            Err(e) => Err(retype(e)),
        }
    }

    /// A guard for a lock the caller has just acquired.
    #[inline]
    fn guard(&self) -> LockGuard<'_> {
        LockGuard { lock: self, _not_send: PhantomData }
    }

    /// Python's `acquire(block=True, timeout=None)`: `Ok(true)` once acquired, `Ok(false)` on a
    /// timeout (`None`: wait forever; `Some(ZERO)`: Python's `block=False`). The caller must
    /// call [`release`](Self::release) later.
    ///
    /// # Errors
    /// - [`AcquireError::OwnerDied`]: acquired (release it as usual), but the previous holder
    ///   died holding it.
    /// - [`AcquireError::WouldDeadlock`]: the calling thread holds the lock already.
    /// - [`AcquireError::Os`]: an unexpected error from the mutex.
    #[inline]
    pub fn acquire(&self, timeout: Option<Duration>) -> Result<bool, AcquireError<()>> {
        match self.acquire_mode(Patience::from_timeout(timeout), mode::RAW) {
            Ok(Got::Clean) => Ok(true),
            Ok(got) => got.wrap(true).map_err(|e| e.without_guard()),
            Err(AcquireError::Timeout) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Python's `release()`: releases a lock taken with [`acquire`](Self::acquire).
    ///
    /// # Errors
    /// - [`ReleaseError::NotHeld`]: nobody holds the lock (Python: "semaphore or lock released
    ///   too many times").
    /// - [`ReleaseError::NotOwner`]: another thread or process holds it, or the calling thread
    ///   holds it through a guard (drop the guard instead).
    #[inline]
    pub fn release(&self) -> Result<(), ReleaseError> {
        let st = self.st();
        let me = current_tid();
        let holder = st.holder.load(Relaxed);
        if holder == me && st.mode.load(Relaxed) == mode::RAW {
            match self.unlock_raw() {
                Ok(()) => Ok(()),
                Err(e) => Err(Self::release_failed(e)),
            }
        } else {
            Err(Self::release_refused(holder))
        }
    }

    /// Why [`release`](Self::release) may not release: the lock is free, held by another
    /// thread, or held by the calling thread through a guard.
    #[cold]
    fn release_refused(holder: u32) -> ReleaseError {
        if holder == 0 { ReleaseError::NotHeld } else { ReleaseError::NotOwner }
    }

    /// The error of a failed unlock in [`release`](Self::release).
    #[cold]
    fn release_failed(e: Errno) -> ReleaseError {
        match e {
            // A dead holder's stale thread id that this thread now happens to carry.
            Errno::PERM => ReleaseError::NotOwner,
            e => ReleaseError::Os(e.into()),
        }
    }

    /// Whether the calling thread holds the lock (in any mode).
    #[inline]
    pub(crate) fn held_by_current_thread(&self) -> bool {
        self.st().holder.load(Relaxed) == current_tid()
    }

    /// The holder's mode; meaningful only to the holder.
    #[inline]
    pub(crate) fn current_mode(&self) -> u32 {
        self.st().mode.load(Relaxed)
    }

    /// Acquires the lock and records the calling thread as holder, in `how` mode.
    #[inline(always)]
    pub(crate) fn acquire_mode(
        &self,
        patience: Patience,
        how: u32,
    ) -> Result<Got, AcquireError<()>> {
        let st = self.st();
        let first = try_lock_quiet(&st.mutex);
        if let Ok(Some(LockOutcome::Acquired)) = first {
            // The common case, as `took` does it.
            st.holder.store(current_tid(), Relaxed);
            st.mode.store(how, Relaxed);
            return Ok(Got::Clean);
        }
        self.acquire_slow(first, patience, how)
    }

    /// [`acquire_mode`](Self::acquire_mode) after a first attempt that did not simply succeed.
    #[cold]
    #[inline(never)]
    fn acquire_slow(
        &self,
        first: Result<Option<LockOutcome>, Errno>,
        patience: Patience,
        how: u32,
    ) -> Result<Got, AcquireError<()>> {
        let got = match first {
            Ok(Some(outcome)) => outcome,
            Ok(None) => match patience {
                Patience::Try => return Err(AcquireError::Timeout),
                Patience::Until(deadline) => self.lock_contended(deadline, Spin::ACQUIRE)?,
            },
            Err(Errno::DEADLK) => return Err(AcquireError::WouldDeadlock),
            Err(e) => return Err(os(e)),
        };
        self.took(got, how)
    }

    /// The contended path: spin a little, then sleep in the kernel until `deadline`.
    #[cold]
    fn lock_contended(
        &self,
        deadline: Deadline,
        spin: Spin,
    ) -> Result<LockOutcome, AcquireError<()>> {
        let st = self.st();
        let me = current_tid();
        // musl's trylock reports our own lock as busy; the blocking call below then says
        // EDEADLK, so do not spin for nothing.
        if st.holder.load(Relaxed) != me {
            match spin_try_lock_with(&st.mutex, &st.holder, spin) {
                Ok(Some(outcome)) => return Ok(outcome),
                Ok(None) => {}
                Err(Errno::DEADLK) => return Err(AcquireError::WouldDeadlock),
                Err(e) => return Err(os(e)),
            }
        }
        self.lock_blocking(deadline)
    }

    /// `pthread_mutex_lock`/`clocklock` until `deadline`, errors mapped.
    fn lock_blocking(&self, deadline: Deadline) -> Result<LockOutcome, AcquireError<()>> {
        match self.st().mutex.lock(deadline) {
            Ok(outcome) => Ok(outcome),
            Err(Errno::TIMEDOUT) => Err(AcquireError::Timeout),
            Err(Errno::DEADLK) => Err(AcquireError::WouldDeadlock),
            Err(e) => Err(os(e)),
        }
    }

    /// Bookkeeping right after the mutex was acquired: repair after a dead holder, record the
    /// holder and its mode.
    #[inline]
    fn took(&self, outcome: LockOutcome, how: u32) -> Result<Got, AcquireError<()>> {
        let st = self.st();
        let got = match outcome {
            LockOutcome::Acquired => Got::Clean,
            LockOutcome::OwnerDied => {
                if let Err(e) = st.mutex.consistent() {
                    // Cannot happen (we hold a mutex in the owner-died state). Do not keep a
                    // lock the caller will not know it holds.
                    let _ = st.mutex.unlock();
                    return Err(os(e));
                }
                Got::OwnerDied
            }
        };
        st.holder.store(current_tid(), Relaxed);
        st.mode.store(how, Relaxed);
        Ok(got)
    }

    /// Clears the holder bookkeeping and unlocks. The caller holds the lock.
    #[inline]
    fn unlock_raw(&self) -> Result<(), Errno> {
        let st = self.st();
        // Both stores happen before the unlock, which publishes them to the next holder.
        st.mode.store(mode::GUARD, Relaxed);
        st.holder.store(0, Relaxed);
        st.mutex.unlock()
    }

    /// For `Condition::wait`: releases the lock held by the calling thread and returns its
    /// mode, to be restored by [`relock_after_wait`](Self::relock_after_wait).
    pub(crate) fn unlock_for_wait(&self) -> Result<u32, Errno> {
        let how = self.current_mode();
        self.unlock_raw().map(|()| how)
    }

    /// For `Condition::wait`: takes the lock back (waiting as long as it takes) in mode `how`.
    pub(crate) fn relock_after_wait(&self, how: u32) -> Result<Got, AcquireError<()>> {
        let outcome = match try_lock_quiet(&self.st().mutex) {
            Ok(Some(outcome)) => outcome,
            Ok(None) => self.lock_contended(Deadline::FOREVER, Spin::RELOCK)?,
            Err(Errno::DEADLK) => return Err(AcquireError::WouldDeadlock),
            Err(e) => return Err(os(e)),
        };
        self.took(outcome, how)
    }

    /// For the guards of `Value`/`Array`: acquires in [`mode::DATA`].
    #[inline(always)]
    pub(crate) fn lock_data(
        &self,
        patience: Patience,
    ) -> Result<(Got, LockGuard<'_>), AcquireError<()>> {
        self.acquire_mode(patience, mode::DATA).map(|got| (got, self.guard()))
    }
}

/// Retypes an acquire error whose `OwnerDied` arm cannot occur (the acquire paths report a
/// dead owner as `Ok(Got::OwnerDied)`, never as an error).
#[inline]
pub(crate) fn retype<G>(e: AcquireError<()>) -> AcquireError<G> {
    match e {
        AcquireError::Timeout => AcquireError::Timeout,
        AcquireError::WouldDeadlock => AcquireError::WouldDeadlock,
        AcquireError::Os(e) => AcquireError::Os(e),
        AcquireError::OwnerDied(()) => {
            AcquireError::Os(io::Error::other("internal error: owner-died without a guard"))
        }
    }
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let holder = self.st().holder.load(Relaxed);
        f.debug_struct("Lock").field("holder_tid", &(holder != 0).then_some(holder)).finish()
    }
}

impl Drop for LockGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        // The guard proves the calling thread holds the lock. (The one exception: a
        // `Condition` wait whose re-acquire failed with an OS error, which a robust mutex we
        // always make consistent does not produce; the unlock then fails with EPERM and only
        // the `holder` hint is lost. No data is at stake: `Condition` refuses to wait on a
        // lock held by a `Value`/`Array` guard.)
        let _ = self.lock.unlock_raw();
    }
}

impl LockGuard<'_> {
    /// The lock this guard holds.
    pub fn lock(&self) -> &Lock {
        self.lock
    }
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard").finish_non_exhaustive()
    }
}
