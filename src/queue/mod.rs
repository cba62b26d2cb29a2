//! `Queue`, `SimpleQueue` and `JoinableQueue` — Python's `multiprocessing` queues, on a ring of
//! bytes in shared memory. The user-facing documentation is on [`Queue`]; the algorithm and its
//! invariants are documented in `ring.rs`.

mod ring;

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::ops::Deref;
use std::panic::AssertUnwindSafe;
use std::thread::LocalKey;
use std::time::Duration;

use crate::codec::{self, DecodeError, Message};
use crate::wait::Patience;
use ring::{Fail, Payload, RawQueue, Sink};

/// The ring size used when none is given: 1 MiB.
pub const DEFAULT_CAPACITY_BYTES: usize = 1 << 20;

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

// ---------------------------------------------------------------------------------------------
// Errors

/// The queue's shared state failed validation: another process wrote garbage into it (a bug),
/// or it is not a queue any more. The message names the check that failed.
///
/// Python has no counterpart: garbage in a queue's pipe surfaces as an unpickling error, or a
/// hang. Here the shared header is checked on every operation, and a failed check is this
/// error (inside [`PutError::Corrupt`], [`GetError::Corrupt`], ...) instead of an
/// out-of-bounds read or a panic.
///
/// # Examples
///
/// Handling it: stop using the queue. (A healthy queue never produces it; the example runs on
/// one.)
///
/// ```
/// use multiproc::{GetError, Queue};
///
/// /// Takes every item that is in the queue now.
/// fn drain(q: &Queue<u32>) -> Result<Vec<u32>, String> {
///     let mut items = Vec::new();
///     loop {
///         match q.get_nowait() {
///             Ok(item) => items.push(item),
///             Err(GetError::Empty) => return Ok(items),
///             // Another process garbled the segment: give up on this queue.
///             Err(GetError::Corrupt(c)) => return Err(format!("queue unusable: {}", c.what())),
///             Err(e) => return Err(e.to_string()),
///         }
///     }
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let q = Queue::new()?;
/// q.put(1)?;
/// q.put(2)?;
/// assert_eq!(drain(&q)?, [1, 2]);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Corruption {
    what: &'static str,
}

impl Corruption {
    /// The check that failed, e.g. `"head and tail out of order"`.
    pub fn what(&self) -> &'static str {
        self.what
    }
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "corrupt queue: {}", self.what)
    }
}

impl std::error::Error for Corruption {}

/// Why [`Queue::put`] (or `put_nowait`, or [`SimpleQueue::put`]) failed. Every variant hands
/// the item back.
///
/// Python raises `queue.Full` (and `ValueError` on a closed queue); here `put` returns a
/// `PutError` that carries the item, so nothing is lost.
///
/// # Examples
///
/// ```
/// use multiproc::{PutError, Queue};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let q: Queue<String> = Queue::with_maxsize(1)?;
/// q.put_nowait("first".to_string())?;
/// // Python: q.put_nowait("second") raises queue.Full
/// match q.put_nowait("second".to_string()) {
///     Err(PutError::Full(item)) => assert_eq!(item, "second"),
///     other => panic!("unexpected {other:?}"),
/// }
/// q.close();
/// match q.put_nowait("third".to_string()) {
///     Err(e) if e.is_closed() => assert_eq!(e.into_inner(), "third"),
///     other => panic!("unexpected {other:?}"),
/// }
/// # Ok(())
/// # }
/// ```
#[non_exhaustive]
pub enum PutError<T> {
    /// The queue stayed full until the timeout (Python's `queue.Full`): `maxsize` items, or not
    /// enough free bytes in the ring, or the producer lock stayed busy.
    Full(T),
    /// The queue is closed.
    Closed(T),
    /// The queue's shared state is garbled.
    Corrupt(T, Corruption),
    /// An unexpected operating-system error from the queue's lock.
    Os(T, io::Error),
    /// The item could not be encoded: its [`Encode`](crate::codec::Encode) impl panicked (as
    /// the `serde` feature's `Serde<T>` does when `T`'s `Serialize` impl fails). The message is
    /// the panic's; nothing was put, and the queue is unaffected. (The panic hook has already
    /// reported the panic, as for any panic.)
    Encode(T, String),
}

