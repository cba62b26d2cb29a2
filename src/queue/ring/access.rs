//! The only code that touches the ring's bytes: bounds-checked copies in and out (wrapping at
//! the ring's end), record headers, and what is copied: an item's bytes going in
//! ([`ItemBytes`]) and the buffer they come out into ([`ItemSink`]).
//!
//! # Unsafe in this file
//!
//! The copies themselves: raw-pointer copies between private buffers and the shared ring, each
//! at an offset masked with the handle's private capacity and at most `capacity` long.
#![allow(unsafe_code)]

use std::ptr;

use super::layout::REC_HDR;
use super::raw::RawQueue;

/// The most a consumer reserves for a payload before its bytes arrive.
const RESERVE_LIMIT: u64 = 1 << 30;

/// An item's bytes, the payload of its record, given in two parts (a codec length prefix and a
/// body, or an empty prefix) so a caller can frame bytes it does not own without copying them
/// first.
#[derive(Clone, Copy)]
pub(crate) struct ItemBytes<'a> {
    pub(crate) prefix: &'a [u8],
    pub(crate) body: &'a [u8],
}

impl ItemBytes<'_> {
    /// Payload bytes in all.
    pub(super) fn len(&self) -> u64 {
        (self.prefix.len() + self.body.len()) as u64
    }
}

/// Where a consumer copies a payload: the first `divert` bytes (at most 8) go to `prefix`, the
/// rest is appended to `out`.
pub(crate) struct ItemSink<'a> {
    prefix: [u8; 8],
    divert: usize,
    got: u64,
    out: &'a mut Vec<u8>,
}

