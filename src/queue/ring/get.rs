//! The get protocol: a consumer, holding the get lock, finds the next record after `head`,
//! skips an aborted one, copies a small record out whole, and copies a big one out piece by
//! piece as its producer streams it (see the [ring's docs](super#the-ring)).

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};

use super::access::ItemSink;
use super::fail::{Fail, RingResult, corrupt};
#[cfg(test)]
use super::hook::{self, Point};
use super::layout::{NONE, POS_LIMIT, REC_HDR, record_size};
use super::lock::ProducerCheck;
use super::raw::RawQueue;
use crate::wait::{Patience, Spin};

/// Payloads from this size on are received into a buffer reserved whole, with huge pages.
const BIG_PAYLOAD: u64 = 4 << 20;

/// How a big record ended for the consumer.
enum BigEnd {
    Delivered,
    Aborted,
}

impl RawQueue {
    /// The abort position, if record `gets` was aborted.
    #[inline]
    fn aborted_at(&self, gets: u64) -> Option<u64> {
        let c = &self.hdr().cfg.v;
        if c.abort_seq.load(Acquire) == gets { Some(c.abort_at.load(Relaxed)) } else { None }
    }

    /// A fresh, validated `tail`.
    #[inline]
    fn load_tail(&self, head: u64) -> RingResult<u64> {
        let h = self.hdr();
        let t = h.prod.v.tail.load(Acquire);
        if t < head || t - head > self.cap {
            return corrupt("head and tail out of order");
        }
        h.cons.v.tail_seen.store(t, Relaxed);
        Ok(t)
    }

    /// Consumed everything up to `head`, and `gets` records. The `head` store is a `SeqCst`
    /// swap: follow it with [`wake_after_swap`](Self::wake_after_swap).
    #[inline]
    fn commit_get(&self, head: u64, gets: u64) {
        let c = &self.hdr().cons.v;
        c.intent_head.store(head, Relaxed);
        c.intent_gets.store(gets, Relaxed);
        c.head.swap(head, SeqCst);
        c.gets.store(gets, Release);
    }

    /// Whether a producer is in the middle of a stream.
    pub(super) fn streaming(&self) -> bool {
        self.hdr().prod.v.stream_start.load(Acquire) != NONE
    }

    /// Whether the record `[start, end)` is the one a producer is streaming (or was, when it
    /// died and nobody has repaired it yet). When not, the `Acquire` load orders what ended
    /// the stream (`tail` reaching its end, or its abort) before the caller's next loads.
    fn is_current_stream(&self, start: u64, end: u64) -> bool {
        let p = &self.hdr().prod.v;
        p.stream_start.load(Acquire) == start
            && p.stream_end.load(Relaxed) == end
            && p.stream_start.load(Acquire) == start
    }

    /// Gets one record's payload into `out` (reset first).
    pub(crate) fn get(&self, out: &mut ItemSink<'_>, patience: Patience) -> RingResult<()> {
        out.reset();
        let _g = self.lock_get(patience)?;
        self.check_config()?;
        let h = self.hdr();
        let c = &h.cons.v;
        if c.rec_start.load(Relaxed) != NONE && h.cj.v.discard.load(Relaxed) != 1 {
            // A big record left by a consumer that failed mid-record (a garbled segment:
            // `get` does this itself on every error): handle it as a dead consumer's.
            self.abandon_big();
        }
        if c.rec_start.load(Relaxed) != NONE {
            // A dead consumer's big record: discard the rest of it first.
            self.read_big(out, true)?;
            out.reset();
        }
        let mut reload = false;
        loop {
            let head = c.head.load(Relaxed);
            let gets = c.gets.load(Relaxed);
            if head >= POS_LIMIT || gets >= POS_LIMIT {
                return corrupt("positions out of range");
            }
            let seen = c.tail_seen.load(Relaxed);
            let (t, reloaded) = if !reload && seen > head && seen - head <= self.cap {
                (seen, false)
            } else {
                (self.load_tail(head)?, true)
            };
            reload = false;
            // Check for an abort only after loading `tail`: bytes published after an abort
            // (the next records) are only visible together with it.
            if let Some(at) = self.aborted_at(gets) {
                let t = self.load_tail(head)?;
                if at < head || at > t {
                    return corrupt("abort position out of range");
                }
                self.commit_get(at, gets + 1);
                // A full fence: a producer may wait for `gets` to pass the abort.
                self.wake(&h.space.v);
                continue;
            }
            if t == head {
                if !reloaded {
                    reload = true;
                    continue;
                }
                // Empty.
                if self.is_closed() && !self.streaming() {
                    return Err(Fail::Closed);
                }
                let sliced = self.streaming();
                let ok = self.wait_on(&h.data.v, patience, sliced, Spin::QUEUE, |check| {
                    if check && self.streaming() {
                        // Repairs (aborts) a stream whose producer died or left it; whatever
                        // it finds, the condition below is re-checked.
                        self.check_producer()?;
                    }
                    // Ask for the line the next record will be in while we watch `tail`: when
                    // it moves, both lines are on their way at once instead of one after the
                    // other.
                    self.prefetch(head);
                    Ok(self.load_tail(head)? != head
                        || self.aborted_at(gets).is_some()
                        || (self.is_closed() && !self.streaming()))
                })?;
                if !ok {
                    return Err(Fail::Timeout);
                }
                reload = true;
                continue;
            }
            if t - head < REC_HDR {
                return corrupt("record header cut short");
            }
            let (len, seq) = self.read_record_header(head);
            if seq != gets {
                return corrupt("record out of sequence");
            }
            let Some(need) = record_size(len) else {
                return corrupt("record length out of range");
            };
            let end = head + need;
            if end > t && !reloaded {
                reload = true;
                continue;
            }
            if end <= t && need <= self.chunk() {
                // The common case: a small, complete record.
                if len >= BIG_PAYLOAD {
                    out.reserve_payload(len);
                }
                out.append(self, head + REC_HDR, len);
                self.commit_get(end, gets + 1);
                if self.maxsize == 0 {
                    self.wake_after_swap(&h.space.v);
                } else {
                    // A producer may wait for `gets` (stored after the swap): a full fence.
                    self.wake(&h.space.v);
                }
                return Ok(());
            }
            if end <= t || need > self.chunk() {
                if end > t {
                    // An incomplete record must be the one a producer is streaming now: one
                    // whose length word was overwritten would otherwise swallow every later
                    // record (issue 19, bug 5).
                    if !self.is_current_stream(head, end) {
                        if self.load_tail(head)? >= end || self.aborted_at(gets).is_some() {
                            // It was finished or aborted meanwhile.
                            reload = true;
                            continue;
                        }
                        return corrupt("a record longer than its producer's stream");
                    }
                    if patience.expired() {
                        // Do not start a record that cannot be finished in time.
                        return Err(Fail::Timeout);
                    }
                }
                c.rec_end.store(end, Relaxed);
                c.rec_seq.store(gets, Relaxed);
                c.rec_start.store(head, Release);
                match self.read_big(out, false) {
                    Ok(BigEnd::Delivered) => return Ok(()),
                    Ok(BigEnd::Aborted) => {
                        out.reset();
                        reload = true;
                        continue;
                    }
                    Err(e) => {
                        // Leave a state the next `get` can handle (issue 19, bug 1): as if
                        // this consumer had died here.
                        out.reset();
                        self.abandon_big();
                        return Err(e);
                    }
                }
            }
            // A record of at most a quarter of the ring never streams: it is published whole,
            // so a part of one is garbage.
            return corrupt("a small record published in part");
        }
    }

