//! The shared byte ring behind [`Queue`](super::Queue): its layout in the segment, the put and
//! get algorithms, and the repairs done when a process dies mid-operation.
//!
//! # Layout
//!
//! One `MAP_SHARED` segment ([`ShmBox<Shared>`]): two robust process-shared mutexes, a header of
//! atomics (each group on its own 128-byte line, so the producer's and the consumer's hot words
//! never share a line), then the ring: `capacity` bytes, a power of two.
//!
//! | line | written by | words |
//! |---|---|---|
//! | `put_lock` | producers | the producer mutex (pthread; trusted, never validated) |
//! | `get_lock` | consumers | the consumer mutex (pthread; trusted, never validated) |
//! | `cfg` | creator, aborts, `close` | `magic`, `capacity`, `maxsize`, `closed`, `abort_seq`, `abort_at`, `p_lost`, `p_aborted` |
//! | `prod` | the put-lock holder | `tail`, `puts`, `head_seen`, `gets_seen`, `intent_tail`, `intent_puts`, `stream_start`, `stream_end` |
//! | `cons` | the get-lock holder | `head`, `gets`, `tail_seen`, `intent_head`, `intent_gets`, `rec_start`, `rec_end`, `rec_seq` |
//! | `data` | — | futex word consumers sleep on (bumped when bytes are published, on abort and close) + sleeper count |
//! | `space` | — | futex word producers sleep on (bumped when bytes or items are freed, and on close) + sleeper count |
//! | `join` | `task_done` | `done` (JoinableQueue), futex word + sleeper count for `join` |
//! | `pj`, `cj` | lock holders | redo journals for the rare multi-word updates; `c_lost`, `discard` |
//!
//! # The ring
//!
//! `head` and `tail` are byte positions that only grow (`u64`: they would take centuries to
//! wrap); position `p` lives at offset `p & (capacity - 1)`. `[head, tail)` holds the published
//! records. A record is a 16-byte header (payload length, sequence number, little-endian `u64`s)
//! and the payload, padded to 8 bytes; it wraps around the ring end wherever it falls (every
//! access is a bounds-checked copy in at most two parts). Record `n` (counting from 0, aborted
//! ones included) carries sequence number `n`; `puts` counts records finished by producers and
//! `gets` records finished by consumers, so the next record a consumer reads must carry `gets`.
//!
//! Between the holder of the put lock and the holder of the get lock, the ring is a
//! single-producer single-consumer queue: the producer writes bytes, then publishes them with a
//! `Release` store of `tail`; the consumer reads them after an `Acquire` load of `tail`, then
//! frees them with a `Release` store of `head`, which the producer reads with `Acquire` before
//! overwriting them. Each side keeps a cached copy of the other side's word in its own line
//! (`head_seen`, `tail_seen`, `gets_seen`) and reloads it only when the cache says "full" or
//! "empty", so in steady state neither side touches the other's line for every item.
//!
//! **Most records** are published whole, with one `tail` store, once there is room for them: a
//! producer killed before it publishes leaves nothing. **Big records** (larger than a quarter of
//! the ring, and either larger than the free space or at least `PIPELINE` bytes, except one that
//! fits while an abort is pending) *stream*: the producer marks the stream
//! (`stream_start`/`stream_end`), then publishes the record piece by piece (at most `PIECE`
//! bytes each) as it writes them and as space frees; a consumer copies a big record out piece
//! by piece as it arrives, freeing each piece at once. So the two copies of a big item overlap
//! (the consumer copies one piece while the producer writes the next), and a record larger than
//! the ring passes through it without deadlock: the producer waits only for room, which the
//! consumer reading the same record makes.
//!
//! # Waiting
//!
//! As the crate's one waiting policy says (`crate::wait`): spin briefly (re-checking the
//! condition, [`Spin::QUEUE`]), then yield a few times, then sleep on a shared futex word: the sleeper increments the line's sleeper count, issues a `SeqCst` fence, reads
//! the word, re-checks the condition and sleeps on the value it read; the waker stores its
//! change, orders it before reading the sleeper count, and makes the `futex_wake` system call
//! only when the count is not zero. Either the waker sees the sleeper, or the sleeper sees the
//! change before it sleeps (Drepper, *Futexes Are Tricky*; `std`'s futex condvar uses the same
//! pattern). On the hot paths the waker's ordering comes from publishing `tail`/`head` with a
//! `SeqCst` swap followed by a `SeqCst` load of the count (one locked instruction on x86, no
//! separate fence; C++20 puts the sleeper's fence and these operations in one total order);
//! elsewhere it is a `SeqCst` fence. Only the holder of a lock sleeps on `data` or `space`, so a
//! put or get on a busy queue makes no system call at all.
//!
//! Both sides of a stream (see above) spin longer ([`Spin::STREAM`]) before sleeping: the other
//! side is copying a piece of at most `PIECE` bytes, which takes less than a futex round trip.
//!
//! # When a process dies
//!
//! Both mutexes are robust: the next process to lock one after its holder died gets
//! `EOWNERDEAD`, repairs the state below, and marks the mutex consistent.
//!
//! - **Half-published updates.** A producer publishes a record with `intent_puts`,
//!   `intent_tail`, `puts`, `tail`, in that order (`puts` first, so `task_done` for a record a
//!   consumer got always finds it counted); a repairer that finds `puts == intent_puts` and
//!   `tail < intent_tail` completes `tail` (the record is whole). Consumers publish with
//!   `intent_head`, `intent_gets`, `head`, `gets`; a repairer that finds
//!   `head == intent_head` completes `gets`. Rarer updates that
//!   touch more words (aborts, losses) go through a redo journal (`pj`, `cj`): the new values are
//!   written to the journal, the journal is marked valid, the values are applied, the mark is
//!   cleared; a repairer replays a valid journal. Replays store absolute values, so they can be
//!   repeated.
//! - **A producer killed while streaming a record** (bytes published, record unfinished): the
//!   repairer records an *abort*: `abort_seq` (the record's number) and `abort_at` (where its
//!   published bytes end; the next record starts there), counts the record as finished
//!   (`puts`), aborted (`p_aborted`) and lost (`p_lost`). A consumer that reaches the record
//!   discards it, however many of its bytes it had already copied. At most one abort is pending
//!   at a time: a producer does not start a stream until consumers have passed the last abort.
//!   A producer whose put times out mid-stream aborts its own record the same way (not counted
//!   as lost: the item is handed back to it).
//! - **A consumer killed in the middle of a big record** (some of its bytes freed), or one
//!   whose `get` failed there: the repairer (or the failing `get` itself) marks it `discard`;
//!   the next `get` discards the rest of it as it arrives before reading on, and counts it as
//!   lost (`c_lost`) once it is complete (counted earlier, before its producer has counted it
//!   in `puts`, `task_done` would undercount the unfinished items). Every error return of the
//!   read path leaves either no big record in progress or one marked for discarding.
//! - **A producer whose put fails mid-stream** (timeout, or a garbled word) aborts its own
//!   record before returning; a stream mark found with nobody holding the put lock is aborted
//!   like a dead producer's.
//! - Consumers that wait for a stream check every few milliseconds whether its producer is alive
//!   (`trylock` on the put lock): `EOWNERDEAD` there is repaired by the consumer itself, so a get
//!   never waits forever for a dead producer. What the check finds is decided while it holds
//!   the lock: once released, a live producer may start a new stream.
//! - A consumer reads an incomplete big record only while it is the producer's current stream
//!   (`stream_start`/`stream_end` name it): a record whose length word was overwritten is
//!   `Corrupt` at once, never a sink that swallows the records behind it.
//! - A process killed while asleep leaves a sleeper count one too high: later wakers make one
//!   `futex_wake` call that wakes nobody. That costs a system call per operation, never a lost
//!   wake-up.
//!
//! # Trust
//!
//! The header and the ring are untrusted input (a peer may be buggy): every word is validated
//! when read (magic, capacity and maxsize equal to the values this handle recorded at creation,
//! `head <= tail <= head + capacity`, sequence numbers, record lengths, abort positions), all
//! arithmetic on them is checked, and every ring access is a copy of at most `capacity` bytes at
//! an offset masked with this handle's private capacity. A check that fails is
//! [`Fail::Corrupt`]. A garbled *payload* cannot be told from a real one (there are no
//! checksums); it reaches the decoder, which rejects what it cannot decode. The two mutexes are
//! trusted (libc follows pointers stored in them), as documented on
//! [`RobustMutex`](multiproc_sys::pthread::RobustMutex).
#![allow(unsafe_code)]

