//! Futexes that work across processes.
//!
//! A futex is a 32-bit word plus a kernel wait queue keyed by that word. [`futex_wait`] sleeps
//! as long as the word holds an expected value; [`futex_wake`] wakes sleepers. Everything else
//! (what the word means, when to wait, when to wake) is the caller's algorithm: the locks,
//! events and semaphores of `multiproc` are built from these two calls.
//!
//! # Shared, not private
//!
//! The kernel finds the wait queue of a futex from a *key*. With `FUTEX_PRIVATE_FLAG` the key is
//! (address space, virtual address): cheap to compute, but it names the word only inside the
//! calling process. A waiter in another process has a different address space, hence a
//! different key, and a private wake never finds it, even when both processes map the very same
//! page at the very same address (as they do after `fork`). Without the flag (a *shared*
//! futex), the key of a word in a `MAP_SHARED` mapping is (backing object, page, offset), so
//! every process that maps the segment, at any address, meets on the same queue.
//!
//! std's `Mutex`/`Condvar`/`Once` and parking_lot's locks hard-code `FUTEX_PRIVATE_FLAG` (as
//! they should: they serve threads of one process). **Never put a `std::sync` or parking_lot
//! type in shared memory**: a process blocked on one would only ever be woken by threads of its
//! own, and would hang forever when the holder lives in another process.
//!
//! So the plain names here ([`futex_wait`], [`futex_wake`], [`futex_wake_one`],
//! [`futex_wake_all`]) are the shared operations, and the private ones say so in their name
//! ([`futex_wait_private`], [`futex_wake_private`]): use those only for words that no other
//! process ever waits on. Waiter and waker of one word must agree on the flag.
//!
//! A shared futex in a `MAP_PRIVATE` mapping is private in practice: after `fork` each process
//! has its own copy-on-write page, so it is keyed per process and holds a different value. Shared
//! words belong in `MAP_SHARED` memory (see [`crate::mem::mmap`]).
//!
//! # Memory ordering
//!
//! The kernel compares the word with `expected` and queues the waiter atomically with respect
//! to [`futex_wake`] on the same word (both run under the queue's lock, with full barriers). So
//! a wake-up cannot be lost, provided the two sides follow this protocol:
//!
//! - **Waker**: first change the word (or the state it guards) with an atomic store of at least
//!   `Release` ordering, *then* call [`futex_wake`]. A wake issued before the store may find
//!   nobody asleep while a waiter that read the old value is about to sleep.
//! - **Waiter**: load the word (`Acquire`), decide to sleep on the value it saw, and pass that
//!   value as `expected`. If the word has changed in between, the kernel refuses to sleep and
//!   [`futex_wait`] returns at once.
//! - **After any return, re-check.** [`futex_wait`] returning `Ok(())` means "woken, or the
//!   value differed, or a spurious wake-up", never "the condition holds". The waiter loads the
//!   word again (`Acquire`) and loops. The syscall itself is not an acquire operation that user
//!   code may rely on: the happens-before edge from the waker's writes to the waiter's reads comes
//!   from that `Release` store / `Acquire` load pair on the word.
//!
//! ```text
//! waker                                  waiter
//! data = 42 (any write)                  while word.load(Acquire) == 0 {
//! word.store(1, Release)                     futex_wait(word, 0, deadline)?;
//! futex_wake_one(word)                   }
//!                                        assert_eq!(data, 42)
//! ```
//!
//! # Timeouts
//!
//! Waits use `FUTEX_WAIT_BITSET` with an *absolute* `CLOCK_MONOTONIC` deadline
//! ([`Deadline::as_timespec`]), so a wait interrupted by a signal (`EINTR`) is retried with the
//! same deadline and no arithmetic, and a wall-clock step changes nothing.
//!
//! Everything here is a raw `futex(2)` system call: async-signal-safe, no allocation, no lock.
//!
//! # References
//! - [Linux `futex(2)`]
//! - [Linux `futex(7)`]
//! - Ulrich Drepper, [*Futexes Are Tricky*] (the protocol above)
//!
//! [Linux `futex(2)`]: https://man7.org/linux/man-pages/man2/futex.2.html
//! [Linux `futex(7)`]: https://man7.org/linux/man-pages/man7/futex.7.html
//! [*Futexes Are Tricky*]: https://www.akkadia.org/drepper/futex.pdf

use crate::errno::IntoErrno;
use core::num::NonZeroU32;
use core::sync::atomic::AtomicU32;

use rustix::thread::futex::{self, Flags};

