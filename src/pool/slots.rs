//! The pool's shared segment: one record per worker slot, telling the parent which task the
//! worker has started, when, and letting the parent cancel a task the worker has not started.
//!
//! The segment is mapped `MAP_SHARED` before the fork server is forked, so the server and every
//! worker (forked from the server) see the parent's mapping. The worker of slot `i` (there is
//! at most one at a time: the parent asks for a replacement only once the server has reaped
//! the previous one) writes only its own record.
//!
//! # The claim ring
//!
//! A task sent to a worker gets a sequence number `seq` (per worker incarnation, from 1). Its
//! state lives in `ring[seq % RING]` as `seq << 2 | state`:
//!
//! | state | set by | meaning |
//! |---|---|---|
//! | [`EMPTY`] (the whole word is 0) | parent, in [`SlotShm::reset`] | no task was sent here |
//! | [`PENDING`] | parent, before sending the frame | in the worker's channel, not started |
//! | [`STARTED`] | worker, CAS from `PENDING` | the worker is running (or ran) it |
//! | [`CANCELLED`] | parent, CAS from `PENDING` | cancelled; the worker skips the frame |
//!
//! Exactly one of the two CASes wins, so a task is either run or cancelled, never both. The
//! parent keeps the `seq`s of a worker's unresolved tasks within a window of `RING` (a new
//! `seq` is sent only if the oldest unresolved one is less than `RING` before it), so an entry
//! is reused for a later `seq` only once the older task is resolved (result received or
//! cancelled), and a worker that finds a word for another `seq` knows its task was cancelled. When a worker
//! dies, the ring tells the parent exactly which of its tasks had started (those fail) and which
//! had not (those are sent to another worker). It costs the worker one CAS per task.
//!
//! No state is 0, so an entry the parent never wrote (0) matches no `seq`'s `PENDING` word:
//! a frame for a `seq` the parent has not published can never be claimed, not even `seq` 0 on a
//! fresh worker (issue 19; the worker also refuses seq 0 and seqs that do not grow, and checks
//! the frame's secret first, see [`proto`](super::proto)).
#![allow(unsafe_code)]

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use static_assertions::const_assert_eq;

use crate::shm::ShmBox;

/// Most tasks in flight (sent, not resolved) to one worker.
pub(crate) const RING: usize = 64;

/// Ring state of a word that was never written (the word is 0): nothing to claim.
pub(crate) const EMPTY: u64 = 0;
/// Ring state: sent, not started.
pub(crate) const PENDING: u64 = 1;
/// Ring state: claimed by the worker.
pub(crate) const STARTED: u64 = 2;
/// Ring state: cancelled by the parent.
pub(crate) const CANCELLED: u64 = 3;

/// Largest `seq` a ring word can hold (the state takes the two low bits).
pub(crate) const MAX_SEQ: u64 = u64::MAX >> 2;

/// A ring word.
#[inline]
pub(crate) const fn word(seq: u64, state: u64) -> u64 {
    (seq << 2) | state
}

/// One worker slot's record.
#[repr(C, align(64))]
pub(crate) struct SlotShm {
    /// `seq` of the task the worker started last (0: none yet).
    pub current: AtomicU64,
    /// `CLOCK_MONOTONIC` nanoseconds at which it started `current`.
    pub started_ns: AtomicU64,
    /// The claim ring (see the module docs).
    pub ring: [AtomicU64; RING],
}

const_assert_eq!(std::mem::size_of::<SlotShm>(), 576);
const_assert_eq!(std::mem::align_of::<SlotShm>(), 64);

impl SlotShm {
    /// The ring entry of `seq`.
    #[inline]
    pub(crate) fn entry(&self, seq: u64) -> &AtomicU64 {
        &self.ring[(seq % RING as u64) as usize]
    }

