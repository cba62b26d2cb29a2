//! The queue's errors: what `put`, `get`, `task_done` and `join` return ([`PutError`],
//! [`GetError`], [`TaskDoneError`], [`QueueJoinError`]), the item-less [`QueueError`] they all
//! convert into, and the [`Corruption`] inside them.

use std::fmt;
use std::io;

use super::ring::Fail;
use crate::codec::DecodeError;

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

/// Why [`Queue::put`](crate::Queue::put) (or `put_nowait`, or
/// [`SimpleQueue::put`](crate::SimpleQueue::put)) failed. Every variant hands the item back.
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
    /// An unexpected operating-system error from the queue's lock or its futex wait.
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

    pub(super) fn from_fail(item: T, fail: Fail) -> Self {
        match fail {
            Fail::Timeout => PutError::Full(item),
            Fail::Closed => PutError::Closed(item),
            Fail::Corrupt(what) => PutError::Corrupt(item, Corruption { what }),
            Fail::Os(e) => PutError::Os(item, e.into()),
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

/// Why [`Queue::get`](crate::Queue::get) (or `get_nowait`, or
/// [`SimpleQueue::get`](crate::SimpleQueue::get)) returned no item.
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
    /// An unexpected operating-system error from the queue's lock or its futex wait.
    Os(io::Error),
}

impl GetError {
    pub(super) fn from_fail(fail: Fail) -> Self {
        match fail {
            Fail::Timeout => GetError::Empty,
            Fail::Closed => GetError::Closed,
            Fail::Corrupt(what) => GetError::Corrupt(Corruption { what }),
            Fail::Os(e) => GetError::Os(e.into()),
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

/// Why [`JoinableQueue::task_done`](crate::JoinableQueue::task_done) failed.
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

impl TaskDoneError {
    /// A failed `task_done` of the ring: it only fails validation.
    pub(super) fn from_fail(fail: Fail) -> Self {
        match fail {
            Fail::Corrupt(what) => TaskDoneError::Corrupt(Corruption { what }),
            _ => TaskDoneError::Corrupt(Corruption { what: "unexpected failure" }),
        }
    }
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

/// Why [`JoinableQueue::join`](crate::JoinableQueue::join) returned before every item was
/// done.
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

impl QueueJoinError {
    /// A failed `join` of the ring: it only fails validation (a timeout is not a failure).
    pub(super) fn from_fail(fail: Fail) -> Self {
        match fail {
            Fail::Corrupt(what) => QueueJoinError::Corrupt(Corruption { what }),
            _ => QueueJoinError::Corrupt(Corruption { what: "unexpected failure" }),
        }
    }
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
