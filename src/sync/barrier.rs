//! [`Barrier`] — Python's `multiprocessing.Barrier` (a clone of `threading.Barrier`), shared
//! between processes, and immune to parties that die.
//!
//! # The algorithm
//!
//! Python's `threading.Barrier` state machine (filling, draining, resetting, broken), kept
//! under a robust process-shared mutex, with one addition: every party inside
//! [`Barrier::wait`] owns a *slot* that records its pid and its outcome. The segment holds a
//! header and `parties` slots:
//!
//! | word (header)  | meaning |
//! |----------------|---------|
//! | `mutex`        | [`RobustMutex`] guarding every other word (never held across a sleep or the action) |
//! | `seq`          | futex word: bumped, under the mutex, by every change that may let a sleeper go on; sleepers wait for it to change |
//! | `state`        | `FILLING` (parties arriving), `ACTION` (the last one runs the action), `DRAINING` (released parties are leaving), `RESETTING` (parties of a reset or broken cycle are leaving), `BROKEN` |
//! | `count`        | how many slots are occupied: parties inside `wait` |
//! | `parties`      | a copy of the handle's party count, checked on every lock |
//!
//! | word (slot)    | meaning |
//! |----------------|---------|
//! | `pid`          | the occupant's pid, `0` when the slot is free |
//! | `outcome`      | `WAITING`, then `RELEASED` (the cycle completed) or `FAILED` (broken or reset), written by whoever ends the cycle |
//!
//! A party arrives only in `FILLING`; in that state the occupied slots are exactly
//! `0..count`, so the arrival takes slot `count` and `count` is its arrival index. The last
//! arriver runs the action (outside the mutex, in state `ACTION`), then marks every slot
//! `RELEASED` and moves to `DRAINING`; a cycle that breaks marks the `WAITING` slots
//! `FAILED`. Each party learns its result from its own slot, so it cannot be confused by what
//! happens to the barrier afterwards, and a slot is free again only when its owner has left.
//! New arrivals wait while a cycle drains or resets, as in Python.
//!
//! # Dead parties
//!
//! Python's barrier hangs forever when a party dies (gh-123899). Here a blocked party wakes
//! every [`CHECK_INTERVAL`] and checks the pids in the other occupied slots: a dead (or zombie)
//! party that was still waiting breaks the barrier; a dead party that had already been
//! released simply has its slot freed. A party that dies holding the mutex is reported by the
//! robust mutex (`EOWNERDEAD`) to the next locker, which frees the slots of dead parties,
//! recounts, and breaks the barrier.
#![allow(unsafe_code)] // `ShmBox::new`'s initialiser and the view of the slot table.

use std::ffi::CStr;
use std::fmt;
use std::io;
use std::mem::{align_of, offset_of, size_of};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::ptr::addr_of_mut;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::time::Duration;

use multiproc_sys::io::fd::{open_read_only, read_once};
use multiproc_sys::process::pid::getpid;
use multiproc_sys::process::signal::probe;
use multiproc_sys::sync::futex::{futex_wait, futex_wake_all};
use multiproc_sys::sync::pthread::RobustMutex;
use multiproc_sys::time::Deadline;
use multiproc_sys::{Errno, Pid};
use static_assertions::{assert_impl_all, const_assert, const_assert_eq};

use super::raw::{Got, lock_consistent};
use crate::shm::ShmBox;

/// How often a blocked party checks that the other parties are still alive.
const CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// The least time `wait` gives itself to take the internal mutex, whatever its timeout.
const LOCK_GRACE: Duration = Duration::from_secs(1);

// `state` values.
const FILLING: u32 = 0;
const ACTION: u32 = 1;
const DRAINING: u32 = 2;
const RESETTING: u32 = 3;
const BROKEN: u32 = 4;

// Slot `outcome` values.
const WAITING: u32 = 0;
const RELEASED: u32 = 1;
const FAILED: u32 = 2;

/// The header at the start of the segment (see the [module docs](self)).
#[repr(C)]
struct BarrierState {
    mutex: RobustMutex,
    seq: AtomicU32,
    state: AtomicU32,
    count: AtomicU32,
    parties: AtomicU32,
}

const_assert_eq!(
    size_of::<BarrierState>(),
    (size_of::<RobustMutex>() + 16).next_multiple_of(align_of::<RobustMutex>())
);
const_assert_eq!(align_of::<BarrierState>(), align_of::<RobustMutex>());
const_assert_eq!(offset_of!(BarrierState, seq), size_of::<RobustMutex>());

