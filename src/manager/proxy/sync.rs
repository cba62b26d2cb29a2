//! Proxies of the synchronisation objects and queues. Every blocking call has a `_timeout`
//! form; the wait happens in the server, and a server that dies ends it at once with
//! [`ManagerError::Gone`].

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use super::{Managed, Proxy};
use crate::codec::{self, Decode, Encode};
use crate::manager::error::ManagerError;
use crate::manager::protocol as p;

type R<T> = Result<T, ManagerError>;

macro_rules! simple_proxy {
    ($(#[$doc:meta])* $name:ident, $typeid:literal) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name {
            proxy: Proxy,
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_tuple(stringify!($name)).field(&self.proxy).finish()
            }
        }
    };
}

macro_rules! managed {
    ($name:ident, $typeid:literal, $init:ty, $f:expr) => {
        impl Managed for $name {
            const TYPEID: &'static str = $typeid;
            type Init = $init;
            fn init_bytes(init: &$init) -> Vec<u8> {
                #[allow(clippy::redundant_closure_call)]
                ($f)(init)
            }
            fn from_proxy(proxy: Proxy) -> Self {
                $name { proxy }
            }
            fn proxy(&self) -> &Proxy {
                &self.proxy
            }
        }
    };
}

/// `acquire`, `acquire_timeout`, `release` and `lock` (a guard), shared by the lock-like
/// proxies.
macro_rules! lock_methods {
    ($name:ident) => {
        impl $name {
            /// Waits until it is acquired (Python's `acquire()`).
            pub fn acquire(&self) -> R<()> {
                self.proxy.call_typed::<_, bool>(p::ACQUIRE, &None::<Duration>).map(drop)
            }

            /// Waits at most `timeout`; `true` if it was acquired (Python's
            /// `acquire(timeout=t)`; a zero timeout is `acquire(blocking=False)`).
            pub fn acquire_timeout(&self, timeout: Duration) -> R<bool> {
                self.proxy.call_typed(p::ACQUIRE, &Some(timeout))
            }

            /// Releases it (Python's `release()`).
            pub fn release(&self) -> R<()> {
                self.proxy.call_typed(p::RELEASE, &())
            }

            /// Acquires it and returns a guard that releases it when dropped (Python's `with
            /// lock:`).
            pub fn lock(&self) -> R<ProxyGuard<'_>> {
                self.acquire()?;
                Ok(ProxyGuard { proxy: &self.proxy, released: false })
            }
        }
    };
}

simple_proxy!(
    /// A proxy of a `Lock` or an `RLock` in the manager (Python's `manager.Lock()` /
    /// `manager.RLock()`, `threading` semantics).
    ///
    /// A lock is held by a connection, that is by one thread of one process (each thread has
    /// its own connection). A `Lock` may be released by anyone; releasing an unlocked one is an
    /// [`ErrorKind::Runtime`](crate::manager::ErrorKind::Runtime) error ("release unlocked lock"). An `RLock` may be acquired again
    /// by its holder and must be released as often, by its holder only. If the holder's
    /// connection ends (its thread or process exits, or is killed), the server releases the
    /// lock (Python's manager would leave it locked forever).
    LockProxy,
    "Lock"
);
managed!(LockProxy, "Lock", (), |_: &()| Vec::new());
lock_methods!(LockProxy);

impl LockProxy {
    /// Whether it is held (Python's `Lock.locked()`).
    pub fn locked(&self) -> R<bool> {
        self.proxy.call_typed(p::LOCKED, &())
    }
}

/// A held manager lock, released when dropped (an error releasing it is ignored; call
/// [`release`](Self::release) to see it).
#[derive(Debug)]
pub struct ProxyGuard<'a> {
    proxy: &'a Proxy,
    released: bool,
}

impl ProxyGuard<'_> {
    /// Releases the lock now.
    pub fn release(mut self) -> R<()> {
        self.released = true;
        self.proxy.call_typed(p::RELEASE, &())
    }
}

impl Drop for ProxyGuard<'_> {
    fn drop(&mut self) {
        if !self.released {
            let _ = self.proxy.call_typed::<_, ()>(p::RELEASE, &());
        }
    }
}

simple_proxy!(
    /// A proxy of a `Semaphore` or `BoundedSemaphore` in the manager (Python's
    /// `manager.Semaphore(n)` / `manager.BoundedSemaphore(n)`). Releasing a bounded one above
    /// its initial value is an [`ErrorKind::Value`](crate::manager::ErrorKind::Value) error. A semaphore has no owner: a client
    /// that dies keeps what it acquired.
    SemaphoreProxy,
    "Semaphore"
);
managed!(SemaphoreProxy, "Semaphore", u64, |n: &u64| codec::to_bytes(n));
lock_methods!(SemaphoreProxy);

impl SemaphoreProxy {
    /// The current value (Python's `get_value()`).
    pub fn get_value(&self) -> R<u64> {
        self.proxy.call_typed(p::GET_VALUE, &())
    }
}

