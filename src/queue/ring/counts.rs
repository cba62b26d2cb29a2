//! What the ring counts, read without a lock: items in the queue, items lost, `close`, and
//! `JoinableQueue`'s unfinished items (`task_done`, `join`).

use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release, SeqCst};
use std::sync::atomic::fence;

use super::fail::{RingResult, corrupt};
#[cfg(test)]
use super::hook::{self, Point};
use super::layout::NONE;
use super::raw::RawQueue;
use crate::wait::{Patience, Spin};

impl RawQueue {
    /// Items in the queue (exact when no put or get is running).
    pub(crate) fn qsize(&self) -> u64 {
        let h = self.hdr();
        let gets = h.cons.v.gets.load(Acquire);
        let puts = h.prod.v.puts.load(Acquire);
        let n = puts.saturating_sub(gets);
        let a = h.cfg.v.abort_seq.load(Acquire);
        if a != NONE && a >= gets && a < puts { n - 1 } else { n }
    }

    /// Items lost because a process died in the middle of them.
    pub(crate) fn lost(&self) -> u64 {
        let h = self.hdr();
        h.cfg.v.p_lost.load(Acquire).saturating_add(h.cj.v.c_lost.load(Acquire))
    }

    /// Closes the queue for every process and wakes every sleeping producer and consumer.
    pub(crate) fn close(&self) {
        let h = self.hdr();
        h.cfg.v.closed.store(1, Release);
        fence(SeqCst);
        self.wake_now(&h.data.v);
        self.wake_now(&h.space.v);
    }

    /// Items put (aborted and lost ones excluded) minus `task_done` calls; `Err` if the words
    /// are inconsistent.
    fn unfinished_parts(&self) -> RingResult<(u64, u64)> {
        let h = self.hdr();
        // `done` first: every count read after it is at least what it was then, so a caller
        // holding an unfinished item never sees `done >= total` (read after `puts`, `done`
        // could include `task_done` calls for items put after that read).
        let done = h.join.v.done.load(Acquire);
        #[cfg(test)]
        hook::at(Point::TaskDoneReads, self);
        // `p_aborted` and `c_lost` before `puts`: each grows only after `puts` has counted
        // the record it subtracts (`apply_pj`; `finish_big` after `tail`, which follows
        // `puts`), so this never undercounts.
        let aborted = h.cfg.v.p_aborted.load(Acquire);
        let c_lost = h.cj.v.c_lost.load(Acquire);
        let puts = h.prod.v.puts.load(Acquire);
        let Some(total) = puts.checked_sub(aborted).and_then(|n| n.checked_sub(c_lost)) else {
            return corrupt("more items lost than written");
        };
        Ok((total, done))
    }

    /// Marks one item done; `Ok(false)` if there are no unfinished items.
    pub(crate) fn task_done(&self) -> RingResult<bool> {
        let h = self.hdr();
        loop {
            let (total, done) = self.unfinished_parts()?;
            if done >= total {
                return Ok(false);
            }
            if h.join.v.done.compare_exchange(done, done + 1, AcqRel, Relaxed).is_ok() {
                if done + 1 == total {
                    self.wake(&h.join.v.w);
                }
                return Ok(true);
            }
        }
    }

    /// Unfinished items (saturating).
    pub(crate) fn unfinished(&self) -> RingResult<u64> {
        let (total, done) = self.unfinished_parts()?;
        Ok(total.saturating_sub(done))
    }

    /// Waits until no item is unfinished; `Ok(false)` when `patience` runs out first.
    pub(crate) fn join(&self, patience: Patience) -> RingResult<bool> {
        self.wait_on(&self.hdr().join.v.w, patience, false, Spin::QUEUE, |_| {
            Ok(self.unfinished()? == 0)
        })
    }
}