/// One party's slot in the table after the header.
#[repr(C)]
struct Slot {
    pid: AtomicI32,
    outcome: AtomicU32,
}

const_assert_eq!(size_of::<Slot>(), 8);
const_assert!(align_of::<Slot>() <= 64);

/// The action run by the last party to arrive.
type Action = Arc<dyn Fn() + Send + Sync + 'static>;

/// Why [`Barrier::wait`] did not return an arrival index.
///
/// Python raises `threading.BrokenBarrierError` in every case; here the party whose own
/// timeout passed gets [`Timeout`](Self::Timeout), the others [`Broken`](Self::Broken).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use multiproc::{Barrier, BarrierError};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let barrier = Barrier::new(2)?;
/// // Nobody else comes: the wait times out, and the barrier breaks.
/// match barrier.wait_timeout(Duration::from_millis(10)) {
///     Err(BarrierError::Timeout) => {}
///     other => panic!("unexpected {other:?}"),
/// }
/// // Broken for everyone until reset (Python: BrokenBarrierError).
/// assert!(matches!(barrier.wait_timeout(Duration::from_millis(10)), Err(BarrierError::Broken)));
/// barrier.reset()?;
/// assert!(!barrier.broken());
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum BarrierError {
    /// The barrier is broken, or was broken or reset while this party waited — Python's
    /// `BrokenBarrierError`. It stays broken until [`Barrier::reset`].
    Broken,
    /// This party's timeout passed before the others arrived. The barrier is now broken for
    /// everyone (Python raises `BrokenBarrierError` here too; this variant tells the party
    /// whose timeout it was).
    Timeout,
    /// An operating-system error, or a barrier whose shared state a buggy peer overwrote
    /// ([`io::ErrorKind::InvalidData`]).
    Os(io::Error),
}

impl fmt::Display for BarrierError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BarrierError::Broken => f.write_str("the barrier is broken"),
            BarrierError::Timeout => {
                f.write_str("timed out waiting at the barrier (the barrier is now broken)")
            }
            BarrierError::Os(e) => write!(f, "barrier error: {e}"),
        }
    }
}

impl std::error::Error for BarrierError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BarrierError::Os(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for BarrierError {
    fn from(e: io::Error) -> Self {
        BarrierError::Os(e)
    }
}

fn os(e: Errno) -> BarrierError {
    BarrierError::Os(e.into())
}

fn corrupt(what: &str) -> BarrierError {
    BarrierError::Os(io::Error::new(io::ErrorKind::InvalidData, format!("corrupt barrier: {what}")))
}

/// Options for a [`Barrier`]: `Barrier::builder(3).action(f).timeout(d).build()` —
/// Python's `Barrier(parties, action=None, timeout=None)`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use multiproc::{Barrier, Process, RawValue};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Shared memory, so that the action's effect is seen whichever process runs it.
/// let cycles = RawValue::new(0u32)?;
/// let counter = cycles.clone();
/// // Python: Barrier(2, action=..., timeout=10)
/// let barrier = Barrier::builder(2)
///     .action(move || {
///         counter.fetch_add(1);
///     })
///     .timeout(Duration::from_secs(10))
///     .build()?;
/// let child = {
///     let barrier = barrier.clone();
///     Process::new(move || barrier.wait().expect("barrier")) // None: the 10 s default
/// };
/// child.start()?;
/// let mine = barrier.wait()?;
/// let theirs = child.join_timeout(Duration::from_secs(10))?;
/// assert_eq!(mine + theirs, 1); // arrival indices 0 and 1
/// assert_eq!(cycles.load(), 1); // the action ran once
/// # Ok(())
/// # }
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct BarrierBuilder {
    parties: usize,
    action: Option<Action>,
    timeout: Option<Duration>,
}

impl BarrierBuilder {
    /// A barrier for `parties` parties, without action or default timeout.
    pub fn new(parties: usize) -> BarrierBuilder {
        BarrierBuilder { parties, action: None, timeout: None }
    }

    /// Runs `action` once per cycle, in the last party to arrive, before any party is released.
    ///
    /// Every process has its own copy of the closure (the one it inherited when it was forked),
    /// so whatever it captures is that process's copy: to have an effect other processes see,
    /// it must write to shared memory (a `Value`, a pipe, a file).
    pub fn action(mut self, action: impl Fn() + Send + Sync + 'static) -> BarrierBuilder {
        self.action = Some(Arc::new(action));
        self
    }

    /// The timeout [`Barrier::wait`] uses (Python's `timeout=` argument of the constructor).
    /// Without it, the default, `wait` waits forever.
    pub fn timeout(mut self, timeout: Duration) -> BarrierBuilder {
        self.timeout = Some(timeout);
        self
    }

    /// Creates the barrier.
    ///
    /// # Errors
    ///
    /// - [`io::ErrorKind::InvalidInput`]: `parties` is `0` (Python's `threading.Barrier(0)`
    ///   raises `ValueError`; `multiprocessing.Barrier(0)` silently makes a barrier that
    ///   nobody can use) or above `u32::MAX`.
    /// - Mapping the shared segment failed.
    pub fn build(self) -> io::Result<Barrier> {
        if self.parties == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "parties must be > 0"));
        }
        let parties32 = u32::try_from(self.parties).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "parties must be at most u32::MAX")
        })?;
        let tail = self.parties.checked_mul(size_of::<Slot>()).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "too many parties for one barrier")
        })?;
        // SAFETY: the initialiser makes the (zeroed, exclusively owned, page-aligned) header a
        // valid `BarrierState`: the mutex by `RobustMutex::init` in place, the atomics by the
        // zero fill (plus `parties`). The tail of zeroes is a table of free slots. Every word
        // is an atomic or the process-shared mutex, nothing needs `Drop` (a pthread mutex in
        // an unmapped segment needs no destroy on Linux), and the header never moves.
        let shm = unsafe {
            ShmBox::new(tail, |p: *mut BarrierState| {
                RobustMutex::init(addr_of_mut!((*p).mutex)).map_err(io::Error::from)?;
                addr_of_mut!((*p).parties).write(AtomicU32::new(parties32));
                Ok(())
            })?
        };
        Ok(Barrier { shm, parties: self.parties, action: self.action, timeout: self.timeout })
    }
}

