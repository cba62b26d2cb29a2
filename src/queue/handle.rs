//! [`Queue`]: the typed handle over the ring — encoding items in, decoding them out, and the
//! byte-string fast path that skips both (`put_bytes`, `get_bytes_into`).

use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::thread::LocalKey;
use std::time::Duration;

use super::builder::sealed::Sealed;
use super::builder::{BuildQueue, maxsize_constructors};
use super::error::{GetError, PutError};
use super::ring::{ItemBytes, ItemSink, RawQueue};
use crate::codec::{self, DecodeError, Message};
use crate::wait::Patience;

/// A multi-producer, multi-consumer FIFO queue shared between processes — Python's
/// `multiprocessing.Queue`.
///
/// A queue is created before the processes that use it (it lives in an anonymous `MAP_SHARED`
/// segment, inherited by every child forked afterwards); each process uses its handle, or a
/// clone of it. Any number of processes put and get at once. Items are any [`Message`]: `put`
/// encodes the item and copies the bytes into the ring, `get` copies them out and decodes.
///
/// ```
/// use multiproc::{Process, Queue};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Python: q = Queue(); Process(target=f, args=(q,)).start(); q.get()
/// let q: Queue<String> = Queue::new()?;
/// let child_q = q.clone();
/// let p = Process::new(move || {
///     child_q.put("Hello shiyanlou".to_string()).unwrap();
/// });
/// p.start()?;
/// assert_eq!(q.get()?, "Hello shiyanlou");
/// p.join()?;
/// # Ok(())
/// # }
/// ```
///
/// # How it works
///
/// The segment holds a ring of bytes (1 MiB by default, see [`QueueBuilder::capacity_bytes`]),
/// its positions, counters and futex words, and two robust process-shared mutexes: one
/// serialises producers, one serialises consumers. Between the two lock holders the ring is a
/// lock-free single-producer single-consumer queue, so a producer and a consumer never wait for
/// each other's lock. A waiting call spins briefly, then sleeps on a shared futex; a put or get
/// makes a wake-up system call only when somebody sleeps. Items travel in order: FIFO overall,
/// and so FIFO per producer.
///
/// An item larger than the free space (even larger than the whole ring) *streams* through it:
/// its producer holds the producer lock for the whole item and publishes it piece by piece as
/// consumers free space; one consumer copies it out piece by piece. Items of different
/// producers never interleave, and nothing deadlocks. Items of 1 MiB or more that are larger
/// than a quarter of the ring stream even when they fit, so the consumer's copy overlaps the
/// producer's.
///
/// Each item is encoded into a per-thread buffer and copied into the ring once; `get` copies it
/// out once into a per-thread buffer and decodes it. Byte strings (`Vec<u8>`, `String`, and
/// `Box`/`Rc`/`Arc` of them) skip both buffers: `put` copies their bytes straight into the
/// ring, and `get` copies them straight into the buffer the returned item owns (backed by huge
/// pages when it is large, where the kernel allows). To avoid even that allocation,
/// [`get_bytes_into`](Queue::get_bytes_into) (on `Queue<Vec<u8>>`) reuses the caller's buffer:
/// a new multi-megabyte buffer per item can cost more in page faults than the transfer itself.
///
/// # Differences from Python
///
/// - **No feeder thread.** `put` returns once the item is in shared memory. A process may put
///   and exit (and be joined) before anybody reads, as long as the item fits in the ring's free
///   space: Python's "joining processes that use queues" deadlock cannot happen, and there is no
///   `join_thread`/`cancel_join_thread` to call. An item larger than the free space has to wait
///   for a consumer (as it must: it has to be stored somewhere); size the ring for the items
///   you want to leave behind.
/// - **Errors are returned, with the item.** `put` hands the item back in [`PutError`] when the
///   queue is full ([`PutError::Full`], Python's `queue.Full`) or closed, and encodes the item
///   itself, so an item that cannot be encoded (an `Encode` impl that panics, as the `serde`
///   feature's `Serde<T>` does) is [`PutError::Encode`] from that very `put`: Python's
///   silently dropped unpicklable items (gh-84376) cannot happen. [`empty`](Queue::empty) and
///   [`qsize`](Queue::qsize) reflect a completed `put` at once.
/// - **`close` closes the queue for everyone**, not just the calling process: later puts fail
///   with [`PutError::Closed`], and gets return what is left, then [`GetError::Closed`] instead
///   of blocking. Sleeping producers and consumers are woken. It is idempotent.
/// - **`qsize` always works** (Python raises `NotImplementedError` on macOS) and is exact when
///   no put or get is in progress. [`full`](Queue::full) counts items against `maxsize`, like
///   Python's; a put can also wait for *bytes* (see [`capacity_bytes`](Queue::capacity_bytes)).
/// - **Timeouts** have their own methods: [`put`](Queue::put) and [`get`](Queue::get) wait as
///   long as needed, [`put_timeout`](Queue::put_timeout) and [`get_timeout`](Queue::get_timeout)
///   at most a `Duration` on the monotonic clock; `Duration::ZERO` tries once (Python's
///   `block=False`, also [`put_nowait`](Queue::put_nowait) and
///   [`get_nowait`](Queue::get_nowait)). A timed-out `put` is [`PutError::Full`] and a
///   timed-out `get` is [`GetError::Empty`], as in Python. One exception, as in Python (whose
///   `get` reads a whole message once it has started): a `get` that has started copying out an
///   item larger than the ring finishes it (or sees it abandoned) even past its timeout, since
///   the bytes it has freed cannot be put back. It never waits for a producer that has died.
///
/// # When a process dies
///
/// The queue's locks are robust, so a producer or consumer killed in the middle of an operation
/// (even by `SIGKILL`) leaves the queue usable by everyone else:
///
/// - A producer killed before its item was published leaves nothing behind. One killed while
///   streaming a large item has published part of it: the next producer (or a waiting consumer)
///   marks that item aborted, consumers skip its bytes, and [`lost`](Queue::lost) counts it.
/// - A consumer killed while copying out a large item (after it had freed part of it): the next
///   consumer discards the rest of it, and [`lost`](Queue::lost) counts it.
/// - A half-written item is never delivered. A consumer waiting for a producer's large item
///   notices within milliseconds if the producer dies.
/// - A `get` that fails in the middle of a large item (a [`Corruption`] error) leaves the queue
///   as a consumer killed there would: the next `get` discards the rest of the item.
/// - [`JoinableQueue`] counts stay exact through all of this: an item a `get` has returned is
///   always counted as unfinished until its `task_done`, and an item lost as above is never
///   waited for.
/// - The shared header is validated on every operation; if another process has garbled the
///   segment (a bug), operations fail with a [`Corruption`] error rather than reading out of
///   bounds or panicking.
/// - An item a consumer has received but not finished processing is, of course, gone with that
///   consumer (and a [`JoinableQueue`] then waits for its `task_done` until `join`'s timeout).
///
/// # Examples
///
/// The classic writer/reader pair (Python: `write(q)` puts 'A', 'B', 'C'; `read(q)` gets
/// them):
///
/// ```
/// use multiproc::{Process, Queue};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let q: Queue<char> = Queue::new()?;
/// let wq = q.clone();
/// let writer = Process::new(move || {
///     for value in ['A', 'B', 'C'] {
///         wq.put(value).unwrap();
///     }
/// });
/// let rq = q.clone();
/// let reader = Process::new(move || -> Vec<char> {
///     (0..3).map(|_| rq.get().unwrap()).collect()
/// });
/// writer.start()?;
/// reader.start()?;
/// writer.join()?;
/// assert_eq!(reader.join()?, ['A', 'B', 'C']);
/// # Ok(())
/// # }
/// ```
///
/// A full queue hands the item back (Python's `queue.Full`):
///
/// ```
/// use multiproc::{PutError, Queue};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let q: Queue<String> = Queue::with_maxsize(1)?;
/// q.put_nowait("first".to_string())?;
/// match q.put_nowait("second".to_string()) {
///     Err(PutError::Full(item)) => assert_eq!(item, "second"),
///     other => panic!("{other:?}"),
/// }
/// assert_eq!(q.get_nowait()?, "first");
/// # Ok(())
/// # }
/// ```
///
/// [`Message`]: crate::Message
/// [`Corruption`]: crate::Corruption
/// [`JoinableQueue`]: crate::JoinableQueue
/// [`QueueBuilder::capacity_bytes`]: crate::QueueBuilder::capacity_bytes
pub struct Queue<T> {
    pub(super) raw: RawQueue,
    _t: PhantomData<fn(T) -> T>,
}

