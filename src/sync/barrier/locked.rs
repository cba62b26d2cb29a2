//! The barrier's internal mutex, held: the state machine every operation runs under.

use std::sync::atomic::Ordering;

use multiproc_sys::process::pid::getpid;
use multiproc_sys::time::Deadline;

use super::*;

/// The internal mutex, held; unlocks on drop, then wakes the sleepers if the state changed.
pub(super) struct Locked<'a> {
    pub(super) b: &'a Barrier,
    pub(super) held: bool,
    /// `seq` was bumped: wake every sleeper after unlocking.
    pub(super) wake: bool,
}

impl Locked<'_> {
    pub(super) fn hdr(&self) -> &BarrierState {
        self.b.shm.get()
    }

    pub(super) fn state(&self) -> u32 {
        self.hdr().state.load(Ordering::Relaxed)
    }

    /// Changes the state and schedules a wake-up of every sleeper.
    pub(super) fn set_state(&mut self, state: u32) {
        self.hdr().state.store(state, Ordering::Release);
        self.notify();
    }

    pub(super) fn count(&self) -> usize {
        self.hdr().count.load(Ordering::Relaxed) as usize
    }

    pub(super) fn set_count(&mut self, n: usize) {
        // `n <= parties <= u32::MAX` (checked in `build` and `validate`).
        self.hdr().count.store(n as u32, Ordering::Relaxed);
    }

    /// Bumps `seq` so that sleepers see a change; they are woken after the unlock.
    pub(super) fn notify(&mut self) {
        // Release: a sleeper that loads the new `seq` after waking relocks the mutex anyway,
        // which is what orders the data; this just keeps `seq` itself honest.
        self.hdr().seq.fetch_add(1, Ordering::Release);
        self.wake = true;
    }

    /// Marks every waiting party's slot `FAILED`.
    pub(super) fn fail_waiting(&mut self) {
        for s in self.b.slots() {
            if s.pid.load(Ordering::Relaxed) != 0 && s.outcome.load(Ordering::Relaxed) == WAITING {
                s.outcome.store(FAILED, Ordering::Relaxed);
            }
        }
    }

    /// Breaks the barrier: waiting parties fail, the state is `BROKEN` until a reset.
    pub(super) fn break_barrier(&mut self) {
        self.fail_waiting();
        self.set_state(BROKEN);
    }

    /// Frees the caller's slot; the last party to leave a draining or resetting cycle opens
    /// the barrier for the next one.
    pub(super) fn leave(&mut self, slot: &PartySlot) {
        slot.pid.store(0, Ordering::Relaxed);
        slot.outcome.store(WAITING, Ordering::Relaxed);
        let n = self.count().saturating_sub(1);
        self.set_count(n);
        self.after_leave();
    }

    pub(super) fn after_leave(&mut self) {
        if self.count() == 0 && matches!(self.state(), DRAINING | RESETTING) {
            self.set_state(FILLING);
        }
    }

    /// Frees the slots of dead parties (other than the caller's pid); a dead party that was
    /// still waiting breaks the barrier.
    pub(super) fn sweep(&mut self, me: i32) {
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
    pub(super) fn recover(&mut self) {
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
    pub(super) fn validate(&self) -> Result<(), BarrierError> {
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
    pub(super) fn relock(&mut self, deadline: Deadline) -> Result<(), BarrierError> {
        debug_assert!(!self.held);
        match lock_for_repair(&self.hdr().mutex, deadline) {
            Ok(Got::Clean) => {
                self.held = true;
                self.validate()
            }
            Ok(Got::OwnerDied) => {
                self.held = true;
                // Repaired first, then marked consistent: a death in between leaves the mutex
                // owner-dead, and the next locker runs the (idempotent) recovery again.
                self.recover();
                finish_repair(&self.hdr().mutex).map_err(|e| {
                    self.held = false;
                    os(e)
                })
            }
            Err(Errno::TIMEDOUT) => Err(BarrierError::Timeout),
            Err(e) => Err(os(e)),
        }
    }

    /// Unlocks, then wakes the sleepers if anything changed.
    pub(super) fn unlock(&mut self) {
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
    pub(super) fn sleep(
        &mut self,
        deadline: Deadline,
        next_check: &mut Deadline,
    ) -> Result<(), BarrierError> {
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
