//! Start methods and contexts — Python's `set_start_method`, `get_context` and friends — and
//! [`init`], which makes them safe in a multithreaded program.
//!
//! # Which start method, when
//!
//! | method | where children come from | safe in a multithreaded program | runs |
//! |---|---|---|---|
//! | [`Fork`](StartMethod::Fork) | a `fork` of the calling process | only if no other thread holds a lock the child needs | closures and functions |
//! | [`Forkserver`](StartMethod::Forkserver) | a `fork` of the fork server, a single-threaded process made by [`init`] (or by `spawn`) | yes | functions, with their arguments as messages |
//! | [`Spawn`](StartMethod::Spawn) | a fresh `exec` of the program, taken over by [`init`] | yes | functions, with their arguments as messages |
//!
//! `fork` copies only the calling thread: a lock that another thread held at that moment (a
//! logger's, the allocator's on some libcs, one of yours) stays locked forever in the child.
//! The crate's own code in a forked child takes none (see the fork-safety notes on
//! [`set_fork_warning`](crate::set_fork_warning)), but yours may. **A multithreaded program (one
//! using tokio, rayon, a logging thread, or the test harness) should use `forkserver`**: call
//! [`init`] first thing in `main`, and pools, executors and function processes get their
//! children from a clean single-threaded server. `spawn` is the same guarantee at the cost of an
//! `exec` per child (about a millisecond), and works even where no fork server was made early.
//!
//! Closures ([`Process::new`](crate::Process::new), [`PoolBuilder::register`],
//! [`PoolBuilder::initializer`]) exist only in the memory of the process that made them, so they
//! always run by `fork`, whatever the start method. Under the default start method a pool that
//! has closures is forked, and one that has none is started from the fork server; an explicit
//! `forkserver` or `spawn` with closures is an error.
//!
//! # The default
//!
//! As in Python 3.14 on Linux, the default is `forkserver` — once [`init`] has run (it makes the
//! fork server). Without `init` the default is `fork`, as in Python up to 3.13.
//!
//! ```
//! use multiproc::{StartMethod, get_context};
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! multiproc::init(); // first line of main: the fork server is made while single-threaded
//! let ctx = get_context("forkserver")?; // Python: mp.get_context("forkserver")
//! assert_eq!(ctx.start_method(), StartMethod::Forkserver);
//! let p = ctx.process(square, 7);
//! p.start()?;
//! assert_eq!(p.join()?, 49);
//! let pool = ctx.pool(2)?;
//! assert_eq!(pool.map(square, [1, 2, 3])?, [1, 4, 9]);
//! # Ok(())
//! # }
//! ```

use std::io;

use crate::codec::Message;
use crate::pool::{ExecutorBuilder, Pool, PoolBuilder, PoolError, ProcessPoolExecutor, Work};
use crate::process::{Process, ProcessBuilder};
use crate::queue::{JoinableQueue, Queue, SimpleQueue};
use crate::shared::{Array, RawArray, RawValue, Value};
use crate::sync::{Barrier, BoundedSemaphore, Condition, Event, Lock, RLock, Semaphore};
use multiproc_sys::mem::shm_safe::ShmSafe;

pub use crate::start::{
    ContextError, StartMethod, chosen_start_method, get_all_start_methods, get_start_method, init,
    set_executable, set_start_method,
};

/// A context for a start method (Python's `get_context(method)`): `"fork"`, `"forkserver"` or
/// `"spawn"`.
///
/// # Errors
/// [`ContextError::UnknownMethod`] for any other name.
pub fn get_context(method: &str) -> Result<Context, ContextError> {
    Ok(Context { method: method.parse()? })
}

/// A start method and the constructors that use it — Python's context objects
/// (`multiprocessing.get_context("spawn")`).
///
/// Processes, pools and executors made through a context start their children by its method;
/// the shared objects (queues, locks, values) are the same whatever the method, and are here so
/// that code written against a context needs nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Context {
    method: StartMethod,
}

impl Default for Context {
    /// The context of [`get_start_method`].
    fn default() -> Context {
        Context { method: get_start_method() }
    }
}

impl Context {
    /// The context for `method`.
    pub fn new(method: StartMethod) -> Context {
        Context { method }
    }

