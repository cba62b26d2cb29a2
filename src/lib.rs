//! multiproc: Python's `multiprocessing` for Rust (being written).
#![warn(missing_docs)]

pub use multiproc_sys as sys;

pub mod codec;
mod connection;
mod pool;
mod process;
mod queue;
mod shm;
pub mod sync;
mod shared;

pub use codec::Message;
pub use connection::{Connection, ConnectionError, pipe, wait};
pub use multiproc_sys::affinity::{CpuSet, cpu_count, process_cpu_count};
pub use multiproc_sys::{Pid, Signal};
pub use process::{
    JoinError, ParentProcess, Process, ProcessBuilder, ProcessInfo, ProcessStateError, StartError,
    active_children, current_process, parent_process, thread_count,
};
pub use sync::{AcquireError, Lock, LockGuard, ReleaseError};
pub use sync::{Condition, ConditionGuard, ConditionLock, Event, NotifyError, RLock, RLockGuard, WaitError};
pub use shared::{Array, ArrayGuard, RawArray, RawValue, Value, ValueGuard};
pub use sync::{Barrier, BarrierBuilder, BarrierError, BoundedSemaphore, Semaphore, SemaphoreGuard};
pub use queue::{BuildQueue, Corruption, DEFAULT_CAPACITY_BYTES, GetError, JoinableQueue, PutError, Queue, QueueBuilder, QueueError, QueueJoinError, SimpleQueue, TaskDoneError};
pub use pool::{AsCompleted, AsyncResult, ExecutorBuilder, ExecutorMap, Future, IMap, InitResult, Pool, PoolBuilder, PoolError, ProcessPoolExecutor, ReturnWhen, StarWork, Task, WaitResult, Work, as_completed, wait as wait_futures};