impl fmt::Debug for BarrierBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BarrierBuilder")
            .field("parties", &self.parties)
            .field("action", &self.action.is_some())
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A meeting point for a fixed number of processes (or threads) — Python's
/// `multiprocessing.Barrier`.
///
/// Each of `parties` callers of [`wait`](Self::wait) blocks until the last one arrives; then
/// all of them go on, and the barrier is ready for the next cycle. Each caller gets its arrival
/// index (`0` for the first, `parties - 1` for the last), handy to pick one party for a job.
/// An optional action ([`Barrier::with_action`]) runs once per cycle, in the last party to
/// arrive, before anyone is released.
///
/// Create it before starting the processes that use it; clones and the copies that forked
/// children inherit all refer to the same barrier.
///
/// ```
/// use multiproc::{Barrier, Process};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Python: barrier = multiprocessing.Barrier(3)
/// let barrier = Barrier::new(3)?;
/// let workers: Vec<Process<usize>> = (0..2)
///     .map(|_| {
///         let barrier = barrier.clone();
///         Process::new(move || barrier.wait().expect("barrier"))
///     })
///     .collect();
/// for w in &workers {
///     w.start()?;
/// }
/// let mine = barrier.wait()?; // all three meet here
/// let mut indices = vec![mine];
/// for w in &workers {
///     indices.push(w.join()?);
/// }
/// indices.sort();
/// assert_eq!(indices, [0, 1, 2]);
/// # Ok(())
/// # }
/// ```
///
/// # Breaking
///
/// As in Python, the barrier *breaks* when a wait times out, when [`abort`](Self::abort) is
/// called, or when the action panics; then every waiting party and every later caller gets
/// [`BarrierError::Broken`] until [`reset`](Self::reset). The party whose own timeout passed
/// gets [`BarrierError::Timeout`]; the party whose action panicked sees the panic go on.
///
/// # When a process dies
///
/// A party killed inside `wait` (even `SIGKILL`, even one left as an unreaped zombie) does not
/// leave the others hanging, unlike Python (gh-123899): the barrier breaks and the parties
/// waiting get [`BarrierError::Broken`] within about 50 ms (blocked parties check each other's
/// pids periodically), later callers too, until [`reset`](Self::reset). A party that dies after
/// being released, before it left, is just forgotten, and one that dies inside the barrier's
/// short internal critical section is reported by the robust mutex to the next caller, which
/// breaks the barrier. (Pids are compared as seen in the caller's PID namespace, and a pid
/// reused by a new process before anyone noticed the death would pass for alive: with Linux's
/// default `pid_max` that takes millions of new processes within the 50 ms.)
///
/// # Differences from Python
///
/// - `parties == 0` is an error (`multiprocessing.Barrier(0)` is accepted, and useless).
/// - Every wait honours its timeout, including while a previous cycle drains and while the
///   last party runs the action (a timeout then breaks the barrier, and the action's party
///   gets [`BarrierError::Broken`] after the action returns).
/// - Once a cycle has released its parties, they all return their index even if the barrier
///   is broken before they got to run again (Python may raise `BrokenBarrierError` in them).
#[derive(Clone)]
pub struct Barrier {
    shm: ShmBox<BarrierState>,
    /// From the constructor: the length of the slot table, never read from shared memory.
    parties: usize,
    action: Option<Action>,
    timeout: Option<Duration>,
}

