//! `multiproc-sys`: the OS layer of [multiproc](https://docs.rs/multiproc).
//!
//! Safe, allocation-free, `#![no_std]` wrappers around the Linux primitives that
//! process-based parallelism is built from: `fork`, `waitid`, pidfds, pipes and socketpairs,
//! `MAP_SHARED` segments, shared futexes, POSIX unnamed semaphores, robust process-shared
//! pthread mutexes and condvars, and CPU affinity.
//!
//! This is the crate to depend on directly when you need the primitives without the
//! Python-shaped API on top: a fuzzer's fork server, a robust lock inside a coverage map, a
//! pinned worker, a futex in a shared segment.
//!
//! # What every item promises
//!
//! - **No allocation**, ever. Nothing here needs a heap; the crate does not link `alloc`.
//! - **Usable between `fork` and `exec`** where the item says *async-signal-safe*: it then makes
//!   raw system calls, calls functions on the POSIX async-signal-safe list, or calls a libc
//!   function that the item's docs name and that takes no lock and allocates nothing on glibc
//!   and musl (`sigtimedwait`, `sysconf(_SC_PAGESIZE)`, `sched_getcpu`, `SIGRTMIN`), so a freshly
//!   forked child of a multithreaded parent may call it.
//! - **Close-on-exec**: every file descriptor the layer creates has `FD_CLOEXEC`.
//! - **Monotonic time**: every *wait* (futex, semaphore, mutex, condvar, `poll`, child exit)
//!   takes a [`time::Deadline`] on `CLOCK_MONOTONIC`; `EINTR` is retried with the time that is
//!   left and is never reported as a timeout ([`Errno::TIMEDOUT`] is). The full-buffer reads and
//!   writes of [`pipe`] block until done, as `read(2)`/`write(2)` do: wait for readiness with
//!   [`pipe::poll`] first when you need a bound.
//! - **No `SIGPIPE`**: writes to a dead peer fail with [`Errno::PIPE`] (see [`pipe`]).
//! - **Objects in shared memory never move**: they are initialised in place and used through
//!   shared references (see [`pthread`], [`semaphore`], [`futex`]).
//!
//! # What it leaves out
//!
//! Serialisation, process bookkeeping, Python names, and anything that allocates: that is the
//! job of the `multiproc` crate. Only Linux is supported: glibc 2.30 or later (for
//! `sem_clockwait` and `pthread_mutex_clocklock`, linked directly) or musl.
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

#[cfg(not(target_os = "linux"))]
compile_error!("multiproc-sys supports Linux only (glibc >= 2.30 or musl)");

#[cfg(feature = "std")]
extern crate std;

pub mod affinity;
pub mod cvt;
pub mod errno;
pub mod fork;
pub mod futex;
pub mod io;
pub mod mmap;
pub mod pid;
pub mod pipe;
pub mod poll;
pub mod procfs;
pub mod pthread;
pub mod random;
pub mod scm;
pub mod semaphore;
pub mod shm_safe;
pub mod signal;
pub mod time;
pub mod wait;

pub use errno::{Errno, Result};
pub use pid::Pid;
pub use signal::Signal;
