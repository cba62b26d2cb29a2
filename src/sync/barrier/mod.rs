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

use std::fmt;
use std::io;
use std::mem::{align_of, offset_of, size_of};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::ptr::addr_of_mut;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::time::Duration;

use multiproc_sys::process::pid::getpid;
use multiproc_sys::sync::futex::{futex_wait, futex_wake_all};
use multiproc_sys::sync::pthread::RobustMutex;
use multiproc_sys::time::Deadline;
use multiproc_sys::{Errno, Pid};
use static_assertions::{assert_impl_all, const_assert, const_assert_eq};

use super::error::BarrierError;
use super::raw::{Got, finish_repair, lock_for_repair};
use crate::shm::ShmBox;

mod locked;

use locked::Locked;

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

// PartySlot `outcome` values.
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
struct PartySlot {
    pid: AtomicI32,
    outcome: AtomicU32,
}

const_assert_eq!(size_of::<PartySlot>(), 8);
const_assert!(align_of::<PartySlot>() <= 64);

/// The action run by the last party to arrive.
type Action = Arc<dyn Fn() + Send + Sync + 'static>;

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
        let tail = self.parties.checked_mul(size_of::<PartySlot>()).ok_or_else(|| {
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
        slot: &PartySlot,
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
    fn slots(&self) -> &[PartySlot] {
        // SAFETY: `build` sized the tail for exactly `self.parties` slots (the length is the
        // handle's, never read from shared memory); the tail is 64-byte aligned (more than a
        // `PartySlot` needs) and was zero-filled, a valid `PartySlot` (atomics only); it lives as long
        // as `self.shm` and is only accessed through these atomics.
        unsafe { std::slice::from_raw_parts(self.shm.tail_ptr().cast::<PartySlot>(), self.parties) }
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

/// Whether party `pid` (as recorded in its slot) is alive: running and not a zombie.
fn party_alive(pid: i32) -> bool {
    Pid::from_raw(pid).is_some_and(multiproc_sys::process::procfs::is_running)
}

#[cfg(test)]
mod tests;