assert_impl_all!(Barrier: Send, Sync, Clone);

impl Barrier {
    /// A barrier for `parties` parties — Python's `Barrier(parties)`.
    ///
    /// # Errors
    ///
    /// As for [`BarrierBuilder::build`]: [`io::ErrorKind::InvalidInput`] for `parties == 0`.
    pub fn new(parties: usize) -> io::Result<Barrier> {
        BarrierBuilder::new(parties).build()
    }

    /// A barrier for `parties` parties that runs `action` once per cycle, in the last party to
    /// arrive, before releasing anyone — Python's `Barrier(parties, action)`.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use std::sync::Arc;
    /// use multiproc::Barrier;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let runs = Arc::new(AtomicU32::new(0)); // private memory: fine with one process
    /// let r = Arc::clone(&runs);
    /// let barrier = Barrier::with_action(1, move || {
    ///     r.fetch_add(1, Ordering::Relaxed);
    /// })?;
    /// assert_eq!(barrier.wait()?, 0);
    /// assert_eq!(runs.load(Ordering::Relaxed), 1);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// See [`BarrierBuilder::action`] for what the closure may capture.
    ///
    /// # Errors
    ///
    /// As for [`Barrier::new`].
    pub fn with_action(
        parties: usize,
        action: impl Fn() + Send + Sync + 'static,
    ) -> io::Result<Barrier> {
        BarrierBuilder::new(parties).action(action).build()
    }

    /// Options: an action and a default timeout.
    pub fn builder(parties: usize) -> BarrierBuilder {
        BarrierBuilder::new(parties)
    }

    /// Waits until all parties have called `wait`, and returns this caller's arrival index
    /// (`0` for the first to arrive, `parties - 1` for the last) — Python's `wait(timeout)`.
    ///
    /// It waits at most the barrier's default timeout ([`BarrierBuilder::timeout`], itself
    /// "forever" unless set), as Python's `wait(timeout=None)` does;
    /// [`wait_timeout`](Self::wait_timeout) gives this call its own. `Barrier::new(1)?.wait()`
    /// returns `Ok(0)` at once.
    ///
    /// If this caller is the last to arrive and the barrier has an action, the action runs here
    /// first. Do not call `wait` on the same barrier from inside its action: that waits for
    /// itself until the timeout.
    ///
    /// # Errors
    ///
    /// - [`BarrierError::Timeout`]: this caller's timeout passed first; the barrier is now
    ///   broken. (Except in one case: if the barrier's internal mutex, which is only ever held
    ///   for a few loads and stores, stays busy for the timeout or one second, whichever is
    ///   longer, for example because its holder was stopped with `SIGSTOP`, the call returns
    ///   `Timeout` without having been able to break the barrier.)
    /// - [`BarrierError::Broken`]: the barrier was broken when called, or got broken or reset
    ///   while waiting (another party's timeout, [`abort`](Self::abort),
    ///   [`reset`](Self::reset), a panicking action, a party that died).
    /// - [`BarrierError::Os`]: the shared state is corrupt, or an unexpected system error.
    ///
    /// # Panics
    ///
    /// If the action panics in this caller: the barrier is broken first, then the panic goes
    /// on.
    pub fn wait(&self) -> Result<usize, BarrierError> {
        self.wait_until(Deadline::after(self.timeout))
    }

