//! The ring's two robust mutexes — the put lock (serialises producers) and the get lock
//! (serialises consumers) — and a consumer's check that the producer it waits for is alive.
//!
//! Every acquire goes through [`acquire`], the ring's one "lock a robust mutex, repair after a
//! holder that died, mark it consistent". It is not the crate's raw lock
//! (`sync::raw::RawLock`) because the ring needs two things that one does not do:
//!
//! - The repair runs *before* the mutex is marked consistent. A repairer that dies in the
//!   middle leaves the mutex in the owner-died state, so the next acquirer repairs again (every
//!   repair can be repeated: see [`repair`](super::repair)); marked consistent first, the mutex
//!   would hand a half-repaired ring to the next holder as a clean one.
//! - A blocked acquire sleeps in the kernel at once: no spin phase and no holder hint. The
//!   lock is held for a whole put or get (a long one streams a big item), and the ring's waits
//!   for data or room, which are the common waits, spin as the crate's waiting policy says.

use multiproc_sys::Errno;
use multiproc_sys::sync::pthread::{LockOutcome, RobustMutex};

use super::fail::{Fail, RingResult};
#[cfg(test)]
use super::hook::{self, Point};
use super::raw::RawQueue;
use crate::wait::Patience;

/// A held ring lock (the put or the get lock); unlocks it on drop.
pub(super) struct RingLockGuard<'a>(&'a RobustMutex);

impl Drop for RingLockGuard<'_> {
    fn drop(&mut self) {
        // EPERM would mean this thread does not hold it: impossible, the guard is only made
        // after a successful lock. Nothing useful can be done with an error in a destructor.
        let _ = self.0.unlock();
    }
}

/// What [`acquire`] got.
enum Took<'a> {
    /// Nothing: the lock was busy (one try) or stayed busy until the deadline.
    Nothing,
    /// The lock, from a holder that released it.
    Clean(RingLockGuard<'a>),
    /// The lock, from a holder that died; the state it protects has been repaired.
    Repaired(RingLockGuard<'a>),
}

/// Takes `m` as `patience` says (one `trylock`, or a lock until the deadline). After a holder
/// that died, runs `repair` with the mutex held, then marks it consistent, whether or not the
/// repair succeeded; a failed repair is the error (the guard is dropped: the lock is released).
///
/// Inlined: it is on the path of every put and get, and its caller's `repair` is `#[cold]`.
#[inline(always)]
fn acquire<'a>(
    m: &'a RobustMutex,
    patience: Patience,
    repair: impl FnOnce() -> RingResult<()>,
) -> RingResult<Took<'a>> {
    let outcome =
        if patience.is_try() { m.try_lock() } else { m.lock(patience.deadline()).map(Some) };
    match outcome {
        Ok(Some(LockOutcome::Acquired)) => Ok(Took::Clean(RingLockGuard(m))),
        Ok(Some(LockOutcome::OwnerDied)) => {
            let g = RingLockGuard(m);
            let repaired = repair();
            m.consistent().map_err(Fail::Os)?;
            repaired.map(|()| Took::Repaired(g))
        }
        Ok(None) | Err(Errno::TIMEDOUT) => Ok(Took::Nothing),
        Err(e) => Err(Fail::Os(e)),
    }
}

/// What a consumer learnt about the producers from `trylock` on the put lock.
pub(super) enum ProducerCheck {
    /// The put lock is held: a producer is at work.
    Busy,
    /// The put lock was free: no producer is in the middle of a record.
    Idle,
    /// Its holder had died (or had left a stream behind); the consumer repaired the producer
    /// state.
    Repaired,
}

impl RawQueue {
    /// Takes the put lock, repairing the producer state after a holder that died.
    /// [`Fail::Timeout`] if `patience` ran out first.
    #[inline]
    pub(super) fn lock_put(&self, patience: Patience) -> RingResult<RingLockGuard<'_>> {
        match acquire(&self.shm.get().put_lock.v, patience, || self.repair_producer())? {
            Took::Clean(g) | Took::Repaired(g) => Ok(g),
            Took::Nothing => Err(Fail::Timeout),
        }
    }

    /// Takes the get lock, repairing the consumer state after a holder that died.
    /// [`Fail::Timeout`] if `patience` ran out first.
    #[inline]
    pub(super) fn lock_get(&self, patience: Patience) -> RingResult<RingLockGuard<'_>> {
        match acquire(&self.shm.get().get_lock.v, patience, || self.repair_consumer())? {
            Took::Clean(g) | Took::Repaired(g) => Ok(g),
            Took::Nothing => Err(Fail::Timeout),
        }
    }

    /// Called by a consumer (holding the get lock) that waits for a producer: is the producer
    /// alive? Repairs the producer state if it died.
    #[cold]
    pub(super) fn check_producer(&self) -> RingResult<ProducerCheck> {
        #[cfg(test)]
        hook::at(Point::CheckProducer, self);
        match acquire(&self.shm.get().put_lock.v, Patience::Try, || self.repair_producer())? {
            Took::Nothing => Ok(ProducerCheck::Busy),
            Took::Repaired(_) => Ok(ProducerCheck::Repaired),
            Took::Clean(g) => {
                // Decide while holding the lock: once it is released, a live producer may start
                // a new stream, which must not look abandoned (issue 19, bug 4).
                let r = if self.streaming() {
                    // A stream marked while nobody holds the put lock was left behind (a
                    // garbled segment: a producer aborts its own stream on every error): abort
                    // it as if its producer had died.
                    self.repair_producer().map(|()| ProducerCheck::Repaired)
                } else {
                    Ok(ProducerCheck::Idle)
                };
                drop(g);
                #[cfg(test)]
                hook::at(Point::ProducerChecked, self);
                r
            }
        }
    }
}
