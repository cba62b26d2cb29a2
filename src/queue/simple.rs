//! [`SimpleQueue`]: Python's minimal queue, a [`Queue`] without `maxsize` or timeouts.

use std::fmt;
use std::io;

use super::builder::sealed::Sealed;
use super::builder::{BuildQueue, DEFAULT_CAPACITY_BYTES, QueueBuilder};
use super::error::{GetError, PutError};
use super::handle::Queue;
use super::ring::RawQueue;
use crate::codec::Message;

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