use std::io;
use std::mem::size_of;
use std::ptr;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release, SeqCst};
use std::sync::atomic::{AtomicU32, AtomicU64, fence};
use std::time::Duration;

use multiproc_sys::Errno;
use multiproc_sys::futex;
use multiproc_sys::pthread::{LockOutcome, RobustMutex};
use multiproc_sys::time::Deadline;
use static_assertions::const_assert_eq;

use crate::shm::ShmBox;
use crate::wait::{Patience, Spin};

/// `"mpqueue"` and a layout version.
const MAGIC: u64 = 0x0165_7565_7571_706d;
/// "No value" in position and sequence words.
const NONE: u64 = u64::MAX;
/// Bytes of a record header: payload length, sequence number.
const REC_HDR: u64 = 16;
/// The largest payload a record may claim (keeps every sum below overflow).
const MAX_PAYLOAD: u64 = 1 << 62;
/// Positions at or past this are garbage (4 EiB of traffic): with `MAX_PAYLOAD` it keeps every
/// sum of a position and a record size below `u64::MAX`.
const POS_LIMIT: u64 = 1 << 62;
/// Smallest ring: a quarter of it (the streaming chunk) must hold a record header.
pub(crate) const MIN_CAPACITY: u64 = 64;
/// Largest ring (1 TiB): positions and masks stay far from overflow.
pub(crate) const MAX_CAPACITY: u64 = 1 << 40;
/// How long a consumer waiting for a stream sleeps between checks that its producer is alive.
const LIVENESS_SLICE: Duration = Duration::from_millis(20);
/// Payloads from this size on are received into a buffer reserved whole, with huge pages.
const BIG_PAYLOAD: u64 = 4 << 20;
/// The most a consumer reserves for a payload before its bytes arrive.
const RESERVE_LIMIT: u64 = 1 << 30;
/// Records this large (and larger than a quarter of the ring) stream even when they fit.
const PIPELINE: u64 = 1 << 20;
/// Largest piece a streaming producer publishes (and a consumer frees) at once: small enough
/// that the other side can copy while this one writes, large enough to amortise the stores.
const PIECE: u64 = 64 << 10;

// ---------------------------------------------------------------------------------------------
// Layout

/// One 128-byte line: a group of words, and the rest of the line left empty so no other
/// group shares its line (or the adjacent line the x86 prefetcher pairs with it).
#[repr(C, align(64))]
pub(crate) struct Line<T> {
    v: T,
    _gap: [u8; 64],
}

#[repr(C)]
struct Config {
    magic: AtomicU64,
    capacity: AtomicU64,
    maxsize: AtomicU64,
    /// 0 open, 1 closed.
    closed: AtomicU64,
    /// Sequence number of the last aborted record, or `NONE`.
    abort_seq: AtomicU64,
    /// Where the aborted record's published bytes end.
    abort_at: AtomicU64,
    /// Records lost because their producer died mid-stream.
    p_lost: AtomicU64,
    /// Records aborted (producer died or timed out mid-stream); never delivered.
    p_aborted: AtomicU64,
}

#[repr(C)]
struct Prod {
    tail: AtomicU64,
    puts: AtomicU64,
    head_seen: AtomicU64,
    gets_seen: AtomicU64,
    intent_tail: AtomicU64,
    intent_puts: AtomicU64,
    /// Start of the record being streamed, or `NONE`.
    stream_start: AtomicU64,
    /// End of the record being streamed.
    stream_end: AtomicU64,
}

#[repr(C)]
struct Cons {
    head: AtomicU64,
    gets: AtomicU64,
    tail_seen: AtomicU64,
    intent_head: AtomicU64,
    intent_gets: AtomicU64,
    /// Start of the big record being read (some of its bytes freed), or `NONE`.
    rec_start: AtomicU64,
    /// Its declared end.
    rec_end: AtomicU64,
    /// Its sequence number.
    rec_seq: AtomicU64,
}

#[repr(C)]
struct Wait {
    seq: AtomicU32,
    waiters: AtomicU32,
}

#[repr(C)]
struct JoinState {
    /// `task_done` calls (JoinableQueue).
    done: AtomicU64,
    w: Wait,
}

/// Redo journal of an abort (producer side).
#[repr(C)]
struct PJournal {
    valid: AtomicU64,
    abort_at: AtomicU64,
    abort_seq: AtomicU64,
    p_lost: AtomicU64,
    p_aborted: AtomicU64,
}

/// Redo journal of the consumer side's rare updates, and the words they touch.
#[repr(C)]
struct CJournal {
    /// 0, `CJ_BEGIN_DISCARD` or `CJ_END_RECORD`.
    valid: AtomicU64,
    j_c_lost: AtomicU64,
    j_head: AtomicU64,
    j_gets: AtomicU64,
    /// Records lost because their consumer died in the middle of them.
    c_lost: AtomicU64,
    /// 1 while the big record at `rec_start` is being discarded (and counted in `c_lost`).
    discard: AtomicU64,
}

