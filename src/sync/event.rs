//! [`Event`]: a process-shared flag that processes can wait for — Python's
//! `multiprocessing.Event`.
//!
//! # Algorithm
//!
//! One futex word:
//!
//! | bits | meaning | set by | cleared by |
//! |---|---|---|---|
//! | 0 (`SET`) | the flag | `set` | `clear` |
//! | 1 (`WAITERS`) | someone may be asleep on the word | a waiter about to sleep | `set` (which then wakes everyone) |
//! | 2..32 | generation: how many times `set` raised the flag (wrapping) | `set` | — |
//!
//! `set` raises the flag, bumps the generation and clears `WAITERS` in one compare-and-swap,
//! and makes the wake system call only if `WAITERS` was there: setting an event nobody sleeps
//! on is a single atomic operation. A waiter spins briefly, then sets `WAITERS` and sleeps
//! while the word is unchanged. It returns `true` as soon as it sees the flag, or a generation
//! different from the one it went to sleep with: a `set` followed at once by a `clear` still
//! wakes every waiter (as with `threading.Event`). A waiter that dies leaves at most a stale
//! `WAITERS` bit, which costs the next `set` a harmless wake system call.
//!
//! Orderings: `set` publishes with `Release` (its CAS) and waiters read with `Acquire`, so
//! whatever the setter wrote before `set` is visible to a waiter that saw the flag.

#![allow(unsafe_code)] // Only `ShmBox::new`, whose initialiser leaves the zeroed word.

use std::fmt;
use std::io;
use std::mem::{align_of, size_of};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use multiproc_sys::Errno;
use multiproc_sys::sync::futex::{futex_wait, futex_wake_all};
use static_assertions::const_assert_eq;

use crate::shm::ShmBox;
use crate::wait::{Patience, Spin};

const SET: u32 = 1;
const WAITERS: u32 = 2;
const GENERATION: u32 = 4;

/// The shared state of an [`Event`]: the futex word described in the module docs.
#[repr(C)]
struct EventState {
    word: AtomicU32,
}

const_assert_eq!(size_of::<EventState>(), 4);
const_assert_eq!(align_of::<EventState>(), 4);

/// A flag shared between processes, which processes can wait for — Python's
/// `multiprocessing.Event`.
///
/// It starts cleared. [`set`](Self::set) raises it and wakes every waiter,
/// [`clear`](Self::clear) lowers it, [`wait`](Self::wait) blocks until it is raised (or a
/// timeout passes). Create it before starting the processes that use it; clones of the handle,
/// here or in a forked child, are the same event.
///
/// ```
/// use std::time::Duration;
/// use multiproc::{Event, Process};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let start = Event::new()?;
/// let workers: Vec<_> = (0..3)
///     .map(|i| {
///         let start = start.clone();
///         Process::new(move || {
///             start.wait(); // the start gun
///             i * 10
///         })
///     })
///     .collect();
/// for w in &workers {
///     w.start()?;
/// }
/// assert!(!start.is_set());
/// start.set(); // every worker goes
/// for (i, w) in workers.iter().enumerate() {
///     assert_eq!(w.join()?, i * 10);
/// }
///
/// start.clear();
/// assert!(!start.wait_timeout(Duration::from_millis(5))); // times out: false
/// # Ok(())
/// # }
/// ```
///
/// # When a process dies
///
/// Nothing is ever held, so a process dying anywhere (inside `wait` or `set`, even by
/// `SIGKILL`) blocks nobody: the flag keeps its value and other waiters keep waiting or wake
/// as before.
///
/// # Differences from Python
///
/// A waiter woken by a `set` returns `true` even if another process cleared the flag again
/// before the waiter got to look (as `threading.Event` does); Python's
/// `multiprocessing.Event.wait` may return `False` there. A timed-out wait returns the flag's
/// value at that moment (normally `false`).
#[derive(Clone)]
pub struct Event {
    state: ShmBox<EventState>,
}

impl Event {
    /// A new event, not set.
    ///
    /// # Errors
    /// Mapping the shared segment failed.
    pub fn new() -> io::Result<Event> {
        // SAFETY: `EventState` is one atomic, valid when zeroed (not set, no waiters, generation
        // 0), used only through shared references, with no `Drop`.
        let state = unsafe { ShmBox::new(0, |_: *mut EventState| Ok(()))? };
        Ok(Event { state })
    }

    #[inline]
    fn word(&self) -> &AtomicU32 {
        &self.state.get().word
    }

    /// Whether the flag is set.
    #[inline]
    pub fn is_set(&self) -> bool {
        self.word().load(Ordering::Acquire) & SET != 0
    }

    /// Sets the flag and wakes every process and thread waiting for it. Setting a set event
    /// does nothing.
    pub fn set(&self) {
        let word = self.word();
        let mut old = word.load(Ordering::Relaxed);
        loop {
            if old & SET != 0 {
                return;
            }
            let new = (old & !WAITERS).wrapping_add(GENERATION) | SET;
            match word.compare_exchange_weak(old, new, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => old = now,
            }
        }
        if old & WAITERS != 0 {
            // Cannot fail for a word we hold a reference to.
            let woken = futex_wake_all(word);
            debug_assert!(woken.is_ok(), "futex wake failed: {woken:?}");
        }
    }

    /// Clears the flag: later [`wait`](Self::wait) calls block until the next [`set`](Self::set).
    #[inline]
    pub fn clear(&self) {
        self.word().fetch_and(!SET, Ordering::Relaxed);
    }

    /// Blocks until the flag is set — Python's `wait()`. Returns at once if it is set; a flag
    /// set and cleared again while this call waited also ends it.
    pub fn wait(&self) {
        self.wait_within(Patience::FOREVER);
    }

    /// Blocks until the flag is set or `timeout` has passed (`Duration::ZERO`: just look) —
    /// Python's `wait(timeout)`. Returns `true` if the flag was set (or was set, and cleared
    /// again, while this call waited), `false` on a timeout, which is never early.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_within(Patience::lazy(Some(timeout)))
    }

    fn wait_within(&self, patience: Patience) -> bool {
        let word = self.word();
        let mut w = word.load(Ordering::Acquire);
        if w & SET != 0 {
            return true;
        }
        let generation = w & !(SET | WAITERS);
        if patience.is_try() {
            return false;
        }
        let spun = Spin::WAKE.run(patience, || {
            w = word.load(Ordering::Acquire);
            (w & SET != 0 || w & !(SET | WAITERS) != generation).then_some(())
        });
        if spun.is_some() {
            return true;
        }
        // Only now, after the spin phase: a `set` during the spin then costs no clock read, and
        // the timeout can only end later for it, never earlier.
        let deadline = patience.deadline();
        loop {
            if w & SET != 0 || w & !(SET | WAITERS) != generation {
                return true;
            }
            if w & WAITERS == 0 {
                if let Err(now) =
                    word.compare_exchange_weak(w, w | WAITERS, Ordering::Acquire, Ordering::Acquire)
                {
                    w = now;
                    continue;
                }
                w |= WAITERS;
            }
            match futex_wait(word, w, deadline) {
                Ok(()) => {}
                Err(Errno::TIMEDOUT) => {
                    let w = word.load(Ordering::Acquire);
                    return w & SET != 0 || w & !(SET | WAITERS) != generation;
                }
                // Only `EINVAL` for a malformed deadline, which `Deadline::after` never makes.
                Err(e) => {
                    debug_assert!(false, "futex wait failed: {e:?}");
                    return self.is_set();
                }
            }
            w = word.load(Ordering::Acquire);
        }
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event").field("is_set", &self.is_set()).finish()
    }
}