    /// As [`wait`](Self::wait), waiting at most `timeout` instead of the barrier's default —
    /// Python's `wait(timeout)`. `Duration::ZERO` breaks the barrier at once unless this
    /// caller is the last one to arrive.
    ///
    /// # Errors
    ///
    /// As for [`wait`](Self::wait).
    ///
    /// # Panics
    ///
    /// As for [`wait`](Self::wait).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<usize, BarrierError> {
        self.wait_until(Deadline::after(Some(timeout)))
    }

    fn wait_until(&self, deadline: Deadline) -> Result<usize, BarrierError> {
        let me = getpid().as_raw_nonzero().get();
        // The internal mutex is only ever held for a few loads and stores, so even a zero
        // timeout may wait for it a little: otherwise a momentary holder would make the call
        // fail without having tried.
        let lock_deadline = match deadline.remaining() {
            Some(left) if left < LOCK_GRACE => Deadline::after(Some(LOCK_GRACE)),
            _ => deadline,
        };
        let mut g = self.lock(lock_deadline)?;
        let mut next_check = Deadline::after(Some(CHECK_INTERVAL));

        // Wait while a previous cycle drains, resets or runs its action.
        loop {
            match g.state() {
                FILLING => break,
                BROKEN => return Err(BarrierError::Broken),
                _ => {}
            }
            if deadline.has_expired() {
                g.break_barrier();
                return Err(BarrierError::Timeout);
            }
            g.sleep(deadline, &mut next_check)?;
        }

        // Arrive: in FILLING the occupied slots are exactly 0..count.
        let index = g.count();
        let Some(slot) = self.slots().get(index) else {
            return Err(corrupt("a full slot table while filling"));
        };
        if slot.pid.load(Ordering::Relaxed) != 0 {
            return Err(corrupt("an occupied slot past the count"));
        }
        slot.pid.store(me, Ordering::Relaxed);
        slot.outcome.store(WAITING, Ordering::Relaxed);
        g.set_count(index + 1);

        if index + 1 == self.parties {
            return self.complete(g, slot, index);
        }

        loop {
            match slot.outcome.load(Ordering::Relaxed) {
                WAITING => {}
                RELEASED => {
                    g.leave(slot);
                    return Ok(index);
                }
                _ => {
                    g.leave(slot);
                    return Err(BarrierError::Broken);
                }
            }
            if deadline.has_expired() {
                g.break_barrier();
                g.leave(slot);
                return Err(BarrierError::Timeout);
            }
            g.sleep(deadline, &mut next_check)?;
        }
    }

    /// The last arriver's part: run the action, then release everyone.
    fn complete<'a>(
        &'a self,
        mut g: Locked<'a>,
        slot: &Slot,
        index: usize,
    ) -> Result<usize, BarrierError> {
        if let Some(action) = &self.action {
            g.set_state(ACTION);
            drop(g);
            let result = catch_unwind(AssertUnwindSafe(|| action()));
            g = self.lock(Deadline::FOREVER)?;
            let still_ours = g.state() == ACTION && slot.outcome.load(Ordering::Relaxed) == WAITING;
            match result {
                Err(panic) => {
                    if still_ours {
                        g.break_barrier();
                    }
                    g.leave(slot);
                    drop(g);
                    resume_unwind(panic);
                }
                Ok(()) if !still_ours => {
                    // Broken or reset while the action ran.
                    g.leave(slot);
                    return Err(BarrierError::Broken);
                }
                Ok(()) => {}
            }
        }
        for s in self.slots() {
            if s.pid.load(Ordering::Relaxed) != 0 {
                s.outcome.store(RELEASED, Ordering::Relaxed);
            }
        }
        g.set_state(DRAINING);
        g.leave(slot);
        Ok(index)
    }

    /// Breaks the barrier: every party waiting now and every later caller gets
    /// [`BarrierError::Broken`], until [`reset`](Self::reset) — Python's `abort()`.
    ///
    /// Parties that a completed cycle has already released are not affected.
    ///
    /// # Errors
    ///
    /// [`BarrierError::Os`] if the shared state is corrupt.
    pub fn abort(&self) -> Result<(), BarrierError> {
        let mut g = self.lock(Deadline::FOREVER)?;
        g.break_barrier();
        Ok(())
    }

    /// Returns the barrier to its initial state — Python's `reset()`.
    ///
    /// Parties waiting now get [`BarrierError::Broken`]; once they have left, the barrier is
    /// empty and not broken, and new callers start a fresh cycle (callers arriving before the
    /// waiting ones have left wait for them first, as in Python). Resetting a broken barrier
    /// makes it usable again. Resetting while a completed cycle's parties are leaving changes
    /// nothing.
    ///
    /// # Errors
    ///
    /// [`BarrierError::Os`] if the shared state is corrupt.
    pub fn reset(&self) -> Result<(), BarrierError> {
        let mut g = self.lock(Deadline::FOREVER)?;
        g.sweep(getpid().as_raw_nonzero().get());
        if g.count() == 0 {
            g.set_state(FILLING);
        } else {
            match g.state() {
                FILLING | ACTION => {
                    g.fail_waiting();
                    g.set_state(RESETTING);
                }
                BROKEN => g.set_state(RESETTING),
                _ => {} // DRAINING or RESETTING: already on the way back to FILLING.
            }
        }
        Ok(())
    }

    /// Whether the barrier is broken — Python's `broken` attribute.
    ///
    /// A party that died is noticed by the parties blocked in [`wait`](Self::wait) (within
    /// about 50 ms); until then this still reads `false`.
    pub fn broken(&self) -> bool {
        self.shm.get().state.load(Ordering::Acquire) == BROKEN
    }

    /// How many parties are waiting in the current cycle — Python's `n_waiting`.
    ///
    /// `0` while a completed or reset cycle drains and while the barrier is broken. Other
    /// processes may change it right after the read.
    pub fn n_waiting(&self) -> usize {
        let s = self.shm.get();
        match s.state.load(Ordering::Acquire) {
            FILLING | ACTION => (s.count.load(Ordering::Relaxed) as usize).min(self.parties),
            _ => 0,
        }
    }

    /// The number of parties needed to pass the barrier — Python's `parties`.
    pub fn parties(&self) -> usize {
        self.parties
    }

    /// The default timeout of [`wait`](Self::wait) — Python's `timeout` constructor argument.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The slot table after the header.
    fn slots(&self) -> &[Slot] {
        // SAFETY: `build` sized the tail for exactly `self.parties` slots (the length is the
        // handle's, never read from shared memory); the tail is 64-byte aligned (more than a
        // `Slot` needs) and was zero-filled, a valid `Slot` (atomics only); it lives as long
        // as `self.shm` and is only accessed through these atomics.
        unsafe { std::slice::from_raw_parts(self.shm.tail_ptr().cast::<Slot>(), self.parties) }
    }

    /// Locks the internal mutex (waiting at most until `deadline`), recovering from an owner
    /// that died, and checks the shared words.
    fn lock(&self, deadline: Deadline) -> Result<Locked<'_>, BarrierError> {
        let mut g = Locked { b: self, held: false, wake: false };
        g.relock(deadline)?;
        Ok(g)
    }
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier")
            .field("parties", &self.parties)
            .field("n_waiting", &self.n_waiting())
            .field("broken", &self.broken())
            .field("action", &self.action.is_some())
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The internal mutex, held; unlocks on drop, then wakes the sleepers if the state changed.
struct Locked<'a> {
    b: &'a Barrier,
    held: bool,
    /// `seq` was bumped: wake every sleeper after unlocking.
    wake: bool,
}