    /// Its start method (Python's `ctx.get_start_method()`).
    pub fn start_method(&self) -> StartMethod {
        self.method
    }

    /// A process that will run `f(arg)` (Python's `ctx.Process(target=f, args=(arg,))`): `f` is
    /// a function, a closure that captures nothing, a `fn` pointer or a
    /// [`partial`](crate::pool::partial), as for [`Pool::map`]. Start it with [`Process::start`]; [`Process::join`] returns `f`'s value.
    pub fn process<A, R, W>(&self, f: W, arg: A) -> Process<R>
    where
        A: Message,
        R: Message,
        W: Work<A, R>,
    {
        let () = W::SENDABLE; // a capturing closure: a compile error here (see `Work`)
        self.process_builder().call(f, arg)
    }

    /// Options for a process started by this context's method.
    pub fn process_builder(&self) -> ProcessBuilder {
        ProcessBuilder::new().start_method(self.method)
    }

    /// A pool of `processes` workers started by this method (Python's `ctx.Pool(n)`).
    pub fn pool(&self, processes: usize) -> Result<Pool, PoolError> {
        self.pool_builder().processes(processes).build()
    }

    /// Options for a pool started by this method.
    pub fn pool_builder(&self) -> PoolBuilder {
        PoolBuilder::new().start_method(self.method)
    }

    /// An executor of `max_workers` workers started by this method (Python's
    /// `ProcessPoolExecutor(max_workers, mp_context=ctx)`).
    pub fn executor(&self, max_workers: usize) -> Result<ProcessPoolExecutor, PoolError> {
        self.executor_builder().max_workers(max_workers).build()
    }

    /// Options for an executor started by this method.
    pub fn executor_builder(&self) -> ExecutorBuilder {
        ExecutorBuilder::new().start_method(self.method)
    }

    /// [`Queue::new`].
    pub fn queue<T: Message>(&self) -> io::Result<Queue<T>> {
        Queue::new()
    }

    /// [`SimpleQueue::new`].
    pub fn simple_queue<T: Message>(&self) -> io::Result<SimpleQueue<T>> {
        SimpleQueue::new()
    }

    /// [`JoinableQueue::new`].
    pub fn joinable_queue<T: Message>(&self) -> io::Result<JoinableQueue<T>> {
        JoinableQueue::new()
    }

    /// [`pipe`](crate::pipe).
    pub fn pipe(&self, duplex: bool) -> io::Result<(crate::Connection, crate::Connection)> {
        crate::pipe(duplex)
    }

    /// [`Lock::new`].
    pub fn lock(&self) -> io::Result<Lock> {
        Lock::new()
    }

    /// [`RLock::new`].
    pub fn rlock(&self) -> io::Result<RLock> {
        RLock::new()
    }

    /// [`Semaphore::new`].
    pub fn semaphore(&self, value: u32) -> io::Result<Semaphore> {
        Semaphore::new(value)
    }

    /// [`BoundedSemaphore::new`].
    pub fn bounded_semaphore(&self, value: u32) -> io::Result<BoundedSemaphore> {
        BoundedSemaphore::new(value)
    }

    /// [`Condition::new`].
    pub fn condition(&self) -> io::Result<Condition> {
        Condition::new()
    }

    /// [`Event::new`].
    pub fn event(&self) -> io::Result<Event> {
        Event::new()
    }

    /// [`Barrier::new`].
    pub fn barrier(&self, parties: usize) -> io::Result<Barrier> {
        Barrier::new(parties)
    }

    /// [`Value::new`].
    pub fn value<T: ShmSafe>(&self, value: T) -> io::Result<Value<T>> {
        Value::new(value)
    }

    /// [`Array::new`].
    pub fn array<T: ShmSafe>(&self, len: usize) -> io::Result<Array<T>> {
        Array::new(len)
    }

    /// [`RawValue::new`].
    pub fn raw_value<T: ShmSafe>(&self, value: T) -> io::Result<RawValue<T>> {
        RawValue::new(value)
    }

    /// [`RawArray::new`].
    pub fn raw_array<T: ShmSafe>(&self, len: usize) -> io::Result<RawArray<T>> {
        RawArray::new(len)
    }
}
