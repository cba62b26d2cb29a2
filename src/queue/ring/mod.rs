//! The shared byte ring behind [`Queue`](crate::Queue): its layout in the segment, the put and
//! get algorithms, and the repairs done when a process dies mid-operation.
//!
//! | file | holds |
//! |---|---|
//! | `layout` | the segment: `repr(C)` lines of atomics (sizes checked at compile time), the bounds on their values, record sizes |
//! | `raw` | [`RawQueue`]: the mapping and this handle's private copy of the configuration, validated against the shared one |
//! | `access` | the only code that touches the ring's bytes: copies in and out, record headers; [`ItemBytes`], [`ItemSink`] |
//! | `wake` | waiting and waking on the futex words (below, "Waiting") |
//! | `lock` | the put and get locks, the one robust-mutex acquire that repairs before marking consistent, a producer's liveness check |
//! | `put` | the put protocol: room, `maxsize`, publishing a record whole or streaming it |
//! | `get` | the get protocol: the next record, aborts, small records, big records piece by piece |
//! | `repair` | the redo journals and the repairs after a holder died (below, "When a process dies") |
//! | `counts` | `qsize`, `lost`, `close`, `task_done`, `join` |
//! | `fail` | [`Fail`], why an operation did not complete |
//! | `hook`, `tests` | unit tests of the race windows (test builds only) |
//!
//! # Layout
//!
//! One `MAP_SHARED` segment (a `ShmBox<RingSegment>`): two robust process-shared mutexes, a
//! header of atomics (each group on its own 128-byte line, so the producer's and the consumer's
//! hot words never share a line), then the ring: `capacity` bytes, a power of two.
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
//! condition, `Spin::QUEUE`), then yield a few times, then sleep on a shared futex word: the
//! sleeper increments the line's sleeper count, issues a `SeqCst` fence, reads
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
//! Both sides of a stream (see above) spin longer (`Spin::STREAM`) before sleeping: the other
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
//! [`RobustMutex`](multiproc_sys::sync::pthread::RobustMutex).

mod access;
mod counts;
mod fail;
mod get;
mod layout;
mod lock;
mod put;
mod raw;
mod repair;
mod wake;

#[cfg(test)]
mod hook;
#[cfg(test)]
mod tests;

pub(crate) use access::{ItemBytes, ItemSink};
pub(crate) use fail::Fail;
pub(crate) use layout::{MAX_CAPACITY, MIN_CAPACITY};
pub(crate) use raw::RawQueue;