    /// Reads (or, with `discard`, skips) the rest of the big record at `rec_start`, freeing
    /// its bytes as they are copied. Ignores the caller's deadline: a record whose bytes have
    /// been freed cannot be put back. It ends when the record is complete or aborted; a
    /// producer that dies is detected (`check_producer`) and its record aborted.
    #[cold]
    fn read_big(&self, out: &mut ItemSink<'_>, discard: bool) -> RingResult<BigEnd> {
        let h = self.hdr();
        let c = &h.cons.v;
        let start = c.rec_start.load(Relaxed);
        let end = c.rec_end.load(Relaxed);
        let gets = c.gets.load(Relaxed);
        let mut pos = c.head.load(Relaxed);
        if c.rec_seq.load(Relaxed) != gets
            || !(start <= pos && pos <= end && end < POS_LIMIT)
            || end - start < REC_HDR
        {
            return corrupt("big record state out of order");
        }
        // Payload bytes: [start + REC_HDR, start + REC_HDR + payload_len).
        let payload_len = if discard {
            0
        } else {
            let (l, _) = self.read_record_header(start);
            if record_size(l) != Some(end - start) {
                return corrupt("record length changed");
            }
            l
        };
        let p_start = start + REC_HDR;
        let p_end = p_start + payload_len;
        // Reserve the whole payload only for a record the ring can hold or the one a producer
        // is streaming: a garbled length makes no allocation of its own.
        let p = &h.prod.v;
        let streamed = p.stream_start.load(Acquire) == start && p.stream_end.load(Relaxed) == end;
        if !discard && (streamed || end - start <= self.cap) {
            out.reserve_payload(payload_len);
        }
        let piece = self.piece();
        let mut released = pos;
        loop {
            let t = self.load_tail(released)?;
            #[cfg(test)]
            hook::at(Point::ReadBigTail, self);
            if let Some(at) = self.aborted_at(gets) {
                // `tail` again: the producer may have published more before it died and the
                // abort was recorded, after our load (issue 19, bug 1). The abort position was
                // the tail when it was recorded, so a load after seeing it covers it.
                let t = self.load_tail(released)?;
                if at < pos || at > t {
                    return corrupt("abort position out of range");
                }
                self.finish_big(at, true);
                return Ok(BigEnd::Aborted);
            }
            let avail = t.min(end);
            if avail > pos {
                if !discard {
                    let a = pos.max(p_start);
                    let b = avail.min(p_end);
                    if a < b {
                        out.append(self, a, b - a);
                    }
                }
                pos = avail;
                if pos == end {
                    self.finish_big(end, false);
                    return Ok(BigEnd::Delivered);
                }
                if pos - released >= piece || avail == t {
                    c.head.swap(pos, SeqCst);
                    released = pos;
                    self.wake_after_swap(&h.space.v);
                }
                continue;
            }
            if released != pos {
                c.head.swap(pos, SeqCst);
                released = pos;
                self.wake_after_swap(&h.space.v);
            }
            if !self.is_current_stream(start, end) {
                // Only its producer's stream brings more bytes of an unfinished record.
                if self.load_tail(released)? > pos || self.aborted_at(gets).is_some() {
                    continue;
                }
                return corrupt("a record longer than its producer's stream");
            }
            let mut idle = false;
            self.wait_on(&h.data.v, Patience::FOREVER, true, Spin::STREAM, |check| {
                if check {
                    idle = matches!(self.check_producer()?, ProducerCheck::Idle);
                }
                Ok(self.load_tail(released)? > pos || self.aborted_at(gets).is_some() || idle)
            })?;
            if idle && self.load_tail(released)? <= pos && self.aborted_at(gets).is_none() {
                return corrupt("an unfinished record has no producer");
            }
        }
    }
}
