//! [`JoinableQueue`]: a [`Queue`] that also counts unfinished items (`task_done`, `join`).

use std::fmt;
use std::ops::Deref;
use std::time::Duration;

use super::builder::sealed::Sealed;
use super::builder::{BuildQueue, maxsize_constructors};
use super::error::{QueueJoinError, TaskDoneError};
use super::handle::Queue;
use super::ring::RawQueue;
use crate::codec::Message;
use crate::wait::Patience;

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
    maxsize_constructors!("JoinableQueue");

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
            Err(fail) => Err(TaskDoneError::from_fail(fail)),
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

    fn join_within(&self, patience: Patience) -> Result<(), QueueJoinError> {
        match self.q.raw.join(patience) {
            Ok(true) => Ok(()),
            Ok(false) => Err(QueueJoinError::Timeout),
            Err(fail) => Err(QueueJoinError::from_fail(fail)),
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