impl<T> PutError<T> {
    /// The item that was not put.
    pub fn into_inner(self) -> T {
        match self {
            PutError::Full(t)
            | PutError::Closed(t)
            | PutError::Corrupt(t, _)
            | PutError::Os(t, _)
            | PutError::Encode(t, _) => t,
        }
    }

    /// Whether this is [`PutError::Full`].
    pub fn is_full(&self) -> bool {
        matches!(self, PutError::Full(_))
    }

    /// Whether this is [`PutError::Closed`].
    pub fn is_closed(&self) -> bool {
        matches!(self, PutError::Closed(_))
    }

    fn from_fail(item: T, fail: Fail) -> Self {
        match fail {
            Fail::Timeout => PutError::Full(item),
            Fail::Closed => PutError::Closed(item),
            Fail::Corrupt(what) => PutError::Corrupt(item, Corruption { what }),
            Fail::Os(e) => PutError::Os(item, io::Error::from_raw_os_error(e.raw_os_error())),
        }
    }
}

impl<T> fmt::Debug for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutError::Full(_) => f.write_str("Full(..)"),
            PutError::Closed(_) => f.write_str("Closed(..)"),
            PutError::Corrupt(_, c) => f.debug_tuple("Corrupt").field(&"..").field(c).finish(),
            PutError::Os(_, e) => f.debug_tuple("Os").field(&"..").field(e).finish(),
            PutError::Encode(_, m) => f.debug_tuple("Encode").field(&"..").field(m).finish(),
        }
    }
}

impl<T> fmt::Display for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutError::Full(_) => f.write_str("queue is full"),
            PutError::Closed(_) => f.write_str("queue is closed"),
            PutError::Corrupt(_, c) => c.fmt(f),
            PutError::Os(_, e) => write!(f, "queue lock error: {e}"),
            PutError::Encode(_, m) => write!(f, "the item could not be encoded: {m}"),
        }
    }
}

impl<T> std::error::Error for PutError<T> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PutError::Corrupt(_, c) => Some(c),
            PutError::Os(_, e) => Some(e),
            _ => None,
        }
    }
}

/// Why [`Queue::get`] (or `get_nowait`, or [`SimpleQueue::get`]) returned no item.
///
/// Python raises `queue.Empty` when a `get` times out; here `get` returns
/// [`GetError::Empty`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use multiproc::{GetError, Queue};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let q: Queue<u32> = Queue::new()?;
/// // Python: q.get(timeout=0.01) raises queue.Empty
/// match q.get_timeout(Duration::from_millis(10)) {
///     Err(GetError::Empty) => {}
///     other => panic!("unexpected {other:?}"),
/// }
/// q.put(1)?;
/// q.close();
/// assert_eq!(q.get()?, 1); // what was left
/// assert!(matches!(q.get(), Err(GetError::Closed))); // then Closed, without blocking
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum GetError {
    /// The queue stayed empty until the timeout (Python's `queue.Empty`).
    Empty,
    /// The queue is closed and nothing is left in it.
    Closed,
    /// The queue's shared state is garbled.
    Corrupt(Corruption),
    /// An item was taken from the queue but its bytes are not a valid `T` (for example a
    /// garbled payload). The item is gone.
    Decode(DecodeError),
    /// An unexpected operating-system error from the queue's lock.
    Os(io::Error),
}

impl GetError {
    fn from_fail(fail: Fail) -> Self {
        match fail {
            Fail::Timeout => GetError::Empty,
            Fail::Closed => GetError::Closed,
            Fail::Corrupt(what) => GetError::Corrupt(Corruption { what }),
            Fail::Os(e) => GetError::Os(io::Error::from_raw_os_error(e.raw_os_error())),
        }
    }
}