impl<T> Sealed for Queue<T> {
    fn from_raw(raw: RawQueue) -> Self {
        Queue { raw, _t: PhantomData }
    }
}

impl<T> BuildQueue for Queue<T> {}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue { raw: self.raw.clone(), _t: PhantomData }
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("qsize", &self.raw.qsize())
            .field("maxsize", &self.raw.maxsize())
            .field("capacity_bytes", &self.raw.capacity())
            .field("closed", &self.raw.is_closed())
            .finish()
    }
}

impl<T> PartialEq for Queue<T> {
    /// Whether both handles refer to the same queue.
    fn eq(&self, other: &Self) -> bool {
        self.raw.same_as(&other.raw)
    }
}

impl<T> Eq for Queue<T> {}

impl<T: Message> Queue<T> {
    maxsize_constructors!("Queue");

    /// Puts `item` at the end of the queue, waiting for room as long as needed (Python:
    /// `put(obj)`; [`put_timeout`](Self::put_timeout) takes a timeout).
    ///
    /// Returns when the item is in shared memory: the calling process may exit right away.
    /// An item larger than the free space waits for consumers to make room (streaming through
    /// the ring if it is larger than the ring).
    ///
    /// # Errors
    ///
    /// The item comes back in every error: [`PutError::Closed`] after [`close`](Self::close),
    /// [`PutError::Encode`] if encoding the item panicked, [`PutError::Corrupt`] if the shared
    /// state is garbled.
    pub fn put(&self, item: T) -> Result<(), PutError<T>> {
        self.put_within(item, Patience::FOREVER)
    }