simple_proxy!(
    /// A proxy of a `Condition` in the manager (Python's `manager.Condition()`, over its own
    /// `RLock`). `wait`, `notify` and `notify_all` need the lock held by the caller, else an
    /// [`ErrorKind::Runtime`](crate::manager::ErrorKind::Runtime) error.
    ConditionProxy,
    "Condition"
);
managed!(ConditionProxy, "Condition", (), |_: &()| Vec::new());
lock_methods!(ConditionProxy);

impl ConditionProxy {
    /// Releases the lock, waits for a notification, re-acquires the lock (Python's `wait()`).
    pub fn wait(&self) -> R<()> {
        self.proxy.call_typed::<_, bool>(p::WAIT, &None::<Duration>).map(drop)
    }

    /// As [`wait`](Self::wait), for at most `timeout`; `false` if it timed out (the lock is
    /// re-acquired either way).
    pub fn wait_timeout(&self, timeout: Duration) -> R<bool> {
        self.proxy.call_typed(p::WAIT, &Some(timeout))
    }

    /// Wakes up to `n` waiters (Python's `notify(n)`).
    pub fn notify(&self, n: usize) -> R<()> {
        self.proxy.call_typed(p::NOTIFY, &(n as u64))
    }

    /// Wakes every waiter (Python's `notify_all()`).
    pub fn notify_all(&self) -> R<()> {
        self.proxy.call_typed(p::NOTIFY_ALL, &())
    }
}

simple_proxy!(
    /// A proxy of an `Event` in the manager (Python's `manager.Event()`).
    EventProxy,
    "Event"
);
managed!(EventProxy, "Event", (), |_: &()| Vec::new());

impl EventProxy {
    /// Sets the flag and wakes every waiter.
    pub fn set(&self) -> R<()> {
        self.proxy.call_typed(p::EVENT_SET, &())
    }

    /// Clears the flag.
    pub fn clear(&self) -> R<()> {
        self.proxy.call_typed(p::EVENT_CLEAR, &())
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> R<bool> {
        self.proxy.call_typed(p::IS_SET, &())
    }

    /// Waits until the flag is set.
    pub fn wait(&self) -> R<()> {
        self.proxy.call_typed::<_, bool>(p::WAIT, &None::<Duration>).map(drop)
    }

    /// Waits at most `timeout`; whether the flag is set.
    pub fn wait_timeout(&self, timeout: Duration) -> R<bool> {
        self.proxy.call_typed(p::WAIT, &Some(timeout))
    }
}

simple_proxy!(
    /// A proxy of a `Barrier` in the manager (Python's `manager.Barrier(parties)`). A broken
    /// barrier (a timeout, `abort`, `reset` under waiters, or a waiting party whose client
    /// died: the others are released promptly instead of waiting forever, gh-123899) is an
    /// [`ErrorKind::BrokenBarrier`](crate::manager::ErrorKind::BrokenBarrier) error.
    BarrierProxy,
    "Barrier"
);
managed!(BarrierProxy, "Barrier", u64, |n: &u64| codec::to_bytes(n));

impl BarrierProxy {
    /// Waits for all parties; returns this caller's arrival index (`0..parties`).
    pub fn wait(&self) -> R<usize> {
        self.proxy.call_typed::<_, u64>(p::WAIT, &None::<Duration>).map(|n| n as usize)
    }

    /// As [`wait`](Self::wait), for at most `timeout`; a timeout breaks the barrier.
    pub fn wait_timeout(&self, timeout: Duration) -> R<usize> {
        self.proxy.call_typed::<_, u64>(p::WAIT, &Some(timeout)).map(|n| n as usize)
    }

    /// Breaks the barrier.
    pub fn abort(&self) -> R<()> {
        self.proxy.call_typed(p::ABORT, &())
    }

    /// Returns the barrier to its initial state (current waiters get the broken error).
    pub fn reset(&self) -> R<()> {
        self.proxy.call_typed(p::RESET, &())
    }

    /// The number of parties.
    pub fn parties(&self) -> R<usize> {
        self.proxy.call_typed::<_, u64>(p::PARTIES, &()).map(|n| n as usize)
    }

    /// How many are waiting now.
    pub fn n_waiting(&self) -> R<usize> {
        self.proxy.call_typed::<_, u64>(p::N_WAITING, &()).map(|n| n as usize)
    }

    /// Whether it is broken.
    pub fn broken(&self) -> R<bool> {
        self.proxy.call_typed(p::BROKEN, &())
    }
}

/// A proxy of a `Queue` in the manager (Python's `manager.Queue(maxsize)`, a `queue.Queue` in
/// the server). A `get` that times out is an [`ErrorKind::Empty`](crate::manager::ErrorKind::Empty) error, a `put` that times out
/// [`ErrorKind::Full`](crate::manager::ErrorKind::Full).
pub struct QueueProxy<T> {
    proxy: Proxy,
    _t: PhantomData<fn() -> T>,
}

/// A proxy of a `JoinableQueue` in the manager (Python's `manager.JoinableQueue(maxsize)`): a
/// [`QueueProxy`] (it derefs to one) with `task_done` and `join`.
pub struct JoinableQueueProxy<T> {
    queue: QueueProxy<T>,
}

impl<T> Clone for QueueProxy<T> {
    fn clone(&self) -> Self {
        QueueProxy { proxy: self.proxy.clone(), _t: PhantomData }
    }
}

impl<T> Clone for JoinableQueueProxy<T> {
    fn clone(&self) -> Self {
        JoinableQueueProxy { queue: self.queue.clone() }
    }
}

impl<T> fmt::Debug for QueueProxy<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("QueueProxy").field(&self.proxy).finish()
    }
}