impl fmt::Display for GetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GetError::Empty => f.write_str("queue is empty"),
            GetError::Closed => f.write_str("queue is closed and empty"),
            GetError::Corrupt(c) => c.fmt(f),
            GetError::Decode(e) => write!(f, "queue item could not be decoded: {e}"),
            GetError::Os(e) => write!(f, "queue lock error: {e}"),
        }
    }
}

impl std::error::Error for GetError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            GetError::Corrupt(c) => Some(c),
            GetError::Decode(e) => Some(e),
            GetError::Os(e) => Some(e),
            _ => None,
        }
    }
}

/// Why [`JoinableQueue::task_done`] failed.
///
/// Python raises `ValueError('task_done() called too many times')`; here `task_done` returns
/// [`TaskDoneError::TooManyCalls`].
///
/// # Examples
///
/// ```
/// use multiproc::{JoinableQueue, TaskDoneError};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let q: JoinableQueue<u32> = JoinableQueue::new()?;
/// q.put(1)?;
/// q.get()?;
/// q.task_done()?;
/// match q.task_done() {
///     Err(TaskDoneError::TooManyCalls) => {}
///     other => panic!("unexpected {other:?}"),
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TaskDoneError {
    /// More `task_done` calls than items put (Python: `ValueError('task_done() called too many
    /// times')`). Nothing changed.
    TooManyCalls,
    /// The queue's shared state is garbled.
    Corrupt(Corruption),
}

impl fmt::Display for TaskDoneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskDoneError::TooManyCalls => f.write_str("task_done() called too many times"),
            TaskDoneError::Corrupt(c) => c.fmt(f),
        }
    }
}

impl std::error::Error for TaskDoneError {}

/// Why [`JoinableQueue::join`] returned before every item was done.
///
/// Python's `JoinableQueue.join()` has no timeout and may wait forever; here `join` takes one,
/// and [`QueueJoinError::Timeout`] says it passed.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use multiproc::{JoinableQueue, QueueJoinError};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let q: JoinableQueue<String> = JoinableQueue::new()?;
/// q.put("job".to_string())?;
/// match q.join_timeout(Duration::from_millis(10)) {
///     Err(QueueJoinError::Timeout) => assert_eq!(q.unfinished_tasks(), 1),
///     other => panic!("unexpected {other:?}"),
/// }
/// let _job = q.get()?;
/// q.task_done()?;
/// q.join_timeout(Duration::ZERO)?; // nothing unfinished: returns at once
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueueJoinError {
    /// Unfinished items remained when the timeout passed.
    Timeout,
    /// The queue's shared state is garbled.
    Corrupt(Corruption),
}

impl fmt::Display for QueueJoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueJoinError::Timeout => f.write_str("timed out waiting for unfinished tasks"),
            QueueJoinError::Corrupt(c) => c.fmt(f),
        }
    }
}

impl std::error::Error for QueueJoinError {}