    /// Puts `item`, waiting at most `timeout` for room (Python: `put(obj, timeout=t)`;
    /// `Duration::ZERO` is `block=False`, as [`put_nowait`](Self::put_nowait)).
    ///
    /// # Errors
    ///
    /// As [`put`](Self::put), and [`PutError::Full`] if there was no room before the timeout
    /// (or a large item could not be completed in time; the part already sent is discarded by
    /// consumers).
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), PutError<T>> {
        self.put_within(item, Patience::from_timeout(Some(timeout)))
    }

    fn put_within(&self, item: T, patience: Patience) -> Result<(), PutError<T>> {
        if let Some(bytes) = item.as_byte_string() {
            // A byte string (`Vec<u8>`, `String`, ...) is its own encoding after the length:
            // copied once, straight into the ring.
            let prefix = (bytes.len() as u64).to_le_bytes();
            let r = self.raw.put(ItemBytes { prefix: &prefix, body: bytes }, patience);
            return r.map_err(|fail| PutError::from_fail(item, fail));
        }
        let r = with_scratch(&ENCODE_BUF, |buf| {
            buf.clear();
            // No lock is held while encoding: a panicking `Encode` impl leaves the queue as it
            // was, and becomes an error for this put.
            if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(|| item.encode(buf))) {
                return Err(Err(crate::fork_safety::panic_message(panic.as_ref())));
            }
            self.raw.put(ItemBytes { prefix: &[], body: buf }, patience).map_err(Ok)
        });
        r.map_err(|e| match e {
            Ok(fail) => PutError::from_fail(item, fail),
            Err(msg) => PutError::Encode(item, msg),
        })
    }

    /// Puts `item` if there is room right now (Python: `put_nowait(obj)`).
    ///
    /// # Errors
    ///
    /// As [`put`](Self::put); [`PutError::Full`] if the queue is full or another producer is
    /// in the middle of a put.
    pub fn put_nowait(&self, item: T) -> Result<(), PutError<T>> {
        self.put_within(item, Patience::Try)
    }

    /// Removes and returns the first item, waiting for one as long as needed (Python: `get()`;
    /// [`get_timeout`](Self::get_timeout) takes a timeout).
    ///
    /// # Errors
    ///
    /// [`GetError::Closed`] if the queue is closed and empty, [`GetError::Decode`] if the
    /// item's bytes are not a `T`, [`GetError::Corrupt`] if the shared state is garbled.
    pub fn get(&self) -> Result<T, GetError> {
        self.get_within(Patience::FOREVER)
    }

    /// Removes and returns the first item, waiting at most `timeout` for one (Python:
    /// `get(timeout=t)`; `Duration::ZERO` is `block=False`, as [`get_nowait`](Self::get_nowait)).
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get), and [`GetError::Empty`] if no item came before the timeout.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetError> {
        self.get_within(Patience::from_timeout(Some(timeout)))
    }

    fn get_within(&self, patience: Patience) -> Result<T, GetError> {
        if T::BYTE_STRING {
            // Copied once, straight from the ring into the buffer the item will own.
            let mut buf = Vec::new();
            self.get_byte_string(&mut buf, patience)?;
            return T::from_byte_string(buf).map_err(GetError::Decode);
        }
        with_scratch(&DECODE_BUF, |buf| {
            self.raw.get(&mut ItemSink::new(buf, 0), patience).map_err(GetError::from_fail)?;
            codec::from_bytes(buf).map_err(GetError::Decode)
        })
    }

    /// Removes and returns the first item if there is one right now (Python: `get_nowait()`).
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get); [`GetError::Empty`] also when another consumer is in the middle
    /// of a get.
    pub fn get_nowait(&self) -> Result<T, GetError> {
        self.get_within(Patience::Try)
    }
}