impl<'a> ItemSink<'a> {
    /// A sink that clears `out` and diverts the first `divert` (at most 8) bytes.
    pub(crate) fn new(out: &'a mut Vec<u8>, divert: usize) -> ItemSink<'a> {
        out.clear();
        ItemSink { prefix: [0; 8], divert: divert.min(8), got: 0, out }
    }

    /// The diverted bytes.
    pub(crate) fn prefix(&self) -> &[u8] {
        &self.prefix[..(self.got as usize).min(self.divert)]
    }

    /// Forgets what was copied so far.
    pub(super) fn reset(&mut self) {
        self.out.clear();
        self.got = 0;
    }

    /// Makes room for a whole payload of `len` bytes at once (one allocation instead of one
    /// per streamed piece), with huge pages for a large one: see
    /// [`advise_huge_pages`](multiproc_sys::mem::mmap::advise_huge_pages). At most
    /// `RESERVE_LIMIT`: the length comes from shared memory, and a bigger item (or a garbled
    /// length) grows the buffer only as its bytes actually arrive.
    pub(super) fn reserve_payload(&mut self, len: u64) {
        let rest = len.saturating_sub(self.divert as u64).min(RESERVE_LIMIT);
        let Ok(rest) = usize::try_from(rest) else {
            return;
        };
        let before = self.out.capacity();
        // A length larger than the memory can hold fails here: leave it to the copies, which
        // grow the buffer as the bytes actually arrive.
        if self.out.try_reserve_exact(rest).is_ok() && self.out.capacity() != before {
            multiproc_sys::mem::mmap::advise_huge_pages(self.out.spare_capacity_mut());
        }
    }

    /// Appends `len` (at most `capacity`) payload bytes found at ring position `pos`.
    pub(super) fn append(&mut self, q: &RawQueue, mut pos: u64, mut len: u64) {
        if self.got < self.divert as u64 {
            let k = len.min(self.divert as u64 - self.got);
            let dst = &mut self.prefix[self.got as usize..(self.got + k) as usize];
            // SAFETY: `dst` is a private buffer of exactly `k` bytes.
            unsafe { q.ring_read_raw(pos, dst.as_mut_ptr(), dst.len()) };
            self.got += k;
            pos += k;
            len -= k;
        }
        if len > 0 {
            q.ring_read_append(pos, len, self.out);
            self.got += len;
        }
    }
}

/// Copies `len` bytes from `src` to `dst`: short copies inline with (possibly overlapping)
/// unaligned word moves, longer ones with `memcpy`. Most items are a few bytes, and a call to
/// `memcpy` for 8 of them costs more than the rest of the copy path.
///
/// # Safety
/// - `src` is valid for reads and `dst` for writes of `len` bytes, and the ranges do not
///   overlap.
#[inline(always)]
unsafe fn copy_bytes(src: *const u8, dst: *mut u8, len: usize) {
    // SAFETY: every access below stays inside `[0, len)` of `src` or `dst` (the caller's
    // contract): the second word of each pair ends exactly at `len`.
    unsafe {
        if len > 32 {
            ptr::copy_nonoverlapping(src, dst, len);
        } else if len >= 16 {
            let a = ptr::read_unaligned(src.cast::<u128>());
            let b = ptr::read_unaligned(src.add(len - 16).cast::<u128>());
            ptr::write_unaligned(dst.cast::<u128>(), a);
            ptr::write_unaligned(dst.add(len - 16).cast::<u128>(), b);
        } else if len >= 8 {
            let a = ptr::read_unaligned(src.cast::<u64>());
            let b = ptr::read_unaligned(src.add(len - 8).cast::<u64>());
            ptr::write_unaligned(dst.cast::<u64>(), a);
            ptr::write_unaligned(dst.add(len - 8).cast::<u64>(), b);
        } else if len >= 4 {
            let a = ptr::read_unaligned(src.cast::<u32>());
            let b = ptr::read_unaligned(src.add(len - 4).cast::<u32>());
            ptr::write_unaligned(dst.cast::<u32>(), a);
            ptr::write_unaligned(dst.add(len - 4).cast::<u32>(), b);
        } else {
            for i in 0..len {
                *dst.add(i) = *src.add(i);
            }
        }
    }
}

impl RawQueue {
    /// Copies `src` into the ring from position `pos` on, wrapping at the end.
    #[inline]
    fn ring_write(&self, pos: u64, src: &[u8]) {
        let base = self.shm.tail_ptr();
        let cap = self.cap as usize;
        let len = src.len().min(cap);
        let off = (pos & self.mask) as usize;
        let first = len.min(cap - off);
        // SAFETY: the ring is `cap` bytes from `base` (`tail_len() == cap`). `off < cap` and
        // `first <= cap - off`, so `[off, off + first)` is inside it; the rest, `len - first`
        // bytes from `base`, is empty unless `first == cap - off`, and then
        // `len - first <= cap - (cap - off) = off < cap`. `src` is a private buffer of at least
        // `len` bytes, which cannot overlap the shared segment. Other processes may read or (if
        // buggy) write these bytes concurrently: they are plain bytes reached only through raw
        // pointers, never through references, and what we read is validated before use.
        unsafe {
            copy_bytes(src.as_ptr(), base.add(off), first);
            copy_bytes(src.as_ptr().add(first), base, len - first);
        }
    }

    /// Copies `len` bytes of the ring from position `pos` on to `dst`, wrapping at the end.
    ///
    /// # Safety
    /// - `dst` is valid for writes of `len` bytes and does not point into the ring.
    #[inline]
    unsafe fn ring_read_raw(&self, pos: u64, dst: *mut u8, len: usize) {
        let base = self.shm.tail_ptr();
        let cap = self.cap as usize;
        let len = len.min(cap);
        let off = (pos & self.mask) as usize;
        let first = len.min(cap - off);
        // SAFETY: as in `ring_write`, both source ranges lie inside the ring; `dst` is valid for
        // `len` bytes (caller) and private.
        unsafe {
            copy_bytes(base.add(off), dst, first);
            copy_bytes(base, dst.add(first), len - first);
        }
    }

    /// Appends `len` (at most `capacity`) bytes of the ring from `pos` on to `out`.
    #[inline]
    fn ring_read_append(&self, pos: u64, len: u64, out: &mut Vec<u8>) {
        let len = len.min(self.cap) as usize;
        out.reserve(len);
        let old = out.len();
        // SAFETY: `reserve` made room for `len` more bytes after `old`; the Vec is private.
        // `ring_read_raw` initialises exactly those `len` bytes, so `set_len` is sound.
        unsafe {
            self.ring_read_raw(pos, out.as_mut_ptr().add(old), len);
            out.set_len(old + len);
        }
    }