/// Any queue error, without the item: for callers that propagate errors with `?` and do not
/// want the item back.
///
/// Python raises a different exception for each case (`queue.Full`, `queue.Empty`,
/// `ValueError`, ...); `QueueError` gathers them, and every queue error converts into it.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use multiproc::{Queue, QueueError};
///
/// /// Moves one item from `from` to `to`, doubled.
/// fn forward(from: &Queue<u32>, to: &Queue<u32>) -> Result<(), QueueError> {
///     let item = from.get_timeout(Duration::from_millis(10))?;
///     to.put_timeout(item * 2, Duration::from_millis(10))?;
///     Ok(())
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (a, b) = (Queue::new()?, Queue::new()?);
/// a.put(21)?;
/// forward(&a, &b)?;
/// assert_eq!(b.get_nowait()?, 42);
/// match forward(&a, &b) {
///     Err(QueueError::Empty) => {} // Python: queue.Empty
///     other => panic!("unexpected {other:?}"),
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum QueueError {
    /// See [`PutError::Full`].
    Full,
    /// See [`GetError::Empty`].
    Empty,
    /// See [`PutError::Closed`] and [`GetError::Closed`].
    Closed,
    /// See [`QueueJoinError::Timeout`].
    Timeout,
    /// See [`TaskDoneError::TooManyCalls`].
    TooManyTaskDone,
    /// The queue's shared state is garbled.
    Corrupt(Corruption),
    /// See [`GetError::Decode`].
    Decode(DecodeError),
    /// See [`PutError::Encode`].
    Encode(String),
    /// An unexpected operating-system error.
    Os(io::Error),
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueError::Full => f.write_str("queue is full"),
            QueueError::Empty => f.write_str("queue is empty"),
            QueueError::Closed => f.write_str("queue is closed"),
            QueueError::Timeout => f.write_str("timed out waiting for unfinished tasks"),
            QueueError::TooManyTaskDone => f.write_str("task_done() called too many times"),
            QueueError::Corrupt(c) => c.fmt(f),
            QueueError::Decode(e) => write!(f, "queue item could not be decoded: {e}"),
            QueueError::Encode(m) => write!(f, "the item could not be encoded: {m}"),
            QueueError::Os(e) => write!(f, "queue error: {e}"),
        }
    }
}

impl std::error::Error for QueueError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            QueueError::Corrupt(c) => Some(c),
            QueueError::Decode(e) => Some(e),
            QueueError::Os(e) => Some(e),
            _ => None,
        }
    }
}

impl<T> From<PutError<T>> for QueueError {
    fn from(e: PutError<T>) -> Self {
        match e {
            PutError::Full(_) => QueueError::Full,
            PutError::Closed(_) => QueueError::Closed,
            PutError::Corrupt(_, c) => QueueError::Corrupt(c),
            PutError::Os(_, e) => QueueError::Os(e),
            PutError::Encode(_, m) => QueueError::Encode(m),
        }
    }
}

impl From<GetError> for QueueError {
    fn from(e: GetError) -> Self {
        match e {
            GetError::Empty => QueueError::Empty,
            GetError::Closed => QueueError::Closed,
            GetError::Corrupt(c) => QueueError::Corrupt(c),
            GetError::Decode(e) => QueueError::Decode(e),
            GetError::Os(e) => QueueError::Os(e),
        }
    }
}

impl From<TaskDoneError> for QueueError {
    fn from(e: TaskDoneError) -> Self {
        match e {
            TaskDoneError::TooManyCalls => QueueError::TooManyTaskDone,
            TaskDoneError::Corrupt(c) => QueueError::Corrupt(c),
        }
    }
}

