//! The put protocol: a producer, holding the put lock, waits for `maxsize` and for room, then
//! writes its record and publishes it whole — or, for a big record, streams it through the
//! ring piece by piece (see the [ring's docs](super#the-ring)).

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};

use super::access::ItemBytes;
use super::fail::{Fail, RingResult, corrupt};
#[cfg(test)]
use super::hook::{self, Point};
use super::layout::{NONE, POS_LIMIT, record_size};
use super::raw::RawQueue;
use crate::wait::{Patience, Spin};

/// Records this large (and larger than a quarter of the ring) stream even when they fit.
const PIPELINE: u64 = 1 << 20;
/// Largest piece a streaming producer publishes (and a consumer frees) at once: small enough
/// that the other side can copy while this one writes, large enough to amortise the stores.
const PIECE: u64 = 64 << 10;

impl RawQueue {
    /// Free bytes after `tail`, refreshing the cached `head` when the cache shows fewer than
    /// `want` (`u64::MAX`: always refresh).
    #[inline]
    fn free_space(&self, tail: u64, want: u64) -> RingResult<u64> {
        let h = self.hdr();
        let seen = h.prod.v.head_seen.load(Relaxed);
        if seen <= tail && tail - seen <= self.cap && self.cap - (tail - seen) >= want {
            return Ok(self.cap - (tail - seen));
        }
        let head = h.cons.v.head.load(Acquire);
        if head > tail || tail - head > self.cap {
            return corrupt("head and tail out of order");
        }
        h.prod.v.head_seen.store(head, Relaxed);
        Ok(self.cap - (tail - head))
    }

    /// Whether an abort is recorded that consumers have not passed yet, given `gets`.
    #[inline]
    fn abort_pending(&self, gets: u64) -> bool {
        let a = self.hdr().cfg.v.abort_seq.load(Acquire);
        a != NONE && a >= gets
    }

    /// Items in the queue as a producer sees them (`puts` is its own), refreshing the cached
    /// `gets` when the cache shows `maxsize` or more.
    fn count_for_put(&self, puts: u64) -> RingResult<u64> {
        let h = self.hdr();
        let seen = h.prod.v.gets_seen.load(Relaxed);
        if seen <= puts && puts - seen < self.maxsize {
            return Ok(puts - seen);
        }
        let gets = h.cons.v.gets.load(Acquire);
        if gets > puts {
            return corrupt("more items read than written");
        }
        h.prod.v.gets_seen.store(gets, Relaxed);
        let a = h.cfg.v.abort_seq.load(Acquire);
        let pending = u64::from(a != NONE && a >= gets && a < puts);
        Ok(puts - gets - pending)
    }

    /// Publishes a finished record: `puts` records, then everything up to `tail`. The `tail`
    /// store is a `SeqCst` swap: follow it with [`wake_after_swap`](Self::wake_after_swap).
    #[inline]
    pub(super) fn commit_put(&self, tail: u64, puts: u64) {
        let p = &self.hdr().prod.v;
        // `puts` before `tail`: a consumer hands the record out as soon as `tail` covers it,
        // and `task_done` for it counts from `puts` (issue 19, bug 2). `intent_puts` before
        // `intent_tail`, so a repairer that finds `puts == intent_puts` knows `intent_tail`
        // belongs to the same commit (see `repair_producer`).
        p.intent_puts.store(puts, Relaxed);
        p.intent_tail.store(tail, Relaxed);
        p.puts.store(puts, Release);
        #[cfg(test)]
        hook::at(Point::CommitPut, self);
        p.tail.swap(tail, SeqCst);
    }

    /// Whether a big record (more than a quarter of the ring) of `need` bytes, to be written at
    /// `tail` as record `puts`, streams. One larger than the free space has to. A large one
    /// (`PIPELINE`) that fits streams too, so a consumer copies one piece while this side
    /// writes the next, unless consumers have yet to pass an abandoned record: only one
    /// abort may be pending, so a stream would have to wait for them, and a record that fits
    /// is written whole at once instead (a put waits only for room).
    fn should_stream(&self, tail: u64, puts: u64, need: u64) -> RingResult<bool> {
        if need > self.free_space(tail, need)? {
            return Ok(true);
        }
        if need < PIPELINE {
            return Ok(false);
        }
        let gets = self.hdr().cons.v.gets.load(Acquire);
        if gets > puts {
            return corrupt("more items read than written");
        }
        Ok(!self.abort_pending(gets))
    }