use crate::cvt::retry_eintr;
use crate::errno::{Errno, Result};
use crate::time::Deadline;

/// `FUTEX_BITSET_MATCH_ANY`: the waiter matches every wake (we use the bitset op only for its
/// absolute timeout).
const MATCH_ANY: NonZeroU32 = NonZeroU32::MAX;

/// The largest waiter count the kernel understands: it reads the count as a C `int`, so
/// `u32::MAX` would be `-1` and wake a single waiter.
const WAKE_ALL: u32 = i32::MAX as u32;

/// `futex(word, FUTEX_WAIT_BITSET, expected, deadline, NULL, FUTEX_BITSET_MATCH_ANY)` — sleeps
/// while `*word == expected`, until woken or `deadline` (shared futex).
///
/// The kernel checks the value and goes to sleep atomically with respect to [`futex_wake`] on
/// the same word, from any process that maps it `MAP_SHARED`. Returns:
///
/// - `Ok(())` when woken by a [`futex_wake`], when `*word != expected` already (`EAGAIN`), or
///   on a spurious wake-up. It says nothing about the word's new value: re-load it and loop
///   (see the [module docs](self#memory-ordering)).
/// - `Err(Errno::TIMEDOUT)` only when `deadline` has passed. A deadline that has already passed
///   (a zero timeout) does not sleep: the call returns `Ok(())` if the value differs and
///   `Err(Errno::TIMEDOUT)` if it is still `expected`.
///
/// `EINTR` is retried with the same absolute deadline. [`Deadline::FOREVER`] waits without a
/// timeout.
///
/// Async-signal-safe.
///
/// # Errors
///
/// - [`Errno::TIMEDOUT`]: the deadline passed while `*word == expected`.
/// - [`Errno::INVAL`]: a deadline built with [`Deadline::at`] from a malformed `timespec`.
///
/// # Examples
///
/// ```
/// # use core::sync::atomic::{AtomicU32, Ordering};
/// # use core::time::Duration;
/// # use multiproc_sys::sync::futex::futex_wait;
/// # use multiproc_sys::time::Deadline;
/// # use multiproc_sys::Errno;
/// let word = AtomicU32::new(0);
/// let deadline = Deadline::after(Some(Duration::from_millis(10)));
/// // Nobody stores or wakes: the wait times out.
/// while word.load(Ordering::Acquire) == 0 {
///     match futex_wait(&word, 0, deadline) {
///         Ok(()) => continue,
///         Err(Errno::TIMEDOUT) => break,
///         Err(e) => return Err(e),
///     }
/// }
/// # Ok::<(), Errno>(())
/// ```
///
/// # References
/// - [Linux `futex(2)`]
/// - [Linux `futex(7)`]
///
/// [Linux `futex(2)`]: https://man7.org/linux/man-pages/man2/futex.2.html
/// [Linux `futex(7)`]: https://man7.org/linux/man-pages/man7/futex.7.html
#[inline]
pub fn futex_wait(word: &AtomicU32, expected: u32, deadline: Deadline) -> Result<()> {
    wait(word, Flags::empty(), expected, deadline)
}

/// `futex(word, FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG, expected, deadline, NULL,
/// FUTEX_BITSET_MATCH_ANY)` — [`futex_wait`] for a word only this process waits on.
///
/// Same contract as [`futex_wait`], but keyed by this process's address space: only
/// [`futex_wake_private`] from this same process wakes it. A wake from another process, shared
/// or private, never reaches it (see the [module docs](self#shared-not-private)). Use it for
/// thread-only words; anything in a shared segment uses [`futex_wait`].
///
/// Async-signal-safe.
///
/// # Errors
///
/// As [`futex_wait`].
///
/// # References
/// - [Linux `futex(2)`]
/// - [Linux `futex(7)`]
///
/// [Linux `futex(2)`]: https://man7.org/linux/man-pages/man2/futex.2.html
/// [Linux `futex(7)`]: https://man7.org/linux/man-pages/man7/futex.7.html
#[inline]
pub fn futex_wait_private(word: &AtomicU32, expected: u32, deadline: Deadline) -> Result<()> {
    wait(word, Flags::PRIVATE, expected, deadline)
}