const CJ_BEGIN_DISCARD: u64 = 1;
const CJ_END_RECORD: u64 = 2;

/// The validated part of the segment (everything but the mutexes).
#[repr(C)]
pub(crate) struct Header {
    cfg: Line<Config>,
    prod: Line<Prod>,
    cons: Line<Cons>,
    data: Line<Wait>,
    space: Line<Wait>,
    join: Line<JoinState>,
    pj: Line<PJournal>,
    cj: Line<CJournal>,
}

/// Everything at the start of the segment; the ring follows it.
#[repr(C)]
pub(crate) struct Shared {
    put_lock: Line<RobustMutex>,
    get_lock: Line<RobustMutex>,
    hdr: Header,
}

const_assert_eq!(size_of::<Line<RobustMutex>>(), 128);
const_assert_eq!(size_of::<Line<Config>>(), 128);
const_assert_eq!(size_of::<Line<Prod>>(), 128);
const_assert_eq!(size_of::<Line<Cons>>(), 128);
const_assert_eq!(size_of::<Line<Wait>>(), 128);
const_assert_eq!(size_of::<Line<JoinState>>(), 128);
const_assert_eq!(size_of::<Line<PJournal>>(), 128);
const_assert_eq!(size_of::<Line<CJournal>>(), 128);
const_assert_eq!(size_of::<Header>(), 8 * 128);
const_assert_eq!(size_of::<Shared>(), 10 * 128);
const_assert_eq!(std::mem::align_of::<Shared>(), 64);

/// Size of the record holding `len` payload bytes, or `None` if `len` is absurd.
#[inline]
pub(crate) fn record_size(len: u64) -> Option<u64> {
    if len > MAX_PAYLOAD {
        return None;
    }
    Some(REC_HDR + len.div_ceil(8) * 8)
}

// ---------------------------------------------------------------------------------------------
// Errors and deadlines

/// Why a ring operation did not complete.
#[derive(Debug)]
pub(crate) enum Fail {
    /// The deadline passed (put: full; get: empty).
    Timeout,
    /// The queue is closed (put), or closed and drained (get).
    Closed,
    /// A shared word failed validation.
    Corrupt(&'static str),
    /// An unexpected error from a lock.
    Os(Errno),
}

type R<T> = Result<T, Fail>;

fn corrupt<T>(what: &'static str) -> R<T> {
    Err(Fail::Corrupt(what))
}

/// Unlocks a robust mutex on drop.
struct Unlock<'a>(&'a RobustMutex);

impl Drop for Unlock<'_> {
    fn drop(&mut self) {
        // EPERM would mean this thread does not hold it: impossible, the guard is only made
        // after a successful lock. Nothing useful can be done with an error in a destructor.
        let _ = self.0.unlock();
    }
}

/// What a consumer learnt about the producers from `trylock` on the put lock.
enum Producer {
    /// The put lock is held: a producer is at work.
    Busy,
    /// The put lock was free: no producer is in the middle of a record.
    Idle,
    /// Its holder had died; the consumer repaired the producer state.
    Repaired,
}

/// How a big record ended for the consumer.
enum BigEnd {
    Delivered,
    Aborted,
}

/// A record's payload, given in two parts (a codec prefix and a body, or one empty part) so a
/// caller can frame bytes it does not own without copying them first.
#[derive(Clone, Copy)]
pub(crate) struct Payload<'a> {
    pub(crate) head: &'a [u8],
    pub(crate) body: &'a [u8],
}

impl Payload<'_> {
    fn len(&self) -> u64 {
        (self.head.len() + self.body.len()) as u64
    }
}

/// Where a consumer copies a payload: the first `divert` bytes (at most 8) go to `prefix`, the
/// rest is appended to `out`.
pub(crate) struct Sink<'a> {
    prefix: [u8; 8],
    divert: usize,
    got: u64,
    out: &'a mut Vec<u8>,
}

