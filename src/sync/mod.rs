//! Process-shared synchronisation primitives — Python's `Lock`, `RLock`, `Semaphore`,
//! `BoundedSemaphore`, `Condition`, `Event` and `Barrier`.
//!
//! Each one lives in a `MAP_SHARED` segment created by its constructor: create it before
//! starting the processes that use it, then use the handle (or a clone of it) in the parent and
//! in every child. Each blocking call waits as long as needed (`acquire()`, `wait()`) and has a
//! `_timeout` form taking a `Duration` on `CLOCK_MONOTONIC` (`Duration::ZERO` tries once), and
//! none of them hangs because another process died: see each type's "When a process dies"
//! section.

// Layout (for maintainers; not in the public docs)
//
// The lock-like types follow `lock_api`'s split between a raw lock and a safe API written
// once over it:
//
// | file | holds |
// |---|---|
// | `raw` | `RawLock`: the one raw robust lock (robust mutex + holder hint + a kind's bookkeeping): try, lock until a deadline, repair after a dead holder, unlock |
// | `api` | the safe half, written once: the `RawAcquire` trait, the generic `Guard`, the body of every `lock`/`try_lock`/`lock_timeout` and of Python's `acquire` |
// | `lock`, `rlock` | `Lock` and `RLock`: their bookkeeping over `RawLock`, and their public API |
// | `data` | `DataLock`: the lock of a `Value`/`Array` (`Lock` or `RLock`) and the data level its guards hold |
// | `condition` | `Condition` (a futex sequence counter) over a `ConditionLock` |
// | `semaphore`, `event`, `barrier` | the primitives with algorithms of their own |
// | `error` | `AcquireError`, `ReleaseError` |
// | `tid` | the calling thread's cached kernel thread id |
//
// How every primitive waits (spin briefly, then sleep in the kernel until a deadline) is the
// crate's one waiting policy, in `crate::wait`.

mod error;
pub use error::{AcquireError, BarrierError, ReleaseError};

mod api;
mod raw;
mod tid;

mod lock;
pub use lock::{Lock, LockGuard};
mod semaphore;
pub use semaphore::{BoundedSemaphore, Semaphore, SemaphoreGuard};
mod barrier;
pub use barrier::{Barrier, BarrierBuilder};
mod rlock;
pub use rlock::{RLock, RLockGuard};
mod data;
pub use data::DataLock;
pub(crate) use data::{DataGuard, lock_data};
mod condition;
pub use condition::{Condition, ConditionGuard, ConditionLock, NotifyError, WaitError};
mod event;
pub use event::Event;
