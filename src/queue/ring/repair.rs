//! The repair protocol: the two redo journals (the rare updates that touch several words:
//! a producer's abort, the end of a consumer's big record, a discard) and the repairs that a
//! lock's next holder makes after one that died (see the
//! [ring's docs](super#when-a-process-dies)).
//!
//! A journaled update writes its new values to the journal, marks the journal valid, applies
//! the values, and clears the mark; a repairer that finds a valid journal applies it again.
//! Every apply stores absolute values, so it can be repeated, and so can every repair: a
//! repairer that dies too leaves the lock in the owner-died state, and the next holder repairs
//! again (the lock's repair runs before the mutex is marked consistent: see
//! [`lock`](super::lock)).

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};

use super::fail::{RingResult, corrupt};
use super::layout::{CJ_BEGIN_DISCARD, CJ_END_RECORD, NONE, POS_LIMIT};
use super::raw::RawQueue;

impl RawQueue {
    // -----------------------------------------------------------------------------------------
    // Producer side (put lock held)

    /// Abandons the record being streamed (put lock held): records the abort so consumers skip
    /// its published bytes. `died`: its producer died (the item is lost) rather than gave up.
    #[cold]
    pub(super) fn abort_stream(&self, died: bool) {
        let h = self.hdr();
        let p = &h.prod.v;
        let tail = p.tail.load(Relaxed);
        if tail == p.stream_start.load(Relaxed) {
            // Nothing of it was published.
            p.stream_start.store(NONE, Release);
            return;
        }
        let j = &h.pj.v;
        j.abort_at.store(tail, Relaxed);
        j.abort_seq.store(p.puts.load(Relaxed), Relaxed);
        j.p_lost.store(h.cfg.v.p_lost.load(Relaxed).wrapping_add(u64::from(died)), Relaxed);
        j.p_aborted.store(h.cfg.v.p_aborted.load(Relaxed).wrapping_add(1), Relaxed);
        j.valid.store(1, Release);
        self.apply_pj();
        self.wake(&h.data.v);
        self.wake(&h.join.v.w);
    }

    /// Applies (or replays) the producer journal.
    fn apply_pj(&self) {
        let h = self.hdr();
        let (j, c, p) = (&h.pj.v, &h.cfg.v, &h.prod.v);
        let at = j.abort_at.load(Relaxed);
        let seq = j.abort_seq.load(Relaxed);
        let puts = seq.wrapping_add(1);
        c.abort_at.store(at, Relaxed);
        c.abort_seq.store(seq, Release);
        p.intent_tail.store(at, Relaxed);
        p.intent_puts.store(puts, Relaxed);
        // `puts` before `p_aborted`: `unfinished` reads them in the other order.
        p.puts.store(puts, Release);
        c.p_lost.store(j.p_lost.load(Relaxed), Relaxed);
        c.p_aborted.store(j.p_aborted.load(Relaxed), Release);
        p.stream_start.store(NONE, Release);
        j.valid.store(0, Release);
    }