impl<T> Queue<T> {
    /// The number of items in the queue (Python: `qsize()`). Exact when no put or get is in
    /// progress; items being streamed in are not counted until complete.
    pub fn qsize(&self) -> usize {
        usize::try_from(self.raw.qsize()).unwrap_or(usize::MAX)
    }

    /// Whether the queue holds no item (Python: `empty()`). An item counts as soon as its
    /// `put` has returned, in every process (Python's feeder thread may not have sent it yet).
    pub fn empty(&self) -> bool {
        self.raw.qsize() == 0
    }

    /// Whether the queue holds `maxsize` items (Python: `full()`); always false without a
    /// `maxsize`. A put may still wait for ring bytes when this is false.
    pub fn full(&self) -> bool {
        let max = self.raw.maxsize();
        max != 0 && self.raw.qsize() >= max
    }

    /// The item limit given at creation; 0 means none.
    pub fn maxsize(&self) -> usize {
        usize::try_from(self.raw.maxsize()).unwrap_or(usize::MAX)
    }

    /// The size of the ring in bytes.
    pub fn capacity_bytes(&self) -> usize {
        usize::try_from(self.raw.capacity()).unwrap_or(usize::MAX)
    }

    /// Closes the queue, for every process (Python: `close()`, which only concerns the calling
    /// process; see [Differences from Python](Queue#differences-from-python)).
    ///
    /// Later puts fail with [`PutError::Closed`]; gets return the items left, then
    /// [`GetError::Closed`] instead of waiting. Producers and consumers waiting right now are
    /// woken. A put already in progress completes. Calling it again does nothing.
    pub fn close(&self) {
        self.raw.close();
    }

    /// Whether [`close`](Self::close) has been called (by any process).
    pub fn is_closed(&self) -> bool {
        self.raw.is_closed()
    }

    /// How many items were lost because a producer or consumer died in the middle of them
    /// (see [When a process dies](Queue#when-a-process-dies)). Never decreases.
    pub fn lost(&self) -> u64 {
        self.raw.lost()
    }

    /// Gets an item encoded as a byte string into `buf`, length prefix stripped and checked.
    fn get_byte_string(&self, buf: &mut Vec<u8>, patience: Patience) -> Result<usize, GetError> {
        let mut sink = ItemSink::new(buf, 8);
        self.raw.get(&mut sink, patience).map_err(GetError::from_fail)?;
        let prefix = sink.prefix();
        let Ok(prefix) = <[u8; 8]>::try_from(prefix) else {
            let available = prefix.len();
            buf.clear();
            return Err(GetError::Decode(DecodeError::Truncated { needed: 8, available }));
        };
        let declared = u64::from_le_bytes(prefix);
        let actual = buf.len();
        if declared != actual as u64 {
            buf.clear();
            return Err(GetError::Decode(if declared > actual as u64 {
                DecodeError::Truncated {
                    needed: usize::try_from(declared).unwrap_or(usize::MAX),
                    available: actual,
                }
            } else {
                DecodeError::TrailingBytes { count: actual - declared as usize }
            }));
        }
        Ok(actual)
    }
}

