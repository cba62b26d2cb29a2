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
//! # Layout
//!
//! The layer is grouped by concept; each module's docs list what it keeps invariant.
//!
//! | module | what it holds |
//! |---|---|
//! | [`process`] | `fork`, exiting, pids and thread ids, the parent-death signal, waiting for children and their exit status, pidfds, signals (`kill`, dispositions) |
//! | [`fd`] | descriptor ownership: [`OwnedFd`](fd::OwnedFd), [`BorrowedFd`](fd::BorrowedFd) and their traits (std's with the `std` feature) |
//! | [`io`] | file descriptors: one-call I/O and flags ([`io::fd`]), whole-buffer reads and writes without `SIGPIPE` ([`io::stream`]), pipes, socketpairs, `SCM_RIGHTS`, `poll` |
//! | [`mem`] | `MAP_SHARED` segments, wipe-on-fork pages, and the [`ShmSafe`](mem::shm_safe::ShmSafe) plain-data contract |
//! | [`sync`] | objects that synchronise processes in shared memory: futexes, POSIX semaphores, robust pthread mutexes and condvars |
//! | [`affinity`] | CPU sets, thread affinity, CPU counts |
//! | [`time`] | [`Timespec`](time::Timespec) and monotonic [`Deadline`](time::Deadline)s |
//! | [`random`] | `getrandom` |
//! | [`errno`], [`cvt`] | [`Errno`] and the C return-value conventions |
//!
//! The paths items had before this grouping (`multiproc_sys::fork`, `::wait`, `::pipe`,
//! `::poll`, `::pid`, `::signal`, `::mmap`, `::shm_safe`, `::futex`, `::semaphore`,
//! `::pthread`, `::scm`, and the one-call functions directly under `::io`) still work, as
//! re-exports hidden from these docs.
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
//!   writes of [`io::stream`] block until done, as `read(2)`/`write(2)` do: wait for readiness
//!   with [`io::poll::wait_readable`] or [`io::poll::poll`] first when you need a bound.
//! - **No `SIGPIPE`**: writes to a dead peer fail with [`Errno::PIPE`] (see [`io::stream`]).
//! - **Objects in shared memory never move**: they are initialised in place and used through
//!   shared references (see [`sync::pthread`], [`sync::semaphore`], [`sync::futex`]).
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
pub mod fd;
pub mod io;
pub mod mem;
pub mod process;
pub mod random;
pub mod sync;
pub mod time;

mod compat;

pub use errno::{Errno, Result};
pub use process::pid::Pid;
pub use process::signal::Signal;

// The paths from before the grouping by concept (see `compat`).
#[doc(hidden)]
pub use compat::{fork, pipe, wait};
#[doc(hidden)]
pub use io::{poll, scm};
#[doc(hidden)]
pub use mem::{mmap, shm_safe};
#[doc(hidden)]
pub use process::{pid, signal};
#[doc(hidden)]
pub use sync::{futex, pthread, semaphore};
