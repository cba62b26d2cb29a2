//! Synchronisation between processes, for objects placed in shared memory.
//!
//! | module | what it holds |
//! |---|---|
//! | [`futex`] | shared (and private) futex waits and wakes on an `AtomicU32` |
//! | [`semaphore`] | [`RawSemaphore`](semaphore::RawSemaphore): a process-shared POSIX unnamed semaphore |
//! | [`pthread`] | [`RobustMutex`](pthread::RobustMutex) and [`Condvar`](pthread::Condvar): process-shared, robust pthread objects |
//!
//! Each object lives in a `MAP_SHARED` segment (see [`mem::mmap`](crate::mem::mmap)), is
//! initialised in place, never moves, and takes its timeouts as a
//! [`Deadline`](crate::time::Deadline) on `CLOCK_MONOTONIC`.

pub mod futex;
pub mod pthread;
pub mod semaphore;