impl Locked<'_> {
    fn hdr(&self) -> &BarrierState {
        self.b.shm.get()
    }

    fn state(&self) -> u32 {
        self.hdr().state.load(Ordering::Relaxed)
    }

    /// Changes the state and schedules a wake-up of every sleeper.
    fn set_state(&mut self, state: u32) {
        self.hdr().state.store(state, Ordering::Release);
        self.notify();
    }

    fn count(&self) -> usize {
        self.hdr().count.load(Ordering::Relaxed) as usize
    }

    fn set_count(&mut self, n: usize) {
        // `n <= parties <= u32::MAX` (checked in `build` and `validate`).
        self.hdr().count.store(n as u32, Ordering::Relaxed);
    }

    /// Bumps `seq` so that sleepers see a change; they are woken after the unlock.
    fn notify(&mut self) {
        // Release: a sleeper that loads the new `seq` after waking relocks the mutex anyway,
        // which is what orders the data; this just keeps `seq` itself honest.
        self.hdr().seq.fetch_add(1, Ordering::Release);
        self.wake = true;
    }

    /// Marks every waiting party's slot `FAILED`.
    fn fail_waiting(&mut self) {
        for s in self.b.slots() {
            if s.pid.load(Ordering::Relaxed) != 0 && s.outcome.load(Ordering::Relaxed) == WAITING {
                s.outcome.store(FAILED, Ordering::Relaxed);
            }
        }
    }

    /// Breaks the barrier: waiting parties fail, the state is `BROKEN` until a reset.
    fn break_barrier(&mut self) {
        self.fail_waiting();
        self.set_state(BROKEN);
    }

    /// Frees the caller's slot; the last party to leave a draining or resetting cycle opens
    /// the barrier for the next one.
    fn leave(&mut self, slot: &Slot) {
        slot.pid.store(0, Ordering::Relaxed);
        slot.outcome.store(WAITING, Ordering::Relaxed);
        let n = self.count().saturating_sub(1);
        self.set_count(n);
        self.after_leave();
    }

    fn after_leave(&mut self) {
        if self.count() == 0 && matches!(self.state(), DRAINING | RESETTING) {
            self.set_state(FILLING);
        }
    }

    /// Frees the slots of dead parties (other than the caller's pid); a dead party that was
    /// still waiting breaks the barrier.
    fn sweep(&mut self, me: i32) {
        let mut freed = 0;
        let mut dead_waiter = false;
        for s in self.b.slots() {
            let pid = s.pid.load(Ordering::Relaxed);
            if pid == 0 || pid == me || party_alive(pid) {
                continue;
            }
            if s.outcome.load(Ordering::Relaxed) == WAITING {
                dead_waiter = true;
            }
            s.pid.store(0, Ordering::Relaxed);
            s.outcome.store(WAITING, Ordering::Relaxed);
            freed += 1;
        }
        if freed == 0 {
            return;
        }
        if dead_waiter {
            self.break_barrier();
        }
        let n = self.count().saturating_sub(freed);
        self.set_count(n);
        self.after_leave();
    }

    /// After `EOWNERDEAD`: the dead owner may have left any word half-updated. Free the dead
    /// parties' slots, recount, and break the barrier.
    fn recover(&mut self) {
        let me = getpid().as_raw_nonzero().get();
        for s in self.b.slots() {
            let pid = s.pid.load(Ordering::Relaxed);
            if pid < 0 || (pid != 0 && pid != me && !party_alive(pid)) {
                s.pid.store(0, Ordering::Relaxed);
                s.outcome.store(WAITING, Ordering::Relaxed);
            }
        }
        let occupied = self.b.slots().iter().filter(|s| s.pid.load(Ordering::Relaxed) != 0).count();
        self.set_count(occupied);
        self.hdr().parties.store(self.b.parties as u32, Ordering::Relaxed);
        self.break_barrier();
        self.after_leave();
    }

    /// Checks the shared words that the algorithm indexes or branches on.
    fn validate(&self) -> Result<(), BarrierError> {
        let h = self.hdr();
        if h.parties.load(Ordering::Relaxed) as usize != self.b.parties {
            return Err(corrupt("party count differs from the handle's"));
        }
        if h.state.load(Ordering::Relaxed) > BROKEN {
            return Err(corrupt("unknown state"));
        }
        if self.count() > self.b.parties {
            return Err(corrupt("more parties inside than the barrier has"));
        }
        Ok(())
    }

    /// Takes the mutex (again) and validates, or recovers after a dead owner.
    fn relock(&mut self, deadline: Deadline) -> Result<(), BarrierError> {
        debug_assert!(!self.held);
        match lock_consistent(&self.hdr().mutex, deadline) {
            Ok(Got::Clean) => {
                self.held = true;
                self.validate()
            }
            Ok(Got::OwnerDied) => {
                self.held = true;
                self.recover();
                Ok(())
            }
            Err(Errno::TIMEDOUT) => Err(BarrierError::Timeout),
            Err(e) => Err(os(e)),
        }
    }

    /// Unlocks, then wakes the sleepers if anything changed.
    fn unlock(&mut self) {
        if self.held {
            self.held = false;
            // Cannot fail: this thread holds the mutex.
            let _ = self.hdr().mutex.unlock();
        }
        if self.wake {
            self.wake = false;
            let _ = futex_wake_all(&self.hdr().seq);
        }
    }

    /// Unlocks, sleeps until something changes, `deadline`, or `next_check` (then checks that
    /// the other parties are alive), and locks again.
    fn sleep(&mut self, deadline: Deadline, next_check: &mut Deadline) -> Result<(), BarrierError> {
        // Read under the mutex: any later change bumps it, so the futex will not sleep through
        // it.
        let seen = self.hdr().seq.load(Ordering::Acquire);
        self.unlock();
        let r = futex_wait(&self.hdr().seq, seen, deadline.min(*next_check));
        // Once inside, never give up the relock: the caller's slot must be cleaned up.
        self.relock(Deadline::FOREVER)?;
        match r {
            Ok(()) | Err(Errno::TIMEDOUT) => {}
            Err(e) => return Err(os(e)),
        }
        if next_check.has_expired() {
            self.sweep(getpid().as_raw_nonzero().get());
            *next_check = Deadline::after(Some(CHECK_INTERVAL));
        }
        Ok(())
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        self.unlock();
    }
}