impl From<QueueJoinError> for QueueError {
    fn from(e: QueueJoinError) -> Self {
        match e {
            QueueJoinError::Timeout => QueueError::Timeout,
            QueueJoinError::Corrupt(c) => QueueError::Corrupt(c),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Builder

mod sealed {
    /// Builds a queue type from a new ring.
    pub trait Sealed: Sized {
        fn from_raw(raw: super::RawQueue) -> Self;
    }
}

use sealed::Sealed;

/// A queue type that [`QueueBuilder`] can build: [`Queue`], [`JoinableQueue`], [`SimpleQueue`].
///
/// Python has no builder: `maxsize` is the argument of `Queue(maxsize)` and
/// `JoinableQueue(maxsize)`, and the ring size has no Python counterpart. This sealed trait
/// lets code be generic over the queue type a builder makes.
///
/// # Examples
///
/// ```
/// use multiproc::queue::{BuildQueue, QueueBuilder};
/// use multiproc::{JoinableQueue, Queue};
///
/// /// Builds any kind of queue with a small ring.
/// fn small<Q: BuildQueue>(builder: QueueBuilder<Q>) -> std::io::Result<Q> {
///     builder.capacity_bytes(4096).build()
/// }
///
/// # fn main() -> std::io::Result<()> {
/// let q = small(Queue::<u8>::builder())?;
/// let j = small(JoinableQueue::<u8>::builder().maxsize(5))?; // JoinableQueue(maxsize=5)
/// assert_eq!((q.capacity_bytes(), j.capacity_bytes(), j.maxsize()), (4096, 4096, 5));
/// # Ok(())
/// # }
/// ```
pub trait BuildQueue: Sealed {}

/// Options for a new queue: `Queue::<T>::builder().capacity_bytes(n).maxsize(items).build()`.
///
/// Python has no builder: [`maxsize`](Self::maxsize) is the argument of Python's
/// `Queue(maxsize)` and `JoinableQueue(maxsize)`; the ring's size
/// ([`capacity_bytes`](Self::capacity_bytes)) has no Python counterpart.
///
/// ```
/// use multiproc::Queue;
///
/// # fn main() -> std::io::Result<()> {
/// // Python: Queue(maxsize=10), with a 16 MiB ring for large items.
/// let q = Queue::<Vec<u8>>::builder().capacity_bytes(16 << 20).maxsize(10).build()?;
/// assert_eq!(q.maxsize(), 10);
/// assert_eq!(q.capacity_bytes(), 16 << 20);
/// # Ok(())
/// # }
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct QueueBuilder<Q> {
    capacity: usize,
    maxsize: usize,
    _q: PhantomData<fn() -> Q>,
}

impl<Q> fmt::Debug for QueueBuilder<Q> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueBuilder")
            .field("capacity_bytes", &self.capacity)
            .field("maxsize", &self.maxsize)
            .finish()
    }
}

impl<Q: BuildQueue> QueueBuilder<Q> {
    fn new() -> Self {
        QueueBuilder { capacity: DEFAULT_CAPACITY_BYTES, maxsize: 0, _q: PhantomData }
    }

    /// Size of the ring in bytes, rounded up to a power of two between 64 bytes and 1 TiB
    /// (default [`DEFAULT_CAPACITY_BYTES`], 1 MiB).
    ///
    /// Each item takes its encoded size plus 16 to 23 bytes. Items that fit in the free space
    /// are put without waiting for any consumer; larger ones stream through and so wait for
    /// one. The memory is shared and is touched (and so really allocated) only as the ring
    /// fills.
    pub fn capacity_bytes(mut self, bytes: usize) -> Self {
        self.capacity = bytes;
        self
    }

    /// The most items the queue may hold (Python's `maxsize`); 0 (the default) means no limit
    /// but the ring's bytes.
    pub fn maxsize(mut self, items: usize) -> Self {
        self.maxsize = items;
        self
    }

    /// Creates the queue in a new shared segment.
    ///
    /// # Errors
    ///
    /// The `mmap` or mutex initialisation error (for example `ENOMEM`).
    pub fn build(self) -> io::Result<Q> {
        let cap = (self.capacity as u64).clamp(ring::MIN_CAPACITY, ring::MAX_CAPACITY);
        let cap = cap.next_power_of_two();
        Ok(Q::from_raw(RawQueue::new(cap, self.maxsize as u64)?))
    }
}

// ---------------------------------------------------------------------------------------------
// Queue

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
///   `block=False`, also [`put_nowait`](Queue::put_nowait) and [`get_nowait`](Queue::get_nowait)). A timed-out `put` is [`PutError::Full`] and a
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
///
/// [`Message`]: crate::Message
pub struct Queue<T> {
    raw: RawQueue,
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
    /// A queue with no item limit and the default ring size (Python: `Queue()`).
    ///
    /// # Errors
    ///
    /// The `mmap` or mutex initialisation error.
    pub fn new() -> io::Result<Self> {
        Self::builder().build()
    }

    /// A queue holding at most `maxsize` items; 0 means no limit (Python: `Queue(maxsize)`).
    ///
    /// # Errors
    ///
    /// The `mmap` or mutex initialisation error.
    pub fn with_maxsize(maxsize: usize) -> io::Result<Self> {
        Self::builder().maxsize(maxsize).build()
    }