    /// Hints the CPU to fetch the ring's cache line at position `pos` (no memory access as far
    /// as the language is concerned, so it cannot race with a producer writing there).
    #[inline(always)]
    pub(super) fn prefetch(&self, pos: u64) {
        #[cfg(target_arch = "x86_64")]
        {
            let p = self.shm.tail_ptr().wrapping_add((pos & self.mask) as usize);
            // SAFETY: a prefetch is only a hint: it never faults and reads nothing the program
            // can observe. SSE is part of the x86_64 baseline.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                    p.cast_const().cast::<i8>(),
                )
            };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = pos;
    }

    /// Reads the record header at `pos`: `(payload length, sequence number)`.
    #[inline]
    pub(super) fn read_record_header(&self, pos: u64) -> (u64, u64) {
        let off = (pos & self.mask) as usize;
        if off + REC_HDR as usize <= self.cap as usize {
            // SAFETY: `off + 16 <= cap`: both words lie inside the ring; unaligned reads of
            // plain bytes (see `ring_write` on concurrent access).
            return unsafe {
                let p = self.shm.tail_ptr().add(off);
                (
                    u64::from_le(ptr::read_unaligned(p.cast::<u64>())),
                    u64::from_le(ptr::read_unaligned(p.add(8).cast::<u64>())),
                )
            };
        }
        let mut b = [0u8; REC_HDR as usize];
        // SAFETY: `b` is a private 16-byte buffer.
        unsafe { self.ring_read_raw(pos, b.as_mut_ptr(), b.len()) };
        let (l, s) = b.split_at(8);
        (
            u64::from_le_bytes(l.try_into().unwrap_or([0xff; 8])),
            u64::from_le_bytes(s.try_into().unwrap_or([0xff; 8])),
        )
    }

    /// Writes a whole record of `need` bytes at `start`: [`write_record_part`] with a fast path
    /// for a record that does not wrap around the ring's end.
    ///
    /// [`write_record_part`]: Self::write_record_part
    #[inline]
    pub(super) fn write_record(&self, start: u64, seq: u64, item: ItemBytes<'_>, need: u64) {
        let off = (start & self.mask) as usize;
        let len = item.len();
        if need <= self.cap && off + need as usize <= self.cap as usize && REC_HDR + len <= need {
            let (h, b) = (item.prefix.len(), item.body.len());
            // SAFETY: `off + need <= cap` and the header and payload (`16 + len <= need`
            // bytes) fit in the record: every write lies inside the ring. The sources are
            // private slices of exactly the lengths copied.
            unsafe {
                let p = self.shm.tail_ptr().add(off);
                ptr::write_unaligned(p.cast::<u64>(), len.to_le());
                ptr::write_unaligned(p.add(8).cast::<u64>(), seq.to_le());
                copy_bytes(item.prefix.as_ptr(), p.add(REC_HDR as usize), h);
                copy_bytes(item.body.as_ptr(), p.add(REC_HDR as usize + h), b);
            }
        } else {
            self.write_record_part(start, seq, item, 0, need);
        }
    }

    /// Writes bytes `[from, from + n)` of the record (header, payload, padding) that starts
    /// at position `start`. Padding is left as it is: nobody reads it.
    pub(super) fn write_record_part(
        &self,
        start: u64,
        seq: u64,
        item: ItemBytes<'_>,
        from: u64,
        n: u64,
    ) {
        let mut hdr = [0u8; REC_HDR as usize];
        hdr[..8].copy_from_slice(&item.len().to_le_bytes());
        hdr[8..].copy_from_slice(&seq.to_le_bytes());
        let to = from + n;
        // The record as three consecutive parts: header, payload prefix, payload body.
        let mut at = 0u64;
        for part in [&hdr[..], item.prefix, item.body] {
            let (p0, p1) = (at, at + part.len() as u64);
            at = p1;
            let (a, b) = (from.max(p0), to.min(p1));
            if a < b {
                self.ring_write(start + a, &part[(a - p0) as usize..(b - p0) as usize]);
            }
        }
    }
}