    /// Waits, on `space` (for room or for items to be taken), until `ready` says so.
    /// [`Fail::Closed`] once the queue is closed; [`Fail::Timeout`] when `patience` runs out.
    fn wait_for_space(
        &self,
        patience: Patience,
        mut ready: impl FnMut() -> RingResult<bool>,
    ) -> RingResult<()> {
        let ok = self.wait_on(&self.hdr().space.v, patience, false, Spin::QUEUE, |_| {
            if self.is_closed() {
                return Err(Fail::Closed);
            }
            ready()
        })?;
        if ok { Ok(()) } else { Err(Fail::Timeout) }
    }

    /// Size of the pieces a stream is published and freed in.
    #[inline]
    pub(super) fn piece(&self) -> u64 {
        PIECE.min(self.chunk())
    }

    /// Puts one record holding `item`.
    pub(crate) fn put(&self, item: ItemBytes<'_>, patience: Patience) -> RingResult<()> {
        let Some(need) = record_size(item.len()) else {
            return corrupt("item too large");
        };
        let _g = self.lock_put(patience)?;
        self.check_config()?;
        if self.is_closed() {
            return Err(Fail::Closed);
        }
        let h = self.hdr();
        let p = &h.prod.v;
        if p.stream_start.load(Relaxed) != NONE {
            // Left behind (only a garbled segment does that: a producer that dies is repaired
            // by `lock_put`, one that fails aborts its own stream): abort it.
            self.repair_producer()?;
        }
        let tail = p.tail.load(Relaxed);
        let puts = p.puts.load(Relaxed);
        if tail >= POS_LIMIT || puts >= POS_LIMIT {
            return corrupt("positions out of range");
        }
        if self.maxsize != 0 && self.count_for_put(puts)? >= self.maxsize {
            self.wait_for_space(patience, || Ok(self.count_for_put(puts)? < self.maxsize))?;
        }
        if need > self.chunk() && self.should_stream(tail, puts, need)? {
            return self.put_stream(item, tail, puts, need, patience);
        }
        if need > self.free_space(tail, need)? {
            self.wait_for_space(patience, || Ok(self.free_space(tail, need)? >= need))?;
        }
        self.write_record(tail, puts, item, need);
        self.commit_put(tail + need, puts + 1);
        self.wake_after_swap(&h.data.v);
        Ok(())
    }

    /// Streams a big record through the ring: see the ring's docs.
    #[cold]
    fn put_stream(
        &self,
        item: ItemBytes<'_>,
        start: u64,
        seq: u64,
        need: u64,
        patience: Patience,
    ) -> RingResult<()> {
        let h = self.hdr();
        let p = &h.prod.v;
        let first = need.min(self.chunk());
        // Wait for room for a first chunk (which holds the whole record header), and until
        // consumers have passed the previous abort (only one may be pending).
        self.wait_for_space(patience, || {
            let gets = h.cons.v.gets.load(Acquire);
            Ok(!self.abort_pending(gets) && self.free_space(start, first)? >= first)
        })?;
        let end = start + need;
        p.stream_end.store(end, Relaxed);
        p.stream_start.store(start, Release);
        let r = self.stream_pieces(item, start, seq, end, patience);
        if r.is_err() && p.stream_start.load(Relaxed) != NONE {
            // Every way out leaves the queue usable: the record is abandoned (and handed back
            // to the caller, so not counted as lost).
            self.abort_stream(false);
        }
        r
    }

    /// The body of [`put_stream`](Self::put_stream), once the stream is marked.
    fn stream_pieces(
        &self,
        item: ItemBytes<'_>,
        start: u64,
        seq: u64,
        end: u64,
        patience: Patience,
    ) -> RingResult<()> {
        let h = self.hdr();
        let p = &h.prod.v;
        let piece = self.piece();
        let mut pos = start;
        loop {
            // Write everything there is room for, publishing it piece by piece so a consumer
            // can copy one piece while this side writes the next.
            let mut room = self.free_space(pos, u64::MAX)?.min(end - pos);
            while room > 0 {
                let n = room.min(piece);
                self.write_record_part(start, seq, item, pos - start, n);
                pos += n;
                room -= n;
                if pos == end {
                    self.commit_put(end, seq + 1);
                    self.wake_after_swap(&h.data.v);
                    p.stream_start.store(NONE, Release);
                    return Ok(());
                }
                p.tail.swap(pos, SeqCst);
                self.wake_after_swap(&h.data.v);
            }
            let want = (end - pos).min(piece);
            let ok = self.wait_on(&h.space.v, patience, false, Spin::STREAM, |_| {
                Ok(self.free_space(pos, want)? >= want)
            })?;
            if !ok {
                return Err(Fail::Timeout);
            }
        }
    }
}