    /// Repairs the producer state after its previous holder died (put lock held).
    #[cold]
    pub(super) fn repair_producer(&self) -> RingResult<()> {
        let h = self.hdr();
        let p = &h.prod.v;
        if h.pj.v.valid.load(Acquire) != 0 {
            self.apply_pj();
        }
        let mut tail = p.tail.load(Relaxed);
        let intent_tail = p.intent_tail.load(Relaxed);
        if p.puts.load(Relaxed) == p.intent_puts.load(Relaxed) && intent_tail > tail {
            // It died between storing `puts` and `tail` (`commit_put`): the record is written
            // whole and counted, so publish it.
            let head = h.cons.v.head.load(Acquire);
            if intent_tail >= POS_LIMIT || head > intent_tail || intent_tail - head > self.cap {
                return corrupt("intended tail out of range");
            }
            p.tail.swap(intent_tail, SeqCst);
            tail = intent_tail;
            self.wake(&h.data.v);
        }
        let start = p.stream_start.load(Relaxed);
        if start != NONE {
            let end = p.stream_end.load(Relaxed);
            if !(start <= tail && tail <= end && end < POS_LIMIT) {
                return corrupt("stream positions out of order");
            }
            if tail == end {
                // Finished; `intent` completed `puts` above.
                p.stream_start.store(NONE, Release);
            } else {
                self.abort_stream(true);
            }
            self.wake(&h.data.v);
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Consumer side (get lock held)

    /// Ends the big record: consumed up to `head`. `aborted`: it ended by an abort.
    pub(super) fn finish_big(&self, head: u64, aborted: bool) {
        let h = self.hdr();
        let (c, j) = (&h.cons.v, &h.cj.v);
        let gets = c.gets.load(Relaxed).wrapping_add(1);
        let lost = j.c_lost.load(Relaxed);
        // A discarded record is lost once it is complete (counted in `puts`): counted any
        // earlier, `task_done` would undercount the unfinished items while its producer is
        // still streaming it. An aborted one is accounted for by the producer side.
        let lost =
            if !aborted && j.discard.load(Relaxed) == 1 { lost.wrapping_add(1) } else { lost };
        j.j_c_lost.store(lost, Relaxed);
        j.j_head.store(head, Relaxed);
        j.j_gets.store(gets, Relaxed);
        j.valid.store(CJ_END_RECORD, Release);
        self.apply_cj();
        self.wake(&h.space.v);
        self.wake(&h.join.v.w);
    }

    /// Applies (or replays) the consumer journal.
    fn apply_cj(&self) {
        let h = self.hdr();
        let (c, j) = (&h.cons.v, &h.cj.v);
        match j.valid.load(Acquire) {
            CJ_BEGIN_DISCARD => {
                j.discard.store(1, Relaxed);
            }
            CJ_END_RECORD => {
                let head = j.j_head.load(Relaxed);
                let gets = j.j_gets.load(Relaxed);
                j.c_lost.store(j.j_c_lost.load(Relaxed), Release);
                c.intent_head.store(head, Relaxed);
                c.intent_gets.store(gets, Relaxed);
                c.head.store(head, Release);
                c.gets.store(gets, Release);
                j.discard.store(0, Relaxed);
                c.rec_start.store(NONE, Relaxed);
            }
            _ => {}
        }
        j.valid.store(0, Release);
    }

    /// Repairs the consumer state after its previous holder died (get lock held).
    #[cold]
    pub(super) fn repair_consumer(&self) -> RingResult<()> {
        let h = self.hdr();
        let (c, j) = (&h.cons.v, &h.cj.v);
        if j.valid.load(Acquire) != 0 {
            self.apply_cj();
        }
        let head = c.head.load(Relaxed);
        if head == c.intent_head.load(Relaxed) {
            c.gets.store(c.intent_gets.load(Relaxed), Release);
        }
        self.abandon_big();
        self.wake(&h.space.v);
        Ok(())
    }

    /// The big record at `rec_start` (if any) has no reader any more (get lock held): its
    /// consumer died or failed in the middle of it. Forgets it if nothing of it was freed (or
    /// it was finished), else marks the rest of it for discarding (counted as lost when it is
    /// complete, see `finish_big`).
    pub(super) fn abandon_big(&self) {
        let h = self.hdr();
        let (c, j) = (&h.cons.v, &h.cj.v);
        let start = c.rec_start.load(Relaxed);
        if start != NONE {
            let head = c.head.load(Relaxed);
            let gets = c.gets.load(Relaxed);
            let seq = c.rec_seq.load(Relaxed);
            if gets > seq || head == start {
                // Finished, or not started: nothing of it is lost.
                j.discard.store(0, Relaxed);
                c.rec_start.store(NONE, Relaxed);
            } else if j.discard.load(Relaxed) != 1 {
                j.j_c_lost.store(j.c_lost.load(Relaxed), Relaxed);
                j.valid.store(CJ_BEGIN_DISCARD, Release);
                self.apply_cj();
            }
        }
    }
}