impl Queue<Vec<u8>> {
    /// Puts a copy of `bytes` as one item, which [`get`](Self::get) returns as a `Vec<u8>`
    /// (Python has no such method on queues; compare `Connection.send_bytes`).
    ///
    /// The bytes are copied once, straight into the ring: no encoding buffer, and the caller
    /// keeps its slice. With [`get_bytes_into`](Self::get_bytes_into) on the other side, a large
    /// item costs one copy in and one copy out.
    ///
    /// # Errors
    ///
    /// As [`put`](Self::put), with `()` in place of the item.
    ///
    /// # Examples
    ///
    /// ```
    /// use multiproc::Queue;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let q: Queue<Vec<u8>> = Queue::new()?;
    /// let block = vec![7u8; 100_000];
    /// q.put_bytes(&block)?;
    /// q.put(block.clone())?; // the same item, encoded the usual way
    /// let mut buf = Vec::new(); // reused from item to item
    /// assert_eq!(q.get_bytes_into(&mut buf)?, 100_000);
    /// assert_eq!(buf, block);
    /// assert_eq!(q.get()?, block);
    /// # Ok(())
    /// # }
    /// ```
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<(), PutError<()>> {
        self.put_bytes_within(bytes, Patience::FOREVER)
    }

    /// As [`put_bytes`](Self::put_bytes), waiting at most `timeout` for room (`Duration::ZERO`:
    /// one try).
    ///
    /// # Errors
    ///
    /// As [`put_timeout`](Self::put_timeout), with `()` in place of the item.
    pub fn put_bytes_timeout(&self, bytes: &[u8], timeout: Duration) -> Result<(), PutError<()>> {
        self.put_bytes_within(bytes, Patience::from_timeout(Some(timeout)))
    }

    fn put_bytes_within(&self, bytes: &[u8], patience: Patience) -> Result<(), PutError<()>> {
        let prefix = (bytes.len() as u64).to_le_bytes();
        self.raw
            .put(ItemBytes { prefix: &prefix, body: bytes }, patience)
            .map_err(|f| PutError::from_fail((), f))
    }

    /// Removes the first item and copies its bytes into `buf` (cleared first), returning their
    /// number (compare Python's `Connection.recv_bytes_into`).
    ///
    /// The bytes are copied once, straight from the ring into `buf`; reusing `buf` from item
    /// to item avoids allocating (and page-faulting) a new buffer for each.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get). [`GetError::Decode`] if the item's bytes are not an encoded
    /// `Vec<u8>` (the item is gone and `buf` is left empty).
    pub fn get_bytes_into(&self, buf: &mut Vec<u8>) -> Result<usize, GetError> {
        self.get_byte_string(buf, Patience::FOREVER)
    }

    /// As [`get_bytes_into`](Self::get_bytes_into), waiting at most `timeout` for an item
    /// (`Duration::ZERO`: one try).
    ///
    /// # Errors
    ///
    /// As [`get_timeout`](Self::get_timeout).
    pub fn get_bytes_into_timeout(
        &self,
        buf: &mut Vec<u8>,
        timeout: Duration,
    ) -> Result<usize, GetError> {
        self.get_byte_string(buf, Patience::from_timeout(Some(timeout)))
    }
}

// ---------------------------------------------------------------------------------------------
// Scratch buffers

thread_local! {
    /// Where `put` encodes items before copying them into the ring.
    static ENCODE_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// Where `get` copies items out of the ring before decoding them.
    static DECODE_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's scratch buffer `key` (or a fresh one if it is in use, e.g. by
/// an `Encode` impl that puts into a queue). A buffer that grew large for one big item is
/// released when it is mostly unused.
fn with_scratch<R>(
    key: &'static LocalKey<RefCell<Vec<u8>>>,
    f: impl FnOnce(&mut Vec<u8>) -> R,
) -> R {
    let mut f = Some(f);
    let r = key.try_with(|cell| {
        let mut buf = cell.try_borrow_mut().ok()?;
        let f = f.take()?;
        let r = f(&mut buf);
        if buf.capacity() > (1 << 20) && buf.len() < buf.capacity() / 8 {
            *buf = Vec::new();
        }
        Some(r)
    });
    match (r, f) {
        (Ok(Some(r)), _) => r,
        (_, Some(f)) => f(&mut Vec::new()),
        // `f` was taken only on the path that returned `Some`.
        (_, None) => unreachable!("scratch closure consumed without a result"),
    }
}