/// `futex(word, FUTEX_WAKE, n)` — wakes at most `n` waiters of `word` in any process (shared
/// futex); returns how many it woke.
///
/// Store the new value (`Release`) before calling it; see the
/// [module docs](self#memory-ordering). Waking a word nobody waits on is cheap and returns
/// `Ok(0)`.
///
/// The kernel reads `n` as a C `int` and wakes at least one waiter whatever the count, so this
/// wrapper returns `Ok(0)` for `n == 0` without a system call and caps `n` at `i32::MAX`
/// ("all"); `u32::MAX` therefore wakes everyone rather than one.
///
/// Async-signal-safe.
///
/// # Errors
///
/// None expected: the word comes from a reference, so `EFAULT` cannot happen. A kernel error
/// is passed on.
///
/// # References
/// - [Linux `futex(2)`]
/// - [Linux `futex(7)`]
///
/// [Linux `futex(2)`]: https://man7.org/linux/man-pages/man2/futex.2.html
/// [Linux `futex(7)`]: https://man7.org/linux/man-pages/man7/futex.7.html
#[inline]
pub fn futex_wake(word: &AtomicU32, n: u32) -> Result<usize> {
    wake(word, Flags::empty(), n)
}

/// `futex(word, FUTEX_WAKE, 1)` — wakes one waiter of `word` in any process; returns whether it
/// woke one.
///
/// [`futex_wake`] with `n == 1`. Async-signal-safe.
///
/// # Errors
///
/// As [`futex_wake`].
///
/// # References
/// - [Linux `futex(2)`]
/// - [Linux `futex(7)`]
///
/// [Linux `futex(2)`]: https://man7.org/linux/man-pages/man2/futex.2.html
/// [Linux `futex(7)`]: https://man7.org/linux/man-pages/man7/futex.7.html
#[inline]
pub fn futex_wake_one(word: &AtomicU32) -> Result<bool> {
    futex_wake(word, 1).map(|n| n != 0)
}

/// `futex(word, FUTEX_WAKE, INT_MAX)` — wakes every waiter of `word` in every process; returns
/// how many it woke.
///
/// [`futex_wake`] with `n == i32::MAX`. Async-signal-safe.
///
/// # Errors
///
/// As [`futex_wake`].
///
/// # References
/// - [Linux `futex(2)`]
/// - [Linux `futex(7)`]
///
/// [Linux `futex(2)`]: https://man7.org/linux/man-pages/man2/futex.2.html
/// [Linux `futex(7)`]: https://man7.org/linux/man-pages/man7/futex.7.html
#[inline]
pub fn futex_wake_all(word: &AtomicU32) -> Result<usize> {
    futex_wake(word, WAKE_ALL)
}

/// `futex(word, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, n)` — wakes at most `n` waiters of `word`
/// that [`futex_wait_private`] put to sleep in *this* process; returns how many it woke.
///
/// It never wakes a waiter in another process, nor one that used the shared [`futex_wait`]
/// (see the [module docs](self#shared-not-private)). `n` is handled as in [`futex_wake`]
/// (`0` wakes nobody, anything above `i32::MAX` means all).
///
/// Async-signal-safe.
///
/// # Errors
///
/// As [`futex_wake`].
///
/// # References
/// - [Linux `futex(2)`]
/// - [Linux `futex(7)`]
///
/// [Linux `futex(2)`]: https://man7.org/linux/man-pages/man2/futex.2.html
/// [Linux `futex(7)`]: https://man7.org/linux/man-pages/man7/futex.7.html
#[inline]
pub fn futex_wake_private(word: &AtomicU32, n: u32) -> Result<usize> {
    wake(word, Flags::PRIVATE, n)
}

/// The wait loop shared by both flavours: `EAGAIN` and wake-ups are `Ok`, `EINTR` is retried
/// with the same absolute deadline, `ETIMEDOUT` is passed on.
fn wait(word: &AtomicU32, flags: Flags, expected: u32, deadline: Deadline) -> Result<()> {
    // No `FUTEX_CLOCK_REALTIME` in `flags`: `FUTEX_WAIT_BITSET` then reads the timeout as an
    // absolute `CLOCK_MONOTONIC` time, which is exactly what `Deadline` holds.
    let timeout = deadline.as_timespec().map(|t| t.to_rustix());
    let timeout = timeout.as_ref();
    match retry_eintr(|| futex::wait_bitset(word, flags, expected, timeout, MATCH_ANY).errno()) {
        Ok(()) | Err(Errno::AGAIN) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The wake shared by both flavours, with the count clamped to what the kernel understands.
fn wake(word: &AtomicU32, flags: Flags, n: u32) -> Result<usize> {
    if n == 0 {
        // The kernel would still wake one waiter for a count of 0.
        return Ok(0);
    }
    futex::wake(word, flags, n.min(WAKE_ALL)).errno()
}