/// Whether the process `pid` is alive: not gone and not a zombie (a zombie is dead, only not
/// yet reaped by its parent). Reads `/proc/<pid>/stat` into a stack buffer (no allocation),
/// falling back to `kill(pid, 0)` when `/proc` cannot be read.
fn party_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    let Some(p) = Pid::from_raw(pid) else {
        return false;
    };
    // "/proc/" + at most 10 digits + "/stat" + NUL.
    let mut path = [0u8; 32];
    let mut n = 0;
    let mut push = |bytes: &[u8]| {
        for &b in bytes {
            path[n] = b;
            n += 1;
        }
    };
    push(b"/proc/");
    let mut digits = [0u8; 10];
    let mut d = 0;
    let mut v = pid as u32;
    loop {
        digits[d] = b'0' + (v % 10) as u8;
        d += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    digits[..d].reverse();
    push(&digits[..d]);
    push(b"/stat\0");
    let Ok(path) = CStr::from_bytes_with_nul(&path[..n]) else {
        return kill_probe(p);
    };
    match open_read_only(path) {
        Ok(fd) => {
            // "pid (comm) S ...": the state follows the last ')' (comm may contain one).
            let mut buf = [0u8; 256];
            match read_once(std::os::fd::AsFd::as_fd(&fd), &mut buf[..]) {
                Ok(len) => {
                    let stat = &buf[..len];
                    match stat.iter().rposition(|&c| c == b')') {
                        Some(close) => !matches!(stat.get(close + 2), Some(b'Z' | b'X' | b'x')),
                        None => kill_probe(p),
                    }
                }
                Err(Errno::SRCH) => false,
                Err(_) => kill_probe(p),
            }
        }
        Err(Errno::NOENT | Errno::SRCH) => false,
        Err(_) => kill_probe(p),
    }
}

