//! [`QueueBuilder`]: the options of a new queue (ring size, `maxsize`), for any of the queue
//! types ([`BuildQueue`]).

use std::fmt;
use std::io;
use std::marker::PhantomData;

use super::ring::{self, RawQueue};

/// The ring size used when none is given: 1 MiB.
pub const DEFAULT_CAPACITY_BYTES: usize = 1 << 20;

/// The sealing supertrait of [`BuildQueue`]: only this crate's queue types implement it.
pub(super) mod sealed {
    /// Builds a queue type from a new ring.
    pub trait Sealed: Sized {
        fn from_raw(raw: super::RawQueue) -> Self;
    }
}

use sealed::Sealed;

/// A queue type that [`QueueBuilder`] can build: [`Queue`](crate::Queue),
/// [`JoinableQueue`](crate::JoinableQueue), [`SimpleQueue`](crate::SimpleQueue).
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
    /// The default options: [`DEFAULT_CAPACITY_BYTES`], no `maxsize`.
    pub(super) fn new() -> Self {
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

/// The constructors of a queue type with a `maxsize` ([`Queue`](crate::Queue),
/// [`JoinableQueue`](crate::JoinableQueue)), written once: `new`, `with_maxsize` and
/// `builder`, inside the type's `impl<T: Message>` block. `$python` is the Python class.
macro_rules! maxsize_constructors {
    ($python:literal) => {
        #[doc = concat!(
            "A queue with no item limit and the default ring size (Python: `", $python, "()`)."
        )]
        ///
        /// # Errors
        ///
        /// The `mmap` or mutex initialisation error.
        pub fn new() -> std::io::Result<Self> {
            Self::builder().build()
        }

        #[doc = concat!(
            "A queue holding at most `maxsize` items; 0 means no limit (Python: `",
            $python,
            "(maxsize)`)."
        )]
        ///
        /// # Errors
        ///
        /// The `mmap` or mutex initialisation error.
        pub fn with_maxsize(maxsize: usize) -> std::io::Result<Self> {
            Self::builder().maxsize(maxsize).build()
        }

        /// Options: ring size, maxsize.
        pub fn builder() -> $crate::queue::QueueBuilder<Self> {
            $crate::queue::QueueBuilder::new()
        }
    };
}

pub(super) use maxsize_constructors;