    /// Options: ring size, maxsize.
    pub fn builder() -> QueueBuilder<Self> {
        QueueBuilder::new()
    }

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

    fn put_within(&self, item: T, until: Patience) -> Result<(), PutError<T>> {
        if let Some(bytes) = item.as_byte_string() {
            // A byte string (`Vec<u8>`, `String`, ...) is its own encoding after the length:
            // copied once, straight into the ring.
            let prefix = (bytes.len() as u64).to_le_bytes();
            let r = self.raw.put(Payload { head: &prefix, body: bytes }, until);
            return r.map_err(|fail| PutError::from_fail(item, fail));
        }
        let r = with_scratch(&ENCODE_BUF, |buf| {
            buf.clear();
            // No lock is held while encoding: a panicking `Encode` impl leaves the queue as it
            // was, and becomes an error for this put.
            if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(|| item.encode(buf))) {
                return Err(Err(crate::fork_safety::panic_message(panic.as_ref())));
            }
            self.raw.put(Payload { head: &[], body: buf }, until).map_err(Ok)
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

    fn get_within(&self, until: Patience) -> Result<T, GetError> {
        if T::BYTE_STRING {
            // Copied once, straight from the ring into the buffer the item will own.
            let mut buf = Vec::new();
            self.get_byte_string(&mut buf, until)?;
            return T::from_byte_string(buf).map_err(GetError::Decode);
        }
        with_scratch(&DECODE_BUF, |buf| {
            self.raw.get(&mut Sink::new(buf, 0), until).map_err(GetError::from_fail)?;
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

    /// Whether the queue holds no item (Python: `empty()`); true right after a `put` has
    /// returned is impossible in the same process.
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

    /// Test hook: the queue's validated shared header and its ring, as
    /// `(header, header_len, ring, ring_len)`. Writing through these pointers is `unsafe` and
    /// only meant for tests that garble the segment on purpose.
    #[doc(hidden)]
    pub fn raw_parts_for_tests(&self) -> (*mut u8, usize, *mut u8, usize) {
        self.raw.raw_parts()
    }

    /// Test hook: the ring's `(head, tail)` byte positions.
    #[doc(hidden)]
    pub fn positions_for_tests(&self) -> (u64, u64) {
        self.raw.positions()
    }

    /// Gets an item encoded as a byte string into `buf`, length prefix stripped and checked.
    fn get_byte_string(&self, buf: &mut Vec<u8>, until: Patience) -> Result<usize, GetError> {
        let mut sink = Sink::new(buf, 8);
        self.raw.get(&mut sink, until).map_err(GetError::from_fail)?;
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

    fn put_bytes_within(&self, bytes: &[u8], until: Patience) -> Result<(), PutError<()>> {
        let prefix = (bytes.len() as u64).to_le_bytes();
        self.raw
            .put(Payload { head: &prefix, body: bytes }, until)
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
// SimpleQueue

/// A minimal unbounded queue — Python's `multiprocessing.SimpleQueue`: `put`, `get`, `empty`,
/// `close`, and nothing else.
///
/// It is a [`Queue`] without `maxsize` or timeouts. (Python's `SimpleQueue` is a locked pipe;
/// this one shares `Queue`'s ring, so a `put` also returns as soon as the item is in shared
/// memory.)
///
/// ```
/// use multiproc::{Process, SimpleQueue};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let q: SimpleQueue<(u32, String)> = SimpleQueue::new()?;
/// let cq = q.clone();
/// let p = Process::new(move || cq.put((1, "one".into())).unwrap());
/// p.start()?;
/// p.join()?; // the item is already in the queue
/// assert!(!q.empty());
/// assert_eq!(q.get()?, (1, "one".to_string()));
/// # Ok(())
/// # }
/// ```
pub struct SimpleQueue<T> {
    q: Queue<T>,
}

impl<T> Sealed for SimpleQueue<T> {
    fn from_raw(raw: RawQueue) -> Self {
        SimpleQueue { q: Queue::from_raw(raw) }
    }
}

impl<T> BuildQueue for SimpleQueue<T> {}

impl<T> Clone for SimpleQueue<T> {
    fn clone(&self) -> Self {
        SimpleQueue { q: self.q.clone() }
    }
}

impl<T> fmt::Debug for SimpleQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimpleQueue")
            .field("qsize", &self.q.raw.qsize())
            .field("closed", &self.q.raw.is_closed())
            .finish()
    }
}

impl<T: Message> SimpleQueue<T> {
    /// A new queue with the default ring size (Python: `SimpleQueue()`).
    ///
    /// # Errors
    ///
    /// The `mmap` or mutex initialisation error.
    pub fn new() -> io::Result<Self> {
        Self::with_capacity_bytes(DEFAULT_CAPACITY_BYTES)
    }

    /// A new queue whose ring holds `bytes` bytes (see [`QueueBuilder::capacity_bytes`]).
    ///
    /// # Errors
    ///
    /// The `mmap` or mutex initialisation error.
    pub fn with_capacity_bytes(bytes: usize) -> io::Result<Self> {
        QueueBuilder::new().capacity_bytes(bytes).build()
    }

    /// Puts `item`, waiting for room as long as needed (Python: `put(item)`).
    ///
    /// # Errors
    ///
    /// [`PutError::Closed`] after [`close`](Self::close), [`PutError::Corrupt`]; the item
    /// comes back.
    pub fn put(&self, item: T) -> Result<(), PutError<T>> {
        self.q.put(item)
    }

    /// Removes and returns the first item, waiting as long as needed (Python: `get()`).
    ///
    /// # Errors
    ///
    /// [`GetError::Closed`] once the queue is closed and empty; [`GetError::Decode`],
    /// [`GetError::Corrupt`].
    pub fn get(&self) -> Result<T, GetError> {
        self.q.get()
    }

    /// Whether the queue holds no item (Python: `empty()`).
    pub fn empty(&self) -> bool {
        self.q.empty()
    }

    /// Closes the queue for every process (Python: `close()`); see [`Queue::close`].
    pub fn close(&self) {
        self.q.close();
    }
}

// ---------------------------------------------------------------------------------------------
// JoinableQueue

/// A [`Queue`] that also counts unfinished items — Python's `multiprocessing.JoinableQueue`.
///
/// Every completed `put` adds an unfinished item; [`task_done`](Self::task_done) marks one
/// finished; [`join`](Self::join) waits until none is left. All of [`Queue`]'s methods are
/// available through `Deref`.
///
/// Items lost because a process died mid-transfer (see [`Queue::lost`]) and items a producer
/// gave up on are not counted as unfinished: nobody could call `task_done` for them.
///
/// # Examples
///
/// The tutorial's consumer (Python: `while True: res = q.get(); ...; q.task_done()`) and
/// producer (`for item in seq: q.put(item)`, then `q.join()`):
///
/// ```
/// use multiproc::{JoinableQueue, ProcessBuilder};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let q: JoinableQueue<String> = JoinableQueue::new()?;
/// let cq = q.clone();
/// let consumer = ProcessBuilder::new().daemon(true).spawn(move || loop {
///     let Ok(res) = cq.get() else { break };
///     assert!(res.starts_with("product"));
///     cq.task_done().unwrap();
/// })?;
/// for i in 0..5 {
///     q.put(format!("product {i}"))?;
/// }
/// q.join()?; // every item has been processed
/// assert_eq!(q.unfinished_tasks(), 0);
/// q.close(); // lets the consumer's get fail with Closed
/// consumer.join()?;
/// # Ok(())
/// # }
/// ```
pub struct JoinableQueue<T> {
    q: Queue<T>,
}

impl<T> Sealed for JoinableQueue<T> {
    fn from_raw(raw: RawQueue) -> Self {
        JoinableQueue { q: Queue::from_raw(raw) }
    }
}

impl<T> BuildQueue for JoinableQueue<T> {}

impl<T> Clone for JoinableQueue<T> {
    fn clone(&self) -> Self {
        JoinableQueue { q: self.q.clone() }
    }
}

impl<T> fmt::Debug for JoinableQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinableQueue")
            .field("qsize", &self.q.raw.qsize())
            .field("unfinished_tasks", &self.q.raw.unfinished().ok())
            .field("maxsize", &self.q.raw.maxsize())
            .field("closed", &self.q.raw.is_closed())
            .finish()
    }
}

impl<T> Deref for JoinableQueue<T> {
    type Target = Queue<T>;

    fn deref(&self) -> &Queue<T> {
        &self.q
    }
}

impl<T: Message> JoinableQueue<T> {
    /// A joinable queue with no item limit (Python: `JoinableQueue()`).
    ///
    /// # Errors
    ///
    /// The `mmap` or mutex initialisation error.
    pub fn new() -> io::Result<Self> {
        Self::builder().build()
    }

    /// A joinable queue holding at most `maxsize` items; 0 means no limit.
    ///
    /// # Errors
    ///
    /// The `mmap` or mutex initialisation error.
    pub fn with_maxsize(maxsize: usize) -> io::Result<Self> {
        Self::builder().maxsize(maxsize).build()
    }

    /// Options: ring size, maxsize.
    pub fn builder() -> QueueBuilder<Self> {
        QueueBuilder::new()
    }

    /// Marks one item as processed (Python: `task_done()`), waking `join`ers when it was the
    /// last one.
    ///
    /// # Errors
    ///
    /// [`TaskDoneError::TooManyCalls`] when no item is unfinished (Python's `ValueError`);
    /// [`TaskDoneError::Corrupt`] if the shared counters are garbled.
    pub fn task_done(&self) -> Result<(), TaskDoneError> {
        match self.q.raw.task_done() {
            Ok(true) => Ok(()),
            Ok(false) => Err(TaskDoneError::TooManyCalls),
            Err(Fail::Corrupt(what)) => Err(TaskDoneError::Corrupt(Corruption { what })),
            Err(_) => Err(TaskDoneError::Corrupt(Corruption { what: "unexpected failure" })),
        }
    }

    /// Waits until every item put has been marked done (Python: `join()`).
    ///
    /// # Errors
    ///
    /// [`QueueJoinError::Corrupt`] if the shared counters are garbled.
    pub fn join(&self) -> Result<(), QueueJoinError> {
        self.join_within(Patience::FOREVER)
    }

    /// As [`join`](Self::join), waiting at most `timeout` (Python's `join()` has no timeout).
    ///
    /// # Errors
    ///
    /// As [`join`](Self::join), and [`QueueJoinError::Timeout`] if items were still unfinished
    /// at the timeout.
    pub fn join_timeout(&self, timeout: Duration) -> Result<(), QueueJoinError> {
        self.join_within(Patience::from_timeout(Some(timeout)))
    }

    fn join_within(&self, until: Patience) -> Result<(), QueueJoinError> {
        match self.q.raw.join(until) {
            Ok(true) => Ok(()),
            Ok(false) => Err(QueueJoinError::Timeout),
            Err(Fail::Corrupt(what)) => Err(QueueJoinError::Corrupt(Corruption { what })),
            Err(_) => Err(QueueJoinError::Corrupt(Corruption { what: "unexpected failure" })),
        }
    }

    /// Items put and not yet marked done (Python keeps this in the private
    /// `_unfinished_tasks` semaphore). 0 if the counters are garbled.
    pub fn unfinished_tasks(&self) -> u64 {
        self.q.raw.unfinished().unwrap_or(0)
    }

    /// This queue as a plain [`Queue`] handle (for code that takes `&Queue<T>`).
    pub fn as_queue(&self) -> &Queue<T> {
        &self.q
    }
}