/// `kill(pid, 0)`: only `ESRCH` means gone (a zombie still counts as alive here).
fn kill_probe(pid: Pid) -> bool {
    !matches!(probe(pid), Err(Errno::SRCH))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expect_corrupt(r: Result<(), BarrierError>) {
        match r {
            Err(BarrierError::Os(e)) => assert_eq!(e.kind(), io::ErrorKind::InvalidData),
            other => panic!("expected InvalidData, got {other:?}"),
        }
    }

    #[test]
    fn a_garbled_segment_is_an_error_not_a_panic() {
        let b = Barrier::new(2).unwrap();
        let h = b.shm.get();

        h.state.store(99, Ordering::Relaxed);
        expect_corrupt(b.wait_timeout(Duration::ZERO).map(drop));
        expect_corrupt(b.abort());
        assert!(!b.broken());
        assert_eq!(b.n_waiting(), 0);
        h.state.store(FILLING, Ordering::Relaxed);

        h.count.store(1000, Ordering::Relaxed);
        expect_corrupt(b.reset());
        h.count.store(0, Ordering::Relaxed);

        h.parties.store(5, Ordering::Relaxed);
        expect_corrupt(b.wait().map(drop));
        h.parties.store(2, Ordering::Relaxed);

        // An occupied slot past the count.
        b.slots()[0].pid.store(12345, Ordering::Relaxed);
        expect_corrupt(b.wait_timeout(Duration::ZERO).map(drop));
        b.slots()[0].pid.store(0, Ordering::Relaxed);

        // Repaired by hand, it works again (a lone wait with a zero timeout breaks it).
        assert!(matches!(b.wait_timeout(Duration::ZERO), Err(BarrierError::Timeout)));
        assert!(b.broken());
        b.reset().unwrap();
        assert!(!b.broken());
    }

    #[test]
    fn party_alive_tells_the_living_from_the_dead() {
        let me = getpid().as_raw_nonzero().get();
        assert!(party_alive(me));
        assert!(party_alive(1));
        assert!(!party_alive(0));
        assert!(!party_alive(-5));
        // A reaped child's pid is gone (until reused).
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        child.wait().unwrap();
        assert!(!party_alive(pid));
    }

    #[test]
    fn a_zombie_counts_as_dead() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        // Not reaped yet: once it has exited it is a zombie, which `kill(pid, 0)` still finds.
        let start = std::time::Instant::now();
        while party_alive(pid) {
            assert!(start.elapsed() < Duration::from_secs(10), "child never exited");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(kill_probe(Pid::from_raw(pid).unwrap()), "a zombie is still there");
        child.wait().unwrap();
    }
}