impl<T> fmt::Debug for JoinableQueueProxy<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("JoinableQueueProxy").field(&self.queue.proxy).finish()
    }
}

impl<T> Managed for QueueProxy<T> {
    const TYPEID: &'static str = "Queue";
    type Init = usize;
    fn init_bytes(maxsize: &usize) -> Vec<u8> {
        codec::to_bytes(&(*maxsize as u64))
    }
    fn from_proxy(proxy: Proxy) -> Self {
        QueueProxy { proxy, _t: PhantomData }
    }
    fn proxy(&self) -> &Proxy {
        &self.proxy
    }
}

impl<T> Managed for JoinableQueueProxy<T> {
    const TYPEID: &'static str = "JoinableQueue";
    type Init = usize;
    fn init_bytes(maxsize: &usize) -> Vec<u8> {
        codec::to_bytes(&(*maxsize as u64))
    }
    fn from_proxy(proxy: Proxy) -> Self {
        JoinableQueueProxy { queue: QueueProxy::from_proxy(proxy) }
    }
    fn proxy(&self) -> &Proxy {
        &self.queue.proxy
    }
}

impl<T: Encode + Decode> QueueProxy<T> {
    /// Puts an item, waiting while the queue is full.
    pub fn put(&self, item: &T) -> R<()> {
        self.put_inner(item, None)
    }

    /// Puts an item, waiting at most `timeout` for room ([`ErrorKind::Full`](crate::manager::ErrorKind::Full) then).
    pub fn put_timeout(&self, item: &T, timeout: Duration) -> R<()> {
        self.put_inner(item, Some(timeout))
    }

    /// Puts an item if there is room now (Python's `put_nowait`).
    pub fn put_nowait(&self, item: &T) -> R<()> {
        self.put_inner(item, Some(Duration::ZERO))
    }

    fn put_inner(&self, item: &T, timeout: Option<Duration>) -> R<()> {
        self.proxy.call_typed(p::PUT, &(timeout, codec::to_bytes(item)))
    }

    /// Takes the next item, waiting while the queue is empty.
    pub fn get(&self) -> R<T> {
        self.get_inner(None)
    }

    /// Takes the next item, waiting at most `timeout` ([`ErrorKind::Empty`](crate::manager::ErrorKind::Empty) then).
    pub fn get_timeout(&self, timeout: Duration) -> R<T> {
        self.get_inner(Some(timeout))
    }

    /// Takes the next item if there is one now (Python's `get_nowait`).
    pub fn get_nowait(&self) -> R<T> {
        self.get_inner(Some(Duration::ZERO))
    }

    fn get_inner(&self, timeout: Option<Duration>) -> R<T> {
        let out = self.proxy.raw(p::QUEUE_GET, &codec::to_bytes(&timeout))?;
        Ok(codec::from_bytes(&out)?)
    }

    /// The number of items (exact: the queue lives in one place).
    pub fn qsize(&self) -> R<usize> {
        self.proxy.call_typed::<_, u64>(p::QSIZE, &()).map(|n| n as usize)
    }

    /// Whether it holds no item.
    pub fn empty(&self) -> R<bool> {
        self.qsize().map(|n| n == 0)
    }

    /// Whether it is at its `maxsize`.
    pub fn full(&self) -> R<bool> {
        self.proxy.call_typed(p::FULL, &())
    }
}

impl<T> std::ops::Deref for JoinableQueueProxy<T> {
    type Target = QueueProxy<T>;
    fn deref(&self) -> &QueueProxy<T> {
        &self.queue
    }
}

impl<T: Encode + Decode> JoinableQueueProxy<T> {
    /// Marks one item taken by `get` as processed; more calls than items is an
    /// [`ErrorKind::Value`](crate::manager::ErrorKind::Value) error.
    pub fn task_done(&self) -> R<()> {
        self.queue.proxy.call_typed(p::TASK_DONE, &())
    }

    /// Waits until every item put has been marked done.
    pub fn join(&self) -> R<()> {
        self.queue.proxy.call_typed::<_, bool>(p::JOIN, &None::<Duration>).map(drop)
    }

    /// As [`join`](Self::join), for at most `timeout`; `false` if items are still unfinished.
    pub fn join_timeout(&self, timeout: Duration) -> R<bool> {
        self.queue.proxy.call_typed(p::JOIN, &Some(timeout))
    }
}