    /// Worker side: claims `seq` before running it. `false`: the parent cancelled it.
    #[inline]
    pub(crate) fn claim(&self, seq: u64, now_ns: u64) -> bool {
        // AcqRel: the parent's PENDING store (Release) happened before the frame was written,
        // and our STARTED must be visible to a parent that later reads the ring (Acquire).
        let won = self
            .entry(seq)
            .compare_exchange(
                word(seq, PENDING),
                word(seq, STARTED),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok();
        if won {
            self.started_ns.store(now_ns, Ordering::Relaxed);
            // Release: a parent that reads `current == seq` (Acquire) also sees `started_ns`.
            self.current.store(seq, Ordering::Release);
        }
        won
    }

    /// Parent side: whether the worker has claimed `seq`.
    #[inline]
    pub(crate) fn started(&self, seq: u64) -> bool {
        self.entry(seq).load(Ordering::Acquire) == word(seq, STARTED)
    }

    /// Parent side: cancels `seq` unless the worker claimed it first. `true`: cancelled.
    #[inline]
    pub(crate) fn cancel(&self, seq: u64) -> bool {
        self.entry(seq)
            .compare_exchange(
                word(seq, PENDING),
                word(seq, CANCELLED),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// Parent side: marks `seq` as sent (before its frame is written).
    #[inline]
    pub(crate) fn publish(&self, seq: u64) {
        self.entry(seq).store(word(seq, PENDING), Ordering::Release);
    }

    /// Parent side: the task the worker is running and since when, if it started one.
    #[inline]
    pub(crate) fn running(&self) -> Option<(u64, u64)> {
        let seq = self.current.load(Ordering::Acquire);
        (seq != 0).then(|| (seq, self.started_ns.load(Ordering::Relaxed)))
    }

    /// Parent side, with no worker in the slot: forgets the previous incarnation.
    pub(crate) fn reset(&self) {
        self.current.store(0, Ordering::Relaxed);
        self.started_ns.store(0, Ordering::Relaxed);
        for w in &self.ring {
            w.store(word(0, EMPTY), Ordering::Relaxed);
        }
    }
}

/// The header of the segment (the slots follow in the tail).
#[repr(C)]
struct SlotsHeader {
    slots: u64,
}

/// The pool's shared segment: `n` [`SlotShm`] records.
#[derive(Clone)]
pub(crate) struct Slots {
    shm: ShmBox<SlotsHeader>,
    n: usize,
}

impl Slots {
    /// Maps a zeroed segment with `n` slots.
    pub(crate) fn new(n: usize) -> io::Result<Slots> {
        let tail = n
            .checked_mul(std::mem::size_of::<SlotShm>())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "too many workers"))?;
        // SAFETY: `SlotsHeader` and `SlotShm` are integers and atomics, valid when zeroed; they are
        // only ever accessed through shared references and atomics, hold no pointers and need
        // no `Drop`.
        let shm = unsafe {
            ShmBox::<SlotsHeader>::new_passable(tail, |h| {
                (*h).slots = n as u64;
                Ok(())
            })?
        };
        Ok(Slots { shm, n })
    }

    /// Maps the slots of a pool made by the parent (a launched server): `fd` from
    /// [`fd`](Self::fd), for `n` slots (checked against the segment's header).
    pub(crate) fn from_fd(fd: std::os::fd::OwnedFd, n: usize) -> io::Result<Slots> {
        let tail = n
            .checked_mul(std::mem::size_of::<SlotShm>())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "too many workers"))?;
        // SAFETY: the descriptor comes from the parent's `Slots::new` for `n` slots (the
        // launch message's sender); the header's count is checked below before any slot is
        // used.
        let shm = unsafe { ShmBox::<SlotsHeader>::from_fd(fd, tail)? };
        if shm.get().slots != n as u64 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "slot count mismatch"));
        }
        Ok(Slots { shm, n })
    }

    /// A descriptor of the segment, to pass to a launched server.
    pub(crate) fn fd(&self) -> io::Result<std::os::fd::OwnedFd> {
        self.shm.fd()
    }

    /// Slot `i`'s record.
    ///
    /// # Panics
    /// If `i` is out of range (a bug in the pool: slot numbers come from the pool itself).
    #[inline]
    pub(crate) fn get(&self, i: usize) -> &SlotShm {
        assert!(i < self.n, "slot {i} out of range");
        debug_assert_eq!(self.shm.get().slots, self.n as u64);
        // SAFETY: the tail holds `n` records (sized in `new`), is 64-byte aligned (ShmBox's tail
        // alignment, which satisfies `SlotShm`'s), zero-initialised (a valid `SlotShm`) and
        // lives as long as `self.shm`.
        unsafe { &*self.shm.tail_ptr().cast::<SlotShm>().add(i) }
    }
}

/// `CLOCK_MONOTONIC` now, in nanoseconds.
#[inline]
pub(crate) fn now_ns() -> u64 {
    let t = multiproc_sys::time::monotonic_now();
    (t.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(t.tv_nsec as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_and_cancel_exclude_each_other() {
        let slots = Slots::new(2).unwrap();
        let s = slots.get(1);
        s.publish(5);
        assert!(!s.started(5));
        assert!(s.claim(5, 42));
        assert!(s.started(5));
        assert!(!s.cancel(5));
        assert_eq!(s.running(), Some((5, 42)));
        s.publish(6);
        assert!(s.cancel(6));
        assert!(!s.claim(6, 1));
        // A later seq on the same entry makes an old frame read as cancelled.
        s.publish(7 + RING as u64);
        assert!(!s.claim(7, 1));
        s.reset();
        assert_eq!(s.running(), None);
    }

    #[test]
    fn an_unpublished_entry_is_never_claimed() {
        // Issue 19: a fresh (all-zero) ring used to read as "seq 0 pending".
        let slots = Slots::new(1).unwrap();
        let s = slots.get(0);
        for seq in [0, 1, RING as u64, MAX_SEQ] {
            assert!(!s.claim(seq, 1), "seq {seq} claimed without being published");
            assert!(!s.started(seq));
        }
        assert_eq!(s.running(), None);
        s.publish(1);
        assert!(!s.claim(1 + RING as u64, 1), "another seq on the same entry");
        assert!(s.claim(1, 1));
    }
}
