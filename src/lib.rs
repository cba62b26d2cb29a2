#![doc = include_str!("crate_docs.md")]
#![warn(missing_docs)]
// `unsafe` is allowed only in the modules that say so (`#![allow(unsafe_code)]` at their top,
// with what it is for); everything else is safe code over `multiproc-sys`.
#![deny(unsafe_code)]

pub use multiproc_sys as sys;

pub mod codec;
pub mod connection;
pub mod context;
mod fd_registry;
mod fork_safety;
pub mod manager;
pub mod pool;
pub mod process;
pub mod queue;
pub mod shared;
mod shm;
mod start;
pub mod sync;
mod wait;

#[cfg(feature = "serde")]
pub use codec::Serde;
pub use codec::{Decode, Encode, Message};
// With the `derive` feature, `Encode` and `Decode` also name their derive macros (serde-style).
pub use connection::{
    Connection, ConnectionError, TypedConnection, pipe, typed_pipe, typed_simplex_pipe, wait,
};
pub use context::{
    Context, ContextError, StartMethod, chosen_start_method, get_all_start_methods, get_context,
    get_start_method, init, set_executable, set_start_method,
};
pub use fork_safety::set_fork_warning;
pub use manager::{Manager, ManagerError};
#[cfg(feature = "derive")]
pub use multiproc_derive::{Decode, Encode};
pub use multiproc_sys::affinity::{CpuSet, cpu_count, process_cpu_count};
pub use multiproc_sys::{Pid, Signal};
pub use pool::{
    AsCompleted, AsyncResult, ExecutorBuilder, ExecutorMap, Future, IMap, InitResult, Pool,
    PoolBuilder, PoolError, ProcessPoolExecutor, RemotePanic, ReturnWhen, StarWork, Task,
    WaitResult, Work, as_completed, wait as wait_futures,
};
pub use process::{
    JoinError, ParentProcess, Process, ProcessBuilder, ProcessInfo, ProcessStateError, StartError,
    active_children, current_process, parent_process, thread_count,
};
pub use queue::{
    BuildQueue, Corruption, DEFAULT_CAPACITY_BYTES, GetError, JoinableQueue, PutError, Queue,
    QueueBuilder, QueueError, QueueJoinError, SimpleQueue, TaskDoneError,
};
pub use shared::{Array, ArrayGuard, RawArray, RawValue, Value, ValueGuard};
pub use sync::{
    AcquireError, Barrier, BarrierBuilder, BarrierError, BoundedSemaphore, Condition,
    ConditionGuard, ConditionLock, DataLock, Event, Lock, LockGuard, NotifyError, RLock,
    RLockGuard, ReleaseError, Semaphore, SemaphoreGuard, WaitError,
};

/// Python's `concurrent.futures` names in one place: [`ProcessPoolExecutor`], [`Future`],
/// [`wait`](futures::wait) and [`as_completed`].
pub mod futures {
    pub use crate::pool::{
        AsCompleted, ExecutorBuilder, ExecutorMap, Future, ProcessPoolExecutor, ReturnWhen,
        WaitResult, as_completed, wait,
    };
}

/// The README's example, compiled and run as a doctest so it cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// Dropping a value whose drop is a bug warns (`#[must_use]`, issue 18): here, with the warning
/// denied, each of these fails to compile.
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// multiproc::Process::new(|| ()); // never started
/// ```
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// multiproc::Pool::builder().processes(2); // never built
/// ```
///
/// ```compile_fail
/// #![deny(unused_must_use)]
/// # fn main() -> Result<(), multiproc::PoolError> {
/// let pool = multiproc::Pool::new(1)?;
/// pool.apply_async(|x: u32| x + 1, 1)?; // the result and any error are lost
/// # Ok(())
/// # }
/// ```
///
/// The same code with the value used compiles:
///
/// ```
/// #![deny(unused_must_use)]
/// # fn main() -> Result<(), multiproc::PoolError> {
/// let pool = multiproc::Pool::new(1)?;
/// let r = pool.apply_async(|x: u32| x + 1, 1)?;
/// assert_eq!(r.get()?, 2);
/// # Ok(())
/// # }
/// ```
#[cfg(doctest)]
pub struct MustUseDoctests;