impl<'a> Sink<'a> {
    /// A sink that clears `out` and diverts the first `divert` (at most 8) bytes.
    pub(crate) fn new(out: &'a mut Vec<u8>, divert: usize) -> Sink<'a> {
        out.clear();
        Sink { prefix: [0; 8], divert: divert.min(8), got: 0, out }
    }

    /// The diverted bytes.
    pub(crate) fn prefix(&self) -> &[u8] {
        &self.prefix[..(self.got as usize).min(self.divert)]
    }

    fn reset(&mut self) {
        self.out.clear();
        self.got = 0;
    }

    /// Makes room for a whole payload of `len` bytes at once (one allocation instead of one
    /// per streamed piece), with huge pages for a large one: see
    /// [`advise_huge_pages`](multiproc_sys::mmap::advise_huge_pages). At most
    /// `RESERVE_LIMIT`: the length comes from shared memory, and a bigger item (or a garbled
    /// length) grows the buffer only as its bytes actually arrive.
    fn reserve_payload(&mut self, len: u64) {
        let rest = len.saturating_sub(self.divert as u64).min(RESERVE_LIMIT);
        let Ok(rest) = usize::try_from(rest) else {
            return;
        };
        let before = self.out.capacity();
        // A length larger than the memory can hold fails here: leave it to the copies, which
        // grow the buffer as the bytes actually arrive.
        if self.out.try_reserve_exact(rest).is_ok() && self.out.capacity() != before {
            multiproc_sys::mmap::advise_huge_pages(self.out.spare_capacity_mut());
        }
    }

    /// Appends `len` (at most `capacity`) payload bytes found at ring position `pos`.
    fn append(&mut self, q: &RawQueue, mut pos: u64, mut len: u64) {
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

// ---------------------------------------------------------------------------------------------
// The handle

/// A handle to one shared ring: the mapping plus this handle's private copy of the
/// configuration (used for all index arithmetic, so a garbled header cannot steer an access out
/// of bounds).
pub struct RawQueue {
    shm: ShmBox<Shared>,
    cap: u64,
    mask: u64,
    maxsize: u64,
}

impl std::fmt::Debug for RawQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawQueue")
            .field("capacity", &self.cap)
            .field("maxsize", &self.maxsize)
            .finish()
    }
}

impl Clone for RawQueue {
    fn clone(&self) -> Self {
        RawQueue { shm: self.shm.clone(), cap: self.cap, mask: self.mask, maxsize: self.maxsize }
    }
}

impl RawQueue {
    /// Maps and initialises a new ring. `capacity` must be a power of two within
    /// [`MIN_CAPACITY`, `MAX_CAPACITY`] (the builder rounds it).
    pub(crate) fn new(capacity: u64, maxsize: u64) -> io::Result<RawQueue> {
        debug_assert!(capacity.is_power_of_two());
        debug_assert!((MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity));
        let tail_len = usize::try_from(capacity)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "capacity too large"))?;
        let init = |p: *mut Shared| -> io::Result<()> {
            // SAFETY: `p` is the start of a fresh, zeroed, page-aligned MAP_SHARED segment large
            // enough for `Shared` that nobody else can see yet; the mutexes are initialised once,
            // in place, and never move (the segment stays mapped while any handle exists).
            unsafe {
                RobustMutex::init(&raw mut (*p).put_lock.v).map_err(os)?;
                RobustMutex::init(&raw mut (*p).get_lock.v).map_err(os)?;
            }
            // SAFETY: zeroed memory is a valid `Header` (only atomics); nobody else sees it yet.
            let h = unsafe { &(*p).hdr };
            h.cfg.v.magic.store(MAGIC, Relaxed);
            h.cfg.v.capacity.store(capacity, Relaxed);
            h.cfg.v.maxsize.store(maxsize, Relaxed);
            h.cfg.v.abort_seq.store(NONE, Relaxed);
            h.prod.v.stream_start.store(NONE, Relaxed);
            h.cons.v.rec_start.store(NONE, Relaxed);
            Ok(())
        };
        // SAFETY: `init` leaves a valid `Shared` (initialised mutexes, atomics); `Shared` is
        // used only through shared references, all mutation goes through atomics or the
        // process-shared mutexes, and it needs no `Drop`.
        let shm = unsafe { ShmBox::new(tail_len, init)? };
        Ok(RawQueue { shm, cap: capacity, mask: capacity - 1, maxsize })
    }

    #[inline]
    fn hdr(&self) -> &Header {
        &self.shm.get().hdr
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.cap
    }

    pub(crate) fn maxsize(&self) -> u64 {
        self.maxsize
    }

    pub(crate) fn same_as(&self, other: &RawQueue) -> bool {
        self.shm.same_as(&other.shm)
    }

    /// Records larger than this stream (if they do not fit in the free space), and consumers
    /// free big records in pieces of this size.
    #[inline]
    fn chunk(&self) -> u64 {
        self.cap / 4
    }

    /// The header and the ring, as raw bytes: for tests that garble them.
    pub(crate) fn raw_parts(&self) -> (*mut u8, usize, *mut u8, usize) {
        let hdr = ptr::from_ref(self.hdr()).cast_mut().cast::<u8>();
        (hdr, size_of::<Header>(), self.shm.tail_ptr(), self.shm.tail_len())
    }

    /// `(head, tail)`, for tests that watch a producer's progress.
    pub(crate) fn positions(&self) -> (u64, u64) {
        let h = self.hdr();
        (h.cons.v.head.load(Acquire), h.prod.v.tail.load(Acquire))
    }

    #[inline]
    fn check_config(&self) -> R<()> {
        let c = &self.hdr().cfg.v;
        if c.magic.load(Relaxed) != MAGIC {
            return corrupt("bad magic number");
        }
        if c.capacity.load(Relaxed) != self.cap {
            return corrupt("capacity changed");
        }
        if c.maxsize.load(Relaxed) != self.maxsize {
            return corrupt("maxsize changed");
        }
        Ok(())
    }

    fn is_closed_word(&self) -> bool {
        self.hdr().cfg.v.closed.load(Acquire) != 0
    }

    // -----------------------------------------------------------------------------------------
    // Ring access: the only code that touches the ring's bytes.

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
    fn prefetch(&self, pos: u64) {
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
    fn read_record_header(&self, pos: u64) -> (u64, u64) {
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
    fn write_record(&self, start: u64, seq: u64, payload: Payload<'_>, need: u64) {
        let off = (start & self.mask) as usize;
        let len = payload.len();
        if need <= self.cap && off + need as usize <= self.cap as usize && REC_HDR + len <= need {
            let (h, b) = (payload.head.len(), payload.body.len());
            // SAFETY: `off + need <= cap` and the header and payload (`16 + len <= need`
            // bytes) fit in the record: every write lies inside the ring. The sources are
            // private slices of exactly the lengths copied.
            unsafe {
                let p = self.shm.tail_ptr().add(off);
                ptr::write_unaligned(p.cast::<u64>(), len.to_le());
                ptr::write_unaligned(p.add(8).cast::<u64>(), seq.to_le());
                copy_bytes(payload.head.as_ptr(), p.add(REC_HDR as usize), h);
                copy_bytes(payload.body.as_ptr(), p.add(REC_HDR as usize + h), b);
            }
        } else {
            self.write_record_part(start, seq, payload, 0, need);
        }
    }

    /// Writes bytes `[from, from + n)` of the record (header, payload, padding) that starts
    /// at position `start`. Padding is left as it is: nobody reads it.
    fn write_record_part(&self, start: u64, seq: u64, payload: Payload<'_>, from: u64, n: u64) {
        let mut hdr = [0u8; REC_HDR as usize];
        hdr[..8].copy_from_slice(&payload.len().to_le_bytes());
        hdr[8..].copy_from_slice(&seq.to_le_bytes());
        let to = from + n;
        // The record as three consecutive parts: header, payload head, payload body.
        let mut at = 0u64;
        for part in [&hdr[..], payload.head, payload.body] {
            let (p0, p1) = (at, at + part.len() as u64);
            at = p1;
            let (a, b) = (from.max(p0), to.min(p1));
            if a < b {
                self.ring_write(start + a, &part[(a - p0) as usize..(b - p0) as usize]);
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Waiting and waking

    /// Wakes the sleepers of `w` if there are any. Call after storing the change they wait for.
    #[inline]
    fn wake(&self, w: &Wait) {
        // Pairs with the fence in `wait_on`: either we see the sleeper's count, or it sees our
        // change before it sleeps.
        fence(SeqCst);
        if w.waiters.load(Relaxed) != 0 {
            self.wake_now(w);
        }
    }

    /// [`wake`](Self::wake) right after a `SeqCst` read-modify-write of the published word
    /// (`swap` of `tail` or `head`), which orders it before the sleeper check as the fence
    /// would (C++20 [atomics.order]: the sleeper's fence and our `SeqCst` operations are all in
    /// one total order), more cheaply.
    #[inline]
    fn wake_after_swap(&self, w: &Wait) {
        if w.waiters.load(SeqCst) != 0 {
            self.wake_now(w);
        }
    }

    #[cold]
    fn wake_now(&self, w: &Wait) {
        w.seq.fetch_add(1, Release);
        let _ = futex::futex_wake_all(&w.seq);
    }

    /// Waits until `ready` returns true (`Ok(true)`) or `until` passes (`Ok(false)`).
    ///
    /// `ready(check)` is called repeatedly; `check` is true once before the first sleep and
    /// then after every `LIVENESS_SLICE` of sleep when `sliced` (the caller then checks that
    /// the process it waits for is alive).
    fn wait_on(
        &self,
        w: &Wait,
        until: Patience,
        sliced: bool,
        spin: Spin,
        mut ready: impl FnMut(bool) -> R<bool>,
    ) -> R<bool> {
        if ready(false)? {
            return Ok(true);
        }
        if until.is_try() {
            return Ok(false);
        }
        let spun = spin.run(until, || match ready(false) {
            Ok(false) => None,
            done => Some(done),
        });
        if let Some(done) = spun {
            return done;
        }
        let mut check = sliced;
        loop {
            w.waiters.fetch_add(1, Relaxed);
            fence(SeqCst);
            let seen = w.seq.load(Relaxed);
            let r = ready(check);
            check = false;
            if !matches!(r, Ok(false)) {
                w.waiters.fetch_sub(1, Relaxed);
                return r;
            }
            if until.deadline().has_expired() {
                w.waiters.fetch_sub(1, Relaxed);
                return Ok(false);
            }
            let sleep_until = if sliced {
                until.deadline().min(Deadline::after(Some(LIVENESS_SLICE)))
            } else {
                until.deadline()
            };
            let res = futex::futex_wait(&w.seq, seen, sleep_until);
            w.waiters.fetch_sub(1, Relaxed);
            match res {
                Ok(()) => {}
                Err(Errno::TIMEDOUT) => check = sliced,
                Err(e) => return Err(Fail::Os(e)),
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Locks

    fn lock_put(&self, until: Patience) -> R<Unlock<'_>> {
        let m = &self.shm.get().put_lock.v;
        let outcome =
            if until.is_try() { m.try_lock() } else { m.lock(until.deadline()).map(Some) };
        match outcome {
            Ok(Some(LockOutcome::Acquired)) => Ok(Unlock(m)),
            Ok(Some(LockOutcome::OwnerDied)) => {
                let g = Unlock(m);
                let repaired = self.repair_producer();
                m.consistent().map_err(Fail::Os)?;
                repaired.map(|()| g)
            }
            Ok(None) | Err(Errno::TIMEDOUT) => Err(Fail::Timeout),
            Err(e) => Err(Fail::Os(e)),
        }
    }

    fn lock_get(&self, until: Patience) -> R<Unlock<'_>> {
        let m = &self.shm.get().get_lock.v;
        let outcome =
            if until.is_try() { m.try_lock() } else { m.lock(until.deadline()).map(Some) };
        match outcome {
            Ok(Some(LockOutcome::Acquired)) => Ok(Unlock(m)),
            Ok(Some(LockOutcome::OwnerDied)) => {
                let g = Unlock(m);
                let repaired = self.repair_consumer();
                m.consistent().map_err(Fail::Os)?;
                repaired.map(|()| g)
            }
            Ok(None) | Err(Errno::TIMEDOUT) => Err(Fail::Timeout),
            Err(e) => Err(Fail::Os(e)),
        }
    }

    /// Called by a consumer (holding the get lock) that waits for a producer: is the producer
    /// alive? Repairs the producer state if it died.
    #[cold]
    fn check_producer(&self) -> R<Producer> {
        let m = &self.shm.get().put_lock.v;
        #[cfg(test)]
        hook::at(hook::Point::CheckProducer, self);
        match m.try_lock() {
            Ok(None) => Ok(Producer::Busy),
            Ok(Some(LockOutcome::Acquired)) => {
                // Decide while holding the lock: once it is released, a live producer may start
                // a new stream, which must not look abandoned (issue 19, bug 4).
                let r = {
                    let _g = Unlock(m);
                    if self.streaming() {
                        // A stream marked while nobody holds the put lock was left behind
                        // (a garbled segment: a producer aborts its own stream on every
                        // error): abort it as if its producer had died.
                        self.repair_producer().map(|()| Producer::Repaired)
                    } else {
                        Ok(Producer::Idle)
                    }
                };
                #[cfg(test)]
                hook::at(hook::Point::ProducerChecked, self);
                r
            }
            Ok(Some(LockOutcome::OwnerDied)) => {
                let _g = Unlock(m);
                let repaired = self.repair_producer();
                m.consistent().map_err(Fail::Os)?;
                repaired.map(|()| Producer::Repaired)
            }
            Err(e) => Err(Fail::Os(e)),
        }
    }

    // -----------------------------------------------------------------------------------------
    // Producer side

    /// Free bytes after `tail`, refreshing the cached `head` when the cache shows fewer than
    /// `want` (`u64::MAX`: always refresh).
    #[inline]
    fn free_space(&self, tail: u64, want: u64) -> R<u64> {
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
    fn count_for_put(&self, puts: u64) -> R<u64> {
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
    fn commit_put(&self, tail: u64, puts: u64) {
        let p = &self.hdr().prod.v;
        // `puts` before `tail`: a consumer hands the record out as soon as `tail` covers it,
        // and `task_done` for it counts from `puts` (issue 19, bug 2). `intent_puts` before
        // `intent_tail`, so a repairer that finds `puts == intent_puts` knows `intent_tail`
        // belongs to the same commit (see `repair_producer`).
        p.intent_puts.store(puts, Relaxed);
        p.intent_tail.store(tail, Relaxed);
        p.puts.store(puts, Release);
        #[cfg(test)]
        hook::at(hook::Point::CommitPut, self);
        p.tail.swap(tail, SeqCst);
    }

    /// Whether a big record (more than a quarter of the ring) of `need` bytes, to be written at
    /// `tail` as record `puts`, streams. One larger than the free space has to. A large one
    /// (`PIPELINE`) that fits streams too, so a consumer copies one piece while this side
    /// writes the next, unless consumers have yet to pass an abandoned record: only one
    /// abort may be pending, so a stream would have to wait for them, and a record that fits
    /// is written whole at once instead (a put waits only for room).
    fn should_stream(&self, tail: u64, puts: u64, need: u64) -> R<bool> {
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

    /// Size of the pieces a stream is published and freed in.
    #[inline]
    fn piece(&self) -> u64 {
        PIECE.min(self.chunk())
    }

    /// Puts one record holding `payload`.
    pub(crate) fn put(&self, payload: Payload<'_>, until: Patience) -> R<()> {
        let Some(need) = record_size(payload.len()) else {
            return corrupt("item too large");
        };
        let _g = self.lock_put(until)?;
        self.check_config()?;
        if self.is_closed_word() {
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
            let ok = self.wait_on(&h.space.v, until, false, Spin::QUEUE, |_| {
                if self.is_closed_word() {
                    return Err(Fail::Closed);
                }
                Ok(self.count_for_put(puts)? < self.maxsize)
            })?;
            if !ok {
                return Err(Fail::Timeout);
            }
        }
        if need > self.chunk() && self.should_stream(tail, puts, need)? {
            return self.put_stream(payload, tail, puts, need, until);
        }
        if need > self.free_space(tail, need)? {
            let ok = self.wait_on(&h.space.v, until, false, Spin::QUEUE, |_| {
                if self.is_closed_word() {
                    return Err(Fail::Closed);
                }
                Ok(self.free_space(tail, need)? >= need)
            })?;
            if !ok {
                return Err(Fail::Timeout);
            }
        }
        self.write_record(tail, puts, payload, need);
        self.commit_put(tail + need, puts + 1);
        self.wake_after_swap(&h.data.v);
        Ok(())
    }

    /// Streams a big record through the ring: see the module docs.
    #[cold]
    fn put_stream(
        &self,
        payload: Payload<'_>,
        start: u64,
        seq: u64,
        need: u64,
        until: Patience,
    ) -> R<()> {
        let h = self.hdr();
        let p = &h.prod.v;
        let first = need.min(self.chunk());
        // Wait for room for a first chunk (which holds the whole record header), and until
        // consumers have passed the previous abort (only one may be pending).
        let ok = self.wait_on(&h.space.v, until, false, Spin::QUEUE, |_| {
            if self.is_closed_word() {
                return Err(Fail::Closed);
            }
            let gets = h.cons.v.gets.load(Acquire);
            Ok(!self.abort_pending(gets) && self.free_space(start, first)? >= first)
        })?;
        if !ok {
            return Err(Fail::Timeout);
        }
        let end = start + need;
        p.stream_end.store(end, Relaxed);
        p.stream_start.store(start, Release);
        let r = self.stream_pieces(payload, start, seq, end, until);
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
        payload: Payload<'_>,
        start: u64,
        seq: u64,
        end: u64,
        until: Patience,
    ) -> R<()> {
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
                self.write_record_part(start, seq, payload, pos - start, n);
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
            let ok = self.wait_on(&h.space.v, until, false, Spin::STREAM, |_| {
                Ok(self.free_space(pos, want)? >= want)
            })?;
            if !ok {
                return Err(Fail::Timeout);
            }
        }
    }

    /// Abandons the record being streamed (put lock held): records the abort so consumers skip
    /// its published bytes. `died`: its producer died (the item is lost) rather than gave up.
    #[cold]
    fn abort_stream(&self, died: bool) {
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
    fn repair_producer(&self) -> R<()> {
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
    // Consumer side

    /// The abort position, if record `gets` was aborted.
    #[inline]
    fn aborted_at(&self, gets: u64) -> Option<u64> {
        let c = &self.hdr().cfg.v;
        if c.abort_seq.load(Acquire) == gets { Some(c.abort_at.load(Relaxed)) } else { None }
    }

    /// A fresh, validated `tail`.
    #[inline]
    fn load_tail(&self, head: u64) -> R<u64> {
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
    fn streaming(&self) -> bool {
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
    pub(crate) fn get(&self, out: &mut Sink<'_>, until: Patience) -> R<()> {
        out.reset();
        let _g = self.lock_get(until)?;
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
                if self.is_closed_word() && !self.streaming() {
                    return Err(Fail::Closed);
                }
                let sliced = self.streaming();
                let ok = self.wait_on(&h.data.v, until, sliced, Spin::QUEUE, |check| {
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
                        || (self.is_closed_word() && !self.streaming()))
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
                    if until.expired() {
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
    fn read_big(&self, out: &mut Sink<'_>, discard: bool) -> R<BigEnd> {
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
            hook::at(hook::Point::ReadBigTail, self);
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
                    idle = matches!(self.check_producer()?, Producer::Idle);
                }
                Ok(self.load_tail(released)? > pos || self.aborted_at(gets).is_some() || idle)
            })?;
            if idle && self.load_tail(released)? <= pos && self.aborted_at(gets).is_none() {
                return corrupt("an unfinished record has no producer");
            }
        }
    }

    /// Ends the big record: consumed up to `head`. `aborted`: it ended by an abort.
    fn finish_big(&self, head: u64, aborted: bool) {
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
    fn repair_consumer(&self) -> R<()> {
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
    fn abandon_big(&self) {
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

    // -----------------------------------------------------------------------------------------
    // Counts, close, join

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

    pub(crate) fn close(&self) {
        let h = self.hdr();
        h.cfg.v.closed.store(1, Release);
        fence(SeqCst);
        self.wake_now(&h.data.v);
        self.wake_now(&h.space.v);
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.is_closed_word()
    }

    /// Items put (aborted and lost ones excluded) minus `task_done` calls; `Err` if the words
    /// are inconsistent.
    fn unfinished_parts(&self) -> R<(u64, u64)> {
        let h = self.hdr();
        // `done` first: every count read after it is at least what it was then, so a caller
        // holding an unfinished item never sees `done >= total` (read after `puts`, `done`
        // could include `task_done` calls for items put after that read).
        let done = h.join.v.done.load(Acquire);
        #[cfg(test)]
        hook::at(hook::Point::TaskDoneReads, self);
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
    pub(crate) fn task_done(&self) -> R<bool> {
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
    pub(crate) fn unfinished(&self) -> R<u64> {
        let (total, done) = self.unfinished_parts()?;
        Ok(total.saturating_sub(done))
    }

    /// Waits until no item is unfinished; `Ok(false)` on timeout.
    pub(crate) fn join(&self, until: Patience) -> R<bool> {
        self.wait_on(&self.hdr().join.v.w, until, false, Spin::QUEUE, |_| {
            Ok(self.unfinished()? == 0)
        })
    }
}

fn os(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e.raw_os_error())
}

/// Test hooks: a per-thread callback run at named points of the protocol, so a unit test can
/// act (as another process would) exactly inside a race window.
#[cfg(test)]
pub(crate) mod hook {
    use std::cell::RefCell;

    use super::RawQueue;

    /// Where a hook runs.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(crate) enum Point {
        /// `commit_put`, between the `puts` and `tail` stores.
        CommitPut,
        /// `check_producer`, before its `trylock`.
        CheckProducer,
        /// `check_producer`, after the put lock it found free is released again.
        ProducerChecked,
        /// `read_big`, right after it loads `tail`.
        ReadBigTail,
        /// `unfinished_parts`, between its first read and the others.
        TaskDoneReads,
    }

    type Hook = Box<dyn FnMut(Point, &RawQueue)>;

    thread_local! {
        static HOOK: RefCell<Option<Hook>> = const { RefCell::new(None) };
    }

    /// Runs `f` at every hook point this thread reaches (until [`clear`]).
    pub(crate) fn set(f: impl FnMut(Point, &RawQueue) + 'static) {
        HOOK.with(|h| *h.borrow_mut() = Some(Box::new(f)));
    }

    pub(crate) fn clear() {
        HOOK.with(|h| *h.borrow_mut() = None);
    }

    pub(crate) fn at(point: Point, q: &RawQueue) {
        // Taken out while it runs, so the hook may call into the queue without re-entering.
        let Some(mut f) = HOOK.with(|h| h.borrow_mut().take()) else {
            return;
        };
        f(point, q);
        HOOK.with(|h| {
            let mut slot = h.borrow_mut();
            if slot.is_none() {
                *slot = Some(f);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    //! The race windows of issue 19, forced with [`hook`]s: each test acts, as another process
    //! would, exactly inside the window (or writes the state a process killed there leaves).

    use std::cell::Cell;
    use std::rc::Rc;
    use std::sync::mpsc;

    use super::hook::{self, Point};
    use super::*;

    const SHORT: Option<Duration> = Some(Duration::from_millis(50));

    fn bytes(id: u8, len: usize) -> Vec<u8> {
        (0..len).map(|i| id.wrapping_add((i % 251) as u8)).collect()
    }

    fn put(q: &RawQueue, b: &[u8]) {
        q.put(Payload { head: &[], body: b }, Patience::FOREVER).unwrap();
    }

    fn get(q: &RawQueue, timeout: Option<Duration>) -> R<Vec<u8>> {
        let mut out = Vec::new();
        let mut sink = Sink::new(&mut out, 0);
        q.get(&mut sink, Patience::from_timeout(timeout))?;
        Ok(out)
    }

    /// Marks a stream of record `seq` at `start`, as `put_stream` does.
    fn mark_stream(q: &RawQueue, start: u64, len: usize) -> u64 {
        let p = &q.hdr().prod.v;
        let end = start + record_size(len as u64).unwrap();
        p.stream_end.store(end, Relaxed);
        p.stream_start.store(start, Release);
        end
    }

    /// Writes bytes `[from, to)` of record `seq` at `start` and publishes them.
    fn publish(q: &RawQueue, start: u64, seq: u64, body: &[u8], from: u64, to: u64) {
        q.write_record_part(start, seq, Payload { head: &[], body }, from, to - from);
        q.hdr().prod.v.tail.swap(start + to, SeqCst);
    }

    #[test]
    fn read_big_reloads_tail_when_an_abort_lands_after_its_tail_load() {
        // Issue 19, bug 1: the streaming producer publishes one more piece and dies, and the
        // abort is recorded, between `read_big`'s load of `tail` and its abort check.
        let q = RawQueue::new(4096, 0).unwrap();
        let b = bytes(1, 3000);
        mark_stream(&q, 0, b.len());
        publish(&q, 0, 0, &b, 0, 1024);
        let fired = Rc::new(Cell::new(false));
        let f = fired.clone();
        let b2 = b.clone();
        hook::set(move |point, q| {
            if point == Point::ReadBigTail && !f.replace(true) {
                publish(q, 0, 0, &b2, 1024, 2048);
                q.abort_stream(true);
            }
        });
        let r = get(&q, SHORT);
        hook::clear();
        assert!(fired.get());
        assert!(matches!(r, Err(Fail::Timeout)), "{r:?}");
        assert_eq!(q.lost(), 1);
        assert_eq!(q.qsize(), 0);
        let c = bytes(3, 500);
        put(&q, &c);
        assert_eq!(get(&q, SHORT).unwrap(), c);
    }

    #[test]
    fn a_get_failing_mid_record_leaves_a_state_the_next_get_repairs() {
        // Issue 19, bug 1: any error inside the read path, here a garbled abort position seen
        // after part of a big record was freed.
        let q = RawQueue::new(4096, 0).unwrap();
        let a = bytes(1, 100);
        put(&q, &a);
        assert_eq!(get(&q, SHORT).unwrap(), a); // held, not done: one unfinished item
        let start = q.positions().1;
        let b = bytes(2, 3000);
        let end = mark_stream(&q, start, b.len());
        publish(&q, start, 1, &b, 0, 1024);
        let calls = Rc::new(Cell::new(0));
        let n = calls.clone();
        hook::set(move |point, q| {
            if point == Point::ReadBigTail {
                n.set(n.get() + 1);
                if n.get() == 2 {
                    // The first piece has been copied and freed.
                    q.hdr().cfg.v.abort_at.store(1 << 50, Relaxed);
                    q.hdr().cfg.v.abort_seq.store(1, Release);
                }
            }
        });
        let r = get(&q, SHORT);
        hook::clear();
        assert!(matches!(r, Err(Fail::Corrupt(_))), "{r:?}");
        assert_eq!(q.positions().0, start + 1024, "the first piece was freed");
        q.hdr().cfg.v.abort_seq.store(NONE, Release);
        q.hdr().cfg.v.abort_at.store(0, Relaxed);
        // Not counted as lost while its producer is still streaming it: `task_done` for the
        // item held must not see it as the last.
        assert_eq!(q.lost(), 0);
        assert_eq!(q.unfinished().unwrap(), 1);
        assert!(q.task_done().unwrap());
        // The producer finishes the record, and puts another.
        publish(&q, start, 1, &b, 1024, end - start);
        q.commit_put(end, 2);
        q.hdr().prod.v.stream_start.store(NONE, Release);
        assert_eq!(q.unfinished().unwrap(), 1);
        let c = bytes(3, 200);
        put(&q, &c);
        // The next get discards the rest of the record, counts it lost, and reads on.
        assert_eq!(get(&q, SHORT).unwrap(), c);
        assert_eq!(q.lost(), 1);
        assert_eq!(q.unfinished().unwrap(), 1);
        assert!(q.task_done().unwrap());
        assert!(!q.task_done().unwrap());
        assert!(matches!(get(&q, Some(Duration::ZERO)), Err(Fail::Timeout)));
    }

    #[test]
    fn a_failed_get_that_freed_nothing_leaves_the_record_whole() {
        let q = RawQueue::new(4096, 0).unwrap();
        let b = bytes(4, 3000);
        let end = mark_stream(&q, 0, b.len());
        publish(&q, 0, 0, &b, 0, 1024);
        let fired = Rc::new(Cell::new(false));
        let f = fired.clone();
        hook::set(move |point, q| {
            if point == Point::ReadBigTail && !f.replace(true) {
                q.hdr().cfg.v.abort_at.store(1 << 50, Relaxed);
                q.hdr().cfg.v.abort_seq.store(0, Release);
            }
        });
        let r = get(&q, SHORT);
        hook::clear();
        assert!(matches!(r, Err(Fail::Corrupt(_))), "{r:?}");
        q.hdr().cfg.v.abort_seq.store(NONE, Release);
        publish(&q, 0, 0, &b, 1024, end);
        q.commit_put(end, 1);
        q.hdr().prod.v.stream_start.store(NONE, Release);
        assert_eq!(get(&q, SHORT).unwrap(), b);
        assert_eq!(q.lost(), 0);
    }

    enum Cmd {
        /// Lock the put lock and mark a stream at `tail`, as `put_stream` does.
        Start,
        /// Clear the mark and unlock.
        Finish,
    }

    #[test]
    fn a_stream_started_right_after_the_liveness_check_is_not_called_orphaned() {
        // Issue 19, bug 4: the put lock is found free (the last stream just ended), released,
        // and a live producer starts a new stream before the consumer looks again.
        let q = RawQueue::new(4096, 0).unwrap();
        let (tx, rx) = mpsc::channel::<Cmd>();
        let (ack_tx, ack) = mpsc::channel::<()>();
        let pq = q.clone();
        let producer = std::thread::spawn(move || {
            let m = &pq.shm.get().put_lock.v;
            for cmd in rx {
                match cmd {
                    Cmd::Start => {
                        assert!(matches!(m.lock(Deadline::FOREVER), Ok(LockOutcome::Acquired)));
                        mark_stream(&pq, pq.positions().1, 8000);
                    }
                    Cmd::Finish => {
                        pq.hdr().prod.v.stream_start.store(NONE, Release);
                        m.unlock().unwrap();
                    }
                }
                ack_tx.send(()).unwrap();
            }
        });
        let step = move |cmd: Cmd| {
            tx.send(cmd).unwrap();
            ack.recv().unwrap();
        };
        step(Cmd::Start);
        let seen = Rc::new(Cell::new((0u32, 0u32)));
        let s = seen.clone();
        // The hook runs on this thread and has the producer thread act, one step at a time.
        let step = Rc::new(step);
        let hook_step = step.clone();
        hook::set(move |point, _| {
            let (before, after) = s.get();
            match point {
                // The stream in progress ends: the put lock will be found free.
                Point::CheckProducer if before == 0 => {
                    s.set((1, after));
                    hook_step(Cmd::Finish);
                }
                // A new stream starts once the lock is released again.
                Point::ProducerChecked if after == 0 => {
                    s.set((before, 1));
                    hook_step(Cmd::Start);
                }
                _ => {}
            }
        });
        let r = get(&q, Some(Duration::from_millis(200)));
        hook::clear();
        assert_eq!(seen.get(), (1, 1), "the liveness check ran");
        assert!(matches!(r, Err(Fail::Timeout)), "{r:?}");
        step(Cmd::Finish);
        drop(step);
        producer.join().unwrap();
        let c = bytes(5, 100);
        put(&q, &c);
        assert_eq!(get(&q, SHORT).unwrap(), c);
        assert_eq!(q.lost(), 0);
    }

    #[test]
    fn task_done_succeeds_for_any_item_get_returned_while_its_put_commits() {
        // Issue 19, bug 2: a consumer runs between the two stores that publish a record.
        let q = RawQueue::new(4096, 0).unwrap();
        let got = Rc::new(Cell::new(0u32));
        let (g, cq) = (got.clone(), q.clone());
        hook::set(move |point, _| {
            if point == Point::CommitPut {
                match get(&cq, Some(Duration::ZERO)) {
                    Ok(_) => {
                        assert!(cq.task_done().unwrap(), "task_done for an item get returned");
                        g.set(g.get() + 1);
                    }
                    Err(Fail::Timeout) => {}
                    Err(e) => panic!("{e:?}"),
                }
            }
        });
        for i in 0..5 {
            put(&q, &bytes(i, 40));
        }
        hook::clear();
        assert!(got.get() >= 4, "the hook's gets saw the earlier items ({})", got.get());
        while get(&q, Some(Duration::ZERO)).is_ok() {
            assert!(q.task_done().unwrap());
        }
        assert_eq!(q.unfinished().unwrap(), 0);
        assert!(!q.task_done().unwrap());
        assert!(q.join(Patience::from_timeout(Some(Duration::ZERO))).unwrap());
    }

    #[test]
    fn task_done_reads_done_before_the_item_counts() {
        // Issue 19, bug 2: between `task_done`'s reads, another item is put, got and done.
        let q = RawQueue::new(4096, 0).unwrap();
        put(&q, &bytes(1, 10));
        get(&q, SHORT).unwrap(); // held
        let fired = Rc::new(Cell::new(false));
        let (f, cq) = (fired.clone(), q.clone());
        hook::set(move |point, _| {
            if point == Point::TaskDoneReads && !f.replace(true) {
                put(&cq, &bytes(2, 10));
                get(&cq, SHORT).unwrap();
                assert!(cq.task_done().unwrap());
            }
        });
        let r = q.task_done();
        hook::clear();
        assert!(fired.get());
        assert!(r.unwrap(), "task_done for the item held");
        assert_eq!(q.unfinished().unwrap(), 0);
    }

    #[test]
    fn a_producer_killed_between_puts_and_tail_has_its_record_published_by_the_repair() {
        let q = RawQueue::new(4096, 0).unwrap();
        let a = bytes(1, 100);
        put(&q, &a);
        let p = &q.hdr().prod.v;
        // Killed after `puts`, before `tail`: the record is whole and counted.
        let tail = q.positions().1;
        let b = bytes(2, 200);
        let need = record_size(b.len() as u64).unwrap();
        q.write_record(tail, 1, Payload { head: &[], body: &b }, need);
        p.intent_puts.store(2, Relaxed);
        p.intent_tail.store(tail + need, Relaxed);
        p.puts.store(2, Release);
        {
            let _g = q.lock_put(Patience::FOREVER).unwrap();
            q.repair_producer().unwrap();
        }
        assert_eq!(q.positions().1, tail + need);
        // Killed between `intent_puts` and `intent_tail`: nothing was published or counted.
        let c = bytes(3, 300);
        p.intent_puts.store(3, Relaxed);
        {
            let _g = q.lock_put(Patience::FOREVER).unwrap();
            q.repair_producer().unwrap();
        }
        assert_eq!(q.positions().1, tail + need);
        assert_eq!(q.qsize(), 2);
        put(&q, &c);
        for x in [a, b, c] {
            assert_eq!(get(&q, SHORT).unwrap(), x);
            assert!(q.task_done().unwrap());
        }
        assert!(!q.task_done().unwrap());
    }
}
