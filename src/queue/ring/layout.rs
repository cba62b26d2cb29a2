//! The ring's shared segment, word by word: `repr(C)` structs whose sizes are checked at compile
//! time, and the constants that bound every value read from them. Who writes which line is in
//! the table of the [ring's docs](super).

use std::mem::size_of;
use std::sync::atomic::{AtomicU32, AtomicU64};

use multiproc_sys::sync::pthread::RobustMutex;
use static_assertions::const_assert_eq;

/// `"mpqueue"` and a layout version.
pub(super) const MAGIC: u64 = 0x0165_7565_7571_706d;
/// "No value" in position and sequence words.
pub(super) const NONE: u64 = u64::MAX;
/// Bytes of a record header: payload length, sequence number.
pub(super) const REC_HDR: u64 = 16;
/// The largest payload a record may claim (keeps every sum below overflow).
const MAX_PAYLOAD: u64 = 1 << 62;
/// Positions at or past this are garbage (4 EiB of traffic): with `MAX_PAYLOAD` it keeps every
/// sum of a position and a record size below `u64::MAX`.
pub(super) const POS_LIMIT: u64 = 1 << 62;
/// Smallest ring: a quarter of it (the streaming chunk) must hold a record header.
pub(crate) const MIN_CAPACITY: u64 = 64;
/// Largest ring (1 TiB): positions and masks stay far from overflow.
pub(crate) const MAX_CAPACITY: u64 = 1 << 40;

/// One 128-byte line: a group of words, and the rest of the line left empty so no other
/// group shares its line (or the adjacent line the x86 prefetcher pairs with it).
#[repr(C, align(64))]
pub(super) struct CacheLine<T> {
    pub(super) v: T,
    _gap: [u8; 64],
}

/// The words fixed at creation, and those an abort or `close` writes.
#[repr(C)]
pub(super) struct RingConfig {
    pub(super) magic: AtomicU64,
    pub(super) capacity: AtomicU64,
    pub(super) maxsize: AtomicU64,
    /// 0 open, 1 closed.
    pub(super) closed: AtomicU64,
    /// Sequence number of the last aborted record, or `NONE`.
    pub(super) abort_seq: AtomicU64,
    /// Where the aborted record's published bytes end.
    pub(super) abort_at: AtomicU64,
    /// Records lost because their producer died mid-stream.
    pub(super) p_lost: AtomicU64,
    /// Records aborted (producer died or timed out mid-stream); never delivered.
    pub(super) p_aborted: AtomicU64,
}

/// The words of the put-lock holder.
#[repr(C)]
pub(super) struct ProducerWords {
    pub(super) tail: AtomicU64,
    pub(super) puts: AtomicU64,
    pub(super) head_seen: AtomicU64,
    pub(super) gets_seen: AtomicU64,
    pub(super) intent_tail: AtomicU64,
    pub(super) intent_puts: AtomicU64,
    /// Start of the record being streamed, or `NONE`.
    pub(super) stream_start: AtomicU64,
    /// End of the record being streamed.
    pub(super) stream_end: AtomicU64,
}

/// The words of the get-lock holder.
#[repr(C)]
pub(super) struct ConsumerWords {
    pub(super) head: AtomicU64,
    pub(super) gets: AtomicU64,
    pub(super) tail_seen: AtomicU64,
    pub(super) intent_head: AtomicU64,
    pub(super) intent_gets: AtomicU64,
    /// Start of the big record being read (some of its bytes freed), or `NONE`.
    pub(super) rec_start: AtomicU64,
    /// Its declared end.
    pub(super) rec_end: AtomicU64,
    /// Its sequence number.
    pub(super) rec_seq: AtomicU64,
}

/// A futex word that sleepers wait on, and their count (see [`wake`](super::wake)).
#[repr(C)]
pub(super) struct WakeWord {
    pub(super) seq: AtomicU32,
    pub(super) waiters: AtomicU32,
}

/// `JoinableQueue`'s count of `task_done` calls, and the word `join` sleeps on.
#[repr(C)]
pub(super) struct JoinWords {
    /// `task_done` calls (JoinableQueue).
    pub(super) done: AtomicU64,
    pub(super) w: WakeWord,
}

/// Redo journal of an abort (producer side).
#[repr(C)]
pub(super) struct ProducerJournal {
    pub(super) valid: AtomicU64,
    pub(super) abort_at: AtomicU64,
    pub(super) abort_seq: AtomicU64,
    pub(super) p_lost: AtomicU64,
    pub(super) p_aborted: AtomicU64,
}

/// Redo journal of the consumer side's rare updates, and the words they touch.
#[repr(C)]
pub(super) struct ConsumerJournal {
    /// 0, `CJ_BEGIN_DISCARD` or `CJ_END_RECORD`.
    pub(super) valid: AtomicU64,
    pub(super) j_c_lost: AtomicU64,
    pub(super) j_head: AtomicU64,
    pub(super) j_gets: AtomicU64,
    /// Records lost because their consumer died in the middle of them.
    pub(super) c_lost: AtomicU64,
    /// 1 while the big record at `rec_start` is being discarded (and counted in `c_lost`).
    pub(super) discard: AtomicU64,
}

/// [`ConsumerJournal::valid`]: the journal begins discarding the big record at `rec_start`.
pub(super) const CJ_BEGIN_DISCARD: u64 = 1;
/// [`ConsumerJournal::valid`]: the journal ends the big record at `rec_start`.
pub(super) const CJ_END_RECORD: u64 = 2;

/// The validated part of the segment (everything but the mutexes).
#[repr(C)]
pub(super) struct RingHeader {
    pub(super) cfg: CacheLine<RingConfig>,
    pub(super) prod: CacheLine<ProducerWords>,
    pub(super) cons: CacheLine<ConsumerWords>,
    pub(super) data: CacheLine<WakeWord>,
    pub(super) space: CacheLine<WakeWord>,
    pub(super) join: CacheLine<JoinWords>,
    pub(super) pj: CacheLine<ProducerJournal>,
    pub(super) cj: CacheLine<ConsumerJournal>,
}

/// Everything at the start of the segment; the ring follows it.
#[repr(C)]
pub(super) struct RingSegment {
    pub(super) put_lock: CacheLine<RobustMutex>,
    pub(super) get_lock: CacheLine<RobustMutex>,
    pub(super) hdr: RingHeader,
}

const_assert_eq!(size_of::<CacheLine<RobustMutex>>(), 128);
const_assert_eq!(size_of::<CacheLine<RingConfig>>(), 128);
const_assert_eq!(size_of::<CacheLine<ProducerWords>>(), 128);
const_assert_eq!(size_of::<CacheLine<ConsumerWords>>(), 128);
const_assert_eq!(size_of::<CacheLine<WakeWord>>(), 128);
const_assert_eq!(size_of::<CacheLine<JoinWords>>(), 128);
const_assert_eq!(size_of::<CacheLine<ProducerJournal>>(), 128);
const_assert_eq!(size_of::<CacheLine<ConsumerJournal>>(), 128);
const_assert_eq!(size_of::<RingHeader>(), 8 * 128);
const_assert_eq!(size_of::<RingSegment>(), 10 * 128);
const_assert_eq!(std::mem::align_of::<RingSegment>(), 64);

/// Size of the record holding `len` payload bytes, or `None` if `len` is absurd.
#[inline]
pub(super) fn record_size(len: u64) -> Option<u64> {
    if len > MAX_PAYLOAD {
        return None;
    }
    Some(REC_HDR + len.div_ceil(8) * 8)
}
